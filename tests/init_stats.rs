//! Every init scheme and alias of the language, drawn the way `nnc init`
//! draws them, has the mean and spread its paper gives (within 3 %), stays
//! inside its bounds, and is the same for the same seed.

use nnc_diag::SourceFile;
use nnc_driver::{compile, Options, Quiet, Stage};
use nnc_interp::init_weights;
use nnc_ir::Mode;

const FAN_IN: f64 = 500.0;
const FAN_OUT: f64 = 400.0;

/// (init= text, act= text, expected std, expected bound if uniform/truncated)
fn cases() -> Vec<(&'static str, &'static str, f64, Option<f64>)> {
    let xavier_u = (6.0 / (FAN_IN + FAN_OUT)).sqrt();
    let he_u = (6.0 / FAN_IN).sqrt();
    let lecun_u = (3.0 / FAN_IN).sqrt();
    let mut out = Vec::new();
    for alias in ["xavier", "glorot", "glorot_uniform", "xavier_uniform"] {
        out.push((alias, "tanh", xavier_u / 3f64.sqrt(), Some(xavier_u)));
    }
    for alias in ["xavier_normal", "glorot_normal"] {
        out.push((alias, "tanh", (2.0 / (FAN_IN + FAN_OUT)).sqrt(), None));
    }
    for alias in ["he", "kaiming", "kaiming_normal", "msra", "he_normal"] {
        out.push((alias, "relu", (2.0 / FAN_IN).sqrt(), None));
    }
    for alias in ["he_uniform", "kaiming_uniform"] {
        out.push((alias, "relu", he_u / 3f64.sqrt(), Some(he_u)));
    }
    for alias in ["lecun", "lecun_normal"] {
        out.push((alias, "selu", (1.0 / FAN_IN).sqrt(), None));
    }
    out.push(("lecun_uniform", "selu", lecun_u / 3f64.sqrt(), Some(lecun_u)));
    out.push(("normal(std=0.02)", "relu", 0.02, None));
    out.push(("uniform(0.1)", "relu", 0.2 / 12f64.sqrt(), Some(0.1)));
    // Keras VarianceScaling: the truncated normal's own std is sqrt(scale/n) after the 0.8796 correction.
    let vs = (2.0 / ((FAN_IN + FAN_OUT) / 2.0)).sqrt();
    out.push((
        "variance_scaling(scale=2, mode=fan_avg)",
        "relu",
        vs,
        Some(2.0 * vs / 0.879_625_661_034_239_8),
    ));
    out.push((
        "variance_scaling(1, fan_out, normal)",
        "relu",
        (1.0 / FAN_OUT).sqrt(),
        None,
    ));
    let vu = (3.0 / FAN_IN).sqrt();
    out.push(("variance_scaling(dist=uniform)", "relu", vu / 3f64.sqrt(), Some(vu)));
    out.push(("auto", "relu", (2.0 / FAN_IN).sqrt(), None));
    out.push(("auto", "selu", (1.0 / FAN_IN).sqrt(), None));
    out.push(("auto", "sigmoid", xavier_u / 3f64.sqrt(), Some(xavier_u)));
    out
}

fn draw(init: &str, act: &str, seed: u64) -> Vec<f32> {
    let text = format!("model I {{ input 500 dense 500 -> 400 init={init} act={act} }}");
    let source = SourceFile::new("i.nn", text);
    let options = Options {
        modes: vec![Mode::Infer],
        stage: Stage::Lowered,
        passes: None,
        loss: None,
    };
    let module = compile(&source, &options, &mut Quiet).unwrap().module.unwrap();
    // 500 × 400 = 200 000 draws, as `nnc init` makes them.
    let mut weights = init_weights(&module, seed);
    weights.tensors.remove("layer0.weight").unwrap().data
}

#[test]
fn every_scheme_has_the_published_spread() {
    for (init, act, std, bound) in cases() {
        let w = draw(init, act, 1);
        let n = w.len() as f64;
        let mean = w.iter().map(|v| f64::from(*v)).sum::<f64>() / n;
        let sd = (w.iter().map(|v| (f64::from(*v) - mean).powi(2)).sum::<f64>() / n).sqrt();
        assert!(mean.abs() < 0.03 * std, "{init}: mean {mean} (std {std})");
        assert!(
            (sd - std).abs() < 0.03 * std,
            "init={init} act={act}: std {sd}, expected {std}"
        );
        if let Some(b) = bound {
            let max = w.iter().fold(0f64, |m, v| m.max(f64::from(v.abs())));
            assert!(max <= b * (1.0 + 1e-6), "{init}: {max} outside ±{b}");
            assert!(max > 0.97 * b, "{init}: draws never reach the bound {b} (max {max})");
        }
    }
}

#[test]
fn the_same_seed_gives_the_same_weights() {
    assert_eq!(draw("he", "relu", 9), draw("he", "relu", 9));
    assert_ne!(draw("he", "relu", 9), draw("he", "relu", 10));
}

#[test]
fn orthogonal_weights_are_orthogonal() {
    let w = draw("orthogonal(gain=2)", "relu", 4);
    // 400 rows of 500: W Wᵀ = gain² I.
    for (i, j) in [(0usize, 0usize), (0, 1), (17, 17), (17, 399), (250, 250)] {
        let dot: f64 = (0..500)
            .map(|k| f64::from(w[i * 500 + k]) * f64::from(w[j * 500 + k]))
            .sum();
        let expected = if i == j { 4.0 } else { 0.0 };
        assert!((dot - expected).abs() < 1e-3, "row {i}·row {j} = {dot}");
    }
}
