//! The IR verifier.
//!
//! [`verify`] checks that a [`Module`] is well formed. A failure is a
//! compiler bug (a pass or lowering broke an invariant), never a user
//! error; the pass manager runs the verifier after every pass and shows the
//! IR with [`crate::text::print_module_with_errors`].
//!
//! # Invariants
//!
//! Ids, checked first (if any is out of range, the verifier reports those
//! and stops, so the checks below can index without a possible panic):
//!
//! - Every `ParamId` an op reads, its epilogue's included, and every
//!   `ParamId` in a derivation is less than `params.len()`.
//! - Every `ValueId` an op reads or defines, and each function's `input`
//!   and `output`, is less than that function's `values.len()`.
//!
//! Parameters:
//!
//! - Names are non-empty, unique, and made of `[A-Za-z0-9_.']`, so the text
//!   form can print and parse them.
//! - Shapes have no zero dimension.
//! - A derived parameter's [`Derivation::shape`] succeeds and equals its
//!   declared shape.
//! - Derivations are acyclic: a derived parameter may read other derived
//!   parameters, but never, through any chain, itself.
//!
//! Functions:
//!
//! - No two functions have the same [`Mode`].
//! - Each value is defined once: the input by no op, every other value by
//!   at most one op.
//! - An op's arguments are defined before it: the input, or the result of
//!   an earlier op.
//! - An op has [`Op::arity`] arguments.
//! - An op's declared result type (`values[result]`) equals the one its
//!   shape rule [`Op::output_type`] computes from its arguments' types and
//!   the parameter shapes; the shape rule also checks parameter shapes and
//!   attributes (probabilities, `eps`, epilogue steps being element-wise).
//! - Every value's type has at least one per-sample axis (`f32[N,F]`, not
//!   `f32[N]`).
//! - The output is defined.
//!
//! The backward (the grad stage), when there is one:
//!
//! - There is a train function, every gradient id is in range, each step's
//!   gradient arguments are defined by an earlier step, and each gradient
//!   value is defined once.
//! - A loss step reads a train value and its result has that value's type;
//!   cross-entropy's target has one class per output feature.
//! - A VJP's `of` is defined by a train op that has a rule; its argument
//!   has the type of the op's result, its result the type of the op's input.
//! - A sum adds two gradients of its result's type; a penalty names a
//!   parameter with a non-zero `l1` or `l2`.
//! - The train function's saved list is what the steps read.
//!
//! The text form:
//!
//! - The module name is an identifier (`[A-Za-z_][A-Za-z0-9_]*`), layer
//!   names are made of `[A-Za-z0-9_.]`, and notes are single lines.

use crate::{Function, Mode, Module, OpId, ParamId, ParamSource, ValueId};
use std::fmt;

/// A broken invariant: a compiler bug, never a user error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyError {
    /// The function the error is in, if it is in one.
    pub mode: Option<Mode>,
    /// The op the error is about: its index in `Function::ops` (whose
    /// result the printer numbers `%{index + 1}`).
    pub op: Option<OpId>,
    /// The parameter the error is about, for errors in the table.
    pub param: Option<ParamId>,
    pub message: String,
}

impl VerifyError {
    /// An error about the module as a whole.
    pub fn module(message: impl Into<String>) -> VerifyError {
        VerifyError {
            mode: None,
            op: None,
            param: None,
            message: message.into(),
        }
    }

    /// An error about one parameter.
    pub fn param(param: ParamId, message: impl Into<String>) -> VerifyError {
        VerifyError {
            param: Some(param),
            ..VerifyError::module(message)
        }
    }

    /// An error about a function but no op in particular.
    pub fn function(mode: Mode, message: impl Into<String>) -> VerifyError {
        VerifyError {
            mode: Some(mode),
            ..VerifyError::module(message)
        }
    }

    /// An error about one op of a function.
    pub fn op(mode: Mode, op: OpId, message: impl Into<String>) -> VerifyError {
        VerifyError {
            mode: Some(mode),
            op: Some(op),
            ..VerifyError::module(message)
        }
    }
}

