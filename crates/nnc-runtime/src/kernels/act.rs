//! Activations: the runtime's vocabulary and their scalar definitions, used
//! by the standalone kernels and by the dense and conv epilogues alike.
//!
//! NaN propagates as in PyTorch and ONNX Runtime: every output that depends
//! on a NaN is NaN. Rust's `f32::max` (IEEE `maxNum`) drops a NaN operand,
//! so every maximum here (ReLU, softplus, softmax, maxout, max pooling)
//! goes through [`max_nan`]. At ±∞ each activation gives its limit
//! (`relu(∞) = ∞`, `tanh(−∞) = −1`, `sigmoid(−∞) = 0`, `gelu(−∞) =
//! silu(−∞) = 0`), also where the textbook formula would compute `−∞ · 0`.

use super::epilogue::{Epilogue, EpilogueStep};
use super::simd::{at_level, leveled};

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
            Activation::Relu => relu(x),
            Activation::LeakyRelu { alpha } => leaky(x, alpha),
            Activation::Prelu { slopes } => {
                let slope = if slopes.len() == 1 { slopes[0] } else { slopes[channel] };
                leaky(x, slope)
            }
            Activation::Elu { alpha } => elu(x, alpha),
            Activation::Selu => SELU_LAMBDA * elu(x, SELU_ALPHA),
            Activation::Softplus { beta } => softplus(beta * x) / beta,
            Activation::Gelu => gelu(x),
            Activation::Silu => times_weight(x, sigmoid(x)),
        }
    }

    /// `y` = the activation of `x`, both laid out `[n, channels, inner]`:
    /// [`Activation::apply_slice`] on a copy, ReLU in one pass.
    pub fn apply_into(&self, x: &[f32], y: &mut [f32], channels: usize, inner: usize) {
        if let Activation::Relu = self {
            return at_level!(relu_into(x, y));
        }
        y.copy_from_slice(x);
        self.apply_slice(y, channels, inner);
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
            // The epilogue's loops: vectorised, with the branch-free tanh and
            // ELU (libm's tanhf and expm1f were a sixth of a training step).
            let steps = [EpilogueStep::Act(*self)];
            Epilogue {
                bias: None,
                steps: &steps,
                residual: None,
            }
            .apply_channel(data, 0);
        }
    }
}

/// Which forward value an activation's derivative is computed from: the
/// output where the derivative is a function of it (tanh: 1 − y²), so the
/// backward keeps one tensor per layer instead of two.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum From {
    Input,
    Output,
}

