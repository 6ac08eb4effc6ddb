//! The generated code against the interpreter: every bundled model through
//! `nnc::model!(file = …)`, with the same weights, at batch 1 and 7, on one
//! and two threads. The crate denies warnings, so generated code that
//! warns fails here.

#![deny(warnings)]
#![allow(clippy::unwrap_used)]

mod common;

use common::{assert_close, input, module, module_of, weights};
use nnc_driver::Stage;
use nnc_interp::{init_weights, Interpreter};
use nnc_ir::Mode;
use nnc_runtime::io::weights::write_safetensors;
use nnc_runtime::Workspace;

macro_rules! generated_models {
    ($($module:ident: $model:ident from $file:literal;)*) => {
        $(
            mod $module {
                nnc::model!(file = $file);
            }
        )*

        #[test]
        fn generated_code_equals_the_interpreter_on_every_model() {
            let mut checked = Vec::new();
            $(
                {
                    use $module::$model as Model;
                    let text = include_str!(concat!("../", $file));
                    check(
                        $file,
                        text,
                        Model::from_safetensors,
                        Model::init,
                        Model::forward_into,
                        Model::INPUT,
                        Model::OUTPUT,
                    );
                    checked.push($file);
                }
            )*
            // Every bundled model is in the list above.
            let on_disk = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/models")).unwrap().count();
            assert_eq!(checked.len(), on_disk, "a model in models/ is missing from tests/generated.rs");
        }
    };
}

/// Loads the model from weights both ways (a safetensors file with jittered
/// norm statistics, and `init(seed)`) and compares with the interpreter.
fn check<Model>(
    file: &str,
    text: &str,
    from_safetensors: fn(&[u8]) -> Result<Model, nnc_runtime::Error>,
    init: fn(u64) -> Model,
    forward_into: fn(&Model, &[f32], usize, &mut [f32], &mut Workspace),
    input_shape: &[usize],
    output_shape: &[usize],
) {
    let optimized = module(text, Mode::Infer, Stage::Optimized);
    let cases = [
        (weights(text, 3), None),
        (init_weights(&module(text, Mode::Infer, Stage::Lowered), 8), Some(8)),
    ];
    for (w, seed) in cases {
        let model = match seed {
            Some(seed) => init(seed),
            None => from_safetensors(&write_safetensors(&w).unwrap()).unwrap(),
        };
        let mut it = Interpreter::new(&optimized, Mode::Infer, &w).unwrap();
        assert_eq!(it.input_shape(), input_shape, "{file}: INPUT");
        assert_eq!(it.output_shape(), output_shape, "{file}: OUTPUT");
        let (per_in, per_out) = (
            input_shape.iter().product::<usize>(),
            output_shape.iter().product::<usize>(),
        );
        for threads in [1, 2] {
            let mut ws = Workspace::new(threads).unwrap();
            for batch in [1, 7] {
                let x = input(per_in, batch, 11 + batch as u64);
                let expected = it.run(&x, batch, threads, 0).unwrap();
                let mut out = vec![f32::NAN; batch * per_out];
                forward_into(&model, &x, batch, &mut out, &mut ws);
                let what = format!("{file} (seed {seed:?}) batch {batch}, {threads} thread(s)");
                assert_close(&what, &out, &expected);
            }
        }
    }
}

generated_models! {
    digits_cnn: DigitNet from "models/digits_cnn.nn";
    digits_mlp: DigitsMlp from "models/digits_mlp.nn";
    maxout_mlp: MaxoutMlp from "models/maxout_mlp.nn";
    post_norm: PostNorm from "models/post_norm.nn";
    rectifiers: Rectifiers from "models/rectifiers.nn";
    residual_cnn: ResidualCnn from "models/residual_cnn.nn";
    residual_mlp: ResidualMlp from "models/residual_mlp.nn";
    seed_elu_bn_dropout: SeedEluBn from "models/seed_elu_bn_dropout.nn";
    seed_relu_he: SeedReluHe from "models/seed_relu_he.nn";
    seed_relu_xavier: SeedReluXavier from "models/seed_relu_xavier.nn";
    seed_tanh_normal: SeedTanhNormal from "models/seed_tanh_normal.nn";
    seed_tanh_xavier: SeedTanhXavier from "models/seed_tanh_xavier.nn";
    selu_lecun_alpha: SelfNormalizing from "models/selu_lecun_alpha.nn";
    wide_cnn: WideCnn from "models/wide_cnn.nn";
}

