//! conv2d's backward kernels against central finite differences of a
//! float64 convolution written from the definition, over kernels 1–5,
//! strides 1–3, dilations 1–2, groups (dense, 2, depthwise), asymmetric
//! padding and padding wider than the map.

#![allow(clippy::unwrap_used)]

mod common;

use common::{assert_close_f32, assert_grad, doubled, numeric_grad, to_f64, Xorshift};
use nnc_runtime::kernels::conv::{conv2d, conv2d_grad_input, conv2d_grad_weight, ConvGeometry};
use nnc_runtime::kernels::epilogue::Epilogue;
use nnc_runtime::Team;

/// The definition: `y[n,o,r,q] = b[o] + Σ_{c,ki,kj} x[n, group·icg + c,
/// r·s + ki·d − top, q·s + kj·d − left] · w[o,c,ki,kj]`, taps in the padding
/// reading zero.
fn conv_f64(x: &[f64], batch: usize, g: &ConvGeometry, w: &[f64], b: &[f64]) -> Vec<f64> {
    let (oh, ow, k) = (g.out_height(), g.out_width(), g.kernel);
    let (icg, ocg) = (g.in_channels / g.groups, g.out_channels / g.groups);
    let mut y = vec![0.0; batch * g.out_channels * oh * ow];
    for n in 0..batch {
        for o in 0..g.out_channels {
            for r in 0..oh {
                for q in 0..ow {
                    let mut s = b[o];
                    for c in 0..icg {
                        let ic = o / ocg * icg + c;
                        for ki in 0..k {
                            for kj in 0..k {
                                let ih = (r * g.stride + ki * g.dilation) as isize - g.pads[0] as isize;
                                let iw = (q * g.stride + kj * g.dilation) as isize - g.pads[1] as isize;
                                if ih < 0 || iw < 0 || ih >= g.height as isize || iw >= g.width as isize {
                                    continue;
                                }
                                let xi = ((n * g.in_channels + ic) * g.height + ih as usize) * g.width + iw as usize;
                                s += x[xi] * w[((o * icg + c) * k + ki) * k + kj];
                            }
                        }
                    }
                    y[((n * g.out_channels + o) * oh + r) * ow + q] = s;
                }
            }
        }
    }
    y
}

/// dx, dw and db of `L = Σ r·conv(x)` against finite differences, with one
/// and two threads; dw and db accumulate (twice is double, onto a non-zero
/// buffer is added); dx is overwritten.
fn check(g: ConvGeometry, batch: usize, seed: u64) {
    assert!(g.out_height() > 0 && g.out_width() > 0, "{g:?} has an empty output");
    let mut rng = Xorshift::new(seed);
    let k = g.in_channels / g.groups * g.kernel * g.kernel;
    let x = rng.vec(batch * g.in_channels * g.height * g.width);
    let w = rng.vec(g.out_channels * k);
    let b = rng.vec(g.out_channels);
    let dy = rng.vec(batch * g.out_channels * g.out_height() * g.out_width());
    let (x64, w64, b64, r) = (to_f64(&x), to_f64(&w), to_f64(&b), to_f64(&dy));
    let what = format!("{g:?} batch {batch}");

    // The reference is the forward's definition.
    let mut y = vec![0.0; dy.len()];
    let single = Team::single();
    let mut scratch = vec![f32::NAN; g.scratch_len(1).max(g.grad_scratch_len(2))];
    let epilogue = Epilogue {
        bias: Some(&b),
        steps: &[],
        residual: None,
    };
    conv2d(&x, batch, &g, &w, &epilogue, &mut y, &mut scratch, &single);
    let y64 = conv_f64(&x64, batch, &g, &w64, &b64);
    assert_grad(&format!("{what}: forward"), &y, &y64, 1e-5);

    let want_dx = numeric_grad(&x, &r, |x| conv_f64(x, batch, &g, &w64, &b64));
    for threads in [1, 2] {
        let team = Team::new(threads).unwrap();
        let mut dx = vec![f32::NAN; x.len()];
        scratch.fill(f32::NAN);
        conv2d_grad_input(&dy, batch, &g, &w, &mut dx, &mut scratch, &team);
        assert_grad(&format!("{what}: dx, {threads} threads"), &dx, &want_dx, 1e-3);
    }

    let want_dw = numeric_grad(&w, &r, |w| conv_f64(&x64, batch, &g, w, &b64));
    let want_db = numeric_grad(&b, &r, |b| conv_f64(&x64, batch, &g, &w64, b));
    let (mut dw, mut db) = (vec![0.0; w.len()], vec![0.0; b.len()]);
    scratch.fill(f32::NAN);
    conv2d_grad_weight(&x, &dy, batch, &g, &mut dw, Some(&mut db), &mut scratch, &single);
    assert_grad(&format!("{what}: dw"), &dw, &want_dw, 1e-3);
    assert_grad(&format!("{what}: db"), &db, &want_db, 1e-3);

    // Two threads: samples shared, the parts summed.
    let pair = Team::new(2).unwrap();
    let (mut dw2, mut db2) = (vec![0.0; w.len()], vec![0.0; b.len()]);
    scratch.fill(f32::NAN);
    conv2d_grad_weight(&x, &dy, batch, &g, &mut dw2, Some(&mut db2), &mut scratch, &pair);
    assert_grad(&format!("{what}: dw, 2 threads"), &dw2, &want_dw, 1e-3);
    assert_grad(&format!("{what}: db, 2 threads"), &db2, &want_db, 1e-3);

    let (once_w, once_b) = (dw.clone(), db.clone());
    conv2d_grad_weight(&x, &dy, batch, &g, &mut dw, Some(&mut db), &mut scratch, &single);
    assert_close_f32(&format!("{what}: dw twice"), &dw, &doubled(&once_w));
    // And onto a non-zero buffer with two threads: added, not overwritten.
    conv2d_grad_weight(&x, &dy, batch, &g, &mut dw2, None, &mut scratch, &pair);
    assert_close_f32(&format!("{what}: dw twice, 2 threads"), &dw2, &doubled(&once_w));
    assert_close_f32(&format!("{what}: db twice"), &db, &doubled(&once_b));
    // Without a bias gradient the weight gradient is the same.
    let mut dw_alone = vec![0.0; w.len()];
    conv2d_grad_weight(&x, &dy, batch, &g, &mut dw_alone, None, &mut scratch, &single);
    assert_eq!(dw_alone, once_w, "{what}: dw without db");
}

