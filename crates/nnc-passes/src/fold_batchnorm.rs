//! `fold-batchnorm` (infer): at inference a batch norm is a fixed
//! per-channel affine map, `BN(x) = x·s + t` with
//! `s = γ / √(running_var + eps)` and `t = β − running_mean·s`
//! (Ioffe & Szegedy 2015, §3.1; PyTorch `torch.nn.utils.fusion`). Each batch
//! norm is folded into the weights next to it: first every norm that can be
//! folded into its producer (A, in program order), then the rest into their
//! readers (B, last first), so chains of norms fold as far as they can:
//!
//! - **(A) into the linear or conv that produces its input**:
//!   `W' = scale_rows(W, s)`, `b' = (b − running_mean)·s + β` (or
//!   `β − running_mean·s` without a bias). Dropconnect does not matter: its
//!   mask is element-wise and commutes with scaling rows.
//! - **(B) into the linear or conv that reads its result**:
//!   `W' = scale_cols(W, s)`, `b' = b + mat_vec(W, t)` (or `mat_vec(W, t)`),
//!   since `W(x·s + t) + b = (W·diag s)x + (Wt + b)`. This is the "batch norm
//!   after an activation" layout, folded into the next dense (as in
//!   TensorRT's and ONNX Runtime's fusions).
//! - **(C) otherwise** it becomes `affine` with derived parameters
//!   `<layer>.norm.scale = s` and `<layer>.norm.shift = t`.
//!
//! New numbers are *derived parameters* (primed names, `layer0.weight'`)
//! whose derivation loaders evaluate, so the pass needs no weights.
//!
//! Must not fire:
//! - (A) when the producer has an epilogue (an activation sits between the
//!   weights and the norm) or its result has another reader, who would see
//!   the folded numbers;
//! - (B) when the normalised value has another reader or is the output; on
//!   a padded conv (padding injects zeros where the norm would have produced
//!   `t`, so `Wt` in the bias is wrong at the borders); on a grouped conv
//!   (output `o` reads only its group's channels, while `scale_cols` and
//!   `mat_vec` index the weight's columns); with dropconnect set (its mask
//!   would hit `W` but not the folded `Wt`);
//! - at all in train mode, where a batch norm uses batch statistics.
//!
//! ```text
//! %1: f32[N,4] = linear[layer0] %0, @layer0.weight, @layer0.bias loc(2:1)
//! %2: f32[N,4] = batch_norm[layer0] %1, @layer0.norm.weight, @layer0.norm.bias, @layer0.norm.running_mean, @layer0.norm.running_var eps=0.00001 momentum=0.1 loc(2:1)
//! ```
//! becomes (A)
//! ```text
//! param @layer0.weight': f32[4,8] weight = derive scale_rows(@layer0.weight, @layer0.norm.weight / sqrt(@layer0.norm.running_var + 0.00001))
//! param @layer0.bias': f32[4] bias = derive (@layer0.bias - @layer0.norm.running_mean) * (@layer0.norm.weight / sqrt(@layer0.norm.running_var + 0.00001)) + @layer0.norm.bias
//! %1: f32[N,4] = linear[layer0] %0, @layer0.weight', @layer0.bias' loc(2:1)
//! ```

use crate::rewrite::{add_derived, is_bare_weights, param, set_weights, weights, with_function, ParamNames, Sweep};
use nnc_ir::BinaryOp::{Add, Div, Mul, Sub};
use nnc_ir::{Derivation, Function, Mode, Module, Op, OpData, ParamId, ParamRole};

/// Folds every batch norm of the `mode` function; true if anything changed.
pub fn fold_batchnorm(module: &mut Module, mode: Mode) -> bool {
    // Train-mode batch norm normalises with batch statistics: not constant.
    if mode != Mode::Infer {
        return false;
    }
    with_function(module, mode, |module, f| {
        let mut edit = Edit {
            sweep: Sweep::new(f),
            names: ParamNames::default(),
        };
        let mut changed = false;
        // Phase 1, in program order: into producers, so `linear → BN → BN`
        // folds both norms back into the linear.
        for index in 0..f.ops.len() {
            if let Some(norm) = Norm::of(&f.ops[index]) {
                changed |= fold_into_producer(module, f, &mut edit, index, &norm);
            }
        }
        // Phase 2, last norm first: into readers, so `BN → BN → linear` folds
        // both forward (the second leaves the linear as the first's reader).
        for index in (0..f.ops.len()).rev() {
            if edit.sweep.is_removed(index) {
                continue;
            }
            if let Some(norm) = Norm::of(&f.ops[index]) {
                if !fold_into_user(module, f, &mut edit, index, &norm) {
                    replace_by_affine(module, f, &mut edit.names, index, &norm);
                }
                changed = true;
            }
        }
        edit.sweep.finish(f);
        changed
    })
}

/// What the pass keeps between norms: readers and names taken.
struct Edit {
    sweep: Sweep,
    names: ParamNames,
}

/// The parameters of one batch norm, and the derivations of its `s` and `t`.
struct Norm {
    gamma: ParamId,
    beta: ParamId,
    mean: ParamId,
    var: ParamId,
    eps: f32,
}

impl Norm {
    fn of(op: &OpData) -> Option<Norm> {
        match op.op {
            Op::BatchNorm {
                weight,
                bias,
                running_mean,
                running_var,
                eps,
                ..
            } => Some(Norm {
                gamma: weight,
                beta: bias,
                mean: running_mean,
                var: running_var,
                eps,
            }),
            _ => None,
        }
    }

