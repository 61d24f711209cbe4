//! The SQLite migration scripts run by `sh -s` against the real `sqlite3`, each test in its own
//! temporary directory.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;
use wavectl::backend::sqlite::{
    FailureKind, Listing, SqliteError, accept_script, apply_script, baseline_script,
    down_file_name, list_script, parse_failure, parse_failure_detail, parse_list, resolve_script,
    revert_script, up_file_name,
};
use wavectl::plan::migrations::checksum;
use wavectl::primitive::MigrationSpec;

/// What a script printed and how it ended.
#[derive(Debug)]
struct Out {
    ok: bool,
    stdout: String,
    stderr: String,
}

/// A temporary directory with a database path in a directory that does not exist yet.
struct Lab {
    dir: TempDir,
    db: PathBuf,
}

fn migration(id: u32, name: &str, up: &str, down: &str) -> MigrationSpec {
    MigrationSpec {
        id,
        name: name.into(),
        up_sql: up.into(),
        down_sql: down.into(),
        checksum: checksum(up),
        down_checksum: checksum(down),
        no_transaction: up.lines().any(|l| l.trim() == "-- wavectl: no-transaction"),
        irreversible: up.lines().any(|l| l.trim() == "-- wavectl: irreversible"),
    }
}

impl Lab {
    fn new() -> Lab {
        let dir = TempDir::new().expect("temp dir");
        let db = dir.path().join("data/app.db");
        Lab { dir, db }
    }

    fn db(&self) -> &str {
        self.db.to_str().expect("utf-8 path")
    }

    fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn run(&self, script: &str) -> Out {
        let mut child = Command::new("sh")
            .arg("-s")
            .current_dir(self.dir())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("sh");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(script.as_bytes())
            .expect("write script");
        let out = child.wait_with_output().expect("wait");
        Out {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Runs SQL with the plain sqlite3 program (the test's own view of the database).
    fn sql(&self, sql: &str) -> String {
        crate::common::sqlite3(&self.db, &[], sql)
    }

    fn schema(&self) -> String {
        self.sql(".schema\n")
    }

    fn list(&self) -> Result<Listing, SqliteError> {
        parse_list(&self.run(&list_script(self.db())).stdout)
    }

    fn listed_ids(&self) -> Vec<u32> {
        self.list()
            .expect("list")
            .applied
            .iter()
            .map(|a| a.id)
            .collect()
    }

    fn apply(&self, m: &MigrationSpec) -> Out {
        self.run(&apply_script(self.db(), m, 7, Some("c0ffee")))
    }

    fn apply_ok(&self, m: &MigrationSpec) {
        let out = self.apply(m);
        assert!(out.ok, "apply {} failed: {}", m.name, out.stderr);
        assert!(
            out.stdout
                .ends_with(&format!("applied {} {}\n", m.id, m.checksum)),
            "{out:?}"
        );
        assert_eq!(out.stderr, "", "a success is quiet on stderr");
    }

    fn revert_ok(&self, id: u32) {
        let out = self.run(&revert_script(self.db(), id));
        assert!(out.ok, "revert {id} failed: {}", out.stderr);
        assert_eq!(out.stdout, format!("reverted {id}\n"));
        assert_eq!(out.stderr, "");
    }
}

/// Three ordinary migrations: users, orders referencing users, an index.
fn first_three() -> Vec<MigrationSpec> {
    vec![
        migration(
            1,
            "users",
            "CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT NOT NULL UNIQUE);\nINSERT INTO users (email) VALUES ('a@x'), ('b@x'), ('o''neil@x');\n",
            "DROP TABLE users;\n",
        ),
        migration(
            2,
            "orders",
            "CREATE TABLE orders (id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL REFERENCES users(id), total INTEGER NOT NULL);\nINSERT INTO orders (user_id, total) VALUES (1, 10), (1, 20), (3, 30);\n",
            "DROP TABLE orders;\n",
        ),
        migration(
            3,
            "orders_by_user",
            "CREATE INDEX orders_user ON orders (user_id);\n",
            "DROP INDEX orders_user;\n",
        ),
    ]
}

/// The 12-step table rebuild of the parent table `users`: orders' rows and foreign key stay.
fn rebuild_users() -> MigrationSpec {
    migration(
        4,
        "users_name",
        "-- rebuild users with a name column\nCREATE TABLE users_new (id INTEGER PRIMARY KEY, email TEXT NOT NULL UNIQUE, name TEXT NOT NULL DEFAULT '');\nINSERT INTO users_new (id, email) SELECT id, email FROM users;\nDROP TABLE users;\nALTER TABLE users_new RENAME TO users;\n",
        "CREATE TABLE users_old (id INTEGER PRIMARY KEY, email TEXT NOT NULL UNIQUE);\nINSERT INTO users_old (id, email) SELECT id, email FROM users;\nDROP TABLE users;\nALTER TABLE users_old RENAME TO users;\n",
    )
}

/// A fourth migration touching nothing the first three made: a table, an index and a trigger.
fn audit() -> MigrationSpec {
    migration(
        4,
        "audit",
        "CREATE TABLE audit (id INTEGER PRIMARY KEY, order_id INTEGER REFERENCES orders(id), at TEXT);\nCREATE INDEX audit_order ON audit (order_id);\nCREATE TRIGGER orders_audit AFTER INSERT ON orders BEGIN\n  INSERT INTO audit (order_id, at) VALUES (NEW.id, 'now');\nEND;\nINSERT INTO audit (order_id, at) SELECT id, 'initial' FROM orders;\n",
        "DROP TRIGGER orders_audit;\nDROP TABLE audit;\n",
    )
}

#[test]
fn three_then_a_fourth_and_its_revert_restore_schema_and_rows() {
    let lab = Lab::new();
    assert_eq!(
        lab.list().unwrap(),
        Listing::default(),
        "a missing database lists as missing"
    );
    assert!(!lab.db.exists(), "listing must not create the database");

    for m in first_three() {
        lab.apply_ok(&m);
    }
    assert!(
        lab.db.exists(),
        "the first apply creates the database and its directory"
    );
    assert_eq!(lab.listed_ids(), vec![1, 2, 3]);
    let schema_before = lab.schema();
    let orders_before = lab.sql("SELECT * FROM orders ORDER BY id;\n");
    let users_before = lab.sql("SELECT * FROM users ORDER BY id;\n");

    let out = lab.apply(&audit());
    assert!(out.ok, "{}", out.stderr);
    assert_eq!(out.stdout, format!("applied 4 {}\n", audit().checksum));
    let l = lab.list().unwrap();
    assert_eq!(l.applied.len(), 4);
    let a = &l.applied[3];
    assert_eq!((a.id, a.name.as_str(), a.generation), (4, "audit", 7));
    assert_eq!(a.checksum, audit().checksum);
    assert_eq!(l.details[3].commit.as_deref(), Some("c0ffee"));
    assert_eq!(l.details[3].down_checksum, audit().down_checksum);
    assert!(
        a.applied_at.ends_with('Z') && a.applied_at.len() == 20,
        "{}",
        a.applied_at
    );
    assert_eq!(lab.sql("SELECT count(*) FROM audit;\n"), "3\n");

    lab.revert_ok(4);
    assert_eq!(lab.listed_ids(), vec![1, 2, 3]);
    assert_eq!(lab.schema(), schema_before);
    assert_eq!(
        lab.sql("SELECT * FROM orders ORDER BY id;\n"),
        orders_before
    );
    assert_eq!(lab.sql("SELECT * FROM users ORDER BY id;\n"), users_before);
    assert!(
        !Path::new(&format!("{}.wavectl-down.sql", lab.db())).exists(),
        "the down SQL file is removed"
    );
}

#[test]
fn a_table_rebuild_keeps_rows_and_foreign_keys_both_ways() {
    let lab = Lab::new();
    for m in first_three() {
        lab.apply_ok(&m);
    }
    let shape = "SELECT name, type, \"notnull\", pk FROM pragma_table_info('users') ORDER BY cid;\nSELECT \"from\", \"table\", \"to\" FROM pragma_foreign_key_list('orders');\n";
    let shape_before = lab.sql(shape);
    let orders_before = lab.sql("SELECT * FROM orders ORDER BY id;\n");
    let users_before = lab.sql("SELECT * FROM users ORDER BY id;\n");

    // With foreign keys on, `DROP TABLE users` would fail (or cascade); wavectl turns them off.
    lab.apply_ok(&rebuild_users());
    assert!(lab.schema().contains("name TEXT NOT NULL DEFAULT ''"));
    assert_eq!(
        lab.sql("SELECT id, email FROM users ORDER BY id;\n"),
        users_before
    );
    assert_eq!(
        lab.sql("SELECT * FROM orders ORDER BY id;\n"),
        orders_before,
        "the rebuild keeps the child rows"
    );
    assert_eq!(lab.sql("PRAGMA foreign_key_check;\n"), "");
    assert_eq!(
        lab.sql("SELECT \"table\" FROM pragma_foreign_key_list('orders');\n"),
        "users\n"
    );

    lab.revert_ok(4);
    assert_eq!(lab.sql(shape), shape_before);
    assert_eq!(lab.sql("SELECT * FROM users ORDER BY id;\n"), users_before);
    assert_eq!(
        lab.sql("SELECT * FROM orders ORDER BY id;\n"),
        orders_before
    );
    assert_eq!(lab.sql("PRAGMA foreign_key_check;\n"), "");
}

#[test]
fn a_syntax_error_in_the_third_statement_leaves_nothing_and_names_file_and_line() {
    let lab = Lab::new();
    lab.apply_ok(&first_three()[0]);
    let schema_before = lab.schema();
    let bad = migration(
        2,
        "bad",
        "-- two good statements, then a typo\nCREATE TABLE a (x);\nINSERT INTO users (email) VALUES ('new@x');\n\nCREAT TABLE b (y);\n",
        "DROP TABLE a;\n",
    );
    let out = lab.apply(&bad);
    assert!(!out.ok);
    assert_eq!(out.stdout, "");
    assert_eq!(
        parse_failure(&out.stderr, &up_file_name(2, "bad")),
        "0002_bad.up.sql: line 5: near \"CREAT\": syntax error"
    );
    assert_eq!(lab.schema(), schema_before);
    assert_eq!(lab.sql("SELECT count(*) FROM users;\n"), "3\n");
    assert_eq!(lab.listed_ids(), vec![1]);

    // A runtime error in a statement spanning lines is reported at the line it starts on.
    let bad = migration(
        2,
        "dup",
        "CREATE TABLE a (x);\nINSERT INTO users (email)\n  VALUES ('a@x');\n",
        "DROP TABLE a;\n",
    );
    let out = lab.apply(&bad);
    let f = parse_failure_detail(&out.stderr, "0002_dup.up.sql");
    assert_eq!(
        f.message,
        "0002_dup.up.sql: line 2: UNIQUE constraint failed: users.email"
    );
    assert_eq!(f.kind, FailureKind::Sql { line: Some(2) });
    assert_eq!(lab.schema(), schema_before);
}

#[test]
fn ddl_is_transactional_a_created_table_vanishes_with_the_failure() {
    let lab = Lab::new();
    lab.apply_ok(&first_three()[0]);
    let out = lab.apply(&migration(
        2,
        "half",
        "CREATE TABLE t (x);\nINSERT INTO t VALUES (1);\nINSERT INTO nosuch VALUES (1);\n",
        "DROP TABLE t;\n",
    ));
    assert!(!out.ok);
    assert_eq!(
        parse_failure(&out.stderr, "0002_half.up.sql"),
        "0002_half.up.sql: line 3: no such table: nosuch"
    );
    assert_eq!(
        lab.sql("SELECT count(*) FROM sqlite_schema WHERE name = 't';\n"),
        "0\n"
    );

    // A failing first migration on a new database leaves no database file behind.
    let fresh = Lab::new();
    let out = fresh.apply(&migration(
        1,
        "x",
        "CREATE TABLE t (x);\nSELECT nosuchfn();\n",
        "DROP TABLE t;\n",
    ));
    assert!(!out.ok);
    assert_eq!(
        parse_failure(&out.stderr, "0001_x.up.sql"),
        "0001_x.up.sql: line 2: no such function: nosuchfn"
    );
    assert!(!fresh.db.exists());
}

#[test]
fn a_hundred_thousand_rows_survive_an_added_column_and_its_revert() {
    let lab = Lab::new();
    lab.apply_ok(&migration(
        1,
        "items",
        "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL, qty INTEGER NOT NULL);\n",
        "DROP TABLE items;\n",
    ));
    lab.sql("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100000) INSERT INTO items SELECT i, 'item-' || i || '-' || hex(randomblob(4)), abs(random() % 1000) FROM n;\n");
    let digest = "SELECT count(*), sum(id), sum(qty), sum(length(name)), sum((id * 1000003 + qty * 7919 + unicode(substr(name, -1))) % 1000000007) FROM items;\n";
    let before = lab.sql(digest);
    assert!(before.starts_with("100000|"), "{before}");
    let schema_before = lab.schema();

    let add = migration(
        2,
        "items_note",
        "ALTER TABLE items ADD COLUMN note TEXT NOT NULL DEFAULT '';\nUPDATE items SET note = 'n' || (id % 7);\n",
        "ALTER TABLE items DROP COLUMN note;\n",
    );
    lab.apply_ok(&add);
    assert_eq!(lab.sql(digest), before);
    assert_eq!(
        lab.sql("SELECT count(*) FROM items WHERE note = 'n3';\n"),
        "14286\n"
    );

    lab.revert_ok(2);
    assert_eq!(lab.sql(digest), before);
    assert_eq!(lab.schema(), schema_before);
}

#[test]
fn a_file_that_is_not_a_database_is_a_clear_error_and_stays_untouched() {
    let lab = Lab::new();
    std::fs::create_dir_all(lab.db.parent().unwrap()).unwrap();
    std::fs::write(&lab.db, "just some text\n").unwrap();
    let err = lab.list().unwrap_err();
    assert!(matches!(err, SqliteError::NotADatabase(_)), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "database {} is not an SQLite database (the file does not start with the SQLite header)",
            lab.db()
        )
    );

    let out = lab.apply(&first_three()[0]);
    assert!(!out.ok);
    let f = parse_failure_detail(&out.stderr, "0001_users.up.sql");
    assert_eq!(f.kind, FailureKind::NotADatabase);
    assert_eq!(
        f.message,
        format!(
            "0001_users.up.sql: database {} is not an SQLite database (the file does not start with the SQLite header)",
            lab.db()
        )
    );
    assert_eq!(
        std::fs::read_to_string(&lab.db).unwrap(),
        "just some text\n"
    );

    // The right header but garbage after it: sqlite3 itself says so.
    let mut bytes = b"SQLite format 3\0".to_vec();
    bytes.extend(std::iter::repeat_n(0xA5u8, 4096));
    std::fs::write(&lab.db, &bytes).unwrap();
    let err = lab.list().unwrap_err();
    assert!(matches!(err, SqliteError::NotADatabase(_)), "{err:?}");
    let out = lab.apply(&first_three()[0]);
    let f = parse_failure_detail(&out.stderr, "0001_users.up.sql");
    assert_eq!(f.kind, FailureKind::NotADatabase, "{}", out.stderr);
    assert_eq!(std::fs::read(&lab.db).unwrap(), bytes);
}

/// A sqlite3 process holding `BEGIN IMMEDIATE` on a database; killed (by its PID) on drop.
struct WriteLockHolder(Child);

impl WriteLockHolder {
    fn hold(db: &Path) -> WriteLockHolder {
        let mut child = Command::new("sqlite3")
            .arg(db)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("sqlite3");
        // stdin stays open inside `child` (closing it would end sqlite3) until the drop.
        let stdin = child.stdin.as_mut().expect("stdin");
        stdin
            .write_all(b"BEGIN IMMEDIATE;\n.print holding\n")
            .expect("write");
        stdin.flush().expect("flush");
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().expect("stdout"))
            .read_line(&mut line)
            .expect("read");
        assert_eq!(line, "holding\n");
        WriteLockHolder(child)
    }
}

impl Drop for WriteLockHolder {
    /// Kills exactly the sqlite3 this holder started (by its PID), then reaps it.
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_locked_database_waits_then_fails_clearly() {
    let lab = Lab::new();
    lab.apply_ok(&first_three()[0]);
    let schema_before = lab.schema();
    let holder = WriteLockHolder::hold(&lab.db);
    let started = Instant::now();
    let out = lab.apply(&first_three()[1]);
    let waited = started.elapsed();
    assert!(!out.ok);
    assert!(
        waited >= Duration::from_millis(1900),
        "it waits for the lock: {waited:?}"
    );
    let f = parse_failure_detail(&out.stderr, "0002_orders.up.sql");
    assert_eq!(f.kind, FailureKind::Locked);
    assert_eq!(
        f.message,
        "0002_orders.up.sql: the database is locked: another connection holds its write lock (waited 2 s); nothing was changed"
    );
    // Reading still works while another connection holds a write lock (rollback journal).
    assert_eq!(lab.listed_ids(), vec![1]);
    let out = lab.run(&revert_script(lab.db(), 1));
    assert_eq!(
        parse_failure_detail(&out.stderr, "0001_users.down.sql").kind,
        FailureKind::Locked
    );
    drop(holder);
    assert_eq!(lab.schema(), schema_before);
    lab.apply_ok(&first_three()[1]);
}

#[test]
fn a_failed_no_transaction_migration_marks_the_database_dirty_until_resolved() {
    let lab = Lab::new();
    lab.apply_ok(&first_three()[0]);
    let nt = migration(
        2,
        "nt",
        "-- wavectl: no-transaction\nCREATE TABLE half (x);\nINSERT INTO nosuch VALUES (1);\n",
        "DROP TABLE half;\n",
    );
    let out = lab.apply(&nt);
    assert!(!out.ok);
    let f = parse_failure_detail(&out.stderr, "0002_nt.up.sql");
    assert!(f.marked_dirty);
    assert_eq!(
        f.message,
        "0002_nt.up.sql: line 3: no such table: nosuch; the database is now marked dirty: check it by hand, then run `wavectl migrations resolve` (further migrations are refused until then)"
    );
    // Without a transaction, what ran stays.
    assert_eq!(
        lab.sql("SELECT count(*) FROM sqlite_schema WHERE name = 'half';\n"),
        "1\n"
    );
    let l = lab.list().unwrap();
    assert_eq!(l.applied.len(), 1);
    let reason = l.dirty.clone().expect("dirty");
    assert!(
        reason.starts_with("0002_nt.up.sql (no-transaction, generation 7) started ")
            && reason.ends_with(" and did not finish"),
        "{reason}"
    );

    // Further runs are refused, with the reason.
    let out = lab.apply(&first_three()[1]);
    let f = parse_failure_detail(&out.stderr, "0002_orders.up.sql");
    assert_eq!(f.kind, FailureKind::Dirty);
    assert!(f.message.contains(&reason), "{}", f.message);
    assert!(!lab.run(&revert_script(lab.db(), 1)).ok);
    assert_eq!(lab.listed_ids(), vec![1]);

    lab.sql("DROP TABLE half;\n");
    let out = lab.run(&resolve_script(lab.db()));
    assert!(out.ok, "{}", out.stderr);
    assert_eq!(out.stdout, format!("resolved {reason}\n"));
    assert_eq!(lab.list().unwrap().dirty, None);
    let out = lab.run(&resolve_script(lab.db()));
    assert_eq!(out.stdout, "resolved -\n");

    // A working no-transaction migration (WAL cannot be switched on inside a transaction),
    // and its revert, which runs without a transaction as well.
    let wal = migration(
        2,
        "wal",
        "-- wavectl: no-transaction\nPRAGMA journal_mode = WAL;\n",
        "PRAGMA journal_mode = DELETE;\n",
    );
    lab.apply_ok(&wal);
    assert_eq!(lab.sql("PRAGMA journal_mode;\n"), "wal\n");
    let l = lab.list().unwrap();
    assert_eq!(
        (l.dirty.as_deref(), l.details[1].no_transaction),
        (None, true)
    );
    lab.revert_ok(2);
    assert_eq!(lab.sql("PRAGMA journal_mode;\n"), "delete\n");
    assert_eq!(lab.list().unwrap().dirty, None);
    assert_eq!(lab.listed_ids(), vec![1]);
}

#[test]
fn an_irreversible_migration_refuses_its_revert() {
    let lab = Lab::new();
    lab.apply_ok(&first_three()[0]);
    let m = migration(
        2,
        "drop_users",
        "-- wavectl: irreversible\nDROP TABLE users;\n",
        "",
    );
    lab.apply_ok(&m);
    assert!(lab.list().unwrap().details[1].irreversible);
    let out = lab.run(&revert_script(lab.db(), 2));
    assert!(!out.ok);
    let f = parse_failure_detail(&out.stderr, &down_file_name(2, "drop_users"));
    assert_eq!(f.kind, FailureKind::Irreversible);
    assert_eq!(
        f.message,
        "0002_drop_users.down.sql: recorded as irreversible (`-- wavectl: irreversible`), so it cannot be reverted; nothing was changed"
    );
    assert_eq!(lab.listed_ids(), vec![1, 2]);

    let out = lab.run(&revert_script(lab.db(), 9));
    assert_eq!(
        parse_failure_detail(&out.stderr, "0009_x.down.sql").kind,
        FailureKind::NotRecorded
    );
}

#[test]
fn accept_resolve_and_baseline_work() {
    let lab = Lab::new();
    let ms = first_three();
    lab.apply_ok(&ms[0]);
    let edited = checksum(
        "CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT NOT NULL UNIQUE); -- reviewed\n",
    );
    let out = lab.run(&accept_script(
        lab.db(),
        &MigrationSpec {
            checksum: edited.clone(),
            ..ms[0].clone()
        },
    ));
    assert!(out.ok, "{}", out.stderr);
    assert_eq!(out.stdout, format!("accepted 1 {edited}\n"));
    assert_eq!(lab.list().unwrap().applied[0].checksum, edited);
    let out = lab.run(&accept_script(
        lab.db(),
        &MigrationSpec {
            id: 5,
            checksum: edited.clone(),
            ..ms[0].clone()
        },
    ));
    assert_eq!(
        parse_failure(&out.stderr, "0005_x.up.sql"),
        "0005_x.up.sql: not recorded as applied in the database; nothing was changed"
    );
    assert_eq!(
        lab.list().unwrap().applied.len(),
        1,
        "a refused accept creates nothing"
    );

    // A database made before wavectl: its schema exists, nothing is recorded.
    let old = Lab::new();
    std::fs::create_dir_all(old.db.parent().unwrap()).unwrap();
    old.sql(&format!("{}{}", ms[0].up_sql, ms[1].up_sql));
    let out = old.run(&baseline_script(old.db(), 2, &ms));
    assert!(out.ok, "{}", out.stderr);
    assert_eq!(
        out.stdout,
        format!(
            "baselined 1 {}\nbaselined 2 {}\n",
            ms[0].checksum, ms[1].checksum
        )
    );
    let l = old.list().unwrap();
    assert_eq!(
        l.applied
            .iter()
            .map(|a| (a.id, a.generation))
            .collect::<Vec<_>>(),
        vec![(1, 0), (2, 0)]
    );
    assert!(l.details.iter().all(|d| d.baseline && d.commit.is_none()));
    let out = old.run(&baseline_script(old.db(), 2, &ms));
    assert_eq!(
        parse_failure_detail(&out.stderr, "baseline").kind,
        FailureKind::AlreadyTracked
    );
    let out = old.run(&baseline_script(old.db(), 5, &ms));
    assert_eq!(
        parse_failure(&out.stderr, "baseline"),
        "baseline: baseline up to 0005: the plan has no migration 0004, 0005"
    );
    // After the baseline it migrates as usual, and reverts with the recorded down SQL.
    old.apply_ok(&ms[2]);
    old.revert_ok(3);
    old.revert_ok(2);
    assert_eq!(
        old.sql("SELECT name FROM sqlite_schema WHERE name = 'orders';\n"),
        ""
    );
    assert_eq!(old.listed_ids(), vec![1]);

    let missing = Lab::new();
    let out = missing.run(&resolve_script(missing.db()));
    assert_eq!(
        parse_failure_detail(&out.stderr, "resolve").kind,
        FailureKind::Missing
    );
    assert!(!missing.db.exists());
}

#[test]
fn foreign_key_violations_after_a_migration_roll_it_back() {
    let lab = Lab::new();
    for m in &first_three()[..2] {
        lab.apply_ok(m);
    }
    let out = lab.apply(&migration(
        3,
        "orphan",
        "INSERT INTO orders (user_id, total) VALUES (42, 1);\n",
        "DELETE FROM orders WHERE user_id = 42;\n",
    ));
    let f = parse_failure_detail(&out.stderr, "0003_orphan.up.sql");
    assert_eq!(f.kind, FailureKind::ForeignKeys);
    assert_eq!(
        f.message,
        "0003_orphan.up.sql: PRAGMA foreign_key_check found violations after the SQL ran: orders rowid 4 references users; rolled back, nothing of it remains"
    );
    assert_eq!(lab.sql("SELECT count(*) FROM orders;\n"), "3\n");
    assert_eq!(lab.listed_ids(), vec![1, 2]);

    // Without a transaction nothing can be rolled back: the row stays and the database is dirty.
    let out = lab.apply(&migration(
        3,
        "orphan_nt",
        "-- wavectl: no-transaction\nINSERT INTO orders (user_id, total) VALUES (42, 1);\n",
        "DELETE FROM orders WHERE user_id = 42;\n",
    ));
    let f = parse_failure_detail(&out.stderr, "0003_orphan_nt.up.sql");
    assert_eq!(
        (f.kind, f.marked_dirty),
        (FailureKind::ForeignKeys, true),
        "{}",
        out.stderr
    );
    assert_eq!(lab.sql("SELECT count(*) FROM orders;\n"), "4\n");
    assert!(lab.list().unwrap().dirty.is_some());
}

#[test]
fn a_database_from_a_newer_wavectl_is_refused() {
    let lab = Lab::new();
    lab.apply_ok(&first_three()[0]);
    lab.sql("UPDATE wavectl_meta SET value = '2' WHERE key = 'schema';\n");
    assert_eq!(
        lab.list().unwrap_err(),
        SqliteError::NewerSchema { found: 2 }
    );
    let out = lab.apply(&first_three()[1]);
    assert_eq!(
        parse_failure(&out.stderr, "0002_orders.up.sql"),
        "0002_orders.up.sql: the database's wavectl tables have layout 2, newer than this wavectl (1); upgrade wavectl"
    );
    let out = lab.run(&revert_script(lab.db(), 1));
    assert_eq!(
        parse_failure_detail(&out.stderr, "0001_users.down.sql").kind,
        FailureKind::NewerSchema
    );
    assert_eq!(lab.sql("SELECT count(*) FROM wavectl_migrations;\n"), "1\n");
}

#[test]
fn sql_that_swallows_the_end_of_the_input_is_not_taken_as_applied() {
    let lab = Lab::new();
    lab.apply_ok(&first_three()[0]);
    let out = lab.apply(&migration(
        2,
        "open_comment",
        "CREATE TABLE t (x);\n/* never closed\n",
        "DROP TABLE t;\n",
    ));
    assert!(!out.ok);
    let f = parse_failure_detail(&out.stderr, "0002_open_comment.up.sql");
    assert_eq!(f.kind, FailureKind::NotCommitted, "{}", out.stderr);
    assert_eq!(
        lab.sql("SELECT count(*) FROM sqlite_schema WHERE name = 't';\n"),
        "0\n"
    );
    assert_eq!(lab.listed_ids(), vec![1]);
}

#[test]
fn sql_text_reaches_sqlite_verbatim() {
    let lab = Lab::new();
    let up = "CREATE TABLE t (v TEXT);\nINSERT INTO t VALUES ('it''s $HOME `id` \\n');\nINSERT INTO t VALUES ('a\nWV_SQL\nb');\n";
    let m = migration(1, "quotes", up, "DROP TABLE t; -- 'quoted' $HOME\n");
    lab.apply_ok(&m);
    assert_eq!(
        lab.sql("SELECT v FROM t ORDER BY rowid;\n"),
        "it's $HOME `id` \\n\na\nWV_SQL\nb\n"
    );
    assert_eq!(
        lab.sql("SELECT down_sql FROM wavectl_migrations;\n"),
        "DROP TABLE t; -- 'quoted' $HOME\n\n"
    );
    // A migration may print rows; they do not reach wavectl's output.
    lab.apply_ok(&migration(2, "noisy", "SELECT * FROM t;\n", "SELECT 1;\n"));
    lab.revert_ok(2);
    lab.revert_ok(1);
    assert_eq!(
        lab.sql("SELECT count(*) FROM sqlite_schema WHERE name = 't';\n"),
        "0\n"
    );
}

#[test]
fn fifty_migrations_apply_and_revert_back_to_back() {
    let lab = Lab::new();
    let ms: Vec<MigrationSpec> = (1..=50)
        .map(|i| migration(i, &format!("t{i}"), &format!("CREATE TABLE t{i} (id INTEGER PRIMARY KEY, v TEXT);\nINSERT INTO t{i} (v) VALUES ('x');\n"), &format!("DROP TABLE t{i};\n")))
        .collect();
    let started = Instant::now();
    for m in &ms {
        lab.apply_ok(m);
    }
    let applied = started.elapsed();
    assert_eq!(lab.listed_ids().len(), 50);
    let started = Instant::now();
    for m in ms.iter().rev() {
        lab.revert_ok(m.id);
    }
    let reverted = started.elapsed();
    eprintln!("50 migrations: apply {applied:?}, revert {reverted:?}");
    assert!(lab.listed_ids().is_empty());
    assert_eq!(
        lab.sql("SELECT count(*) FROM sqlite_schema WHERE name LIKE 't%';\n"),
        "0\n"
    );
}
