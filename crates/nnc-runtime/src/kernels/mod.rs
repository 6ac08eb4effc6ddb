//! The kernels. Layouts are batch-major: features `[N, F]`, images
//! `[N, C, H, W]`; per-channel parameters run along axis 1, and `inner` is
//! the number of elements per channel per sample (H·W for images, 1 for
//! features).

pub mod act;
pub mod conv;
pub mod dense;
pub mod dropout;
pub mod epilogue;
pub(crate) mod gemm;
pub mod loss;
pub mod norm;
mod panel;
pub mod pool;
pub(crate) mod simd;
