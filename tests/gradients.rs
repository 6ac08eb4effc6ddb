//! Gradients against float64 finite differences.
//!
//! The truth is a central difference of the loss computed by the f64
//! reference forward pass (`common/reference.rs`, written from the op
//! definitions, not from the kernels) with the random draws (dropout masks,
//! RReLU slopes) the f32 forward recorded. The f32 forward + backward of
//! `nnc_interp::Gradients` is checked against it: every parameter element
//! for one small program per op, and directional derivatives along random
//! directions for every bundled model.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::reference::{evaluate_with, Tensor};
use nnc_diag::SourceFile;
use nnc_driver::{compile, Loss, Options, Quiet, Stage};
use nnc_interp::{Gradients, Targets};
use nnc_ir::grad::Target;
use nnc_ir::{Act, Mode, Module, Op};
use nnc_runtime::Rng;
use proptest::prelude::*;
use std::collections::BTreeMap;

/// The loss, the gradients by name, and the forward's draws by op index.
type Run = (f64, BTreeMap<String, Vec<f64>>, Vec<Option<Vec<f64>>>);

/// A model with its backward, weights, a batch and targets.
struct Case {
    name: String,
    module: Module,
    params: BTreeMap<String, Vec<f64>>,
    input: Vec<f32>,
    batch: usize,
    classes: Vec<u32>,
    values: Vec<f32>,
}

fn grad_module(text: &str, loss: Option<Loss>, passes: Option<Vec<String>>) -> Module {
    let options = Options {
        modes: vec![Mode::Train],
        stage: Stage::Grad,
        passes,
        loss,
    };
    let source = SourceFile::new("t.nn", text);
    match compile(&source, &options, &mut Quiet) {
        Ok(c) => c.module.unwrap(),
        Err(e) => panic!("{e}\n{text}"),
    }
}

impl Case {
    fn new(name: &str, text: &str, loss: Option<Loss>, batch: usize, seed: u64) -> Case {
        Case::with_passes(name, text, loss, None, batch, seed)
    }

    fn with_passes(
        name: &str,
        text: &str,
        loss: Option<Loss>,
        passes: Option<Vec<String>>,
        batch: usize,
        seed: u64,
    ) -> Case {
        let module = grad_module(text, loss, passes);
        let weights = common::weights(text, seed);
        let params = weights
            .tensors
            .iter()
            .map(|(k, t)| (k.clone(), t.data.iter().map(|v| f64::from(*v)).collect()))
            .collect();
        let train = module.function(Mode::Train).unwrap();
        let per_sample = train.value_type(train.input).numel();
        let out = train.value_type(train.output).numel();
        let input = common::input(per_sample, batch, seed);
        let mut rng = Rng::new(seed, 11);
        let classes = (0..batch).map(|_| rng.next_u32() % out as u32).collect();
        let backward = module.backward.as_ref().unwrap();
        let values = (0..batch * out)
            .map(|_| match backward.loss {
                Loss::Bce => rng.uniform(),
                _ => rng.normal() as f32,
            })
            .collect();
        Case {
            name: name.to_string(),
            module,
            params,
            input,
            batch,
            classes,
            values,
        }
    }

