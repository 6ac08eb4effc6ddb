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

    fn push_stream(&mut self, tokens: TokenStream) {
        for tree in tokens {
            match tree {
                TokenTree::Group(g) => {
                    let (open, close) = match g.delimiter() {
                        Delimiter::Brace => ("{", "}"),
                        Delimiter::Bracket => ("[", "]"),
                        Delimiter::Parenthesis => ("(", ")"),
                        Delimiter::None => ("", ""),
                    };
                    self.push(open, g.span_open());
                    self.text.push(' ');
                    self.push_stream(g.stream());
                    self.push(close, g.span_close());
                    self.text.push(' ');
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
