//! Normalisations over `[n, channels, inner]`, PyTorch's conventions:
//! normalise with the biased variance; batch norm's running variance is
//! updated with the unbiased one, `running = (1 − m)·running + m·batch`.
//! Statistics are accumulated in f64. For training, the `_save` forwards
//! keep each set's `[mean…, inv_std…]` (f32) for the `_grad` backwards.

use super::dense::{split, WORK_PER_THREAD};
use super::simd::{at_level, leveled};
use crate::team::{Disjoint, Team};

/// Mean and biased variance of the values `at(0..count)`.
fn moments(count: usize, at: impl Fn(usize) -> f32) -> (f64, f64) {
    let n = count.max(1) as f64;
    let mean = (0..count).map(|i| f64::from(at(i))).sum::<f64>() / n;
    let var = (0..count).map(|i| (f64::from(at(i)) - mean).powi(2)).sum::<f64>() / n;
    (mean, var)
}

/// The layout of a per-channel norm's input: `[n, channels, inner]`.
#[derive(Clone, Copy)]
struct Channels {
    n: usize,
    channels: usize,
    inner: usize,
}

impl Channels {
    /// The indices of channel `c` in every sample.
    fn channel(self, c: usize) -> impl Iterator<Item = usize> + Clone {
        let Channels { n, channels, inner } = self;
        (0..n).flat_map(move |s| {
            let base = (s * channels + c) * inner;
            base..base + inner
        })
    }
}

/// Writes set `i`'s mean and inv_std into `stats` `[mean…, inv_std…]` of
/// `sets` sets, if there is one.
fn save(stats: Option<&mut [f32]>, sets: usize, i: usize, mean: f64, inv_std: f64) {
    if let Some(stats) = stats {
        stats[i] = mean as f32;
        stats[sets + i] = inv_std as f32;
    }
}

/// Set `i`'s (mean, inv_std) from `stats` `[mean…, inv_std…]` of `sets` sets.
fn saved(stats: &[f32], sets: usize, i: usize) -> (f64, f64) {
    (f64::from(stats[i]), f64::from(stats[sets + i]))
}

/// `(Σ dy, Σ dy·x̂)` over the elements `indices`, x̂ = (x − mean)·inv_std:
/// the β and γ gradients of one set.
fn affine_sums(x: &[f32], dy: &[f32], indices: impl Iterator<Item = usize>, (mean, inv): (f64, f64)) -> (f64, f64) {
    indices.fold((0.0, 0.0), |(sum_dy, sum_dy_xhat), i| {
        let d = f64::from(dy[i]);
        (sum_dy + d, sum_dy_xhat + d * (f64::from(x[i]) - mean) * inv)
    })
}

/// The input gradient of one normalised set, the elements `indices` with
/// statistics `(mean, inv)`, element `i` scaled by `gamma_of(i)`. With x̂ =
/// (x − mean)·inv and ĝ = dy·γ, differentiating through the mean and the
/// variance gives `dx = inv · (ĝ − mean(ĝ) − x̂ · mean(ĝ·x̂))`.
fn set_input_grad(
    x: &[f32],
    dy: &[f32],
    indices: impl Iterator<Item = usize> + Clone,
    gamma_of: impl Fn(usize) -> f64,
    (mean, inv): (f64, f64),
    dx: &mut [f32],
) {
    let (mut count, mut sum_g, mut sum_g_xhat) = (0usize, 0.0f64, 0.0f64);
    for i in indices.clone() {
        let g = f64::from(dy[i]) * gamma_of(i);
        count += 1;
        sum_g += g;
        sum_g_xhat += g * (f64::from(x[i]) - mean) * inv;
    }
    let (mean_g, mean_g_xhat) = (sum_g / count.max(1) as f64, sum_g_xhat / count.max(1) as f64);
    for i in indices {
        let g = f64::from(dy[i]) * gamma_of(i);
        let xhat = (f64::from(x[i]) - mean) * inv;
        dx[i] = (inv * (g - mean_g - xhat * mean_g_xhat)) as f32;
    }
}

