//! SQLite migrations through `wavectl apply` on real lab machines: the database lives under
//! mainpc's wavectl root and is inspected here with the `sqlite3` program directly (the tests
//! run as root on the same machine). Each test has its own lab network (127.0.6x).

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::Instant;

use sha2::{Digest, Sha256};

use crate::common::{Repo, Run};
use crate::lab::Lab;

/// The migration set `app` on mainpc, and one long-running process so the host has a
/// supervisord. `extra` is appended (more processes).
fn plan(extra: &str) -> String {
    format!(
        r#"version = 1
name = "migrations-lab"

[[migration]]
name = "app"
host = "mainpc"
database = "app.db"
dir = "migrations/app"

[[process]]
name = "keeper"
host = "mainpc"
command = ["sleep", "infinity"]
{extra}"#
    )
}

/// Writes `migrations/app/<stem>.up.sql` and `<stem>.down.sql`.
fn migration(repo: Repo, stem: &str, up: &str, down: &str) -> Repo {
    repo.file(&format!("migrations/app/{stem}.up.sql"), up)
        .file(&format!("migrations/app/{stem}.down.sql"), down)
}

/// Deletes a migration's two files from the repo's work tree.
fn remove_migration(repo: Repo, stem: &str) -> Repo {
    for end in ["up", "down"] {
        let path = repo.path().join(format!("migrations/app/{stem}.{end}.sql"));
        std::fs::remove_file(&path).unwrap_or_else(|e| panic!("rm {}: {e}", path.display()));
    }
    repo
}

fn db(lab: &Lab) -> PathBuf {
    lab.root("mainpc").join("data/app.db")
}

/// Runs `sqlite3 -readonly` on the database with `input` on stdin; its stdout.
fn sqlite(db: &Path, input: &str) -> String {
    crate::common::sqlite3(db, &["-readonly"], input)
}

/// `.schema` of the whole database (wavectl's tables included).
fn schema(db: &Path) -> String {
    sqlite(db, ".schema\n")
}

/// The schema of everything but wavectl's own tables, by name; empty when there is no
/// database file.
fn user_schema(db: &Path) -> String {
    if !db.exists() {
        return String::new();
    }
    sqlite(
        db,
        "SELECT sql || ';' FROM sqlite_master WHERE sql IS NOT NULL AND name NOT LIKE 'wavectl\\_%' ESCAPE '\\' ORDER BY name;\n",
    )
}

/// The ids in the tracking table; none when there is no database or no tracking table.
fn tracked(db: &Path) -> Vec<u32> {
    if !db.exists()
        || sqlite(
            db,
            "SELECT count(*) FROM sqlite_master WHERE name = 'wavectl_migrations';\n",
        )
        .trim()
            == "0"
    {
        return Vec::new();
    }
    sqlite(db, "SELECT id FROM wavectl_migrations ORDER BY id;\n")
        .lines()
        .map(|l| l.parse().expect("id"))
        .collect()
}

