//! What the plan expands to on each host: files, supervisor processes, migrations, streams and
//! checks. Diff and apply work on these only; every field is plain data (serde) so a desired
//! state can be recorded on the host and compared with the next one.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::inventory::Supervisor;
use crate::plan::schema::{OnFailure, Retention, StopSignal, Storage};

/// Everything the plan wants, host by host, with the waves in run order.
#[derive(Debug, Clone, Serialize)]
pub struct Desired {
    pub plan: String,
    pub waves: Vec<WaveSpec>,
    pub hosts: BTreeMap<String, HostDesired>,
}

#[derive(Debug, Clone, Serialize)]
pub struct WaveSpec {
    pub name: String,
    pub max_parallel: u32,
    pub on_failure: OnFailure,
    pub gates: Vec<Check>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct HostDesired {
    pub root: String,
    /// The host's process supervisor (`backend::supervisor::of` gives its backend).
    #[serde(skip_serializing_if = "Supervisor::is_default")]
    pub supervisor: Supervisor,
    pub files: Vec<FileSpec>,
    pub processes: Vec<ProcessSpec>,
    pub databases: Vec<DatabaseSpec>,
    pub streams: Vec<StreamSpec>,
    pub checks: Vec<Check>,
}

/// Where a primitive comes from: its wave and the plan resource (`hub.edge`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    pub wave: String,
    pub resource: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileSpec {
    /// Relative to the host root (`files/prometheus/edge.yml`).
    pub path: String,
    #[serde(skip)]
    pub content: String,
    pub mode: u32,
    /// Env keys whose values are secrets: masked wherever the content is shown.
    pub secret_keys: Vec<String>,
    #[serde(flatten)]
    pub origin: Origin,
}

impl FileSpec {
    pub fn sha256(&self) -> String {
        sha256_hex(self.content.as_bytes())
    }
}

/// A program for the host's supervisor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessSpec {
    pub name: String,
    pub command: Vec<String>,
    pub cwd: Option<String>,
    /// Env files (paths under the root) read before start; secrets live only there.
    pub env_files: Vec<String>,
    pub autorestart: bool,
    pub restart_delay_ms: u64,
    pub max_restarts: u32,
    pub min_uptime_s: u64,
    pub stop_signal: StopSignal,
    pub kill_timeout_s: u64,
    pub log_max_bytes: u64,
    pub log_keep: u32,
    /// Files whose content the process reads at start, with their hashes: a change restarts it.
    pub config_hashes: BTreeMap<String, String>,
    #[serde(flatten)]
    pub origin: Origin,
}

impl ProcessSpec {
    /// Hash over everything that requires a restart when it changes.
    pub fn spec_hash(&self) -> String {
        let mut me = self.clone();
        // Moving a process between waves does not change what runs.
        me.origin = Origin {
            wave: String::new(),
            resource: String::new(),
        };
        sha256_hex(&serde_json::to_vec(&me).unwrap_or_default())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DatabaseSpec {
    pub name: String,
    pub engine: crate::plan::schema::Engine,
    /// Absolute, or relative to the host root (sqlite: the database file; postgres: the
    /// passfile's stem, written for the length of one script).
    pub path: String,
    /// postgres: the server and login (`None` for sqlite).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub postgres: Option<PgTarget>,
    pub migrations: Vec<MigrationSpec>,
    #[serde(flatten)]
    pub origin: Origin,
}

/// A PostgreSQL database as a host's `psql` reaches it: validated values only.
#[derive(Clone, PartialEq, Eq, Serialize)]
pub struct PgTarget {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub dbname: String,
    /// The secret's name (its value is `password`).
    pub password_secret: String,
    /// Never serialized: it travels to the host only inside the passfile.
    #[serde(skip)]
    pub password: String,
}

/// The password masked.
impl std::fmt::Debug for PgTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgTarget")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("dbname", &self.dbname)
            .field("password_secret", &self.password_secret)
            .field("password", &crate::secrets::MASK)
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MigrationSpec {
    pub id: u32,
    pub name: String,
    #[serde(skip)]
    pub up_sql: String,
    #[serde(skip)]
    pub down_sql: String,
    /// sha256 of the up SQL with line endings normalised to `\n`.
    pub checksum: String,
    pub down_checksum: String,
    pub no_transaction: bool,
    pub irreversible: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StreamSpec {
    /// The nats server (plan name) holding the stream.
    pub server: String,
    /// The server's monitoring URL as its host sees it (`/jsz` lists streams with configs).
    pub monitor: String,
    pub config: StreamConfig,
    #[serde(flatten)]
    pub origin: Origin,
}

/// The JetStream configuration wavectl manages, as compared field by field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamConfig {
    pub name: String,
    pub subjects: Vec<String>,
    pub storage: Storage,
    pub retention: Retention,
    /// 0 = unlimited, as in JetStream.
    pub max_age_ms: u64,
    pub max_bytes: i64,
    pub max_msgs: i64,
    pub replicas: u8,
    pub duplicate_window_ms: u64,
    pub sources: Vec<StreamSourceSpec>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct StreamSourceSpec {
    pub name: String,
    /// `$JS.<domain>.API` when the source lives in another JetStream domain.
    pub external_api: Option<String>,
}

/// A probe with its retry policy: a wave gate or a resource's health check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    pub name: String,
    /// The wave whose gate this check is part of.
    pub wave: String,
    pub probe: Probe,
    pub timeout_ms: u64,
    pub interval_ms: u64,
}

/// A probe, resolved to addresses; `host` is where it runs from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Probe {
    Http {
        host: String,
        url: String,
        status: u16,
        body: Option<String>,
    },
    Tcp {
        host: String,
        address: String,
        port: u16,
    },
    Process {
        host: String,
        name: String,
        soak_s: u64,
        /// The supervisor of `host`, which the probe asks.
        #[serde(skip_serializing_if = "Supervisor::is_default")]
        supervisor: Supervisor,
    },
    NatsStream {
        host: String,
        server: String,
        /// The server's monitoring URL (its `/jsz` lists streams with their configs).
        monitor: String,
        stream: StreamConfig,
    },
    PromQuery {
        host: String,
        url: String,
        expr: String,
        min: u64,
    },
    Command {
        host: String,
        run: Vec<String>,
    },
    /// At most `max_firing` active, unsilenced alerts at an alertmanager.
    AlertQuiet {
        host: String,
        alertmanager: String,
        /// The alertmanager's base URL as its host sees it.
        url: String,
        max_firing: u64,
    },
}

impl Probe {
    /// The host the probe runs on.
    pub fn host(&self) -> &str {
        match self {
            Probe::Http { host, .. }
            | Probe::Tcp { host, .. }
            | Probe::Process { host, .. }
            | Probe::NatsStream { host, .. }
            | Probe::PromQuery { host, .. }
            | Probe::Command { host, .. }
            | Probe::AlertQuiet { host, .. } => host,
        }
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}
