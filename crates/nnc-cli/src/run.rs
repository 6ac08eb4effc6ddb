//! `nnc init`, `nnc run` and `nnc export`: the commands that touch numbers.
//! Every output is written atomically (a temporary file, then a rename), so
//! a failing command never leaves a partial file.

use crate::{read_source, run_compile, Failure};
use nnc_driver::{Options, Quiet, Stage};
use nnc_interp::{audit_weights, init_weights, non_finite, Footprint, Interpreter};
use nnc_ir::{Mode, Module};
use nnc_runtime::io::npy::{check_input, read_npy, write_npy};
use nnc_runtime::io::weights::{read_safetensors, write_safetensors, Expected, Weights};
use nnc_runtime::memory::{Bytes, Limit};
use std::path::{Path, PathBuf};

/// The module with every declared parameter: both modes, lowered. Weight
/// files hold exactly these.
fn declared(file: &PathBuf) -> Result<Module, Failure> {
    let source = read_source(file)?;
    let options = Options {
        modes: Mode::ALL.to_vec(),
        stage: Stage::Lowered,
        passes: None,
    };
    let compiled = run_compile(&source, &options, &mut Quiet)?;
    compiled
        .module
        .ok_or_else(|| Failure("internal error: lowering produced no module".into()))
}

fn compiled(file: &PathBuf, mode: Mode, stage: Stage, passes: Option<Vec<String>>) -> Result<Module, Failure> {
    let source = read_source(file)?;
    let options = Options {
        modes: vec![mode],
        stage,
        passes,
    };
    let compiled = run_compile(&source, &options, &mut Quiet)?;
    compiled
        .module
        .ok_or_else(|| Failure("internal error: compiling produced no module".into()))
}

/// Refuses a command whose planned memory exceeds the limit in force,
/// naming its largest part.
fn check_memory(footprint: &Footprint, what: impl FnOnce() -> String) -> Result<(), Failure> {
    let Some(limit) = Limit::current().map_err(|e| Failure(format!("error: {e}")))? else {
        return Ok(());
    };
    limit.check(footprint.total, what).map_err(|e| {
        let part = &footprint.largest;
        Failure(format!("error: {e}; the largest part is {}: {}", part.what, part.bytes))
    })
}

pub(crate) fn init(file: &PathBuf, seed: u64, output: &Path) -> Result<String, Failure> {
    let module = declared(file)?;
    check_memory(&Footprint::init(&module), || {
        format!("drawing the parameters of {}", file.display())
    })?;
    let weights = init_weights(&module, seed);
    let bytes = write_safetensors(&weights).map_err(|e| Failure(format!("error: {e}")))?;
    write_atomic(output, &bytes)?;
    let count: usize = weights.tensors.values().map(|t| t.data.len()).sum();
    eprintln!(
        "wrote {} ({} tensors, {count} parameters, seed {seed})",
        output.display(),
        weights.tensors.len()
    );
    Ok(String::new())
}

/// Reads a weight file and checks it against every declared parameter.
pub(crate) fn load_weights(file: &PathBuf, path: &Path) -> Result<Weights, Failure> {
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
    let bytes = std::fs::read(path).map_err(|e| Failure(format!("error: cannot read {}: {e}", path.display())))?;
    let what = path.display().to_string();
    let (weights, warnings) =
        read_safetensors(&bytes, &what, &expected).map_err(|e| Failure(format!("error: {what}: {e}")))?;
    for warning in warnings {
        eprintln!("warning: {warning}");
    }
    let audit = audit_weights(&module, &weights).map_err(|e| Failure(format!("error: {what}: {e}")))?;
    for warning in audit {
        eprintln!("warning: {what}: {warning}");
    }
    Ok(weights)
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn run(
    file: &PathBuf,
    weights_path: &Path,
    input: &Path,
    output: &Path,
    mode: Mode,
    seed: u64,
    no_opt: bool,
    threads: Option<usize>,
) -> Result<String, Failure> {
    let stage = if no_opt { Stage::Lowered } else { Stage::Optimized };
    let module = compiled(file, mode, stage, None)?;
    let weights = load_weights(file, weights_path)?;
    let bytes = std::fs::read(input).map_err(|e| Failure(format!("error: cannot read {}: {e}", input.display())))?;
    let what = input.display().to_string();
    let (shape, data) = read_npy(&bytes, &what).map_err(|e| Failure(format!("error: {what}: {e}")))?;
    let bad_inputs = non_finite(&data);
    if bad_inputs > 0 {
        eprintln!(
            "warning: {what}: {bad_inputs} of the {} input values are not finite (NaN or ±inf)",
            data.len()
        );
    }
    let func = module
        .function(mode)
        .ok_or_else(|| Failure(format!("internal error: no {mode} function")))?;
    let batch =
        check_input(&shape, &func.value_type(func.input).dims).map_err(|e| Failure(format!("error: {what}: {e}")))?;
    let threads = threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
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
    if non_finite(&y) > 0 {
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
        eprintln!(
            "warning: {} of the {} output values are not finite (NaN or ±inf){from}",
            non_finite(&y),
            y.len()
        );
    }
    let out_shape: Vec<usize> = std::iter::once(batch)
        .chain(interp.output_shape().iter().copied())
        .collect();
    let bytes = write_npy(&out_shape, &y).map_err(|e| Failure(format!("error: {e}")))?;
    write_atomic(output, &bytes)?;
    Ok(String::new())
}

pub(crate) fn export(file: &PathBuf, weights_path: &Path, output: &Path) -> Result<String, Failure> {
    // The inference graph with batch norms unfolded: ONNX Runtime then
    // computes from the raw parameters, which checks our folding too.
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
    write_atomic(output, &bytes)?;
    Ok(String::new())
}

/// Writes `bytes` to `path` through a temporary file in the same folder and
/// a rename, so readers never see a partial file and failures leave none.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), Failure> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "output".into());
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let result = std::fs::write(&tmp, bytes).and_then(|()| std::fs::rename(&tmp, path));
    result.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Failure(format!("error: cannot write {}: {e}", path.display()))
    })
}
