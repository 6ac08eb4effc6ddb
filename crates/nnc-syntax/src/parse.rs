//! Source text → [`ast::Model`], with parse errors as diagnostics.

use crate::ast;
use nnc_diag::{Diagnostic, SourceFile};

/// Parses one `.nn` file. A syntax error stops the parse (pest does not
/// recover), so the error list holds one diagnostic.
pub fn parse(source: &SourceFile) -> Result<ast::Model, Vec<Diagnostic>> {
    let _ = source;
    Err(vec![])
}
