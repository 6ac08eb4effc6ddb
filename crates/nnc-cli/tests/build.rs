//! `nnc build` as a user runs it: the source it writes, the folded weights
//! beside it with `--embed` (checked against batch-norm folding done by
//! hand), and the refusals that leave nothing behind.

#![allow(clippy::unwrap_used, clippy::panic)]

use nnc_runtime::io::weights::{read_safetensors, Expected};
use std::path::Path;

mod common;

use common::{files_in, nnc, s, scratch, stderr};

const MODEL: &str = "model Small {\n    input 3\n    dense 3 -> 2 act=relu norm=batch\n}\n";

#[test]
fn build_writes_commented_source_and_embed_folds_the_batch_norm() {
    let dir = scratch("happy");
    let model = dir.join("small.nn");
    std::fs::write(&model, MODEL).unwrap();
    let out = dir.join("small.rs");
    let o = nnc(&["build", s(&model), "-o", s(&out)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(text.contains("pub struct Small"), "{text}");
    assert!(text.contains("// line 3: dense 3 -> 2 act=relu norm=batch"), "{text}");
    assert!(!text.contains("fn embedded"), "no embedded() without --embed");
    let printed = nnc(&["build", s(&model), "-o", "-"]);
    assert!(printed.status.success());
    assert_eq!(common::stdout(&printed), text, "`-o -` prints what -o FILE writes");

    // Weights with a non-trivial batch norm: γ, β, mean, var by hand.
    let weights = dir.join("w.safetensors");
    let o = nnc(&["init", s(&model), "--seed", "3", "-o", s(&weights)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let mut w = read_all(&weights);
    w.tensors.get_mut("layer0.norm.weight").unwrap().data = vec![2.0, 0.5];
    w.tensors.get_mut("layer0.norm.bias").unwrap().data = vec![0.25, -1.0];
    w.tensors.get_mut("layer0.norm.running_mean").unwrap().data = vec![1.0, -2.0];
    w.tensors.get_mut("layer0.norm.running_var").unwrap().data = vec![3.0, 0.25];
    std::fs::write(&weights, nnc_runtime::io::weights::write_safetensors(&w).unwrap()).unwrap();

    let o = nnc(&["build", s(&model), "-o", s(&out), "--embed", s(&weights)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(
        text.contains("include_bytes!(\"small.embedded.safetensors\")"),
        "{text}"
    );
    let folded = read_all(&dir.join("small.embedded.safetensors"));
    // y = γ (x·W + b − mean) / sqrt(var + eps) + β, eps = 1e-5: rows of W
    // scale by k = γ / sqrt(var + eps), the bias becomes (b − mean)·k + β.
    let (wt, b) = (&w.tensors["layer0.weight"].data, &w.tensors["layer0.bias"].data);
    let gamma = [2.0f64, 0.5];
    let (beta, mean, var) = ([0.25f64, -1.0], [1.0f64, -2.0], [3.0f64, 0.25]);
    for o in 0..2 {
        let k = gamma[o] / (var[o] + 1e-5).sqrt();
        for i in 0..3 {
            let want = f64::from(wt[o * 3 + i]) * k;
            let got = f64::from(folded.tensors["layer0.weight'"].data[o * 3 + i]);
            assert!(
                (got - want).abs() <= 1e-6 * want.abs().max(1e-3),
                "W'[{o},{i}] = {got}, want {want}"
            );
        }
        let want = (f64::from(b[o]) - mean[o]) * k + beta[o];
        let got = f64::from(folded.tensors["layer0.bias'"].data[o]);
        assert!(
            (got - want).abs() <= 1e-6 * want.abs().max(1e-3),
            "b'[{o}] = {got}, want {want}"
        );
    }
    // Only what inference reads: no running statistics at run time.
    assert_eq!(folded.tensors.len(), 2, "{:?}", folded.tensors.keys());
}

fn read_all(path: &Path) -> nnc_runtime::io::weights::Weights {
    let bytes = std::fs::read(path).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let names: Vec<String> = file.names().into_iter().map(String::from).collect();
    let shapes: Vec<Vec<usize>> = names.iter().map(|n| file.tensor(n).unwrap().shape().to_vec()).collect();
    let expected: Vec<Expected> = names
        .iter()
        .zip(&shapes)
        .map(|(name, shape)| Expected { name, shape })
        .collect();
    read_safetensors(&bytes, "test", &expected).unwrap().0
}

#[test]
fn failed_builds_leave_nothing_behind() {
    let dir = scratch("refused");
    let model = dir.join("small.nn");
    std::fs::write(&model, MODEL).unwrap();
    let bad = dir.join("bad.nn");
    std::fs::write(&bad, "model Bad {\n    input 3\n    dense 3 -> 2 act=reul\n}\n").unwrap();
    let out = dir.join("out.rs");
    let before = files_in(&dir);

    let o = nnc(&["build", s(&bad), "-o", s(&out)]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("bad.nn:3:22"), "{}", stderr(&o));

    let o = nnc(&[
        "build",
        s(&model),
        "-o",
        s(&out),
        "--embed",
        s(&dir.join("missing.safetensors")),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("missing.safetensors"), "{}", stderr(&o));

    let wrong = dir.join("wrong.safetensors");
    let o = nnc(&["init", s(&bad.with_file_name("x.nn")), "-o", s(&wrong)]);
    assert_eq!(o.status.code(), Some(1), "a missing model is an error too");
    let other = dir.join("other.nn");
    std::fs::write(&other, "model O { input 3 dense 3 -> 5 }").unwrap();
    let o = nnc(&["init", s(&other), "-o", s(&wrong)]);
    assert!(o.status.success());
    let o = nnc(&["build", s(&model), "-o", s(&out), "--embed", s(&wrong)]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("layer0.weight"), "names the tensor: {}", stderr(&o));
    std::fs::remove_file(&wrong).unwrap();
    std::fs::remove_file(&other).unwrap();

    let o = nnc(&["build", s(&model), "-o", s(&dir.join("w.safetensors"))]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("Rust source"), "{}", stderr(&o));

    // The input weights where the folded ones would go: refused, not overwritten.
    let clash = dir.join("out.embedded.safetensors");
    let o = nnc(&["init", s(&model), "-o", s(&clash)]);
    assert!(o.status.success());
    let original = std::fs::read(&clash).unwrap();
    let o = nnc(&["build", s(&model), "-o", s(&out), "--embed", s(&clash)]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(std::fs::read(&clash).unwrap(), original);
    std::fs::remove_file(&clash).unwrap();

    assert_eq!(files_in(&dir), before, "no output and no temporary file");
}

#[test]
fn build_train_adds_the_training_step_for_the_chosen_loss() {
    let dir = scratch("train");
    let model = dir.join("small.nn");
    std::fs::write(&model, MODEL).unwrap();
    let out = dir.join("small.rs");
    let o = nnc(&["build", s(&model), "--train", "-o", s(&out)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = std::fs::read_to_string(&out).unwrap();
    for item in [
        "pub struct Small ",
        "pub struct SmallTrain",
        "pub struct SmallGrads",
        "pub fn grad_into(",
    ] {
        assert!(text.contains(item), "{item}");
    }
    // The last op is relu: §9's default loss is mse, on values.
    assert!(text.contains("TargetKind::Values"), "{text}");
    assert!(text.contains("// backward: loss mse"), "{text}");
    let o = nnc(&["build", s(&model), "--train", "--loss", "bce", "-o", "-"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(common::stdout(&o).contains("unit_interval: true"));
    // Cross-entropy needs class scores: a model ending in relu has them.
    let o = nnc(&["build", s(&model), "--train", "--loss", "cross_entropy", "-o", "-"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let compact: String = common::stdout(&o).split_whitespace().collect();
    assert!(compact.contains("TargetKind::Classes(2"), "{compact}");
    // --loss without --train is a flag error, and nothing is written.
    let other = dir.join("other.rs");
    let o = nnc(&["build", s(&model), "--loss", "mse", "-o", s(&other)]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("--train"), "{}", stderr(&o));
    assert!(!other.exists());
}
