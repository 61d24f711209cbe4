//! Every host's recorded generations (`generations/N.json`), read in parallel, one round trip
//! each: for `history` and for `rollback --to previous`.

use base64::Engine as _;
use futures::future::join_all;

use crate::inventory::Inventory;
use crate::state::HostState;

/// Each inventory host with its generations, oldest first, or why it could not be read.
pub async fn of_all(inventory: &Inventory) -> Vec<(String, Result<Vec<HostState>, String>)> {
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

/// `gen <base64 of generations/N.json>` lines -> generations, oldest first.
fn parse(stdout: &str) -> Vec<HostState> {
    let mut gens: Vec<HostState> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("gen "))
        .filter_map(|b| {
            base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .ok()
        })
        .filter_map(|bytes| serde_json::from_slice(&bytes).ok())
        .collect();
    gens.sort_by_key(|g| g.generation);
    gens
}
