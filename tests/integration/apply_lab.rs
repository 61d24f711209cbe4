//! Apply against real machines: sshd hosts, supervisord, a Pushgateway, a Prometheus hub and
//! agents that push heartbeats. Each test has its own lab network (127.0.4x).

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{Repo, Run, json, pid_of};
use crate::lab::Lab;

const SECRET: &str = "tg-secret-8c1d77e0a9";

/// A plan for a two-machine lab on 127.0.`net`: a hub, a Pushgateway and three agents on pc2,
/// two processes (one with a secret) on mainpc. `solo_heartbeat` is the one-agent batch's
/// heartbeat interval: editing it changes exactly one agent's env file.
fn plan(solo_heartbeat: &str, with_oracle: bool) -> String {
    let oracle = if with_oracle {
        "[[process]]\nname = \"oracle\"\nhost = \"mainpc\"\ncommand = [\"sleep\", \"infinity\"]\n"
    } else {
        ""
    };
    format!(
        r#"version = 1
name = "lab-test"

[[pushgateway]]
name = "gw"
host = "pc2"

[[hub]]
name = "edge"
host = "pc2"
port = 9100

[[batch]]
name = "pilot"
host = "pc2"
agents = ["ResourceManager", "UnifiedUtilsAgent"]
primary_hub = "edge"

[[batch]]
name = "solo"
host = "pc2"
agents = ["ObservabilityHub"]
primary_hub = "edge"
heartbeat_interval = "{solo_heartbeat}"

[[process]]
name = "nanoclaw"
host = "mainpc"
command = ["sleep", "infinity"]
env = {{ LOG_LEVEL = "info" }}
secrets = ["TELEGRAM_TOKEN"]

{oracle}
[[wave]]
name = "infra"
select = ["pushgateway.*", "hub.*"]

[[wave]]
name = "agents"
select = ["batch.*", "process.*"]
"#
    )
}

