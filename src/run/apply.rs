//! The apply executor: lock every host that has changes, run the waves in order (hosts of a
//! wave in parallel, at most `max_parallel` at once), judge each wave's gate, roll a wave back
//! on every host it touched when a step or its gate fails, undo what left the plan, record the
//! new generation on each host (what was done, nothing else) and release the locks.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::future::join_all;
use tokio::sync::Semaphore;

use crate::backend::apply::{
    APPLY_PREFIX, REVERT_PREFIX, finish_script, lock_script, rollback_script, unlock_script,
    wave_script,
};
use crate::backend::sqlite;
use crate::diff::{Change, ChangeSet, HostChanges};
use crate::load::Loaded;
use crate::plan::schema::OnFailure;
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
    /// A wave's gate failed; `rolled_back` says whether the wave was undone (`on_failure`).
    #[error("wave {wave}: gate failed: {failures}{}", if *rolled_back { "; the wave was rolled back on every host it touched" } else { "; the wave stays applied (on_failure = pause)" })]
    GateFailed {
        wave: String,
        failures: String,
        rolled_back: bool,
    },
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
                "the wave was rolled back; the previous bytes of every file this apply changed are in {root}/backups/{generation}/ on the host; run `wavectl diff` to see where the hosts stand, fix the cause, then apply again"
            )),
            ApplyError::Transport(t) => t.hint(),
            ApplyError::Script { .. } => None,
            ApplyError::GateFailed { rolled_back: true, .. } => Some("the waves before it stay applied and are recorded; fix the cause, then apply again".into()),
            ApplyError::GateFailed { rolled_back: false, .. } => Some("inspect the hosts (`wavectl status`), then apply again or roll back".into()),
            ApplyError::UndoFailed { .. } => Some("the hosts are between states: the message says what failed where; repair that by hand, then run `wavectl diff` (and `wavectl migrations status`)".into()),
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
    /// Migrations this apply ran on the host (database, id), in order: undone if their wave
    /// is rolled back.
    migrated: std::sync::Mutex<Vec<(String, u32)>>,
    /// Migrations this apply reverted (database, id).
    reverted: std::sync::Mutex<Vec<(String, u32)>>,
    /// The state before this apply, and the streams as they were (to undo an update).
    previous: Option<&'a HostState>,
    streams_before: &'a BTreeMap<String, crate::observed::ObservedStream>,
    /// Changes that are done and stay done (their wave passed, or was not rolled back).
    done: std::sync::Mutex<Vec<&'a Change>>,
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
            reverted: std::sync::Mutex::new(Vec::new()),
            previous: report.state.as_ref(),
            streams_before: &report.observed.streams,
            done: std::sync::Mutex::new(Vec::new()),
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
    let connections: BTreeMap<String, &Connection> = observed
        .iter()
        .filter_map(|o| o.connection.as_ref().map(|c| (o.host.clone(), c)))
        .collect();
    let outcome = run_waves(loaded, &hosts, &connections, sink).await;
    // What was done is recorded even when a later wave failed: the next diff starts from it.
    let recorded = finish_all(loaded, &hosts, commit, &token, sink).await;
    unlock_all(&hosts, &token).await;
    match (outcome, recorded) {
        (Ok(()), Ok(applied)) => Ok(applied),
        (Err(e), _) | (Ok(()), Err(e)) => Err(e),
    }
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
    connections: &BTreeMap<String, &Connection>,
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
        if todo.is_empty() {
            continue;
        }
        if let Err(e) = run_wave(
            loaded,
            &wave.name,
            index,
            count,
            wave.max_parallel,
            &todo,
            sink,
        )
        .await
        {
            return Err(rollback_wave(loaded, &wave.name, &todo, e, sink).await);
        }
        let failures = judge_gate(loaded, &wave.name, connections, sink).await;
        if failures.is_empty() || wave.on_failure == OnFailure::Continue {
            mark_done(&todo);
            continue;
        }
        let failures = failures.join("; ");
        if wave.on_failure == OnFailure::Pause {
            mark_done(&todo);
            return Err(ApplyError::GateFailed {
                wave: wave.name.clone(),
                failures,
                rolled_back: false,
            });
        }
        let e = ApplyError::GateFailed {
            wave: wave.name.clone(),
            failures,
            rolled_back: true,
        };
        return Err(rollback_wave(loaded, &wave.name, &todo, e, sink).await);
    }
    let removals: Vec<(&HostRun, &[Change])> = hosts
        .iter()
        .filter(|h| !h.changes.removals.is_empty())
        .map(|h| (h, h.changes.removals.as_slice()))
        .collect();
    if let Err(e) = run_wave(
        loaded,
        REMOVALS_WAVE,
        waves.len(),
        count,
        u32::MAX,
        &removals,
        sink,
    )
    .await
    {
        return Err(rollback_wave(loaded, REMOVALS_WAVE, &removals, e, sink).await);
    }
    mark_done(&removals);
    Ok(())
}

