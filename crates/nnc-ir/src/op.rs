//! The op vocabulary and its shape rules.

use crate::param::ParamId;
use crate::types::ValueType;
use std::fmt;

/// What an op computes. Attributes are fields; parameters are named by
/// [`ParamId`] fields; value arguments live in [`crate::OpData::args`].
///
/// Semantics that depend on the mode (batch norm, dropout, RReLU) follow
/// the [`crate::Mode`] of the function the op is in.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// `y = x Wᵀ + b` on `[IN]` → `[OUT]`, W `[OUT, IN]`, then the epilogue.
    /// `dropconnect` (train only) masks weights with that drop probability.
    Linear {
        weight: ParamId,
        bias: Option<ParamId>,
        dropconnect: Option<f32>,
        epilogue: Epilogue,
    },
    /// 2-D convolution, NCHW, W `[OUT, IN/G, K, K]`, then the epilogue.
    Conv2d {
        weight: ParamId,
        bias: Option<ParamId>,
        geometry: ConvGeometry,
        dropconnect: Option<f32>,
        epilogue: Epilogue,
    },
    /// Max pooling; padding counts as −∞.
    MaxPool(PoolGeometry),
    /// Average pooling; padding is not counted (ONNX `count_include_pad=0`).
    AvgPool(PoolGeometry),
    /// `[C, H, W]` → `[C]`.
    GlobalAvgPool,
    /// `[C, H, W]` → `[C·H·W]`; the identity on `[F]`.
    Flatten,
    /// A standalone activation.
    Act(Act),
    /// Batch norm per feature or channel: batch statistics and a running-stat
    /// update in train mode, running statistics in infer mode.
    BatchNorm {
        weight: ParamId,
        bias: ParamId,
        running_mean: ParamId,
        running_var: ParamId,
        eps: f32,
        momentum: f32,
    },
    /// Per sample over all non-batch axes, element-wise affine.
    LayerNorm { weight: ParamId, bias: ParamId, eps: f32 },
    /// Per sample and channel over H, W; affine per channel.
    InstanceNorm { weight: ParamId, bias: ParamId, eps: f32 },
    /// Per sample over groups of C/G channels; affine per channel.
    GroupNorm {
        weight: ParamId,
        bias: ParamId,
        groups: u32,
        eps: f32,
    },
    /// Local response normalisation across channels (the ONNX LRN formula).
    Lrn {
        size: u32,
        alpha: f32,
        beta: f32,
        bias: f32,
    },
    /// `y = x·scale + shift` per feature or channel: what a batch norm with
    /// nothing to fold into becomes in infer mode.
    Affine { scale: ParamId, shift: ParamId },
    /// Inverted dropout: keep with probability 1−p, scale by 1/(1−p).
    Dropout { p: f32 },
    /// Alpha dropout: keeps SELU's mean and variance.
    AlphaDropout { p: f32 },
    /// DropBlock: drops `block`×`block` squares; p is the fraction dropped.
    DropBlock { p: f32, block: u32 },
    /// Element-wise sum of two values of one type (residual connections).
    Add,
}

/// Activations. All are element-wise except `Maxout` (groups of `pieces`
/// features or channels → their max) and `Softmax` (over features, or over
/// channels for images).
#[derive(Clone, Debug, PartialEq)]
pub enum Act {
    Sigmoid,
    Tanh,
    Relu,
    LeakyRelu {
        alpha: f32,
    },
    /// One learned slope per feature/channel (`[C]`) or one for all (`[1]`).
    Prelu {
        weight: ParamId,
    },
    /// Random slope in `[lower, upper]` per element in training,
    /// `(lower + upper) / 2` at inference.
    Rrelu {
        lower: f32,
        upper: f32,
    },
    Elu {
        alpha: f32,
    },
    /// λ = 1.0507009873554805, α = 1.6732632423543772.
    Selu,
    /// `log(1 + exp(beta·x)) / beta`, computed stably.
    Softplus {
        beta: f32,
    },
    /// The exact erf form.
    Gelu,
    Silu,
    Maxout {
        pieces: u32,
    },
    Softmax,
}

