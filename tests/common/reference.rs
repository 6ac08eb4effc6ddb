//! An f64 reference forward pass, written from the op definitions
//! (LANGUAGE.md, PyTorch and ONNX documentation), not from nnc's kernels:
//! direct loops, no im2col, no folding, no epilogue fusion.
//!
//! One function per op on a plain [`Tensor`]; [`evaluate`] walks a lowered
//! function of a module and calls them. Training-mode batch norm returns its
//! batch statistics and the updated running ones, so a gradient check can
//! reuse the same forward pass. Random ops (dropout with p > 0, RReLU with
//! lower < upper in training) have no reference: [`evaluate`] refuses them.

use nnc_ir::{Act, ConvGeometry, EpilogueStep, Function, Mode, Module, Op, ParamId, PoolGeometry};
use nnc_runtime::io::weights::Weights;
use std::collections::BTreeMap;

/// A batch-major tensor: `dims[0]` is the batch, the rest the per-sample
/// shape (`[N, F]` or `[N, C, H, W]`).
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    pub dims: Vec<usize>,
    pub data: Vec<f64>,
}

/// What a training-mode batch norm measured on its batch (per channel).
#[derive(Clone, Debug, PartialEq)]
pub struct BatchStats {
    pub mean: Vec<f64>,
    /// Σ(x − mean)² / m: what the batch is normalised with.
    pub biased_var: Vec<f64>,
    /// Σ(x − mean)² / (m − 1): what the running variance moves towards.
    pub unbiased_var: Vec<f64>,
}

/// A forward pass: the output, in training mode each batch norm's updated
/// running statistics by parameter name, and how much the normalisations
/// amplify rounding errors.
#[derive(Clone, Debug)]
pub struct Evaluation {
    pub output: Tensor,
    pub running: BTreeMap<String, Vec<f64>>,
    /// The product over normalisations with batch or sample statistics of
    /// [`amplification`]: how many times larger, relative to the output's
    /// scale, an f32 computation's error may be than in a well-conditioned
    /// network. 1 when no normalisation sees a nearly constant group.
    pub amplification: f64,
    /// The last op's argument: a model that ends with a sigmoid or a
    /// softmax has its logits here, from which a loss is computed without
    /// the output's rounding (a sigmoid of 40 is 1.0 in f64).
    pub logits: Tensor,
}

impl Tensor {
    pub fn new(dims: Vec<usize>, data: Vec<f64>) -> Tensor {
        assert_eq!(dims.iter().product::<usize>(), data.len(), "tensor {dims:?}");
        Tensor { dims, data }
    }

    pub fn zeros(dims: Vec<usize>) -> Tensor {
        let n = dims.iter().product();
        Tensor::new(dims, vec![0.0; n])
    }

    pub fn from_f32(dims: Vec<usize>, data: &[f32]) -> Tensor {
        Tensor::new(dims, data.iter().map(|v| f64::from(*v)).collect())
    }

    pub fn batch(&self) -> usize {
        self.dims[0]
    }

    /// Channels (features for `[N, F]`) and the elements per channel.
    pub fn channels_inner(&self) -> (usize, usize) {
        (self.dims[1], self.dims[2..].iter().product())
    }

    /// `[N, C, H, W]` of an image tensor.
    fn nchw(&self) -> [usize; 4] {
        match self.dims[..] {
            [n, c, h, w] => [n, c, h, w],
            _ => panic!("expected [N, C, H, W], got {:?}", self.dims),
        }
    }

    fn map(&self, f: impl Fn(f64) -> f64) -> Tensor {
        Tensor::new(self.dims.clone(), self.data.iter().map(|v| f(*v)).collect())
    }

    /// `f(value, channel)` for every element.
    fn map_channel(&self, f: impl Fn(f64, usize) -> f64) -> Tensor {
        let (c, inner) = self.channels_inner();
        let data = self
            .data
            .iter()
            .enumerate()
            .map(|(i, v)| f(*v, i / inner % c))
            .collect();
        Tensor::new(self.dims.clone(), data)
    }
}

