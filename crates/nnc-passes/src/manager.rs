//! Runs a list of passes over one mode of a module, verifying after each
//! (tract's patch-then-check, Cranelift's verifier between passes) and
//! telling an [`Observer`], which the CLI uses for `--after NAME`,
//! `--after-all` and `--after-change`.

use crate::registry::{lookup, PassInfo, PASSES};
use nnc_ir::text::{print_module, print_module_with_errors};
use nnc_ir::verify::{verify, VerifyError};
use nnc_ir::{Mode, Module};
use std::fmt;

/// Watches the pipeline: called after each pass has run and verified.
pub trait Observer {
    fn after_pass(&mut self, pass: &PassInfo, changed: bool, module: &Module);

    /// False for an observer that ignores what it is shown: the module is
    /// then verified once after the last pass instead of after each (a
    /// failure is still pinned on the pass that broke it, by a replay).
    fn watches(&self) -> bool {
        true
    }
}

/// The observer that watches nothing: `run_passes(.., &mut ())`.
impl Observer for () {
    fn after_pass(&mut self, _pass: &PassInfo, _changed: bool, _module: &Module) {}

    fn watches(&self) -> bool {
        false
    }
}

/// Why a pipeline did not run to the end.
#[derive(Debug)]
pub enum PassError {
    /// A name the registry does not know (a user error).
    UnknownPass { name: String, known: Vec<&'static str> },
    /// A pass asked for in a mode it does not support (a user error).
    WrongMode { pass: &'static str, mode: Mode },
    /// The module was already invalid before any pass ran: a compiler bug in
    /// whatever built it (lowering, or a hand-written IR file).
    InvalidInput { errors: Vec<VerifyError>, ir: String },
    /// The IR is invalid after a pass: a compiler bug in that pass.
    /// `ir_before` is what the pass was given; `ir_after` what it made, with
    /// each error as a `// error:` line after the line it is about.
    VerifyFailed {
        pass: &'static str,
        errors: Vec<VerifyError>,
        ir_before: String,
        ir_after: String,
    },
}

/// Runs the passes named in `names`, in order, on the `mode` function of
/// `module`. Every name is checked before any pass runs; the module is
/// verified before the first pass and after each one (after the last only,
/// for an observer that does not [watch](Observer::watches), which still
/// tells an input that was invalid from a pass that broke it).
pub fn run_passes(
    module: &mut Module,
    mode: Mode,
    names: &[&str],
    observer: &mut dyn Observer,
) -> Result<(), PassError> {
    run_pipelines(module, &[(mode, names)], observer, None)
}

/// Rebuilds the module the passes were given, for a failure's report: the
/// driver lowers the program again instead of keeping a copy.
pub type Rebuild<'a> = &'a dyn Fn() -> Option<Module>;

/// Runs one pipeline per mode, one after the other, as [`run_passes`] runs
/// one: the module is verified once before all of them, not once per mode.
/// With `rebuild`, no copy of the module is kept for a failure's report.
pub fn run_pipelines(
    module: &mut Module,
    pipelines: &[(Mode, &[&str])],
    observer: &mut dyn Observer,
    rebuild: Option<Rebuild<'_>>,
) -> Result<(), PassError> {
    let mut steps = Vec::new();
    for (mode, names) in pipelines {
        steps.extend(resolve(names, *mode)?.into_iter().map(|pass| (*mode, pass)));
    }
    run_steps(module, &steps, observer, rebuild)
}

/// Runs passes already looked up: what tests call with a pass that is not
/// in the registry.
#[cfg(test)]
pub(crate) fn run_resolved(
    module: &mut Module,
    mode: Mode,
    passes: &[&PassInfo],
    observer: &mut dyn Observer,
) -> Result<(), PassError> {
    let steps: Vec<(Mode, &PassInfo)> = passes.iter().map(|pass| (mode, *pass)).collect();
    run_steps(module, &steps, observer, None)
}

/// Runs each pass on its mode's function, verifying as [`run_passes`] says.
pub(crate) fn run_steps(
    module: &mut Module,
    steps: &[(Mode, &PassInfo)],
    observer: &mut dyn Observer,
    rebuild: Option<Rebuild<'_>>,
) -> Result<(), PassError> {
    // An observer that ignores the module (`check`, `build`, the macro)
    // lets the pipeline verify once, at the end: a failure there replays
    // the steps from the input, verifying it first, to say who broke it.
    let each = observer.watches();
    if each || steps.is_empty() {
        if let Err(errors) = verify(module) {
            let ir = print_module_with_errors(module, &errors);
            return Err(PassError::InvalidInput { errors, ir });
        }
    }
    // What the first pass is given, for a failure's report. Passes are
    // deterministic, so the IR pass k was given is this one after passes
    // 0..k: one copy (or none, with `rebuild`) instead of one per pass.
    let input = match rebuild {
        Some(_) => None,
        None => Some(module.clone()),
    };
    for (k, (mode, pass)) in steps.iter().enumerate() {
        let changed = (pass.run)(module, *mode);
        if each || k + 1 == steps.len() {
            if let Err(errors) = verify(module) {
                let input = input.or_else(|| rebuild.and_then(|rebuild| rebuild()));
                return Err(blame(input, steps, module, errors));
            }
        }
        observer.after_pass(pass, changed, module);
    }
    Ok(())
}

/// The error for a module found invalid after some step: verifies `input`
/// (it may have been invalid before any pass ran), then replays the steps
/// on it, verifying after each, to find the first pass that broke it and
/// what it was given.
fn blame(input: Option<Module>, steps: &[(Mode, &PassInfo)], broken: &Module, errors: Vec<VerifyError>) -> PassError {
    if let Some(mut input) = input {
        if let Err(errors) = verify(&input) {
            let ir = print_module_with_errors(&input, &errors);
            return PassError::InvalidInput { errors, ir };
        }
        for (mode, pass) in steps {
            let before = print_module(&input);
            (pass.run)(&mut input, *mode);
            if let Err(errors) = verify(&input) {
                return PassError::VerifyFailed {
                    pass: pass.name,
                    ir_after: print_module_with_errors(&input, &errors),
                    errors,
                    ir_before: before,
                };
            }
        }
    }
    // Not reproduced: a pass that is not deterministic, a bug of its own.
    let last = steps.last().map_or("?", |(_, p)| p.name);
    PassError::VerifyFailed {
        pass: last,
        ir_after: print_module_with_errors(broken, &errors),
        errors,
        ir_before: "(not reproduced on a replay: a pass is not deterministic)".to_string(),
    }
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
                let modes: Vec<&str> = lookup(pass)
                    .map(|p| p.modes.iter().map(|m| m.name()).collect())
                    .unwrap_or_default();
                write!(
                    f,
                    "pass `{pass}` does not run in {mode} mode; it runs in: {}",
                    modes.join(", ")
                )
            }
            PassError::InvalidInput { errors, ir } => {
                writeln!(f, "the IR is invalid before any pass ran (a bug in what built it):")?;
                write_errors(f, errors)?;
                writeln!(f, "--- the IR, errors marked ---")?;
                f.write_str(ir)
            }
            PassError::VerifyFailed {
                pass,
                errors,
                ir_before,
                ir_after,
            } => {
                writeln!(f, "the IR is invalid after pass `{pass}` (a bug in that pass):")?;
                write_errors(f, errors)?;
                writeln!(f, "--- the IR before `{pass}` ---")?;
                f.write_str(ir_before)?;
                writeln!(f, "--- the IR after `{pass}`, errors marked ---")?;
                f.write_str(ir_after)
            }
        }
    }
}

fn write_errors(f: &mut fmt::Formatter<'_>, errors: &[VerifyError]) -> fmt::Result {
    for e in errors {
        writeln!(f, "  - {e}")?;
    }
    Ok(())
}

impl std::error::Error for PassError {}
