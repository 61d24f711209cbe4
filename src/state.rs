//! The host's record of its current generation (`state.json`), of a running apply (`lock`) and
//! of the emergency rollback that pins it (`pin.json`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The newest `state.json` schema this build reads and writes.
pub const STATE_SCHEMA: u32 = 1;

/// `state.json`: what generation the host is at and the hashes of every primitive it applied.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostState {
    pub schema: u32,
    pub generation: u64,
    /// The plan's git commit; `None` outside git.
    pub commit: Option<String>,
    /// The plan tree had uncommitted changes (`apply --allow-dirty`).
    #[serde(default)]
    pub dirty: bool,
    pub plan: String,
    pub applied_at: String,
    pub operator: String,
    /// Managed file path -> sha256.
    pub files: BTreeMap<String, String>,
    /// Program name -> spec hash it was (re)started with.
    pub processes: BTreeMap<String, String>,
    /// Managed stream name -> the nats server (plan name) holding it.
    #[serde(default)]
    pub streams: BTreeMap<String, String>,
    /// The commit's subject line.
    #[serde(default)]
    pub subject: Option<String>,
    /// The waves this generation applied on the host, in order.
    #[serde(default)]
    pub waves: Vec<String>,
    /// `ok`, or `rolled back at WAVE` (the waves before it stay).
    #[serde(default)]
    pub result: String,
    /// Set when the generation was made by `rollback --to REV`: REV as given.
    #[serde(default)]
    pub rollback_to: Option<String>,
}

/// `lock`: present while an apply runs on the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lock {
    pub operator: String,
    /// Where the apply runs (the operator's machine) and its pid there.
    pub machine: String,
    pub pid: u32,
    pub started_at: String,
    pub commit: Option<String>,
    /// A random token: only the apply that wrote the lock removes it.
    pub token: String,
}

impl std::fmt::Display for Lock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} (pid {} on {}) since {}",
            self.operator, self.pid, self.machine, self.started_at
        )?;
        if let Some(c) = &self.commit {
            // Read from a host: characters, not bytes (a byte index can split one).
            let short: String = c.chars().take(12).collect();
            write!(f, ", commit {short}")?;
        }
        Ok(())
    }
}

/// `pin.json`: a rollback pinned the host to a revision; an `apply` of any other commit is
/// refused (exit 6) until `wavectl unpin` or `apply --unpin`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pin {
    /// The revision as the operator gave it (`phase1`, `HEAD~3`, `previous`).
    pub rev: String,
    pub commit: String,
    pub operator: String,
    pub pinned_at: String,
    #[serde(default)]
    pub reason: Option<String>,
}

impl std::fmt::Display for Pin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let short: String = self.commit.chars().take(12).collect();
        write!(
            f,
            "pinned to {} ({short}) by {} at {}",
            self.rev, self.operator, self.pinned_at
        )?;
        if let Some(r) = &self.reason {
            write!(f, ": {r}")?;
        }
        Ok(())
    }
}

/// An apply refused because hosts are pinned by a rollback to another commit.
#[derive(Debug, thiserror::Error)]
#[error("{}", .pins.iter().map(|(h, p)| format!("host {h} is {p}")).collect::<Vec<_>>().join("; "))]
pub struct Pinned {
    pub pins: Vec<(String, Pin)>,
}

/// What a generation records of each kind of primitive.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hashes {
    pub files: BTreeMap<String, String>,
    pub processes: BTreeMap<String, String>,
    pub streams: BTreeMap<String, String>,
}

/// Hashes of (files, programs, streams) on a host after an apply that completed `done` of its
/// changes: the previous state, with each completed change's primitive set to what the plan
/// wants (or removed). Changes of waves that were rolled back or never ran leave it as it was.
pub fn after(
    previous: Option<&HostState>,
    desired: &crate::primitive::HostDesired,
    done: &[&crate::diff::Change],
) -> Hashes {
    use crate::diff::{Change, FileAction, ProcessAction, StreamAction};
    let mut files = previous.map(|s| s.files.clone()).unwrap_or_default();
    let mut processes = previous.map(|s| s.processes.clone()).unwrap_or_default();
    let mut streams = previous.map(|s| s.streams.clone()).unwrap_or_default();
    for c in done {
        match c {
            Change::File {
                path,
                action: FileAction::Delete,
                ..
            } => {
                files.remove(path);
            }
            Change::File { path, .. } => {
                if let Some(f) = desired.files.iter().find(|f| &f.path == path) {
                    files.insert(path.clone(), f.sha256());
                }
            }
            Change::Process {
                name,
                action: ProcessAction::StopAndRemove,
                ..
            } => {
                processes.remove(name);
            }
            Change::Process { name, .. } => {
                if let Some(p) = desired.processes.iter().find(|p| &p.name == name) {
                    processes.insert(name.clone(), p.spec_hash());
                }
            }
            Change::Stream {
                name,
                action: StreamAction::Delete,
                ..
            } => {
                streams.remove(name);
            }
            Change::Stream { name, server, .. } => {
                streams.insert(name.clone(), server.clone());
            }
            Change::Migration { .. } => {}
        }
    }
    Hashes {
        files,
        processes,
        streams,
    }
}
