//! `doctor` on every host at once: one script each over the session's connections (one round
//! trip), its answer judged against the plan and the operator's clock.

use std::time::{SystemTime, UNIX_EPOCH};

use futures::future::join_all;

use crate::backend::doctor::{self, Finding, Judge, PlannedPort};
use crate::load::Loaded;
use crate::run::session::Session;

/// One host's findings, or why it could not be asked.
pub struct HostDoctor {
    pub host: String,
    pub findings: Result<Vec<Finding>, Unreachable>,
}

pub struct Unreachable {
    pub error: String,
    pub hint: Option<String>,
}

fn now_ns() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128)
}

/// Asks every host of the plan, on the session's connections, then closes them.
pub async fn examine(session: Session, loaded: &Loaded) -> Vec<HostDoctor> {
    let ports = doctor::planned_ports(&loaded.plan);
    let mut conns = session.into_connections();
    let asks = loaded.desired.hosts.iter().filter_map(|(name, desired)| {
        let host = loaded.inventory.host(name)?;
        let conn = conns.remove(name);
        let checks = crate::run::probe::checks_of(loaded, name);
        let programs = doctor::needed_programs(desired, &checks);
        let ports: &[PlannedPort] = ports.get(name).map_or(&[], Vec::as_slice);
        Some(async move {
            let conn = match conn {
                Some(c) => c,
                None => crate::transport::connect(&loaded.inventory, host).await,
            };
            let conn = match conn {
                Ok(c) => c,
                Err(e) => {
                    return HostDoctor {
                        host: name.clone(),
                        findings: Err(Unreachable {
                            error: e.to_string(),
                            hint: e.hint(),
                        }),
                    };
                }
            };
            let script = doctor::script(
                &desired.root,
                crate::backend::supervisor::of(desired.supervisor),
                &programs,
            );
            // The host reads its clock first and prints it at once: it read it between the
            // start and the arrival of that line.
            let before = now_ns();
            let mut after = None;
            let out = conn
                .run_streaming(&script, |line| {
                    if after.is_none() && line.starts_with("clock ") {
                        after = Some(now_ns());
                    }
                })
                .await;
            let after = after.unwrap_or_else(now_ns);
            conn.close().await;
            let findings = match out {
                Err(e) => Err(Unreachable {
                    error: e.to_string(),
                    hint: e.hint(),
                }),
                Ok(out) if !out.success() => Err(Unreachable {
                    error: format!(
                        "host {name}: the doctor script failed (exit {:?}): {}",
                        out.status,
                        out.stderr.trim()
                    ),
                    hint: None,
                }),
                Ok(out) => {
                    let judge = Judge {
                        root: &desired.root,
                        address: host.address.get_ref(),
                        ports,
                        local_clock_ns: before + (after - before) / 2,
                        slack_ms: ((after - before) / 2_000_000) as i64,
                    };
                    Ok(judge.findings(&doctor::parse(&out.stdout)))
                }
            };
            HostDoctor {
                host: name.clone(),
                findings,
            }
        })
    });
    let results = join_all(asks).await;
    join_all(
        conns
            .into_values()
            .filter_map(Result::ok)
            .map(crate::transport::Connection::close),
    )
    .await;
    results
}
