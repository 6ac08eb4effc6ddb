//! Weight files (safetensors) and arrays (npy).

pub mod npy;
pub mod weights;
