//! Source text → [`ast::Model`], with parse errors as diagnostics.
//!
//! pest does the recognising (`grammar/nn.pest`); this module turns its pairs
//! into the AST, checks what the grammar cannot (a fraction's zero
//! denominator, a number too large for `f64`), and turns a pest error into a
//! diagnostic that names what was expected in words and points at the
//! offending token.

use crate::ast::{self, Arg, Ident, Model, Number, Opt, Stmt, StmtKind, Value, ValueKind};
use nnc_diag::{did_you_mean, Diagnostic, SourceFile, Span};
use pest::error::{ErrorVariant, InputLocation};
use pest::iterators::Pair;
use pest::Parser;

/// A syntax error.
const SYNTAX: &str = "E0001";
/// A word where a statement should start that is no statement keyword.
const UNKNOWN_STATEMENT: &str = "E0002";

#[derive(pest_derive::Parser)]
#[grammar = "../../grammar/nn.pest"]
struct NnParser;

/// Parses one `.nn` file. A syntax error stops the parse (pest does not
/// recover), so the error list then holds one diagnostic; number errors
/// (`1/0`) are all reported. Text nested deeper than
/// [`MAX_NESTING`](crate::MAX_NESTING) is refused before pest runs, so every
/// later stage may recurse over the AST.
pub fn parse(source: &SourceFile) -> Result<ast::Model, Vec<Diagnostic>> {
    let text = source.text();
    // Before pest, whose recursion follows the nesting.
    crate::nesting::check_nesting(text)?;
    let mut pairs = match NnParser::parse(Rule::file, text) {
        Ok(pairs) => pairs,
        Err(error) => return Err(vec![syntax_error(text, &error)]),
    };
    let mut builder = Builder::default();
    let model = pairs
        .next()
        .and_then(|file| file.into_inner().find(|p| p.as_rule() == Rule::model))
        .and_then(|model| builder.model(model));
    let model = builder.require(model, Span::default(), "a model");
    match model {
        Some(model) if builder.diagnostics.is_empty() => Ok(model),
        _ => Err(builder.diagnostics),
    }
}

// ---------------------------------------------------------------------------
// Pairs → AST

/// Builds the AST from pest's pairs, collecting the errors the grammar
/// cannot see.
#[derive(Default)]
struct Builder {
    diagnostics: Vec<Diagnostic>,
}

/// A statement's children, gathered before its kind decides which it needs.
#[derive(Default)]
struct StmtParts {
    keyword_span: Option<Span>,
    numbers: Vec<Number>,
    shape: Option<Vec<Number>>,
    value: Option<Value>,
    options: Vec<Opt>,
    body: Vec<Stmt>,
    /// Where the last child ends.
    end: u32,
}

fn span_of(pair: &Pair<'_, Rule>) -> Span {
    let span = pair.as_span();
    Span::new(span.start(), span.end())
}

/// A pair's children without punctuation, which carries no information once
/// the grammar has accepted the text.
fn children<'i>(pair: Pair<'i, Rule>) -> impl Iterator<Item = Pair<'i, Rule>> {
    pair.into_inner().filter(|p| !is_punctuation(p.as_rule()))
}

fn is_punctuation(rule: Rule) -> bool {
    matches!(
        rule,
        Rule::lbrace
            | Rule::rbrace
            | Rule::lbracket
            | Rule::rbracket
            | Rule::rparen
            | Rule::comma
            | Rule::eq
            | Rule::arrow
            | Rule::EOI
    )
}

impl Builder {
    fn model(&mut self, pair: Pair<'_, Rule>) -> Option<Model> {
        let span = span_of(&pair);
        let mut name = None;
        let mut body = Vec::new();
        for child in children(pair) {
            match child.as_rule() {
                Rule::kw_model => {}
                Rule::ident => name = Some(ident(&child)),
                _ => body.extend(self.stmt(child)),
            }
        }
        let name = self.require(name, span, "the model's name")?;
        Some(Model { name, body, span })
    }

