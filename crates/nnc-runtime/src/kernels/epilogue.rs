//! The epilogue of dense and conv: what happens to each output value after
//! the matrix product, applied to a block of outputs while it is still in
//! cache rather than as separate passes over the whole output.

use super::act::{relu, Activation, SELU_ALPHA, SELU_LAMBDA};
use super::simd::{Lanes, Level};

/// One element-wise step of an epilogue, per output channel `o`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum EpilogueStep<'a> {
    /// `v · scale[o] + shift[o]` (a folded batch norm, for instance).
    Affine { scale: &'a [f32], shift: &'a [f32] },
    /// An activation; PReLU's slopes are indexed by the output channel.
    Act(Activation<'a>),
}

/// Values an epilogue applies to: part of a row of channels, or a run of
/// one channel's values.
enum Block<'v> {
    Row { row: &'v mut [f32], first_channel: usize },
    Channel { run: &'v mut [f32], channel: usize },
}

/// What happens to each output value after the matrix product: `+ bias[o]`,
/// then the steps in order, then (a conv's) the residual.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Epilogue<'a> {
    pub bias: Option<&'a [f32]>,
    pub steps: &'a [EpilogueStep<'a>],
    pub residual: Option<Residual<'a>>,
}

/// The other branch of a residual block, added to a conv's outputs after
/// its epilogue's steps: `values` (laid out as the output), then `then`,
/// the steps after the sum (its ReLU). ONNX Runtime's `FusedConv` with a
/// `Sum` input, oneDNN's sum post-op.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Residual<'a> {
    pub values: &'a [f32],
    pub then: &'a [EpilogueStep<'a>],
}