fn repo(lab: &Lab, text: &str) -> Repo {
    Repo::with_plan(text)
        .env("TELEGRAM_TOKEN", SECRET)
        .commit("plan")
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

#[test]
fn apply_converges_then_changes_only_what_the_plan_changed() {
    let lab = Lab::up(41, 2);
    let repo = repo(&lab, &plan("5s", true));
    let diff = repo.run(&["diff", "plans/p.toml"]);
    assert_eq!(diff.code, 2, "{}", diff.stdout);
    apply(&repo);
    let diff = repo.run(&["diff", "plans/p.toml"]);
    assert_eq!(
        diff.code, 0,
        "not in sync after apply:\n{}{}",
        diff.stdout, diff.stderr
    );
    let again = apply(&repo);
    assert!(
        again.stdout.contains("in sync: nothing to do"),
        "{}",
        again.stdout
    );

    let others = ["ResourceManager", "UnifiedUtilsAgent"]
        .map(|a| pid_of(&repo, "pc2", &format!("agent-{a}")).expect("agent running"));
    let nanoclaw = pid_of(&repo, "mainpc", "nanoclaw").expect("nanoclaw running");
    let solo = pid_of(&repo, "pc2", "agent-ObservabilityHub").expect("solo running");

    let repo = repo
        .file("plans/p.toml", &plan("7s", true))
        .commit("slower solo heartbeat");
    let diff = repo.run(&["diff", "-o", "json", "plans/p.toml"]);
    assert_eq!(diff.code, 2);
    let doc = json(&diff);
    let changes: Vec<(String, String, String)> = doc["hosts"]
        .as_array()
        .expect("hosts")
        .iter()
        .flat_map(|h| {
            h["waves"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .flat_map(|w| w["changes"].as_array().cloned().unwrap_or_default())
        })
        .map(|c| {
            (
                c["kind"].as_str().unwrap_or("").to_string(),
                c["path"]
                    .as_str()
                    .or(c["name"].as_str())
                    .unwrap_or("")
                    .to_string(),
                c["action"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    assert_eq!(
        changes,
        vec![
            (
                "file".into(),
                "files/agents/ObservabilityHub.env".into(),
                "update".into()
            ),
            (
                "process".into(),
                "agent-ObservabilityHub".into(),
                "restart".into()
            ),
        ]
    );
    apply(&repo);
    assert_ne!(
        pid_of(&repo, "pc2", "agent-ObservabilityHub"),
        Some(solo),
        "the edited agent was restarted"
    );
    let after = ["ResourceManager", "UnifiedUtilsAgent"]
        .map(|a| pid_of(&repo, "pc2", &format!("agent-{a}")).expect("agent running"));
    assert_eq!(after, others, "other agents were not touched");
    assert_eq!(
        pid_of(&repo, "mainpc", "nanoclaw"),
        Some(nanoclaw),
        "the other host was not touched"
    );
    // The journal of generation 2 on pc2 has exactly those steps.
    let journal = std::fs::read_to_string(lab.root("pc2").join("journal.jsonl")).expect("journal");
    let steps: Vec<String> = journal
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["generation"] == 2 && l["wave"] != "(finish)")
        .map(|l| l["step"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(
        steps,
        vec![
            "write files/agents/ObservabilityHub.env",
            "restart agent-ObservabilityHub",
            "wait for processes to run"
        ]
    );
    assert!(
        !lab.root("mainpc").join("generations/2.json").exists(),
        "mainpc had nothing to do: no new generation"
    );
}

#[test]
fn a_killed_process_is_back_within_5_seconds_and_a_removed_one_is_gone() {
    let lab = Lab::up(42, 2);
    let repo = repo(&lab, &plan("5s", true));
    apply(&repo);
    let old = pid_of(&repo, "mainpc", "nanoclaw").expect("running");
    let killed = Instant::now();
    assert!(
        std::process::Command::new("kill")
            .args(["-KILL", &old.to_string()])
            .status()
            .expect("kill")
            .success()
    );
    let back = loop {
        match pid_of(&repo, "mainpc", "nanoclaw") {
            Some(pid) if pid != old => break killed.elapsed(),
            _ if killed.elapsed() > Duration::from_secs(5) => {
                panic!("nanoclaw not back 5 s after SIGKILL")
            }
            _ => std::thread::sleep(Duration::from_millis(100)),
        }
    };
    eprintln!("nanoclaw back after {back:?}");
    // The restart is counted (by supervisord's event listener, not from a log).
    let status = json(&repo.run(&["status", "-o", "json", "plans/p.toml"]));
    let restarts = status["hosts"]
        .as_array()
        .and_then(|hosts| hosts.iter().find(|h| h["host"] == "mainpc"))
        .and_then(|h| h["processes"].as_array())
        .and_then(|ps| ps.iter().find(|p| p["name"] == "nanoclaw"))
        .map(|p| p["restarts"].clone());
    assert_eq!(restarts, Some(serde_json::json!(1)), "{status}");

    let oracle = pid_of(&repo, "mainpc", "oracle").expect("oracle running");
    let repo = repo
        .file("plans/p.toml", &plan("5s", false))
        .commit("drop oracle");
    let diff = repo.run(&["diff", "plans/p.toml"]);
    assert!(
        diff.stdout
            .contains("- process oracle: stop and remove (not in the plan)"),
        "{}",
        diff.stdout
    );
    assert!(
        diff.stdout
            .contains("- file files/supervisor/programs/oracle.conf: delete"),
        "{}",
        diff.stdout
    );
    apply(&repo);
    let programs = lab.ssh(
        "mainpc",
        &format!(
            "supervisorctl -c {}/files/supervisor/supervisord.conf status",
            lab.root("mainpc").display()
        ),
    );
    assert!(
        !programs.contains("oracle"),
        "oracle still known to supervisord:\n{programs}"
    );
    assert!(programs.contains("nanoclaw"), "{programs}");
    assert!(
        !lab.root("mainpc")
            .join("files/supervisor/programs/oracle.conf")
            .exists()
    );
    assert!(
        !std::path::Path::new(&format!("/proc/{oracle}/cmdline")).exists()
            || std::fs::read_to_string(format!("/proc/{oracle}/cmdline"))
                .unwrap_or_default()
                .is_empty(),
        "oracle's process {oracle} still runs"
    );
    assert_eq!(repo.run(&["diff", "plans/p.toml"]).code, 0);
}

#[test]
fn a_held_lock_refuses_a_second_apply_with_exit_4_and_names_its_owner() {
    let lab = Lab::up(43, 2);
    // A process that needs 4 s to count as started keeps the first apply busy.
    let slow = plan("5s", true).replace(
        "[[process]]\nname = \"oracle\"",
        "[[process]]\nmin_uptime = \"4s\"\nname = \"oracle\"",
    );
    let repo = repo(&lab, &slow);
    let first = std::process::Command::new(crate::common::bin())
        .args(["apply", "--yes", "-i"])
        .arg(lab.inventory())
        .arg("plans/p.toml")
        .current_dir(repo.path())
        .env("TELEGRAM_TOKEN", SECRET)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("first apply");
    // Wait until the first apply holds its locks.
    let lock = lab.root("mainpc").join("lock");
    let start = Instant::now();
    while !lock.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "first apply never locked"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let first_pid = first.id();
    let second = repo.run(&["apply", "--yes", "plans/p.toml"]);
    let first = first.wait_with_output().expect("first apply ends");
    assert_eq!(
        first.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert_eq!(
        second.code, 4,
        "stdout:\n{}\nstderr:\n{}",
        second.stdout, second.stderr
    );
    assert!(
        second.stderr.contains("is locked by another apply: "),
        "{}",
        second.stderr
    );
    assert!(
        second.stderr.contains(&format!("(pid {first_pid} on ")),
        "the owner is named: {}",
        second.stderr
    );
    assert!(
        second
            .stderr
            .contains("hint: wait for it to finish; if it is dead, run `wavectl unlock"),
        "{}",
        second.stderr
    );
    // The refused apply released nothing of the first's and left no lock of its own.
    assert!(!lock.exists() && !lab.root("pc2").join("lock").exists());
}

#[test]
fn an_unreachable_host_is_reported_within_the_timeout_while_the_other_is_diffed() {
    let lab = Lab::up(44, 2);
    let repo = repo(&lab, &plan("5s", true));
    let sshd = lab.sshd_pid("pc2");
    // A stopped sshd accepts TCP but never answers: the hard case for a timeout.
    assert!(
        std::process::Command::new("kill")
            .args(["-STOP", &sshd.to_string()])
            .status()
            .expect("kill")
            .success()
    );
    struct Resume(i32);
    impl Drop for Resume {
        fn drop(&mut self) {
            let _ = std::process::Command::new("kill")
                .args(["-CONT", &self.0.to_string()])
                .status();
        }
    }
    let _resume = Resume(sshd);
    let start = Instant::now();
    let diff = repo.run(&["diff", "plans/p.toml"]);
    let took = start.elapsed();
    assert_eq!(diff.code, 1, "{}", diff.stdout);
    assert!(
        took < Duration::from_secs(12),
        "diff took {took:?} with a 5 s connect timeout"
    );
    assert!(
        diff.stdout.contains("pc2: unreachable: host pc2: "),
        "{}",
        diff.stdout
    );
    assert!(
        diff.stdout
            .contains("mainpc\n  wave agents\n    + file files/env/nanoclaw.env"),
        "{}",
        diff.stdout
    );
}

#[test]
fn a_secret_is_in_no_output_journal_log_or_command_line() {
    let lab = Lab::up(45, 2);
    let repo = repo(&lab, &plan("5s", true));
    let mut outputs = vec![apply(&repo)];
    for args in [
        vec!["diff", "plans/p.toml"],
        vec!["status", "plans/p.toml"],
        vec!["render", "plans/p.toml"],
        vec!["render", "-o", "json", "plans/p.toml"],
    ] {
        outputs.push(repo.run(&args));
    }
    for o in &outputs {
        assert!(
            !o.stdout.contains(SECRET) && !o.stderr.contains(SECRET),
            "secret in output:\n{}{}",
            o.stdout,
            o.stderr
        );
    }
    // The env file on the host has it, readable by its owner only.
    let env = lab.root("mainpc").join("files/env/nanoclaw.env");
    assert!(
        std::fs::read_to_string(&env)
            .expect("env file")
            .contains(SECRET)
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&env).expect("meta").permissions().mode() & 0o777,
        0o600
    );
    // ... and the process has it in its environment, not on its command line.
    let pid = pid_of(&repo, "mainpc", "nanoclaw").expect("running");
    let environ = std::fs::read(format!("/proc/{pid}/environ")).expect("environ");
    assert!(String::from_utf8_lossy(&environ).contains(&format!("TELEGRAM_TOKEN={SECRET}")));
    for host in ["mainpc", "pc2"] {
        let root = lab.root(host);
        for f in ["journal.jsonl", "state.json"]
            .iter()
            .map(|f| root.join(f))
            .chain(
                std::fs::read_dir(root.join("logs"))
                    .expect("logs")
                    .flatten()
                    .map(|e| e.path()),
            )
        {
            let text = std::fs::read_to_string(&f).unwrap_or_default();
            assert!(!text.contains(SECRET), "secret in {}", f.display());
        }
    }
    for entry in std::fs::read_dir("/proc").expect("proc").flatten() {
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        assert!(
            !String::from_utf8_lossy(&cmdline).contains(SECRET),
            "secret on the command line of pid {:?}",
            entry.file_name()
        );
    }
}

/// Rewrites the lab's ssh files so that `host` fails in the given way.
fn break_ssh(lab: &Lab, edit: impl Fn(&str) -> String, file: &str) {
    let path = lab.inventory().with_file_name(file);
    let text = std::fs::read_to_string(&path).expect("ssh file");
    std::fs::write(&path, edit(&text)).expect("write ssh file");
}

#[test]
fn a_changed_host_key_and_a_refused_key_are_clear_errors() {
    let lab = Lab::up(46, 2);
    let repo = repo(&lab, &plan("5s", true));
    // pc2 presents a key other than the one known_hosts holds for it.
    let other = tempfile::tempdir().expect("temp");
    let key = other.path().join("k");
    let keygen = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key)
        .status()
        .expect("ssh-keygen");
    assert!(keygen.success());
    let fake = std::fs::read_to_string(key.with_extension("pub")).expect("pub key");
    let fake_key = fake
        .split_whitespace()
        .nth(1)
        .expect("key body")
        .to_string();
    break_ssh(
        &lab,
        |text| {
            text.lines()
                .map(|l| {
                    if l.starts_with("pc2") {
                        format!(
                            "{} ssh-ed25519 {fake_key}",
                            l.split_whitespace().next().unwrap_or("pc2")
                        )
                    } else {
                        l.to_string()
                    }
                })
                .collect::<Vec<_>>()
                .join("\n")
                + "\n"
        },
        "known_hosts",
    );
    let diff = repo.run(&["diff", "plans/p.toml"]);
    assert_eq!(diff.code, 1, "{}", diff.stdout);
    assert!(
        diff.stdout
            .contains("pc2: unreachable: host pc2: cannot connect over ssh to `pc2`"),
        "{}",
        diff.stdout
    );
    assert!(
        diff.stdout
            .contains("hint: the host's key is not the one in known_hosts"),
        "{}",
        diff.stdout
    );
    assert!(
        diff.stdout.contains("mainpc\n"),
        "mainpc is still diffed: {}",
        diff.stdout
    );

    // mainpc is offered a key its authorized_keys does not hold.
    break_ssh(
        &lab,
        |text| {
            text.replace(
                &lab.inventory()
                    .with_file_name("id_ed25519")
                    .display()
                    .to_string(),
                &key.display().to_string(),
            )
        },
        "ssh_config",
    );
    let diff = repo.run(&["diff", "plans/p.toml"]);
    assert_eq!(diff.code, 1);
    assert!(
        diff.stdout
            .contains("mainpc: unreachable: host mainpc: cannot connect over ssh to `mainpc`"),
        "{}",
        diff.stdout
    );
    assert!(
        diff.stdout.contains("hint: authentication failed"),
        "{}",
        diff.stdout
    );
}

#[test]
fn a_root_under_the_home_directory_is_resolved_on_the_host() {
    let lab = Lab::up(48, 2);
    // pc2 keeps the inventory's default root, `~/.wavectl`.
    let inventory = std::fs::read_to_string(lab.inventory()).expect("inventory");
    let pc2_root = lab.root("pc2").display().to_string();
    std::fs::write(
        lab.inventory(),
        inventory.replace(&format!("root = \"{pc2_root}\"\n"), ""),
    )
    .expect("write inventory");
    let repo = repo(&lab, &plan("5s", true));
    let render = repo.run(&["render", "--host", "pc2", "plans/p.toml"]);
    assert!(
        render.stdout.contains("# pc2:~/.wavectl/files/"),
        "offline, `~` stays as written:\n{}",
        render.stdout
    );
    apply(&repo);
    let home_root = lab
        .root("pc2")
        .parent()
        .expect("host dir")
        .join("home/.wavectl");
    let conf = std::fs::read_to_string(home_root.join("files/supervisor/supervisord.conf"))
        .expect("supervisord.conf under ~/.wavectl");
    assert!(
        conf.contains(&format!("file={}/run/supervisor.sock", home_root.display())),
        "{conf}"
    );
    assert!(pid_of(&repo, "pc2", "agent-ResourceManager").is_some());
    assert_eq!(repo.run(&["diff", "plans/p.toml"]).code, 0);
}

#[test]
fn a_stale_lock_refuses_apply_until_unlock_shows_and_breaks_it() {
    let lab = Lab::up(49, 2);
    let repo = repo(&lab, &plan("5s", true));
    // An apply that died on another machine left its lock on pc2.
    let stale = r#"{"operator":"ghost@gone","machine":"gone","pid":99999,"started_at":"2026-11-23T03:00:00Z","commit":null,"token":"dead"}"#;
    std::fs::create_dir_all(lab.root("pc2")).expect("root");
    std::fs::write(lab.root("pc2").join("lock"), stale).expect("lock");
    let refused = repo.run(&["apply", "--yes", "plans/p.toml"]);
    assert_eq!(refused.code, 4, "{}", refused.stderr);
    assert!(refused.stderr.contains("host pc2 is locked by another apply: ghost@gone (pid 99999 on gone) since 2026-11-23T03:00:00Z"), "{}", refused.stderr);
    assert!(
        !lab.root("mainpc").join("lock").exists(),
        "the refused apply released the lock it took on mainpc"
    );
    let unasked = repo.run(&["unlock", "pc2"]);
    assert_eq!(unasked.code, 1, "not on a terminal, unlock needs --yes");
    assert!(lab.root("pc2").join("lock").exists());
    let unlock = repo.run(&["unlock", "pc2", "--yes"]);
    assert_eq!(unlock.code, 0, "{}", unlock.stderr);
    assert!(
        unlock.stdout.starts_with(
            "pc2: locked by ghost@gone (pid 99999 on gone) since 2026-11-23T03:00:00Z\n"
        ),
        "{}",
        unlock.stdout
    );
    assert!(!lab.root("pc2").join("lock").exists());
    assert!(
        std::fs::read_to_string(lab.root("pc2").join("journal.jsonl"))
            .expect("journal")
            .contains("unlock (was: ghost@gone")
    );
    apply(&repo);
    assert_eq!(repo.run(&["unlock", "pc2"]).stdout, "pc2: not locked\n");
}

#[test]
fn history_lists_each_hosts_generations_with_commit_and_operator() {
    let lab = Lab::up(40, 2);
    let repo = repo(&lab, &plan("5s", true));
    apply(&repo);
    let repo = repo
        .file("plans/p.toml", &plan("7s", true))
        .commit("second");
    apply(&repo);
    let history = repo.run(&["history", "-o", "json"]);
    assert_eq!(history.code, 0, "{}", history.stderr);
    let doc = json(&history);
    let gens = |host: &str| -> Vec<u64> {
        doc["hosts"]
            .as_array()
            .expect("hosts")
            .iter()
            .find(|h| h["host"] == host)
            .expect("host")["generations"]
            .as_array()
            .expect("generations")
            .iter()
            .map(|g| g["generation"].as_u64().expect("number"))
            .collect()
    };
    assert_eq!(gens("pc2"), vec![1, 2], "pc2 changed twice");
    assert_eq!(
        gens("mainpc"),
        vec![1],
        "the second plan changed nothing on mainpc"
    );
    let human = repo.run(&["history"]).stdout;
    assert!(human.contains("root@"), "the operator is named: {human}");
}