// ---- scalar activations ----------------------------------------------

/// NaN-propagating max (f64::max drops NaN; PyTorch keeps it).
pub fn nan_max(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.max(b)
    }
}

pub fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

pub fn relu(x: f64) -> f64 {
    if x < 0.0 {
        0.0
    } else {
        x
    }
}

/// `x` for x ≥ 0, `slope·x` below: leaky ReLU, PReLU and RReLU.
pub fn leaky(x: f64, slope: f64) -> f64 {
    if x < 0.0 {
        slope * x
    } else {
        x
    }
}

pub fn elu(x: f64, alpha: f64) -> f64 {
    if x > 0.0 {
        x
    } else {
        alpha * x.exp_m1()
    }
}

/// SELU's constants from Klambauer et al. (2017), as PyTorch.
pub const SELU_LAMBDA: f64 = 1.050_700_987_355_480_5;
pub const SELU_ALPHA: f64 = 1.673_263_242_354_377_2;

pub fn selu(x: f64) -> f64 {
    SELU_LAMBDA * elu(x, SELU_ALPHA)
}

/// `log(1 + exp(βx)) / β`.
pub fn softplus(x: f64, beta: f64) -> f64 {
    let z = beta * x;
    // log(1 + e^z) = max(z, 0) + log1p(e^−|z|): exact rewriting, no overflow.
    (z.max(0.0) + (-z.abs()).exp().ln_1p()) / beta
}

/// The exact form `x·Φ(x) = x/2·(1 + erf(x/√2))`.
pub fn gelu(x: f64) -> f64 {
    0.5 * x * (1.0 + libm::erf(x / std::f64::consts::SQRT_2))
}

pub fn silu(x: f64) -> f64 {
    x * sigmoid(x)
}

// ---- ops -----------------------------------------------------------------

/// `y = x Wᵀ + b`, W `[OUT, IN]` row-major.
pub fn linear(x: &Tensor, weight: &[f64], bias: Option<&[f64]>) -> Tensor {
    let (n, n_in) = (x.batch(), x.data.len() / x.batch());
    let n_out = weight.len() / n_in;
    let mut y = Tensor::zeros(vec![n, n_out]);
    for s in 0..n {
        for o in 0..n_out {
            let dot: f64 = (0..n_in).map(|i| weight[o * n_in + i] * x.data[s * n_in + i]).sum();
            y.data[s * n_out + o] = dot + bias.map_or(0.0, |b| b[o]);
        }
    }
    y
}

/// PyTorch's `Conv2d` with explicit pads `[top, left, bottom, right]` (ONNX
/// `Conv`): W `[OUT, IN/G, K, K]`; output channel `o` of group `o / (OUT/G)`
/// reads input channels of that group; taps in the padding read 0.
pub fn conv2d(x: &Tensor, weight: &[f64], bias: Option<&[f64]>, out_channels: usize, g: &ConvGeometry) -> Tensor {
    let [n, c, h, w] = x.nchw();
    let (k, s, d, groups) = (
        g.kernel as usize,
        g.stride as usize,
        g.dilation as usize,
        g.groups as usize,
    );
    let [top, left, bottom, right] = g.pads.map(|p| p as usize);
    let span = d * (k - 1) + 1;
    let ho = (h + top + bottom - span) / s + 1;
    let wo = (w + left + right - span) / s + 1;
    let (in_per_group, out_per_group) = (c / groups, out_channels / groups);
    let mut y = Tensor::zeros(vec![n, out_channels, ho, wo]);
    for b in 0..n {
        for o in 0..out_channels {
            let group = o / out_per_group;
            for oy in 0..ho {
                for ox in 0..wo {
                    let mut acc = bias.map_or(0.0, |b| b[o]);
                    for ci in 0..in_per_group {
                        let ch = group * in_per_group + ci;
                        for ky in 0..k {
                            for kx in 0..k {
                                // Input coordinates, possibly in the padding.
                                let iy = (oy * s + ky * d) as isize - top as isize;
                                let ix = (ox * s + kx * d) as isize - left as isize;
                                if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                                    continue;
                                }
                                let xv = x.data[((b * c + ch) * h + iy as usize) * w + ix as usize];
                                let wv = weight[((o * in_per_group + ci) * k + ky) * k + kx];
                                acc += xv * wv;
                            }
                        }
                    }
                    y.data[((b * out_channels + o) * ho + oy) * wo + ox] = acc;
                }
            }
        }
    }
    y
}

