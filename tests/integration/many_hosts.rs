//! One resource on many hosts: a `[[process]]` or `[[file]]` with `hosts` (names, `*`,
//! `group:NAME`) is refused at the exact position of what is wrong with it, and on a real lab
//! runs once on every host it picks, each instance named with its host in `diff` and `status`.

use crate::common::{self, Repo, Run};
use crate::lab::Lab;

/// Lines 1-7 of every plan: one hub on `mainpc`.
const BASE: &str =
    "version = 1\nname = \"t\"\n\n[[hub]]\nname = \"central\"\nhost = \"mainpc\"\nport = 9100\n";

/// The base plan followed by `tail`, whose first line is line 8.
fn plan(tail: &str) -> String {
    format!("{BASE}{tail}")
}

/// Asserts exit 1 with exactly one problem, reported as `expected` (position, message, line and
/// caret).
#[track_caller]
fn assert_only_problem(run: &Run, expected: &str) {
    assert_eq!(run.code, 1, "exit status; stderr:\n{}", run.stderr);
    assert_eq!(
        run.stderr,
        format!("{expected}error: 1 problem found\n"),
        "stderr"
    );
}

#[test]
fn an_unknown_host_in_hosts_is_reported_at_that_entry() {
    let run = Repo::with_plan(&plan(
        "\n[[process]]\nname = \"exp\"\nhosts = [\"mainpc\", \"pc9\"]\ncommand = [\"/bin/true\"]\n",
    ))
    .validate();
    assert_only_problem(
        &run,
        "plans/p.toml:11:20: error: process `exp` is on host `pc9`, which is not in the inventory; expected one of `mainpc`, `pc2`\n   |\n11 | hosts = [\"mainpc\", \"pc9\"]\n   |                    ^^^^^\n",
    );
}

#[test]
fn an_empty_hosts_is_reported_at_the_list() {
    let run = Repo::with_plan(&plan(
        "\n[[process]]\nname = \"exp\"\nhosts = []\ncommand = [\"/bin/true\"]\n",
    ))
    .validate();
    assert_only_problem(
        &run,
        "plans/p.toml:11:9: error: process `exp` has an empty `hosts`, expected at least one host name or selector\n   |\n11 | hosts = []\n   |         ^^\n",
    );
}

#[test]
fn host_and_hosts_together_are_reported_at_hosts() {
    let run = Repo::with_plan(&plan(
        "\n[[process]]\nname = \"exp\"\nhost = \"mainpc\"\nhosts = [\"pc2\"]\ncommand = [\"/bin/true\"]\n",
    ))
    .validate();
    assert_only_problem(
        &run,
        "plans/p.toml:12:9: error: process `exp` has both `host` and `hosts`, expected exactly one of them\n   |\n12 | hosts = [\"pc2\"]\n   |         ^^^^^^^\n",
    );
}

#[test]
fn neither_host_nor_hosts_is_reported_at_the_name() {
    let run = Repo::with_plan(&plan(
        "\n[[process]]\nname = \"exp\"\ncommand = [\"/bin/true\"]\n",
    ))
    .validate();
    assert_only_problem(
        &run,
        "plans/p.toml:10:8: error: process `exp` has neither `host` nor `hosts`, expected `host = \"NAME\"` or `hosts = [\"NAME\", ...]` (or `\"*\"`, `\"group:NAME\"`)\n   |\n10 | name = \"exp\"\n   |        ^^^^^\n",
    );
}

#[test]
fn a_name_twice_on_one_host_is_reported_at_the_second_entry() {
    // `*` puts `exp` on mainpc and pc2; the second entry puts it on pc2 again.
    let run = Repo::with_plan(&plan(
        "\n[[process]]\nname = \"exp\"\nhosts = \"*\"\ncommand = [\"/bin/true\"]\n\n[[process]]\nname = \"exp\"\nhost = \"pc2\"\ncommand = [\"/bin/true\"]\n",
    ))
    .validate();
    assert_only_problem(
        &run,
        "plans/p.toml:15:8: error: duplicate process name `exp` on host `pc2`, expected each process to have a unique name on its host\n   |\n15 | name = \"exp\"\n   |        ^^^^^\n",
    );
}

