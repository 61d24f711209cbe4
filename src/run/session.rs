//! A `Session` for a plan with `~` roots: connect to every host of the plan at once, resolve
//! the roots on those same connections, then observe on them (one round trip each) and hand
//! them on to whatever runs next (apply, probes). Without `~` roots, `observe_all` observes
//! each host as soon as it is connected.

use std::collections::BTreeMap;
use std::time::Instant;

use futures::future::join_all;

use crate::inventory::Inventory;
use crate::load::Loaded;
use crate::run::observe::{Observed, observed};
use crate::transport::{self, Connection, TransportError};

/// The connections of one command, by host, with when each attempt started.
pub struct Session {
    hosts: BTreeMap<String, (Instant, Result<Connection, TransportError>)>,
}

impl Session {
    /// Connects to the named hosts of the inventory, all at once (names it lacks are left out).
    pub async fn connect(inventory: &Inventory, names: &[String]) -> Session {
        let attempts = names.iter().filter_map(|name| {
            let host = inventory.host(name)?;
            Some(async move {
                let start = Instant::now();
                (
                    name.clone(),
                    (start, transport::connect(inventory, host).await),
                )
            })
        });
        Session {
            hosts: join_all(attempts).await.into_iter().collect(),
        }
    }

    /// The home directory of each connected host whose inventory root starts with `~`, asked
    /// on its open connection. A host that does not answer keeps `~`: observing it reports
    /// the error.
    pub async fn homes(&self, inventory: &Inventory) -> BTreeMap<String, String> {
        let asks = self.hosts.iter().filter_map(|(name, (_, conn))| {
            let conn = conn.as_ref().ok()?;
            inventory
                .host(name)?
                .root
                .starts_with('~')
                .then_some(async move {
                    let out = conn.run("printf '%s' \"$HOME\"").await.ok()?;
                    let home = out.stdout.trim();
                    (out.success() && home.starts_with('/'))
                        .then(|| (name.clone(), home.to_string()))
                })
        });
        join_all(asks).await.into_iter().flatten().collect()
    }

    /// Observes every host that has something in the plan, on the session's connections.
    pub async fn observe(mut self, loaded: &Loaded) -> Vec<Observed> {
        let mut todo = Vec::new();
        for (name, desired) in &loaded.desired.hosts {
            let Some(host) = loaded.inventory.host(name) else {
                continue;
            };
            let (start, conn) = match self.hosts.remove(name) {
                Some(attempt) => attempt,
                None => (
                    Instant::now(),
                    transport::connect(&loaded.inventory, host).await,
                ),
            };
            todo.push((name, desired, start, conn));
        }
        join_all(
            todo.into_iter()
                .map(|(name, desired, start, conn)| observed(name, desired, start, conn)),
        )
        .await
    }

    /// The session's connections, by host, for a command that runs its own script on each.
    pub fn into_connections(self) -> BTreeMap<String, Result<Connection, TransportError>> {
        self.hosts.into_iter().map(|(n, (_, c))| (n, c)).collect()
    }

    pub async fn close(self) {
        join_all(
            self.hosts
                .into_values()
                .filter_map(|(_, c)| c.ok())
                .map(Connection::close),
        )
        .await;
    }
}
