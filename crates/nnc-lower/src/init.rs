//! Weight initialisation (LANGUAGE.md §3): schemes and aliases resolved to a
//! distribution with numbers, given the layer's fans and activation.
//!
//! Formulas: Glorot & Bengio (2010) for Xavier, He et al. (2015) for He,
//! LeCun et al. (1998) for LeCun, Keras `VarianceScaling` (truncated normal
//! cut at 2σ, σ corrected by 0.87962566103423978, the std of a standard
//! normal truncated to [−2, 2]), Saxe et al. (2014) for orthogonal.

use crate::act::ActSpec;
use crate::codes;
use crate::values::{bind, real, real_in, shown, unknown_name, word};
use nnc_diag::Diagnostic;
use nnc_ir::{Dist, Init};
use nnc_syntax::ast::{Value, ValueKind};

const TRUNCATED_NORMAL_STD: f64 = 0.879_625_661_034_239_8;

/// Every name `init=` accepts, aliases included.
const NAMES: &[&str] = &[
    "auto",
    "zeros",
    "ones",
    "constant",
    "normal",
    "uniform",
    "xavier_uniform",
    "xavier",
    "glorot",
    "glorot_uniform",
    "xavier_normal",
    "glorot_normal",
    "he_normal",
    "he",
    "kaiming",
    "kaiming_normal",
    "msra",
    "he_uniform",
    "kaiming_uniform",
    "lecun_normal",
    "lecun",
    "lecun_uniform",
    "variance_scaling",
    "orthogonal",
];

/// The fans of a weight: fan_in = IN·K·K/G, fan_out = OUT·K·K (PyTorch).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Fans {
    pub fan_in: usize,
    pub fan_out: usize,
}

/// Resolves a weight's `init=` and `gain=` (either may be absent).
pub(crate) fn resolve_weight_init(
    init: Option<&Value>,
    gain: Option<&Value>,
    act: &ActSpec,
    fans: Fans,
    diags: &mut Vec<Diagnostic>,
) -> Option<Init> {
    let auto_name = if act.is_relu_family() {
        "he_normal"
    } else if act.is_selu() {
        "lecun_normal"
    } else {
        "xavier_uniform"
    };
    let (scheme, inner_gain) = match init {
        None => (auto_name, None),
        Some(value) => {
            let name = scheme_name(value, diags)?;
            let name = if name == "auto" { auto_name } else { name };
            let inner_gain = match (name, &value.kind) {
                ("xavier_uniform" | "xavier_normal" | "orthogonal", ValueKind::Call { .. }) => {
                    bind(value, name, &["gain"], diags)?.get(0)
                }
                _ => None,
            };
            (name, inner_gain)
        }
    };
    let gain_option = gain;
    let gain = resolve_gain(scheme, gain, inner_gain, act, diags)?;
    let (fan_in, fan_out) = (fans.fan_in as f64, fans.fan_out as f64);
    let dist = match scheme {
        "xavier_uniform" => uniform(gain * (6.0 / (fan_in + fan_out)).sqrt()),
        "xavier_normal" => normal(gain * (2.0 / (fan_in + fan_out)).sqrt()),
        "he_normal" => normal((2.0 / fan_in).sqrt()),
        "he_uniform" => uniform((6.0 / fan_in).sqrt()),
        "lecun_normal" => normal((1.0 / fan_in).sqrt()),
        "lecun_uniform" => uniform((3.0 / fan_in).sqrt()),
        "orthogonal" => Dist::Orthogonal { gain: gain as f32 },
        _ => {
            // Schemes whose numbers come from their arguments.
            let value = init?;
            explicit_dist(scheme, value, fans, diags)?
        }
    };
    // A scale the gain pushes past f32 draws infinite weights.
    let reach = match dist {
        Dist::Uniform { low, high } => f64::from(low.abs().max(high.abs())),
        Dist::Normal { mean, std } => f64::from(mean.abs()) + LARGEST_NORMAL_DRAW * f64::from(std),
        Dist::Orthogonal { gain } => f64::from(gain),
        _ => 0.0,
    };
    if reach.is_nan() || reach > f32::MAX as f64 {
        let at = gain_option.or(inner_gain).or(init).map(|v| v.span)?;
        let msg = format!(
            "{scheme} with gain {} draws weights beyond the range of a 32-bit float (3.4e38)",
            shown(gain)
        );
        diags.push(Diagnostic::error(
            codes::OUT_OF_RANGE,
            msg,
            at,
            "too large for f32 weights",
        ));
        return None;
    }
    if let (Dist::Constant { value: v }, Some(init)) = (&dist, init) {
        let msg = format!("init={scheme} gives every unit of this layer the same weights ({v})");
        let d = Diagnostic::warning(codes::CONSTANT_INIT, msg, init.span, "constant init").with_help(
            "identical units receive identical gradients and never break symmetry; use `auto`, `he` or `xavier`",
        );
        diags.push(d);
    }
    let uses_fans = !matches!(dist, Dist::Constant { .. });
    Some(Init {
        scheme: scheme.to_string(),
        fan_in: uses_fans.then_some(fans.fan_in),
        fan_out: uses_fans.then_some(fans.fan_out),
        dist,
    })
}

