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

use crate::backward::{readers, refresh_saved};
use nnc_ir::grad::StepKind;
use nnc_ir::{Act, Mode, Module, Op};

/// Moves activation VJPs into the linear VJP before them; true if any moved.
pub fn fuse_activation_backward(module: &mut Module, mode: Mode) -> bool {
    let train = module.functions.iter().find(|f| f.mode == Mode::Train);
    let (Some(train), Some(backward)) = (train, module.backward.as_mut()) else {
        return false;
    };
    if mode != Mode::Train {
        return false;
    }
    let producers = train.producers();
    let op_of = |v: nnc_ir::ValueId| {
        producers
            .get(v.0 as usize)
            .copied()
            .flatten()
            .and_then(|i| train.ops.get(i))
    };
    let mut changed = false;
    let mut k = 0;
    while k < backward.steps.len() {
        let step = &backward.steps[k];
        let fusable_act = match (&step.kind, step.result) {
            (StepKind::Vjp { of }, Some(_)) => match op_of(*of).map(|o| &o.op) {
                Some(Op::Act(act)) => {
                    act.is_elementwise() && act.params().is_empty() && !matches!(act, Act::Rrelu { .. })
                }
                _ => false,
            },
            _ => false,
        };
        let dy = step.args.first().copied();
        let producer = dy.and_then(|dy| {
            backward.steps[..k]
                .iter()
                .position(|s| s.result == Some(dy))
                .filter(|&p| match &backward.steps[p].kind {
                    StepKind::Vjp { of } => matches!(op_of(*of).map(|o| &o.op), Some(Op::Linear { .. })),
                    _ => false,
                })
        });
        match (fusable_act, producer, dy) {
            (true, Some(p), Some(dy)) if readers(backward, dy) == 1 => {
                let act_step = backward.steps.remove(k);
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
                    changed = true;
                }
            }
            _ => k += 1,
        }
    }
    if changed {
        refresh_saved(module);
    }
    changed
}
