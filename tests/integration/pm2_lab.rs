//! The pm2 backend on real machines: lab hosts whose inventory says `supervisor = "pm2"`, each
//! root with its own PM2_HOME (`run/pm2`). The reference plan with its gates, a SIGKILLed
//! process restarted by pm2, a removed process leaving nothing behind, secrets kept out of
//! `ps` and of every file others may read. Lab nets 127.0.131-133.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::common::{Repo, Run, json, pid_of, project_root};
use crate::lab::Lab;

const SECRET: &str = "tg-secret-pm2-5e0b11c4";

/// Stops the pm2 daemon of a root (TERM: it stops its processes first) when dropped: for
/// roots of the local transport, which no lab tears down.
pub struct StopPm2(pub PathBuf);

impl Drop for StopPm2 {
    fn drop(&mut self) {
        let Ok(text) = std::fs::read_to_string(self.0.join("run/pm2/pm2.pid")) else {
            return;
        };
        let pid = text.trim().to_string();
        let _ = std::process::Command::new("kill").arg(&pid).status();
        for _ in 0..50 {
            if pid.parse().is_ok_and(|p: u32| !alive(p)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = std::process::Command::new("kill")
            .args(["-KILL", &pid])
            .status();
    }
}

fn pm2_lab(net: u8) -> Lab {
    Lab::up_with(net, 2, &["--supervisor", "pm2"])
}

/// The checked-in reference plan with the repo template and migrations it uses.
fn reference_repo(lab: &Lab) -> Repo {
    let root = project_root();
    let read = |p: &str| std::fs::read_to_string(root.join(p)).expect(p);
    let mut repo = Repo::with_plan(&read("plans/phase2.toml")).file(
        "templates/standin.sh.tera",
        &read("templates/standin.sh.tera"),
    );
    for entry in std::fs::read_dir(root.join("migrations/nanoclaw")).expect("migrations") {
        let name = entry
            .expect("entry")
            .file_name()
            .to_string_lossy()
            .into_owned();
        let path = format!("migrations/nanoclaw/{name}");
        repo = repo.file(&path, &read(&path));
    }
    repo.env("TELEGRAM_TOKEN", SECRET)
        .commit("reference plan")
        .with_inventory(lab.inventory())
}

fn apply(repo: &Repo) -> Run {
    let run = repo.run(&["apply", "--yes", "plans/p.toml"]);
    assert_eq!(
        run.code, 0,
        "apply failed:\nstdout:\n{}\nstderr:\n{}",
        run.stdout, run.stderr
    );
    run
}

/// The pid of the root's pm2 daemon, while it runs.
fn daemon(lab: &Lab, host: &str) -> Option<u32> {
    let pid: u32 = std::fs::read_to_string(lab.root(host).join("run/pm2/pm2.pid"))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    alive(pid).then_some(pid)
}

/// The process exists and is not a zombie.
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(") ").map(|(_, rest)| !rest.starts_with('Z')))
        .unwrap_or(false)
}

/// The children of `parent` whose command line holds `needle`.
fn children_with(parent: u32, needle: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").expect("proc").flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
        let ppid = stat
            .rsplit_once(") ")
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        if ppid == Some(parent) && String::from_utf8_lossy(&cmd).contains(needle) && alive(pid) {
            out.push(pid);
        }
    }
    out
}

/// What `pm2 jlist` under the host's PM2_HOME says, as the host's user.
fn jlist(lab: &Lab, host: &str) -> serde_json::Value {
    let home = lab.root(host).join("run/pm2");
    let out = lab.ssh(host, &format!("PM2_HOME={} pm2 jlist", home.display()));
    let line = out
        .lines()
        .rfind(|l| l.starts_with("[{") || l.trim() == "[]")
        .unwrap_or("[]");
    serde_json::from_str(line).unwrap_or_else(|e| panic!("jlist ({e}): {out}"))
}

fn jlist_names(lab: &Lab, host: &str) -> Vec<String> {
    jlist(lab, host)
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|p| p["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Every file under `dir` that others may read (and whose directories they may enter).
fn readable_by_others(dir: &Path) -> Vec<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let Ok(meta) = std::fs::symlink_metadata(e.path()) else {
            continue;
        };
        let mode = meta.permissions().mode();
        if meta.is_dir() {
            if mode & 0o005 == 0o005 {
                out.extend(readable_by_others(&e.path()));
            }
        } else if meta.is_file() && mode & 0o004 != 0 {
            out.push(e.path());
        }
    }
    out
}

