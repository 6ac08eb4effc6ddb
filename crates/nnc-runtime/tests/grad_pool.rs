//! The pooling backward kernels: max (through the recorded argmax), average
//! (padding not counted) and global average, against central finite
//! differences of float64 pools written from the definition; max pooling's
//! argmax also against the rule for ties and NaN (the first maximum, the
//! first NaN), and its output bit for bit against `max_pool2d`.

mod common;

use common::{assert_grad, numeric_grad, to_f64, Xorshift};
use nnc_runtime::kernels::pool::{
    avg_pool2d, avg_pool2d_grad, global_avg_pool_grad, max_pool2d, max_pool2d_argmax, max_pool2d_grad, PoolGeometry,
};

/// The in-bounds input indices (within the plane, in scan order) of every
/// output window.
fn windows(g: &PoolGeometry) -> Vec<Vec<usize>> {
    let mut all = Vec::new();
    for oy in 0..g.out_height() {
        for ox in 0..g.out_width() {
            let mut window = Vec::new();
            for ky in 0..g.kernel {
                for kx in 0..g.kernel {
                    let iy = (oy * g.stride + ky) as isize - g.pads[0] as isize;
                    let ix = (ox * g.stride + kx) as isize - g.pads[1] as isize;
                    if (0..g.height as isize).contains(&iy) && (0..g.width as isize).contains(&ix) {
                        window.push(iy as usize * g.width + ix as usize);
                    }
                }
            }
            all.push(window);
        }
    }
    all
}

/// A pool in f64 by the definition: `reduce` of each window's values. A
/// window wholly in the padding gives 0 here (−∞ in the kernel) so that the
/// loss stays finite; its gradient is zero either way.
fn pool_f64(x: &[f64], n: usize, g: &PoolGeometry, reduce: impl Fn(&[f64]) -> f64) -> Vec<f64> {
    let plane = g.height * g.width;
    let windows = windows(g);
    let mut y = Vec::new();
    for p in 0..n * g.channels {
        for window in &windows {
            let values: Vec<f64> = window.iter().map(|i| x[p * plane + i]).collect();
            y.push(if values.is_empty() { 0.0 } else { reduce(&values) });
        }
    }
    y
}

fn max_of(v: &[f64]) -> f64 {
    v.iter().cloned().fold(f64::NEG_INFINITY, f64::max)
}