fn sha256(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

fn show(run: &Run) -> String {
    format!(
        "exit {}\nstdout:\n{}\nstderr:\n{}",
        run.code, run.stdout, run.stderr
    )
}

fn apply(repo: &Repo) -> Run {
    let run = repo.run(&["apply", "--yes", "plans/p.toml"]);
    assert_eq!(run.code, 0, "apply failed:\n{}", show(&run));
    run
}

fn diff(repo: &Repo) -> Run {
    repo.run(&["diff", "plans/p.toml"])
}

/// The migration lines of `diff`'s human output, trimmed.
fn migration_lines(run: &Run) -> Vec<String> {
    run.stdout
        .lines()
        .map(str::trim)
        .filter(|l| l.contains("migration app "))
        .map(str::to_string)
        .collect()
}

/// `migrations status` lines without the `(applied_at, generation)` part.
fn status(repo: &Repo) -> Vec<String> {
    let run = repo.run(&["migrations", "status", "plans/p.toml"]);
    assert_eq!(run.code, 0, "{}", show(&run));
    run.stdout
        .lines()
        .map(|l| l.split(" (").next().unwrap_or(l).to_string())
        .collect()
}

/// File names in a directory, sorted (none when it does not exist).
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn head_commit(repo: &Repo) -> String {
    let out = Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(repo.path())
        .output()
        .expect("git rev-parse");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

const USERS_UP: &str = "\
CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
INSERT INTO users (name) VALUES ('ada'), ('brian'), ('cleo');
";
const USERS_DOWN: &str = "DROP TABLE users;\n";
const NOTES_UP: &str = "\
CREATE TABLE notes (
  id INTEGER PRIMARY KEY,
  user_id INTEGER NOT NULL REFERENCES users(id),
  body TEXT NOT NULL
);
INSERT INTO notes (user_id, body) VALUES (1, 'first'), (1, 'second'), (3, 'third');
";
const NOTES_DOWN: &str = "DROP TABLE notes;\n";
const TAGS_UP: &str = "CREATE TABLE tags (id INTEGER PRIMARY KEY, label TEXT NOT NULL);\n";
const TAGS_DOWN: &str = "DROP TABLE tags;\n";

fn three(repo: Repo) -> Repo {
    let repo = migration(repo, "0001_users", USERS_UP, USERS_DOWN);
    let repo = migration(repo, "0002_notes", NOTES_UP, NOTES_DOWN);
    migration(repo, "0003_tags", TAGS_UP, TAGS_DOWN)
}

#[test]
fn a_migration_gone_from_the_plan_is_reverted_to_the_exact_schema_before_it() {
    let lab = Lab::up(60, 2);
    let db = db(&lab);
    let repo = three(Repo::with_plan(&plan("")))
        .commit("three migrations")
        .with_inventory(lab.inventory());
    let first = head_commit(&repo);
    assert_eq!(
        migration_lines(&diff(&repo)),
        [
            "+ migration app 0001_users: apply",
            "+ migration app 0002_notes: apply",
            "+ migration app 0003_tags: apply"
        ]
    );
    apply(&repo);
    assert_eq!(tracked(&db), [1, 2, 3]);
    assert_eq!(
        sqlite(
            &db,
            "SELECT id, name, generation, plan_commit FROM wavectl_migrations ORDER BY id;\n"
        ),
        format!("1|users|1|{first}\n2|notes|1|{first}\n3|tags|1|{first}\n")
    );
    assert_eq!(
        user_schema(&db),
        "CREATE TABLE notes (\n  id INTEGER PRIMARY KEY,\n  user_id INTEGER NOT NULL REFERENCES users(id),\n  body TEXT NOT NULL\n);\nCREATE TABLE tags (id INTEGER PRIMARY KEY, label TEXT NOT NULL);\nCREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);\n"
    );
    let schema3 = schema(&db);
    let users3 = sqlite(&db, "SELECT * FROM users ORDER BY id;\n");
    let notes3 = sqlite(&db, "SELECT * FROM notes ORDER BY id;\n");
    assert_eq!(users3, "1|ada\n2|brian\n3|cleo\n");
    assert_eq!(notes3, "1|1|first\n2|1|second\n3|3|third\n");

    let repo = migration(
        repo,
        "0004_note_color",
        "ALTER TABLE notes ADD COLUMN color TEXT;\nCREATE INDEX notes_color ON notes(color);\nUPDATE notes SET color = 'red' WHERE id = 2;\n",
        "DROP INDEX notes_color;\nALTER TABLE notes DROP COLUMN color;\n",
    )
    .commit("note colours");
    let d = diff(&repo);
    assert_eq!(d.code, 2, "{}", show(&d));
    assert_eq!(
        migration_lines(&d),
        ["+ migration app 0004_note_color: apply"]
    );
    apply(&repo);
    assert_eq!(tracked(&db), [1, 2, 3, 4]);
    assert_eq!(
        sqlite(&db, "SELECT * FROM notes ORDER BY id;\n"),
        "1|1|first|\n2|1|second|red\n3|3|third|\n"
    );
    assert!(
        schema(&db).contains("CREATE INDEX notes_color ON notes(color);"),
        "{}",
        schema(&db)
    );

    let repo = remove_migration(repo, "0004_note_color").commit("no colours after all");
    let d = diff(&repo);
    assert_eq!(d.code, 2, "{}", show(&d));
    assert_eq!(
        migration_lines(&d),
        ["- migration app 0004_note_color: revert (down SQL recorded in the database)"]
    );
    apply(&repo);
    assert_eq!(schema(&db), schema3, "schema after the revert");
    assert_eq!(sqlite(&db, "SELECT * FROM users ORDER BY id;\n"), users3);
    assert_eq!(sqlite(&db, "SELECT * FROM notes ORDER BY id;\n"), notes3);
    assert_eq!(tracked(&db), [1, 2, 3]);
    assert_eq!(
        status(&repo),
        [
            "mainpc app 0001_users: applied",
            "mainpc app 0002_notes: applied",
            "mainpc app 0003_tags: applied"
        ]
    );
    let d = diff(&repo);
    assert_eq!(d.code, 0, "in sync after the revert:\n{}", show(&d));
}

const LETTERS_BAD: &str = "\
-- three tables, the third misspelt
CREATE TABLE a (x INTEGER);
CREATE TABLE b (y INTEGER);
CREAT TABLE c (z INTEGER);
";
const LETTERS_GOOD: &str = "\
-- three tables
CREATE TABLE a (x INTEGER);
CREATE TABLE b (y INTEGER);
CREATE TABLE c (z INTEGER);
";
const LETTERS_DOWN: &str = "DROP TABLE c;\nDROP TABLE b;\nDROP TABLE a;\n";

#[test]
fn an_sql_error_undoes_the_migrations_the_same_apply_ran_before_it() {
    let lab = Lab::up(61, 2);
    let db = db(&lab);
    let gens = lab.root("mainpc").join("generations");
    // A fresh database: 0001 runs, 0002 fails at its third statement (line 4 of its file).
    let repo = migration(
        Repo::with_plan(&plan("")),
        "0001_users",
        USERS_UP,
        USERS_DOWN,
    );
    let repo = migration(repo, "0002_letters", LETTERS_BAD, LETTERS_DOWN)
        .commit("users and a broken migration")
        .with_inventory(lab.inventory());
    let run = repo.run(&["apply", "--yes", "plans/p.toml"]);
    // The database first (the file itself may stay, holding wavectl's empty tables).
    assert_eq!(
        user_schema(&db),
        "",
        "nothing of 0001 or 0002 is left:\n{}",
        show(&run)
    );
    assert_eq!(tracked(&db), Vec::<u32>::new(), "{}", show(&run));
    assert!(
        run.stderr.contains(
            "step `apply migration app 0002_letters.up.sql` failed: 0002_letters.up.sql: line 4: near \"CREAT\": syntax error"
        ),
        "{}",
        show(&run)
    );
    // Undoing this first apply (files, programs, 0001) succeeds: exit 1, not 5.
    assert_eq!(run.code, 1, "{}", show(&run));
    assert_eq!(
        listing(&gens),
        Vec::<String>::new(),
        "no generation recorded"
    );
    assert!(!lab.root("mainpc").join("lock").exists());
    assert_eq!(
        migration_lines(&diff(&repo)),
        [
            "+ migration app 0001_users: apply",
            "+ migration app 0002_letters: apply"
        ]
    );
    // ... and the message says what was undone.
    assert!(
        run.stderr.contains(
            "0002_letters.up.sql: line 4: near \"CREAT\": syntax error; undone: reverted app 0001_users on mainpc"
        ),
        "{}",
        show(&run)
    );
}

#[test]
fn an_sql_error_rolls_its_migration_back_to_the_exact_state_before_it() {
    let lab = Lab::up(67, 2);
    let db = db(&lab);
    let gens = lab.root("mainpc").join("generations");
    let repo = migration(
        Repo::with_plan(&plan("")),
        "0001_users",
        USERS_UP,
        USERS_DOWN,
    )
    .commit("users")
    .with_inventory(lab.inventory());
    // 0001 applied by an earlier apply, then the broken 0002 alone: its transaction is
    // rolled back, 0001 stays.
    apply(&repo);
    let before = schema(&db);
    let rows = sqlite(
        &db,
        "SELECT id, name, checksum, generation FROM wavectl_migrations;\nSELECT * FROM users;\n",
    );
    assert_eq!(tracked(&db), [1]);
    let repo =
        migration(repo, "0002_letters", LETTERS_BAD, LETTERS_DOWN).commit("a broken migration");
    let run = repo.run(&["apply", "--yes", "plans/p.toml"]);
    assert_eq!(run.code, 1, "{}", show(&run));
    assert!(
        run.stderr.contains(
            "step `apply migration app 0002_letters.up.sql` failed: 0002_letters.up.sql: line 4: near \"CREAT\": syntax error"
        ),
        "{}",
        show(&run)
    );
    assert!(
        !run.stderr.contains("undone:"),
        "this apply ran no migration to undo:\n{}",
        show(&run)
    );
    assert_eq!(schema(&db), before, "tables a and b were rolled back");
    assert_eq!(
        sqlite(
            &db,
            "SELECT id, name, checksum, generation FROM wavectl_migrations;\nSELECT * FROM users;\n"
        ),
        rows
    );
    assert_eq!(listing(&gens), ["1.json"]);

    // Fixed: it applies.
    let repo = migration(repo, "0002_letters", LETTERS_GOOD, LETTERS_DOWN).commit("fixed");
    apply(&repo);
    assert_eq!(tracked(&db), [1, 2]);
    assert_eq!(
        sqlite(
            &db,
            "SELECT name FROM sqlite_master WHERE name IN ('a', 'b', 'c') ORDER BY name;\n"
        ),
        "a\nb\nc\n"
    );
}

#[test]
fn an_edited_applied_migration_stops_apply_before_anything_runs_until_accepted() {
    let lab = Lab::up(62, 2);
    let db = db(&lab);
    let root = lab.root("mainpc");
    let repo = migration(
        Repo::with_plan(&plan("")),
        "0001_users",
        USERS_UP,
        USERS_DOWN,
    );
    let repo = migration(repo, "0002_notes", NOTES_UP, NOTES_DOWN)
        .commit("two migrations")
        .with_inventory(lab.inventory());
    apply(&repo);
    let old_checksum = sha256(USERS_UP);
    assert_eq!(
        sqlite(
            &db,
            "SELECT checksum FROM wavectl_migrations WHERE id = 1;\n"
        )
        .trim(),
        old_checksum
    );
    let schema_before = schema(&db);
    let journal_before = std::fs::read(root.join("journal.jsonl")).expect("journal");
    let gens_before = listing(&root.join("generations"));
    assert_eq!(gens_before, ["1.json"]);

    // 0001's up SQL edited, and a new migration pending in the same commit.
    let edited = format!("{USERS_UP}CREATE INDEX users_name ON users(name);\n");
    let repo = migration(repo, "0001_users", &edited, USERS_DOWN);
    let repo = migration(repo, "0003_tags", TAGS_UP, TAGS_DOWN).commit("edit 0001, add 0003");
    let drift = "database app: applied migration 0001_users.up.sql has changed since it ran (checksum drift)";
    let d = diff(&repo);
    assert_eq!(d.code, 1, "{}", show(&d));
    assert!(d.stdout.contains(drift), "{}", show(&d));
    assert_eq!(
        status(&repo),
        [
            "mainpc app 0001_users: drifted",
            "mainpc app 0002_notes: applied",
            "mainpc app 0003_tags: pending"
        ]
    );
    let run = repo.run(&["apply", "--yes", "plans/p.toml"]);
    assert_eq!(run.code, 1, "{}", show(&run));
    assert!(run.stdout.contains(drift), "{}", show(&run));
    assert!(
        run.stderr
            .contains("problems above stop the apply before anything runs"),
        "{}",
        show(&run)
    );
    assert_eq!(listing(&root.join("generations")), gens_before);
    assert_eq!(
        std::fs::read(root.join("journal.jsonl")).expect("journal"),
        journal_before,
        "nothing ran, nothing journaled"
    );
    assert_eq!(schema(&db), schema_before, "0003 did not run");
    assert_eq!(tracked(&db), [1, 2]);
    assert!(!root.join("lock").exists());

    // The operator accepts the edit: only the checksum changes, nothing runs.
    let new_checksum = sha256(&edited);
    let run = repo.run(&["migrations", "accept", "plans/p.toml", "--db", "app", "1"]);
    assert_eq!(run.code, 0, "{}", show(&run));
    assert_eq!(run.stdout, format!("accepted 1 {new_checksum}\n"));
    assert_eq!(
        sqlite(
            &db,
            "SELECT checksum, accepted_at IS NOT NULL FROM wavectl_migrations ORDER BY id;\n"
        ),
        format!("{new_checksum}|1\n{}|0\n", sha256(NOTES_UP))
    );
    assert_eq!(schema(&db), schema_before, "accept runs no SQL");
    let journal = std::fs::read_to_string(root.join("journal.jsonl")).expect("journal");
    let added: Vec<serde_json::Value> = journal[journal_before.len()..]
        .lines()
        .map(|l| serde_json::from_str(l).expect("journal line"))
        .collect();
    assert_eq!(added.len(), 1, "{journal}");
    assert_eq!(added[0]["step"], "migrations accept 0001 app");
    assert_eq!(added[0]["result"], "ok");

    let d = diff(&repo);
    assert_eq!(d.code, 2, "{}", show(&d));
    assert!(!d.stdout.contains("checksum drift"), "{}", show(&d));
    assert_eq!(migration_lines(&d), ["+ migration app 0003_tags: apply"]);
    apply(&repo);
    assert_eq!(tracked(&db), [1, 2, 3]);
    let d = diff(&repo);
    assert_eq!(d.code, 0, "{}", show(&d));
}

const EVENTS_UP: &str = "\
CREATE TABLE events (id INTEGER PRIMARY KEY, payload TEXT NOT NULL);
INSERT INTO events (id, payload)
  WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100000)
  SELECT i, 'payload-' || i FROM n;
