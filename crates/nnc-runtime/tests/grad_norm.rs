//! The normalisation backward kernels (batch, layer, instance and group
//! norm through their saved statistics, LRN, the per-channel affine) against
//! central finite differences of float64 forwards written from the
//! definitions; the `_save` forwards bit for bit against the plain ones.

mod common;

use common::{assert_close_f32, assert_grad, assert_grad_above, doubled, numeric_grad, to_f64, Xorshift};
use nnc_runtime::kernels::norm::{
    affine, affine_grad, batch_norm_grad, batch_norm_train, batch_norm_train_save, group_norm, group_norm_grad,
    group_norm_save, instance_norm, instance_norm_grad, instance_norm_save, layer_norm, layer_norm_grad,
    layer_norm_save, lrn, lrn_grad,
};
use nnc_runtime::Team;

const EPS: f32 = 1e-5;

/// Normalises each set of indices by its mean and biased variance, then
/// applies `γ[param(i)]`, `β[param(i)]`.
fn normalise_sets(
    x: &[f64],
    sets: &[Vec<usize>],
    param: impl Fn(usize) -> usize,
    gamma: &[f64],
    beta: &[f64],
) -> Vec<f64> {
    let mut y = vec![f64::NAN; x.len()];
    for set in sets {
        let m = set.len() as f64;
        let mean = set.iter().map(|&i| x[i]).sum::<f64>() / m;
        let var = set.iter().map(|&i| (x[i] - mean).powi(2)).sum::<f64>() / m;
        for &i in set {
            y[i] = (x[i] - mean) / (var + f64::from(EPS)).sqrt() * gamma[param(i)] + beta[param(i)];
        }
    }
    y
}

/// The sets of `[n, channels, inner]` that group norm normalises: per sample
/// and group of `channels / groups` channels.
fn group_sets(n: usize, channels: usize, inner: usize, groups: usize) -> Vec<Vec<usize>> {
    let per_group = channels / groups * inner;
    (0..n * groups)
        .map(|set| (set * per_group..(set + 1) * per_group).collect())
        .collect()
}

/// Batch norm's sets: per channel, over samples and `inner`.
fn channel_sets(n: usize, channels: usize, inner: usize) -> Vec<Vec<usize>> {
    (0..channels)
        .map(|c| {
            (0..n)
                .flat_map(|s| ((s * channels + c) * inner..(s * channels + c + 1) * inner).collect::<Vec<_>>())
                .collect()
        })
        .collect()
}

/// Everything a norm test feeds a kernel: input, affine, upstream gradient.
struct Case {
    x: Vec<f32>,
    gamma: Vec<f32>,
    beta: Vec<f32>,
    dy: Vec<f32>,
}

impl Case {
    fn new(rng: &mut Xorshift, len: usize, params: usize) -> Case {
        Case {
            x: rng.vec(len),
            gamma: rng.vec_in(params, 0.5, 1.5),
            beta: rng.vec(params),
            dy: rng.vec(len),
        }
    }

    /// The size of the terms that make up a norm's dx, `inv_std·γ·dy`
    /// (they cancel where a set holds two values, as x̂ is then ±1).
    fn terms(&self, stats: &[f32]) -> f64 {
        let largest = |v: &[f32]| v.iter().fold(0.0f64, |m, a| m.max(f64::from(a.abs())));
        largest(&stats[stats.len() / 2..]) * largest(&self.gamma) * largest(&self.dy)
    }

    /// dx, dγ, dβ against the finite differences of `forward(x, γ, β)`, dx
    /// to a tolerance relative to at least `dx_floor`.
    fn check(
        &self,
        what: &str,
        (dx, dgamma, dbeta): (&[f32], &[f32], &[f32]),
        dx_floor: f64,
        forward: impl Fn(&[f64], &[f64], &[f64]) -> Vec<f64>,
    ) {
        let (x, gamma, beta, r) = (
            to_f64(&self.x),
            to_f64(&self.gamma),
            to_f64(&self.beta),
            to_f64(&self.dy),
        );
        let want_dx = numeric_grad(&self.x, &r, |x| forward(x, &gamma, &beta));
        assert_grad_above(&format!("{what}: dx"), dx, &want_dx, 1e-3, dx_floor);
        let want_dgamma = numeric_grad(&self.gamma, &r, |g| forward(&x, g, &beta));
        assert_grad(&format!("{what}: dgamma"), dgamma, &want_dgamma, 1e-3);
        let want_dbeta = numeric_grad(&self.beta, &r, |b| forward(&x, &gamma, b));
        assert_grad(&format!("{what}: dbeta"), dbeta, &want_dbeta, 1e-3);
    }
}

