//! `nnc grad`: one training-mode forward and backward on a batch, written
//! as a weight file of gradients (each under its parameter's own name) and
//! the loss.

use crate::run::{check_memory, declared, load_weights, read_input, thread_count};
use crate::{output, read_source, report, run_compile, Failure};
use nnc_driver::{Loss, Options, Quiet, Stage};
use nnc_interp::{class_label, non_finite, Footprint, Gradients, Targets};
use nnc_ir::grad::Target;
use nnc_ir::{Mode, ParamRole};
use nnc_runtime::io::npy::{check_input, read_npy_file, read_npy_int_file};
use nnc_runtime::io::weights::{write_safetensors, Tensor, Weights};
use nnc_runtime::memory::Bytes;
use std::path::Path;

/// The files `nnc grad` reads and writes.
pub(crate) struct Files<'a> {
    pub model: &'a Path,
    pub weights: &'a Path,
    pub input: &'a Path,
    pub target: &'a Path,
    pub output: &'a Path,
}

/// What the loss is computed against, read from `--target`.
enum TargetData {
    Classes(Vec<u32>),
    Values(Vec<f32>),
}

pub(crate) fn grad(
    files: &Files<'_>,
    loss: Option<Loss>,
    seed: u64,
    threads: Option<usize>,
) -> Result<String, Failure> {
    let inputs = [
        ("the model", files.model),
        ("--weights", files.weights),
        ("--input", files.input),
        ("--target", files.target),
    ];
    let sink = output::resolve(files.output, &inputs)?;
    let source = read_source(files.model)?;
    let options = Options {
        modes: vec![Mode::Train],
        stage: Stage::Grad,
        passes: None,
        loss,
    };
    let module = run_compile(&source, &options, &mut Quiet)?
        .module
        .ok_or_else(|| Failure("internal error: compiling produced no module".into()))?;
    let (Some(train), Some(backward)) = (module.function(Mode::Train), &module.backward) else {
        return Err(Failure("internal error: the grad stage produced no backward".into()));
    };
    let weights = load_weights(files.model, files.weights)?;
    let (shape, x) = read_input(files.input)?;
    let batch = check_input(&shape, &train.value_type(train.input).dims)
        .map_err(|e| Failure(format!("error: {}: {e}", files.input.display())))?;
    let target = read_target(files.target, &backward.target, backward.loss, batch)?;
    let threads = thread_count(threads);
    let mut footprint =
        Footprint::run(&module, Mode::Train, batch, threads).map_err(|e| Failure(format!("error: {e}")))?;
    // Saved values and gradients: as much again as the forward, and a
    // gradient per parameter.
    let params: usize = module.params.iter().map(|p| p.shape.iter().product::<usize>()).sum();
    footprint.total = footprint.total + footprint.total + Bytes::of_f32(params);
    check_memory(&footprint, || {
        format!("the gradients of {} on a batch of {batch}", files.model.display())
    })?;
    let mut gradients = Gradients::new(&module, &weights).map_err(|e| Failure(format!("error: {e}")))?;
    let targets = match &target {
        TargetData::Classes(c) => Targets::Classes(c),
        TargetData::Values(v) => Targets::Values(v),
    };
    let loss_value = gradients
        .run(&x, batch, targets, threads, seed)
        .map_err(|e| Failure(format!("error: {e}")))?;

    // Every stored trainable parameter, under its own name: one the train
    // pipeline removed (a bias before batch norm, which the norm cancels)
    // has gradient zero, exactly.
    let mut out = Weights::default();
    let mut not_finite = Vec::new();
    for p in declared(files.model)?.params.iter().filter(|p| !p.is_derived()) {
        if matches!(p.role, ParamRole::RunningMean | ParamRole::RunningVar) {
            continue;
        }
        let len: usize = p.shape.iter().product();
        let data = gradients
            .gradient(&p.name)
            .map_or_else(|| vec![0.0; len], <[f32]>::to_vec);
        if non_finite(&data) > 0 {
            not_finite.push(p.name.clone());
        }
        let tensor = Tensor {
            shape: p.shape.clone(),
            data,
        };
        out.tensors.insert(p.name.clone(), tensor);
    }
    let loss_tensor = Tensor {
        shape: vec![1],
        data: vec![loss_value as f32],
    };
    out.tensors.insert("loss".into(), loss_tensor);
    if !loss_value.is_finite() || !not_finite.is_empty() {
        report(&format!(
            "warning: the loss is {loss_value}; gradients with non-finite values: {}",
            if not_finite.is_empty() {
                "none".into()
            } else {
                not_finite.join(", ")
            }
        ));
    }
    let bytes = write_safetensors(&out).map_err(|e| Failure(format!("error: {e}")))?;
    output::write(&[(&sink, &bytes)])?;
    report(&format!(
        "loss {loss_value:.6} ({} on a batch of {batch}); wrote {} gradients to {}",
        backward.loss,
        out.tensors.len() - 1,
        files.output.display()
    ));
    Ok(String::new())
}

/// A target file that cannot be read; one of the wrong dtype says which
/// targets the loss takes.
fn unreadable(e: nnc_runtime::Error, hint: &str) -> Failure {
    match e {
        nnc_runtime::Error::WrongDtype { .. } => Failure(format!("error: {e} ({hint})")),
        other => Failure(format!("error: {other}")),
    }
}

/// Reads and checks `--target` against what the loss needs: class indices
/// in range for cross-entropy, finite values of the output's shape (in
/// [0, 1] for binary cross-entropy) otherwise. Errors name the row.
fn read_target(path: &Path, target: &Target, loss: Loss, batch: usize) -> Result<TargetData, Failure> {
    let at = |what: String| Failure(format!("error: {}: {what}", path.display()));
    match target {
        Target::Classes { classes } => {
            let hint = "cross_entropy takes class indices, int32 or int64 of shape [N]; --loss mse or bce \
                        takes f32 targets of the output's shape";
            let (shape, labels) = read_npy_int_file(path).map_err(|e| unreadable(e, hint))?;
            if shape != [batch] {
                return Err(at(format!(
                    "cross_entropy needs one class index per sample, shape ({batch},), got {shape:?}"
                )));
            }
            let out = labels
                .iter()
                .enumerate()
                .map(|(row, label)| class_label(row, *label, *classes).map_err(at))
                .collect::<Result<_, _>>()?;
            Ok(TargetData::Classes(out))
        }
        Target::Values(ty) => {
            let hint = format!(
                "{} takes f32 targets of the output's shape [N, {}]; class indices go with --loss cross_entropy",
                loss.name(),
                ty.dims.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
            );
            let (shape, values) = read_npy_file(path).map_err(|e| unreadable(e, &hint))?;
            let n = check_input(&shape, &ty.dims).map_err(|e| at(format!("{} targets: {e}", loss.name())))?;
            if n != batch {
                return Err(at(format!("{n} targets for {batch} inputs")));
            }
            let per_sample = ty.numel().max(1);
            for (i, v) in values.iter().enumerate() {
                nnc_runtime::kernels::loss::check_value(i / per_sample, *v, loss == Loss::Bce).map_err(at)?;
            }
            Ok(TargetData::Values(values))
        }
    }
}