#[allow(clippy::too_many_arguments)]
fn geometry(
    in_channels: usize,
    out_channels: usize,
    (height, width): (usize, usize),
    kernel: usize,
    stride: usize,
    dilation: usize,
    groups: usize,
    pads: [usize; 4],
) -> ConvGeometry {
    ConvGeometry {
        in_channels,
        height,
        width,
        out_channels,
        kernel,
        stride,
        dilation,
        groups,
        pads,
        pool: 1,
    }
}

#[test]
fn plain_strided_and_dilated() {
    check(geometry(2, 3, (5, 6), 3, 1, 1, 1, [0; 4]), 2, 1);
    check(geometry(2, 3, (5, 6), 3, 1, 1, 1, [1; 4]), 1, 2);
    check(geometry(3, 2, (6, 5), 1, 1, 1, 1, [0; 4]), 3, 3); // pointwise
    check(geometry(3, 2, (6, 5), 1, 2, 1, 1, [0; 4]), 2, 4); // strided 1×1

    // Pointwise with fewer inputs than outputs: the weight gradient's
    // product swapped (x transposed, dW's rows); grouped, and with more
    // channels than a vector on both sides.
    check(geometry(2, 5, (6, 5), 1, 1, 1, 1, [0; 4]), 3, 11);
    check(geometry(4, 6, (3, 7), 1, 1, 1, 2, [0; 4]), 2, 12);
    check(geometry(17, 40, (4, 5), 1, 1, 1, 1, [0; 4]), 2, 13);

    check(geometry(1, 2, (7, 7), 2, 2, 1, 1, [0; 4]), 2, 5);
    check(geometry(2, 2, (7, 6), 3, 3, 1, 1, [1, 0, 1, 2]), 2, 6);
    check(geometry(2, 2, (7, 7), 3, 1, 2, 1, [2; 4]), 1, 7);
    check(geometry(1, 2, (8, 7), 4, 2, 2, 1, [1, 2, 3, 0]), 2, 8);
    check(geometry(1, 1, (6, 6), 5, 1, 1, 1, [2; 4]), 3, 9);
    check(geometry(2, 1, (7, 6), 5, 3, 1, 1, [2, 1, 2, 1]), 2, 10);
}

