//! PostgreSQL migrations on a host, as pure functions: the `sh` scripts that run the host's
//! `psql` against the plan's server for each operation of [`MigrationEngine`], and the parser
//! of their failures.
//!
//! # How psql is reached
//!
//! The connection is the plan's typed values (`host`, `port`, `user`, `dbname`: addresses and
//! [`crate::value::PgName`]s) exported as `PGHOST`/`PGPORT`/`PGUSER`/`PGDATABASE`; the password
//! (a secret) reaches psql only through a passfile of mode 0600 under the host root
//! (`run/pgpass-<set>.<pid>`), written from base64 in the script (which travels on the SSH
//! session's stdin) and removed when the script exits: never argv, never the environment.
//! psql runs with `-X -q -w -v ON_ERROR_STOP=1 -At` (no psqlrc, never prompt, stop at the
//! first error).
//!
//! # How SQL reaches the server
//!
//! wavectl's own SQL goes to psql on a quoted heredoc. The migration's SQL is never read by
//! psql's own lexer (which would run meta-commands such as `\!`): it travels as base64 inside
//! an SQL literal, `SELECT convert_from(decode('...', 'base64'), 'UTF8') \gexec`, so the server
//! receives it as one query string. A transactional migration runs as `BEGIN; <tables and
//! checks>; <its SQL>; <tracking row>; COMMIT;` (PostgreSQL's DDL is transactional: a failure
//! anywhere leaves nothing). A `-- wavectl: no-transaction` migration commits the `dirty`
//! marker first, then runs its statements one by one (split by `plan::sql_lex`, so `CREATE
//! INDEX CONCURRENTLY` runs outside any transaction block), then records its row and clears
//! the marker. A revert runs the down SQL stored in the database (`SELECT down_sql ...
//! \gexec`), never the plan's file; a no-transaction migration's down SQL runs as one query
//! outside a transaction block (one statement, such as `DROP INDEX CONCURRENTLY`, runs as
//! such).
//!
//! Every writing script first takes the session-level `pg_advisory_lock(ADVISORY_KEY)`,
//! waiting up to [`LOCK_WAIT_S`] for another run to release it, so two wavectl runs never
//! migrate one database at once; the lock ends with the session.
//!
//! # Tables, listing, output
//!
//! The same tracking tables as sqlite (`wavectl_migrations` with the down SQL stored,
//! `wavectl_meta` with `schema` and `dirty`), in the user's search path. [`list_script`]
//! prints the lines of [`crate::backend::sqlite::parse_list`]: `db ok` (the server answered),
//! `schema`, `dirty`, `applied ...`, or `error <kind> <text>`. The other scripts print what the
//! sqlite ones print (`applied <id> <checksum>`, `reverted <id>`, `accepted`, `resolved`,
//! `baselined`). A check that fails raises `wavectl_<check> ...`; [`parse_failure`] turns
//! psql's stderr into one message naming the migration file and its line.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

use crate::backend::engine::MigrationEngine;
use crate::backend::observe::absolute;
use crate::backend::script::Script;
use crate::backend::sqlite::up_file_name;
use crate::plan::sql_lex;
use crate::primitive::{DatabaseSpec, MigrationSpec, PgTarget};

/// The session-level advisory lock every writing script holds ("wavectl\0" as a bigint).
pub const ADVISORY_KEY: i64 = 0x7761_7665_6374_6c00;
/// How long a run waits for another run's advisory lock before it gives up.
pub const LOCK_WAIT_S: u32 = 5;

/// The postgres engine.
pub struct Postgres;

impl MigrationEngine for Postgres {
    fn list_script(&self, root: &str, db: &DatabaseSpec) -> String {
        list_script(root, db)
    }

    fn apply_script(
        &self,
        root: &str,
        db: &DatabaseSpec,
        m: &MigrationSpec,
        generation: u64,
        commit: Option<&str>,
    ) -> String {
        apply_script(root, db, m, generation, commit)
    }

    fn revert_script(&self, root: &str, db: &DatabaseSpec, id: u32) -> String {
        revert_script(root, db, id)
    }

