//! Generated code on random programs. A random program cannot be compiled
//! to Rust per proptest case, so a fixed set is: the `random_models!` block
//! below holds `common::programs::fixed_set(SEED, COUNT)`, each through
//! `nnc::model!`, and each model's `forward_into` is compared with the
//! interpreter and with the f64 reference at batch 1 and 3, on one and two
//! threads.
//!
//! The block is generated, not edited: `the_random_models_are_current`
//! fails when it differs from what the generator draws, and
//! `NNC_REGENERATE=1 cargo test --test generated_random` rewrites it.

#![deny(warnings)]
#![allow(clippy::unwrap_used)]

mod common;

use common::programs::{fixed_set, Program};
use common::reference::evaluate;
use common::{input, weights};
use nnc_diag::SourceFile;
use nnc_driver::{compile, Options, Quiet, Stage};
use nnc_interp::Interpreter;
use nnc_ir::{Mode, Module};
use nnc_runtime::io::weights::write_safetensors;
use nnc_runtime::Workspace;

const SEED: u64 = 11;
const COUNT: usize = 20;

/// What the test needs of one generated model.
struct Generated<Model> {
    text: &'static str,
    from_safetensors: fn(&[u8]) -> Result<Model, nnc_runtime::Error>,
    forward_into: fn(&Model, &[f32], usize, &mut [f32], &mut Workspace),
    input: &'static [usize],
    output: &'static [usize],
}

macro_rules! random_models {
    ($($module:ident: $model:ident => { $($program:tt)* })*) => {
        $(
            mod $module {
                nnc::model! { $($program)* }
            }
        )*

        /// Runs every model; returns how many there are.
        fn check_all() -> usize {
            let mut count = 0;
            $(
                check(Generated {
                    text: stringify!($($program)*),
                    from_safetensors: $module::$model::from_safetensors,
                    forward_into: $module::$model::forward_into,
                    input: $module::$model::INPUT,
                    output: $module::$model::OUTPUT,
                });
                count += 1;
            )*
            count
        }
    };
}

fn module(text: &str, stage: Stage) -> Module {
    let source = SourceFile::new("random.nn", text);
    let options = Options {
        modes: vec![Mode::Infer],
        stage,
        passes: None,
        loss: None,
    };
    compile(&source, &options, &mut Quiet).unwrap().module.unwrap()
}

/// `|a − b| ≤ tolerance · scale`, scale the largest `|b|` (at least 1e-3).
fn assert_close(what: &str, a: &[f32], b: &[f64], tolerance: f64) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    let scale = b.iter().fold(1e-3f64, |m, v| m.max(v.abs()));
    for (i, (p, q)) in a.iter().zip(b).enumerate() {
        let err = (f64::from(*p) - q).abs();
        assert!(
            err <= tolerance * scale,
            "{what}: element {i}: generated {p}, expected {q} (scale {scale:.3e})"
        );
    }
}

fn check<Model>(g: Generated<Model>) {
    let w = weights(g.text, 5);
    let model = (g.from_safetensors)(&write_safetensors(&w).unwrap()).unwrap();
    let lowered = module(g.text, Stage::Lowered);
    let mut it = Interpreter::new(&module(g.text, Stage::Optimized), Mode::Infer, &w).unwrap();
    assert_eq!(it.input_shape(), g.input, "{}: INPUT", g.text);
    assert_eq!(it.output_shape(), g.output, "{}: OUTPUT", g.text);
    let (per_in, per_out) = (g.input.iter().product::<usize>(), g.output.iter().product::<usize>());
    for threads in [1, 2] {
        let mut ws = Workspace::new(threads).unwrap();
        for batch in [1, 3] {
            let x = input(per_in, batch, 7 + batch as u64);
            let mut out = vec![f32::NAN; batch * per_out];
            (g.forward_into)(&model, &x, batch, &mut out, &mut ws);
            let what = format!("{}\nbatch {batch}, {threads} thread(s)", g.text);
            let interpreted: Vec<f64> = it
                .run(&x, batch, threads, 0)
                .unwrap()
                .iter()
                .map(|v| f64::from(*v))
                .collect();
            assert_close(&format!("{what}, against the interpreter"), &out, &interpreted, 1e-5);
            let reference = evaluate(&lowered, Mode::Infer, &w, &x, batch);
            let tolerance = 1e-4 * reference.amplification;
            assert_close(
                &format!("{what}, against the reference"),
                &out,
                &reference.output.data,
                tolerance,
            );
        }
    }
}