/// `y = (x − mean) / √(var + eps) · γ + β` on channel `c` of every sample.
#[allow(clippy::too_many_arguments)]
fn normalise_channel(
    x: &[f32],
    at: Channels,
    c: usize,
    (mean, var): (f64, f64),
    gamma: &[f32],
    beta: &[f32],
    eps: f32,
    y: &mut [f32],
) {
    let scale = f64::from(gamma[c]) / (var + f64::from(eps)).sqrt();
    for s in 0..at.n {
        let base = (s * at.channels + c) * at.inner;
        for i in base..base + at.inner {
            y[i] = ((f64::from(x[i]) - mean) * scale + f64::from(beta[c])) as f32;
        }
    }
}

#[allow(clippy::too_many_arguments)]
pub fn batch_norm_infer(
    x: &[f32],
    n: usize,
    channels: usize,
    inner: usize,
    gamma: &[f32],
    beta: &[f32],
    running_mean: &[f32],
    running_var: &[f32],
    eps: f32,
    y: &mut [f32],
) {
    let at = Channels { n, channels, inner };
    for c in 0..channels {
        let stats = (f64::from(running_mean[c]), f64::from(running_var[c]));
        normalise_channel(x, at, c, stats, gamma, beta, eps, y);
    }
}

/// Batch statistics per channel over n and inner; updates the running ones.
#[allow(clippy::too_many_arguments)]
pub fn batch_norm_train(
    x: &[f32],
    n: usize,
    channels: usize,
    inner: usize,
    gamma: &[f32],
    beta: &[f32],
    running_mean: &mut [f32],
    running_var: &mut [f32],
    eps: f32,
    momentum: f32,
    y: &mut [f32],
    team: &Team,
) {
    let running = (running_mean, running_var);
    batch_norm_train_stats(
        x, n, channels, inner, gamma, beta, running, eps, momentum, y, None, team,
    );
}

/// [`batch_norm_train`] that also saves the batch statistics for
/// [`batch_norm_grad`]: `stats` is `[mean per channel…, inv_std per
/// channel…]`, inv_std = 1/√(biased var + eps). Same `y` and running stats.
#[allow(clippy::too_many_arguments)]
pub fn batch_norm_train_save(
    x: &[f32],
    n: usize,
    channels: usize,
    inner: usize,
    gamma: &[f32],
    beta: &[f32],
    running_mean: &mut [f32],
    running_var: &mut [f32],
    eps: f32,
    momentum: f32,
    y: &mut [f32],
    stats: &mut [f32],
    team: &Team,
) {
    let running = (running_mean, running_var);
    batch_norm_train_stats(
        x,
        n,
        channels,
        inner,
        gamma,
        beta,
        running,
        eps,
        momentum,
        y,
        Some(stats),
        team,
    );
}

#[allow(clippy::too_many_arguments)]
fn batch_norm_train_stats(
    x: &[f32],
    n: usize,
    channels: usize,
    inner: usize,
    gamma: &[f32],
    beta: &[f32],
    (running_mean, running_var): (&mut [f32], &mut [f32]),
    eps: f32,
    momentum: f32,
    y: &mut [f32],
    stats: Option<&mut [f32]>,
    team: &Team,
) {
    let at = Channels { n, channels, inner };
    let (y, running_mean, running_var) = (
        Disjoint::new(y),
        Disjoint::new(running_mean),
        Disjoint::new(running_var),
    );
    let stats = stats.map(Disjoint::new);
    let parts = channel_parts(team, channels, x.len());
    // A channel at a time, so that no table of statistics is needed;
    // channels are shared among the team.
    team.run(parts, &|t| {
        for c in split(channels, parts, t, 1) {
            let (mean, var) = at_level!(channel_moments(x, at, c));
            let inv = 1.0 / (var + f64::from(eps)).sqrt();
            let scale = f64::from(gamma[c]) * inv;
            let (a, b) = (scale as f32, (f64::from(beta[c]) - mean * scale) as f32);
            at_level!(scale_channel(x, at, c, (a, b), &y));
            // SAFETY (every piece below): parts own disjoint channels, and
            // these are channel c's entries.
            if let Some(stats) = stats {
                unsafe { stats.piece(c..c + 1) }.fill(mean as f32);
                unsafe { stats.piece(channels + c..channels + c + 1) }.fill(inv as f32);
            }
            let count = n * inner;
            let unbiased = if count > 1 {
                var * count as f64 / (count - 1) as f64
            } else {
                var
            };
            let m = f64::from(momentum);
            for (running, value) in [(running_mean, mean), (running_var, unbiased)] {
                for r in unsafe { running.piece(c..c + 1) } {
                    *r = ((1.0 - m) * f64::from(*r) + m * value) as f32;
                }
            }
        }
    });
}

