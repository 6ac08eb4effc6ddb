//! The interpreter's numbers. The optimized and unoptimized inference
//! functions must agree (that is what proves batch-norm folding and fusion
//! right); the training forward pass must show batch statistics, the
//! momentum rule, dropout rates and RReLU ranges that PyTorch documents.

mod common;

use common::{input, models, module, weights};
use nnc_driver::Stage;
use nnc_interp::Interpreter;
use nnc_ir::Mode;
use nnc_runtime::io::weights::Weights;

#[test]
fn optimized_and_unoptimized_inference_agree_on_every_model() {
    for (name, text) in models() {
        let w = weights(&text, 3);
        let mut optimized = Interpreter::new(&module(&text, Mode::Infer, Stage::Optimized), Mode::Infer, &w).unwrap();
        let mut lowered = Interpreter::new(&module(&text, Mode::Infer, Stage::Lowered), Mode::Infer, &w).unwrap();
        for batch in [1, 7] {
            let x = input(optimized.input_shape().iter().product(), batch, 11);
            let a = optimized.run(&x, batch, 1, 0).unwrap();
            let b = lowered.run(&x, batch, 2, 0).unwrap();
            let scale = b.iter().fold(1f32, |m, v| m.max(v.abs()));
            let diff = a.iter().zip(&b).fold(0f32, |m, (p, q)| m.max((p - q).abs()));
            assert!(a.iter().all(|v| v.is_finite()), "{name}: non-finite output");
            assert!(
                diff <= 1e-5 * scale,
                "{name} batch {batch}: optimized and lowered differ by {diff} (scale {scale})"
            );
        }
    }
}

#[test]
fn threads_do_not_change_the_answer() {
    // Parts split output features (dense) or samples (conv); every output
    // is the same sum whoever computes it.
    for (name, text) in models() {
        let w = weights(&text, 5);
        let module = module(&text, Mode::Infer, Stage::Optimized);
        let mut it = Interpreter::new(&module, Mode::Infer, &w).unwrap();
        let per_sample: usize = it.input_shape().iter().product();
        for batch in [1, 9, 40] {
            let x = input(per_sample, batch, 1);
            let one = it.run(&x, batch, 1, 0).unwrap();
            for threads in [2, 3] {
                let many = it.run(&x, batch, threads, 0).unwrap();
                let diff = one.iter().zip(&many).fold(0f32, |m, (p, q)| m.max((p - q).abs()));
                assert!(
                    diff <= 1e-6,
                    "{name}: batch {batch}: 1 vs {threads} threads differ by {diff}"
                );
            }
        }
    }
}