/// The in-map elements of each pooling window, folded by `finish(values)`.
fn pool(x: &Tensor, g: &PoolGeometry, finish: impl Fn(&[f64]) -> f64) -> Tensor {
    let [n, c, h, w] = x.nchw();
    let (k, s) = (g.kernel as usize, g.stride as usize);
    let [top, left, bottom, right] = g.pads.map(|p| p as usize);
    let ho = (h + top + bottom - k) / s + 1;
    let wo = (w + left + right - k) / s + 1;
    let mut y = Tensor::zeros(vec![n, c, ho, wo]);
    let mut window = Vec::with_capacity(k * k);
    for plane in 0..n * c {
        for oy in 0..ho {
            for ox in 0..wo {
                window.clear();
                for ky in 0..k {
                    for kx in 0..k {
                        let iy = (oy * s + ky) as isize - top as isize;
                        let ix = (ox * s + kx) as isize - left as isize;
                        if iy >= 0 && ix >= 0 && iy < h as isize && ix < w as isize {
                            window.push(x.data[(plane * h + iy as usize) * w + ix as usize]);
                        }
                    }
                }
                y.data[(plane * ho + oy) * wo + ox] = finish(&window);
            }
        }
    }
    y
}

/// Max pooling; padding is −∞, so it never wins.
pub fn max_pool2d(x: &Tensor, g: &PoolGeometry) -> Tensor {
    pool(x, g, |v| v.iter().copied().fold(f64::NEG_INFINITY, nan_max))
}

/// Average pooling over the in-map elements only (ONNX
/// `count_include_pad=0`, PyTorch `count_include_pad=False`).
pub fn avg_pool2d(x: &Tensor, g: &PoolGeometry) -> Tensor {
    pool(x, g, |v| v.iter().sum::<f64>() / v.len() as f64)
}

/// `[N, C, H, W]` → `[N, C]`, the mean of each plane.
pub fn global_avg_pool(x: &Tensor) -> Tensor {
    let [n, c, h, w] = x.nchw();
    let data = x
        .data
        .chunks(h * w)
        .map(|p| p.iter().sum::<f64>() / (h * w) as f64)
        .collect();
    Tensor::new(vec![n, c], data)
}

pub fn flatten(x: &Tensor) -> Tensor {
    let n = x.batch();
    Tensor::new(vec![n, x.data.len() / n], x.data.clone())
}

/// An element-wise activation; `slopes` are PReLU's (one, or one per
/// channel). RReLU is its inference form, the mean slope.
pub fn activation(x: &Tensor, act: &Act, slopes: &[f64]) -> Tensor {
    match act {
        Act::Sigmoid => x.map(sigmoid),
        Act::Tanh => x.map(f64::tanh),
        Act::Relu => x.map(relu),
        Act::LeakyRelu { alpha } => x.map(|v| leaky(v, f64::from(*alpha))),
        Act::Prelu { .. } => x.map_channel(|v, ch| leaky(v, slopes[if slopes.len() == 1 { 0 } else { ch }])),
        Act::Rrelu { lower, upper } => x.map(|v| leaky(v, (f64::from(*lower) + f64::from(*upper)) / 2.0)),
        Act::Elu { alpha } => x.map(|v| elu(v, f64::from(*alpha))),
        Act::Selu => x.map(selu),
        Act::Softplus { beta } => x.map(|v| softplus(v, f64::from(*beta))),
        Act::Gelu => x.map(gelu),
        Act::Silu => x.map(silu),
        Act::Maxout { pieces } => maxout(x, *pieces as usize),
        Act::Softmax => softmax(x),
    }
}

