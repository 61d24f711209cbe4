//! `wavectl drill` (kill-process, stop-service, freeze-host, partition) on the reference plan `plans/phase2.toml` (plus one process with
//! `autorestart = false`), applied once on a 2-host lab: each kind passes with figures below
//! the thresholds it checks itself, a drill made to fail exits 1 and leaves the system as it
//! was, a partition loses and doubles no probe and leaves no nftables table of wavectl's,
//! Ctrl-C restores, and a SIGKILLed drill's table expires by itself and is reported next.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{Repo, Run, bin, json, project_root};
use crate::lab::Lab;

const SECRET: &str = "tg-drill-5b0c3e";

/// The reference plan, with a process the supervisor does not restart.
fn plan() -> String {
    let text = std::fs::read_to_string(project_root().join("plans/phase2.toml")).expect("phase2");
    format!(
        "{text}\n[[process]]\nname = \"fragile\"\nhost = \"mainpc\"\ncommand = [\"sleep\", \"infinity\"]\nautorestart = false\n"
    )
}

/// The plan with the repo's templates and migrations.
fn plan_repo() -> Repo {
    let mut r = Repo::with_plan(&plan());
    for dir in ["templates", "migrations/nanoclaw"] {
        for f in std::fs::read_dir(project_root().join(dir)).expect(dir) {
            let p = f.expect("entry").path();
            let name = format!("{dir}/{}", p.file_name().expect("name").to_string_lossy());
            r = r.file(&name, &std::fs::read_to_string(&p).expect("read"));
        }
    }
    r.env("TELEGRAM_TOKEN", SECRET)
}

fn repo(lab: &Lab) -> Repo {
    plan_repo()
        .with_inventory(lab.inventory())
        .commit("phase2 with a fragile process")
}

fn drill(repo: &Repo, args: &[&str]) -> (Run, Value) {
    let mut full = vec!["drill", "-o", "json", "--yes", "plans/p.toml"];
    full.extend(args);
    let run = repo.run(&full);
    let doc = serde_json::from_str(run.stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "drill {args:?}: no JSON ({e}), exit {}:\n{}\n{}",
            run.code, run.stdout, run.stderr
        )
    });
    (run, doc)
}

/// The figure named `name` (a prefix), as (value, limit).
fn figure(doc: &Value, name: &str) -> (Option<u64>, Option<u64>) {
    let f = doc["figures"]
        .as_array()
        .expect("figures")
        .iter()
        .find(|f| f["name"].as_str().is_some_and(|n| n.starts_with(name)))
        .unwrap_or_else(|| panic!("no figure {name} in {doc}"));
    (f["value"].as_u64(), f["limit"].as_u64())
}

/// Every outage has a component, `down_at` < `up_at` and their difference as its length.
fn check_outages(doc: &Value) -> Vec<Value> {
    let list = doc["outages"].as_array().expect("outages").clone();
    assert!(!list.is_empty(), "{doc}");
    for o in &list {
        let (down, up) = (
            o["down_at"].as_u64().expect("down_at"),
            o["up_at"].as_u64().expect("up_at"),
        );
        assert!(o["component"].is_string(), "{o}");
        assert!(down > 1_700_000_000_000 && up > down, "{o}");
        assert_eq!(o["length_ms"].as_u64(), Some(up - down), "{o}");
    }
    list
}

/// Every planned process of `status` running, and every probe green.
fn all_running_and_green(repo: &Repo) -> Result<(), String> {
    let run = repo.run(&["status", "-o", "json", "plans/p.toml"]);
    let doc = json(&run);
    for h in doc["hosts"].as_array().expect("hosts") {
        for p in h["processes"].as_array().expect("processes") {
            if p["state"] != "RUNNING" {
                return Err(format!("{} {}: {}", h["host"], p["name"], p["state"]));
            }
        }
        for p in h["probes"].as_array().into_iter().flatten() {
            let name = p["name"].as_str().unwrap_or_default();
            // Wave gates that soak or count alerts judge a rollout, not the running system.
            let health =
                name.ends_with(" health") || name.contains("ready") || name.contains("healthy");
            if health && p["passed"] != true {
                return Err(format!("{} {name}: {}", h["host"], p["detail"]));
            }
        }
    }
    Ok(())
}

