//! SQLite migrations on a host, as pure functions: build the `sh -s` script that runs the
//! host's `sqlite3` program for one operation, and parse what it printed.
//!
//! # What is in the target database
//!
//! * `wavectl_migrations`: one row per applied migration: `id`, `name`, `checksum` (of the up
//!   SQL, as [`MigrationSpec::checksum`]), `down_checksum`, `down_sql` (the down SQL itself, so
//!   a rollback to an older commit can revert migrations that commit does not know),
//!   `irreversible`, `no_transaction`, `baseline` (recorded by [`baseline_script`] without
//!   running), `applied_at` (UTC, `YYYY-MM-DDTHH:MM:SSZ`), `generation` (the wavectl generation
//!   whose apply ran it; 0 for a baseline), `plan_commit` (the plan commit, NULL when unknown)
//!   and `accepted_at` (set by [`accept_script`]).
//! * `wavectl_meta`: `key`/`value` pairs: `schema` (the layout of these two tables, now
//!   [`SCHEMA_VERSION`]) and, while a `-- wavectl: no-transaction` migration (or its revert) is
//!   running or after it failed, `dirty` (why). A dirty database refuses every apply, revert
//!   and baseline until [`resolve_script`] clears the marker.
//!
//! # How a migration runs
//!
//! The SQL goes to `sqlite3 -bail -batch` through a quoted heredoc (never on a command line),
//! after `.timeout 2000` (wait up to 2 s for another connection's write lock, then fail with
//! "database is locked"). A transactional migration runs as
//! `PRAGMA foreign_keys=OFF; BEGIN IMMEDIATE; <checks>; <up SQL>; <PRAGMA foreign_key_check
//! must be empty>; <tracking row>; COMMIT; PRAGMA foreign_keys=ON;` so a failure anywhere leaves
//! the database exactly as before, DDL included (SQLite's DDL is transactional). A
//! no-transaction migration commits the `dirty` marker first, runs its SQL without a
//! transaction, then records its row and clears the marker in one transaction; if its SQL
//! fails the marker stays. A revert runs the down SQL stored in the database (written to
//! `<db>.wavectl-down.sql` and `.read` inside the same transaction), never the plan's file.
//! The migration's own SQL must not contain `BEGIN`/`COMMIT`/`ROLLBACK`: that would end the
//! transaction wavectl runs it in.
//!
//! Output of the migration's own statements (a `SELECT`) is discarded. sqlite3 prints
//! `wavectl-committed` after its `COMMIT`; the script succeeds only when it saw that line, so
//! SQL that swallows the end of the input (an unterminated `/*` comment) is a failure too.
//!
//! # What the scripts print
//!
//! Every script exits 0 on success, else non-zero with the error on stderr.
//!
//! [`list_script`], stdout (parsed by [`parse_list`]):
//! * `db missing` – no file at the path (nothing is created); nothing else follows.
//! * `db ok` – an SQLite database; the lines below may follow.
//! * `schema <n>` – the layout version of the wavectl tables.
//! * `dirty <reason>` – the database is dirty (newlines in the reason become spaces).
//! * `applied <id> <generation> <applied_at> <checksum> <down_checksum> <commit|-> <flags|-> <name>`
//!   per recorded migration, by id; flags is a comma list of `irreversible`,
//!   `no-transaction`, `baseline`.
//! * `error <kind> <text>` on failure (also on stderr, and the script exits 1); kind is one of
//!   `nosqlite3`, `notadb`, `locked`, `sqlite`.
//!
//! The other scripts, stdout on success:
//! * [`apply_script`]: `created` (the database file did not exist) then `applied <id> <checksum>`.
//! * [`revert_script`]: `reverted <id>`.
//! * [`accept_script`]: `accepted <id> <checksum>`.
//! * [`resolve_script`]: `resolved <the reason it was dirty>` or `resolved -` (was not dirty).
//! * [`baseline_script`]: `baselined <id> <checksum>` per recorded migration.
//!
//! On success stderr is empty. On failure it holds sqlite3's own error (`Parse error near
//! line N: ...`, `Runtime error near line N: ... (code)`) or a `wavectl: ...` line from the
//! script, plus `wavectl-...` marker lines (how far sqlite3 got, the dirty reason, foreign key
//! violations); [`parse_failure`] turns it into one message naming the migration file and the
//! line in it.

use std::fmt::Write as _;

use crate::backend::sh_quote;
use crate::observed::AppliedMigration;
use crate::primitive::MigrationSpec;

/// The tracking table in the target database.
pub const TRACKING_TABLE: &str = "wavectl_migrations";
/// The key/value table holding the layout version and the dirty marker.
pub const META_TABLE: &str = "wavectl_meta";
/// Layout of the two tables; a database with a higher one is refused.
pub const SCHEMA_VERSION: u32 = 1;
/// How long sqlite3 waits for another connection's lock before failing.
pub const BUSY_TIMEOUT_MS: u32 = 2000;

/// The file name of a migration's up SQL, as in the plan repo: `0004_name.up.sql`.
pub fn up_file_name(id: u32, name: &str) -> String {
    format!("{id:04}_{name}.up.sql")
}

/// The file name of a migration's down SQL: `0004_name.down.sql`.
pub fn down_file_name(id: u32, name: &str) -> String {
    format!("{id:04}_{name}.down.sql")
}

/// `'text'` as an SQL string literal.
fn sql_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// SQL as it is run: LF line ends (as the checksum sees it), ending with a newline.
fn normalise(sql: &str) -> String {
    let mut s = sql.replace("\r\n", "\n");
    if !s.is_empty() && !s.ends_with('\n') {
        s.push('\n');
    }
    s
}

const NOW: &str = "strftime('%Y-%m-%dT%H:%M:%SZ', 'now')";

/// Shell functions every writing script starts with (after `DB=`).
const PRELUDE: &str = r#"NEW=0
wv_die() { printf 'wavectl: %s\n' "$1" >&2; exit 1; }
command -v sqlite3 >/dev/null 2>&1 || wv_die 'sqlite3 is not installed on this host (Debian package: sqlite3)'
wv_check_db() {
  [ -e "$DB" ] || wv_die "database $DB does not exist"
  { [ -f "$DB" ] && [ -r "$DB" ]; } || wv_die "database $DB is not an SQLite database (not a readable regular file)"
  [ ! -s "$DB" ] || [ "$(head -c 15 "$DB" | tr -d '\000')" = 'SQLite format 3' ] || wv_die "database $DB is not an SQLite database (the file does not start with the SQLite header)"
}
wv_sql() { sqlite3 -safe -bail -batch "$DB"; }
wv_ok() {
  r=1
  m=''
  while IFS= read -r l; do
    case "$l" in
      wavectl-committed) r=0 ;;
      wavectl-*) m="$m$l
" ;;
      *) printf '%s\n' "$l" ;;
    esac
  done
  [ "$r" = 0 ] || printf '%swavectl-not-committed\n' "$m" >&2
  return "$r"
}
wv_fail() {
  if [ "$NEW" = 1 ] && [ ! -s "$DB" ]; then rm -f "$DB"; fi
  exit 1
}
wv_dirty() { echo 'wavectl-marked-dirty' >&2; exit 1; }
"#;

/// The start of every sqlite3 input.
const OPEN: &str = ".timeout 2000\n.mode off\n";

/// Creates the wavectl tables if needed and the per-connection assertion table: inserting a
/// non-NULL value into one of its columns fails with `CHECK constraint failed: <name>`.
const TABLES: &str = "\
CREATE TABLE IF NOT EXISTS wavectl_migrations (id INTEGER PRIMARY KEY, name TEXT NOT NULL, checksum TEXT NOT NULL, down_checksum TEXT NOT NULL, down_sql TEXT NOT NULL, irreversible INTEGER NOT NULL DEFAULT 0, no_transaction INTEGER NOT NULL DEFAULT 0, baseline INTEGER NOT NULL DEFAULT 0, applied_at TEXT NOT NULL, generation INTEGER NOT NULL, plan_commit TEXT, accepted_at TEXT);
CREATE TABLE IF NOT EXISTS wavectl_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT OR IGNORE INTO wavectl_meta (key, value) VALUES ('schema', '1');
";