/// The `n · inner` values of channel `c`: each sample's run of it, one
/// after another.
#[inline(always)]
fn channel_run(at: Channels, c: usize, s: usize) -> std::ops::Range<usize> {
    let start = (s * at.channels + c) * at.inner;
    start..start + at.inner
}

leveled! {
    /// Channel `c`'s mean and biased variance: each run summed in f32
    /// lanes, the runs in f64; the variance from the deviations from the
    /// mean (a second pass), not from `E[x²] − E[x]²`.
    fn channel_moments(x: &[f32], at: Channels, c: usize) -> (f64, f64) {
        let count = (at.n * at.inner).max(1) as f64;
        let mut sum = 0.0;
        for s in 0..at.n {
            sum += run_sum(&x[channel_run(at, c, s)]);
        }
        let mean = sum / count;
        let mut deviations = 0.0;
        for s in 0..at.n {
            deviations += run_squared_deviation(&x[channel_run(at, c, s)], mean as f32);
        }
        (mean, deviations / count)
    }
}

leveled! {
    /// `y = x·a + b` on channel `c`'s runs.
    fn scale_channel(x: &[f32], at: Channels, c: usize, ab: (f32, f32), y: &Disjoint<'_>) -> () {
        let (a, b) = ab;
        for s in 0..at.n {
            let r = channel_run(at, c, s);
            // SAFETY: the caller's part owns channel c.
            let y = unsafe { y.piece(r.clone()) };
            for (y, x) in y.iter_mut().zip(&x[r]) {
                *y = x * a + b;
            }
        }
    }
}

/// Parts to share a per-channel norm's `channels` among: one unless each
/// has at least `WORK_PER_THREAD` values.
fn channel_parts(team: &Team, channels: usize, values: usize) -> usize {
    team.threads().min(channels).min(values / WORK_PER_THREAD).max(1)
}

/// Lanes of the runs' partial sums: the loops vectorise without
/// reassociating, and each lane adds few enough values for f32.
pub(crate) const RUN_LANES: usize = 16;

/// `Σ xs`, in f32 lanes, then in f64.
#[inline(always)]
pub(crate) fn run_sum(xs: &[f32]) -> f64 {
    run_fold(xs, xs, |x, _| x)
}

/// `Σ (x − mean)²`.
#[inline(always)]
fn run_squared_deviation(xs: &[f32], mean: f32) -> f64 {
    run_fold(xs, xs, |x, _| (x - mean) * (x - mean))
}

/// `(Σ f(a, b), Σ g(a, b))` over a pair of runs, in lanes, in one pass.
#[inline(always)]
fn run_fold2(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32, g: impl Fn(f32, f32) -> f32) -> (f64, f64) {
    let (mut lanes_f, mut lanes_g) = ([0.0f32; RUN_LANES], [0.0f32; RUN_LANES]);
    let (chunks_a, chunks_b) = (a.chunks_exact(RUN_LANES), b.chunks_exact(RUN_LANES));
    let (mut tail_f, mut tail_g) = (0.0f64, 0.0f64);
    for (a, b) in chunks_a.remainder().iter().zip(chunks_b.remainder()) {
        tail_f += f64::from(f(*a, *b));
        tail_g += f64::from(g(*a, *b));
    }
    for (ca, cb) in chunks_a.zip(chunks_b) {
        for l in 0..RUN_LANES {
            lanes_f[l] += f(ca[l], cb[l]);
            lanes_g[l] += g(ca[l], cb[l]);
        }
    }
    (lanes_total(lanes_f) + tail_f, lanes_total(lanes_g) + tail_g)
}

/// The lanes' sum in f64, halving: four dependent adds, not sixteen, for
/// runs of a few vectors (a global average pool's 8 × 8 planes).
#[inline(always)]
pub(crate) fn lanes_total(lanes: [f32; RUN_LANES]) -> f64 {
    let mut wide = lanes.map(f64::from);
    let mut width = RUN_LANES / 2;
    while width > 0 {
        for l in 0..width {
            wide[l] += wide[l + width];
        }
        width /= 2;
    }
    wide[0]
}

