//! The printer: one line per parameter, one line per op, values numbered
//! in program order. It reads ids with `get`, never by indexing, so it can
//! show a module the verifier has just rejected.

use crate::grad::build::reads;
use crate::grad::rules;
use crate::grad::{Backward, Saved, StepKind, Target};
use crate::types::fmt_param_shape;
use crate::verify::VerifyError;
use crate::{
    Act, Derivation, Dist, Epilogue, EpilogueStep, Function, Mode, Module, Op, OpId, ParamData, ParamId, ParamSource,
    Producers, ValueId,
};
use std::collections::HashMap;
use std::fmt::Write;

/// Comment lines (`// error: ...`) to print after particular lines of a
/// module.
#[derive(Default)]
struct ModuleMarks<'a> {
    /// After the `model` line and notes.
    header: Vec<&'a str>,
    /// After a parameter's line, by index in the table.
    params: HashMap<usize, Vec<&'a str>>,
    /// By index in `Module::functions`.
    functions: HashMap<usize, FunctionMarks<'a>>,
}

/// Comment lines to print inside one function.
#[derive(Default)]
struct FunctionMarks<'a> {
    /// After the `func` line.
    header: Vec<&'a str>,
    /// After an op's line, by index in `Function::ops`.
    ops: HashMap<usize, Vec<&'a str>>,
}

/// Prints a module in the text form (without a banner).
pub fn print_module(module: &Module) -> String {
    module_text(module, &ModuleMarks::default())
}

/// Prints one function of `module` (its parameters are named from the
/// module's table), from the `func` line to the closing `}`.
pub fn print_function(module: &Module, function: &Function) -> String {
    function_text(module, function, &FunctionMarks::default())
}

/// Prints one function with a `// error: MESSAGE` line after op `op` (or
/// after the `func` line when `op` is `None`): how a pass manager shows
/// which op a verifier failure is about.
pub fn print_function_with_marker(module: &Module, function: &Function, op: Option<OpId>, message: &str) -> String {
    let mut marks = FunctionMarks::default();
    match op {
        Some(op) => marks.ops.entry(op.0 as usize).or_default().push(message),
        None => marks.header.push(message),
    }
    function_text(module, function, &marks)
}

/// Prints the whole module with each verifier error as a `// error:` line
/// after the line it is about: the op, the parameter, the `func` line, or
/// the header for errors about the module as a whole. The result still
/// parses if the module is otherwise well formed (comments are skipped).
pub fn print_module_with_errors(module: &Module, errors: &[VerifyError]) -> String {
    let mut marks = ModuleMarks::default();
    for error in errors {
        let message = error.message.as_str();
        if let Some(mode) = error.mode {
            // Every function with that mode: with duplicate modes (itself an
            // error) the mark cannot tell them apart.
            for (i, f) in module.functions.iter().enumerate() {
                if f.mode != mode {
                    continue;
                }
                let marks = marks.functions.entry(i).or_default();
                match error.op {
                    Some(op) => marks.ops.entry(op.0 as usize).or_default().push(message),
                    None => marks.header.push(message),
                }
            }
        } else if let Some(param) = error.param {
            marks.params.entry(param.0 as usize).or_default().push(message);
        } else {
            marks.header.push(message);
        }
    }
    module_text(module, &marks)
}

/// A derivation as the text IR writes it: `@a.weight * (@a.norm.weight / sqrt(...))`.
pub fn print_derivation(module: &Module, d: &Derivation) -> String {
    let mut out = String::new();
    write_derivation(&mut out, module, d);
    out
}

fn module_text(module: &Module, marks: &ModuleMarks<'_>) -> String {
    let mut sections = Vec::new();
    let mut header = format!("model {}\n", module.name);
    for note in &module.notes {
        let _ = writeln!(header, "// note: {note}");
    }
    write_marks(&mut header, "", &marks.header);
    sections.push(header);
    if !module.params.is_empty() {
        let mut params = String::new();
        for (i, p) in module.params.iter().enumerate() {
            params.push_str(&param_line(module, p));
            params.push('\n');
            if let Some(m) = marks.params.get(&i) {
                write_marks(&mut params, "", m);
            }
        }
        sections.push(params);
    }
    let no_marks = FunctionMarks::default();
    for (i, f) in module.functions.iter().enumerate() {
        let marks = marks.functions.get(&i).unwrap_or(&no_marks);
        sections.push(function_text(module, f, marks));
    }
    if let (Some(backward), Some(train)) = (&module.backward, module.function(Mode::Train)) {
        sections.push(backward_text(module, train, backward));
    }
    sections.join("\n")
}

