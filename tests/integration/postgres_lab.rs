//! PostgreSQL migrations through `wavectl apply` on real lab machines: a real PostgreSQL 15
//! server (`postgres::Postgres`) on the lab's network, reached by mainpc's `psql` over the SSH
//! session, inspected here with the superuser's psql. The scenarios of the sqlite lab tests:
//! 3 then 4 then a rollback, a failing statement leaving no trace, drift, 100 000 rows through
//! an add-column and its revert, the password kept to its 0600 passfile, the advisory lock.
//! Each test has its own lab network (127.0.140-149).

use std::io::Write;
use std::process::{Child, Stdio};
use std::time::Instant;

use crate::common::{Repo, Run};
use crate::lab::Lab;
use crate::postgres::Postgres;

/// The password of the role `app`: quotes, a colon and a backslash test every carrier.
const PASSWORD: &str = "pw-Zq7:x\\y'tail";
const SECRET: &str = "EVENTS_PG_PASSWORD";

/// The migration set `events` on mainpc against `pg`, and one long-running process so the
/// host has a supervisord.
fn plan(pg: &Postgres) -> String {
    format!(
        r#"version = 1
name = "postgres-lab"

[[migration]]
name = "events"
host = "mainpc"
engine = "postgres"
dir = "migrations/events"
postgres = {{ host = "{}", port = {}, user = "app", dbname = "events", password_secret = "{SECRET}" }}

[[process]]
name = "keeper"
host = "mainpc"
command = ["sleep", "infinity"]
"#,
        pg.host, pg.port
    )
}

/// A lab, a server with role `app` owning database `events`, and a repo with `plan`.
fn setup(net: u8) -> (Lab, Postgres, Repo) {
    let lab = Lab::up(net, 2);
    let pg = Postgres::start(net);
    pg.create_db("app", PASSWORD, "events");
    let repo = Repo::with_plan(&plan(&pg))
        .env(SECRET, PASSWORD)
        .with_inventory(lab.inventory());
    (lab, pg, repo)
}