";
const TAG_UP: &str = "\
ALTER TABLE events ADD COLUMN tag TEXT NOT NULL DEFAULT 'none';
UPDATE events SET tag = 'even' WHERE id % 2 = 0;
";
/// The table rebuilt without the column.
const TAG_DOWN: &str = "\
CREATE TABLE events_old (id INTEGER PRIMARY KEY, payload TEXT NOT NULL);
INSERT INTO events_old (id, payload) SELECT id, payload FROM events ORDER BY id;
DROP TABLE events;
ALTER TABLE events_old RENAME TO events;
";
const CHECKSUM: &str = "SELECT count(*), sum(id), total(length(payload)), sum(unicode(substr(payload, -1))) FROM events;\n";

#[test]
fn a_hundred_thousand_rows_survive_adding_and_reverting_a_column() {
    let lab = Lab::up(63, 2);
    let db = db(&lab);
    let repo = migration(
        Repo::with_plan(&plan("")),
        "0001_events",
        EVENTS_UP,
        "DROP TABLE events;\n",
    )
    .commit("events")
    .with_inventory(lab.inventory());
    let t = Instant::now();
    apply(&repo);
    eprintln!("apply of 100 000 rows: {:?}", t.elapsed());
    // Lengths of 'payload-N': 9 * 9 + 90 * 10 + 900 * 11 + 9000 * 12 + 90000 * 13 + 14; the
    // last digits sum to 10 000 * (48 + ... + 57).
    let before = sqlite(&db, CHECKSUM);
    assert_eq!(before, "100000|5000050000|1288895.0|5250000\n");
    let columns = "SELECT group_concat(name, ',') FROM pragma_table_info('events');\n";
    assert_eq!(sqlite(&db, columns), "id,payload\n");

    let repo = migration(repo, "0002_events_tag", TAG_UP, TAG_DOWN).commit("tag");
    let t = Instant::now();
    apply(&repo);
    eprintln!("add column over 100 000 rows: {:?}", t.elapsed());
    assert_eq!(sqlite(&db, CHECKSUM), before);
    assert_eq!(sqlite(&db, columns), "id,payload,tag\n");
    assert_eq!(
        sqlite(
            &db,
            "SELECT tag, count(*) FROM events GROUP BY tag ORDER BY tag;\n"
        ),
        "even|50000\nnone|50000\n"
    );
    assert_eq!(tracked(&db), [1, 2]);

    let repo = remove_migration(repo, "0002_events_tag").commit("no tag");
    assert_eq!(
        migration_lines(&diff(&repo)),
        ["- migration app 0002_events_tag: revert (down SQL recorded in the database)"]
    );
    let t = Instant::now();
    apply(&repo);
    eprintln!(
        "revert (table rebuild) over 100 000 rows: {:?}",
        t.elapsed()
    );
    assert_eq!(sqlite(&db, CHECKSUM), before);
    assert_eq!(sqlite(&db, columns), "id,payload\n");
    assert_eq!(
        sqlite(&db, "PRAGMA integrity_check;\n"),
        "ok\n",
        "the rebuilt table is sound"
    );
    assert_eq!(tracked(&db), [1]);
    assert_eq!(diff(&repo).code, 0);
}