    /// `s = γ / sqrt(running_var + eps)`.
    fn scale(&self) -> Derivation {
        let (gamma, var) = (Derivation::param(self.gamma), Derivation::param(self.var));
        let std = Derivation::sqrt(Derivation::binary(Add, var, Derivation::Const(self.eps)));
        Derivation::binary(Div, gamma, std)
    }

    /// `t = β − running_mean·s`.
    fn shift(&self) -> Derivation {
        let mean_s = Derivation::binary(Mul, Derivation::param(self.mean), self.scale());
        Derivation::binary(Sub, Derivation::param(self.beta), mean_s)
    }
}

/// (A): folds the norm at `index` into the linear or conv producing its input.
fn fold_into_producer(module: &mut Module, f: &mut Function, edit: &mut Edit, index: usize, norm: &Norm) -> bool {
    let Some(x) = edit.sweep.arg(f, index, 0) else {
        return false;
    };
    // The function's input has no weights to fold into.
    let Some(producer) = edit.sweep.producer(x) else {
        return false;
    };
    // Another reader of x would see the folded numbers (a producer after
    // its reader is broken IR, the verifier's to report).
    if edit.sweep.use_count(f, x) != 1 || producer >= index {
        return false;
    }
    // Not weights, or an epilogue (an activation) between them and the norm.
    if !is_bare_weights(&f.ops[producer].op) {
        return false;
    }
    let p = Derivation::param;
    let folded = derive_weights(
        module,
        &mut edit.names,
        &mut f.ops[producer],
        |w| Derivation::scale_rows(w, norm.scale()),
        |b| match b {
            // (b − μ)·s + β
            Some(b) => {
                let centred = Derivation::binary(Sub, b, p(norm.mean));
                let scaled = Derivation::binary(Mul, centred, norm.scale());
                Derivation::binary(Add, scaled, p(norm.beta))
            }
            // β − μ·s
            None => norm.shift(),
        },
    );
    if !folded {
        return false;
    }
    if let Some(removed) = edit.sweep.remove_forwarding(f, index) {
        let locs = removed.locs.clone();
        f.ops[producer].absorb_locs(&locs);
    }
    true
}

/// (B): folds the norm at `index` into the linear or conv reading its result.
fn fold_into_user(module: &mut Module, f: &mut Function, edit: &mut Edit, index: usize, norm: &Norm) -> bool {
    // The normalised value has another reader or is the output.
    let Some(user) = edit.sweep.sole_user(f, f.ops[index].result) else {
        return false;
    };
    // A reader before its producer is broken IR, the verifier's to report.
    if user <= index {
        return false;
    }
    match &f.ops[user].op {
        Op::Linear { dropconnect: None, .. } => {}
        // Grouped: output o reads only its group's channels. Padded: the
        // zeros padding adds would have been t. Both break Wt in the bias.
        Op::Conv2d {
            geometry,
            dropconnect: None,
            ..
        } if geometry.groups == 1 && geometry.pads == [0; 4] => {}
        // Not weights, or a dropconnect mask that would hit W but not Wt.
        _ => return false,
    }
    let Some((weight, _)) = weights(&f.ops[user].op) else {
        return false;
    };
    let shift_through_w = Derivation::mat_vec(Derivation::param(weight), norm.shift());
    let folded = derive_weights(
        module,
        &mut edit.names,
        &mut f.ops[user],
        |w| Derivation::scale_cols(w, norm.scale()),
        |b| match b {
            Some(b) => Derivation::binary(Add, b, shift_through_w),
            None => shift_through_w,
        },
    );
    if !folded {
        return false;
    }
    let locs = f.ops[index].locs.clone();
    f.ops[user].absorb_locs(&locs);
    edit.sweep.remove_forwarding(f, index).is_some()
}

/// Gives the linear or conv `op` derived parameters `W' = weight(W)` and
/// `b' = bias(b)` (`bias(None)` without a bias). Names prime the old ones; a
/// new bias is `<layer>.bias`, primed until free.
fn derive_weights(
    module: &mut Module,
    names: &mut ParamNames,
    op: &mut OpData,
    weight: impl FnOnce(Derivation) -> Derivation,
    bias: impl FnOnce(Option<Derivation>) -> Derivation,
) -> bool {
    let Some((w, b)) = weights(&op.op) else {
        return false;
    };
    let Some(w_param) = param(module, w).cloned() else {
        return false;
    };
    let b_name = match b.and_then(|b| param(module, b)) {
        Some(b) => b.name.clone(),
        None => format!("{}.bias", op.layer),
    };
    let out = w_param.shape.first().copied().unwrap_or(0);
    let new_w = weight(Derivation::param(w));
    let new_w = add_derived(module, names, &w_param.name, w_param.shape, ParamRole::Weight, new_w);
    let new_b = bias(b.map(Derivation::param));
    let new_b = add_derived(module, names, &b_name, vec![out], ParamRole::Bias, new_b);
    set_weights(&mut op.op, new_w, Some(new_b))
}

/// (C): replaces the norm at `index` by a per-channel affine.
fn replace_by_affine(module: &mut Module, f: &mut Function, names: &mut ParamNames, index: usize, norm: &Norm) {
    let channels = param(module, norm.gamma).map(|g| g.shape.clone()).unwrap_or_default();
    let layer = f.ops[index].layer.clone();
    let scale = add_derived(
        module,
        names,
        &format!("{layer}.norm.scale"),
        channels.clone(),
        ParamRole::Scale,
        norm.scale(),
    );
    let shift = add_derived(
        module,
        names,
        &format!("{layer}.norm.shift"),
        channels,
        ParamRole::Shift,
        norm.shift(),
    );
    f.ops[index].op = Op::Affine { scale, shift };
}
