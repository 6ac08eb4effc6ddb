//! The dense kernel on the seed MLP (800 → 750 → … → 300, tanh): the
//! 800×750 layer alone and the whole 10-layer forward, at batch 1, 64 and
//! 2000 with 1 and 2 threads. Compare with ONNX Runtime on the same model
//! (1 thread: 0.20 / 4.2 / 135 ms; 2 threads: 0.11 / 2.2 / 68 ms).

use divan::Bencher;
use nnc_runtime::kernels::act::Activation;
use nnc_runtime::kernels::dense::dense;
use nnc_runtime::kernels::epilogue::{Epilogue, EpilogueStep};
use nnc_runtime::Rng;

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
    weights: Vec<Vec<f32>>,
    biases: Vec<Vec<f32>>,
}

fn mlp() -> Mlp {
    let mut rng = Rng::new(0, 0);
    let pairs = WIDTHS.windows(2);
    let weights = pairs
        .clone()
        .map(|w| random(&mut rng, w[0] * w[1], 1.0 / (w[0] as f32).sqrt()))
        .collect();
    let biases = pairs.map(|w| random(&mut rng, w[1], 0.1)).collect();
    Mlp { weights, biases }
}

#[divan::bench(args = BATCHES, consts = THREADS)]
fn layer_800x750<const THREADS: usize>(bencher: Bencher, batch: usize) {
    let mut rng = Rng::new(1, 0);
    let (x, w, bias) = (
        random(&mut rng, batch * 800, 1.0),
        random(&mut rng, 750 * 800, 0.03),
        random(&mut rng, 750, 0.1),
    );
    let steps = [EpilogueStep::Act(Activation::Tanh)];
    let epilogue = Epilogue {
        bias: Some(&bias),
        steps: &steps,
    };
    let mut y = vec![0.0; batch * 750];
    bencher.bench_local(|| dense(divan::black_box(&x), batch, 800, &w, 750, &epilogue, &mut y, THREADS));
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
    bencher.bench_local(|| {
        ping.copy_from_slice(divan::black_box(&x));
        for (layer, widths) in WIDTHS.windows(2).enumerate() {
            let (n_in, out) = (widths[0], widths[1]);
            let epilogue = Epilogue {
                bias: Some(&model.biases[layer]),
                steps: &steps,
            };
            dense(
                &ping[..batch * n_in],
                batch,
                n_in,
                &model.weights[layer],
                out,
                &epilogue,
                &mut pong[..batch * out],
                THREADS,
            );
            std::mem::swap(&mut ping, &mut pong);
        }
        divan::black_box(&ping);
    });
}
