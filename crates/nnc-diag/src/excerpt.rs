//! What codespan-reporting is shown of the source for one diagnostic: only
//! the lines its labels touch, each cut to a window around its labels, with
//! invisible characters made visible. Line numbers and columns stay the
//! original ones.
//!
//! Without this, each diagnostic on a one-line program (what `model!` sees)
//! printed the whole line: 4,000 errors on a 52 KB line made 313 MB. A NUL,
//! a vertical tab or a BOM under a caret printed as nothing (no caret) or
//! went raw to the terminal.

use crate::{Diagnostic, SourceFile};
use codespan_reporting::files::{Error, Files, Location};
use std::ops::Range;

/// Lines longer than this many characters are cut to a window.
const MAX_COLUMNS: usize = 160;
/// Characters shown before the label a window is centred on.
const BEFORE: usize = 60;
/// A multi-line label shows at most this many lines from each end.
const MAX_LABEL_LINES: u32 = 8;

/// The excerpt of one diagnostic, as a codespan file.
pub(crate) struct Excerpt<'s> {
    source: &'s SourceFile,
    text: String,
    /// Per shown line: where it starts in `text`, and its original index.
    lines: Vec<(usize, u32)>,
    /// Each label end point: its offset in `text` and in the source.
    points: Vec<(usize, u32)>,
}

impl<'s> Excerpt<'s> {
    /// The excerpt for `diagnostic`'s labels; `ranges` receives each label's
    /// range in the excerpt, primary first.
    pub(crate) fn new(source: &'s SourceFile, diagnostic: &Diagnostic) -> (Excerpt<'s>, Vec<Range<usize>>) {
        let text = source.text();
        let labels: Vec<Range<usize>> = std::iter::once(&diagnostic.primary)
            .chain(&diagnostic.secondary)
            .map(|l| clamp(text, l.span.start as usize, l.span.end as usize))
            .collect();
        let anchor = labels.first().map_or(0, |r| r.start);
        let mut shown: Vec<u32> = Vec::new();
        for r in &labels {
            let (first, last) = (
                source.line_index(r.start),
                source.line_index(r.end.max(r.start + 1) - 1),
            );
            let last = last.max(first);
            if last - first < 2 * MAX_LABEL_LINES {
                shown.extend(first..=last);
            } else {
                shown.extend(first..first + MAX_LABEL_LINES);
                shown.extend(last + 1 - MAX_LABEL_LINES..=last);
            }
        }
        shown.sort_unstable();
        shown.dedup();
        let mut excerpt = Excerpt {
            source,
            text: String::new(),
            lines: Vec::new(),
            points: Vec::new(),
        };
        let points: Vec<usize> = labels.iter().flat_map(|r| [r.start, r.end]).collect();
        for line in shown {
            // codespan shows a single skipped line, and marks a longer gap
            // with `·`: two empty lines stand for it.
            match excerpt.lines.last().map(|&(_, previous)| line - previous) {
                Some(2) => excerpt.push_line(line - 1, anchor, &points),
                Some(gap) if gap > 2 => {
                    for skipped in [line - 2, line - 1] {
                        excerpt.lines.push((excerpt.text.len(), skipped));
                        excerpt.text.push('\n');
                    }
                }
                _ => {}
            }
            excerpt.push_line(line, anchor, &points);
        }
        let ranges = labels
            .iter()
            .map(|r| excerpt.shown_offset(r.start)..excerpt.shown_offset(r.end))
            .collect();
        (excerpt, ranges)
    }

    /// Appends original line `index`, windowed around the first point on
    /// it (the primary label's start if it is there), recording where the
    /// points on it land.
    fn push_line(&mut self, index: u32, anchor: usize, points: &[usize]) {
        let full = self.source.line_range(index);
        let line = &self.source.text()[full.clone()];
        let on_line = |p: usize| full.start <= p && p <= full.end;
        let centre = if on_line(anchor) {
            anchor
        } else {
            points.iter().copied().find(|&p| on_line(p)).unwrap_or(full.start)
        };
        let window = window(line, centre - full.start);
        let window = full.start + window.start..full.start + window.end;
        self.lines.push((self.text.len(), index));
        if window.start > full.start {
            self.text.push('…');
        }
        let shown_start = self.text.len();
        let mut mapped: Vec<(usize, u32)> = Vec::new();
        for (i, c) in self.source.text()[window.clone()].char_indices() {
            let at = window.start + i;
            for &p in points.iter().filter(|&&p| p == at) {
                mapped.push((self.text.len(), p as u32));
            }
            push_visible(&mut self.text, c);
        }
        let shown_end = self.text.len();
        for &p in points.iter().filter(|&&p| on_line(p)) {
            if p < window.start {
                mapped.push((shown_start, p as u32));
            } else if p >= window.end {
                mapped.push((shown_end, p as u32));
            }
        }
        if window.end < full.end {
            self.text.push('…');
        }
        self.text.push('\n');
        self.points.extend(mapped);
    }

