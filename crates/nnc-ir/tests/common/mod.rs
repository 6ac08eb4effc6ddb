//! Modules built by hand with the public API, shared by the text and
//! verifier tests.

#![allow(dead_code, clippy::unwrap_used)]

use nnc_diag::Loc;
use nnc_ir::{
    Act, BinaryOp, ConvGeometry, Derivation, Dist, Epilogue, EpilogueStep, Function, Init, Mode, Module, Op, ParamData,
    ParamId, ParamRole, PoolGeometry, ValueId, ValueType,
};

pub fn loc(line: u32, col: u32) -> Loc {
    Loc { line, col }
}

fn constant(value: f32) -> Init {
    Init::constant(if value == 0.0 { "zeros" } else { "ones" }, value)
}

fn add(m: &mut Module, name: &str, shape: &[usize], role: ParamRole, value: f32) -> ParamId {
    m.add_param(ParamData::init(name, shape, role, constant(value)))
}

fn p(id: ParamId) -> Derivation {
    Derivation::param(id)
}

fn bin(op: BinaryOp, a: Derivation, b: Derivation) -> Derivation {
    Derivation::binary(op, a, b)
}

/// Appends an op to the function with mode `mode`.
pub fn push(m: &mut Module, mode: Mode, op: Op, args: Vec<ValueId>, layer: &str) -> ValueId {
    push_at(m, mode, op, args, layer, Vec::new())
}

pub fn push_at(m: &mut Module, mode: Mode, op: Op, args: Vec<ValueId>, layer: &str, locs: Vec<Loc>) -> ValueId {
    let params = m.params.clone();
    let f = m.function_mut(mode).unwrap();
    f.push(&params, op, args, layer, locs).unwrap()
}

/// The example of the format description: a batch norm folded into a
/// linear layer, with a note.
pub fn seed_mlp() -> Module {
    let mut m = Module::new("SeedMlp");
    m.notes
        .push("drop-redundant-bias: removed @layer0.bias (batch norm layer0 subtracts the mean)".into());
    let w0 = m.add_param(ParamData::init(
        "layer0.weight",
        [750, 800],
        ParamRole::Weight,
        Init {
            scheme: "xavier_uniform".into(),
            fan_in: Some(800),
            fan_out: Some(750),
            dist: Dist::Uniform {
                low: -0.062217,
                high: 0.062217,
            },
        },
    ));
    let mut w1 = ParamData::init(
        "layer1.weight",
        [10, 750],
        ParamRole::Weight,
        Init {
            scheme: "he_normal".into(),
            fan_in: Some(750),
            fan_out: Some(10),
            dist: Dist::Normal { mean: 0.0, std: 0.05 },
        },
    );
    w1.l1 = 0.001;
    w1.l2 = 0.0001;
    let w1 = m.add_param(w1);
    let gamma = add(&mut m, "layer0.norm.weight", &[750], ParamRole::NormWeight, 1.0);
    let beta = add(&mut m, "layer0.norm.bias", &[750], ParamRole::NormBias, 0.0);
    let mean = add(&mut m, "layer0.norm.running_mean", &[750], ParamRole::RunningMean, 0.0);
    let var = add(&mut m, "layer0.norm.running_var", &[750], ParamRole::RunningVar, 1.0);
    // γ / sqrt(σ² + ε)
    let factor = || {
        bin(
            BinaryOp::Div,
            p(gamma),
            Derivation::sqrt(bin(BinaryOp::Add, p(var), Derivation::Const(0.00001))),
        )
    };
    let w0f = m.add_param(ParamData::derived(
        "layer0.weight'",
        [750, 800],
        ParamRole::Weight,
        Derivation::scale_rows(p(w0), factor()),
    ));
    let b0f = m.add_param(ParamData::derived(
        "layer0.bias'",
        [750],
        ParamRole::Bias,
        bin(BinaryOp::Sub, p(beta), bin(BinaryOp::Mul, p(mean), factor())),
    ));
    m.functions.push(Function::new(Mode::Infer, ValueType::new([800])));
    let linear = |weight, bias, act: Option<Act>| Op::Linear {
        weight,
        bias,
        dropconnect: None,
        epilogue: Epilogue {
            steps: act.into_iter().map(EpilogueStep::Act).collect(),
        },
    };
    let x = ValueId(0);
    let h = push_at(
        &mut m,
        Mode::Infer,
        linear(w0f, Some(b0f), Some(Act::Tanh)),
        vec![x],
        "layer0",
        vec![loc(3, 5)],
    );
    let y = push_at(
        &mut m,
        Mode::Infer,
        linear(w1, None, None),
        vec![h],
        "layer1",
        vec![loc(4, 5)],
    );
    push_at(
        &mut m,
        Mode::Infer,
        Op::Act(Act::Softmax),
        vec![y],
        "layer1",
        vec![loc(4, 5), loc(5, 5)],
    );
    m
}