/// A model named with a Rust keyword, through the macro.
mod odd_names {
    nnc::model! {
        model self {
            input 4
            dense 4 -> 3 name=fn act=relu
            dense 3 -> 2 name=Self
        }
    }
}

#[test]
fn a_model_named_with_a_keyword_is_a_type_named_in_upper_camel_case() {
    let model = odd_names::SelfModel::init(0);
    let y = model.forward(nnc::runtime::ndarray::Array2::zeros((1, 4)).view());
    assert_eq!(y.shape(), &[1, 2]);
}

mod mlp {
    nnc::model! {
        model Tiny {
            input 4
            dense 4 -> 3 init=xavier act=tanh norm=batch
            dense 3 -> 2 act=softmax
        }
    }
}

#[test]
fn forward_on_arrays_gives_probabilities_and_matches_forward_into() {
    let model = mlp::Tiny::init(1);
    let x = nnc::runtime::ndarray::Array2::from_shape_fn((5, 4), |(i, j)| (i as f32 - 2.0) * 0.3 + j as f32 * 0.1);
    let y = model.forward(x.view());
    assert_eq!(y.shape(), &[5, 2]);
    for row in y.rows() {
        assert!((row.sum() - 1.0).abs() < 1e-6, "softmax rows sum to 1: {row}");
    }
    let mut out = vec![0.0; 10];
    let mut ws = mlp::Tiny::workspace(5, 1).unwrap();
    model.forward_into(x.as_slice().unwrap(), 5, &mut out, &mut ws);
    assert_eq!(y.as_slice().unwrap(), &out[..]);
    // A column-major view is read in logical order.
    let xt = x.t().to_owned();
    assert_eq!(model.forward(xt.t()), y);
}

#[test]
fn from_safetensors_names_a_missing_or_misshapen_tensor() {
    let declared = module(
        "model Tiny { input 4 dense 4 -> 3 init=xavier act=tanh norm=batch dense 3 -> 2 act=softmax }",
        Mode::Infer,
        Stage::Lowered,
    );
    let mut w = init_weights(&declared, 0);
    w.tensors.remove("layer1.weight");
    let err = mlp::Tiny::from_safetensors(&write_safetensors(&w).unwrap())
        .err()
        .unwrap();
    assert!(err.to_string().contains("layer1.weight"), "{err}");
    let mut w = init_weights(&declared, 0);
    w.tensors.get_mut("layer0.bias").unwrap().shape = vec![1, 3];
    let err = mlp::Tiny::from_safetensors(&write_safetensors(&w).unwrap())
        .err()
        .unwrap();
    assert!(
        err.to_string().contains("[1, 3]") && err.to_string().contains("layer0.bias"),
        "{err}"
    );
    assert!(mlp::Tiny::from_safetensors(b"not a file").is_err());
}

