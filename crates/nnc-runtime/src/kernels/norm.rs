//! Normalisations over `[n, channels, inner]`, PyTorch's conventions:
//! normalise with the biased variance; batch norm's running variance is
//! updated with the unbiased one, `running = (1 − m)·running + m·batch`.
//! Statistics are accumulated in f64.

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
) {
    let count = n * inner;
    let at = Channels { n, channels, inner };
    let m = f64::from(momentum);
    // A channel at a time, so that no table of statistics is needed.
    for c in 0..channels {
        let (mean, var) = moments(count, |k| {
            x[((k / inner.max(1)) * channels + c) * inner + k % inner.max(1)]
        });
        normalise_channel(x, at, c, (mean, var), gamma, beta, eps, y);
        let unbiased = if count > 1 {
            var * count as f64 / (count - 1) as f64
        } else {
            var
        };
        running_mean[c] = ((1.0 - m) * f64::from(running_mean[c]) + m * mean) as f32;
        running_var[c] = ((1.0 - m) * f64::from(running_var[c]) + m * unbiased) as f32;
    }
}

/// Per sample over all `per_sample` values; γ and β have the per-sample shape.
pub fn layer_norm(x: &[f32], n: usize, per_sample: usize, gamma: &[f32], beta: &[f32], eps: f32, y: &mut [f32]) {
    for s in 0..n {
        let base = s * per_sample;
        let (mean, var) = moments(per_sample, |i| x[base + i]);
        let inv = 1.0 / (var + f64::from(eps)).sqrt();
        for i in 0..per_sample {
            y[base + i] = ((f64::from(x[base + i]) - mean) * inv * f64::from(gamma[i]) + f64::from(beta[i])) as f32;
        }
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
    let groups = groups.max(1);
    let per_group = channels / groups * inner;
    for s in 0..n {
        for g in 0..groups {
            let base = s * channels * inner + g * per_group;
            let (mean, var) = moments(per_group, |i| x[base + i]);
            let inv = 1.0 / (var + f64::from(eps)).sqrt();
            for i in 0..per_group {
                let c = (base + i) / inner.max(1) % channels;
                y[base + i] = ((f64::from(x[base + i]) - mean) * inv * f64::from(gamma[c]) + f64::from(beta[c])) as f32;
            }
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
    for s in 0..n {
        for c in 0..channels {
            let (lo, hi) = (c.saturating_sub(before), (c + after).min(channels - 1));
            for i in 0..inner {
                let at = |ch: usize| (s * channels + ch) * inner + i;
                let sum: f64 = (lo..=hi).map(|ch| f64::from(x[at(ch)]).powi(2)).sum();
                let denom = (f64::from(bias) + f64::from(alpha) / size.max(1) as f64 * sum).powf(f64::from(beta));
                y[at(c)] = (f64::from(x[at(c)]) / denom) as f32;
            }
        }
    }
}

/// `y = x·scale[c] + shift[c]`.
pub fn affine(x: &[f32], n: usize, channels: usize, inner: usize, scale: &[f32], shift: &[f32], y: &mut [f32]) {
    for (k, (out, v)) in y.iter_mut().zip(x).take(n * channels * inner).enumerate() {
        let c = k / inner.max(1) % channels.max(1);
        *out = v * scale[c] + shift[c];
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
        batch_norm_train(&x, 2, 1, 2, &[1.0], &[0.0], &mut rm, &mut rv, 0.0, 0.1, &mut y);
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