fn mean_of(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

/// Distinct values, multiples of 1/64 apart (no finite-difference step
/// changes which is the maximum), in a seeded order.
fn distinct(len: usize, rng: &mut Xorshift) -> Vec<f32> {
    let mut v: Vec<f32> = (0..len).map(|i| i as f32 / 64.0 - 1.0).collect();
    for i in (1..len).rev() {
        v.swap(i, rng.below(i + 1));
    }
    v
}

fn geometry(
    channels: usize,
    (height, width): (usize, usize),
    kernel: usize,
    stride: usize,
    pads: [usize; 4],
) -> PoolGeometry {
    PoolGeometry {
        channels,
        height,
        width,
        kernel,
        stride,
        pads,
    }
}

/// Small geometries with overlapping and disjoint windows, asymmetric
/// padding, and padding up to the kernel (windows wholly in the padding).
fn geometries() -> Vec<PoolGeometry> {
    let mut rng = Xorshift::new(7);
    let mut all = vec![
        geometry(2, (4, 4), 2, 2, [0; 4]),
        geometry(1, (5, 5), 3, 1, [1; 4]),
        geometry(2, (5, 6), 3, 2, [1; 4]),
        geometry(1, (6, 5), 3, 2, [0, 0, 1, 1]),
        geometry(1, (7, 7), 4, 3, [1, 2, 2, 1]),
        geometry(1, (3, 3), 2, 1, [2; 4]),
        geometry(1, (1, 2), 3, 1, [3, 1, 2, 0]),
    ];
    while all.len() < 60 {
        let kernel = 1 + rng.below(4);
        all.push(geometry(
            1 + rng.below(2),
            (1 + rng.below(6), 1 + rng.below(6)),
            kernel,
            1 + rng.below(3),
            [0; 4].map(|_| rng.below(kernel + 1)),
        ));
    }
    all
}

#[test]
fn max_pool_gradient_against_finite_differences() {
    let mut rng = Xorshift::new(1);
    for g in geometries() {
        for n in [1, 2] {
            let x = distinct(n * g.channels * g.height * g.width, &mut rng);
            let out = n * g.channels * g.out_height() * g.out_width();
            let dy = rng.vec(out);
            let (mut y, mut argmax) = (vec![0.0; out], vec![0; out]);
            max_pool2d_argmax(&x, n, &g, &mut y, &mut argmax);
            let mut dx = vec![f32::NAN; x.len()];
            max_pool2d_grad(&dy, &argmax, n, &g, &mut dx);
            let want = numeric_grad(&x, &to_f64(&dy), |x| pool_f64(x, n, &g, max_of));
            assert_grad(&format!("{g:?} n {n}: max dx"), &dx, &want, 1e-3);
        }
    }
}

#[test]
fn avg_pool_gradient_against_finite_differences() {
    let mut rng = Xorshift::new(2);
    for g in geometries() {
        for n in [1, 3] {
            let x = rng.vec(n * g.channels * g.height * g.width);
            let dy = rng.vec(n * g.channels * g.out_height() * g.out_width());
            let mut dx = vec![f32::NAN; x.len()];
            avg_pool2d_grad(&dy, n, &g, &mut dx);
            let want = numeric_grad(&x, &to_f64(&dy), |x| pool_f64(x, n, &g, mean_of));
            assert_grad(&format!("{g:?} n {n}: avg dx"), &dx, &want, 1e-3);
            // The reference is the forward's definition.
            let mut y = vec![0.0; dy.len()];
            avg_pool2d(&x, n, &g, &mut y);
            assert_grad(
                &format!("{g:?}: avg forward"),
                &y,
                &pool_f64(&to_f64(&x), n, &g, mean_of),
                1e-5,
            );
        }
    }
}

#[test]
fn global_avg_pool_gradient_against_finite_differences() {
    let mut rng = Xorshift::new(3);
    for (n, channels, inner) in [(1, 1, 1), (2, 3, 4), (3, 2, 9), (1, 4, 1)] {
        let x = rng.vec(n * channels * inner);
        let dy = rng.vec(n * channels);
        let mut dx = vec![f32::NAN; x.len()];
        global_avg_pool_grad(&dy, n, channels, inner, &mut dx);
        let want = numeric_grad(&x, &to_f64(&dy), |x| x.chunks(inner).map(mean_of).collect());
        assert_grad(&format!("global avg {n}×{channels}×{inner}"), &dx, &want, 1e-3);
    }
}

/// With many ties (a few integer levels, ±0 among them) and NaNs, the
/// argmax is the first maximum or the first NaN in scan order, `u32::MAX`
/// for a window wholly in the padding, the output is `max_pool2d`'s bit for
/// bit, and the gradient goes to the argmax alone.
#[test]
fn ties_and_nan_take_the_first_in_scan_order() {
    let mut rng = Xorshift::new(4);
    let levels = [-1.0f32, -0.0, 0.0, 1.0, 1.0, 2.0, f32::NAN];
    for g in geometries() {
        for nan in [false, true] {
            let plane = g.height * g.width;
            let x: Vec<f32> = (0..g.channels * plane)
                .map(|_| levels[rng.below(if nan { 7 } else { 6 })])
                .collect();
            let out = g.channels * g.out_height() * g.out_width();
            let (mut y, mut argmax, mut want_y) = (vec![0.0; out], vec![0; out], vec![0.0; out]);
            max_pool2d_argmax(&x, 1, &g, &mut y, &mut argmax);
            max_pool2d(&x, 1, &g, &mut want_y);
            let bits = |v: &[f32]| v.iter().map(|a| a.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&y), bits(&want_y), "{g:?}: y of {x:?}");

            let windows = windows(&g);
            let mut want_dx = vec![0.0f32; x.len()];
            let dy: Vec<f32> = (0..out).map(|i| (i + 1) as f32).collect();
            for (o, (arg, d)) in argmax.iter().zip(&dy).enumerate() {
                let (p, window) = (o / windows.len(), &windows[o % windows.len()]);
                let values = |i: usize| x[p * plane + i];
                let first_nan = window.iter().find(|&&i| values(i).is_nan());
                let largest = window.iter().map(|&i| values(i)).fold(f32::NEG_INFINITY, f32::max);
                let want = first_nan.or_else(|| window.iter().find(|&&i| values(i) == largest));
                match want {
                    Some(&i) => {
                        assert_eq!(*arg as usize, i, "{g:?}: output {o} of {x:?}");
                        want_dx[p * plane + i] += d;
                    }
                    None => assert_eq!((*arg, y[o]), (u32::MAX, f32::NEG_INFINITY), "{g:?}: output {o}"),
                }
            }
            let mut dx = vec![f32::NAN; x.len()];
            max_pool2d_grad(&dy, &argmax, 1, &g, &mut dx);
            assert_eq!(dx, want_dx, "{g:?}: dx of {x:?}");
        }
    }
}

#[test]
fn overlapping_windows_sum_at_a_shared_maximum() {
    // 3×3 windows, stride 1 on a 3×4 plane: the 9 at (1, 1) is the maximum
    // of both windows; the second window's (1, 3) = 9 comes later.
    let g = geometry(1, (3, 4), 3, 1, [0; 4]);
    let x = [0.0, 1.0, 2.0, 3.0, 4.0, 9.0, 5.0, 9.0, 6.0, 7.0, 8.0, 1.0];
    let (mut y, mut argmax) = ([0.0; 2], [0; 2]);
    max_pool2d_argmax(&x, 1, &g, &mut y, &mut argmax);
    assert_eq!((y, argmax), ([9.0, 9.0], [5, 5]));
    let mut dx = [f32::NAN; 12];
    max_pool2d_grad(&[1.0, 10.0], &argmax, 1, &g, &mut dx);
    let mut want = [0.0; 12];
    want[5] = 11.0;
    assert_eq!(dx, want);
}
