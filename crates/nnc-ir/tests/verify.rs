//! The verifier: good modules pass, and each broken invariant is caught
//! and located.

#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use common::{everything, seed_mlp};
use nnc_ir::text::{parse_module, print_module, print_module_with_errors};
use nnc_ir::verify::{verify, VerifyError};
use nnc_ir::{
    BinaryOp, Derivation, Function, Mode, Module, Op, OpId, ParamData, ParamId, ParamRole, ParamSource, ValueId,
    ValueType,
};

/// The errors of a module that must fail verification.
fn errors(m: &Module) -> Vec<VerifyError> {
    match verify(m) {
        Ok(()) => panic!("verified:\n{}", print_module(m)),
        Err(e) => e,
    }
}

/// Exactly one error, containing `needle`.
fn only_error(m: &Module, needle: &str) -> VerifyError {
    let errors = errors(m);
    assert_eq!(errors.len(), 1, "{errors:#?}");
    let e = errors.into_iter().next().unwrap();
    assert!(e.message.contains(needle), "expected {needle:?} in {e}");
    e
}

fn infer(m: &mut Module) -> &mut Function {
    m.function_mut(Mode::Infer).unwrap()
}

fn param_id(m: &Module, name: &str) -> ParamId {
    m.param_by_name(name).unwrap()
}

#[test]
fn good_modules_pass() {
    verify(&seed_mlp()).unwrap();
    verify(&everything()).unwrap();
    verify(&Module::new("Empty")).unwrap();
    // And what the parser builds from their text.
    verify(&parse_module(&print_module(&everything())).unwrap()).unwrap();
}

#[test]
fn wrong_declared_type() {
    let mut m = seed_mlp();
    let f = infer(&mut m);
    let result = f.ops[2].result;
    f.values[result.0 as usize] = ValueType::new([11]);
    let e = only_error(
        &m,
        "softmax result is declared f32[N,11] but its shape rule gives f32[N,10]",
    );
    assert_eq!((e.mode, e.op), (Some(Mode::Infer), Some(OpId(2))));
}

#[test]
fn shape_rule_failure() {
    let mut m = seed_mlp();
    // The softmax's argument now has the wrong type for layer1's weight.
    let w = param_id(&m, "layer0.weight'");
    if let Op::Linear { weight, .. } = &mut infer(&mut m).ops[1].op {
        *weight = w;
    }
    let e = only_error(&m, "linear: linear expects f32[N,800], got f32[N,750]");
    assert_eq!(e.op, Some(OpId(1)));
}

#[test]
fn use_before_def() {
    let mut m = seed_mlp();
    let f = infer(&mut m);
    let later = f.ops[1].result;
    f.ops[1].args[0] = later;
    let errors = errors(&m);
    assert!(
        errors
            .iter()
            .any(|e| e.op == Some(OpId(1))
                && e.message == format!("linear reads value #{} before it is defined", later.0))
    );
}

#[test]
fn value_defined_twice_and_input_redefined() {
    let mut m = seed_mlp();
    let f = infer(&mut m);
    f.ops[2].result = f.ops[1].result;
    let found = errors(&m);
    assert_eq!(
        found[0],
        VerifyError::op(Mode::Infer, OpId(2), "softmax redefines value #2")
    );
    // Value #3 lost its definition, and it is the output.
    assert_eq!(
        found[1],
        VerifyError::function(Mode::Infer, "output value #3 is not defined")
    );

    let mut m = seed_mlp();
    let f = infer(&mut m);
    f.ops[0].result = f.input;
    assert!(errors(&m)
        .iter()
        .any(|e| e.message == "linear redefines the function input"));
}

#[test]
fn arity() {
    let mut m = seed_mlp();
    let f = infer(&mut m);
    let x = f.ops[1].args[0];
    f.ops[2].args.push(x);
    let e = only_error(&m, "softmax takes 1 argument(s), got 2");
    assert_eq!(e.op, Some(OpId(2)));
}

#[test]
fn output_not_defined() {
    let mut m = seed_mlp();
    let f = infer(&mut m);
    f.output = f.add_value(ValueType::new([10]));
    let e = only_error(&m, "output value #4 is not defined");
    assert_eq!((e.mode, e.op), (Some(Mode::Infer), None));
}