#[test]
fn the_reference_plan_applies_on_pm2_hosts_with_its_gates_green_and_secrets_kept_private() {
    let lab = pm2_lab(131);
    let repo = reference_repo(&lab);
    let run = apply(&repo);
    // Progress (with each gate's verdict) goes to stderr.
    let said = format!("{}{}", run.stdout, run.stderr);
    for gate in [
        "week1-pushgateways gate 1",
        "week1-nats gate 1",
        "nanoclaw-hardening gate 1: running for",
        "week3-alerting gate 1",
    ] {
        assert!(
            said.contains(&format!("pass {gate}")),
            "{gate} not green:\n{said}"
        );
    }
    assert!(!said.contains(": fail "), "{said}");
    let diff = repo.run(&["diff", "plans/p.toml"]);
    assert_eq!(diff.code, 0, "not in sync:\n{}{}", diff.stdout, diff.stderr);
    // doctor: pm2 and node found, the planned ports held by this root's pm2 programs.
    let doctor = repo.run(&["doctor", "plans/p.toml"]);
    assert_eq!(
        doctor.code, 0,
        "doctor red after apply:\n{}{}",
        doctor.stdout, doctor.stderr
    );

    // Every planned process runs under its root's pm2, which lists exactly them.
    let status = json(&repo.run(&["status", "-o", "json", "plans/p.toml"]));
    let desired = json(&repo.run(&["validate", "-o", "json", "plans/p.toml"]));
    assert_eq!(desired["ok"], true, "{desired}");
    for host in ["mainpc", "pc2"] {
        let h = status["hosts"]
            .as_array()
            .and_then(|a| a.iter().find(|h| h["host"] == host))
            .unwrap_or_else(|| panic!("{host} in {status}"));
        let procs = h["processes"].as_array().expect("processes");
        assert!(procs.len() > 10, "{host}: {procs:?}");
        for p in procs {
            assert_eq!(p["state"], "RUNNING", "{host}: {p}");
        }
        let mut listed = jlist_names(&lab, host);
        let mut reported: Vec<String> = procs
            .iter()
            .filter_map(|p| p["name"].as_str().map(str::to_string))
            .collect();
        listed.sort();
        reported.sort();
        assert_eq!(listed, reported, "{host}");
        let d = daemon(&lab, host).expect("pm2 daemon runs");
        let environ = std::fs::read(format!("/proc/{d}/environ")).unwrap_or_default();
        assert!(
            String::from_utf8_lossy(&environ).contains(&format!(
                "PM2_HOME={}\0",
                lab.root(host).join("run/pm2").display()
            )),
            "the daemon of {host} is its root's own"
        );
    }

    // Secrets: in the 0600 env files and the processes' environments, nowhere else.
    let pid = pid_of(&repo, "mainpc", "nanoclaw").expect("nanoclaw runs");
    let environ = std::fs::read(format!("/proc/{pid}/environ")).expect("environ");
    assert!(String::from_utf8_lossy(&environ).contains(&format!("TELEGRAM_TOKEN={SECRET}")));
    for entry in std::fs::read_dir("/proc").expect("proc").flatten() {
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        assert!(
            !String::from_utf8_lossy(&cmdline).contains(SECRET),
            "secret on the command line of pid {:?}",
            entry.file_name()
        );
    }
    let ps = std::process::Command::new("ps")
        .args(["axww", "-o", "pid,args"])
        .output()
        .expect("ps");
    assert!(!String::from_utf8_lossy(&ps.stdout).contains(SECRET));
    for host in ["mainpc", "pc2"] {
        let root = lab.root(host);
        for f in readable_by_others(&root) {
            let text = std::fs::read(&f).unwrap_or_default();
            assert!(
                !String::from_utf8_lossy(&text).contains(SECRET),
                "secret in {}, which others may read",
                f.display()
            );
        }
        // pm2's own files (its log, pids, dump) are not for others at all.
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(root.join("run/pm2"))
            .expect("PM2_HOME")
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "PM2_HOME of {host} is {mode:o}");
        for eco in std::fs::read_dir(root.join("files/pm2")).expect("ecosystem files") {
            let text = std::fs::read_to_string(eco.expect("entry").path()).unwrap_or_default();
            assert!(!text.contains(SECRET) && !text.contains("TELEGRAM_TOKEN"));
        }
    }
}

