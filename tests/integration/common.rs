//! A plan repo in a temporary directory and the real `wavectl` binary run against it.

use std::path::{Path, PathBuf};
use std::process::Command;

use tempfile::TempDir;

/// An inventory with two hosts on loopback addresses no other test uses.
pub const INVENTORY: &str = r#"
[[host]]
name = "mainpc"
ssh = "mainpc"
address = "127.0.10.2"
root = "/srv/wv/mainpc"

[[host]]
name = "pc2"
ssh = "pc2"
address = "127.0.10.3"
root = "/srv/wv/pc2"
"#;

/// A plan repo: `plans/p.toml`, `inventories/lab.toml` and any other files.
#[must_use]
pub struct Repo {
    dir: TempDir,
    env: Vec<(String, String)>,
    inventory: Option<PathBuf>,
}

/// What a run printed and how it ended.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Repo {
    /// A repo whose plan is `plan` and whose inventory is [`INVENTORY`].
    pub fn with_plan(plan: &str) -> Repo {
        let repo = Repo {
            dir: TempDir::new().expect("temp dir"),
            env: Vec::new(),
            inventory: None,
        };
        repo.file("plans/p.toml", plan)
            .file("inventories/lab.toml", INVENTORY)
    }

    pub fn file(self, path: &str, text: &str) -> Repo {
        let full = self.dir.path().join(path);
        std::fs::create_dir_all(full.parent().expect("parent")).expect("mkdir");
        std::fs::write(full, text).expect("write");
        self
    }

    /// Passes `-i INVENTORY` to every run.
    pub fn with_inventory(mut self, inventory: PathBuf) -> Repo {
        self.inventory = Some(inventory);
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> Repo {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Makes the repo a git repository (first call) and commits everything in it.
    pub fn commit(self, message: &str) -> Repo {
        let git = |args: &[&str]| {
            let out = Command::new("git")
                .args([
                    "-c",
                    "user.name=wavectl-test",
                    "-c",
                    "user.email=test@wavectl.invalid",
                ])
                .args(args)
                .current_dir(self.dir.path())
                .output()
                .expect("git");
            assert!(
                out.status.success(),
                "git {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        if !self.dir.path().join(".git").exists() {
            git(&["init", "-q", "-b", "main"]);
        }
        git(&["add", "-A"]);
        git(&["commit", "-q", "--allow-empty", "-m", message]);
        self
    }

    /// The inventory passed with `-i`.
    pub fn inventory_path(&self) -> &Path {
        self.inventory
            .as_deref()
            .expect("an inventory given with with_inventory")
    }

    /// Tags the current commit.
    pub fn tag(self, name: &str) -> Repo {
        let ok = Command::new("git")
            .args(["tag", name])
            .current_dir(self.dir.path())
            .status()
            .expect("git tag")
            .success();
        assert!(ok, "git tag {name}");
        self
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Runs `wavectl ARGS...` in the repo's directory.
    pub fn run(&self, args: &[&str]) -> Run {
        let mut cmd = Command::new(bin());
        if let Some(i) = &self.inventory {
            cmd.arg("-i").arg(i);
        }
        cmd.args(args)
            .current_dir(self.dir.path())
            .env_remove("WAVECTL_SECRETS_FILE")
            .env("NO_COLOR", "1");
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let out = cmd.output().expect("run wavectl");
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    pub fn validate(&self) -> Run {
        self.run(&["validate", "plans/p.toml"])
    }
}

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_wavectl"))
}

/// The checked-in repo (for tests of `plans/phase2.toml`).
pub fn project_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A run's stdout as one JSON document.
pub fn json(run: &Run) -> serde_json::Value {
    serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}\nstderr:\n{}", run.stdout, run.stderr))
}

/// pid of a process as `wavectl status` reports it, when it is RUNNING.
pub fn pid_of(repo: &Repo, host: &str, process: &str) -> Option<u64> {
    let status = json(&repo.run(&["status", "-o", "json", "plans/p.toml"]));
    let h = status["hosts"]
        .as_array()?
        .iter()
        .find(|h| h["host"] == host)?
        .clone();
    let p = h["processes"]
        .as_array()?
        .iter()
        .find(|p| p["name"] == process)?
        .clone();
    (p["state"] == "RUNNING")
        .then(|| p["pid"].as_u64())
        .flatten()
}

/// Runs `sqlite3 -batch -bail [extra] DB` with `sql` on stdin; its stdout. Panics on failure.
pub fn sqlite3(db: &Path, extra: &[&str], sql: &str) -> String {
    use std::io::Write;
    let mut child = Command::new("sqlite3")
        .args(extra)
        .args(["-batch", "-bail"])
        .arg(db)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("sqlite3");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(sql.as_bytes())
        .expect("write sql");
    let out = child.wait_with_output().expect("sqlite3 ends");
    assert!(
        out.status.success(),
        "sqlite3 {} <<< {sql:?}: {}",
        db.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Stops, when dropped, the supervisord a local host started, by the PID it recorded.
pub struct StopSupervisord(pub PathBuf);

impl Drop for StopSupervisord {
    fn drop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(self.0.join("run/supervisord.pid")) {
            let _ = Command::new("kill").arg(pid.trim()).status();
        }
    }
}
