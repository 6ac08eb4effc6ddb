//! nnc
