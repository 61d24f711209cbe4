//! Reading a TOML file so that every problem in it is reported, not just the first: the file is
//! parsed once with spans, then each top-level value (and each entry of an array of tables) is
//! deserialized on its own, and each failure becomes a `Diagnostic` at its exact position.

use serde::Deserialize;
use serde_spanned::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

use crate::diagnostic::Diagnostic;

/// A parsed TOML file whose top-level keys are handed out one at a time.
pub struct Document<'i> {
    file: String,
    text: &'i str,
    entries: Vec<(Spanned<String>, Spanned<DeValue<'i>>)>,
    pub diagnostics: Vec<Diagnostic>,
}

impl<'i> Document<'i> {
    pub fn parse(file: &str, text: &'i str) -> Self {
        let (root, errors) = DeTable::parse_recoverable(text);
        // After the first syntax error the parser's recovery guesses; later errors are mostly
        // echoes of the first, so only it is reported.
        let diagnostics = errors
            .iter()
            .take(1)
            .map(|e| to_diagnostic(file, e, 0..0))
            .collect::<Vec<_>>();
        let entries = root
            .into_inner()
            .into_iter()
            .map(|(k, v)| {
                let span = k.span();
                (Spanned::new(span, k.into_inner().into_owned()), v)
            })
            .collect();
        Document {
            file: file.to_string(),
            text,
            entries,
            diagnostics,
        }
    }

    /// True when the file did not even parse as TOML.
    pub fn is_malformed(&self) -> bool {
        !self.diagnostics.is_empty()
    }

    /// Takes the top-level entries out, to be matched on their keys by the caller.
    pub fn take_entries(&mut self) -> Vec<(Spanned<String>, Spanned<DeValue<'i>>)> {
        std::mem::take(&mut self.entries)
    }

    /// Deserializes one value; a failure is recorded and gives `None`.
    pub fn value<T: Deserialize<'i>>(&mut self, value: Spanned<DeValue<'i>>) -> Option<T> {
        let span = value.span();
        match T::deserialize(ValueDeserializer::from(value)) {
            Ok(v) => Some(v),
            Err(e) => {
                let mut d = to_diagnostic(&self.file, &e, span);
                d.span = narrow_to_value(self.text, d.span, &d.message);
                self.diagnostics.push(d);
                None
            }
        }
    }

    /// Deserializes each element of an array (of tables) on its own, so one bad entry does not
    /// hide the problems of the next.
    pub fn array<T: Deserialize<'i>>(&mut self, key: &str, value: Spanned<DeValue<'i>>) -> Vec<T> {
        let span = value.span();
        match value.into_inner() {
            DeValue::Array(items) => items
                .into_iter()
                .filter_map(|item| self.value(item))
                .collect(),
            other => {
                self.error(
                    span,
                    format!(
                        "`{key}` must be an array of tables (`[[{key}]]`), found {}",
                        other.type_str()
                    ),
                );
                Vec::new()
            }
        }
    }

    pub fn error(&mut self, span: std::ops::Range<usize>, message: impl Into<String>) {
        self.diagnostics
            .push(Diagnostic::new(&self.file, span, message));
    }

    pub fn unknown_key(&mut self, key: &Spanned<String>, expected: &[&str]) {
        let list = expected
            .iter()
            .map(|k| format!("`{k}`"))
            .collect::<Vec<_>>()
            .join(", ");
        self.error(
            key.span(),
            format!("unknown key `{}`, expected one of {list}", key.get_ref()),
        );
    }
}

/// Points an error about one element of an array at that element: toml reports the span of
/// the whole array, the message names the value (`` `value` ``, as `value::shown` prints it).
fn narrow_to_value(
    text: &str,
    span: std::ops::Range<usize>,
    message: &str,
) -> std::ops::Range<usize> {
    let Some(inner) = text.get(span.clone()) else {
        return span;
    };
    if !inner.starts_with('[') && !inner.starts_with('{') {
        return span;
    }
    let Some(value) = message.split('`').nth(1) else {
        return span;
    };
    let value = value.trim_end_matches('…');
    if value.is_empty() {
        return span;
    }
    // A basic or literal string holding the value, else the value itself (a key in a table).
    let found = ['"', '\'']
        .iter()
        .find_map(|q| inner.find(&format!("{q}{value}")).map(|at| (at, Some(*q))))
        .or_else(|| inner.find(value).map(|at| (at, None)));
    if let Some((at, quote)) = found {
        let start = span.start + at;
        let end = match quote {
            Some(q) => inner[at + 1..].find(q).map_or(span.end, |e| start + e + 2),
            None => start + value.len(),
        };
        return start..end.min(span.end);
    }
    span
}

fn to_diagnostic(file: &str, e: &toml::de::Error, fallback: std::ops::Range<usize>) -> Diagnostic {
    let span = e.span().unwrap_or(fallback);
    Diagnostic::new(file, span, e.message().trim_end().to_string())
}