fn mark_done<'a>(todo: &[(&HostRun<'a>, &'a [Change])]) {
    for (h, changes) in todo {
        h.done
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(changes.iter());
    }
}

/// Runs every check of the wave's gate (its own gates and the health checks of its
/// resources), all at once, each until it passes or times out. Returns the failures.
async fn judge_gate(
    loaded: &Loaded,
    wave: &str,
    connections: &BTreeMap<String, &Connection>,
    sink: &dyn Sink,
) -> Vec<String> {
    let checks: Vec<&crate::primitive::Check> = loaded
        .desired
        .waves
        .iter()
        .filter(|w| w.name == wave)
        .flat_map(|w| &w.gates)
        .chain(
            loaded
                .desired
                .hosts
                .values()
                .flat_map(|h| &h.checks)
                .filter(|c| c.wave == wave),
        )
        .collect();
    let verdicts = join_all(
        checks
            .iter()
            .map(|c| crate::run::probe::until(connections, loaded, c)),
    )
    .await;
    let mut failures = Vec::new();
    for (c, v) in checks.iter().zip(verdicts) {
        sink.event(Event::Gate {
            wave: wave.into(),
            check: c.name.clone(),
            passed: v.passed(),
            detail: v.detail().into(),
        });
        if !v.passed() {
            failures.push(format!("{}: {}", c.name, v.detail()));
        }
    }
    failures
}

