//! `nnc build`: the inference function as Rust source, and with `--embed`
//! the weights folded once, here, into a sibling file the source embeds.

use crate::run::{load_weights, write_atomic};
use crate::{read_source, run_compile, Failure};
use nnc_driver::{Options, Quiet, Stage};
use nnc_interp::param_values;
use nnc_ir::Mode;
use nnc_runtime::io::weights::{write_safetensors, Tensor, Weights};
use std::path::{Path, PathBuf};

pub(crate) fn build(file: &PathBuf, output: &Path, embed: Option<&Path>) -> Result<String, Failure> {
    // The flags first: no point compiling for an output that will be refused.
    let to_stdout = output == Path::new("-");
    if to_stdout && embed.is_some() {
        return Err(Failure(
            "error: --embed needs a file for -o: the weights are written beside it".into(),
        ));
    }
    if output.extension().is_some_and(|e| e == "safetensors") {
        return Err(Failure(format!(
            "error: -o {}: the output is Rust source (.rs); the weights go beside it",
            output.display()
        )));
    }
    let source = read_source(file)?;
    let options = Options {
        modes: vec![Mode::Infer],
        stage: Stage::Optimized,
        passes: None,
    };
    let module = run_compile(&source, &options, &mut Quiet)?
        .module
        .ok_or_else(|| Failure("internal error: compiling produced no module".into()))?;
    let embedded = match embed {
        None => None,
        Some(weights_path) => Some(fold_weights(file, &module, weights_path, output)?),
    };
    let codegen_options = nnc_codegen::Options::build(embedded.as_ref().map(|(path, _)| {
        path.file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
    }));
    let text = nnc_codegen::generate_source(&module, &source, &codegen_options)
        .map_err(|e| Failure(format!("internal error (a bug in nnc, please report it): {e}")))?;
    if to_stdout {
        return Ok(text);
    }
    if let Some((path, bytes)) = &embedded {
        write_atomic(path, bytes)?;
    }
    if let Err(e) = write_atomic(output, text.as_bytes()) {
        // Both files or neither.
        if let Some((path, _)) = &embedded {
            let _ = std::fs::remove_file(path);
        }
        return Err(e);
    }
    match &embedded {
        Some((path, bytes)) => eprintln!(
            "wrote {} and {} ({} bytes of folded weights)",
            output.display(),
            path.display(),
            bytes.len()
        ),
        None => eprintln!("wrote {}", output.display()),
    }
    Ok(String::new())
}

/// Where the folded weights go (`model.rs` → `model.embedded.safetensors`)
/// and their bytes: every parameter the inference function reads, derived
/// ones computed from `weights_path`'s numbers.
fn fold_weights(
    file: &PathBuf,
    module: &nnc_ir::Module,
    weights_path: &Path,
    output: &Path,
) -> Result<(PathBuf, Vec<u8>), Failure> {
    let stem = output
        .file_stem()
        .map_or_else(|| "model".into(), |s| s.to_string_lossy().into_owned());
    let sibling = output.with_file_name(format!("{stem}.embedded.safetensors"));
    if same_file(&sibling, weights_path) {
        return Err(Failure(format!(
            "error: --embed {}: that is where the folded weights would be written; rename the input",
            weights_path.display()
        )));
    }
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
    let bytes = write_safetensors(&folded).map_err(|e| Failure(format!("error: {e}")))?;
    Ok((sibling, bytes))
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}
