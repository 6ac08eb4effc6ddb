//! `nnc build`: the inference function as Rust source, and with `--embed`
//! the weights folded once, here, into a sibling file the source embeds;
//! with `--train`, the training step too.

use crate::output::{self, Sink};
use crate::run::load_weights;
use crate::{read_source, report, run_compile, Failure};
use nnc_driver::{Options, Quiet, Stage};
use nnc_interp::param_values;
use nnc_ir::Mode;
use nnc_runtime::io::weights::{write_safetensors, Tensor, Weights};
use std::path::{Path, PathBuf};

/// With `train`, the training step too, for `loss` (`None`: §9's default).
pub(crate) fn build(
    file: &Path,
    output: &Path,
    embed: Option<&Path>,
    train: bool,
    loss: Option<nnc_driver::Loss>,
) -> Result<String, Failure> {
    // The flags first: no point compiling for an output that will be refused.
    if output.extension().is_some_and(|e| e == "safetensors") {
        return Err(Failure(format!(
            "error: -o {}: the output is Rust source (.rs); the weights go beside it",
            output.display()
        )));
    }
    let mut inputs = vec![("the model", file)];
    inputs.extend(embed.map(|w| ("--embed", w)));
    let sink = output::resolve(output, &inputs)?;
    let sibling = match embed {
        Some(_) if !output::is_file(&sink) => {
            return Err(Failure(format!(
                "error: --embed needs a file for -o (not {}): the weights are written beside it",
                output.display()
            )))
        }
        Some(_) => Some(sibling_of(output)),
        None => None,
    };
    let sibling_sink = match &sibling {
        Some(path) => Some(output::resolve(path, &inputs)?),
        None => None,
    };
    let source = read_source(file)?;
    let options = Options {
        modes: if train {
            vec![Mode::Infer, Mode::Train]
        } else {
            vec![Mode::Infer]
        },
        stage: if train { Stage::Grad } else { Stage::Optimized },
        passes: None,
        loss,
    };
    let module = run_compile(&source, &options, &mut Quiet)?
        .module
        .ok_or_else(|| Failure("internal error: compiling produced no module".into()))?;
    let folded = match embed {
        None => None,
        Some(weights_path) => Some(fold_weights(file, &module, weights_path)?),
    };
    let codegen_options = nnc_codegen::Options {
        train,
        ..nnc_codegen::Options::build(sibling.as_ref().map(|path| {
            path.file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
        }))
    };
    let text = nnc_codegen::generate_source(&module, &source, &codegen_options)
        .map_err(|e| Failure(format!("internal error (a bug in nnc, please report it): {e}")))?;
    // The pair is written together: both temporaries complete, then the
    // weights renamed before the source that embeds them.
    let mut outputs: Vec<(&Sink, &[u8])> = Vec::new();
    if let (Some(sink), Some(bytes)) = (&sibling_sink, &folded) {
        outputs.push((sink, bytes));
    }
    outputs.push((&sink, text.as_bytes()));
    output::write(&outputs)?;
    match (&sibling, &folded) {
        (Some(path), Some(bytes)) => report(&format!(
            "wrote {} and {} ({} bytes of folded weights)",
            output.display(),
            path.display(),
            bytes.len()
        )),
        _ if output::is_file(&sink) => report(&format!("wrote {}", output.display())),
        _ => {}
    }
    Ok(String::new())
}

/// Where the folded weights go: `model.rs` → `model.embedded.safetensors`.
fn sibling_of(output: &Path) -> PathBuf {
    let stem = output
        .file_stem()
        .map_or_else(|| "model".into(), |s| s.to_string_lossy().into_owned());
    output.with_file_name(format!("{stem}.embedded.safetensors"))
}

/// The bytes of the folded weights: every parameter the inference
/// function reads, derived ones computed from `weights_path`'s numbers.
fn fold_weights(file: &Path, module: &nnc_ir::Module, weights_path: &Path) -> Result<Vec<u8>, Failure> {
    let stored = load_weights(file, weights_path)?;
    let values = param_values(module, &stored).map_err(|e| Failure(format!("error: {e}")))?;
    let mut folded = Weights::default();
    for id in module
        .function(Mode::Infer)
        .map(|f| f.params_read())
        .unwrap_or_default()
    {
        let p = module.param(id);
        let tensor = Tensor {
            shape: p.shape.clone(),
            data: values[id.0 as usize].clone(),
        };
        folded.tensors.insert(p.name.clone(), tensor);
    }
    write_safetensors(&folded).map_err(|e| Failure(format!("error: {e}")))
}
