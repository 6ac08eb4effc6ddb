//! The conv kernels on the 3×3 layers of `../shared/bench/models/cifar_vgg.nn`
//! (a stride-2 layer of `resnet_mini.nn`, and every conv of
//! `mobile_mini.nn`): forward with the weight packed once, and the backward (input
//! gradient, weight gradient), at batch 1 and 64 with 1 and 2 threads; and
//! cifar_vgg's two convs that a 2 × 2 max pool follows, with the pool fused
//! (`pooled::fused`) and as the op after the conv (`pooled::then_pool`, its
//! planes shared among the threads as the interpreter shares them).
//! Divan's throughput column is multiply-adds per second: twice that is
//! GFLOP/s, to compare with `fma_peak`, a loop of register-only fused
//! multiply-adds (this core's ceiling).

#![allow(clippy::panic)] // A benchmark that cannot set up has nothing to measure.

use divan::counter::ItemsCount;
use divan::Bencher;
use nnc_runtime::kernels::act::Activation;
use nnc_runtime::kernels::conv::{conv2d_grad_input, conv2d_grad_weight, conv2d_packed, ConvGeometry, ConvWeight};
use nnc_runtime::kernels::epilogue::{Epilogue, EpilogueStep};
use nnc_runtime::kernels::pool::{max_pool2d, PoolGeometry};
use nnc_runtime::{AlignedBuf, Rng, Team};

fn main() {
    divan::main();
}

const BATCHES: [usize; 2] = [1, 64];
const THREADS: [usize; 2] = [1, 2];

/// (name, in, out, size, stride, groups, kernel)
const LAYERS: [(&str, usize, usize, usize, usize, usize, usize); 15] = [
    ("vgg1_3x32x32", 3, 32, 32, 1, 1, 3),
    ("vgg2_32x32x32", 32, 32, 32, 1, 1, 3),
    ("vgg3_32x16x16", 32, 64, 16, 1, 1, 3),
    ("vgg4_64x16x16", 64, 64, 16, 1, 1, 3),
    ("vgg5_64x8x8", 64, 128, 8, 1, 1, 3),
    ("vgg6_128x8x8", 128, 128, 8, 1, 1, 3),
    ("resnet_s2_32x32x32", 32, 64, 32, 2, 1, 3),
    ("resnet_s2_64x16x16", 64, 128, 16, 2, 1, 3),
    ("mobile1_s2_3x32x32", 3, 32, 32, 2, 1, 3),
    ("mobile_dw_32x16x16", 32, 32, 16, 1, 32, 3),
    ("mobile_1x1_32to64x16x16", 32, 64, 16, 1, 1, 1),
    ("mobile_dw_s2_64x16x16", 64, 64, 16, 2, 64, 3),
    ("mobile_1x1_64to128x8x8", 64, 128, 8, 1, 1, 1),
    ("mobile_dw_128x8x8", 128, 128, 8, 1, 128, 3),
    ("mobile_1x1_128x8x8", 128, 128, 8, 1, 1, 1),
];

fn geometry(name: &str) -> ConvGeometry {
    let Some(&(_, c, o, size, stride, groups, kernel)) = LAYERS.iter().find(|l| l.0 == name) else {
        panic!("no layer {name}")
    };
    // PyTorch's and ONNX's SAME: the odd pixel at the bottom/right.
    let total = ((size.div_ceil(stride) - 1) * stride + kernel).saturating_sub(size);
    let (before, after) = (total / 2, total - total / 2);
    ConvGeometry {
        in_channels: c,
        height: size,
        width: size,
        out_channels: o,
        kernel,
        stride,
        dilation: 1,
        groups,
        pads: [before, before, after, after],
        pool: 1,
    }
}

/// On a cache line, as the interpreter's and the generated code's
/// buffers are: a `Vec` this large starts 16 bytes into a page, and its
/// every vector store straddled two lines (a 1 × 1 conv at batch 64 took
/// half as long again as in its model).
fn random(rng: &mut Rng, n: usize) -> AlignedBuf {
    let mut buf = AlignedBuf::zeroed(n);
    buf.iter_mut().for_each(|v| *v = rng.uniform() * 2.0 - 1.0);
    buf
}

fn team(threads: usize) -> Team {
    match Team::new(threads) {
        Ok(team) => team,
        Err(e) => panic!("cannot start {threads} threads: {e}"),
    }
}

