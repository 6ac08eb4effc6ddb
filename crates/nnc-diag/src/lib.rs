//! Spans, source files and diagnostics: the error vocabulary every stage of
//! nnc shares.
//!
//! A stage reports a problem as a [`Diagnostic`] whose labels carry byte
//! [`Span`]s into one [`SourceFile`]. Rendering happens once, here, with
//! codespan-reporting: [`render_plain`] for tests and the macro (no colour),
//! [`render_terminal`] for the command line. Both show `file:line:col`, the
//! source line and a caret under the offending token.

mod excerpt;

use codespan_reporting::diagnostic as cs;
use codespan_reporting::term;
use excerpt::Excerpt;
use std::io;

/// At most this many diagnostics are shown; the rest are counted in one
/// closing line ("… and 3,980 more errors"). A one-line program with an
/// error per statement would otherwise print one snippet per statement.
pub const MAX_SHOWN: usize = 20;

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
    /// Whether each line is ASCII, where a column is a byte count: a long
    /// one-line program asks for thousands of columns on the same line.
    line_ascii: Vec<bool>,
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
        let line_ascii = text.split('\n').map(|line| line.is_ascii()).collect();
        SourceFile {
            name: name.into(),
            text,
            line_starts,
            line_ascii,
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
        let col = if self.line_ascii.get(line_idx).copied().unwrap_or(false) {
            end - line_start + 1
        } else {
            self.text.get(line_start..end).map_or(1, |s| s.chars().count() + 1)
        };
        Loc {
            line: line_idx as u32 + 1,
            col: col as u32,
        }
    }

    /// The 0-based index of the line holding byte `offset`.
    fn line_index(&self, offset: usize) -> u32 {
        let offset = offset.min(self.text.len()) as u32;
        (self.line_starts.partition_point(|&s| s <= offset) - 1) as u32
    }

    /// The bytes of 0-based line `index`, without its line break (`\n` or
    /// `\r\n`).
    fn line_range(&self, index: u32) -> std::ops::Range<usize> {
        let start = self
            .line_starts
            .get(index as usize)
            .map_or(self.text.len(), |&s| s as usize);
        let line = &self.text[start..self.line_end(index).max(start)];
        start..start + line.strip_suffix('\r').unwrap_or(line).len()
    }

    /// Where 0-based line `index` ends: at its `\n`, or the end of the text.
    fn line_end(&self, index: u32) -> usize {
        self.line_starts
            .get(index as usize + 1)
            .map_or(self.text.len(), |&s| s as usize - 1)
    }

    /// The byte offset of a 1-based line and column, if it is inside the text.
    pub fn offset(&self, loc: Loc) -> Option<u32> {
        let index = loc.line.checked_sub(1)?;
        let line_start = *self.line_starts.get(index as usize)? as usize;
        let line = &self.text[line_start..self.line_end(index)];
        let col = loc.col.checked_sub(1)? as usize;
        // ASCII before the column: the column is the byte (no walk over the
        // characters of a long line per lookup).
        if line.get(..col).is_some_and(str::is_ascii) {
            return Some((line_start + col) as u32);
        }
        let mut chars = line.char_indices().map(|(i, _)| i).chain(std::iter::once(line.len()));
        let in_line = chars.nth(col)?;
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

    /// The codespan form, with labels at `ranges` of its excerpt.
    fn to_codespan(&self, ranges: &[std::ops::Range<usize>]) -> cs::Diagnostic<()> {
        let severity = match self.severity {
            Severity::Error => cs::Severity::Error,
            Severity::Warning => cs::Severity::Warning,
        };
        let messages = std::iter::once(&self.primary).chain(&self.secondary);
        let labels = ranges
            .iter()
            .zip(messages)
            .enumerate()
            .map(|(i, (range, label))| {
                let style = if i == 0 {
                    cs::LabelStyle::Primary
                } else {
                    cs::LabelStyle::Secondary
                };
                cs::Label::new(style, (), range.clone()).with_message(&label.message)
            })
            .collect();
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
    let mut out = Vec::new();
    // Writing to a Vec cannot fail.
    let _ = emit(&mut out, diagnostics, source, false);
    String::from_utf8_lossy(&out).into_owned()
}

/// Renders diagnostics for a terminal, with ANSI colour when `color` is set.
pub fn render_terminal(diagnostics: &[Diagnostic], source: &SourceFile, color: bool) -> String {
    let mut out = Vec::new();
    let _ = emit(&mut out, diagnostics, source, color);
    String::from_utf8_lossy(&out).into_owned()
}

/// Writes diagnostics to `out` one at a time (ANSI colour when `color` is
/// set): at most [`MAX_SHOWN`], then a line counting the rest. Each shows
/// only the lines its labels touch, cut to a window around the caret.
pub fn emit(out: &mut dyn io::Write, diagnostics: &[Diagnostic], source: &SourceFile, color: bool) -> io::Result<()> {
    let config = term::Config::default();
    let styles = term::Styles::default();
    for diagnostic in diagnostics.iter().take(MAX_SHOWN) {
        let (excerpt, ranges) = Excerpt::new(source, diagnostic);
        let codespan = diagnostic.to_codespan(&ranges);
        let mut rendered = Vec::new();
        let result = if color {
            let mut ansi_buf = term::termcolor::Ansi::new(&mut rendered);
            let mut styled = term::StylesWriter::new(&mut ansi_buf, &styles);
            term::emit_to_write_style(&mut styled, &config, &excerpt, &codespan)
        } else {
            term::emit_to_io_write(&mut rendered, &config, &excerpt, &codespan)
        };
        // A span outside the text would be a compiler bug: show the message
        // without its snippet rather than fail.
        if result.is_err() {
            rendered = fallback(diagnostic, source).into_bytes();
        }
        out.write_all(&rendered)?;
    }
    let rest = &diagnostics[diagnostics.len().min(MAX_SHOWN)..];
    if !rest.is_empty() {
        out.write_all(more(rest).as_bytes())?;
    }
    out.flush()
}

/// "… and 3,980 more errors and 2 more warnings (not shown)".
fn more(rest: &[Diagnostic]) -> String {
    let errors = rest.iter().filter(|d| d.is_error()).count();
    let warnings = rest.len() - errors;
    let count = |n: usize, what: &str| match n {
        0 => None,
        1 => Some(format!("1 more {what}")),
        n => Some(format!("{n} more {what}s")),
    };
    let parts: Vec<String> = [count(errors, "error"), count(warnings, "warning")]
        .into_iter()
        .flatten()
        .collect();
    format!("… and {} (not shown)\n", parts.join(" and "))
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

    /// One error per statement of a one-line program, as `model!` sees it.
    fn one_line_errors(statements: usize) -> (SourceFile, Vec<Diagnostic>) {
        let statement = "dense 8 act=reul ";
        let text = format!("model M {{ input 8 {} }}", statement.repeat(statements));
        let start = "model M { input 8 ".len();
        let diagnostics = (0..statements)
            .map(|i| {
                let at = start + i * statement.len() + "dense 8 act=".len();
                Diagnostic::error("E0104", "unknown activation `reul`", Span::new(at, at + 4), "unknown")
            })
            .collect();
        (SourceFile::new("m.nn", text), diagnostics)
    }

    #[test]
    fn many_errors_on_one_long_line_print_a_bounded_window_of_a_few() {
        // The case: 4,000 errors on one 52 KB line printed 313 MB.
        let (source, diagnostics) = one_line_errors(4_000);
        assert!(source.text().len() > 52_000);
        let text = render_plain(&diagnostics, &source);
        assert!(text.len() < 20_000, "{} bytes", text.len());
        assert_eq!(text.matches("error[E0104]").count(), MAX_SHOWN);
        assert!(
            text.ends_with("… and 3980 more errors (not shown)\n"),
            "{}",
            &text[text.len() - 200..]
        );
        // The last one shown is at its true column, cut on both sides.
        let col = "model M { input 8 ".len() + 19 * 17 + "dense 8 act=".len() + 1;
        assert!(text.contains(&format!("m.nn:1:{col}")), "{text}");
        let last = text.rsplit("error[E0104]").next().unwrap_or_default();
        let (shown, caret) = snippet_and_caret(last);
        assert!(shown.starts_with('…') && shown.ends_with('…'), "{shown}");
        assert!(shown.chars().count() <= 170, "{shown}");
        assert_eq!(&shown[caret..caret + 4], "reul", "{last}");
    }

    #[test]
    fn a_long_line_with_one_error_near_its_end_is_windowed_too() {
        let text = format!("model M {{ input 8 {}dense 8 act=reul }}", "dense 8 ".repeat(2_000));
        let at = text.find("reul").unwrap_or(0);
        let source = SourceFile::new("m.nn", text);
        let d = Diagnostic::error("E0104", "unknown activation", Span::new(at, at + 4), "here");
        let out = render_plain(&[d], &source);
        assert!(out.len() < 1_000, "{out}");
        let (shown, caret) = snippet_and_caret(&out);
        assert!(shown.starts_with('…') && !shown.ends_with('…'), "{shown}");
        assert_eq!(&shown[caret..caret + 4], "reul", "{out}");
    }

    /// The source line of a rendered snippet (after `1 │ `) and the byte
    /// of it under the first caret.
    fn snippet_and_caret(rendered: &str) -> (&str, usize) {
        let mut lines = rendered.lines().skip_while(|l| !l.starts_with("1 │ "));
        let line = lines.next().unwrap_or_default();
        let carets = lines.next().unwrap_or_default();
        let shown = &line["1 │ ".len()..];
        let caret_col = carets.chars().position(|c| c == '^').unwrap_or(0) - "  │ ".chars().count();
        let byte = shown.char_indices().nth(caret_col).map_or(shown.len(), |(i, _)| i);
        (shown, byte)
    }

    #[test]
    fn invisible_and_control_characters_get_a_visible_caret_and_never_reach_the_terminal_raw() {
        for (bad, shown) in [
            ("\0", "␀"),
            ("\u{b}", "␋"),
            ("\u{feff}", "\\u{feff}"),
            ("\u{200b}", "\\u{200b}"),
        ] {
            let text = format!("model M {{ input 8 {bad} }}");
            let at = text.find(bad).unwrap_or(0);
            let source = SourceFile::new("m.nn", text.clone());
            let d = Diagnostic::error("E0001", "unexpected character", Span::new(at, at + bad.len()), "here");
            let out = render_plain(&[d], &source);
            assert!(!out.contains(bad), "{bad:?} echoed raw: {out:?}");
            assert!(out.contains(&format!("m.nn:1:{}", at + 1)), "{out}");
            let (line, caret) = snippet_and_caret(&out);
            assert!(line[caret..].starts_with(shown), "{bad:?}: {out}");
        }
    }

    #[test]
    fn line_breaks_keep_their_meaning_and_gaps_are_marked() {
        let src = SourceFile::new("m.nn", "model M {\r\n  input 8\r\n\r\n\r\n  dense 8 act=reul\r\n}\r\n");
        let at = src.text().find("reul").unwrap_or(0);
        let d = Diagnostic::error("E0104", "unknown", Span::new(at, at + 4), "here")
            .with_secondary(Span::new(8, 9), "model opens here");
        let out = render_plain(&[d], &src);
        assert!(out.contains("m.nn:5:15"), "{out}");
        assert!(out.contains("  ·"), "{out}");
        assert!(!out.contains('␍'), "a CRLF line break is no character: {out}");
    }
}
