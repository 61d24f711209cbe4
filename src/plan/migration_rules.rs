//! The engine-specific rules of a `[[migration]]` set: which fields each engine needs, its
//! password secret provided, and what its migration files may hold (`CREATE INDEX
//! CONCURRENTLY` only in a `-- wavectl: no-transaction` file on postgres). Pure.

use std::collections::BTreeSet;

use crate::diagnostic::Diagnostic;
use crate::plan::schema::{Engine, MigrationSet};
use crate::plan::sql_lex;
use crate::primitive::MigrationSpec;

/// The fields of `m` against its engine, and its secret against those provided.
pub fn check_fields(file: &str, m: &MigrationSet, provided: &BTreeSet<String>) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let name = m.name.get_ref();
    match m.engine {
        Engine::Sqlite => {
            if m.database.is_none() {
                out.push(Diagnostic::new(
                    file,
                    m.name.span(),
                    format!("migration set `{name}` (engine sqlite) has no `database`, expected a path under the host root's data/ (e.g. `database = \"{name}.db\"`)"),
                ));
            }
            if let Some(p) = &m.postgres {
                out.push(Diagnostic::new(
                    file,
                    p.span(),
                    format!("migration set `{name}` has a `postgres` server but engine sqlite, expected `engine = \"postgres\"` or no `postgres`"),
                ));
            }
        }
        Engine::Postgres => {
            if let Some(db) = &m.database {
                out.push(Diagnostic::new(
                    file,
                    db.span(),
                    format!("migration set `{name}` (engine postgres) has a `database` file, expected the server in `postgres = {{ host, port, user, dbname, password_secret }}` instead"),
                ));
            }
            match &m.postgres {
                None => out.push(Diagnostic::new(
                    file,
                    m.name.span(),
                    format!("migration set `{name}` (engine postgres) has no `postgres`, expected `postgres = {{ host = \"127.0.0.1\", port = 5432, user = \"app\", dbname = \"app\", password_secret = \"APP_PG_PASSWORD\" }}`"),
                )),
                Some(p) => {
                    let secret = p.get_ref().password_secret.get_ref();
                    if !provided.contains(secret.as_str()) {
                        out.push(
                            Diagnostic::new(file, p.get_ref().password_secret.span(), format!("secret `{secret}` is not provided"))
                                .with_hint(format!("export {secret} in the environment, or add `{secret} = \"...\"` to the secrets file (--secrets-file, outside the plan repo)")),
                        );
                    }
                    if *p.get_ref().port.get_ref() == 0 {
                        out.push(Diagnostic::new(
                            file,
                            p.get_ref().port.span(),
                            "port 0 is not a PostgreSQL server's port, expected 1 to 65535",
                        ));
                    }
                }
            }
        }
    }
    out
}

/// A postgres password a passfile cannot carry (a line end ends its line), at the secret's
/// name; the value itself is never shown.
pub fn check_password(file: &str, m: &MigrationSet, password: &str) -> Option<Diagnostic> {
    let p = m.postgres.as_ref()?.get_ref();
    password.contains(['\n', '\r']).then(|| {
        Diagnostic::new(
            file,
            p.password_secret.span(),
            format!(
                "secret `{}` holds a line end, which a PostgreSQL passfile cannot carry; expected a password of one line",
                p.password_secret.get_ref()
            ),
        )
    })
}

/// What the engine refuses in the migration files of `m` (`dir` as the plan names it), each at
/// the file and line.
pub fn check_files(m: &MigrationSet, list: &[MigrationSpec]) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    if m.engine != Engine::Postgres {
        return out;
    }
    let dir = m.dir.get_ref().trim_end_matches('/');
    for spec in list.iter().filter(|s| !s.no_transaction) {
        let files = [
            (
                crate::backend::sqlite::up_file_name(spec.id, &spec.name),
                &spec.up_sql,
            ),
            (
                crate::backend::sqlite::down_file_name(spec.id, &spec.name),
                &spec.down_sql,
            ),
        ];
        for (file, sql) in files {
            for at in sql_lex::find_word(sql, "CONCURRENTLY") {
                out.push(
                    Diagnostic::new(
                        &format!("{dir}/{file}"),
                        at..at + "CONCURRENTLY".len(),
                        format!(
                            "`CONCURRENTLY` (line {}) cannot run inside the transaction wavectl runs this migration in, expected it only in a file marked `-- wavectl: no-transaction`",
                            sql_lex::line_of(sql, at)
                        ),
                    )
                    .with_hint("put the concurrent index in a migration of its own whose up file starts with `-- wavectl: no-transaction`"),
                );
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(toml_text: &str) -> MigrationSet {
        toml::from_str(toml_text).expect("a migration set")
    }

    const PG: &str = "name = \"db\"\nhost = \"h\"\nengine = \"postgres\"\ndir = \"m\"\npostgres = { host = \"127.0.0.1\", user = \"app\", dbname = \"app\", password_secret = \"PW\" }\n";

    #[test]
    fn each_engine_needs_its_own_fields() {
        let provided = BTreeSet::from(["PW".to_string()]);
        assert_eq!(check_fields("p.toml", &set(PG), &provided), vec![]);
        let both = format!("{PG}database = \"x.db\"\n");
        let d = check_fields("p.toml", &set(&both), &provided);
        assert_eq!(d.len(), 1);
        assert!(
            d[0].message
                .contains("(engine postgres) has a `database` file")
        );
        let sqlite = "name = \"db\"\nhost = \"h\"\ndir = \"m\"\n";
        let d = check_fields("p.toml", &set(sqlite), &provided);
        assert!(d[0].message.contains("(engine sqlite) has no `database`"));
        let d = check_fields("p.toml", &set(PG), &BTreeSet::new());
        assert_eq!(d[0].message, "secret `PW` is not provided");
    }

    #[test]
    fn concurrently_is_refused_only_outside_no_transaction_files() {
        let m = set(PG);
        let spec = |no_transaction| MigrationSpec {
            id: 1,
            name: "ix".into(),
            up_sql: "CREATE TABLE t (a int);\nCREATE INDEX CONCURRENTLY i ON t (a);\n".into(),
            down_sql: "DROP TABLE t;\n".into(),
            checksum: String::new(),
            down_checksum: String::new(),
            no_transaction,
            irreversible: false,
        };
        let d = check_files(&m, &[spec(false)]);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].file, "m/0001_ix.up.sql");
        assert_eq!(d[0].span, 37..49);
        assert_eq!(check_files(&m, &[spec(true)]), vec![]);
    }

    #[test]
    fn a_password_with_a_line_end_is_refused_without_showing_it() {
        let d = check_password("p.toml", &set(PG), "zq\nxv").expect("refused");
        assert!(!d.message.contains("zq"), "{}", d.message);
        assert!(check_password("p.toml", &set(PG), "secret").is_none());
    }
}