/// A two-process plan for mainpc (one with a secret) and one process on pc2.
fn small_plan(with_oracle: bool) -> String {
    let oracle = if with_oracle {
        "[[process]]\nname = \"oracle\"\nhost = \"mainpc\"\ncommand = [\"sleep\", \"infinity\"]\n"
    } else {
        ""
    };
    format!(
        r#"version = 1
name = "pm2-test"

[[process]]
name = "nanoclaw"
host = "mainpc"
command = ["sleep", "infinity"]
env = {{ LOG_LEVEL = "info" }}
secrets = ["TELEGRAM_TOKEN"]
restart_delay = "1s"

[[process]]
name = "relay"
host = "pc2"
command = ["sleep", "infinity"]

{oracle}"#
    )
}

#[test]
fn a_killed_process_comes_back_with_a_new_pid_and_a_removed_one_leaves_no_orphan() {
    let lab = pm2_lab(132);
    let repo = Repo::with_plan(&small_plan(true))
        .env("TELEGRAM_TOKEN", SECRET)
        .commit("plan")
        .with_inventory(lab.inventory());
    apply(&repo);
    assert_eq!(repo.run(&["diff", "plans/p.toml"]).code, 0);
    let daemon_pid = daemon(&lab, "mainpc").expect("pm2 daemon");
    let old = pid_of(&repo, "mainpc", "nanoclaw").expect("nanoclaw runs") as u32;
    assert_eq!(children_with(daemon_pid, "sleep"), {
        let mut v = vec![
            old,
            pid_of(&repo, "mainpc", "oracle").expect("oracle") as u32,
        ];
        v.sort();
        v
    });

    // SIGKILL: pm2 starts it again after its restart delay (1 s). The loop's bound is 5 s
    // (50 looks, 100 ms apart); the new pid must show within it.
    assert!(
        std::process::Command::new("kill")
            .args(["-KILL", &old.to_string()])
            .status()
            .expect("kill")
            .success()
    );
    let mut back = None;
    for _ in 0..50 {
        std::thread::sleep(Duration::from_millis(100));
        let now = children_with(daemon_pid, "sleep");
        if let Some(p) = now.into_iter().find(|p| *p != old && is_nanoclaw(*p)) {
            back = Some(p);
            break;
        }
    }
    let new = back.expect("nanoclaw not back within the loop's 5 s bound after SIGKILL");
    assert_ne!(new, old);
    assert!(!alive(old));
    // status reports the new pid and counts the restart (from pm2's restart count).
    let status = json(&repo.run(&["status", "-o", "json", "plans/p.toml"]));
    let p = status["hosts"]
        .as_array()
        .and_then(|hosts| hosts.iter().find(|h| h["host"] == "mainpc"))
        .and_then(|h| h["processes"].as_array())
        .and_then(|ps| ps.iter().find(|p| p["name"] == "nanoclaw"))
        .cloned()
        .expect("nanoclaw in status");
    assert_eq!(p["pid"], new, "{p}");
    assert_eq!(p["restarts"], 1, "{p}");
    assert_eq!(p["state"], "RUNNING", "{p}");

    // Removal: the program is deleted from pm2, its process is gone, its file too.
    let oracle = pid_of(&repo, "mainpc", "oracle").expect("oracle runs") as u32;
    let repo = repo
        .file("plans/p.toml", &small_plan(false))
        .commit("drop oracle");
    let diff = repo.run(&["diff", "plans/p.toml"]);
    assert!(
        diff.stdout
            .contains("- process oracle: stop and remove (not in the plan)"),
        "{}",
        diff.stdout
    );
    assert!(
        diff.stdout.contains("- file files/pm2/oracle.json: delete"),
        "{}",
        diff.stdout
    );
    apply(&repo);
    assert!(!alive(oracle), "oracle's process {oracle} still runs");
    let names = jlist_names(&lab, "mainpc");
    assert_eq!(
        names,
        vec!["nanoclaw".to_string()],
        "pm2 still lists: {names:?}"
    );
    assert!(!lab.root("mainpc").join("files/pm2/oracle.json").exists());
    assert_eq!(children_with(daemon_pid, "sleep"), vec![new]);
    assert_eq!(repo.run(&["diff", "plans/p.toml"]).code, 0);
}