#[test]
fn a_failure_after_the_migrations_leaves_the_database_as_before_the_apply() {
    let lab = Lab::up(64, 2);
    let db = db(&lab);
    let repo = migration(
        Repo::with_plan(&plan("")),
        "0001_users",
        USERS_UP,
        USERS_DOWN,
    )
    .commit("users")
    .with_inventory(lab.inventory());
    apply(&repo);
    let before = schema(&db);
    let rows_query = "SELECT id, name, checksum, down_sql, generation, plan_commit FROM wavectl_migrations;\nSELECT * FROM wavectl_meta;\nSELECT * FROM users;\n";
    let rows = sqlite(&db, rows_query);

    // 0002 runs, then a process that exits at once never counts as running.
    let broken = "\n[[process]]\nname = \"broken\"\nhost = \"mainpc\"\ncommand = [\"/bin/false\"]\nmin_uptime = \"1s\"\n";
    let repo = migration(repo, "0002_notes", NOTES_UP, NOTES_DOWN)
        .file("plans/p.toml", &plan(broken))
        .commit("notes and a broken process");
    let run = repo.run(&["apply", "--yes", "plans/p.toml"]);
    // The database first: exactly as before this apply.
    assert_eq!(schema(&db), before, "{}", show(&run));
    assert_eq!(sqlite(&db, rows_query), rows, "{}", show(&run));
    assert_eq!(tracked(&db), [1]);
    // 0002 did run in this apply (journaled) before it was reverted.
    let journal =
        std::fs::read_to_string(lab.root("mainpc").join("journal.jsonl")).expect("journal");
    let applied_0002 = journal
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .any(|l| {
            l["generation"] == 2
                && l["step"] == "apply migration app 0002_notes.up.sql"
                && l["result"] == "ok"
        });
    assert!(applied_0002, "{journal}");
    assert!(
        run.stderr
            .contains("step `wait for processes to run` failed: "),
        "{}",
        show(&run)
    );
    assert_eq!(run.code, 1, "{}", show(&run));
    assert_eq!(listing(&lab.root("mainpc").join("generations")), ["1.json"]);
    assert_eq!(
        migration_lines(&diff(&repo)),
        ["+ migration app 0002_notes: apply"]
    );
    assert!(
        run.stderr
            .contains("; undone: reverted app 0002_notes on mainpc"),
        "the message says what was undone:\n{}",
        show(&run)
    );
}

