//! `model!`: a `.nn` model compiled to a Rust struct while the user's crate
//! builds, by the same front end, passes and code generator as `nnc build`.
//!
//! ```ignore
//! nnc::model! {
//!     model Mlp {
//!         input 800
//!         dense 800 -> 10 act=softmax
//!     }
//! }
//! nnc::model!(file = "models/mlp.nn"); // relative to CARGO_MANIFEST_DIR
//! // Also `MlpTrain` and `MlpGrads`, the training step (loss: §9's default,
//! // or `loss = "mse",` before the model).
//! nnc::model!(train, file = "models/mlp.nn");
//! ```
//!
//! Inline, the macro's tokens are joined back into text (the language is
//! free-form, so spacing does not matter) remembering which token each byte
//! came from; a diagnostic becomes a `compile_error!` at the token its
//! primary span starts in. From a file, the error names `file:line:col` with
//! the source line and a caret, and an `include_str!` of the file makes
//! cargo rebuild when it changes.

mod tokens;

use nnc_diag::{Diagnostic, SourceFile};
use nnc_driver::{compile, CompileError, Options, Quiet};
use proc_macro2::{TokenStream, TokenTree};
use quote::{quote, quote_spanned};
use tokens::Text;

#[proc_macro]
pub fn model(input: proc_macro::TokenStream) -> proc_macro::TokenStream {
    let (what, input) = match leading_options(TokenStream::from(input)) {
        Ok(split) => split,
        Err(e) => return e.to_compile_error().into(),
    };
    let expanded = match file_argument(&input) {
        Some(Ok(path)) => from_file(&path, &what),
        Some(Err(e)) => e.to_compile_error(),
        None => inline(input, &what),
    };
    expanded.into()
}

/// What to generate: the inference struct, and with `train` the training
/// step too, for `loss` (§9's default when `None`).
#[derive(Clone, Debug, Default)]
struct What {
    train: bool,
    loss: Option<nnc_driver::Loss>,
}

/// The options before the model: `train,` and `loss = "mse",` (in any
/// order), and the tokens after them.
fn leading_options(input: TokenStream) -> syn::Result<(What, TokenStream)> {
    let trees: Vec<TokenTree> = input.into_iter().collect();
    let mut what = What::default();
    let mut at = 0;
    loop {
        let comma = |i: usize| matches!(trees.get(i), Some(TokenTree::Punct(p)) if p.as_char() == ',');
        match (trees.get(at), trees.get(at + 1)) {
            (Some(TokenTree::Ident(key)), _) if key == "train" && comma(at + 1) => {
                what.train = true;
                at += 2;
            }
            (Some(TokenTree::Ident(key)), Some(TokenTree::Punct(eq))) if key == "loss" && eq.as_char() == '=' => {
                let literal: syn::LitStr = match trees.get(at + 2) {
                    Some(tree) => syn::parse2(tree.clone().into())?,
                    None => return Err(syn::Error::new(key.span(), "`loss =` needs a loss name in quotes")),
                };
                let loss = nnc_driver::Loss::from_name(&literal.value()).ok_or_else(|| {
                    let names = nnc_driver::Loss::NAMES.join(", ");
                    syn::Error::new(literal.span(), format!("unknown loss; the losses are {names}"))
                })?;
                what.loss = Some(loss);
                what.train = true;
                at += if comma(at + 3) { 4 } else { 3 };
            }
            _ => break,
        }
    }
    Ok((what, trees[at..].iter().cloned().collect()))
}

/// `file = "…"`: the path literal, or `None` for an inline model.
fn file_argument(input: &TokenStream) -> Option<syn::Result<syn::LitStr>> {
    let mut trees = input.clone().into_iter();
    match (trees.next(), trees.next()) {
        (Some(TokenTree::Ident(key)), Some(TokenTree::Punct(eq))) if key == "file" && eq.as_char() == '=' => {
            let rest: TokenStream = trees.collect();
            Some(syn::parse2::<syn::LitStr>(rest))
        }
        _ => None,
    }
}