/// What a fused linear or conv applies to each output tile while it is
/// still in cache, in order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Epilogue {
    pub steps: Vec<EpilogueStep>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum EpilogueStep {
    /// Per output feature/channel `y·scale + shift`.
    Affine { scale: ParamId, shift: ParamId },
    /// An element-wise activation (never `Maxout` or `Softmax`).
    Act(Act),
    /// Adds the op's second argument, a value of the op's own type (the
    /// other branch of a residual block): a conv's only.
    Add,
    /// A `window × window` max pool at stride `window`, unpadded (floor
    /// mode), over each channel's plane: a conv's only, its last step, in
    /// an epilogue without a residual. The conv's result is the pooled map.
    MaxPool { window: u32 },
}

/// Convolution geometry. `pads` are `[top, left, bottom, right]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvGeometry {
    pub kernel: u32,
    pub stride: u32,
    pub dilation: u32,
    pub groups: u32,
    pub pads: [u32; 4],
}

/// Pooling geometry. `pads` are `[top, left, bottom, right]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolGeometry {
    pub kernel: u32,
    pub stride: u32,
    pub pads: [u32; 4],
}

/// Why an op cannot take the types it was given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShapeError(pub String);

impl fmt::Display for ShapeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ShapeError {}

macro_rules! bail {
    ($($t:tt)*) => { return Err(ShapeError(format!($($t)*))) };
}

impl Act {
    /// True for activations that map each element on its own (and so may
    /// sit in an epilogue).
    pub fn is_elementwise(&self) -> bool {
        !matches!(self, Act::Maxout { .. } | Act::Softmax)
    }

    /// The name used in the language and the text IR.
    pub fn name(&self) -> &'static str {
        match self {
            Act::Sigmoid => "sigmoid",
            Act::Tanh => "tanh",
            Act::Relu => "relu",
            Act::LeakyRelu { .. } => "leaky_relu",
            Act::Prelu { .. } => "prelu",
            Act::Rrelu { .. } => "rrelu",
            Act::Elu { .. } => "elu",
            Act::Selu => "selu",
            Act::Softplus { .. } => "softplus",
            Act::Gelu => "gelu",
            Act::Silu => "silu",
            Act::Maxout { .. } => "maxout",
            Act::Softmax => "softmax",
        }
    }

    pub fn params(&self) -> Vec<ParamId> {
        match self {
            Act::Prelu { weight } => vec![*weight],
            _ => Vec::new(),
        }
    }

    pub fn params_mut(&mut self) -> Vec<&mut ParamId> {
        match self {
            Act::Prelu { weight } => vec![weight],
            _ => Vec::new(),
        }
    }

    /// The shape rule of a standalone activation.
    pub fn output_type<S: AsRef<[usize]>>(&self, x: &ValueType, params: &[S]) -> Result<ValueType, ShapeError> {
        match self {
            Act::Maxout { pieces } => {
                let pieces = *pieces as usize;
                let c = x.channels();
                if x.dims.is_empty() || pieces == 0 || !c.is_multiple_of(pieces) {
                    bail!("maxout with {pieces} pieces needs a multiple of {pieces} features, got {c}");
                }
                let mut dims = x.dims.clone();
                dims[0] = c / pieces;
                Ok(ValueType::new(dims))
            }
            Act::Prelu { weight } => {
                check_channel_param(params, *weight, x.channels(), "prelu slope", true)?;
                Ok(x.clone())
            }
            _ => Ok(x.clone()),
        }
    }
}

impl Epilogue {
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    pub fn params(&self) -> Vec<ParamId> {
        self.steps
            .iter()
            .flat_map(|s| match s {
                EpilogueStep::Affine { scale, shift } => vec![*scale, *shift],
                EpilogueStep::Act(a) => a.params(),
                EpilogueStep::Add | EpilogueStep::MaxPool { .. } => Vec::new(),
            })
            .collect()
    }

    pub fn params_mut(&mut self) -> Vec<&mut ParamId> {
        self.steps
            .iter_mut()
            .flat_map(|s| match s {
                EpilogueStep::Affine { scale, shift } => vec![scale, shift],
                EpilogueStep::Act(a) => a.params_mut(),
                EpilogueStep::Add | EpilogueStep::MaxPool { .. } => Vec::new(),
            })
            .collect()
    }