impl Epilogue<'_> {
    /// The empty epilogue: the plain matrix product.
    pub const NONE: Epilogue<'static> = Epilogue {
        bias: None,
        steps: &[],
        residual: None,
    };

    /// The residual's part on `run`, the outputs of `channel` from `at` in
    /// the output, once the rest of the epilogue has run on them: adds the
    /// residual's values at the same places, then its steps. Nothing
    /// without a residual.
    pub fn finish_channel(&self, run: &mut [f32], at: usize, channel: usize) {
        if let Some(residual) = &self.residual {
            let values = &residual.values[at..at + run.len()];
            run.iter_mut().zip(values).for_each(|(v, r)| *v += r);
            let then = Epilogue {
                bias: None,
                steps: residual.then,
                residual: None,
            };
            then.apply_channel(run, channel);
        }
    }

    /// Applies the epilogue to `row`, whose element `j` belongs to output
    /// channel `first_channel + j` (a row of a dense output, or a part of it).
    pub fn apply_row(&self, row: &mut [f32], first_channel: usize) {
        self.apply(Block::Row { row, first_channel });
    }

    /// Applies the epilogue to `run`, whose values all belong to output
    /// channel `channel` (one output plane of a conv).
    pub fn apply_channel(&self, run: &mut [f32], channel: usize) {
        self.apply(Block::Channel { run, channel });
    }

    /// Runs the body compiled for the widest vectors this CPU has, telling
    /// it which (a constant in each variant) for the steps written with
    /// intrinsics.
    fn apply(&self, block: Block) {
        #[cfg(target_arch = "x86_64")]
        match Level::detect() {
            // SAFETY: the CPU has the variant's features.
            Level::Avx512 => return unsafe { self.apply_avx512(block) },
            Level::Avx2 => return unsafe { self.apply_avx2(block) },
            Level::Base => {}
        }
        self.apply_any(block, Level::Base)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    unsafe fn apply_avx512(&self, block: Block) {
        self.apply_any(block, Level::Avx512)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn apply_avx2(&self, block: Block) {
        self.apply_any(block, Level::Avx2)
    }

    /// The body; `level` is this CPU's (or lower).
    #[inline(always)]
    fn apply_any(&self, block: Block, level: Level) {
        match block {
            Block::Row { row, first_channel } => self.row_any(row, first_channel, level),
            Block::Channel { run, channel } => self.channel_any(run, channel, level),
        }
    }

    /// [`Epilogue::apply_row`], for any vector width.
    #[inline(always)]
    fn row_any(&self, row: &mut [f32], first_channel: usize, level: Level) {
        let channels = first_channel..first_channel + row.len();
        if let Some(bias) = self.bias {
            row.iter_mut().zip(&bias[channels.clone()]).for_each(|(v, b)| *v += b);
        }
        for step in self.steps {
            match *step {
                EpilogueStep::Affine { scale, shift } => {
                    let params = scale[channels.clone()].iter().zip(&shift[channels.clone()]);
                    row.iter_mut().zip(params).for_each(|(v, (a, b))| *v = *v * a + b);
                }
                EpilogueStep::Act(Activation::Prelu { slopes }) if slopes.len() > 1 => {
                    let act = Activation::Prelu { slopes };
                    row.iter_mut()
                        .zip(channels.clone())
                        .for_each(|(v, c)| *v = act.apply(*v, c));
                }
                EpilogueStep::Act(act) => apply_uniform(&act, row, level),
            }
        }
    }

    /// [`Epilogue::apply_channel`], for any vector width.
    #[inline(always)]
    fn channel_any(&self, run: &mut [f32], channel: usize, level: Level) {
        if let Some(bias) = self.bias {
            let b = bias[channel];
            run.iter_mut().for_each(|v| *v += b);
        }
        for step in self.steps {
            match *step {
                EpilogueStep::Affine { scale, shift } => {
                    let (a, b) = (scale[channel], shift[channel]);
                    run.iter_mut().for_each(|v| *v = *v * a + b);
                }
                EpilogueStep::Act(Activation::Prelu { slopes }) => {
                    let slope = if slopes.len() == 1 { slopes[0] } else { slopes[channel] };
                    apply_uniform(&Activation::LeakyRelu { alpha: slope }, run, level);
                }
                EpilogueStep::Act(act) => apply_uniform(&act, run, level),
            }
        }
    }

    /// Whether every step has one parameter per channel for `channels`
    /// channels (a shared PReLU slope counts), for the kernels' debug checks.
    pub fn fits(&self, channels: usize) -> bool {
        self.bias.is_none_or(|b| b.len() == channels)
            && self.steps.iter().all(|step| match *step {
                EpilogueStep::Affine { scale, shift } => scale.len() == channels && shift.len() == channels,
                EpilogueStep::Act(Activation::Prelu { slopes }) => slopes.len() == 1 || slopes.len() == channels,
                EpilogueStep::Act(_) => true,
            })
    }
}

/// One channel's epilogue where it is what most convs have (the bias, a
/// batch norm's scale and shift, then ReLU, leaky ReLU or PReLU, each at
/// most once, in that order): a few vector operations on a register,
/// with the roundings of [`Epilogue::apply_channel`] (no fused
/// multiply-add), so a tile can take it on its way out.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct ChannelSteps {
    bias: Option<f32>,
    affine: Option<(f32, f32)>,
    act: Rectifier,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Rectifier {
    None,
    Relu,
    Leaky(f32),
}

/// The common form of [`ChannelSteps`] for every channel at once, its
/// parameters still per channel: found once per call, so that a kernel
/// taking a plane at a time only indexes (a call per small plane cost a
/// depthwise conv a third of its time).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct ChannelForm<'a> {
    bias: Option<&'a [f32]>,
    affine: Option<(&'a [f32], &'a [f32])>,
    act: FormAct<'a>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum FormAct<'a> {
    Uniform(Rectifier),
    Slopes(&'a [f32]),
}

impl<'a> Epilogue<'a> {
    /// The biases, the residual and whether ReLU follows, where the
    /// epilogue is a bias, then the residual added, then ReLU or nothing
    /// (a residual block's last conv with its batch norm folded into its
    /// weights): a kernel then adds the residual on its tiles' way out,
    /// not in a second pass over the outputs.
    pub(crate) fn bias_residual(&self) -> Option<(&'a [f32], &'a [f32], bool)> {
        let residual = self.residual.as_ref()?;
        let relu = match residual.then {
            [] => false,
            [EpilogueStep::Act(Activation::Relu)] => true,
            _ => return None,
        };
        match (self.bias, self.steps) {
            (Some(bias), []) => Some((bias, residual.values, relu)),
            _ => None,
        }
    }

    /// The epilogue as [`ChannelForm`], if it has that form.
    pub(crate) fn channel_form(&self) -> Option<ChannelForm<'a>> {
        let mut form = ChannelForm {
            bias: self.bias,
            affine: None,
            act: FormAct::Uniform(Rectifier::None),
        };
        let mut acted = false;
        for step in self.steps {
            if acted {
                return None;
            }
            match *step {
                EpilogueStep::Affine { scale, shift } if form.affine.is_none() => form.affine = Some((scale, shift)),
                EpilogueStep::Act(act) => {
                    acted = true;
                    form.act = match act {
                        Activation::Identity => FormAct::Uniform(Rectifier::None),
                        Activation::Relu => FormAct::Uniform(Rectifier::Relu),
                        Activation::LeakyRelu { alpha } => FormAct::Uniform(Rectifier::Leaky(alpha)),
                        Activation::Prelu { slopes } if slopes.len() == 1 => {
                            FormAct::Uniform(Rectifier::Leaky(slopes[0]))
                        }
                        Activation::Prelu { slopes } => FormAct::Slopes(slopes),
                        _ => return None,
                    };
                }
                EpilogueStep::Affine { .. } => return None,
            }
        }
        Some(form)
    }
}

impl<'a> ChannelForm<'a> {
    /// The biases, where the form is a bias and then ReLU and nothing
    /// else (a conv with its batch norm folded into its weights): a
    /// kernel then finishes its tiles in registers.
    pub(crate) fn bias_relu(&self) -> Option<&'a [f32]> {
        match (self.bias, self.affine, self.act) {
            (Some(bias), None, FormAct::Uniform(Rectifier::Relu)) => Some(bias),
            _ => None,
        }
    }

    /// The steps of `channel`.
    #[inline(always)]
    pub(crate) fn at(&self, channel: usize) -> ChannelSteps {
        ChannelSteps {
            bias: self.bias.map(|b| b[channel]),
            affine: self.affine.map(|(scale, shift)| (scale[channel], shift[channel])),
            act: match self.act {
                FormAct::Uniform(act) => act,
                FormAct::Slopes(slopes) => Rectifier::Leaky(slopes[channel]),
            },
        }
    }
}

