//! Reading values: whole numbers, reals, words from a fixed set, booleans,
//! and binding call arguments (positional or by keyword) to a signature.

use crate::codes;
use crate::options::list;
use nnc_diag::{did_you_mean, Diagnostic, Span};
use nnc_syntax::ast::{Value, ValueKind};

/// The largest size of one axis nnc accepts.
pub(crate) const MAX_DIM: u64 = 1 << 20;

/// The arguments of a call, bound to a signature's slots.
pub(crate) struct Args<'a> {
    slots: Vec<Option<&'a Value>>,
}

impl<'a> Args<'a> {
    pub(crate) fn get(&self, slot: usize) -> Option<&'a Value> {
        self.slots.get(slot).copied().flatten()
    }
}

/// A whole number ≥ `min` (and ≤ 2^20).
pub(crate) fn uint(value: &Value, what: &str, min: u64, diags: &mut Vec<Diagnostic>) -> Option<u32> {
    let ValueKind::Number(n) = value.kind else {
        diags.push(Diagnostic::error(
            codes::BAD_ARGUMENT,
            format!("{what} must be a whole number"),
            value.span,
            "expected a number",
        ));
        return None;
    };
    whole(n, value.span, what, min, diags)
}

/// A number as a message quotes it: a whole number below 10^20 with every
/// digit (Rust's shortest round-trip form writes 2^64 as
/// `18446744073709552000`, which is not what the program says), a larger
/// one as `1e25`, anything else in the shortest round-trip form.
pub(crate) fn shown(n: f64) -> String {
    if n.abs() >= 1e20 {
        format!("{n:e}")
    } else if n.fract() == 0.0 {
        format!("{n:.0}")
    } else {
        n.to_string()
    }
}

/// Checks that `n`, written at `span`, is a whole number in `min..=2^20`.
pub(crate) fn whole(n: f64, span: Span, what: &str, min: u64, diags: &mut Vec<Diagnostic>) -> Option<u32> {
    if n.fract() != 0.0 || n < min as f64 {
        let msg = format!("{what} must be a whole number of at least {min}, got {}", shown(n));
        diags.push(Diagnostic::error(codes::OUT_OF_RANGE, msg, span, "out of range"));
        return None;
    }
    if n > MAX_DIM as f64 {
        let msg = format!("{what} of {} is larger than nnc supports ({MAX_DIM})", shown(n));
        diags.push(Diagnostic::error(codes::TOO_LARGE, msg, span, "too large"));
        return None;
    }
    Some(n as u32)
}

/// A real number that a 32-bit float holds: every real in a program ends
/// up an `f32` (an init's constant or spread, eps, a slope, a penalty), so
/// one that overflows to infinity or underflows to zero there is refused
/// here, at the value, rather than silently changed.
pub(crate) fn real(value: &Value, what: &str, diags: &mut Vec<Diagnostic>) -> Option<f64> {
    match value.kind {
        ValueKind::Number(n) if !n.is_finite() => {
            diags.push(Diagnostic::error(
                codes::OUT_OF_RANGE,
                format!("{what} must be finite"),
                value.span,
                "out of range",
            ));
            None
        }
        ValueKind::Number(n) if n.abs() > f32::MAX as f64 => {
            let msg = format!("{what} of {} is out of the range of a 32-bit float (±3.4e38)", shown(n));
            diags.push(Diagnostic::error(
                codes::OUT_OF_RANGE,
                msg,
                value.span,
                "too large for f32",
            ));
            None
        }
        ValueKind::Number(n) if n != 0.0 && n as f32 == 0.0 => {
            let msg = format!("{what} of {n:e} is too small for a 32-bit float: it would be 0");
            diags.push(Diagnostic::error(
                codes::OUT_OF_RANGE,
                msg,
                value.span,
                "too small for f32",
            ));
            None
        }
        ValueKind::Number(n) => Some(n),
        _ => {
            diags.push(Diagnostic::error(
                codes::BAD_ARGUMENT,
                format!("{what} must be a number"),
                value.span,
                "expected a number",
            ));
            None
        }
    }
}

