//! Every host's recorded generations (`generations/N.json`), read in parallel, one round trip
//! each: for `history` and for `rollback --to previous`.

use base64::Engine as _;
use futures::future::join_all;

use crate::inventory::Inventory;
use crate::state::{HostState, Lock, Pin};

/// A host's generations, oldest first, and the pin a rollback left.
#[derive(Debug, Default)]
pub struct History {
    pub generations: Vec<HostState>,
    pub pin: Option<Pin>,
    /// The lock of an apply in progress, or of one that died.
    pub lock: Option<Lock>,
}

/// Each inventory host with its history, or why it could not be read.
pub async fn of_all(inventory: &Inventory) -> Vec<(String, Result<History, String>)> {
    join_all(inventory.hosts.iter().map(|h| async move {
        let name = h.name.get_ref().to_string();
        let conn = match crate::transport::connect(inventory, h).await {
            Ok(c) => c,
            Err(e) => return (name, Err(e.to_string())),
        };
        let script = crate::backend::apply::generations_script(&h.root).into_string();
        let out = conn.run(&script).await;
        conn.close().await;
        match out {
            Err(e) => (name, Err(e.to_string())),
            Ok(out) => (name, Ok(parse(&out.stdout))),
        }
    }))
    .await
}

/// `gen <base64 of generations/N.json>` lines and a `pin <base64>` line -> the history.
fn parse(stdout: &str) -> History {
    let decode = |b: &str| {
        base64::engine::general_purpose::STANDARD
            .decode(b.trim())
            .ok()
    };
    let mut generations: Vec<HostState> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("gen "))
        .filter_map(decode)
        .filter_map(|bytes| serde_json::from_slice(&bytes).ok())
        .collect();
    generations.sort_by_key(|g| g.generation);
    let pin = stdout
        .lines()
        .find_map(|l| l.strip_prefix("pin "))
        .and_then(decode)
        .and_then(|bytes| serde_json::from_slice(&bytes).ok());
    let lock = stdout
        .lines()
        .find_map(|l| l.strip_prefix("lock "))
        .and_then(decode)
        .and_then(|bytes| serde_json::from_slice(&bytes).ok());
    History {
        generations,
        pin,
        lock,
    }
}

/// The built-in templates that the newest generation made from `commit` recorded, from the
/// first host that has one.
pub async fn recorded_templates(
    inventory: &Inventory,
    commit: &str,
) -> Option<std::collections::BTreeMap<String, String>> {
    let found = join_all(inventory.hosts.iter().map(|h| async move {
        let conn = crate::transport::connect(inventory, h).await.ok()?;
        let script = crate::backend::apply::recorded_templates_script(&h.root, commit);
        let out = conn.run(script.as_str()).await;
        conn.close().await;
        let out = out.ok()?;
        let b64 = out
            .stdout
            .lines()
            .find_map(|l| l.strip_prefix("templates "))?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .ok()?;
        serde_json::from_slice(&bytes).ok()
    }))
    .await;
    found.into_iter().flatten().next()
}
