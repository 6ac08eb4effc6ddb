//! `fuse-residual` (infer): a conv whose only reader is the `add` that
//! closes a residual block takes the sum into its epilogue, the other
//! summand becoming its second argument. The conv adds the residual to
//! each block of its outputs while it is in cache, where the add was
//! another pass over memory (ONNX Runtime's `FusedConv` with a `Sum`
//! input, oneDNN's sum post-op). The default pipeline runs
//! `fuse-activation` before it (a conv's own steps come before the sum)
//! and again after it (the block's ReLU follows the sum).
//!
//! `relu(conv(x) + r)` computes the same numbers fused or not: the sum and
//! the ReLU map each element on its own, after the conv's own steps, in
//! the same order. The fused op keeps the locations of the ops it absorbed.
//!
//! Must not fire:
//! - when the conv's result has another reader, or is the function's
//!   output (that reader needs the value before the sum);
//! - when the other summand is defined after the conv (the conv would read
//!   it before it exists);
//! - on a conv whose epilogue adds already, or pools, or on a linear (only
//!   the conv kernels add a residual);
//! - in train mode, where the backward pass needs the intermediate values.
//!
//! ```text
//! %2: f32[N,8,6,6] = conv2d[layer2] %1, @layer2.weight, @layer2.bias kernel=3 stride=1 dilation=1 groups=1 pads=[1,1,1,1] loc(6:9)
//! %3: f32[N,8,6,6] = add[layer1] %1, %2 loc(5:5)
//! %4: f32[N,8,6,6] = relu[layer3] %3 loc(8:5)
//! ```
//! becomes
//! ```text
//! %2: f32[N,8,6,6] = conv2d[layer2] %1, %1, @layer2.weight, @layer2.bias kernel=3 stride=1 dilation=1 groups=1 pads=[1,1,1,1] epilogue(add) loc(6:9, 5:5)
//! %3: f32[N,8,6,6] = relu[layer3] %2 loc(8:5)
//! ```

use crate::rewrite::{push_step, sweep_infer, Sweep};
use nnc_ir::{EpilogueStep, Function, Mode, Module, Op};

/// Fuses each residual block's closing sum into the conv before it in the
/// `mode` function; true if anything changed.
pub fn fuse_residual(module: &mut Module, mode: Mode) -> bool {
    sweep_infer(module, mode, fuse_sum)
}

/// Absorbs the `add` that is the only reader of the conv at `index`, if
/// both allow it.
fn fuse_sum(f: &mut Function, sweep: &mut Sweep, index: usize) {
    let Op::Conv2d { epilogue, .. } = &f.ops[index].op else {
        return;
    };
    if epilogue.adds() {
        return;
    }
    let result = f.ops[index].result;
    let Some(user) = sweep.epilogue_reader(f, index) else {
        return;
    };
    if f.ops[user].op != Op::Add {
        return;
    }
    let (Some(a), Some(b)) = (sweep.arg(f, user, 0), sweep.arg(f, user, 1)) else {
        return;
    };
    let other = if a == result { b } else { a };
    // The conv reads the other summand: it must exist by then.
    let earlier = other == f.input || sweep.producer(other).is_some_and(|p| p < index);
    if !earlier || f.value_type(other) != f.value_type(result) {
        return;
    }
    if sweep.remove_replacing(f, user, result).is_none() {
        return;
    }
    sweep.push_arg(f, index, other);
    push_step(f, index, user, EpilogueStep::Add);
}