fn write_marks(out: &mut String, indent: &str, marks: &[&str]) {
    for m in marks {
        // A message with a newline would end the comment early.
        let m = m.replace(['\n', '\r'], " ");
        let _ = writeln!(out, "{indent}// error: {m}");
    }
}

fn param_line(module: &Module, p: &ParamData) -> String {
    let mut line = format!("param @{}: {} {} = ", p.name, fmt_param_shape(&p.shape), p.role.name());
    match &p.source {
        ParamSource::Init(init) => {
            let _ = write!(line, "init {}", init.scheme);
            if let Some(fan_in) = init.fan_in {
                let _ = write!(line, " fan_in={fan_in}");
            }
            if let Some(fan_out) = init.fan_out {
                let _ = write!(line, " fan_out={fan_out}");
            }
            line.push(' ');
            line.push_str(&dist_text(&init.dist));
        }
        ParamSource::Derived(d) => {
            line.push_str("derive ");
            write_derivation(&mut line, module, d);
        }
    }
    if p.l1 != 0.0 {
        let _ = write!(line, " l1={}", p.l1);
    }
    if p.l2 != 0.0 {
        let _ = write!(line, " l2={}", p.l2);
    }
    line
}

fn dist_text(dist: &Dist) -> String {
    match dist {
        Dist::Constant { value } => format!("constant(value={value})"),
        Dist::Normal { mean, std } => format!("normal(mean={mean}, std={std})"),
        Dist::TruncatedNormal { mean, std, low, high } => {
            format!("truncated_normal(mean={mean}, std={std}, low={low}, high={high})")
        }
        Dist::Uniform { low, high } => format!("uniform(low={low}, high={high})"),
        Dist::Orthogonal { gain } => format!("orthogonal(gain={gain})"),
    }
}

/// Writes a derivation with the fewest parentheses that parse back to the
/// same tree: `*` and `/` bind tighter than `+` and `-`, and both levels
/// associate to the left.
fn write_derivation(out: &mut String, module: &Module, d: &Derivation) {
    match d {
        Derivation::Param(p) => out.push_str(&param_ref(module, *p)),
        Derivation::Const(v) => {
            let _ = write!(out, "{v}");
        }
        Derivation::Binary { op, lhs, rhs } => {
            write_operand(out, module, lhs, op.precedence(), false);
            let _ = write!(out, " {} ", op.symbol());
            write_operand(out, module, rhs, op.precedence(), true);
        }
        Derivation::Sqrt(x) => {
            out.push_str("sqrt(");
            write_derivation(out, module, x);
            out.push(')');
        }
        Derivation::ScaleRows { matrix, scale } => write_call(out, module, "scale_rows", matrix, scale),
        Derivation::ScaleCols { matrix, scale } => write_call(out, module, "scale_cols", matrix, scale),
        Derivation::MatVec { matrix, vector } => write_call(out, module, "mat_vec", matrix, vector),
    }
}

/// An operand of a binary operator whose precedence is `parent`. A looser
/// operand needs parentheses on either side; an equally tight one only on
/// the right (`a - (b - c)`), since parsing groups to the left.
fn write_operand(out: &mut String, module: &Module, d: &Derivation, parent: u8, right: bool) {
    let parens = match d {
        Derivation::Binary { op, .. } => op.precedence() < parent || (right && op.precedence() == parent),
        _ => false,
    };
    if parens {
        out.push('(');
    }
    write_derivation(out, module, d);
    if parens {
        out.push(')');
    }
}

fn write_call(out: &mut String, module: &Module, name: &str, a: &Derivation, b: &Derivation) {
    out.push_str(name);
    out.push('(');
    write_derivation(out, module, a);
    out.push_str(", ");
    write_derivation(out, module, b);
    out.push(')');
}

