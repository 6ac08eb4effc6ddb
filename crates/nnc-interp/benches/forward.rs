//! The seed MLP (800 → 750 → … → 300, tanh) forward through the
//! interpreter, at the batch sizes and thread counts of
//! `../shared/bench/peers.py`, so the medians compare with ONNX Runtime's
//! (see the README's performance section for the ratio and how to rerun).

#![allow(clippy::panic)] // A benchmark that cannot set up has nothing to measure.

use nnc_diag::SourceFile;
use nnc_driver::{compile, Options, Quiet, Stage};
use nnc_interp::{init_weights, Interpreter};
use nnc_ir::Mode;

fn main() {
    divan::main();
}

fn seed_mlp() -> Interpreter {
    interpreter(
        "seed_tanh_xavier.nn",
        include_str!("../../../models/seed_tanh_xavier.nn"),
    )
}

/// A model's inference interpreter on the weights `init 0` draws.
fn interpreter(name: &str, text: &str) -> Interpreter {
    let source = SourceFile::new(name, text);
    let options = Options {
        modes: vec![Mode::Infer],
        stage: Stage::Optimized,
        passes: None,
        loss: None,
    };
    let Ok(compiled) = compile(&source, &options, &mut Quiet) else {
        panic!("{name} compiles")
    };
    let Some(module) = compiled.module else {
        panic!("a module")
    };
    let weights = init_weights(&module, 0);
    match Interpreter::new(&module, Mode::Infer, &weights) {
        Ok(it) => it,
        Err(e) => panic!("{e}"),
    }
}

#[divan::bench(args = [1, 64, 2000], consts = [1, 2])]
fn seed_mlp_forward<const THREADS: usize>(bencher: divan::Bencher, batch: usize) {
    let mut it = seed_mlp();
    let x = vec![0.1f32; batch * 800];
    let mut y = vec![0.0f32; batch * 300];
    // The first run plans the buffers; the measured ones allocate nothing.
    let _ = it.run_into(&x, batch, THREADS, 0, &mut y);
    bencher.bench_local(|| it.run_into(divan::black_box(&x), batch, THREADS, 0, &mut y));
}

/// The CNN rows of `bench/compare_cnn.py`: each model's forward on
/// `[batch, …input]` of 0.1, at batch 1 and 64.
fn cnn(bencher: divan::Bencher, mut it: Interpreter, batch: usize, threads: usize) {
    let (input, output) = (
        it.input_shape().iter().product::<usize>(),
        it.output_shape().iter().product::<usize>(),
    );
    let x = vec![0.1f32; batch * input];
    let mut y = vec![0.0f32; batch * output];
    let _ = it.run_into(&x, batch, threads, 0, &mut y);
    bencher.bench_local(|| it.run_into(divan::black_box(&x), batch, threads, 0, &mut y));
}

macro_rules! cnn_benches {
    ($($bench:ident => $file:literal),*) => {$(
        #[divan::bench(args = [1, 64], consts = [1, 2])]
        fn $bench<const THREADS: usize>(bencher: divan::Bencher, batch: usize) {
            cnn(bencher, interpreter($file, include_str!(concat!("../../../", $file))), batch, THREADS);
        }
    )*};
}

cnn_benches!(
    cifar_vgg_forward => "bench/models/cifar_vgg.nn",
    resnet_mini_forward => "bench/models/resnet_mini.nn",
    mobile_mini_forward => "bench/models/mobile_mini.nn",
    digits_cnn_forward => "models/digits_cnn.nn"
);