/// [`ChannelSteps`] with their values in every lane, for a kernel that
/// finishes many vectors of one channel: built from the scalars once, in
/// registers (a plane at a time, the steps read back from the stack
/// waited on their own stores, a tenth of a stride-2 depthwise conv's
/// time on a Zen 4). Each step absent is an identity that changes no bit
/// (adding −0, multiplying by 1), so the roundings stay those of
/// [`ChannelSteps::apply`].
#[derive(Clone, Copy)]
pub(crate) struct LaneSteps<V> {
    bias: V,
    scale: V,
    shift: V,
    act: Rectifier,
}

impl<V: Lanes> LaneSteps<V> {
    /// `v` through `steps`, where a kernel has some to apply.
    ///
    /// # Safety
    /// The CPU has `V`'s features.
    #[inline(always)]
    pub(crate) unsafe fn apply_some(steps: &Option<Self>, v: V) -> V {
        match steps {
            Some(steps) => steps.apply(v),
            None => v,
        }
    }

    /// `act((v + bias) · scale + shift)`.
    ///
    /// # Safety
    /// The CPU has `V`'s features.
    #[inline(always)]
    pub(crate) unsafe fn apply(&self, v: V) -> V {
        let v = V::add(V::mul(V::add(v, self.bias), self.scale), self.shift);
        match self.act {
            Rectifier::None => v,
            Rectifier::Relu => v.relu(),
            Rectifier::Leaky(slope) => v.leaky(slope),
        }
    }
}

impl ChannelSteps {
    /// The steps with their values in every lane of `V`.
    ///
    /// # Safety
    /// The CPU has `V`'s features.
    #[inline(always)]
    pub(crate) unsafe fn in_lanes<V: Lanes>(&self) -> LaneSteps<V> {
        let (scale, shift) = self.affine.unwrap_or((1.0, -0.0));
        LaneSteps {
            bias: V::value(self.bias.unwrap_or(-0.0)),
            scale: V::value(scale),
            shift: V::value(shift),
            act: self.act,
        }
    }