    fn targets(&self) -> Targets<'_> {
        match self.module.backward.as_ref().unwrap().target {
            Target::Classes { .. } => Targets::Classes(&self.classes),
            Target::Values(_) => Targets::Values(&self.values),
        }
    }

    /// The f32 forward + backward: the loss, the gradients by name, and
    /// what the forward drew (by op index).
    fn run(&self, threads: usize) -> Run {
        let weights = nnc_runtime::io::weights::Weights {
            tensors: self
                .params
                .iter()
                .map(|(k, v)| {
                    let tensor = nnc_runtime::io::weights::Tensor {
                        shape: vec![v.len()],
                        data: v.iter().map(|x| *x as f32).collect(),
                    };
                    (k.clone(), tensor)
                })
                .collect(),
        };
        let mut g = Gradients::new(&self.module, &weights).unwrap();
        let loss = g.run(&self.input, self.batch, self.targets(), threads, 5).unwrap();
        let grads = g
            .gradients()
            .into_iter()
            .map(|(n, v)| (n.to_string(), v.iter().map(|x| f64::from(*x)).collect()))
            .collect();
        let train = self.module.function(Mode::Train).unwrap();
        let records = (0..train.ops.len())
            .map(|i| {
                let draws = matches!(
                    train.ops[i].op,
                    Op::Dropout { .. }
                        | Op::AlphaDropout { .. }
                        | Op::DropBlock { .. }
                        | Op::Act(Act::Rrelu { .. })
                        | Op::Linear {
                            dropconnect: Some(_),
                            ..
                        }
                        | Op::Conv2d {
                            dropconnect: Some(_),
                            ..
                        }
                );
                g.record(i)
                    .filter(|_| draws)
                    .map(|r| r.iter().map(|v| f64::from(*v)).collect())
            })
            .collect();
        (loss, grads, records)
    }

    /// The loss in f64 at `params`, with the forward's draws.
    fn loss(&self, params: &BTreeMap<String, Vec<f64>>, records: &[Option<Vec<f64>>]) -> f64 {
        self.loss_and_amplification(params, records).0
    }

    /// The loss in f64, and how much the forward's normalisations amplify
    /// rounding (`reference::amplification`).
    fn loss_and_amplification(&self, params: &BTreeMap<String, Vec<f64>>, records: &[Option<Vec<f64>>]) -> (f64, f64) {
        let stored = |name: &str| params.get(name).unwrap_or_else(|| panic!("no `{name}`")).clone();
        let draws = |i: usize| records.get(i).cloned().flatten();
        let eval = evaluate_with(&self.module, Mode::Train, &stored, &self.input, self.batch, &draws);
        let amplification = eval.amplification;
        let backward = self.module.backward.as_ref().unwrap();
        let train = self.module.function(Mode::Train).unwrap();
        let last = train.ops.iter().find(|o| o.result == train.output).map(|o| &o.op);
        let y = &eval.output;
        let data = match backward.loss {
            Loss::CrossEntropy { label_smoothing } => {
                let eps = f64::from(label_smoothing);
                let (c, _) = y.channels_inner();
                let mut total = 0.0;
                // Log-probabilities of the logits: the softmax's argument
                // when the model ends with one (as nnc and PyTorch fuse
                // them: its output may round to 0), else the output.
                let logits = if matches!(last, Some(Op::Act(Act::Softmax))) {
                    &eval.logits
                } else {
                    y
                };
                for (row, &label) in logits.data.chunks(c).zip(&self.classes) {
                    let m = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                    let s: f64 = row.iter().map(|v| (v - m).exp()).sum();
                    let log_p: Vec<f64> = row.iter().map(|v| v - m - s.ln()).collect();
                    for (k, lp) in log_p.iter().enumerate() {
                        let t = if k == label as usize {
                            1.0 - eps + eps / c as f64
                        } else {
                            eps / c as f64
                        };
                        total -= t * lp;
                    }
                }
                total / self.batch as f64
            }
            Loss::Mse => mean(y, &self.values, |v, t| (v - t).powi(2)),
            // After a sigmoid, from its argument `z` (BCE with logits, as
            // nnc fuses them): a sigmoid of 40 is 1.0 in f64, whose log
            // the clamp below would flatten.
            Loss::Bce if matches!(last, Some(Op::Act(Act::Sigmoid))) => mean(&eval.logits, &self.values, |z, t| {
                z.max(0.0) - z * t + (-z.abs()).exp().ln_1p()
            }),
            Loss::Bce => mean(y, &self.values, |p, t| {
                -(t * p.ln().max(-100.0) + (1.0 - t) * (1.0 - p).ln().max(-100.0))
            }),
        };
        let penalties: f64 = self
            .module
            .params
            .iter()
            .filter(|p| p.l1 != 0.0 || p.l2 != 0.0)
            .map(|p| {
                let w = &params[&p.name];
                let (l1, l2) = (f64::from(p.l1), f64::from(p.l2));
                w.iter().map(|v| l1 * v.abs() + l2 * v * v).sum::<f64>()
            })
            .sum();
        (data + penalties, amplification)
    }
}

