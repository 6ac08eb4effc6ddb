//! `nnc grad` as a user runs it: the gradients of every trainable
//! parameter under its own name and the loss, and every broken target
//! refused cleanly (exit 1, the row named, no output written).

#![allow(clippy::unwrap_used, clippy::panic)]

use ndarray::Array1;
use ndarray_npy::WriteNpyExt;
use nnc_runtime::io::npy::write_npy;
use std::path::{Path, PathBuf};
use std::process::Output;

mod common;

use common::{nnc, s, scratch, stderr};

const MLP: &str = "model M {\n  input 4\n  dense 4 -> 6 act=relu norm=batch\n  dense 6 -> 3 act=softmax\n}\n";

struct Files {
    dir: PathBuf,
    model: String,
    weights: String,
    input: String,
}

fn setup(name: &str, text: &str, batch: usize) -> Files {
    let dir = scratch(name);
    let model = dir.join("m.nn");
    std::fs::write(&model, text).unwrap();
    let weights = dir.join("w.safetensors");
    let out = nnc(&["init", s(&model), "--seed", "1", "-o", s(&weights)]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let input = dir.join("x.npy");
    let x: Vec<f32> = (0..batch * 4).map(|i| ((i * 37 % 11) as f32 - 5.0) / 3.0).collect();
    std::fs::write(&input, write_npy(&[batch, 4], &x).unwrap()).unwrap();
    Files {
        model: s(&model).to_string(),
        weights: s(&weights).to_string(),
        input: s(&input).to_string(),
        dir,
    }
}

fn labels(dir: &Path, name: &str, values: &[i64]) -> String {
    let path = dir.join(name);
    let mut bytes = Vec::new();
    Array1::from(values.to_vec()).write_npy(&mut bytes).unwrap();
    std::fs::write(&path, bytes).unwrap();
    s(&path).to_string()
}

fn grad(f: &Files, target: &str, output: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "grad",
        &f.model,
        "--weights",
        &f.weights,
        "--input",
        &f.input,
        "--target",
        target,
        "-o",
        s(output),
    ];
    args.extend_from_slice(extra);
    nnc(&args)
}