/// `nnc build --train`'s output for every model, in a crate of its own that denies
/// warnings (the macro's expansion cannot show this: rustc keeps some lints
/// quiet inside macro expansions), checked by `cargo check`.
#[test]
fn nnc_build_train_output_of_every_model_compiles_without_warnings() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let krate = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("generated-check");
    std::fs::create_dir_all(krate.join("src")).unwrap();
    let runtime = root.join("crates/nnc-runtime");
    std::fs::write(
        krate.join("Cargo.toml"),
        format!(
            "[package]\nname = \"generated-check\"\nversion = \"0.0.0\"\nedition = \"2021\"\n\n\
             [dependencies]\nnnc-runtime = {{ path = {:?} }}\n\n[workspace]\n",
            runtime.display().to_string()
        ),
    )
    .unwrap();
    // The versions this workspace was tested with, and no network.
    std::fs::copy(root.join("Cargo.lock"), krate.join("Cargo.lock")).unwrap();
    let mut lib = String::from("#![deny(warnings)]\n");
    for (file, text) in common::models() {
        let stem = file.trim_end_matches(".nn");
        let source = nnc_diag::SourceFile::new(format!("models/{file}"), text.clone());
        let optimized = module_of(&text, &[Mode::Infer, Mode::Train], Stage::Grad);
        // One model also with `embedded()`, reading a file beside its source.
        let embed = (stem == "digits_mlp").then(|| format!("{stem}.embedded.safetensors"));
        if let Some(name) = &embed {
            std::fs::write(krate.join("src").join(name), b"").unwrap();
        }
        // `nnc build --train`: the training step too.
        let options = nnc_codegen::Options {
            train: true,
            ..nnc_codegen::Options::build(embed)
        };
        let generated = nnc_codegen::generate_source(&optimized, &source, &options).unwrap();
        std::fs::write(krate.join("src").join(format!("{stem}.rs")), generated).unwrap();
        lib.push_str(&format!("pub mod {stem};\n"));
    }
    // Names that collide with Rust (issue 11): keywords, primitive types,
    // the runtime's alias, the prelude, lowercase; as models and as layers.
    let odd = [
        "rt", "f32", "usize", "str", "u64", "gen", "fn", "self", "type", "Self", "crate", "super", "mlp", "Some", "_",
        "x_", "my_model",
    ];
    for (i, name) in odd.iter().enumerate() {
        let layer = odd[(i + 5) % odd.len()];
        let other = if layer == "crate" { "super" } else { "crate" };
        let text =
            format!("model {name} {{ input [1, 4, 4] conv 2 k=3 name={layer} act=relu flatten dense 3 name={other} }}");
        let source = nnc_diag::SourceFile::new(format!("odd{i}.nn"), text.clone());
        let optimized = module_of(&text, &[Mode::Infer, Mode::Train], Stage::Grad);
        let options = nnc_codegen::Options {
            train: true,
            ..nnc_codegen::Options::build(None)
        };
        let generated =
            nnc_codegen::generate_source(&optimized, &source, &options).unwrap_or_else(|e| panic!("model {name}: {e}"));
        let type_name = nnc_codegen::type_name(name);
        assert!(generated.contains(&format!("pub struct {type_name} ")), "model {name}");
        std::fs::write(krate.join("src").join(format!("odd{i}.rs")), generated).unwrap();
        // Use the type, so a name that only parses would still fail.
        lib.push_str(&format!(
            "pub mod odd{i};\npub fn use_odd{i}() -> (odd{i}::{type_name}, odd{i}::{type_name}Train, odd{i}::{type_name}Grads) \
             {{ (odd{i}::{type_name}::init(0), odd{i}::{type_name}Train::init(0), odd{i}::{type_name}Grads::new()) }}\n"
        ));
    }
    std::fs::write(krate.join("src/lib.rs"), lib).unwrap();
    let out = std::process::Command::new(env!("CARGO"))
        .args(["check", "--quiet", "--offline", "--manifest-path"])
        .arg(krate.join("Cargo.toml"))
        .env("CARGO_TARGET_DIR", krate.join("target"))
        .env_remove("RUSTFLAGS")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "generated code does not compile cleanly:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `examples/embedded/` holds what `nnc build --embed` writes for
/// `models/digits_mlp.nn` with `nnc init --seed 1` weights: the same source,
/// and the folded numbers the interpreter computes from those weights.
#[test]
fn the_embedded_example_is_what_nnc_build_writes() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = include_str!("../models/digits_mlp.nn");
    let optimized = module(text, Mode::Infer, Stage::Optimized);
    let source = nnc_diag::SourceFile::new("models/digits_mlp.nn", text);
    let options = nnc_codegen::Options::build(Some("digits_mlp.embedded.safetensors".into()));
    let generated = nnc_codegen::generate_source(&optimized, &source, &options).unwrap();
    let committed = std::fs::read_to_string(root.join("examples/embedded/digits_mlp.rs")).unwrap();
    assert!(
        generated == committed,
        "examples/embedded/digits_mlp.rs is stale: regenerate it as its main.rs says"
    );
    let stored = init_weights(&module(text, Mode::Infer, Stage::Lowered), 1);
    let it = Interpreter::new(&optimized, Mode::Infer, &stored).unwrap();
    let bytes = std::fs::read(root.join("examples/embedded/digits_mlp.embedded.safetensors")).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut names = file.names();
    names.sort();
    assert!(names.iter().any(|n| n.ends_with('\'')), "folded tensors: {names:?}");
    for name in names {
        let view = file.tensor(name).unwrap();
        let values: Vec<f32> = view
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        assert_eq!(Some(&values[..]), it.param(name), "{name}");
    }
}

