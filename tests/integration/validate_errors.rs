//! `wavectl validate` on bad input: every problem is reported at its exact `file:line:col`, with
//! the offending line, a caret under the fault and a message that says what was expected; the
//! exit status is 1. Each plan is the minimal valid base plan (`plan`) plus one fault.

use std::process::Command;

use crate::common::{self, Repo, Run};

/// Lines 1-2 of every plan.
const HEADER: &str = "version = 1\nname = \"t\"\n";

/// Lines 3-7 of every plan: one hub on `mainpc` (address 127.0.10.2), port 9100.
const HUB: &str = "\n[[hub]]\nname = \"central\"\nhost = \"mainpc\"\nport = 9100\n";

/// The minimal valid plan followed by `tail`, whose first line is line 8 of the plan.
fn plan(tail: &str) -> String {
    format!("{HEADER}{HUB}{tail}")
}

/// Asserts a failed run (exit 1) whose stderr holds `expected` verbatim.
#[track_caller]
fn assert_reports(run: &Run, expected: &str) {
    assert_eq!(run.code, 1, "exit status; stderr:\n{}", run.stderr);
    assert!(
        run.stderr.contains(expected),
        "stderr lacks:\n{expected}\n--- stderr was:\n{}",
        run.stderr
    );
}

/// Asserts the summary line: exactly `n` problems, so no echo of the fault is reported.
#[track_caller]
fn assert_problem_count(run: &Run, n: usize) {
    let line = if n == 1 {
        "error: 1 problem found\n".to_string()
    } else {
        format!("error: {n} problems found\n")
    };
    assert!(
        run.stderr.ends_with(&line),
        "expected `{line}` at the end of stderr:\n{}",
        run.stderr
    );
}

#[test]
fn the_base_plan_is_valid() {
    let run = Repo::with_plan(&plan("")).validate();
    assert_eq!(run.code, 0, "stderr:\n{}", run.stderr);
    assert!(
        run.stdout
            .starts_with("plans/p.toml: ok: plan t with 1 hosts"),
        "{}",
        run.stdout
    );
}

#[test]
fn malformed_toml_unclosed_string_points_at_the_end_of_the_line() {
    // Line 10: `name = "edge` — the string runs to the end of the line (column 13).
    let run = Repo::with_plan(&plan(
        "\n[[hub]]\nname = \"edge\nhost = \"pc2\"\nport = 9101\n",
    ))
    .validate();
    assert_reports(
        &run,
        "plans/p.toml:10:13: error: invalid basic string, expected `\"`\n   |\n10 | name = \"edge\n   |             ^\n",
    );
    assert_problem_count(&run, 1);
}

#[test]
fn malformed_toml_unclosed_array_table_header_points_after_it() {
    // Line 9: `[[hub]` — the second `]` is missing at column 7.
    let run = Repo::with_plan(&plan(
        "\n[[hub]\nname = \"edge\"\nhost = \"pc2\"\nport = 9101\n",
    ))
    .validate();
    assert_reports(
        &run,
        "plans/p.toml:9:7: error: unclosed array table, expected `]`\n  |\n9 | [[hub]\n  |       ^\n",
    );
}

#[test]
fn unknown_key_in_a_hub_lists_the_fields_a_hub_has() {
    let run = Repo::with_plan(&plan(
        "\n[[hub]]\nname = \"edge\"\nhost = \"pc2\"\nprot = 9100\n",
    ))
    .validate();
    assert_reports(
        &run,
        "plans/p.toml:12:1: error: unknown field `prot`, expected one of `name`, `host`, `port`, `scrape_interval`, `retention`, `remote_write`, `alert_rules`, `evaluation_interval`, `alerting`, `blackbox`, `health`\n   |\n12 | prot = 9100\n   | ^^^^\n",
    );
    assert_problem_count(&run, 1);
}

#[test]
fn unknown_top_level_key_lists_the_top_level_keys() {
    // Line 3, before the first table.
    let text = format!("{HEADER}colour = \"blue\"\n{HUB}");
    let run = Repo::with_plan(&text).validate();
    assert_reports(
        &run,
        "plans/p.toml:3:1: error: unknown key `colour`, expected one of `version`, `name`, `vars`, `hub`, `pushgateway`, `nats`, `stream`, `batch`, `process`, `migration`, `file`, `alertmanager`, `blackbox`, `wave`, `drill`\n  |\n3 | colour = \"blue\"\n  | ^^^^^^\n",
    );
    assert_problem_count(&run, 1);
}