/// `Σ f(a, b)` over a pair of runs, in lanes.
#[inline(always)]
fn run_fold(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32) -> f64 {
    let mut lanes = [0.0f32; RUN_LANES];
    let (chunks_a, chunks_b) = (a.chunks_exact(RUN_LANES), b.chunks_exact(RUN_LANES));
    let tail: f64 = chunks_a
        .remainder()
        .iter()
        .zip(chunks_b.remainder())
        .map(|(a, b)| f64::from(f(*a, *b)))
        .sum();
    for (ca, cb) in chunks_a.zip(chunks_b) {
        for l in 0..RUN_LANES {
            lanes[l] += f(ca[l], cb[l]);
        }
    }
    lanes_total(lanes) + tail
}

/// The backward of training-mode batch norm through its batch statistics
/// (saved by [`batch_norm_train_save`]): overwrites `dx`, and accumulates
/// `dgamma[c] += Σ dy·x̂` and `dbeta[c] += Σ dy` over samples and `inner`.
#[allow(clippy::too_many_arguments)]
pub fn batch_norm_grad(
    x: &[f32],
    dy: &[f32],
    n: usize,
    channels: usize,
    inner: usize,
    gamma: &[f32],
    stats: &[f32],
    dx: &mut [f32],
    dgamma: &mut [f32],
    dbeta: &mut [f32],
    team: &Team,
) {
    let at = Channels { n, channels, inner };
    let (dx, dgamma, dbeta) = (Disjoint::new(dx), Disjoint::new(dgamma), Disjoint::new(dbeta));
    let parts = channel_parts(team, channels, x.len());
    team.run(parts, &|t| {
        for c in split(channels, parts, t, 1) {
            let (mean, inv) = saved(stats, channels, c);
            let (sum_dy, sum_dy_xhat) = at_level!(channel_affine_sums(x, dy, at, c, (mean, inv)));
            // SAFETY (every piece below): parts own disjoint channels, and
            // these are channel c's entries.
            unsafe { dgamma.piece(c..c + 1) }
                .iter_mut()
                .for_each(|g| *g += sum_dy_xhat as f32);
            unsafe { dbeta.piece(c..c + 1) }
                .iter_mut()
                .for_each(|b| *b += sum_dy as f32);
            // dx = inv·γ·(dy − mean(dy) − x̂·mean(dy·x̂)).
            let count = (n * inner).max(1) as f64;
            let a = inv * f64::from(gamma[c]);
            let b = -a * inv * sum_dy_xhat / count;
            at_level!(channel_grad(x, dy, at, c, (mean, sum_dy / count, a, b), &dx));
        }
    });
}

leveled! {
    /// `(Σ dy, Σ dy·x̂)` over channel `c`, in one pass over `dy` and `x`:
    /// f32 lanes per run, the runs in f64.
    fn channel_affine_sums(x: &[f32], dy: &[f32], at: Channels, c: usize, stats: (f64, f64)) -> (f64, f64) {
        let (mean, inv) = stats;
        let m = mean as f32;
        let (mut sum_dy, mut sum_dy_centred) = (0.0, 0.0);
        for s in 0..at.n {
            let r = channel_run(at, c, s);
            let (dy, x) = (&dy[r.clone()], &x[r]);
            let (a, b) = run_fold2(dy, x, |d, _| d, |d, x| d * (x - m));
            sum_dy += a;
            sum_dy_centred += b;
        }
        (sum_dy, sum_dy_centred * inv)
    }
}

leveled! {
    /// `dx = (dy − mean_dy)·a + (x − mean)·b` on channel `c`, in f64: the
    /// two terms can cancel to far below either (with two values per
    /// channel, x̂ = ±1 whatever x is, and dx is exactly zero).
    fn channel_grad(x: &[f32], dy: &[f32], at: Channels, c: usize, k: (f64, f64, f64, f64), dx: &Disjoint<'_>) -> () {
        let (mean, mean_dy, a, b) = k;
        for s in 0..at.n {
            let r = channel_run(at, c, s);
            let (dy, x) = (&dy[r.clone()], &x[r.clone()]);
            // SAFETY: the caller's part owns channel c.
            let dx = unsafe { dx.piece(r) };
            for ((dx, dy), x) in dx.iter_mut().zip(dy).zip(x) {
                *dx = ((f64::from(*dy) - mean_dy) * a + (f64::from(*x) - mean) * b) as f32;
            }
        }
    }
}

/// Per sample over all `per_sample` values; γ and β have the per-sample shape.
pub fn layer_norm(x: &[f32], n: usize, per_sample: usize, gamma: &[f32], beta: &[f32], eps: f32, y: &mut [f32]) {
    layer_norm_stats(x, n, per_sample, gamma, beta, eps, y, None);
}

