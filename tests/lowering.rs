//! Hand-written properties of lowering and of the default pipelines, each
//! checked against a number or rule from outside our code (the papers'
//! formulas, PyTorch's `calculate_gain`, ONNX's `SAME_UPPER` padding).

use nnc_diag::SourceFile;
use nnc_driver::{compile, CompileError, Options, Quiet, Stage};
use nnc_ir::{Act, Derivation, Dist, EpilogueStep, Mode, Module, Op, ParamSource};

fn build(text: &str, mode: Mode, stage: Stage) -> Module {
    let source = SourceFile::new("test.nn", text);
    let options = Options {
        modes: vec![mode],
        stage,
        passes: None,
        loss: None,
    };
    match compile(&source, &options, &mut Quiet) {
        Ok(c) => c.module.unwrap(),
        Err(CompileError::Program(d)) => panic!("{}", nnc_diag::render_plain(&d, &source)),
        Err(e) => panic!("{e}"),
    }
}

fn model(name: &str) -> String {
    std::fs::read_to_string(format!("{}/models/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

fn dist(module: &Module, name: &str) -> Dist {
    let id = module
        .param_by_name(name)
        .unwrap_or_else(|| panic!("no parameter {name}"));
    match &module.param(id).source {
        ParamSource::Init(init) => init.dist.clone(),
        other => panic!("{name} is not initialised: {other:?}"),
    }
}

fn close(a: f32, b: f64) -> bool {
    (f64::from(a) - b).abs() <= 1e-6 * b.abs().max(1.0)
}

#[test]
fn seed_mlp_in_inference_is_ten_fused_dense_tanh_ops() {
    let module = build(&model("seed_tanh_xavier.nn"), Mode::Infer, Stage::Optimized);
    let ops = &module.function(Mode::Infer).unwrap().ops;
    assert_eq!(ops.len(), 10);
    for op in ops {
        let Op::Linear { epilogue, .. } = &op.op else {
            panic!("expected linear, got {}", op.op.name())
        };
        assert_eq!(epilogue.steps, vec![EpilogueStep::Act(Act::Tanh)]);
    }
}

#[test]
fn batch_norm_and_dropout_vanish_in_inference_leaving_folded_parameters() {
    let module = build(&model("seed_elu_bn_dropout.nn"), Mode::Infer, Stage::Optimized);
    let ops = &module.function(Mode::Infer).unwrap().ops;
    assert_eq!(ops.len(), 10, "one fused op per dense layer");
    for (i, op) in ops.iter().enumerate() {
        let Op::Linear {
            weight,
            bias: Some(bias),
            epilogue,
            ..
        } = &op.op
        else {
            panic!("{}", op.op.name())
        };
        assert_eq!(epilogue.steps, vec![EpilogueStep::Act(Act::Elu { alpha: 1.0 })]);
        let (w, b) = (module.param(*weight), module.param(*bias));
        assert_eq!(w.name, format!("layer{i}.weight'"));
        assert_eq!(b.name, format!("layer{i}.bias'"));
        let ParamSource::Derived(Derivation::ScaleRows { .. }) = &w.source else {
            panic!("{w:?}")
        };
        assert!(b.is_derived());
    }
    // The running statistics stay: they are what the folded numbers are made of.
    assert!(module.param_by_name("layer3.norm.running_var").is_some());
}

#[test]
fn training_keeps_batch_norm_and_dropout() {
    let module = build(&model("seed_elu_bn_dropout.nn"), Mode::Train, Stage::Optimized);
    let ops = &module.function(Mode::Train).unwrap().ops;
    let count = |name: &str| ops.iter().filter(|o| o.op.name() == name).count();
    assert_eq!((count("batch_norm"), count("dropout"), count("elu")), (10, 9, 10));
}

#[test]
fn init_numbers_follow_the_published_formulas() {
    let module = build(&model("seed_relu_he.nn"), Mode::Infer, Stage::Lowered);
    // He et al. 2015: std = sqrt(2 / fan_in).
    assert_eq!(
        dist(&module, "layer0.weight"),
        Dist::Normal {
            mean: 0.0,
            std: (2.0f64 / 800.0).sqrt() as f32
        }
    );
    let module = build(&model("seed_tanh_xavier.nn"), Mode::Infer, Stage::Lowered);
    // Glorot & Bengio 2010: U(-r, r), r = sqrt(6 / (fan_in + fan_out)).
    let Dist::Uniform { low, high } = dist(&module, "layer1.weight") else {
        panic!()
    };
    assert!(close(high, (6.0f64 / (750.0 + 700.0)).sqrt()) && low == -high);
    let module = build(&model("seed_tanh_normal.nn"), Mode::Infer, Stage::Lowered);
    assert_eq!(dist(&module, "layer9.weight"), Dist::Normal { mean: 0.0, std: 0.01 });
}

#[test]
fn auto_init_and_auto_gain_follow_the_activation() {
    let text = "model A { input 100
        dense 100 -> 50 act=relu
        dense 50 -> 40 act=selu
        dense 40 -> 30 act=tanh
        dense 30 -> 20 init=xavier gain=auto act=tanh
        dense 20 -> 10 init=xavier_normal gain=auto act=leaky_relu(0.2)
        dense 10 -> 4 init=variance_scaling(scale=2, mode=fan_avg) }";
    let module = build(text, Mode::Infer, Stage::Lowered);
    let std_of = |name: &str| match dist(&module, name) {
        Dist::Normal { std, .. } => f64::from(std),
        other => panic!("{name}: {other:?}"),
    };
    assert!(
        close(std_of("layer0.weight") as f32, (2.0f64 / 100.0).sqrt()),
        "relu → he_normal"
    );
    assert!(
        close(std_of("layer1.weight") as f32, (1.0f64 / 50.0).sqrt()),
        "selu → lecun_normal"
    );
    let Dist::Uniform { high, .. } = dist(&module, "layer2.weight") else {
        panic!("tanh → xavier_uniform")
    };
    assert!(close(high, (6.0f64 / 70.0).sqrt()));
    // PyTorch calculate_gain('tanh') = 5/3.
    let Dist::Uniform { high, .. } = dist(&module, "layer3.weight") else {
        panic!()
    };
    assert!(close(high, 5.0 / 3.0 * (6.0f64 / 50.0).sqrt()));
    // calculate_gain('leaky_relu', 0.2) = sqrt(2 / (1 + 0.2²)).
    let gain = (2.0f64 / (1.0 + 0.04)).sqrt();
    assert!(close(std_of("layer4.weight") as f32, gain * (2.0f64 / 30.0).sqrt()));
    // Keras VarianceScaling, truncated normal: std = sqrt(scale / n) / .87962566103423978, cut at 2 std.
    let Dist::TruncatedNormal { std, low, high, .. } = dist(&module, "layer5.weight") else {
        panic!()
    };
    let expected = (2.0f64 / 7.0).sqrt() / 0.879_625_661_034_239_8;
    assert!(close(std, expected) && close(high, 2.0 * expected) && close(-low, 2.0 * expected));
}

#[test]
fn conv_fans_and_same_padding_follow_pytorch_and_onnx() {
    let text = "model C { input [4, 6, 6]
        conv 4 -> 8 k=3 stride=2 pad=same groups=2 init=he_uniform
        conv 8 -> 8 k=3 pad=same dilation=2 }";
    let module = build(text, Mode::Infer, Stage::Lowered);
    // fan_in = IN·K·K/G = 4·9/2.
    let Dist::Uniform { high, .. } = dist(&module, "layer0.weight") else {
        panic!()
    };
    assert!(close(high, (6.0f64 / 18.0).sqrt()));
    assert_eq!(
        module.param(module.param_by_name("layer0.weight").unwrap()).shape,
        vec![8, 2, 3, 3]
    );
    let func = module.function(Mode::Infer).unwrap();
    let Op::Conv2d { geometry, .. } = &func.ops[0].op else {
        panic!()
    };
    // SAME_UPPER: out = ceil(6/2) = 3, total pad = (3-1)·2 + 3 - 6 = 1, the odd pixel at the end.
    assert_eq!(geometry.pads, [0, 0, 1, 1]);
    assert_eq!(func.value_type(func.ops[0].result).dims, vec![8, 3, 3]);
    // Dilation 2: the window spans 5, total pad 4 keeps 3×3.
    let Op::Conv2d { geometry, .. } = &func.ops[1].op else {
        panic!()
    };
    assert_eq!(geometry.pads, [2, 2, 2, 2]);
}

#[test]
fn default_names_count_every_statement_depth_first() {
    let module = build(&model("residual_mlp.nn"), Mode::Train, Stage::Lowered);
    for name in [
        "layer0.weight",
        "layer2.weight",
        "layer2.norm.running_mean",
        "layer3.norm.running_var",
        "layer6.norm.weight",
        "layer7.weight",
        "layer9.weight",
    ] {
        assert!(module.param_by_name(name).is_some(), "missing {name}");
    }
    let layers: Vec<&str> = module
        .function(Mode::Train)
        .unwrap()
        .ops
        .iter()
        .map(|o| o.layer.as_str())
        .collect();
    assert!(layers.contains(&"layer1") && layers.contains(&"block2"), "{layers:?}");
    // Layer norm's affine has the per-sample shape.
    assert_eq!(
        module.param(module.param_by_name("layer6.norm.weight").unwrap()).shape,
        vec![128]
    );
}

#[test]
fn maxout_computes_out_times_pieces_units() {
    let module = build(&model("maxout_mlp.nn"), Mode::Infer, Stage::Lowered);
    assert_eq!(
        module.param(module.param_by_name("layer0.weight").unwrap()).shape,
        vec![1200, 784]
    );
    let func = module.function(Mode::Infer).unwrap();
    let maxout = func
        .ops
        .iter()
        .find(|o| matches!(o.op, Op::Act(Act::Maxout { pieces: 5 })))
        .unwrap();
    assert_eq!(func.value_type(maxout.result).dims, vec![240]);
}

#[test]
fn prelu_slopes_are_per_unit_or_shared() {
    let module = build(&model("rectifiers.nn"), Mode::Infer, Stage::Lowered);
    let shape = |n: &str| module.param(module.param_by_name(n).unwrap()).shape.clone();
    assert_eq!(shape("layer1.act.weight"), vec![128]);
    assert_eq!(shape("layer2.act.weight"), vec![1]);
    assert_eq!(dist(&module, "layer1.act.weight"), Dist::Constant { value: 0.25 });
}

#[test]
fn a_constant_weight_init_warns_but_compiles() {
    let source = SourceFile::new("w.nn", "model W { input 4 dense 4 -> 2 init=zeros }");
    let options = Options {
        modes: vec![Mode::Infer],
        stage: Stage::Optimized,
        passes: None,
        loss: None,
    };
    let compiled = compile(&source, &options, &mut Quiet).unwrap();
    assert_eq!(compiled.warnings.len(), 1);
    assert_eq!(compiled.warnings[0].code, "W0001");
}

#[test]
fn the_language_reference_examples_compile() {
    let digit_net = "model DigitNet {
        input [1, 28, 28]                         # per-sample shape [C, H, W]; the batch axis is implicit
        conv 1 -> 16 k=3 pad=same init=he act=relu norm=batch
        maxpool k=2
        conv 16 -> 32 k=3 pad=same init=he act=leaky_relu(0.1) norm=group(groups=8)
        globalavgpool
        dense 32 -> 128 init=he act=elu norm=batch dropout=0.2
        dense 128 -> 10 act=softmax
    }";
    let mlp = "model Mlp {
        input 800
        dense 800 -> 750 init=he act=elu norm=batch dropout=0.2
        dense 750 -> 10 act=softmax
    }";
    for text in [digit_net, mlp] {
        for mode in Mode::ALL {
            build(text, mode, Stage::Optimized);
        }
    }
}
