//! Queries and edits the passes share: borrowing a function beside the rest
//! of its module, finding the one reader of a value, removing an op that
//! forwards its argument, adding derived parameters.

use nnc_ir::{Derivation, Epilogue, Function, Mode, Module, Op, OpData, ParamData, ParamId, ParamRole, ValueId};

/// Runs `rewrite` on the function of `mode` with the rest of the module
/// beside it, so a pass can add parameters while it edits ops. False (and
/// nothing run) when the module has no function of that mode.
pub(crate) fn with_function(
    module: &mut Module,
    mode: Mode,
    rewrite: impl FnOnce(&mut Module, &mut Function) -> bool,
) -> bool {
    let Some(index) = module.functions.iter().position(|f| f.mode == mode) else {
        return false;
    };
    // Taken out and put back at the same place, so function order is kept.
    let mut function = module.functions.remove(index);
    let changed = rewrite(module, &mut function);
    module.functions.insert(index, function);
    changed
}

/// The index of the only op that reads `value`, when exactly one argument
/// slot reads it and it is not the function's output.
pub(crate) fn sole_user(f: &Function, value: ValueId) -> Option<usize> {
    if f.use_count(value) != 1 {
        return None;
    }
    f.ops.iter().position(|o| o.args.contains(&value))
}

/// Removes the op at `index` and makes every reader of its result read its
/// first argument instead: the op becomes the identity. Returns the removed
/// op (for its locations).
pub(crate) fn remove_forwarding(f: &mut Function, index: usize) -> Option<OpData> {
    let arg = *f.ops.get(index)?.args.first()?;
    let op = f.ops.remove(index);
    f.replace_uses(op.result, arg);
    Some(op)
}

/// A parameter by id, or `None` for an id outside the table (broken IR the
/// verifier reports; a pass just declines).
pub(crate) fn param(module: &Module, id: ParamId) -> Option<&ParamData> {
    module.params.get(id.0 as usize)
}

/// Adds a derived parameter named `base`, primed until the name is free.
pub(crate) fn add_derived(
    module: &mut Module,
    base: &str,
    shape: Vec<usize>,
    role: ParamRole,
    derivation: Derivation,
) -> ParamId {
    let name = module.fresh_param_name(base);
    module.add_param(ParamData::derived(name, shape, role, derivation))
}

/// The weight and bias of a linear or conv, the two ops with weights.
pub(crate) fn weights(op: &Op) -> Option<(ParamId, Option<ParamId>)> {
    match op {
        Op::Linear { weight, bias, .. } | Op::Conv2d { weight, bias, .. } => Some((*weight, *bias)),
        _ => None,
    }
}

/// Sets the weight and bias of a linear or conv; false for other ops.
pub(crate) fn set_weights(op: &mut Op, new_weight: ParamId, new_bias: Option<ParamId>) -> bool {
    match op {
        Op::Linear { weight, bias, .. } | Op::Conv2d { weight, bias, .. } => {
            *weight = new_weight;
            *bias = new_bias;
            true
        }
        _ => false,
    }
}

/// The epilogue of a linear or conv, the two ops that have one.
pub(crate) fn epilogue(op: &Op) -> Option<&Epilogue> {
    match op {
        Op::Linear { epilogue, .. } | Op::Conv2d { epilogue, .. } => Some(epilogue),
        _ => None,
    }
}

/// True for a linear or conv with nothing after its bias: what a batch norm
/// right after it can cancel into or fold into.
pub(crate) fn is_bare_weights(op: &Op) -> bool {
    epilogue(op).is_some_and(Epilogue::is_empty)
}
