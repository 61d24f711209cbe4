//! A migration directory (`NNNN_name.up.sql` + `NNNN_name.down.sql`) -> ordered migrations, with
//! every problem (gap, missing down file, stray file, duplicate number) reported.

use std::collections::BTreeMap;

use crate::primitive::{MigrationSpec, sha256_hex};

/// Marker lines an up file may carry in its leading comments.
const NO_TRANSACTION: &str = "-- wavectl: no-transaction";
const IRREVERSIBLE: &str = "-- wavectl: irreversible";

/// Parses the files of one directory (name, content). Errors are messages about the directory.
pub fn parse_dir(dir: &str, files: &[(String, String)]) -> Result<Vec<MigrationSpec>, Vec<String>> {
    let mut errors = Vec::new();
    // id -> (name, up, down)
    let mut found: BTreeMap<u32, (String, Option<String>, Option<String>)> = BTreeMap::new();
    for (file, content) in files {
        let Some((id, name, is_up)) = parse_name(file) else {
            errors.push(format!(
                "{dir}/{file} is not a migration file, expected `NNNN_name.up.sql` or `NNNN_name.down.sql`"
            ));
            continue;
        };
        let entry = found
            .entry(id)
            .or_insert_with(|| (name.clone(), None, None));
        if entry.0 != name {
            errors.push(format!(
                "{dir}: migration number {id:04} is used twice (`{}` and `{name}`), expected one name per number",
                entry.0
            ));
            continue;
        }
        let slot = if is_up { &mut entry.1 } else { &mut entry.2 };
        *slot = Some(content.clone());
    }
    let mut out = Vec::new();
    for (expected, (id, (name, up, down))) in (1u32..).zip(found) {
        if id != expected {
            errors.push(format!(
                "{dir}: migration {id:04}_{name} follows a gap, expected {expected:04} next (numbers must run 0001, 0002, ... without gaps)"
            ));
        }
        let Some(up) = up else {
            errors.push(format!(
                "{dir}/{id:04}_{name}.up.sql is missing (the down file exists)"
            ));
            continue;
        };
        let irreversible = has_marker(&up, IRREVERSIBLE);
        if down.is_none() && !irreversible {
            errors.push(format!(
                "{dir}/{id:04}_{name}.down.sql is missing, expected a down migration (or `{IRREVERSIBLE}` in the up file)"
            ));
            continue;
        }
        let down = down.unwrap_or_default();
        out.push(MigrationSpec {
            id,
            name,
            checksum: checksum(&up),
            down_checksum: checksum(&down),
            no_transaction: has_marker(&up, NO_TRANSACTION),
            irreversible,
            up_sql: up,
            down_sql: down,
        });
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// sha256 over the SQL with CRLF normalised to LF: a Windows checkout is not drift.
pub fn checksum(sql: &str) -> String {
    sha256_hex(sql.replace("\r\n", "\n").as_bytes())
}

fn parse_name(file: &str) -> Option<(u32, String, bool)> {
    let (stem, is_up) = if let Some(s) = file.strip_suffix(".up.sql") {
        (s, true)
    } else {
        (file.strip_suffix(".down.sql")?, false)
    };
    let (num, name) = stem.split_once('_')?;
    if num.len() != 4 || !num.bytes().all(|b| b.is_ascii_digit()) || name.is_empty() {
        return None;
    }
    Some((num.parse().ok()?, name.to_string(), is_up))
}

fn has_marker(sql: &str, marker: &str) -> bool {
    sql.lines()
        .map(str::trim)
        .take_while(|l| l.starts_with("--") || l.is_empty())
        .any(|l| l == marker)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(names: &[&str]) -> Vec<(String, String)> {
        names
            .iter()
            .map(|n| (n.to_string(), format!("-- {n}\n")))
            .collect()
    }

    #[test]
    fn a_complete_directory_parses_in_order() {
        let m = parse_dir(
            "m",
            &files(&[
                "0002_b.up.sql",
                "0001_a.up.sql",
                "0001_a.down.sql",
                "0002_b.down.sql",
            ]),
        )
        .unwrap();
        assert_eq!(m.iter().map(|m| m.id).collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(m[1].name, "b");
    }

    #[test]
    fn gaps_and_missing_down_files_are_reported_together() {
        let errs = parse_dir(
            "m",
            &files(&[
                "0001_a.up.sql",
                "0003_c.up.sql",
                "0003_c.down.sql",
                "notes.txt",
            ]),
        )
        .unwrap_err();
        assert_eq!(
            errs,
            vec![
                "m/notes.txt is not a migration file, expected `NNNN_name.up.sql` or `NNNN_name.down.sql`",
                "m/0001_a.down.sql is missing, expected a down migration (or `-- wavectl: irreversible` in the up file)",
                "m: migration 0003_c follows a gap, expected 0002 next (numbers must run 0001, 0002, ... without gaps)",
            ]
        );
    }

    #[test]
    fn checksums_ignore_crlf_and_markers_are_read() {
        assert_eq!(checksum("a;\r\nb;\r\n"), checksum("a;\nb;\n"));
        let m = parse_dir(
            "m",
            &[(
                "0001_x.up.sql".into(),
                "-- wavectl: irreversible\nDROP TABLE t;\n".into(),
            )],
        )
        .unwrap();
        assert!(m[0].irreversible && !m[0].no_transaction);
    }
}