/// [`layer_norm`] that also saves `stats` `[mean per sample…, inv_std per
/// sample…]` for [`layer_norm_grad`]. Same `y`.
#[allow(clippy::too_many_arguments)]
pub fn layer_norm_save(
    x: &[f32],
    n: usize,
    per_sample: usize,
    gamma: &[f32],
    beta: &[f32],
    eps: f32,
    y: &mut [f32],
    stats: &mut [f32],
) {
    layer_norm_stats(x, n, per_sample, gamma, beta, eps, y, Some(stats));
}

#[allow(clippy::too_many_arguments)]
fn layer_norm_stats(
    x: &[f32],
    n: usize,
    per_sample: usize,
    gamma: &[f32],
    beta: &[f32],
    eps: f32,
    y: &mut [f32],
    mut stats: Option<&mut [f32]>,
) {
    for s in 0..n {
        let base = s * per_sample;
        let (mean, var) = moments(per_sample, |i| x[base + i]);
        let inv = 1.0 / (var + f64::from(eps)).sqrt();
        save(stats.as_deref_mut(), n, s, mean, inv);
        for i in 0..per_sample {
            y[base + i] = ((f64::from(x[base + i]) - mean) * inv * f64::from(gamma[i]) + f64::from(beta[i])) as f32;
        }
    }
}

/// The backward of [`layer_norm`] from the statistics of
/// [`layer_norm_save`]: overwrites `dx`; `dgamma[i] += Σ_samples dy·x̂`,
/// `dbeta[i] += Σ_samples dy`.
#[allow(clippy::too_many_arguments)]
pub fn layer_norm_grad(
    x: &[f32],
    dy: &[f32],
    n: usize,
    per_sample: usize,
    gamma: &[f32],
    stats: &[f32],
    dx: &mut [f32],
    dgamma: &mut [f32],
    dbeta: &mut [f32],
) {
    for i in 0..per_sample {
        let (mut sum_dy, mut sum_dy_xhat) = (0.0f64, 0.0f64);
        for s in 0..n {
            let (mean, inv) = saved(stats, n, s);
            let (v, d) = (f64::from(x[s * per_sample + i]), f64::from(dy[s * per_sample + i]));
            sum_dy += d;
            sum_dy_xhat += d * (v - mean) * inv;
        }
        dgamma[i] += sum_dy_xhat as f32;
        dbeta[i] += sum_dy as f32;
    }
    for s in 0..n {
        let base = s * per_sample;
        let gamma_of = |k: usize| f64::from(gamma[k - base]);
        set_input_grad(x, dy, base..base + per_sample, gamma_of, saved(stats, n, s), dx);
    }
}

/// Per sample over groups of channels/groups channels; affine per channel.
#[allow(clippy::too_many_arguments)]
pub fn group_norm(
    x: &[f32],
    n: usize,
    channels: usize,
    inner: usize,
    groups: usize,
    gamma: &[f32],
    beta: &[f32],
    eps: f32,
    y: &mut [f32],
) {
    group_norm_stats(x, n, channels, inner, groups, gamma, beta, eps, y, None);
}

/// [`group_norm`] that also saves `stats` `[mean per (sample, group)…,
/// inv_std per (sample, group)…]` for [`group_norm_grad`]. Same `y`.
#[allow(clippy::too_many_arguments)]
pub fn group_norm_save(
    x: &[f32],
    n: usize,
    channels: usize,
    inner: usize,
    groups: usize,
    gamma: &[f32],
    beta: &[f32],
    eps: f32,
    y: &mut [f32],
    stats: &mut [f32],
) {
    group_norm_stats(x, n, channels, inner, groups, gamma, beta, eps, y, Some(stats));
}