    fn accept_script(&self, root: &str, db: &DatabaseSpec, m: &MigrationSpec) -> String {
        accept_script(root, db, m)
    }

    fn resolve_script(&self, root: &str, db: &DatabaseSpec) -> String {
        resolve_script(root, db)
    }

    fn baseline_script(&self, root: &str, db: &DatabaseSpec, up_to_id: u32) -> String {
        baseline_script(root, db, up_to_id)
    }

    fn parse_failure(&self, stderr: &str, file: &str) -> String {
        parse_failure(stderr, file)
    }

    fn program(&self) -> &'static str {
        "psql"
    }
}

/// A passfile line field: `:` and `\` escaped.
fn pgpass_field(text: &str) -> String {
    text.replace('\\', "\\\\").replace(':', "\\:")
}

/// The passfile's one line: `host:port:dbname:user:password`.
pub fn passfile_line(t: &PgTarget) -> String {
    format!(
        "{}:{}:{}:{}:{}\n",
        pgpass_field(&t.host),
        t.port,
        pgpass_field(&t.dbname),
        pgpass_field(&t.user),
        pgpass_field(&t.password)
    )
}

/// The connection and the functions every script starts with.
fn header(root: &str, db: &DatabaseSpec) -> Script {
    let mut s = Script::new();
    s.raw("set -eu\n");
    s.set("PF", absolute(root, &db.path));
    s.raw(concat!(
        "PF=\"$PF.$$\"\n",
        "wv_die() { printf 'wavectl: %s\\n' \"$1\" >&2; exit 1; }\n",
        "command -v psql >/dev/null 2>&1 || wv_die 'psql is not installed on this host (Debian package: postgresql-client)'\n",
        "trap 'rm -f \"$PF\"' EXIT\n",
        "mkdir -p \"$(dirname \"$PF\")\"\n",
        "rm -f \"$PF\"\n",
        "(umask 077; base64 -d > \"$PF\")",
    ));
    let t = db.postgres.clone().unwrap_or_else(|| PgTarget {
        host: String::new(),
        port: 0,
        user: String::new(),
        dbname: String::new(),
        password_secret: String::new(),
        password: String::new(),
    });
    s.base64_stdin(passfile_line(&t).as_bytes());
    s.raw("unset PGPASSWORD PGSERVICE PGSERVICEFILE PGOPTIONS PGSSLMODE 2>/dev/null || true\n");
    s.raw("export PGPASSFILE=\"$PF\"\nexport PGHOST=")
        .word(&t.host)
        .raw(" PGPORT=")
        .num(t.port)
        .raw(" PGUSER=")
        .word(&t.user)
        .raw(" PGDATABASE=")
        .word(&t.dbname)
        .raw(" PGCONNECT_TIMEOUT=5 PGAPPNAME=wavectl\n");
    s.raw(concat!(
        "wv_psql() { psql -X -q -w -v ON_ERROR_STOP=1 -At; }\n",
        // Markers pass to stderr only when psql did not reach the end.
        "wv_ok() {\n",
        "  r=1\n",
        "  m=''\n",
        "  while IFS= read -r l; do\n",
        "    case \"$l\" in\n",
        "      wavectl-committed) r=0 ;;\n",
        "      wavectl-*) m=\"$m$l\n\" ;;\n",
        "      *) printf '%s\\n' \"$l\" ;;\n",
        "    esac\n",
        "  done\n",
        "  if [ \"$r\" != 0 ]; then\n",
        "    printf '%swavectl-not-committed\\n' \"$m\" >&2\n",
        "    case \"$m\" in *wavectl-dirty-set*) echo 'wavectl-marked-dirty' >&2 ;; esac\n",
        "  fi\n",
        "  return \"$r\"\n",
        "}\n",
    ));
    s
}

/// The start of every writing session: quiet, the advisory lock, no lock timeout after it.
const OPEN: &str = "\\o /dev/null
SET client_min_messages = warning;
SET lock_timeout = '5s';
SELECT pg_advisory_lock(8602286941086706688);
SET lock_timeout = 0;
";

