//! Spans, source files and diagnostics: the error vocabulary every stage of
//! nnc shares.
//!
//! A stage reports a problem as a [`Diagnostic`] whose labels carry byte
//! [`Span`]s into one [`SourceFile`]. Rendering happens once, here, with
//! codespan-reporting: [`render_plain`] for tests and the macro (no colour),
//! [`render_terminal`] for the command line. Both show `file:line:col`, the
//! source line and a caret under the offending token.

use codespan_reporting::diagnostic as cs;
use codespan_reporting::files::SimpleFile;
use codespan_reporting::term;

/// A byte range `start..end` into a source text.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Span {
    pub start: u32,
    pub end: u32,
}

/// A 1-based line and column (columns count characters), as printed in
/// `loc(line:col)` and in `file:line:col`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Loc {
    pub line: u32,
    pub col: u32,
}

/// One source text with its name and an index of line starts.
#[derive(Clone, Debug)]
pub struct SourceFile {
    name: String,
    text: String,
    line_starts: Vec<u32>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Warning,
    Error,
}

/// A labelled place in the source.
#[derive(Clone, Debug, PartialEq)]
pub struct Label {
    pub span: Span,
    pub message: String,
}

/// A problem found in a program: a stable code, a message, a primary label
/// (where the caret goes), secondary labels, notes and an optional hint.
#[derive(Clone, Debug, PartialEq)]
pub struct Diagnostic {
    pub severity: Severity,
    pub code: &'static str,
    pub message: String,
    pub primary: Label,
    pub secondary: Vec<Label>,
    pub notes: Vec<String>,
    pub help: Option<String>,
}

impl Span {
    pub fn new(start: usize, end: usize) -> Span {
        Span {
            start: start as u32,
            end: end as u32,
        }
    }

    /// The smallest span covering both (naga's `subsume`).
    pub fn to(self, other: Span) -> Span {
        Span {
            start: self.start.min(other.start),
            end: self.end.max(other.end),
        }
    }

    pub fn range(self) -> std::ops::Range<usize> {
        self.start as usize..self.end as usize
    }
}

impl std::fmt::Display for Loc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.line, self.col)
    }
}

impl SourceFile {
    pub fn new(name: impl Into<String>, text: impl Into<String>) -> SourceFile {
        let text = text.into();
        let mut line_starts = vec![0u32];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i as u32 + 1));
        SourceFile {
            name: name.into(),
            text,
            line_starts,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    /// The 1-based line and character column of a byte offset.
    pub fn loc(&self, offset: u32) -> Loc {
        let offset = offset.min(self.text.len() as u32);
        let line_idx = match self.line_starts.binary_search(&offset) {
            Ok(i) => i,
            Err(i) => i - 1,
        };
        let line_start = self.line_starts[line_idx] as usize;
        let end = (offset as usize).max(line_start);
        let col = self.text.get(line_start..end).map_or(1, |s| s.chars().count() + 1);
        Loc {
            line: line_idx as u32 + 1,
            col: col as u32,
        }
    }

    /// The byte offset of a 1-based line and column, if it is inside the text.
    pub fn offset(&self, loc: Loc) -> Option<u32> {
        let line_start = *self.line_starts.get(loc.line.checked_sub(1)? as usize)? as usize;
        let line = &self.text[line_start..];
        let line = line.split('\n').next().unwrap_or("");
        let mut chars = line.char_indices().map(|(i, _)| i).chain(std::iter::once(line.len()));
        let in_line = chars.nth(loc.col.checked_sub(1)? as usize)?;
        Some((line_start + in_line) as u32)
    }
}

impl Label {
    pub fn new(span: Span, message: impl Into<String>) -> Label {
        Label {
            span,
            message: message.into(),
        }
    }
}

impl Diagnostic {
    pub fn error(code: &'static str, message: impl Into<String>, span: Span, label: impl Into<String>) -> Diagnostic {
        Diagnostic {
            severity: Severity::Error,
            code,
            message: message.into(),
            primary: Label::new(span, label),
            secondary: Vec::new(),
            notes: Vec::new(),
            help: None,
        }
    }

