use super::eval::{assert_close, input, run};
use super::*;
use crate::drop_redundant_bias;
use nnc_ir::{Act, EpilogueStep};

/// linear(bias) → batch norm, in `mode`, the bias initialised to `bias_init`
/// (`None`: drawn from a normal).
fn linear_bn(mode: Mode, bias_init: Option<f32>) -> Module {
    let mut b = Build::new(mode, &[8]);
    let x = b.linear(b.input(), "layer0", 4, true);
    b.bn(x, "layer0");
    let mut m = b.finish();
    if let Some(value) = bias_init {
        let id = m.param_by_name("layer0.bias").unwrap();
        m.params[id.0 as usize].source = ParamSource::Init(Init::constant("constant", value));
    }
    m
}

fn bias_of(m: &Module, mode: Mode) -> Option<ParamId> {
    crate::rewrite::weights(&func(m, mode).ops[0].op).unwrap().1
}

#[test]
fn train_drops_a_zero_initialised_bias() {
    let mut m = linear_bn(Mode::Train, Some(0.0));
    assert!(run_twice(drop_redundant_bias, &mut m, Mode::Train));
    assert_eq!(bias_of(&m, Mode::Train), None);
    assert_eq!(
        m.notes,
        ["drop-redundant-bias: removed @layer0.bias from train (zero-initialised, and batch norm layer0 subtracts the batch mean)"]
    );
    let Op::BatchNorm { running_mean, .. } = func(&m, Mode::Train).ops[1].op else {
        panic!()
    };
    assert_eq!(
        name(&m, running_mean),
        "layer0.norm.running_mean",
        "train keeps its running mean"
    );
}

#[test]
fn train_keeps_a_bias_with_another_init() {
    for init in [None, Some(0.1)] {
        assert_no_fire(drop_redundant_bias, &mut linear_bn(Mode::Train, init), Mode::Train);
    }
}

#[test]
fn infer_drops_any_bias_into_the_running_mean() {
    let mut m = linear_bn(Mode::Infer, None);
    assert!(run_twice(drop_redundant_bias, &mut m, Mode::Infer));
    assert_eq!(bias_of(&m, Mode::Infer), None);
    let Op::BatchNorm { running_mean, .. } = func(&m, Mode::Infer).ops[1].op else {
        panic!()
    };
    assert_eq!(name(&m, running_mean), "layer0.norm.running_mean'");
    assert_eq!(m.param(running_mean).role, ParamRole::RunningMean);
    assert_eq!(
        derivation(&m, running_mean),
        "(@layer0.norm.running_mean - @layer0.bias)"
    );
    assert_eq!(m.notes.len(), 1);
    assert!(m.notes[0].starts_with("drop-redundant-bias: removed @layer0.bias from infer"));
}

#[test]
fn infer_keeps_the_numbers() {
    let m = linear_bn(Mode::Infer, None);
    let mut dropped = m.clone();
    assert!(drop_redundant_bias(&mut dropped, Mode::Infer));
    let x = input(&[8]);
    assert_close(
        &run(&dropped, func(&dropped, Mode::Infer), &x),
        &run(&m, func(&m, Mode::Infer), &x),
    );
}

#[test]
fn both_modes_edit_only_their_own_function() {
    let mut m = linear_bn(Mode::Train, Some(0.0));
    let mut infer = m.functions[0].clone();
    infer.mode = Mode::Infer;
    m.functions.push(infer);
    assert!(run_twice(drop_redundant_bias, &mut m, Mode::Train));
    assert!(bias_of(&m, Mode::Infer).is_some(), "infer untouched by the train run");
    assert!(run_twice(drop_redundant_bias, &mut m, Mode::Infer));
    assert_eq!((bias_of(&m, Mode::Train), bias_of(&m, Mode::Infer)), (None, None));
    assert_eq!(m.notes.len(), 2);
}

#[test]
fn conv_before_batch_norm() {
    let mut b = Build::new(Mode::Infer, &[2, 5, 5]);
    let x = b.conv(b.input(), "layer0", 4, 3, 1, 1);
    b.bn(x, "layer0");
    let mut m = b.finish();
    assert!(run_twice(drop_redundant_bias, &mut m, Mode::Infer));
    assert_eq!(bias_of(&m, Mode::Infer), None);
}

#[test]
fn an_epilogue_in_between_keeps_the_bias() {
    let mut m = linear_bn(Mode::Infer, Some(0.0));
    if let Op::Linear { epilogue, .. } = &mut m.functions[0].ops[0].op {
        epilogue.steps.push(EpilogueStep::Act(Act::Relu));
    }
    assert_no_fire(drop_redundant_bias, &mut m, Mode::Infer);
}

#[test]
fn another_reader_keeps_the_bias() {
    let mut b = Build::new(Mode::Infer, &[8]);
    let x = b.linear(b.input(), "layer0", 4, true);
    let y = b.bn(x, "layer0");
    b.op(Op::Add, &[y, x], "res");
    assert_no_fire(drop_redundant_bias, &mut b.finish(), Mode::Infer);
}

#[test]
fn no_batch_norm_keeps_the_bias() {
    let mut b = Build::new(Mode::Train, &[8]);
    let x = b.linear(b.input(), "layer0", 4, true);
    b.op(Op::Act(Act::Relu), &[x], "layer0");
    assert_no_fire(drop_redundant_bias, &mut b.finish(), Mode::Train);
}
