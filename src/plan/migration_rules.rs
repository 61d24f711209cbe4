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