fn migration(repo: Repo, stem: &str, up: &str, down: &str) -> Repo {
    repo.file(&format!("migrations/events/{stem}.up.sql"), up)
        .file(&format!("migrations/events/{stem}.down.sql"), down)
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

/// The ids wavectl recorded; none when there is no tracking table.
fn tracked(pg: &Postgres) -> Vec<u32> {
    let t = pg.admin(
        "events",
        "SELECT to_regclass('public.wavectl_migrations') IS NOT NULL;\n",
    );
    if t.trim() != "t" {
        return Vec::new();
    }
    pg.admin(
        "events",
        "SELECT id FROM public.wavectl_migrations ORDER BY id;\n",
    )
    .lines()
    .map(|l| l.parse().expect("id"))
    .collect()
}

/// The user's tables and their columns, `table.column type` by name (wavectl's own left out).
fn user_schema(pg: &Postgres) -> Vec<String> {
    pg.admin(
        "events",
        "SELECT table_name || '.' || column_name || ' ' || data_type FROM information_schema.columns WHERE table_schema = 'public' AND table_name NOT LIKE 'wavectl\\_%' ORDER BY table_name, ordinal_position;\n",
    )
    .lines()
    .map(str::to_string)
    .collect()
}

fn indexes(pg: &Postgres) -> Vec<String> {
    pg.admin(
        "events",
        "SELECT indexname FROM pg_indexes WHERE schemaname = 'public' AND tablename NOT LIKE 'wavectl\\_%' AND indexname NOT LIKE '%_pkey' ORDER BY indexname;\n",
    )
    .lines()
    .map(str::to_string)
    .collect()
}

const USERS_UP: &str = "CREATE TABLE users (id serial PRIMARY KEY, name text NOT NULL UNIQUE);\nINSERT INTO users (name) VALUES ('ada'), ('brian'), ('cleo');\n";
const USERS_DOWN: &str = "DROP TABLE users;\n";
const NOTES_UP: &str = "CREATE TABLE notes (\n  id serial PRIMARY KEY,\n  user_id integer NOT NULL REFERENCES users(id),\n  body text NOT NULL\n);\nINSERT INTO notes (user_id, body) VALUES (1, 'first'), (3, 'third');\n";
const NOTES_DOWN: &str = "DROP TABLE notes;\n";
const TAGS_UP: &str = "CREATE TABLE tags (id serial PRIMARY KEY, label text NOT NULL);\n";
const TAGS_DOWN: &str = "DROP TABLE tags;\n";
const NOTE_TAGS_UP: &str = "ALTER TABLE notes ADD COLUMN tag_id integer REFERENCES tags(id);\n";
const NOTE_TAGS_DOWN: &str = "ALTER TABLE notes DROP COLUMN tag_id;\n";

fn three(repo: Repo) -> Repo {
    let repo = migration(repo, "0001_users", USERS_UP, USERS_DOWN);
    let repo = migration(repo, "0002_notes", NOTES_UP, NOTES_DOWN);
    migration(repo, "0003_tags", TAGS_UP, TAGS_DOWN)
}

#[test]
fn postgres_three_then_four_then_a_rollback_reverts_the_fourth_from_its_stored_down_sql() {
    let (_lab, pg, repo) = setup(140);
    let repo = three(repo).commit("three").tag("three");
    let d = repo.run(&["diff", "plans/p.toml"]);
    assert_eq!(d.code, 2, "{}", show(&d));
    assert!(
        d.stdout.contains("migration events 0003_tags: apply"),
        "{}",
        show(&d)
    );
    apply(&repo);
    assert_eq!(tracked(&pg), [1, 2, 3]);
    let three_schema = user_schema(&pg);
    assert!(
        three_schema.contains(&"tags.label text".to_string()),
        "{three_schema:?}"
    );
    assert_eq!(pg.admin("events", "SELECT count(*) FROM notes;\n"), "2\n");

    let repo = migration(repo, "0004_note_tags", NOTE_TAGS_UP, NOTE_TAGS_DOWN).commit("four");
    apply(&repo);
    assert_eq!(tracked(&pg), [1, 2, 3, 4]);
    assert!(user_schema(&pg).contains(&"notes.tag_id integer".to_string()));
    let recorded = pg.admin(
        "events",
        "SELECT down_sql FROM wavectl_migrations WHERE id = 4;\n",
    );
    assert_eq!(recorded, NOTE_TAGS_DOWN.to_string() + "\n");
    let run = repo.run(&["migrations", "status", "plans/p.toml"]);
    assert!(
        run.stdout.contains("mainpc events 0004_note_tags: applied"),
        "{}",
        show(&run)
    );
    let noop = apply(&repo);
    assert!(
        noop.stdout.contains("in sync: nothing to do"),
        "{}",
        show(&noop)
    );

    let run = repo.run(&["rollback", "--to", "three", "--yes", "plans/p.toml"]);
    assert_eq!(run.code, 0, "{}", show(&run));
    assert_eq!(tracked(&pg), [1, 2, 3]);
    assert_eq!(user_schema(&pg), three_schema);
    assert_eq!(pg.admin("events", "SELECT count(*) FROM notes;\n"), "2\n");
}

#[test]
fn postgres_a_syntax_error_in_the_third_statement_leaves_no_table_and_no_row() {
    let (_lab, pg, repo) = setup(141);
    let bad =
        "CREATE TABLE a (id integer);\nINSERT INTO a VALUES (1);\nCREAT TABLE b (id integer);\n";
    let repo = migration(repo, "0001_users", USERS_UP, USERS_DOWN);
    let repo = migration(repo, "0002_bad", bad, "DROP TABLE a;\n").commit("a bad second");
    let run = repo.run(&["apply", "--yes", "plans/p.toml"]);
    assert_ne!(run.code, 0, "{}", show(&run));
    let all = format!("{}{}", run.stdout, run.stderr);
    assert!(
        all.contains("0002_bad.up.sql: line 3: syntax error at or near \"CREAT\""),
        "{}",
        show(&run)
    );
    // The whole wave is undone: 0001 reverted too, as with sqlite.
    assert_eq!(tracked(&pg), Vec::<u32>::new());
    assert_eq!(
        user_schema(&pg),
        Vec::<String>::new(),
        "no table a, no users"
    );
}

#[test]
fn postgres_an_edited_applied_migration_is_refused_as_drift_until_accepted() {
    let (_lab, pg, repo) = setup(142);
    let repo = migration(repo, "0001_users", USERS_UP, USERS_DOWN).commit("one");
    apply(&repo);
    let edited = format!("{USERS_UP}CREATE INDEX users_name ON users (name);\n");
    let repo = migration(repo, "0001_users", &edited, USERS_DOWN);
    let repo = migration(repo, "0002_tags", TAGS_UP, TAGS_DOWN).commit("edit 0001, add 0002");
    let drift = "database events: applied migration 0001_users.up.sql has changed since it ran (checksum drift)";
    let run = repo.run(&["apply", "--yes", "plans/p.toml"]);
    assert_eq!(run.code, 1, "{}", show(&run));
    assert!(run.stdout.contains(drift), "{}", show(&run));
    assert_eq!(tracked(&pg), [1], "0002 did not run");
    assert!(!user_schema(&pg).iter().any(|c| c.starts_with("tags.")));

    let run = repo.run(&[
        "migrations",
        "accept",
        "plans/p.toml",
        "--db",
        "events",
        "1",
    ]);
    assert_eq!(run.code, 0, "{}", show(&run));
    assert!(run.stdout.starts_with("accepted 1 "), "{}", show(&run));
    apply(&repo);
    assert_eq!(tracked(&pg), [1, 2]);
    assert_eq!(indexes(&pg), ["users_name_key"], "accept runs nothing");
}

#[test]
fn postgres_a_hundred_thousand_rows_survive_adding_and_reverting_a_column() {
    let (_lab, pg, repo) = setup(143);
    let fill = "CREATE TABLE events (id bigint PRIMARY KEY, payload text NOT NULL);\nINSERT INTO events SELECT i, 'event ' || i FROM generate_series(1, 100000) AS i;\n";
    let repo = migration(repo, "0001_events", fill, "DROP TABLE events;\n").commit("fill");
    apply(&repo);
    let sums = "SELECT count(*) || '|' || sum(id) || '|' || sum(length(payload)) FROM events;\n";
    let before = pg.admin("events", sums);
    assert_eq!(before, "100000|5000050000|1088895\n");
    let repo = migration(
        repo,
        "0002_score",
        "ALTER TABLE events ADD COLUMN score integer NOT NULL DEFAULT 0;\nUPDATE events SET score = id % 100;\n",
        "ALTER TABLE events DROP COLUMN score;\n",
    )
    .commit("score");
    apply(&repo);
    assert_eq!(
        pg.admin("events", "SELECT sum(score) FROM events;\n"),
        "4950000\n"
    );
    let run = repo.run(&["rollback", "--to", "HEAD~1", "--yes", "plans/p.toml"]);
    assert_eq!(run.code, 0, "{}", show(&run));
    assert_eq!(tracked(&pg), [1]);
    assert_eq!(pg.admin("events", sums), before);
    assert_eq!(
        user_schema(&pg),
        ["events.id bigint", "events.payload text"]
    );
}

/// The password of the test that looks for it in every process: no other test uses it (they
/// pass theirs in wavectl's environment, where it belongs on the operator's machine).
const ALONE_PASSWORD: &str = "pw-Alone8:x\\y'tail";
const ALONE: &str = "pw-Alone8";

/// Samples every process's command line (and environment, through /proc) until stopped.
fn watch_processes(stop: std::sync::Arc<std::sync::atomic::AtomicBool>) -> Vec<String> {
    let mut seen = Vec::new();
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            for what in ["cmdline", "environ"] {
                if let Ok(bytes) = std::fs::read(entry.path().join(what)) {
                    let text = String::from_utf8_lossy(&bytes).replace('\0', " ");
                    if text.contains(ALONE) {
                        let argv0 = text.split(' ').next().unwrap_or("").to_string();
                        seen.push(format!("{}/{what} ({argv0})", entry.path().display()));
                    }
                }
            }
        }
    }
    seen
}

