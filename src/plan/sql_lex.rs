//! PostgreSQL SQL text split into what the server sees: statements (at `;` outside strings,
//! quoted identifiers, dollar quotes and comments) and the words outside them. Pure; used to
//! run a no-transaction migration one statement at a time and to check engine rules.

/// A piece of SQL: a statement, or a run of code between strings and comments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Piece<'a> {
    /// Byte offset in the whole text.
    pub start: usize,
    pub text: &'a str,
}

/// What kind of text a byte belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Code,
    /// Strings, quoted identifiers, dollar quotes, comments.
    Quoted,
    /// A `;` ending a statement.
    End,
}

/// Each byte's class.
fn classify(sql: &str) -> Vec<Class> {
    let b = sql.as_bytes();
    let mut out = vec![Class::Code; b.len()];
    let mut i = 0;
    while i < b.len() {
        let start = i;
        match b[i] {
            b'-' if b.get(i + 1) == Some(&b'-') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                // Comments nest in PostgreSQL.
                let mut depth = 0;
                while i < b.len() {
                    if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
                        depth += 1;
                        i += 2;
                    } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
            }
            q @ (b'\'' | b'"') => {
                // E'...' strings take backslash escapes.
                let escapes = q == b'\''
                    && i > 0
                    && matches!(b[i - 1], b'E' | b'e')
                    && (i < 2 || !is_word(b[i - 2]));
                i += 1;
                while i < b.len() {
                    if escapes && b[i] == b'\\' {
                        i += 2;
                        continue;
                    }
                    if b[i] == q {
                        if b.get(i + 1) == Some(&q) {
                            i += 2;
                            continue;
                        }
                        i += 1;
                        break;
                    }
                    i += 1;
                }
            }
            b'$' if i == 0 || !is_word(b[i - 1]) => {
                // `$tag$ ... $tag$` (the tag may be empty); `$1` is a parameter.
                let mut e = i + 1;
                while e < b.len() && is_word(b[e]) {
                    e += 1;
                }
                let is_tag =
                    e < b.len() && b[e] == b'$' && !b.get(i + 1).is_some_and(u8::is_ascii_digit);
                if !is_tag {
                    i += 1;
                    continue;
                }
                let tag = &sql[i..=e];
                i = match sql[e + 1..].find(tag) {
                    Some(n) => e + 1 + n + tag.len(),
                    None => b.len(),
                };
            }
            b';' => {
                out[i] = Class::End;
                i += 1;
                continue;
            }
            _ => {
                i += 1;
                continue;
            }
        }
        let end = i.min(b.len());
        for c in &mut out[start..end] {
            *c = Class::Quoted;
        }
    }
    out
}

fn is_word(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c >= 0x80
}

/// The statements of `sql`, each without its `;`, skipping those with no code (blank or only
/// comments).
pub fn statements(sql: &str) -> Vec<Piece<'_>> {
    let classes = classify(sql);
    let mut out = Vec::new();
    let mut start = 0;
    let mut push = |from: usize, to: usize| {
        let has_code = (from..to)
            .any(|i| classes[i] == Class::Code && !sql.as_bytes()[i].is_ascii_whitespace());
        if has_code {
            out.push(Piece {
                start: from,
                text: &sql[from..to],
            });
        }
    };
    for (i, c) in classes.iter().enumerate() {
        if *c == Class::End {
            push(start, i);
            start = i + 1;
        }
    }
    push(start, sql.len());
    out
}

/// Byte offsets of `word` (ASCII, any case) standing alone in code, outside strings, quoted
/// identifiers, dollar quotes and comments.
pub fn find_word(sql: &str, word: &str) -> Vec<usize> {
    let classes = classify(sql);
    let b = sql.as_bytes();
    let w = word.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i + w.len() <= b.len() {
        let alone =
            (i == 0 || !is_word(b[i - 1])) && b.get(i + w.len()).is_none_or(|c| !is_word(*c));
        if alone
            && b[i..i + w.len()].eq_ignore_ascii_case(w)
            && classes[i..i + w.len()].iter().all(|c| *c == Class::Code)
        {
            out.push(i);
            i += w.len();
        } else {
            i += 1;
        }
    }
    out
}

/// 1-based line of byte offset `at`.
pub fn line_of(sql: &str, at: usize) -> usize {
    sql.as_bytes()[..at.min(sql.len())]
        .iter()
        .filter(|c| **c == b'\n')
        .count()
        + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_split_at_semicolons_outside_quotes_and_comments() {
        let sql = "CREATE TABLE a (x text DEFAULT ';');\n-- a; comment\nINSERT INTO \"b;\" VALUES ($$;$$, $f$ ; $f$, E'\\';');\n/* x; /* y; */ z; */\nSELECT 1;\n\n-- only a comment;\n";
        let texts: Vec<&str> = statements(sql).iter().map(|p| p.text.trim()).collect();
        assert_eq!(
            texts,
            vec![
                "CREATE TABLE a (x text DEFAULT ';')",
                "-- a; comment\nINSERT INTO \"b;\" VALUES ($$;$$, $f$ ; $f$, E'\\';')",
                "/* x; /* y; */ z; */\nSELECT 1",
            ]
        );
        let third = statements(sql)[2];
        assert!(sql[third.start..].trim_start().starts_with("/* x"));
    }

    #[test]
    fn words_in_strings_and_comments_do_not_count() {
        let sql = "-- CONCURRENTLY\nSELECT 'concurrently';\nCREATE INDEX concurrently ix ON t (a);\nSELECT not_concurrently;";
        let found = find_word(sql, "CONCURRENTLY");
        assert_eq!(found, vec![sql.find("concurrently ix").unwrap()]);
        assert_eq!(line_of(sql, found[0]), 3);
    }

    #[test]
    fn a_positional_parameter_is_not_a_dollar_quote() {
        let sql = "PREPARE p AS SELECT $1; SELECT 2;";
        assert_eq!(statements(sql).len(), 2);
    }
}
