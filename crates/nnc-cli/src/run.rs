//! `nnc init`, `nnc run` and `nnc export`: the commands that touch numbers.
//! Every output goes through `output` (a temporary file, then a rename), so
//! a failing or interrupted command never leaves a partial file.

use crate::output;
use crate::{read_source, report, run_compile, Failure};
use nnc_driver::{Options, Quiet, Stage};
use nnc_interp::{audit_weights, init_weights, non_finite, Footprint, Interpreter, Part};
use nnc_ir::{Mode, Module};
use nnc_runtime::io::npy::{check_input, read_npy_file, write_npy};
use nnc_runtime::io::weights::{read_safetensors_file, write_safetensors, Expected, Weights};
use nnc_runtime::memory::{Bytes, Limit};
use std::path::Path;

/// The module with every declared parameter: both modes, lowered. Weight
/// files hold exactly these.
pub(crate) fn declared(file: &Path) -> Result<Module, Failure> {
    let source = read_source(file)?;
    let options = Options {
        modes: Mode::ALL.to_vec(),
        stage: Stage::Lowered,
        passes: None,
        loss: None,
    };
    let compiled = run_compile(&source, &options, &mut Quiet)?;
    compiled
        .module
        .ok_or_else(|| Failure("internal error: lowering produced no module".into()))
}

fn compiled(file: &Path, mode: Mode, stage: Stage, passes: Option<Vec<String>>) -> Result<Module, Failure> {
    let source = read_source(file)?;
    let options = Options {
        modes: vec![mode],
        stage,
        passes,
        loss: None,
    };
    let compiled = run_compile(&source, &options, &mut Quiet)?;
    compiled
        .module
        .ok_or_else(|| Failure("internal error: compiling produced no module".into()))
}

/// Refuses a command whose planned memory exceeds the limit in force,
/// naming its largest part.
pub(crate) fn check_memory(footprint: &Footprint, what: impl FnOnce() -> String) -> Result<(), Failure> {
    let Some(limit) = Limit::current().map_err(|e| Failure(format!("error: {e}")))? else {
        return Ok(());
    };
    limit.check(footprint.total, what).map_err(|e| {
        let part = &footprint.largest;
        Failure(format!("error: {e}; the largest part is {}: {}", part.what, part.bytes))
    })
}

pub(crate) fn init(file: &Path, seed: u64, output: &Path) -> Result<String, Failure> {
    let sink = output::resolve(output, &[("the model", file)])?;
    let module = declared(file)?;
    check_memory(&Footprint::init(&module), || {
        format!("drawing the parameters of {}", file.display())
    })?;
    let weights = init_weights(&module, seed);
    let bytes = write_safetensors(&weights).map_err(|e| Failure(format!("error: {e}")))?;
    output::write(&[(&sink, &bytes)])?;
    let count: usize = weights.tensors.values().map(|t| t.data.len()).sum();
    report(&format!(
        "wrote {} ({} tensors, {count} parameters, seed {seed})",
        output.display(),
        weights.tensors.len()
    ));
    Ok(String::new())
}

