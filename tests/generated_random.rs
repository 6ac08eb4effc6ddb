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
            let reference = evaluate(&lowered, Mode::Infer, &w, &x, batch).output;
            assert_close(&format!("{what}, against the reference"), &out, &reference.data, 1e-4);
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
    let (begin, end) = ("// BEGIN GENERATED\n", "    // END GENERATED");
    let start = source.find(begin).unwrap() + begin.len();
    let stop = source.find(end).unwrap();
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
    // END GENERATED
}