const TABLES: &str = "\
CREATE TABLE IF NOT EXISTS wavectl_migrations (id integer PRIMARY KEY, name text NOT NULL, checksum text NOT NULL, down_checksum text NOT NULL, down_sql text NOT NULL, irreversible boolean NOT NULL DEFAULT false, no_transaction boolean NOT NULL DEFAULT false, baseline boolean NOT NULL DEFAULT false, applied_at text NOT NULL, generation bigint NOT NULL, plan_commit text, accepted_at text);
CREATE TABLE IF NOT EXISTS wavectl_meta (key text PRIMARY KEY, value text NOT NULL);
INSERT INTO wavectl_meta (key, value) VALUES ('schema', '1') ON CONFLICT DO NOTHING;
";

const GUARD_SCHEMA: &str = "DO $wv$ BEGIN IF EXISTS (SELECT 1 FROM wavectl_meta WHERE key = 'schema' AND value::integer > 1) THEN RAISE EXCEPTION 'wavectl_newer_schema %', (SELECT value FROM wavectl_meta WHERE key = 'schema'); END IF; END $wv$;\n";

const GUARD_DIRTY: &str = "DO $wv$ BEGIN IF EXISTS (SELECT 1 FROM wavectl_meta WHERE key = 'dirty') THEN RAISE EXCEPTION 'wavectl_dirty %', (SELECT replace(replace(value, chr(13), ''), chr(10), ' ') FROM wavectl_meta WHERE key = 'dirty'); END IF; END $wv$;\n";

const NOW: &str = "to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')";

/// A check on migration `id`: `wavectl_<name>` raised when `cond` (SQL with `ID` for the id).
fn guard(s: &mut Script, id: u32, cond: &'static str, name: &'static str) {
    s.raw("DO $wv$ BEGIN IF ")
        .raw(cond)
        .raw(" ")
        .num(id)
        .raw(") THEN RAISE EXCEPTION '")
        .raw(name)
        .raw("'; END IF; END $wv$;\n");
}

const ALREADY: &str = "EXISTS (SELECT 1 FROM wavectl_migrations WHERE id =";
const NOT_RECORDED: &str = "NOT EXISTS (SELECT 1 FROM wavectl_migrations WHERE id =";
const IRREVERSIBLE: &str = "EXISTS (SELECT 1 FROM wavectl_migrations WHERE irreversible AND id =";

/// `text` as an SQL expression: base64 in a literal, decoded by the server, so no byte of it
/// is read by psql or needs SQL quoting.
fn text_expr(s: &mut Script, text: &str) {
    s.raw("convert_from(decode(")
        .word(B64.encode(text.as_bytes()))
        .raw(", 'base64'), 'UTF8')");
}

/// Runs `sql` on the server as one query string, never lexed by psql.
fn run_text(s: &mut Script, sql: &str) {
    s.raw("SELECT ");
    text_expr(s, sql);
    s.raw(" \\gexec\n");
}

/// SQL as it is recorded and checksummed: LF line ends, ending with a newline.
fn normalise(sql: &str) -> String {
    let mut s = sql.replace("\r\n", "\n");
    if !s.is_empty() && !s.ends_with('\n') {
        s.push('\n');
    }
    s
}

fn insert_row(
    s: &mut Script,
    m: &MigrationSpec,
    generation: u64,
    commit: Option<&str>,
    baseline: bool,
) {
    s.raw("INSERT INTO wavectl_migrations (id, name, checksum, down_checksum, down_sql, irreversible, no_transaction, baseline, applied_at, generation, plan_commit) VALUES (")
        .num(m.id)
        .raw(", ");
    text_expr(s, &m.name);
    s.raw(", ");
    text_expr(s, &m.checksum);
    s.raw(", ");
    text_expr(s, &m.down_checksum);
    s.raw(", ");
    text_expr(s, &normalise(&m.down_sql));
    s.raw(if m.irreversible { ", true" } else { ", false" })
        .raw(if m.no_transaction {
            ", true"
        } else {
            ", false"
        })
        .raw(if baseline { ", true, " } else { ", false, " })
        .raw(NOW)
        .raw(", ")
        .num(generation)
        .raw(", ");
    match commit {
        Some(c) => text_expr(s, c),
        None => {
            s.raw("NULL");
        }
    }
    s.raw(");\n");
}

