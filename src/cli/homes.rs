//! The home directories of hosts whose root is under `~`, remembered between runs on the
//! operator's machine (`$XDG_CACHE_HOME/wavectl/homes.json`, else `~/.cache/...`), so that
//! `diff` and `status` render the plan before they connect and observe in one round trip. The
//! observe script reports `$HOME` every time: a remembered home that is wrong is corrected and
//! the host observed again, so the cache can only cost time, never correctness.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::inventory::{Host, Inventory};

/// The remembered home of each `~` host of `inventory` that has one, by host name.
pub fn remembered(inventory: &Inventory) -> BTreeMap<String, String> {
    let all = read();
    tilde_hosts(inventory)
        .filter_map(|h| Some((h.name.to_string(), all.get(&key(inventory, h))?.clone())))
        .collect()
}

/// Whether every `~` host of `inventory` has a remembered home.
pub fn covers(inventory: &Inventory, homes: &BTreeMap<String, String>) -> bool {
    tilde_hosts(inventory).all(|h| homes.contains_key(h.name.get_ref().as_str()))
}

/// Remembers `homes` (by host name) for the `~` hosts of `inventory`. Best effort: a cache
/// that cannot be written only makes the next run ask again.
pub fn remember(inventory: &Inventory, homes: &BTreeMap<String, String>) {
    let Some(path) = path() else { return };
    let mut all = read();
    let before = all.clone();
    // Entries of ssh configs that are gone (a lab torn down) are forgotten.
    all.retain(|k, _| {
        k.split_once(" via ")
            .is_none_or(|(_, cfg)| std::path::Path::new(cfg).exists())
    });
    for h in tilde_hosts(inventory) {
        if let Some(home) = homes.get(h.name.get_ref().as_str()) {
            all.insert(key(inventory, h), home.clone());
        }
    }
    if all == before {
        return;
    }
    let Some(dir) = path.parent() else { return };
    let _ = std::fs::create_dir_all(dir);
    let tmp = path.with_extension(format!("json.{}", std::process::id()));
    let text = serde_json::to_string_pretty(&all).unwrap_or_default();
    if std::fs::write(&tmp, text).is_ok() {
        let _ = std::fs::rename(&tmp, &path);
    }
}

fn tilde_hosts(inventory: &Inventory) -> impl Iterator<Item = &Host> {
    inventory.hosts.iter().filter(|h| h.root.starts_with('~'))
}

/// Where a host is reached: its ssh destination (or address) and the ssh config that says
/// what that destination means.
fn key(inventory: &Inventory, h: &Host) -> String {
    let dest = h
        .ssh
        .as_ref()
        .map_or_else(|| h.address.get_ref().to_string(), |d| d.to_string());
    match &inventory.ssh_config {
        Some(cfg) => format!("{dest} via {cfg}"),
        None => dest,
    }
}

fn path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("wavectl").join("homes.json"))
}

fn read() -> BTreeMap<String, String> {
    path()
        .and_then(|p| std::fs::read_to_string(p).ok())
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default()
}