    /// Checks each step against `channels` outputs.
    fn check<S: AsRef<[usize]>>(&self, channels: usize, params: &[S]) -> Result<(), ShapeError> {
        for step in &self.steps {
            match step {
                EpilogueStep::Affine { scale, shift } => {
                    check_channel_param(params, *scale, channels, "affine scale", false)?;
                    check_channel_param(params, *shift, channels, "affine shift", false)?;
                }
                EpilogueStep::Act(act) if !act.is_elementwise() => {
                    bail!("{} is not element-wise and cannot be in an epilogue", act.name())
                }
                EpilogueStep::Act(act) => {
                    for p in act.params() {
                        check_channel_param(params, p, channels, "prelu slope", true)?;
                    }
                }
                EpilogueStep::Add => {}
                EpilogueStep::MaxPool { window } if *window < 2 => {
                    bail!("a fused max pool's window must be at least 2, got {window}")
                }
                EpilogueStep::MaxPool { .. } => {}
            }
        }
        if self.steps.iter().filter(|s| **s == EpilogueStep::Add).count() > 1 {
            bail!("an epilogue adds one residual at most");
        }
        let pools = self
            .steps
            .iter()
            .filter(|s| matches!(s, EpilogueStep::MaxPool { .. }))
            .count();
        if pools > 1 || (pools == 1 && self.pool_window().is_none()) {
            bail!("a fused max pool is an epilogue's last step, and its only one");
        }
        if pools == 1 && self.adds() {
            bail!("an epilogue that adds a residual cannot pool");
        }
        Ok(())
    }

    /// The window of the max pool that ends the epilogue, if one does.
    pub fn pool_window(&self) -> Option<u32> {
        match self.steps.last() {
            Some(EpilogueStep::MaxPool { window }) => Some(*window),
            _ => None,
        }
    }

    /// The steps that map each output on its own: all but a final pool.
    fn elementwise_steps(&self) -> &[EpilogueStep] {
        match self.pool_window() {
            Some(_) => &self.steps[..self.steps.len() - 1],
            None => &self.steps,
        }
    }

    /// Whether a step adds the op's second argument.
    pub fn adds(&self) -> bool {
        self.split_at_sum().1.is_some()
    }

    /// The element-wise steps before the residual's sum (all of them
    /// without one), and those after it if there is one: what a kernel
    /// applies to its tiles, and what follows the residual. A final pool
    /// is in neither (the kernel's geometry).
    pub fn split_at_sum(&self) -> (&[EpilogueStep], Option<&[EpilogueStep]>) {
        let steps = self.elementwise_steps();
        match steps.iter().position(|s| *s == EpilogueStep::Add) {
            Some(at) => (&steps[..at], Some(&steps[at + 1..])),
            None => (steps, None),
        }
    }
}