/// Models written inline: the macro gets the tokens, the interpreter their text.
macro_rules! inline_models {
    ($test:ident by $check:ident: $($module:ident: model $model:ident { $($body:tt)* })*) => {
        $(
            mod $module {
                nnc::model! { model $model { $($body)* } }
            }
        )*

        #[test]
        fn $test() {
            $(
                {
                    use $module::$model as Model;
                    let text = stringify!(model $model { $($body)* });
                    $check(
                        text,
                        text,
                        Model::from_safetensors,
                        Model::init,
                        Model::forward_into,
                        Model::INPUT,
                        Model::OUTPUT,
                    );
                }
            )*
        }
    };
}

// Issue 11: convs whose padding reaches past the map, so that some kernel
// taps read only padding, panicked in generated code as in the interpreter.
inline_models! {
    convs_with_taps_wholly_in_the_padding_equal_the_interpreter by check:
    pad_past_a_pixel: model A { input [1, 1, 1] conv 1 -> 1 k=5 pad=2 }
    same_on_a_pixel: model B { input [1, 1, 1] conv 1 -> 1 k=5 pad=same }
    same_dilated_on_a_pixel: model C { input [1, 1, 1] conv 1 -> 1 k=3 pad=same dilation=2 }
    strided_pointwise_padded: model D { input [1, 5, 1] conv 1 -> 1 k=1 stride=3 pad=4 }
    // Siblings: grouped, wider than tall, then more layers on the result.
    grouped_past_a_column: model E { input [4, 3, 1] conv 4 -> 6 k=3 pad=3 groups=2 dilation=2 act=relu conv 6 -> 2 k=2 stride=2 pad=1 }
    pooled_after: model F { input [2, 1, 2] conv 2 -> 4 k=4 pad=3 stride=2 maxpool k=2 stride=1 pad=1 avgpool k=3 stride=1 pad=1 }
}

/// Like [`check`], on inputs with a NaN in sample 1: the generated code's
/// NaNs are exactly the interpreter's (which `tests/numerics.rs` checks
/// against each op's dependencies), and the other values agree.
fn check_nan<Model>(
    file: &str,
    text: &str,
    _from_safetensors: fn(&[u8]) -> Result<Model, nnc_runtime::Error>,
    init: fn(u64) -> Model,
    forward_into: fn(&Model, &[f32], usize, &mut [f32], &mut Workspace),
    input_shape: &[usize],
    output_shape: &[usize],
) {
    let optimized = module(text, Mode::Infer, Stage::Optimized);
    let w = init_weights(&module(text, Mode::Infer, Stage::Lowered), 8);
    let model = init(8);
    let mut it = Interpreter::new(&optimized, Mode::Infer, &w).unwrap();
    let (per_in, per_out) = (
        input_shape.iter().product::<usize>(),
        output_shape.iter().product::<usize>(),
    );
    let mut x = input(per_in, 2, 5);
    x[per_in + per_in / 2] = f32::NAN;
    for threads in [1, 2] {
        let mut ws = Workspace::new(threads).unwrap();
        let expected = it.run(&x, 2, threads, 0).unwrap();
        assert!(expected.iter().any(|v| v.is_nan()), "{file}: the NaN reaches no output");
        assert!(
            expected[..per_out].iter().all(|v| v.is_finite()),
            "{file}: the NaN leaks into sample 0"
        );
        let mut out = vec![0.0; 2 * per_out];
        forward_into(&model, &x, 2, &mut out, &mut ws);
        for (i, (p, q)) in out.iter().zip(&expected).enumerate() {
            assert_eq!(
                p.is_nan(),
                q.is_nan(),
                "{file}: element {i}: generated {p}, interpreter {q}"
            );
            assert!(
                p.is_nan() || (p - q).abs() <= 1e-5 * q.abs().max(1.0),
                "{file}: element {i}: generated {p}, interpreter {q}"
            );
        }
    }
}

