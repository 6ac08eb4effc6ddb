//! A readable dump of the AST (`nnc ir --stage ast`): one node per line,
//! indented by depth, each with its `line:col`.

use crate::ast::{Model, Stmt, StmtKind, Value, ValueKind};
use nnc_diag::SourceFile;
use std::fmt::Write;

/// Dumps `model` as an indented tree.
pub fn dump(model: &Model, source: &SourceFile) -> String {
    let mut out = format!("model {} @{}\n", model.name.name, source.loc(model.span.start));
    for stmt in &model.body {
        stmt_lines(stmt, source, 1, &mut out);
    }
    out
}

fn stmt_lines(stmt: &Stmt, source: &SourceFile, depth: usize, out: &mut String) {
    let pad = "  ".repeat(depth);
    let head = match &stmt.kind {
        StmtKind::Input { shape } => {
            let dims: Vec<String> = shape.iter().map(|n| n.value.to_string()).collect();
            format!(" [{}]", dims.join(", "))
        }
        StmtKind::Dense {
            in_features,
            out_features: out_n,
        }
        | StmtKind::Conv {
            in_channels: in_features,
            out_channels: out_n,
        } => match in_features {
            Some(i) => format!(" {} -> {}", i.value, out_n.value),
            None => format!(" {}", out_n.value),
        },
        StmtKind::Act(v) | StmtKind::Norm(v) | StmtKind::Dropout(v) => format!(" {}", value(v)),
        StmtKind::MaxPool | StmtKind::AvgPool | StmtKind::GlobalAvgPool | StmtKind::Flatten | StmtKind::Residual(_) => {
            String::new()
        }
    };
    let _ = writeln!(
        out,
        "{pad}{}{head} @{}",
        stmt.kind.keyword(),
        source.loc(stmt.span.start)
    );
    for opt in &stmt.options {
        let _ = writeln!(
            out,
            "{pad}  {}={} @{}",
            opt.key.name,
            value(&opt.value),
            source.loc(opt.span.start)
        );
    }
    if let StmtKind::Residual(body) = &stmt.kind {
        for inner in body {
            stmt_lines(inner, source, depth + 1, out);
        }
    }
}

/// A value as it could be written back: `leaky_relu(alpha=0.1)`.
fn value(v: &Value) -> String {
    match &v.kind {
        ValueKind::Number(n) => n.to_string(),
        ValueKind::Word(w) => w.clone(),
        ValueKind::Call { name, args } => {
            let args: Vec<String> = args
                .iter()
                .map(|a| match &a.key {
                    Some(k) => format!("{}={}", k.name, value(&a.value)),
                    None => value(&a.value),
                })
                .collect();
            format!("{}({})", name.name, args.join(", "))
        }
    }
}