#[test]
fn dangling_ids_are_reported_first_and_alone() {
    let mut m = seed_mlp();
    let f = infer(&mut m);
    if let Op::Linear { bias, .. } = &mut f.ops[0].op {
        *bias = Some(ParamId(99));
    }
    f.ops[1].args[0] = ValueId(42);
    f.output = ValueId(43);
    // A later check would also fail; it must not run (nor panic).
    f.values[1] = ValueType::new([1]);
    let errors = errors(&m);
    let messages: Vec<&str> = errors.iter().map(|e| e.message.as_str()).collect();
    assert_eq!(
        messages,
        [
            "output is value #43 but there are 4 values",
            "linear reads parameter #99 but the table has 8",
            "linear refers to value #42 but there are 4 values",
        ]
    );
    assert_eq!(errors[1].op, Some(OpId(0)));
    assert_eq!(errors[2].op, Some(OpId(1)));

    // In a derivation too.
    let mut m = seed_mlp();
    m.params.push(ParamData::derived(
        "ghost'",
        [750],
        ParamRole::Bias,
        Derivation::sqrt(Derivation::param(ParamId(1000))),
    ));
    let e = only_error(&m, "derivation of @ghost' reads parameter #1000 but the table has 9");
    assert_eq!(e.param, Some(ParamId(8)));
}

#[test]
fn cyclic_derivations() {
    let mut m = seed_mlp();
    let a = ParamId(m.params.len() as u32);
    let b = ParamId(a.0 + 1);
    let var = param_id(&m, "layer0.norm.running_var");
    m.add_param(ParamData::derived(
        "a'",
        [750],
        ParamRole::Bias,
        Derivation::binary(BinaryOp::Add, Derivation::param(var), Derivation::param(b)),
    ));
    m.add_param(ParamData::derived("b'", [750], ParamRole::Bias, Derivation::param(a)));
    let e = only_error(&m, "derivations form a cycle: @a' -> @b' -> @a'");
    assert_eq!(e.param, Some(a));

    // A derivation that reads itself.
    let mut m = seed_mlp();
    let id = ParamId(m.params.len() as u32);
    m.add_param(ParamData::derived(
        "self'",
        [750],
        ParamRole::Bias,
        Derivation::sqrt(Derivation::param(id)),
    ));
    only_error(&m, "cycle: @self' -> @self'");

    // Chains are fine: everything() has fc1.weight'' reading fc1.weight'.
    verify(&everything()).unwrap();
}

#[test]
fn duplicate_and_empty_param_names() {
    let mut m = seed_mlp();
    m.params[2].name = "layer0.weight".into();
    let e = only_error(&m, "parameter name @layer0.weight is also parameter #0's");
    assert_eq!(e.param, Some(ParamId(2)));

    let mut m = seed_mlp();
    m.params[3].name = String::new();
    only_error(&m, "parameter #3 has an empty name");

    let mut m = seed_mlp();
    m.params[3].name = "has space".into();
    only_error(&m, "characters outside");
}

#[test]
fn derivation_shape_mismatch_and_error() {
    let mut m = seed_mlp();
    let id = param_id(&m, "layer0.bias'");
    m.params[id.0 as usize].shape = vec![751];
    let errors = errors(&m);
    assert_eq!(
        errors[0],
        VerifyError::param(id, "@layer0.bias' is declared [751] but its derivation gives [750]")
    );
    // The declared shape is what ops see, so the linear reading it fails too.
    assert_eq!(
        errors[1],
        VerifyError::op(Mode::Infer, OpId(0), "linear: bias must have shape [750], got [751]")
    );
    let mut m = seed_mlp();
    let w = param_id(&m, "layer0.weight");
    let id = param_id(&m, "layer0.weight'");
    if let ParamSource::Derived(d) = &mut m.params[id.0 as usize].source {
        *d = Derivation::scale_cols(Derivation::param(w), Derivation::param(ParamId(2)));
    }
    only_error(
        &m,
        "derivation of @layer0.weight': scale_cols of [750, 800] needs a scale of [800]",
    );
}

