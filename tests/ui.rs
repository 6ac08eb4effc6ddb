//! `model!`'s compile errors: each `tests/ui/*.rs` is a crate that must
//! fail to build, with the error at the offending token as its `.stderr`
//! file shows (a DSL error class per file, and the macro's own misuses).
//! Regenerate the `.stderr` files with `TRYBUILD=overwrite` after checking
//! that each error still points where its comment says.

#[test]
fn model_macro_errors_point_at_the_offending_token() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/ui/*.rs");
}

/// Each case's first line says, by hand, where its error must point
/// (`// expect: 5:22 · why`); its `.stderr` must agree.
#[test]
fn each_stderr_points_where_its_case_says() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ui");
    let mut cases = 0;
    for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let source = std::fs::read_to_string(&path).unwrap_or_default();
        let expect = source
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("// expect: "))
            .and_then(|l| l.split(' ').next())
            .unwrap_or_else(|| panic!("{name}: first line must be `// expect: LINE:COL · why`"));
        let stderr = std::fs::read_to_string(path.with_extension("stderr")).unwrap_or_default();
        let arrow = format!("--> tests/ui/{name}:{expect}\n");
        assert!(
            stderr.contains(&arrow),
            "{name}: the error should point at {expect}:\n{stderr}"
        );
        cases += 1;
    }
    assert!(cases >= 8, "at least 8 error classes, found {cases}");
}