#[test]
fn batch_norm_in_training_uses_batch_statistics_and_the_momentum_rule() {
    let text = "model B { input 16 dense 16 -> 8 norm=batch(momentum=0.1) }";
    let w = weights(text, 1);
    let m = module(text, Mode::Train, Stage::Lowered);
    let mut it = Interpreter::new(&m, Mode::Train, &w).unwrap();
    let batch = 64;
    let x = input(16, batch, 2);
    let y = it.run(&x, batch, 1, 0).unwrap();
    // The linear part by hand, in f64.
    let (wt, b) = (&w.tensors["layer0.weight"].data, &w.tensors["layer0.bias"].data);
    let (gamma, beta) = (
        &w.tensors["layer0.norm.weight"].data,
        &w.tensors["layer0.norm.bias"].data,
    );
    let (mean0, var0) = (
        &w.tensors["layer0.norm.running_mean"].data,
        &w.tensors["layer0.norm.running_var"].data,
    );
    for o in 0..8 {
        let z: Vec<f64> = (0..batch)
            .map(|n| {
                f64::from(b[o])
                    + (0..16)
                        .map(|i| f64::from(wt[o * 16 + i]) * f64::from(x[n * 16 + i]))
                        .sum::<f64>()
            })
            .collect();
        let mean = z.iter().sum::<f64>() / batch as f64;
        let biased = z.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / batch as f64;
        let unbiased = biased * batch as f64 / (batch as f64 - 1.0);
        // Normalised with the biased variance, then γ, β.
        let out: Vec<f64> = (0..batch).map(|n| f64::from(y[n * 8 + o])).collect();
        let out_mean = out.iter().sum::<f64>() / batch as f64;
        let out_var = out.iter().map(|v| (v - out_mean).powi(2)).sum::<f64>() / batch as f64;
        assert!(
            (out_mean - f64::from(beta[o])).abs() < 1e-4,
            "channel {o}: mean {out_mean} vs β {}",
            beta[o]
        );
        let expected_var = f64::from(gamma[o]).powi(2) * biased / (biased + 1e-5);
        assert!(
            (out_var - expected_var).abs() < 1e-3 * expected_var.max(1.0),
            "channel {o}: var {out_var}"
        );
        // PyTorch: running = (1 − m)·running + m·batch, with the unbiased variance.
        let rm = 0.9 * f64::from(mean0[o]) + 0.1 * mean;
        let rv = 0.9 * f64::from(var0[o]) + 0.1 * unbiased;
        let got = (
            it.param("layer0.norm.running_mean").unwrap()[o],
            it.param("layer0.norm.running_var").unwrap()[o],
        );
        assert!(
            (f64::from(got.0) - rm).abs() < 1e-5 * rm.abs().max(1.0),
            "running mean {o}: {} vs {rm}",
            got.0
        );
        assert!(
            (f64::from(got.1) - rv).abs() < 1e-5 * rv.abs().max(1.0),
            "running var {o}: {} vs {rv}",
            got.1
        );
    }
}

#[test]
fn dropout_in_training_keeps_one_minus_p_and_preserves_the_mean() {
    let text = "model D { input 1000 dropout 0.3 }";
    let mut it = Interpreter::new(
        &module(text, Mode::Train, Stage::Lowered),
        Mode::Train,
        &Weights::default(),
    )
    .unwrap();
    let x = vec![2.0f32; 100_000];
    let y = it.run(&x, 100, 1, 42).unwrap();
    let kept = y.iter().filter(|v| **v != 0.0).count() as f64 / y.len() as f64;
    // 3σ of a binomial proportion over 100k draws is about 0.0044.
    assert!((kept - 0.7).abs() < 0.005, "kept {kept}");
    assert!(
        y.iter().all(|v| *v == 0.0 || (v - 2.0 / 0.7).abs() < 1e-5),
        "kept values are scaled by 1/(1-p)"
    );
    let mean = y.iter().map(|v| f64::from(*v)).sum::<f64>() / y.len() as f64;
    assert!((mean - 2.0).abs() < 0.02, "mean {mean}");
    // Same seed, same mask; another seed, another.
    assert_eq!(it.run(&x, 100, 1, 42).unwrap(), y);
    assert_ne!(it.run(&x, 100, 1, 43).unwrap(), y);
    // Inference is the identity.
    let mut infer = Interpreter::new(
        &module(text, Mode::Infer, Stage::Lowered),
        Mode::Infer,
        &Weights::default(),
    )
    .unwrap();
    assert_eq!(infer.run(&x, 100, 1, 42).unwrap(), x);
}

#[test]
fn rrelu_slopes_lie_between_lower_and_upper_in_training_and_are_the_mean_in_inference() {
    let text = "model R { input 1000 act rrelu(0.1, 0.3) }";
    let x = vec![-1.0f32; 1000];
    let mut train = Interpreter::new(
        &module(text, Mode::Train, Stage::Lowered),
        Mode::Train,
        &Weights::default(),
    )
    .unwrap();
    let y = train.run(&x, 1, 1, 3).unwrap();
    assert!(y.iter().all(|v| (-0.3..=-0.1).contains(v)), "slopes outside [0.1, 0.3]");
    let spread = y.iter().fold(0f32, |m, v| m.max(*v)) - y.iter().fold(0f32, |m, v| m.min(*v));
    assert!(spread > 0.15, "slopes barely vary: {spread}");
    let mut infer = Interpreter::new(
        &module(text, Mode::Infer, Stage::Optimized),
        Mode::Infer,
        &Weights::default(),
    )
    .unwrap();
    assert!(infer.run(&x, 1, 1, 3).unwrap().iter().all(|v| (v + 0.2).abs() < 1e-6));
}

