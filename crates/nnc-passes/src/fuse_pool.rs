//! `fuse-pool` (infer): a conv whose only reader is a max pool with
//! non-overlapping windows (kernel = stride, unpadded) takes the pool into
//! its epilogue, as its last step. The conv's kernel pools each block of
//! outputs while it is still in cache, from its own buffer, instead of
//! writing the full map for the pool to read back: one op fewer, one pass
//! over memory fewer, and one point fewer where the threads wait for each
//! other (at batch 1 a thread pools the channels its conv units wrote).
//!
//! `maxpool(act(conv(x)))` computes the same numbers fused or not: the
//! epilogue's steps map each output on its own, and the pool then takes
//! the max of each window of the same values (NaN wins, as in the pool
//! op). The pool's result type becomes the conv's. The fused op keeps the
//! locations of the pool it absorbed.
//!
//! Must not fire:
//! - when the conv's result has another reader, or is the function's
//!   output (that reader needs the map before the pool);
//! - on a pool whose windows overlap or leave gaps (kernel ≠ stride), or
//!   that is padded: the kernels pool whole windows of their own rows;
//! - on an average pool;
//! - on a conv whose epilogue adds a residual, or pools already;
//! - in train mode, where the backward pass needs the map (and the pool's
//!   arg-max).
//!
//! The default pipeline runs it after both `fuse-activation`s, so that the
//! conv's own steps are in its epilogue before the pool closes it
//! (`fuse-activation` does not append to an epilogue that pools).
//!
//! ```text
//! %1: f32[N,8,6,6] = conv2d[layer0] %0, @layer0.weight, @layer0.bias kernel=3 stride=1 dilation=1 groups=1 pads=[1,1,1,1] epilogue(relu) loc(2:5)
//! %2: f32[N,8,3,3] = maxpool[layer1] %1 kernel=2 stride=2 pads=[0,0,0,0] loc(3:5)
//! ```
//! becomes
//! ```text
//! %1: f32[N,8,3,3] = conv2d[layer0] %0, @layer0.weight, @layer0.bias kernel=3 stride=1 dilation=1 groups=1 pads=[1,1,1,1] epilogue(relu, maxpool window=2) loc(2:5, 3:5)
//! ```

use crate::rewrite::{push_step, sweep_infer, Sweep};
use nnc_ir::{EpilogueStep, Function, Mode, Module, Op};

/// Fuses each max pool into the conv before it in the `mode` function;
/// true if anything changed.
pub fn fuse_pool(module: &mut Module, mode: Mode) -> bool {
    sweep_infer(module, mode, fuse_next_pool)
}

/// Absorbs the max pool that is the only reader of the conv at `index`, if
/// both allow it.
fn fuse_next_pool(f: &mut Function, sweep: &mut Sweep, index: usize) {
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
    let Op::MaxPool(g) = &f.ops[user].op else {
        return;
    };
    if g.kernel != g.stride || g.kernel < 2 || g.pads != [0; 4] {
        return;
    }
    let (window, pooled) = (g.kernel, f.ops[user].result);
    if sweep.remove_replacing(f, user, result).is_none() {
        return;
    }
    // The conv's only reader was the pool: its result is the pooled map now.
    f.values[result.0 as usize] = f.values[pooled.0 as usize].clone();
    push_step(f, index, user, EpilogueStep::MaxPool { window });
}