/// psql fed the lines `body` adds, through a quoted heredoc (wavectl's literals, numbers and
/// base64 only: no line of it can be the delimiter); `on_error` runs when psql failed or did
/// not reach its end.
fn session(s: &mut Script, on_error: &'static str, body: impl FnOnce(&mut Script)) {
    s.raw("wv_psql <<'WV_PSQL' | wv_ok || ")
        .raw(on_error)
        .raw("\n");
    body(s);
    s.raw("\\echo wavectl-committed\nWV_PSQL\n");
}

/// Lists what the database records, changing nothing (no table is created).
pub fn list_script(root: &str, db: &DatabaseSpec) -> String {
    let mut s = header(root, db);
    s.raw(concat!(
        "t=$(wv_psql 2>&1 <<'WV_PSQL'\n",
        "SET client_min_messages = warning;\n",
        "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY;\n",
        "SELECT 'db ok';\n",
        "SELECT to_regclass('wavectl_migrations') IS NOT NULL AND to_regclass('wavectl_meta') IS NOT NULL AS wv_tracked \\gset\n",
        "\\if :wv_tracked\n",
        "SELECT 'schema ' || value FROM wavectl_meta WHERE key = 'schema';\n",
        "SELECT 'dirty ' || replace(replace(value, chr(13), ''), chr(10), ' ') FROM wavectl_meta WHERE key = 'dirty';\n",
        "SELECT 'applied ' || id || ' ' || generation || ' ' || applied_at || ' ' || checksum || ' ' || down_checksum || ' ' || coalesce(nullif(plan_commit, ''), '-') || ' ' || coalesce(nullif(concat_ws(',', CASE WHEN irreversible THEN 'irreversible' END, CASE WHEN no_transaction THEN 'no-transaction' END, CASE WHEN baseline THEN 'baseline' END), ''), '-') || ' ' || replace(name, chr(10), ' ') FROM wavectl_migrations ORDER BY id;\n",
        "\\endif\n",
        "COMMIT;\n",
        "WV_PSQL\n",
        ") || { m=$(printf '%s' \"$t\" | tr '\\n' ' '); printf 'error postgres %s\\n' \"$m\"; printf 'wavectl: %s\\n' \"$m\" >&2; exit 1; }\n",
        "printf '%s\\n' \"$t\"\n",
    ));
    s.into_string()
}

/// Whether a transaction refuses a dirty database.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Dirty {
    Refuse,
    Allow,
}

/// Opens the session's transaction: the tracking tables, the schema check and, unless the
/// operation is the one that deals with a dirty database, the dirty check.
fn begin(s: &mut Script, dirty: Dirty) {
    s.raw(OPEN).raw("BEGIN;\n").raw(TABLES).raw(GUARD_SCHEMA);
    if dirty == Dirty::Refuse {
        s.raw(GUARD_DIRTY);
    }
}

/// Applies one migration and its tracking row in one transaction (a no-transaction one behind
/// the dirty marker, statement by statement), under the advisory lock.
pub fn apply_script(
    root: &str,
    db: &DatabaseSpec,
    m: &MigrationSpec,
    generation: u64,
    commit: Option<&str>,
) -> String {
    let mut s = header(root, db);
    session(&mut s, "exit 1", |s| {
        begin(s, Dirty::Refuse);
        guard(s, m.id, ALREADY, "wavectl_already_applied");
        if m.no_transaction {
            s.raw("INSERT INTO wavectl_meta (key, value) VALUES ('dirty', ");
            text_expr(
                s,
                &format!(
                    "{} (no-transaction, generation {generation}) started ",
                    up_file_name(m.id, &m.name)
                ),
            );
            s.raw(" || ")
                .raw(NOW)
                .raw(" || ' and did not finish');\nCOMMIT;\n\\echo wavectl-dirty-set\n\\echo wavectl-sql\n");
            let sql = normalise(&m.up_sql);
            for st in sql_lex::statements(&sql) {
                // The statement's first line, for the error's line in the file.
                let lead = st.text.len() - st.text.trim_start().len();
                s.raw("\\echo wavectl-stmt ")
                    .num(sql_lex::line_of(&sql, st.start + lead) as u64)
                    .raw("\n");
                run_text(s, st.text.trim_start());
            }
            s.raw("\\echo wavectl-recording\nBEGIN;\n");
            insert_row(s, m, generation, commit, false);
            s.raw("DELETE FROM wavectl_meta WHERE key = 'dirty';\nCOMMIT;\n");
        } else {
            s.raw("\\echo wavectl-sql\n");
            run_text(s, &normalise(&m.up_sql));
            s.raw("\\echo wavectl-recording\n");
            insert_row(s, m, generation, commit, false);
            s.raw("COMMIT;\n");
        }
    });
    s.raw("echo")
        .arg(format!("applied {} {}", m.id, m.checksum))
        .raw("\n");
    s.into_string()
}