/// A real number in a range, with the range spelled out for the message.
/// The range holds for the number as an `f32` too (`dropout=0.999999999`
/// would round to 1).
pub(crate) fn real_in(
    value: &Value,
    what: &str,
    ok: impl Fn(f64) -> bool,
    range: &str,
    diags: &mut Vec<Diagnostic>,
) -> Option<f64> {
    let n = real(value, what, diags)?;
    if ok(n) && ok(n as f32 as f64) {
        return Some(n);
    }
    diags.push(Diagnostic::error(
        codes::OUT_OF_RANGE,
        format!("{what} must be {range}, got {}", shown(n)),
        value.span,
        "out of range",
    ));
    None
}

/// One of a fixed set of words, with a "did you mean" for near misses.
pub(crate) fn word<'v>(value: &'v Value, what: &str, choices: &[&str], diags: &mut Vec<Diagnostic>) -> Option<&'v str> {
    let ValueKind::Word(w) = &value.kind else {
        let msg = format!("{what} must be one of {}", list(choices));
        diags.push(Diagnostic::error(
            codes::BAD_ARGUMENT,
            msg,
            value.span,
            "expected a word",
        ));
        return None;
    };
    if choices.contains(&w.as_str()) {
        return Some(w);
    }
    diags.push(unknown_name(what, w, value, choices));
    None
}

/// `true` or `false`.
pub(crate) fn boolean(value: &Value, what: &str, diags: &mut Vec<Diagnostic>) -> Option<bool> {
    word(value, what, &["true", "false"], diags).map(|w| w == "true")
}

/// The E0104 diagnostic for a name outside `choices`.
pub(crate) fn unknown_name(what: &str, name: &str, value: &Value, choices: &[&str]) -> Diagnostic {
    let d = Diagnostic::error(
        codes::UNKNOWN_NAME,
        format!("unknown {what} `{name}`"),
        value.name_span(),
        format!("not a known {what}"),
    );
    match did_you_mean(name, choices.iter().copied()) {
        Some(near) => d.with_help(format!("did you mean `{near}`?")),
        None => d.with_help(format!("known: {}", list(choices))),
    }
}

/// Binds a word or call to `signature` (argument names in positional
/// order). A word binds no arguments; a number is the caller's business.
pub(crate) fn bind<'a>(
    value: &'a Value,
    func: &str,
    signature: &[&str],
    diags: &mut Vec<Diagnostic>,
) -> Option<Args<'a>> {
    let mut slots: Vec<Option<&Value>> = vec![None; signature.len()];
    let mut ok = true;
    let mut seen_keyword = false;
    for (idx, arg) in value.args().iter().enumerate() {
        let slot = match &arg.key {
            Some(key) => {
                seen_keyword = true;
                match signature.iter().position(|s| *s == key.name) {
                    Some(slot) => slot,
                    None => {
                        let d = Diagnostic::error(
                            codes::BAD_ARGUMENT,
                            format!("`{func}` has no argument `{}`", key.name),
                            key.span,
                            "unknown argument",
                        );
                        let d = match did_you_mean(&key.name, signature.iter().copied()) {
                            Some(near) => d.with_help(format!("did you mean `{near}`?")),
                            None => d.with_help(format!("`{func}` takes {}", list(signature))),
                        };
                        diags.push(d);
                        ok = false;
                        continue;
                    }
                }
            }
            None if seen_keyword => {
                let msg = "a positional argument cannot follow a keyword argument";
                diags.push(Diagnostic::error(
                    codes::BAD_ARGUMENT,
                    msg,
                    arg.span,
                    "positional after keyword",
                ));
                ok = false;
                continue;
            }
            None if idx >= signature.len() => {
                let msg = match signature.len() {
                    0 => format!("`{func}` takes no arguments"),
                    n => format!("`{func}` takes at most {n} argument(s): {}", list(signature)),
                };
                diags.push(Diagnostic::error(codes::BAD_ARGUMENT, msg, arg.span, "extra argument"));
                ok = false;
                continue;
            }
            None => idx,
        };
        if slots[slot].is_some() {
            let msg = format!("argument `{}` of `{func}` given twice", signature[slot]);
            diags.push(Diagnostic::error(
                codes::BAD_ARGUMENT,
                msg,
                arg.span,
                "given again here",
            ));
            ok = false;
            continue;
        }
        slots[slot] = Some(&arg.value);
    }
    ok.then_some(Args { slots })
}