fn mean(y: &Tensor, t: &[f32], f: impl Fn(f64, f64) -> f64) -> f64 {
    let n = y.data.len() as f64;
    y.data.iter().zip(t).map(|(v, t)| f(*v, f64::from(*t))).sum::<f64>() / n
}

/// d(loss)/d(params) along `direction` by a central difference in f64.
fn directional(case: &Case, records: &[Option<Vec<f64>>], direction: &BTreeMap<String, Vec<f64>>, h: f64) -> f64 {
    let shifted = |sign: f64| {
        let mut p = case.params.clone();
        for (name, d) in direction {
            for (v, dv) in p.get_mut(name).unwrap().iter_mut().zip(d) {
                *v += sign * h * dv;
            }
        }
        case.loss(&p, records)
    };
    (shifted(1.0) - shifted(-1.0)) / (2.0 * h)
}

fn norm(v: &[f64]) -> f64 {
    v.iter().map(|x| x * x).sum::<f64>().sqrt()
}

/// Every element of every trained parameter against its central
/// difference, within `tol` of the gradient's norm (f32 kernels).
fn check_elementwise(case: &Case, tol: f64) {
    let (loss, grads, records) = case.run(1);
    let reference = case.loss(&case.params, &records);
    assert!(
        (loss - reference).abs() <= 1e-5 * reference.abs().max(1.0),
        "{}: loss {loss} vs f64 {reference}",
        case.name
    );
    assert!(!grads.is_empty(), "{}: nothing trained", case.name);
    for (name, g) in &grads {
        let scale = norm(g).max(1e-3);
        for i in 0..g.len() {
            let mut d = BTreeMap::new();
            let mut e = vec![0.0; g.len()];
            e[i] = 1.0;
            d.insert(name.clone(), e);
            let fd = directional(case, &records, &d, 1e-6);
            assert!(
                (g[i] - fd).abs() <= tol * scale,
                "{}: d loss / d {name}[{i}] = {} but the f64 finite difference is {fd} (|g| = {scale:e})",
                case.name,
                g[i]
            );
        }
    }
}

