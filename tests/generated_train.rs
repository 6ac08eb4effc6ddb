//! The generated training step against the interpreter's: every bundled
//! model through `nnc::model!(train, file = …)`, with the same weights,
//! inputs, targets and seed, at two batch sizes on one and two threads,
//! two steps in a row (the second sees the running statistics the first
//! moved). Loss, output, every parameter gradient and every stored tensor
//! after the step agree to 1e-5 relative. The crate denies warnings, so
//! generated code that warns fails here.

#![deny(warnings)]
#![allow(clippy::unwrap_used)]

mod common;

use common::{assert_close, input, module_of, weights};
use nnc_driver::Stage;
use nnc_interp::{Gradients, Targets};
use nnc_ir::grad::Target;
use nnc_ir::Mode;
use nnc_runtime::io::weights::write_safetensors;
use nnc_runtime::{Rng, Workspace};

/// What a generated training struct offers, as the test drives it.
trait Generated: Sized {
    type Grads;
    fn from_safetensors(bytes: &[u8]) -> Result<Self, nnc_runtime::Error>;
    fn workspace(batch: usize, threads: usize) -> Workspace;
    fn new_grads() -> Self::Grads;
    #[allow(clippy::too_many_arguments)]
    fn grad_into(
        &mut self,
        x: &[f32],
        batch: usize,
        targets: Targets<'_>,
        seed: u64,
        grads: &mut Self::Grads,
        out: &mut [f32],
        ws: &mut Workspace,
    ) -> Result<f64, nnc_runtime::Error>;
    fn grads(grads: &Self::Grads) -> Vec<(&'static str, Vec<f32>)>;
    fn stored(&self) -> Vec<(&'static str, Vec<f32>)>;
}

/// A module holding `model!(train, file = …)` and the [`Generated`] impl
/// of its training struct.
macro_rules! generated_model {
    ($module:ident: $train:ident, $grads:ident from $file:literal) => {
        mod $module {
            nnc::model!(train, file = $file);
        }

        impl Generated for $module::$train {
            type Grads = $module::$grads;
            fn from_safetensors(bytes: &[u8]) -> Result<Self, nnc_runtime::Error> {
                $module::$train::from_safetensors(bytes)
            }
            fn workspace(batch: usize, threads: usize) -> Workspace {
                $module::$train::workspace(batch, threads).unwrap()
            }
            fn new_grads() -> Self::Grads {
                $module::$grads::new()
            }
            fn grad_into(
                &mut self,
                x: &[f32],
                batch: usize,
                targets: Targets<'_>,
                seed: u64,
                grads: &mut Self::Grads,
                out: &mut [f32],
                ws: &mut Workspace,
            ) -> Result<f64, nnc_runtime::Error> {
                $module::$train::grad_into(self, x, batch, targets, seed, grads, out, ws)
            }
            fn grads(grads: &Self::Grads) -> Vec<(&'static str, Vec<f32>)> {
                grads.tensors().iter().map(|(n, v)| (*n, v.to_vec())).collect()
            }
            fn stored(&self) -> Vec<(&'static str, Vec<f32>)> {
                self.tensors().iter().map(|(n, v)| (*n, v.to_vec())).collect()
            }
        }
    };
}

macro_rules! generated_models {
    ($($module:ident: $train:ident, $grads:ident from $file:literal;)*) => {
        $(generated_model!($module: $train, $grads from $file);)*

        #[test]
        fn generated_gradients_equal_the_interpreters_on_every_model() {
            let mut checked = Vec::new();
            $(
                check::<$module::$train>($file, include_str!(concat!("../", $file)));
                checked.push($file);
            )*
            let on_disk = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/models")).unwrap().count();
            assert_eq!(checked.len(), on_disk, "a model in models/ is missing from tests/generated_train.rs");
        }
    };
}

fn check<M: Generated>(file: &str, text: &str) {
    let module = module_of(text, &[Mode::Train], Stage::Grad);
    let stored = weights(text, 3);
    let bytes = write_safetensors(&stored).unwrap();
    let train = module.function(Mode::Train).unwrap();
    let (per_in, per_out) = (
        train.value_type(train.input).numel(),
        train.value_type(train.output).numel(),
    );
    let backward = module.backward.as_ref().unwrap();
    for threads in [1, 2] {
        for batch in [3, 8] {
            let mut interpreter = Gradients::new(&module, &stored).unwrap();
            let mut generated = M::from_safetensors(&bytes).unwrap();
            let mut ws = M::workspace(batch, threads);
            let mut grads = M::new_grads();
            let mut rng = Rng::new(batch as u64, 17);
            for step in 0..2u64 {
                let what = format!("{file}: batch {batch}, {threads} thread(s), step {step}");
                let x = input(per_in, batch, 40 + step);
                let classes: Vec<u32> = (0..batch).map(|_| rng.next_u32() % per_out as u32).collect();
                let values: Vec<f32> = (0..batch * per_out).map(|_| rng.uniform()).collect();
                let targets = match backward.target {
                    Target::Classes { .. } => Targets::Classes(&classes),
                    Target::Values(_) => Targets::Values(&values),
                };
                let seed = 9 + step;
                let expected = interpreter.run(&x, batch, targets, threads, seed).unwrap();
                let mut out = vec![f32::NAN; batch * per_out];
                let loss = generated
                    .grad_into(&x, batch, targets, seed, &mut grads, &mut out, &mut ws)
                    .unwrap();
                assert!(
                    (loss - expected).abs() <= 1e-5 * expected.abs().max(1e-6),
                    "{what}: loss {loss}, interpreter {expected}"
                );
                assert_close(&format!("{what}: output"), &out, interpreter.output());
                let ours = M::grads(&grads);
                let theirs = interpreter.gradients();
                let names: Vec<&str> = ours.iter().map(|(n, _)| *n).collect();
                let expected_names: Vec<&str> = theirs.iter().map(|(n, _)| *n).collect();
                assert_eq!(names, expected_names, "{what}: trained parameters");
                for ((name, g), (_, e)) in ours.iter().zip(&theirs) {
                    assert_close(&format!("{what}: d/d{name}"), g, e);
                }
                for (name, v) in generated.stored() {
                    assert_close(
                        &format!("{what}: {name} after the step"),
                        &v,
                        interpreter.param(name).unwrap(),
                    );
                }
            }
        }
    }
}

generated_models! {
    digits_cnn: DigitNetTrain, DigitNetGrads from "models/digits_cnn.nn";
    digits_mlp: DigitsMlpTrain, DigitsMlpGrads from "models/digits_mlp.nn";
    maxout_mlp: MaxoutMlpTrain, MaxoutMlpGrads from "models/maxout_mlp.nn";
    post_norm: PostNormTrain, PostNormGrads from "models/post_norm.nn";
    rectifiers: RectifiersTrain, RectifiersGrads from "models/rectifiers.nn";
    residual_cnn: ResidualCnnTrain, ResidualCnnGrads from "models/residual_cnn.nn";
    residual_mlp: ResidualMlpTrain, ResidualMlpGrads from "models/residual_mlp.nn";
    seed_elu_bn_dropout: SeedEluBnTrain, SeedEluBnGrads from "models/seed_elu_bn_dropout.nn";
    seed_relu_he: SeedReluHeTrain, SeedReluHeGrads from "models/seed_relu_he.nn";
    seed_relu_xavier: SeedReluXavierTrain, SeedReluXavierGrads from "models/seed_relu_xavier.nn";
    seed_tanh_normal: SeedTanhNormalTrain, SeedTanhNormalGrads from "models/seed_tanh_normal.nn";
    seed_tanh_xavier: SeedTanhXavierTrain, SeedTanhXavierGrads from "models/seed_tanh_xavier.nn";
    selu_lecun_alpha: SelfNormalizingTrain, SelfNormalizingGrads from "models/selu_lecun_alpha.nn";
    wide_cnn: WideCnnTrain, WideCnnGrads from "models/wide_cnn.nn";
}

generated_model!(every_op: EveryOpTrain, EveryOpGrads from "tests/train/every_op.nn");

#[test]
fn a_model_with_every_training_op_matches_the_interpreter() {
    check::<every_op::EveryOpTrain>("every_op", include_str!("train/every_op.nn"));
}

mod regression {
    nnc::model! {
        loss = "mse",
        model Regression {
            input 6
            dense 6 -> 8 act=selu dropout=alpha(0.1)
            dense 8 -> 3 act=sigmoid l1=0.001
        }
    }
}

#[test]
fn bad_targets_are_an_error_naming_the_row_and_nothing_runs() {
    let mut model = regression::RegressionTrain::init(1);
    let before = model.tensors().map(|(n, v)| (n, v.to_vec()));
    let mut grads = regression::RegressionGrads::new();
    let mut ws = regression::RegressionTrain::workspace(2, 1).unwrap();
    let x = vec![0.5; 12];
    let mut out = vec![0.0; 6];
    let mut targets = vec![0.25; 6];
    targets[4] = f32::NAN;
    let err = model
        .grad_into(&x, 2, Targets::Values(&targets), 0, &mut grads, &mut out, &mut ws)
        .unwrap_err();
    assert!(
        err.to_string().contains("row 1") && err.to_string().contains("NaN"),
        "{err}"
    );
    let err = model
        .grad_into(&x, 2, Targets::Classes(&[0, 1]), 0, &mut grads, &mut out, &mut ws)
        .unwrap_err();
    assert!(err.to_string().contains("target values"), "{err}");
    assert_eq!(model.tensors().map(|(n, v)| (n, v.to_vec())), before);
    targets[4] = 0.75;
    let loss = model
        .grad_into(&x, 2, Targets::Values(&targets), 0, &mut grads, &mut out, &mut ws)
        .unwrap();
    assert!(loss.is_finite() && loss > 0.0, "{loss}");
    assert!(grads.tensors().iter().any(|(_, g)| g.iter().any(|v| *v != 0.0)));
}