const ASSERTS: &str = "\
CREATE TEMP TABLE wavectl_assert (newer_schema TEXT CONSTRAINT wavectl_newer_schema CHECK (newer_schema IS NULL), dirty TEXT CONSTRAINT wavectl_dirty CHECK (dirty IS NULL), already_applied INTEGER CONSTRAINT wavectl_already_applied CHECK (already_applied IS NULL), not_recorded INTEGER CONSTRAINT wavectl_not_recorded CHECK (not_recorded IS NULL), irreversible INTEGER CONSTRAINT wavectl_irreversible CHECK (irreversible IS NULL), already_tracked INTEGER CONSTRAINT wavectl_already_tracked CHECK (already_tracked IS NULL), foreign_key_violations INTEGER CONSTRAINT wavectl_foreign_key_violations CHECK (foreign_key_violations IS NULL));
";

/// Refuses a newer layout (printing it first).
const GUARD_SCHEMA: &str = "\
.mode list
SELECT 'wavectl-schema ' || value FROM wavectl_meta WHERE key = 'schema' AND CAST(value AS INTEGER) > 1;
.mode off
INSERT INTO temp.wavectl_assert (newer_schema) SELECT value FROM wavectl_meta WHERE key = 'schema' AND CAST(value AS INTEGER) > 1;
";

/// Refuses a dirty database (printing why first).
const GUARD_DIRTY: &str = "\
.mode list
SELECT 'wavectl-dirty ' || replace(replace(value, char(13), ''), char(10), ' ') FROM wavectl_meta WHERE key = 'dirty';
.mode off
INSERT INTO temp.wavectl_assert (dirty) SELECT value FROM wavectl_meta WHERE key = 'dirty';
";

/// After the migration's SQL: `PRAGMA foreign_key_check` must return no rows (the first 20
/// are printed).
const FOREIGN_KEYS: &str = "\
CREATE TEMP TABLE wavectl_fk AS SELECT \"table\" AS tbl, rowid AS row, parent AS parent FROM pragma_foreign_key_check LIMIT 20;
.mode list
SELECT 'wavectl-fk ' || tbl || ' rowid ' || ifnull(row, '-') || ' references ' || parent FROM temp.wavectl_fk;
.mode off
INSERT INTO temp.wavectl_assert (foreign_key_violations) SELECT count(*) FROM temp.wavectl_fk HAVING count(*) > 0;
";

/// Marks that sqlite3 reached the statement after it (wv_ok passes it to stderr on failure).
fn marker(text: &str) -> String {
    format!(".mode list\n.print wavectl-{text}\n.mode off\n")
}

const COMMIT: &str = "COMMIT;\n";
const CLEAR_DIRTY: &str = "DELETE FROM wavectl_meta WHERE key = 'dirty';\n";
const DONE: &str = ".mode list\n.print wavectl-committed\n";

/// `wv_sql` fed `body` through a heredoc whose delimiter is no line of the body; `on_error`
/// runs when sqlite3 failed or did not reach its end.
fn run_sql(body: &str, on_error: &str) -> String {
    let delim = delimiter(body);
    format!("wv_sql <<'{delim}' | wv_ok || {on_error}\n{body}{delim}\n")
}

/// A heredoc delimiter that is no line of `body`.
fn delimiter(body: &str) -> String {
    let mut delim = "WV_SQL".to_string();
    let mut n = 0;
    while body.lines().any(|l| l == delim) {
        n += 1;
        delim = format!("WV_SQL_{n}");
    }
    delim
}

/// Appends the marker saying the migration's SQL starts on the next line of the input.
fn push_sql(body: &mut String, sql: &str) {
    let start = body.lines().count() + 3;
    body.push_str(&marker(&format!("sql {start}")));
    body.push_str(&normalise(sql));
    body.push_str(";\n");
    body.push_str(&marker("recording"));
}

fn header(db: &str) -> String {
    format!("set -eu\nDB={}\n{PRELUDE}", sh_quote(db))
}

fn insert_row(m: &MigrationSpec, generation: u64, commit: Option<&str>, baseline: bool) -> String {
    format!(
        "INSERT INTO wavectl_migrations (id, name, checksum, down_checksum, down_sql, irreversible, no_transaction, baseline, applied_at, generation, plan_commit) VALUES ({}, {}, {}, {}, {}, {}, {}, {}, {NOW}, {generation}, {});\n",
        m.id,
        sql_quote(&m.name),
        sql_quote(&m.checksum),
        sql_quote(&m.down_checksum),
        sql_quote(&normalise(&m.down_sql)),
        u8::from(m.irreversible),
        u8::from(m.no_transaction),
        u8::from(baseline),
        commit.map_or_else(|| "NULL".to_string(), sql_quote),
    )
}

/// Lists what a database records, without creating or changing it. See the module doc for
/// the lines it prints.
pub fn list_script(db_path_abs: &str) -> String {
    format!(
        r#"set -eu
DB={db}
wv_err() {{ m=$(printf '%s' "$2" | tr '\n' ' '); printf 'error %s %s\n' "$1" "$m"; printf 'wavectl: %s\n' "$m" >&2; exit 1; }}
wv_failed() {{
  case "$1" in
    *'database is locked'*) wv_err locked "database $DB is locked by another connection (waited 2 s): $1" ;;
    *'not a database'*) wv_err notadb "database $DB is not an SQLite database: $1" ;;
    *) wv_err sqlite "database $DB: $1" ;;
  esac
}}
command -v sqlite3 >/dev/null 2>&1 || wv_err nosqlite3 'sqlite3 is not installed on this host (Debian package: sqlite3)'
[ -e "$DB" ] || {{ echo 'db missing'; exit 0; }}
{{ [ -f "$DB" ] && [ -r "$DB" ]; }} || wv_err notadb "database $DB is not an SQLite database (not a readable regular file)"
[ ! -s "$DB" ] || [ "$(head -c 15 "$DB" | tr -d '\000')" = 'SQLite format 3' ] || wv_err notadb "database $DB is not an SQLite database (the file does not start with the SQLite header)"
t=$(sqlite3 -safe -bail -batch -readonly "$DB" 2>&1 <<'WV_SQL'
.timeout 2000
SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'wavectl_migrations';
WV_SQL
) || wv_failed "$t"
echo 'db ok'
[ -n "$t" ] || exit 0
t=$(sqlite3 -safe -bail -batch -readonly "$DB" 2>&1 <<'WV_SQL'
.timeout 2000
BEGIN;
SELECT 'schema ' || value FROM wavectl_meta WHERE key = 'schema';
SELECT 'dirty ' || replace(replace(value, char(13), ''), char(10), ' ') FROM wavectl_meta WHERE key = 'dirty';
SELECT 'applied ' || id || ' ' || generation || ' ' || applied_at || ' ' || checksum || ' ' || down_checksum || ' ' || coalesce(nullif(plan_commit, ''), '-') || ' ' || coalesce(nullif(substr(CASE WHEN irreversible THEN ',irreversible' ELSE '' END || CASE WHEN no_transaction THEN ',no-transaction' ELSE '' END || CASE WHEN baseline THEN ',baseline' ELSE '' END, 2), ''), '-') || ' ' || replace(name, char(10), ' ') FROM wavectl_migrations ORDER BY id;
COMMIT;
WV_SQL
) || wv_failed "$t"
printf '%s\n' "$t"
"#,
        db = sh_quote(db_path_abs)
    )
}

/// What [`list_script`] reported.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listing {
    /// The database file exists (false: nothing is applied, and nothing was created).
    pub exists: bool,
    /// Recorded migrations, by id.
    pub applied: Vec<AppliedMigration>,
    /// The rest of each recorded row, in the same order as `applied`.
    pub details: Vec<AppliedDetail>,
    /// Why the database is dirty (a no-transaction migration failed or was interrupted).
    pub dirty: Option<String>,
}

/// The columns of a recorded migration that [`AppliedMigration`] does not hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppliedDetail {
    pub id: u32,
    pub down_checksum: String,
    pub commit: Option<String>,
    pub irreversible: bool,
    pub no_transaction: bool,
    /// Recorded by a baseline, never run by wavectl.
    pub baseline: bool,
}

/// Why a database could not be listed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SqliteError {
    #[error("{0}")]
    NoSqlite3(String),
    #[error("{0}")]
    NotADatabase(String),
    #[error("{0}")]
    Locked(String),
    #[error(
        "the database's wavectl tables have layout {found}, newer than this wavectl ({SCHEMA_VERSION}); upgrade wavectl"
    )]
    NewerSchema { found: u32 },
    #[error("{0}")]
    Sqlite(String),
    #[error("unexpected output from the database listing: {0}")]
    Malformed(String),
}