#[test]
fn zero_dimension_param() {
    let mut m = everything();
    let id = param_id(&m, "fc1.weight''");
    m.params[id.0 as usize].shape = vec![8, 0];
    let errors = errors(&m);
    assert!(errors
        .iter()
        .any(|e| e.param == Some(id) && e.message.contains("zero dimension")));
}

#[test]
fn values_without_a_per_sample_axis() {
    // A maxout on `f32[N]` would index an empty shape in its shape rule.
    let mut m = Module::new("M");
    let mut f = Function::new(Mode::Infer, ValueType::new([4]));
    let x = f.add_value(ValueType::new(Vec::new()));
    let y = f.add_value(ValueType::new([1]));
    f.ops.push(nnc_ir::OpData {
        op: Op::Act(nnc_ir::Act::Maxout { pieces: 1 }),
        args: vec![x],
        result: y,
        layer: "m".into(),
        locs: Vec::new(),
    });
    f.output = y;
    m.functions.push(f);
    let found = errors(&m);
    assert!(found
        .iter()
        .any(|e| e.op == Some(OpId(0)) && e.message.contains("no per-sample axis")));

    let mut m = Module::new("M");
    m.functions.push(Function::new(Mode::Train, ValueType::new(Vec::new())));
    only_error(&m, "the input has type f32[N]");
}

#[test]
fn duplicate_modes() {
    let mut m = seed_mlp();
    let f = m.functions[0].clone();
    m.functions.push(f);
    let e = only_error(&m, "a second function for mode infer");
    assert_eq!((e.mode, e.op), (Some(Mode::Infer), None));
}

#[test]
fn text_form_names() {
    let mut m = seed_mlp();
    m.name = "Seed Mlp".into();
    only_error(&m, "module name `Seed Mlp` is not an identifier");
    let mut m = seed_mlp();
    m.notes.push("two\nlines".into());
    only_error(&m, "spans lines");
    let mut m = seed_mlp();
    infer(&mut m).ops[0].layer = "layer-0".into();
    let e = only_error(&m, "layer name `layer-0`");
    assert_eq!(e.op, Some(OpId(0)));
}

#[test]
fn errors_display_where_they_are() {
    let op = VerifyError::op(Mode::Train, OpId(3), "bad");
    assert_eq!(op.to_string(), "@train, op 3: bad");
    assert_eq!(VerifyError::function(Mode::Infer, "x").to_string(), "@infer: x");
    assert_eq!(VerifyError::param(ParamId(2), "y").to_string(), "param #2: y");
    assert_eq!(VerifyError::module("z").to_string(), "z");
}

#[test]
fn errors_print_after_the_lines_they_are_about() {
    let mut m = seed_mlp();
    let f = infer(&mut m);
    let result = f.ops[1].result;
    f.values[result.0 as usize] = ValueType::new([11]);
    m.params[2].name = "layer0.weight".into();
    let errors = errors(&m);
    let text = print_module_with_errors(&m, &errors);
    assert!(
        text.contains(
            "  %2: f32[N,11] = linear[layer1] %1, @layer1.weight loc(4:5)\n  \
             // error: linear result is declared f32[N,11] but its shape rule gives f32[N,10]\n  %3:"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "param @layer0.weight: f32[750] norm_weight = init ones constant(value=1)\n\
             // error: parameter name @layer0.weight is also parameter #0's\n"
        ),
        "{text}"
    );
    let header = VerifyError::module("whole module");
    let func = VerifyError::function(Mode::Infer, "whole function");
    let text = print_module_with_errors(&seed_mlp(), &[header, func]);
    assert!(text.starts_with("model SeedMlp\n// note: drop-redundant-bias: removed @layer0.bias (batch norm layer0 subtracts the mean)\n// error: whole module\n\n"), "{text}");
    assert!(
        text.contains("-> f32[N,10] {\n  // error: whole function\n  %1:"),
        "{text}"
    );
    // The marks are comments: the text still parses to the same module.
    assert_eq!(parse_module(&text).unwrap(), seed_mlp());
}
