//! `dce-backward` (train, on the backward): removes what no gradient
//! needs. A step whose result nothing reads goes, unless it also adds to a
//! parameter's gradient (then only its result goes: a dense layer's VJP
//! keeps `dW` and skips `dX`), or is the loss (which writes the loss
//! value). Then the train function's `saving` list shrinks to what the
//! remaining steps read, so the forward keeps less. Steps are visited last
//! first, so a chain that only fed a removed step goes too.
//!
//! ```text
//! %d4: f32[N,3] = tanh.vjp[a] %d3 of %2 reads(%2)     (nothing reads %d4)
//! ```
//! goes; `linear.vjp[a] %d3 of %1 reads(%0) grads(@a.weight)` with an unread
//! `%d4` result keeps its weight gradient and loses its result.

use crate::backward::refresh_saved;
use nnc_ir::grad::rules::rule;
use nnc_ir::grad::StepKind;
use nnc_ir::{Mode, Module};

/// Removes unread gradients; true if anything changed.
pub fn dce_backward(module: &mut Module, mode: Mode) -> bool {
    if mode != Mode::Train {
        return false;
    }
    let train = module.functions.iter().find(|f| f.mode == Mode::Train);
    let (Some(train), Some(backward)) = (train, module.backward.as_mut()) else {
        return false;
    };
    let producers = train.producers();
    let has_params = |kind: &StepKind| match kind {
        StepKind::Vjp { of } => producers
            .op(train, *of)
            .and_then(|o| rule(&o.op).ok())
            .is_some_and(|r| !r.params.is_empty()),
        StepKind::Penalty { .. } | StepKind::Loss { .. } => true,
        StepKind::Sum => false,
    };
    let mut reads = vec![0usize; backward.values.len()];
    for s in &backward.steps {
        for a in &s.args {
            if let Some(r) = reads.get_mut(a.0 as usize) {
                *r += 1;
            }
        }
    }
    let mut changed = false;
    let mut keep = vec![true; backward.steps.len()];
    for (k, step) in backward.steps.iter_mut().enumerate().rev() {
        // The loss step stays whole: it writes the loss value, and its
        // gradient is the backward's start even when nothing reads it (a
        // model with no parameter before its output).
        let Some(r) = step.result.filter(|_| !matches!(step.kind, StepKind::Loss { .. })) else {
            continue;
        };
        if reads.get(r.0 as usize).copied().unwrap_or(0) > 0 {
            continue;
        }
        changed = true;
        if has_params(&step.kind) {
            // The parameter gradients stay; the input gradient and the
            // activations applied to it go.
            step.result = None;
            step.then.clear();
        } else {
            keep[k] = false;
            for a in &step.args {
                if let Some(n) = reads.get_mut(a.0 as usize) {
                    *n = n.saturating_sub(1);
                }
            }
        }
    }
    let mut k = 0;
    backward.steps.retain(|_| {
        k += 1;
        keep[k - 1]
    });
    if changed {
        refresh_saved(module);
    }
    changed
}