impl Activation<'_> {
    /// φ′ at input `v` ([`From::Input`]) or where the output is `v`
    /// ([`From::Output`], for the activations whose derivative is a
    /// function of their output: every one but PReLU, GELU and SiLU, and
    /// leaky ReLU, ELU and softplus only with a positive α or β). Kinks
    /// take PyTorch's side: ReLU′(0) = 0, leaky′(0) = α.
    #[inline]
    pub fn derivative(&self, v: f32, from: From, channel: usize) -> f32 {
        match (*self, from) {
            (Activation::Identity, _) => 1.0,
            (Activation::Sigmoid, From::Input) => {
                let s = sigmoid(v);
                s * (1.0 - s)
            }
            (Activation::Sigmoid, From::Output) => v * (1.0 - v),
            (Activation::Tanh, From::Input) => {
                let t = v.tanh();
                1.0 - t * t
            }
            (Activation::Tanh, From::Output) => 1.0 - v * v,
            (Activation::Relu, _) => step(v, 0.0),
            (Activation::LeakyRelu { alpha }, _) => step(v, alpha),
            (Activation::Prelu { slopes }, _) => {
                let slope = if slopes.len() == 1 { slopes[0] } else { slopes[channel] };
                step(v, slope)
            }
            (Activation::Elu { alpha }, From::Input) => {
                if v > 0.0 {
                    1.0
                } else {
                    alpha * v.exp()
                }
            }
            (Activation::Elu { alpha }, From::Output) => {
                if v > 0.0 {
                    1.0
                } else {
                    v + alpha
                }
            }
            (Activation::Selu, From::Input) => SELU_LAMBDA * if v > 0.0 { 1.0 } else { SELU_ALPHA * v.exp() },
            (Activation::Selu, From::Output) => {
                if v > 0.0 {
                    SELU_LAMBDA
                } else {
                    v + SELU_LAMBDA * SELU_ALPHA
                }
            }
            (Activation::Softplus { beta }, From::Input) => sigmoid(beta * v),
            // σ(βx) = 1 − e^(−βy) for y = softplus(βx)/β.
            (Activation::Softplus { beta }, From::Output) => -(-beta * v).exp_m1(),
            (Activation::Gelu, _) => {
                let cdf = 0.5 * (1.0 + libm::erff(v * std::f32::consts::FRAC_1_SQRT_2));
                let pdf = (-0.5 * v * v).exp() * FRAC_1_SQRT_2PI;
                cdf + times_weight(v, pdf)
            }
            (Activation::Silu, _) => {
                let s = sigmoid(v);
                s + times_weight(v, s * (1.0 - s))
            }
        }
    }

    /// `d = d·φ′` in place, φ′ from `saved` as in [`Activation::backward`]
    /// (`saved` and `d` start at the same element of a `[n, channels,
    /// inner]` layout, at a channel boundary): what a dense layer's input
    /// gradient applies to each tile it has just computed.
    pub fn backward_in_place(&self, saved: &[f32], from: From, d: &mut [f32], channels: usize, inner: usize) {
        if let Activation::Relu = self {
            return at_level!(relu_select(saved, None, d));
        }
        self.scale_by_derivative(saved, from, channels, inner, d, |_, g| g);
    }

    /// `out[i] = gradient(i, out[i])·φ′(saved[i])`, as a select, not a
    /// product, where φ′ is 0 (PyTorch's threshold_backward: a NaN from a
    /// dropped branch does not leak in). Only PReLU, whose slope depends on
    /// the channel, works the channel out per element.
    fn scale_by_derivative(
        &self,
        saved: &[f32],
        from: From,
        channels: usize,
        inner: usize,
        out: &mut [f32],
        gradient: impl Fn(usize, f32) -> f32,
    ) {
        let select = |g: f32, slope: f32| if slope == 0.0 { 0.0 } else { g * slope };
        if let Activation::Relu = self {
            // The common case (φ′ is 1 or 0) as a select.
            for (i, (o, v)) in out.iter_mut().zip(saved).enumerate() {
                let g = gradient(i, *o);
                *o = if *v > 0.0 { g } else { 0.0 };
            }
            return;
        }
        if let Activation::Prelu { .. } = self {
            let (inner, channels) = (inner.max(1), channels.max(1));
            for (i, (o, v)) in out.iter_mut().zip(saved).enumerate() {
                *o = select(gradient(i, *o), self.derivative(*v, from, i / inner % channels));
            }
        } else {
            for (i, (o, v)) in out.iter_mut().zip(saved).enumerate() {
                *o = select(gradient(i, *o), self.derivative(*v, from, 0));
            }
        }
    }

    /// The backward of [`Activation::apply_slice`] on `[n, channels, inner]`:
    /// `dx = dy·φ′`, φ′ from `saved` (the forward's input or output, as
    /// `from` says); PReLU's slope gradient `Σ dy·x` over its negative
    /// inputs is added into `dslopes`.
    #[allow(clippy::too_many_arguments)]
    pub fn backward(
        &self,
        saved: &[f32],
        from: From,
        dy: &[f32],
        dx: &mut [f32],
        channels: usize,
        inner: usize,
        dslopes: Option<&mut [f32]>,
    ) {
        if let (Activation::Relu, true) = (self, dy.len() == dx.len()) {
            return at_level!(relu_select(saved, Some(dy), dx));
        }
        self.scale_by_derivative(saved, from, channels, inner, dx, |i, _| {
            dy.get(i).copied().unwrap_or_default()
        });
        let inner = inner.max(1);
        let channel = |i: usize| i / inner % channels.max(1);
        if let (Activation::Prelu { slopes }, Some(dslopes)) = (self, dslopes) {
            for (i, (v, g)) in saved.iter().zip(dy).enumerate() {
                if *v <= 0.0 {
                    let at = if slopes.len() == 1 { 0 } else { channel(i) };
                    if let Some(ds) = dslopes.get_mut(at) {
                        *ds += g * v;
                    }
                }
            }
        }
    }
}

