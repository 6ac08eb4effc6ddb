//! Inputs that used to end in an abort, an out-of-memory kill or a
//! clean-looking wrong answer: models too large for the machine (refused
//! before anything is allocated, naming the layer and the bytes), and
//! non-finite or impossible numbers in weights and inputs (a warning that
//! names the tensor, or where NaN first appears; an error for a negative
//! running variance).

#![allow(clippy::unwrap_used, clippy::panic)]

use nnc_runtime::io::npy::write_npy;
use nnc_runtime::io::weights::{write_safetensors, Tensor, Weights};
use std::path::Path;
use std::process::{Command, Output};

mod common;

use common::{root, s, scratch, stderr};

/// `nnc ARGS` with `NNC_MAX_MEMORY` set to `limit` (or unset).
fn nnc_with_limit(limit: Option<&str>, args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_nnc"));
    command.args(args).current_dir(root());
    match limit {
        Some(limit) => command.env("NNC_MAX_MEMORY", limit),
        None => command.env_remove("NNC_MAX_MEMORY"),
    };
    command.output().unwrap()
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path.to_string_lossy().into_owned()
}

fn weights(tensors: &[(&str, &[usize], Vec<f32>)]) -> Vec<u8> {
    let mut w = Weights::default();
    for (name, shape, data) in tensors {
        w.tensors.insert(
            name.to_string(),
            Tensor {
                shape: shape.to_vec(),
                data: data.clone(),
            },
        );
    }
    write_safetensors(&w).unwrap()
}

fn failed_saying(out: &Output, needles: &[&str]) {
    assert_eq!(out.status.code(), Some(1), "{}", stderr(out));
    for needle in needles {
        assert!(stderr(out).contains(needle), "expected `{needle}` in: {}", stderr(out));
    }
    assert_eq!(stderr(out).lines().count(), 1, "one line: {}", stderr(out));
}

#[test]
fn init_refuses_parameters_larger_than_the_memory_limit() {
    let dir = scratch("limits-init");
    // 4.3 G parameters: 16 GiB for the weight, twice that with its file.
    let model = write(&dir, "big.nn", b"model Big { input 1048576 dense 4096 }");
    let out = dir.join("w.safetensors");
    let refused = nnc_with_limit(Some("8G"), &["init", &model, "-o", s(&out)]);
    failed_saying(
        &refused,
        &[
            "needs 32.0 GiB",
            "NNC_MAX_MEMORY limit of 8.0 GiB",
            "`layer0.weight` [4096, 1048576]",
        ],
    );
    assert!(!out.exists());
    // With the machine's own limit: a 4 TiB weight fits no machine of ours.
    let model = write(&dir, "huge.nn", b"model Huge { input 1048576 dense 1048576 }");
    let refused = nnc_with_limit(None, &["init", &model, "-o", s(&out)]);
    failed_saying(&refused, &["needs 8.0 TiB", "available", "`layer0.weight`"]);
    assert!(!out.exists());
}

#[test]
fn run_refuses_a_plan_larger_than_the_memory_limit_naming_the_layer() {
    let dir = scratch("limits-run");
    // One float in; 2001 × 2001 × 1024 floats (15.3 GiB) out of the padding.
    let model = write(&dir, "pad.nn", b"model A { input [1,1,1] conv 1 -> 1024 k=1 pad=1000 }");
    let w = write(
        &dir,
        "w.safetensors",
        &weights(&[
            ("layer0.weight", &[1024, 1, 1, 1], vec![0.5; 1024]),
            ("layer0.bias", &[1024], vec![0.0; 1024]),
        ]),
    );
    let x = write(&dir, "x.npy", &write_npy(&[1, 1, 1, 1], &[1.0]).unwrap());
    let y = dir.join("y.npy");
    let refused = nnc_with_limit(
        Some("4G"),
        &["run", &model, "--weights", &w, "--input", &x, "-o", s(&y)],
    );
    failed_saying(
        &refused,
        &["on a batch of 1 needs", "layer `layer0` (conv2d at 1:25): 15.3 GiB"],
    );
    assert!(!y.exists());
    // A sibling: a small model under a small limit runs.
    let small = write(&dir, "small.nn", b"model S { input 4 dense 3 }");
    let w = write(
        &dir,
        "s.safetensors",
        &weights(&[
            ("layer0.weight", &[3, 4], vec![0.25; 12]),
            ("layer0.bias", &[3], vec![0.0; 3]),
        ]),
    );
    let x = write(&dir, "s.npy", &write_npy(&[2, 4], &[1.0; 8]).unwrap());
    let ran = nnc_with_limit(
        Some("1M"),
        &["run", &small, "--weights", &w, "--input", &x, "-o", s(&y)],
    );
    assert_eq!(ran.status.code(), Some(0), "{}", stderr(&ran));
    assert!(y.exists());
    // ... and the same batch over a 100-byte limit does not.
    let refused = nnc_with_limit(
        Some("100"),
        &["run", &small, "--weights", &w, "--input", &x, "-o", s(&y)],
    );
    failed_saying(&refused, &["NNC_MAX_MEMORY limit of 100 bytes"]);
}

