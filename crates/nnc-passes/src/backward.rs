//! What the passes over the backward function share.

use nnc_ir::grad::build::saved;
use nnc_ir::{Mode, Module};

/// Recomputes what the train function saves, after steps changed.
pub(crate) fn refresh_saved(module: &mut Module) {
    let train = module.functions.iter().find(|f| f.mode == Mode::Train);
    if let (Some(train), Some(backward)) = (train, module.backward.as_mut()) {
        backward.saved = saved(train, backward);
    }
}