/// `pid` runs with nanoclaw's env file (the wrapper `exec`s `sleep` with its environment).
fn is_nanoclaw(pid: u32) -> bool {
    std::fs::read(format!("/proc/{pid}/environ"))
        .map(|e| String::from_utf8_lossy(&e).contains("LOG_LEVEL=info"))
        .unwrap_or(false)
}

/// nanoclaw on mainpc; with `more`, a wave adding oracle on mainpc and pc2's first program,
/// whose gate probes a closed port.
fn gated_plan(more: bool) -> String {
    let wave = if more {
        r#"
[[process]]
name = "oracle"
host = "mainpc"
command = ["sleep", "infinity"]

[[process]]
name = "edge-one"
host = "pc2"
command = ["sleep", "infinity"]

[[wave]]
name = "more"
select = ["process.oracle", "process.edge-one"]
[[wave.gate]]
tcp = { host = "mainpc", port = 9 }
timeout = "2s"
interval = "500ms"
"#
    } else {
        ""
    };
    format!(
        r#"version = 1
name = "pm2-gates"

[[process]]
name = "nanoclaw"
host = "mainpc"
command = ["sleep", "infinity"]

[[wave]]
name = "app"
select = ["process.nanoclaw"]
{wave}"#
    )
}

#[test]
fn a_failed_gate_undoes_its_wave_under_pm2_and_a_root_left_empty_keeps_no_daemon() {
    let lab = pm2_lab(136);
    let repo = Repo::with_plan(&gated_plan(false))
        .commit("v1")
        .with_inventory(lab.inventory());
    apply(&repo);
    let nanoclaw = pid_of(&repo, "mainpc", "nanoclaw").expect("nanoclaw runs");
    assert!(daemon(&lab, "pc2").is_none(), "pc2 has nothing to run yet");

    let repo = repo.file("plans/p.toml", &gated_plan(true)).commit("v2");
    let run = repo.run(&["apply", "--yes", "plans/p.toml"]);
    assert_eq!(run.code, 3, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stderr
            .contains("the wave was rolled back on every host it touched"),
        "{}",
        run.stderr
    );
    // mainpc: oracle deleted from pm2 and its file gone; nanoclaw untouched.
    assert_eq!(jlist_names(&lab, "mainpc"), vec!["nanoclaw".to_string()]);
    assert!(!lab.root("mainpc").join("files/pm2/oracle.json").exists());
    assert_eq!(pid_of(&repo, "mainpc", "nanoclaw"), Some(nanoclaw));
    // pc2: its only program is gone, and with it the daemon the wave started.
    assert!(!lab.root("pc2").join("files/pm2/edge-one.json").exists());
    assert!(
        daemon(&lab, "pc2").is_none(),
        "pc2's pm2 daemon outlived the undo of the wave that started it"
    );
    let leftover = lab.ssh("pc2", "pgrep -u \"$(id -u)\" -x sleep || true");
    assert_eq!(leftover.trim(), "", "edge-one still runs on pc2");
    let diff = repo.run(&["diff", "plans/p.toml"]);
    assert_eq!(diff.code, 2, "{}", diff.stdout);
}

#[test]
fn a_program_that_exits_at_once_fails_its_apply_under_pm2() {
    let lab = Lab::up_with(137, 1, &["--supervisor", "pm2"]);
    let plan = "version = 1\nname = \"crash\"\n\n[[process]]\nname = \"crasher\"\nhost = \"mainpc\"\ncommand = [\"false\"]\nrestart_delay = \"100ms\"\nmax_restarts = 3\n";
    let repo = Repo::with_plan(plan)
        .commit("crash")
        .with_inventory(lab.inventory());
    let run = repo.run(&["apply", "--yes", "plans/p.toml"]);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    // pm2 calls it online for a moment after each spawn; the wait wants it online twice in a
    // row with one pid, which it never is. (With a restart delay pm2 leaves it "waiting
    // restart" rather than "errored", so the wait's bound ends it.)
    assert!(
        run.stderr
            .contains("step `wait for processes to run` failed")
            && run.stderr.contains("crasher"),
        "{}",
        run.stderr
    );
    // The failed wave is undone: nothing of it runs, not even the daemon.
    assert!(!lab.root("mainpc").join("files/pm2/crasher.json").exists());
    assert!(daemon(&lab, "mainpc").is_none());
}