pub fn parse_list(stdout: &str) -> Result<Listing, SqliteError> {
    let mut listing = Listing::default();
    let mut seen_db = false;
    for line in stdout.lines() {
        if line.is_empty() {
            continue;
        }
        let (tag, rest) = line.split_once(' ').unwrap_or((line, ""));
        match tag {
            "db" => {
                seen_db = true;
                listing.exists = rest == "ok";
                if rest != "ok" && rest != "missing" {
                    return Err(SqliteError::Malformed(line.to_string()));
                }
            }
            "schema" => {
                let found: u32 = rest
                    .trim()
                    .parse()
                    .map_err(|_| SqliteError::Malformed(line.to_string()))?;
                if found > SCHEMA_VERSION {
                    return Err(SqliteError::NewerSchema { found });
                }
            }
            "dirty" => listing.dirty = Some(rest.to_string()),
            "applied" => {
                let (a, d) =
                    parse_applied(rest).ok_or_else(|| SqliteError::Malformed(line.to_string()))?;
                listing.applied.push(a);
                listing.details.push(d);
            }
            "error" => {
                let (kind, text) = rest.split_once(' ').unwrap_or((rest, ""));
                let text = text.to_string();
                return Err(match kind {
                    "nosqlite3" => SqliteError::NoSqlite3(text),
                    "notadb" => SqliteError::NotADatabase(text),
                    "locked" => SqliteError::Locked(text),
                    _ => SqliteError::Sqlite(text),
                });
            }
            _ => return Err(SqliteError::Malformed(line.to_string())),
        }
    }
    if !seen_db {
        return Err(SqliteError::Malformed(
            "no `db` line (did the script run?)".into(),
        ));
    }
    Ok(listing)
}

fn parse_applied(rest: &str) -> Option<(AppliedMigration, AppliedDetail)> {
    let mut w = rest.splitn(8, ' ');
    let id: u32 = w.next()?.parse().ok()?;
    let generation: u64 = w.next()?.parse().ok()?;
    let applied_at = w.next()?.to_string();
    let checksum = w.next()?.to_string();
    let down_checksum = w.next()?.to_string();
    let commit = Some(w.next()?).filter(|c| *c != "-").map(str::to_string);
    let flags = w.next()?;
    let name = w.next()?.to_string();
    let has = |f: &str| flags.split(',').any(|x| x == f);
    let detail = AppliedDetail {
        id,
        down_checksum,
        commit,
        irreversible: has("irreversible"),
        no_transaction: has("no-transaction"),
        baseline: has("baseline"),
    };
    Some((
        AppliedMigration {
            id,
            name,
            checksum,
            applied_at,
            generation,
            irreversible: detail.irreversible,
            down_checksum: detail.down_checksum.clone(),
        },
        detail,
    ))
}

/// Applies one migration: its up SQL and its tracking row in one `BEGIN IMMEDIATE`
/// transaction (or, for a no-transaction migration, behind the dirty marker). Creates the
/// database (and its directory) when missing. `generation` is the wavectl generation being
/// applied, `commit` the plan commit; both are recorded in the row.
pub fn apply_script(
    db_path_abs: &str,
    migration: &MigrationSpec,
    generation: u64,
    commit: Option<&str>,
) -> String {
    let m = migration;
    let file = up_file_name(m.id, &m.name);
    let mut s = header(db_path_abs);
    s.push_str(
        "if [ -e \"$DB\" ]; then wv_check_db; else mkdir -p \"$(dirname \"$DB\")\"; NEW=1; fi\n",
    );
    let already = format!(
        "INSERT INTO temp.wavectl_assert (already_applied) SELECT id FROM wavectl_migrations WHERE id = {};\n",
        m.id
    );
    if m.no_transaction {
        // 1. the dirty marker, committed before anything of the migration runs.
        let mut a = format!(
            "{OPEN}BEGIN IMMEDIATE;\n{TABLES}{ASSERTS}{GUARD_SCHEMA}{GUARD_DIRTY}{already}"
        );
        let _ = writeln!(
            a,
            "INSERT INTO wavectl_meta (key, value) VALUES ('dirty', {} || {NOW} || ' and did not finish');",
            sql_quote(&format!(
                "{file} (no-transaction, generation {generation}) started "
            ))
        );
        a.push_str(COMMIT);
        a.push_str(DONE);
        s.push_str(&run_sql(&a, "wv_fail"));
        // 2. the SQL without a transaction; then the row, and the marker cleared.
        let mut b = format!("{OPEN}PRAGMA foreign_keys=OFF;\n{ASSERTS}");
        push_sql(&mut b, &m.up_sql);
        b.push_str(FOREIGN_KEYS);
        b.push_str("PRAGMA foreign_keys=ON;\nBEGIN IMMEDIATE;\n");
        b.push_str(&insert_row(m, generation, commit, false));
        b.push_str(CLEAR_DIRTY);
        b.push_str(COMMIT);
        b.push_str(DONE);
        s.push_str(&run_sql(&b, "wv_dirty"));
    } else {
        let mut b = format!(
            "{OPEN}PRAGMA foreign_keys=OFF;\nBEGIN IMMEDIATE;\n{TABLES}{ASSERTS}{GUARD_SCHEMA}{GUARD_DIRTY}{already}"
        );
        push_sql(&mut b, &m.up_sql);
        b.push_str(FOREIGN_KEYS);
        b.push_str(&insert_row(m, generation, commit, false));
        b.push_str(COMMIT);
        b.push_str("PRAGMA foreign_keys=ON;\n");
        b.push_str(DONE);
        s.push_str(&run_sql(&b, "wv_fail"));
    }
    s.push_str("[ \"$NEW\" = 0 ] || echo 'created'\n");
    let _ = writeln!(
        s,
        "echo {}",
        sh_quote(&format!("applied {} {}", m.id, m.checksum))
    );
    s
}

/// Reverts one recorded migration with the down SQL stored in its row, and deletes the row,
/// in one transaction (a migration recorded as no-transaction: behind the dirty marker, as it
/// was applied). Refuses a row recorded as irreversible, and a dirty database.
pub fn revert_script(db_path_abs: &str, id: u32) -> String {
    let tmp = format!("{db_path_abs}.wavectl-down.sql");
    let mut s = header(db_path_abs);
    s.push_str("wv_check_db\n");
    let _ = writeln!(s, "T={}", sh_quote(&tmp));
    s.push_str("trap 'rm -f \"$T\"' EXIT\nrm -f \"$T\"\n");
    let _ = write!(
        s,
        "NT=$(sqlite3 -safe -batch -readonly \"$DB\" 2>/dev/null <<'WV_SQL' || true\n.timeout 2000\nSELECT no_transaction FROM wavectl_migrations WHERE id = {id};\nWV_SQL\n)\n"
    );
    // The stored down SQL, copied out by the shell (sqlite3 -safe writes no files), then fed
    // to sqlite3's input between wavectl's own statements: the shell never reads it as code.
    let _ = write!(
        s,
        "sqlite3 -safe -batch -readonly \"$DB\" 2>/dev/null > \"$T\" <<'WV_SQL' || true\n.timeout 2000\nSELECT down_sql FROM wavectl_migrations WHERE id = {id};\nWV_SQL\n"
    );
    let guards = format!(
        "{TABLES}{ASSERTS}{GUARD_SCHEMA}{GUARD_DIRTY}\
INSERT INTO temp.wavectl_assert (not_recorded) SELECT {id} WHERE NOT EXISTS (SELECT 1 FROM wavectl_migrations WHERE id = {id});
INSERT INTO temp.wavectl_assert (irreversible) SELECT id FROM wavectl_migrations WHERE id = {id} AND irreversible <> 0;
"
    );
    let delete = format!("DELETE FROM wavectl_migrations WHERE id = {id};\n");

    s.push_str("if [ \"$NT\" = 1 ]; then\n");
    let mut a = format!("{OPEN}BEGIN IMMEDIATE;\n{guards}");
    let _ = writeln!(
        a,
        "INSERT INTO wavectl_meta (key, value) SELECT 'dirty', 'revert of ' || printf('%04d', id) || '_' || name || ' (no-transaction) started ' || {NOW} || ' and did not finish' FROM wavectl_migrations WHERE id = {id};"
    );
    a.push_str(COMMIT);
    a.push_str(DONE);
    s.push_str(&run_sql(&a, "wv_fail"));
    let b = format!("{OPEN}PRAGMA foreign_keys=OFF;\n{ASSERTS}");
    let b_after = format!(
        "{FOREIGN_KEYS}PRAGMA foreign_keys=ON;\nBEGIN IMMEDIATE;\n{delete}{CLEAR_DIRTY}{COMMIT}{DONE}"
    );
    s.push_str(&run_sql_around(&b, &b_after, "wv_dirty"));
    s.push_str("else\n");
    let t = format!("{OPEN}PRAGMA foreign_keys=OFF;\nBEGIN IMMEDIATE;\n{guards}");
    let t_after = format!("{FOREIGN_KEYS}{delete}{COMMIT}PRAGMA foreign_keys=ON;\n{DONE}");
    s.push_str(&run_sql_around(&t, &t_after, "wv_fail"));
    s.push_str("fi\n");
    let _ = writeln!(s, "echo 'reverted {id}'");
    s
}