/// Every file under `dir` whose bytes contain `needle`.
fn files_containing(dir: &std::path::Path, needle: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let p = e.path();
        let Ok(meta) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        if meta.is_dir() {
            out.extend(files_containing(&p, needle));
        } else if meta.is_file()
            && let Ok(bytes) = std::fs::read(&p)
            && bytes.windows(needle.len()).any(|w| w == needle)
        {
            out.push(p.display().to_string());
        }
    }
    out
}

#[test]
fn postgres_the_password_stays_in_a_removed_0600_passfile_and_concurrently_runs_outside_a_transaction()
 {
    let lab = Lab::up(144, 2);
    let pg = Postgres::start(144);
    pg.create_db("app", ALONE_PASSWORD, "events");
    // The secret from a secrets file, so that no process (not even wavectl's own) has it in
    // its environment.
    let secrets = tempfile::TempDir::new().expect("temp dir");
    let secrets_file = secrets.path().join("secrets.toml");
    std::fs::write(
        &secrets_file,
        format!("{SECRET} = \"{}\"\n", ALONE_PASSWORD.replace('\\', "\\\\")),
    )
    .expect("secrets file");
    let repo = Repo::with_plan(&plan(&pg)).with_inventory(lab.inventory());
    let sf = secrets_file.to_string_lossy().into_owned();
    let repo = migration(repo, "0001_users", USERS_UP, USERS_DOWN);
    let repo = migration(
        repo,
        "0002_users_name",
        "-- wavectl: no-transaction\nCREATE INDEX CONCURRENTLY users_lower ON users (lower(name));\n",
        "DROP INDEX CONCURRENTLY users_lower;\n",
    )
    .commit("two");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let stop = stop.clone();
        std::thread::spawn(move || watch_processes(stop))
    };
    let d = repo.run(&["--secrets-file", &sf, "diff", "plans/p.toml"]);
    let run = repo.run(&["--secrets-file", &sf, "apply", "--yes", "plans/p.toml"]);
    let status = repo.run(&[
        "--secrets-file",
        &sf,
        "migrations",
        "status",
        "plans/p.toml",
    ]);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let seen = watcher.join().expect("watcher");
    assert_eq!(run.code, 0, "{}", show(&run));
    assert_eq!(tracked(&pg), [1, 2]);
    assert_eq!(indexes(&pg), ["users_lower", "users_name_key"]);
    assert!(seen.is_empty(), "the password in a process: {seen:?}");
    for r in [&d, &run, &status] {
        assert!(
            !r.stdout.contains(ALONE) && !r.stderr.contains(ALONE),
            "{}",
            show(r)
        );
    }
    // No file of the lab (roots, journals, generations, logs) holds it: the passfile is gone.
    assert_eq!(
        files_containing(lab.dir(), ALONE.as_bytes()),
        Vec::<String>::new()
    );
    assert_eq!(
        files_containing(repo.path(), ALONE.as_bytes()),
        Vec::<String>::new()
    );
    let run_dir = lab.root("mainpc").join("run");
    let left: Vec<String> = std::fs::read_dir(&run_dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("pgpass"))
        .collect();
    assert_eq!(left, Vec::<String>::new());

    // While a script runs, its passfile exists with mode 0600: stop one at the advisory lock.
    let holder = hold_lock(&pg);
    let repo = migration(repo, "0003_tags", TAGS_UP, TAGS_DOWN).commit("three");
    let mainpc = lab.root("mainpc");
    let child = std::process::Command::new(crate::common::bin())
        .arg("-i")
        .arg(repo.inventory_path())
        .args(["--secrets-file", &sf, "apply", "--yes", "plans/p.toml"])
        .current_dir(repo.path())
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("apply");
    let mut child = KillOnDrop(child);
    let mut modes = Vec::new();
    for _ in 0..200 {
        let found: Vec<u32> = std::fs::read_dir(mainpc.join("run"))
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with("pgpass-events.")
            })
            .filter_map(|e| e.metadata().ok())
            .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o777)
            .collect();
        if !found.is_empty() {
            modes = found;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    assert_eq!(modes, [0o600]);
    let status = child.0.wait().expect("wait");
    drop(holder);
    assert_eq!(status.code(), Some(1), "refused by the lock");
    assert_eq!(
        files_containing(lab.dir(), ALONE.as_bytes()),
        Vec::<String>::new(),
        "removed on failure too"
    );
}

