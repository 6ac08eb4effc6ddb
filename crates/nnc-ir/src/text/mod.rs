//! The text form of the IR: a deterministic printer and a parser on
//! `grammar/ir.pest`, such that `print(parse(print(m))) == print(m)`.
//!
//! `docs/ir-format.md` describes the format for users. In short:
//!
//! ```text
//! model SeedMlp
//! // note: drop-redundant-bias: removed @layer0.bias
//!
//! param @layer0.weight: f32[10,800] weight = init he_normal fan_in=800 fan_out=10 normal(mean=0, std=0.05)
//!
//! func @infer(%0: f32[N,800]) -> f32[N,10] {
//!   %1: f32[N,10] = linear[layer0] %0, @layer0.weight loc(3:5)
//!   return %1
//! }
//! ```
//!
//! The printer numbers values in program order (`%0` is the input, `%k` the
//! result of the k-th op), whatever their arena ids, so removing an op does
//! not leave holes; the parser builds a fresh arena in that order. The
//! printer never panics, even on a module the verifier rejects: ids that
//! point nowhere print as `@?7` and `%?7`, which is what a verifier report
//! ([`print_module_with_errors`]) needs.

mod parse;
mod parse_grad;
mod print;

pub use parse::{parse_module, ParseError};
pub use print::{print_derivation, print_function, print_function_with_marker, print_module, print_module_with_errors};
