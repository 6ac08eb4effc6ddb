//! Reading the grad stage back: the `@backward` function and the `saving`
//! list of `@train`'s return line. What a VJP reads and which gradients it
//! writes follow from the op's rule; the text states them for the reader,
//! and the parser checks that they are what the rule says, as it checks a
//! declared type against the shape rule.

use super::parse::{
    error_at, f32_of, loc_of, param_name, uint_of, value_number, value_type_of, Items, ParseError, Result, Rule,
};
use crate::grad::build::{reads as reads_of, saved};
use crate::grad::rules::rule;
use crate::grad::{Backward, Loss, Saved, Step, StepKind, Target};
use crate::{Function, Mode, Module, ParamId, Producers, ValueId, ValueType};
use pest::iterators::Pair;
use pest::Span;
use std::collections::HashMap;

/// The `saving` list of `@train`'s return line, with where it is.
pub(super) type Saving<'i> = Option<(Span<'i>, Vec<Pair<'i, Rule>>)>;

/// Reads a `func @backward` block against the module's train function.
pub(super) fn backward<'i>(
    names: &HashMap<&'i str, ParamId>,
    module: &Module,
    pair: Pair<'i, Rule>,
    saving: Saving<'i>,
) -> Result<Backward> {
    let span = pair.as_span();
    let train = module
        .function(Mode::Train)
        .ok_or_else(|| error_at(span, "a @backward function needs a @train function"))?;
    let mut r = Reading {
        names,
        module,
        train,
        producers: train.producers(),
        grads: HashMap::new(),
        values: Vec::new(),
    };
    let mut items = Items::new(pair);
    let target = r.target(items.expect(Rule::target_type)?)?;
    let loss = loss_of(items.expect(Rule::loss_spec)?)?;
    let mut steps = Vec::new();
    for line in items {
        steps.push(r.step(line)?);
    }
    let mut backward = Backward {
        loss,
        target,
        values: r.values,
        steps,
        saved: Vec::new(),
    };
    backward.saved = saved(train, &backward);
    let (list_span, written) = match saving {
        Some((s, pairs)) => {
            let reading = Reading {
                values: Vec::new(),
                ..r
            };
            let list: Vec<Saved> = pairs.into_iter().map(|p| reading.saved(p)).collect::<Result<_>>()?;
            (s, list)
        }
        None => (span, Vec::new()),
    };
    if written != backward.saved {
        return Err(error_at(
            list_span,
            "@train's `saving` list is not what the backward reads (the printer writes it from the steps)",
        ));
    }
    Ok(backward)
}

fn loss_of(pair: Pair<'_, Rule>) -> Result<Loss> {
    let span = pair.as_span();
    let mut items = Items::new(pair);
    let name = items.expect(Rule::ident)?.as_str();
    let mut loss = Loss::from_name(name).ok_or_else(|| {
        error_at(
            span,
            format!("unknown loss `{name}`; the losses are {}", Loss::NAMES.join(", ")),
        )
    })?;
    for attr in items {
        let text = attr.as_str();
        let mut parts = attr.clone().into_inner();
        let (Some(key), Some(value)) = (parts.next(), parts.next()) else {
            return Err(error_at(attr.as_span(), format!("a bad attribute `{text}`")));
        };
        match (&mut loss, key.as_str()) {
            (Loss::CrossEntropy { label_smoothing }, "label_smoothing") if value.as_rule() == Rule::number => {
                *label_smoothing = f32_of(&value)?;
            }
            _ => return Err(error_at(attr.as_span(), format!("{name} takes no attribute `{text}`"))),
        }
    }
    Ok(loss)
}

struct Reading<'a, 'i> {
    names: &'a HashMap<&'i str, ParamId>,
    module: &'a Module,
    train: &'a Function,
    producers: Producers,
    /// Printed gradient number → arena id.
    grads: HashMap<u32, ValueId>,
    values: Vec<ValueType>,
}