/// `[mean…, inv_std…]` of each set, in f64.
fn stats_f64(x: &[f32], sets: &[Vec<usize>]) -> Vec<f64> {
    let moments: Vec<(f64, f64)> = sets
        .iter()
        .map(|set| {
            let m = set.len() as f64;
            let mean = set.iter().map(|&i| f64::from(x[i])).sum::<f64>() / m;
            let var = set.iter().map(|&i| (f64::from(x[i]) - mean).powi(2)).sum::<f64>() / m;
            (mean, 1.0 / (var + f64::from(EPS)).sqrt())
        })
        .collect();
    moments.iter().map(|m| m.0).chain(moments.iter().map(|m| m.1)).collect()
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|a| a.to_bits()).collect()
}

#[test]
fn batch_norm() {
    let mut rng = Xorshift::new(1);
    for (n, channels, inner) in [
        (1, 1, 4),
        (1, 3, 5),
        (2, 2, 1),
        (2, 3, 4),
        (3, 1, 6),
        (4, 2, 3),
        (4, 3, 1),
    ] {
        let what = format!("batch norm {n}×{channels}×{inner}");
        let case = Case::new(&mut rng, n * channels * inner, channels);
        let running = (rng.vec(channels), rng.vec_in(channels, 0.5, 2.0));

        let (mut rm, mut rv, mut y) = (running.0.clone(), running.1.clone(), vec![0.0; case.x.len()]);
        batch_norm_train(
            &case.x,
            n,
            channels,
            inner,
            &case.gamma,
            &case.beta,
            &mut rm,
            &mut rv,
            EPS,
            0.1,
            &mut y,
            &Team::single(),
        );
        let (mut rm_s, mut rv_s, mut y_s) = (running.0.clone(), running.1.clone(), vec![0.0; case.x.len()]);
        let mut stats = vec![f32::NAN; 2 * channels];
        let (x, gamma, beta) = (&case.x, &case.gamma, &case.beta);
        batch_norm_train_save(
            x,
            n,
            channels,
            inner,
            gamma,
            beta,
            &mut rm_s,
            &mut rv_s,
            EPS,
            0.1,
            &mut y_s,
            &mut stats,
            &Team::single(),
        );
        assert_eq!(
            (bits(&y_s), bits(&rm_s), bits(&rv_s)),
            (bits(&y), bits(&rm), bits(&rv)),
            "{what}"
        );
        let sets = channel_sets(n, channels, inner);
        assert_grad(&format!("{what}: stats"), &stats, &stats_f64(x, &sets), 1e-6);

        let mut dx = vec![f32::NAN; x.len()];
        let (mut dgamma, mut dbeta) = (vec![0.0; channels], vec![0.0; channels]);
        batch_norm_grad(
            x,
            &case.dy,
            n,
            channels,
            inner,
            gamma,
            &stats,
            &mut dx,
            &mut dgamma,
            &mut dbeta,
            &Team::single(),
        );
        case.check(&what, (&dx, &dgamma, &dbeta), case.terms(&stats), |x, g, b| {
            normalise_sets(x, &sets, |i| i / inner % channels, g, b)
        });

        // Through the batch mean, dx sums to zero over each channel.
        for (c, set) in sets.iter().enumerate() {
            let sum: f64 = set.iter().map(|&i| f64::from(dx[i])).sum();
            let size: f64 = set.iter().map(|&i| f64::from(dx[i]).abs()).sum();
            assert!(
                sum.abs() <= 1e-5 * size.max(1e-6),
                "{what}: channel {c}'s dx sums to {sum}"
            );
        }
        let once = (dgamma.clone(), dbeta.clone());
        batch_norm_grad(
            x,
            &case.dy,
            n,
            channels,
            inner,
            gamma,
            &stats,
            &mut dx,
            &mut dgamma,
            &mut dbeta,
            &Team::single(),
        );
        assert_close_f32(&format!("{what}: dgamma twice"), &dgamma, &doubled(&once.0));
        assert_close_f32(&format!("{what}: dbeta twice"), &dbeta, &doubled(&once.1));
    }
}

