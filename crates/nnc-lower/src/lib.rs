//! The checker and lowering: a `.nn` AST becomes a [`Module`] with one
//! function per requested mode, or a list of diagnostics.
//!
//! Checking and lowering are one walk over the statements, in source order:
//! each statement's options are validated and resolved (activations, norms,
//! dropouts, inits with their fans), the per-sample shape flows through it,
//! and its ops are appended to the IR. After the first error no more IR is
//! built, but the walk goes on with the best shape it knows, so one run
//! reports every independent error.
//!
//! Both modes lower to the same op sequence: how batch norm, dropout and
//! RReLU behave is a property of the function's [`Mode`], not of the ops.

mod act;
pub mod codes;
mod init;
mod lower;
mod norm;
mod options;
mod values;

use nnc_diag::{Diagnostic, SourceFile};
use nnc_ir::{Mode, Module};
use nnc_syntax::ast;

/// What lowering produced: a module when there was no error, and every
/// diagnostic (warnings included) in source order.
#[derive(Debug)]
pub struct Lowered {
    pub module: Option<Module>,
    pub diagnostics: Vec<Diagnostic>,
}

/// Checks `model` and lowers it into one function per mode in `modes`.
pub fn lower(model: &ast::Model, source: &SourceFile, modes: &[Mode]) -> Lowered {
    lower::Lowerer::run(model, source, modes)
}