fn multiply_adds(g: &ConvGeometry, batch: usize) -> u64 {
    let depth = g.in_channels / g.groups * g.kernel * g.kernel;
    (batch * g.out_channels * g.out_height() * g.out_width() * depth) as u64
}

fn forward(bencher: Bencher, name: &str, batch: usize, threads: usize) {
    forward_pooled(bencher, name, batch, threads, Pool::None);
}

/// A 2 × 2 max pool after the conv, or none.
#[derive(Clone, Copy, PartialEq)]
enum Pool {
    None,
    Fused,
    After,
}

fn forward_pooled(bencher: Bencher, name: &str, batch: usize, threads: usize, pool: Pool) {
    let conv = geometry(name);
    let g = ConvGeometry {
        pool: if pool == Pool::Fused { 2 } else { 1 },
        ..conv
    };
    let mut rng = Rng::new(3, 0);
    let x = random(&mut rng, batch * g.in_channels * g.height * g.width);
    let w = ConvWeight::new(
        &random(
            &mut rng,
            g.out_channels * g.in_channels / g.groups * g.kernel * g.kernel,
        ),
        &g,
    );
    let bias = random(&mut rng, g.out_channels);
    let steps = [EpilogueStep::Act(Activation::Relu)];
    let epilogue = Epilogue {
        bias: Some(&bias),
        steps: &steps,
        residual: None,
    };
    let mut y = AlignedBuf::zeroed(batch * g.out_channels * g.pooled_height() * g.pooled_width());
    let mut scratch = AlignedBuf::zeroed(g.packed_scratch_len(threads));
    let window = PoolGeometry {
        channels: 1,
        height: g.out_height(),
        width: g.out_width(),
        kernel: 2,
        stride: 2,
        pads: [0; 4],
    };
    let mut pooled = AlignedBuf::zeroed(batch * g.out_channels * window.out_height() * window.out_width());
    let team = team(threads);
    bencher
        .counter(ItemsCount::new(multiply_adds(&g, batch)))
        .bench_local(|| {
            conv2d_packed(
                divan::black_box(&x),
                batch,
                &g,
                &w,
                &epilogue,
                &mut y,
                &mut scratch,
                &team,
            );
            if pool == Pool::After {
                team.per_samples(batch * g.out_channels, &y, &mut pooled, &|x, n, y| {
                    max_pool2d(x, n, &window, y)
                });
            }
        });
}

/// `parts`: (the input gradient, the weight gradient).
fn backward(bencher: Bencher, name: &str, batch: usize, threads: usize, parts: (bool, bool)) {
    let g = geometry(name);
    let mut rng = Rng::new(4, 0);
    let x = random(&mut rng, batch * g.in_channels * g.height * g.width);
    let w = random(
        &mut rng,
        g.out_channels * g.in_channels / g.groups * g.kernel * g.kernel,
    );
    let dy = random(&mut rng, batch * g.out_channels * g.out_height() * g.out_width());
    let mut dx = AlignedBuf::zeroed(x.len());
    let mut dw = AlignedBuf::zeroed(w.len());
    let mut db = AlignedBuf::zeroed(g.out_channels);
    let mut scratch = AlignedBuf::zeroed(g.grad_scratch_len(threads));
    let team = team(threads);
    let (input, weight) = parts;
    let count = multiply_adds(&g, batch) * (u64::from(input) + u64::from(weight));
    bencher.counter(ItemsCount::new(count)).bench_local(|| {
        if input {
            conv2d_grad_input(divan::black_box(&dy), batch, &g, &w, &mut dx, &mut scratch, &team);
        }
        if weight {
            conv2d_grad_weight(&x, &dy, batch, &g, &mut dw, Some(&mut db), &mut scratch, &team);
        }
    });
}

macro_rules! layer_benches {
    ($($layer:ident),*) => {
        mod fwd {
            use super::*;
            $(
                #[divan::bench(args = BATCHES, consts = THREADS)]
                fn $layer<const T: usize>(bencher: Bencher, batch: usize) {
                    forward(bencher, stringify!($layer), batch, T);
                }
            )*
        }
        mod bwd {
            use super::*;
            $(
                #[divan::bench(args = BATCHES, consts = THREADS)]
                fn $layer<const T: usize>(bencher: Bencher, batch: usize) {
                    backward(bencher, stringify!($layer), batch, T, (true, true));
                }
            )*
        }
        mod bwd_input {
            use super::*;
            $(
                #[divan::bench(args = BATCHES, consts = THREADS)]
                fn $layer<const T: usize>(bencher: Bencher, batch: usize) {
                    backward(bencher, stringify!($layer), batch, T, (true, false));
                }
            )*
        }
        mod bwd_weight {
            use super::*;
            $(
                #[divan::bench(args = BATCHES, consts = THREADS)]
                fn $layer<const T: usize>(bencher: Bencher, batch: usize) {
                    backward(bencher, stringify!($layer), batch, T, (false, true));
                }
            )*
        }
    };
}

