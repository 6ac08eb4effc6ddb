//! Every `models/*.nn` through every stage: the lowered IR of both modes
//! and the optimized IR of both modes are snapshotted, and each is also
//! checked by hand-written properties that could be false: it verifies, its
//! text round-trips, and the optimized inference IR has no batch norm or
//! dropout left.

use nnc_diag::SourceFile;
use nnc_driver::{compile, Options, Quiet, Stage};
use nnc_ir::text::{parse_module, print_module};
use nnc_ir::{Mode, Module, Op};

fn build(path: &std::path::Path, mode: Mode, stage: Stage) -> Module {
    let text = std::fs::read_to_string(path).unwrap();
    let source = SourceFile::new(path.display().to_string(), text);
    let options = Options {
        modes: vec![mode],
        stage,
        passes: None,
        loss: None,
    };
    let compiled = compile(&source, &options, &mut Quiet).unwrap_or_else(|e| panic!("{}: {e:?}", path.display()));
    assert!(
        compiled.warnings.is_empty(),
        "{}: unexpected warnings {:?}",
        path.display(),
        compiled.warnings
    );
    compiled.module.unwrap()
}

fn check_text(module: &Module, what: &str) -> String {
    nnc_ir::verify::verify(module).unwrap_or_else(|e| panic!("{what}: does not verify: {e:?}"));
    let text = print_module(module);
    let reparsed = parse_module(&text).unwrap_or_else(|e| panic!("{what}: printed IR does not parse: {e}\n{text}"));
    assert_eq!(print_module(&reparsed), text, "{what}: IR text does not round-trip");
    text
}

#[test]
fn models_lower_and_optimize() {
    insta::glob!("../models", "*.nn", |path| {
        for mode in Mode::ALL {
            let lowered = build(path, mode, Stage::Lowered);
            insta::assert_snapshot!(format!("lowered-{mode}"), check_text(&lowered, "lowered"));
            let optimized = build(path, mode, Stage::Optimized);
            let text = check_text(&optimized, "optimized");
            if mode == Mode::Infer {
                let ops = &optimized.function(mode).unwrap().ops;
                for op in ops {
                    let leftover = matches!(
                        op.op,
                        Op::BatchNorm { .. } | Op::Dropout { .. } | Op::AlphaDropout { .. } | Op::DropBlock { .. }
                    );
                    assert!(
                        !leftover,
                        "{}: {} survived the infer pipeline",
                        path.display(),
                        op.op.name()
                    );
                }
            }
            insta::assert_snapshot!(format!("optimized-{mode}"), text);
        }
        // The grad stage: the train function with what it saves, and its
        // backward. Every trained parameter of the train function gets a
        // gradient (nothing is left out by the rules).
        let grad = build(path, Mode::Train, Stage::Grad);
        let text = check_text(&grad, "grad");
        let train = grad.function(Mode::Train).unwrap();
        let backward = grad.backward.as_ref().unwrap();
        let trained = backward.trained_params(train);
        for op in &train.ops {
            for p in op.op.params() {
                let role = grad.param(p).role;
                let state = matches!(role, nnc_ir::ParamRole::RunningMean | nnc_ir::ParamRole::RunningVar);
                assert_eq!(
                    !state,
                    trained.contains(&p),
                    "{}: @{}",
                    path.display(),
                    grad.param(p).name
                );
            }
        }
        insta::assert_snapshot!("grad-train", text);
    });
}

/// The generated Rust of two small models, snapshotted so a change to the
/// code generator shows in review, with properties checked by hand: one
/// commented block per op naming its statement's line, constant shapes, and
/// no parameter values in the source.
#[test]
fn generated_source_of_two_small_models() {
    for name in ["digits_mlp.nn", "residual_mlp.nn"] {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("models")
            .join(name);
        let module = build(&path, Mode::Infer, Stage::Optimized);
        let text = std::fs::read_to_string(&path).unwrap();
        let source = SourceFile::new(format!("models/{name}"), text.clone());
        let generated = nnc_codegen::generate_source(&module, &source, &nnc_codegen::Options::build(None)).unwrap();
        let func = module.function(Mode::Infer).unwrap();
        for op in &func.ops {
            assert!(
                generated.contains(&format!(" [{}]\n", op.layer)),
                "{name}: no comment for an op of {}",
                op.layer
            );
            for loc in &op.locs {
                let line = text.lines().nth(loc.line as usize - 1).unwrap().trim();
                assert!(
                    generated.contains(&format!("// line {}: {line}", loc.line)),
                    "{name}: no comment quoting line {}",
                    loc.line
                );
            }
        }
        let input = &func.value_type(func.input).dims;
        assert!(generated.contains(&format!("pub const INPUT: &'static [usize] = &{input:?};")));
        // Parameters come from files or initialisers, never from literals.
        let longest_list = generated.lines().map(|l| l.matches(", ").count()).max().unwrap_or(0);
        assert!(longest_list < 12, "{name}: a long literal list in the source");
        insta::assert_snapshot!(format!("generated-{name}"), generated);
    }
}