#[test]
fn wrong_type_port_as_string_points_at_the_value() {
    let run = Repo::with_plan(&plan(
        "\n[[hub]]\nname = \"edge\"\nhost = \"pc2\"\nport = \"9100\"\n",
    ))
    .validate();
    assert_reports(
        &run,
        "plans/p.toml:12:8: error: invalid type: string \"9100\", expected u16\n   |\n12 | port = \"9100\"\n   |        ^^^^^^\n",
    );
    assert_problem_count(&run, 1);
}

#[test]
fn missing_required_field_points_at_the_table_header() {
    let run = Repo::with_plan(&plan("\n[[hub]]\nname = \"edge\"\nhost = \"pc2\"\n")).validate();
    assert_reports(
        &run,
        "plans/p.toml:9:1: error: missing field `port`\n  |\n9 | [[hub]]\n  | ^^^^^^^\n",
    );
    assert_problem_count(&run, 1);
}

#[test]
fn duplicate_hub_names_point_at_the_second_name() {
    // Same name, another host and so no port clash: only the duplicate is wrong.
    let run = Repo::with_plan(&plan(
        "\n[[hub]]\nname = \"central\"\nhost = \"pc2\"\nport = 9100\n",
    ))
    .validate();
    assert_reports(
        &run,
        "plans/p.toml:10:8: error: duplicate hub name `central`, expected each hub to have a unique name\n   |\n10 | name = \"central\"\n   |        ^^^^^^^^^\n",
    );
    assert_problem_count(&run, 1);
}

#[test]
fn dangling_primary_hub_names_the_hubs_that_exist() {
    let run = Repo::with_plan(&plan(
        r#"
[[pushgateway]]
name = "gw"
host = "mainpc"

[[nats]]
name = "n"
host = "mainpc"
port = 4222
monitor_port = 8222

[[batch]]
name = "pilot"
host = "mainpc"
agents = ["a1"]
primary_hub = "edge"
"#,
    ))
    .validate();
    assert_reports(
        &run,
        "plans/p.toml:23:15: error: `primary_hub` refers to hub `edge`, which does not exist; expected one of `central`\n   |\n23 | primary_hub = \"edge\"\n   |               ^^^^^^\n",
    );
    assert_problem_count(&run, 1);
}

#[test]
fn wave_selector_matching_nothing_points_at_that_selector() {
    let run = Repo::with_plan(&plan(
        "\n[[wave]]\nname = \"w1\"\nselect = [\"hub.central\", \"hub.nosuch\"]\n",
    ))
    .validate();
    assert_reports(
        &run,
        "plans/p.toml:11:26: error: wave `w1` selects `hub.nosuch`, which matches no resource of the plan\n   |\n11 | select = [\"hub.central\", \"hub.nosuch\"]\n   |                          ^^^^^^^^^^^^\n",
    );
    assert_problem_count(&run, 1);
}

#[test]
fn process_on_a_host_not_in_the_inventory_names_the_known_hosts() {
    let run = Repo::with_plan(&plan(
        "\n[[process]]\nname = \"app\"\nhost = \"pc3\"\ncommand = [\"/bin/true\"]\n",
    ))
    .validate();
    assert_reports(
        &run,
        "plans/p.toml:11:8: error: process `app` is on host `pc3`, which is not in the inventory; expected one of `mainpc`, `pc2`\n   |\n11 | host = \"pc3\"\n   |        ^^^^^\n",
    );
    assert_problem_count(&run, 1);
}

#[test]
fn two_listeners_on_the_same_address_and_port_clash() {
    // A hub and then a Pushgateway, both on mainpc:9091; the later one is reported.
    let run = Repo::with_plan(&plan(
        r#"
[[hub]]
name = "edge"
host = "mainpc"
port = 9091

[[pushgateway]]
name = "gw"
host = "mainpc"
port = 9091
"#,
    ))
    .validate();
    assert_reports(
        &run,
        "plans/p.toml:17:8: error: port 9091 on 127.0.10.2 (host `mainpc`) is already used by hub.edge; pushgateway.gw needs another port\n   |\n17 | port = 9091\n   |        ^^^^\n",
    );
    assert_problem_count(&run, 1);
}

#[test]
fn the_same_port_on_two_hosts_is_no_clash() {
    let run = Repo::with_plan(&plan(
        "\n[[hub]]\nname = \"edge\"\nhost = \"pc2\"\nport = 9100\n",
    ))
    .validate();
    assert_eq!(run.code, 0, "stderr:\n{}", run.stderr);
}

