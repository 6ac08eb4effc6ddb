//! `compile`: the one place that knows nnc's stage order.
//!
//! ```text
//! source ─parse─▶ AST ─lower─▶ IR (one function per mode) ─passes─▶ optimized IR ─grad─▶ + backward
//! ```
//!
//! The command line, the `model!` macro and the tests all call [`compile`],
//! so the order of stages is written once (Cranelift's `Context::optimize`,
//! naga's `Frontend::inner`).

use nnc_diag::{Diagnostic, SourceFile};
pub use nnc_ir::grad::build::GradError;
use nnc_ir::grad::build::{build, default_loss};
pub use nnc_ir::grad::Loss;
use nnc_ir::{Mode, Module};
pub use nnc_passes::{Observer, PassError, PassInfo};
use nnc_syntax::ast;
pub use nnc_syntax::MAX_NESTING;
use std::fmt;

/// How far to take a program.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// Parse only.
    Ast,
    /// Parse, check and lower; no passes.
    Lowered,
    /// Lower, then run the passes.
    Optimized,
    /// Optimize, then derive the backward function of the train function
    /// (which `modes` must include) for [`Options::loss`].
    Grad,
}

/// What to compile and how.
#[derive(Clone, Debug)]
pub struct Options {
    /// The functions to build, in this order.
    pub modes: Vec<Mode>,
    pub stage: Stage,
    /// Passes to run instead of each mode's default pipeline.
    pub passes: Option<Vec<String>>,
    /// The loss the grad stage differentiates; `None` for §9's default
    /// (from the model's last op).
    pub loss: Option<Loss>,
}

/// A compiled program: the AST, the module at the requested stage (absent
/// for [`Stage::Ast`]) and the warnings met on the way.
#[derive(Debug)]
pub struct Compiled {
    pub ast: ast::Model,
    pub module: Option<Module>,
    pub warnings: Vec<Diagnostic>,
}

/// Why compiling failed.
#[derive(Debug)]
pub enum CompileError {
    /// The program is wrong: every diagnostic, errors and warnings, in
    /// source order.
    Program(Vec<Diagnostic>),
    /// A pass list is wrong (an unknown name, a pass for another mode), or
    /// a pass broke the IR (a compiler bug, reported with the IR before it).
    Pass(PassError),
    /// The train function cannot be differentiated with this loss.
    Grad(GradError),
}

impl Default for Options {
    fn default() -> Options {
        Options {
            modes: vec![Mode::Infer],
            stage: Stage::Optimized,
            passes: None,
            loss: None,
        }
    }
}

impl fmt::Display for CompileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CompileError::Program(d) => {
                let errors = d.iter().filter(|d| d.is_error()).count();
                write!(f, "the program has {errors} error(s)")
            }
            CompileError::Pass(e) => e.fmt(f),
            CompileError::Grad(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for CompileError {}

/// The no-op observer, for callers that dump nothing between passes.
pub struct Quiet;

impl Observer for Quiet {
    fn after_pass(&mut self, _pass: &PassInfo, _changed: bool, _module: &Module) {}

    fn watches(&self) -> bool {
        false
    }
}

/// Parses, checks, lowers and optimizes `source` as far as `options` ask,
/// calling `observer` after each pass.
pub fn compile(source: &SourceFile, options: &Options, observer: &mut dyn Observer) -> Result<Compiled, CompileError> {
    let ast = nnc_syntax::parse(source).map_err(CompileError::Program)?;
    if options.stage == Stage::Ast {
        return Ok(Compiled {
            ast,
            module: None,
            warnings: Vec::new(),
        });
    }
    let lowered = nnc_lower::lower(&ast, source, &options.modes);
    let Some(mut module) = lowered.module else {
        return Err(CompileError::Program(lowered.diagnostics));
    };
    if matches!(options.stage, Stage::Optimized | Stage::Grad) {
        let names: Vec<Vec<&str>> = options
            .modes
            .iter()
            .map(|mode| match &options.passes {
                Some(list) => list.iter().map(String::as_str).collect(),
                None => nnc_passes::pipeline(*mode).to_vec(),
            })
            .collect();
        let pipelines: Vec<(Mode, &[&str])> = options
            .modes
            .iter()
            .copied()
            .zip(names.iter().map(Vec::as_slice))
            .collect();
        // Lowering is deterministic: a failure's report lowers again rather
        // than the pipeline keeping a copy of a large module.
        let relower = || nnc_lower::lower(&ast, source, &options.modes).module;
        nnc_passes::run_pipelines(&mut module, &pipelines, observer, Some(&relower)).map_err(CompileError::Pass)?;
    }
    if options.stage == Stage::Grad {
        let loss = match (options.loss, module.function(Mode::Train)) {
            (Some(loss), _) => loss,
            (None, Some(train)) => default_loss(train),
            (None, None) => {
                return Err(CompileError::Grad(GradError(
                    "the grad stage needs the train function".into(),
                )))
            }
        };
        module.backward = Some(build(&module, loss).map_err(CompileError::Grad)?);
        // The passes over the backward; the manager verifies the result (a
        // backward that breaks an invariant is a bug of the grad stage or
        // of a pass, reported with the IR).
        let backward = nnc_passes::backward_pipeline();
        nnc_passes::run_passes(&mut module, Mode::Train, backward, observer).map_err(CompileError::Pass)?;
    }
    Ok(Compiled {
        ast,
        module: Some(module),
        warnings: lowered.diagnostics,
    })
}