/// Output channel `j` is the max of input channels `j·p … j·p+p−1`.
pub fn maxout(x: &Tensor, pieces: usize) -> Tensor {
    let (c, inner) = x.channels_inner();
    let mut dims = x.dims.clone();
    dims[1] = c / pieces;
    let mut y = Tensor::zeros(dims);
    for b in 0..x.batch() {
        for j in 0..c / pieces {
            for i in 0..inner {
                let at = |p: usize| x.data[(b * c + j * pieces + p) * inner + i];
                y.data[(b * (c / pieces) + j) * inner + i] = (1..pieces).map(at).fold(at(0), nan_max);
            }
        }
    }
    y
}

/// Softmax over the channel axis (features, or channels at each pixel).
pub fn softmax(x: &Tensor) -> Tensor {
    let (c, inner) = x.channels_inner();
    let mut y = x.clone();
    for b in 0..x.batch() {
        for i in 0..inner {
            let at = |ch: usize| (b * c + ch) * inner + i;
            let max = (0..c).map(|ch| x.data[at(ch)]).fold(f64::NEG_INFINITY, nan_max);
            let sum: f64 = (0..c).map(|ch| (x.data[at(ch)] - max).exp()).sum();
            for ch in 0..c {
                y.data[at(ch)] = (x.data[at(ch)] - max).exp() / sum;
            }
        }
    }
    y
}

/// `(x − mean)/√(var + eps)·γ + β` per channel.
fn normalise_per_channel(x: &Tensor, mean: &[f64], var: &[f64], gamma: &[f64], beta: &[f64], eps: f64) -> Tensor {
    x.map_channel(|v, ch| (v - mean[ch]) / (var[ch] + eps).sqrt() * gamma[ch] + beta[ch])
}

/// Batch norm with running statistics (inference).
pub fn batch_norm_infer(x: &Tensor, gamma: &[f64], beta: &[f64], mean: &[f64], var: &[f64], eps: f64) -> Tensor {
    normalise_per_channel(x, mean, var, gamma, beta, eps)
}

/// Mean and variances per channel over the batch and the spatial axes.
pub fn batch_stats(x: &Tensor) -> BatchStats {
    let (c, inner) = x.channels_inner();
    let m = (x.batch() * inner) as f64;
    let values =
        |ch: usize| (0..x.batch()).flat_map(move |b| (0..inner).map(move |i| x.data[(b * c + ch) * inner + i]));
    let mean: Vec<f64> = (0..c).map(|ch| values(ch).sum::<f64>() / m).collect();
    let squares: Vec<f64> = (0..c)
        .map(|ch| values(ch).map(|v| (v - mean[ch]).powi(2)).sum::<f64>())
        .collect();
    BatchStats {
        mean,
        biased_var: squares.iter().map(|s| s / m).collect(),
        unbiased_var: squares.iter().map(|s| s / (m - 1.0)).collect(),
    }
}

/// Batch norm in training: normalised with the batch's mean and biased
/// variance (PyTorch `BatchNorm1d/2d` in `train()`).
pub fn batch_norm_train(x: &Tensor, gamma: &[f64], beta: &[f64], eps: f64) -> (Tensor, BatchStats) {
    let stats = batch_stats(x);
    let y = normalise_per_channel(x, &stats.mean, &stats.biased_var, gamma, beta, eps);
    (y, stats)
}

/// PyTorch's running-statistics rule: `(1 − m)·running + m·batch`.
pub fn momentum_update(running: &[f64], batch: &[f64], momentum: f64) -> Vec<f64> {
    running
        .iter()
        .zip(batch)
        .map(|(r, b)| (1.0 - momentum) * r + momentum * b)
        .collect()
}

/// Mean and biased variance of a slice.
fn moments(v: &[f64]) -> (f64, f64) {
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / v.len() as f64;
    (mean, var)
}