    pub fn warning(code: &'static str, message: impl Into<String>, span: Span, label: impl Into<String>) -> Diagnostic {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error(code, message, span, label)
        }
    }

    pub fn with_help(mut self, help: impl Into<String>) -> Diagnostic {
        self.help = Some(help.into());
        self
    }

    pub fn with_note(mut self, note: impl Into<String>) -> Diagnostic {
        self.notes.push(note.into());
        self
    }

    pub fn with_secondary(mut self, span: Span, message: impl Into<String>) -> Diagnostic {
        self.secondary.push(Label::new(span, message));
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    fn to_codespan(&self) -> cs::Diagnostic<()> {
        let severity = match self.severity {
            Severity::Error => cs::Severity::Error,
            Severity::Warning => cs::Severity::Warning,
        };
        let mut labels = vec![cs::Label::primary((), self.primary.span.range()).with_message(&self.primary.message)];
        labels.extend(
            self.secondary
                .iter()
                .map(|l| cs::Label::secondary((), l.span.range()).with_message(&l.message)),
        );
        let mut notes = self.notes.clone();
        if let Some(help) = &self.help {
            notes.push(format!("help: {help}"));
        }
        cs::Diagnostic::new(severity)
            .with_code(self.code)
            .with_message(&self.message)
            .with_labels(labels)
            .with_notes(notes)
    }
}

/// Renders diagnostics without colour: what tests snapshot and `model!` shows.
pub fn render_plain(diagnostics: &[Diagnostic], source: &SourceFile) -> String {
    let file = SimpleFile::new(source.name(), source.text());
    let config = term::Config::default();
    let mut out = String::new();
    for diagnostic in diagnostics {
        // A span outside the text would be a compiler bug: show the message
        // without its snippet rather than fail.
        if term::emit_to_string(&mut out, &config, &file, &diagnostic.to_codespan()).is_err() {
            out.push_str(&fallback(diagnostic, source));
        }
    }
    out
}

/// Renders diagnostics for a terminal, with ANSI colour when `color` is set.
pub fn render_terminal(diagnostics: &[Diagnostic], source: &SourceFile, color: bool) -> String {
    if !color {
        return render_plain(diagnostics, source);
    }
    let file = SimpleFile::new(source.name(), source.text());
    let config = term::Config::default();
    let styles = term::Styles::default();
    let mut out = term::termcolor::Ansi::new(Vec::new());
    for diagnostic in diagnostics {
        let mut styled = term::StylesWriter::new(&mut out, &styles);
        if term::emit_to_write_style(&mut styled, &config, &file, &diagnostic.to_codespan()).is_err() {
            out.get_mut().extend_from_slice(fallback(diagnostic, source).as_bytes());
        }
    }
    String::from_utf8_lossy(&out.into_inner()).into_owned()
}

fn fallback(diagnostic: &Diagnostic, source: &SourceFile) -> String {
    let loc = source.loc(diagnostic.primary.span.start);
    format!(
        "error[{}]: {} ({}:{loc})\n",
        diagnostic.code,
        diagnostic.message,
        source.name()
    )
}

/// The closest candidate to a misspelled word, for "did you mean …?" hints.
pub fn did_you_mean<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::damerau_levenshtein(word, c), c))
        .filter(|&(d, c)| d > 0 && d <= (c.len().max(word.len()) / 3).max(1) + usize::from(c.len() > 5))
        .min_by_key(|&(d, _)| d)
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loc_counts_characters_from_one() {
        let src = SourceFile::new("m.nn", "ab\r\n\tcd\nxé y");
        assert_eq!(src.loc(0), Loc { line: 1, col: 1 });
        assert_eq!(src.loc(5), Loc { line: 2, col: 2 });
        // 'é' is two bytes but one column.
        assert_eq!(src.loc(12), Loc { line: 3, col: 4 });
        assert_eq!(src.offset(Loc { line: 3, col: 4 }), Some(12));
        assert_eq!(src.offset(Loc { line: 9, col: 1 }), None);
    }

    #[test]
    fn did_you_mean_finds_close_names_only() {
        let acts = ["relu", "elu", "selu", "tanh", "sigmoid", "leaky_relu"];
        assert_eq!(did_you_mean("reul", acts), Some("relu"));
        assert_eq!(did_you_mean("sigmiod", acts), Some("sigmoid"));
        assert_eq!(did_you_mean("convolution", acts), None);
    }

    #[test]
    fn plain_rendering_shows_position_line_and_caret() {
        let src = SourceFile::new("m.nn", "model M {\n  input 8\n  dense 9 -> 2\n}\n");
        let d = Diagnostic::error("E0301", "size mismatch", Span::new(28, 29), "expected 8")
            .with_help("previous layer yields 8 features");
        let text = render_plain(&[d], &src);
        assert!(text.contains("m.nn:3:9"), "{text}");
        assert!(text.contains("dense 9 -> 2"), "{text}");
        assert!(text.contains('^'), "{text}");
        assert!(text.contains("help: previous layer yields 8 features"), "{text}");
    }
}
