use super::*;
use crate::eliminate_dropout;
use nnc_ir::Act;

/// linear(dropconnect) → dropout → conv-free chain of every dropout kind.
fn with_every_dropout() -> Module {
    let mut b = Build::new(Mode::Infer, &[2, 6, 6]);
    let x = b.op(Op::DropBlock { p: 0.1, block: 3 }, &[b.input()], "layer0");
    let x = b.op(Op::Flatten, &[x], "layer1");
    let x = b.linear(x, "layer2", 8, true);
    let x = b.op(Op::Dropout { p: 0.5 }, &[x], "layer2");
    let x = b.op(Op::Act(Act::Selu), &[x], "layer3");
    b.op(Op::AlphaDropout { p: 0.2 }, &[x], "layer3");
    let mut m = b.finish();
    let f = m.function_mut(Mode::Infer).unwrap();
    if let Op::Linear { dropconnect, .. } = &mut f.ops[2].op {
        *dropconnect = Some(0.3);
    }
    m
}

#[test]
fn removes_every_kind_and_rewires_readers() {
    let mut m = with_every_dropout();
    assert!(run_twice(eliminate_dropout, &mut m, Mode::Infer));
    assert_eq!(op_names(&m, Mode::Infer), ["flatten", "linear", "selu"]);
    let f = func(&m, Mode::Infer);
    assert_eq!(f.ops[0].args, [f.input], "flatten reads the input the dropblock read");
    assert_eq!(f.ops[1].args, [f.ops[0].result]);
    assert_eq!(
        f.ops[2].args,
        [f.ops[1].result],
        "selu reads the linear the dropout read"
    );
    assert_eq!(f.output, f.ops[2].result, "the output was the alpha dropout's");
    assert!(matches!(f.ops[1].op, Op::Linear { dropconnect: None, .. }));
}

#[test]
fn clears_dropconnect_alone() {
    let mut b = Build::new(Mode::Infer, &[8]);
    b.linear(b.input(), "layer0", 4, true);
    let mut m = b.finish();
    let f = m.function_mut(Mode::Infer).unwrap();
    if let Op::Linear { dropconnect, .. } = &mut f.ops[0].op {
        *dropconnect = Some(0.3);
    }
    assert!(run_twice(eliminate_dropout, &mut m, Mode::Infer));
    assert!(matches!(
        func(&m, Mode::Infer).ops[0].op,
        Op::Linear { dropconnect: None, .. }
    ));
}

#[test]
fn does_not_fire_without_dropout() {
    let mut b = Build::new(Mode::Infer, &[8]);
    let x = b.linear(b.input(), "layer0", 4, true);
    b.op(Op::Act(Act::Relu), &[x], "layer0");
    assert_no_fire(eliminate_dropout, &mut b.finish(), Mode::Infer);
}

#[test]
fn does_not_fire_in_train_mode() {
    let mut b = Build::new(Mode::Train, &[8]);
    b.op(Op::Dropout { p: 0.5 }, &[b.input()], "layer0");
    assert_no_fire(eliminate_dropout, &mut b.finish(), Mode::Train);
}

#[test]
fn no_function_of_the_mode_is_a_no_op() {
    let mut b = Build::new(Mode::Train, &[8]);
    b.op(Op::Dropout { p: 0.5 }, &[b.input()], "layer0");
    assert_no_fire(eliminate_dropout, &mut b.finish(), Mode::Infer);
}