/// Per sample over all non-batch axes; γ, β have the per-sample shape.
pub fn layer_norm(x: &Tensor, gamma: &[f64], beta: &[f64], eps: f64) -> Tensor {
    let per = x.data.len() / x.batch();
    let mut y = x.clone();
    for (out, sample) in y.data.chunks_mut(per).zip(x.data.chunks(per)) {
        let (mean, var) = moments(sample);
        for (i, (o, v)) in out.iter_mut().zip(sample).enumerate() {
            *o = (v - mean) / (var + eps).sqrt() * gamma[i] + beta[i];
        }
    }
    y
}

/// Per sample over groups of C/G channels (H·W·C/G values each), affine
/// per channel (PyTorch `GroupNorm`). Instance norm is G = C.
pub fn group_norm(x: &Tensor, groups: usize, gamma: &[f64], beta: &[f64], eps: f64) -> Tensor {
    let (c, inner) = x.channels_inner();
    let per_group = c / groups * inner;
    let mut y = x.clone();
    for (gi, (out, values)) in y.data.chunks_mut(per_group).zip(x.data.chunks(per_group)).enumerate() {
        let (mean, var) = moments(values);
        for (i, (o, v)) in out.iter_mut().zip(values).enumerate() {
            let ch = (gi % groups) * (c / groups) + i / inner;
            *o = (v - mean) / (var + eps).sqrt() * gamma[ch] + beta[ch];
        }
    }
    y
}

pub fn instance_norm(x: &Tensor, gamma: &[f64], beta: &[f64], eps: f64) -> Tensor {
    group_norm(x, x.channels_inner().0, gamma, beta, eps)
}

/// ONNX `LRN` (= PyTorch `LocalResponseNorm`): `y = x / (bias +
/// α/size · Σ x²)^β`, the sum over channels `c − ⌊(size−1)/2⌋ …
/// c + ⌈(size−1)/2⌉` that exist.
pub fn lrn(x: &Tensor, size: usize, alpha: f64, beta: f64, bias: f64) -> Tensor {
    let (c, inner) = x.channels_inner();
    let (below, above) = ((size - 1) / 2, (size - 1).div_ceil(2));
    let mut y = x.clone();
    for b in 0..x.batch() {
        for ch in 0..c {
            for i in 0..inner {
                let at = |k: usize| (b * c + k) * inner + i;
                let lo = ch.saturating_sub(below);
                let hi = (ch + above).min(c - 1);
                let square_sum: f64 = (lo..=hi).map(|k| x.data[at(k)].powi(2)).sum();
                y.data[at(ch)] = x.data[at(ch)] / (bias + alpha / size as f64 * square_sum).powf(beta);
            }
        }
    }
    y
}

/// How much normalising `x` over groups (`group_of(flat index)`, `groups`
/// of them) amplifies an error relative to the output's scale: the largest
/// `max|x_g| / max(max|x_g − mean_g|, √eps)`, at least 1. An f32 producer
/// leaves an error relative to the values' magnitude `max|x_g|`; the
/// normalised output has the scale of their deviations. For centred data
/// the two agree (factor ≈ 1); a group whose values nearly agree has
/// deviations far below their magnitude: the problem is ill-conditioned,
/// not the computation wrong.
pub fn amplification(x: &Tensor, groups: usize, group_of: impl Fn(usize) -> usize, eps: f64) -> f64 {
    let (mut n, mut sum) = (vec![0.0; groups], vec![0.0; groups]);
    for (i, v) in x.data.iter().enumerate() {
        n[group_of(i)] += 1.0;
        sum[group_of(i)] += v;
    }
    let (mut magnitude, mut deviation) = (vec![0.0f64; groups], vec![eps.sqrt(); groups]);
    for (i, v) in x.data.iter().enumerate() {
        let g = group_of(i);
        magnitude[g] = magnitude[g].max(v.abs());
        deviation[g] = deviation[g].max((v - sum[g] / n[g]).abs());
    }
    (0..groups).map(|g| magnitude[g] / deviation[g]).fold(1.0, f64::max)
}

