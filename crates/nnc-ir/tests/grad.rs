//! The grad stage in the IR: the backward a small module gets, its
//! invariants caught by the verifier, and its text checked on parsing.

#![allow(clippy::unwrap_used, clippy::panic)]

use nnc_ir::grad::build::{build, default_loss};
use nnc_ir::grad::{Loss, Saved, StepKind, Target};
use nnc_ir::text::{parse_module, print_module};
use nnc_ir::verify::verify;
use nnc_ir::{Mode, Module, ValueId};

/// input → linear → tanh → dropout → linear (+ l2) → softmax, with a
/// residual-free second reader of the tanh: the dropout.
const TRAIN: &str = "model T

param @a.weight: f32[4,3] weight = init he_normal fan_in=3 fan_out=4 normal(mean=0, std=0.5) l2=0.01
param @a.bias: f32[4] bias = init zeros constant(value=0)
param @b.weight: f32[2,4] weight = init he_normal fan_in=4 fan_out=2 normal(mean=0, std=0.5)

func @train(%0: f32[N,3]) -> f32[N,2] {
  %1: f32[N,4] = linear[a] %0, @a.weight, @a.bias
  %2: f32[N,4] = tanh[a] %1
  %3: f32[N,4] = dropout[a] %2 p=0.5
  %4: f32[N,2] = linear[b] %3, @b.weight
  %5: f32[N,2] = softmax[b] %4
  return %5
}
";

fn module() -> Module {
    let mut m = parse_module(TRAIN).unwrap();
    let loss = default_loss(m.function(Mode::Train).unwrap());
    m.backward = Some(build(&m, loss).unwrap());
    m
}

#[test]
fn the_backward_follows_the_rules() {
    let m = module();
    verify(&m).unwrap();
    let b = m.backward.as_ref().unwrap();
    assert_eq!(b.loss, Loss::CrossEntropy { label_smoothing: 0.0 });
    assert_eq!(b.target, Target::Classes { classes: 2 });
    let kinds: Vec<String> = b.steps.iter().map(|s| format!("{:?}", s.kind)).collect();
    // The softmax is fused into the loss, which starts from its input %4;
    // then b, the dropout, tanh and a; a's input needs no gradient; a's
    // weight has a penalty.
    assert_eq!(
        kinds,
        [
            "Loss { of: ValueId(4), fused: true }",
            "Vjp { of: ValueId(4) }",
            "Vjp { of: ValueId(3) }",
            "Vjp { of: ValueId(2) }",
            "Vjp { of: ValueId(1) }",
            "Penalty { param: ParamId(0) }"
        ]
    );
    assert_eq!(b.steps[4].result, None, "no gradient for the model's input");
    // tanh keeps its output, which b reads too: one saved value for both.
    assert_eq!(
        b.saved,
        [
            Saved::Value(ValueId(0)),
            Saved::Value(ValueId(2)),
            Saved::Value(ValueId(3)),
            Saved::Record(ValueId(3)),
            Saved::Value(ValueId(4))
        ]
    );
    let text = print_module(&m);
    assert!(text.contains("return %5 saving %0, %2, %3, mask(%3), %4"), "{text}");
    assert!(text.contains("penalty[a] @a.weight l2=0.01"), "{text}");
    assert_eq!(print_module(&parse_module(&text).unwrap()), text);
}

#[test]
fn the_verifier_catches_a_broken_backward() {
    let mut m = module();
    let b = m.backward.as_mut().unwrap();
    b.saved.pop();
    let e = verify(&m).unwrap_err();
    assert!(e.iter().any(|e| e.message.contains("saved list")), "{e:?}");

    let mut m = module();
    let b = m.backward.as_mut().unwrap();
    b.steps.swap(1, 2);
    let e = verify(&m).unwrap_err();
    assert!(e.iter().any(|e| e.message.contains("before it is defined")), "{e:?}");

    let mut m = module();
    let b = m.backward.as_mut().unwrap();
    b.steps[2].kind = StepKind::Vjp { of: ValueId(4) };
    let e = verify(&m).unwrap_err();
    assert!(
        e.iter().any(|e| e.message.contains("not of its result's type")),
        "{e:?}"
    );

    let mut m = module();
    m.backward.as_mut().unwrap().target = Target::Classes { classes: 3 };
    let e = verify(&m).unwrap_err();
    assert!(
        e.iter().any(|e| e.message.contains("cross-entropy over 3 classes")),
        "{e:?}"
    );
}

#[test]
fn the_parser_checks_the_text_against_the_rules() {
    let text = print_module(&module());
    for (from, to, needle) in [
        ("reads(%2)", "reads(%1)", "reads other values"),
        ("saving %0, %2,", "saving %0,", "not what the backward reads"),
        ("tanh.vjp", "relu.vjp", "made by tanh"),
        ("l2=0.01\n}", "l2=0.02\n}", "has l1=0 l2=0.01"),
        ("loss=cross_entropy", "loss=hinge", "unknown loss `hinge`"),
        ("mask(%3)", "stats(%3)", "records its mask"),
    ] {
        assert!(text.contains(from), "{from} not in {text}");
        let broken = text.replacen(from, to, 1);
        let e = parse_module(&broken).unwrap_err();
        assert!(e.message.contains(needle), "{from} → {to}: {e}");
    }
}

#[test]
fn a_loss_that_does_not_fit_is_refused() {
    let mut m = parse_module(TRAIN).unwrap();
    let f = m.function_mut(Mode::Train).unwrap();
    f.output = ValueId(2);
    f.ops.truncate(2);
    // [4] outputs: cross-entropy still fits; on images it would not.
    assert!(build(&m, Loss::CrossEntropy { label_smoothing: 0.0 }).is_ok());
    assert!(build(&Module::new("E"), Loss::Mse).is_err(), "no train function");
}