/// A conv layer from the definition, in f64 (PyTorch's `conv2d`): output
/// `(o, r, q)` sums `x[c, r·s + i·d − top, q·s + j·d − left] · w[o, c, i, j]`
/// over the group's channels and the taps inside the map, plus `b[o]`.
struct DirectConv {
    input: [usize; 3],
    out_channels: usize,
    kernel: usize,
    stride: usize,
    dilation: usize,
    groups: usize,
    /// top, left, bottom, right
    pads: [usize; 4],
}

impl DirectConv {
    /// `⌊(size + pads − span) / stride⌋ + 1`, or 0 when the window does not fit.
    fn out_len(size: usize, before: usize, after: usize, span: usize, stride: usize) -> usize {
        (size + before + after)
            .checked_sub(span)
            .map_or(0, |room| room / stride + 1)
    }

    fn out_shape(&self) -> [usize; 3] {
        let span = self.dilation * (self.kernel - 1) + 1;
        let [_, h, w] = self.input;
        let [top, left, bottom, right] = self.pads;
        [
            self.out_channels,
            Self::out_len(h, top, bottom, span, self.stride),
            Self::out_len(w, left, right, span, self.stride),
        ]
    }

    fn run(&self, x: &[f32], batch: usize, w: &[f32], b: Option<&[f32]>) -> Vec<f64> {
        let [c, h, wd] = self.input;
        let [o, oh, ow] = self.out_shape();
        let (k, cg, og) = (self.kernel, c / self.groups, o / self.groups);
        let mut y = Vec::with_capacity(batch * o * oh * ow);
        for n in 0..batch {
            for oc in 0..o {
                for r in 0..oh {
                    for q in 0..ow {
                        let mut sum = b.map_or(0.0, |b| f64::from(b[oc]));
                        for ci in 0..cg {
                            let ic = oc / og * cg + ci;
                            for i in 0..k {
                                for j in 0..k {
                                    let row = (r * self.stride + i * self.dilation) as isize - self.pads[0] as isize;
                                    let col = (q * self.stride + j * self.dilation) as isize - self.pads[1] as isize;
                                    if (0..h as isize).contains(&row) && (0..wd as isize).contains(&col) {
                                        let xv = x[((n * c + ic) * h + row as usize) * wd + col as usize];
                                        sum += f64::from(xv) * f64::from(w[((oc * cg + ci) * k + i) * k + j]);
                                    }
                                }
                            }
                        }
                        y.push(sum);
                    }
                }
            }
        }
        y
    }
}

/// `pad=same` as ONNX's SAME_UPPER: ⌈size/stride⌉ outputs, the odd pixel
/// of padding after.
fn same_pads(size: usize, span: usize, stride: usize) -> (usize, usize) {
    let total = ((size.div_ceil(stride) - 1) * stride + span).saturating_sub(size);
    (total / 2, total - total / 2)
}

