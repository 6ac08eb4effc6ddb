//! The macro's tokens joined back into `.nn` text, with the span of the
//! token each byte came from.

use proc_macro2::{Delimiter, Spacing, Span, TokenStream, TokenTree};

/// Text made of tokens, and where each token sits in it.
pub(crate) struct Text {
    pub(crate) text: String,
    /// `(start byte, span)` of each token, in order.
    starts: Vec<(usize, Span)>,
}

impl Text {
    pub(crate) fn join(tokens: TokenStream) -> Text {
        let mut text = Text {
            text: String::new(),
            starts: Vec::new(),
        };
        text.push_stream(tokens);
        text
    }

    fn push(&mut self, piece: &str, span: Span) {
        self.starts.push((self.text.len(), span));
        self.text.push_str(piece);
    }

    /// Joins the trees depth-first with an explicit stack of open groups,
    /// so no nesting of the input can overflow the macro's stack (the
    /// parser then refuses anything past its nesting limit).
    fn push_stream(&mut self, tokens: TokenStream) {
        // Each open group: its remaining trees, and how to close it.
        let mut open: Vec<(proc_macro2::token_stream::IntoIter, Option<(&'static str, Span)>)> =
            vec![(tokens.into_iter(), None)];
        while let Some((trees, _)) = open.last_mut() {
            let Some(tree) = trees.next() else {
                if let Some((_, Some((close, span)))) = open.pop() {
                    self.push(close, span);
                    self.text.push(' ');
                }
                continue;
            };
            match tree {
                TokenTree::Group(g) => {
                    let (open_text, close) = match g.delimiter() {
                        Delimiter::Brace => ("{", "}"),
                        Delimiter::Bracket => ("[", "]"),
                        Delimiter::Parenthesis => ("(", ")"),
                        Delimiter::None => ("", ""),
                    };
                    self.push(open_text, g.span_open());
                    self.text.push(' ');
                    open.push((g.stream().into_iter(), Some((close, g.span_close()))));
                }
                TokenTree::Punct(p) => {
                    self.push(&p.as_char().to_string(), p.span());
                    // `->` arrives as `-` joined to `>`.
                    if p.spacing() == Spacing::Alone {
                        self.text.push(' ');
                    }
                }
                TokenTree::Ident(i) => {
                    self.push(&i.to_string(), i.span());
                    self.text.push(' ');
                }
                TokenTree::Literal(l) => {
                    self.push(&l.to_string(), l.span());
                    self.text.push(' ');
                }
            }
        }
    }

    /// The span of the token at or before byte `offset` (the last token for
    /// an offset past the end: an unclosed block is reported there).
    pub(crate) fn span_at(&self, offset: usize) -> Span {
        let at = self.starts.partition_point(|(start, _)| *start <= offset);
        match at.checked_sub(1).and_then(|i| self.starts.get(i)) {
            Some((_, span)) => *span,
            None => Span::call_site(),
        }
    }
}
