//! The front end's limits under hostile input: nesting (one limit, checked
//! before parsing, with every later stage safe at that depth on a 2 MiB
//! debug-build thread).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use nnc_diag::{render_plain, SourceFile};
use nnc_driver::{compile, CompileError, Options, Quiet, Stage};
use nnc_ir::Mode;
use nnc_syntax::MAX_NESTING;

/// Runs `f` on a thread with the default 2 MiB stack of spawned threads
/// (what the test harness gives each test, made explicit).
fn on_small_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(f)
        .unwrap()
        .join()
        .unwrap()
}

/// `depth` residual blocks one inside the other, around a dense layer whose
/// activation is a call nested `calls` deep.
fn nested(depth: usize, inner: &str) -> String {
    format!(
        "model Deep {{\n  input 8\n  {}{inner}{}\n}}\n",
        "residual { ".repeat(depth),
        " }".repeat(depth)
    )
}

/// Every stage, both modes: AST dump, lowering, passes, the IR printer and
/// parser, and code generation.
fn every_stage(text: String) -> Result<(), Vec<nnc_diag::Diagnostic>> {
    let source = SourceFile::new("deep.nn", text);
    let options = Options {
        modes: Mode::ALL.to_vec(),
        stage: Stage::Optimized,
        passes: None,
        loss: None,
    };
    let compiled = match compile(&source, &options, &mut Quiet) {
        Ok(c) => c,
        Err(CompileError::Program(d)) => return Err(d),
        Err(other) => panic!("{other}"),
    };
    let _ = nnc_syntax::dump(&compiled.ast, &source);
    let module = compiled.module.unwrap();
    let printed = nnc_ir::text::print_module(&module);
    assert_eq!(nnc_ir::text::parse_module(&printed).unwrap(), module);
    nnc_codegen::generate_source(&module, &source, &nnc_codegen::Options::build(None)).unwrap();
    Ok(())
}

/// The one diagnostic of a failed compile, as `code at line:col`.
fn one_error(text: &str) -> String {
    let source = SourceFile::new("deep.nn", text);
    let d = match compile(&source, &Options::default(), &mut Quiet) {
        Err(CompileError::Program(d)) => d,
        other => panic!("expected a program error, got {:?}", other.map(|_| ())),
    };
    assert_eq!(d.len(), 1, "{d:?}");
    let rendered = render_plain(&d, &source);
    assert!(rendered.contains('^'), "{rendered}");
    format!("{} at {}", d[0].code, source.loc(d[0].primary.span.start))
}

#[test]
fn residuals_nested_to_the_limit_pass_every_stage_on_a_small_stack() {
    // The residual blocks plus the model's own `{`.
    let text = nested(MAX_NESTING - 1, "dense 8 act=relu");
    on_small_stack(move || every_stage(text)).unwrap();
}

#[test]
fn calls_nested_to_the_limit_pass_every_stage_on_a_small_stack() {
    // `{` of the model, then calls: `leaky_relu(alpha=f(...))` is refused
    // by lowering (no nested calls take a call), but only after every
    // stage up to it has walked the whole depth.
    let calls = MAX_NESTING - 1;
    let act = format!("{}0.1{}", "f(".repeat(calls), ")".repeat(calls));
    let text = format!("model Deep {{ input 8 dense 8 act={act} }}");
    let errors = on_small_stack(move || every_stage(text)).unwrap_err();
    assert!(errors.iter().all(|d| d.code != "E0003"), "{errors:?}");
}

#[test]
fn one_level_past_the_limit_is_an_error_at_the_bracket_that_opens_it() {
    let text = nested(MAX_NESTING, "dense 8");
    // Line 3: `  ` then 64 × `residual { ` (11 bytes each); the 64th `{`
    // is level 65.
    let col = 2 + 11 * (MAX_NESTING - 1) + 10;
    assert_eq!(one_error(&text), format!("E0003 at 3:{col}"));
}

#[test]
fn the_issue_examples_fail_at_the_same_place_every_time() {
    // 7,600 nested residuals and 8,000 nested calls crashed with a stack
    // overflow; pest's own guard stopped at a column that varied per run.
    let residuals = nested(7_600, "dense 8");
    let calls = format!(
        "model M {{ input 8 dense 8 act={}1{} }}",
        "f(".repeat(8_000),
        ")".repeat(8_000)
    );
    for text in [residuals, calls] {
        let first = on_small_stack({
            let text = text.clone();
            move || one_error(&text)
        });
        assert!(first.starts_with("E0003"), "{first}");
        for _ in 0..3 {
            let text = text.clone();
            assert_eq!(on_small_stack(move || one_error(&text)), first);
        }
    }
}

#[test]
fn brackets_in_comments_do_not_count_and_mixed_kinds_do() {
    let comment = format!("model M {{ # {}\n input 8 dense 8 }}", "{([".repeat(100));
    on_small_stack(move || every_stage(comment)).unwrap();
    // Shapes, calls and blocks count together: 63 blocks, then a call.
    let mixed = nested(MAX_NESTING - 1, "dense 8 act=f(1)");
    let at = on_small_stack(move || one_error(&mixed));
    assert!(at.starts_with("E0003 at 3:"), "{at}");
}

#[test]
fn a_number_in_a_message_is_quoted_with_the_digits_the_program_wrote() {
    // 2^64 was quoted as 18446744073709552000 (issue 11).
    for (program, written) in [
        ("model M { input 18446744073709551616 }", "18446744073709551616"),
        ("model M { input 8 dense 1e25 }", "1e25"),
    ] {
        let source = SourceFile::new("big.nn", program);
        let Err(CompileError::Program(d)) = compile(&source, &Options::default(), &mut Quiet) else {
            panic!("{program} compiled");
        };
        assert!(d[0].message.contains(written), "{program}: {}", d[0].message);
    }
}

#[test]
fn generated_comments_quote_a_window_of_a_one_line_program() {
    // Each op's comment quoted its statement's whole line: on a one-line
    // program, the generated file grew with the square of its length.
    let layers = 2_000;
    let text = format!("model Flat {{ input 8 {}}}", "dense 8 act=relu ".repeat(layers));
    let source = SourceFile::new("flat.nn", text.as_str());
    let compiled = compile(&source, &Options::default(), &mut Quiet).unwrap();
    let generated =
        nnc_codegen::generate_source(&compiled.module.unwrap(), &source, &nnc_codegen::Options::build(None)).unwrap();
    assert!(generated.len() < layers * 2_000, "{} bytes", generated.len());
    assert!(
        generated.contains("line 1: dense 8 act=relu dense 8 act=relu"),
        "quotes the statement"
    );
}