impl Op {
    /// The op's name in the text IR.
    pub fn name(&self) -> &'static str {
        match self {
            Op::Linear { .. } => "linear",
            Op::Conv2d { .. } => "conv2d",
            Op::MaxPool(_) => "maxpool",
            Op::AvgPool(_) => "avgpool",
            Op::GlobalAvgPool => "globalavgpool",
            Op::Flatten => "flatten",
            Op::Act(act) => act.name(),
            Op::BatchNorm { .. } => "batch_norm",
            Op::LayerNorm { .. } => "layer_norm",
            Op::InstanceNorm { .. } => "instance_norm",
            Op::GroupNorm { .. } => "group_norm",
            Op::Lrn { .. } => "lrn",
            Op::Affine { .. } => "affine",
            Op::Dropout { .. } => "dropout",
            Op::AlphaDropout { .. } => "alpha_dropout",
            Op::DropBlock { .. } => "dropblock",
            Op::Add => "add",
        }
    }

    /// Whether the executors (interpreter and generated code) share the
    /// op's inference among their threads by samples: a sample's output
    /// reads only that sample, and the runtime's kernel runs on one thread
    /// (dense and conv share their own work; copies and sums are bound by
    /// memory, not worth waking a thread for).
    pub fn shared_by_samples(&self) -> bool {
        matches!(
            self,
            Op::MaxPool(_)
                | Op::AvgPool(_)
                | Op::GlobalAvgPool
                | Op::Act(_)
                | Op::BatchNorm { .. }
                | Op::LayerNorm { .. }
                | Op::InstanceNorm { .. }
                | Op::GroupNorm { .. }
                | Op::Lrn { .. }
                | Op::Affine { .. }
        )
    }

    /// The units that the threads share of an op [`Op::shared_by_samples`]
    /// a sample, given its input type: one (the sample), or for an op on
    /// each channel plane alone (the pools) its C planes, each a unit of
    /// one channel. Then a batch of one is shared too, and at batch 1 each
    /// thread pools the channels that it wrote as the conv before (split
    /// over channels), instead of one thread reading the other core's half
    /// (cifar_vgg's 2 × 2 pools: 3.9 µs on one thread, 10 on the caller of
    /// two).
    pub fn units_per_sample(&self, input: &ValueType) -> usize {
        match self {
            Op::MaxPool(_) | Op::AvgPool(_) | Op::GlobalAvgPool if input.is_image() => input.channels(),
            _ => 1,
        }
    }

    /// How many value arguments the op takes.
    pub fn arity(&self) -> usize {
        match self {
            Op::Add => 2,
            // The residual its epilogue adds.
            Op::Conv2d { epilogue, .. } if epilogue.adds() => 2,
            _ => 1,
        }
    }

    /// Every parameter the op reads, in the order the text form prints them.
    pub fn params(&self) -> Vec<ParamId> {
        let mut out = Vec::new();
        match self {
            Op::Linear {
                weight, bias, epilogue, ..
            }
            | Op::Conv2d {
                weight, bias, epilogue, ..
            } => {
                out.push(*weight);
                out.extend(*bias);
                out.extend(epilogue.params());
            }
            Op::Act(act) => out.extend(act.params()),
            Op::BatchNorm {
                weight,
                bias,
                running_mean,
                running_var,
                ..
            } => out.extend([*weight, *bias, *running_mean, *running_var]),
            Op::LayerNorm { weight, bias, .. }
            | Op::InstanceNorm { weight, bias, .. }
            | Op::GroupNorm { weight, bias, .. } => out.extend([*weight, *bias]),
            Op::Affine { scale, shift } => out.extend([*scale, *shift]),
            Op::MaxPool(_)
            | Op::AvgPool(_)
            | Op::GlobalAvgPool
            | Op::Flatten
            | Op::Lrn { .. }
            | Op::Dropout { .. }
            | Op::AlphaDropout { .. }
            | Op::DropBlock { .. }
            | Op::Add => {}
        }
        out
    }

    /// Mutable references to every parameter id, in the order of
    /// [`Op::params`]: what renumbering after DCE edits.
    pub fn params_mut(&mut self) -> Vec<&mut ParamId> {
        let mut out: Vec<&mut ParamId> = Vec::new();
        match self {
            Op::Linear {
                weight, bias, epilogue, ..
            }
            | Op::Conv2d {
                weight, bias, epilogue, ..
            } => {
                out.push(weight);
                out.extend(bias.as_mut());
                out.extend(epilogue.params_mut());
            }
            Op::Act(act) => out.extend(act.params_mut()),
            Op::BatchNorm {
                weight,
                bias,
                running_mean,
                running_var,
                ..
            } => out.extend([weight, bias, running_mean, running_var]),
            Op::LayerNorm { weight, bias, .. }
            | Op::InstanceNorm { weight, bias, .. }
            | Op::GroupNorm { weight, bias, .. } => out.extend([weight, bias]),
            Op::Affine { scale, shift } => out.extend([scale, shift]),
            Op::MaxPool(_)
            | Op::AvgPool(_)
            | Op::GlobalAvgPool
            | Op::Flatten
            | Op::Lrn { .. }
            | Op::Dropout { .. }
            | Op::AlphaDropout { .. }
            | Op::DropBlock { .. }
            | Op::Add => {}
        }
        out
    }

    /// The shape rule: the result type for these argument types, given the
    /// shapes of the module's parameters (indexed by `ParamId`): shape
    /// slices, or the parameter table itself (no table of shapes to build
    /// per op).
    pub fn output_type<S: AsRef<[usize]>>(&self, args: &[&ValueType], params: &[S]) -> Result<ValueType, ShapeError> {
        if args.len() != self.arity() {
            bail!("{} takes {} argument(s), got {}", self.name(), self.arity(), args.len());
        }
        for p in self.params() {
            if p.0 as usize >= params.len() {
                bail!("{} refers to parameter #{} which does not exist", self.name(), p.0);
            }
        }
        let x = args[0];
        match self {
            Op::Linear {
                weight,
                bias,
                epilogue,
                dropconnect,
            } => {
                let w = params[weight.0 as usize].as_ref();
                let [out, inp] = w else {
                    bail!("linear weight must be [OUT, IN], got {w:?}")
                };
                if x.dims != [*inp] {
                    bail!("linear expects {}, got {x}", ValueType::new([*inp]));
                }
                if let Some(b) = bias {
                    check_channel_param(params, *b, *out, "bias", false)?;
                }
                check_probability(*dropconnect)?;
                epilogue.check(*out, params)?;
                if epilogue.adds() || epilogue.pool_window().is_some() {
                    bail!("only a conv2d's epilogue adds a residual or pools");
                }
                Ok(ValueType::new([*out]))
            }
            Op::Conv2d {
                weight,
                bias,
                geometry,
                epilogue,
                dropconnect,
            } => {
                let w = params[weight.0 as usize].as_ref();
                let [out, in_per_group, kh, kw] = w else {
                    bail!("conv2d weight must be [OUT, IN/G, K, K], got {w:?}")
                };
                let g = geometry.groups as usize;
                let k = geometry.kernel as usize;
                let [c, h, wd] = image(x, "conv2d")?;
                if g == 0 || *kh != k || *kw != k || in_per_group.checked_mul(g) != Some(c) || !out.is_multiple_of(g) {
                    bail!("conv2d weight {w:?} does not fit input {x} with kernel {k} and {g} groups");
                }
                if let Some(b) = bias {
                    check_channel_param(params, *b, *out, "bias", false)?;
                }
                check_probability(*dropconnect)?;
                epilogue.check(*out, params)?;
                let g = geometry;
                let ho = window_output(h, g.pads[0] + g.pads[2], g.kernel, g.stride, g.dilation)?;
                let wo = window_output(wd, g.pads[1] + g.pads[3], g.kernel, g.stride, g.dilation)?;
                let (ho, wo) = match epilogue.pool_window() {
                    Some(p) => (window_output(ho, 0, p, p, 1)?, window_output(wo, 0, p, p, 1)?),
                    None => (ho, wo),
                };
                let y = ValueType::new([*out, ho, wo]);
                if let Some(residual) = args.get(1).filter(|r| **r != &y) {
                    bail!("conv2d adds a residual of its output's type {y}, got {residual}");
                }
                Ok(y)
            }
            Op::MaxPool(g) | Op::AvgPool(g) => {
                let [c, h, w] = image(x, self.name())?;
                // A window wholly in the padding would have nothing to
                // take (LANGUAGE.md §8: a pool's pad is at most K/2).
                if g.pads.iter().any(|p| *p > g.kernel / 2) {
                    bail!(
                        "{} padding {:?} exceeds half the window ({})",
                        self.name(),
                        g.pads,
                        g.kernel / 2
                    );
                }
                let ho = window_output(h, g.pads[0] + g.pads[2], g.kernel, g.stride, 1)?;
                let wo = window_output(w, g.pads[1] + g.pads[3], g.kernel, g.stride, 1)?;
                Ok(ValueType::new([c, ho, wo]))
            }
            Op::GlobalAvgPool => {
                let [c, _, _] = image(x, "globalavgpool")?;
                Ok(ValueType::new([c]))
            }
            Op::Flatten => Ok(ValueType::new([x.numel()])),
            Op::Act(act) => act.output_type(x, params),
            Op::BatchNorm {
                weight,
                bias,
                running_mean,
                running_var,
                eps,
                momentum,
            } => {
                for (p, what) in [
                    (weight, "weight"),
                    (bias, "bias"),
                    (running_mean, "running_mean"),
                    (running_var, "running_var"),
                ] {
                    check_channel_param(params, *p, x.channels(), what, false)?;
                }
                check_positive(*eps, "eps")?;
                if !(0.0..=1.0).contains(momentum) {
                    bail!("momentum must lie in [0, 1], got {momentum}");
                }
                Ok(x.clone())
            }
            Op::LayerNorm { weight, bias, eps } => {
                for p in [weight, bias] {
                    let shape = params[p.0 as usize].as_ref();
                    if shape != x.dims.as_slice() {
                        bail!(
                            "layer_norm affine must have the per-sample shape {:?}, got {shape:?}",
                            x.dims
                        );
                    }
                }
                check_positive(*eps, "eps")?;
                Ok(x.clone())
            }
            Op::InstanceNorm { weight, bias, eps } => {
                image(x, "instance_norm")?;
                check_channel_param(params, *weight, x.channels(), "weight", false)?;
                check_channel_param(params, *bias, x.channels(), "bias", false)?;
                check_positive(*eps, "eps")?;
                Ok(x.clone())
            }
            Op::GroupNorm {
                weight,
                bias,
                groups,
                eps,
            } => {
                let [c, _, _] = image(x, "group_norm")?;
                if *groups == 0 || !c.is_multiple_of(*groups as usize) {
                    bail!("group_norm: {groups} groups do not divide {c} channels");
                }
                check_channel_param(params, *weight, c, "weight", false)?;
                check_channel_param(params, *bias, c, "bias", false)?;
                check_positive(*eps, "eps")?;
                Ok(x.clone())
            }
            Op::Lrn { size, .. } => {
                image(x, "lrn")?;
                if size % 2 == 0 {
                    bail!("lrn size must be odd, got {size}");
                }
                Ok(x.clone())
            }
            Op::Affine { scale, shift } => {
                check_channel_param(params, *scale, x.channels(), "scale", false)?;
                check_channel_param(params, *shift, x.channels(), "shift", false)?;
                Ok(x.clone())
            }
            Op::Dropout { p } | Op::AlphaDropout { p } => {
                check_probability(Some(*p))?;
                Ok(x.clone())
            }
            Op::DropBlock { p, block } => {
                let [_, h, w] = image(x, "dropblock")?;
                check_probability(Some(*p))?;
                if *block == 0 || *block as usize > h.min(w) || block % 2 == 0 {
                    bail!("dropblock block must be odd and at most {}, got {block}", h.min(w));
                }
                Ok(x.clone())
            }
            Op::Add => {
                if args[0] != args[1] {
                    bail!("add needs two values of one type, got {} and {}", args[0], args[1]);
                }
                Ok(x.clone())
            }
        }
    }
}