/// A dense layer 4 → 3 (no activation) with the given weight, zero bias, run on `x`.
fn run_dense(dir: &Path, weight: Vec<f32>, x: &[f32]) -> Output {
    let model = write(dir, "m.nn", b"model M { input 4 dense 3 }");
    let w = write(
        dir,
        "w.safetensors",
        &weights(&[("layer0.weight", &[3, 4], weight), ("layer0.bias", &[3], vec![0.0; 3])]),
    );
    let x = write(dir, "x.npy", &write_npy(&[x.len() / 4, 4], x).unwrap());
    let y = dir.join("y.npy");
    nnc_with_limit(None, &["run", &model, "--weights", &w, "--input", &x, "-o", s(&y)])
}

#[test]
fn non_finite_weights_are_named_and_their_nan_traced_to_the_layer() {
    let dir = scratch("limits-nan-weights");
    let mut weight = vec![0.1; 12];
    weight[5] = f32::NAN;
    weight[7] = f32::INFINITY;
    let out = run_dense(&dir, weight, &[1.0; 8]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("tensor `layer0.weight` [3, 4] holds 2 non-finite values of 12 (the first, at index 5, is NaN)"),
        "{err}"
    );
    // Row 1 of the weight (indices 4..8) meets both: output 1 of each sample.
    assert!(err.contains("2 of the 6 output values are not finite"), "{err}");
    assert!(
        err.contains("they first appear in layer `layer0` (linear at 1:19)"),
        "{err}"
    );
}