#[allow(clippy::too_many_arguments)]
fn group_norm_stats(
    x: &[f32],
    n: usize,
    channels: usize,
    inner: usize,
    groups: usize,
    gamma: &[f32],
    beta: &[f32],
    eps: f32,
    y: &mut [f32],
    mut stats: Option<&mut [f32]>,
) {
    let groups = groups.max(1);
    let per_group = channels / groups * inner;
    if per_group == 0 {
        return;
    }
    // A group is one contiguous run: its moments in f32 lanes, then f64
    // (as batch norm's), and each channel of it normalised as a run.
    for (set, run) in x.chunks_exact(per_group).take(n * groups).enumerate() {
        let count = per_group as f64;
        let mean = run_sum(run) / count;
        let var = run_squared_deviation(run, mean as f32) / count;
        let inv = 1.0 / (var + f64::from(eps)).sqrt();
        save(stats.as_deref_mut(), n * groups, set, mean, inv);
        let first = (set % groups) * (channels / groups);
        let out = &mut y[set * per_group..(set + 1) * per_group];
        for (k, (xs, ys)) in run
            .chunks_exact(inner.max(1))
            .zip(out.chunks_exact_mut(inner.max(1)))
            .enumerate()
        {
            let scale = inv * f64::from(gamma[first + k]);
            let shift = f64::from(beta[first + k]);
            for (y, v) in ys.iter_mut().zip(xs) {
                *y = ((f64::from(*v) - mean) * scale + shift) as f32;
            }
        }
    }
}

/// The backward of [`group_norm`] from the statistics of
/// [`group_norm_save`]: overwrites `dx`; `dgamma[c] += Σ dy·x̂`, `dbeta[c]
/// += Σ dy` over samples and `inner`.
#[allow(clippy::too_many_arguments)]
pub fn group_norm_grad(
    x: &[f32],
    dy: &[f32],
    n: usize,
    channels: usize,
    inner: usize,
    groups: usize,
    gamma: &[f32],
    stats: &[f32],
    dx: &mut [f32],
    dgamma: &mut [f32],
    dbeta: &mut [f32],
) {
    let groups = groups.max(1);
    let per_group = channels / groups * inner;
    let group_of = |c: usize| c / (channels / groups).max(1);
    for c in 0..channels {
        let (mut sum_dy, mut sum_dy_xhat) = (0.0f64, 0.0f64);
        for s in 0..n {
            let base = (s * channels + c) * inner;
            let saved = saved(stats, n * groups, s * groups + group_of(c));
            let (d, dx_hat) = affine_sums(x, dy, base..base + inner, saved);
            sum_dy += d;
            sum_dy_xhat += dx_hat;
        }
        dgamma[c] += sum_dy_xhat as f32;
        dbeta[c] += sum_dy as f32;
    }
    for s in 0..n {
        for g in 0..groups {
            let base = s * channels * inner + g * per_group;
            let gamma_of = |i: usize| f64::from(gamma[i / inner.max(1) % channels]);
            let saved = saved(stats, n * groups, s * groups + g);
            set_input_grad(x, dy, base..base + per_group, gamma_of, saved, dx);
        }
    }
}

/// Per sample and channel over H·W: group norm with one channel per group.
#[allow(clippy::too_many_arguments)]
pub fn instance_norm(
    x: &[f32],
    n: usize,
    channels: usize,
    inner: usize,
    gamma: &[f32],
    beta: &[f32],
    eps: f32,
    y: &mut [f32],
) {
    group_norm(x, n, channels, inner, channels, gamma, beta, eps, y);
}

/// [`instance_norm`] that also saves `stats` `[mean per (sample, channel)…,
/// inv_std per (sample, channel)…]` for [`instance_norm_grad`]. Same `y`.
#[allow(clippy::too_many_arguments)]
pub fn instance_norm_save(
    x: &[f32],
    n: usize,
    channels: usize,
    inner: usize,
    gamma: &[f32],
    beta: &[f32],
    eps: f32,
    y: &mut [f32],
    stats: &mut [f32],
) {
    group_norm_save(x, n, channels, inner, channels, gamma, beta, eps, y, stats);
}

/// The backward of [`instance_norm`]: [`group_norm_grad`] with one channel
/// per group.
#[allow(clippy::too_many_arguments)]
pub fn instance_norm_grad(
    x: &[f32],
    dy: &[f32],
    n: usize,
    channels: usize,
    inner: usize,
    gamma: &[f32],
    stats: &[f32],
    dx: &mut [f32],
    dgamma: &mut [f32],
    dbeta: &mut [f32],
) {
    group_norm_grad(x, dy, n, channels, inner, channels, gamma, stats, dx, dgamma, dbeta);
}