#[test]
fn wave_after_cycle_names_the_cycle() {
    let run = Repo::with_plan(&plan(
        r#"
[[wave]]
name = "a"
select = ["hub.central"]
after = ["b"]

[[wave]]
name = "b"
select = ["hub.*"]
after = ["a"]
"#,
    ))
    .validate();
    assert_reports(
        &run,
        "plans/p.toml:12:10: error: waves `after` each other in a cycle: a -> b -> a\n   |\n12 | after = [\"b\"]\n   |          ^^^\n",
    );
    assert_problem_count(&run, 1);
}

/// BUG (src/plan/validate.rs `waves`): the cycle is reported at the first entry of the first
/// wave's `after` list even when that entry is not part of the cycle. Here wave `a` has
/// `after = ["z", "b"]`; `z` is fine and `b` closes the cycle, but the error points at `"z"`
/// (16:10) instead of `"b"` (16:15).
#[test]
fn wave_after_cycle_points_at_the_entry_that_closes_the_cycle() {
    let run = Repo::with_plan(&plan(
        r#"
[[wave]]
name = "z"
select = ["hub.*"]

[[wave]]
name = "a"
select = ["hub.central"]
after = ["z", "b"]

[[wave]]
name = "b"
select = ["hub.*"]
after = ["a"]
"#,
    ))
    .validate();
    assert_reports(
        &run,
        "plans/p.toml:16:15: error: waves `after` each other in a cycle: a -> b -> a\n   |\n16 | after = [\"z\", \"b\"]\n   |               ^^^\n",
    );
}

#[test]
fn jetstream_cluster_of_two_servers_has_no_fault_tolerance() {
    let run = Repo::with_plan(&plan(
        r#"
[[nats]]
name = "n1"
host = "mainpc"
port = 4222
monitor_port = 8222
cluster = "js"
cluster_port = 6222

[[nats]]
name = "n2"
host = "pc2"
port = 4222
monitor_port = 8222
cluster = "js"
cluster_port = 6222
"#,
    ))
    .validate();
    assert_reports(
        &run,
        "plans/p.toml:22:11: error: JetStream cluster `js` has 2 servers (`n1`, `n2`): its meta group needs both, so losing either machine stops JetStream; expected 3 or more servers\n   |\n22 | cluster = \"js\"\n   |           ^^^^\n\
         hint: for two machines, give each server its own `domain`, link them with `leafnode_remotes`, and let each side's aggregate stream source the other's stream\n",
    );
    assert_problem_count(&run, 1);
}

/// A process that needs the secret `WAVECTL_IT_SECRET` (a name no real environment sets).
fn plan_with_secret() -> String {
    plan(
        "\n[[process]]\nname = \"app\"\nhost = \"mainpc\"\ncommand = [\"/bin/true\"]\nsecrets = [\"WAVECTL_IT_SECRET\"]\n",
    )
}

#[test]
fn secret_not_provided_says_how_to_provide_it() {
    let run = Repo::with_plan(&plan_with_secret()).validate();
    assert_reports(
        &run,
        "plans/p.toml:13:12: error: secret `WAVECTL_IT_SECRET` is not provided\n   |\n13 | secrets = [\"WAVECTL_IT_SECRET\"]\n   |            ^^^^^^^^^^^^^^^^^^^\n\
         hint: export WAVECTL_IT_SECRET in the environment, or add `WAVECTL_IT_SECRET = \"...\"` to the secrets file (--secrets-file, outside the plan repo)\n",
    );
    assert_problem_count(&run, 1);
}

#[test]
fn secret_provided_in_the_environment_validates_and_is_never_printed_or_written() {
    let value = "s3cr3t-it-value-81f2";
    let repo = Repo::with_plan(&plan_with_secret()).env("WAVECTL_IT_SECRET", value);
    for args in [
        &["validate", "plans/p.toml"][..],
        &["validate", "--output", "json", "plans/p.toml"],
    ] {
        let run = repo.run(args);
        assert_eq!(run.code, 0, "{args:?}: stderr:\n{}", run.stderr);
        assert!(
            !run.stdout.contains(value) && !run.stderr.contains(value),
            "{args:?} printed the secret:\n{run:?}"
        );
    }
    let run = repo.validate();
    assert!(
        run.stdout.starts_with("plans/p.toml: ok: plan t "),
        "{}",
        run.stdout
    );
    // Offline validation writes nothing into the plan repo, let alone the secret.
    let mut files = Vec::new();
    list_files(repo.path(), &mut files);
    files.sort();
    let expected = ["inventories/lab.toml", "plans/p.toml"].map(|f| repo.path().join(f));
    assert_eq!(files, expected);
}

