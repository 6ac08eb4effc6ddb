//! The IR text round-trips: for every IR text in the repository, parsing
//! and printing gives the text back byte for byte. Pass-test inputs are
//! compared without their hand-written comment lines (`// check:`, prose);
//! snapshot bodies are printer output and must come back unchanged.

use nnc_ir::text::{parse_module, print_module};
use std::path::{Path, PathBuf};

fn files(dir: &Path, ext: &str, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files(&path, ext, out);
        } else if path.extension().is_some_and(|e| e == ext) {
            out.push(path);
        }
    }
}

/// The text without comment lines other than `// note:`, and without
/// trailing blank lines.
fn without_comments(text: &str) -> String {
    let kept: Vec<&str> = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("//") || l.starts_with("// note:"))
        .collect();
    format!("{}\n", kept.join("\n").trim_end())
}

#[test]
fn pass_test_inputs_round_trip() {
    let mut paths = Vec::new();
    files(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/passes"),
        "ir",
        &mut paths,
    );
    assert!(paths.len() >= 15, "only {} pass tests", paths.len());
    for path in paths {
        let text = without_comments(&std::fs::read_to_string(&path).unwrap());
        let module = parse_module(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(print_module(&module), text, "{} does not round-trip", path.display());
    }
}

#[test]
fn ir_snapshots_round_trip() {
    let mut paths = Vec::new();
    files(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots"),
        "snap",
        &mut paths,
    );
    let mut checked = 0;
    for path in paths {
        let snap = std::fs::read_to_string(&path).unwrap();
        // An insta snapshot: a `---` header block, then the body.
        let Some(body) = snap.splitn(3, "---\n").nth(2) else {
            continue;
        };
        if !body.starts_with("model ") {
            continue;
        }
        let module = parse_module(body).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(print_module(&module), body, "{} does not round-trip", path.display());
        checked += 1;
    }
    assert!(checked >= 20, "only {checked} IR snapshots found");
}
