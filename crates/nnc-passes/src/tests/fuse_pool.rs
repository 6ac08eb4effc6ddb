use super::*;
use crate::{fuse_activation, fuse_pool};
use nnc_ir::text::{parse_module, print_module};
use nnc_ir::{Act, EpilogueStep, PoolGeometry};

fn pool(kernel: u32, stride: u32, pads: [u32; 4]) -> Op {
    Op::MaxPool(PoolGeometry { kernel, stride, pads })
}

/// conv (6 × 6, 8 channels, 3 × 3 same) → relu → `then`, in infer mode.
fn conv_relu(then: Op) -> Module {
    let mut b = Build::new(Mode::Infer, &[2, 6, 6]);
    let x = b.conv(b.input(), "layer0", 8, 3, 1, 1);
    let x = b.op(Op::Act(Act::Relu), &[x], "layer0");
    let x = b.op(then, &[x], "layer1");
    b.linear_on_flat(x);
    b.finish()
}

impl Build {
    /// flatten → linear to 3 outputs, so that the pool is not the output.
    fn linear_on_flat(&mut self, x: ValueId) -> ValueId {
        let x = self.op(Op::Flatten, &[x], "flat");
        self.linear(x, "head", 3, true)
    }
}

#[test]
fn the_ir_in_and_out() {
    let mut m = conv_relu(pool(2, 2, [0; 4]));
    assert!(fuse_activation(&mut m, Mode::Infer));
    let before = print_module(&m);
    assert!(run_twice(fuse_pool, &mut m, Mode::Infer));
    let after = print_module(&m);
    // What changed, line by line: the conv takes the pool's type, step and
    // location, and the pool's line is gone.
    let lines = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|l| l.trim_start().starts_with('%'))
            .map(|l| l.trim().to_string())
            .collect()
    };
    let (before, after) = (lines(&before), lines(&after));
    assert_eq!(
        before[..2],
        [
            "%1: f32[N,8,6,6] = conv2d[layer0] %0, @layer0.weight, @layer0.bias kernel=3 stride=1 dilation=1 \
             groups=1 pads=[1,1,1,1] epilogue(relu) loc(2:1, 3:1)",
            "%2: f32[N,8,3,3] = maxpool[layer1] %1 kernel=2 stride=2 pads=[0,0,0,0] loc(4:1)",
        ]
    );
    assert_eq!(
        after[0],
        "%1: f32[N,8,3,3] = conv2d[layer0] %0, @layer0.weight, @layer0.bias kernel=3 stride=1 dilation=1 \
         groups=1 pads=[1,1,1,1] epilogue(relu, maxpool window=2) loc(2:1, 3:1, 4:1)"
    );
    assert_eq!(after[1], "%2: f32[N,72] = flatten[flat] %1 loc(5:1)");
    assert_eq!(after.len(), before.len() - 1);
    // The text form reads back as the same module.
    let text = print_module(&m);
    assert_eq!(print_module(&parse_module(&text).unwrap()), text);
}

#[test]
fn the_fused_conv_is_the_output_when_the_pool_was() {
    let mut b = Build::new(Mode::Infer, &[2, 7, 7]);
    let x = b.conv(b.input(), "layer0", 4, 3, 0, 1);
    b.op(pool(3, 3, [0; 4]), &[x], "layer1");
    let mut m = b.finish();
    assert!(run_twice(fuse_pool, &mut m, Mode::Infer));
    let f = func(&m, Mode::Infer);
    assert_eq!(op_names(&m, Mode::Infer), ["conv2d"]);
    assert_eq!(f.output, f.ops[0].result);
    // 7 − 3 + 1 = 5 rows, pooled by 3 (floor): 1.
    assert_eq!(f.value_type(f.output).dims, [4, 1, 1]);
    match &f.ops[0].op {
        Op::Conv2d { epilogue, .. } => assert_eq!(epilogue.steps, [EpilogueStep::MaxPool { window: 3 }]),
        other => panic!("{}", other.name()),
    }
    assert!(nnc_ir::verify::verify(&m).is_ok());
}

#[test]
fn overlapping_gapped_padded_and_average_pools_stay() {
    for op in [
        pool(3, 2, [0; 4]),
        pool(2, 3, [0; 4]),
        pool(2, 2, [1, 1, 0, 0]),
        pool(1, 1, [0; 4]),
        Op::AvgPool(PoolGeometry {
            kernel: 2,
            stride: 2,
            pads: [0; 4],
        }),
    ] {
        let mut m = conv_relu(op);
        assert!(fuse_activation(&mut m, Mode::Infer));
        assert_no_fire(fuse_pool, &mut m, Mode::Infer);
    }
}

#[test]
fn a_map_with_another_reader_stays() {
    let mut b = Build::new(Mode::Infer, &[2, 6, 6]);
    let x = b.conv(b.input(), "layer0", 8, 3, 1, 1);
    let pooled = b.op(pool(2, 2, [0; 4]), &[x], "layer1");
    let other = b.op(
        Op::AvgPool(PoolGeometry {
            kernel: 2,
            stride: 2,
            pads: [0; 4],
        }),
        &[x],
        "layer2",
    );
    let y = b.op(Op::Add, &[pooled, other], "layer3");
    b.linear_on_flat(y);
    assert_no_fire(fuse_pool, &mut b.finish(), Mode::Infer);
}

#[test]
fn no_fusion_in_training_or_after_a_residual() {
    let mut b = Build::new(Mode::Train, &[2, 6, 6]);
    let x = b.conv(b.input(), "layer0", 8, 3, 1, 1);
    b.op(pool(2, 2, [0; 4]), &[x], "layer1");
    assert_no_fire(fuse_pool, &mut b.finish(), Mode::Train);

    // conv + residual (fused) → maxpool.
    let mut b = Build::new(Mode::Infer, &[8, 6, 6]);
    let x = b.conv(b.input(), "layer0", 8, 3, 1, 1);
    let input = b.input();
    let summed = {
        let m = &mut b.f.ops[0];
        if let Op::Conv2d { epilogue, .. } = &mut m.op {
            epilogue.steps.push(EpilogueStep::Add);
        }
        m.args.push(input);
        x
    };
    b.op(pool(2, 2, [0; 4]), &[summed], "layer1");
    assert_no_fire(fuse_pool, &mut b.finish(), Mode::Infer);
}

#[test]
fn nothing_is_appended_after_a_pool() {
    let mut m = conv_relu(pool(2, 2, [0; 4]));
    // Pool first, then the activation pass: the ReLU before the pool
    // cannot join the epilogue after it.
    let mut b = Build::new(Mode::Infer, &[2, 6, 6]);
    let x = b.conv(b.input(), "layer0", 8, 3, 1, 1);
    let x = b.op(pool(2, 2, [0; 4]), &[x], "layer1");
    let x = b.op(Op::Act(Act::Sigmoid), &[x], "layer2");
    b.linear_on_flat(x);
    let mut pooled_first = b.finish();
    assert!(fuse_pool(&mut pooled_first, Mode::Infer));
    assert_no_fire(fuse_activation, &mut pooled_first, Mode::Infer);
    assert_eq!(
        op_names(&pooled_first, Mode::Infer),
        ["conv2d", "sigmoid", "flatten", "linear"]
    );
    // The default order fuses both.
    assert!(fuse_activation(&mut m, Mode::Infer) && fuse_pool(&mut m, Mode::Infer));
    assert_eq!(op_names(&m, Mode::Infer), ["conv2d", "flatten", "linear"]);
}