/// `@name`, or `@?7` for an id past the end of the table.
fn param_ref(module: &Module, id: ParamId) -> String {
    match module.params.get(id.0 as usize) {
        Some(p) => format!("@{}", p.name),
        None => format!("@?{}", id.0),
    }
}

/// Printed value numbers: the input is `%0`, op `i`'s result `%{i+1}`. A
/// value defined twice (a verifier error) keeps its first number.
fn value_numbers(function: &Function) -> HashMap<ValueId, usize> {
    let mut numbers = HashMap::new();
    numbers.insert(function.input, 0);
    for (i, op) in function.ops.iter().enumerate() {
        numbers.entry(op.result).or_insert(i + 1);
    }
    numbers
}

/// `%3`, or `%?12` (the arena id) for a value no op defines.
fn value_ref(numbers: &HashMap<ValueId, usize>, value: ValueId) -> String {
    match numbers.get(&value) {
        Some(n) => format!("%{n}"),
        None => format!("%?{}", value.0),
    }
}

fn value_type(function: &Function, value: ValueId) -> String {
    match function.values.get(value.0 as usize) {
        Some(ty) => ty.to_string(),
        None => "f32[?]".to_string(),
    }
}

fn function_text(module: &Module, function: &Function, marks: &FunctionMarks<'_>) -> String {
    let numbers = value_numbers(function);
    let mut out = format!(
        "func @{}(%0: {}) -> {} {{\n",
        function.mode,
        value_type(function, function.input),
        value_type(function, function.output)
    );
    write_marks(&mut out, "  ", &marks.header);
    for (i, op) in function.ops.iter().enumerate() {
        let _ = writeln!(out, "  %{}: {}", i + 1, op_text(module, function, &numbers, op));
        if let Some(m) = marks.ops.get(&i) {
            write_marks(&mut out, "  ", m);
        }
    }
    let _ = write!(out, "  return {}", value_ref(&numbers, function.output));
    if let Some(backward) = module.backward.as_ref().filter(|_| function.mode == Mode::Train) {
        let producers = function.producers();
        let saved: Vec<String> = backward
            .saved
            .iter()
            .map(|s| saved_text(function, &producers, &numbers, s))
            .collect();
        if !saved.is_empty() {
            let _ = write!(out, " saving {}", saved.join(", "));
        }
    }
    out.push_str("\n}\n");
    out
}

/// `%3`, or `stats(%2)` for what op `%2` records.
fn saved_text(function: &Function, producers: &Producers, numbers: &HashMap<ValueId, usize>, saved: &Saved) -> String {
    match saved {
        Saved::Value(v) => value_ref(numbers, *v),
        Saved::Record(v) => {
            let record = producers
                .op(function, *v)
                .and_then(|o| rules::rule(&o.op).ok())
                .and_then(|r| r.record)
                .map_or("record", |r| r.name());
            format!("{record}({})", value_ref(numbers, *v))
        }
    }
}