/// One conv program through `check` and the interpreter; `None` when
/// `check` refuses it (the window does not fit), else the largest error
/// against [`DirectConv`].
fn conv_through_the_interpreter(conv: &DirectConv, pad: &str, seed: u64) -> Option<f64> {
    let [c, h, w] = conv.input;
    let text = format!(
        "model C {{ input [{c}, {h}, {w}] conv {c} -> {} k={} stride={} dilation={} groups={} pad={pad} }}",
        conv.out_channels, conv.kernel, conv.stride, conv.dilation, conv.groups
    );
    let source = nnc_diag::SourceFile::new("t.nn", text.as_str());
    let options = nnc_driver::Options {
        modes: vec![Mode::Infer],
        stage: Stage::Optimized,
        passes: None,
        loss: None,
    };
    let m = nnc_driver::compile(&source, &options, &mut nnc_driver::Quiet)
        .ok()?
        .module?;
    let params = weights(&text, seed);
    let mut it = Interpreter::new(&m, Mode::Infer, &params).unwrap();
    assert_eq!(it.output_shape(), conv.out_shape(), "{text}");
    let batch = 2;
    let x = input(c * h * w, batch, seed);
    let bias = params.tensors.get("layer0.bias").map(|t| t.data.as_slice());
    let want = conv.run(&x, batch, &params.tensors["layer0.weight"].data, bias);
    let mut worst = 0f64;
    for threads in [1, 2] {
        let got = it.run(&x, batch, threads, 0).unwrap();
        assert_eq!(got.len(), want.len(), "{text}");
        for (g, e) in got.iter().zip(&want) {
            worst = worst.max((f64::from(*g) - e).abs() / e.abs().max(1.0));
        }
    }
    assert!(worst <= 1e-5, "{text}: off by {worst}");
    Some(worst)
}

/// Issue 11: a conv whose padding reaches past the map, so that some taps
/// read only padding, panicked. Every small geometry `check` accepts,
/// through the interpreter, against the definition.
#[test]
fn every_small_conv_geometry_matches_the_definition_in_the_interpreter() {
    let mut checked = 0;
    for (h, w) in (1..=6).flat_map(|h| (1..=6).map(move |w| (h, w))) {
        for (kernel, stride, dilation) in
            (1..=5).flat_map(|k| (1..=3).flat_map(move |s| (1..=3).map(move |d| (k, s, d))))
        {
            let span = dilation * (kernel - 1) + 1;
            let (top, bottom) = same_pads(h, span, stride);
            let (left, right) = same_pads(w, span, stride);
            let pads = (0..=4)
                .map(|p| (p.to_string(), [p; 4]))
                .chain([("same".to_string(), [top, left, bottom, right])]);
            for (pad, pads) in pads {
                for groups in [1, 2] {
                    let conv = DirectConv {
                        input: [2, h, w],
                        out_channels: 2,
                        kernel,
                        stride,
                        dilation,
                        groups,
                        pads,
                    };
                    let fits = conv.out_shape()[1] > 0 && conv.out_shape()[2] > 0;
                    let result = conv_through_the_interpreter(&conv, &pad, checked as u64);
                    assert_eq!(
                        result.is_some(),
                        fits,
                        "check and the definition disagree on {pad} {:?}",
                        conv.input
                    );
                    checked += usize::from(fits);
                }
            }
        }
    }
    assert!(checked > 10_000, "{checked}");
}

/// The place of the NaN in the NaN tests: sample 1 of 2, and in an image
/// `[4, 3, 3]` channel 1, row 1, column 2 (index 14 of the sample).
const NAN_SAMPLE: usize = 1;
const NAN_AT: usize = 14;

/// Whether output `(c, r, q)` of a `[C, 3, 3]` map depends on input pixel
/// (row 1, column 2) through a `k`×`k`, stride-1 window padded by `k / 2`.
fn window_covers(r: usize, q: usize, k: usize) -> bool {
    let reach = k / 2;
    r.abs_diff(1) <= reach && q.abs_diff(2) <= reach
}

/// Whether output `(sample, c, r, q)` depends on the NaN input.
type Depends = fn(usize, usize, usize, usize) -> bool;

