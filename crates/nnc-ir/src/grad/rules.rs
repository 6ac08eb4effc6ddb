//! One gradient rule per op: what its vector–Jacobian product reads besides
//! the gradient of its result, what the op must record while it runs
//! forward, and which parameters get gradients. The arithmetic of each rule
//! is the runtime's backward kernel; this table is what the compiler needs
//! to know to plan it, and the `match` is exhaustive, so a new op does not
//! compile until it has a rule.

use crate::{Act, Op, ParamId};
use std::fmt;

/// A VJP's needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    /// Forward values and records it reads, besides the result's gradient.
    pub reads: Vec<Read>,
    /// What the op records on the side in training for its VJP.
    pub record: Option<Record>,
    /// Parameters it adds gradients to: weights, biases, norm affines,
    /// PReLU slopes (never running statistics).
    pub params: Vec<ParamId>,
    /// The gradient of every argument is the result's, unchanged (`add`):
    /// no step runs, the argument gradients are the result's value.
    pub passes_through: bool,
}

/// A forward quantity a VJP reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Read {
    /// The op's (first) argument.
    Input,
    /// The op's result: kept instead of the input where the derivative can
    /// be written in it (tanh: 1 − y², sigmoid: y(1 − y), ReLU: y > 0), so a
    /// layer's input and the previous activation's output are one saved
    /// value.
    Output,
    /// The op's [`Record`].
    Record,
}

/// What an op records while it runs forward in training.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Record {
    /// Per element of the input, the factor it was multiplied by (0 where
    /// dropped): dropout, alpha dropout, DropBlock.
    Mask,
    /// Per weight, the factor DropConnect multiplied it by.
    WeightMask,
    /// Per element, the slope RReLU drew.
    Slopes,
    /// The statistics a norm normalised with: mean and 1/√(var + eps) per
    /// channel (batch norm), per sample (layer norm), per sample and channel
    /// (instance norm), per sample and group (group norm).
    Stats,
    /// Per output element, which input element a max pool took.
    Argmax,
}

/// An op the backward cannot differentiate as it stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NoRule(pub String);

impl fmt::Display for NoRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NoRule {}

impl Record {
    pub fn name(self) -> &'static str {
        match self {
            Record::Mask => "mask",
            Record::WeightMask => "weight_mask",
            Record::Slopes => "slopes",
            Record::Stats => "stats",
            Record::Argmax => "argmax",
        }
    }
}

/// What op `op` of `func` records in training and how much of it:
/// `(record, per_sample, fixed)`, the record holding `per_sample · batch +
/// fixed` numbers (f32s; u32 indices for arg-maxes). `param_len` is a
/// parameter's number of elements.
pub fn record_size(
    func: &crate::Function,
    op: &crate::OpData,
    param_len: &dyn Fn(ParamId) -> usize,
) -> Option<(Record, usize, usize)> {
    let record = rule(&op.op).ok()?.record?;
    let x = func.value_type(op.args[0]);
    let (per_sample, fixed) = match (record, &op.op) {
        (Record::Mask | Record::Slopes, _) => (x.numel(), 0),
        (Record::WeightMask, Op::Linear { weight, .. } | Op::Conv2d { weight, .. }) => (0, param_len(*weight)),
        (Record::Argmax, _) => (func.value_type(op.result).numel(), 0),
        (Record::Stats, Op::BatchNorm { .. }) => (0, 2 * x.channels()),
        (Record::Stats, Op::LayerNorm { .. }) => (2, 0),
        (Record::Stats, Op::InstanceNorm { .. }) => (2 * x.channels(), 0),
        (Record::Stats, Op::GroupNorm { groups, .. }) => (2 * *groups as usize, 0),
        _ => (0, 0),
    };
    Some((record, per_sample, fixed))
}

impl Rule {
    fn reads(reads: &[Read]) -> Rule {
        Rule {
            reads: reads.to_vec(),
            record: None,
            params: Vec::new(),
            passes_through: false,
        }
    }

    fn recording(record: Record, reads: &[Read]) -> Rule {
        Rule {
            record: Some(record),
            ..Rule::reads(reads)
        }
    }

    fn with_params(mut self, params: impl IntoIterator<Item = ParamId>) -> Rule {
        self.params.extend(params);
        self
    }
}

/// The rule of a train-mode op.
pub fn rule(op: &Op) -> Result<Rule, NoRule> {
    use Read::Input;
    Ok(match op {
        Op::Linear {
            weight,
            bias,
            dropconnect,
            epilogue,
        }
        | Op::Conv2d {
            weight,
            bias,
            dropconnect,
            epilogue,
            ..
        } => {
            if !epilogue.is_empty() {
                return Err(NoRule(format!(
                    "{} with a fused epilogue (the train pipeline fuses nothing)",
                    op.name()
                )));
            }
            let rule = match dropconnect {
                Some(_) => Rule::recording(Record::WeightMask, &[Input, Read::Record]),
                None => Rule::reads(&[Input]),
            };
            rule.with_params(std::iter::once(*weight).chain(*bias))
        }
        Op::MaxPool(_) => Rule::recording(Record::Argmax, &[Read::Record]),
        Op::AvgPool(_) | Op::GlobalAvgPool | Op::Flatten => Rule::reads(&[]),
        Op::Act(act) => act_rule(act),
        Op::BatchNorm { weight, bias, .. }
        | Op::LayerNorm { weight, bias, .. }
        | Op::InstanceNorm { weight, bias, .. }
        | Op::GroupNorm { weight, bias, .. } => {
            Rule::recording(Record::Stats, &[Input, Read::Record]).with_params([*weight, *bias])
        }
        Op::Lrn { .. } => Rule::reads(&[Input]),
        Op::Affine { scale, shift } => Rule::reads(&[Input]).with_params([*scale, *shift]),
        Op::Dropout { .. } | Op::AlphaDropout { .. } | Op::DropBlock { .. } => {
            Rule::recording(Record::Mask, &[Read::Record])
        }
        Op::Add => Rule {
            passes_through: true,
            ..Rule::reads(&[])
        },
    })
}

/// Activations keep their output where the derivative is a function of
/// it, their input otherwise.
fn act_rule(act: &Act) -> Rule {
    use Read::{Input, Output};
    match act {
        Act::Sigmoid | Act::Tanh | Act::Relu | Act::Selu | Act::Softmax => Rule::reads(&[Output]),
        Act::Softplus { beta } if *beta > 0.0 => Rule::reads(&[Output]),
        // The output's sign is the input's only for a positive slope.
        Act::LeakyRelu { alpha } | Act::Elu { alpha } if *alpha > 0.0 => Rule::reads(&[Output]),
        Act::Softplus { .. } | Act::LeakyRelu { .. } | Act::Elu { .. } | Act::Gelu | Act::Silu | Act::Maxout { .. } => {
            Rule::reads(&[Input])
        }
        Act::Prelu { weight } => Rule::reads(&[Input]).with_params([*weight]),
        Act::Rrelu { .. } => Rule::recording(Record::Slopes, &[Read::Record]),
    }
}
