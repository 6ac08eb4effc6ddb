use super::*;
use crate::{dce, fold_batchnorm};
use nnc_ir::Act;

fn param_names(m: &Module) -> Vec<&str> {
    m.params.iter().map(|p| p.name.as_str()).collect()
}

#[test]
fn removes_a_dead_chain_its_values_and_params() {
    // %1 = linear0(%0) (dead), %2 = relu(%1) (dead), %3 = linear1(%0) (output)
    let mut b = Build::new(Mode::Infer, &[8]);
    let x = b.linear(b.input(), "layer0", 4, true);
    b.op(Op::Act(Act::Relu), &[x], "layer0");
    let y = b.linear(b.input(), "layer1", 3, true);
    b.f.output = y;
    let mut m = b.finish();
    assert!(run_twice(dce, &mut m, Mode::Infer));
    assert_eq!(op_names(&m, Mode::Infer), ["linear"]);
    assert_eq!(param_names(&m), ["layer1.weight", "layer1.bias"]);
    let f = func(&m, Mode::Infer);
    assert_eq!(f.values, [ValueType::new([8]), ValueType::new([3])]);
    assert_eq!(
        (f.input, f.output, f.ops[0].result),
        (ValueId(0), ValueId(1), ValueId(1))
    );
    assert_eq!(f.ops[0].op.params(), [ParamId(0), ParamId(1)]);
}

#[test]
fn keeps_the_sources_of_derived_params_and_renumbers_derivations() {
    // After folding, the originals are read only through layer0.weight' and
    // layer0.bias'; an unused stored param sits in front of them all.
    let mut b = Build::new(Mode::Infer, &[8]);
    b.stored("unused.weight", &[2, 2], ParamRole::Weight);
    let x = b.linear(b.input(), "layer0", 4, true);
    b.bn(x, "layer0");
    let mut m = b.finish();
    assert!(fold_batchnorm(&mut m, Mode::Infer));
    assert!(run_twice(dce, &mut m, Mode::Infer));
    assert_eq!(param_names(&m)[0], "layer0.weight");
    assert_eq!(m.params.len(), 8, "everything but unused.weight");
    let (w, _) = crate::rewrite::weights(&func(&m, Mode::Infer).ops[0].op).unwrap();
    assert_eq!(name(&m, w), "layer0.weight'");
    assert!(derivation(&m, w).starts_with("scale_rows(@layer0.weight, (@layer0.norm.weight / sqrt("));
    assert_eq!(func(&m, Mode::Infer).values.len(), 2, "the norm's result value is gone");
}

#[test]
fn keeps_params_another_function_reads() {
    let mut b = Build::new(Mode::Train, &[8]);
    b.linear(b.input(), "layer0", 4, true);
    let mut m = b.finish();
    let mut infer = Function::new(Mode::Infer, ValueType::new([8]));
    infer
        .push(&m.params, Op::Act(Act::Relu), vec![ValueId(0)], "layer1", Vec::new())
        .unwrap();
    m.functions.push(infer);
    assert_no_fire(dce, &mut m, Mode::Infer);
    // With the train function gone, the linear's params are dead.
    m.functions.remove(0);
    assert!(run_twice(dce, &mut m, Mode::Infer));
    assert!(m.params.is_empty());
}

#[test]
fn keeps_a_train_batch_norm_whose_result_is_unused() {
    let mut b = Build::new(Mode::Train, &[8]);
    b.bn(b.input(), "layer0");
    b.f.output = b.input();
    assert_no_fire(dce, &mut b.finish(), Mode::Train);
}

#[test]
fn renumbers_values_in_program_order() {
    // Values left by a removed op: %1 is defined by nothing.
    let mut b = Build::new(Mode::Infer, &[8]);
    let x = b.op(Op::Dropout { p: 0.5 }, &[b.input()], "layer0");
    b.op(Op::Act(Act::Relu), &[x], "layer1");
    let mut m = b.finish();
    assert!(crate::eliminate_dropout(&mut m, Mode::Infer));
    assert_eq!(func(&m, Mode::Infer).ops[0].result, ValueId(2));
    // Renumbering alone is invisible in the text form: not a change.
    assert!(!run_twice(dce, &mut m, Mode::Infer));
    let f = func(&m, Mode::Infer);
    assert_eq!(
        (f.ops[0].args[0], f.ops[0].result, f.output),
        (ValueId(0), ValueId(1), ValueId(1))
    );
    assert_eq!(f.values.len(), 2);
}

#[test]
fn a_clean_module_does_not_fire() {
    let mut b = Build::new(Mode::Infer, &[8]);
    let x = b.linear(b.input(), "layer0", 4, true);
    b.op(Op::Act(Act::Relu), &[x], "layer0");
    assert_no_fire(dce, &mut b.finish(), Mode::Infer);
}