/// The backward function: gradient values are `%d1`, `%d2`, … in the order
/// the steps define them; forward values keep the train function's numbers.
fn backward_text(module: &Module, train: &Function, backward: &Backward) -> String {
    let forward = value_numbers(train);
    let mut numbers = HashMap::new();
    for step in &backward.steps {
        if let Some(r) = step.result {
            let next = numbers.len() + 1;
            numbers.entry(r).or_insert(next);
        }
    }
    let grad_ref = |v: ValueId| match numbers.get(&v) {
        Some(n) => format!("%d{n}"),
        None => format!("%d?{}", v.0),
    };
    let target = match &backward.target {
        Target::Classes { classes } => format!("class[N] < {classes}"),
        Target::Values(t) => t.to_string(),
    };
    let mut out = format!("func @backward(target: {target}) loss={} {{\n", backward.loss);
    let producers = train.producers();
    for step in &backward.steps {
        let mut line = String::from("  ");
        if let Some(r) = step.result {
            let ty = backward
                .values
                .get(r.0 as usize)
                .map_or("f32[?]".to_string(), |t| t.to_string());
            let _ = write!(line, "{}: {ty} = ", grad_ref(r));
        }
        let args: Vec<String> = step.args.iter().map(|a| grad_ref(*a)).collect();
        match &step.kind {
            StepKind::Loss { of, fused } => {
                let _ = write!(line, "loss[{}] of {}", step.layer, value_ref(&forward, *of));
                if *fused {
                    line.push_str(" fused");
                }
            }
            StepKind::Vjp { of } => {
                let op = producers.op(train, *of);
                let name = op.map_or("?", |o| o.op.name());
                let _ = write!(
                    line,
                    "{name}.vjp[{}] {} of {}",
                    step.layer,
                    args.join(", "),
                    value_ref(&forward, *of)
                );
                if let Some((op, rule)) = op.and_then(|o| rules::rule(&o.op).ok().map(|r| (o, r))) {
                    let reads: Vec<String> = reads(train, op)
                        .iter()
                        .map(|s| saved_text(train, &producers, &forward, s))
                        .collect();
                    if !reads.is_empty() {
                        let _ = write!(line, " reads({})", reads.join(", "));
                    }
                    let grads: Vec<String> = rule.params.iter().map(|p| param_ref(module, *p)).collect();
                    if !grads.is_empty() {
                        let _ = write!(line, " grads({})", grads.join(", "));
                    }
                }
                if !step.then.is_empty() {
                    let items: Vec<String> = step
                        .then
                        .iter()
                        .map(|v| {
                            let op = producers.op(train, *v);
                            format!("{} of {}", op.map_or("?", |o| o.op.name()), value_ref(&forward, *v))
                        })
                        .collect();
                    let _ = write!(line, " then({})", items.join(", "));
                }
            }
            StepKind::Sum => {
                let _ = write!(line, "sum[{}] {}", step.layer, args.join(", "));
            }
            StepKind::Penalty { param } => {
                let _ = write!(line, "penalty[{}] {}", step.layer, param_ref(module, *param));
                if let Some(p) = module.params.get(param.0 as usize) {
                    if p.l1 != 0.0 {
                        let _ = write!(line, " l1={}", p.l1);
                    }
                    if p.l2 != 0.0 {
                        let _ = write!(line, " l2={}", p.l2);
                    }
                }
            }
        }
        if !step.locs.is_empty() {
            let locs: Vec<String> = step.locs.iter().map(|l| l.to_string()).collect();
            let _ = write!(line, " loc({})", locs.join(", "));
        }
        out.push_str(&line);
        out.push('\n');
    }
    out.push_str("}\n");
    out
}

/// Everything after `%R: `: the type, the op, its operands, attributes,
/// epilogue and locations.
fn op_text(module: &Module, function: &Function, numbers: &HashMap<ValueId, usize>, op: &crate::OpData) -> String {
    let mut line = format!("{} = {}[{}]", value_type(function, op.result), op.op.name(), op.layer);
    let (params, attrs, epilogue) = op_parts(&op.op);
    let operands: Vec<String> = op
        .args
        .iter()
        .map(|a| value_ref(numbers, *a))
        .chain(params.iter().map(|p| param_ref(module, *p)))
        .collect();
    if !operands.is_empty() {
        line.push(' ');
        line.push_str(&operands.join(", "));
    }
    for (key, value) in attrs {
        let _ = write!(line, " {key}={value}");
    }
    if let Some(epilogue) = epilogue.filter(|e| !e.is_empty()) {
        let steps: Vec<String> = epilogue.steps.iter().map(|s| step_text(module, s)).collect();
        let _ = write!(line, " epilogue({})", steps.join(", "));
    }
    if !op.locs.is_empty() {
        let locs: Vec<String> = op.locs.iter().map(|l| l.to_string()).collect();
        let _ = write!(line, " loc({})", locs.join(", "));
    }
    line
}