#[test]
fn same_padding_and_padding_wider_than_the_map() {
    // SAME_UPPER with an even kernel: the odd pixel at the bottom/right.
    check(geometry(2, 2, (5, 5), 2, 1, 1, 1, [0, 0, 1, 1]), 2, 11);
    check(geometry(2, 2, (6, 5), 4, 1, 1, 1, [1, 1, 2, 2]), 1, 12);
    // SAME with stride 2: 1 all round on an odd map, the odd pixel on an even one.
    check(geometry(2, 3, (5, 7), 3, 2, 1, 1, [1, 1, 1, 1]), 2, 13);
    check(geometry(2, 3, (6, 6), 3, 2, 1, 1, [0, 0, 1, 1]), 2, 14);
    // Padding wider than the map: taps and whole kernel rows in the padding.
    check(geometry(1, 2, (1, 1), 5, 1, 1, 1, [2; 4]), 3, 15);
    check(geometry(2, 2, (1, 2), 3, 1, 2, 1, [3, 2, 3, 4]), 2, 16);
    check(geometry(1, 1, (2, 3), 1, 3, 1, 1, [4; 4]), 2, 17);
    check(geometry(2, 2, (2, 2), 3, 2, 1, 1, [4, 3, 2, 5]), 1, 18);
    // Padded pointwise (not the unpadded shortcut).
    check(geometry(2, 3, (3, 4), 1, 1, 1, 1, [1, 0, 0, 1]), 2, 19);
}

/// The input gradient of 3 × 3 stride-1 convs on rows of whole vectors,
/// which AVX-512 reads from the output gradient in place, the padding as
/// masked lanes: rows of one and two vectors, the top padded by 1 and 2.
#[test]
fn same_padding_on_rows_of_whole_vectors() {
    check(geometry(8, 3, (3, 16), 3, 1, 1, 1, [1; 4]), 2, 41);
    check(geometry(16, 2, (2, 32), 3, 1, 1, 1, [1; 4]), 1, 42);
    check(geometry(8, 2, (4, 16), 3, 1, 1, 1, [2, 1, 0, 1]), 2, 43);
}

#[test]
fn groups_and_depthwise() {
    check(geometry(4, 6, (5, 5), 3, 1, 1, 2, [1; 4]), 2, 21);
    check(geometry(4, 2, (5, 6), 1, 1, 1, 2, [0; 4]), 3, 22); // grouped pointwise
    check(geometry(4, 4, (6, 6), 3, 2, 1, 4, [1; 4]), 2, 23); // depthwise
    check(geometry(3, 6, (6, 5), 3, 1, 2, 3, [0, 1, 2, 1]), 1, 24); // multiplier 2
    check(geometry(2, 4, (7, 7), 5, 2, 1, 2, [2, 2, 3, 3]), 2, 25);
    check(geometry(3, 3, (4, 4), 2, 3, 2, 3, [1, 0, 1, 3]), 3, 26);
    // Depthwise at stride 1: the input gradient is itself a depthwise conv
    // (on dy, the kernel flipped), unless a pad is wider than the kernel.
    check(geometry(4, 4, (7, 6), 3, 1, 2, 4, [2, 1, 0, 4]), 2, 27);
    check(geometry(3, 3, (6, 6), 3, 1, 1, 3, [0, 3, 1, 1]), 2, 28);
    // At stride 2 too, on dy spread out by the stride: odd sizes, uneven
    // pads, dilation, a 5 × 5 kernel, and more channels than a vector.
    check(geometry(3, 3, (7, 6), 3, 2, 1, 3, [1, 0, 1, 2]), 2, 29);
    check(geometry(2, 2, (8, 7), 5, 2, 2, 2, [2, 3, 1, 2]), 2, 30);
    check(geometry(18, 18, (9, 9), 3, 2, 1, 18, [1; 4]), 2, 34);
    // 3 × 3 at stride 1 with a pixel of padding on rows of whole vectors:
    // the forward and the input gradient take the kernel's rows-of-vectors
    // path (blocks of eight rows and a short one).
    check(geometry(3, 3, (9, 16), 3, 1, 1, 3, [1; 4]), 2, 35);
    check(geometry(2, 2, (17, 32), 3, 1, 1, 2, [1; 4]), 1, 36);
    check(geometry(3, 3, (10, 16), 3, 2, 1, 3, [0, 0, 1, 1]), 2, 37); // stride 2 on rows of 16
                                                                      // With AVX-512 the weight gradient walks the forward's way on those
                                                                      // shapes and on rows of 8 (two rows a vector: odd and even heights),
                                                                      // and the stride-2 input gradient spreads dy in registers: a block of
                                                                      // eight output rows and one of one, samples split between threads.
    check(geometry(3, 3, (7, 8), 3, 1, 1, 3, [1; 4]), 3, 38);
    check(geometry(2, 2, (8, 8), 3, 1, 1, 2, [1; 4]), 2, 39);
    check(geometry(2, 2, (1, 8), 3, 1, 1, 2, [1; 4]), 3, 40);
    check(geometry(2, 2, (18, 16), 3, 2, 1, 2, [0, 0, 1, 1]), 3, 41);
    check(geometry(17, 17, (2, 16), 3, 2, 1, 17, [0, 0, 1, 1]), 2, 42);
}

