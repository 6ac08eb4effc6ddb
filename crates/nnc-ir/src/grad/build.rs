//! The grad stage: derives a module's [`Backward`] from its `train`
//! function, a loss and the ops' [rules](super::rules::rule).
//!
//! Ops are visited in reverse. The gradient of a forward value is the sum
//! of what its readers send it (a residual's input gets one from the skip
//! and one from the block); an op whose result gets no gradient does not
//! reach the loss and has no step; an op's input gets a gradient only if
//! something before it has parameters (nothing differentiates with respect
//! to the model's input).

use super::rules::{rule, Read, Rule};
use super::{Backward, Loss, Saved, Step, StepKind, Target};
use crate::{Act, Function, Mode, Module, Op, OpData, ValueId, ValueType};
use std::fmt;

/// Why a module has no backward.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GradError(pub String);

impl fmt::Display for GradError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for GradError {}

/// The loss §9 picks when none is named: cross-entropy after a last
/// softmax, binary cross-entropy after a last sigmoid, else mean squared
/// error.
pub fn default_loss(train: &Function) -> Loss {
    let last = train.ops.iter().rev().find(|o| o.result == train.output);
    match last.map(|o| &o.op) {
        Some(Op::Act(Act::Softmax)) => Loss::CrossEntropy { label_smoothing: 0.0 },
        Some(Op::Act(Act::Sigmoid)) => Loss::Bce,
        _ => Loss::Mse,
    }
}

/// Builds the backward of `module`'s train function for `loss`.
pub fn build(module: &Module, loss: Loss) -> Result<Backward, GradError> {
    let train = module
        .function(Mode::Train)
        .ok_or_else(|| GradError("the module has no train function to differentiate".into()))?;
    let rules: Vec<Rule> = train
        .ops
        .iter()
        .map(|o| rule(&o.op).map_err(|e| GradError(format!("layer `{}`: no gradient for {e}", o.layer))))
        .collect::<Result<_, _>>()?;
    let producers = train.producers();
    let producer = |v: ValueId| producers.index(v);
    let output_type = value(train, train.output)?;

    // The loss starts from the output, or from the input of a last softmax
    // (sigmoid) that cross-entropy (binary cross-entropy) absorbs.
    let last = producer(train.output);
    let fused = last.filter(|&i| {
        matches!(
            (loss, &train.ops[i].op),
            (Loss::CrossEntropy { .. }, Op::Act(Act::Softmax)) | (Loss::Bce, Op::Act(Act::Sigmoid))
        )
    });
    let of = match fused {
        Some(i) => train.ops[i].args.first().copied().unwrap_or(train.output),
        None => train.output,
    };
    let target = match loss {
        Loss::CrossEntropy { .. } => match output_type.dims.as_slice() {
            [classes] => Target::Classes { classes: *classes },
            _ => {
                return Err(GradError(format!(
                    "cross_entropy needs an output of class scores f32[N,C], got {output_type}"
                )))
            }
        },
        Loss::Mse | Loss::Bce => Target::Values(output_type.clone()),
    };

    // Which values depend on a parameter, and so need a gradient.
    let mut needs = vec![false; train.values.len()];
    for (op, rule) in train.ops.iter().zip(&rules) {
        let reads_needy = op
            .args
            .iter()
            .any(|a| needs.get(a.0 as usize).copied().unwrap_or(false));
        if let Some(n) = needs.get_mut(op.result.0 as usize) {
            *n = reads_needy || !rule.params.is_empty();
        }
    }

    let mut b = Builder {
        train,
        backward: Backward {
            loss,
            target,
            values: Vec::new(),
            steps: Vec::new(),
            saved: Vec::new(),
        },
        grads: vec![Vec::new(); train.values.len()],
    };
    let (layer, locs) = last.map_or((String::new(), Vec::new()), |i| {
        (train.ops[i].layer.clone(), train.ops[i].locs.clone())
    });
    let d_of = b.new_value(value(train, of)?.clone());
    b.push(
        StepKind::Loss {
            of,
            fused: fused.is_some(),
        },
        Vec::new(),
        Some(d_of),
        layer,
        locs,
    );
    b.grads[of.0 as usize].push(d_of);

    for (i, (op, rule)) in train.ops.iter().zip(&rules).enumerate().rev() {
        if Some(i) == fused {
            continue;
        }
        let Some(dy) = b.gradient_of(op.result, op) else {
            continue; // does not reach the loss
        };
        if rule.passes_through {
            for a in &op.args {
                if needs.get(a.0 as usize).copied().unwrap_or(false) {
                    b.grads[a.0 as usize].push(dy);
                }
            }
            continue;
        }
        let Some(&x) = op.args.first() else { continue };
        let dx = match needs.get(x.0 as usize).copied().unwrap_or(false) {
            true => Some(b.new_value(value(train, x)?.clone())),
            false => None,
        };
        if dx.is_none() && rule.params.is_empty() {
            continue;
        }
        let kind = StepKind::Vjp { of: op.result };
        b.push(kind, vec![dy], dx, op.layer.clone(), op.locs.clone());
        if let Some(dx) = dx {
            b.grads[x.0 as usize].push(dx);
        }
    }

    let mut backward = b.backward;
    for param in backward.trained_params(train) {
        let Some(p) = module.params.get(param.0 as usize) else {
            continue;
        };
        if p.l1 != 0.0 || p.l2 != 0.0 {
            let layer = p.name.split('.').next().unwrap_or_default().to_string();
            backward.steps.push(Step {
                kind: StepKind::Penalty { param },
                args: Vec::new(),
                result: None,
                layer,
                locs: Vec::new(),
                then: Vec::new(),
            });
        }
    }
    backward.saved = saved(train, &backward);
    Ok(backward)
}

