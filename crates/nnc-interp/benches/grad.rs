//! Forward + backward (`Gradients::run`) against the step's training-mode
//! forward alone (`Gradients::train_forward`: recording, on weights as
//! stored), on the reference
//! models of `../shared/bench` (copied to `bench/models/`): the seed MLP
//! with a 10-class head at batch 64 and 2000, and the VGG-style CNN at
//! batch 64, on 1 and 2 threads. The ratio of the two medians is the cost
//! of the backward; the README quotes it.

#![allow(clippy::panic)] // A benchmark that cannot set up has nothing to measure.

use nnc_diag::SourceFile;
use nnc_driver::{compile, Options, Quiet, Stage};
use nnc_interp::{init_weights, Gradients, Targets};
use nnc_ir::{Mode, Module};

fn main() {
    divan::main();
}

const SEED: &str = include_str!("../../../bench/models/seed_tanh_cls.nn");
const CIFAR: &str = include_str!("../../../bench/models/cifar_vgg.nn");

fn module(text: &str, stage: Stage) -> Module {
    let source = SourceFile::new("bench.nn", text);
    let options = Options {
        modes: vec![Mode::Train],
        stage,
        passes: None,
        loss: None,
    };
    match compile(&source, &options, &mut Quiet) {
        Ok(compiled) => compiled.module.unwrap_or_else(|| panic!("a module")),
        Err(e) => panic!("{e}"),
    }
}

fn input(text: &str, batch: usize) -> (Vec<f32>, Vec<u32>) {
    let m = module(text, Stage::Optimized);
    let Some(f) = m.function(Mode::Train) else {
        panic!("train")
    };
    let n = f.value_type(f.input).numel();
    let x = (0..batch * n)
        .map(|i| ((i * 7919 % 1000) as f32 / 500.0) - 1.0)
        .collect();
    let y = (0..batch).map(|i| (i % 10) as u32).collect();
    (x, y)
}

fn forward(bencher: divan::Bencher, text: &str, batch: usize, threads: usize) {
    let m = module(text, Stage::Grad);
    let weights = init_weights(&m, 0);
    let mut g = Gradients::new(&m, &weights).unwrap_or_else(|e| panic!("{e}"));
    let (x, _) = input(text, batch);
    let _ = g.train_forward(&x, batch, threads, 0);
    bencher.bench_local(|| {
        g.train_forward(divan::black_box(&x), batch, threads, 0)
            .map(<[f32]>::len)
    });
}

fn forward_backward(bencher: divan::Bencher, text: &str, batch: usize, threads: usize) {
    let m = module(text, Stage::Grad);
    let weights = init_weights(&m, 0);
    let mut g = Gradients::new(&m, &weights).unwrap_or_else(|e| panic!("{e}"));
    let (x, y) = input(text, batch);
    let _ = g.run(&x, batch, Targets::Classes(&y), threads, 0);
    bencher.bench_local(|| g.run(divan::black_box(&x), batch, Targets::Classes(&y), threads, 0));
}

#[divan::bench(args = [64, 2000], consts = [1, 2])]
fn seed_forward<const THREADS: usize>(bencher: divan::Bencher, batch: usize) {
    forward(bencher, SEED, batch, THREADS);
}

#[divan::bench(args = [64, 2000], consts = [1, 2])]
fn seed_forward_backward<const THREADS: usize>(bencher: divan::Bencher, batch: usize) {
    forward_backward(bencher, SEED, batch, THREADS);
}

#[divan::bench(args = [64], consts = [1, 2], sample_count = 10)]
fn cifar_forward<const THREADS: usize>(bencher: divan::Bencher, batch: usize) {
    forward(bencher, CIFAR, batch, THREADS);
}

#[divan::bench(args = [64], consts = [1, 2], sample_count = 10)]
fn cifar_forward_backward<const THREADS: usize>(bencher: divan::Bencher, batch: usize) {
    forward_backward(bencher, CIFAR, batch, THREADS);
}
