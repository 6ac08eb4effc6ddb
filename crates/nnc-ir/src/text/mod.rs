//! The text form of the IR: a deterministic printer and a parser on
//! `grammar/ir.pest`, such that `print(parse(print(m))) == print(m)`.

mod parse;
mod print;

pub use parse::{parse_module, ParseError};
pub use print::print_module;