/// The text of [`seed_mlp`], written by hand from the format description.
pub const SEED_MLP: &str = "\
model SeedMlp
// note: drop-redundant-bias: removed @layer0.bias (batch norm layer0 subtracts the mean)

param @layer0.weight: f32[750,800] weight = init xavier_uniform fan_in=800 fan_out=750 uniform(low=-0.062217, high=0.062217)
param @layer1.weight: f32[10,750] weight = init he_normal fan_in=750 fan_out=10 normal(mean=0, std=0.05) l1=0.001 l2=0.0001
param @layer0.norm.weight: f32[750] norm_weight = init ones constant(value=1)
param @layer0.norm.bias: f32[750] norm_bias = init zeros constant(value=0)
param @layer0.norm.running_mean: f32[750] running_mean = init zeros constant(value=0)
param @layer0.norm.running_var: f32[750] running_var = init ones constant(value=1)
param @layer0.weight': f32[750,800] weight = derive scale_rows(@layer0.weight, @layer0.norm.weight / sqrt(@layer0.norm.running_var + 0.00001))
param @layer0.bias': f32[750] bias = derive @layer0.norm.bias - @layer0.norm.running_mean * (@layer0.norm.weight / sqrt(@layer0.norm.running_var + 0.00001))

func @infer(%0: f32[N,800]) -> f32[N,10] {
  %1: f32[N,750] = linear[layer0] %0, @layer0.weight', @layer0.bias' epilogue(tanh) loc(3:5)
  %2: f32[N,10] = linear[layer1] %1, @layer1.weight loc(4:5)
  %3: f32[N,10] = softmax[layer1] %2 loc(4:5, 5:5)
  return %3
}
";