/// `wv_sql` fed `before`, the file `$T` (SQL that wavectl did not write: it reaches sqlite3's
/// input, never the shell), then `after`; `on_error` as in `run_sql`. The `sql N` marker maps
/// sqlite3's line numbers back to the lines of `$T`.
fn run_sql_around(before: &str, after: &str, on_error: &str) -> String {
    let mut pre = before.to_string();
    let offset = pre.lines().count() + 3;
    pre.push_str(&marker(&format!("sql {offset}")));
    let post = format!(";\n{}{after}", marker("recording"));
    let heredoc = |body: &str| {
        let delim = delimiter(body);
        format!("cat <<'{delim}'\n{body}{delim}\n")
    };
    format!(
        "{{\n{}cat \"$T\"\n{}}} | wv_sql | wv_ok || {on_error}\n",
        heredoc(&pre),
        heredoc(&post)
    )
}

/// Records the plan's version of applied migration `m` (after an operator reviewed an edit of
/// its files): its checksums and the down SQL a later revert runs. Allowed on a dirty
/// database: it runs nothing.
pub fn accept_script(db_path_abs: &str, m: &MigrationSpec) -> String {
    let id = m.id;
    let mut s = header(db_path_abs);
    s.push_str("wv_check_db\n");
    let body = format!(
        "{OPEN}BEGIN IMMEDIATE;\n{TABLES}{ASSERTS}{GUARD_SCHEMA}\
INSERT INTO temp.wavectl_assert (not_recorded) SELECT {id} WHERE NOT EXISTS (SELECT 1 FROM wavectl_migrations WHERE id = {id});
UPDATE wavectl_migrations SET checksum = {}, down_checksum = {}, down_sql = {}, accepted_at = {NOW} WHERE id = {id};
{COMMIT}{DONE}",
        sql_quote(&m.checksum),
        sql_quote(&m.down_checksum),
        sql_quote(&normalise(&m.down_sql))
    );
    s.push_str(&run_sql(&body, "wv_fail"));
    let _ = writeln!(
        s,
        "echo {}",
        sh_quote(&format!("accepted {id} {}", m.checksum))
    );
    s
}

/// Clears the dirty marker (after an operator checked the database by hand). The failed
/// no-transaction migration stays unrecorded: the next apply runs it again.
pub fn resolve_script(db_path_abs: &str) -> String {
    let mut s = header(db_path_abs);
    s.push_str("wv_check_db\n");
    let body = format!(
        "{OPEN}BEGIN IMMEDIATE;\n{TABLES}{ASSERTS}{GUARD_SCHEMA}\
CREATE TEMP TABLE wavectl_was AS SELECT value FROM wavectl_meta WHERE key = 'dirty';
{CLEAR_DIRTY}{COMMIT}.mode list
SELECT 'resolved ' || coalesce((SELECT replace(replace(value, char(13), ''), char(10), ' ') FROM temp.wavectl_was), '-');
.print wavectl-committed
"
    );
    s.push_str(&run_sql(&body, "wv_fail"));
    s
}

/// Records migrations 1..=`up_to_id` (taken from `migrations`) as applied without running
/// them, for a database whose schema was made before wavectl managed it: generation 0, no
/// commit, flagged `baseline`. The database must exist, be clean and have no recorded
/// migration yet.
pub fn baseline_script(db_path_abs: &str, up_to_id: u32, migrations: &[MigrationSpec]) -> String {
    let mut s = header(db_path_abs);
    let chosen: Vec<&MigrationSpec> = (1..=up_to_id)
        .filter_map(|id| migrations.iter().find(|m| m.id == id))
        .collect();
    if up_to_id == 0 || chosen.len() != up_to_id as usize {
        let missing: Vec<String> = (1..=up_to_id)
            .filter(|id| !migrations.iter().any(|m| m.id == *id))
            .map(|id| format!("{id:04}"))
            .collect();
        let why = if up_to_id == 0 {
            "baseline needs a migration number of 1 or more".to_string()
        } else {
            format!(
                "baseline up to {up_to_id:04}: the plan has no migration {}",
                missing.join(", ")
            )
        };
        let _ = writeln!(s, "wv_die {}", sh_quote(&why));
        return s;
    }
    s.push_str("wv_check_db\n");
    let mut body = format!(
        "{OPEN}BEGIN IMMEDIATE;\n{TABLES}{ASSERTS}{GUARD_SCHEMA}{GUARD_DIRTY}\
INSERT INTO temp.wavectl_assert (already_tracked) SELECT count(*) FROM wavectl_migrations HAVING count(*) > 0;
"
    );
    for m in &chosen {
        body.push_str(&insert_row(m, 0, None, true));
    }
    body.push_str(COMMIT);
    body.push_str(DONE);
    s.push_str(&run_sql(&body, "wv_fail"));
    for m in &chosen {
        let _ = writeln!(
            s,
            "echo {}",
            sh_quote(&format!("baselined {} {}", m.id, m.checksum))
        );
    }
    s
}

/// What kind of failure a script reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The migration's own SQL failed (`line` in its file when known).
    Sql {
        line: Option<u32>,
    },
    /// Another connection held the database's write lock for longer than the timeout.
    Locked,
    NotADatabase,
    /// The database file does not exist (revert, accept, resolve, baseline).
    Missing,
    /// A no-transaction migration failed before: resolve first.
    Dirty,
    NewerSchema,
    AlreadyApplied,
    NotRecorded,
    Irreversible,
    /// Baseline on a database that already records migrations.
    AlreadyTracked,
    ForeignKeys,
    /// sqlite3 stopped before the end of its input without an error.
    NotCommitted,
    NoSqlite3,
    Other,
}

/// A script's failure, as one message for the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub kind: FailureKind,
    pub message: String,
    /// A no-transaction step failed: the database is now marked dirty.
    pub marked_dirty: bool,
}

/// One message from a failed script's stderr, e.g.
/// `0004_bad.up.sql: line 3: near "CREAT": syntax error`. `file` names what ran (the up file
/// for an apply, the down file for a revert, the database for accept/resolve/baseline).
pub fn parse_failure(stderr: &str, file: &str) -> String {
    parse_failure_detail(stderr, file).message
}