/// Small maps with channels in 32s and 64s, forward and input gradient:
/// where AVX-512 puts channels, not positions, in its vectors.
#[test]
fn channels_in_vectors_on_small_maps() {
    // (Small enough for finite differences in a debug build.)
    check(geometry(2, 32, (3, 4), 3, 1, 1, 1, [1; 4]), 1, 31); // forward
    check(geometry(32, 2, (3, 3), 3, 1, 1, 1, [1; 4]), 1, 32); // input gradient
    check(geometry(2, 64, (3, 3), 3, 2, 1, 1, [1; 4]), 2, 33); // strided, 64s
}

/// A seeded sweep over the whole range of the parameters.
#[test]
fn random_geometries() {
    let mut rng = Xorshift::new(99);
    let mut checked = 0;
    while checked < 80 {
        let groups = [1, 2, 2][rng.below(3)];
        let per_group = 1 + rng.below(2);
        let in_channels = groups * per_group;
        let depthwise = rng.below(3) == 0;
        let (groups, out_channels) = if depthwise {
            (in_channels, in_channels * (1 + rng.below(2)))
        } else {
            (groups, groups * (1 + rng.below(2)))
        };
        let kernel = 1 + rng.below(5);
        let pads = [0; 4].map(|_| rng.below(kernel + 2));
        let g = geometry(
            in_channels,
            out_channels,
            (1 + rng.below(6), 1 + rng.below(6)),
            kernel,
            1 + rng.below(3),
            1 + rng.below(2),
            groups,
            pads,
        );
        if g.out_height() == 0 || g.out_width() == 0 {
            continue;
        }
        check(g, 1 + rng.below(3), 1000 + checked);
        checked += 1;
    }
}

/// An empty output (the kernel outgrows the padded map) sends nothing back.
#[test]
fn an_empty_output_gives_a_zero_input_gradient() {
    let g = geometry(1, 1, (2, 2), 5, 1, 1, 1, [0; 4]);
    assert_eq!(g.out_height(), 0);
    let mut dx = vec![f32::NAN; 4];
    let mut scratch = vec![0.0; g.grad_scratch_len(1)];
    conv2d_grad_input(&[], 1, &g, &[0.5; 25], &mut dx, &mut scratch, &Team::single());
    assert_eq!(dx, [0.0; 4]);
    let mut dw = vec![1.0; 25];
    conv2d_grad_weight(&[1.0; 4], &[], 1, &g, &mut dw, None, &mut scratch, &Team::single());
    assert_eq!(dw, vec![1.0; 25]);
}

/// Every (input, output, weight) index triple of a depthwise conv's
/// definition: output `(n, c, r, q)` reads input `(n, c, r·s + ki − top,
/// q·s + kj − left)` with weight `(c, ki, kj)`, taps in the padding reading
/// nothing.
fn depthwise_taps(batch: usize, g: &ConvGeometry, mut visit: impl FnMut(usize, usize, usize)) {
    let (oh, ow, k, c) = (g.out_height(), g.out_width(), g.kernel, g.in_channels);
    for n in 0..batch {
        for ch in 0..c {
            for r in 0..oh {
                for q in 0..ow {
                    for ki in 0..k {
                        for kj in 0..k {
                            let ih = (r * g.stride + ki) as isize - g.pads[0] as isize;
                            let iw = (q * g.stride + kj) as isize - g.pads[1] as isize;
                            if ih < 0 || iw < 0 || ih >= g.height as isize || iw >= g.width as isize {
                                continue;
                            }
                            let xi = ((n * c + ch) * g.height + ih as usize) * g.width + iw as usize;
                            let yi = ((n * c + ch) * oh + r) * ow + q;
                            visit(xi, yi, (ch * k + ki) * k + kj);
                        }
                    }
                }
            }
        }
    }
}