/// The block between the markers, as the generator draws it.
fn render(programs: &[Program]) -> String {
    let mut out = String::new();
    for (i, p) in programs.iter().enumerate() {
        out.push_str(&format!("    random{i}: Random{i} => {{ {} }}\n", p.text));
    }
    out
}

#[test]
fn generated_code_matches_the_interpreter_and_the_reference_on_random_programs() {
    assert_eq!(check_all(), COUNT);
}

#[test]
fn the_random_models_are_current() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/generated_random.rs");
    let source = std::fs::read_to_string(&path).unwrap();
    // The last markers: the first ones are these string literals.
    let (begin, end) = ("// BEGIN GENERATED\n", "    // END GENERATED");
    let start = source.rfind(begin).unwrap() + begin.len();
    let stop = source.rfind(end).unwrap();
    let expected = render(&fixed_set(SEED, COUNT));
    if source[start..stop] == expected {
        return;
    }
    if std::env::var_os("NNC_REGENERATE").is_some() {
        let updated = format!("{}{expected}{}", &source[..start], &source[stop..]);
        std::fs::write(&path, updated).unwrap();
        return;
    }
    panic!("the random models are stale: run `NNC_REGENERATE=1 cargo test --test generated_random`");
}

random_models! {
    // BEGIN GENERATED
    random0: Random0 => { model Random0 { input [2, 4, 8] conv 2 -> 5 k=2 stride=2 pad=same dropout=dropconnect(0.2) flatten dense 40 -> 1 act=relu norm=batch norm_pos=post act rrelu(0.2, 0.2) dense 1 -> 10 dropout=0.3 bias=false act rrelu(0.2, 0.2) act maxout(2) } }
    random1: Random1 => { model Random1 { input 5 dropout 0.5 dense 5 -> 1 act=rrelu norm layer norm layer dense 1 -> 2 act=rrelu(0.2, 0.2) dropout=dropconnect(0.2) } }
    random2: Random2 => { model Random2 { input [3, 5, 8] conv 3 -> 4 k=4 pad=same groups=3 act=maxout(3) bias=false avgpool k=2  pad=0 maxpool k=2  pad=0 } }
    random3: Random3 => { model Random3 { input 1 act sigmoid residual { residual { norm layer norm layer } residual { act linear } } dense 1 -> 8 norm=layer norm_pos=post dense 8 -> 4 act=sigmoid norm=batch dropout=dropconnect(0.2) flatten } }
    random4: Random4 => { model Random4 { input [2, 5, 3] conv 2 -> 4 k=5 pad=1 act=tanh conv 4 -> 3 k=3 pad=3 dilation=3 act=maxout(3) bias=false conv 3 -> 7 k=4 pad=5 dilation=3 norm=lrn(3, 0.1) act rrelu(0.1, 0.3) dropout 0.5 conv 7 -> 7 k=3 stride=2 pad=3 dilation=3 act=maxout(3) norm=batch norm_pos=post dropout=0.3 bias=false act softmax } }
    random5: Random5 => { model Random5 { input [1, 3, 8] globalavgpool dense 1 -> 16 act=rrelu dropout=dropconnect(0.2) bias=false residual { act softplus } dense 16 -> 5 act=tanh dropout=0 bias=false act selu residual { act relu } dense 5 -> 16 act=sigmoid norm=batch norm_pos=post dropout=0 bias=false dense 16 -> 10 dropout=dropconnect(0.2) bias=false dense 10 -> 7 act=softmax } }
    random6: Random6 => { model Random6 { input [3, 5, 4] conv 3 -> 1 k=1 stride=3 pad=valid act=rrelu(0.2, 0.2) norm=layer dropout=0.3 conv 1 -> 4 k=2 stride=3 pad=same act=silu dropout=dropconnect(0.2) flatten flatten dense 4 -> 16 act=prelu dropout=0.3 dropout 0 act softmax } }
    random7: Random7 => { model Random7 { input [3, 4, 1] act linear flatten act maxout(3) norm batch act softmax } }
    random8: Random8 => { model Random8 { input [1, 2, 1] conv 1 -> 8 k=5 pad=5 act=maxout(3) bias=false dropout dropblock(0, block=5) } }
    random9: Random9 => { model Random9 { input [1, 2, 2] conv 1 -> 3 k=2 pad=valid norm=group(1) conv 3 -> 3 k=3 stride=3 pad=5 act=elu norm=layer dropout=0 conv 3 -> 6 k=2 stride=3 pad=valid groups=3 act=maxout(2) norm=instance dropout=0 act softplus conv 6 -> 6 k=3 pad=3 dilation=3 groups=6 act=softplus norm=batch norm_pos=post dropout=0.3 bias=false conv 6 -> 1 k=1 pad=valid norm=batch norm_pos=post dropout=0.3 bias=false conv 1 -> 1 k=1 pad=valid norm=batch norm_pos=post dropout=0.3 bias=false act softmax } }
    random10: Random10 => { model Random10 { input [1, 4, 4] conv 1 -> 7 k=4 stride=3 pad=6 dilation=2 dropout=0.3 residual { conv 7 -> 7 k=3 pad=same dilation=1 groups=1 act=linear residual { norm batch act linear } } } }
    random11: Random11 => { model Random11 { input 3 act softplus(2) residual { dropout alpha(0) } dropout 0.5 } }
    random12: Random12 => { model Random12 { input [3, 6, 7] conv 3 -> 1 k=1 pad=valid dilation=3 act=maxout(2) bias=false maxpool k=1  pad=0 maxpool k=2 stride=3 pad=1 } }
    random13: Random13 => { model Random13 { input [2, 2, 4] avgpool k=1 stride=3 pad=0 act silu act prelu(0.1, shared=true) conv 2 -> 4 k=4 stride=3 pad=2 groups=2 act=prelu(0.1, shared=true) } }
    random14: Random14 => { model Random14 { input [3, 1, 8] conv 3 -> 7 k=4 pad=3 act=rrelu residual { dropout dropblock(0.5, block=1) } conv 7 -> 7 k=1 stride=3 pad=same dilation=3 groups=7 act=maxout(3) dropout=0.3 bias=false act prelu(0.1, shared=true) norm layer } }
    random15: Random15 => { model Random15 { input 9 dense 9 -> 8 act=linear norm=layer norm_pos=post dense 8 -> 8 act=softmax } }
    random16: Random16 => { model Random16 { input [3, 4, 7] conv 3 -> 1 k=5 stride=2 pad=same dilation=3 act=elu norm=instance norm_pos=post maxpool k=1  pad=0 conv 1 -> 1 k=1 stride=3 pad=valid dilation=3 conv 1 -> 1 k=1 stride=3 pad=2 act=elu dropout=0 bias=false conv 1 -> 2 k=2 stride=3 pad=1 dilation=3 act=gelu bias=false conv 2 -> 1 k=1 pad=valid norm=batch norm_pos=post dropout=0.3 bias=false conv 1 -> 1 k=1 pad=valid norm=batch norm_pos=post dropout=0.3 bias=false act softmax } }
    random17: Random17 => { model Random17 { input 10 dense 10 -> 11 act=maxout(3) dropout=dropconnect(0.2) act tanh residual { dense 11 -> 11 norm=batch dropout=0.3 dropout 0.1 } dropout 0.1 act selu dense 11 -> 13 norm=layer norm_pos=post dense 13 -> 6 act=maxout(2) dropout=dropconnect(0.2) act softmax } }
    random18: Random18 => { model Random18 { input [1, 4, 4] conv 1 -> 3 k=2 pad=valid dilation=2 act=softplus(2) dropout=0.3 act softmax } }
    random19: Random19 => { model Random19 { input 5 dense 5 -> 2 act=prelu(0.1, shared=true) dense 2 -> 14 act=maxout(2) norm=layer flatten residual { act prelu residual { act leaky_relu(0.1) act softplus } } act softmax } }
    // END GENERATED
}
