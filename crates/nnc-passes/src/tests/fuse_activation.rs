use super::*;
use crate::fuse_activation;
use nnc_ir::{Act, EpilogueStep};

fn epilogue(op: &OpData) -> &[EpilogueStep] {
    match &op.op {
        Op::Linear { epilogue, .. } | Op::Conv2d { epilogue, .. } => &epilogue.steps,
        other => panic!("{} has no epilogue", other.name()),
    }
}

#[test]
fn fuses_a_whole_chain() {
    // linear → affine → relu → sigmoid → linear
    let mut b = Build::new(Mode::Infer, &[8]);
    let x = b.linear(b.input(), "layer0", 4, true);
    let scale = b.stored("layer0.norm.scale", &[4], ParamRole::Scale);
    let shift = b.stored("layer0.norm.shift", &[4], ParamRole::Shift);
    let x = b.op(Op::Affine { scale, shift }, &[x], "layer0");
    let x = b.op(Op::Act(Act::Relu), &[x], "layer0");
    let x = b.op(Op::Act(Act::Sigmoid), &[x], "layer1");
    b.linear(x, "layer2", 2, true);
    let mut m = b.finish();
    assert!(run_twice(fuse_activation, &mut m, Mode::Infer));
    assert_eq!(op_names(&m, Mode::Infer), ["linear", "linear"]);
    let f = func(&m, Mode::Infer);
    let fused = &f.ops[0];
    assert_eq!(
        epilogue(fused),
        [
            EpilogueStep::Affine { scale, shift },
            EpilogueStep::Act(Act::Relu),
            EpilogueStep::Act(Act::Sigmoid)
        ]
    );
    assert_eq!(fused.locs.iter().map(|l| l.line).collect::<Vec<_>>(), [2, 3, 4, 5]);
    assert_eq!(f.ops[1].args, [fused.result]);
}

#[test]
fn fuses_into_a_conv_with_prelu_and_keeps_the_output() {
    let mut b = Build::new(Mode::Infer, &[2, 5, 5]);
    let x = b.conv(b.input(), "layer0", 4, 3, 1, 1);
    let weight = b.stored("layer0.act.weight", &[4], ParamRole::ActWeight);
    b.op(Op::Act(Act::Prelu { weight }), &[x], "layer0");
    let mut m = b.finish();
    assert!(run_twice(fuse_activation, &mut m, Mode::Infer));
    assert_eq!(op_names(&m, Mode::Infer), ["conv2d"]);
    let f = func(&m, Mode::Infer);
    assert_eq!(epilogue(&f.ops[0]), [EpilogueStep::Act(Act::Prelu { weight })]);
    assert_eq!(f.output, f.ops[0].result);
}

#[test]
fn softmax_and_maxout_stay_separate() {
    for act in [Act::Softmax, Act::Maxout { pieces: 2 }] {
        let mut b = Build::new(Mode::Infer, &[8]);
        let x = b.linear(b.input(), "layer0", 4, true);
        b.op(Op::Act(act), &[x], "layer0");
        assert_no_fire(fuse_activation, &mut b.finish(), Mode::Infer);
    }
}

#[test]
fn linear_with_two_users_is_not_fused() {
    let mut b = Build::new(Mode::Infer, &[8]);
    let x = b.linear(b.input(), "layer0", 4, true);
    let y = b.op(Op::Act(Act::Relu), &[x], "layer1");
    b.op(Op::Add, &[y, x], "res");
    assert_no_fire(fuse_activation, &mut b.finish(), Mode::Infer);
}

#[test]
fn linear_that_is_also_the_output_is_not_fused() {
    let mut b = Build::new(Mode::Infer, &[8]);
    let x = b.linear(b.input(), "layer0", 4, true);
    b.op(Op::Act(Act::Relu), &[x], "layer0");
    let mut m = b.finish();
    m.function_mut(Mode::Infer).unwrap().output = x;
    assert_no_fire(fuse_activation, &mut m, Mode::Infer);
}

#[test]
fn activation_after_a_non_linear_op_is_not_fused() {
    let mut b = Build::new(Mode::Infer, &[2, 4, 4]);
    let x = b.op(Op::Flatten, &[b.input()], "layer0");
    b.op(Op::Act(Act::Relu), &[x], "layer1");
    assert_no_fire(fuse_activation, &mut b.finish(), Mode::Infer);
}

#[test]
fn does_not_fire_in_train_mode() {
    let mut b = Build::new(Mode::Train, &[8]);
    let x = b.linear(b.input(), "layer0", 4, true);
    b.op(Op::Act(Act::Relu), &[x], "layer0");
    assert_no_fire(fuse_activation, &mut b.finish(), Mode::Train);
}