    fn stmt(&mut self, pair: Pair<'_, Rule>) -> Option<Stmt> {
        let rule = pair.as_rule();
        let whole = span_of(&pair);
        let parts = self.stmt_parts(pair);
        let keyword_span = self.require(parts.keyword_span, whole, "a statement keyword")?;
        // The pair itself may end in the whitespace pest skipped while
        // looking for more options, so a statement ends at its last child,
        // except a residual, whose pair ends at its `}`.
        let span = match rule {
            Rule::residual_stmt => whole,
            _ => Span {
                start: whole.start,
                end: parts.end.max(keyword_span.end),
            },
        };
        let options = parts.options;
        let kind = match rule {
            Rule::input_stmt => StmtKind::Input {
                shape: parts.shape.unwrap_or(parts.numbers),
            },
            Rule::dense_stmt => {
                let (in_features, out_features) = self.sizes(parts.numbers, whole)?;
                StmtKind::Dense {
                    in_features,
                    out_features,
                }
            }
            Rule::conv_stmt => {
                let (in_channels, out_channels) = self.sizes(parts.numbers, whole)?;
                StmtKind::Conv {
                    in_channels,
                    out_channels,
                }
            }
            Rule::maxpool_stmt => StmtKind::MaxPool,
            Rule::avgpool_stmt => StmtKind::AvgPool,
            Rule::globalavgpool_stmt => StmtKind::GlobalAvgPool,
            Rule::flatten_stmt => StmtKind::Flatten,
            Rule::act_stmt => StmtKind::Act(self.require(parts.value, whole, "a value")?),
            Rule::norm_stmt => StmtKind::Norm(self.require(parts.value, whole, "a value")?),
            Rule::dropout_stmt => StmtKind::Dropout(self.require(parts.value, whole, "a value")?),
            Rule::residual_stmt => StmtKind::Residual(parts.body),
            other => {
                self.bug(whole, &format!("a statement, not {other:?}"));
                return None;
            }
        };
        Some(Stmt {
            kind,
            keyword_span,
            options,
            span,
        })
    }

    /// Sorts a statement's children by what they are.
    fn stmt_parts(&mut self, pair: Pair<'_, Rule>) -> StmtParts {
        let mut parts = StmtParts::default();
        for child in children(pair) {
            parts.end = parts.end.max(span_of(&child).end);
            match child.as_rule() {
                r if is_keyword(r) => parts.keyword_span = Some(span_of(&child)),
                Rule::number => parts.numbers.push(self.number(child)),
                Rule::shape => {
                    parts.shape = Some(children(child).map(|n| self.number(n)).collect());
                }
                Rule::value => parts.value = self.value(child),
                Rule::opt => parts.options.extend(self.opt(child)),
                _ => parts.body.extend(self.stmt(child)),
            }
        }
        parts
    }

    /// `[IN ->] OUT`: one number is the output size.
    fn sizes(&mut self, numbers: Vec<Number>, at: Span) -> Option<(Option<Number>, Number)> {
        match numbers.as_slice() {
            [out] => Some((None, *out)),
            [input, out] => Some((Some(*input), *out)),
            _ => {
                self.bug(at, "one or two sizes");
                None
            }
        }
    }

    fn opt(&mut self, pair: Pair<'_, Rule>) -> Option<Opt> {
        let span = span_of(&pair);
        let (key, value) = self.keyed_value(pair);
        let key = self.require(key, span, "an option's name")?;
        let value = self.require(value, span, "an option's value")?;
        Some(Opt { key, value, span })
    }

    fn arg(&mut self, pair: Pair<'_, Rule>) -> Option<Arg> {
        let span = span_of(&pair);
        let (key, value) = self.keyed_value(pair);
        let value = self.require(value, span, "an argument's value")?;
        Some(Arg { key, value, span })
    }

    /// The `key` and `value` children of an option or an argument.
    fn keyed_value(&mut self, pair: Pair<'_, Rule>) -> (Option<Ident>, Option<Value>) {
        let mut key = None;
        let mut value = None;
        for child in children(pair) {
            match child.as_rule() {
                Rule::key => key = Some(ident(&child)),
                _ => value = self.value(child),
            }
        }
        (key, value)
    }

    fn value(&mut self, pair: Pair<'_, Rule>) -> Option<Value> {
        let span = span_of(&pair);
        let Some(inner) = children(pair).next() else {
            self.bug(span, "a value");
            return None;
        };
        let kind = match inner.as_rule() {
            Rule::number => ValueKind::Number(self.number(inner).value),
            Rule::ident => ValueKind::Word(inner.as_str().to_string()),
            Rule::call => self.call(inner)?,
            other => {
                self.bug(span, &format!("a value, not {other:?}"));
                return None;
            }
        };
        Some(Value { kind, span })
    }