/// Reverts recorded migration `id` with its stored down SQL and deletes its row, in one
/// transaction (recorded as no-transaction: behind the dirty marker), under the advisory lock.
pub fn revert_script(root: &str, db: &DatabaseSpec, id: u32) -> String {
    let mut s = header(root, db);
    session(&mut s, "exit 1", |s| {
        begin(s, Dirty::Refuse);
        guard(s, id, NOT_RECORDED, "wavectl_not_recorded");
        guard(s, id, IRREVERSIBLE, "wavectl_irreversible");
        s.raw("SELECT no_transaction AS wv_nt FROM wavectl_migrations WHERE id = ")
            .num(id)
            .raw(" \\gset\n\\if :wv_nt\n");
        s.raw("INSERT INTO wavectl_meta (key, value) SELECT 'dirty', 'revert of ' || lpad(id::text, 4, '0') || '_' || name || ' (no-transaction) started ' || ")
            .raw(NOW)
            .raw(" || ' and did not finish' FROM wavectl_migrations WHERE id = ")
            .num(id)
            .raw(";\nCOMMIT;\n\\echo wavectl-dirty-set\n\\echo wavectl-sql\n");
        s.raw("SELECT down_sql FROM wavectl_migrations WHERE id = ")
            .num(id)
            .raw(" \\gexec\n\\echo wavectl-recording\nBEGIN;\nDELETE FROM wavectl_migrations WHERE id = ")
            .num(id)
            .raw(";\nDELETE FROM wavectl_meta WHERE key = 'dirty';\nCOMMIT;\n\\else\n\\echo wavectl-sql\n");
        s.raw("SELECT down_sql FROM wavectl_migrations WHERE id = ")
            .num(id)
            .raw(" \\gexec\n\\echo wavectl-recording\nDELETE FROM wavectl_migrations WHERE id = ")
            .num(id)
            .raw(";\nCOMMIT;\n\\endif\n");
    });
    s.raw("echo 'reverted ").num(id).raw("'\n");
    s.into_string()
}

/// Records the plan's checksums and down SQL of applied migration `m` (a reviewed edit).
pub fn accept_script(root: &str, db: &DatabaseSpec, m: &MigrationSpec) -> String {
    let mut s = header(root, db);
    session(&mut s, "exit 1", |s| {
        begin(s, Dirty::Allow);
        guard(s, m.id, NOT_RECORDED, "wavectl_not_recorded");
        s.raw("UPDATE wavectl_migrations SET checksum = ");
        text_expr(s, &m.checksum);
        s.raw(", down_checksum = ");
        text_expr(s, &m.down_checksum);
        s.raw(", down_sql = ");
        text_expr(s, &normalise(&m.down_sql));
        s.raw(", accepted_at = ")
            .raw(NOW)
            .raw(" WHERE id = ")
            .num(m.id)
            .raw(";\nCOMMIT;\n");
    });
    s.raw("echo")
        .arg(format!("accepted {} {}", m.id, m.checksum))
        .raw("\n");
    s.into_string()
}

