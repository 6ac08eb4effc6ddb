//! Normalisations (LANGUAGE.md §5) and dropouts (§6) as written, resolved
//! to numbers. Shape checks happen where they are applied, in `lower.rs`.

use crate::codes;
use crate::values::{bind, real_in, uint, unknown_name};
use nnc_diag::{Diagnostic, Span};
use nnc_syntax::ast::{Value, ValueKind};

const NORMS: &[&str] = &["batch", "layer", "instance", "group", "lrn", "none"];
const DROPOUTS: &[&str] = &["alpha", "dropconnect", "dropblock"];

/// PyTorch's defaults.
const EPS: f64 = 1e-5;
const MOMENTUM: f64 = 0.1;

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum NormKind {
    Batch {
        eps: f32,
        momentum: f32,
    },
    Layer {
        eps: f32,
    },
    Instance {
        eps: f32,
    },
    Group {
        groups: u32,
        eps: f32,
    },
    Lrn {
        size: u32,
        alpha: f32,
        beta: f32,
        bias: f32,
    },
}

#[derive(Clone, Debug)]
pub(crate) struct NormSpec {
    pub kind: NormKind,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum DropKind {
    Inverted,
    Alpha,
    Connect,
    Block { block: u32 },
}

#[derive(Clone, Debug)]
pub(crate) struct DropSpec {
    pub kind: DropKind,
    pub p: f32,
    pub span: Span,
}

impl NormKind {
    /// Instance, group and LRN normalise over H and W: images only.
    pub(crate) fn needs_image(&self) -> bool {
        matches!(
            self,
            NormKind::Instance { .. } | NormKind::Group { .. } | NormKind::Lrn { .. }
        )
    }

    pub(crate) fn name(&self) -> &'static str {
        match self {
            NormKind::Batch { .. } => "batch",
            NormKind::Layer { .. } => "layer",
            NormKind::Instance { .. } => "instance",
            NormKind::Group { .. } => "group",
            NormKind::Lrn { .. } => "lrn",
        }
    }
}

/// Resolves `norm=VALUE` or `norm VALUE`; `Ok(None)` is `none`.
pub(crate) fn resolve_norm(value: &Value, diags: &mut Vec<Diagnostic>) -> Result<Option<NormSpec>, ()> {
    let Some(name) = value.name() else {
        let msg = "a normalisation must be a name such as `batch` or `group(groups=8)`";
        diags.push(Diagnostic::error(
            codes::BAD_ARGUMENT,
            msg,
            value.span,
            "expected a normalisation",
        ));
        return Err(());
    };
    let eps_of = |v: Option<&Value>, diags: &mut Vec<Diagnostic>| match v {
        Some(v) => real_in(v, "eps", |e| e > 0.0, "positive", diags).map(|e| e as f32),
        None => Some(EPS as f32),
    };
    let kind = match name {
        "none" => return bind(value, name, &[], diags).map(|_| None).ok_or(()),
        "batch" => {
            let args = bind(value, name, &["eps", "momentum"], diags).ok_or(())?;
            let eps = eps_of(args.get(0), diags).ok_or(())?;
            let momentum = match args.get(1) {
                Some(v) => real_in(v, "momentum", |m| (0.0..=1.0).contains(&m), "in [0, 1]", diags).ok_or(())?,
                None => MOMENTUM,
            };
            NormKind::Batch {
                eps,
                momentum: momentum as f32,
            }
        }
        "layer" => {
            let args = bind(value, name, &["eps"], diags).ok_or(())?;
            NormKind::Layer {
                eps: eps_of(args.get(0), diags).ok_or(())?,
            }
        }
        "instance" => {
            let args = bind(value, name, &["eps"], diags).ok_or(())?;
            NormKind::Instance {
                eps: eps_of(args.get(0), diags).ok_or(())?,
            }
        }
        "group" => {
            let args = bind(value, name, &["groups", "eps"], diags).ok_or(())?;
            let Some(groups) = args.get(0) else {
                let msg = "group norm needs its number of groups: `group(groups=G)`";
                diags.push(Diagnostic::error(codes::MISSING, msg, value.span, "missing `groups`"));
                return Err(());
            };
            let groups = uint(groups, "groups", 1, diags).ok_or(())?;
            NormKind::Group {
                groups,
                eps: eps_of(args.get(1), diags).ok_or(())?,
            }
        }
        "lrn" => {
            let args = bind(value, name, &["size", "alpha", "beta", "bias"], diags).ok_or(())?;
            let size = match args.get(0) {
                Some(v) => uint(v, "lrn's size", 1, diags).ok_or(())?,
                None => 5,
            };
            if size % 2 == 0 {
                let span = args.get(0).map_or(value.span, |v| v.span);
                diags.push(Diagnostic::error(
                    codes::OUT_OF_RANGE,
                    format!("lrn's size must be odd, got {size}"),
                    span,
                    "even size",
                ));
                return Err(());
            }
            let real_or = |slot: usize, what: &str, default: f64, diags: &mut Vec<Diagnostic>| match args.get(slot) {
                Some(v) => real_in(v, what, |x| x.is_finite(), "finite", diags).map(|x| x as f32),
                None => Some(default as f32),
            };
            let alpha = real_or(1, "lrn's alpha", 1e-4, diags).ok_or(())?;
            let beta = real_or(2, "lrn's beta", 0.75, diags).ok_or(())?;
            let bias = real_or(3, "lrn's bias", 1.0, diags).ok_or(())?;
            NormKind::Lrn {
                size,
                alpha,
                beta,
                bias,
            }
        }
        other => {
            diags.push(unknown_name("normalisation", other, value, NORMS));
            return Err(());
        }
    };
    Ok(Some(NormSpec { kind, span: value.span }))
}