    fn call(&mut self, pair: Pair<'_, Rule>) -> Option<ValueKind> {
        let span = span_of(&pair);
        let mut name = None;
        let mut args = Vec::new();
        for child in children(pair) {
            match child.as_rule() {
                Rule::ident => name = Some(ident(&child)),
                _ => args.extend(self.arg(child)),
            }
        }
        let name = self.require(name, span, "a call's name")?;
        Some(ValueKind::Call { name, args })
    }

    /// A number's value: the sign, then `A` or `A/B`. Every number in the
    /// AST is finite, so later stages need not guard against `inf`.
    fn number(&mut self, pair: Pair<'_, Rule>) -> Number {
        let span = span_of(&pair);
        let negative = pair.as_str().starts_with('-');
        let parts: Vec<Pair<'_, Rule>> = pair.into_inner().collect();
        let mut value = match parts.first() {
            Some(numerator) => self.unsigned(numerator),
            None => {
                self.bug(span, "digits");
                0.0
            }
        };
        if let Some(denominator) = parts.get(1) {
            let divisor = self.unsigned(denominator);
            if divisor == 0.0 {
                self.diagnostics.push(
                    Diagnostic::error(
                        SYNTAX,
                        "division by zero in a fraction",
                        span_of(denominator),
                        "the denominator is zero",
                    )
                    .with_help("a fraction `A/B` needs a non-zero `B`, as in `1/8`"),
                );
                return Number { value: 0.0, span };
            }
            value /= divisor;
        }
        if !value.is_finite() {
            self.diagnostics.push(Diagnostic::error(
                SYNTAX,
                "number too large",
                span,
                "larger than a 64-bit float can hold",
            ));
            return Number { value: 0.0, span };
        }
        Number {
            value: if negative { -value } else { value },
            span,
        }
    }

    fn unsigned(&mut self, pair: &Pair<'_, Rule>) -> f64 {
        match pair.as_str().parse::<f64>() {
            Ok(value) => value,
            Err(_) => {
                self.bug(span_of(pair), "a decimal number");
                0.0
            }
        }
    }

    /// A part the grammar guarantees; its absence is a bug in this module.
    fn require<T>(&mut self, part: Option<T>, at: Span, what: &str) -> Option<T> {
        if part.is_none() {
            self.bug(at, what);
        }
        part
    }

    /// Reports a disagreement between the grammar and this builder, which
    /// only a change to one of them without the other can cause.
    fn bug(&mut self, at: Span, expected: &str) {
        self.diagnostics.push(
            Diagnostic::error(
                SYNTAX,
                format!("internal error: the parser expected {expected} here"),
                at,
                "the grammar and the AST builder disagree",
            )
            .with_note("this is a bug in nnc, not in the program"),
        );
    }
}

fn ident(pair: &Pair<'_, Rule>) -> Ident {
    Ident {
        name: pair.as_str().to_string(),
        span: span_of(pair),
    }
}

fn is_keyword(rule: Rule) -> bool {
    matches!(
        rule,
        Rule::kw_input
            | Rule::kw_dense
            | Rule::kw_conv
            | Rule::kw_maxpool
            | Rule::kw_avgpool
            | Rule::kw_globalavgpool
            | Rule::kw_flatten
            | Rule::kw_act
            | Rule::kw_norm
            | Rule::kw_dropout
            | Rule::kw_residual
    )
}

// ---------------------------------------------------------------------------
// pest errors → diagnostics

/// What the parser could have accepted where it stopped, in words. The order
/// is the order of a message's list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Expected {
    Arrow,
    Eq,
    LParen,
    Number,
    LBracket,
    Value,
    Argument,
    Name,
    Option,
    Statement,
    LBrace,
    Comma,
    RParen,
    RBracket,
    RBrace,
    Model,
    End,
}