mod pooled {
    use super::*;

    #[divan::bench(args = BATCHES, consts = THREADS)]
    fn fused_vgg2_32x32x32<const T: usize>(bencher: Bencher, batch: usize) {
        forward_pooled(bencher, "vgg2_32x32x32", batch, T, Pool::Fused);
    }

    #[divan::bench(args = BATCHES, consts = THREADS)]
    fn then_pool_vgg2_32x32x32<const T: usize>(bencher: Bencher, batch: usize) {
        forward_pooled(bencher, "vgg2_32x32x32", batch, T, Pool::After);
    }

    #[divan::bench(args = BATCHES, consts = THREADS)]
    fn fused_vgg4_64x16x16<const T: usize>(bencher: Bencher, batch: usize) {
        forward_pooled(bencher, "vgg4_64x16x16", batch, T, Pool::Fused);
    }

    #[divan::bench(args = BATCHES, consts = THREADS)]
    fn then_pool_vgg4_64x16x16<const T: usize>(bencher: Bencher, batch: usize) {
        forward_pooled(bencher, "vgg4_64x16x16", batch, T, Pool::After);
    }
}

layer_benches!(
    vgg1_3x32x32,
    vgg2_32x32x32,
    vgg3_32x16x16,
    vgg4_64x16x16,
    vgg5_64x8x8,
    vgg6_128x8x8,
    resnet_s2_32x32x32,
    resnet_s2_64x16x16,
    mobile1_s2_3x32x32,
    mobile_dw_32x16x16,
    mobile_1x1_32to64x16x16,
    mobile_dw_s2_64x16x16,
    mobile_1x1_64to128x8x8,
    mobile_dw_128x8x8,
    mobile_1x1_128x8x8
);

/// A loop of independent fused multiply-adds on registers only (12
/// accumulators, enough to cover the latency of two FMA units): the most
/// multiply-adds per second one core does. Counts multiply-adds.
#[divan::bench]
fn fma_peak(bencher: Bencher) {
    const ROUNDS: usize = 100_000;
    let lanes = if std::arch::is_x86_feature_detected!("avx512f") {
        16
    } else {
        8
    };
    bencher
        .counter(ItemsCount::new((ROUNDS * 12 * lanes) as u64))
        .bench_local(|| divan::black_box(peak(divan::black_box(ROUNDS))));
}

#[cfg(target_arch = "x86_64")]
fn peak(rounds: usize) -> f32 {
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU has AVX-512F.
        return unsafe { peak_avx512(rounds) };
    }
    if std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has AVX2 and FMA.
        return unsafe { peak_avx2(rounds) };
    }
    0.0
}

#[cfg(not(target_arch = "x86_64"))]
fn peak(_rounds: usize) -> f32 {
    0.0
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn peak_avx512(rounds: usize) -> f32 {
    use std::arch::x86_64::*;
    let (a, b) = (
        _mm512_set1_ps(std::hint::black_box(0.999)),
        _mm512_set1_ps(std::hint::black_box(0.001)),
    );
    let mut acc = [_mm512_set1_ps(1.0); 12];
    for _ in 0..rounds {
        for v in &mut acc {
            *v = _mm512_fmadd_ps(*v, a, b);
        }
    }
    acc.iter().map(|v| _mm512_reduce_add_ps(*v)).sum()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn peak_avx2(rounds: usize) -> f32 {
    use std::arch::x86_64::*;
    let (a, b) = (
        _mm256_set1_ps(std::hint::black_box(0.999)),
        _mm256_set1_ps(std::hint::black_box(0.001)),
    );
    let mut acc = [_mm256_set1_ps(1.0); 12];
    for _ in 0..rounds {
        for v in &mut acc {
            *v = _mm256_fmadd_ps(*v, a, b);
        }
    }
    let mut out = [0.0f32; 8];
    acc.iter().for_each(|v| {
        let mut lane = [0.0f32; 8];
        _mm256_storeu_ps(lane.as_mut_ptr(), *v);
        out.iter_mut().zip(lane).for_each(|(o, l)| *o += l);
    });
    out.iter().sum()
}
