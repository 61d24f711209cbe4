//! Connect to every host of the plan and observe it, all in parallel, one round trip each.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures::future::join_all;

use crate::backend::observe::{self, Observation, ObserveError};
use crate::load::Loaded;
use crate::transport::{self, Connection, TransportError};

/// Why a host could not be observed.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error("host {host}: {source}")]
    Observe {
        host: String,
        #[source]
        source: ObserveError,
    },
    #[error("host {host}: the observe script failed (exit {status:?}): {stderr}")]
    Script {
        host: String,
        status: Option<i32>,
        stderr: String,
    },
}

impl HostError {
    pub fn hint(&self) -> Option<String> {
        match self {
            HostError::Transport(t) => t.hint(),
            HostError::Observe { .. } => Some(
                "inspect the file on the host; wavectl never resets a state it cannot read".into(),
            ),
            HostError::Script { .. } => None,
        }
    }
}

/// One host: its open connection (when it answered) and what it reported.
pub struct Observed {
    pub host: String,
    pub connection: Option<Connection>,
    pub report: Result<Observation, HostError>,
    pub elapsed: Duration,
}

/// Observes every host that has something in the plan.
pub async fn observe_all(loaded: &Loaded) -> Vec<Observed> {
    let tasks = loaded.desired.hosts.iter().filter_map(|(name, desired)| {
        let host = loaded.inventory.host(name)?;
        Some(async move {
            let start = Instant::now();
            let (connection, report) = match transport::connect(&loaded.inventory, host).await {
                Err(e) => (None, Err(HostError::from(e))),
                Ok(conn) => {
                    let script = observe::script(&host.root, desired);
                    let report = match conn.run(&script).await {
                        Err(e) => Err(HostError::from(e)),
                        Ok(out) if !out.success() => Err(HostError::Script {
                            host: name.clone(),
                            status: out.status,
                            stderr: out.stderr.trim().to_string(),
                        }),
                        Ok(out) => observe::parse(&host.root, &out.stdout).map_err(|source| {
                            HostError::Observe {
                                host: name.clone(),
                                source,
                            }
                        }),
                    };
                    let report = match report {
                        Ok(r) => with_streams(desired, r).map_err(|e| match e {
                            HostError::Script { status, stderr, .. } => HostError::Script {
                                host: name.clone(),
                                status,
                                stderr,
                            },
                            other => other,
                        }),
                        Err(e) => Err(e),
                    };
                    (Some(conn), report)
                }
            };
            Observed {
                host: name.clone(),
                connection,
                report,
                elapsed: start.elapsed(),
            }
        })
    });
    join_all(tasks).await
}

/// Adds the streams of the host's running nats servers: the planned ones and those the last
/// generation managed.
fn with_streams(
    desired: &crate::primitive::HostDesired,
    mut report: Observation,
) -> Result<Observation, HostError> {
    let managed = report
        .state
        .as_ref()
        .map(|s| s.streams.clone())
        .unwrap_or_default();
    let mut names: Vec<&String> = desired.streams.iter().map(|s| &s.config.name).collect();
    names.extend(managed.keys());
    let mut streams = BTreeMap::new();
    for (server, list) in &report.nats_streams {
        for config in list.iter().filter(|c| names.contains(&&c.name)) {
            streams.insert(
                config.name.clone(),
                crate::observed::ObservedStream {
                    server: server.clone(),
                    config: config.clone(),
                },
            );
        }
    }
    // A running server that did not answer its monitoring endpoint cannot be diffed.
    for s in &desired.streams {
        let running = report
            .observed
            .processes
            .get(&s.server)
            .is_some_and(|p| p.state.is_up());
        if running && !report.nats_streams.contains_key(&s.server) {
            return Err(HostError::Script {
                host: String::new(),
                status: None,
                stderr: format!(
                    "nats server {} runs but {}/jsz does not answer",
                    s.server, s.monitor
                ),
            });
        }
    }
    report.observed.streams = streams;
    Ok(report)
}

/// The observed state of the hosts that answered, for `diff`.
pub fn observed_map(hosts: &[Observed]) -> BTreeMap<String, crate::observed::HostObserved> {
    hosts
        .iter()
        .filter_map(|o| {
            o.report
                .as_ref()
                .ok()
                .map(|r| (o.host.clone(), r.observed.clone()))
        })
        .collect()
}

pub async fn close_all(hosts: Vec<Observed>) {
    join_all(
        hosts
            .into_iter()
            .filter_map(|o| o.connection)
            .map(Connection::close),
    )
    .await;
}