/// How much an average or a sum cancelled: `max|x| / max|y|`, at least 1.
/// Its f32 result carries an error relative to its inputs' magnitude, so
/// when the result is far smaller (the average of a map that a norm just
/// centred is zero up to rounding), what follows sees mostly rounding.
pub fn cancellation(x: &Tensor, y: &Tensor) -> f64 {
    let largest = |t: &Tensor| t.data.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let (input, output) = (largest(x), largest(y));
    if output == 0.0 {
        return if input == 0.0 { 1.0 } else { f64::INFINITY };
    }
    (input / output).max(1.0)
}

/// `x·scale + shift` per channel.
pub fn affine(x: &Tensor, scale: &[f64], shift: &[f64]) -> Tensor {
    x.map_channel(|v, ch| v * scale[ch] + shift[ch])
}

pub fn add(a: &Tensor, b: &Tensor) -> Tensor {
    assert_eq!(a.dims, b.dims, "add");
    Tensor::new(a.dims.clone(), a.data.iter().zip(&b.data).map(|(p, q)| p + q).collect())
}

// ---- walking a module ---------------------------------------------------------

/// True if the function draws random numbers in training (and so has no
/// reference there): dropout of any kind with p > 0, dropconnect, RReLU
/// with lower < upper.
pub fn draws_randomly(func: &Function) -> bool {
    func.ops.iter().any(|o| match &o.op {
        Op::Dropout { p } | Op::AlphaDropout { p } | Op::DropBlock { p, .. } => *p > 0.0,
        Op::Linear { dropconnect, .. } | Op::Conv2d { dropconnect, .. } => dropconnect.is_some_and(|p| p > 0.0),
        Op::Act(Act::Rrelu { lower, upper }) => lower < upper,
        _ => false,
    })
}

/// Runs `module`'s `mode` function on `batch` samples of `input` with the
/// stored parameters of `weights` (by name). Derived parameters (what the
/// passes add) have no stored value: evaluate a lowered module.
pub fn evaluate(module: &Module, mode: Mode, weights: &Weights, input: &[f32], batch: usize) -> Evaluation {
    let func = module.function(mode).expect("the module has the mode's function");
    assert!(
        !(mode == Mode::Train && draws_randomly(func)),
        "no reference for random ops in training"
    );
    let stored = |name: &str| -> Vec<f64> {
        let t = weights
            .tensors
            .get(name)
            .unwrap_or_else(|| panic!("no stored value for `{name}` (is the module lowered?)"));
        t.data.iter().map(|v| f64::from(*v)).collect()
    };
    evaluate_with(module, mode, &stored, input, batch, &|_| None)
}

/// What a random op drew in one training pass, as the forward recorded it
/// (`nnc_ir::grad::rules::Record`): per element (or per weight, for
/// DropConnect) the factor it multiplied by.
pub type Records<'a> = &'a dyn Fn(usize) -> Option<Vec<f64>>;