leveled! {
    /// ReLU's backward: `out = dy` (or `out` itself, with no `dy`) where
    /// `saved` is above 0, else 0, as a select (a NaN gradient where the
    /// unit was off does not leak, as PyTorch's `threshold_backward`).
    /// Written as a mask of the bits, which vectorises: as an `if`, LLVM
    /// kept a branch per value, which mispredicts on half of a ReLU's
    /// inputs (a tenth of a CNN's training step went there).
    fn relu_select(saved: &[f32], dy: Option<&[f32]>, out: &mut [f32]) -> () {
        let keep = |v: f32| if v > 0.0 { u32::MAX } else { 0 };
        match dy {
            Some(dy) => {
                for ((o, g), v) in out.iter_mut().zip(dy).zip(saved) {
                    *o = f32::from_bits(g.to_bits() & keep(*v));
                }
            }
            None => {
                for (o, v) in out.iter_mut().zip(saved) {
                    *o = f32::from_bits(o.to_bits() & keep(*v));
                }
            }
        }
    }
}

leveled! {
    /// `y = relu(x)` in one pass (not a copy, then ReLU in place).
    fn relu_into(x: &[f32], y: &mut [f32]) -> () {
        for (y, x) in y.iter_mut().zip(x) {
            *y = relu(*x);
        }
    }
}

/// 1/√(2π), the standard normal density's constant.
const FRAC_1_SQRT_2PI: f32 = 0.398_942_3;

/// 1 above 0, `below` at or below (and for NaN).
#[inline(always)]
fn step(v: f32, below: f32) -> f32 {
    if v > 0.0 {
        1.0
    } else {
        below
    }
}

/// The backward of [`softmax`] over channels: `dx = y·(dy − Σ_c dy·y)`.
pub fn softmax_grad(y: &[f32], dy: &[f32], n: usize, channels: usize, inner: usize, dx: &mut [f32]) {
    let per_sample = channels * inner;
    for s in 0..n {
        for i in 0..inner {
            let at = |c: usize| s * per_sample + c * inner + i;
            let dot: f64 = (0..channels).map(|c| f64::from(dy[at(c)]) * f64::from(y[at(c)])).sum();
            for c in 0..channels {
                dx[at(c)] = ((f64::from(dy[at(c)]) - dot) * f64::from(y[at(c)])) as f32;
            }
        }
    }
}

/// The backward of [`maxout`]: each output's gradient goes to the piece
/// the forward took (the last of equal maxima, a NaN over any number, as
/// [`max_nan`] folds), every other piece gets 0.
pub fn maxout_grad(x: &[f32], dy: &[f32], n: usize, channels: usize, inner: usize, pieces: usize, dx: &mut [f32]) {
    let pieces = pieces.max(1);
    let out_channels = channels / pieces;
    dx.fill(0.0);
    for s in 0..n {
        for j in 0..out_channels {
            for i in 0..inner {
                let at = |c: usize| s * channels * inner + c * inner + i;
                let (mut best, mut arg) = (f32::NEG_INFINITY, 0);
                for k in 0..pieces {
                    let v = x[at(j * pieces + k)];
                    if !(best > v || best.is_nan()) {
                        (best, arg) = (v, k);
                    }
                }
                dx[at(j * pieces + arg)] = dy[s * out_channels * inner + j * inner + i];
            }
        }
    }
}