#[test]
fn finite_weights_can_still_overflow_and_the_warning_says_where() {
    let dir = scratch("limits-overflow");
    // 4 × 1e38 > f32::MAX: finite weights and inputs, an infinite sum.
    let out = run_dense(&dir, vec![1e38; 12], &[1.0; 4]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(!err.contains("tensor `"), "no tensor is to blame: {err}");
    assert!(err.contains("3 of the 3 output values are not finite"), "{err}");
    assert!(err.contains("first appear in layer `layer0`"), "{err}");
}

#[test]
fn non_finite_inputs_are_reported_as_the_origin() {
    let dir = scratch("limits-nan-input");
    let mut x = vec![1.0; 8];
    x[6] = f32::NEG_INFINITY;
    let out = run_dense(&dir, vec![0.1; 12], &x);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("1 of the 8 input values are not finite"), "{err}");
    assert!(err.contains("they first appear in the input"), "{err}");
    // A clean run says nothing at all.
    let out = run_dense(&dir, vec![0.1; 12], &[1.0; 8]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(stderr(&out), "");
}

#[test]
fn a_negative_running_variance_is_an_error_naming_the_tensor() {
    let dir = scratch("limits-running-var");
    let model = write(&dir, "bn.nn", b"model B { input 3 dense 2 norm=batch }");
    let tensors = |var: Vec<f32>| {
        weights(&[
            ("layer0.weight", &[2, 3], vec![0.5; 6]),
            ("layer0.bias", &[2], vec![0.0; 2]),
            ("layer0.norm.weight", &[2], vec![1.0; 2]),
            ("layer0.norm.bias", &[2], vec![0.0; 2]),
            ("layer0.norm.running_mean", &[2], vec![0.0; 2]),
            ("layer0.norm.running_var", &[2], var),
        ])
    };
    let x = write(&dir, "x.npy", &write_npy(&[1, 3], &[1.0; 3]).unwrap());
    let y = dir.join("y.npy");
    for command in ["run", "export"] {
        let w = write(&dir, "w.safetensors", &tensors(vec![1.0, -0.5]));
        let args: Vec<&str> = match command {
            "run" => vec!["run", &model, "--weights", &w, "--input", &x, "-o", s(&y)],
            _ => vec!["export", &model, "--weights", &w, "-o", s(&y)],
        };
        let out = nnc_with_limit(None, &args);
        failed_saying(
            &out,
            &["tensor `layer0.norm.running_var` holds 1 negative variance (the first, at index 1, is -0.5)"],
        );
        assert!(!y.exists(), "{command} wrote its output");
    }
}

#[test]
fn an_address_space_limit_is_part_of_the_memory_limit() {
    let dir = scratch("limits-ulimit-v");
    // 2001 × 2001 × 64 floats (1 GiB) out of one float, under `ulimit -v`
    // 2 GB: refused with the layer named, not an allocation abort.
    let model = write(&dir, "pad.nn", b"model A { input [1,1,1] conv 1 -> 64 k=1 pad=1000 }");
    let w = write(
        &dir,
        "w.safetensors",
        &weights(&[
            ("layer0.weight", &[64, 1, 1, 1], vec![0.5; 64]),
            ("layer0.bias", &[64], vec![0.0; 64]),
        ]),
    );
    let x = write(&dir, "x.npy", &write_npy(&[1, 1, 1, 1], &[1.0]).unwrap());
    let y = dir.join("y.npy");
    let script = format!(
        "ulimit -v 2000000 && exec \"$0\" run {model} --weights {w} --input {x} -o {}",
        s(&y)
    );
    let out = Command::new("sh")
        .args(["-c", &script, env!("CARGO_BIN_EXE_nnc")])
        .env_remove("NNC_MAX_MEMORY")
        .output()
        .unwrap();
    failed_saying(&out, &["needs 2.9 GiB", "layer `layer0` (conv2d at 1:25)"]);
    assert!(!y.exists());
}

#[test]
fn a_weight_file_counts_against_the_memory_limit() {
    let dir = scratch("limits-weight-file");
    let model = write(&dir, "m.nn", b"model M { input 64 dense 64 }");
    let w = write(
        &dir,
        "w.safetensors",
        &weights(&[
            ("layer0.weight", &[64, 64], vec![0.5; 4096]),
            ("layer0.bias", &[64], vec![0.0; 64]),
        ]),
    );
    let out = dir.join("m.onnx");
    let refused = nnc_with_limit(Some("16K"), &["export", &model, "--weights", &w, "-o", s(&out)]);
    failed_saying(
        &refused,
        &["loading", "the weight file", "NNC_MAX_MEMORY limit of 16.0 KiB"],
    );
    assert!(!out.exists());
    let exported = nnc_with_limit(Some("1M"), &["export", &model, "--weights", &w, "-o", s(&out)]);
    assert_eq!(exported.status.code(), Some(0), "{}", stderr(&exported));
}

#[test]
fn a_byte_order_mark_before_the_program_is_not_part_of_it() {
    let dir = scratch("limits-bom");
    let ok = write(&dir, "ok.nn", "\u{feff}model A { input 4 dense 2 }".as_bytes());
    let out = nnc_with_limit(None, &["check", &ok]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // Columns count from after the mark, as an editor shows the line.
    let bad = write(&dir, "bad.nn", "\u{feff}model A { input 4 dense 2 bogus=1 }".as_bytes());
    let out = nnc_with_limit(None, &["check", &bad]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("bad.nn:1:27"), "{}", stderr(&out));
}
