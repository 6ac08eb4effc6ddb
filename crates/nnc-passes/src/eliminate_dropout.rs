//! `eliminate-dropout` (infer): every kind of dropout is the identity at
//! inference, so remove it.
//!
//! - `dropout`, `alpha_dropout` and `dropblock` ops are removed; their
//!   readers read the op's argument instead.
//! - `dropconnect` on a linear or conv is cleared.
//!
//! Why it is exact: inverted dropout scales the kept elements by 1/(1−p)
//! while training, so the expectation already matches the unscaled input and
//! inference uses the input as is (Srivastava et al. 2014, PyTorch
//! `nn.Dropout`); alpha dropout (Klambauer et al. 2017, `nn.AlphaDropout`)
//! and DropBlock (Ghiasi et al. 2018) are likewise the identity outside
//! training, and dropconnect masks weights only while training.
//!
//! Must not fire in train mode, where the masks are the point; the function
//! refuses any mode but infer even when called directly.
//!
//! ```text
//! %1: f32[N,16] = linear[layer0] %0, @layer0.weight, @layer0.bias dropconnect=0.2 loc(2:1)
//! %2: f32[N,16] = dropout[layer0] %1 p=0.5 loc(2:1)
//! %3: f32[N,4] = linear[layer1] %2, @layer1.weight, @layer1.bias loc(3:1)
//! ```
//! becomes
//! ```text
//! %1: f32[N,16] = linear[layer0] %0, @layer0.weight, @layer0.bias loc(2:1)
//! %2: f32[N,4] = linear[layer1] %1, @layer1.weight, @layer1.bias loc(3:1)
//! ```

use crate::rewrite::Sweep;
use nnc_ir::{Mode, Module, Op};

/// Removes dropout ops and clears dropconnect in the `mode` function; true
/// if anything changed.
pub fn eliminate_dropout(module: &mut Module, mode: Mode) -> bool {
    // Training draws the masks: dropout is only the identity at inference.
    if mode != Mode::Infer {
        return false;
    }
    let Some(f) = module.function_mut(mode) else {
        return false;
    };
    let mut sweep = Sweep::new(f);
    let mut changed = false;
    for index in 0..f.ops.len() {
        let op = &f.ops[index].op;
        let is_dropout = matches!(op, Op::Dropout { .. } | Op::AlphaDropout { .. } | Op::DropBlock { .. });
        if is_dropout && sweep.remove_forwarding(f, index).is_some() {
            continue;
        }
        if let Op::Linear { dropconnect, .. } | Op::Conv2d { dropconnect, .. } = &mut f.ops[index].op {
            changed |= dropconnect.take().is_some();
        }
    }
    sweep.finish(f) || changed
}
