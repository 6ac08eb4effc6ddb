//! `dce` (train, infer): removes what nothing uses, and renumbers what is
//! left (naga's `compact`), so ids stay dense and dumps stay tidy.
//!
//! 1. **Ops** of the `mode` function whose result is neither read nor the
//!    output, walking backwards so a dead chain goes in one run.
//! 2. **Values** of that function that no op defines and that are not the
//!    input: the table is rebuilt in program order (input, then each op's
//!    result) and every `ValueId` renumbered.
//! 3. **Parameters** that no op of *any* function reads, directly or through
//!    the derivation of a parameter that is read (so folding's sources stay:
//!    loaders need them to compute `layer0.weight'`). Every `ParamId` in the
//!    ops of all functions and in derivations is renumbered.
//!
//! Must not remove a train-mode `batch_norm` even when its result is unused
//! (it updates the running statistics, which are saved with the weights),
//! nor a parameter read only by the derivation of a live one.
//!
//! ```text
//! param @layer0.weight: f32[4,8] weight = init he_normal fan_in=8 fan_out=4 normal(mean=0, std=0.5)
//! param @layer1.weight: f32[3,8] weight = init he_normal fan_in=8 fan_out=3 normal(mean=0, std=0.5)
//! func @infer(%0: f32[N,8]) -> f32[N,3] {
//!   %1: f32[N,4] = linear[layer0] %0, @layer0.weight loc(2:1)
//!   %2: f32[N,4] = relu[layer0] %1 loc(2:1)
//!   %3: f32[N,3] = linear[layer1] %0, @layer1.weight loc(3:1)
//!   return %3
//! }
//! ```
//! becomes
//! ```text
//! param @layer1.weight: f32[3,8] weight = init he_normal fan_in=8 fan_out=3 normal(mean=0, std=0.5)
//! func @infer(%0: f32[N,8]) -> f32[N,3] {
//!   %1: f32[N,3] = linear[layer1] %0, @layer1.weight loc(3:1)
//!   return %1
//! }
//! ```

use crate::rewrite::Sweep;
use nnc_ir::{Function, Mode, Module, Op, OpData, ParamId, ParamSource, ValueId};

/// Removes unused ops and values of the `mode` function and unused
/// parameters of the module; true if anything changed.
pub fn dce(module: &mut Module, mode: Mode) -> bool {
    let Some(f) = module.function_mut(mode) else {
        return false;
    };
    let mut changed = remove_dead_ops(f);
    // Renumbering is invisible in the text form (the printer numbers values
    // in program order), so it does not count as a change.
    compact_values(f);
    changed |= remove_dead_params(module);
    changed
}

fn remove_dead_ops(f: &mut Function) -> bool {
    let mut sweep = Sweep::new(f);
    // Backwards: removing a reader can make its arguments' producers dead,
    // and those always come earlier.
    for index in (0..f.ops.len()).rev() {
        let op = &f.ops[index];
        if sweep.use_count(f, op.result) == 0 && !has_effect(op, f.mode) {
            sweep.remove_dead(f, index);
        }
    }
    sweep.finish(f)
}

/// True for an op that does more than define its result.
fn has_effect(op: &OpData, mode: Mode) -> bool {
    // Training batch norm updates the running statistics.
    mode == Mode::Train && matches!(op.op, Op::BatchNorm { .. })
}

/// Keeps the values that are the input or some op's result (and, in broken
/// IR, any other value still referenced), in program order.
fn compact_values(f: &mut Function) -> bool {
    let referenced = f.ops.iter().flat_map(|o| o.args.iter().copied());
    let order = std::iter::once(f.input)
        .chain(f.ops.iter().map(|o| o.result))
        .chain(std::iter::once(f.output))
        .chain(referenced);
    let mut new_id: Vec<Option<ValueId>> = vec![None; f.values.len()];
    let mut values = Vec::new();
    for old in order {
        let Some(slot) = new_id.get_mut(old.0 as usize) else {
            // An id outside the table: broken IR, the verifier's to report.
            return false;
        };
        if slot.is_none() {
            *slot = Some(ValueId(values.len() as u32));
            values.push(f.values[old.0 as usize].clone());
        }
    }
    let identity =
        values.len() == f.values.len() && new_id.iter().enumerate().all(|(i, n)| *n == Some(ValueId(i as u32)));
    if identity {
        return false;
    }
    let renumber = |v: &mut ValueId| *v = new_id[v.0 as usize].unwrap_or(*v);
    for op in &mut f.ops {
        op.args.iter_mut().for_each(renumber);
        renumber(&mut op.result);
    }
    renumber(&mut f.input);
    renumber(&mut f.output);
    f.values = values;
    true
}

/// Removes the parameters no function reads, directly or by derivation.
fn remove_dead_params(module: &mut Module) -> bool {
    let live = module.params_needed(module.functions.iter().flat_map(|f| f.params_read()));
    if live.iter().all(|l| *l) {
        return false;
    }
    let mut new_id: Vec<Option<ParamId>> = Vec::with_capacity(live.len());
    let mut next = 0;
    for l in &live {
        new_id.push(l.then(|| ParamId(next)));
        next += u32::from(*l);
    }
    let mut index = 0;
    module.params.retain(|_| {
        index += 1;
        live[index - 1]
    });
    let renumber = |p: &mut ParamId| {
        if let Some(Some(n)) = new_id.get(p.0 as usize) {
            *p = *n;
        }
    };
    for f in &mut module.functions {
        for op in &mut f.ops {
            op.op.params_mut().into_iter().for_each(renumber);
        }
    }
    for p in &mut module.params {
        if let ParamSource::Derived(d) = &mut p.source {
            d.params_mut().into_iter().for_each(renumber);
        }
    }
    true
}