/// Small programs, each with the op under test between two layers that
/// have parameters, so both its input gradient and its parameters are
/// exercised.
fn op_programs() -> Vec<(String, String, Option<Loss>)> {
    let mut out = Vec::new();
    let mut dense = |name: &str, body: &str, loss: Option<Loss>| {
        let text = format!("model T {{\n  input 5\n  dense 5 -> 6\n{body}\n  dense 3\n}}\n");
        out.push((name.to_string(), text, loss));
    };
    for act in [
        "sigmoid",
        "tanh",
        "relu",
        "leaky_relu(alpha=0.1)",
        "leaky_relu(alpha=-0.2)",
        "prelu",
        "prelu(shared=true)",
        "rrelu",
        "elu(alpha=0.7)",
        "elu(alpha=-0.5)",
        "selu",
        "softplus(beta=2)",
        "gelu",
        "silu",
        "maxout(pieces=2)",
    ] {
        dense(act, &format!("  dense 6 -> 4 act={act}"), None);
    }
    dense("batch norm", "  dense 6 -> 4 norm=batch act=tanh", None);
    dense(
        "batch norm post",
        "  dense 6 -> 4 norm=batch norm_pos=post act=relu",
        None,
    );
    dense("layer norm", "  dense 6 -> 4\n  norm layer", None);
    dense("dropout", "  dense 6 -> 4 act=tanh dropout=0.4", None);
    dense("alpha dropout", "  dense 6 -> 4 act=selu dropout=alpha(0.3)", None);
    dense("dropconnect", "  dense 6 -> 4 dropout=dropconnect(0.4)", None);
    dense(
        "residual",
        "  dense 6 -> 4 act=tanh\n  residual { dense 4 act=elu }",
        None,
    );
    dense("penalties", "  dense 6 -> 4 act=tanh l1=0.01 l2=0.02", None);
    dense("no bias", "  dense 6 -> 4 bias=false act=silu", None);

    dense(
        "cross-entropy on logits",
        "  dense 6 -> 4 act=tanh",
        Some(Loss::CrossEntropy { label_smoothing: 0.0 }),
    );
    for (name, last, loss) in [
        ("cross-entropy", "softmax", None),
        (
            "label smoothing",
            "softmax",
            Some(Loss::CrossEntropy { label_smoothing: 0.1 }),
        ),
        ("bce with logits", "sigmoid", None),
    ] {
        let text = format!("model T {{\n  input 5\n  dense 5 -> 6 act=tanh\n  dense 6 -> 4 act={last}\n}}\n");
        out.push((name.to_string(), text, loss));
    }
    // Softmax is the last op; with mse it is not fused into the loss.
    out.push((
        "softmax".into(),
        "model T {\n  input 5\n  dense 5 -> 6 act=tanh\n  dense 6 -> 4 act=softmax\n}\n".into(),
        Some(Loss::Mse),
    ));
    out.push((
        "sigmoid + mse".into(),
        "model T {\n  input 5\n  dense 5 -> 6 act=tanh\n  dense 6 -> 4 act=sigmoid\n}\n".into(),
        Some(Loss::Mse),
    ));
    let mut image = |name: &str, body: &str| {
        let text =
            format!("model T {{\n  input [2, 6, 6]\n  conv 2 -> 4 k=3 pad=1\n{body}\n  flatten\n  dense 3\n}}\n");
        out.push((name.to_string(), text, None));
    };
    image("conv", "  conv 4 -> 4 k=3 stride=2 pad=1 act=tanh");
    image("conv dilated", "  conv 4 -> 2 k=3 dilation=2 pad=same");
    image("conv grouped", "  conv 4 -> 4 k=3 groups=2 pad=1 act=relu");
    image("depthwise", "  conv 4 -> 4 k=3 groups=4 pad=1 act=gelu");
    image("conv 1x1", "  conv 4 -> 3 k=1");
    image("conv dropconnect", "  conv 4 -> 4 k=3 pad=1 dropout=dropconnect(0.3)");
    image("maxpool", "  act tanh\n  maxpool k=2");
    image("maxpool padded", "  maxpool k=3 stride=2 pad=1");
    image("avgpool", "  avgpool k=3 stride=2 pad=1");
    image("batch norm 2d", "  norm batch\n  act relu");
    image("instance norm", "  norm instance");
    image("group norm", "  norm group(groups=2)");
    image("lrn", "  norm lrn(size=3, alpha=0.5)");
    image("prelu 2d", "  act prelu");
    image("dropblock", "  act tanh\n  dropout=dropblock(0.3, block=3)");
    image("maxout 2d", "  act maxout(pieces=2)");
    out.push((
        "globalavgpool".into(),
        "model T {\n  input [2, 5, 5]\n  conv 2 -> 4 k=3 act=tanh\n  globalavgpool\n  dense 3\n}\n".into(),
        None,
    ));
    out
}

#[test]
fn every_op_matches_float64_finite_differences() {
    for (i, (name, text, loss)) in op_programs().into_iter().enumerate() {
        let text = text.replace("  dropout=dropblock", "  conv 4 -> 4 k=1 dropout=dropblock");
        let case = Case::new(&name, &text, loss, 3, 100 + i as u64);
        check_elementwise(&case, 2e-3);
    }
}

