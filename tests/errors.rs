//! Every program in `tests/errors/` must fail with exactly the diagnostics
//! its first line promises (`# expect: E0301 at 5:11, E0101 at 6:18`,
//! written by hand), and its rendered diagnostic is snapshotted for review.

use nnc_diag::{render_plain, SourceFile};
use nnc_driver::{compile, CompileError, Options, Quiet, Stage};
use nnc_ir::Mode;

/// `(code, "line:col")` pairs from the `# expect:` line.
fn expectations(text: &str) -> Vec<(String, String)> {
    let first = text.lines().next().unwrap_or_default();
    let list = first
        .strip_prefix("# expect:")
        .unwrap_or_else(|| panic!("first line must be `# expect: CODE at L:C`, got {first:?}"));
    list.split(',')
        .map(|item| {
            let (code, at) = item
                .trim()
                .split_once(" at ")
                .unwrap_or_else(|| panic!("bad expectation {item:?}"));
            (code.trim().to_string(), at.trim().to_string())
        })
        .collect()
}

#[test]
fn every_invalid_program_fails_where_it_says() {
    insta::glob!("errors/*.nn", |path| {
        let text = std::fs::read_to_string(path).unwrap();
        let name = format!("tests/errors/{}", path.file_name().unwrap().to_string_lossy());
        let source = SourceFile::new(name.clone(), text.clone());
        let options = Options {
            modes: Mode::ALL.to_vec(),
            stage: Stage::Optimized,
            passes: None,
            loss: None,
        };
        let diagnostics = match compile(&source, &options, &mut Quiet) {
            Err(CompileError::Program(d)) => d,
            Err(other) => panic!("{name}: expected a program error, got {other}"),
            Ok(_) => panic!("{name}: compiled, but it is in tests/errors"),
        };
        let found: Vec<(String, String)> = diagnostics
            .iter()
            .filter(|d| d.is_error())
            .map(|d| (d.code.to_string(), source.loc(d.primary.span.start).to_string()))
            .collect();
        assert_eq!(
            found,
            expectations(&text),
            "{name}: diagnostics differ from its `# expect:` line"
        );
        let rendered = render_plain(&diagnostics, &source);
        assert!(
            rendered.contains(&format!("{name}:{}", found[0].1)),
            "{name}: rendering lacks file:line:col\n{rendered}"
        );
        assert!(rendered.contains('^'), "{name}: rendering lacks a caret\n{rendered}");
        insta::assert_snapshot!(rendered);
    });
}

#[test]
fn there_are_enough_error_programs_to_cover_every_class() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/errors");
    let mut codes = std::collections::BTreeSet::new();
    let mut count = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        codes.extend(expectations(&text).into_iter().map(|(c, _)| c));
        count += 1;
    }
    assert!(count >= 30, "only {count} error programs");
    let every_class = [
        "E0001", "E0002", "E0003", "E0101", "E0102", "E0103", "E0104", "E0105", "E0106", "E0107", "E0108", "E0201",
        "E0202", "E0301", "E0302", "E0303", "E0304", "E0305", "E0306", "E0307", "E0308", "E0401", "E0402", "E0403",
        "E0404",
    ];
    for code in every_class {
        assert!(codes.contains(code), "no program in tests/errors exercises {code}");
    }
}