    /// The steps on a vector (ReLU keeps NaN and maps −0 to 0, as
    /// [`relu`]; leaky ReLU scales what is not ≥ 0, as the slice form).
    ///
    /// # Safety
    /// The CPU has `V`'s features.
    #[inline(always)]
    pub(crate) unsafe fn apply<V: Lanes>(&self, v: V) -> V {
        let mut v = v;
        if let Some(b) = self.bias {
            v = V::add(v, V::value(b));
        }
        if let Some((a, b)) = self.affine {
            v = V::add(V::mul(v, V::value(a)), V::value(b));
        }
        match self.act {
            Rectifier::None => v,
            Rectifier::Relu => v.relu(),
            Rectifier::Leaky(slope) => v.leaky(slope),
        }
    }
}

/// Applies an activation that does not depend on the channel to every value
/// of `values`, with the dispatch hoisted out of the loop so that the cheap
/// ones vectorise.
#[inline(always)]
fn apply_uniform(act: &Activation, values: &mut [f32], level: Level) {
    match *act {
        Activation::Identity => {}
        Activation::Relu => values.iter_mut().for_each(|v| *v = relu(*v)),
        Activation::LeakyRelu { alpha } => {
            let leaky = Activation::LeakyRelu { alpha };
            values.iter_mut().for_each(|v| *v = leaky.apply(*v, 0));
        }
        Activation::Tanh => tanh_slice(values, level),
        Activation::Elu { alpha } => values.iter_mut().for_each(|v| *v = elu_fast(*v, alpha)),
        Activation::Selu => values
            .iter_mut()
            .for_each(|v| *v = SELU_LAMBDA * elu_fast(*v, SELU_ALPHA)),
        other => values.iter_mut().for_each(|v| *v = other.apply(*v, 0)),
    }
}

/// The input bound of [`tanh_fast`]: the largest value at which its
/// approximation is still ≤ 1 (Eigen's bound); tanh rounds to ±1 within an
/// ulp from there on.
const TANH_CLAMP: f32 = 7.905_311;
/// The odd 13/6 rational minimax approximation of tanh whose constants Eigen
/// and ONNX Runtime's MLAS both use: `x·P(x²) / Q(x²)`, coefficients of x²
/// highest power first.
const TANH_NUMERATOR: [f32; 7] = [
    -2.760_768_4e-16,
    2.000_188e-13,
    -8.604_672e-11,
    5.122_297_3e-8,
    1.485_722_35e-5,
    6.372_619_5e-4,
    4.893_524_6e-3,
];
const TANH_DENOMINATOR: [f32; 4] = [1.198_258_4e-6, 1.185_347_1e-4, 2.268_434_7e-3, 4.893_525e-3];

/// `tanh(x)` within a few ulp of `f32::tanh` (3 measured), branch-free so
/// that a loop over it vectorises (the libm call costs ~8 ns a value, as
/// much as a 2000-row dense layer's product): [`TANH_NUMERATOR`] over
/// [`TANH_DENOMINATOR`] on the input clamped to ±[`TANH_CLAMP`], ~20
/// operations and one division per value, half of what
/// `1 − 2 / (e^{2|x|} + 1)` costs. NaN stays NaN.
#[inline(always)]
pub fn tanh_fast(x: f32) -> f32 {
    let x = x.clamp(-TANH_CLAMP, TANH_CLAMP);
    let x2 = x * x;
    let p = TANH_NUMERATOR[1..].iter().fold(TANH_NUMERATOR[0], |p, &a| p * x2 + a);
    let q = TANH_DENOMINATOR[1..]
        .iter()
        .fold(TANH_DENOMINATOR[0], |q, &b| q * x2 + b);
    x * p / q
}

/// [`tanh_fast`] on every value of `values`, with AVX-512 at that `level`
/// (which must be this CPU's, or lower).
#[inline(always)]
fn tanh_slice(values: &mut [f32], level: Level) {
    #[cfg(target_arch = "x86_64")]
    if level == Level::Avx512 {
        // SAFETY: the CPU has AVX-512F (the caller's level says so).
        return unsafe { tanh_avx512(values) };
    }
    let _ = level;
    values.iter_mut().for_each(|v| *v = tanh_fast(*v));
}