/// Reads a weight file and checks it against every declared parameter.
pub(crate) fn load_weights(file: &Path, path: &Path) -> Result<Weights, Failure> {
    let module = declared(file)?;
    let expected: Vec<Expected> = module
        .params
        .iter()
        .filter(|p| !p.is_derived())
        .map(|p| Expected {
            name: &p.name,
            shape: &p.shape,
        })
        .collect();
    // The file's bytes, then its tensors as f32: twice its size.
    if let Some(meta) = std::fs::metadata(path).ok().filter(|m| m.is_file()) {
        let file = Bytes(meta.len());
        let footprint = Footprint {
            total: file + file,
            largest: Part {
                what: format!("the weight file {}", path.display()),
                bytes: file,
            },
        };
        check_memory(&footprint, || format!("loading {}", path.display()))?;
    }
    let (weights, warnings) = read_safetensors_file(path, &expected).map_err(|e| Failure(format!("error: {e}")))?;
    for warning in warnings {
        report(&format!("warning: {warning}"));
    }
    let audit = audit_weights(&module, &weights).map_err(|e| Failure(format!("error: {}: {e}", path.display())))?;
    for warning in audit {
        report(&format!("warning: {}: {warning}", path.display()));
    }
    Ok(weights)
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn run(
    file: &Path,
    weights_path: &Path,
    input: &Path,
    output: &Path,
    mode: Mode,
    seed: u64,
    no_opt: bool,
    threads: Option<usize>,
) -> Result<String, Failure> {
    let inputs = [("the model", file), ("--weights", weights_path), ("--input", input)];
    let sink = output::resolve(output, &inputs)?;
    let stage = if no_opt { Stage::Lowered } else { Stage::Optimized };
    let module = compiled(file, mode, stage, None)?;
    let weights = load_weights(file, weights_path)?;
    let (shape, data) = read_input(input)?;
    let func = module
        .function(mode)
        .ok_or_else(|| Failure(format!("internal error: no {mode} function")))?;
    let batch = check_input(&shape, &func.value_type(func.input).dims)
        .map_err(|e| Failure(format!("error: {}: {e}", input.display())))?;
    let threads = thread_count(threads);
    let mut footprint = Footprint::run(&module, mode, batch, threads).map_err(|e| Failure(format!("error: {e}")))?;
    // The output's .npy bytes are a second copy of it.
    footprint.total = footprint.total + Bytes::of_f32(batch * func.value_type(func.output).numel());
    check_memory(&footprint, || {
        format!("running {} on a batch of {batch}", file.display())
    })?;
    let mut interp = Interpreter::new(&module, mode, &weights).map_err(|e| Failure(format!("error: {e}")))?;
    let y = interp
        .run(&data, batch, threads, seed)
        .map_err(|e| Failure(format!("error: {e}")))?;
    let bad_outputs = non_finite(&y);
    if bad_outputs > 0 {
        // Say where they come from: run again, op by op (only now, so a
        // finite run pays nothing).
        let origin = interp
            .trace_non_finite(&data, batch, threads, seed)
            .map_err(|e| Failure(format!("error: {e}")))?;
        let from = origin.map_or(String::new(), |o| {
            format!(
                "; they first appear in {}, {} of its {} values",
                o.origin, o.count, o.of
            )
        });
        report(&format!(
            "warning: {bad_outputs} of the {} output values are not finite (NaN or ±inf){from}",
            y.len()
        ));
    }
    let out_shape: Vec<usize> = std::iter::once(batch)
        .chain(interp.output_shape().iter().copied())
        .collect();
    let bytes = write_npy(&out_shape, &y).map_err(|e| Failure(format!("error: {e}")))?;
    output::write(&[(&sink, &bytes)])?;
    Ok(String::new())
}

/// Reads an `--input` array, warning when it holds NaN or ±inf.
pub(crate) fn read_input(input: &Path) -> Result<(Vec<usize>, Vec<f32>), Failure> {
    let (shape, data) = read_npy_file(input).map_err(|e| Failure(format!("error: {e}")))?;
    let bad_inputs = non_finite(&data);
    if bad_inputs > 0 {
        report(&format!(
            "warning: {}: {bad_inputs} of the {} input values are not finite (NaN or ±inf)",
            input.display(),
            data.len()
        ));
    }
    Ok((shape, data))
}

/// `--threads`, capped to the cores: more threads than cores only adds
/// switching (and `--threads 10000` would start 10,000 of them). Zero is
/// refused by the flag's parser.
pub(crate) fn thread_count(asked: Option<usize>) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    match asked {
        None => cores,
        Some(n) if n > cores => {
            report(&format!(
                "warning: --threads {n}: this machine has {cores} core{}; using {cores}",
                if cores == 1 { "" } else { "s" }
            ));
            cores
        }
        Some(n) => n,
    }
}

pub(crate) fn export(file: &Path, weights_path: &Path, output: &Path) -> Result<String, Failure> {
    // The inference graph with batch norms unfolded: ONNX Runtime then
    // computes from the raw parameters, which checks our folding too.
    let sink = output::resolve(output, &[("the model", file), ("--weights", weights_path)])?;
    let passes = Some(vec!["eliminate-dropout".to_string(), "dce".to_string()]);
    let module = compiled(file, Mode::Infer, Stage::Optimized, passes)?;
    let weights = load_weights(file, weights_path)?;
    let lookup = |name: &str| {
        weights.tensors.get(name).map(|t| nnc_onnx::TensorData {
            shape: &t.shape,
            data: &t.data,
        })
    };
    let bytes = nnc_onnx::export(&module, &lookup).map_err(|e| Failure(format!("error: {e}")))?;
    output::write(&[(&sink, &bytes)])?;
    Ok(String::new())
}
