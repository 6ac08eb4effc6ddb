//! `fuse-activation-backward` (train, on the backward): the backward twin
//! of `fuse-activation`. The VJP of a dense layer computes `dX = dY·W`;
//! when the next step multiplies that `dX` by the derivative of the
//! activation before the layer (`tanh.vjp`: `dX·(1 − y²)`), the product
//! applies the derivative to each tile of `dX` while it is still in cache
//! (its `then` list) instead of a separate pass over memory.
//!
//! Fires on an element-wise activation without parameters (not PReLU, whose
//! slope gradient is a reduction of its own, nor RReLU, whose slopes are a
//! record) whose incoming gradient is the input gradient of a `linear`'s
//! VJP and is read by nothing else. It repeats along a chain of
//! activations. The numbers are the same: each element is multiplied by the
//! same derivative, in the same order.
//!
//! ```text
//! %d2: f32[N,4] = linear.vjp[b] %d1 of %4 reads(%2) grads(@b.weight)
//! %d3: f32[N,4] = tanh.vjp[a] %d2 of %2 reads(%2)
//! ```
//! becomes
//! ```text
//! %d2: f32[N,4] = linear.vjp[b] %d1 of %4 reads(%2) grads(@b.weight) then(tanh of %2)
//! ```

use crate::backward::refresh_saved;
use nnc_ir::grad::StepKind;
use nnc_ir::{Act, Mode, Module, Op};

/// Moves activation VJPs into the linear VJP before them; true if any moved.
/// One walk over the steps with a table of which step defines each
/// gradient and how many read it, so the pass stays linear.
pub fn fuse_activation_backward(module: &mut Module, mode: Mode) -> bool {
    let train = module.functions.iter().find(|f| f.mode == Mode::Train);
    let (Some(train), Some(backward)) = (train, module.backward.as_mut()) else {
        return false;
    };
    if mode != Mode::Train {
        return false;
    }
    let producers = train.producers();
    let op_of = |v: nnc_ir::ValueId| producers.op(train, v).map(|o| &o.op);
    let n = backward.values.len();
    let mut readers = vec![0usize; n];
    for a in backward.steps.iter().flat_map(|s| &s.args) {
        if let Some(r) = readers.get_mut(a.0 as usize) {
            *r += 1;
        }
    }
    // The step defining each gradient, kept current as results move.
    let mut defined_by = vec![None; n];
    let mut removed = vec![false; backward.steps.len()];
    let mut changed = false;
    // By index: a fused step edits an earlier one in place.
    #[allow(clippy::needless_range_loop)]
    for k in 0..backward.steps.len() {
        let step = &backward.steps[k];
        let fusable_act = match (&step.kind, step.result) {
            (StepKind::Vjp { of }, Some(_)) => match op_of(*of) {
                Some(Op::Act(act)) => {
                    act.is_elementwise() && act.params().is_empty() && !matches!(act, Act::Rrelu { .. })
                }
                _ => false,
            },
            _ => false,
        };
        let dy = step.args.first().copied();
        let producer = dy
            .filter(|dy| readers.get(dy.0 as usize) == Some(&1))
            .and_then(|dy| defined_by.get(dy.0 as usize).copied().flatten())
            .filter(|&p: &usize| match &backward.steps[p].kind {
                StepKind::Vjp { of } => matches!(op_of(*of), Some(Op::Linear { .. })),
                _ => false,
            });
        match (fusable_act, producer) {
            (true, Some(p)) => {
                let act_step = std::mem::replace(&mut backward.steps[k], placeholder());
                removed[k] = true;
                if let StepKind::Vjp { of } = act_step.kind {
                    let target = &mut backward.steps[p];
                    target.result = act_step.result;
                    target.then.push(of);
                    target.then.extend(act_step.then);
                    for loc in act_step.locs {
                        if !target.locs.contains(&loc) {
                            target.locs.push(loc);
                        }
                    }
                    if let Some(slot) = act_step.result.and_then(|r| defined_by.get_mut(r.0 as usize)) {
                        *slot = Some(p);
                    }
                    changed = true;
                }
            }
            _ => {
                if let Some(slot) = step.result.and_then(|r| defined_by.get_mut(r.0 as usize)) {
                    *slot = Some(k);
                }
            }
        }
    }
    if changed {
        let mut k = 0;
        backward.steps.retain(|_| {
            k += 1;
            !removed[k - 1]
        });
        refresh_saved(module);
    }
    changed
}

/// What a removed step's place holds until the steps are compacted.
fn placeholder() -> nnc_ir::grad::Step {
    nnc_ir::grad::Step {
        kind: StepKind::Sum,
        args: Vec::new(),
        result: None,
        layer: String::new(),
        locs: Vec::new(),
        then: Vec::new(),
    }
}