/// Resolves `bias_init=`: `zeros` (the default) or `constant(V)`.
pub(crate) fn resolve_bias_init(value: Option<&Value>, diags: &mut Vec<Diagnostic>) -> Option<Init> {
    let Some(value) = value else {
        return Some(Init::constant("zeros", 0.0));
    };
    match value.name() {
        Some("zeros") if matches!(value.kind, ValueKind::Word(_)) => Some(Init::constant("zeros", 0.0)),
        Some("constant") => {
            let args = bind(value, "constant", &["value"], diags)?;
            let v = required(args.get(0), "constant", "value", value, diags)?;
            Some(Init::constant("constant", real(v, "the constant", diags)? as f32))
        }
        Some(other) => {
            diags.push(unknown_name("bias init", other, value, &["zeros", "constant"]));
            None
        }
        None => {
            let msg = "bias_init must be `zeros` or `constant(V)`";
            diags.push(Diagnostic::error(
                codes::BAD_ARGUMENT,
                msg,
                value.span,
                "expected an init",
            ));
            None
        }
    }
}

/// The canonical scheme name of an `init=` value.
fn scheme_name(value: &Value, diags: &mut Vec<Diagnostic>) -> Option<&'static str> {
    let Some(name) = value.name() else {
        let msg = "an init must be a scheme such as `he`, `xavier` or `normal(std=0.01)`";
        diags.push(Diagnostic::error(
            codes::BAD_ARGUMENT,
            msg,
            value.span,
            "expected an init scheme",
        ));
        return None;
    };
    let canonical = match name {
        "xavier" | "glorot" | "glorot_uniform" | "xavier_uniform" => "xavier_uniform",
        "glorot_normal" | "xavier_normal" => "xavier_normal",
        "he" | "kaiming" | "kaiming_normal" | "msra" | "he_normal" => "he_normal",
        "kaiming_uniform" | "he_uniform" => "he_uniform",
        "lecun" | "lecun_normal" => "lecun_normal",
        other => match NAMES.iter().find(|n| **n == other) {
            Some(n) => *n,
            None => {
                diags.push(unknown_name("init scheme", other, value, NAMES));
                return None;
            }
        },
    };
    let takes_args = matches!(
        canonical,
        "constant" | "normal" | "uniform" | "variance_scaling" | "orthogonal" | "xavier_uniform" | "xavier_normal"
    );
    if !takes_args && matches!(value.kind, ValueKind::Call { .. }) {
        bind(value, name, &[], diags)?;
    }
    Some(canonical)
}

/// The gain for schemes that take one, with the E0403 checks.
fn resolve_gain(
    scheme: &str,
    option: Option<&Value>,
    inner: Option<&Value>,
    act: &ActSpec,
    diags: &mut Vec<Diagnostic>,
) -> Option<f64> {
    let takes_gain = matches!(scheme, "xavier_uniform" | "xavier_normal" | "orthogonal");
    let value = match (option, inner) {
        (Some(option), Some(inner)) => {
            let d = Diagnostic::error(codes::GAIN, "gain given twice", option.span, "given again here")
                .with_secondary(inner.span, "first given here");
            diags.push(d);
            return None;
        }
        (Some(v), None) | (None, Some(v)) => v,
        (None, None) => return Some(1.0),
    };
    if !takes_gain {
        let msg = format!("`{scheme}` takes no gain");
        let d = Diagnostic::error(codes::GAIN, msg, value.span, "gain not allowed here").with_help(
            "gain= goes with xavier_uniform, xavier_normal and orthogonal; He and LeCun fix their own scale",
        );
        diags.push(d);
        return None;
    }
    match &value.kind {
        ValueKind::Word(w) if w == "auto" => Some(act.gain()),
        ValueKind::Word(_) => word(value, "gain", &["auto"], diags).map(|_| 1.0),
        _ => real_in(value, "gain", |g| g > 0.0, "positive", diags),
    }
}

/// The largest |z| the runtime's Box–Muller draw can give: √(−2 ln 2⁻⁵³),
/// from the smallest `1 − u` of a 53-bit uniform.
const LARGEST_NORMAL_DRAW: f64 = 8.572;