/// `floor((size + pad_total − dilation·(kernel−1) − 1) / stride) + 1`, the
/// output length of a sliding window (PyTorch's and ONNX's rule).
pub fn window_output(
    size: usize,
    pad_total: u32,
    kernel: u32,
    stride: u32,
    dilation: u32,
) -> Result<usize, ShapeError> {
    if kernel == 0 || stride == 0 || dilation == 0 {
        bail!("kernel, stride and dilation must be at least 1");
    }
    // Checked: shapes come from untrusted IR text too, where any size may appear.
    let span = (dilation as usize)
        .checked_mul(kernel as usize - 1)
        .and_then(|s| s.checked_add(1));
    let padded = size.checked_add(pad_total as usize);
    let (Some(span), Some(padded)) = (span, padded) else {
        bail!("window arithmetic overflows")
    };
    if padded < span {
        bail!("a window of {span} does not fit in {padded}");
    }
    Ok((padded - span) / stride as usize + 1)
}

fn image(x: &ValueType, op: &str) -> Result<[usize; 3], ShapeError> {
    match x.dims.as_slice() {
        [c, h, w] => Ok([*c, *h, *w]),
        _ => bail!("{op} needs a [C, H, W] input, got {x}"),
    }
}

fn check_channel_param<S: AsRef<[usize]>>(
    params: &[S],
    p: ParamId,
    channels: usize,
    what: &str,
    allow_shared: bool,
) -> Result<(), ShapeError> {
    let Some(shape) = params.get(p.0 as usize).map(AsRef::as_ref) else {
        bail!("{what} refers to a missing parameter")
    };
    if *shape == [channels] || (allow_shared && *shape == [1]) {
        return Ok(());
    }
    bail!("{what} must have shape [{channels}], got {shape:?}")
}

fn check_probability(p: Option<f32>) -> Result<(), ShapeError> {
    match p {
        Some(p) if !(0.0..1.0).contains(&p) => {
            bail!("a drop probability must lie in [0, 1), got {p}")
        }
        _ => Ok(()),
    }
}

fn check_positive(v: f32, what: &str) -> Result<(), ShapeError> {
    if v > 0.0 && v.is_finite() {
        Ok(())
    } else {
        bail!("{what} must be positive, got {v}")
    }
}