/// Channels shared between two threads (a tensor large enough to split):
/// every output bit for bit as on one.
#[test]
fn batch_norm_on_two_threads_is_the_one_thread_result() {
    let (n, channels, inner) = (3, 5, 9000);
    let mut rng = Xorshift::new(77);
    let case = Case::new(&mut rng, n * channels * inner, channels);
    let (x, gamma, beta) = (&case.x, &case.gamma, &case.beta);
    let run = |team: &Team| {
        let (mut rm, mut rv) = (vec![0.5; channels], vec![1.5; channels]);
        let (mut y, mut stats) = (vec![f32::NAN; x.len()], vec![f32::NAN; 2 * channels]);
        batch_norm_train_save(
            x, n, channels, inner, gamma, beta, &mut rm, &mut rv, EPS, 0.1, &mut y, &mut stats, team,
        );
        let (mut dx, mut dgamma, mut dbeta) = (vec![f32::NAN; x.len()], vec![0.25; channels], vec![0.5; channels]);
        batch_norm_grad(
            x,
            &case.dy,
            n,
            channels,
            inner,
            gamma,
            &stats,
            &mut dx,
            &mut dgamma,
            &mut dbeta,
            team,
        );
        [y, rm, rv, stats, dx, dgamma, dbeta].map(|v| bits(&v))
    };
    assert_eq!(run(&Team::new(2).unwrap()), run(&Team::single()));
}

#[test]
fn layer_norm_gradients() {
    let mut rng = Xorshift::new(2);
    for (n, per_sample) in [(1, 1), (1, 5), (2, 3), (3, 8), (4, 6)] {
        let what = format!("layer norm {n}×{per_sample}");
        let case = Case::new(&mut rng, n * per_sample, per_sample);
        let (x, gamma, beta) = (&case.x, &case.gamma, &case.beta);
        let (mut y, mut y_s, mut stats) = (vec![0.0; x.len()], vec![0.0; x.len()], vec![f32::NAN; 2 * n]);
        layer_norm(x, n, per_sample, gamma, beta, EPS, &mut y);
        layer_norm_save(x, n, per_sample, gamma, beta, EPS, &mut y_s, &mut stats);
        assert_eq!(bits(&y_s), bits(&y), "{what}");
        let sets = group_sets(n, 1, per_sample, 1);
        assert_grad(&format!("{what}: stats"), &stats, &stats_f64(x, &sets), 1e-6);

        let mut dx = vec![f32::NAN; x.len()];
        let (mut dgamma, mut dbeta) = (vec![0.0; per_sample], vec![0.0; per_sample]);
        layer_norm_grad(
            x,
            &case.dy,
            n,
            per_sample,
            gamma,
            &stats,
            &mut dx,
            &mut dgamma,
            &mut dbeta,
        );
        case.check(&what, (&dx, &dgamma, &dbeta), case.terms(&stats), |x, g, b| {
            normalise_sets(x, &sets, |i| i % per_sample, g, b)
        });

        let once = (dgamma.clone(), dbeta.clone());
        layer_norm_grad(
            x,
            &case.dy,
            n,
            per_sample,
            gamma,
            &stats,
            &mut dx,
            &mut dgamma,
            &mut dbeta,
        );
        assert_close_f32(&format!("{what}: dgamma twice"), &dgamma, &doubled(&once.0));
        assert_close_f32(&format!("{what}: dbeta twice"), &dbeta, &doubled(&once.1));
    }
}