/// `dW` of a depthwise conv from the definition in f64, a NaN included:
/// `Σ x · dy` over the outputs reading each input with each weight.
fn depthwise_weight_grad_f64(x: &[f32], dy: &[f32], batch: usize, g: &ConvGeometry) -> Vec<f64> {
    let mut dw = vec![0.0; g.in_channels * g.kernel * g.kernel];
    depthwise_taps(batch, g, |xi, yi, wi| dw[wi] += f64::from(x[xi]) * f64::from(dy[yi]));
    dw
}

/// A NaN in the input reaches the weight gradient of the taps that read it
/// under some output, and no other (as in PyTorch): near the last rows,
/// where a vector of outputs runs past the plane's rows, on every shape
/// the depthwise kernel walks in registers.
#[test]
fn depthwise_weight_gradient_keeps_a_nan_to_its_taps() {
    for (size, stride, pads) in [
        ((9, 16), 1, [1; 4]),
        ((7, 8), 1, [1; 4]),
        ((5, 8), 1, [1; 4]),
        ((10, 16), 2, [0, 0, 1, 1]),
        ((6, 6), 1, [1; 4]),
    ] {
        let g = geometry(3, 3, size, 3, stride, 1, 3, pads);
        let batch = 2;
        let mut rng = Xorshift::new(43);
        let mut x = rng.vec(batch * 3 * size.0 * size.1);
        let dy = rng.vec(batch * 3 * g.out_height() * g.out_width());
        for (row, col) in [(size.0 - 1, 0), (size.0 - 2, size.1 - 1)] {
            let mut x = x.clone();
            x[(3 + 1) * size.0 * size.1 + row * size.1 + col] = f32::NAN;
            let want = depthwise_weight_grad_f64(&x, &dy, batch, &g);
            let mut dw = vec![0.0; want.len()];
            let mut scratch = vec![0.0; g.grad_scratch_len(1)];
            conv2d_grad_weight(&x, &dy, batch, &g, &mut dw, None, &mut scratch, &Team::single());
            for (i, (got, want)) in dw.iter().zip(&want).enumerate() {
                assert_eq!(
                    got.is_nan(),
                    want.is_nan(),
                    "{g:?}, NaN at ({row}, {col}): dw[{i}] {got} against {want}"
                );
                if !want.is_nan() {
                    assert!(
                        (f64::from(*got) - want).abs() <= 1e-4 * (1.0 + want.abs()),
                        "{g:?}: dw[{i}] {got} against {want}"
                    );
                }
            }
        }
        x.clear();
    }
}

/// `dx` of a depthwise conv from the definition in f64: every output's
/// gradient times each tap's weight, onto the input it read.
fn depthwise_input_grad_f64(dy: &[f32], w: &[f32], batch: usize, g: &ConvGeometry) -> Vec<f64> {
    let mut dx = vec![0.0; batch * g.in_channels * g.height * g.width];
    depthwise_taps(batch, g, |xi, yi, wi| dx[xi] += f64::from(w[wi]) * f64::from(dy[yi]));
    dx
}