/// ONNX LRN: `y = x / (bias + alpha/size · Σ x²)^beta`, the sum over
/// channels `c − ⌊(size−1)/2⌋ ..= c + ⌈(size−1)/2⌉` inside the map.
#[allow(clippy::too_many_arguments)]
pub fn lrn(
    x: &[f32],
    n: usize,
    channels: usize,
    inner: usize,
    size: usize,
    alpha: f32,
    beta: f32,
    bias: f32,
    y: &mut [f32],
) {
    let (before, after) = ((size.max(1) - 1) / 2, size.max(1) / 2);
    let coeff = alpha / size.max(1) as f32;
    let per_sample = channels * inner;
    if per_sample == 0 {
        return;
    }
    // A block of positions at a time: the window's squares summed for the
    // block in f32 lanes (at most `size` terms), then the scale.
    const BLOCK: usize = 64;
    for (sample, out) in x.chunks_exact(per_sample).zip(y.chunks_exact_mut(per_sample)).take(n) {
        for c in 0..channels {
            let window = c.saturating_sub(before)..=(c + after).min(channels - 1);
            for start in (0..inner).step_by(BLOCK) {
                let len = BLOCK.min(inner - start);
                let mut sums = [0.0f32; BLOCK];
                for ch in window.clone() {
                    let xs = &sample[ch * inner + start..][..len];
                    sums.iter_mut().zip(xs).for_each(|(sum, v)| *sum += v * v);
                }
                let xs = &sample[c * inner + start..][..len];
                let ys = &mut out[c * inner + start..][..len];
                for ((y, v), sum) in ys.iter_mut().zip(xs).zip(&sums) {
                    *y = v / lrn_power(bias + coeff * sum, beta);
                }
            }
        }
    }
}

/// `d^beta`: the default 0.75 (AlexNet's, ONNX's and PyTorch's) as
/// `√d · √√d`, which vectorises, where `powf` is a call per value (the
/// f64 `pow` of every value was two fifths of digits_cnn's forward).
#[inline(always)]
fn lrn_power(d: f32, beta: f32) -> f32 {
    if beta == 0.75 {
        let root = d.sqrt();
        root * root.sqrt()
    } else if beta == 0.5 {
        d.sqrt()
    } else if beta == 1.0 {
        d
    } else {
        d.powf(beta)
    }
}

/// `y = x·scale[c] + shift[c]`.
pub fn affine(x: &[f32], n: usize, channels: usize, inner: usize, scale: &[f32], shift: &[f32], y: &mut [f32]) {
    for (k, (out, v)) in y.iter_mut().zip(x).take(n * channels * inner).enumerate() {
        let c = k / inner.max(1) % channels.max(1);
        *out = v * scale[c] + shift[c];
    }
}

/// The input gradient of [`lrn`], recomputing the sums: with `D_c = bias +
/// α/size · S_c`, `y_c = x_c · D_c^−β`,
/// `dx_j = dy_j · D_j^−β − 2αβ/size · x_j · Σ_c dy_c · x_c · D_c^(−β−1)`,
/// the sum over the channels `c` whose window holds `j`. Overwrites `dx`.
#[allow(clippy::too_many_arguments)]
pub fn lrn_grad(
    x: &[f32],
    dy: &[f32],
    n: usize,
    channels: usize,
    inner: usize,
    size: usize,
    alpha: f32,
    beta: f32,
    bias: f32,
    dx: &mut [f32],
) {
    let size = size.max(1);
    let (before, after) = ((size - 1) / 2, size / 2);
    let (alpha, beta, bias) = (f64::from(alpha) / size as f64, f64::from(beta), f64::from(bias));
    for s in 0..n {
        for i in 0..inner {
            let at = |ch: usize| (s * channels + ch) * inner + i;
            // D_c, as the forward computes it.
            let denom_base = |c: usize| {
                let (lo, hi) = (c.saturating_sub(before), (c + after).min(channels - 1));
                let sum: f64 = (lo..=hi).map(|ch| f64::from(x[at(ch)]).powi(2)).sum();
                bias + alpha * sum
            };
            for j in 0..channels {
                // Channel c's window c − before ..= c + after holds j for
                // c in j − after ..= j + before.
                let (lo, hi) = (j.saturating_sub(after), (j + before).min(channels - 1));
                let through_sums: f64 = (lo..=hi)
                    .map(|c| f64::from(dy[at(c)]) * f64::from(x[at(c)]) * denom_base(c).powf(-beta - 1.0))
                    .sum();
                let direct = f64::from(dy[at(j)]) * denom_base(j).powf(-beta);
                dx[at(j)] = (direct - 2.0 * alpha * beta * f64::from(x[at(j)]) * through_sums) as f32;
            }
        }
    }
}