/// Undoes a wave on every host it touched: migrations it ran (newest first, from the down SQL
/// recorded in the database), files, programs, streams. `cause` is why; if undoing fails too,
/// the error says what is where (exit 5).
async fn rollback_wave(
    loaded: &Loaded,
    wave: &str,
    todo: &[(&HostRun<'_>, &[Change])],
    cause: ApplyError,
    sink: &dyn Sink,
) -> ApplyError {
    let results = join_all(todo.iter().map(|(h, changes)| async move {
        let mut notes = revert_migrations(h, wave).await?;
        let (script, _) = rollback_script(h.root, h.generation, wave, changes);
        let out = h.conn.run(&script).await.map_err(|e| format!("{}: {e}", h.name))?;
        if !out.success() {
            let step = out.stdout.lines().rev().find_map(|l| l.strip_prefix("failed ")).unwrap_or("start");
            return Err(format!("{}: `{step}` failed: {}", h.name, out.stderr.trim().lines().last().unwrap_or("")));
        }
        undo_streams(loaded, h, changes).await?;
        // A migration this wave reverted cannot be applied again: its up SQL is in no plan here.
        for c in changes.iter() {
            if let Change::Migration { database, id, name, action: crate::diff::MigrationAction::Revert } = c
                && h.reverted.lock().unwrap_or_else(|e| e.into_inner()).contains(&(database.clone(), *id)) {
                    notes.push(format!("{database} {id:04}_{name} stays reverted on {} (apply the commit that has it to restore it)", h.name));
                }
        }
        sink.event(Event::RolledBack { host: h.name.into(), wave: wave.into() });
        Ok::<Vec<String>, String>(notes)
    }))
    .await;
    let mut notes = Vec::new();
    let mut failed = Vec::new();
    for r in results {
        match r {
            Ok(n) => notes.extend(n),
            Err(e) => failed.push(e),
        }
    }
    let cause = with_notes(cause, &notes);
    if failed.is_empty() {
        cause
    } else {
        ApplyError::UndoFailed {
            cause: Box::new(cause),
            message: failed.join("; "),
        }
    }
}

/// Adds what the rollback did to a step's or gate's error.
fn with_notes(e: ApplyError, notes: &[String]) -> ApplyError {
    if notes.is_empty() {
        return e;
    }
    let undone = format!("; undone: {}", notes.join(", "));
    match e {
        ApplyError::Step {
            host,
            wave,
            step,
            message,
            root,
            generation,
        } => ApplyError::Step {
            host,
            wave,
            step,
            message: message + &undone,
            root,
            generation,
        },
        ApplyError::GateFailed {
            wave,
            failures,
            rolled_back,
        } => ApplyError::GateFailed {
            wave,
            failures: failures + &undone,
            rolled_back,
        },
        other => other,
    }
}

/// Reverts, newest first, the migrations this wave ran on the host, journaling each.
async fn revert_migrations(h: &HostRun<'_>, wave: &str) -> Result<Vec<String>, String> {
    let done: Vec<(String, u32)> =
        std::mem::take(&mut *h.migrated.lock().unwrap_or_else(|e| e.into_inner()));
    let mut notes = Vec::new();
    for (db, id) in done.into_iter().rev() {
        let Some(spec) = h.desired.databases.iter().find(|d| d.name == db) else {
            continue;
        };
        let Some(m) = spec.migrations.iter().find(|m| m.id == id) else {
            continue;
        };
        let file = sqlite::down_file_name(id, &m.name);
        let path = crate::backend::observe::absolute(h.root, &spec.path);
        let mut entry = super::journal_entry(format!("{REVERT_PREFIX}{db} {file}"));
        entry["generation"] = h.generation.into();
        entry["wave"] = format!("rollback {wave}").into();
        let script =
            crate::backend::apply::journaled(h.root, &sqlite::revert_script(&path, id), &entry);
        let out = h
            .conn
            .run(&script)
            .await
            .map_err(|e| format!("{}: could not revert migration {db} {file}: {e}", h.name))?;
        if !out.success() {
            return Err(format!(
                "{}: could not revert migration {db} {file}: {}",
                h.name,
                sqlite::parse_failure(&out.stderr, &file)
            ));
        }
        notes.push(format!("reverted {db} {:04}_{} on {}", id, m.name, h.name));
    }
    Ok(notes)
}

/// Deletes the streams the wave created and puts updated ones back to their old config.
async fn undo_streams(loaded: &Loaded, h: &HostRun<'_>, changes: &[Change]) -> Result<(), String> {
    use crate::diff::StreamAction;
    let mut inverse = Vec::new();
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
        let undo = match action {
            StreamAction::Create => StreamAction::Delete,
            StreamAction::Update => StreamAction::Update,
            StreamAction::Delete => {
                return Err(format!(
                    "{}: stream {name} on {server}: a deleted stream cannot be restored",
                    h.name
                ));
            }
        };
        inverse.push(Change::Stream {
            server: server.clone(),
            name: name.clone(),
            action: undo,
            fields: Vec::new(),
        });
    }
    let before: Vec<crate::primitive::StreamConfig> = h
        .streams_before
        .values()
        .map(|s| s.config.clone())
        .collect();
    crate::run::streams::apply(h.conn, loaded, &inverse, &before)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
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
            // Migrations of earlier waves stay: only this wave's are undone with it.
            h.migrated.lock().unwrap_or_else(|e| e.into_inner()).clear();
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
                        if let Some(m) = migration_of(what, APPLY_PREFIX) {
                            h.migrated.lock().unwrap_or_else(|e| e.into_inner()).push(m);
                        }
                        if let Some(m) = migration_of(what, REVERT_PREFIX) {
                            h.reverted.lock().unwrap_or_else(|e| e.into_inner()).push(m);
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
                let streams = crate::run::streams::apply(
                    h.conn,
                    loaded,
                    changes,
                    &planned_streams(h.desired),
                )
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
        let done: Vec<&Change> = h.done.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if done.is_empty() {
            return Ok(None);
        }
        let hashes = crate::state::after(h.previous, h.desired, &done);
        let state = HostState {
            schema: STATE_SCHEMA,
            generation: h.generation,
            commit: commit.commit.clone(),
            dirty: commit.dirty,
            plan: loaded.desired.plan.clone(),
            applied_at: super::now_rfc3339(),
            operator: super::operator(),
            files: hashes.files,
            processes: hashes.processes,
            streams: hashes.streams,
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
        Ok(Some((h.name.to_string(), h.generation)))
    }))
    .await;
    let generations = results
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .flatten()
        .collect();
    Ok(Applied { generations })
}

/// `apply migration DB 0004_name.up.sql` -> (DB, 4) (with `prefix`, apply or revert).
fn migration_of(step: &str, prefix: &str) -> Option<(String, u32)> {
    let (db, file) = step.strip_prefix(prefix)?.split_once(' ')?;
    Some((db.to_string(), file.get(..4)?.parse().ok()?))
}

fn planned_streams(desired: &HostDesired) -> Vec<crate::primitive::StreamConfig> {
    desired.streams.iter().map(|s| s.config.clone()).collect()
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
