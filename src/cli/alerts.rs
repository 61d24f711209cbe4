//! `wavectl alerts PLAN`: what fires now, per alerting hub and alertmanager, each asked from its
//! own host through the SSH connection. Exit 0 when nothing fires, 2 when something does, 1
//! when a source did not answer.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::io::Write;
use std::path::Path;

use futures::future::join_all;
use serde_json::json;

use crate::backend::alerts::{self, SourceKind};
use crate::cli::{Context, Output};
use crate::exit::Exit;
use crate::run::alerts::Answer;
use crate::transport::Host;

pub fn run(ctx: &Context, plan: &Path) -> anyhow::Result<Exit> {
    let loaded = ctx.load_online(plan)?;
    let sources = alerts::sources(&loaded.plan, &loaded.inventory);
    if sources.is_empty() {
        anyhow::bail!(
            "the plan has no alertmanager and no hub with `alerting`; expected an [[alertmanager]] and `alerting = [...]` on a hub"
        );
    }
    let hosts: BTreeSet<&str> = sources.iter().map(|s| s.host.as_str()).collect();
    let answers = ctx.runtime()?.block_on(async {
        let conns = join_all(hosts.iter().filter_map(|h| loaded.inventory.host(h)).map(
            |h| async {
                let conn = crate::transport::connect(&loaded.inventory, h).await;
                (h.name.get_ref().to_string(), conn)
            },
        ))
        .await;
        let mut errors = BTreeMap::new();
        let mut ok = Vec::new();
        for (name, c) in conns {
            match c {
                Ok(c) => ok.push((name, c)),
                Err(e) => {
                    errors.insert(name, e.to_string());
                }
            }
        }
        let map: BTreeMap<String, &dyn Host> = ok
            .iter()
            .map(|(n, c)| (n.clone(), c as &dyn Host))
            .collect();
        let mut answers = crate::run::alerts::ask(&sources, &map).await;
        for a in &mut answers {
            if let Some(e) = errors.get(&a.source.host) {
                a.alerts = Err(e.clone());
            }
        }
        drop(map);
        for (_, c) in ok {
            c.close().await;
        }
        answers
    });
    let mut out = anstream::stdout().lock();
    match ctx.output {
        Output::Json => writeln!(out, "{}", json_doc(&answers))?,
        Output::Human => write!(out, "{}", human(&answers))?,
    }
    Ok(exit(&answers))
}

fn exit(answers: &[Answer]) -> Exit {
    if answers.iter().any(|a| a.alerts.is_err()) {
        Exit::Error
    } else if answers
        .iter()
        .any(|a| a.alerts.as_ref().is_ok_and(|l| l.iter().any(is_firing)))
    {
        Exit::Drift
    } else {
        Exit::Ok
    }
}

/// A hub's pending alerts are not firing yet; an alertmanager lists active ones only.
fn is_firing(a: &alerts::Alert) -> bool {
    a.state != "pending"
}

fn json_doc(answers: &[Answer]) -> serde_json::Value {
    let doc = |kind: SourceKind| -> Vec<serde_json::Value> {
        answers
            .iter()
            .filter(|a| a.source.kind == kind)
            .map(|a| match &a.alerts {
                Ok(list) => json!({ "name": a.source.name, "host": a.source.host, "url": a.source.url, "reachable": true, "alerts": list }),
                Err(e) => json!({ "name": a.source.name, "host": a.source.host, "url": a.source.url, "reachable": false, "error": e }),
            })
            .collect()
    };
    json!({
        "schema": "wavectl.alerts/1",
        "hubs": doc(SourceKind::Hub),
        "alertmanagers": doc(SourceKind::Alertmanager),
        "firing_per_host": crate::run::alerts::firing_per_host(answers),
    })
}

fn human(answers: &[Answer]) -> String {
    let mut text = String::new();
    for a in answers {
        let kind = match a.source.kind {
            SourceKind::Hub => "hub",
            SourceKind::Alertmanager => "alertmanager",
        };
        match &a.alerts {
            Err(e) => {
                let _ = writeln!(
                    text,
                    "{kind} {} ({}): unreachable: {e}",
                    a.source.name, a.source.host
                );
            }
            Ok(list) if list.is_empty() => {
                let _ = writeln!(
                    text,
                    "{kind} {} ({}): nothing fires",
                    a.source.name, a.source.host
                );
            }
            Ok(list) => {
                let _ = writeln!(
                    text,
                    "{kind} {} ({}): {} alert(s)",
                    a.source.name,
                    a.source.host,
                    list.len()
                );
                for al in list {
                    let about = al.labels.get("instance").or(al.labels.get("component"));
                    let _ = writeln!(
                        text,
                        "  {:<8} {:<26} {:<10} {:<28} {}",
                        al.state,
                        al.name,
                        al.host().unwrap_or("-"),
                        about.map_or("-", String::as_str),
                        al.summary.as_deref().unwrap_or(""),
                    );
                }
            }
        }
    }
    text
}
