//! Pass file tests: `tests/passes/<pass>/<case>.ir` is IR text, then
//! hand-written `// check: TEXT` and `// check-not: TEXT` lines (Cranelift's
//! filetests, LLVM's FileCheck). For each file this runs the pass named by
//! the folder, alone, on every function whose mode the pass supports (the
//! manager verifies the result), then:
//!
//! - applies the check lines to the printed output: each `check` must match,
//!   as a substring, a line after the previous match; a `check-not` must not
//!   match any line between the matches around it;
//! - checks idempotence: a second run reports no change and prints the same;
//! - for `*-no-fire.ir`, checks that the pass reports no change and that the
//!   output is the input as printed;
//! - snapshots the output (`tests/snapshots/passes__<pass>__<case>.snap`).
//!
//! The check lines are the assertion; the snapshot shows the whole output in
//! review.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use nnc_ir::text::{parse_module, print_module};
use nnc_ir::Module;
use nnc_passes::{lookup, run_passes, Observer, PassInfo, PASSES};
use std::fs;
use std::path::{Path, PathBuf};

#[test]
fn eliminate_dropout() {
    run_folder("eliminate-dropout");
}

#[test]
fn fold_batchnorm() {
    run_folder("fold-batchnorm");
}

#[test]
fn fuse_activation() {
    run_folder("fuse-activation");
}

#[test]
fn fuse_residual() {
    run_folder("fuse-residual");
}

#[test]
fn fuse_pool() {
    run_folder("fuse-pool");
}

#[test]
fn drop_redundant_bias() {
    run_folder("drop-redundant-bias");
}

#[test]
fn dce() {
    run_folder("dce");
}

#[test]
fn fuse_activation_backward() {
    run_folder("fuse-activation-backward");
}

#[test]
fn dce_backward() {
    run_folder("dce-backward");
}

/// Every folder names a pass, and every pass has at least three cases, one
/// of them a `*-no-fire.ir`.
#[test]
fn every_pass_has_cases() {
    for entry in fs::read_dir(root()).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        assert!(lookup(&name).is_some(), "tests/passes/{name} names no pass");
    }
    for pass in PASSES {
        let cases = cases(pass.name);
        assert!(cases.len() >= 3, "{} has {} cases", pass.name, cases.len());
        assert!(
            cases.iter().any(|c| stem(c).ends_with("-no-fire")),
            "{} has no -no-fire case",
            pass.name
        );
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/passes")
}

fn cases(pass: &str) -> Vec<PathBuf> {
    let mut cases: Vec<PathBuf> = fs::read_dir(root().join(pass))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "ir"))
        .collect();
    cases.sort();
    cases
}

fn stem(path: &Path) -> String {
    path.file_stem().unwrap().to_string_lossy().into_owned()
}

/// Runs every case of one pass; reports every failing case, then snapshots.
fn run_folder(pass_name: &str) {
    let pass = lookup(pass_name).unwrap();
    let mut failures = Vec::new();
    let mut outputs = Vec::new();
    for path in cases(pass_name) {
        let shown = path
            .strip_prefix(Path::new(env!("CARGO_MANIFEST_DIR")))
            .unwrap()
            .display()
            .to_string();
        match run_case(pass, &path) {
            Ok(output) => outputs.push((path, output)),
            Err(why) => failures.push(format!("{shown}: {why}")),
        }
    }
    assert!(failures.is_empty(), "\n{}\n", failures.join("\n\n"));
    for (path, output) in outputs {
        let shown = path
            .strip_prefix(Path::new(env!("CARGO_MANIFEST_DIR")))
            .unwrap()
            .display()
            .to_string();
        insta::with_settings!({
            input_file => &path,
            description => format!("{shown} after `{pass_name}`"),
            omit_expression => true,
        }, {
            insta::assert_snapshot!(format!("{pass_name}__{}", stem(&path)), output);
        });
    }
}

/// Records whether any run changed the module.
#[derive(Default)]
struct Changed(bool);

impl Observer for Changed {
    fn after_pass(&mut self, _pass: &PassInfo, changed: bool, _module: &Module) {
        self.0 |= changed;
    }
}

/// Runs the pass alone on each function it supports; reports whether any
/// run changed something.
fn run_pass(pass: &PassInfo, module: &mut Module) -> Result<bool, String> {
    let mut changed = Changed::default();
    for mode in pass.modes {
        if module.function(*mode).is_some() {
            run_passes(module, *mode, &[pass.name], &mut changed).map_err(|e| e.to_string())?;
        }
    }
    Ok(changed.0)
}