#[test]
fn group_and_instance_norm_gradients() {
    let mut rng = Xorshift::new(3);
    for (n, channels, inner, groups) in [
        (1, 2, 3, 1),
        (1, 4, 2, 2),
        (2, 4, 3, 2),
        (2, 6, 2, 3),
        (3, 3, 4, 3),
        (4, 4, 1, 2),
        (2, 4, 5, 4),
    ] {
        let what = format!("group norm {n}×{channels}×{inner}, {groups} groups");
        let case = Case::new(&mut rng, n * channels * inner, channels);
        let (x, gamma, beta) = (&case.x, &case.gamma, &case.beta);
        let len = x.len();
        let (mut y, mut y_s, mut stats) = (vec![0.0; len], vec![0.0; len], vec![f32::NAN; 2 * n * groups]);
        group_norm(x, n, channels, inner, groups, gamma, beta, EPS, &mut y);
        group_norm_save(x, n, channels, inner, groups, gamma, beta, EPS, &mut y_s, &mut stats);
        assert_eq!(bits(&y_s), bits(&y), "{what}");
        let sets = group_sets(n, channels, inner, groups);
        assert_grad(&format!("{what}: stats"), &stats, &stats_f64(x, &sets), 1e-6);

        let mut dx = vec![f32::NAN; len];
        let (mut dgamma, mut dbeta) = (vec![0.0; channels], vec![0.0; channels]);
        group_norm_grad(
            x,
            &case.dy,
            n,
            channels,
            inner,
            groups,
            gamma,
            &stats,
            &mut dx,
            &mut dgamma,
            &mut dbeta,
        );
        let channel = |i: usize| i / inner % channels;
        case.check(&what, (&dx, &dgamma, &dbeta), case.terms(&stats), |x, g, b| {
            normalise_sets(x, &sets, channel, g, b)
        });

        let once = (dgamma.clone(), dbeta.clone());
        group_norm_grad(
            x,
            &case.dy,
            n,
            channels,
            inner,
            groups,
            gamma,
            &stats,
            &mut dx,
            &mut dgamma,
            &mut dbeta,
        );
        assert_close_f32(&format!("{what}: dgamma twice"), &dgamma, &doubled(&once.0));
        assert_close_f32(&format!("{what}: dbeta twice"), &dbeta, &doubled(&once.1));

        // Instance norm: one channel per group.
        let what = format!("instance norm {n}×{channels}×{inner}");
        let mut stats = vec![f32::NAN; 2 * n * channels];
        instance_norm(x, n, channels, inner, gamma, beta, EPS, &mut y);
        instance_norm_save(x, n, channels, inner, gamma, beta, EPS, &mut y_s, &mut stats);
        assert_eq!(bits(&y_s), bits(&y), "{what}");
        let sets = group_sets(n, channels, inner, channels);
        assert_grad(&format!("{what}: stats"), &stats, &stats_f64(x, &sets), 1e-6);
        let (mut dgamma, mut dbeta) = (vec![0.0; channels], vec![0.0; channels]);
        dx.fill(f32::NAN);
        instance_norm_grad(
            x,
            &case.dy,
            n,
            channels,
            inner,
            gamma,
            &stats,
            &mut dx,
            &mut dgamma,
            &mut dbeta,
        );
        case.check(&what, (&dx, &dgamma, &dbeta), case.terms(&stats), |x, g, b| {
            normalise_sets(x, &sets, channel, g, b)
        });
    }
}

/// ONNX LRN from its formula: `y_c = x_c / (bias + α/size · Σ x²)^β`, the
/// sum over channels `c − ⌊(size−1)/2⌋ ..= c + ⌈(size−1)/2⌉` in the map.
#[allow(clippy::too_many_arguments)]
fn lrn_f64(
    x: &[f64],
    n: usize,
    channels: usize,
    inner: usize,
    size: usize,
    alpha: f64,
    beta: f64,
    bias: f64,
) -> Vec<f64> {
    let mut y = vec![0.0; x.len()];
    for s in 0..n {
        for c in 0..channels {
            for i in 0..inner {
                let at = |ch: usize| (s * channels + ch) * inner + i;
                let lo = c as isize - ((size as isize - 1) / 2);
                let hi = c as isize + size as isize / 2;
                let sum: f64 = (lo..=hi)
                    .filter(|&ch| (0..channels as isize).contains(&ch))
                    .map(|ch| x[at(ch as usize)].powi(2))
                    .sum();
                y[at(c)] = x[at(c)] / (bias + alpha / size as f64 * sum).powf(beta);
            }
        }
    }
    y
}

