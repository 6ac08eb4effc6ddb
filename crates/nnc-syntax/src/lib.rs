//! The `.nn` language front end: the pest grammar in `grammar/nn.pest` and a
//! typed AST with spans. This crate knows nothing of the IR.

pub mod ast;
mod dump;
mod nesting;
mod parse;

pub use dump::dump;
pub use nesting::MAX_NESTING;
pub use parse::parse;