#[test]
fn a_host_twice_in_one_list_is_reported_at_the_second_mention() {
    let run = Repo::with_plan(&plan(
        "\n[[process]]\nname = \"exp\"\nhosts = [\"pc2\", \"mainpc\", \"pc2\"]\ncommand = [\"/bin/true\"]\n",
    ))
    .validate();
    assert_only_problem(
        &run,
        "plans/p.toml:11:27: error: process `exp` names host `pc2` twice in `hosts`, expected each host once\n   |\n11 | hosts = [\"pc2\", \"mainpc\", \"pc2\"]\n   |                           ^^^^^\n",
    );
}

#[test]
fn the_same_name_on_two_hosts_is_valid() {
    let run = Repo::with_plan(&plan(
        "\n[[file]]\nname = \"motd\"\nhost = \"mainpc\"\npath = \"motd\"\ncontent = \"a\"\n\n[[file]]\nname = \"motd\"\nhost = \"pc2\"\npath = \"motd\"\ncontent = \"b\"\n",
    ))
    .validate();
    assert_eq!(run.code, 0, "stderr:\n{}", run.stderr);
}

#[test]
fn a_group_selector_matching_no_host_is_reported_at_the_selector() {
    let run = Repo::with_plan(&plan(
        "\n[[file]]\nname = \"motd\"\nhosts = \"group:edge\"\npath = \"motd\"\ncontent = \"hi\"\n",
    ))
    .validate();
    assert_only_problem(
        &run,
        "plans/p.toml:11:9: error: file `motd`: `group:edge` matches no host of the inventory; no host of the inventory has `groups`\n   |\n11 | hosts = \"group:edge\"\n   |         ^^^^^^^^^^^^\n",
    );
}

#[test]
fn an_unknown_group_names_the_groups_of_the_inventory() {
    let inventory = common::INVENTORY.replace(
        "root = \"/srv/wv/pc2\"",
        "root = \"/srv/wv/pc2\"\ngroups = [\"edge\", \"lab\"]",
    );
    let run = Repo::with_plan(&plan(
        "\n[[process]]\nname = \"exp\"\nhosts = [\"mainpc\", \"group:egde\"]\ncommand = [\"/bin/true\"]\n",
    ))
    .file("inventories/lab.toml", &inventory)
    .validate();
    assert_only_problem(
        &run,
        "plans/p.toml:11:20: error: process `exp`: `group:egde` matches no host of the inventory; expected one of `group:edge`, `group:lab`\n   |\n11 | hosts = [\"mainpc\", \"group:egde\"]\n   |                    ^^^^^^^^^^^^\n",
    );
}

#[test]
fn a_malformed_selector_is_reported_at_its_value() {
    let run = Repo::with_plan(&plan(
        "\n[[process]]\nname = \"exp\"\nhosts = [\"mainpc\", \"group:\"]\ncommand = [\"/bin/true\"]\n",
    ))
    .validate();
    assert_only_problem(
        &run,
        "plans/p.toml:11:20: error: invalid host selector `group:`, expected a host name, `*` (every host of the inventory) or `group:NAME` (the hosts of an inventory group)\n   |\n11 | hosts = [\"mainpc\", \"group:\"]\n   |                    ^^^^^^^^\n",
    );
}

#[test]
fn a_wave_gate_probe_still_needs_its_host() {
    let run = Repo::with_plan(&plan(
        "\n[[wave]]\nname = \"w\"\nselect = [\"hub.*\"]\n[[wave.gate]]\ntcp = { port = 9100 }\n",
    ))
    .validate();
    assert_only_problem(
        &run,
        "plans/p.toml:12:1: error: missing field `host` in the probe, expected the host it runs on (only a process's `health` defaults to the process's host)\n   |\n12 | [[wave.gate]]\n   | ^^^^^^^^^^^^^\n",
    );
}

const HOSTS: [&str; 3] = ["mainpc", "pc2", "host3"];

/// One `[[process]]` on every host of a 3-host lab: its `health` (no host given) and the wave's
/// `process` gate (host3's instance) run per host.
const EVERYWHERE: &str = r#"version = 1
name = "everywhere"

[[process]]
name = "exporter"
hosts = "*"
command = ["sleep", "100000"]
env = { SOURCE = "{{ host.name }}" }
health = { process = { name = "exporter", soak = "1s" }, timeout = "30s", interval = "500ms" }

[[wave]]
name = "exporters"
select = ["process.exporter"]
[[wave.gate]]
process = { host = "host3", name = "exporter", soak = "1s" }
timeout = "30s"
interval = "500ms"
"#;

