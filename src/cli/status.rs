//! `wavectl status PLAN`: per host, reachable, generation and commit, drift, lock, and each
//! process with its state, uptime and restarts.

use std::fmt::Write as _;
use std::io::Write;
use std::path::Path;

use serde_json::json;

use crate::cli::{Context, Output};
use crate::exit::Exit;
use crate::run::observe::close_all;

pub fn run(ctx: &Context, plan: &Path) -> anyhow::Result<Exit> {
    let loaded = ctx.load(plan)?;
    ctx.runtime()?.block_on(async {
        let (loaded, observed) = ctx.observe(plan, None, loaded).await?;
        let changes = crate::run::changes_for(&loaded, &observed);
        let mut docs = Vec::new();
        let mut text = String::new();
        let mut all_reachable = true;
        for o in &observed {
            let drift = changes.hosts.iter().find(|h| h.host == o.host).is_some_and(|h| !h.is_empty());
            match &o.report {
                Err(e) => {
                    all_reachable = false;
                    docs.push(json!({ "host": o.host, "reachable": false, "error": e.to_string() }));
                    let _ = writeln!(text, "{}: unreachable: {e}", o.host);
                }
                Ok(r) => {
                    let generation = r.state.as_ref().map(|s| s.generation);
                    let commit = r.state.as_ref().and_then(|s| s.commit.clone());
                    let short = commit.as_deref().map_or("-".to_string(), |c| c.chars().take(10).collect());
                    let _ = writeln!(
                        text,
                        "{}: reachable, generation {}, commit {short}, drift {}{}",
                        o.host,
                        generation.map_or("-".to_string(), |g| g.to_string()),
                        if drift { "yes" } else { "no" },
                        r.lock.as_ref().map_or(String::new(), |l| if crate::run::lock_is_orphaned(l) {
                            format!(", {} (run `wavectl apply --force-unlock` or `wavectl rollback --to previous --force-unlock`)", crate::run::interrupted(l, r.last_step.as_ref()))
                        } else {
                            format!(", locked by {l}")
                        })
                    );
                    if let Some(pin) = &r.pin {
                        let _ = writeln!(text, "  {pin} (apply of other commits is refused until `wavectl unpin`)");
                    }
                    let _ = writeln!(text, "  {:<34} {:<9} {:>8} {:>10} {:>8}", "PROCESS", "STATE", "PID", "UPTIME", "RESTARTS");
                    let mut procs = Vec::new();
                    let desired = loaded.desired.hosts.get(&o.host);
                    let names: Vec<String> = desired.map(|d| d.processes.iter().map(|p| p.name.clone()).collect()).unwrap_or_default();
                    let extra = r.observed.processes.keys().filter(|k| !names.contains(k)).cloned();
                    for name in names.iter().cloned().chain(extra) {
                        let p = r.observed.processes.get(&name);
                        let state = p.map_or("ABSENT", |p| p.state.name());
                        let pid = p.and_then(|p| p.pid).map_or("-".into(), |p| p.to_string());
                        let uptime = p.and_then(|p| p.uptime_s).map_or("-".into(), human_duration);
                        let restarts = p.map_or(0, |p| p.restarts);
                        let _ = writeln!(text, "  {name:<34} {state:<9} {pid:>8} {uptime:>10} {restarts:>8}");
                        procs.push(json!({ "name": name, "state": state, "pid": p.and_then(|p| p.pid), "uptime_s": p.and_then(|p| p.uptime_s), "restarts": restarts }));
                    }
                    docs.push(json!({
                        "host": o.host, "reachable": true, "generation": generation, "commit": commit,
                        "applied_at": r.state.as_ref().map(|s| s.applied_at.clone()), "drift": drift,
                        "lock": r.lock, "pin": r.pin, "processes": procs,
                    }));
                }
            }
        }
        // Probes, once each, all hosts at once.
        let probes = crate::run::probe::Probes {
            hosts: observed
                .iter()
                .filter_map(|o| {
                    let conn: &dyn crate::transport::Host = o.connection.as_ref()?;
                    let root = loaded.desired.hosts.get(&o.host)?.root.as_str();
                    Some((o.host.clone(), (conn, root)))
                })
                .collect(),
        };
        let probes_of_hosts = futures::future::join_all(observed.iter().map(|o| {
            let probes = &probes;
            let loaded = &loaded;
            async move {
                let checks = crate::run::probe::checks_of(loaded, &o.host);
                let list: Vec<_> = checks.iter().map(|c| &c.probe).collect();
                let verdicts = if list.is_empty() { Vec::new() } else { probes.once_each(&o.host, &list).await };
                (o.host.clone(), checks.into_iter().map(|c| c.name.clone()).zip(verdicts).collect::<Vec<_>>())
            }
        }));
        // Asked while the probes run: each is one more exchange on an open connection.
        let sources: Vec<_> = crate::backend::alerts::sources(&loaded.plan, &loaded.inventory)
            .into_iter()
            .filter(|s| s.kind == crate::backend::alerts::SourceKind::Alertmanager)
            .collect();
        let conns: std::collections::BTreeMap<String, &dyn crate::transport::Host> = observed
            .iter()
            .filter_map(|o| Some((o.host.clone(), o.connection.as_ref()? as &dyn crate::transport::Host)))
            .collect();
        let alerts = async {
            if sources.is_empty() {
                None
            } else {
                Some(crate::run::alerts::ask(&sources, &conns).await)
            }
        };
        let (probes, answers) = futures::join!(probes_of_hosts, alerts);
        for (host, list) in &probes {
            if list.is_empty() {
                continue;
            }
            let _ = writeln!(text, "{host} probes:");
            for (name, v) in list {
                let mark = if v.passed() { "green" } else { "RED" };
                let _ = writeln!(text, "  {mark:<5} {name}: {}", v.detail());
            }
            if let Some(doc) = docs.iter_mut().find(|d| d["host"] == *host) {
                doc["probes"] = json!(list.iter().map(|(n, v)| json!({ "name": n, "passed": v.passed(), "detail": v.detail() })).collect::<Vec<_>>());
            }
        }
        // Firing alerts, from every alertmanager of the plan, counted by the host they are about.
        if let Some(answers) = &answers {
            if let Some(counts) = crate::run::alerts::firing_per_host(answers) {
                for doc in docs.iter_mut().filter(|d| d["reachable"] == true) {
                    let host = doc["host"].as_str().unwrap_or_default().to_string();
                    let n = counts.get(&host).copied().unwrap_or(0);
                    doc["alerts_firing"] = json!(n);
                    let _ = writeln!(text, "{host}: {n} alert(s) firing");
                }
            } else {
                let _ = writeln!(text, "alerts: no alertmanager answers");
            }
        }
        // A drill that never finished, and what it left.
        for (host, line) in crate::cli::drill::interrupted_lines(&loaded, &observed).await {
            let _ = writeln!(text, "{line}");
            if let Some(doc) = docs.iter_mut().find(|d| d["host"] == *host) {
                doc["drill_interrupted"] = json!(line);
            }
        }
        drop(probes);
        drop(conns);
        close_all(observed).await;
        let mut out = anstream::stdout().lock();
        match ctx.output {
            Output::Json => writeln!(out, "{}", json!({ "hosts": docs }))?,
            Output::Human => write!(out, "{text}")?,
        }
        Ok(crate::exit::of_reach(all_reachable))
    })
}

fn human_duration(s: u64) -> String {
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        3600..86_400 => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d{:02}h", s / 86_400, (s % 86_400) / 3600),
    }
}