/// Clears the dirty marker; prints `resolved <why it was dirty>` or `resolved -`.
pub fn resolve_script(root: &str, db: &DatabaseSpec) -> String {
    let mut s = header(root, db);
    session(&mut s, "exit 1", |s| {
        begin(s, Dirty::Allow);
        s.raw(concat!(
            "SELECT coalesce((SELECT replace(replace(value, chr(13), ''), chr(10), ' ') FROM wavectl_meta WHERE key = 'dirty'), '-') AS wv_was \\gset\n",
            "DELETE FROM wavectl_meta WHERE key = 'dirty';\n",
            "COMMIT;\n",
            "\\echo resolved :wv_was\n",
        ));
    });
    s.into_string()
}

/// Records 1..=`up_to_id` as applied without running them (generation 0, flagged baseline), on
/// a database that records no migration yet.
pub fn baseline_script(root: &str, db: &DatabaseSpec, up_to_id: u32) -> String {
    let chosen: Vec<&MigrationSpec> = (1..=up_to_id)
        .filter_map(|id| db.migrations.iter().find(|m| m.id == id))
        .collect();
    if up_to_id == 0 || chosen.len() != up_to_id as usize {
        let mut s = Script::new();
        let why = if up_to_id == 0 {
            "baseline needs a migration number of 1 or more".to_string()
        } else {
            format!("baseline up to {up_to_id:04}: the plan has no migration that far")
        };
        s.raw("printf 'wavectl: %s\\n'")
            .arg(why)
            .raw(" >&2\nexit 1\n");
        return s.into_string();
    }
    let mut s = header(root, db);
    session(&mut s, "exit 1", |s| {
        begin(s, Dirty::Refuse);
        s.raw("DO $wv$ BEGIN IF EXISTS (SELECT 1 FROM wavectl_migrations) THEN RAISE EXCEPTION 'wavectl_already_tracked'; END IF; END $wv$;\n");
        for m in &chosen {
            insert_row(s, m, 0, None, true);
        }
        s.raw("COMMIT;\n");
    });
    for m in &chosen {
        s.raw("echo")
            .arg(format!("baselined {} {}", m.id, m.checksum))
            .raw("\n");
    }
    s.into_string()
}

/// One message from a failed script's stderr, e.g.
/// `0004_bad.up.sql: line 3: syntax error at or near "CREAT"`.
pub fn parse_failure(stderr: &str, file: &str) -> String {
    let has = |m: &str| stderr.lines().any(|l| l == m);
    let in_sql = has("wavectl-sql") && !has("wavectl-recording");
    let marked_dirty = has("wavectl-marked-dirty");
    let stmt_line: Option<u64> = stderr
        .lines()
        .filter_map(|l| l.strip_prefix("wavectl-stmt "))
        .filter_map(|n| n.trim().parse().ok())
        .next_back();
    let mut error: Option<String> = None;
    let mut query_line: Option<u64> = None;
    let mut script_error = None;
    let mut connection = None;
    for line in stderr.lines() {
        if let Some((_, msg)) = line.split_once("ERROR:  ") {
            if error.is_none() {
                error = Some(msg.trim().to_string());
            }
        } else if let Some(r) = line.strip_prefix("LINE ")
            && error.is_some()
            && query_line.is_none()
        {
            query_line = r.split(':').next().and_then(|n| n.parse().ok());
        } else if let Some(r) = line.strip_prefix("wavectl: ") {
            script_error.get_or_insert_with(|| r.to_string());
        } else if let Some(r) = line.strip_prefix("psql: error: ") {
            connection.get_or_insert_with(|| r.to_string());
        }
    }
    let dirty_note = if marked_dirty {
        "; the database is now marked dirty: check it by hand, then run `wavectl migrations resolve` (further migrations are refused until then)"
    } else {
        ""
    };
    let text = if let Some(msg) = error {
        classify(&msg, in_sql, stmt_line, query_line)
    } else if let Some(c) = connection {
        format!("cannot connect to the PostgreSQL server: {c}")
    } else if let Some(e) = script_error {
        e
    } else if has("wavectl-not-committed") {
        "psql stopped before the end of its input; nothing was committed".to_string()
    } else {
        let last = stderr
            .lines()
            .rfind(|l| !l.trim().is_empty() && !l.starts_with("wavectl-"));
        last.unwrap_or("the script failed without a message")
            .to_string()
    };
    format!("{file}: {text}{dirty_note}")
}