/// [`tanh_fast`]'s approximation 16 lanes at a time, with fused
/// multiply-adds, and the division as a reciprocal estimate (14 bits)
/// whose quotient is corrected once: a 16-lane division alone takes longer
/// than everything else here. Within 2 ulp of libm (measured), like the
/// scalar form within 3.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn tanh_avx512(values: &mut [f32]) {
    use std::arch::x86_64::*;
    #[inline(always)]
    unsafe fn tanh16(x: __m512) -> __m512 {
        // max/min return their second operand when one is NaN: NaN passes.
        let x = _mm512_max_ps(_mm512_set1_ps(-TANH_CLAMP), x);
        let x = _mm512_min_ps(_mm512_set1_ps(TANH_CLAMP), x);
        let x2 = _mm512_mul_ps(x, x);
        let horner = |coefficients: &[f32]| {
            let mut acc = _mm512_set1_ps(coefficients[0]);
            for &c in &coefficients[1..] {
                acc = _mm512_fmadd_ps(acc, x2, _mm512_set1_ps(c));
            }
            acc
        };
        let p = _mm512_mul_ps(x, horner(&TANH_NUMERATOR));
        let q = horner(&TANH_DENOMINATOR);
        let r = _mm512_rcp14_ps(q);
        let y = _mm512_mul_ps(p, r);
        // y + r·(p − q·y): the residual of the first quotient, corrected.
        _mm512_fmadd_ps(r, _mm512_fnmadd_ps(q, y, p), y)
    }
    let mut chunks = values.chunks_exact_mut(16);
    for chunk in &mut chunks {
        let at = chunk.as_mut_ptr();
        _mm512_storeu_ps(at, tanh16(_mm512_loadu_ps(at)));
    }
    let rest = chunks.into_remainder();
    if !rest.is_empty() {
        let mask = ((1u32 << rest.len()) - 1) as u16;
        let at = rest.as_mut_ptr();
        _mm512_mask_storeu_ps(at, mask, tanh16(_mm512_maskz_loadu_ps(mask, at)));
    }
}

/// ELU, `x` for `x > 0` and `α·(e^x − 1)` below, branch-free so that a
/// loop over it vectorises (the libm `expm1` call per value cost a quarter
/// of a BN+ELU MLP's forward pass). Near 0 the Taylor series of `e^x − 1`
/// (7 terms; the first omitted one is < 5e-8 relative for |x| < 0.4);
/// elsewhere `1 / e^{|x|} − 1`. NaN stays NaN.
#[inline(always)]
pub fn elu_fast(x: f32, alpha: f32) -> f32 {
    let neg = x.min(0.0);
    let series = neg
        * (1.0
            + neg
                * (1.0 / 2.0
                    + neg
                        * (1.0 / 6.0 + neg * (1.0 / 24.0 + neg * (1.0 / 120.0 + neg * (1.0 / 720.0 + neg / 5040.0))))));
    // Past |x| = 40, e^x − 1 is −1 in f32; the clamp keeps e^{|x|} finite.
    let ax = (-neg).min(40.0);
    let tail = 1.0 / exp_positive(ax) - 1.0;
    let m1 = if ax < 0.4 { series } else { tail };
    // NaN takes this side, so that it stays NaN.
    if x > 0.0 || x.is_nan() {
        x
    } else {
        alpha * m1
    }
}