/// The larger of `a` and `b`, NaN when either is (IEEE 754-2019
/// `maximum`, as PyTorch's `max` and `relu`); `f32::max` returns the
/// other operand instead.
#[inline(always)]
pub fn max_nan(a: f32, b: f32) -> f32 {
    if a > b || a.is_nan() {
        a
    } else {
        b
    }
}

/// `max(x, 0)`, NaN for NaN.
#[inline(always)]
pub fn relu(x: f32) -> f32 {
    max_nan(x, 0.0)
}

/// `x·w` for a weight `w ∈ [0, 1]` that tends to 0 as x → −∞ (`Φ(x)` for
/// GELU, `σ(x)` for SiLU): 0 once the weight is 0, where `−∞ · 0` would
/// be NaN; the limit, which PyTorch's fixed GELU also gives.
#[inline(always)]
fn times_weight(x: f32, weight: f32) -> f32 {
    if weight == 0.0 {
        0.0
    } else {
        x * weight
    }
}

/// The exact GELU `x·Φ(x)`, `Φ(x) = (1 + erf(x/√2)) / 2`.
#[inline]
fn gelu(x: f32) -> f32 {
    times_weight(x, 0.5 * (1.0 + libm::erff(x * std::f32::consts::FRAC_1_SQRT_2)))
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
    relu(x) + (-x.abs()).exp().ln_1p()
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
            let max = (0..channels).map(|c| x[at(c)]).fold(f32::NEG_INFINITY, max_nan);
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
                    .fold(f32::NEG_INFINITY, max_nan);
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

#[cfg(test)]
mod special_value_tests {
    use super::*;
    use crate::kernels::epilogue::{Epilogue, EpilogueStep};

    const SLOPES: [f32; 2] = [0.1, 0.2];

    /// Every activation, with its value at −∞ and +∞ (the limits;
    /// PyTorch's where it defines one).
    fn every_activation() -> Vec<(Activation<'static>, f32, f32)> {
        let lambda_alpha = -SELU_LAMBDA * SELU_ALPHA;
        vec![
            (Activation::Identity, f32::NEG_INFINITY, f32::INFINITY),
            (Activation::Sigmoid, 0.0, 1.0),
            (Activation::Tanh, -1.0, 1.0),
            (Activation::Relu, 0.0, f32::INFINITY),
            (Activation::LeakyRelu { alpha: 0.01 }, f32::NEG_INFINITY, f32::INFINITY),
            (Activation::Prelu { slopes: &SLOPES }, f32::NEG_INFINITY, f32::INFINITY),
            (Activation::Elu { alpha: 1.5 }, -1.5, f32::INFINITY),
            (Activation::Selu, lambda_alpha, f32::INFINITY),
            (Activation::Softplus { beta: 2.0 }, 0.0, f32::INFINITY),
            (Activation::Gelu, 0.0, f32::INFINITY),
            (Activation::Silu, 0.0, f32::INFINITY),
        ]
    }

    /// `values` through the activation every way it runs: the scalar
    /// definition, the standalone slice kernel, and the epilogue of a dense
    /// row and of a conv plane (whose fast ELU/tanh/ReLU forms differ).
    fn every_path(act: Activation, values: &[f32]) -> Vec<(&'static str, Vec<f32>)> {
        let scalar = values.iter().map(|v| act.apply(*v, 1)).collect();
        // Channel 1 of two, for PReLU's slope: [n = 1, channels = 2, inner = len].
        let mut slice = [vec![0.0; values.len()], values.to_vec()].concat();
        act.apply_slice(&mut slice, 2, values.len());
        let steps = [EpilogueStep::Act(act)];
        let epilogue = Epilogue {
            bias: None,
            steps: &steps,
            residual: None,
        };
        let mut plane = values.to_vec();
        epilogue.apply_channel(&mut plane, 1);
        let rows = values
            .iter()
            .map(|v| {
                let mut row = [0.0, *v];
                epilogue.apply_row(&mut row, 0);
                row[1]
            })
            .collect();
        vec![
            ("scalar", scalar),
            ("slice", slice.split_off(values.len())),
            ("conv epilogue", plane),
            ("dense epilogue", rows),
        ]
    }

    #[test]
    fn nan_gives_nan_through_every_activation_on_every_path() {
        // 40 values so that the vector bodies and their tails both see NaN.
        let mut values: Vec<f32> = (0..40).map(|i| i as f32 * 0.25 - 5.0).collect();
        for i in [0, 3, 17, 39] {
            values[i] = f32::NAN;
        }
        for (act, _, _) in every_activation() {
            for (path, out) in every_path(act, &values) {
                for (i, (v, y)) in values.iter().zip(&out).enumerate() {
                    assert_eq!(y.is_nan(), v.is_nan(), "{act:?} {path}: element {i}: {v} gives {y}");
                }
            }
        }
    }

    #[test]
    fn infinities_give_the_limits_on_every_path() {
        for (act, at_minus, at_plus) in every_activation() {
            for (path, out) in every_path(act, &[f32::NEG_INFINITY, f32::INFINITY]) {
                let near = |got: f32, want: f32| got == want || (got - want).abs() <= 1e-6 * want.abs();
                assert!(
                    near(out[0], at_minus) && near(out[1], at_plus),
                    "{act:?} {path}: ±∞ give {out:?}, want [{at_minus}, {at_plus}]"
                );
            }
        }
    }

    #[test]
    fn max_nan_keeps_nan_from_either_side() {
        assert!(max_nan(f32::NAN, 1.0).is_nan() && max_nan(1.0, f32::NAN).is_nan());
        assert_eq!(max_nan(-1.0, 2.0), 2.0);
        assert_eq!(max_nan(f32::NEG_INFINITY, -3.0), -3.0);
        assert!(relu(f32::NAN).is_nan());
        assert_eq!(relu(-0.5), 0.0);
    }

    #[test]
    fn softmax_and_maxout_propagate_nan_within_their_groups_only() {
        // [n = 1, channels = 4, inner = 2]: position 0 holds a NaN in channel 2.
        let x = [1.0, 1.0, 2.0, 2.0, f32::NAN, 3.0, 4.0, 4.0];
        let mut y = [0.0; 8];
        softmax(&x, 1, 4, 2, &mut y);
        // Every channel at position 0 depends on the NaN; position 1 is untouched.
        for c in 0..4 {
            assert!(y[c * 2].is_nan() && y[c * 2 + 1].is_finite(), "{y:?}");
        }
        let mut m = [0.0; 4];
        maxout(&x, 1, 4, 2, 2, &mut m);
        // Output channel 1 = max(channels 2, 3): NaN at position 0, 4 at 1; channel 0 clean.
        assert_eq!((m[0], m[1], m[3]), (2.0, 2.0, 4.0));
        assert!(m[2].is_nan());
        // All pieces NaN: NaN, not −∞.
        let mut one = [0.0];
        maxout(&[f32::NAN, f32::NAN], 1, 2, 1, 2, &mut one);
        assert!(one[0].is_nan());
    }

    #[test]
    fn softmax_at_infinity_is_nan_as_in_pytorch() {
        // exp(∞ − ∞) is NaN; PyTorch and ONNX Runtime give NaN for the whole row too.
        let mut y = [0.0; 2];
        softmax(&[f32::INFINITY, 1.0], 1, 2, 1, &mut y);
        assert!(y.iter().all(|v| v.is_nan()), "{y:?}");
        softmax(&[f32::NEG_INFINITY, 1.0], 1, 2, 1, &mut y);
        assert_eq!(y, [0.0, 1.0]);
    }
}