impl<'i> Reading<'_, 'i> {
    fn target(&self, pair: Pair<'i, Rule>) -> Result<Target> {
        let inner = Items::new(pair).next().ok_or_else(|| ParseError {
            line: 1,
            col: 1,
            message: "internal: an empty target".into(),
        })?;
        match inner.as_rule() {
            Rule::class_target => {
                let count = Items::new(inner).expect(Rule::uint)?;
                Ok(Target::Classes {
                    classes: uint_of(&count, u64::from(u32::MAX))? as usize,
                })
            }
            _ => Ok(Target::Values(value_type_of(inner)?)),
        }
    }

    /// A forward value by its printed number: `%0` the input, `%k` the
    /// result of op k − 1.
    fn forward(&self, pair: &Pair<'i, Rule>) -> Result<ValueId> {
        let n = value_number(pair)? as usize;
        let v = match n {
            0 => Some(self.train.input),
            k => self.train.ops.get(k - 1).map(|o| o.result),
        };
        v.ok_or_else(|| error_at(pair.as_span(), format!("@train has no value %{n}")))
    }

    fn grad(&self, pair: &Pair<'i, Rule>) -> Result<ValueId> {
        let n = grad_number(pair)?;
        self.grads
            .get(&n)
            .copied()
            .ok_or_else(|| error_at(pair.as_span(), format!("%d{n} is not defined")))
    }

    fn saved(&self, pair: Pair<'i, Rule>) -> Result<Saved> {
        match pair.as_rule() {
            Rule::value_ref => Ok(Saved::Value(self.forward(&pair)?)),
            _ => {
                let span = pair.as_span();
                let mut items = Items::new(pair);
                let kind = items.expect(Rule::ident)?.as_str();
                let v = self.forward(&items.expect(Rule::value_ref)?)?;
                let record = self
                    .producers
                    .op(self.train, v)
                    .and_then(|o| rule(&o.op).ok())
                    .and_then(|r| r.record);
                match record {
                    Some(r) if r.name() == kind => Ok(Saved::Record(v)),
                    Some(r) => Err(error_at(
                        span,
                        format!("that op records its {}, not `{kind}`", r.name()),
                    )),
                    None => Err(error_at(span, "that op records nothing")),
                }
            }
        }
    }

    fn step(&mut self, pair: Pair<'i, Rule>) -> Result<Step> {
        let mut items = Items::new(pair);
        let result = match items.optional(Rule::grad_ref) {
            Some(r) => {
                let ty = value_type_of(items.expect(Rule::value_type)?)?;
                Some((r, ty))
            }
            None => None,
        };
        let body = items.next().ok_or_else(|| ParseError {
            line: 1,
            col: 1,
            message: "internal: an empty step".into(),
        })?;
        let body_span = body.as_span();
        let locs = match items.optional(Rule::locs) {
            Some(locs) => Items::new(locs).map(|l| loc_of(l)).collect::<Result<_>>()?,
            None => Vec::new(),
        };
        let rule_name = body.as_rule();
        let mut then = Vec::new();
        let mut parts = Items::new(body);
        let head = parts.next().ok_or_else(|| error_at(body_span, "internal: no head"))?;
        let layer = Items::new(head.clone())
            .find(|p| p.as_rule() == Rule::layer)
            .map_or(String::new(), |l| l.as_str().to_string());
        // The type a result must have, and the step.
        let (kind, args, expected): (StepKind, Vec<ValueId>, Option<ValueType>) = match rule_name {
            Rule::loss_step => {
                let of = self.forward(&parts.expect(Rule::value_ref)?)?;
                let fused = parts.optional(Rule::fused).is_some();
                let ty = self.train.values.get(of.0 as usize).cloned();
                (StepKind::Loss { of, fused }, Vec::new(), ty)
            }
            Rule::vjp_step => {
                let name = Items::new(head).expect(Rule::ident)?.as_str();
                let dy_pair = parts.expect(Rule::grad_ref)?;
                let dy = self.grad(&dy_pair)?;
                let of = self.forward(&parts.expect(Rule::value_ref)?)?;
                let op = self
                    .producers
                    .op(self.train, of)
                    .ok_or_else(|| error_at(body_span, "the input has no VJP"))?;
                if op.op.name() != name {
                    return Err(error_at(
                        body_span,
                        format!("that value is made by {}, not {name}", op.op.name()),
                    ));
                }
                let op_rule = rule(&op.op).map_err(|e| error_at(body_span, e.to_string()))?;
                let reads: Vec<Saved> = match parts.optional(Rule::reads) {
                    Some(r) => r.into_inner().map(|p| self.saved(p)).collect::<Result<_>>()?,
                    None => Vec::new(),
                };
                if reads != reads_of(self.train, op) {
                    return Err(error_at(body_span, format!("{name}.vjp reads other values than these")));
                }
                let grads: Vec<ParamId> = match parts.optional(Rule::grads) {
                    Some(g) => g.into_inner().map(|p| self.param(&p)).collect::<Result<_>>()?,
                    None => Vec::new(),
                };
                if grads != op_rule.params {
                    return Err(error_at(
                        body_span,
                        format!("{name}.vjp has gradients for other parameters"),
                    ));
                }
                if let Some(list) = parts.optional(Rule::then_list) {
                    for item in list.into_inner() {
                        let item_span = item.as_span();
                        let mut it = Items::new(item);
                        let act = it.expect(Rule::ident)?.as_str();
                        let v = self.forward(&it.expect(Rule::value_ref)?)?;
                        let made_by = self.producers.op(self.train, v).map(|o| o.op.name());
                        if made_by != Some(act) {
                            return Err(error_at(item_span, format!("that value is not made by {act}")));
                        }
                        then.push(v);
                    }
                }
                if self.values.get(dy.0 as usize) != self.train.values.get(op.result.0 as usize) {
                    return Err(error_at(dy_pair.as_span(), "the gradient's type is not its value's"));
                }
                let x = op
                    .args
                    .first()
                    .and_then(|a| self.train.values.get(a.0 as usize))
                    .cloned();
                (StepKind::Vjp { of }, vec![dy], x)
            }
            Rule::sum_step => {
                let a = self.grad(&parts.expect(Rule::grad_ref)?)?;
                let b_pair = parts.expect(Rule::grad_ref)?;
                let b = self.grad(&b_pair)?;
                let ty = self.values.get(a.0 as usize).cloned();
                if ty.as_ref() != self.values.get(b.0 as usize) {
                    return Err(error_at(b_pair.as_span(), "a sum of two types"));
                }
                (StepKind::Sum, vec![a, b], ty)
            }
            _ => {
                let param_pair = parts.expect(Rule::param_ref)?;
                let param = self.param(&param_pair)?;
                let p = &self.module.params[param.0 as usize];
                let mut l1 = 0.0;
                let mut l2 = 0.0;
                for attr in parts {
                    let value = attr
                        .clone()
                        .into_inner()
                        .last()
                        .ok_or_else(|| error_at(attr.as_span(), "no value"))?;
                    match attr.as_rule() {
                        Rule::l1 => l1 = f32_of(&value)?,
                        _ => l2 = f32_of(&value)?,
                    }
                }
                if (l1, l2) != (p.l1, p.l2) {
                    return Err(error_at(body_span, format!("@{} has l1={} l2={}", p.name, p.l1, p.l2)));
                }
                (StepKind::Penalty { param }, Vec::new(), None)
            }
        };
        let result = match (result, expected) {
            (Some((pair, ty)), Some(expected)) => {
                if ty != expected {
                    return Err(error_at(
                        pair.as_span(),
                        format!("declared {ty} but the step gives {expected}"),
                    ));
                }
                let n = grad_number(&pair)?;
                if self.grads.contains_key(&n) {
                    return Err(error_at(pair.as_span(), format!("%d{n} is defined twice")));
                }
                self.values.push(ty);
                let id = ValueId(self.values.len() as u32 - 1);
                self.grads.insert(n, id);
                Some(id)
            }
            (Some((pair, _)), None) => return Err(error_at(pair.as_span(), "this step has no gradient result")),
            (None, _) if matches!(kind, StepKind::Loss { .. } | StepKind::Sum) => {
                return Err(error_at(body_span, "this step needs a result `%dK: TYPE =`"))
            }
            (None, _) => None,
        };
        Ok(Step {
            kind,
            args,
            result,
            layer,
            locs,
            then,
        })
    }

    fn param(&self, pair: &Pair<'i, Rule>) -> Result<ParamId> {
        let name = param_name(pair);
        self.names
            .get(name)
            .copied()
            .ok_or_else(|| error_at(pair.as_span(), format!("unknown parameter @{name}")))
    }
}

/// `%d3` → 3.
fn grad_number(pair: &Pair<'_, Rule>) -> Result<u32> {
    let digits = pair.as_str().trim_start_matches("%d");
    digits
        .parse()
        .map_err(|_| error_at(pair.as_span(), format!("a bad gradient number `{}`", pair.as_str())))
}