/// Resolves `dropout=VALUE` or `dropout VALUE`: a probability, or
/// `alpha(P)`, `dropconnect(P)`, `dropblock(P, block=B)`.
pub(crate) fn resolve_dropout(value: &Value, diags: &mut Vec<Diagnostic>) -> Option<DropSpec> {
    let prob = |v: &Value, diags: &mut Vec<Diagnostic>| {
        real_in(v, "a drop probability", |p| (0.0..1.0).contains(&p), "in [0, 1)", diags).map(|p| p as f32)
    };
    let (kind, p) = match &value.kind {
        ValueKind::Number(_) => (DropKind::Inverted, prob(value, diags)?),
        ValueKind::Word(w) => {
            let msg = format!("`{w}` needs its probability: `{w}(P)`");
            if DROPOUTS.contains(&w.as_str()) {
                diags.push(Diagnostic::error(
                    codes::MISSING,
                    msg,
                    value.span,
                    "missing probability",
                ));
            } else {
                diags.push(unknown_name("dropout", w, value, DROPOUTS));
            }
            return None;
        }
        ValueKind::Call { name, .. } => {
            let signature: &[&str] = match name.name.as_str() {
                "dropblock" => &["p", "block"],
                "alpha" | "dropconnect" => &["p"],
                other => {
                    diags.push(unknown_name("dropout", other, value, DROPOUTS));
                    return None;
                }
            };
            let args = bind(value, &name.name, signature, diags)?;
            let Some(p) = args.get(0) else {
                let msg = format!("`{}` needs its probability", name.name);
                diags.push(Diagnostic::error(
                    codes::MISSING,
                    msg,
                    value.span,
                    "missing probability",
                ));
                return None;
            };
            let p = prob(p, diags)?;
            let kind = match name.name.as_str() {
                "alpha" => DropKind::Alpha,
                "dropconnect" => DropKind::Connect,
                _ => {
                    let Some(block) = args.get(1) else {
                        let msg = "dropblock needs its block size: `dropblock(P, block=B)`";
                        diags.push(Diagnostic::error(codes::MISSING, msg, value.span, "missing `block`"));
                        return None;
                    };
                    let size = uint(block, "dropblock's block", 1, diags)?;
                    if size % 2 == 0 {
                        let msg = format!("dropblock's block must be odd (as in torchvision), got {size}");
                        diags.push(Diagnostic::error(codes::OUT_OF_RANGE, msg, block.span, "even block"));
                        return None;
                    }
                    DropKind::Block { block: size }
                }
            };
            (kind, p)
        }
    };
    Some(DropSpec {
        kind,
        p,
        span: value.span,
    })
}