impl Expected {
    /// `None` for the layout rules, which are silent and so never reach
    /// an error.
    fn of(rule: Rule) -> Option<Expected> {
        Some(match rule {
            Rule::arrow => Expected::Arrow,
            Rule::eq => Expected::Eq,
            Rule::comma => Expected::Comma,
            Rule::lparen => Expected::LParen,
            Rule::rparen => Expected::RParen,
            Rule::rbracket => Expected::RBracket,
            Rule::lbracket | Rule::shape => Expected::LBracket,
            Rule::lbrace => Expected::LBrace,
            Rule::rbrace => Expected::RBrace,
            Rule::number | Rule::unsigned => Expected::Number,
            Rule::value | Rule::head_value | Rule::call => Expected::Value,
            Rule::arg => Expected::Argument,
            Rule::ident | Rule::ident_char => Expected::Name,
            Rule::opt | Rule::key => Expected::Option,
            Rule::kw_model | Rule::model | Rule::file => Expected::Model,
            Rule::EOI => Expected::End,
            Rule::stmt
            | Rule::keyword
            | Rule::kw_end
            | Rule::input_stmt
            | Rule::dense_stmt
            | Rule::conv_stmt
            | Rule::maxpool_stmt
            | Rule::avgpool_stmt
            | Rule::globalavgpool_stmt
            | Rule::flatten_stmt
            | Rule::act_stmt
            | Rule::norm_stmt
            | Rule::dropout_stmt
            | Rule::residual_stmt
            | Rule::kw_input
            | Rule::kw_dense
            | Rule::kw_conv
            | Rule::kw_maxpool
            | Rule::kw_avgpool
            | Rule::kw_globalavgpool
            | Rule::kw_flatten
            | Rule::kw_act
            | Rule::kw_norm
            | Rule::kw_dropout
            | Rule::kw_residual => Expected::Statement,
            Rule::WHITESPACE | Rule::COMMENT => return None,
        })
    }

    fn words(self) -> &'static str {
        match self {
            Expected::Arrow => "`->`",
            Expected::Eq => "`=`",
            Expected::Comma => "`,`",
            Expected::LParen => "`(`",
            Expected::RParen => "`)`",
            Expected::RBracket => "`]`",
            Expected::LBracket => "`[`",
            Expected::LBrace => "`{`",
            Expected::Number => "a number",
            Expected::Value => "a value",
            Expected::Argument => "an argument",
            Expected::Name => "a name",
            Expected::Option => "an option",
            Expected::Statement => "a statement",
            Expected::RBrace => "`}`",
            Expected::Model => "`model`",
            Expected::End => "the end of the file",
        }
    }
}

/// The token the parser stopped at: a whole word or number, one character,
/// or the empty span at the end of the text.
struct Found<'t> {
    text: &'t str,
    span: Span,
}

impl Found<'_> {
    fn at(text: &str, pos: usize) -> Found<'_> {
        let pos = floor_char_boundary(text, pos);
        let rest = &text[pos..];
        let Some(first) = rest.chars().next() else {
            return Found {
                text: "",
                span: Span::new(pos, pos),
            };
        };
        let len = if first.is_ascii_alphabetic() || first == '_' {
            rest.find(|c: char| !is_ident_char(c)).unwrap_or(rest.len())
        } else if first.is_ascii_digit() {
            rest.find(|c: char| !is_ident_char(c) && c != '.').unwrap_or(rest.len())
        } else {
            first.len_utf8()
        };
        Found {
            text: &rest[..len],
            span: Span::new(pos, pos + len),
        }
    }

    fn is_end(&self) -> bool {
        self.text.is_empty()
    }

    fn is_word(&self) -> bool {
        self.text.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
    }

    /// How a message names the token.
    fn describe(&self) -> String {
        if self.is_end() {
            "the end of the file".to_string()
        } else {
            format!("`{}`", self.text.escape_debug())
        }
    }
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

fn floor_char_boundary(text: &str, pos: usize) -> usize {
    let mut pos = pos.min(text.len());
    while !text.is_char_boundary(pos) {
        pos -= 1;
    }
    pos
}

fn syntax_error(text: &str, error: &pest::error::Error<Rule>) -> Diagnostic {
    let pos = match error.location {
        InputLocation::Pos(pos) => pos,
        InputLocation::Span((start, _)) => start,
    };
    let found = Found::at(text, pos);
    match &error.variant {
        ErrorVariant::ParsingError { positives, negatives } => {
            if negatives.iter().any(|&r| is_keyword(r)) {
                return keyword_as_value(&found);
            }
            let mut expected: Vec<Expected> = positives.iter().filter_map(|&r| Expected::of(r)).collect();
            expected.sort();
            expected.dedup();
            unexpected_token(text, &found, &expected)
        }
        // pest's own call and stack guards; the nesting limit checked
        // before parsing keeps the stack guard from firing.
        ErrorVariant::CustomError { message } => {
            Diagnostic::error(SYNTAX, format!("the parser gave up ({message})"), found.span, "here")
        }
    }
}