impl fmt::Display for VerifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.mode, self.op, self.param) {
            (Some(mode), Some(op), _) => write!(f, "@{mode}, op {}: {}", op.0, self.message),
            (Some(mode), None, _) => write!(f, "@{mode}: {}", self.message),
            (None, _, Some(param)) => write!(f, "param #{}: {}", param.0, self.message),
            (None, _, None) => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for VerifyError {}

/// Checks every invariant of the module (listed in the module doc),
/// returning all broken ones.
pub fn verify(module: &Module) -> Result<(), Vec<VerifyError>> {
    let mut errors = Vec::new();
    check_ids(module, &mut errors);
    if errors.is_empty() {
        check_names(module, &mut errors);
        check_params(module, &mut errors);
        check_acyclic(module, &mut errors);
        check_modes(module, &mut errors);
        for function in &module.functions {
            check_function(module, function, &mut errors);
        }
        if let Some(backward) = &module.backward {
            check_backward(module, backward, &mut errors);
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// Every id in range; nothing after this may run if it fails.
fn check_ids(module: &Module, errors: &mut Vec<VerifyError>) {
    let n_params = module.params.len();
    for (i, p) in module.params.iter().enumerate() {
        if let ParamSource::Derived(d) = &p.source {
            for id in d.params() {
                if id.0 as usize >= n_params {
                    let msg = format!(
                        "derivation of @{} reads parameter #{} but the table has {n_params}",
                        p.name, id.0
                    );
                    errors.push(VerifyError::param(ParamId(i as u32), msg));
                }
            }
        }
    }
    for f in &module.functions {
        let n_values = f.values.len();
        let in_range = |v: ValueId| (v.0 as usize) < n_values;
        for (what, v) in [("input", f.input), ("output", f.output)] {
            if !in_range(v) {
                let msg = format!("{what} is value #{} but there are {n_values} values", v.0);
                errors.push(VerifyError::function(f.mode, msg));
            }
        }
        for (i, op) in f.ops.iter().enumerate() {
            let at = OpId(i as u32);
            for v in op.args.iter().chain([&op.result]) {
                if !in_range(*v) {
                    let msg = format!(
                        "{} refers to value #{} but there are {n_values} values",
                        op.op.name(),
                        v.0
                    );
                    errors.push(VerifyError::op(f.mode, at, msg));
                }
            }
            for p in op.op.params() {
                if p.0 as usize >= n_params {
                    let msg = format!("{} reads parameter #{} but the table has {n_params}", op.op.name(), p.0);
                    errors.push(VerifyError::op(f.mode, at, msg));
                }
            }
        }
    }
}

/// Names the text form can print and parse back.
fn check_names(module: &Module, errors: &mut Vec<VerifyError>) {
    if !is_ident(&module.name) {
        let msg = format!("module name `{}` is not an identifier", module.name);
        errors.push(VerifyError::module(msg));
    }
    for note in &module.notes {
        if note.contains(['\n', '\r']) {
            errors.push(VerifyError::module(format!("note {note:?} spans lines")));
        }
    }
    for f in &module.functions {
        for (i, op) in f.ops.iter().enumerate() {
            if !op.layer.chars().all(is_layer_char) {
                let msg = format!("layer name `{}` has characters outside [A-Za-z0-9_.]", op.layer);
                errors.push(VerifyError::op(f.mode, OpId(i as u32), msg));
            }
        }
    }
}

fn is_ident(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn is_layer_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '.'
}

fn is_param_name_char(c: char) -> bool {
    is_layer_char(c) || c == '\''
}

/// Names, shapes and derivation shapes.
fn check_params(module: &Module, errors: &mut Vec<VerifyError>) {
    let shapes = module.param_shapes();
    let mut first_named: foldhash::HashMap<&str, usize> = foldhash::HashMap::default();
    first_named.reserve(module.params.len());
    for (i, p) in module.params.iter().enumerate() {
        let id = ParamId(i as u32);
        if p.name.is_empty() {
            errors.push(VerifyError::param(id, format!("parameter #{i} has an empty name")));
        } else if !p.name.chars().all(is_param_name_char) {
            let msg = format!("parameter name `{}` has characters outside [A-Za-z0-9_.']", p.name);
            errors.push(VerifyError::param(id, msg));
        }
        let first = *first_named.entry(p.name.as_str()).or_insert(i);
        if first < i {
            let msg = format!("parameter name @{} is also parameter #{first}'s", p.name);
            errors.push(VerifyError::param(id, msg));
        }
        if p.shape.contains(&0) {
            let msg = format!("@{} has a zero dimension in {:?}", p.name, p.shape);
            errors.push(VerifyError::param(id, msg));
        }
        if let ParamSource::Derived(d) = &p.source {
            match d.shape(&shapes) {
                Ok(shape) if *shape == p.shape[..] => {}
                Ok(shape) => {
                    let msg = format!(
                        "@{} is declared {:?} but its derivation gives {shape:?}",
                        p.name, p.shape
                    );
                    errors.push(VerifyError::param(id, msg));
                }
                Err(e) => {
                    let msg = format!("derivation of @{}: {e}", p.name);
                    errors.push(VerifyError::param(id, msg));
                }
            }
        }
    }
}

/// Derivations form no cycle: a depth-first search over derived → derived
/// edges, iterative so a long chain cannot overflow the stack. Each cycle
/// is reported once, at the parameter where the search closed it.
fn check_acyclic(module: &Module, errors: &mut Vec<VerifyError>) {
    const UNSEEN: u8 = 0;
    const ON_PATH: u8 = 1;
    const DONE: u8 = 2;
    let deps: Vec<Vec<usize>> = module
        .params
        .iter()
        .map(|p| match &p.source {
            ParamSource::Derived(d) => d.params().iter().map(|q| q.0 as usize).collect(),
            ParamSource::Init(_) => Vec::new(),
        })
        .collect();
    let mut state = vec![UNSEEN; deps.len()];
    for root in 0..deps.len() {
        if state[root] != UNSEEN {
            continue;
        }
        state[root] = ON_PATH;
        // (parameter, index of the next dependency to visit)
        let mut path: Vec<(usize, usize)> = vec![(root, 0)];
        while let Some((node, next)) = path.last_mut() {
            let Some(&dep) = deps[*node].get(*next) else {
                state[*node] = DONE;
                path.pop();
                continue;
            };
            *next += 1;
            match state[dep] {
                UNSEEN => {
                    state[dep] = ON_PATH;
                    path.push((dep, 0));
                }
                ON_PATH => errors.push(cycle_error(module, &path, dep)),
                _ => {}
            }
        }
    }
}

fn cycle_error(module: &Module, path: &[(usize, usize)], back_to: usize) -> VerifyError {
    let start = path.iter().position(|(p, _)| *p == back_to).unwrap_or(0);
    let names: Vec<String> = path[start..]
        .iter()
        .map(|(p, _)| *p)
        .chain([back_to])
        .map(|p| format!("@{}", module.params[p].name))
        .collect();
    let msg = format!("derivations form a cycle: {}", names.join(" -> "));
    VerifyError::param(ParamId(back_to as u32), msg)
}

fn check_modes(module: &Module, errors: &mut Vec<VerifyError>) {
    for (i, f) in module.functions.iter().enumerate() {
        if module.functions[..i].iter().any(|g| g.mode == f.mode) {
            let msg = format!("a second function for mode {}", f.mode);
            errors.push(VerifyError::function(f.mode, msg));
        }
    }
}

/// SSA form and types; ids are known to be in range.
fn check_function(module: &Module, f: &Function, errors: &mut Vec<VerifyError>) {
    if f.values[f.input.0 as usize].dims.is_empty() {
        let msg = "the input has type f32[N] with no per-sample axis".to_string();
        errors.push(VerifyError::function(f.mode, msg));
    }
    let mut defined = vec![false; f.values.len()];
    defined[f.input.0 as usize] = true;
    for (i, op) in f.ops.iter().enumerate() {
        let mut error = |msg: String| errors.push(VerifyError::op(f.mode, OpId(i as u32), msg));
        let name = op.op.name();
        for arg in &op.args {
            if !defined[arg.0 as usize] {
                error(format!("{name} reads value #{} before it is defined", arg.0));
            }
        }
        let result = op.result.0 as usize;
        if op.result == f.input {
            error(format!("{name} redefines the function input"));
        } else if defined[result] {
            error(format!("{name} redefines value #{result}"));
        }
        defined[result] = true;
        if op.args.len() != op.op.arity() {
            error(format!(
                "{name} takes {} argument(s), got {}",
                op.op.arity(),
                op.args.len()
            ));
            continue;
        }
        // One or two arguments (the arity check above): on the stack, as
        // this runs for every op after the passes.
        let value = |k: usize| op.args.get(k).map(|a| &f.values[a.0 as usize]);
        let (Some(first), second) = (value(0), value(1)) else {
            continue;
        };
        let both = [first, second.unwrap_or(first)];
        let arg_types = &both[..op.args.len().min(2)];
        let declared = &f.values[result];
        // Shape rules index the first per-sample axis; do not run them on
        // a type without one.
        if declared.dims.is_empty() || arg_types.iter().any(|t| t.dims.is_empty()) {
            error(format!("{name} has a value of type f32[N] with no per-sample axis"));
            continue;
        }
        match op.op.output_type(arg_types, &module.params) {
            Ok(computed) if computed == *declared => {}
            Ok(computed) => error(format!(
                "{name} result is declared {declared} but its shape rule gives {computed}"
            )),
            Err(e) => error(format!("{name}: {e}")),
        }
    }
    if !defined[f.output.0 as usize] {
        let msg = format!("output value #{} is not defined", f.output.0);
        errors.push(VerifyError::function(f.mode, msg));
    }
}

/// The backward's invariants (listed in the module doc).
fn check_backward(module: &Module, b: &crate::grad::Backward, errors: &mut Vec<VerifyError>) {
    use crate::grad::rules::rule;
    use crate::grad::{StepKind, Target};
    let mut error = |msg: String| errors.push(VerifyError::module(format!("@backward: {msg}")));
    let Some(train) = module.function(Mode::Train) else {
        error("there is no train function".into());
        return;
    };
    let producers = train.producers();
    let train_type = |v: ValueId| train.values.get(v.0 as usize);
    let mut defined = vec![false; b.values.len()];
    for (i, step) in b.steps.iter().enumerate() {
        let grad_type = |v: ValueId| b.values.get(v.0 as usize);
        for a in &step.args {
            if !defined.get(a.0 as usize).copied().unwrap_or(false) {
                error(format!("step {i} reads gradient #{} before it is defined", a.0));
            }
        }
        let result_type = step.result.and_then(grad_type);
        if let Some(r) = step.result {
            match defined.get_mut(r.0 as usize) {
                Some(true) => error(format!("step {i} redefines gradient #{}", r.0)),
                Some(slot) => *slot = true,
                None => error(format!("step {i} defines gradient #{}, out of range", r.0)),
            }
        }
        match &step.kind {
            StepKind::Loss { of, .. } => {
                if train_type(*of).is_none() || result_type != train_type(*of) {
                    error(format!("step {i}: the loss's gradient does not have its value's type"));
                }
            }
            StepKind::Vjp { of } => {
                let Some(op) = producers.op(train, *of) else {
                    error(format!("step {i}: a VJP of %{}, which no train op defines", of.0));
                    continue;
                };
                if let Err(e) = rule(&op.op) {
                    error(format!("step {i}: {e}"));
                }
                let dy = step.args.first().and_then(|a| grad_type(*a));
                if step.args.len() != 1 || dy != train_type(op.result) {
                    error(format!(
                        "step {i}: {}.vjp's gradient argument is not of its result's type",
                        op.op.name()
                    ));
                }
                let x = op.args.first().and_then(|a| train_type(*a));
                if step.result.is_some() && result_type != x {
                    error(format!(
                        "step {i}: {}.vjp's result is not of its input's type",
                        op.op.name()
                    ));
                }
                for v in &step.then {
                    let then_op = producers.op(train, *v);
                    let fusable = matches!(
                        then_op.map(|o| &o.op),
                        Some(crate::Op::Act(act)) if act.is_elementwise() && act.params().is_empty()
                    );
                    if !fusable || step.result.is_none() || train_type(*v) != result_type {
                        error(format!(
                            "step {i}: %{} is not an element-wise activation of its result",
                            v.0
                        ));
                    }
                }
            }
            StepKind::Sum => {
                let types: Vec<_> = step.args.iter().map(|a| grad_type(*a)).collect();
                if types.len() != 2 || types.iter().any(|t| *t != result_type) || result_type.is_none() {
                    error(format!("step {i}: a sum of other types than its result's"));
                }
            }
            StepKind::Penalty { param } => match module.params.get(param.0 as usize) {
                Some(p) if p.l1 != 0.0 || p.l2 != 0.0 => {}
                Some(p) => error(format!("step {i}: a penalty on @{}, which has none", p.name)),
                None => error(format!("step {i}: a penalty on parameter #{}, out of range", param.0)),
            },
        }
    }
    if let (Target::Classes { classes }, Some(out)) = (&b.target, train_type(train.output)) {
        if out.dims != [*classes] {
            error(format!("cross-entropy over {classes} classes of an output {out}"));
        }
    }
    if crate::grad::build::saved(train, b) != b.saved {
        error("the saved list is not what the steps read".into());
    }
}