fn inline(input: TokenStream, what: &What) -> TokenStream {
    let text = Text::join(input);
    let source = SourceFile::new("model!", text.text.clone());
    match generate(&source, what) {
        Ok(tokens) => tokens,
        Err(Failure::Program(diagnostics)) => {
            let errors: Vec<&Diagnostic> = diagnostics.iter().filter(|d| d.is_error()).collect();
            let shown = errors.iter().take(nnc_diag::MAX_SHOWN).map(|d| {
                let span = text.span_at(d.primary.span.start as usize);
                let message = message(d);
                quote_spanned!(span=> ::core::compile_error!(#message);)
            });
            // As many errors as statements would flood the build output.
            let rest = errors.len().saturating_sub(nnc_diag::MAX_SHOWN);
            let more = (rest > 0).then(|| {
                let message = format!("… and {rest} more model errors (not shown)");
                quote!(::core::compile_error!(#message);)
            });
            quote!(#(#shown)* #more)
        }
        Err(Failure::Other(message)) => quote!(::core::compile_error!(#message);),
    }
}

fn from_file(path: &syn::LitStr, what: &What) -> TokenStream {
    let root = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".into());
    from_file_in(std::path::Path::new(&root), path, what)
}

/// The file form with `path` relative to `root`.
fn from_file_in(root: &std::path::Path, path: &syn::LitStr, what: &What) -> TokenStream {
    let span = path.span();
    let full = root.join(path.value());
    let text = match std::fs::read_to_string(&full) {
        Ok(text) => text,
        Err(e) => {
            let message = format!("cannot read {} (relative to CARGO_MANIFEST_DIR): {e}", path.value());
            return quote_spanned!(span=> ::core::compile_error!(#message););
        }
    };
    let source = SourceFile::new(path.value(), text);
    // Cargo rebuilds a crate when a file it `include_str!`s changes.
    let full_text = full.display().to_string();
    let track = quote!(
        const _: &str = include_str!(#full_text);
    );
    match generate(&source, what) {
        Ok(tokens) => quote!(#track #tokens),
        Err(Failure::Program(diagnostics)) => {
            let rendered = nnc_diag::render_plain(&diagnostics, &source);
            let message = format!("the model has errors:\n{rendered}");
            quote_spanned!(span=> #track ::core::compile_error!(#message);)
        }
        Err(Failure::Other(message)) => quote_spanned!(span=> #track ::core::compile_error!(#message);),
    }
}

enum Failure {
    Program(Vec<Diagnostic>),
    Other(String),
}

fn generate(source: &SourceFile, what: &What) -> Result<TokenStream, Failure> {
    let options = if what.train {
        Options {
            modes: vec![nnc_ir::Mode::Infer, nnc_ir::Mode::Train],
            stage: nnc_driver::Stage::Grad,
            loss: what.loss,
            ..Options::default()
        }
    } else {
        Options::default()
    };
    let compiled = match compile(source, &options, &mut Quiet) {
        Ok(compiled) => compiled,
        Err(CompileError::Program(diagnostics)) => return Err(Failure::Program(diagnostics)),
        Err(CompileError::Pass(e)) => return Err(Failure::Other(format!("nnc: {e}"))),
        Err(CompileError::Grad(e)) => return Err(Failure::Other(format!("nnc: {e}"))),
    };
    let module = compiled
        .module
        .ok_or_else(|| Failure::Other("nnc: compiling produced no module".into()))?;
    let options = nnc_codegen::Options {
        train: what.train,
        ..nnc_codegen::Options::macro_expansion()
    };
    nnc_codegen::generate(&module, source, &options).map_err(|e| Failure::Other(format!("nnc: {e}")))
}

/// A diagnostic as one compile error: `E0103: message (label)`, then its
/// notes and help.
fn message(d: &Diagnostic) -> String {
    let mut m = format!("{}: {}", d.code, d.message);
    if !d.primary.message.is_empty() && d.primary.message != d.message {
        m.push_str(&format!("\n  {}", d.primary.message));
    }
    for note in &d.notes {
        m.push_str(&format!("\n  = note: {note}"));
    }
    if let Some(help) = &d.help {
        m.push_str(&format!("\n  = help: {help}"));
    }
    m
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Expands the file form on `text`, in a folder of the test's own
    /// (tests run in parallel in one process).
    fn expand_file(test: &str, text: &str) -> String {
        let dir = std::env::temp_dir().join(format!("nnc-macros-{}-{test}", std::process::id()));
        std::fs::create_dir_all(dir.join("models")).unwrap();
        std::fs::write(dir.join("models/m.nn"), text).unwrap();
        let path = syn::LitStr::new("models/m.nn", proc_macro2::Span::call_site());
        from_file_in(&dir, &path, &What::default()).to_string()
    }

    #[test]
    fn a_file_with_an_error_names_file_line_and_column_with_a_caret() {
        let out = expand_file("error", "model M {\n    input 8\n    dense 8 -> 4 act=reul\n}\n");
        assert!(out.contains("compile_error"), "{out}");
        assert!(out.contains("models/m.nn:3:22"), "{out}");
        assert!(out.contains("dense 8 -> 4 act=reul"), "{out}");
        assert!(out.contains("^^^^"), "{out}");
        // The file is tracked even when it is wrong, so fixing it rebuilds.
        assert!(out.contains("include_str"), "{out}");
    }

    #[test]
    fn train_and_loss_come_before_the_model_and_a_bad_loss_is_an_error() {
        let (what, rest) = leading_options(quote!(train, file = "m.nn")).unwrap();
        assert!(what.train && what.loss.is_none());
        assert_eq!(rest.to_string(), quote!(file = "m.nn").to_string());
        let (what, _) = leading_options(quote!(loss = "mse", model M { input 2 })).unwrap();
        assert!(what.train && what.loss == Some(nnc_driver::Loss::Mse));
        let err = leading_options(quote!(loss = "hinge", file = "m.nn")).unwrap_err();
        assert!(err.to_string().contains("cross_entropy, mse, bce"), "{err}");
        let (what, _) = leading_options(quote!(model M { input 2 })).unwrap();
        assert!(!what.train);
    }

    #[test]
    fn a_train_file_expands_to_the_training_step_too() {
        let dir = std::env::temp_dir().join(format!("nnc-macros-{}-train", std::process::id()));
        std::fs::create_dir_all(dir.join("models")).unwrap();
        std::fs::write(
            dir.join("models/m.nn"),
            "model Good { input 4 dense 4 -> 2 act=softmax }",
        )
        .unwrap();
        let path = syn::LitStr::new("models/m.nn", proc_macro2::Span::call_site());
        let what = What {
            train: true,
            loss: None,
        };
        let out = from_file_in(&dir, &path, &what).to_string();
        assert!(out.contains("pub struct GoodTrain"), "{out}");
        assert!(out.contains("pub struct GoodGrads"), "{out}");
        assert!(!out.contains("compile_error"), "{out}");
    }

    #[test]
    fn a_good_file_expands_to_the_struct_and_tracks_the_file() {
        let out = expand_file("good", "model Good { input 4 dense 4 -> 2 act=softmax }");
        assert!(out.contains("pub struct Good"), "{out}");
        assert!(out.contains("include_str"), "{out}");
        assert!(!out.contains("compile_error"), "{out}");
    }

    /// `depth` residual blocks one inside the other, as the tokens rustc
    /// hands the macro.
    fn nested_tokens(depth: usize) -> TokenStream {
        use proc_macro2::{Delimiter, Group, Ident, Literal, Span};
        let ident = |s: &str| TokenTree::Ident(Ident::new(s, Span::call_site()));
        let mut body: TokenStream = [ident("dense"), TokenTree::Literal(Literal::usize_unsuffixed(8))]
            .into_iter()
            .collect();
        for _ in 0..depth {
            let block = TokenTree::Group(Group::new(Delimiter::Brace, body));
            body = [ident("residual"), block].into_iter().collect();
        }
        let mut model: TokenStream = [ident("input"), TokenTree::Literal(Literal::usize_unsuffixed(8))]
            .into_iter()
            .collect();
        model.extend(body);
        let group = TokenTree::Group(Group::new(Delimiter::Brace, model));
        [ident("model"), ident("Deep"), group].into_iter().collect()
    }

    /// Runs `f` on a 2 MiB thread, the stack of a spawned thread.
    fn on_small_stack(f: impl FnOnce() -> String + Send + 'static) -> String {
        std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(f)
            .unwrap()
            .join()
            .unwrap()
    }

    #[test]
    fn deep_nesting_is_one_compile_error_not_a_crash() {
        // 2,000 nested residuals crashed the compiler (issue 11).
        for depth in [2_000, 20_000] {
            let out = on_small_stack(move || inline(nested_tokens(depth), &What::default()).to_string());
            assert_eq!(
                out.matches("compile_error").count(),
                1,
                "{}",
                &out[..out.len().min(400)]
            );
            assert!(out.contains("E0003"), "{}", &out[..out.len().min(400)]);
        }
    }

    #[test]
    fn nesting_at_the_limit_expands() {
        let depth = nnc_driver::MAX_NESTING - 1;
        let out = on_small_stack(move || inline(nested_tokens(depth), &What::default()).to_string());
        assert!(out.contains("pub struct Deep"), "{}", &out[..out.len().min(400)]);
    }
}