fn explicit_dist(scheme: &str, value: &Value, fans: Fans, diags: &mut Vec<Diagnostic>) -> Option<Dist> {
    let f = |x: f64| x as f32;
    match scheme {
        "zeros" => Some(Dist::Constant { value: 0.0 }),
        "ones" => Some(Dist::Constant { value: 1.0 }),
        "constant" => {
            let args = bind(value, scheme, &["value"], diags)?;
            let v = required(args.get(0), scheme, "value", value, diags)?;
            Some(Dist::Constant {
                value: f(real(v, "the constant", diags)?),
            })
        }
        "normal" => {
            let args = bind(value, scheme, &["std", "mean"], diags)?;
            let std = required(args.get(0), scheme, "std", value, diags)?;
            let std = real_in(std, "std", |s| s > 0.0, "positive", diags)?;
            let mean = match args.get(1) {
                Some(m) => real(m, "mean", diags)?,
                None => 0.0,
            };
            if mean.abs() + LARGEST_NORMAL_DRAW * std > f32::MAX as f64 {
                let msg = format!(
                    "normal with std {} and mean {} draws weights beyond the range of a 32-bit float \
                     (|mean| + {LARGEST_NORMAL_DRAW:.1}·std must stay below 3.4e38)",
                    shown(std),
                    shown(mean)
                );
                let at = args.get(0).map_or(value.span, |v| v.span);
                diags.push(Diagnostic::error(
                    codes::OUT_OF_RANGE,
                    msg,
                    at,
                    "too large for f32 weights",
                ));
                return None;
            }
            Some(Dist::Normal {
                mean: f(mean),
                std: f(std),
            })
        }
        "uniform" => {
            // `uniform(A)` is U(−A, A); `uniform(LO, HI)` is U(LO, HI).
            let args = bind(value, scheme, &["low", "high"], diags)?;
            let first = required(args.get(0), scheme, "low", value, diags)?;
            let a = real(first, "the bound", diags)?;
            let (low, high) = match args.get(1) {
                Some(hi) => (a, real(hi, "high", diags)?),
                None => (-a.abs(), a.abs()),
            };
            if low >= high {
                let msg = format!("uniform needs low < high, got low={low}, high={high}");
                diags.push(Diagnostic::error(codes::OUT_OF_RANGE, msg, value.span, "empty range"));
                return None;
            }
            Some(Dist::Uniform {
                low: f(low),
                high: f(high),
            })
        }
        "variance_scaling" => variance_scaling(value, fans, diags),
        _ => None,
    }
}

/// Keras `VarianceScaling`: variance = scale / n with n the chosen fan.
fn variance_scaling(value: &Value, fans: Fans, diags: &mut Vec<Diagnostic>) -> Option<Dist> {
    let args = bind(value, "variance_scaling", &["scale", "mode", "dist"], diags)?;
    let scale = match args.get(0) {
        Some(v) => real_in(v, "scale", |s| s > 0.0, "positive", diags)?,
        None => 1.0,
    };
    let mode = match args.get(1) {
        Some(v) => word(v, "mode", &["fan_in", "fan_out", "fan_avg"], diags)?,
        None => "fan_in",
    };
    let dist = match args.get(2) {
        Some(v) => word(v, "dist", &["normal", "truncated_normal", "uniform"], diags)?,
        None => "truncated_normal",
    };
    let n = match mode {
        "fan_in" => fans.fan_in as f64,
        "fan_out" => fans.fan_out as f64,
        _ => (fans.fan_in + fans.fan_out) as f64 / 2.0,
    };
    let variance = scale / n;
    Some(match dist {
        "normal" => normal(variance.sqrt()),
        "uniform" => uniform((3.0 * variance).sqrt()),
        _ => {
            let std = variance.sqrt() / TRUNCATED_NORMAL_STD;
            Dist::TruncatedNormal {
                mean: 0.0,
                std: std as f32,
                low: (-2.0 * std) as f32,
                high: (2.0 * std) as f32,
            }
        }
    })
}

fn normal(std: f64) -> Dist {
    Dist::Normal {
        mean: 0.0,
        std: std as f32,
    }
}

fn uniform(bound: f64) -> Dist {
    Dist::Uniform {
        low: -bound as f32,
        high: bound as f32,
    }
}

fn required<'a>(
    arg: Option<&'a Value>,
    func: &str,
    name: &str,
    call: &Value,
    diags: &mut Vec<Diagnostic>,
) -> Option<&'a Value> {
    if arg.is_none() {
        let msg = format!("`{func}` needs its `{name}` argument");
        diags.push(Diagnostic::error(
            codes::MISSING,
            msg,
            call.span,
            format!("missing `{name}`"),
        ));
    }
    arg
}