/// `act dense 8`: the value of `act`, `norm` or `dropout` is missing.
fn keyword_as_value(found: &Found<'_>) -> Diagnostic {
    Diagnostic::error(
        SYNTAX,
        format!("expected a value, found the statement keyword {}", found.describe()),
        found.span,
        "a new statement starts here",
    )
    .with_help("`act`, `norm` and `dropout` take a value first: `act relu`, `norm batch`, `dropout 0.5`")
}

fn unexpected_token(text: &str, found: &Found<'_>, expected: &[Expected]) -> Diagnostic {
    let wants_statement = expected.contains(&Expected::Statement);
    if wants_statement && found.is_word() {
        let after = text.get(found.span.end as usize..).unwrap_or("").trim_start();
        if after.starts_with('=') {
            return option_as_statement(found, expected);
        }
        if !ast::KEYWORDS.contains(&found.text) {
            return unknown_statement(found);
        }
    }
    let message = format!("expected {}, found {}", list(expected), found.describe());
    let label = if found.is_end() {
        "the file ends here".to_string()
    } else {
        format!("unexpected {}", found.describe())
    };
    let mut diagnostic = Diagnostic::error(SYNTAX, message, found.span, label);
    if (found.text == "," || found.text == ";") && (wants_statement || expected.contains(&Expected::Option)) {
        diagnostic = diagnostic.with_help(format!(
            "statements and options are separated by spaces or line breaks, not `{}`",
            found.text
        ));
    } else if expected == [Expected::End] {
        diagnostic = diagnostic.with_help("a file holds one `model NAME { ... }` and nothing after its closing `}`");
    } else if expected == [Expected::Model] {
        diagnostic = diagnostic.with_help("a file starts with `model NAME {`");
    }
    if found.is_end() && expected.contains(&Expected::RBrace) {
        if let Some(open) = unclosed_brace(text) {
            diagnostic = diagnostic.with_secondary(open, "this `{` is never closed");
        }
    }
    diagnostic
}

/// `foo=1` where a statement should start: options follow their statement.
fn option_as_statement(found: &Found<'_>, expected: &[Expected]) -> Diagnostic {
    Diagnostic::error(
        SYNTAX,
        format!("expected {}, found the option `{}=`", list(expected), found.text),
        found.span,
        "an option cannot start a statement",
    )
    .with_help(
        "options follow the statement they belong to, as in `dense 10 act=relu`; \
         a `residual` takes its options before its `{`",
    )
}

fn unknown_statement(found: &Found<'_>) -> Diagnostic {
    let diagnostic = Diagnostic::error(
        UNKNOWN_STATEMENT,
        format!("unknown statement `{}`", found.text),
        found.span,
        "not a statement keyword",
    );
    match did_you_mean(found.text, ast::KEYWORDS.iter().copied()) {
        Some(keyword) => diagnostic.with_help(format!("did you mean `{keyword}`?")),
        None => diagnostic.with_help(format!("a statement starts with one of: {}", ast::KEYWORDS.join(", "))),
    }
}

/// "A", "A or B", "A, B or C".
fn list(expected: &[Expected]) -> String {
    let words: Vec<&str> = expected.iter().map(|e| e.words()).collect();
    match words.split_last() {
        None => "something else".to_string(),
        Some((last, [])) => (*last).to_string(),
        Some((last, init)) => format!("{} or {last}", init.join(", ")),
    }
}

/// The last `{` without its `}`, skipping comments, for "never closed".
fn unclosed_brace(text: &str) -> Option<Span> {
    let mut open = Vec::new();
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let comment = c == '#' || (c == '/' && chars.peek().is_some_and(|&(_, n)| n == '/'));
        if comment {
            while chars.next_if(|&(_, n)| n != '\n').is_some() {}
        } else if c == '{' {
            open.push(i);
        } else if c == '}' {
            open.pop();
        }
    }
    open.last().map(|&i| Span::new(i, i + 1))
}