fn classify(msg: &str, in_sql: bool, stmt_line: Option<u64>, query_line: Option<u64>) -> String {
    let (check, rest) = msg.split_once(' ').unwrap_or((msg, ""));
    match check {
        "wavectl_dirty" => return format!(
            "the database is marked dirty ({rest}): a no-transaction migration failed or was interrupted; check the database by hand, then run `wavectl migrations resolve`"
        ),
        "wavectl_newer_schema" => return format!(
            "the database's wavectl tables have layout {rest}, newer than this wavectl (1); upgrade wavectl"
        ),
        "wavectl_already_applied" => {
            return "already recorded as applied in the database; nothing was run".into();
        }
        "wavectl_not_recorded" => {
            return "not recorded as applied in the database; nothing was changed".into();
        }
        "wavectl_irreversible" => return "recorded as irreversible (`-- wavectl: irreversible`), so it cannot be reverted; nothing was changed".into(),
        "wavectl_already_tracked" => return "the database already records migrations; a baseline is only for a database wavectl has never migrated".into(),
        _ => {}
    }
    if msg.contains("canceling statement due to lock timeout") && !in_sql {
        return format!(
            "another wavectl run holds the database's migration lock (pg_advisory_lock), waited {LOCK_WAIT_S} s; nothing was changed"
        );
    }
    if !in_sql {
        return msg.to_string();
    }
    let line = match (stmt_line, query_line) {
        (Some(start), Some(n)) => Some(start + n - 1),
        (Some(start), None) => Some(start),
        (None, n) => n,
    };
    match line {
        Some(n) => format!("line {n}: {msg}"),
        None => msg.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> DatabaseSpec {
        DatabaseSpec {
            name: "events".into(),
            engine: crate::plan::schema::Engine::Postgres,
            path: "run/pgpass-events".into(),
            postgres: Some(PgTarget {
                host: "127.0.0.1".into(),
                port: 5432,
                user: "app".into(),
                dbname: "events".into(),
                password_secret: "EVENTS_PG".into(),
                password: "pa:ss\\word'$(id)".into(),
            }),
            migrations: vec![],
            origin: crate::primitive::Origin {
                wave: String::new(),
                resource: String::new(),
            },
        }
    }

    fn add_note() -> MigrationSpec {
        MigrationSpec {
            id: 4,
            name: "add_note".into(),
            up_sql: "ALTER TABLE t ADD COLUMN note text;\n\\! touch /tmp/x\n".into(),
            down_sql: "ALTER TABLE t DROP COLUMN note;\n".into(),
            checksum: "c4".into(),
            down_checksum: "d4".into(),
            no_transaction: false,
            irreversible: false,
        }
    }

    #[test]
    fn the_passfile_line_escapes_colons_and_backslashes() {
        assert_eq!(
            passfile_line(db().postgres.as_ref().unwrap()),
            "127.0.0.1:5432:events:app:pa\\:ss\\\\word'$(id)\n"
        );
    }

    #[test]
    fn neither_the_password_nor_the_sql_appears_in_the_script() {
        let s = apply_script("/srv/wv", &db(), &add_note(), 3, Some("abc"));
        assert!(!s.contains("pa:ss"), "{s}");
        assert!(!s.contains("pa\\:ss"), "{s}");
        assert!(!s.contains("touch"), "{s}");
        assert!(!s.contains("ALTER TABLE"), "{s}");
        assert!(
            s.contains("PF='/srv/wv/run/pgpass-events'\nPF=\"$PF.$$\"\n"),
            "{s}"
        );
        assert!(s.contains("export PGPASSFILE=\"$PF\"\nexport PGHOST='127.0.0.1' PGPORT=5432 PGUSER='app' PGDATABASE='events' PGCONNECT_TIMEOUT=5 PGAPPNAME=wavectl\n"), "{s}");
        assert!(s.contains("SELECT pg_advisory_lock(8602286941086706688);"));
        assert_eq!(ADVISORY_KEY, 8602286941086706688);
        insta::assert_snapshot!(s);
    }

    #[test]
    fn a_no_transaction_migration_runs_statement_by_statement_behind_the_marker() {
        let mut m = add_note();
        m.no_transaction = true;
        m.up_sql = "-- wavectl: no-transaction\nCREATE INDEX CONCURRENTLY a ON t (x);\n\nCREATE INDEX CONCURRENTLY b\n  ON t (y);\n".into();
        let s = apply_script("/srv/wv", &db(), &m, 3, None);
        let marks: Vec<&str> = s.lines().filter(|l| l.starts_with("\\echo")).collect();
        assert_eq!(
            marks,
            vec![
                "\\echo wavectl-dirty-set",
                "\\echo wavectl-sql",
                "\\echo wavectl-stmt 1",
                "\\echo wavectl-stmt 4",
                "\\echo wavectl-recording",
                "\\echo wavectl-committed",
            ]
        );
        assert_eq!(s.matches(" \\gexec").count(), 2);
    }

    #[test]
    fn revert_accept_resolve_and_baseline_scripts() {
        insta::assert_snapshot!("revert", revert_script("/srv/wv", &db(), 4));
        let mut d = db();
        d.migrations = vec![add_note()];
        let b = baseline_script("/srv/wv", &d, 4);
        assert!(
            b.starts_with("printf 'wavectl: %s\\n' 'baseline up to 0004"),
            "{b}"
        );
        d.migrations[0].id = 1;
        let b = baseline_script("/srv/wv", &d, 1);
        assert!(b.contains("wavectl_already_tracked") && b.contains("echo 'baselined 1 c4'"));
        let a = accept_script("/srv/wv", &d, &d.migrations[0]);
        assert!(a.contains("UPDATE wavectl_migrations SET checksum = convert_from(decode('YzQ=', 'base64'), 'UTF8')"), "{a}");
        assert!(resolve_script("/srv/wv", &d).contains("\\echo resolved :wv_was\n"));
    }

    #[test]
    fn failures_name_the_file_and_the_line() {
        let stderr = "psql:<stdin>:12: ERROR:  syntax error at or near \"CREAT\"\nLINE 3: CREAT TABLE c (id int);\n        ^\nwavectl-sql\nwavectl-not-committed\n";
        assert_eq!(
            parse_failure(stderr, "0003_bad.up.sql"),
            "0003_bad.up.sql: line 3: syntax error at or near \"CREAT\""
        );
        let stderr = "psql:<stdin>:20: ERROR:  column \"q\" does not exist\nLINE 2:   ON t (q)\n               ^\nwavectl-dirty-set\nwavectl-sql\nwavectl-stmt 1\nwavectl-stmt 4\nwavectl-not-committed\nwavectl-marked-dirty\n";
        assert_eq!(
            parse_failure(stderr, "0005_ix.up.sql"),
            "0005_ix.up.sql: line 5: column \"q\" does not exist; the database is now marked dirty: check it by hand, then run `wavectl migrations resolve` (further migrations are refused until then)"
        );
        let stderr = "psql:<stdin>:4: ERROR:  canceling statement due to lock timeout\nwavectl-not-committed\n";
        assert_eq!(
            parse_failure(stderr, "0001_a.up.sql"),
            "0001_a.up.sql: another wavectl run holds the database's migration lock (pg_advisory_lock), waited 5 s; nothing was changed"
        );
        let stderr = "psql:<stdin>:9: ERROR:  wavectl_dirty 0002_x.up.sql (no-transaction) started\nCONTEXT:  PL/pgSQL function inline_code_block line 1 at RAISE\nwavectl-not-committed\n";
        assert!(parse_failure(stderr, "0003_b.up.sql").starts_with(
            "0003_b.up.sql: the database is marked dirty (0002_x.up.sql (no-transaction) started)"
        ));
        let stderr = "psql: error: connection to server at \"127.0.0.1\", port 5432 failed: FATAL:  password authentication failed for user \"app\"\nwavectl-not-committed\n";
        assert_eq!(
            parse_failure(stderr, "0001_a.up.sql"),
            "0001_a.up.sql: cannot connect to the PostgreSQL server: connection to server at \"127.0.0.1\", port 5432 failed: FATAL:  password authentication failed for user \"app\""
        );
    }
}
