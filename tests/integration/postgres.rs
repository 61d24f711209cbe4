//! A real PostgreSQL 15 server for one test: `initdb` + `pg_ctl` into a temp dir as the
//! `postgres` system user (initdb refuses root), listening on a lab address (127.0.NET.1) and
//! port 15400 + NET, with scram passwords over TCP and trust only on its private Unix socket
//! (for the test's own admin queries). Stopped by its postmaster pid on drop, pass or fail.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use tempfile::TempDir;

/// Debian's server binaries.
pub const BIN: &str = "/usr/lib/postgresql/15/bin";
/// The system user the server runs as (created by Debian's postgresql-15 package).
pub const USER: &str = "postgres";

#[must_use]
pub struct Postgres {
    dir: TempDir,
    pid: Option<i32>,
    pub host: String,
    pub port: u16,
}

impl Postgres {
    /// Starts a server on 127.0.`net`.1.
    pub fn start(net: u8) -> Postgres {
        let dir = tempfile::Builder::new()
            .prefix("wvpg")
            .tempdir_in("/tmp")
            .expect("temp dir");
        let mut pg = Postgres {
            dir,
            pid: None,
            host: format!("127.0.{net}.1"),
            port: 15400 + u16::from(net),
        };
        run(Command::new("chown").arg(USER).arg(pg.dir.path()));
        run(as_postgres(&format!("{BIN}/initdb"))
            .args(["-D", &pg.data().to_string_lossy(), "-U", "postgres"])
            .args(["--auth-local=trust", "--auth-host=scram-sha-256"])
            .args(["-E", "UTF8", "--no-sync"]));
        // initdb lets TCP in from 127.0.0.1 only; the lab's machines connect from their own
        // 127.0.N.x addresses (scripts/lab source-NATs each machine's traffic).
        let hba = pg.data().join("pg_hba.conf");
        let mut rules = std::fs::read_to_string(&hba).expect("pg_hba.conf");
        rules.push_str("host all all 127.0.0.0/8 scram-sha-256\n");
        std::fs::write(&hba, rules).expect("write pg_hba.conf");
        let opts = format!(
            "-c listen_addresses={} -p {} -k {} -c fsync=off",
            pg.host,
            pg.port,
            pg.dir.path().display()
        );
        let started = as_postgres(&format!("{BIN}/pg_ctl"))
            .args([
                "-D",
                &pg.data().to_string_lossy(),
                "-o",
                &opts,
                "-w",
                "-t",
                "60",
            ])
            .arg("-l")
            .arg(pg.dir.path().join("server.log"))
            .arg("start")
            .stdout(Stdio::null())
            .status()
            .expect("pg_ctl");
        // The postmaster's pid, whether or not pg_ctl saw it come up.
        pg.pid = std::fs::read_to_string(pg.data().join("postmaster.pid"))
            .ok()
            .and_then(|t| t.lines().next().and_then(|l| l.trim().parse().ok()));
        assert!(
            started.success(),
            "pg_ctl start failed: {}",
            std::fs::read_to_string(pg.dir.path().join("server.log")).unwrap_or_default()
        );
        pg
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Creates a login role with `password` owning a new database `db`.
    pub fn create_db(&self, user: &str, password: &str, db: &str) {
        let sql = format!(
            "CREATE ROLE {user} LOGIN PASSWORD '{}';\nCREATE DATABASE {db} OWNER {user};\n",
            password.replace('\'', "''")
        );
        self.admin("postgres", &sql);
    }

    /// Runs `sql` as the superuser over the private socket; its stdout (`-At`).
    pub fn admin(&self, db: &str, sql: &str) -> String {
        let out = self.psql(db, sql);
        assert!(
            out.status.success(),
            "psql {sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `psql` as the superuser with `sql` on stdin.
    pub fn psql(&self, db: &str, sql: &str) -> std::process::Output {
        use std::io::Write;
        let mut child = self
            .psql_command(db)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("psql");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(sql.as_bytes())
            .expect("write sql");
        child.wait_with_output().expect("psql output")
    }

    /// A superuser psql command on the private socket (stdin not set).
    pub fn psql_command(&self, db: &str) -> Command {
        let mut c = Command::new("psql");
        c.args(["-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-U", "postgres"])
            .arg("-h")
            .arg(self.dir.path())
            .args(["-p", &self.port.to_string(), "-d", db]);
        c
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let Some(pid) = self.pid else { return };
        // SIGINT: fast shutdown (ends sessions, stops cleanly).
        let _ = Command::new("kill")
            .args(["-INT", &pid.to_string()])
            .status();
        for _ in 0..300 {
            let alive = Command::new("kill")
                .args(["-0", &pid.to_string()])
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if !alive {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let _ = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
    }
}

fn as_postgres(program: &str) -> Command {
    let mut c = Command::new("runuser");
    c.args(["-u", USER, "--", program]).current_dir("/tmp");
    c
}

fn run(c: &mut Command) {
    let out = c.output().expect("run");
    assert!(
        out.status.success(),
        "{c:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