/// `e^y` for `0 ≤ y ≤ 40`: `y = n·ln 2 + r` with |r| ≤ ln 2 / 2 (Cody–Waite
/// split of ln 2), the degree-7 Taylor polynomial of `e^r` (error < 6e-9
/// relative), scaled by `2^n` built from its exponent bits.
#[inline(always)]
fn exp_positive(y: f32) -> f32 {
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    // Adding 1.5·2²³ rounds y/ln 2 (< 2²²) to the nearest integer, which
    // then sits in the low mantissa bits: no float→int conversion, whose
    // saturating `as` keeps the loop from vectorising.
    const SHIFTER: f32 = 12_582_912.0;
    let t = y * std::f32::consts::LOG2_E + SHIFTER;
    let nf = t - SHIFTER;
    let n = t.to_bits().wrapping_sub(SHIFTER.to_bits());
    let r = (y - nf * LN2_HI) - nf * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (1.0 / 2.0
                + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0 + r * (1.0 / 5040.0)))))));
    let scale = f32::from_bits((n + 127) << 23);
    p * scale
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::simd::Portable;
    #[cfg(target_arch = "x86_64")]
    use std::arch::x86_64::{__m256, __m512};

    #[test]
    fn elu_fast_is_within_a_few_ulp_of_the_f64_formula() {
        let mut worst = 0.0f64;
        let mut x = -60.0f32;
        while x <= 5.0 {
            let exact = if x > 0.0 { x as f64 } else { 1.5 * (x as f64).exp_m1() };
            let err = (elu_fast(x, 1.5) as f64 - exact).abs() / exact.abs().max(1e-30);
            worst = worst.max(err);
            x += 1.0 / 1024.0 + x.abs() * 1e-4;
        }
        assert!(worst < 4.0 * f64::from(f32::EPSILON), "worst relative error {worst:e}");
        assert_eq!(elu_fast(0.0, 1.0), 0.0);
        assert_eq!(elu_fast(-1e-30, 1.0), -1e-30);
        assert_eq!(elu_fast(-200.0, 2.0), -2.0);
        assert!(elu_fast(f32::NAN, 1.0).is_nan());
    }

    #[test]
    fn tanh_fast_is_within_a_few_ulp_of_libm() {
        let mut worst = 0.0f64;
        let mut x = -25.0f32;
        while x <= 25.0 {
            let exact = (x as f64).tanh();
            assert!(tanh_fast(x).abs() <= 1.0, "|tanh({x})| > 1");
            let err = (tanh_fast(x) as f64 - exact).abs() / exact.abs().max(1e-30);
            worst = worst.max(err);
            x += 1.0 / 1024.0 + x.abs() * 1e-4;
        }
        // Also the smallest inputs, where tanh(x) = x, and the saturated and undefined ones.
        assert!((tanh_fast(1e-30) - 1e-30).abs() <= 1e-30 * f32::EPSILON);
        assert_eq!(tanh_fast(0.0), 0.0);
        assert_eq!(tanh_fast(-100.0), -1.0);
        assert_eq!(tanh_fast(f32::INFINITY), 1.0);
        assert!(tanh_fast(f32::NAN).is_nan());
        assert!(worst < 4.0 * f32::EPSILON as f64, "worst relative error {worst}");
    }

    #[test]
    fn tanh_slice_is_within_a_few_ulp_of_libm() {
        // Every lane position and a ragged tail, on this CPU's path.
        let mut xs: Vec<f32> = (0..50_001).map(|i| -25.0 + i as f32 * 1e-3).collect();
        xs.extend([7.905_311, 7.905_312, -7.905_311, 8.0, 1e-30, -1e-30, 0.0, f32::INFINITY]);
        let mut ys = xs.clone();
        tanh_slice(&mut ys, Level::detect());
        let mut worst = 0.0f64;
        for (&x, &y) in xs.iter().zip(&ys) {
            let exact = (x as f64).tanh();
            assert!(y.abs() <= 1.0, "|tanh({x})| = {y} > 1");
            worst = worst.max((y as f64 - exact).abs() / exact.abs().max(1e-30));
        }
        assert!(worst < 4.0 * f32::EPSILON as f64, "worst relative error {worst}");
        let mut nan = [1.0, f32::NAN, -1.0];
        tanh_slice(&mut nan, Level::detect());
        assert!(nan[1].is_nan() && nan[0] > 0.76 && nan[2] < -0.76, "{nan:?}");
    }

    #[test]
    fn row_and_channel_forms_agree() {
        let bias = [0.5, -1.0, 2.0];
        let scale = [2.0, 3.0, -1.0];
        let shift = [0.1, 0.2, 0.3];
        let slopes = [0.1, 0.2, 0.3];
        let steps = [
            EpilogueStep::Affine {
                scale: &scale,
                shift: &shift,
            },
            EpilogueStep::Act(Activation::Prelu { slopes: &slopes }),
        ];
        let epilogue = Epilogue {
            bias: Some(&bias),
            steps: &steps,
            residual: None,
        };
        assert!(epilogue.fits(3) && !epilogue.fits(4));
        let mut row = [-1.0f32, -0.5, 0.25];
        epilogue.apply_row(&mut row, 0);
        for (c, &v) in [-1.0f32, -0.5, 0.25].iter().enumerate() {
            let mut run = [v; 2];
            epilogue.apply_channel(&mut run, c);
            assert_eq!(run, [row[c]; 2]);
        }
        // channel 1: (−0.5 − 1)·3 + 0.2 = −4.3, PReLU slope 0.2 → −0.86
        assert!((row[1] + 0.86).abs() < 1e-6, "{row:?}");
    }

    /// The register form of the common epilogues gives the slice form's
    /// bits (ReLU's NaN and −0, the leaky slope on NaN, the unfused
    /// multiply-add), and is offered only for those epilogues.
    #[test]
    fn channel_steps_agree_with_the_slice_form() {
        let (bias, scale, shift, slopes) = ([0.5f32, -1.0], [2.0f32, -3.0], [0.1f32, 0.2], [0.1f32, 0.2]);
        let affine = EpilogueStep::Affine {
            scale: &scale,
            shift: &shift,
        };
        let acts = [
            Activation::Identity,
            Activation::Relu,
            Activation::LeakyRelu { alpha: 0.01 },
            Activation::Prelu { slopes: &slopes },
            Activation::Prelu { slopes: &slopes[..1] },
        ];
        let mut forms: Vec<Vec<EpilogueStep>> = vec![vec![], vec![affine]];
        for act in acts {
            forms.push(vec![EpilogueStep::Act(act)]);
            forms.push(vec![affine, EpilogueStep::Act(act)]);
        }
        let values: Vec<f32> = [
            -0.0,
            0.0,
            f32::NAN,
            -f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            -0.5,
            0.25,
            -1e-40,
            1e30,
            -0.1,
            0.3,
            -7.0,
            3.0,
            1.5,
            -2.5,
        ]
        .to_vec();
        for steps in &forms {
            for bias in [None, Some(&bias[..])] {
                let epilogue = Epilogue {
                    bias,
                    steps,
                    residual: None,
                };
                for channel in 0..2 {
                    let Some(fast) = epilogue.channel_form().map(|form| form.at(channel)) else {
                        panic!("{steps:?} has the common form")
                    };
                    let mut want = values.clone();
                    epilogue.apply_channel(&mut want, channel);
                    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                    // Every vector width this CPU runs, 8 lanes at a time.
                    let mut got = values.clone();
                    for chunk in got.chunks_exact_mut(8) {
                        // SAFETY: plain Rust lanes.
                        unsafe { fast.apply(Portable::load(chunk.as_ptr())).store(chunk.as_mut_ptr()) };
                    }
                    assert_eq!(bits(&got), bits(&want), "portable {steps:?} {bias:?} channel {channel}");
                    #[cfg(target_arch = "x86_64")]
                    if matches!(Level::detect(), Level::Avx2 | Level::Avx512) {
                        let mut got = values.clone();
                        for chunk in got.chunks_exact_mut(8) {
                            // SAFETY: the CPU has AVX2.
                            unsafe { fast.apply(__m256::load(chunk.as_ptr())).store(chunk.as_mut_ptr()) };
                        }
                        assert_eq!(bits(&got), bits(&want), "avx2 {steps:?} {bias:?} channel {channel}");
                    }
                    #[cfg(target_arch = "x86_64")]
                    if Level::detect() == Level::Avx512 {
                        let mut got = values.clone();
                        // SAFETY: the CPU has AVX-512.
                        unsafe { fast.apply(__m512::load(values.as_ptr())).store(got.as_mut_ptr()) };
                        assert_eq!(bits(&got), bits(&want), "avx512 {steps:?} {bias:?} channel {channel}");
                    }
                }
            }
        }
        // Not the common form: an activation that is not a rectifier, a
        // step after the activation, two batch norms.
        let tanh = [EpilogueStep::Act(Activation::Tanh)];
        let after = [EpilogueStep::Act(Activation::Relu), affine];
        let twice = [affine, affine];
        for steps in [&tanh[..], &after, &twice] {
            assert_eq!(
                Epilogue {
                    bias: None,
                    steps,
                    residual: None
                }
                .channel_form(),
                None,
                "{steps:?}"
            );
        }
    }
}