fn list_files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read dir") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            list_files(&path, out);
        } else {
            out.push(path);
        }
    }
}

#[test]
fn template_override_that_fails_to_render_points_into_the_template() {
    let run = Repo::with_plan(&plan(""))
        .file(
            "templates/prometheus.yml.tera",
            "# custom\nglobal:\n  scrape_interval: {{ nosuchvar }}\n",
        )
        .validate();
    assert_reports(
        &run,
        "templates/prometheus.yml.tera:3:23: error: template `prometheus.yml.tera`: Variable `nosuchvar` is not defined. Available variables: alertmanagers, host, hub, plan, remote_write, root, scrape\n  |\n3 |   scrape_interval: {{ nosuchvar }}\n  |                       ^^^^^^^^^\n",
    );
    assert_problem_count(&run, 1);
}

#[test]
fn template_override_that_fails_to_parse_points_into_the_template() {
    // Line 3 closes `{{` with a single `}` at column 43.
    let run = Repo::with_plan(&plan(""))
        .file(
            "templates/prometheus.yml.tera",
            "# custom\nglobal:\n  scrape_interval: {{ hub.scrape_interval }\n",
        )
        .validate();
    assert_reports(
        &run,
        "templates/prometheus.yml.tera:3:43: error: template `prometheus.yml.tera`: Found `}` but expected }}.\n  |\n3 |   scrape_interval: {{ hub.scrape_interval }\n  |                                           ^\n",
    );
    assert_problem_count(&run, 1);
}

#[test]
fn migration_directory_with_a_gap_and_a_missing_down_file_reports_both() {
    let run = Repo::with_plan(&plan(
        "\n[[migration]]\nname = \"db\"\nhost = \"mainpc\"\ndatabase = \"app.db\"\ndir = \"migrations/app\"\n",
    ))
    .file("migrations/app/0001_a.up.sql", "CREATE TABLE a (x);\n")
    .file("migrations/app/0003_c.up.sql", "CREATE TABLE c (x);\n")
    .file("migrations/app/0003_c.down.sql", "DROP TABLE c;\n")
    .validate();
    let caret = "   |\n13 | dir = \"migrations/app\"\n   |       ^^^^^^^^^^^^^^^^\n";
    assert_reports(
        &run,
        &format!(
            "plans/p.toml:13:7: error: migrations/app/0001_a.down.sql is missing, expected a down migration (or `-- wavectl: irreversible` in the up file)\n{caret}"
        ),
    );
    assert_reports(
        &run,
        &format!(
            "plans/p.toml:13:7: error: migrations/app: migration 0003_c follows a gap, expected 0002 next (numbers must run 0001, 0002, ... without gaps)\n{caret}"
        ),
    );
    assert_problem_count(&run, 2);
}

/// A plan with three independent cross-reference faults: a stream on a server that does not
/// exist (line 11), a process on a host not in the inventory (line 16) and a wave selector that
/// matches nothing (line 21).
fn plan_with_three_faults() -> String {
    plan(
        r#"
[[stream]]
name = "S"
server = "nats-nowhere"
subjects = ["s.>"]

[[process]]
name = "app"
host = "pc3"
command = ["/bin/true"]

[[wave]]
name = "all"
select = ["hub.*", "stream.*", "process.*", "batch.pilot"]
"#,
    )
}

#[test]
fn independent_problems_are_all_reported_in_one_run() {
    let run = Repo::with_plan(&plan_with_three_faults()).validate();
    assert_reports(
        &run,
        "plans/p.toml:11:10: error: `server` refers to nats `nats-nowhere`, which does not exist; the plan has no nats server\n   |\n11 | server = \"nats-nowhere\"\n   |          ^^^^^^^^^^^^^^\n",
    );
    assert_reports(
        &run,
        "plans/p.toml:16:8: error: process `app` is on host `pc3`, which is not in the inventory; expected one of `mainpc`, `pc2`\n   |\n16 | host = \"pc3\"\n   |        ^^^^^\n",
    );
    assert_reports(
        &run,
        "plans/p.toml:21:45: error: wave `all` selects `batch.pilot`, which matches no resource of the plan\n   |\n21 | select = [\"hub.*\", \"stream.*\", \"process.*\", \"batch.pilot\"]\n   |                                             ^^^^^^^^^^^^^\n",
    );
    assert_problem_count(&run, 3);
}

