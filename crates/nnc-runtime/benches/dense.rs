//! The dense kernel on the seed MLP (800 → 750 → … → 300, tanh): the
//! 800×750 layer alone, on this CPU's layout and on the portable rows, and
//! the whole 10-layer forward, at batch 1, 64 and 2000 with 1 and 2
//! threads. The README's performance section compares these with ONNX
//! Runtime measured in the same run.

#![allow(clippy::panic)] // A benchmark that cannot set up has nothing to measure.

use divan::Bencher;
use nnc_runtime::kernels::act::Activation;
use nnc_runtime::kernels::dense::{dense_weight, DenseWeight};
use nnc_runtime::kernels::epilogue::{Epilogue, EpilogueStep};
use nnc_runtime::{Rng, Team};

fn main() {
    divan::main();
}

/// The seed MLP's widths.
const WIDTHS: [usize; 11] = [800, 750, 700, 650, 600, 550, 500, 450, 400, 350, 300];
const BATCHES: [usize; 3] = [1, 64, 2000];
const THREADS: [usize; 2] = [1, 2];

fn random(rng: &mut Rng, n: usize, scale: f32) -> Vec<f32> {
    (0..n).map(|_| (rng.uniform() * 2.0 - 1.0) * scale).collect()
}

struct Mlp {
    weights: Vec<DenseWeight>,
    biases: Vec<Vec<f32>>,
}

fn mlp() -> Mlp {
    let mut rng = Rng::new(0, 0);
    let pairs = WIDTHS.windows(2);
    let weights = pairs
        .clone()
        .map(|w| DenseWeight::new(&random(&mut rng, w[0] * w[1], 1.0 / (w[0] as f32).sqrt()), w[1], w[0]))
        .collect();
    let biases = pairs.map(|w| random(&mut rng, w[1], 0.1)).collect();
    Mlp { weights, biases }
}

fn layer_800x750(bencher: Bencher, batch: usize, threads: usize, layout: fn(&[f32], usize, usize) -> DenseWeight) {
    let mut rng = Rng::new(1, 0);
    let (x, w, bias) = (
        random(&mut rng, batch * 800, 1.0),
        layout(&random(&mut rng, 750 * 800, 0.03), 750, 800),
        random(&mut rng, 750, 0.1),
    );
    let steps = [EpilogueStep::Act(Activation::Tanh)];
    let epilogue = Epilogue {
        bias: Some(&bias),
        steps: &steps,
        residual: None,
    };
    let team = team(threads);
    let mut y = vec![0.0; batch * 750];
    bencher.bench_local(|| dense_weight(divan::black_box(&x), batch, &w, &epilogue, &mut y, &team));
}

fn team(threads: usize) -> Team {
    match Team::new(threads) {
        Ok(team) => team,
        Err(e) => panic!("cannot start {threads} threads: {e}"),
    }
}

/// The layout [`DenseWeight::new`] picks here (panels where AVX-512 is).
#[divan::bench(args = BATCHES, consts = THREADS)]
fn layer_800x750_packed<const THREADS: usize>(bencher: Bencher, batch: usize) {
    layer_800x750(bencher, batch, THREADS, DenseWeight::new);
}

/// The portable layout: GEMV and matrixmultiply on PyTorch's rows.
#[divan::bench(args = BATCHES, consts = THREADS)]
fn layer_800x750_rows<const THREADS: usize>(bencher: Bencher, batch: usize) {
    layer_800x750(bencher, batch, THREADS, DenseWeight::rows);
}

#[divan::bench(args = BATCHES, consts = THREADS)]
fn mlp_forward<const THREADS: usize>(bencher: Bencher, batch: usize) {
    let model = mlp();
    let mut rng = Rng::new(2, 0);
    let x = random(&mut rng, batch * WIDTHS[0], 1.0);
    let steps = [EpilogueStep::Act(Activation::Tanh)];
    // Two ping-pong buffers, planned once.
    let mut ping = vec![0.0f32; batch * WIDTHS[0]];
    let mut pong = vec![0.0f32; batch * WIDTHS[0]];
    let team = team(THREADS);
    bencher.bench_local(|| {
        ping.copy_from_slice(divan::black_box(&x));
        for (layer, widths) in WIDTHS.windows(2).enumerate() {
            let (n_in, out) = (widths[0], widths[1]);
            let epilogue = Epilogue {
                bias: Some(&model.biases[layer]),
                steps: &steps,
                residual: None,
            };
            dense_weight(
                &ping[..batch * n_in],
                batch,
                &model.weights[layer],
                &epilogue,
                &mut pong[..batch * out],
                &team,
            );
            std::mem::swap(&mut ping, &mut pong);
        }
        divan::black_box(&ping);
    });
}
