//! `wavectl report` on a real lab: a Pushgateway stopped for a measured while shows as one
//! outage of that length (within a scrape interval) in the central hub's data, the batch that
//! pushes through it loses heartbeat coverage, the short history is said, and the SVG parses
//! with one line series per watched component.

use std::time::{Duration, Instant};

use crate::common::{Repo, Run, json};
use crate::lab::Lab;

const PLAN: &str = r#"version = 1
name = "report-lab"

[[pushgateway]]
name = "pg"
host = "mainpc"

[[hub]]
name = "central"
host = "mainpc"
port = 9000
scrape_interval = "2s"

[[batch]]
name = "pilot"
host = "mainpc"
agents = ["a1", "a2"]
primary_hub = "central"
heartbeat_interval = "1s"

[[process]]
name = "app"
host = "mainpc"
command = ["sleep", "infinity"]

[[wave]]
name = "all"
select = ["pushgateway.*", "hub.*", "batch.*", "process.*"]
"#;

const SCRAPE_SECS: f64 = 2.0;

fn supervisorctl(lab: &Lab, action: &str, program: &str) {
    let out = lab.ssh(
        "mainpc",
        &format!(
            "cd {} && supervisorctl -c files/supervisor/supervisord.conf {action} {program}",
            lab.root("mainpc").display()
        ),
    );
    let want = if action == "stop" {
        "stopped"
    } else {
        "started"
    };
    assert!(
        out.contains(want),
        "supervisorctl {action} {program}: {out}"
    );
}

fn component<'a>(doc: &'a serde_json::Value, kind: &str, name: &str) -> &'a serde_json::Value {
    doc["report"]["components"]
        .as_array()
        .expect("components")
        .iter()
        .find(|c| c["kind"] == kind && c["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in {doc}"))
}

/// Runs the report until `done` holds for its JSON, for at most `limit`.
fn report_until(repo: &Repo, limit: Duration, done: impl Fn(&serde_json::Value) -> bool) -> Run {
    let start = Instant::now();
    loop {
        let run = repo.run(&["report", "plans/p.toml", "--hours", "1", "-o", "json"]);
        assert!(
            run.code == 0 || run.code == 2,
            "{}{}",
            run.stdout,
            run.stderr
        );
        if done(&json(&run)) || start.elapsed() > limit {
            return run;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn a_stopped_pushgateway_is_one_outage_of_its_measured_length() {
    let lab = Lab::up(126, 1);
    let repo = Repo::with_plan(PLAN)
        .commit("plan")
        .with_inventory(lab.inventory());
    let apply = repo.run(&["apply", "--yes", "plans/p.toml"]);
    assert_eq!(apply.code, 0, "{}{}", apply.stdout, apply.stderr);

    // Some history first: the batch fresh and the Pushgateway scraped for a few intervals.
    let before = report_until(&repo, Duration::from_secs(40), |d| {
        component(d, "batch", "pilot")["heartbeat_coverage_percent"].as_f64() > Some(0.0)
            && component(d, "pushgateway", "pg")["observed_seconds"].as_f64() > Some(8.0)
    });
    let doc = json(&before);
    assert_eq!(
        component(&doc, "pushgateway", "pg")["outages"],
        serde_json::json!([]),
        "{doc}"
    );

    supervisorctl(&lab, "stop", "pg");
    let stopped = Instant::now();
    std::thread::sleep(Duration::from_secs(12));
    supervisorctl(&lab, "start", "pg");
    let measured = stopped.elapsed().as_secs_f64();

    let after = report_until(&repo, Duration::from_secs(30), |d| {
        let o = &component(d, "pushgateway", "pg")["outages"];
        o.as_array()
            .is_some_and(|o| o.len() == 1 && o[0]["ongoing"] == false)
    });
    let doc = json(&after);
    let pg = component(&doc, "pushgateway", "pg");
    let outages = pg["outages"].as_array().expect("outages");
    assert_eq!(outages.len(), 1, "{pg}");
    let seen = outages[0]["seconds"].as_f64().expect("seconds");
    // supervisorctl's own stop and start are inside `measured`: allow that second.
    assert!(
        (seen - measured).abs() <= SCRAPE_SECS + 1.0,
        "hub saw {seen} s, the test measured {measured} s: {pg}"
    );
    assert!(pg["uptime_percent"].as_f64() < Some(100.0), "{pg}");
    // The agents could not push meanwhile: the batch went stale and lost coverage.
    let batch = component(&doc, "batch", "pilot");
    assert!(
        !batch["outages"].as_array().expect("outages").is_empty(),
        "{batch}"
    );
    assert!(
        batch["heartbeat_coverage_percent"].as_f64() < Some(100.0),
        "{batch}"
    );
    // The process has no health probe: no figures are made up for it.
    let app = component(&doc, "process", "app");
    assert!(app["uptime_percent"].is_null(), "{app}");
    assert!(
        app["note"]
            .as_str()
            .is_some_and(|n| n.contains("does not watch")),
        "{app}"
    );
    // A fresh lab holds minutes, not the hour asked, and the report says so.
    assert_eq!(doc["report"]["short_history"], true, "{doc}");
    assert!(doc["report"]["history_hours"].as_f64() < Some(0.5), "{doc}");
    assert_eq!(doc["report"]["meets_target"], false);
    assert_eq!(after.code, 2);

    let svg_path = repo.path().join("uptime.svg");
    let human = repo.run(&[
        "report",
        "plans/p.toml",
        "--hours",
        "1",
        "--svg",
        svg_path.to_str().expect("utf-8 path"),
    ]);
    assert_eq!(human.code, 2, "{}{}", human.stdout, human.stderr);
    assert!(human.stdout.contains("the hub holds"), "{}", human.stdout);
    assert!(
        human.stdout.contains("pushgateway.pg@mainpc") && human.stdout.contains("outages:"),
        "{}",
        human.stdout
    );
    let text = std::fs::read_to_string(&svg_path).expect("the SVG was written");
    let svg = roxmltree::Document::parse(&text).expect("the SVG parses as XML");
    assert_eq!(svg.root_element().tag_name().name(), "svg");
    let texts: Vec<String> = svg
        .descendants()
        .filter(|n| n.has_tag_name("text"))
        .filter_map(|n| n.text().map(|t| t.trim().to_string()))
        .collect();
    let components = doc["report"]["components"].as_array().expect("components");
    for c in components {
        let label = format!(
            "{}.{}@{}",
            c["kind"].as_str().unwrap_or(""),
            c["name"].as_str().unwrap_or(""),
            c["host"].as_str().unwrap_or("")
        );
        assert!(
            texts.iter().any(|t| t.starts_with(&label)),
            "{label} not in {texts:?}"
        );
    }
    let lines = svg
        .descendants()
        .filter(|n| n.has_tag_name("polyline"))
        .count();
    assert!(
        lines >= components.len(),
        "{lines} polylines for {} components",
        components.len()
    );
}