/// Random depthwise 3 × 3 geometries of the shapes the AVX-512 kernel walks
/// in registers (stride 1 on rows of 8, 16 and 32 with 1–18 rows, stride 2
/// on rows of 16 with 2–20 rows) and their neighbours that do not walk
/// (rows of 24, odd stride-2 heights), at batches 1–5 on one and two
/// threads: dx, dW and db against the definition in f64.
#[test]
fn depthwise_backward_of_random_geometries_against_the_definition() {
    let mut rng = Xorshift::new(77);
    for case in 0..60 {
        let stride = 1 + rng.below(2);
        let width = [8, 16, 32, 24][rng.below(4)];
        let (height, pads) = if stride == 1 {
            (1 + rng.below(18), [1; 4])
        } else {
            (2 + rng.below(19), [0, 0, 1, 1])
        };
        let width = if stride == 2 && rng.below(3) > 0 { 16 } else { width };
        let channels = 1 + rng.below(5);
        let g = geometry(channels, channels, (height, width), 3, stride, 1, channels, pads);
        let batch = 1 + rng.below(5);
        let x = rng.vec(batch * channels * height * width);
        let w = rng.vec(channels * 9);
        let dy = rng.vec(batch * channels * g.out_height() * g.out_width());
        let what = format!("case {case}: {g:?} batch {batch}");
        let want_dx = depthwise_input_grad_f64(&dy, &w, batch, &g);
        let want_dw = depthwise_weight_grad_f64(&x, &dy, batch, &g);
        let want_db: Vec<f64> = (0..channels)
            .map(|c| {
                (0..batch)
                    .flat_map(|n| dy.chunks_exact(g.out_height() * g.out_width()).nth(n * channels + c))
                    .flatten()
                    .map(|v| f64::from(*v))
                    .sum()
            })
            .collect();
        for threads in [1, 2] {
            let team = Team::new(threads).unwrap();
            let mut scratch = vec![f32::NAN; g.grad_scratch_len(threads)];
            let mut dx = vec![f32::NAN; x.len()];
            conv2d_grad_input(&dy, batch, &g, &w, &mut dx, &mut scratch, &team);
            assert_grad(&format!("{what}: dx, {threads} threads"), &dx, &want_dx, 1e-4);
            let (mut dw, mut db) = (vec![0.0; w.len()], vec![0.0; channels]);
            conv2d_grad_weight(&x, &dy, batch, &g, &mut dw, Some(&mut db), &mut scratch, &team);
            assert_grad(&format!("{what}: dw, {threads} threads"), &dw, &want_dw, 1e-4);
            assert_grad(&format!("{what}: db, {threads} threads"), &db, &want_db, 1e-4);
        }
    }
}

/// `dx` of a 3 × 3 stride-1 conv by its definition, in f64: `dx[c][i][j]
/// = Σ_o Σ_taps dy[o][i + top − ki][j + left − kj] · w[o][c][ki][kj]`.
fn input_grad_3x3_f64(dy: &[f32], w: &[f32], batch: usize, g: &ConvGeometry) -> Vec<f64> {
    let (h, wd, oh, ow) = (g.height, g.width, g.out_height(), g.out_width());
    let (cin, cout) = (g.in_channels, g.out_channels);
    let (top, left) = (g.pads[0] as isize, g.pads[1] as isize);
    let mut dx = vec![0.0f64; batch * cin * h * wd];
    for n in 0..batch {
        for o in 0..cout {
            for c in 0..cin {
                for ki in 0..3isize {
                    for kj in 0..3isize {
                        let wv = f64::from(w[((o * cin + c) * 3 + ki as usize) * 3 + kj as usize]);
                        for i in 0..h as isize {
                            let p = i + top - ki;
                            if !(0..oh as isize).contains(&p) {
                                continue;
                            }
                            for j in 0..wd as isize {
                                let q = j + left - kj;
                                if (0..ow as isize).contains(&q) {
                                    let d = f64::from(dy[((n * cout + o) * oh + p as usize) * ow + q as usize]);
                                    dx[((n * cin + c) * h + i as usize) * wd + j as usize] += d * wv;
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    dx
}

/// The input gradient of the 3 × 3 stride-1 convs whose forward runs as
/// Winograd (64 → 64 on 16 × 16, 128 → 128 on 8 × 8, where AVX-512 has
/// it; elsewhere the direct kernel), padding 1, and uneven, at batches
/// large enough for Winograd's input gradient and at batch 1, which is
/// not: against its definition, on one and two threads.
#[test]
fn input_gradient_of_winograd_sized_convs() {
    let cases = [
        (64, 16, [1; 4], 16),
        (128, 8, [1; 4], 64),
        (64, 16, [2, 1, 0, 1], 16),
        (64, 16, [1; 4], 1),
    ];
    for (c, size, pads, batch) in cases {
        let g = geometry(c, c, (size, size), 3, 1, 1, 1, pads);
        let mut rng = Xorshift::new(c as u64 + 7);
        let w = rng.vec(g.out_channels * g.in_channels * 9);
        let dy = rng.vec(batch * g.out_channels * g.out_height() * g.out_width());
        let want = input_grad_3x3_f64(&dy, &w, batch, &g);
        for threads in [1, 2] {
            let team = Team::new(threads).unwrap();
            let mut scratch = vec![f32::NAN; g.grad_scratch_len(threads)];
            let mut dx = vec![f32::NAN; batch * g.in_channels * size * size];
            conv2d_grad_input(&dy, batch, &g, &w, &mut dx, &mut scratch, &team);
            assert_grad(&format!("{g:?} batch {batch}: dx, {threads} threads"), &dx, &want, 1e-4);
        }
    }
}
