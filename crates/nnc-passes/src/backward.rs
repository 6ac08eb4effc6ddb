//! What the passes over the backward function share.

use nnc_ir::grad::build::saved;
use nnc_ir::grad::rules::rule;
use nnc_ir::grad::Backward;
use nnc_ir::{Mode, Module, ValueId};

/// How many step arguments read gradient `v`.
pub(crate) fn readers(backward: &Backward, v: ValueId) -> usize {
    backward.steps.iter().flat_map(|s| &s.args).filter(|a| **a == v).count()
}

/// Recomputes what the train function saves, after steps changed.
pub(crate) fn refresh_saved(module: &mut Module) {
    let Some(train) = module.function(Mode::Train) else {
        return;
    };
    let rules: Option<Vec<_>> = train.ops.iter().map(|o| rule(&o.op).ok()).collect();
    let (Some(rules), Some(backward)) = (rules, module.backward.as_ref()) else {
        return;
    };
    let list = saved(train, backward, &rules, &train.producers());
    if let Some(b) = module.backward.as_mut() {
        b.saved = list;
    }
}
