//! Changing JetStream streams on the hosts' NATS servers, reached through the host's SSH
//! connection (a port forward) so the NATS port need not be open to the operator. (Observing
//! them needs no connection: the observe script reads each server's `/jsz`.)

use std::time::{Duration, Instant};

use futures::TryStreamExt;

use crate::backend::nats::to_api;
use crate::diff::{Change, StreamAction};
use std::collections::BTreeMap;

use crate::load::Loaded;
use crate::primitive::StreamConfig;
use crate::transport::{Host, TransportError};

#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error("host {host}: nats server {server} ({address}) does not answer: {reason}")]
    Connect {
        host: String,
        server: String,
        address: String,
        reason: String,
    },
    #[error("host {host}: stream {stream} on {server}: {reason}")]
    Api {
        host: String,
        server: String,
        stream: String,
        reason: String,
    },
}

/// Where a planned nats server listens, as its host sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerAddress {
    pub host: String,
    pub address: String,
    pub port: u16,
}

/// The planned nats servers by name, resolved once from the plan and the inventory.
pub type Servers = BTreeMap<String, ServerAddress>;

pub fn servers(loaded: &Loaded) -> Servers {
    loaded
        .plan
        .nats
        .iter()
        .filter_map(|node| {
            let host = loaded.inventory.host(node.host.get_ref())?;
            Some((
                node.name.get_ref().to_string(),
                ServerAddress {
                    host: node.host.get_ref().to_string(),
                    address: host.address.get_ref().to_string(),
                    port: *node.port.get_ref(),
                },
            ))
        })
        .collect()
}

/// A JetStream context on `server`, trying until `wait` has passed (a server just started
/// needs a moment).
pub async fn jetstream(
    conn: &dyn Host,
    servers: &Servers,
    server: &str,
    wait: Duration,
) -> Result<async_nats::jetstream::Context, StreamError> {
    let ServerAddress {
        host,
        address,
        port,
    } = servers
        .get(server)
        .cloned()
        .ok_or_else(|| StreamError::Connect {
            host: conn.name().into(),
            server: server.into(),
            address: String::new(),
            reason: "not in the plan".into(),
        })?;
    let local = conn.forward(&address, port).await?;
    let start = Instant::now();
    loop {
        let attempt = async_nats::ConnectOptions::new()
            .connection_timeout(Duration::from_secs(2))
            .connect(local.to_string())
            .await;
        match attempt {
            Ok(client) => {
                let js = async_nats::jetstream::new(client);
                // JetStream may still be starting although the server accepts clients.
                // (Listing names works on every server version; the account-info reply of
                // nats-server 2.9 does not parse with this client.)
                match js.stream_names().try_next().await {
                    Ok(_) => return Ok(js),
                    Err(e) if start.elapsed() >= wait => {
                        return Err(StreamError::Connect {
                            host,
                            server: server.into(),
                            address: format!("{address}:{port}"),
                            reason: format!("JetStream not ready: {e}"),
                        });
                    }
                    Err(_) => {}
                }
            }
            Err(e) if start.elapsed() >= wait => {
                return Err(StreamError::Connect {
                    host,
                    server: server.into(),
                    address: format!("{address}:{port}"),
                    reason: e.to_string(),
                });
            }
            Err(_) => {}
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Creates, updates or deletes the streams of `changes`; `configs` holds what a created or
/// updated stream becomes (the plan's, or the old ones when a wave is undone).
pub async fn apply(
    conn: &dyn Host,
    servers: &Servers,
    changes: &[Change],
    configs: &[StreamConfig],
) -> Result<Vec<String>, StreamError> {
    let mut done = Vec::new();
    for c in changes {
        let Change::Stream {
            server,
            name,
            action,
            ..
        } = c
        else {
            continue;
        };
        let js = jetstream(conn, servers, server, Duration::from_secs(20)).await?;
        let api = |reason: String| StreamError::Api {
            host: conn.name().into(),
            server: server.clone(),
            stream: name.clone(),
            reason,
        };
        let config = || {
            configs
                .iter()
                .find(|c| &c.name == name)
                .map(to_api)
                .ok_or_else(|| api("no config to give it".into()))
        };
        match action {
            // A stream the host had before wavectl managed it is taken over, not refused.
            StreamAction::Create => {
                let cfg = config()?;
                if js.create_stream(cfg.clone()).await.is_err() {
                    js.update_stream(cfg)
                        .await
                        .map_err(|e| api(e.to_string()))?;
                }
            }
            // An update keeps the stream and its messages (JetStream refuses what it cannot
            // change in place, e.g. storage; that error is shown as is).
            StreamAction::Update => {
                js.update_stream(config()?)
                    .await
                    .map_err(|e| api(e.to_string()))?;
            }
            StreamAction::Delete => {
                js.delete_stream(name)
                    .await
                    .map_err(|e| api(e.to_string()))?;
            }
        }
        let verb = match action {
            StreamAction::Create => "create",
            StreamAction::Update => "update",
            StreamAction::Delete => "delete",
        };
        done.push(format!("{verb} stream {name}"));
    }
    Ok(done)
}