// Issue 11: ReLU of NaN gave 0 and maxout dropped a NaN piece, in the
// epilogues and kernels the generated code calls as in the interpreter.
inline_models! {
    a_nan_input_gives_the_interpreters_nans_in_generated_code by check_nan:
    nan_relu: model NanRelu { input [2, 3, 3] act relu }
    nan_dense_relu: model NanDenseRelu { input 6 dense 6 -> 4 act=relu }
    nan_dense_maxout: model NanDenseMaxout { input 6 dense 6 -> 4 act=maxout(2) }
    nan_conv_epilogue: model NanConv { input [2, 4, 4] conv 2 -> 3 k=3 pad=1 act=relu norm=batch conv 3 -> 2 k=1 act=elu }
    nan_pools: model NanPools { input [2, 5, 5] maxpool k=3 stride=1 pad=1 avgpool k=2 stride=1 }
    nan_softmax_tanh: model NanSoftmax { input [3, 2, 2] act tanh act softmax }
    nan_norms: model NanNorms { input [4, 3, 3] norm group(groups=2) norm lrn(size=3) act leaky_relu(0.1) globalavgpool }
    nan_rectifiers: model NanRectifiers { input [2, 3, 3] act prelu act rrelu(0.1, 0.3) norm instance norm batch act elu conv 2 -> 2 k=1 act=prelu }
    nan_rest: model NanRest { input 8 dense 8 -> 8 act=gelu norm=layer act silu act softplus act selu act sigmoid }
}

// Maps whose activations take a third of a pass's room or more: the
// forward goes one sample a thread at a time (`nnc_ir::samples_per_pass`),
// at batch 7 whole passes and a short one, on one thread and on two.
inline_models! {
    large_maps_in_passes_equal_the_interpreter by check:
    large_maps: model Large { input [3, 64, 64] conv 3 -> 16 k=3 pad=same act=relu norm=batch residual { conv 16 -> 16 k=3 pad=same norm=batch } act relu maxpool k=2 globalavgpool dense 16 -> 4 act=softmax }
}

/// Which inference passes go a sample or two a thread at a time (a model
/// of 64 × 64 maps), and which whole (training; the MLPs; CNNs of small
/// maps); and a pass of one sample gives what the sample alone gives.
#[test]
fn large_maps_go_a_sample_at_a_time() {
    let large = "model Large { input [3, 64, 64] conv 3 -> 16 k=3 pad=same act=relu norm=batch \
        residual { conv 16 -> 16 k=3 pad=same norm=batch } act relu maxpool k=2 globalavgpool dense 16 -> 4 act=softmax }";
    let per_pass = |text: &str, mode: Mode| {
        let m = module(text, mode, Stage::Optimized);
        let func = m.function(mode).unwrap();
        nnc_ir::samples_per_pass(&m, func, &nnc_ir::BufferPlan::new(func).unwrap())
    };
    assert_eq!(per_pass(large, Mode::Infer), Some(1));
    assert_eq!(per_pass(large, Mode::Train), None, "in training");
    for file in ["digits_cnn", "residual_cnn", "digits_mlp", "seed_elu_bn_dropout"] {
        let text = std::fs::read_to_string(format!("{}/models/{file}.nn", env!("CARGO_MANIFEST_DIR"))).unwrap();
        assert_eq!(per_pass(&text, Mode::Infer), None, "{file}");
    }
    let m = module(large, Mode::Infer, Stage::Optimized);
    let weights = init_weights(&module(large, Mode::Infer, Stage::Lowered), 3);
    let mut it = Interpreter::new(&m, Mode::Infer, &weights).unwrap();
    let per_in = 3 * 64 * 64;
    let x = input(per_in, 5, 21);
    let passes = it.run(&x, 5, 1, 0).unwrap();
    for (n, sample) in x.chunks(per_in).enumerate() {
        let alone = it.run(sample, 1, 1, 0).unwrap();
        assert_eq!(&passes[n * 4..n * 4 + 4], &alone[..], "sample {n}");
    }
}