struct KillOnDrop(Child);
impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A superuser session holding wavectl's advisory lock until dropped.
struct LockHolder(Child);

fn hold_lock(pg: &Postgres) -> LockHolder {
    let mut child = pg
        .psql_command("events")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("psql");
    let stdin = child.stdin.as_mut().expect("stdin");
    stdin
        .write_all(b"SELECT pg_advisory_lock(8602286941086706688);\n\\echo held\n")
        .expect("write");
    stdin.flush().expect("flush");
    let out = child.stdout.take().expect("stdout");
    let holder = LockHolder(child);
    let held = std::io::BufRead::lines(std::io::BufReader::new(out))
        .map_while(Result::ok)
        .any(|l| l.trim() == "held");
    assert!(held, "the lock holder's session ended");
    holder
}

impl Drop for LockHolder {
    fn drop(&mut self) {
        drop(self.0.stdin.take());
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn postgres_a_concurrent_run_is_refused_by_the_advisory_lock_until_it_is_released() {
    let (_lab, pg, repo) = setup(145);
    let repo = migration(repo, "0001_users", USERS_UP, USERS_DOWN).commit("one");
    let holder = hold_lock(&pg);
    let run = repo.run(&["apply", "--yes", "plans/p.toml"]);
    assert_eq!(run.code, 1, "{}", show(&run));
    assert!(
        run.stderr.contains("another wavectl run holds the database's migration lock (pg_advisory_lock), waited 5 s; nothing was changed")
            || run.stdout.contains("another wavectl run holds the database's migration lock"),
        "{}",
        show(&run)
    );
    assert_eq!(tracked(&pg), Vec::<u32>::new());
    drop(holder);
    apply(&repo);
    assert_eq!(tracked(&pg), [1]);
}

#[test]
fn postgres_fifty_migrations_apply_and_revert_and_report_their_durations() {
    let (_lab, pg, repo) = setup(146);
    std::fs::create_dir_all(repo.path().join("migrations/events")).expect("mkdir");
    let mut repo = repo.commit("keeper");
    apply(&repo);
    for i in 1..=50 {
        repo = migration(
            repo,
            &format!("{i:04}_t{i}"),
            &format!(
                "CREATE TABLE t{i} (id serial PRIMARY KEY, v text);\nINSERT INTO t{i} (v) VALUES ('row {i}');\n"
            ),
            &format!("DROP TABLE t{i};\n"),
        );
    }
    let repo = repo.commit("fifty migrations");
    let t = Instant::now();
    apply(&repo);
    let forward = t.elapsed();
    let t = Instant::now();
    let noop = apply(&repo);
    let floor = t.elapsed();
    assert!(
        noop.stdout.contains("in sync: nothing to do"),
        "{}",
        show(&noop)
    );
    assert_eq!(tracked(&pg), (1..=50).collect::<Vec<u32>>());
    let mut repo = repo;
    for i in 1..=50 {
        for end in ["up", "down"] {
            std::fs::remove_file(
                repo.path()
                    .join(format!("migrations/events/{i:04}_t{i}.{end}.sql")),
            )
            .expect("rm");
        }
    }
    repo = repo.commit("no migrations");
    let t = Instant::now();
    apply(&repo);
    let revert = t.elapsed();
    assert_eq!(tracked(&pg), Vec::<u32>::new());
    assert_eq!(user_schema(&pg), Vec::<String>::new());
    eprintln!(
        "50 postgres migrations through wavectl on the lab: apply {forward:?}, revert {revert:?} (an apply with nothing to do: {floor:?})"
    );
}

#[test]
fn postgres_concurrently_outside_a_no_transaction_file_is_refused_at_its_line() {
    let repo = Repo::with_plan(&plan_for("127.0.147.1", 5432)).env(SECRET, "x");
    let repo = migration(
        repo,
        "0001_ix",
        "CREATE TABLE t (a integer);\n-- CONCURRENTLY in a comment is fine\nCREATE INDEX CONCURRENTLY t_a ON t (a);\n",
        "DROP TABLE t;\n",
    );
    let run = repo.validate();
    assert_eq!(run.code, 1, "{}", show(&run));
    assert!(
        run.stderr.contains("migrations/events/0001_ix.up.sql:3:14: error: `CONCURRENTLY` (line 3) cannot run inside the transaction wavectl runs this migration in, expected it only in a file marked `-- wavectl: no-transaction`"),
        "{}",
        show(&run)
    );
    let missing = Repo::with_plan(&plan_for("127.0.147.1", 5432));
    let missing = migration(missing, "0001_users", USERS_UP, USERS_DOWN);
    let run = missing.validate();
    assert_eq!(run.code, 1, "{}", show(&run));
    assert!(
        run.stderr
            .contains("secret `EVENTS_PG_PASSWORD` is not provided"),
        "{}",
        show(&run)
    );
}

fn plan_for(host: &str, port: u16) -> String {
    format!(
        r#"version = 1
name = "postgres-lab"

[[migration]]
name = "events"
host = "mainpc"
engine = "postgres"
dir = "migrations/events"
postgres = {{ host = "{host}", port = {port}, user = "app", dbname = "events", password_secret = "{SECRET}" }}
"#
    )
}

#[test]
fn postgres_a_failed_no_transaction_migration_is_dirty_until_resolved_then_irreversible_and_baseline()
 {
    let (_lab, pg, repo) = setup(148);
    let repo = migration(repo, "0001_users", USERS_UP, USERS_DOWN).commit("one");
    apply(&repo);
    let bad = "-- wavectl: no-transaction\nCREATE INDEX CONCURRENTLY users_lower ON users (lower(name));\nCREATE INDEX CONCURRENTLY users_bad\n  ON users (no_such_column);\n";
    let down = "DROP INDEX CONCURRENTLY users_lower;\n";
    let repo = migration(repo, "0002_ix", bad, down).commit("a failing concurrent index");
    let run = repo.run(&["apply", "--yes", "plans/p.toml"]);
    assert_eq!(run.code, 1, "{}", show(&run));
    assert!(
        run.stderr.contains("0002_ix.up.sql: line 3: column \"no_such_column\" does not exist; the database is now marked dirty"),
        "{}",
        show(&run)
    );
    assert_eq!(tracked(&pg), [1]);
    assert_eq!(
        indexes(&pg),
        ["users_lower", "users_name_key"],
        "the first statement stays"
    );

    // Dirty: every further apply is refused until the operator resolves it.
    let run = repo.run(&["apply", "--yes", "plans/p.toml"]);
    assert_eq!(run.code, 1, "{}", show(&run));
    assert!(
        format!("{}{}", run.stdout, run.stderr)
            .contains("database events is dirty: 0002_ix.up.sql (no-transaction, generation"),
        "{}",
        show(&run)
    );
    pg.admin("events", "DROP INDEX users_lower;\n");
    let fixed = "-- wavectl: no-transaction\nCREATE INDEX CONCURRENTLY users_lower ON users (lower(name));\n";
    let repo = migration(repo, "0002_ix", fixed, down).commit("fixed");
    let run = repo.run(&["migrations", "resolve", "plans/p.toml", "--db", "events"]);
    assert_eq!(run.code, 0, "{}", show(&run));
    assert!(
        run.stdout
            .starts_with("resolved 0002_ix.up.sql (no-transaction"),
        "{}",
        show(&run)
    );
    apply(&repo);
    assert_eq!(tracked(&pg), [1, 2]);
    assert_eq!(indexes(&pg), ["users_lower", "users_name_key"]);

    // Gone from the plan: reverted with its stored down SQL, outside a transaction block.
    for end in ["up", "down"] {
        std::fs::remove_file(
            repo.path()
                .join(format!("migrations/events/0002_ix.{end}.sql")),
        )
        .expect("rm");
    }
    let repo = repo.commit("no index");
    apply(&repo);
    assert_eq!(tracked(&pg), [1]);
    assert_eq!(indexes(&pg), ["users_name_key"]);

    // Irreversible: applied, then never reverted implicitly.
    let repo = repo
        .file(
            "migrations/events/0002_drop_cleo.up.sql",
            "-- wavectl: irreversible\nDELETE FROM users WHERE name = 'cleo';\n",
        )
        .commit("irreversible");
    apply(&repo);
    std::fs::remove_file(repo.path().join("migrations/events/0002_drop_cleo.up.sql")).expect("rm");
    let repo = repo.commit("without it");
    let run = repo.run(&["apply", "--yes", "plans/p.toml"]);
    assert_eq!(run.code, 1, "{}", show(&run));
    assert!(
        run.stdout
            .contains("migration 0002_drop_cleo is marked irreversible"),
        "{}",
        show(&run)
    );
    assert_eq!(tracked(&pg), [1, 2]);

    // Baseline: a database whose schema was made before wavectl.
    pg.admin("events", "DROP TABLE wavectl_migrations, wavectl_meta;\n");
    let run = repo.run(&[
        "migrations",
        "baseline",
        "plans/p.toml",
        "--db",
        "events",
        "1",
    ]);
    assert_eq!(run.code, 0, "{}", show(&run));
    assert!(run.stdout.starts_with("baselined 1 "), "{}", show(&run));
    assert_eq!(tracked(&pg), [1]);
    assert_eq!(
        pg.admin(
            "events",
            "SELECT baseline, generation FROM wavectl_migrations;\n"
        ),
        "t|0\n"
    );
    let run = repo.run(&[
        "migrations",
        "baseline",
        "plans/p.toml",
        "--db",
        "events",
        "1",
    ]);
    assert_eq!(run.code, 1, "{}", show(&run));
    assert!(
        run.stderr.contains("already records migrations"),
        "{}",
        show(&run)
    );
    apply(&repo);
    assert_eq!(tracked(&pg), [1]);
}

#[test]
fn postgres_a_server_that_does_not_answer_is_named_by_diff_and_apply() {
    let lab = Lab::up(149, 1);
    // Nothing listens on 127.0.149.1:15549.
    let repo = Repo::with_plan(&plan_for("127.0.149.1", 15549))
        .env(SECRET, PASSWORD)
        .with_inventory(lab.inventory());
    let repo = migration(repo, "0001_users", USERS_UP, USERS_DOWN).commit("one");
    for args in [
        &["diff", "plans/p.toml"][..],
        &["apply", "--yes", "plans/p.toml"][..],
    ] {
        let run = repo.run(args);
        assert_eq!(run.code, 1, "{}", show(&run));
        let all = format!("{}{}", run.stdout, run.stderr);
        assert!(
            all.contains("database events: ")
                && all.contains("connection to server at \"127.0.149.1\", port 15549 failed"),
            "{}",
            show(&run)
        );
        assert!(!all.contains("pw-Zq7"), "{}", show(&run));
    }
}
