//! nnc's runtime: the kernels that interpreted and generated models call,
//! seeded weight initialisation, and weight (safetensors) and array (npy)
//! I/O.
//!
//! This crate is a leaf: it knows nothing of the IR. Kernels are small,
//! safe functions over `f32` slices with their sizes in the signature, in
//! batch-major NCHW layout; the interpreter and the generated code plan the
//! buffers and call them. Its vocabulary (activations, epilogue steps) is
//! its own; `nnc-interp` and `nnc-codegen` each map the IR's onto it in one
//! exhaustive `match`.

pub mod aligned;
mod error;
pub mod fold;
pub mod init;
pub mod io;
pub mod kernels;
pub mod memory;
mod qr;
pub mod rng;
pub mod team;
mod workspace;

pub use aligned::AlignedBuf;
pub use error::{Error, TensorDecl};
pub use rng::Rng;
pub use team::Team;
pub use workspace::Workspace;

/// The array crate of the generated `forward`, so a user needs no
/// matching version of their own.
pub use ndarray;