fn pids(repo: &Repo, host: &str) -> Vec<(String, u64)> {
    let doc = json(&repo.run(&["status", "-o", "json", "plans/p.toml"]));
    doc["hosts"]
        .as_array()
        .expect("hosts")
        .iter()
        .filter(|h| h["host"] == host)
        .flat_map(|h| h["processes"].as_array().cloned().unwrap_or_default())
        .map(|p| {
            (
                p["name"].as_str().unwrap_or_default().to_string(),
                p["pid"].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

fn wavectl_table() -> bool {
    let out = Command::new("nft")
        .args(["list", "ruleset"])
        .output()
        .expect("nft");
    String::from_utf8_lossy(&out.stdout).contains("table inet wavectl")
}

/// A background `wavectl drill`, killed when dropped (a failing test leaves nothing).
struct Background(Option<Child>);

impl Background {
    fn start(repo: &Repo, args: &[&str]) -> Background {
        let mut cmd = Command::new(bin());
        cmd.arg("-i")
            .arg(repo.inventory_path())
            .args(["drill", "--yes", "plans/p.toml"])
            .args(args)
            .current_dir(repo.path())
            .env("TELEGRAM_TOKEN", SECRET)
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        Background(Some(cmd.spawn().expect("spawn wavectl drill")))
    }

    fn signal(&self, sig: &str) {
        let pid = self.0.as_ref().expect("running").id().to_string();
        let ok = Command::new("kill")
            .args([sig, &pid])
            .status()
            .expect("kill")
            .success();
        assert!(ok, "kill {sig}");
    }

    /// Exit code and everything it printed.
    fn wait(mut self) -> (i32, String) {
        let out = self
            .0
            .take()
            .expect("running")
            .wait_with_output()
            .expect("wait");
        (
            out.status.code().unwrap_or(-1),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Waits (up to `limit`) until `f` holds; false if it never did.
fn eventually(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    f()
}

fn record(root: &Path) -> String {
    std::fs::read_to_string(root.join("drill.json")).unwrap_or_default()
}

#[test]
fn every_drill_kind_runs_on_the_reference_plan_and_restores_what_it_did() {
    let lab = Lab::up(150, 2);
    let repo = repo(&lab);
    let applied = repo.run(&["apply", "--yes", "plans/p.toml"]);
    assert_eq!(applied.code, 0, "{}\n{}", applied.stdout, applied.stderr);

    // kill-process: back with a new pid within the restart threshold.
    let before = pids(&repo, "mainpc");
    let (run, doc) = drill(&repo, &["kill-process", "nanoclaw"]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(doc["passed"], true, "{doc}");
    let (restart, limit) = figure(&doc, "restart");
    assert!(restart.expect("measured") <= limit.expect("limit"), "{doc}");
    assert_eq!(limit, Some(5_000));
    let outages = check_outages(&doc);
    assert_eq!(outages[0]["component"], "nanoclaw");
    let after = pids(&repo, "mainpc");
    let pid = |l: &[(String, u64)], n: &str| l.iter().find(|(p, _)| p == n).map(|(_, pid)| *pid);
    assert_ne!(pid(&before, "nanoclaw"), pid(&after, "nanoclaw"));
    assert_eq!(
        pid(&before, "oracle"),
        pid(&after, "oracle"),
        "only the target was killed"
    );

    // A drill made to fail: no autorestart. Exit 1; the drill starts it again itself.
    let (run, doc) = drill(&repo, &["kill-process", "fragile@mainpc"]);
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(doc["passed"], false, "{doc}");
    assert_eq!(figure(&doc, "restart").0, None, "{doc}");
    assert!(
        doc["restored"].to_string().contains("started fragile"),
        "{doc}"
    );
    all_running_and_green(&repo).expect("the failed drill left the system as it was");

    // freeze-host: SIGSTOP for 5 s, SIGCONT, green again within the recovery threshold.
    let (run, doc) = drill(&repo, &["freeze-host", "pc2", "--for", "5s"]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let (recovery, limit) = figure(&doc, "recovery");
    assert!(
        recovery.expect("measured") <= limit.expect("limit"),
        "{doc}"
    );
    let (frozen, _) = figure(&doc, "frozen");
    assert!(frozen.expect("frozen") >= 5_000, "{doc}");
    assert!(check_outages(&doc).len() > 10, "{doc}");

    // stop-service: the edge hub down; the central hub keeps seeing the pc2 batches'
    // heartbeats (it scrapes their Pushgateway as their fallback hub); then it starts again.
    // --for covers the central hub's 30 s scrape interval + the 5 s failover limit.
    let (run, doc) = drill(&repo, &["stop-service", "edge", "--for", "40s"]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let (seen, limit) = figure(&doc, "heartbeats at central");
    assert!(seen.expect("seen again") <= limit.expect("limit"), "{doc}");
    let (recovery, limit) = figure(&doc, "recovery after start");
    assert!(
        recovery.expect("measured") <= limit.expect("limit"),
        "{doc}"
    );
    assert_eq!(check_outages(&doc)[0]["component"], "edge");
    all_running_and_green(&repo).expect("the edge hub runs again");

    // stop-service of pc2's Pushgateway for the default 30 s: its agents push to their
    // fallback hub's Pushgateway meanwhile, and the central hub sees them there.
    let (run, doc) = drill(&repo, &["stop-service", "pushgateway-pc2"]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let (seen, limit) = figure(&doc, "heartbeats at central");
    assert!(seen.expect("seen again") <= limit.expect("limit"), "{doc}");
    let drilled = check_outages(&doc)[0].clone();
    assert_eq!(drilled["component"], "pushgateway-pc2");
    all_running_and_green(&repo).expect("the Pushgateway runs again");
    report_shows_the_drills_outage(&repo, &drilled);

    // Without the lab's grant the partition is refused before anything changes, saying what
    // to grant.
    {
        let grant = Path::new("/etc/sudoers.d/wavectl-lab-t150");
        let saved = std::fs::read(grant).expect("the lab's sudoers file");
        struct Restore<'a>(&'a Path, Vec<u8>);
        impl Drop for Restore<'_> {
            fn drop(&mut self) {
                use std::os::unix::fs::PermissionsExt;
                let _ = std::fs::write(self.0, &self.1);
                let _ = std::fs::set_permissions(self.0, std::fs::Permissions::from_mode(0o440));
            }
        }
        let _restore = Restore(grant, saved);
        std::fs::remove_file(grant).expect("remove the grant");
        let run = repo.run(&["drill", "--yes", "plans/p.toml", "partition", "--for", "5s"]);
        assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
        assert!(
            run.stderr.contains("may not run nft")
                && run
                    .stderr
                    .contains("t150-mainpc ALL=(root) NOPASSWD: /usr/sbin/nft"),
            "{}",
            run.stderr
        );
        assert!(!wavectl_table());
    }

    // partition: both sides accept, nothing crosses during the cut, nothing lost or doubled.
    let (run, doc) = drill(&repo, &["partition", "mainpc,pc2", "--for", "20s"]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(doc["passed"], true, "{doc}");
    for side in ["mainpc", "pc2"] {
        assert!(
            doc["messages"]["acked"][side].as_u64().expect("acked") >= 100,
            "{doc}"
        );
    }
    assert_eq!(figure(&doc, "crossed").0, Some(0), "{doc}");
    assert_eq!(figure(&doc, "lost").0, Some(0), "{doc}");
    assert_eq!(figure(&doc, "duplicates").0, Some(0), "{doc}");
    for agg in doc["messages"]["aggregates"]
        .as_array()
        .expect("aggregates")
    {
        assert_eq!(agg["present"].as_u64(), Some(200), "{agg}");
        assert_eq!(agg["missing"].as_u64(), Some(0), "{agg}");
        assert_eq!(agg["duplicates"].as_u64(), Some(0), "{agg}");
    }
    let (catch_up, limit) = figure(&doc, "catch-up");
    assert!(
        catch_up.expect("caught up") <= limit.expect("limit"),
        "{doc}"
    );
    let link = &check_outages(&doc)[0];
    assert_eq!(link["component"], "link mainpc-pc2");
    assert!(
        link["length_ms"].as_u64().expect("length") >= 20_000,
        "{link}"
    );
    assert!(
        !wavectl_table(),
        "a table of wavectl's is left in `nft list ruleset`"
    );

    // Ctrl-C mid-freeze: SIGCONT at once, exit 130, everything runs again.
    let frozen_pids: Vec<u64> = pids(&repo, "mainpc").into_iter().map(|(_, p)| p).collect();
    let bg = Background::start(&repo, &["freeze-host", "mainpc", "--for", "120s"]);
    assert!(
        eventually(Duration::from_secs(30), || record(&lab.root("mainpc"))
            .contains("\"frozen\"")),
        "the drill never froze anything"
    );
    bg.signal("-INT");
    let (code, out) = bg.wait();
    assert_eq!(code, 130, "{out}");
    assert!(
        out.contains("INTERRUPTED") && out.contains("SIGCONT"),
        "{out}"
    );
    for pid in frozen_pids {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        assert!(!status.contains("State:\tT"), "pid {pid} still stopped");
    }
    assert!(
        eventually(Duration::from_secs(30), || all_running_and_green(&repo)
            .is_ok()),
        "{:?}",
        all_running_and_green(&repo)
    );

    // SIGKILL mid-partition: the table expires by itself; status and the next drill say so.
    let bg = Background::start(&repo, &["partition", "--for", "15s"]);
    assert!(
        eventually(Duration::from_secs(30), wavectl_table),
        "the cut never started"
    );
    bg.signal("-KILL");
    let _ = bg.wait();
    assert!(
        wavectl_table(),
        "the table went with wavectl instead of expiring"
    );
    assert!(
        eventually(Duration::from_secs(15 + 5 + 15), || !wavectl_table()),
        "the nftables table did not expire by itself"
    );
    let status = repo.run(&["status", "plans/p.toml"]);
    assert!(
        status.stdout.contains("was interrupted")
            && status.stdout.contains("nftables table inet wavectl"),
        "{}",
        status.stdout
    );
    let (run, doc) = drill(&repo, &["kill-process", "oracle"]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert!(run.stderr.contains("was interrupted"), "{}", run.stderr);
    assert!(
        doc["previous_interrupted"]
            .to_string()
            .contains("partition"),
        "{doc}"
    );
    let status = repo.run(&["status", "plans/p.toml"]);
    assert!(
        !status.stdout.contains("was interrupted"),
        "{}",
        status.stdout
    );
    assert!(record(&lab.root("mainpc")).contains("\"finished\": true"));
}

#[test]
fn a_drill_on_a_host_that_does_not_answer_is_refused_before_anything_changes() {
    // Nothing listens on port 1 of the lab's addresses.
    let inventory = "[[host]]\nname = \"mainpc\"\nssh = \"nobody@127.0.159.2:1\"\naddress = \"127.0.159.2\"\nroot = \"/tmp/wv-drill-none/mainpc\"\n\n[[host]]\nname = \"pc2\"\nssh = \"nobody@127.0.159.3:1\"\naddress = \"127.0.159.3\"\nroot = \"/tmp/wv-drill-none/pc2\"\n";
    let repo = plan_repo()
        .file("inventories/lab.toml", inventory)
        .commit("no lab");
    let run = repo.run(&["drill", "--yes", "plans/p.toml", "kill-process", "nanoclaw"]);
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    assert!(run.stderr.contains("refusing to drill"), "{}", run.stderr);
}

/// `report --hours 1` shows the drill's outage of the component, its length within one of the
/// central hub's 30 s scrape intervals of the drill's own measurement, and draws one line
/// series per component into an SVG that parses.
fn report_shows_the_drills_outage(repo: &Repo, drilled: &Value) {
    let component = drilled["component"].as_str().expect("component");
    let measured = drilled["length_ms"].as_u64().expect("length") as f64 / 1000.0;
    let svg = repo.path().join("uptime.svg");
    let svg_arg = svg.to_str().expect("utf-8 path");
    let started = Instant::now();
    let doc = loop {
        let run = repo.run(&[
            "report",
            "plans/p.toml",
            "--hours",
            "1",
            "-o",
            "json",
            "--svg",
            svg_arg,
        ]);
        assert!(
            run.code == 0 || run.code == 2,
            "{}\n{}",
            run.stdout,
            run.stderr
        );
        let doc = json(&run);
        let outage = doc["report"]["components"]
            .as_array()
            .expect("components")
            .iter()
            .find(|c| c["name"] == component)
            .and_then(|c| {
                c["outages"]
                    .as_array()?
                    .iter()
                    .rev()
                    .find(|o| {
                        o["ongoing"] == false
                            && o["end"].as_f64().unwrap_or(0.0) * 1000.0
                                > drilled["down_at"].as_f64().unwrap_or(f64::MAX)
                    })
                    .cloned()
            });
        match outage {
            Some(o) => break (doc, o),
            None if started.elapsed() < Duration::from_secs(60) => {
                std::thread::sleep(Duration::from_secs(2));
            }
            None => panic!("the report never showed the outage of {component}: {doc}"),
        }
    };
    let (doc, outage) = doc;
    let seen = outage["seconds"].as_f64().expect("seconds");
    assert!(
        (seen - measured).abs() <= 30.0,
        "the report's {seen} s against the drill's {measured} s: {outage}"
    );
    let text = std::fs::read_to_string(&svg).expect("the SVG was written");
    let parsed = roxmltree::Document::parse(&text).expect("the SVG parses");
    assert_eq!(parsed.root_element().tag_name().name(), "svg");
    let labels: Vec<&str> = parsed
        .descendants()
        .filter(|n| n.has_tag_name("text"))
        .filter_map(|n| n.text())
        .collect();
    for c in doc["report"]["components"].as_array().expect("components") {
        let label = format!(
            "{}.{}@{}",
            c["kind"].as_str().unwrap_or_default(),
            c["name"].as_str().unwrap_or_default(),
            c["host"].as_str().unwrap_or_default()
        );
        assert!(
            labels.iter().any(|t| t.trim().starts_with(&label)),
            "{label} in {labels:?}"
        );
    }
    let watched = doc["report"]["components"]
        .as_array()
        .expect("components")
        .iter()
        .filter(|c| c["uptime_percent"].is_number())
        .count();
    let series = parsed
        .descendants()
        .filter(|n| n.has_tag_name("polyline"))
        .count();
    assert!(
        series >= watched,
        "{series} polylines for {watched} watched components"
    );
}
