//! Weight files (safetensors) and arrays (npy), and the bounded reading
//! both rest on: a file is never trusted for its own size.

pub mod input;
pub mod npy;
pub mod weights;
