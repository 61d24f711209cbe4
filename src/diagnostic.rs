//! Problems found in a user's file, with the byte span that caused them, and their printed form
//! (`file:line:col: error: message`, the offending line, a caret under the span).

use std::fmt;
use std::ops::Range;

/// One problem in one input file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file as the operator named it (e.g. `plans/phase2.toml`).
    pub file: String,
    /// Byte range in that file; empty ranges point at a position.
    pub span: Range<usize>,
    pub message: String,
    /// What to do about it, when there is something better to say than the message.
    pub hint: Option<String>,
}

impl Diagnostic {
    pub fn new(file: &str, span: Range<usize>, message: impl Into<String>) -> Self {
        Diagnostic {
            file: file.to_string(),
            span,
            message: message.into(),
            hint: None,
        }
    }

    /// A problem with a whole file rather than a place in it (missing, unreadable).
    pub fn whole_file(file: &str, message: impl Into<String>) -> Self {
        Self::new(file, 0..0, message)
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Renders with the source text of `self.file` for line, column and caret.
    pub fn display<'a>(&'a self, source: Option<&'a str>) -> DiagnosticDisplay<'a> {
        DiagnosticDisplay {
            diagnostic: self,
            source,
        }
    }
}

/// 1-based line and column (in characters) of a byte offset.
pub fn line_col(source: &str, offset: usize) -> (usize, usize) {
    let offset = floor_char_boundary(source, offset.min(source.len()));
    let before = &source[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let col = source[line_start..offset].chars().count() + 1;
    (line, col)
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// The part of a long source line around column `col` (1-based, in characters), with `…` where
/// it was cut; the caret's column and width within it.
fn window(text: &str, col: usize, width: usize) -> (String, usize, usize) {
    const BEFORE: usize = 60;
    const MAX: usize = 160;
    let len = text.chars().count();
    if len <= MAX {
        return (text.to_string(), col, width);
    }
    let start = col.saturating_sub(BEFORE + 1);
    let mut shown: String = text.chars().skip(start).take(MAX).collect();
    let mut caret_col = col - start;
    if start > 0 {
        shown.insert(0, '…');
        caret_col += 1;
    }
    if start + MAX < len {
        shown.push('…');
    }
    let width = width.min(MAX.saturating_sub(col - 1 - start)).max(1);
    (shown, caret_col, width)
}

pub struct DiagnosticDisplay<'a> {
    diagnostic: &'a Diagnostic,
    source: Option<&'a str>,
}

impl fmt::Display for DiagnosticDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.diagnostic;
        match self.source {
            Some(source) => {
                let (line, col) = line_col(source, d.span.start);
                writeln!(f, "{}:{}:{}: error: {}", d.file, line, col, d.message)?;
                let text = source.lines().nth(line - 1).unwrap_or("");
                let end = d.span.end.max(d.span.start + 1);
                let (end_line, end_col) = line_col(source, end);
                let width = if end_line == line {
                    end_col.saturating_sub(col).max(1)
                } else {
                    text.chars().count().saturating_sub(col - 1).max(1)
                };
                let gutter = line.to_string().len();
                let (shown, caret_col, width) = window(text, col, width);
                writeln!(f, "{:gutter$} |", "")?;
                writeln!(f, "{line} | {shown}")?;
                writeln!(
                    f,
                    "{:gutter$} | {}{}",
                    "",
                    " ".repeat(caret_col - 1),
                    "^".repeat(width)
                )?;
            }
            None => writeln!(f, "{}: error: {}", d.file, d.message)?,
        }
        if let Some(hint) = &d.hint {
            writeln!(f, "hint: {hint}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_characters_not_bytes() {
        let src = "a = 1\nname = \"é\" x\n";
        let offset = src.find('x').unwrap();
        assert_eq!(line_col(src, offset), (2, 12));
    }

    #[test]
    fn a_long_line_is_shown_around_the_fault_only() {
        let src = format!("name = \"{}\" x\n", "a".repeat(10_000_000));
        let at = src.find(" x").unwrap() + 1;
        let d = Diagnostic::new("p.toml", at..at + 1, "bad");
        let shown = d.display(Some(&src)).to_string();
        assert!(shown.len() < 1000, "{} bytes", shown.len());
        let lines: Vec<&str> = shown.lines().collect();
        let caret = lines[3].find('^').unwrap();
        assert_eq!(lines[2].chars().nth(caret), Some('x'), "{shown}");
    }

    #[test]
    fn display_points_a_caret_under_the_span() {
        let src = "version = 1\nprot = 9100\n";
        let d = Diagnostic::new("plans/p.toml", 12..16, "unknown field `prot`");
        let shown = d.display(Some(src)).to_string();
        assert_eq!(
            shown,
            "plans/p.toml:2:1: error: unknown field `prot`\n  |\n2 | prot = 9100\n  | ^^^^\n"
        );
    }
}