pub fn parse_failure_detail(stderr: &str, file: &str) -> Failure {
    // sqlite3's markers reach stderr through a pipe, its errors directly: their order is not
    // reliable, but sqlite3 stops at the first error, so the markers present are exactly the
    // stages it reached.
    let sql_start: Option<u64> = stderr
        .lines()
        .filter_map(|l| l.strip_prefix("wavectl-sql "))
        .filter_map(|n| n.trim().parse().ok())
        .next_back();
    let recording = stderr.lines().any(|l| l == "wavectl-recording");
    let mut dirty_reason = None;
    let mut schema = None;
    let mut fks = Vec::new();
    let mut marked_dirty = false;
    let mut not_committed = false;
    // (line in the SQL file when the error came from the migration's SQL, message)
    let mut error: Option<(Option<u32>, bool, String)> = None;
    let mut script_error: Option<String> = None;
    let mut other = Vec::new();
    for line in stderr.lines() {
        if line.starts_with("wavectl-sql ") || line == "wavectl-recording" {
            continue;
        }
        if let Some(r) = line.strip_prefix("wavectl-dirty ") {
            dirty_reason = Some(r.to_string());
        } else if let Some(r) = line.strip_prefix("wavectl-schema ") {
            schema = Some(r.to_string());
        } else if let Some(r) = line.strip_prefix("wavectl-fk ") {
            fks.push(r.to_string());
        } else if line == "wavectl-marked-dirty" {
            marked_dirty = true;
        } else if line == "wavectl-not-committed" {
            not_committed = true;
        } else if let Some(r) = line.strip_prefix("wavectl: ") {
            script_error.get_or_insert_with(|| r.to_string());
        } else if let Some((at, msg)) = sqlite_error(line) {
            if error.is_none() {
                let in_sql = sql_start.is_some() && !recording;
                let file_line = match (in_sql, at, sql_start) {
                    (true, Some(at), Some(start)) if at > start => u32::try_from(at - start).ok(),
                    _ => None,
                };
                error = Some((file_line, in_sql, msg));
            }
        } else if !line.starts_with("  ")
            && !line.trim().is_empty()
            && !line.starts_with("wavectl-")
        {
            other.push(line.trim().to_string());
        }
    }
    let dirty_note = if marked_dirty {
        "; the database is now marked dirty: check it by hand, then run `wavectl migrations resolve` (further migrations are refused until then)"
    } else {
        ""
    };
    let (kind, text) = if let Some((line, in_sql, msg)) = error {
        let (kind, text) = classify(
            &msg,
            line,
            in_sql,
            dirty_reason.as_deref(),
            schema.as_deref(),
            &fks,
        );
        // What became of the database, when the message does not say it yet.
        let text = match kind {
            FailureKind::Locked if !marked_dirty => format!("{text}; nothing was changed"),
            FailureKind::ForeignKeys if !marked_dirty => {
                format!("{text}; rolled back, nothing of it remains")
            }
            FailureKind::Other if marked_dirty && recording => {
                format!("its SQL ran, but recording it failed: {text}")
            }
            _ => text,
        };
        (kind, text)
    } else if let Some(msg) = script_error {
        let kind = if msg.starts_with("sqlite3 is not installed") {
            FailureKind::NoSqlite3
        } else if msg.contains("is not an SQLite database") {
            FailureKind::NotADatabase
        } else if msg.ends_with("does not exist") {
            FailureKind::Missing
        } else {
            FailureKind::Other
        };
        (kind, msg)
    } else if not_committed {
        (
            FailureKind::NotCommitted,
            "sqlite3 stopped before the end of the SQL without an error (an unterminated /* comment or quoted string at the end?); nothing was committed".to_string(),
        )
    } else if !other.is_empty() {
        (FailureKind::Other, other.join("; "))
    } else {
        (
            FailureKind::Other,
            "the script failed without a message".to_string(),
        )
    };
    Failure {
        kind,
        message: format!("{file}: {text}{dirty_note}"),
        marked_dirty,
    }
}

/// `Parse error near line 9: msg`, `Runtime error near line 2: msg (5)`,
/// `Error: near line 9: msg` (older sqlite3), `Error: msg` -> (line of the input, msg).
fn sqlite_error(line: &str) -> Option<(Option<u64>, String)> {
    // What -safe refuses: `line 2: cannot run .shell in safe mode`.
    if let Some(r) = line.strip_prefix("line ")
        && let Some((n, msg)) = r.split_once(": ")
        && msg.ends_with("in safe mode")
    {
        return Some((
            n.parse().ok(),
            format!("{msg} (migrations run in sqlite3 -safe: no shell, no files, no ATTACH)"),
        ));
    }
    let rest = ["Parse error", "Runtime error", "Error"]
        .iter()
        .find_map(|p| line.strip_prefix(p))?;
    let rest = rest.trim_start_matches(':').trim_start();
    let (at, msg) = match rest.strip_prefix("near line ") {
        Some(r) => {
            let digits: String = r.chars().take_while(char::is_ascii_digit).collect();
            let msg = r[digits.len()..].trim_start_matches(':').trim_start();
            (digits.parse().ok(), msg)
        }
        None if line.starts_with("Error") && !line.starts_with("Error:") => return None,
        None => (None, rest),
    };
    // Drop the extended result code sqlite3 appends: `... (19)`.
    let msg = match msg.rsplit_once(" (") {
        Some((m, code))
            if code
                .strip_suffix(')')
                .is_some_and(|c| !c.is_empty() && c.bytes().all(|b| b.is_ascii_digit())) =>
        {
            m
        }
        _ => msg,
    };
    Some((at, msg.to_string()))
}

