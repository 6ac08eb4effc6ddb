use super::eval::{assert_close, input, run};
use super::*;
use crate::fold_batchnorm;
use nnc_ir::{Act, EpilogueStep};

const S0: &str = "(@layer0.norm.weight / sqrt((@layer0.norm.running_var + 0.00001)))";
const S1: &str = "(@layer1.norm.weight / sqrt((@layer1.norm.running_var + 0.00001)))";

fn weight_and_bias(op: &OpData) -> (ParamId, Option<ParamId>) {
    crate::rewrite::weights(&op.op).unwrap()
}

fn lines(op: &OpData) -> Vec<u32> {
    op.locs.iter().map(|l| l.line).collect()
}

/// linear → batch norm (A).
fn after_linear(bias: bool) -> Module {
    let mut b = Build::new(Mode::Infer, &[8]);
    let x = b.linear(b.input(), "layer0", 4, bias);
    b.bn(x, "layer0");
    b.finish()
}

/// linear → relu → batch norm → `next` (B when `next` allows it).
fn after_activation(next: impl FnOnce(&mut Build, ValueId) -> ValueId) -> Module {
    let mut b = Build::new(Mode::Infer, &[8]);
    let x = b.linear(b.input(), "layer0", 6, true);
    let x = b.op(Op::Act(Act::Relu), &[x], "layer0");
    let x = b.bn(x, "layer1");
    next(&mut b, x);
    b.finish()
}

/// conv → relu → batch norm → conv with this padding and groups.
fn conv_after_activation(pad: u32, groups: u32) -> Module {
    let mut b = Build::new(Mode::Infer, &[2, 5, 5]);
    let x = b.conv(b.input(), "layer0", 4, 3, 1, 1);
    let x = b.op(Op::Act(Act::Relu), &[x], "layer0");
    let x = b.bn(x, "layer1");
    b.conv(x, "layer2", 4, 2, pad, groups);
    b.finish()
}

#[test]
fn folds_into_the_linear_before() {
    let mut m = after_linear(true);
    assert!(run_twice(fold_batchnorm, &mut m, Mode::Infer));
    assert_eq!(op_names(&m, Mode::Infer), ["linear"]);
    let linear = output_op(&m, Mode::Infer);
    let (w, b) = weight_and_bias(linear);
    assert_eq!(name(&m, w), "layer0.weight'");
    assert_eq!(derivation(&m, w), format!("scale_rows(@layer0.weight, {S0})"));
    let b = b.unwrap();
    assert_eq!(name(&m, b), "layer0.bias'");
    assert_eq!(m.param(b).role, ParamRole::Bias);
    assert_eq!(
        derivation(&m, b),
        format!("(((@layer0.bias - @layer0.norm.running_mean) * {S0}) + @layer0.norm.bias)")
    );
    assert_eq!(lines(linear), [2, 3], "the linear absorbs the norm's location");
}

#[test]
fn folds_into_a_linear_without_bias() {
    let mut m = after_linear(false);
    assert!(run_twice(fold_batchnorm, &mut m, Mode::Infer));
    let (_, b) = weight_and_bias(output_op(&m, Mode::Infer));
    let b = b.unwrap();
    assert_eq!(name(&m, b), "layer0.bias");
    assert_eq!(
        derivation(&m, b),
        format!("(@layer0.norm.bias - (@layer0.norm.running_mean * {S0}))")
    );
}

#[test]
fn folds_into_the_dense_after_an_activation() {
    let mut m = after_activation(|b, x| b.linear(x, "layer2", 3, true));
    assert!(run_twice(fold_batchnorm, &mut m, Mode::Infer));
    assert_eq!(op_names(&m, Mode::Infer), ["linear", "relu", "linear"]);
    let dense = output_op(&m, Mode::Infer);
    let (w, b) = weight_and_bias(dense);
    assert_eq!(name(&m, w), "layer2.weight'");
    assert_eq!(derivation(&m, w), format!("scale_cols(@layer2.weight, {S1})"));
    let t1 = format!("(@layer1.norm.bias - (@layer1.norm.running_mean * {S1}))");
    assert_eq!(
        derivation(&m, b.unwrap()),
        format!("(@layer2.bias + mat_vec(@layer2.weight, {t1}))")
    );
    assert_eq!(lines(dense), [5, 4]);
}

#[test]
fn folds_into_an_unpadded_ungrouped_conv_after() {
    let mut m = conv_after_activation(0, 1);
    assert!(run_twice(fold_batchnorm, &mut m, Mode::Infer));
    assert_eq!(op_names(&m, Mode::Infer), ["conv2d", "relu", "conv2d"]);
    let (w, _) = weight_and_bias(output_op(&m, Mode::Infer));
    assert_eq!(derivation(&m, w), format!("scale_cols(@layer2.weight, {S1})"));
}

/// Asserts that op `index` is the affine the norm of `layer` became.
fn assert_affine(m: &Module, index: usize, layer: &str) {
    let f = func(m, Mode::Infer);
    let Op::Affine { scale, shift } = f.ops[index].op else {
        panic!("op {index} is {}, not affine", f.ops[index].op.name());
    };
    assert_eq!(name(m, scale), format!("{layer}.norm.scale"));
    assert_eq!(name(m, shift), format!("{layer}.norm.shift"));
    assert_eq!(
        (m.param(scale).role, m.param(shift).role),
        (ParamRole::Scale, ParamRole::Shift)
    );
    let s = format!("(@{layer}.norm.weight / sqrt((@{layer}.norm.running_var + 0.00001)))");
    assert_eq!(derivation(m, scale), s);
    assert_eq!(
        derivation(m, shift),
        format!("(@{layer}.norm.bias - (@{layer}.norm.running_mean * {s}))")
    );
}

