//! Observe every host of the plan, all in parallel, one round trip each on its open connection.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures::future::join_all;

use crate::backend::observe::{self, Observation, ObserveError};
use crate::load::Loaded;
use crate::primitive::HostDesired;
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

/// Observes every host that has something in the plan, each as soon as it is connected.
pub async fn observe_all(loaded: &Loaded) -> Vec<Observed> {
    let tasks = loaded.desired.hosts.iter().filter_map(|(name, desired)| {
        let host = loaded.inventory.host(name)?;
        Some(async move {
            let start = Instant::now();
            let conn = transport::connect(&loaded.inventory, host).await;
            observed(name, desired, start, conn).await
        })
    });
    join_all(tasks).await
}

/// Observes a host on the connection made for it (or reports why there is none).
pub async fn observed(
    name: &str,
    desired: &HostDesired,
    start: Instant,
    conn: Result<Connection, TransportError>,
) -> Observed {
    let (connection, report) = match conn {
        Err(e) => (None, Err(HostError::from(e))),
        Ok(conn) => {
            let report = observe_host(&conn, name, &desired.root, desired).await;
            (Some(conn), report)
        }
    };
    Observed {
        host: name.to_string(),
        connection,
        report,
        elapsed: start.elapsed(),
    }
}

/// Observes one host on its open connection: one round trip.
pub async fn observe_host(
    conn: &Connection,
    name: &str,
    root: &str,
    desired: &HostDesired,
) -> Result<Observation, HostError> {
    let script = observe::script(root, desired);
    let out = conn.run(&script).await?;
    if !out.success() {
        return Err(HostError::Script {
            host: name.to_string(),
            status: out.status,
            stderr: out.stderr.trim().to_string(),
        });
    }
    let report = observe::parse(root, &out.stdout).map_err(|source| HostError::Observe {
        host: name.to_string(),
        source,
    })?;
    with_streams(desired, report).map_err(|e| match e {
        HostError::Script { status, stderr, .. } => HostError::Script {
            host: name.to_string(),
            status,
            stderr,
        },
        other => other,
    })
}

/// Adds the streams of the host's running nats servers: the planned ones and those the last
/// generation managed.
fn with_streams(desired: &HostDesired, mut report: Observation) -> Result<Observation, HostError> {
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