/// Random directions over all trained parameters, and over each tensor
/// alone, for every bundled model.
#[test]
fn every_model_matches_float64_directional_derivatives() {
    for (file, text) in common::models() {
        let batch = std::env::var("NNC_BATCH").map_or(8, |b| b.parse().unwrap());
        let case = Case::new(&file, &text, None, batch, 7);
        let (loss, grads, records) = case.run(2);
        let reference = case.loss(&case.params, &records);
        assert!(
            (loss - reference).abs() <= 1e-4 * reference.abs().max(1.0),
            "{file}: loss {loss} vs f64 {reference}"
        );
        let mut rng = Rng::new(3, 3);
        let mut random = |names: &[&String]| -> BTreeMap<String, Vec<f64>> {
            names
                .iter()
                .map(|n| ((*n).clone(), (0..grads[*n].len()).map(|_| rng.normal()).collect()))
                .collect()
        };
        let all: Vec<&String> = grads.keys().collect();
        // Every tensor alone in small models; the first, the last and all
        // together in the large ones (each difference is two passes).
        let mut probes: Vec<Vec<&String>> = vec![all.clone()];
        if all.len() <= 12 || std::env::var("NNC_PROBE_ALL").is_ok() {
            probes.extend(all.iter().map(|n| vec![*n]));
        } else {
            probes.push(vec![all[0]]);
            probes.push(vec![all[all.len() - 1]]);
        }
        for names in probes {
            let d = random(&names);
            let analytic: f64 = d
                .iter()
                .map(|(n, dv)| grads[n].iter().zip(dv).map(|(g, v)| g * v).sum::<f64>())
                .sum();
            let scale: f64 = names
                .iter()
                .map(|n| norm(&grads[*n]).powi(2))
                .sum::<f64>()
                .sqrt()
                .max(1e-12);
            // A small step: with thousands of ReLU-family units, a larger one
            // moves some across their kink and bends the difference. But a
            // vanishing gradient (1e-7 at the first layer of the N(0, 0.01²)
            // tanh net) changes the loss by less than its rounding unless
            // the step is larger.
            let h = (1e-9 / scale).clamp(1e-7, 1e-2);
            let fd = directional(&case, &records, &d, h);
            if std::env::var("NNC_PROBE_ALL").is_ok() {
                eprintln!("{file} {names:?}: {analytic} vs {fd}");
                continue;
            }
            assert!(
                (analytic - fd).abs() <= 2e-3 * scale,
                "{file}: along {names:?}: backward {analytic}, f64 finite difference {fd} (|g| = {scale:e})"
            );
        }
    }
}

#[test]
fn threads_do_not_change_the_gradients() {
    for (file, text) in common::models() {
        let case = Case::new(&file, &text, None, 9, 1);
        let (l1, g1, _) = case.run(1);
        let (l2, g2, _) = case.run(2);
        assert!((l1 - l2).abs() <= 1e-6 * l1.abs().max(1.0), "{file}");
        for (name, a) in &g1 {
            let b = &g2[name];
            let scale = norm(a).max(1e-6);
            let diff = norm(&a.iter().zip(b).map(|(x, y)| x - y).collect::<Vec<_>>());
            assert!(
                diff <= 1e-4 * scale,
                "{file}: {name} differs with 2 threads ({diff:e} of {scale:e})"
            );
        }
    }
}

/// Dropout's gradient is zero where it dropped and scaled by 1/(1 − p)
/// where it kept: with one sample, the first layer's bias gradient is the
/// mask times what flows back from the second layer.
#[test]
fn dropout_gradients_follow_the_mask() {
    let text = "model T {\n  input 5\n  dense 5 -> 40 dropout=0.5\n  dense 40 -> 2\n}\n";
    let case = Case::new("dropout mask", text, None, 1, 3);
    let (_, grads, records) = case.run(1);
    let train = case.module.function(Mode::Train).unwrap();
    let at = train
        .ops
        .iter()
        .position(|o| matches!(o.op, Op::Dropout { .. }))
        .unwrap();
    let mask = records[at].as_ref().unwrap();
    // What reaches the dropout's output: W2ᵀ·dy, dy = 2(y − t)/2 for mse.
    let stored = |name: &str| case.params[name].clone();
    let y = evaluate_with(&case.module, Mode::Train, &stored, &case.input, 1, &|i| {
        records[i].clone()
    })
    .output;
    let dy: Vec<f64> = y
        .data
        .iter()
        .zip(&case.values)
        .map(|(v, t)| 2.0 * (v - f64::from(*t)) / 2.0)
        .collect();
    let w2 = &case.params["layer1.weight"];
    let (mut dropped, mut kept) = (0, 0);
    for j in 0..40 {
        let back: f64 = (0..2).map(|o| w2[o * 40 + j] * dy[o]).sum();
        let g = grads["layer0.bias"][j];
        if mask[j] == 0.0 {
            dropped += 1;
            assert_eq!(g, 0.0, "a dropped unit gets no gradient");
        } else {
            kept += 1;
            assert_eq!(mask[j], 2.0, "kept units are scaled by 1/(1 − p)");
            assert!(
                (g - 2.0 * back).abs() <= 1e-5 * back.abs().max(1e-3),
                "unit {j}: {g} vs {}",
                2.0 * back
            );
        }
    }
    assert!(dropped > 5 && kept > 5, "a mask of {dropped} dropped and {kept} kept");
}