    /// Where source offset `p` (a label end point) is in the excerpt.
    fn shown_offset(&self, p: usize) -> usize {
        self.points
            .iter()
            .find(|(_, orig)| *orig as usize == p)
            .map_or(0, |(shown, _)| *shown)
    }
}

/// The label range inside the text, on character boundaries.
fn clamp(text: &str, start: usize, end: usize) -> Range<usize> {
    let floor = |mut i: usize| {
        i = i.min(text.len());
        while !text.is_char_boundary(i) {
            i -= 1;
        }
        i
    };
    let start = floor(start);
    start..floor(end).max(start)
}

/// The byte range of `line` to show, around byte `centre`.
fn window(line: &str, centre: usize) -> Range<usize> {
    if line.chars().count() <= MAX_COLUMNS {
        return 0..line.len();
    }
    let starts: Vec<usize> = line.char_indices().map(|(i, _)| i).chain([line.len()]).collect();
    let at = starts.partition_point(|&i| i < centre);
    let first = at.saturating_sub(BEFORE);
    let last = (first + MAX_COLUMNS).min(starts.len() - 1);
    let first = last.saturating_sub(MAX_COLUMNS).min(first);
    starts[first]..starts[last]
}

/// Pushes `c` as the terminal should show it: control characters as
/// their Unicode control pictures (`␀`, `␋`), invisible format characters
/// (a BOM, zero-width spaces, direction marks) as `\u{…}`, so that each
/// takes a column and gets a caret, and none reaches the terminal raw.
fn push_visible(out: &mut String, c: char) {
    match c {
        '\t' => out.push(c),
        '\0'..='\u{1f}' => out.push(char::from_u32(0x2400 + c as u32).unwrap_or('?')),
        '\u{7f}' => out.push('␡'),
        _ if c.is_control() || is_invisible(c) => out.push_str(&c.escape_unicode().to_string()),
        _ => out.push(c),
    }
}

/// Format characters that print as nothing.
fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{ad}' | '\u{34f}' | '\u{61c}' | '\u{180e}' | '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}'
            | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{206f}' | '\u{feff}' | '\u{fff9}'..='\u{fffb}'
    )
}

impl<'a> Files<'a> for Excerpt<'_> {
    type FileId = ();
    type Name = &'a str;
    type Source = &'a str;

    fn name(&'a self, (): ()) -> Result<&'a str, Error> {
        Ok(self.source.name())
    }

    fn source(&'a self, (): ()) -> Result<&'a str, Error> {
        Ok(&self.text)
    }

    fn line_index(&'a self, (): (), byte_index: usize) -> Result<usize, Error> {
        Ok(self
            .lines
            .partition_point(|(start, _)| *start <= byte_index)
            .saturating_sub(1))
    }

    fn line_number(&'a self, (): (), line_index: usize) -> Result<usize, Error> {
        let (_, original) = self.lines.get(line_index).ok_or(Error::LineTooLarge {
            given: line_index,
            max: self.lines.len(),
        })?;
        Ok(*original as usize + 1)
    }

    fn location(&'a self, (): (), byte_index: usize) -> Result<Location, Error> {
        let original = match self.points.iter().find(|(shown, _)| *shown == byte_index) {
            Some((_, original)) => *original,
            // Not a label's end point (codespan asks only for those): the
            // start of the line it is on.
            None => {
                let line = self.line_index((), byte_index)?;
                let (_, index) = self.lines.get(line).copied().unwrap_or((0, 0));
                self.source.line_range(index).start as u32
            }
        };
        let loc = self.source.loc(original);
        Ok(Location {
            line_number: loc.line as usize,
            column_number: loc.col as usize,
        })
    }

    fn line_range(&'a self, (): (), line_index: usize) -> Result<Range<usize>, Error> {
        let start = self.lines.get(line_index).map(|(s, _)| *s).ok_or(Error::LineTooLarge {
            given: line_index,
            max: self.lines.len(),
        })?;
        let end = self.lines.get(line_index + 1).map_or(self.text.len(), |(s, _)| *s);
        Ok(start..end)
    }
}