/// Runs `text` on two samples with one NaN input, and checks that exactly
/// the outputs `depends(sample, c, r, q)` marks are NaN (an output of
/// shape `[C]` or `[F]` has r = q = 0).
fn nan_reaches_exactly(text: &str, mode: Mode, nan_at: usize, depends: impl Fn(usize, usize, usize, usize) -> bool) {
    let stages: &[Stage] = if mode == Mode::Infer {
        &[Stage::Lowered, Stage::Optimized]
    } else {
        &[Stage::Lowered]
    };
    for &stage in stages {
        let w = weights(text, 2);
        let mut it = Interpreter::new(&module(text, mode, stage), mode, &w).unwrap();
        let per_sample: usize = it.input_shape().iter().product();
        let mut x = input(per_sample, 2, 4);
        x[NAN_SAMPLE * per_sample + nan_at] = f32::NAN;
        let shape = it.output_shape().to_vec();
        let (h, w) = match shape[..] {
            [_, h, w] => (h, w),
            _ => (1, 1),
        };
        let per_out: usize = shape.iter().product();
        for threads in [1, 2] {
            let y = it.run(&x, 2, threads, 0).unwrap();
            for (i, v) in y.iter().enumerate() {
                let (n, rest) = (i / per_out, i % per_out);
                let (c, r, q) = (rest / (h * w), rest / w % h, rest % w);
                let want = depends(n, c, r, q);
                assert_eq!(
                    v.is_nan(),
                    want,
                    "{text} ({stage:?}): output {n}/{c}/{r}/{q} is {v}, NaN expected: {want}"
                );
                assert!(v.is_nan() || v.is_finite(), "{text}: {v}");
            }
        }
    }
}

/// Issue 11: ReLU of NaN gave 0, maxout dropped a NaN piece. A NaN must
/// reach exactly the outputs that depend on it (as in PyTorch), through
/// every activation, pool and norm, standalone and fused into the
/// epilogue of a dense or conv layer.
#[test]
fn a_nan_input_reaches_exactly_the_outputs_that_depend_on_it() {
    let image = "input [4, 3, 3]";
    let same_pixel = |n: usize, c: usize, r: usize, q: usize| n == NAN_SAMPLE && (c, r, q) == (1, 1, 2);
    let elementwise = [
        "sigmoid",
        "tanh",
        "relu",
        "leaky_relu(0.1)",
        "prelu",
        "rrelu(0.1, 0.3)",
        "elu",
        "selu",
        "softplus",
        "gelu",
        "silu",
    ];
    for act in elementwise {
        nan_reaches_exactly(
            &format!("model A {{ {image} act {act} }}"),
            Mode::Infer,
            NAN_AT,
            same_pixel,
        );
        // Fused: a dense layer's every output depends on every input.
        let dense = format!("model D {{ input 8 dense 8 -> 5 act={act} }}");
        nan_reaches_exactly(&dense, Mode::Infer, 5, |n, _, _, _| n == NAN_SAMPLE);
        // Fused into a conv, with a batch norm folded in: the NaN's 3×3 neighbourhood.
        let conv = format!("model C {{ {image} conv 4 -> 2 k=3 pad=1 act={act} norm=batch }}");
        nan_reaches_exactly(&conv, Mode::Infer, NAN_AT, |n, _, r, q| {
            n == NAN_SAMPLE && window_covers(r, q, 3)
        });
    }
    nan_reaches_exactly(
        &format!("model B {{ {image} norm batch }}"),
        Mode::Infer,
        NAN_AT,
        same_pixel,
    );
    let cases: [(&str, Depends); 9] = [
        ("maxpool k=3 stride=1 pad=1", |n, c, r, q| {
            n == NAN_SAMPLE && c == 1 && window_covers(r, q, 3)
        }),
        ("avgpool k=3 stride=1 pad=1", |n, c, r, q| {
            n == NAN_SAMPLE && c == 1 && window_covers(r, q, 3)
        }),
        ("maxpool k=2", |n, c, r, q| {
            n == NAN_SAMPLE && c == 1 && (r, q) == (0, 1)
        }),
        ("globalavgpool", |n, c, _, _| n == NAN_SAMPLE && c == 1),
        ("act softmax", |n, _, r, q| n == NAN_SAMPLE && (r, q) == (1, 2)),
        ("act maxout(2)", |n, c, r, q| {
            n == NAN_SAMPLE && c == 0 && (r, q) == (1, 2)
        }),
        ("norm layer", |n, _, _, _| n == NAN_SAMPLE),
        ("norm instance", |n, c, _, _| n == NAN_SAMPLE && c == 1),
        ("norm group(groups=2)", |n, c, _, _| n == NAN_SAMPLE && c < 2),
    ];
    for (op, depends) in cases {
        nan_reaches_exactly(&format!("model P {{ {image} {op} }}"), Mode::Infer, NAN_AT, depends);
    }
    // LRN sums the squares of the neighbouring channels at the same pixel.
    let lrn = format!("model L {{ {image} norm lrn(size=3) }}");
    nan_reaches_exactly(&lrn, Mode::Infer, NAN_AT, |n, c, r, q| {
        n == NAN_SAMPLE && c <= 2 && (r, q) == (1, 2)
    });
    // Training batch norm: the channel's batch statistics, over both samples.
    let train = format!("model T {{ {image} norm batch }}");
    nan_reaches_exactly(&train, Mode::Train, NAN_AT, |_, c, _, _| c == 1);
    // Maxout after a dense layer: every piece depends on every input.
    nan_reaches_exactly(
        "model M { input 8 dense 8 -> 3 act=maxout(2) }",
        Mode::Infer,
        5,
        |n, _, _, _| n == NAN_SAMPLE,
    );
}

