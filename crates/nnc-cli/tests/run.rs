//! `nnc init` and `nnc run` as a user runs them, and every
//! broken input they must refuse cleanly: exit 1, a message naming the
//! tensor or file and what was expected, and no output file touched.

#![allow(clippy::unwrap_used, clippy::panic)]

use nnc_runtime::io::npy::{read_npy, write_npy};
use std::path::Path;
use std::process::Output;

mod common;

use common::{nnc, s, scratch, stderr};

fn write_model(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_string_lossy().into_owned()
}

/// Asserts the command failed with exit 1, said `needle`, and left `output`
/// as it was and no temporary file beside it.
fn refused(out: &Output, needle: &str, output: &Path) {
    assert_eq!(out.status.code(), Some(1), "{}", stderr(out));
    assert!(stderr(out).contains(needle), "expected `{needle}` in: {}", stderr(out));
    assert_eq!(
        std::fs::read(output).unwrap(),
        b"untouched",
        "the output file was changed"
    );
    let dir = output.parent().unwrap();
    let leftovers: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().contains(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}

#[test]
fn init_is_deterministic_and_run_writes_the_output_shape() {
    let dir = scratch("happy");
    let model = write_model(
        &dir,
        "m.nn",
        "model M { input [1, 6, 6] conv 1 -> 4 k=3 act=relu norm=batch flatten dense 10 act=softmax }",
    );
    let (w1, w2, w3) = (
        dir.join("a.safetensors"),
        dir.join("b.safetensors"),
        dir.join("c.safetensors"),
    );
    assert_eq!(
        nnc(&["init", &model, "--seed", "7", "-o", s(&w1)]).status.code(),
        Some(0)
    );
    assert_eq!(
        nnc(&["init", &model, "--seed", "7", "-o", s(&w2)]).status.code(),
        Some(0)
    );
    assert_eq!(
        nnc(&["init", &model, "--seed", "8", "-o", s(&w3)]).status.code(),
        Some(0)
    );
    assert_eq!(std::fs::read(&w1).unwrap(), std::fs::read(&w2).unwrap());
    assert_ne!(std::fs::read(&w1).unwrap(), std::fs::read(&w3).unwrap());
    let x = dir.join("x.npy");
    std::fs::write(&x, write_npy(&[3, 1, 6, 6], &vec![0.5; 108]).unwrap()).unwrap();
    let y = dir.join("y.npy");
    let out = nnc(&["run", &model, "--weights", s(&w1), "--input", s(&x), "-o", s(&y)]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let (shape, data) = read_npy(&std::fs::read(&y).unwrap(), "y").unwrap();
    assert_eq!(shape, vec![3, 10]);
    for row in data.chunks(10) {
        assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-5, "softmax rows sum to 1");
    }
    let train = nnc(&[
        "run",
        &model,
        "--weights",
        s(&w1),
        "--input",
        s(&x),
        "-o",
        s(&y),
        "--mode",
        "train",
        "--seed",
        "3",
        "--threads",
        "2",
    ]);
    assert_eq!(train.status.code(), Some(0), "{}", stderr(&train));
}

#[test]
fn broken_weights_are_refused_with_the_tensor_named() {
    let dir = scratch("weights");
    let small = write_model(&dir, "small.nn", "model S { input 8 dense 8 -> 4 }");
    let wide = write_model(&dir, "wide.nn", "model W { input 8 dense 8 -> 5 }");
    let deep = write_model(&dir, "deep.nn", "model D { input 8 dense 8 -> 4 dense 4 -> 2 }");
    let w = dir.join("w.safetensors");
    assert_eq!(nnc(&["init", &small, "-o", s(&w)]).status.code(), Some(0));
    let x = dir.join("x.npy");
    std::fs::write(&x, write_npy(&[2, 8], &[1.0; 16]).unwrap()).unwrap();
    let y = dir.join("y.npy");
    std::fs::write(&y, b"untouched").unwrap();
    let run =
        |model: &str, weights: &Path| nnc(&["run", model, "--weights", s(weights), "--input", s(&x), "-o", s(&y)]);

    let out = run(&wide, &w);
    refused(&out, "layer0.weight", &y);
    assert!(
        stderr(&out).contains("[5, 8]") && stderr(&out).contains("[4, 8]"),
        "{}",
        stderr(&out)
    );
    refused(&run(&deep, &w), "layer1.weight", &y);

    let bytes = std::fs::read(&w).unwrap();
    let truncated = dir.join("truncated.safetensors");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    refused(&run(&small, &truncated), "truncated.safetensors", &y);

    let f64_weights = dir.join("f64.safetensors");
    let data: Vec<u8> = [0f64; 32].iter().flat_map(|v| v.to_le_bytes()).collect();
    let bias: Vec<u8> = [0f64; 4].iter().flat_map(|v| v.to_le_bytes()).collect();
    let views = vec![
        (
            "layer0.weight".to_string(),
            safetensors::tensor::TensorView::new(safetensors::Dtype::F64, vec![4, 8], &data).unwrap(),
        ),
        (
            "layer0.bias".to_string(),
            safetensors::tensor::TensorView::new(safetensors::Dtype::F64, vec![4], &bias).unwrap(),
        ),
    ];
    std::fs::write(&f64_weights, safetensors::tensor::serialize(views, None).unwrap()).unwrap();
    refused(&run(&small, &f64_weights), "F64", &y);

    refused(
        &run(&small, &dir.join("missing.safetensors")),
        "missing.safetensors",
        &y,
    );
}

#[test]
fn broken_inputs_are_refused() {
    let dir = scratch("inputs");
    let model = write_model(&dir, "m.nn", "model M { input 8 dense 8 -> 4 }");
    let w = dir.join("w.safetensors");
    assert_eq!(nnc(&["init", &model, "-o", s(&w)]).status.code(), Some(0));
    let y = dir.join("y.npy");
    std::fs::write(&y, b"untouched").unwrap();
    let run = |x: &Path| nnc(&["run", &model, "--weights", s(&w), "--input", s(x), "-o", s(&y)]);

    let wrong_shape = dir.join("wrong.npy");
    std::fs::write(&wrong_shape, write_npy(&[2, 9], &[1.0; 18]).unwrap()).unwrap();
    refused(&run(&wrong_shape), "[9]", &y);

    // An f64 array, written by hand in the npy format (version 1.0).
    let header = "{'descr': '<f8', 'fortran_order': False, 'shape': (1, 8), }";
    let mut npy = b"\x93NUMPY\x01\x00".to_vec();
    let padded = format!("{header:<117}\n");
    npy.extend_from_slice(&(padded.len() as u16).to_le_bytes());
    npy.extend_from_slice(padded.as_bytes());
    npy.extend(std::iter::repeat_n(0u8, 64));
    let f64_input = dir.join("f64.npy");
    std::fs::write(&f64_input, npy).unwrap();
    refused(&run(&f64_input), "f64", &y);

    let garbage = dir.join("garbage.npy");
    std::fs::write(&garbage, b"not an array").unwrap();
    refused(&run(&garbage), "garbage.npy", &y);
}

#[test]
fn a_bad_program_or_flag_leaves_no_output() {
    let dir = scratch("program");
    let bad = write_model(&dir, "bad.nn", "model B { input 8 dense 9 -> 4 }");
    let w = dir.join("w.safetensors");
    std::fs::write(&w, b"untouched").unwrap();
    let out = nnc(&["init", &bad, "-o", s(&w)]);
    refused(&out, "bad.nn:1:25", &w);
    let y = dir.join("y");
    std::fs::write(&y, b"untouched").unwrap();
    let out = nnc(&["run", &bad, "--weights", s(&w), "--input", s(&w), "-o", s(&y)]);
    refused(&out, "bad.nn", &y);
    let out = nnc(&["export", &bad, "--weights", s(&w), "-o", s(&y)]);
    refused(&out, "bad.nn", &y);
}
