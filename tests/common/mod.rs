//! What the numeric tests share: compiling a model, weights as `nnc init`
//! draws them but jittered so folding is exercised, inputs, and the
//! bundled models.

#![allow(clippy::unwrap_used, dead_code)]

pub mod programs;
pub mod reference;

use nnc_diag::SourceFile;
use nnc_driver::{compile, Options, Quiet, Stage};
use nnc_interp::init_weights;
use nnc_ir::{Mode, Module};
use nnc_runtime::io::weights::Weights;
use nnc_runtime::Rng;

pub fn module(text: &str, mode: Mode, stage: Stage) -> Module {
    module_of(text, &[mode], stage)
}

/// The module of `modes`' functions at `stage` (with `Stage::Grad` and the
/// train mode: and its backward, for §9's default loss).
pub fn module_of(text: &str, modes: &[Mode], stage: Stage) -> Module {
    let source = SourceFile::new("t.nn", text);
    let options = Options {
        modes: modes.to_vec(),
        stage,
        passes: None,
        loss: None,
    };
    compile(&source, &options, &mut Quiet).unwrap().module.unwrap()
}

/// `|a − b| ≤ 1e-5 · |b|` element-wise, with a floor of 1e-5 of 1e-3 of
/// the largest magnitude (for values that are zero up to rounding): the
/// generated code against the interpreter.
pub fn assert_close(what: &str, a: &[f32], b: &[f32]) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    let scale = b.iter().fold(0f32, |m, v| m.max(v.abs()));
    for (i, (p, q)) in a.iter().zip(b).enumerate() {
        assert!(p.is_finite(), "{what}: non-finite value at {i}");
        let tolerance = 1e-5 * q.abs().max(1e-3 * scale).max(f32::MIN_POSITIVE);
        assert!(
            (p - q).abs() <= tolerance,
            "{what}: element {i}: generated {p}, interpreter {q}"
        );
    }
}

/// Weights as `nnc init` draws them, with the norm and PReLU parameters
/// moved away from their trivial starting values so folding is exercised.
pub fn weights(text: &str, seed: u64) -> Weights {
    let declared = module(text, Mode::Infer, Stage::Lowered);
    let mut weights = init_weights(&declared, seed);
    let mut rng = Rng::new(seed, 99);
    let jitter = |lo: f32, hi: f32, rng: &mut Rng| lo + (hi - lo) * rng.uniform();
    for p in &declared.params {
        let Some(tensor) = weights.tensors.get_mut(&p.name) else {
            continue;
        };
        for v in tensor.data.iter_mut() {
            if p.name.ends_with(".running_var") || p.name.ends_with(".norm.weight") {
                *v = jitter(0.5, 2.0, &mut rng);
            } else if p.name.ends_with(".running_mean") || p.name.ends_with(".norm.bias") || p.name.ends_with(".bias") {
                *v = jitter(-0.3, 0.3, &mut rng);
            } else if p.name.ends_with(".act.weight") {
                *v = jitter(0.05, 0.4, &mut rng);
            }
        }
    }
    weights
}

pub fn input(per_sample: usize, batch: usize, seed: u64) -> Vec<f32> {
    let mut rng = Rng::new(seed, 7);
    (0..per_sample * batch).map(|_| rng.normal() as f32).collect()
}

pub fn models() -> Vec<(String, String)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
    let mut out: Vec<(String, String)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let path = e.unwrap().path();
            (
                path.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read_to_string(&path).unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}