/// Pooling windows from the definition over every small geometry `check`
/// accepts, through the interpreter: max (padding is −∞) and average
/// (padding not counted, ONNX `count_include_pad=0`).
#[test]
fn every_small_pool_geometry_matches_the_definition_in_the_interpreter() {
    let mut checked = 0;
    for (h, w) in (1..=6).flat_map(|h| (1..=6).map(move |w| (h, w))) {
        for (k, s) in (1..=5).flat_map(|k| (1..=3).map(move |s| (k, s))) {
            for p in 0..=k / 2 {
                if h + 2 * p < k || w + 2 * p < k {
                    continue;
                }
                let out = |size: usize| (size + 2 * p - k) / s + 1;
                let x = input(2 * h * w, 2, checked);
                for max in [true, false] {
                    let op = if max { "maxpool" } else { "avgpool" };
                    let text = format!("model P {{ input [2, {h}, {w}] {op} k={k} stride={s} pad={p} }}");
                    let mut it = Interpreter::new(
                        &module(&text, Mode::Infer, Stage::Optimized),
                        Mode::Infer,
                        &Weights::default(),
                    )
                    .unwrap();
                    assert_eq!(it.output_shape(), [2, out(h), out(w)], "{text}");
                    let y = it.run(&x, 2, 1, 0).unwrap();
                    let mut at = 0;
                    for plane in x.chunks(h * w) {
                        for oy in 0..out(h) {
                            for ox in 0..out(w) {
                                let window: Vec<f64> = (oy * s..oy * s + k)
                                    .flat_map(|iy| (ox * s..ox * s + k).map(move |ix| (iy, ix)))
                                    .filter(|&(iy, ix)| (p..h + p).contains(&iy) && (p..w + p).contains(&ix))
                                    .map(|(iy, ix)| f64::from(plane[(iy - p) * w + ix - p]))
                                    .collect();
                                let want = if max {
                                    window.iter().cloned().fold(f64::NEG_INFINITY, f64::max)
                                } else {
                                    window.iter().sum::<f64>() / window.len() as f64
                                };
                                let got = f64::from(y[at]);
                                assert!(
                                    (got - want).abs() <= 1e-6 * want.abs().max(1.0),
                                    "{text}: output {at}: {got} vs {want}"
                                );
                                at += 1;
                            }
                        }
                    }
                }
                checked += 1;
            }
        }
    }
    assert!(checked > 500, "{checked}");
}