/// Batch norm's input gradient sums to zero over the batch per channel:
/// seen as the gradient of the bias before it (kept here by running only
/// `dce`), which is therefore zero, the value `nnc grad` writes for a bias
/// the train pipeline removed.
#[test]
fn batch_norm_input_gradient_sums_to_zero() {
    let text = "model T {\n  input 5\n  dense 5 -> 6 norm=batch act=tanh\n  dense 6 -> 3\n}\n";
    let case = Case::with_passes("bn", text, None, Some(vec!["dce".into()]), 8, 2);
    let (_, grads, _) = case.run(1);
    let bias = &grads["layer0.bias"];
    let weight = norm(&grads["layer0.weight"]);
    for (c, g) in bias.iter().enumerate() {
        assert!(g.abs() <= 1e-6 * weight.max(1.0), "channel {c}: Σ dx = {g}");
    }
}

/// Softmax + cross-entropy gives `p − onehot`: every row sums to zero, so
/// the last bias's gradient does too.
#[test]
fn softmax_cross_entropy_rows_sum_to_zero() {
    let text = "model T {\n  input 5\n  dense 5 -> 6 act=relu\n  dense 6 -> 4 act=softmax\n}\n";
    let case = Case::new("ce", text, None, 6, 4);
    let (_, grads, _) = case.run(1);
    let bias = &grads["layer1.bias"];
    let sum: f64 = bias.iter().sum();
    assert!(sum.abs() <= 1e-6, "Σ_c d loss / d b_c = {sum}");
    assert!(norm(bias) > 1e-3, "a gradient to speak of");
}

/// Random valid programs (the generator of `tests/pipeline_props.rs`) and
/// random conv geometries: the backward runs without panicking, the loss is
/// the reference's, and the gradient along a random direction is the f64
/// finite difference's, within f32 rounding amplified by ill-conditioned
/// normalisations. Bounded by `PROPTEST_CASES` (CI: 256).
fn random_case(name: &str, text: &str, seed: u64) {
    // Cross-entropy (the default after a softmax) takes class scores; a
    // softmax over an image's channels is trained with mse here.
    let train = common::module(text, Mode::Train, Stage::Optimized);
    let f = train.function(Mode::Train).unwrap();
    let loss = (f.value_type(f.output).dims.len() > 1).then_some(Loss::Mse);
    let case = Case::new(name, text, loss, 3, seed);
    let (loss, grads, records) = case.run(2);
    let (reference, amplification) = case.loss_and_amplification(&case.params, &records);
    assert!(loss.is_finite(), "{text}: loss {loss}");
    let tolerance = 1e-4 * amplification;
    assert!(
        (loss - reference).abs() <= tolerance * reference.abs().max(1.0),
        "{text}: loss {loss} vs f64 {reference} (amplification {amplification:e})"
    );
    if grads.is_empty() {
        return;
    }
    let mut rng = Rng::new(seed, 5);
    let d: BTreeMap<String, Vec<f64>> = grads
        .iter()
        .map(|(n, g)| (n.clone(), (0..g.len()).map(|_| rng.normal()).collect()))
        .collect();
    let analytic: f64 = d
        .iter()
        .map(|(n, dv)| grads[n].iter().zip(dv).map(|(g, v)| g * v).sum::<f64>())
        .sum();
    let scale = grads.values().map(|g| norm(g).powi(2)).sum::<f64>().sqrt().max(1e-12);
    // A gradient that is zero in exact arithmetic (a softmax over equal
    // outputs: conv taps that only read padding) comes out as rounding of
    // the O(1) loss, ~1e-8 in f32; measured against its own size it would
    // fail at random (2e-8 against 5e-11). Below 1e-4, a size reached by
    // summing rounding over a few outputs, the gradient's size is rounding,
    // for the step as for the tolerance: a gradient of zero (every ReLU
    // input below zero) had been given the largest step, 1e-2, which
    // carried some of those inputs over the kink.
    let scale = scale.max(1e-4);
    let h = (1e-9 / scale).clamp(1e-7, 1e-2);
    let tolerance = 2e-3 * scale * amplification.max(1.0);
    // A kink (a ReLU's, a max's) within the step makes the difference
    // something else: one more try, a tenth of the step.
    let fd = directional(&case, &records, &d, h);
    let closer = || directional(&case, &records, &d, h / 10.0);
    let fd = match (analytic - fd).abs() <= tolerance {
        true => fd,
        false => closer(),
    };
    assert!(
        (analytic - fd).abs() <= tolerance,
        "{text}: backward {analytic}, f64 finite difference {fd} at a step of {:e} \
         (|g| = {scale:e}, amplification {amplification:e})",
        h / 10.0
    );
}

