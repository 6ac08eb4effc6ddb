//! The one nesting limit of the language, checked before anything recurses.
//!
//! pest's generated parser, the AST builder, lowering, the AST dump and the
//! `model!` macro all recurse once per `residual {` and once per call in a
//! value (`act=f(f(…))`). Rather than make each of them iterative, the text
//! is scanned once, here, before pest sees it: any bracket (`{`, `(` or `[`)
//! opened more than [`MAX_NESTING`] deep is an error at that bracket. Every
//! later stage may then recurse freely: at most [`MAX_NESTING`] levels, which
//! they all handle within a 2 MiB debug-build thread stack (tested).
//!
//! The scan is what makes the position deterministic: pest's own guard stops
//! where its stack runs out, which depends on the thread's stack size and
//! where the stack starts.

use nnc_diag::{Diagnostic, Span};

/// Brackets of any kind open at once. A real network nests a few residual
/// blocks and a call or two; 64 is far beyond any of them.
pub const MAX_NESTING: usize = 64;

/// Code of the "nests too deeply" error.
pub(crate) const TOO_DEEP: &str = "E0003";

/// The first bracket opened more than [`MAX_NESTING`] deep, as a diagnostic.
pub(crate) fn check_nesting(text: &str) -> Result<(), Vec<Diagnostic>> {
    match first_too_deep(text) {
        Some(at) => Err(vec![too_deep(at)]),
        None => Ok(()),
    }
}

/// Where the first bracket opened more than [`MAX_NESTING`] deep is.
/// Comments (`#` and `//` to the end of the line) are skipped; a closing
/// bracket without an opening one is left to the parser.
fn first_too_deep(text: &str) -> Option<Span> {
    let bytes = text.as_bytes();
    let mut depth = 0usize;
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let comment = b == b'#' || (b == b'/' && bytes.get(i + 1) == Some(&b'/'));
        if comment {
            i += bytes[i..].iter().position(|&c| c == b'\n').unwrap_or(bytes.len() - i);
            continue;
        }
        match b {
            b'{' | b'(' | b'[' => {
                depth += 1;
                if depth > MAX_NESTING {
                    return Some(Span::new(i, i + 1));
                }
            }
            b'}' | b')' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    None
}

fn too_deep(at: Span) -> Diagnostic {
    Diagnostic::error(
        TOO_DEEP,
        format!("the program nests too deeply (more than {MAX_NESTING} levels)"),
        at,
        format!("level {} opens here", MAX_NESTING + 1),
    )
    .with_help(format!(
        "residual blocks, calls and shapes may nest at most {MAX_NESTING} levels deep, counted together"
    ))
}
