//! Runs a list of passes over one mode of a module, verifying after each
//! (tract's patch-then-check, Cranelift's verifier between passes) and
//! telling an [`Observer`], which the CLI uses for `--after NAME`,
//! `--after-all` and `--after-change`.

use crate::registry::{lookup, PassInfo, PASSES};
use nnc_ir::text::print_module;
use nnc_ir::verify::{verify, VerifyError};
use nnc_ir::{Mode, Module};
use std::fmt;

/// Watches the pipeline: called after each pass has run and verified.
pub trait Observer {
    fn after_pass(&mut self, pass: &PassInfo, changed: bool, module: &Module);
}

/// The observer that watches nothing: `run_passes(.., &mut ())`.
impl Observer for () {
    fn after_pass(&mut self, _pass: &PassInfo, _changed: bool, _module: &Module) {}
}

/// Why a pipeline did not run to the end.
#[derive(Debug)]
pub enum PassError {
    /// A name the registry does not know (a user error).
    UnknownPass { name: String, known: Vec<&'static str> },
    /// A pass asked for in a mode it does not support (a user error).
    WrongMode { pass: &'static str, mode: Mode },
    /// The module was already invalid before any pass ran (a compiler bug in
    /// whatever built it).
    InvalidInput { errors: Vec<VerifyError> },
    /// The IR is invalid after a pass: a compiler bug in that pass.
    VerifyFailed { pass: &'static str, errors: Vec<VerifyError>, ir_before: String },
}

/// Runs the passes named in `names`, in order, on the `mode` function of
/// `module`. Every name is checked before any pass runs; the module is
/// verified before the first pass and after each one.
pub fn run_passes(module: &mut Module, mode: Mode, names: &[&str], observer: &mut dyn Observer) -> Result<(), PassError> {
    let passes = resolve(names, mode)?;
    verify(module).map_err(|errors| PassError::InvalidInput { errors })?;
    for pass in passes {
        // Kept so a failure can show what the pass was given.
        let before = module.clone();
        let changed = (pass.run)(module, mode);
        if let Err(errors) = verify(module) {
            return Err(PassError::VerifyFailed { pass: pass.name, errors, ir_before: print_module(&before) });
        }
        observer.after_pass(pass, changed, module);
    }
    Ok(())
}

/// Looks every name up and checks its mode.
fn resolve(names: &[&str], mode: Mode) -> Result<Vec<&'static PassInfo>, PassError> {
    names
        .iter()
        .map(|name| {
            let pass = lookup(name).ok_or_else(|| PassError::UnknownPass {
                name: name.to_string(),
                known: PASSES.iter().map(|p| p.name).collect(),
            })?;
            if !pass.runs_in(mode) {
                return Err(PassError::WrongMode { pass: pass.name, mode });
            }
            Ok(pass)
        })
        .collect()
}

impl fmt::Display for PassError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PassError::UnknownPass { name, known } => {
                write!(f, "unknown pass `{name}`; the passes are: {}", known.join(", "))
            }
            PassError::WrongMode { pass, mode } => {
                let modes: Vec<&str> = lookup(pass).map(|p| p.modes.iter().map(|m| m.name()).collect()).unwrap_or_default();
                write!(f, "pass `{pass}` does not run in {mode} mode; it runs in: {}", modes.join(", "))
            }
            PassError::InvalidInput { errors } => {
                writeln!(f, "internal compiler error: the IR is invalid before any pass ran:")?;
                write_errors(f, errors)
            }
            PassError::VerifyFailed { pass, errors, ir_before } => {
                writeln!(f, "internal compiler error: the IR is invalid after pass `{pass}`:")?;
                write_errors(f, errors)?;
                writeln!(f, "the IR before `{pass}` was:")?;
                f.write_str(ir_before)
            }
        }
    }
}

fn write_errors(f: &mut fmt::Formatter<'_>, errors: &[VerifyError]) -> fmt::Result {
    for e in errors {
        writeln!(f, "  - {}", e.message)?;
    }
    Ok(())
}

impl std::error::Error for PassError {}
