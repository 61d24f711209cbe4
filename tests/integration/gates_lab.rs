//! Wave gates on real machines: a gate that fails rolls its wave back on every host it touched
//! (exit 3) and records only the waves that passed; `on_failure = "pause"` keeps the wave.

use crate::common::Repo;
use crate::lab::Lab;

fn plan(level: &str, heartbeat: &str, gate_port: u16, on_failure: &str) -> String {
    format!(
        r#"version = 1
name = "gates"

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
agents = ["ResourceManager"]
primary_hub = "edge"
heartbeat_interval = "{heartbeat}"

[[process]]
name = "app"
host = "mainpc"
command = ["sleep", "infinity"]
env = {{ LEVEL = "{level}" }}

[[wave]]
name = "infra"
select = ["pushgateway.*", "hub.*"]

[[wave]]
name = "agents"
select = ["batch.*", "process.*"]
on_failure = "{on_failure}"
[[wave.gate]]
tcp = {{ host = "pc2", port = {gate_port} }}
timeout = "3s"
interval = "500ms"
"#
    )
}

fn read(lab: &Lab, host: &str, path: &str) -> String {
    std::fs::read_to_string(lab.root(host).join(path))
        .unwrap_or_else(|e| panic!("{path} on {host}: {e}"))
}

#[test]
fn a_failed_gate_rolls_its_wave_back_everywhere_and_exits_3() {
    let lab = Lab::up(47, 2);
    let repo = Repo::with_plan(&plan("1", "5s", 9091, "rollback"))
        .commit("plan")
        .with_inventory(lab.inventory());
    let first = repo.run(&["apply", "--yes", "plans/p.toml"]);
    assert_eq!(first.code, 0, "{}{}", first.stdout, first.stderr);
    let app_env = read(&lab, "mainpc", "files/env/app.env");
    let agent_env = read(&lab, "pc2", "files/agents/ResourceManager.env");
    assert!(app_env.contains("LEVEL='1'"));

    // The new version of the wave changes both hosts; its gate probes a closed port.
    let repo = repo
        .file("plans/p.toml", &plan("2", "7s", 9, "rollback"))
        .commit("v2 with a failing gate");
    let second = repo.run(&["apply", "--yes", "plans/p.toml"]);
    assert_eq!(second.code, 3, "{}{}", second.stdout, second.stderr);
    assert!(
        second.stderr.contains("wave agents: gate failed: agents gate 1: 127.0.47.3:9 refuses or does not answer; the wave was rolled back on every host it touched"),
        "{}",
        second.stderr
    );
    assert_eq!(
        read(&lab, "mainpc", "files/env/app.env"),
        app_env,
        "mainpc's file is back"
    );
    assert_eq!(
        read(&lab, "pc2", "files/agents/ResourceManager.env"),
        agent_env,
        "pc2's file is back"
    );
    // Nothing of the wave stays: the diff is the same as before, and no generation 2 exists.
    let diff = repo.run(&["diff", "plans/p.toml"]);
    assert_eq!(diff.code, 2);
    assert!(
        diff.stdout.contains("~ file files/env/app.env: update"),
        "{}",
        diff.stdout
    );
    assert!(
        diff.stdout
            .contains("~ process agent-ResourceManager: restart"),
        "{}",
        diff.stdout
    );
    assert!(!lab.root("mainpc").join("generations/2.json").exists());
    assert!(!lab.root("mainpc").join("lock").exists() && !lab.root("pc2").join("lock").exists());
    let journal = read(&lab, "mainpc", "journal.jsonl");
    assert!(
        journal.contains(r#""wave":"rollback agents","step":"restore files/env/app.env""#),
        "{journal}"
    );

    // With `pause`, the same failure keeps the wave applied and recorded.
    let repo = repo
        .file("plans/p.toml", &plan("2", "7s", 9, "pause"))
        .commit("pause");
    let third = repo.run(&["apply", "--yes", "plans/p.toml"]);
    assert_eq!(third.code, 3, "{}{}", third.stdout, third.stderr);
    assert!(
        third
            .stderr
            .contains("the wave stays applied (on_failure = pause)"),
        "{}",
        third.stderr
    );
    assert!(read(&lab, "mainpc", "files/env/app.env").contains("LEVEL='2'"));
    assert!(lab.root("mainpc").join("generations/2.json").exists());
    assert_eq!(repo.run(&["diff", "plans/p.toml"]).code, 0);
}

/// A `process` gate asks the host's supervisord: green once the program has run for its soak
/// time; red (and the wave undone, exit 3) when the timeout ends first.
#[test]
fn a_process_gate_passes_after_its_soak_time_and_fails_before_it() {
    let lab = Lab::up(82, 1);
    let plan = |soak: &str, sleep: &str| {
        format!(
            r#"version = 1
name = "soak"

[[process]]
name = "app"
host = "mainpc"
command = ["sleep", "{sleep}"]
env = {{ SOAK = "{soak}" }}

[[wave]]
name = "app"
select = ["process.*"]
[[wave.gate]]
process = {{ host = "mainpc", name = "app", soak = "{soak}" }}
timeout = "4s"
interval = "500ms"
"#
        )
    };
    let repo = Repo::with_plan(&plan("1s", "infinity"))
        .commit("soak 1s")
        .with_inventory(lab.inventory());
    let ok = repo.run(&["apply", "--yes", "plans/p.toml"]);
    assert_eq!(ok.code, 0, "{}\n{}", ok.stdout, ok.stderr);
    assert!(
        ok.stderr.contains("pass app gate 1: running for"),
        "{}",
        ok.stderr
    );
    // A changed command is a changed program file: supervisord's update replaces the program
    // and it runs again, with the new command.
    let repo = repo
        .file("plans/p.toml", &plan("1s", "100000"))
        .commit("another command");
    let changed = repo.run(&["apply", "--yes", "plans/p.toml"]);
    assert_eq!(changed.code, 0, "{}\n{}", changed.stdout, changed.stderr);
    let pid = crate::common::pid_of(&repo, "mainpc", "app").expect("app runs");
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).expect("cmdline");
    assert_eq!(cmdline, b"sleep\x00100000\x00");
    // The restart the env change brings resets the uptime: 30 s of soak cannot pass in 4 s.
    let repo = repo
        .file("plans/p.toml", &plan("30s", "100000"))
        .commit("soak 30s");
    let red = repo.run(&["apply", "--yes", "plans/p.toml"]);
    assert_eq!(red.code, 3, "{}\n{}", red.stdout, red.stderr);
    assert!(
        red.stderr.contains("needs 30s without a restart"),
        "{}",
        red.stderr
    );
}
