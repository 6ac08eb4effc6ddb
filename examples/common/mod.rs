//! What both digit examples share: the five bundled digits, a printout a
//! person can check, and the comparison with `nnc run`'s output.

use nnc::runtime::io::npy::read_npy;
use nnc::runtime::ndarray::{Array2, ArrayView2};
use std::process::ExitCode;

/// Runs an example's body, printing its error, if any, as the failure.
pub fn run(body: impl FnOnce() -> Result<ExitCode, String>) -> ExitCode {
    body().unwrap_or_else(|e| {
        eprintln!("{e}");
        ExitCode::FAILURE
    })
}

/// Five 8×8 digits (labels 0–4), pixels in [0, 1]: `examples/data/digits5.npy`.
pub fn digits() -> Result<Array2<f32>, String> {
    let bytes = include_bytes!("../data/digits5.npy");
    let (shape, data) = read_npy(bytes, "digits5.npy").map_err(|e| e.to_string())?;
    Array2::from_shape_vec((shape[0], shape[1]), data).map_err(|e| e.to_string())
}

/// Prints each sample's class probabilities, their sum and the likeliest
/// class; with `nnc run`'s output for the same inputs (a `.npy` path as the
/// first argument), the largest difference from it too.
pub fn report(probabilities: ArrayView2<f32>) -> ExitCode {
    for (i, row) in probabilities.rows().into_iter().enumerate() {
        let likeliest = row
            .iter()
            .enumerate()
            .fold((0, f32::MIN), |best, (c, p)| if *p > best.1 { (c, *p) } else { best });
        let shown: Vec<String> = row.iter().map(|p| format!("{p:.4}")).collect();
        println!(
            "digit {i}: [{}]  sum {:.6}  likeliest {}",
            shown.join(" "),
            row.sum(),
            likeliest.0
        );
    }
    let Some(path) = std::env::args().nth(1) else {
        println!("(untrained weights from `init(1)`: compare with `nnc run`, see the README)");
        return ExitCode::SUCCESS;
    };
    let theirs = match std::fs::read(&path)
        .map_err(|e| e.to_string())
        .and_then(|b| read_npy(&b, &path).map_err(|e| e.to_string()))
    {
        Ok((_, data)) => data,
        Err(e) => {
            eprintln!("cannot read {path}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let ours = probabilities.iter().copied().collect::<Vec<_>>();
    if theirs.len() != ours.len() {
        eprintln!("{path} holds {} values, this model gave {}", theirs.len(), ours.len());
        return ExitCode::FAILURE;
    }
    let diff = ours.iter().zip(&theirs).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    println!("largest difference from {path}: {diff:e}");
    if diff <= 1e-5 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
