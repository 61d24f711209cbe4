//! What a host reported about itself: plain data, filled by the observe step over SSH and
//! compared with the desired primitives by `diff`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::primitive::{HostDesired, StreamConfig};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostObserved {
    /// Files wavectl manages that exist on the host, by path under the root.
    pub files: BTreeMap<String, ObservedFile>,
    /// The programs of the host's supervisor.
    pub processes: BTreeMap<String, ObservedProcess>,
    /// Applied migrations per database, by database name.
    pub databases: BTreeMap<String, Vec<AppliedMigration>>,
    /// Streams wavectl manages, by name.
    pub streams: BTreeMap<String, ObservedStream>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObservedFile {
    pub sha256: String,
    pub mode: u32,
    /// The text, when the observe step fetched it (for showing a diff); secrets are masked
    /// before anything is shown.
    pub content: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObservedStream {
    /// The nats server (plan name) holding it.
    pub server: String,
    pub config: StreamConfig,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObservedProcess {
    pub state: ProcessState,
    pub pid: Option<u32>,
    pub uptime_s: Option<u64>,
    pub restarts: u32,
    /// The spec hash recorded when wavectl last (re)started it.
    pub spec_hash: Option<String>,
}

/// Supervisor process states (supervisord's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum ProcessState {
    Running,
    Starting,
    Backoff,
    Stopping,
    Stopped,
    Exited,
    Fatal,
    Unknown,
}

impl ProcessState {
    pub fn name(self) -> &'static str {
        match self {
            ProcessState::Running => "RUNNING",
            ProcessState::Starting => "STARTING",
            ProcessState::Backoff => "BACKOFF",
            ProcessState::Stopping => "STOPPING",
            ProcessState::Stopped => "STOPPED",
            ProcessState::Exited => "EXITED",
            ProcessState::Fatal => "FATAL",
            ProcessState::Unknown => "UNKNOWN",
        }
    }

    /// Up, or on its way up by itself.
    pub fn is_up(self) -> bool {
        matches!(self, ProcessState::Running | ProcessState::Starting)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppliedMigration {
    pub id: u32,
    pub name: String,
    pub checksum: String,
    pub applied_at: String,
    pub generation: u64,
    /// Marked `-- wavectl: irreversible`: never reverted implicitly.
    #[serde(default)]
    pub irreversible: bool,
    /// Checksum of the down SQL recorded with it (what a revert runs).
    #[serde(default)]
    pub down_checksum: String,
}

/// What a host looks like right after a successful apply of `desired`: every file in place,
/// every process running its spec, every migration applied, every stream configured.
pub fn converged(desired: &HostDesired) -> HostObserved {
    HostObserved {
        files: desired
            .files
            .iter()
            .map(|f| {
                let o = ObservedFile {
                    sha256: f.sha256(),
                    mode: f.mode,
                    content: Some(f.content.clone()),
                };
                (f.path.clone(), o)
            })
            .collect(),
        processes: desired
            .processes
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let o = ObservedProcess {
                    state: ProcessState::Running,
                    pid: Some(1000 + i as u32),
                    uptime_s: Some(60),
                    restarts: 0,
                    spec_hash: Some(p.spec_hash()),
                };
                (p.name.clone(), o)
            })
            .collect(),
        databases: desired
            .databases
            .iter()
            .map(|db| {
                let applied = db
                    .migrations
                    .iter()
                    .map(|m| AppliedMigration {
                        id: m.id,
                        name: m.name.clone(),
                        checksum: m.checksum.clone(),
                        applied_at: "2026-01-01T00:00:00Z".into(),
                        generation: 1,
                        irreversible: m.irreversible,
                        down_checksum: m.down_checksum.clone(),
                    })
                    .collect();
                (db.name.clone(), applied)
            })
            .collect(),
        streams: desired
            .streams
            .iter()
            .map(|s| {
                let o = ObservedStream {
                    server: s.server.clone(),
                    config: s.config.clone(),
                };
                (s.config.name.clone(), o)
            })
            .collect(),
    }
}
