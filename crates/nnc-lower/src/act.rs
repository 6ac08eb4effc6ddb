//! Activations as the language spells them (LANGUAGE.md §4), resolved to
//! the IR's [`Act`] and to what `init=auto` and `gain=auto` need to know.

use crate::codes;
use crate::values::{bind, real, real_in, uint, unknown_name, word};
use nnc_diag::{Diagnostic, Span};
use nnc_ir::Act;
use nnc_syntax::ast::{Value, ValueKind};

const NAMES: &[&str] = &[
    "linear",
    "sigmoid",
    "tanh",
    "relu",
    "leaky_relu",
    "prelu",
    "rrelu",
    "elu",
    "selu",
    "softplus",
    "gelu",
    "silu",
    "maxout",
    "softmax",
];

/// A resolved activation. PReLU is apart because its slopes are a
/// parameter that lowering creates with the layer's name.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum ActChoice {
    /// `linear`: no op at all.
    Identity,
    Plain(Act),
    Prelu {
        init: f32,
        shared: bool,
    },
}

/// An activation with where it was written.
#[derive(Clone, Debug)]
pub(crate) struct ActSpec {
    pub choice: ActChoice,
    pub span: Span,
}

impl ActSpec {
    pub(crate) fn identity(span: Span) -> ActSpec {
        ActSpec {
            choice: ActChoice::Identity,
            span,
        }
    }

    /// Maxout's pieces, 1 for everything else.
    pub(crate) fn pieces(&self) -> usize {
        match self.choice {
            ActChoice::Plain(Act::Maxout { pieces }) => pieces as usize,
            _ => 1,
        }
    }

    /// `init=auto` picks He for these (He ignores the leak).
    pub(crate) fn is_relu_family(&self) -> bool {
        matches!(
            self.choice,
            ActChoice::Prelu { .. }
                | ActChoice::Plain(
                    Act::Relu | Act::LeakyRelu { .. } | Act::Rrelu { .. } | Act::Elu { .. } | Act::Gelu | Act::Silu
                )
        )
    }

    pub(crate) fn is_selu(&self) -> bool {
        self.choice == ActChoice::Plain(Act::Selu)
    }

    /// PyTorch's `calculate_gain` for this activation: tanh 5/3, relu √2,
    /// leaky_relu √(2/(1+α²)), selu 3/4, and 1 for the ones it lists no gain
    /// for.
    pub(crate) fn gain(&self) -> f64 {
        match self.choice {
            ActChoice::Plain(Act::Tanh) => 5.0 / 3.0,
            ActChoice::Plain(Act::Relu) => 2f64.sqrt(),
            ActChoice::Plain(Act::LeakyRelu { alpha }) => (2.0 / (1.0 + f64::from(alpha).powi(2))).sqrt(),
            ActChoice::Plain(Act::Selu) => 0.75,
            _ => 1.0,
        }
    }
}

/// Resolves `act=VALUE` or `act VALUE`.
pub(crate) fn resolve_act(value: &Value, diags: &mut Vec<Diagnostic>) -> Option<ActSpec> {
    let Some(name) = value.name() else {
        let msg = "an activation must be a name such as `relu` or `leaky_relu(0.1)`";
        diags.push(Diagnostic::error(
            codes::BAD_ARGUMENT,
            msg,
            value.span,
            "expected an activation",
        ));
        return None;
    };
    let f = |x: f64| x as f32;
    let choice = match name {
        "linear" => no_args(value, name, diags).map(|_| ActChoice::Identity)?,
        "sigmoid" | "tanh" | "relu" | "selu" | "gelu" | "silu" | "softmax" => {
            no_args(value, name, diags)?;
            ActChoice::Plain(match name {
                "sigmoid" => Act::Sigmoid,
                "tanh" => Act::Tanh,
                "relu" => Act::Relu,
                "selu" => Act::Selu,
                "gelu" => Act::Gelu,
                "silu" => Act::Silu,
                _ => Act::Softmax,
            })
        }
        "leaky_relu" => {
            let args = bind(value, name, &["alpha"], diags)?;
            let alpha = opt_real(args.get(0), "leaky_relu's alpha", 0.01, diags)?;
            ActChoice::Plain(Act::LeakyRelu { alpha: f(alpha) })
        }
        "elu" => {
            let args = bind(value, name, &["alpha"], diags)?;
            let alpha = opt_real(args.get(0), "elu's alpha", 1.0, diags)?;
            ActChoice::Plain(Act::Elu { alpha: f(alpha) })
        }
        "softplus" => {
            let args = bind(value, name, &["beta"], diags)?;
            let beta = match args.get(0) {
                Some(v) => real_in(v, "softplus's beta", |b| b > 0.0, "positive", diags)?,
                None => 1.0,
            };
            ActChoice::Plain(Act::Softplus { beta: f(beta) })
        }
        "rrelu" => {
            let args = bind(value, name, &["lower", "upper"], diags)?;
            let lower = opt_real(args.get(0), "rrelu's lower", 1.0 / 8.0, diags)?;
            let upper = opt_real(args.get(1), "rrelu's upper", 1.0 / 3.0, diags)?;
            if !(0.0 <= lower && lower <= upper) {
                let msg = format!("rrelu needs 0 ≤ lower ≤ upper, got lower={lower}, upper={upper}");
                diags.push(Diagnostic::error(codes::OUT_OF_RANGE, msg, value.span, "out of range"));
                return None;
            }
            ActChoice::Plain(Act::Rrelu {
                lower: f(lower),
                upper: f(upper),
            })
        }
        "maxout" => {
            let args = bind(value, name, &["pieces"], diags)?;
            let pieces = match args.get(0) {
                Some(v) => uint(v, "maxout's pieces", 1, diags)?,
                None => 2,
            };
            ActChoice::Plain(Act::Maxout { pieces })
        }
        "prelu" => {
            let args = bind(value, name, &["init", "shared"], diags)?;
            let init = opt_real(args.get(0), "prelu's init", 0.25, diags)?;
            let shared = match args.get(1) {
                Some(v) => word(v, "prelu's shared", &["true", "false"], diags)? == "true",
                None => false,
            };
            ActChoice::Prelu { init: f(init), shared }
        }
        other => {
            diags.push(unknown_name("activation", other, value, NAMES));
            return None;
        }
    };
    Some(ActSpec {
        choice,
        span: value.span,
    })
}

fn no_args(value: &Value, name: &str, diags: &mut Vec<Diagnostic>) -> Option<()> {
    match &value.kind {
        ValueKind::Call { .. } => bind(value, name, &[], diags).map(|_| ()),
        _ => Some(()),
    }
}

fn opt_real(value: Option<&Value>, what: &str, default: f64, diags: &mut Vec<Diagnostic>) -> Option<f64> {
    match value {
        Some(v) => real(v, what, diags),
        None => Some(default),
    }
}