/// [`evaluate`] with f64 parameters by name (what a finite difference
/// perturbs) and, for the ops that draw in training, the factors they drew
/// (by op index): dropout, DropBlock and RReLU multiply by them, alpha
/// dropout keeps where its factor is non-zero, DropConnect multiplies the
/// weights.
pub fn evaluate_with(
    module: &Module,
    mode: Mode,
    stored: &dyn Fn(&str) -> Vec<f64>,
    input: &[f32],
    batch: usize,
    records: Records<'_>,
) -> Evaluation {
    let func = module.function(mode).expect("the module has the mode's function");
    let train = mode == Mode::Train;
    let param = |id: ParamId| -> Vec<f64> { stored(&module.param(id).name) };
    let shape = |v: nnc_ir::ValueId| -> Vec<usize> {
        std::iter::once(batch)
            .chain(func.value_type(v).dims.iter().copied())
            .collect()
    };
    let mut values: Vec<Option<Tensor>> = vec![None; func.values.len()];
    values[func.input.0 as usize] = Some(Tensor::from_f32(shape(func.input), input));
    let mut running = BTreeMap::new();
    let mut amplified = 1.0;
    for (index, op) in func.ops.iter().enumerate() {
        let x = values[op.args[0].0 as usize].as_ref().expect("arguments come first");
        amplified *= norm_amplification(x, &op.op, train);
        let drawn = if train { records(index) } else { None };
        // DropConnect's weights, masked as the forward drew them.
        let weight_of = |w: ParamId| match &drawn {
            Some(mask) => param(w).iter().zip(mask).map(|(w, m)| w * m).collect(),
            None => param(w),
        };
        let y = match &op.op {
            Op::Linear {
                weight, bias, epilogue, ..
            } => apply_epilogue(
                linear(x, &weight_of(*weight), bias.map(param).as_deref()),
                &epilogue.steps,
                &param,
            ),
            Op::Conv2d {
                weight,
                bias,
                geometry,
                epilogue,
                ..
            } => {
                let out = module.param(*weight).shape[0];
                let y = conv2d(x, &weight_of(*weight), bias.map(param).as_deref(), out, geometry);
                // A residual's sum splits the steps: those before it, the
                // sum (its cancellation counted as an add's), those after.
                let (before, after) = epilogue.split_at_sum();
                let y = apply_epilogue(y, before, &param);
                match after {
                    Some(then) => {
                        let r = values[op.args[1].0 as usize].as_ref().expect("arguments come first");
                        let sum = add(&y, r);
                        amplified *= cancellation(&y, &sum);
                        apply_epilogue(sum, then, &param)
                    }
                    None => match epilogue.pool_window() {
                        Some(window) => max_pool2d(
                            &y,
                            &nnc_ir::PoolGeometry {
                                kernel: window,
                                stride: window,
                                pads: [0; 4],
                            },
                        ),
                        None => y,
                    },
                }
            }
            Op::MaxPool(g) => max_pool2d(x, g),
            Op::AvgPool(g) => avg_pool2d(x, g),
            Op::GlobalAvgPool => global_avg_pool(x),
            Op::Flatten => flatten(x),
            Op::Act(Act::Rrelu { .. }) if drawn.is_some() => scale_by(x, drawn.as_deref().unwrap_or_default()),
            Op::Act(act) => activation(x, act, &act.params().into_iter().flat_map(param).collect::<Vec<_>>()),
            Op::BatchNorm {
                weight,
                bias,
                running_mean,
                running_var,
                eps,
                momentum,
            } if train => {
                let (y, stats) = batch_norm_train(x, &param(*weight), &param(*bias), f64::from(*eps));
                let m = f64::from(*momentum);
                for (id, batch_value) in [(running_mean, &stats.mean), (running_var, &stats.unbiased_var)] {
                    let updated = momentum_update(&param(*id), batch_value, m);
                    running.insert(module.param(*id).name.clone(), updated);
                }
                y
            }
            Op::BatchNorm {
                weight,
                bias,
                running_mean,
                running_var,
                eps,
                ..
            } => batch_norm_infer(
                x,
                &param(*weight),
                &param(*bias),
                &param(*running_mean),
                &param(*running_var),
                f64::from(*eps),
            ),
            Op::LayerNorm { weight, bias, eps } => layer_norm(x, &param(*weight), &param(*bias), f64::from(*eps)),
            Op::InstanceNorm { weight, bias, eps } => instance_norm(x, &param(*weight), &param(*bias), f64::from(*eps)),
            Op::GroupNorm {
                weight,
                bias,
                groups,
                eps,
            } => group_norm(x, *groups as usize, &param(*weight), &param(*bias), f64::from(*eps)),
            Op::Lrn {
                size,
                alpha,
                beta,
                bias,
            } => lrn(x, *size as usize, f64::from(*alpha), f64::from(*beta), f64::from(*bias)),
            Op::Affine { scale, shift } => affine(x, &param(*scale), &param(*shift)),
            Op::Dropout { .. } | Op::DropBlock { .. } if drawn.is_some() => {
                scale_by(x, drawn.as_deref().unwrap_or_default())
            }
            Op::AlphaDropout { p } if drawn.is_some() => {
                alpha_dropout(x, f64::from(*p), drawn.as_deref().unwrap_or_default())
            }
            // Identities at inference, and in training when p = 0.
            Op::Dropout { .. } | Op::AlphaDropout { .. } | Op::DropBlock { .. } => x.clone(),
            Op::Add => add(x, values[op.args[1].0 as usize].as_ref().expect("arguments come first")),
        };
        assert_eq!(y.dims, shape(op.result), "{} [{}]: shape", op.op.name(), op.layer);
        if matches!(op.op, Op::AvgPool(_) | Op::GlobalAvgPool | Op::Add) {
            amplified *= cancellation(x, &y);
        }
        values[op.result.0 as usize] = Some(y);
    }
    let logits = match func.ops.iter().find(|o| o.result == func.output) {
        Some(last) => values[last.args[0].0 as usize].clone().expect("arguments come first"),
        None => values[func.output.0 as usize].clone().expect("the output is computed"),
    };
    let output = values[func.output.0 as usize].take().expect("the output is computed");
    Evaluation {
        output,
        running,
        amplification: amplified,
        logits,
    }
}

