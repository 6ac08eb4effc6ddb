//! Activations: the runtime's vocabulary and their scalar definitions, used
//! by the standalone kernels and by the dense and conv epilogues alike.

/// SELU's constants (Klambauer et al. 2017).
pub const SELU_LAMBDA: f32 = 1.050_701;
pub const SELU_ALPHA: f32 = 1.673_263_2;

/// An element-wise activation. PReLU's slopes are per channel (`[C]`) or
/// shared (`[1]`); RReLU at inference is a leaky ReLU with the mean slope,
/// which the caller passes as `LeakyRelu`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Activation<'a> {
    Identity,
    Sigmoid,
    Tanh,
    Relu,
    LeakyRelu {
        alpha: f32,
    },
    Prelu {
        slopes: &'a [f32],
    },
    Elu {
        alpha: f32,
    },
    Selu,
    /// `log(1 + exp(beta·x)) / beta`.
    Softplus {
        beta: f32,
    },
    /// The exact erf form `x·Φ(x)`.
    Gelu,
    Silu,
}

impl Activation<'_> {
    /// The activation of `x` in channel `channel` (only PReLU looks at it).
    #[inline]
    pub fn apply(&self, x: f32, channel: usize) -> f32 {
        match *self {
            Activation::Identity => x,
            Activation::Sigmoid => sigmoid(x),
            Activation::Tanh => x.tanh(),
            Activation::Relu => x.max(0.0),
            Activation::LeakyRelu { alpha } => leaky(x, alpha),
            Activation::Prelu { slopes } => {
                let slope = if slopes.len() == 1 { slopes[0] } else { slopes[channel] };
                leaky(x, slope)
            }
            Activation::Elu { alpha } => elu(x, alpha),
            Activation::Selu => SELU_LAMBDA * elu(x, SELU_ALPHA),
            Activation::Softplus { beta } => softplus(beta * x) / beta,
            Activation::Gelu => 0.5 * x * (1.0 + libm::erff(x * std::f32::consts::FRAC_1_SQRT_2)),
            Activation::Silu => x * sigmoid(x),
        }
    }

    /// Applies the activation in place to `data` laid out `[n, channels,
    /// inner]` (a whole batch, or one sample with `n = 1`).
    pub fn apply_slice(&self, data: &mut [f32], channels: usize, inner: usize) {
        if let Activation::Prelu { .. } = self {
            let per_sample = channels * inner;
            for sample in data.chunks_mut(per_sample.max(1)) {
                for (c, run) in sample.chunks_mut(inner.max(1)).enumerate() {
                    run.iter_mut().for_each(|v| *v = self.apply(*v, c));
                }
            }
        } else {
            data.iter_mut().for_each(|v| *v = self.apply(*v, 0));
        }
    }
}

#[inline]
fn leaky(x: f32, slope: f32) -> f32 {
    if x >= 0.0 {
        x
    } else {
        slope * x
    }
}

#[inline]
fn elu(x: f32, alpha: f32) -> f32 {
    if x > 0.0 {
        x
    } else {
        alpha * x.exp_m1()
    }
}

/// `1 / (1 + e^−x)` without overflow: for negative x it is `e^x / (1 + e^x)`.
#[inline]
pub fn sigmoid(x: f32) -> f32 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// `log(1 + e^x)` without overflow: `max(x, 0) + log1p(e^−|x|)`.
#[inline]
pub fn softplus(x: f32) -> f32 {
    x.max(0.0) + (-x.abs()).exp().ln_1p()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closed_forms() {
        assert_eq!(Activation::Relu.apply(-2.0, 0), 0.0);
        assert!((Activation::Sigmoid.apply(0.0, 0) - 0.5).abs() < 1e-7);
        assert_eq!(Activation::Sigmoid.apply(-200.0, 0), 0.0);
        assert_eq!(Activation::Sigmoid.apply(200.0, 0), 1.0);
        // softplus(x) → x for large x, log 2 at 0.
        assert_eq!(Activation::Softplus { beta: 1.0 }.apply(100.0, 0), 100.0);
        assert!((Activation::Softplus { beta: 1.0 }.apply(0.0, 0) - std::f32::consts::LN_2).abs() < 1e-7);
        // GELU(1) = Φ(1) = 0.8413447460685429 (standard normal CDF table value).
        assert!((Activation::Gelu.apply(1.0, 0) as f64 - 0.841_344_746_068_542_9).abs() < 1e-6);
        // SELU(-∞) → −λα ≈ −1.7580993408473766.
        assert!((Activation::Selu.apply(-100.0, 0) + 1.758_099_3).abs() < 1e-6);
        let slopes = [0.1, 0.2];
        assert_eq!(Activation::Prelu { slopes: &slopes }.apply(-1.0, 1), -0.2);
    }
}

/// Softmax over channels (axis 1) of `[n, channels, inner]`, with the
/// maximum subtracted first so no exponential overflows.
pub fn softmax(x: &[f32], n: usize, channels: usize, inner: usize, y: &mut [f32]) {
    let per_sample = channels * inner;
    for s in 0..n {
        for i in 0..inner {
            let at = |c: usize| s * per_sample + c * inner + i;
            let max = (0..channels).map(|c| x[at(c)]).fold(f32::NEG_INFINITY, f32::max);
            let mut sum = 0.0f32;
            for c in 0..channels {
                let e = (x[at(c)] - max).exp();
                y[at(c)] = e;
                sum += e;
            }
            for c in 0..channels {
                y[at(c)] /= sum;
            }
        }
    }
}

/// Maxout: output channel j is the max of input channels
/// `j·pieces .. j·pieces + pieces` (Goodfellow et al. 2013).
pub fn maxout(x: &[f32], n: usize, channels: usize, inner: usize, pieces: usize, y: &mut [f32]) {
    let pieces = pieces.max(1);
    let out_channels = channels / pieces;
    for s in 0..n {
        for j in 0..out_channels {
            for i in 0..inner {
                let at = |c: usize| s * channels * inner + c * inner + i;
                let best = (0..pieces)
                    .map(|k| x[at(j * pieces + k)])
                    .fold(f32::NEG_INFINITY, f32::max);
                y[s * out_channels * inner + j * inner + i] = best;
            }
        }
    }
}

#[cfg(test)]
mod softmax_tests {
    use super::*;

    #[test]
    fn softmax_sums_to_one_and_survives_large_inputs() {
        let x = [1000.0, 1001.0, 1002.0, -5.0, 0.0, 5.0];
        let mut y = [0.0; 6];
        softmax(&x, 2, 3, 1, &mut y);
        for row in y.chunks(3) {
            assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-6, "{row:?}");
        }
        // e^0 / (e^-2 + e^-1 + e^0) = 0.66524096 (closed form).
        assert!((y[2] - 0.665_240_96).abs() < 1e-6);
    }

    #[test]
    fn maxout_takes_the_max_of_each_group() {
        let x = [1.0, 5.0, -2.0, 3.0, 7.0, 0.0];
        let mut y = [0.0; 3];
        maxout(&x, 1, 6, 1, 2, &mut y);
        assert_eq!(y, [5.0, 3.0, 7.0]);
    }
}
