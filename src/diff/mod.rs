//! The diff core: desired primitives versus what hosts reported -> an ordered change set, per
//! host and wave. Pure; secrets are masked before any content enters the change set.

mod display;

use std::collections::BTreeMap;

use serde::Serialize;

pub use display::{HumanDiff, Palette};

use crate::observed::HostObserved;
use crate::primitive::{Desired, HostDesired, StreamConfig};
use crate::secrets::mask;

/// Version of the JSON document `diff --output json` prints.
pub const SCHEMA: &str = "wavectl.diff/1";

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChangeSet {
    pub schema: &'static str,
    pub hosts: Vec<HostChanges>,
    /// Hosts that could not be observed: their changes are unknown.
    pub unreachable: Vec<Unreachable>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unreachable {
    pub host: String,
    pub error: String,
    pub hint: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HostChanges {
    pub host: String,
    /// Changes of each wave, in run order; waves without changes are left out.
    pub waves: Vec<WaveChanges>,
    /// What the host has that no longer is in the plan, in the order it is undone.
    pub removals: Vec<Change>,
    /// What stops an apply before anything runs (checksum drift, ...).
    pub problems: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WaveChanges {
    pub wave: String,
    pub changes: Vec<Change>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Change {
    File {
        path: String,
        action: FileAction,
        #[serde(serialize_with = "octal")]
        mode: Option<u32>,
        #[serde(serialize_with = "octal")]
        mode_before: Option<u32>,
        sha256: Option<String>,
        sha256_before: Option<String>,
        /// Unified diff of the (masked) content, when both sides' text is known.
        diff: Option<String>,
    },
    Process {
        name: String,
        action: ProcessAction,
        reason: String,
    },
    Migration {
        database: String,
        id: u32,
        name: String,
        action: MigrationAction,
    },
    Stream {
        server: String,
        name: String,
        action: StreamAction,
        fields: Vec<FieldChange>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FileAction {
    Create,
    Update,
    Chmod,
    Delete,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProcessAction {
    Start,
    Restart,
    StopAndRemove,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MigrationAction {
    Apply,
    Revert,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StreamAction {
    Create,
    Update,
    Delete,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldChange {
    pub field: String,
    pub before: String,
    pub after: String,
}

impl Change {
    /// Loses data or stops something: what an operator must read twice.
    pub fn is_destructive(&self) -> bool {
        match self {
            Change::File { action, .. } => *action == FileAction::Delete,
            Change::Process { action, .. } => *action == ProcessAction::StopAndRemove,
            Change::Migration { action, .. } => *action == MigrationAction::Revert,
            Change::Stream { action, .. } => *action == StreamAction::Delete,
        }
    }
}

impl ChangeSet {
    /// Every host answered and none needs a change.
    pub fn is_empty(&self) -> bool {
        self.hosts.iter().all(HostChanges::is_empty) && self.unreachable.is_empty()
    }

    pub fn has_problems(&self) -> bool {
        self.hosts.iter().any(|h| !h.problems.is_empty())
    }

    pub fn changes(&self) -> impl Iterator<Item = &Change> {
        self.hosts
            .iter()
            .flat_map(|h| h.waves.iter().flat_map(|w| &w.changes).chain(&h.removals))
    }
}

impl HostChanges {
    pub fn is_empty(&self) -> bool {
        self.waves.is_empty() && self.removals.is_empty() && self.problems.is_empty()
    }
}

/// Compares every host of the plan with what it reported (`observed` lacks hosts that were
/// never set up: they count as empty). `secrets` are masked out of every shown content.
pub fn diff(
    desired: &Desired,
    observed: &BTreeMap<String, HostObserved>,
    secrets: &BTreeMap<String, String>,
) -> ChangeSet {
    let empty = HostObserved::default();
    let hosts = desired
        .hosts
        .iter()
        .map(|(name, want)| {
            let have = observed.get(name).unwrap_or(&empty);
            diff_host(
                name,
                want,
                have,
                &desired
                    .waves
                    .iter()
                    .map(|w| w.name.clone())
                    .collect::<Vec<_>>(),
                secrets,
            )
        })
        .collect();
    ChangeSet {
        schema: SCHEMA,
        hosts,
        unreachable: Vec::new(),
    }
}

fn diff_host(
    name: &str,
    want: &HostDesired,
    have: &HostObserved,
    waves: &[String],
    secrets: &BTreeMap<String, String>,
) -> HostChanges {
    let mut by_wave: BTreeMap<&str, Vec<Change>> = BTreeMap::new();
    let mut problems = Vec::new();

    // Files first: processes read them at start.
    let mut changed_files = Vec::new();
    for f in &want.files {
        let sha = f.sha256();
        let change = match have.files.get(&f.path) {
            None => Some((FileAction::Create, None, None, None)),
            Some(o) if o.sha256 != sha => {
                let diff = o.content.as_ref().map(|old| {
                    let before = mask(old, &f.secret_keys, secrets);
                    let after = mask(&f.content, &f.secret_keys, secrets);
                    if before == after {
                        "(only secret values changed; they are not shown)\n".to_string()
                    } else {
                        unified(&f.path, &before, &after)
                    }
                });
                Some((
                    FileAction::Update,
                    Some(o.mode),
                    Some(o.sha256.clone()),
                    diff,
                ))
            }
            Some(o) if o.mode != f.mode => Some((
                FileAction::Chmod,
                Some(o.mode),
                Some(o.sha256.clone()),
                None,
            )),
            Some(_) => None,
        };
        if let Some((action, mode_before, sha_before, diff)) = change {
            changed_files.push(f.path.as_str());
            by_wave
                .entry(&f.origin.wave)
                .or_default()
                .push(Change::File {
                    path: f.path.clone(),
                    action,
                    mode: Some(f.mode),
                    mode_before,
                    sha256: Some(sha),
                    sha256_before: sha_before,
                    diff,
                });
        }
    }

    // Migrations before the processes that use the schema.
    for db in &want.databases {
        let applied = have
            .databases
            .get(&db.name)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let max_applied = applied.iter().map(|a| a.id).max().unwrap_or(0);
        for a in applied {
            if let Some(m) = db.migrations.iter().find(|m| m.id == a.id)
                && m.checksum != a.checksum
            {
                problems.push(format!(
                        "database {}: applied migration {:04}_{}.up.sql has changed since it ran (checksum drift); restore the file, or accept the reviewed edit with `wavectl migrations accept PLAN --db {} {}`",
                        db.name, m.id, m.name, db.name, m.id
                    ));
            }
        }
        for a in applied {
            if let Some(m) = db.migrations.iter().find(|m| m.id == a.id)
                && !a.down_checksum.is_empty()
                && m.down_checksum != a.down_checksum
            {
                problems.push(format!(
                    "database {}: the down file {:04}_{}.down.sql has changed since the migration ran, but a revert runs the down SQL recorded then; restore the file, or record the reviewed edit with `wavectl migrations accept PLAN --db {} {}`",
                    db.name, m.id, m.name, db.name, m.id
                ));
            }
        }
        for a in applied
            .iter()
            .filter(|a| a.irreversible && !db.migrations.iter().any(|m| m.id == a.id))
        {
            problems.push(format!(
                "database {}: migration {:04}_{} is marked irreversible and the plan no longer has it: it is never reverted implicitly; restore it in the plan, or revert it by hand and record that",
                db.name, a.id, a.name
            ));
        }
        let mut reverts: Vec<Change> = applied
            .iter()
            .filter(|a| !db.migrations.iter().any(|m| m.id == a.id))
            .map(|a| Change::Migration {
                database: db.name.clone(),
                id: a.id,
                name: a.name.clone(),
                action: MigrationAction::Revert,
            })
            .collect();
        reverts.reverse();
        let mut changes = reverts;
        for m in db
            .migrations
            .iter()
            .filter(|m| !applied.iter().any(|a| a.id == m.id))
        {
            if m.id < max_applied {
                problems.push(format!(
                    "database {}: migration {:04}_{} is new but numbered below the applied {:04}; expected new migrations after the last applied one",
                    db.name, m.id, m.name, max_applied
                ));
            }
            changes.push(Change::Migration {
                database: db.name.clone(),
                id: m.id,
                name: m.name.clone(),
                action: MigrationAction::Apply,
            });
        }
        if !changes.is_empty() {
            by_wave.entry(&db.origin.wave).or_default().extend(changes);
        }
    }

    for p in &want.processes {
        let reason = match have.processes.get(&p.name) {
            None => Some((ProcessAction::Start, "new".to_string())),
            Some(o) if o.spec_hash.as_deref() != Some(p.spec_hash().as_str()) => {
                let files: Vec<&str> = p
                    .config_hashes
                    .keys()
                    .map(String::as_str)
                    .filter(|f| changed_files.contains(f))
                    .collect();
                let why = if files.is_empty() {
                    "spec changed".to_string()
                } else {
                    format!("{} changed", files.join(", "))
                };
                Some((ProcessAction::Restart, why))
            }
            Some(o) if !o.state.is_up() => {
                Some((ProcessAction::Start, format!("was {}", o.state.name())))
            }
            Some(_) => None,
        };
        if let Some((action, reason)) = reason {
            by_wave
                .entry(&p.origin.wave)
                .or_default()
                .push(Change::Process {
                    name: p.name.clone(),
                    action,
                    reason,
                });
        }
    }

    // Streams last: their server must run.
    for s in &want.streams {
        let change = match have.streams.get(&s.config.name) {
            None => Some((StreamAction::Create, Vec::new())),
            Some(o) => {
                let fields = stream_fields(&o.config, &s.config);
                (!fields.is_empty()).then_some((StreamAction::Update, fields))
            }
        };
        if let Some((action, fields)) = change {
            by_wave
                .entry(&s.origin.wave)
                .or_default()
                .push(Change::Stream {
                    server: s.server.clone(),
                    name: s.config.name.clone(),
                    action,
                    fields,
                });
        }
    }

    HostChanges {
        host: name.to_string(),
        waves: waves
            .iter()
            .filter_map(|w| {
                by_wave.remove(w.as_str()).map(|changes| WaveChanges {
                    wave: w.clone(),
                    changes,
                })
            })
            .collect(),
        removals: removals(want, have),
        problems,
    }
}

/// Undo order for what left the plan: stop processes, delete streams, then files.
fn removals(want: &HostDesired, have: &HostObserved) -> Vec<Change> {
    let mut out = Vec::new();
    for name in have
        .processes
        .keys()
        .filter(|n| !want.processes.iter().any(|p| &p.name == *n))
    {
        out.push(Change::Process {
            name: name.clone(),
            action: ProcessAction::StopAndRemove,
            reason: "not in the plan".into(),
        });
    }
    for (name, o) in have
        .streams
        .iter()
        .filter(|(n, _)| !want.streams.iter().any(|s| &s.config.name == *n))
    {
        out.push(Change::Stream {
            server: o.server.clone(),
            name: name.clone(),
            action: StreamAction::Delete,
            fields: Vec::new(),
        });
    }
    for db in have
        .databases
        .keys()
        .filter(|d| !want.databases.iter().any(|x| &x.name == *d))
    {
        let mut applied = have.databases[db].clone();
        applied.sort_by_key(|a| std::cmp::Reverse(a.id));
        for a in applied {
            out.push(Change::Migration {
                database: db.clone(),
                id: a.id,
                name: a.name,
                action: MigrationAction::Revert,
            });
        }
    }
    for (path, o) in have
        .files
        .iter()
        .filter(|(p, _)| !want.files.iter().any(|f| &f.path == *p))
    {
        out.push(Change::File {
            path: path.clone(),
            action: FileAction::Delete,
            mode: None,
            mode_before: Some(o.mode),
            sha256: None,
            sha256_before: Some(o.sha256.clone()),
            diff: None,
        });
    }
    out
}

fn stream_fields(have: &StreamConfig, want: &StreamConfig) -> Vec<FieldChange> {
    let mut out = Vec::new();
    let mut cmp = |field: &str, before: String, after: String| {
        if before != after {
            out.push(FieldChange {
                field: field.into(),
                before,
                after,
            });
        }
    };
    let ms = |v: u64| {
        if v == 0 {
            "unlimited".to_string()
        } else {
            crate::units::Dur::from_millis(v).compact()
        }
    };
    cmp("subjects", have.subjects.join(","), want.subjects.join(","));
    cmp(
        "storage",
        format!("{:?}", have.storage).to_lowercase(),
        format!("{:?}", want.storage).to_lowercase(),
    );
    cmp(
        "retention",
        format!("{:?}", have.retention).to_lowercase(),
        format!("{:?}", want.retention).to_lowercase(),
    );
    cmp("max_age", ms(have.max_age_ms), ms(want.max_age_ms));
    cmp(
        "max_bytes",
        have.max_bytes.to_string(),
        want.max_bytes.to_string(),
    );
    cmp(
        "max_msgs",
        have.max_msgs.to_string(),
        want.max_msgs.to_string(),
    );
    cmp(
        "replicas",
        have.replicas.to_string(),
        want.replicas.to_string(),
    );
    cmp(
        "duplicate_window",
        ms(have.duplicate_window_ms),
        ms(want.duplicate_window_ms),
    );
    let sources = |c: &StreamConfig| {
        let mut s: Vec<String> = c
            .sources
            .iter()
            .map(|s| match &s.external_api {
                Some(api) => format!("{} ({api})", s.name),
                None => s.name.clone(),
            })
            .collect();
        s.sort();
        s.join(",")
    };
    cmp("sources", sources(have), sources(want));
    out
}

/// File modes as people write them: `"0644"`.
fn octal<S: serde::Serializer>(mode: &Option<u32>, s: S) -> Result<S::Ok, S::Error> {
    match mode {
        Some(m) => s.serialize_str(&format!("{m:04o}")),
        None => s.serialize_none(),
    }
}

fn unified(path: &str, before: &str, after: &str) -> String {
    similar::TextDiff::from_lines(before, after)
        .unified_diff()
        .context_radius(3)
        .header(&format!("a/{path}"), &format!("b/{path}"))
        .to_string()
}