#[test]
fn padded_conv_after_gets_an_affine() {
    let mut m = conv_after_activation(1, 1);
    assert!(run_twice(fold_batchnorm, &mut m, Mode::Infer));
    assert_eq!(op_names(&m, Mode::Infer), ["conv2d", "relu", "affine", "conv2d"]);
    assert_affine(&m, 2, "layer1");
    let (w, _) = weight_and_bias(output_op(&m, Mode::Infer));
    assert_eq!(name(&m, w), "layer2.weight", "the padded conv keeps its weights");
}

#[test]
fn grouped_conv_after_gets_an_affine() {
    let mut m = conv_after_activation(0, 2);
    assert!(run_twice(fold_batchnorm, &mut m, Mode::Infer));
    assert_eq!(op_names(&m, Mode::Infer), ["conv2d", "relu", "affine", "conv2d"]);
}

#[test]
fn dense_with_dropconnect_after_gets_an_affine() {
    let mut m = after_activation(|b, x| b.linear(x, "layer2", 3, true));
    let f = m.function_mut(Mode::Infer).unwrap();
    if let Op::Linear { dropconnect, .. } = &mut f.ops[3].op {
        *dropconnect = Some(0.5);
    }
    assert!(run_twice(fold_batchnorm, &mut m, Mode::Infer));
    assert_eq!(op_names(&m, Mode::Infer), ["linear", "relu", "affine", "linear"]);
}

#[test]
fn input_with_two_users_is_not_folded() {
    // %1 = linear, %2 = bn(%1), %3 = add(%2, %1): the add needs the unfolded %1.
    let mut b = Build::new(Mode::Infer, &[8]);
    let x = b.linear(b.input(), "layer0", 4, true);
    let y = b.bn(x, "layer0");
    b.op(Op::Add, &[y, x], "res");
    let mut m = b.finish();
    assert!(run_twice(fold_batchnorm, &mut m, Mode::Infer));
    assert_eq!(op_names(&m, Mode::Infer), ["linear", "affine", "add"]);
    assert_affine(&m, 1, "layer0");
    let (w, _) = weight_and_bias(&func(&m, Mode::Infer).ops[0]);
    assert_eq!(name(&m, w), "layer0.weight");
}

#[test]
fn linear_with_an_epilogue_before_is_not_folded_into() {
    let mut m = after_linear(true);
    let f = m.function_mut(Mode::Infer).unwrap();
    if let Op::Linear { epilogue, .. } = &mut f.ops[0].op {
        epilogue.steps.push(EpilogueStep::Act(Act::Relu));
    }
    assert!(run_twice(fold_batchnorm, &mut m, Mode::Infer));
    assert_eq!(op_names(&m, Mode::Infer), ["linear", "affine"]);
}

#[test]
fn lone_batch_norm_becomes_an_affine() {
    let mut b = Build::new(Mode::Infer, &[3, 4, 4]);
    b.bn(b.input(), "layer0");
    let mut m = b.finish();
    assert!(run_twice(fold_batchnorm, &mut m, Mode::Infer));
    assert_eq!(op_names(&m, Mode::Infer), ["affine"]);
    assert_affine(&m, 0, "layer0");
}

#[test]
fn does_not_fire_in_train_mode() {
    let mut b = Build::new(Mode::Train, &[8]);
    let x = b.linear(b.input(), "layer0", 4, true);
    b.bn(x, "layer0");
    let mut m = b.finish();
    assert_no_fire(fold_batchnorm, &mut m, Mode::Train);
}

/// Folding must not change what the function computes: run both on one
/// input with the evaluator's numbers and compare to 1e-5.
fn assert_same_numbers(m: Module, input_shape: &[usize]) {
    let mut folded = m.clone();
    assert!(fold_batchnorm(&mut folded, Mode::Infer));
    assert!(!op_names(&folded, Mode::Infer).contains(&"batch_norm"));
    let x = input(input_shape);
    let expected = run(&m, func(&m, Mode::Infer), &x);
    assert_close(&run(&folded, func(&folded, Mode::Infer), &x), &expected);
}

#[test]
fn numbers_a_linear() {
    assert_same_numbers(after_linear(true), &[8]);
    assert_same_numbers(after_linear(false), &[8]);
}

#[test]
fn numbers_a_conv() {
    let mut b = Build::new(Mode::Infer, &[2, 5, 5]);
    let x = b.conv(b.input(), "layer0", 3, 3, 1, 1);
    b.bn(x, "layer0");
    assert_same_numbers(b.finish(), &[2, 5, 5]);
}

#[test]
fn numbers_b_linear() {
    let mut b = Build::new(Mode::Infer, &[6]);
    let x = b.bn(b.input(), "layer1");
    b.linear(x, "layer2", 3, true);
    assert_same_numbers(b.finish(), &[6]);
    let mut b = Build::new(Mode::Infer, &[6]);
    let x = b.bn(b.input(), "layer1");
    b.linear(x, "layer2", 3, false);
    assert_same_numbers(b.finish(), &[6]);
}

#[test]
fn numbers_b_conv_and_affine() {
    for pad in [0, 1] {
        let mut b = Build::new(Mode::Infer, &[2, 4, 4]);
        let x = b.bn(b.input(), "layer1");
        b.conv(x, "layer2", 3, 2, pad, 1);
        assert_same_numbers(b.finish(), &[2, 4, 4]);
    }
}