/// `x·factor`, element by element.
pub fn scale_by(x: &Tensor, factors: &[f64]) -> Tensor {
    assert_eq!(x.data.len(), factors.len(), "one factor per element");
    Tensor::new(x.dims.clone(), x.data.iter().zip(factors).map(|(v, f)| v * f).collect())
}

/// Alpha dropout (Klambauer et al. 2017) with the elements kept where
/// `kept` is non-zero: `a·(x·keep + α'·(1 − keep)) + b`, α' = −λα,
/// `a = ((1 − p)(1 + p·α'²))^(−1/2)`, `b = −a·α'·p`.
pub fn alpha_dropout(x: &Tensor, p: f64, kept: &[f64]) -> Tensor {
    let saturation = -1.050_700_987_355_480_5 * 1.673_263_242_354_377_3;
    let a = ((1.0 - p) * (1.0 + p * saturation * saturation)).powf(-0.5);
    let b = -a * saturation * p;
    let data = x
        .data
        .iter()
        .zip(kept)
        .map(|(v, k)| {
            let keep = if *k != 0.0 { 1.0 } else { 0.0 };
            a * (v * keep + saturation * (1.0 - keep)) + b
        })
        .collect();
    Tensor::new(x.dims.clone(), data)
}

/// [`amplification`] of the normalisations that use batch or sample
/// statistics; 1 for every other op (batch norm in inference divides by
/// the stored running variance).
fn norm_amplification(x: &Tensor, op: &Op, train: bool) -> f64 {
    let (c, inner) = x.channels_inner();
    let per_sample = c * inner;
    match op {
        Op::BatchNorm { eps, .. } if train => amplification(x, c, |i| i / inner % c, f64::from(*eps)),
        Op::LayerNorm { eps, .. } => amplification(x, x.batch(), |i| i / per_sample, f64::from(*eps)),
        Op::InstanceNorm { eps, .. } => amplification(x, x.batch() * c, |i| i / inner, f64::from(*eps)),
        Op::GroupNorm { groups, eps, .. } => {
            let per_group = per_sample / *groups as usize;
            amplification(x, x.batch() * *groups as usize, |i| i / per_group, f64::from(*eps))
        }
        _ => 1.0,
    }
}

fn apply_epilogue(mut y: Tensor, steps: &[EpilogueStep], param: &dyn Fn(ParamId) -> Vec<f64>) -> Tensor {
    for step in steps {
        y = match step {
            EpilogueStep::Affine { scale, shift } => affine(&y, &param(*scale), &param(*shift)),
            EpilogueStep::Act(act) => {
                let slopes: Vec<f64> = act.params().into_iter().flat_map(param).collect();
                activation(&y, act, &slopes)
            }
            EpilogueStep::Add | EpilogueStep::MaxPool { .. } => {
                panic!("the conv splits its steps at the residual's sum and pools after them")
            }
        };
    }
    y
}