#[test]
fn a_process_on_every_host_runs_once_on_each_and_each_instance_is_named_with_its_host() {
    let lab = Lab::up(120, 3);
    let repo = Repo::with_plan(EVERYWHERE)
        .commit("exporter everywhere")
        .with_inventory(lab.inventory());

    // Before: the JSON diff starts the exporter on each host, under that host.
    let before = repo.run(&["diff", "-o", "json", "plans/p.toml"]);
    assert_eq!(before.code, 2, "{}{}", before.stdout, before.stderr);
    let diff = common::json(&before);
    for host in HOSTS {
        let h = diff["hosts"]
            .as_array()
            .expect("hosts")
            .iter()
            .find(|h| h["host"] == host)
            .unwrap_or_else(|| panic!("no diff for {host}: {diff}"));
        let starts: Vec<_> = h["waves"]
            .as_array()
            .expect("waves")
            .iter()
            .flat_map(|w| w["changes"].as_array().cloned().unwrap_or_default())
            .filter(|c| c["kind"] == "process" && c["name"] == "exporter")
            .collect();
        assert_eq!(starts.len(), 1, "{host}: {h}");
        assert_eq!(starts[0]["action"], "start", "{host}: {h}");
    }

    // The human diff: under each host's heading, the exporter's start.
    let human = repo.run(&["diff", "plans/p.toml"]);
    assert_eq!(human.code, 2, "{}{}", human.stdout, human.stderr);
    for host in HOSTS {
        let section: String = human
            .stdout
            .split_inclusive('\n')
            .skip_while(|l| l.trim_end() != host)
            .skip(1)
            .take_while(|l| l.starts_with(' '))
            .collect();
        assert!(
            section.contains("    + process exporter: start (new)\n"),
            "{host}:\n{}",
            human.stdout
        );
    }

    let apply = repo.run(&["apply", "--yes", "plans/p.toml"]);
    assert_eq!(apply.code, 0, "{}\n{}", apply.stdout, apply.stderr);

    for host in HOSTS {
        let gate = format!("gate exporters: pass process exporter health on {host}: ");
        assert!(apply.stderr.contains(&gate), "{gate}\n{}", apply.stderr);
    }

    // Running on every host, rendered with its own host, its health green there.
    let status = common::json(&repo.run(&["status", "-o", "json", "plans/p.toml"]));
    let mut pids = Vec::new();
    for host in HOSTS {
        let env = std::fs::read_to_string(lab.root(host).join("files/env/exporter.env"))
            .unwrap_or_else(|e| panic!("{host}'s env file: {e}"));
        assert!(env.contains(&format!("SOURCE='{host}'")), "{host}: {env}");
        let h = status["hosts"]
            .as_array()
            .expect("hosts")
            .iter()
            .find(|h| h["host"] == host)
            .unwrap_or_else(|| panic!("no status for {host}: {status}"));
        let p = h["processes"]
            .as_array()
            .expect("processes")
            .iter()
            .find(|p| p["name"] == "exporter")
            .unwrap_or_else(|| panic!("no exporter on {host}: {h}"));
        assert_eq!(p["state"], "RUNNING", "{host}: {p}");
        let pid = p["pid"].as_u64().expect("pid");
        let health = h["probes"]
            .as_array()
            .expect("probes")
            .iter()
            .find(|p| p["name"] == format!("process exporter health on {host}"))
            .unwrap_or_else(|| panic!("no health probe on {host}: {h}"));
        assert_eq!(health["passed"], true, "{host}: {health}");
        // The pid is a live `sleep` of that host's own user.
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline"))
            .unwrap_or_else(|e| panic!("pid {pid} of {host}: {e}"));
        assert_eq!(cmdline, b"sleep\x00100000\x00", "pid {pid} of {host}");
        let proc_status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
        let uid = lab.ssh(host, "id -u");
        assert!(
            proc_status.contains(&format!("Uid:\t{}\t", uid.trim())),
            "pid {pid} runs as {host}'s user (uid {uid}):\n{proc_status}"
        );
        pids.push(pid);
    }
    pids.sort_unstable();
    pids.dedup();
    assert_eq!(pids.len(), 3, "one process per host: {pids:?}");

    let after = repo.run(&["diff", "plans/p.toml"]);
    assert_eq!(after.code, 0, "{}{}", after.stdout, after.stderr);
}