/// Attributes as `(key, printed value)`, in the order the text form uses.
type Attrs = Vec<(&'static str, String)>;

/// An op's own parameter operands (not its epilogue's), its attributes,
/// and its epilogue if it can have one.
fn op_parts(op: &Op) -> (Vec<ParamId>, Attrs, Option<&Epilogue>) {
    match op {
        Op::Linear {
            weight,
            bias,
            dropconnect,
            epilogue,
        } => {
            let mut attrs = Attrs::new();
            if let Some(p) = dropconnect {
                attrs.push(("dropconnect", p.to_string()));
            }
            (with_bias(*weight, *bias), attrs, Some(epilogue))
        }
        Op::Conv2d {
            weight,
            bias,
            geometry: g,
            dropconnect,
            epilogue,
        } => {
            let mut attrs = vec![
                ("kernel", g.kernel.to_string()),
                ("stride", g.stride.to_string()),
                ("dilation", g.dilation.to_string()),
                ("groups", g.groups.to_string()),
                ("pads", pads_text(g.pads)),
            ];
            if let Some(p) = dropconnect {
                attrs.push(("dropconnect", p.to_string()));
            }
            (with_bias(*weight, *bias), attrs, Some(epilogue))
        }
        Op::MaxPool(g) | Op::AvgPool(g) => {
            let attrs = vec![
                ("kernel", g.kernel.to_string()),
                ("stride", g.stride.to_string()),
                ("pads", pads_text(g.pads)),
            ];
            (Vec::new(), attrs, None)
        }
        Op::GlobalAvgPool | Op::Flatten | Op::Add => (Vec::new(), Attrs::new(), None),
        Op::Act(act) => (act.params(), act_attrs(act), None),
        Op::BatchNorm {
            weight,
            bias,
            running_mean,
            running_var,
            eps,
            momentum,
        } => (
            vec![*weight, *bias, *running_mean, *running_var],
            vec![("eps", eps.to_string()), ("momentum", momentum.to_string())],
            None,
        ),
        Op::LayerNorm { weight, bias, eps } | Op::InstanceNorm { weight, bias, eps } => {
            (vec![*weight, *bias], vec![("eps", eps.to_string())], None)
        }
        Op::GroupNorm {
            weight,
            bias,
            groups,
            eps,
        } => (
            vec![*weight, *bias],
            vec![("groups", groups.to_string()), ("eps", eps.to_string())],
            None,
        ),
        Op::Lrn {
            size,
            alpha,
            beta,
            bias,
        } => (
            Vec::new(),
            vec![
                ("size", size.to_string()),
                ("alpha", alpha.to_string()),
                ("beta", beta.to_string()),
                ("bias", bias.to_string()),
            ],
            None,
        ),
        Op::Affine { scale, shift } => (vec![*scale, *shift], Attrs::new(), None),
        Op::Dropout { p } | Op::AlphaDropout { p } => (Vec::new(), vec![("p", p.to_string())], None),
        Op::DropBlock { p, block } => (
            Vec::new(),
            vec![("p", p.to_string()), ("block", block.to_string())],
            None,
        ),
    }
}

fn with_bias(weight: ParamId, bias: Option<ParamId>) -> Vec<ParamId> {
    let mut params = vec![weight];
    params.extend(bias);
    params
}

fn pads_text(pads: [u32; 4]) -> String {
    let [t, l, b, r] = pads;
    format!("[{t},{l},{b},{r}]")
}

/// An activation's attributes; a PReLU's slope is a parameter, printed by
/// the caller (an operand standalone, `weight=@W` in an epilogue).
fn act_attrs(act: &Act) -> Attrs {
    match act {
        Act::LeakyRelu { alpha } | Act::Elu { alpha } => vec![("alpha", alpha.to_string())],
        Act::Rrelu { lower, upper } => {
            vec![("lower", lower.to_string()), ("upper", upper.to_string())]
        }
        Act::Softplus { beta } => vec![("beta", beta.to_string())],
        Act::Maxout { pieces } => vec![("pieces", pieces.to_string())],
        Act::Sigmoid | Act::Tanh | Act::Relu | Act::Prelu { .. } | Act::Selu | Act::Gelu | Act::Silu | Act::Softmax => {
            Attrs::new()
        }
    }
}

fn step_text(module: &Module, step: &EpilogueStep) -> String {
    match step {
        EpilogueStep::Affine { scale, shift } => format!(
            "affine scale={} shift={}",
            param_ref(module, *scale),
            param_ref(module, *shift)
        ),
        EpilogueStep::Act(act) => {
            let mut text = act.name().to_string();
            if let Act::Prelu { weight } = act {
                let _ = write!(text, " weight={}", param_ref(module, *weight));
            }
            for (key, value) in act_attrs(act) {
                let _ = write!(text, " {key}={value}");
            }
            text
        }
        EpilogueStep::Add => "add".to_string(),
        EpilogueStep::MaxPool { window } => format!("maxpool window={window}"),
    }
}
