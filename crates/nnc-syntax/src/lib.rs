//! The `.nn` language front end: the pest grammar in `grammar/nn.pest` and a
//! typed AST with spans. This crate knows nothing of the IR.

pub mod ast;
mod parse;

pub use parse::parse;