fn run_case(pass: &PassInfo, path: &Path) -> Result<String, String> {
    let text = fs::read_to_string(path).map_err(|e| e.to_string())?;
    let checks = Check::parse(&text)?;
    if checks.is_empty() {
        return Err("no `// check:` or `// check-not:` lines".into());
    }
    let mut module = parse_module(&text).map_err(|e| format!("does not parse: {e}"))?;
    let input = print_module(&module);
    let changed = run_pass(pass, &mut module)?;
    let output = print_module(&module);
    Check::apply(&checks, &output).map_err(|e| format!("{e}\n--- output ---\n{output}"))?;
    if stem(path).ends_with("-no-fire") {
        if changed {
            return Err(format!(
                "a -no-fire case, but the pass reported a change\n--- output ---\n{output}"
            ));
        }
        if output != input {
            return Err(format!(
                "a -no-fire case, but the output differs\n--- input ---\n{input}\n--- output ---\n{output}"
            ));
        }
    }
    if run_pass(pass, &mut module)? {
        return Err("not idempotent: a second run reported a change".into());
    }
    let again = print_module(&module);
    if again != output {
        return Err(format!(
            "not idempotent: a second run printed\n{again}\n--- after the first ---\n{output}"
        ));
    }
    Ok(output)
}

/// One hand-written check line.
#[derive(Debug)]
enum Check {
    /// `// check: TEXT`: a later line contains TEXT.
    Has(String),
    /// `// check-not: TEXT`: no line between the surrounding matches does.
    Not(String),
}

impl Check {
    fn parse(text: &str) -> Result<Vec<Check>, String> {
        let mut checks = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            let (check, pattern) = if let Some(p) = line.strip_prefix("// check:") {
                (Check::Has as fn(String) -> Check, p)
            } else if let Some(p) = line.strip_prefix("// check-not:") {
                (Check::Not as fn(String) -> Check, p)
            } else if line.starts_with("// check") {
                return Err(format!("line {}: unknown check directive `{line}`", i + 1));
            } else {
                continue;
            };
            let pattern = pattern.trim();
            if pattern.is_empty() {
                return Err(format!("line {}: empty check pattern", i + 1));
            }
            checks.push(check(pattern.to_string()));
        }
        Ok(checks)
    }

    /// FileCheck's order: `Has` patterns match successive lines in order;
    /// each `Not` is checked on the lines between the matches around it.
    fn apply(checks: &[Check], output: &str) -> Result<(), String> {
        let lines: Vec<&str> = output.lines().collect();
        let mut next = 0;
        let mut nots: Vec<&str> = Vec::new();
        let check_nots = |nots: &mut Vec<&str>, from: usize, to: usize| -> Result<(), String> {
            for pattern in nots.drain(..) {
                if let Some(k) = (from..to).find(|&k| lines[k].contains(pattern)) {
                    return Err(format!("check-not `{pattern}` matched line {}: {}", k + 1, lines[k]));
                }
            }
            Ok(())
        };
        for check in checks {
            match check {
                Check::Not(pattern) => nots.push(pattern),
                Check::Has(pattern) => {
                    let Some(found) = (next..lines.len()).find(|&k| lines[k].contains(pattern.as_str())) else {
                        return Err(format!("check `{pattern}` matched no line after line {next}"));
                    };
                    check_nots(&mut nots, next, found)?;
                    next = found + 1;
                }
            }
        }
        check_nots(&mut nots, next, lines.len())
    }
}

#[test]
fn the_matcher_follows_filecheck_order() {
    let out = "a 1\nb 2\nc 3\n";
    let ok = |s: &str| Check::apply(&Check::parse(s).unwrap(), out);
    assert!(ok("// check: a\n// check: c").is_ok());
    assert!(ok("// check: c\n// check: a").is_err(), "order matters");
    assert!(ok("// check: a\n// check: a").is_err(), "one line matches once");
    assert!(ok("// check: a\n// check-not: b\n// check: c").is_err());
    assert!(
        ok("// check: a\n// check-not: a\n// check: c").is_ok(),
        "only between matches"
    );
    assert!(
        ok("// check: b\n// check-not: c").is_err(),
        "a trailing check-not runs to the end"
    );
    assert!(ok("// check-not: z").is_ok());
    assert!(Check::parse("// checks: a").is_err());
}