/// A `sqlite3` holding a lock on a database until dropped (killed by its PID).
struct Holder {
    child: Child,
    /// Kept open: sqlite3 waits for more input, inside its transaction.
    _stdin: ChildStdin,
}

impl Holder {
    /// `begin` is `BEGIN IMMEDIATE` (other writers wait) or `BEGIN EXCLUSIVE` (readers too).
    fn start(db: &Path, begin: &str) -> Holder {
        let mut child = Command::new("sqlite3")
            .arg("-batch")
            .arg(db)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("sqlite3");
        let mut stdin = child.stdin.take().expect("stdin");
        writeln!(stdin, "{begin};\nSELECT 'holding';").expect("write");
        stdin.flush().expect("flush");
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().expect("stdout"))
            .read_line(&mut line)
            .expect("read");
        let holder = Holder {
            child,
            _stdin: stdin,
        };
        assert_eq!(line, "holding\n", "the lock holder did not start");
        holder
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

#[test]
fn a_database_locked_by_another_connection_fails_the_apply_until_released() {
    let lab = Lab::up(65, 2);
    let db = db(&lab);
    let repo = migration(
        Repo::with_plan(&plan("")),
        "0001_users",
        USERS_UP,
        USERS_DOWN,
    )
    .commit("users")
    .with_inventory(lab.inventory());
    apply(&repo);
    let before = schema(&db);
    let repo = migration(repo, "0002_notes", NOTES_UP, NOTES_DOWN).commit("notes");

    let holder = Holder::start(&db, "BEGIN IMMEDIATE");
    let run = repo.run(&["apply", "--yes", "plans/p.toml"]);
    assert_eq!(run.code, 1, "{}", show(&run));
    assert!(
        run.stderr.contains(
            "step `apply migration app 0002_notes.up.sql` failed: 0002_notes.up.sql: the database is locked: another connection holds its write lock (waited 2 s); nothing was changed"
        ),
        "{}",
        show(&run)
    );
    drop(holder);
    assert_eq!(schema(&db), before);
    assert_eq!(tracked(&db), [1]);

    // A lock that keeps readers out too stops the observation: diff says which database.
    let holder = Holder::start(&db, "BEGIN EXCLUSIVE");
    let d = diff(&repo);
    assert_eq!(d.code, 1, "{}", show(&d));
    let text = format!("{}{}", d.stdout, d.stderr);
    assert!(
        text.contains(&format!(
            "database app: database {} is locked by another connection (waited 2 s)",
            db.display()
        )),
        "{}",
        show(&d)
    );
    drop(holder);

    apply(&repo);
    assert_eq!(tracked(&db), [1, 2]);
}

#[test]
fn fifty_migrations_apply_and_revert_and_report_their_durations() {
    let lab = Lab::up(66, 2);
    let db = db(&lab);
    // First the keeper alone, the migration directory empty (git does not hold an empty
    // directory; the work tree does), so the timed applies run migrations only.
    let repo = Repo::with_plan(&plan(""));
    std::fs::create_dir_all(repo.path().join("migrations/app")).expect("mkdir");
    let mut repo = repo.commit("keeper").with_inventory(lab.inventory());
    apply(&repo);
    for i in 1..=50 {
        repo = migration(
            repo,
            &format!("{i:04}_t{i}"),
            &format!(
                "CREATE TABLE t{i} (id INTEGER PRIMARY KEY, v TEXT);\nINSERT INTO t{i} (v) VALUES ('row {i}');\n"
            ),
            &format!("DROP TABLE t{i};\n"),
        );
    }
    let mut repo = repo.commit("fifty migrations");
    let t = Instant::now();
    apply(&repo);
    let forward = t.elapsed();
    // For comparison: an apply with nothing to do (observe only).
    let t = Instant::now();
    let noop = apply(&repo);
    let floor = t.elapsed();
    assert!(
        noop.stdout.contains("in sync: nothing to do"),
        "{}",
        show(&noop)
    );
    assert_eq!(tracked(&db), (1..=50).collect::<Vec<u32>>());
    assert_eq!(
        sqlite(
            &db,
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name GLOB 't[0-9]*';\n"
        ),
        "50\n"
    );
    for i in 1..=50 {
        repo = remove_migration(repo, &format!("{i:04}_t{i}"));
    }
    let repo = repo.commit("no migrations");
    assert!(repo.path().join("migrations/app").is_dir());
    let d = diff(&repo);
    assert_eq!(migration_lines(&d).len(), 50, "{}", show(&d));
    let t = Instant::now();
    apply(&repo);
    let revert = t.elapsed();
    assert_eq!(tracked(&db), Vec::<u32>::new());
    assert_eq!(user_schema(&db), "");
    eprintln!(
        "50 migrations through wavectl on the lab: apply {forward:?}, revert {revert:?} (an apply with nothing to do: {floor:?})"
    );
}

#[test]
fn an_edited_down_file_is_named_and_accepting_it_records_the_down_sql_a_revert_runs() {
    let lab = Lab::up(68, 2);
    let db = db(&lab);
    let repo = three(Repo::with_plan(&plan("")))
        .commit("three")
        .with_inventory(lab.inventory());
    apply(&repo);
    // A reviewed fix of 0003's down SQL: it now leaves a marker table behind.
    let fixed = "DROP TABLE tags;\nCREATE TABLE tags_removed (at TEXT);\n";
    let repo = migration(repo, "0003_tags", TAGS_UP, fixed).commit("fix 0003 down");
    let d = diff(&repo);
    assert_eq!(d.code, 1, "{}", show(&d));
    assert!(
        d.stdout
            .contains("the down file 0003_tags.down.sql has changed since the migration ran"),
        "{}",
        show(&d)
    );
    let accept = repo.run(&["migrations", "accept", "plans/p.toml", "--db", "app", "3"]);
    assert_eq!(accept.code, 0, "{}", show(&accept));
    assert_eq!(diff(&repo).code, 0);
    // Reverting 0003 through a plan without it runs the accepted down SQL.
    let repo = remove_migration(repo, "0003_tags").commit("drop 0003");
    apply(&repo);
    assert_eq!(tracked(&db), vec![1, 2]);
    assert!(
        sqlite(&db, ".tables\n").contains("tags_removed"),
        "the revert ran the accepted down SQL"
    );
}
