//! `fuse-activation` (infer): a linear or conv absorbs the per-channel
//! affines and element-wise activations that directly follow it into its
//! epilogue, which applies them to each output tile while it is still in
//! cache (the "epilogue fusion" of CUTLASS, oneDNN post-ops and ONNX
//! Runtime's `FusedConv`/`FusedGemm`).
//!
//! `y = act(affine(x Wᵀ + b))` computes the same numbers whether the steps
//! run as separate ops or in the epilogue: each step maps every element (or
//! channel) on its own, in the same order. It repeats along a chain, so
//! `linear → affine → relu → sigmoid` becomes one op whose epilogue is
//! `affine, relu, sigmoid`. The fused op keeps the locations of every op it
//! absorbed.
//!
//! Must not fire:
//! - when the linear's result (or the chain so far) has another reader, or
//!   is the function's output: that reader needs the value before the step;
//! - on `softmax` (mixes all features of a sample) and `maxout` (takes the max
//!   over groups and changes the shape): neither is element-wise;
//! - on a conv whose epilogue ends in a pool (`fuse-pool`): its steps run
//!   before the pool;
//! - in train mode, where the backward pass needs the intermediate values.
//!
//! ```text
//! %1: f32[N,16] = linear[layer0] %0, @layer0.weight, @layer0.bias loc(2:1)
//! %2: f32[N,16] = elu[layer0] %1 alpha=1 loc(2:1)
//! %3: f32[N,4] = linear[layer1] %2, @layer1.weight, @layer1.bias loc(3:1)
//! %4: f32[N,4] = softmax[layer1] %3 loc(3:1)
//! ```
//! becomes
//! ```text
//! %1: f32[N,16] = linear[layer0] %0, @layer0.weight, @layer0.bias epilogue(elu alpha=1) loc(2:1)
//! %2: f32[N,4] = linear[layer1] %1, @layer1.weight, @layer1.bias loc(3:1)
//! %3: f32[N,4] = softmax[layer1] %2 loc(3:1)
//! ```

use crate::rewrite::{push_step, sweep_infer, Sweep};
use nnc_ir::{EpilogueStep, Function, Mode, Module, Op};

/// Fuses affines and element-wise activations into the linear or conv before
/// them in the `mode` function; true if anything changed.
pub fn fuse_activation(module: &mut Module, mode: Mode) -> bool {
    sweep_infer(module, mode, |f, sweep, index| {
        // Each step absorbed exposes the next op of the chain.
        while fuse_next(f, sweep, index) {}
    })
}

/// Absorbs the one reader of the result of the op at `index` into its
/// epilogue, if both allow it.
fn fuse_next(f: &mut Function, sweep: &mut Sweep, index: usize) -> bool {
    let Some(user) = sweep.epilogue_reader(f, index) else {
        return false;
    };
    let step = match &f.ops[user].op {
        Op::Affine { scale, shift } => EpilogueStep::Affine {
            scale: *scale,
            shift: *shift,
        },
        Op::Act(act) if act.is_elementwise() => EpilogueStep::Act(act.clone()),
        // Softmax and maxout are not element-wise; anything else is no step.
        _ => return false,
    };
    if sweep.remove_forwarding(f, user).is_none() {
        return false;
    }
    push_step(f, index, user, step);
    true
}
