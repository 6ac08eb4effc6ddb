//! Orthogonal initialisation (a blocked Householder QR of a Gaussian
//! matrix) of square weights, 256² to 2048², on all the cores there are.

use nnc_runtime::init::{draw, Distribution};

fn main() {
    divan::main();
}

#[divan::bench(args = [256, 1024, 2048], sample_count = 3, sample_size = 1)]
fn square(n: usize) -> f32 {
    let w = draw(&Distribution::Orthogonal { gain: 1.0 }, "w", &[n, n], 1);
    w.data[0]
}
