//! The apply executor: lock every host that has changes, run the waves in order (hosts of a
//! wave in parallel, at most `max_parallel` at once), undo what left the plan, record the new
//! generation on each host and release the locks.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::future::join_all;
use tokio::sync::Semaphore;

use crate::backend::apply::{
    APPLY_PREFIX, REVERT_PREFIX, finish_script, lock_script, unlock_script, wave_script,
};
use crate::backend::sqlite;
use crate::diff::{Change, ChangeSet, HostChanges};
use crate::load::Loaded;
use crate::primitive::HostDesired;
use crate::run::events::{Event, Sink};
use crate::run::git::PlanCommit;
use crate::run::observe::Observed;
use crate::state::{HostState, Lock, STATE_SCHEMA};
use crate::transport::{Connection, TransportError};

/// The name under which the removals run, after every wave.
pub const REMOVALS_WAVE: &str = "(removed from the plan)";

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("host {host} is locked by another apply: {lock}")]
    Locked { host: String, lock: Lock },
    #[error("host {host}, wave {wave}: step `{step}` failed: {message}")]
    Step {
        host: String,
        wave: String,
        step: String,
        message: String,
        root: String,
        generation: u64,
    },
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// A step failed and undoing what the apply had done failed too: a human must look.
    #[error("{cause}; then undoing it failed: {message}")]
    UndoFailed {
        cause: Box<ApplyError>,
        message: String,
    },
    #[error("host {host}: {message}")]
    Script { host: String, message: String },
}

impl ApplyError {
    pub fn hint(&self) -> Option<String> {
        match self {
            ApplyError::Locked { host, .. } => Some(format!(
                "wait for it to finish; if it is dead, run `wavectl unlock {host}`"
            )),
            ApplyError::Step {
                root, generation, ..
            } => Some(format!(
                "nothing was lost: the previous bytes of every file this apply changed are in {root}/backups/{generation}/ on the host; run `wavectl diff` to see where the hosts stand, fix the cause, then apply again"
            )),
            ApplyError::Transport(t) => t.hint(),
            ApplyError::Script { .. } => None,
            ApplyError::UndoFailed { .. } => Some("the database is between states: look at it, then run `wavectl migrations status` and `wavectl diff`".into()),
        }
    }
}

/// What an apply did, per host: the generation it recorded.
#[derive(Debug, Clone, Default)]
pub struct Applied {
    pub generations: BTreeMap<String, u64>,
}

struct HostRun<'a> {
    name: &'a str,
    root: &'a str,
    conn: &'a Connection,
    desired: &'a HostDesired,
    changes: &'a HostChanges,
    generation: u64,
    commit: Option<&'a str>,
    /// Migrations this apply ran on the host (database, id), in order: undone if a later step
    /// fails.
    migrated: std::sync::Mutex<Vec<(String, u32)>>,
}

/// Applies `changes`, which `diff` computed from `observed`; the change set must have no
/// problems. The connections of `observed` are reused.
pub async fn apply(
    loaded: &Loaded,
    observed: &[Observed],
    changes: &ChangeSet,
    commit: &PlanCommit,
    sink: &dyn Sink,
) -> Result<Applied, ApplyError> {
    let mut hosts = Vec::new();
    for hc in changes.hosts.iter().filter(|h| !h.is_empty()) {
        let Some(o) = observed.iter().find(|o| o.host == hc.host) else {
            continue;
        };
        let (Some(conn), Ok(report)) = (&o.connection, &o.report) else {
            continue;
        };
        let (Some(desired), Some(inv)) = (
            loaded.desired.hosts.get(&hc.host),
            loaded.inventory.host(&hc.host),
        ) else {
            continue;
        };
        let previous = report.state.as_ref().map_or(0, |s| s.generation);
        hosts.push(HostRun {
            name: &hc.host,
            root: &inv.root,
            conn,
            desired,
            changes: hc,
            generation: previous + 1,
            commit: commit.commit.as_deref(),
            migrated: std::sync::Mutex::new(Vec::new()),
        });
    }
    let token = token();
    let lock = Lock {
        operator: super::operator(),
        machine: super::machine(),
        pid: std::process::id(),
        started_at: super::now_rfc3339(),
        commit: commit.commit.clone(),
        token: token.clone(),
    };
    lock_all(&hosts, &lock).await?;
    let result = run_waves(loaded, &hosts, sink).await;
    let result = match result {
        Ok(()) => finish_all(loaded, &hosts, commit, &token, sink).await,
        Err(e) => Err(undo_migrations(&hosts, e).await),
    };
    if result.is_err() {
        unlock_all(&hosts, &token).await;
    }
    result
}