/// The backward of [`affine`]: `dx = dy·scale[c]` (overwritten),
/// `dscale[c] += Σ dy·x`, `dshift[c] += Σ dy` over samples and `inner`.
#[allow(clippy::too_many_arguments)]
pub fn affine_grad(
    x: &[f32],
    dy: &[f32],
    n: usize,
    channels: usize,
    inner: usize,
    scale: &[f32],
    dx: &mut [f32],
    dscale: &mut [f32],
    dshift: &mut [f32],
) {
    let at = Channels { n, channels, inner };
    for c in 0..channels {
        let (mut sum_dy, mut sum_dy_x) = (0.0f64, 0.0f64);
        for i in at.channel(c) {
            let d = f64::from(dy[i]);
            sum_dy += d;
            sum_dy_x += d * f64::from(x[i]);
            dx[i] = dy[i] * scale[c];
        }
        dscale[c] += sum_dy_x as f32;
        dshift[c] += sum_dy as f32;
    }
}

/// `y = a + b`.
pub fn add(a: &[f32], b: &[f32], y: &mut [f32]) {
    for ((out, p), q) in y.iter_mut().zip(a).zip(b) {
        *out = p + q;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_norm_training_normalises_and_applies_the_momentum_rule() {
        // Two samples, one channel, two positions: values 1, 3, 5, 7.
        let x = [1.0, 3.0, 5.0, 7.0];
        let (mut rm, mut rv) = ([0.0f32], [1.0f32]);
        let mut y = [0.0; 4];
        batch_norm_train(
            &x,
            2,
            1,
            2,
            &[1.0],
            &[0.0],
            &mut rm,
            &mut rv,
            0.0,
            0.1,
            &mut y,
            &Team::single(),
        );
        // mean 4, biased var 5, unbiased 20/3.
        let sd = 5f32.sqrt();
        assert!(
            y.iter()
                .zip([-3.0, -1.0, 1.0, 3.0])
                .all(|(a, b)| (a - b / sd).abs() < 1e-6),
            "{y:?}"
        );
        assert!((rm[0] - 0.4).abs() < 1e-6 && (rv[0] - (0.9 + 0.1 * 20.0 / 3.0)).abs() < 1e-6);
    }

    #[test]
    fn group_norm_with_one_group_per_channel_is_instance_norm() {
        let x: Vec<f32> = (0..16).map(|v| (v * v) as f32 * 0.1).collect();
        let (mut a, mut b) = (vec![0.0; 16], vec![0.0; 16]);
        group_norm(&x, 2, 2, 4, 2, &[1.0, 2.0], &[0.5, -0.5], 1e-5, &mut a);
        instance_norm(&x, 2, 2, 4, &[1.0, 2.0], &[0.5, -0.5], 1e-5, &mut b);
        assert_eq!(a, b);
        // Channel 0 of sample 0 has mean β and standard deviation γ (biased).
        let (mean, var) = moments(4, |i| a[i]);
        assert!((mean - 0.5).abs() < 1e-5 && (var - 1.0).abs() < 1e-3, "{mean} {var}");
    }

    #[test]
    fn layer_norm_over_the_sample() {
        let mut y = [0.0; 4];
        layer_norm(&[2.0, 4.0, 6.0, 8.0], 1, 4, &[1.0; 4], &[0.0; 4], 0.0, &mut y);
        let sd = 5f32.sqrt();
        assert!(y
            .iter()
            .zip([-3.0, -1.0, 1.0, 3.0])
            .all(|(a, b)| (a - b / sd).abs() < 1e-6));
    }

    #[test]
    fn lrn_by_hand_at_the_borders() {
        // 3 channels, size 3: channel 0 sums channels 0..=1, channel 1 all three.
        let x = [1.0, 2.0, 3.0];
        let mut y = [0.0; 3];
        lrn(&x, 1, 3, 1, 3, 3.0, 1.0, 1.0, &mut y);
        // alpha/size = 1: y0 = 1/(1+1+4), y1 = 2/(1+14), y2 = 3/(1+13).
        assert!(
            (y[0] - 1.0 / 6.0).abs() < 1e-6 && (y[1] - 2.0 / 15.0).abs() < 1e-6 && (y[2] - 3.0 / 14.0).abs() < 1e-6
        );
    }
}