fn classify(
    msg: &str,
    line: Option<u32>,
    in_sql: bool,
    dirty: Option<&str>,
    schema: Option<&str>,
    fks: &[String],
) -> (FailureKind, String) {
    let constraint = msg.strip_prefix("CHECK constraint failed: ").unwrap_or("");
    match constraint {
        "wavectl_dirty" => {
            return (
                FailureKind::Dirty,
                format!(
                    "the database is marked dirty ({}): a no-transaction migration failed or was interrupted; check the database by hand, then run `wavectl migrations resolve`",
                    dirty.unwrap_or("no reason recorded")
                ),
            );
        }
        "wavectl_newer_schema" => {
            return (
                FailureKind::NewerSchema,
                format!(
                    "the database's wavectl tables have layout {}, newer than this wavectl ({SCHEMA_VERSION}); upgrade wavectl",
                    schema.unwrap_or("?")
                ),
            );
        }
        "wavectl_already_applied" => {
            return (
                FailureKind::AlreadyApplied,
                "already recorded as applied in the database; nothing was run".into(),
            );
        }
        "wavectl_not_recorded" => {
            return (
                FailureKind::NotRecorded,
                "not recorded as applied in the database; nothing was changed".into(),
            );
        }
        "wavectl_irreversible" => {
            return (
                FailureKind::Irreversible,
                "recorded as irreversible (`-- wavectl: irreversible`), so it cannot be reverted; nothing was changed".into(),
            );
        }
        "wavectl_already_tracked" => {
            return (
                FailureKind::AlreadyTracked,
                "the database already records migrations; a baseline is only for a database wavectl has never migrated".into(),
            );
        }
        "wavectl_foreign_key_violations" => {
            let list = if fks.is_empty() {
                String::new()
            } else {
                format!(": {}", fks.join(", "))
            };
            return (
                FailureKind::ForeignKeys,
                format!("PRAGMA foreign_key_check found violations after the SQL ran{list}"),
            );
        }
        _ => {}
    }
    if msg.contains("database is locked") || msg.contains("database table is locked") {
        return (
            FailureKind::Locked,
            format!(
                "the database is locked: another connection holds its write lock (waited {} s)",
                BUSY_TIMEOUT_MS / 1000
            ),
        );
    }
    if msg.contains("file is not a database") {
        return (
            FailureKind::NotADatabase,
            format!("the database file is not an SQLite database ({msg})"),
        );
    }
    if msg.contains("cannot commit - no transaction is active")
        || msg.contains("cannot rollback - no transaction is active")
    {
        return (
            FailureKind::Sql { line: None },
            format!(
                "{msg}: the SQL ends the transaction wavectl runs it in (BEGIN/COMMIT/ROLLBACK in the file?); remove those statements, or mark the file `-- wavectl: no-transaction`"
            ),
        );
    }
    match (in_sql, line) {
        (true, Some(n)) => (
            FailureKind::Sql { line: Some(n) },
            format!("line {n}: {msg}"),
        ),
        (true, None) => (FailureKind::Sql { line: None }, msg.to_string()),
        (false, _) => (FailureKind::Other, msg.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DB: &str = "/srv/db/app.db";

    fn add_note() -> MigrationSpec {
        MigrationSpec {
            id: 4,
            name: "add_note".into(),
            up_sql: "ALTER TABLE t ADD COLUMN note TEXT;\n".into(),
            down_sql: "ALTER TABLE t DROP COLUMN note;\n".into(),
            checksum: "c4".into(),
            down_checksum: "d4".into(),
            no_transaction: false,
            irreversible: false,
        }
    }

    #[test]
    fn list_script_reads_without_creating() {
        assert_eq!(
            list_script(DB),
            r#"set -eu
DB='/srv/db/app.db'
wv_err() { m=$(printf '%s' "$2" | tr '\n' ' '); printf 'error %s %s\n' "$1" "$m"; printf 'wavectl: %s\n' "$m" >&2; exit 1; }
wv_failed() {
  case "$1" in
    *'database is locked'*) wv_err locked "database $DB is locked by another connection (waited 2 s): $1" ;;
    *'not a database'*) wv_err notadb "database $DB is not an SQLite database: $1" ;;
    *) wv_err sqlite "database $DB: $1" ;;
  esac
}
command -v sqlite3 >/dev/null 2>&1 || wv_err nosqlite3 'sqlite3 is not installed on this host (Debian package: sqlite3)'
[ -e "$DB" ] || { echo 'db missing'; exit 0; }
{ [ -f "$DB" ] && [ -r "$DB" ]; } || wv_err notadb "database $DB is not an SQLite database (not a readable regular file)"
[ ! -s "$DB" ] || [ "$(head -c 15 "$DB" | tr -d '\000')" = 'SQLite format 3' ] || wv_err notadb "database $DB is not an SQLite database (the file does not start with the SQLite header)"
t=$(sqlite3 -safe -bail -batch -readonly "$DB" 2>&1 <<'WV_SQL'
.timeout 2000
SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'wavectl_migrations';
WV_SQL
) || wv_failed "$t"
echo 'db ok'
[ -n "$t" ] || exit 0
t=$(sqlite3 -safe -bail -batch -readonly "$DB" 2>&1 <<'WV_SQL'
.timeout 2000
BEGIN;
SELECT 'schema ' || value FROM wavectl_meta WHERE key = 'schema';
SELECT 'dirty ' || replace(replace(value, char(13), ''), char(10), ' ') FROM wavectl_meta WHERE key = 'dirty';
SELECT 'applied ' || id || ' ' || generation || ' ' || applied_at || ' ' || checksum || ' ' || down_checksum || ' ' || coalesce(nullif(plan_commit, ''), '-') || ' ' || coalesce(nullif(substr(CASE WHEN irreversible THEN ',irreversible' ELSE '' END || CASE WHEN no_transaction THEN ',no-transaction' ELSE '' END || CASE WHEN baseline THEN ',baseline' ELSE '' END, 2), ''), '-') || ' ' || replace(name, char(10), ' ') FROM wavectl_migrations ORDER BY id;
COMMIT;
WV_SQL
) || wv_failed "$t"
printf '%s\n' "$t"
"#
        );
    }

    #[test]
    fn apply_script_runs_sql_and_row_in_one_transaction() {
        assert_eq!(
            apply_script(DB, &add_note(), 7, Some("abc123")),
            r#"set -eu
DB='/srv/db/app.db'
NEW=0
wv_die() { printf 'wavectl: %s\n' "$1" >&2; exit 1; }
command -v sqlite3 >/dev/null 2>&1 || wv_die 'sqlite3 is not installed on this host (Debian package: sqlite3)'
wv_check_db() {
  [ -e "$DB" ] || wv_die "database $DB does not exist"
  { [ -f "$DB" ] && [ -r "$DB" ]; } || wv_die "database $DB is not an SQLite database (not a readable regular file)"
  [ ! -s "$DB" ] || [ "$(head -c 15 "$DB" | tr -d '\000')" = 'SQLite format 3' ] || wv_die "database $DB is not an SQLite database (the file does not start with the SQLite header)"
}
wv_sql() { sqlite3 -safe -bail -batch "$DB"; }
wv_ok() {
  r=1
  m=''
  while IFS= read -r l; do
    case "$l" in
      wavectl-committed) r=0 ;;
      wavectl-*) m="$m$l
" ;;
      *) printf '%s\n' "$l" ;;
    esac
  done
  [ "$r" = 0 ] || printf '%swavectl-not-committed\n' "$m" >&2
  return "$r"
}
wv_fail() {
  if [ "$NEW" = 1 ] && [ ! -s "$DB" ]; then rm -f "$DB"; fi
  exit 1
}
wv_dirty() { echo 'wavectl-marked-dirty' >&2; exit 1; }
if [ -e "$DB" ]; then wv_check_db; else mkdir -p "$(dirname "$DB")"; NEW=1; fi
wv_sql <<'WV_SQL' | wv_ok || wv_fail
.timeout 2000
.mode off
PRAGMA foreign_keys=OFF;
BEGIN IMMEDIATE;
CREATE TABLE IF NOT EXISTS wavectl_migrations (id INTEGER PRIMARY KEY, name TEXT NOT NULL, checksum TEXT NOT NULL, down_checksum TEXT NOT NULL, down_sql TEXT NOT NULL, irreversible INTEGER NOT NULL DEFAULT 0, no_transaction INTEGER NOT NULL DEFAULT 0, baseline INTEGER NOT NULL DEFAULT 0, applied_at TEXT NOT NULL, generation INTEGER NOT NULL, plan_commit TEXT, accepted_at TEXT);
CREATE TABLE IF NOT EXISTS wavectl_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT OR IGNORE INTO wavectl_meta (key, value) VALUES ('schema', '1');
CREATE TEMP TABLE wavectl_assert (newer_schema TEXT CONSTRAINT wavectl_newer_schema CHECK (newer_schema IS NULL), dirty TEXT CONSTRAINT wavectl_dirty CHECK (dirty IS NULL), already_applied INTEGER CONSTRAINT wavectl_already_applied CHECK (already_applied IS NULL), not_recorded INTEGER CONSTRAINT wavectl_not_recorded CHECK (not_recorded IS NULL), irreversible INTEGER CONSTRAINT wavectl_irreversible CHECK (irreversible IS NULL), already_tracked INTEGER CONSTRAINT wavectl_already_tracked CHECK (already_tracked IS NULL), foreign_key_violations INTEGER CONSTRAINT wavectl_foreign_key_violations CHECK (foreign_key_violations IS NULL));
.mode list
SELECT 'wavectl-schema ' || value FROM wavectl_meta WHERE key = 'schema' AND CAST(value AS INTEGER) > 1;
.mode off
INSERT INTO temp.wavectl_assert (newer_schema) SELECT value FROM wavectl_meta WHERE key = 'schema' AND CAST(value AS INTEGER) > 1;
.mode list
SELECT 'wavectl-dirty ' || replace(replace(value, char(13), ''), char(10), ' ') FROM wavectl_meta WHERE key = 'dirty';
.mode off
INSERT INTO temp.wavectl_assert (dirty) SELECT value FROM wavectl_meta WHERE key = 'dirty';
INSERT INTO temp.wavectl_assert (already_applied) SELECT id FROM wavectl_migrations WHERE id = 4;
.mode list
.print wavectl-sql 20
.mode off
ALTER TABLE t ADD COLUMN note TEXT;
;
.mode list
.print wavectl-recording
.mode off
CREATE TEMP TABLE wavectl_fk AS SELECT "table" AS tbl, rowid AS row, parent AS parent FROM pragma_foreign_key_check LIMIT 20;
.mode list
SELECT 'wavectl-fk ' || tbl || ' rowid ' || ifnull(row, '-') || ' references ' || parent FROM temp.wavectl_fk;
.mode off
INSERT INTO temp.wavectl_assert (foreign_key_violations) SELECT count(*) FROM temp.wavectl_fk HAVING count(*) > 0;
INSERT INTO wavectl_migrations (id, name, checksum, down_checksum, down_sql, irreversible, no_transaction, baseline, applied_at, generation, plan_commit) VALUES (4, 'add_note', 'c4', 'd4', 'ALTER TABLE t DROP COLUMN note;
', 0, 0, 0, strftime('%Y-%m-%dT%H:%M:%SZ', 'now'), 7, 'abc123');
COMMIT;
PRAGMA foreign_keys=ON;
.mode list
.print wavectl-committed
WV_SQL
[ "$NEW" = 0 ] || echo 'created'
echo 'applied 4 c4'
"#
        );
    }

    #[test]
    fn apply_script_without_transaction_marks_dirty_first() {
        let m = MigrationSpec {
            no_transaction: true,
            up_sql: "-- wavectl: no-transaction\r\nVACUUM;".into(),
            ..add_note()
        };
        let expected = [
            r#"set -eu
DB='/srv/db/app.db'
"#,
            PRELUDE,
            r#"if [ -e "$DB" ]; then wv_check_db; else mkdir -p "$(dirname "$DB")"; NEW=1; fi
wv_sql <<'WV_SQL' | wv_ok || wv_fail
.timeout 2000
.mode off
BEGIN IMMEDIATE;
"#,
            TABLES,
            ASSERTS,
            GUARD_SCHEMA,
            GUARD_DIRTY,
            r#"INSERT INTO temp.wavectl_assert (already_applied) SELECT id FROM wavectl_migrations WHERE id = 4;
INSERT INTO wavectl_meta (key, value) VALUES ('dirty', '0004_add_note.up.sql (no-transaction, generation 7) started ' || strftime('%Y-%m-%dT%H:%M:%SZ', 'now') || ' and did not finish');
COMMIT;
.mode list
.print wavectl-committed
WV_SQL
wv_sql <<'WV_SQL' | wv_ok || wv_dirty
.timeout 2000
.mode off
PRAGMA foreign_keys=OFF;
"#,
            ASSERTS,
            r#".mode list
.print wavectl-sql 7
.mode off
-- wavectl: no-transaction
VACUUM;
;
.mode list
.print wavectl-recording
.mode off
"#,
            FOREIGN_KEYS,
            r#"PRAGMA foreign_keys=ON;
BEGIN IMMEDIATE;
INSERT INTO wavectl_migrations (id, name, checksum, down_checksum, down_sql, irreversible, no_transaction, baseline, applied_at, generation, plan_commit) VALUES (4, 'add_note', 'c4', 'd4', 'ALTER TABLE t DROP COLUMN note;
', 0, 1, 0, strftime('%Y-%m-%dT%H:%M:%SZ', 'now'), 7, NULL);
DELETE FROM wavectl_meta WHERE key = 'dirty';
COMMIT;
.mode list
.print wavectl-committed
WV_SQL
[ "$NEW" = 0 ] || echo 'created'
echo 'applied 4 c4'
"#,
        ]
        .concat();
        assert_eq!(apply_script(DB, &m, 7, None), expected);
    }

    #[test]
    fn revert_script_runs_the_stored_down_sql() {
        // The down SQL is copied out by the shell and fed to sqlite3 between wavectl's own
        // statements: sqlite3 -safe neither writes nor reads files.
        insta::assert_snapshot!(revert_script(DB, 4));
    }

    #[test]
    fn accept_resolve_and_baseline_scripts() {
        let expected = [
            r#"set -eu
DB='/srv/db/app.db'
"#,
            PRELUDE,
            r#"wv_check_db
wv_sql <<'WV_SQL' | wv_ok || wv_fail
.timeout 2000
.mode off
BEGIN IMMEDIATE;
"#,
            TABLES,
            ASSERTS,
            GUARD_SCHEMA,
            r#"INSERT INTO temp.wavectl_assert (not_recorded) SELECT 4 WHERE NOT EXISTS (SELECT 1 FROM wavectl_migrations WHERE id = 4);
UPDATE wavectl_migrations SET checksum = 'c5', down_checksum = 'd4', down_sql = 'ALTER TABLE t DROP COLUMN note;
', accepted_at = strftime('%Y-%m-%dT%H:%M:%SZ', 'now') WHERE id = 4;
COMMIT;
.mode list
.print wavectl-committed
WV_SQL
echo 'accepted 4 c5'
"#,
        ]
        .concat();
        let edited = MigrationSpec {
            checksum: "c5".into(),
            ..add_note()
        };
        assert_eq!(accept_script(DB, &edited), expected);
        let expected = [
            r#"set -eu
DB='/srv/db/app.db'
"#,
            PRELUDE,
            r#"wv_check_db
wv_sql <<'WV_SQL' | wv_ok || wv_fail
.timeout 2000
.mode off
BEGIN IMMEDIATE;
"#,
            TABLES,
            ASSERTS,
            GUARD_SCHEMA,
            r#"CREATE TEMP TABLE wavectl_was AS SELECT value FROM wavectl_meta WHERE key = 'dirty';
DELETE FROM wavectl_meta WHERE key = 'dirty';
COMMIT;
.mode list
SELECT 'resolved ' || coalesce((SELECT replace(replace(value, char(13), ''), char(10), ' ') FROM temp.wavectl_was), '-');
.print wavectl-committed
WV_SQL
"#,
        ]
        .concat();
        assert_eq!(resolve_script(DB), expected);
        let one = MigrationSpec {
            id: 1,
            ..add_note()
        };
        let expected = [
            r#"set -eu
DB='/srv/db/app.db'
"#,
            PRELUDE,
            r#"wv_check_db
wv_sql <<'WV_SQL' | wv_ok || wv_fail
.timeout 2000
.mode off
BEGIN IMMEDIATE;
"#,
            TABLES,
            ASSERTS,
            GUARD_SCHEMA,
            GUARD_DIRTY,
            r#"INSERT INTO temp.wavectl_assert (already_tracked) SELECT count(*) FROM wavectl_migrations HAVING count(*) > 0;
INSERT INTO wavectl_migrations (id, name, checksum, down_checksum, down_sql, irreversible, no_transaction, baseline, applied_at, generation, plan_commit) VALUES (1, 'add_note', 'c4', 'd4', 'ALTER TABLE t DROP COLUMN note;
', 0, 0, 1, strftime('%Y-%m-%dT%H:%M:%SZ', 'now'), 0, NULL);
COMMIT;
.mode list
.print wavectl-committed
WV_SQL
echo 'baselined 1 c4'
"#,
        ]
        .concat();
        assert_eq!(baseline_script(DB, 1, std::slice::from_ref(&one)), expected);
        let expected = [
            r#"set -eu
DB='/srv/db/app.db'
"#,
            PRELUDE,
            r#"wv_die 'baseline up to 0002: the plan has no migration 0002'
"#,
        ]
        .concat();
        assert_eq!(baseline_script(DB, 2, &[one]), expected);
    }

    #[test]
    fn the_layout_version_in_the_sql_is_schema_version() {
        assert!(TABLES.contains(&format!("VALUES ('schema', '{SCHEMA_VERSION}')")));
        assert!(GUARD_SCHEMA.contains(&format!("CAST(value AS INTEGER) > {SCHEMA_VERSION};")));
    }

    #[test]
    fn a_heredoc_delimiter_is_never_a_line_of_the_sql() {
        assert_eq!(
            run_sql("SELECT 1;\n", "wv_fail"),
            "wv_sql <<'WV_SQL' | wv_ok || wv_fail\nSELECT 1;\nWV_SQL\n"
        );
        assert_eq!(
            run_sql("SELECT '\nWV_SQL\nWV_SQL_1\n';\n", "wv_fail"),
            "wv_sql <<'WV_SQL_2' | wv_ok || wv_fail\nSELECT '\nWV_SQL\nWV_SQL_1\n';\nWV_SQL_2\n"
        );
        assert_eq!(sql_quote("it's"), "'it''s'");
    }

    #[test]
    fn a_listing_parses_into_applied_migrations_and_the_dirty_marker() {
        let out = "db ok\nschema 1\ndirty 0005_x.up.sql (no-transaction, generation 8) started 2026-11-23T10:00:00Z and did not finish\napplied 1 0 2026-11-01T00:00:00Z aaa ddd - baseline users\napplied 4 7 2026-11-20T12:00:00Z bbb eee c0ffee irreversible,no-transaction add note\n";
        let l = parse_list(out).unwrap();
        assert!(l.exists);
        assert_eq!(
            l.dirty.as_deref(),
            Some(
                "0005_x.up.sql (no-transaction, generation 8) started 2026-11-23T10:00:00Z and did not finish"
            )
        );
        assert_eq!(
            l.applied,
            vec![
                AppliedMigration {
                    id: 1,
                    name: "users".into(),
                    checksum: "aaa".into(),
                    applied_at: "2026-11-01T00:00:00Z".into(),
                    generation: 0,
                    irreversible: false,
                    down_checksum: "ddd".into(),
                },
                AppliedMigration {
                    id: 4,
                    name: "add note".into(),
                    checksum: "bbb".into(),
                    applied_at: "2026-11-20T12:00:00Z".into(),
                    generation: 7,
                    irreversible: true,
                    down_checksum: "eee".into(),
                },
            ]
        );
        assert_eq!(
            l.details,
            vec![
                AppliedDetail {
                    id: 1,
                    down_checksum: "ddd".into(),
                    commit: None,
                    irreversible: false,
                    no_transaction: false,
                    baseline: true
                },
                AppliedDetail {
                    id: 4,
                    down_checksum: "eee".into(),
                    commit: Some("c0ffee".into()),
                    irreversible: true,
                    no_transaction: true,
                    baseline: false
                },
            ]
        );
        assert_eq!(parse_list("db missing\n").unwrap(), Listing::default());
        assert_eq!(
            parse_list("db ok\n\n").unwrap(),
            Listing {
                exists: true,
                ..Listing::default()
            }
        );
    }

    #[test]
    fn listing_errors_are_typed() {
        assert_eq!(
            parse_list("error notadb database /d is not an SQLite database (x)\n").unwrap_err(),
            SqliteError::NotADatabase("database /d is not an SQLite database (x)".into())
        );
        assert!(matches!(
            parse_list("error locked database /d is locked\n").unwrap_err(),
            SqliteError::Locked(_)
        ));
        assert!(matches!(
            parse_list("error nosqlite3 sqlite3 is not installed\n").unwrap_err(),
            SqliteError::NoSqlite3(_)
        ));
        assert!(matches!(
            parse_list("db ok\nerror sqlite database /d: disk I/O error\n").unwrap_err(),
            SqliteError::Sqlite(_)
        ));
        assert_eq!(
            parse_list("db ok\nschema 2\n").unwrap_err(),
            SqliteError::NewerSchema { found: 2 }
        );
        assert!(matches!(
            parse_list("").unwrap_err(),
            SqliteError::Malformed(_)
        ));
        assert!(matches!(
            parse_list("db ok\napplied x\n").unwrap_err(),
            SqliteError::Malformed(_)
        ));
    }

    #[test]
    fn sqlite_error_lines_of_old_and_new_versions() {
        assert_eq!(
            sqlite_error("Parse error near line 9: near \"CREAT\": syntax error"),
            Some((Some(9), "near \"CREAT\": syntax error".into()))
        );
        assert_eq!(
            sqlite_error("Runtime error near line 2: UNIQUE constraint failed: a.x (19)"),
            Some((Some(2), "UNIQUE constraint failed: a.x".into()))
        );
        assert_eq!(
            sqlite_error("Error: near line 3: no such table: t"),
            Some((Some(3), "no such table: t".into()))
        );
        assert_eq!(
            sqlite_error("Error: unable to open database \"x\": unable to open database file"),
            Some((
                None,
                "unable to open database \"x\": unable to open database file".into()
            ))
        );
        assert_eq!(sqlite_error("  CREAT TABLE c(z);"), None);
        assert_eq!(sqlite_error("Errors are fine"), None);
        assert_eq!(
            sqlite_error("line 12: cannot run .shell in safe mode"),
            Some((
                Some(12),
                "cannot run .shell in safe mode (migrations run in sqlite3 -safe: no shell, no files, no ATTACH)".into()
            ))
        );
    }

    #[test]
    fn failures_name_the_file_and_its_line() {
        // Markers reach stderr through a pipe: their order against the error does not matter.
        let stderr = "Parse error near line 25: near \"CREAT\": syntax error\n  CREAT TABLE b (y);\n  ^--- error here\nwavectl-sql 20\nwavectl-not-committed\n";
        let f = parse_failure_detail(stderr, "0004_bad.up.sql");
        assert_eq!(
            f.message,
            "0004_bad.up.sql: line 5: near \"CREAT\": syntax error"
        );
        assert_eq!(f.kind, FailureKind::Sql { line: Some(5) });
        assert!(!f.marked_dirty);
        // An error before the SQL (no marker) or after it is not given a line of the file.
        let f = parse_failure_detail(
            "Runtime error near line 4: database is locked (5)\nwavectl-not-committed\n",
            "0004_x.up.sql",
        );
        assert_eq!(f.kind, FailureKind::Locked);
        assert_eq!(
            f.message,
            "0004_x.up.sql: the database is locked: another connection holds its write lock (waited 2 s); nothing was changed"
        );
        let f = parse_failure_detail(
            "wavectl-sql 20\nwavectl-recording\nRuntime error near line 40: cannot commit - no transaction is active\n",
            "0004_x.up.sql",
        );
        assert_eq!(f.kind, FailureKind::Sql { line: None });
        assert!(f.message.starts_with("0004_x.up.sql: cannot commit - no transaction is active: the SQL ends the transaction"), "{}", f.message);
        let f = parse_failure_detail(
            "wavectl-sql 20\nwavectl-recording\nRuntime error near line 40: database or disk is full (13)\n",
            "0004_x.up.sql",
        );
        assert_eq!(
            (f.kind, f.message.as_str()),
            (
                FailureKind::Other,
                "0004_x.up.sql: database or disk is full"
            )
        );
    }

    #[test]
    fn failures_of_the_checks_say_what_to_do() {
        let f = parse_failure_detail(
            "wavectl-dirty 0003_v.up.sql (no-transaction, generation 2) started T and did not finish\nRuntime error near line 16: CHECK constraint failed: wavectl_dirty (19)\n",
            "0004_x.up.sql",
        );
        assert_eq!(f.kind, FailureKind::Dirty);
        assert_eq!(
            f.message,
            "0004_x.up.sql: the database is marked dirty (0003_v.up.sql (no-transaction, generation 2) started T and did not finish): a no-transaction migration failed or was interrupted; check the database by hand, then run `wavectl migrations resolve`"
        );
        let f = parse_failure_detail(
            "wavectl-schema 2\nRuntime error near line 12: CHECK constraint failed: wavectl_newer_schema (19)\n",
            "db",
        );
        assert_eq!(
            f.message,
            "db: the database's wavectl tables have layout 2, newer than this wavectl (1); upgrade wavectl"
        );
        let f = parse_failure_detail(
            "Runtime error near line 17: CHECK constraint failed: wavectl_already_applied (19)\n",
            "0004_x.up.sql",
        );
        assert_eq!(f.kind, FailureKind::AlreadyApplied);
        // A no-transaction migration: what ran stays, and the database is dirty.
        let f = parse_failure_detail(
            "wavectl-sql 7\nwavectl-recording\nwavectl-fk orders rowid 4 references users\nRuntime error near line 20: CHECK constraint failed: wavectl_foreign_key_violations (19)\nwavectl-not-committed\nwavectl-marked-dirty\n",
            "0005_nt.up.sql",
        );
        assert_eq!((f.kind, f.marked_dirty), (FailureKind::ForeignKeys, true));
        assert_eq!(
            f.message,
            "0005_nt.up.sql: PRAGMA foreign_key_check found violations after the SQL ran: orders rowid 4 references users; the database is now marked dirty: check it by hand, then run `wavectl migrations resolve` (further migrations are refused until then)"
        );
        let f = parse_failure_detail(
            "wavectl-sql 7\nwavectl-recording\nRuntime error near line 22: disk I/O error (10)\nwavectl-marked-dirty\n",
            "0005_nt.up.sql",
        );
        assert!(f.message.starts_with("0005_nt.up.sql: its SQL ran, but recording it failed: disk I/O error; the database is now marked dirty"), "{}", f.message);
    }

    #[test]
    fn failures_of_the_script_itself() {
        let f = parse_failure_detail(
            "wavectl: sqlite3 is not installed on this host (Debian package: sqlite3)\n",
            "0001_a.up.sql",
        );
        assert_eq!(f.kind, FailureKind::NoSqlite3);
        assert_eq!(
            f.message,
            "0001_a.up.sql: sqlite3 is not installed on this host (Debian package: sqlite3)"
        );
        let f = parse_failure_detail("wavectl: database /d does not exist\n", "resolve");
        assert_eq!(
            (f.kind, f.message.as_str()),
            (FailureKind::Missing, "resolve: database /d does not exist")
        );
        let f = parse_failure_detail("wavectl-sql 20\nwavectl-not-committed\n", "0001_a.up.sql");
        assert_eq!(f.kind, FailureKind::NotCommitted);
        let f = parse_failure_detail(
            "Parse error near line 3: file is not a database (26)\n",
            "0001_a.up.sql",
        );
        assert_eq!(
            f.message,
            "0001_a.up.sql: the database file is not an SQLite database (file is not a database)"
        );
        assert_eq!(
            parse_failure("", "x").as_str(),
            "x: the script failed without a message"
        );
    }
}
