//! The backward function: reverse-mode gradients of the training loss, as
//! IR beside the `train` function it differentiates.
//!
//! The `train` function's ops run forward and keep what the backward reads
//! ([`Saved`]: values, and what a kernel records on the side such as
//! dropout masks and batch statistics). The [`Backward`] function walks the
//! ops in reverse: a [`Step`] per op computes the gradient of the op's input
//! from the gradient of its result (the op's vector–Jacobian product) and
//! adds into the gradients of the op's parameters. What each op reads and
//! which parameters it has gradients for is its [`rules::rule`], one
//! exhaustive `match` over [`crate::Op`]; [`build::build`] derives the steps
//! from the rules.
//!
//! Gradient values are batched like forward values (`f32[N,750]`);
//! parameter gradients are not values but accumulators, one per trainable
//! parameter, zeroed before the backward and written with `+=` by every step
//! that has one (a parameter read twice gets the sum).

pub mod build;
pub mod rules;

use crate::{ParamId, ValueId, ValueType};
use nnc_diag::Loc;
use std::fmt;

/// The training loss of LANGUAGE.md §9: a mean over the batch (over every
/// element for `mse` and `bce`, as PyTorch's `reduction='mean'`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Loss {
    /// Softmax cross-entropy of logits against integer classes.
    CrossEntropy { label_smoothing: f32 },
    /// Mean squared error against targets of the output's shape.
    Mse,
    /// Binary cross-entropy against targets in [0, 1].
    Bce,
}

/// What the loss compares the model's output with.
#[derive(Clone, Debug, PartialEq)]
pub enum Target {
    /// One class index per sample, below `classes`.
    Classes { classes: usize },
    /// Values of this per-sample type (the output's).
    Values(ValueType),
}

/// Something the train function keeps for the backward.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Saved {
    /// A value of the train function.
    Value(ValueId),
    /// What the op defining this value records on the side while it runs
    /// in training ([`rules::Record`] says what: a mask, slopes, batch
    /// statistics, arg-maxes).
    Record(ValueId),
}

/// The backward function of a module's `train` function.
#[derive(Clone, Debug, PartialEq)]
pub struct Backward {
    pub loss: Loss,
    pub target: Target,
    /// The type of every gradient value.
    pub values: Vec<ValueType>,
    /// Steps in the order they run (the forward ops' reverse order).
    pub steps: Vec<Step>,
    /// What the train function keeps for the steps, in the order the train
    /// function produces it: printed on its `return` line.
    pub saved: Vec<Saved>,
}

/// One step of the backward function.
#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    pub kind: StepKind,
    /// Gradient values it reads: none for the loss, the result's gradient
    /// for a VJP, the two addends of a sum.
    pub args: Vec<ValueId>,
    /// The gradient it computes; `None` for a VJP whose input gradient
    /// nothing needs (an op on the model's input) and for a penalty.
    pub result: Option<ValueId>,
    /// The layer of the forward op.
    pub layer: String,
    pub locs: Vec<Loc>,
    /// Element-wise activations whose VJPs this step applies to its result
    /// while it is in cache, in order (the forward values they define): the
    /// `fuse-activation-backward` pass moves them here from steps of their
    /// own.
    pub then: Vec<ValueId>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum StepKind {
    /// The loss of forward value `of` against the target: writes the loss
    /// and its gradient with respect to `of`. With `fused`, `of` is the
    /// input of the model's last op (softmax before cross-entropy, sigmoid
    /// before binary cross-entropy), and the loss is computed from it
    /// directly (PyTorch's `CrossEntropyLoss`, `BCEWithLogitsLoss`).
    Loss { of: ValueId, fused: bool },
    /// The vector–Jacobian product of the train op defining `of`: the
    /// gradient of the op's input from its result's, and its parameters'.
    Vjp { of: ValueId },
    /// The sum of two gradients of one forward value with several readers.
    Sum,
    /// `l1·Σ|W| + l2·ΣW²` of a parameter added to the loss, and its
    /// gradient `l1·sign(W) + 2·l2·W` to the parameter's.
    Penalty { param: ParamId },
}

impl Loss {
    pub fn name(&self) -> &'static str {
        match self {
            Loss::CrossEntropy { .. } => "cross_entropy",
            Loss::Mse => "mse",
            Loss::Bce => "bce",
        }
    }

    /// A loss named as `--loss` and §9 name them (label smoothing 0).
    pub fn from_name(name: &str) -> Option<Loss> {
        match name {
            "cross_entropy" => Some(Loss::CrossEntropy { label_smoothing: 0.0 }),
            "mse" => Some(Loss::Mse),
            "bce" => Some(Loss::Bce),
            _ => None,
        }
    }

    pub const NAMES: [&'static str; 3] = ["cross_entropy", "mse", "bce"];
}

impl fmt::Display for Loss {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Loss::CrossEntropy { label_smoothing } if *label_smoothing != 0.0 => {
                write!(f, "cross_entropy label_smoothing={label_smoothing}")
            }
            _ => f.write_str(self.name()),
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Classes { classes } => write!(f, "classes[N] < {classes}"),
            Target::Values(t) => t.fmt(f),
        }
    }
}

impl Backward {
    pub fn value_type(&self, v: ValueId) -> &ValueType {
        &self.values[v.0 as usize]
    }

    /// The train function's values the steps read (the saved values that
    /// are not records): a buffer plan must keep them.
    pub fn kept_values(&self) -> Vec<ValueId> {
        self.saved
            .iter()
            .filter_map(|s| match s {
                Saved::Value(v) => Some(*v),
                Saved::Record(_) => None,
            })
            .collect()
    }

    /// The parameters the backward has gradients for, in the order the
    /// steps first write them.
    pub fn trained_params(&self, train: &crate::Function) -> Vec<ParamId> {
        let producers = train.producers();
        let mut seen = std::collections::BTreeSet::new();
        let mut out = Vec::new();
        for step in &self.steps {
            let ids = match &step.kind {
                StepKind::Vjp { of } => producers
                    .op(train, *of)
                    .and_then(|op| rules::rule(&op.op).ok())
                    .map(|r| r.params)
                    .unwrap_or_default(),
                StepKind::Penalty { param } => vec![*param],
                StepKind::Loss { .. } | StepKind::Sum => Vec::new(),
            };
            for id in ids {
                if seen.insert(id) {
                    out.push(id);
                }
            }
        }
        out
    }
}