#[test]
fn json_output_gives_file_line_column_message_and_hint() {
    // The three faults of `plan_with_three_faults` plus a secret nobody provides (line 18).
    let text = plan_with_three_faults().replace(
        "command = [\"/bin/true\"]\n",
        "command = [\"/bin/true\"]\nsecrets = [\"WAVECTL_IT_SECRET\"]\n",
    );
    let run = Repo::with_plan(&text).run(&["validate", "--output", "json", "plans/p.toml"]);
    assert_eq!(run.code, 1, "stderr:\n{}", run.stderr);
    assert_eq!(run.stderr, "", "JSON mode prints nothing else");
    let doc: serde_json::Value =
        serde_json::from_str(&run.stdout).expect("stdout is one JSON document");
    assert_eq!(doc["ok"], false);
    let mut problems: Vec<(String, u64, u64, String, Option<String>)> = doc["problems"]
        .as_array()
        .expect("problems is an array")
        .iter()
        .map(|p| {
            (
                p["file"].as_str().expect("file").to_string(),
                p["line"].as_u64().expect("line"),
                p["column"].as_u64().expect("column"),
                p["message"].as_str().expect("message").to_string(),
                p["hint"].as_str().map(str::to_string),
            )
        })
        .collect();
    problems.sort_by_key(|p| (p.1, p.2));
    let f = "plans/p.toml".to_string();
    assert_eq!(
        problems,
        vec![
            (
                f.clone(),
                11,
                10,
                "`server` refers to nats `nats-nowhere`, which does not exist; the plan has no nats server".into(),
                None
            ),
            (
                f.clone(),
                16,
                8,
                "process `app` is on host `pc3`, which is not in the inventory; expected one of `mainpc`, `pc2`".into(),
                None
            ),
            (
                f.clone(),
                18,
                12,
                "secret `WAVECTL_IT_SECRET` is not provided".into(),
                Some("export WAVECTL_IT_SECRET in the environment, or add `WAVECTL_IT_SECRET = \"...\"` to the secrets file (--secrets-file, outside the plan repo)".into())
            ),
            (
                f,
                22,
                45,
                "wave `all` selects `batch.pilot`, which matches no resource of the plan".into(),
                None
            ),
        ]
    );
}

#[test]
fn json_output_on_malformed_toml_gives_the_position() {
    let run = Repo::with_plan(&plan(
        "\n[[hub]]\nname = \"edge\nhost = \"pc2\"\nport = 9101\n",
    ))
    .run(&["validate", "--output", "json", "plans/p.toml"]);
    assert_eq!(run.code, 1, "stderr:\n{}", run.stderr);
    let doc: serde_json::Value =
        serde_json::from_str(&run.stdout).expect("stdout is one JSON document");
    assert_eq!(
        doc,
        serde_json::json!({
            "ok": false,
            "problems": [{
                "file": "plans/p.toml",
                "line": 10,
                "column": 13,
                "message": "invalid basic string, expected `\"`",
                "hint": null,
            }],
        })
    );
}

#[test]
fn the_checked_in_phase2_plan_validates() {
    let out = Command::new(common::bin())
        .args(["validate", "plans/phase2.toml"])
        .current_dir(common::project_root())
        .env_remove("WAVECTL_SECRETS_FILE")
        .env("NO_COLOR", "1")
        .env("TELEGRAM_TOKEN", "it-telegram-token-5c1e")
        .output()
        .expect("run wavectl");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "stderr:\n{stderr}");
    assert!(
        stdout.starts_with("plans/phase2.toml: ok: plan phase2-resilience "),
        "{stdout}"
    );
    assert!(
        !stdout.contains("it-telegram-token-5c1e") && !stderr.contains("it-telegram-token-5c1e")
    );
}

#[test]
fn a_name_that_cannot_be_a_file_or_program_name_is_rejected() {
    let run = Repo::with_plan(&plan(
        "\n[[process]]\nname = \"my app\"\nhost = \"mainpc\"\ncommand = [\"sleep\", \"1\"]\n",
    ))
    .validate();
    assert_reports(
        &run,
        "plans/p.toml:10:8: error: invalid name `my app`, expected 1 to 64 letters, digits, `-`, `_` or `.`, starting with a letter or digit\n",
    );
    assert_problem_count(&run, 1);
}
