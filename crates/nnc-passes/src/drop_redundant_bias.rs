//! `drop-redundant-bias` (train, infer): a bias added right before a batch
//! norm cancels in the mean subtraction, `BN(x + b) = BN(x)` per channel
//! (Ioffe & Szegedy 2015, §3.2: "the effect of b will be canceled by the
//! subsequent mean subtraction"), so the linear or conv drops it.
//!
//! - **train**: only a bias initialised to the constant 0. Batch norm's
//!   output, and so the loss, does not depend on `b`, so `b` gets zero
//!   gradient and keeps its initial value; at zero it also leaves the
//!   running mean's updates unchanged, so dropping it is exact, running
//!   statistics included. Any other start value would shift the running
//!   mean that inference later reads together with the stored bias.
//! - **infer**: always. `BN(x + b)` with running mean μ equals `BN(x)` with
//!   running mean `μ' = μ − b`, a derived parameter
//!   `<running_mean>' = running_mean − bias`; exact for any weights.
//!
//! Each removal leaves a note in `module.notes` (printed in the dump).
//!
//! Must not fire when the op has an epilogue (an activation between the bias
//! and the norm keeps the bias from cancelling), or when its result has a
//! reader other than the batch norm (that reader still needs the bias).
//!
//! ```text
//! %1: f32[N,4] = linear[layer0] %0, @layer0.weight, @layer0.bias loc(2:1)
//! %2: f32[N,4] = batch_norm[layer0] %1, @layer0.norm.weight, @layer0.norm.bias, @layer0.norm.running_mean, @layer0.norm.running_var eps=0.00001 momentum=0.1 loc(2:1)
//! ```
//! becomes, in infer mode,
//! ```text
//! param @layer0.norm.running_mean': f32[4] running_mean = derive @layer0.norm.running_mean - @layer0.bias
//! %1: f32[N,4] = linear[layer0] %0, @layer0.weight loc(2:1)
//! %2: f32[N,4] = batch_norm[layer0] %1, @layer0.norm.weight, @layer0.norm.bias, @layer0.norm.running_mean', @layer0.norm.running_var eps=0.00001 momentum=0.1 loc(2:1)
//! ```

use crate::rewrite::{add_derived, is_bare_weights, param, set_weights, weights, with_function, ParamNames, Sweep};
use nnc_ir::{BinaryOp, Derivation, Dist, Function, Mode, Module, Op, ParamId, ParamSource};
use std::collections::HashSet;

/// Drops the biases that a batch norm cancels in the `mode` function; true if
/// anything changed.
pub fn drop_redundant_bias(module: &mut Module, mode: Mode) -> bool {
    with_function(module, mode, |module, f| {
        let mut changed = false;
        let mut edit = Edit {
            // Nothing is removed: only reader lookups are needed.
            sweep: Sweep::new(f),
            names: ParamNames::default(),
            notes: module.notes.iter().cloned().collect(),
        };
        for index in 0..f.ops.len() {
            changed |= drop_bias(module, f, &mut edit, index);
        }
        changed
    })
}

/// What the pass keeps between ops: readers, names taken, notes written.
struct Edit {
    sweep: Sweep,
    names: ParamNames,
    notes: HashSet<String>,
}

/// Drops the bias of the op at `index` if the batch norm reading it cancels it.
fn drop_bias(module: &mut Module, f: &mut Function, edit: &mut Edit, index: usize) -> bool {
    let op = &f.ops[index];
    // Not weights, or an activation between bias and norm: no cancelling.
    if !is_bare_weights(&op.op) {
        return false;
    }
    // Nothing to drop.
    let Some((weight, Some(bias))) = weights(&op.op) else {
        return false;
    };
    // Another reader (or the output) still needs the bias.
    let Some(norm_index) = edit.sweep.sole_user(f, op.result) else {
        return false;
    };
    let norm = &f.ops[norm_index];
    // Only batch norm subtracts a per-channel mean that the bias shifts.
    let Op::BatchNorm { running_mean, .. } = norm.op else {
        return false;
    };
    let norm_layer = norm.layer.clone();
    let Some(bias_name) = param(module, bias).map(|b| b.name.clone()) else {
        return false;
    };
    let why = match f.mode {
        Mode::Train => {
            // Only a bias that starts, and so stays, at zero is exact.
            if !is_zero_init(module, bias) {
                return false;
            }
            format!("zero-initialised, and batch norm {norm_layer} subtracts the batch mean")
        }
        Mode::Infer => {
            let Some(mean) = param(module, running_mean).cloned() else {
                return false;
            };
            let shifted = Derivation::binary(BinaryOp::Sub, Derivation::param(running_mean), Derivation::param(bias));
            let new_mean = add_derived(module, &mut edit.names, &mean.name, mean.shape, mean.role, shifted);
            if let Op::BatchNorm { running_mean, .. } = &mut f.ops[norm_index].op {
                *running_mean = new_mean;
            }
            let new_name = module.param(new_mean).name.clone();
            format!(
                "batch norm {norm_layer} subtracts it through @{new_name} = @{} - @{bias_name}",
                mean.name
            )
        }
    };
    set_weights(&mut f.ops[index].op, weight, None);
    let note = format!("drop-redundant-bias: removed @{bias_name} from {} ({why})", f.mode);
    if edit.notes.insert(note.clone()) {
        module.notes.push(note);
    }
    true
}

/// True for a stored bias drawn from the constant 0.
fn is_zero_init(module: &Module, bias: ParamId) -> bool {
    matches!(
        param(module, bias).map(|b| &b.source),
        Some(ParamSource::Init(init)) if matches!(init.dist, Dist::Constant { value } if value == 0.0)
    )
}
