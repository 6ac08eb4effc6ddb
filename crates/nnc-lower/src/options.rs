//! Which options each statement takes, and the checks every option shares:
//! unknown, misplaced and duplicated keys.

use crate::codes;
use nnc_diag::{did_you_mean, Diagnostic};
use nnc_syntax::ast::{Opt, Stmt, StmtKind};

/// The options of `dense`, and of `conv` too.
const LAYER: &[&str] = &[
    "init",
    "gain",
    "bias",
    "bias_init",
    "act",
    "norm",
    "norm_pos",
    "dropout",
    "l1",
    "l2",
    "name",
];
/// The options only `conv` has.
const GEOMETRY: &[&str] = &["k", "stride", "pad", "dilation", "groups"];
const POOL: &[&str] = &["k", "stride", "pad", "name"];
const NAME_ONLY: &[&str] = &["name"];

/// A statement's options, checked for unknown, misplaced and duplicate keys;
/// each key appears at most once.
pub(crate) struct Options<'a> {
    opts: Vec<&'a Opt>,
}

impl<'a> Options<'a> {
    pub(crate) fn collect(stmt: &'a Stmt, diags: &mut Vec<Diagnostic>) -> Options<'a> {
        let allowed = allowed(&stmt.kind);
        let keyword = stmt.kind.keyword();
        let mut opts: Vec<&Opt> = Vec::new();
        for opt in &stmt.options {
            let key = opt.key.name.as_str();
            if let Some(first) = opts.iter().find(|o| o.key.name == key) {
                diags.push(
                    Diagnostic::error(
                        codes::DUPLICATE_OPTION,
                        format!("option `{key}` given twice"),
                        opt.key.span,
                        "given again here",
                    )
                    .with_secondary(first.key.span, "first given here"),
                );
            } else if allowed.contains(&key) {
                opts.push(opt);
            } else if LAYER.contains(&key) || GEOMETRY.contains(&key) {
                let d = Diagnostic::error(
                    codes::OPTION_NOT_HERE,
                    format!("`{keyword}` takes no option `{key}`"),
                    opt.key.span,
                    "not an option of this statement",
                );
                diags.push(d.with_help(format!("`{keyword}` takes {}", list(&allowed))));
            } else {
                let d = Diagnostic::error(
                    codes::UNKNOWN_OPTION,
                    format!("unknown option `{key}`"),
                    opt.key.span,
                    "unknown option",
                );
                let d = match did_you_mean(key, allowed.iter().copied()) {
                    Some(near) => d.with_help(format!("did you mean `{near}`?")),
                    None => d.with_help(format!("`{keyword}` takes {}", list(&allowed))),
                };
                diags.push(d);
            }
        }
        Options { opts }
    }

    pub(crate) fn get(&self, key: &str) -> Option<&'a Opt> {
        self.opts.iter().find(|o| o.key.name == key).copied()
    }
}

fn allowed(kind: &StmtKind) -> Vec<&'static str> {
    let list: &[&str] = match kind {
        StmtKind::Dense { .. } => LAYER,
        StmtKind::Conv { .. } => return [LAYER, GEOMETRY].concat(),
        StmtKind::MaxPool | StmtKind::AvgPool => POOL,
        StmtKind::Input { .. }
        | StmtKind::GlobalAvgPool
        | StmtKind::Flatten
        | StmtKind::Act(_)
        | StmtKind::Norm(_)
        | StmtKind::Dropout(_)
        | StmtKind::Residual(_) => NAME_ONLY,
    };
    list.to_vec()
}

/// `a`, `a` and `b`, `a`, `b` and `c`: options in prose.
pub(crate) fn list(items: &[&str]) -> String {
    let quoted: Vec<String> = items.iter().map(|i| format!("`{i}`")).collect();
    match quoted.split_last() {
        None => "nothing".to_string(),
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
    }
}