/// Every op, every activation, every epilogue step, every distribution,
/// every derivation form and every role, in two functions.
pub fn everything() -> Module {
    let mut m = Module::new("Everything");
    m.notes.push("fold-batchnorm: folded bn into c1".into());
    m.notes.push("  a note with leading spaces, (parens) and @signs".into());

    // Image side (train).
    let mut c1w = ParamData::init(
        "c1.weight",
        [4, 3, 3, 3],
        ParamRole::Weight,
        Init {
            scheme: "variance_scaling".into(),
            fan_in: Some(27),
            fan_out: None,
            dist: Dist::TruncatedNormal {
                mean: 0.0,
                std: 0.2,
                low: -0.4,
                high: 0.4,
            },
        },
    );
    c1w.l1 = 0.001;
    c1w.l2 = 0.0005;
    let c1w = m.add_param(c1w);
    let c1b = add(&mut m, "c1.bias", &[4], ParamRole::Bias, 0.0);
    let c1s = add(&mut m, "c1.norm.scale", &[4], ParamRole::Scale, 1.0);
    let c1t = add(&mut m, "c1.norm.shift", &[4], ParamRole::Shift, 0.0);
    let c2w = m.add_param(ParamData::init(
        "c2.weight",
        [4, 2, 3, 3],
        ParamRole::Weight,
        Init {
            scheme: "xavier_uniform".into(),
            fan_in: Some(18),
            fan_out: Some(36),
            dist: Dist::Uniform {
                low: -0.3333,
                high: 0.3333,
            },
        },
    ));
    let bn = [
        add(&mut m, "bn.norm.weight", &[4], ParamRole::NormWeight, 1.0),
        add(&mut m, "bn.norm.bias", &[4], ParamRole::NormBias, 0.0),
        add(&mut m, "bn.norm.running_mean", &[4], ParamRole::RunningMean, 0.0),
        add(&mut m, "bn.norm.running_var", &[4], ParamRole::RunningVar, 1.0),
    ];
    let inw = add(&mut m, "in.norm.weight", &[4], ParamRole::NormWeight, 1.0);
    let inb = add(&mut m, "in.norm.bias", &[4], ParamRole::NormBias, 0.0);
    let gnw = add(&mut m, "gn.norm.weight", &[4], ParamRole::NormWeight, 1.0);
    let gnb = add(&mut m, "gn.norm.bias", &[4], ParamRole::NormBias, 0.0);
    let prw = add(&mut m, "pr.act.weight", &[1], ParamRole::ActWeight, 0.25);
    let lnw = add(&mut m, "ln.norm.weight", &[4, 4, 4], ParamRole::NormWeight, 1.0);
    let lnb = add(&mut m, "ln.norm.bias", &[4, 4, 4], ParamRole::NormBias, 0.0);
    let afs = add(&mut m, "af.scale", &[4], ParamRole::Scale, 1.0);
    let aft = add(&mut m, "af.shift", &[4], ParamRole::Shift, 0.0);

    // Dense side (infer).
    let fc1w = m.add_param(ParamData {
        l2: 0.0001,
        ..ParamData::init(
            "fc1.weight",
            [8, 4],
            ParamRole::Weight,
            Init {
                scheme: "he_normal".into(),
                fan_in: Some(4),
                fan_out: Some(8),
                dist: Dist::Normal {
                    mean: 0.0,
                    std: std::f32::consts::FRAC_1_SQRT_2,
                },
            },
        )
    });
    let fc1b = add(&mut m, "fc1.bias", &[8], ParamRole::Bias, 0.0);
    let fc1s = add(&mut m, "fc1.norm.scale", &[8], ParamRole::Scale, 1.0);
    let fc1t = add(&mut m, "fc1.norm.shift", &[8], ParamRole::Shift, 0.0);
    let fc1a = add(&mut m, "fc1.act.weight", &[8], ParamRole::ActWeight, 0.25);
    let fc2w = m.add_param(ParamData::init(
        "fc2.weight",
        [3, 8],
        ParamRole::Weight,
        Init {
            scheme: "orthogonal".into(),
            fan_in: None,
            fan_out: None,
            dist: Dist::Orthogonal {
                gain: std::f32::consts::SQRT_2,
            },
        },
    ));

    // Derivations: every form, and the precedence cases.
    use BinaryOp::{Add, Div, Mul, Sub};
    let (a, b, c) = (fc1b, fc1s, fc1t);
    let derived =
        |m: &mut Module, name: &str, shape: &[usize], role, d| m.add_param(ParamData::derived(name, shape, role, d));
    let folded = derived(
        &mut m,
        "fc1.weight'",
        &[8, 4],
        ParamRole::Weight,
        Derivation::scale_rows(
            p(fc1w),
            bin(Div, p(b), Derivation::sqrt(bin(Add, p(c), Derivation::Const(0.00001)))),
        ),
    );
    derived(
        &mut m,
        "fc1.weight''",
        &[8, 4],
        ParamRole::Weight,
        Derivation::scale_cols(p(folded), p(afs)),
    );
    derived(
        &mut m,
        "fc2.bias'",
        &[3],
        ParamRole::Bias,
        Derivation::mat_vec(p(fc2w), p(fc1b)),
    );
    derived(
        &mut m,
        "d.sub_mul",
        &[8],
        ParamRole::Bias,
        bin(Mul, bin(Sub, p(a), p(b)), p(c)),
    );
    derived(
        &mut m,
        "d.sub_sub",
        &[8],
        ParamRole::Bias,
        bin(Sub, p(a), bin(Sub, p(b), p(c))),
    );
    derived(
        &mut m,
        "d.div_mul",
        &[8],
        ParamRole::Bias,
        bin(Div, p(a), bin(Mul, p(b), p(c))),
    );
    derived(
        &mut m,
        "d.left",
        &[8],
        ParamRole::Bias,
        bin(Sub, bin(Sub, p(a), p(b)), p(c)),
    );
    let mixed = derived(
        &mut m,
        "d.mixed",
        &[8],
        ParamRole::Bias,
        bin(
            Add,
            bin(Mul, p(a), Derivation::Const(-1.0)),
            bin(Mul, p(b), Derivation::Const(2.5)),
        ),
    );
    derived(
        &mut m,
        "d.chain",
        &[8],
        ParamRole::Bias,
        bin(Add, p(mixed), Derivation::Const(1.0)),
    );

    // Train: the image ops, then every activation standalone.
    m.functions.push(Function::new(Mode::Train, ValueType::new([3, 8, 8])));
    let t = Mode::Train;
    let conv1 = Op::Conv2d {
        weight: c1w,
        bias: Some(c1b),
        geometry: ConvGeometry {
            kernel: 3,
            stride: 1,
            dilation: 1,
            groups: 1,
            pads: [1, 1, 1, 1],
        },
        dropconnect: Some(0.25),
        epilogue: Epilogue {
            steps: vec![
                EpilogueStep::Affine { scale: c1s, shift: c1t },
                EpilogueStep::Act(Act::Relu),
            ],
        },
    };
    let mut x = push_at(&mut m, t, conv1, vec![ValueId(0)], "c1", vec![loc(2, 3), loc(3, 3)]);
    let conv2 = Op::Conv2d {
        weight: c2w,
        bias: None,
        geometry: ConvGeometry {
            kernel: 3,
            stride: 1,
            dilation: 2,
            groups: 2,
            pads: [2, 2, 2, 2],
        },
        dropconnect: None,
        epilogue: Epilogue::default(),
    };
    x = push_at(&mut m, t, conv2, vec![x], "c2", vec![loc(4, 3)]);
    let ops = vec![
        (
            Op::BatchNorm {
                weight: bn[0],
                bias: bn[1],
                running_mean: bn[2],
                running_var: bn[3],
                eps: 0.00001,
                momentum: 0.1,
            },
            "bn",
        ),
        (
            Op::InstanceNorm {
                weight: inw,
                bias: inb,
                eps: 0.001,
            },
            "in",
        ),
        (
            Op::GroupNorm {
                weight: gnw,
                bias: gnb,
                groups: 2,
                eps: 0.00001,
            },
            "gn",
        ),
        (
            Op::Lrn {
                size: 5,
                alpha: 0.0001,
                beta: 0.75,
                bias: 2.0,
            },
            "lrn",
        ),
        (
            Op::MaxPool(PoolGeometry {
                kernel: 2,
                stride: 2,
                pads: [0, 0, 0, 0],
            }),
            "pool1",
        ),
        (
            Op::AvgPool(PoolGeometry {
                kernel: 3,
                stride: 1,
                pads: [1, 1, 1, 1],
            }),
            "pool2",
        ),
    ];
    for (op, layer) in ops {
        x = push(&mut m, t, op, vec![x], layer);
    }
    let before = x;
    x = push(&mut m, t, Op::DropBlock { p: 0.1, block: 3 }, vec![x], "db");
    x = push(&mut m, t, Op::Add, vec![x, before], "res");
    let ops = vec![
        (Op::Act(Act::Prelu { weight: prw }), "pr"),
        (
            Op::LayerNorm {
                weight: lnw,
                bias: lnb,
                eps: 0.00001,
            },
            "ln",
        ),
        (Op::GlobalAvgPool, "gap"),
        (Op::Flatten, "flat"),
        (Op::Affine { scale: afs, shift: aft }, "af"),
        (Op::Dropout { p: 0.5 }, "drop"),
        (Op::AlphaDropout { p: 0.05 }, "adrop"),
        (Op::Act(Act::Sigmoid), "a1"),
        (Op::Act(Act::Tanh), "a2"),
        (Op::Act(Act::Relu), "a3"),
        (Op::Act(Act::LeakyRelu { alpha: 0.01 }), "a4"),
        (
            Op::Act(Act::Rrelu {
                lower: 0.125,
                upper: 0.33333334,
            }),
            "a5",
        ),
        (Op::Act(Act::Elu { alpha: 1.0 }), "a6"),
        (Op::Act(Act::Selu), "a7"),
        (Op::Act(Act::Softplus { beta: 2.0 }), "a8"),
        (Op::Act(Act::Gelu), "a9"),
        (Op::Act(Act::Silu), "a10"),
        (Op::Act(Act::Maxout { pieces: 2 }), "a11"),
        (Op::Act(Act::Softmax), "out.softmax"),
    ];
    for (op, layer) in ops {
        x = push(&mut m, t, op, vec![x], layer);
    }

    // Infer: a linear with a long epilogue, one without bias or epilogue.
    m.functions.push(Function::new(Mode::Infer, ValueType::new([4])));
    let i = Mode::Infer;
    let fc1 = Op::Linear {
        weight: fc1w,
        bias: Some(fc1b),
        dropconnect: None,
        epilogue: Epilogue {
            steps: vec![
                EpilogueStep::Affine {
                    scale: fc1s,
                    shift: fc1t,
                },
                EpilogueStep::Act(Act::Prelu { weight: fc1a }),
                EpilogueStep::Act(Act::LeakyRelu { alpha: 0.1 }),
                EpilogueStep::Act(Act::Softplus { beta: 1.0 }),
            ],
        },
    };
    let h = push_at(
        &mut m,
        i,
        fc1,
        vec![ValueId(0)],
        "fc1",
        vec![loc(7, 5), loc(8, 5), loc(9, 5)],
    );
    let fc2 = Op::Linear {
        weight: fc2w,
        bias: None,
        dropconnect: Some(0.5),
        epilogue: Epilogue::default(),
    };
    let y = push_at(&mut m, i, fc2, vec![h], "fc2", vec![loc(10, 5)]);
    push(&mut m, i, Op::Act(Act::Softmax), vec![y], "fc2");
    m
}