proptest! {
    #[test]
    fn random_programs_have_the_finite_difference_gradient(
        choices in prop::collection::vec(any::<u8>(), 0..96),
        seed in 0u64..1000,
    ) {
        let program = common::programs::build("Random", &choices);
        random_case("random", &program.text, seed);
    }

    #[test]
    fn random_conv_geometries_have_the_finite_difference_gradient(
        (groups, per_in, per_out) in (1usize..=3, 1usize..=2, 1usize..=2),
        (h, w) in (1usize..=6, 1usize..=6),
        (k, stride, dilation, pad) in (1u32..=5, 1u32..=3, 1u32..=2, 0u32..=5),
        seed in 0u64..1000,
    ) {
        let (c, out) = (groups * per_in, groups * per_out);
        // Enough padding for the window to fit the map.
        let span = (dilation * (k - 1) + 1) as usize;
        let pad = pad.max(span.saturating_sub(h.min(w)).div_ceil(2) as u32);
        let text = format!(
            "model G {{ input [{c}, {h}, {w}] conv {c} -> {out} k={k} stride={stride} pad={pad} \
             dilation={dilation} groups={groups} act=tanh flatten dense 2 }}"
        );
        random_case("conv", &text, seed);
    }
}

/// A conv whose taps read only padding feeds a softmax equal outputs: its
/// parameters' gradient is zero, computed as f32 rounding (it failed the
/// random-program property at random seeds).
#[test]
fn a_zero_gradient_is_rounding_not_a_failure() {
    let text = "model Degenerate { input [1, 1, 1] conv 1 -> 1 k=2 stride=3 pad=4 dilation=3 flatten act softmax }";
    for seed in 0..64 {
        random_case("degenerate", text, seed);
    }
}

/// A layer norm over a map that is mostly padding's zeros puts a lone
/// nonzero value at ~√n (here ~20 for 396 values); the residual and a sigmoid
/// after it saturate to 1.0 in f64. The loss's reference then takes the
/// logits (once its log was clamped there, a gradient of zero: found by the
/// random programs).
#[test]
fn a_saturated_sigmoid_has_the_gradient_of_its_logits() {
    let texts = [
        "model R { input [1, 3, 1] conv 1 -> 4 k=1 stride=1 pad=4 bias=false residual { act silu norm layer } flatten act sigmoid }",
        "model R { input [1, 7, 1] maxpool k=1 stride=3 pad=0 conv 1 -> 4 k=1 stride=2 pad=4 act=maxout(3) norm=batch norm_pos=post dropout=0 bias=false residual { residual { act silu norm layer } } flatten act sigmoid }",
    ];
    for text in texts {
        for seed in 0..20 {
            random_case("saturated", text, seed);
        }
    }
}