struct Builder<'a> {
    train: &'a Function,
    backward: Backward,
    /// Per forward value, the gradients its readers sent it.
    grads: Vec<Vec<ValueId>>,
}

impl Builder<'_> {
    fn new_value(&mut self, ty: ValueType) -> ValueId {
        self.backward.values.push(ty);
        ValueId(self.backward.values.len() as u32 - 1)
    }

    fn push(
        &mut self,
        kind: StepKind,
        args: Vec<ValueId>,
        result: Option<ValueId>,
        layer: String,
        locs: Vec<nnc_diag::Loc>,
    ) {
        self.backward.steps.push(Step {
            kind,
            args,
            result,
            layer,
            locs,
            then: Vec::new(),
        });
    }

    /// The gradient of forward value `v` (defined by `op`): the sum of what
    /// its readers sent, `None` if nothing did.
    fn gradient_of(&mut self, v: ValueId, op: &crate::OpData) -> Option<ValueId> {
        let sent = std::mem::take(self.grads.get_mut(v.0 as usize)?);
        let (&first, rest) = sent.split_first()?;
        let ty = self.train.values.get(v.0 as usize)?.clone();
        let mut acc = first;
        for &next in rest {
            let sum = self.new_value(ty.clone());
            self.push(
                StepKind::Sum,
                vec![acc, next],
                Some(sum),
                op.layer.clone(),
                op.locs.clone(),
            );
            acc = sum;
        }
        Some(acc)
    }
}

fn value(f: &Function, v: ValueId) -> Result<&ValueType, GradError> {
    f.values
        .get(v.0 as usize)
        .ok_or_else(|| GradError(format!("value %{} is not in the train function", v.0)))
}

/// What the VJP of `op` (an op of `train`) reads of the train function,
/// by its rule: nothing for an op without one.
pub fn reads(train: &Function, op: &OpData) -> Vec<Saved> {
    let Ok(rule) = rule(&op.op) else {
        return Vec::new();
    };
    rule.reads
        .iter()
        .map(|read| match read {
            Read::Input => Saved::Value(op.args.first().copied().unwrap_or(train.input)),
            Read::Output => Saved::Value(op.result),
            Read::Record => Saved::Record(op.result),
        })
        .collect()
}

/// What the steps read of the train function, in the order it is made
/// (the input first, then by op; an op's result before its record).
pub fn saved(train: &Function, backward: &Backward) -> Vec<Saved> {
    let producers = train.producers();
    let mut out = Vec::new();
    for step in &backward.steps {
        match &step.kind {
            StepKind::Loss { of, .. } => out.push(Saved::Value(*of)),
            StepKind::Vjp { of } => {
                for v in std::iter::once(of).chain(&step.then) {
                    if let Some(op) = producers.op(train, *v) {
                        out.extend(reads(train, op));
                    }
                }
            }
            StepKind::Sum | StepKind::Penalty { .. } => {}
        }
    }
    let order = |s: &Saved| {
        let (v, record) = match s {
            Saved::Value(v) => (*v, 0),
            Saved::Record(v) => (*v, 1),
        };
        (producers.index(v).map_or(0, |i| i + 1), record, v)
    };
    out.sort_by_key(order);
    out.dedup();
    out
}
