//! How wavectl reaches hosts below the SSH floor: a `~` root rendered with the home this
//! machine remembers (and corrected when the host says otherwise), the operator's own ssh
//! control master used and left running, and `--persist` keeping a connection for the next
//! run. Each "is it reused" check stops the host's sshd listener first: only a connection
//! that already exists can then reach the host.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::Repo;
use crate::lab::Lab;

const PLAN: &str = r#"version = 1
name = "conn"

[[file]]
name = "hello"
host = "mainpc"
path = "hello.txt"
content = "hello\n"

[[wave]]
name = "files"
select = ["file.*"]
"#;

fn repo(inventory: PathBuf) -> Repo {
    Repo::with_plan(PLAN)
        .commit("plan")
        .with_inventory(inventory)
}

/// Stops the sshd that accepts new connections on `host` (established ones live on).
fn stop_listener(lab: &Lab, host: &str) {
    let pid = lab.sshd_pid(host);
    assert!(
        Command::new("kill")
            .arg(pid.to_string())
            .status()
            .expect("kill")
            .success()
    );
    // Until it is gone, a new connection could still be accepted.
    for _ in 0..100 {
        if !Path::new(&format!("/proc/{pid}")).exists() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    panic!("sshd {pid} did not stop");
}

/// An ssh control master the test started: asked to exit when the test ends, however it ends.
struct Master {
    config: PathBuf,
    socket: PathBuf,
    host: &'static str,
}

impl Master {
    fn alive(&self) -> bool {
        Command::new("ssh")
            .arg("-F")
            .arg(&self.config)
            .arg("-S")
            .arg(&self.socket)
            .args(["-O", "check", self.host])
            .output()
            .is_ok_and(|o| o.status.success())
    }
}

impl Drop for Master {
    fn drop(&mut self) {
        let _ = Command::new("ssh")
            .arg("-F")
            .arg(&self.config)
            .arg("-S")
            .arg(&self.socket)
            .args(["-O", "exit", self.host])
            .output();
    }
}

#[test]
fn a_remembered_home_renders_the_plan_and_a_wrong_one_is_corrected() {
    let lab = Lab::up(83, 1);
    let cache = tempfile::TempDir::new().expect("cache dir");
    let inventory = std::fs::read_to_string(lab.inventory()).expect("inventory");
    let root = lab.root("mainpc").display().to_string();
    let tilde = lab.dir().join("tilde.toml");
    std::fs::write(
        &tilde,
        inventory.replace(&format!("root = \"{root}\""), "root = \"~/wv\""),
    )
    .expect("inventory");
    let repo = repo(tilde).env("XDG_CACHE_HOME", &cache.path().display().to_string());
    let applied = repo.run(&["apply", "--yes", "plans/p.toml"]);
    assert_eq!(applied.code, 0, "{}{}", applied.stdout, applied.stderr);
    let home = lab.root("mainpc").parent().expect("host dir").join("home");
    assert_eq!(
        std::fs::read_to_string(home.join("wv/files/hello.txt")).expect("hello"),
        "hello\n"
    );
    let file = cache.path().join("wavectl/homes.json");
    let remembered: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).expect("homes.json")).expect("json");
    let key = remembered
        .as_object()
        .and_then(|m| m.keys().find(|k| k.starts_with("mainpc via ")).cloned())
        .unwrap_or_else(|| panic!("mainpc is remembered: {remembered}"));
    assert_eq!(remembered[&key], home.display().to_string());
    assert_eq!(repo.run(&["diff", "plans/p.toml"]).code, 0);

    // The host moved its home (or the cache lies): the observe script's `$HOME` says so, the
    // plan is rendered again with the real one, and the diff is still exact.
    std::fs::write(
        &file,
        serde_json::json!({ key.clone(): "/nonexistent/home" }).to_string(),
    )
    .expect("plant");
    let diff = repo.run(&["diff", "plans/p.toml"]);
    assert_eq!(diff.code, 0, "{}{}", diff.stdout, diff.stderr);
    let fixed: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).expect("homes.json")).expect("json");
    assert_eq!(fixed[&key], home.display().to_string());
}

#[test]
fn the_operators_own_control_master_is_used_and_left_running() {
    let lab = Lab::up(84, 1);
    let sockets = tempfile::TempDir::new().expect("socket dir");
    let config = lab.dir().join("ssh_config.cm");
    let base = std::fs::read_to_string(lab.dir().join("ssh_config")).expect("ssh_config");
    std::fs::write(
        &config,
        format!(
            "{base}\nHost *\n  ControlMaster auto\n  ControlPath {}/cm-%C\n",
            sockets.path().display()
        ),
    )
    .expect("ssh_config");
    let inventory = std::fs::read_to_string(lab.inventory()).expect("inventory");
    let with_cm = lab.dir().join("cm.toml");
    let lab_config = lab.dir().join("ssh_config").display().to_string();
    std::fs::write(
        &with_cm,
        inventory.replace(&lab_config, &config.display().to_string()),
    )
    .expect("inventory");
    let started = Command::new("ssh")
        .arg("-F")
        .arg(&config)
        .args(["-M", "-f", "-N", "-o", "ControlPersist=60", "mainpc"])
        .status()
        .expect("ssh -M");
    assert!(started.success());
    let socket = std::fs::read_dir(sockets.path())
        .expect("sockets")
        .flatten()
        .map(|e| e.path())
        .next()
        .expect("the master's socket");
    let master = Master {
        config: config.clone(),
        socket,
        host: "mainpc",
    };
    assert!(master.alive());
    stop_listener(&lab, "mainpc");
    let repo = repo(with_cm);
    let diff = repo.run(&["diff", "plans/p.toml"]);
    assert_eq!(diff.code, 2, "{}{}", diff.stdout, diff.stderr);
    assert!(diff.stdout.contains("hello.txt"), "{}", diff.stdout);
    assert!(master.alive(), "wavectl closed the operator's master");
}

#[test]
fn persist_keeps_each_connection_for_the_next_run() {
    let lab = Lab::up(85, 1);
    let tmp = tempfile::TempDir::new().expect("tmp");
    let repo = repo(lab.inventory()).env("TMPDIR", &tmp.path().display().to_string());
    let first = repo.run(&["--persist", "60s", "diff", "plans/p.toml"]);
    assert_eq!(first.code, 2, "{}{}", first.stdout, first.stderr);
    let dir = std::fs::read_dir(tmp.path())
        .expect("tmp")
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("wavectl-"))
        })
        .expect("the directory of kept masters");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&dir).expect("dir").permissions().mode() & 0o777,
        0o700
    );
    let socket = std::fs::read_dir(&dir)
        .expect("masters")
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_none())
        .expect("a kept master's socket");
    let master = Master {
        config: lab.dir().join("ssh_config"),
        socket,
        host: "mainpc",
    };
    assert!(master.alive(), "the master outlives the run");
    stop_listener(&lab, "mainpc");
    // The next run, without the flag, finds it: sshd no longer accepts anything new.
    let second = repo.run(&["diff", "plans/p.toml"]);
    assert_eq!(second.code, 2, "{}{}", second.stdout, second.stderr);
    let applied = repo.run(&["apply", "--yes", "plans/p.toml"]);
    assert_eq!(applied.code, 0, "{}{}", applied.stdout, applied.stderr);
    assert!(master.alive());
}