#[test]
fn lrn_gradient() {
    let mut rng = Xorshift::new(4);
    for (n, channels, inner, size, alpha, beta, bias) in [
        (1, 1, 3, 1, 0.5, 0.75, 1.0),
        (2, 3, 2, 3, 3.0, 0.75, 1.0),
        (1, 5, 4, 5, 1e-4, 0.75, 1.0),
        (2, 6, 3, 4, 2.0, 0.5, 2.0),
        (3, 4, 1, 2, 1.5, 1.0, 0.5),
        (1, 7, 2, 5, 4.0, 0.75, 1.0),
        (2, 2, 3, 7, 2.0, 1.5, 1.0),
    ] {
        let what = format!("lrn {n}×{channels}×{inner} size {size} α {alpha} β {beta} bias {bias}");
        let x = rng.vec_in(n * channels * inner, -2.0, 2.0);
        let dy = rng.vec(x.len());
        let mut dx = vec![f32::NAN; x.len()];
        lrn_grad(&x, &dy, n, channels, inner, size, alpha, beta, bias, &mut dx);
        let (a, b, k) = (f64::from(alpha), f64::from(beta), f64::from(bias));
        let want = numeric_grad(&x, &to_f64(&dy), |x| lrn_f64(x, n, channels, inner, size, a, b, k));
        assert_grad(&format!("{what}: dx"), &dx, &want, 1e-3);
        // The reference is the forward's definition.
        let mut y = vec![0.0; x.len()];
        lrn(&x, n, channels, inner, size, alpha, beta, bias, &mut y);
        assert_grad(
            &format!("{what}: forward"),
            &y,
            &lrn_f64(&to_f64(&x), n, channels, inner, size, a, b, k),
            1e-5,
        );
    }
}

#[test]
fn affine_gradients() {
    let mut rng = Xorshift::new(5);
    for (n, channels, inner) in [(1, 1, 1), (2, 3, 4), (3, 2, 1), (4, 5, 2)] {
        let what = format!("affine {n}×{channels}×{inner}");
        let case = Case::new(&mut rng, n * channels * inner, channels);
        let (x, scale, shift) = (&case.x, &case.gamma, &case.beta);
        let mut dx = vec![f32::NAN; x.len()];
        let (mut dscale, mut dshift) = (vec![0.0; channels], vec![0.0; channels]);
        affine_grad(
            x,
            &case.dy,
            n,
            channels,
            inner,
            scale,
            &mut dx,
            &mut dscale,
            &mut dshift,
        );
        let forward = |x: &[f64], scale: &[f64], shift: &[f64]| -> Vec<f64> {
            let c = |i: usize| i / inner % channels;
            x.iter()
                .enumerate()
                .map(|(i, v)| v * scale[c(i)] + shift[c(i)])
                .collect()
        };
        case.check(&what, (&dx, &dscale, &dshift), 1e-6, forward);
        let mut y = vec![0.0; x.len()];
        affine(x, n, channels, inner, scale, shift, &mut y);
        assert_grad(
            &format!("{what}: forward"),
            &y,
            &forward(&to_f64(x), &to_f64(scale), &to_f64(shift)),
            1e-6,
        );

        let once = (dscale.clone(), dshift.clone());
        affine_grad(
            x,
            &case.dy,
            n,
            channels,
            inner,
            scale,
            &mut dx,
            &mut dscale,
            &mut dshift,
        );
        assert_close_f32(&format!("{what}: dscale twice"), &dscale, &doubled(&once.0));
        assert_close_f32(&format!("{what}: dshift twice"), &dshift, &doubled(&once.1));
    }
}
