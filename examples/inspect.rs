//! Compiles a model with nnc's library API and shows what the inference
//! pipeline did to it: which ops remain and which parameters are folded.
//!
//! Run: `cargo run --example inspect -- models/seed_elu_bn_dropout.nn`

use nnc::diag::{render_plain, SourceFile};
use nnc::driver::{compile, CompileError, Options, Quiet, Stage};
use nnc::ir::{Mode, ParamSource};
use std::process::ExitCode;

fn main() -> ExitCode {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "models/seed_elu_bn_dropout.nn".into());
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) => {
            eprintln!("cannot read {path}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let source = SourceFile::new(path.clone(), text);
    let options = Options {
        modes: vec![Mode::Infer],
        stage: Stage::Optimized,
        passes: None,
        loss: None,
    };
    let module = match compile(&source, &options, &mut Quiet) {
        Ok(compiled) => compiled.module,
        Err(CompileError::Program(diagnostics)) => {
            eprint!("{}", render_plain(&diagnostics, &source));
            return ExitCode::FAILURE;
        }
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let Some(module) = module else {
        return ExitCode::FAILURE;
    };
    let Some(infer) = module.function(Mode::Infer) else {
        return ExitCode::FAILURE;
    };
    println!("{}: {} ops in inference", module.name, infer.ops.len());
    for op in &infer.ops {
        println!(
            "  {:<14} {:<10} -> {}",
            op.op.name(),
            op.layer,
            infer.value_type(op.result)
        );
    }
    let derived: Vec<&str> = module
        .params
        .iter()
        .filter(|p| matches!(p.source, ParamSource::Derived(_)))
        .map(|p| p.name.as_str())
        .collect();
    println!(
        "{} parameters computed at load time: {}",
        derived.len(),
        derived.join(", ")
    );
    ExitCode::SUCCESS
}
