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
    });
}