fn tensors(path: &Path) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut out: Vec<_> = st
        .tensors()
        .into_iter()
        .map(|(name, view)| {
            let data = view
                .data()
                .chunks(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            (name, view.shape().to_vec(), data)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[test]
fn writes_every_trainable_gradient_and_the_loss() {
    let f = setup("happy", MLP, 5);
    let y = labels(&f.dir, "y.npy", &[0, 1, 2, 1, 0]);
    let g = f.dir.join("g.safetensors");
    let out = grad(&f, &y, &g, &["--seed", "3"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stderr(&out).contains("cross_entropy"), "{}", stderr(&out));
    let t = tensors(&g);
    let names: Vec<&str> = t.iter().map(|(n, _, _)| n.as_str()).collect();
    // Running statistics are not trained; the bias before batch norm,
    // removed by the train pipeline, is there with gradient zero.
    assert_eq!(
        names,
        [
            "layer0.bias",
            "layer0.norm.bias",
            "layer0.norm.weight",
            "layer0.weight",
            "layer1.bias",
            "layer1.weight",
            "loss"
        ]
    );
    let get = |n: &str| t.iter().find(|(m, _, _)| m == n).unwrap();
    assert_eq!(get("layer0.weight").1, [6, 4]);
    assert!(get("layer0.bias").2.iter().all(|v| *v == 0.0));
    assert!(get("layer0.weight").2.iter().any(|v| *v != 0.0));
    let loss = get("loss");
    assert_eq!(loss.1, [1]);
    // A near-uniform 3-class softmax at initialisation: about ln 3.
    assert!(loss.2[0] > 0.5 && loss.2[0] < 3.0, "loss {}", loss.2[0]);
    // The same seed gives the same bytes.
    let g2 = f.dir.join("g2.safetensors");
    assert_eq!(grad(&f, &y, &g2, &["--seed", "3"]).status.code(), Some(0));
    assert_eq!(std::fs::read(&g).unwrap(), std::fs::read(&g2).unwrap());
}

#[test]
fn a_loss_can_be_named_and_takes_its_own_targets() {
    let f = setup("mse", MLP, 2);
    let t = f.dir.join("t.npy");
    std::fs::write(&t, write_npy(&[2, 3], &[0.0, 1.0, 0.0, 1.0, 0.0, 0.0]).unwrap()).unwrap();
    let g = f.dir.join("g.safetensors");
    let out = grad(&f, s(&t), &g, &["--loss", "mse"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stderr(&out).contains("mse"), "{}", stderr(&out));
    let bad = grad(&f, s(&t), &f.dir.join("b.safetensors"), &["--loss", "hinge"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(stderr(&bad).contains("cross_entropy"), "{}", stderr(&bad));
}

/// Each broken target: exit 1, a one-line message naming what is wrong
/// and where, and the output left as it was.
#[test]
fn broken_targets_are_refused_naming_the_row() {
    let f = setup("broken", MLP, 3);
    let out_path = f.dir.join("g.safetensors");
    let floats = f.dir.join("f.npy");
    std::fs::write(&floats, write_npy(&[3], &[0.0, 1.0, 2.0]).unwrap()).unwrap();
    let nan = f.dir.join("nan.npy");
    std::fs::write(
        &nan,
        write_npy(&[3, 3], &[0.0, 1.0, 0.0, 0.0, f32::NAN, 0.0, 1.0, 0.0, 0.0]).unwrap(),
    )
    .unwrap();
    let cases: Vec<(String, &[&str], &str)> = vec![
        (labels(&f.dir, "short.npy", &[0, 1]), &[], "one class index per sample"),
        (
            labels(&f.dir, "range.npy", &[0, 3, 1]),
            &[],
            "row 1: class 3 is not one of the model's 3 classes",
        ),
        (labels(&f.dir, "negative.npy", &[0, 1, -1]), &[], "row 2: class -1"),
        (s(&floats).to_string(), &[], "expected int32 or int64"),
        (s(&nan).to_string(), &["--loss", "mse"], "row 1: a target is NaN"),
        (s(&nan).to_string(), &["--loss", "bce"], "row 1: a target is NaN"),
        (
            labels(&f.dir, "ints.npy", &[0, 1, 2]),
            &["--loss", "mse"],
            "expected f32",
        ),
    ];
    for (target, extra, needle) in cases {
        std::fs::write(&out_path, b"untouched").unwrap();
        let out = grad(&f, &target, &out_path, extra);
        assert_eq!(out.status.code(), Some(1), "{target}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(needle),
            "{target}: expected `{needle}` in: {}",
            stderr(&out)
        );
        assert_eq!(stderr(&out).lines().count(), 1, "one line: {}", stderr(&out));
        assert_eq!(
            std::fs::read(&out_path).unwrap(),
            b"untouched",
            "{target}: output changed"
        );
    }
    // bce targets outside [0, 1].
    let outside = f.dir.join("outside.npy");
    std::fs::write(
        &outside,
        write_npy(&[3, 3], &[0.0, 1.0, 0.0, 0.0, 1.5, 0.0, 1.0, 0.0, 0.0]).unwrap(),
    )
    .unwrap();
    std::fs::write(&out_path, b"untouched").unwrap();
    let out = grad(&f, s(&outside), &out_path, &["--loss", "bce"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("row 1: a target is outside [0, 1]"),
        "{}",
        stderr(&out)
    );
    assert_eq!(std::fs::read(&out_path).unwrap(), b"untouched");
}

#[test]
fn cross_entropy_needs_class_scores() {
    let text = "model M {\n  input [1, 4, 4]\n  conv 1 -> 2 k=3\n}\n";
    let dir = scratch("ce-shape");
    let model = dir.join("m.nn");
    std::fs::write(&model, text).unwrap();
    let out = nnc(&[
        "ir",
        s(&model),
        "--mode",
        "train",
        "--stage",
        "grad",
        "--loss",
        "cross_entropy",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("cross_entropy needs an output of class scores"),
        "{}",
        stderr(&out)
    );
}