async fn lock_all(hosts: &[HostRun<'_>], lock: &Lock) -> Result<(), ApplyError> {
    let results = join_all(
        hosts
            .iter()
            .map(|h| async move { (h, h.conn.run(&lock_script(h.root, lock)).await) }),
    )
    .await;
    let mut failure = None;
    for (h, r) in results {
        let err = match r {
            Ok(out) if out.stdout.trim() == "locked" => continue,
            Ok(out) => match out.stdout.trim().strip_prefix("held ").map(parse_lock) {
                Some(Some(held)) => ApplyError::Locked {
                    host: h.name.to_string(),
                    lock: held,
                },
                _ => ApplyError::Script {
                    host: h.name.to_string(),
                    message: format!("cannot take the lock in {}: {}", h.root, out.stderr.trim()),
                },
            },
            Err(e) => e.into(),
        };
        failure.get_or_insert(err);
    }
    match failure {
        None => Ok(()),
        Some(e) => {
            unlock_all(hosts, &lock.token).await;
            Err(e)
        }
    }
}

fn parse_lock(b64: &str) -> Option<Lock> {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

async fn unlock_all(hosts: &[HostRun<'_>], token: &str) {
    join_all(hosts.iter().map(|h| async move {
        let script = unlock_script(h.root, token);
        h.conn.run(&script).await
    }))
    .await;
}

async fn run_waves(
    loaded: &Loaded,
    hosts: &[HostRun<'_>],
    sink: &dyn Sink,
) -> Result<(), ApplyError> {
    let waves = &loaded.desired.waves;
    let count = waves.len() + 1;
    for (index, wave) in waves.iter().enumerate() {
        let todo: Vec<(&HostRun, &[Change])> = hosts
            .iter()
            .filter_map(|h| {
                h.changes
                    .waves
                    .iter()
                    .find(|w| w.wave == wave.name)
                    .map(|w| (h, w.changes.as_slice()))
            })
            .collect();
        run_wave(
            loaded,
            &wave.name,
            index,
            count,
            wave.max_parallel,
            &todo,
            sink,
        )
        .await?;
    }
    let removals: Vec<(&HostRun, &[Change])> = hosts
        .iter()
        .filter(|h| !h.changes.removals.is_empty())
        .map(|h| (h, h.changes.removals.as_slice()))
        .collect();
    run_wave(
        loaded,
        REMOVALS_WAVE,
        waves.len(),
        count,
        u32::MAX,
        &removals,
        sink,
    )
    .await
}

async fn run_wave(
    loaded: &Loaded,
    wave: &str,
    index: usize,
    count: usize,
    max_parallel: u32,
    todo: &[(&HostRun<'_>, &[Change])],
    sink: &dyn Sink,
) -> Result<(), ApplyError> {
    let permits = Arc::new(Semaphore::new(max_parallel.clamp(1, 1024) as usize));
    let results = join_all(todo.iter().map(|(h, changes)| {
        let permits = permits.clone();
        async move {
            let _permit = permits.acquire().await;
            let (script, script_steps) =
                wave_script(h.root, h.generation, h.commit, wave, h.desired, changes);
            let steps = script_steps
                + changes
                    .iter()
                    .filter(|c| matches!(c, Change::Stream { .. }))
                    .count();
            sink.event(Event::WaveStart {
                host: h.name.into(),
                wave: wave.into(),
                wave_index: index,
                wave_count: count,
                steps,
            });
            let mut done = 0;
            let out = h
                .conn
                .run_streaming(&script, |line| {
                    if let Some(what) = line.strip_prefix("step ") {
                        done += 1;
                        if let Some(m) = migration_of(what) {
                            h.migrated.lock().unwrap_or_else(|e| e.into_inner()).push(m);
                        }
                        sink.event(Event::Step {
                            host: h.name.into(),
                            wave: wave.into(),
                            step: done,
                            steps,
                            what: what.into(),
                        });
                    }
                })
                .await?;
            if out.success() {
                let streams =
                    crate::run::streams::apply(h.conn, loaded, changes, &h.desired.streams)
                        .await
                        .map_err(|e| ApplyError::Step {
                            host: h.name.into(),
                            wave: wave.into(),
                            step: "streams".into(),
                            message: e.to_string(),
                            root: h.root.into(),
                            generation: h.generation,
                        })?;
                for (i, what) in streams.into_iter().enumerate() {
                    sink.event(Event::Step {
                        host: h.name.into(),
                        wave: wave.into(),
                        step: done + i + 1,
                        steps,
                        what,
                    });
                }
                sink.event(Event::WaveDone {
                    host: h.name.into(),
                    wave: wave.into(),
                });
                return Ok(());
            }
            let step = out
                .stdout
                .lines()
                .rev()
                .find_map(|l| l.strip_prefix("failed "))
                .unwrap_or("start")
                .to_string();
            let message = match step
                .split_once(APPLY_PREFIX)
                .or(step.split_once(REVERT_PREFIX))
            {
                // `apply migration DB FILE`: SQLite's error, mapped to the file and its line.
                Some((_, rest)) => sqlite::parse_failure(
                    &out.stderr,
                    rest.split_once(' ').map_or(rest, |(_, f)| f),
                ),
                None => out
                    .stderr
                    .trim()
                    .lines()
                    .last()
                    .unwrap_or("(no message)")
                    .to_string(),
            };
            sink.event(Event::Failed {
                host: h.name.into(),
                wave: wave.into(),
                step: step.clone(),
                error: message.clone(),
            });
            Err(ApplyError::Step {
                host: h.name.into(),
                wave: wave.into(),
                step,
                message,
                root: h.root.into(),
                generation: h.generation,
            })
        }
    }))
    .await;
    results
        .into_iter()
        .collect::<Result<Vec<()>, ApplyError>>()
        .map(|_| ())
}

async fn finish_all(
    loaded: &Loaded,
    hosts: &[HostRun<'_>],
    commit: &PlanCommit,
    token: &str,
    sink: &dyn Sink,
) -> Result<Applied, ApplyError> {
    let results = join_all(hosts.iter().map(|h| async move {
        let state = HostState {
            schema: STATE_SCHEMA,
            generation: h.generation,
            commit: commit.commit.clone(),
            dirty: commit.dirty,
            plan: loaded.desired.plan.clone(),
            applied_at: super::now_rfc3339(),
            operator: super::operator(),
            files: h
                .desired
                .files
                .iter()
                .map(|f| (f.path.clone(), f.sha256()))
                .collect(),
            processes: h
                .desired
                .processes
                .iter()
                .map(|p| (p.name.clone(), p.spec_hash()))
                .collect(),
            streams: h
                .desired
                .streams
                .iter()
                .map(|s| (s.config.name.clone(), s.server.clone()))
                .collect(),
        };
        let out = h.conn.run(&finish_script(h.root, &state, token)).await?;
        if !out.success() {
            return Err(ApplyError::Script {
                host: h.name.into(),
                message: format!(
                    "cannot record generation {}: {}",
                    h.generation,
                    out.stderr.trim()
                ),
            });
        }
        sink.event(Event::Recorded {
            host: h.name.into(),
            generation: h.generation,
        });
        Ok((h.name.to_string(), h.generation))
    }))
    .await;
    let generations = results.into_iter().collect::<Result<BTreeMap<_, _>, _>>()?;
    Ok(Applied { generations })
}

/// `apply migration DB 0004_name.up.sql` -> (DB, 4).
fn migration_of(step: &str) -> Option<(String, u32)> {
    let (db, file) = step.strip_prefix(APPLY_PREFIX)?.split_once(' ')?;
    Some((db.to_string(), file.get(..4)?.parse().ok()?))
}

/// After a failed step, reverts (newest first) the migrations this apply ran, so the databases
/// are as they were before it. The error says what was undone, or what could not be.
async fn undo_migrations(hosts: &[HostRun<'_>], error: ApplyError) -> ApplyError {
    let mut notes = Vec::new();
    for h in hosts {
        let done: Vec<(String, u32)> = h.migrated.lock().unwrap_or_else(|e| e.into_inner()).clone();
        for (db, id) in done.into_iter().rev() {
            let Some(spec) = h.desired.databases.iter().find(|d| d.name == db) else {
                continue;
            };
            let path = crate::backend::observe::absolute(h.root, &spec.path);
            let script = sqlite::revert_script(&path, id);
            match h.conn.run(&script).await {
                Ok(out) if out.success() => {
                    notes.push(format!("reverted {db} {id:04} on {}", h.name))
                }
                Ok(out) => {
                    let why = sqlite::parse_failure(&out.stderr, &format!("{db} {id:04}"));
                    return ApplyError::UndoFailed {
                        cause: Box::new(error),
                        message: format!(
                            "{}: could not revert migration {db} {id:04}: {why}",
                            h.name
                        ),
                    };
                }
                Err(e) => {
                    return ApplyError::UndoFailed {
                        cause: Box::new(error),
                        message: format!(
                            "{}: could not revert migration {db} {id:04}: {e}",
                            h.name
                        ),
                    };
                }
            }
        }
    }
    match (error, notes.is_empty()) {
        (
            ApplyError::Step {
                host,
                wave,
                step,
                message,
                root,
                generation,
            },
            false,
        ) => ApplyError::Step {
            host,
            wave,
            step,
            message: format!("{message}; undone: {}", notes.join(", ")),
            root,
            generation,
        },
        (e, _) => e,
    }
}

/// A token unique to this apply: only it may remove the locks it took.
fn token() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    crate::primitive::sha256_hex(
        format!("{}-{nanos}-{}", std::process::id(), super::machine()).as_bytes(),
    )[..24]
        .to_string()
}
