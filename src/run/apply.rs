//! The apply executor: lock every host that has changes, run the waves in order (hosts of a
//! wave in parallel, at most `max_parallel` at once), judge each wave's gate, roll a wave back
//! on every host it touched when a step or its gate fails, undo what left the plan, record the
//! new generation on each host (what was done, nothing else) and release the locks. It talks
//! to hosts only through the `Host` trait and to probes only through `GateJudge`; what to do
//! after each wave is decided in `run::decide`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use futures::future::join_all;
use tokio::sync::Semaphore;

use crate::backend::apply::{
    LockReply, Progress, Step, finish_script, journaled, lock_script, parse_lock_reply,
    rollback_script, unlock_script, wave_script,
};
use crate::backend::sqlite;
use crate::diff::{Change, ChangeSet, HostChanges, MigrationAction, StreamAction};
use crate::observed::ObservedStream;
use crate::primitive::{Check, Desired, HostDesired, StreamConfig, WaveSpec};
use crate::run::decide::{self, Next, Standing, WaveResult};
use crate::run::events::{Event, Sink};
use crate::run::git::PlanCommit;
use crate::run::observe::Observed;
use crate::run::probe::GateJudge;
use crate::run::streams::{self, StreamError};
use crate::state::{HostState, Lock, STATE_SCHEMA};
use crate::transport::{Host, TransportError};

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
    /// A step or gate failed and undoing its wave failed too: a human must look.
    #[error(
        "{cause}; then undoing it failed: {}; where the hosts stand: {}",
        join(failures),
        join(standings)
    )]
    UndoFailed {
        cause: Box<ApplyError>,
        failures: Vec<UndoError>,
        standings: Vec<Standing>,
    },
    #[error("host {host}: {message}")]
    Script { host: String, message: String },
    /// SIGINT or SIGTERM: the current wave was undone on every host it touched.
    #[error(
        "interrupted in wave {wave}: its steps finished, then it was undone on every host it touched"
    )]
    Interrupted { wave: String },
    /// A wave's gate failed; `rolled_back` says whether the wave was undone (`on_failure`).
    #[error("wave {wave}: gate failed: {failures}{}", if *rolled_back { "; the wave was rolled back on every host it touched" } else { "; the wave stays applied (on_failure = pause)" })]
    GateFailed {
        wave: String,
        failures: String,
        rolled_back: bool,
    },
}

impl ApplyError {
    /// What a generation records of how its apply ended.
    pub fn result(&self) -> String {
        match self {
            ApplyError::Step { wave, .. } => format!("rolled back at {wave} (step failed)"),
            ApplyError::Interrupted { wave } => format!("interrupted, rolled back at {wave}"),
            ApplyError::GateFailed {
                wave,
                rolled_back: true,
                ..
            } => format!("rolled back at {wave} (gate failed)"),
            ApplyError::GateFailed { wave, .. } => format!("paused at {wave} (gate failed)"),
            ApplyError::UndoFailed { cause, .. } => format!("{}, undo failed", cause.result()),
            _ => "failed".to_string(),
        }
    }
}

fn join<T: std::fmt::Display>(items: &[T]) -> String {
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Why undoing a wave failed on a host.
#[derive(Debug, thiserror::Error)]
pub enum UndoError {
    #[error("{host}: could not revert migration {db} {file}: {source}")]
    RevertUnreachable {
        host: String,
        db: String,
        file: String,
        source: TransportError,
    },
    #[error("{host}: could not revert migration {db} {file}: {message}")]
    Revert {
        host: String,
        db: String,
        file: String,
        message: String,
    },
    #[error("{host}: {source}")]
    Transport {
        host: String,
        source: TransportError,
    },
    #[error("{host}: `{step}` failed: {message}")]
    Step {
        host: String,
        step: String,
        message: String,
    },
    #[error("{host}: stream {stream} on {server}: a deleted stream cannot be restored")]
    DeletedStream {
        host: String,
        server: String,
        stream: String,
    },
    #[error("{0}")]
    Streams(StreamError),
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
            ApplyError::Interrupted { .. } => Some("the waves before it stay applied and are recorded, the locks are released; run `wavectl diff` to see where the hosts stand".into()),
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

/// One host to apply to: its connection, what it should be and what changes get it there.
pub struct Target<'a> {
    pub host: &'a dyn Host,
    pub desired: &'a HostDesired,
    pub changes: &'a HostChanges,
    /// The state before this apply, and the streams as they were (to undo an update).
    pub previous: Option<&'a HostState>,
    pub streams_before: &'a BTreeMap<String, ObservedStream>,
}

/// What an apply needs besides its hosts: the waves, the checks, where nats servers listen,
/// the commit it records, and who judges the gates.
pub struct Job<'a> {
    /// Set by SIGINT/SIGTERM: the apply stops after the current step and undoes its wave.
    pub stop: &'a Stop,
    /// `rollback --to REV`: REV as given, recorded in each generation.
    pub rollback_to: Option<&'a str>,
    /// The built-in templates the plan rendered with, recorded beside each generation.
    pub builtins: &'a BTreeMap<String, String>,
    /// Streams (host, name) a rollback keeps on their server but no longer manages: the
    /// generation stops recording them, so no later diff offers to delete them.
    pub released_streams: &'a [(String, String)],
    /// The plan file, recorded in each generation.
    pub plan: &'a str,
    pub waves: &'a [WaveSpec],
    /// The health checks of every host's resources: each is part of its wave's gate.
    pub checks: Vec<&'a Check>,
    pub servers: &'a streams::Servers,
    pub commit: &'a PlanCommit,
    pub gate: &'a dyn GateJudge,
}

/// A request to stop, set from a signal handler and read between steps.
#[derive(Debug, Default)]
pub struct Stop(std::sync::atomic::AtomicBool);

impl Stop {
    pub fn request(&self) {
        self.0.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn requested(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Resolves once a stop was requested.
    async fn wait(&self) {
        while !self.requested() {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
}

/// The hosts of `changes` that have something to do and answered, with their connections.
pub fn targets<'a>(
    desired: &'a Desired,
    observed: &'a [Observed],
    changes: &'a ChangeSet,
) -> Vec<Target<'a>> {
    changes
        .hosts
        .iter()
        .filter(|h| !h.is_empty())
        .filter_map(|hc| {
            let o = observed.iter().find(|o| o.host == hc.host)?;
            let (Some(conn), Ok(report)) = (&o.connection, &o.report) else {
                return None;
            };
            Some(Target {
                host: conn,
                desired: desired.hosts.get(&hc.host)?,
                changes: hc,
                previous: report.state.as_ref(),
                streams_before: &report.observed.streams,
            })
        })
        .collect()
}

struct HostRun<'a> {
    name: &'a str,
    root: &'a str,
    host: &'a dyn Host,
    desired: &'a HostDesired,
    changes: &'a HostChanges,
    generation: u64,
    commit: Option<&'a str>,
    /// Migrations this wave ran on the host (database, id), in order: undone if the wave is
    /// rolled back.
    migrated: Mutex<Vec<(String, u32)>>,
    /// Migrations this apply reverted (database, id).
    reverted: Mutex<Vec<(String, u32)>>,
    previous: Option<&'a HostState>,
    streams_before: &'a BTreeMap<String, ObservedStream>,
    /// Changes that are done and stay done (their wave passed, or was not rolled back).
    done: Mutex<Vec<&'a Change>>,
    /// The waves this apply holds on the host, in order.
    held: Mutex<Vec<String>>,
}

fn locked<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Applies the targets' changes, which `diff` computed from what the hosts reported; the
/// change set must have no problems (`decide::readiness`).
pub async fn apply(
    job: &Job<'_>,
    targets: &[Target<'_>],
    sink: &dyn Sink,
) -> Result<Applied, ApplyError> {
    let hosts: Vec<HostRun> = targets
        .iter()
        .map(|t| HostRun {
            name: &t.changes.host,
            root: &t.desired.root,
            host: t.host,
            desired: t.desired,
            changes: t.changes,
            generation: t.previous.map_or(0, |s| s.generation) + 1,
            commit: job.commit.commit.as_deref(),
            migrated: Mutex::new(Vec::new()),
            reverted: Mutex::new(Vec::new()),
            previous: t.previous,
            streams_before: t.streams_before,
            done: Mutex::new(Vec::new()),
            held: Mutex::new(Vec::new()),
        })
        .collect();
    let token = token();
    let lock = Lock {
        operator: super::operator(),
        machine: super::machine(),
        pid: std::process::id(),
        started_at: super::now_rfc3339(),
        commit: job.commit.commit.clone(),
        token: token.clone(),
    };
    lock_all(&hosts, &lock).await?;
    let outcome = run_waves(job, &hosts, sink).await;
    let result = match &outcome {
        Ok(()) => "ok".to_string(),
        Err(e) => e.result(),
    };
    // What was done is recorded even when a later wave failed: the next diff starts from it.
    let recorded = finish_all(job, &hosts, &token, &result, sink).await;
    unlock_all(&hosts, &token).await;
    match (outcome, recorded) {
        (Ok(()), Ok(applied)) => Ok(applied),
        (Err(e), _) | (Ok(()), Err(e)) => Err(e),
    }
}

async fn lock_all(hosts: &[HostRun<'_>], lock: &Lock) -> Result<(), ApplyError> {
    let script = |h: &HostRun| lock_script(h.root, lock).into_string();
    let results = join_all(hosts.iter().map(|h| {
        let script = script(h);
        async move { (h, h.host.run(&script).await) }
    }))
    .await;
    let mut failure = None;
    for (h, r) in results {
        let err = match r {
            Ok(out) => match parse_lock_reply(&out.stdout) {
                LockReply::Locked => continue,
                LockReply::Held(held) => ApplyError::Locked {
                    host: h.name.to_string(),
                    lock: held,
                },
                LockReply::Refused => ApplyError::Script {
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

async fn unlock_all(hosts: &[HostRun<'_>], token: &str) {
    join_all(hosts.iter().map(|h| async move {
        let script = unlock_script(h.root, token).into_string();
        h.host.run(&script).await
    }))
    .await;
}

async fn run_waves(
    job: &Job<'_>,
    hosts: &[HostRun<'_>],
    sink: &dyn Sink,
) -> Result<(), ApplyError> {
    let count = job.waves.len() + 1;
    for (index, wave) in job.waves.iter().enumerate() {
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
        if job.stop.requested() {
            return Err(ApplyError::Interrupted {
                wave: wave.name.clone(),
            });
        }
        let (result, error) = match run_wave(
            job,
            &wave.name,
            index,
            count,
            wave.max_parallel,
            &todo,
            sink,
        )
        .await
        {
            Err(e) => (WaveResult::StepFailed, Some(e)),
            Ok(()) if job.stop.requested() => (WaveResult::StepFailed, Some(interrupted(wave))),
            Ok(()) => {
                let failures = tokio::select! {
                    f = judge_gate(job, &wave.name, sink) => f,
                    () = job.stop.wait() => return Err(rollback_wave(job, &wave.name, hosts, &todo, interrupted(wave), sink).await),
                };
                if failures.is_empty() {
                    (WaveResult::Passed, None)
                } else {
                    let undo = decide::next(WaveResult::GateFailed, wave.on_failure);
                    let e = gate_failed(&wave.name, failures.join("; "), undo == Next::Undo);
                    (WaveResult::GateFailed, Some(e))
                }
            }
        };
        match (decide::next(result, wave.on_failure), error) {
            (Next::Pause, Some(e)) => {
                mark_done(&todo, &wave.name);
                return Err(e);
            }
            (Next::Undo, Some(cause)) => {
                return Err(rollback_wave(job, &wave.name, hosts, &todo, cause, sink).await);
            }
            // An interrupt undoes its wave whatever `on_failure` says.
            (_, Some(cause @ ApplyError::Interrupted { .. })) => {
                return Err(rollback_wave(job, &wave.name, hosts, &todo, cause, sink).await);
            }
            // Passed, or a failed gate that lets the apply go on.
            _ => mark_done(&todo, &wave.name),
        }
    }
    if job.stop.requested() {
        return Err(ApplyError::Interrupted {
            wave: REMOVALS_WAVE.into(),
        });
    }
    let removals: Vec<(&HostRun, &[Change])> = hosts
        .iter()
        .filter(|h| !h.changes.removals.is_empty())
        .map(|h| (h, h.changes.removals.as_slice()))
        .collect();
    if let Err(e) = run_wave(
        job,
        REMOVALS_WAVE,
        job.waves.len(),
        count,
        u32::MAX,
        &removals,
        sink,
    )
    .await
    {
        return Err(rollback_wave(job, REMOVALS_WAVE, hosts, &removals, e, sink).await);
    }
    mark_done(&removals, REMOVALS_WAVE);
    Ok(())
}

fn interrupted(wave: &WaveSpec) -> ApplyError {
    ApplyError::Interrupted {
        wave: wave.name.clone(),
    }
}

fn gate_failed(wave: &str, failures: String, rolled_back: bool) -> ApplyError {
    ApplyError::GateFailed {
        wave: wave.into(),
        failures,
        rolled_back,
    }
}

fn mark_done<'a>(todo: &[(&HostRun<'a>, &'a [Change])], wave: &str) {
    for (h, changes) in todo {
        locked(&h.done).extend(changes.iter());
        locked(&h.held).push(wave.to_string());
    }
}

/// Runs every check of the wave's gate (its own gates and the health checks of its
/// resources), all at once, each until it passes or times out. Returns the failures.
async fn judge_gate(job: &Job<'_>, wave: &str, sink: &dyn Sink) -> Vec<String> {
    let checks: Vec<&Check> = job
        .waves
        .iter()
        .filter(|w| w.name == wave)
        .flat_map(|w| &w.gates)
        .chain(job.checks.iter().copied().filter(|c| c.wave == wave))
        .collect();
    let verdicts = join_all(checks.iter().map(|c| job.gate.judge(c))).await;
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
/// the error says what failed and where every host stands (exit 5).
async fn rollback_wave(
    job: &Job<'_>,
    wave: &str,
    hosts: &[HostRun<'_>],
    todo: &[(&HostRun<'_>, &[Change])],
    cause: ApplyError,
    sink: &dyn Sink,
) -> ApplyError {
    let touched: Vec<&str> = todo.iter().map(|(h, _)| h.name).collect();
    let undo = decide::undo_hosts(&touched);
    let results =
        join_all(todo.iter().filter(|(h, _)| undo.contains(&h.name)).map(
            |(h, changes)| async move { (h.name, undo_host(job, h, wave, changes, sink).await) },
        ))
        .await;
    let mut notes = Vec::new();
    let mut failures = Vec::new();
    let mut failed_hosts = Vec::new();
    for (host, r) in results {
        match r {
            Ok(n) => notes.extend(n),
            Err(e) => {
                failed_hosts.push(host);
                failures.push(e);
            }
        }
    }
    let cause = with_notes(cause, &notes);
    if failures.is_empty() {
        return cause;
    }
    let held: Vec<(&str, Vec<String>)> = hosts
        .iter()
        .map(|h| (h.name, locked(&h.held).clone()))
        .collect();
    ApplyError::UndoFailed {
        cause: Box::new(cause),
        failures,
        standings: decide::standings(&held, wave, &failed_hosts),
    }
}

async fn undo_host(
    job: &Job<'_>,
    h: &HostRun<'_>,
    wave: &str,
    changes: &[Change],
    sink: &dyn Sink,
) -> Result<Vec<String>, UndoError> {
    let mut notes = revert_migrations(h, wave).await?;
    let built = rollback_script(h.root, h.desired.supervisor, h.generation, wave, changes);
    let out = h
        .host
        .run(built.script.as_str())
        .await
        .map_err(|source| UndoError::Transport {
            host: h.name.into(),
            source,
        })?;
    if !out.success() {
        let f = built.failure(&out.stdout, &out.stderr);
        return Err(UndoError::Step {
            host: h.name.into(),
            step: f.label(),
            message: f.message,
        });
    }
    undo_streams(job, h, changes).await?;
    // A migration this wave reverted cannot be applied again: its up SQL is in no plan here.
    let reverted = locked(&h.reverted).clone();
    for c in changes {
        if let Change::Migration {
            database,
            id,
            name,
            action: MigrationAction::Revert,
        } = c
            && reverted.contains(&(database.clone(), *id))
        {
            notes.push(format!(
                "{database} {id:04}_{name} stays reverted on {} (apply the commit that has it to restore it)",
                h.name
            ));
        }
    }
    sink.event(Event::RolledBack {
        host: h.name.into(),
        wave: wave.into(),
    });
    Ok(notes)
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
async fn revert_migrations(h: &HostRun<'_>, wave: &str) -> Result<Vec<String>, UndoError> {
    let done: Vec<(String, u32)> = std::mem::take(&mut *locked(&h.migrated));
    let mut notes = Vec::new();
    for (db, id) in done.into_iter().rev() {
        let Some(spec) = h.desired.databases.iter().find(|d| d.name == db) else {
            continue;
        };
        let Some(m) = spec.migrations.iter().find(|m| m.id == id) else {
            continue;
        };
        let file = sqlite::down_file_name(id, &m.name);
        let eng = crate::backend::engine::for_db(spec);
        let step = Step::RevertMigration {
            db: db.clone(),
            id,
            file: file.clone(),
            engine: spec.engine,
        };
        let mut entry = super::journal_entry(step.to_string());
        entry["generation"] = h.generation.into();
        entry["wave"] = format!("rollback {wave}").into();
        let script = journaled(h.root, &eng.revert_script(h.root, spec, id), &entry);
        let out = match h.host.run(script.as_str()).await {
            Ok(out) => out,
            Err(source) => {
                return Err(UndoError::RevertUnreachable {
                    host: h.name.into(),
                    db,
                    file,
                    source,
                });
            }
        };
        if !out.success() {
            let message = eng.parse_failure(&out.stderr, &file);
            return Err(UndoError::Revert {
                host: h.name.into(),
                db,
                file,
                message,
            });
        }
        notes.push(format!("reverted {db} {:04}_{} on {}", id, m.name, h.name));
    }
    Ok(notes)
}

/// Deletes the streams the wave created and puts updated ones back to their old config.
async fn undo_streams(job: &Job<'_>, h: &HostRun<'_>, changes: &[Change]) -> Result<(), UndoError> {
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
                return Err(UndoError::DeletedStream {
                    host: h.name.into(),
                    server: server.clone(),
                    stream: name.clone(),
                });
            }
        };
        inverse.push(Change::Stream {
            server: server.clone(),
            name: name.clone(),
            action: undo,
            fields: Vec::new(),
        });
    }
    if inverse.is_empty() {
        return Ok(());
    }
    let before: Vec<StreamConfig> = h
        .streams_before
        .values()
        .map(|s| s.config.clone())
        .collect();
    streams::apply(h.host, job.servers, &inverse, &before)
        .await
        .map(|_| ())
        .map_err(UndoError::Streams)
}

async fn run_wave(
    job: &Job<'_>,
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
            locked(&h.migrated).clear();
            let built = wave_script(h.root, h.generation, h.commit, wave, h.desired, changes);
            let steps = built.steps.len()
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
            let mut on_line = |line: &str| {
                let Some(Progress::Done(step)) = built.progress(line) else {
                    return;
                };
                done += 1;
                match &step {
                    Step::ApplyMigration { db, id, .. } => {
                        locked(&h.migrated).push((db.clone(), *id))
                    }
                    Step::RevertMigration { db, id, .. } => {
                        locked(&h.reverted).push((db.clone(), *id))
                    }
                    _ => {}
                }
                sink.event(Event::Step {
                    host: h.name.into(),
                    wave: wave.into(),
                    step: done,
                    steps,
                    what: step.to_string(),
                });
            };
            let out = h
                .host
                .run_streaming(built.script.as_str(), &mut on_line)
                .await?;
            if out.success() {
                let streams =
                    streams::apply(h.host, job.servers, changes, &planned_streams(h.desired))
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
            let failure = built.failure(&out.stdout, &out.stderr);
            sink.event(Event::Failed {
                host: h.name.into(),
                wave: wave.into(),
                step: failure.label(),
                error: failure.message.clone(),
            });
            Err(ApplyError::Step {
                host: h.name.into(),
                wave: wave.into(),
                step: failure.label(),
                message: failure.message,
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
    job: &Job<'_>,
    hosts: &[HostRun<'_>],
    token: &str,
    result: &str,
    sink: &dyn Sink,
) -> Result<Applied, ApplyError> {
    let results = join_all(hosts.iter().map(|h| async move {
        let done: Vec<&Change> = locked(&h.done).clone();
        if done.is_empty() {
            return Ok(None);
        }
        let mut hashes = crate::state::after(h.previous, h.desired, &done);
        hashes.streams.retain(|s, _| {
            !job.released_streams
                .iter()
                .any(|(host, r)| host == h.name && r == s)
        });
        let state = HostState {
            schema: STATE_SCHEMA,
            generation: h.generation,
            commit: job.commit.commit.clone(),
            dirty: job.commit.dirty,
            plan: job.plan.to_string(),
            applied_at: super::now_rfc3339(),
            operator: super::operator(),
            files: hashes.files,
            processes: hashes.processes,
            streams: hashes.streams,
            subject: job.commit.subject.clone(),
            waves: locked(&h.held).clone(),
            result: result.to_string(),
            rollback_to: job.rollback_to.map(str::to_string),
        };
        let built = finish_script(h.root, &state, job.builtins, token);
        let out = h.host.run(built.script.as_str()).await?;
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

fn planned_streams(desired: &HostDesired) -> Vec<StreamConfig> {
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
    )
    .chars()
    .take(24)
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diff::{FileAction, WaveChanges};
    use crate::gate::Verdict;
    use crate::plan::schema::OnFailure;
    use crate::primitive::{FileSpec, Origin, Probe};
    use crate::transport::fake::FakeHost;
    use futures::future::LocalBoxFuture;

    /// Fails the checks with these names, passes the others.
    struct Gate(Vec<&'static str>);

    impl GateJudge for Gate {
        fn judge<'a>(&'a self, check: &'a Check) -> LocalBoxFuture<'a, Verdict> {
            let failed = self.0.contains(&check.name.as_str());
            Box::pin(async move {
                if failed {
                    Verdict::Fail("down".into())
                } else {
                    Verdict::Pass("up".into())
                }
            })
        }
    }

    #[derive(Default)]
    struct Events(Mutex<Vec<Event>>);

    impl Sink for Events {
        fn event(&self, e: Event) {
            locked(&self.0).push(e);
        }
    }

    fn wave(name: &str, on_failure: OnFailure) -> WaveSpec {
        WaveSpec {
            name: name.into(),
            max_parallel: 10,
            on_failure,
            gates: vec![Check {
                name: format!("{name} gate"),
                wave: name.into(),
                probe: Probe::Tcp {
                    host: "a".into(),
                    address: "127.0.0.1".into(),
                    port: 9,
                },
                timeout_ms: 0,
                interval_ms: 0,
            }],
        }
    }

    /// A host whose plan writes `files/<host><n>` in wave `w<n>`, for each of `waves`.
    struct Planned {
        desired: HostDesired,
        changes: HostChanges,
    }

    fn planned(host: &str, waves: &[&str]) -> Planned {
        let path = |w: &str| format!("files/{host}{w}");
        let desired = HostDesired {
            root: format!("/srv/{host}"),
            files: waves
                .iter()
                .map(|w| FileSpec {
                    path: path(w),
                    content: format!("{host} {w}\n"),
                    mode: 0o644,
                    secret_keys: vec![],
                    origin: Origin {
                        wave: w.to_string(),
                        resource: "file".into(),
                    },
                })
                .collect(),
            ..HostDesired::default()
        };
        let changes = HostChanges {
            host: host.into(),
            waves: waves
                .iter()
                .map(|w| WaveChanges {
                    wave: w.to_string(),
                    changes: vec![Change::File {
                        path: path(w),
                        action: FileAction::Create,
                        mode: Some(0o644),
                        mode_before: None,
                        sha256: None,
                        sha256_before: None,
                        diff: None,
                    }],
                })
                .collect(),
            removals: vec![],
            problems: vec![],
        };
        Planned { desired, changes }
    }

    struct Run {
        result: Result<Applied, ApplyError>,
    }

    fn run(hosts: &[(&FakeHost, &Planned)], waves: &[WaveSpec], failing: Vec<&'static str>) -> Run {
        let streams_before = BTreeMap::new();
        let targets: Vec<Target> = hosts
            .iter()
            .map(|(h, p)| Target {
                host: *h,
                desired: &p.desired,
                changes: &p.changes,
                previous: None,
                streams_before: &streams_before,
            })
            .collect();
        let commit = PlanCommit {
            commit: Some("c0ffee".into()),
            dirty: false,
            dirty_files: vec![],
            subject: None,
        };
        let servers = streams::Servers::new();
        let gate = Gate(failing);
        let stop = Stop::default();
        let builtins = BTreeMap::new();
        let job = Job {
            released_streams: &[],
            builtins: &builtins,
            stop: &stop,
            rollback_to: None,
            plan: "plans/p.toml",
            waves,
            checks: vec![],
            servers: &servers,
            commit: &commit,
            gate: &gate,
        };
        let sink = Events::default();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let result = rt.block_on(apply(&job, &targets, &sink));
        Run { result }
    }

    /// The waves each script a host received belongs to: `w1`, `rollback w2`, `(finish)`...
    fn waves_run(h: &FakeHost) -> Vec<String> {
        h.scripts()
            .iter()
            .filter_map(|s| {
                let w = s.lines().find_map(|l| l.strip_prefix("W='"))?;
                let json = w.strip_suffix('\'')?;
                serde_json::from_str::<String>(json).ok()
            })
            .collect()
    }

    /// The state.json the finish script of `h` wrote.
    fn recorded(h: &FakeHost) -> Option<HostState> {
        use base64::Engine as _;
        let scripts = h.scripts();
        let finish = scripts.iter().find(|s| s.contains("wv_write state.json"))?;
        let body: String = finish
            .split("wv_write state.json 0644 <<'WV_B64'\n")
            .nth(1)?
            .lines()
            .take_while(|l| *l != "WV_B64")
            .collect();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(body)
            .ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    fn files(state: &HostState) -> Vec<&str> {
        state.files.keys().map(String::as_str).collect()
    }

    #[test]
    fn a_step_failing_in_wave_k_on_one_host_undoes_wave_k_on_both_and_keeps_the_earlier_waves() {
        let a = FakeHost::new("a");
        let b = FakeHost::new("b").fail_step("files/bw2");
        let (pa, pb) = (planned("a", &["w1", "w2"]), planned("b", &["w1", "w2"]));
        let waves = [
            wave("w1", OnFailure::Rollback),
            wave("w2", OnFailure::Rollback),
        ];
        let out = run(&[(&a, &pa), (&b, &pb)], &waves, vec![]);
        match out.result {
            Err(ApplyError::Step {
                host, wave, step, ..
            }) => {
                assert_eq!((host.as_str(), wave.as_str()), ("b", "w2"));
                assert_eq!(step, "write files/bw2");
            }
            other => panic!("expected a failed step, got {other:?}"),
        }
        for h in [&a, &b] {
            assert_eq!(
                waves_run(h),
                ["w1", "w2", "rollback w2", "(finish)"],
                "host {}",
                h.name()
            );
        }
        let rollback = a
            .scripts()
            .into_iter()
            .find(|s| s.contains("W='\"rollback w2\"'"))
            .unwrap_or_default();
        assert!(rollback.contains("'files/aw2'") && !rollback.contains("files/aw1"));
        let state = recorded(&a).expect("a recorded its generation");
        assert_eq!((state.generation, files(&state)), (1, vec!["files/aw1"]));
        let state = recorded(&b).expect("b recorded its generation");
        assert_eq!(files(&state), vec!["files/bw1"]);
    }

    #[test]
    fn a_failed_gate_under_pause_keeps_the_wave_and_stops() {
        let a = FakeHost::new("a");
        let pa = planned("a", &["w1", "w2"]);
        let waves = [
            wave("w1", OnFailure::Pause),
            wave("w2", OnFailure::Rollback),
        ];
        let out = run(&[(&a, &pa)], &waves, vec!["w1 gate"]);
        assert!(matches!(
            out.result,
            Err(ApplyError::GateFailed { ref wave, rolled_back: false, .. }) if wave == "w1"
        ));
        assert_eq!(waves_run(&a), ["w1", "(finish)"]);
        let state = recorded(&a).expect("recorded");
        assert_eq!(files(&state), vec!["files/aw1"]);
    }

    #[test]
    fn a_failed_gate_under_continue_goes_on_to_the_next_wave() {
        let a = FakeHost::new("a");
        let pa = planned("a", &["w1", "w2"]);
        let waves = [
            wave("w1", OnFailure::Continue),
            wave("w2", OnFailure::Rollback),
        ];
        let out = run(&[(&a, &pa)], &waves, vec!["w1 gate"]);
        let applied = out.result.expect("the apply goes on");
        assert_eq!(applied.generations.get("a"), Some(&1));
        assert_eq!(waves_run(&a), ["w1", "w2", "(finish)"]);
        let state = recorded(&a).expect("recorded");
        assert_eq!(files(&state), vec!["files/aw1", "files/aw2"]);
    }

    #[test]
    fn a_failed_gate_under_rollback_undoes_the_wave() {
        let a = FakeHost::new("a");
        let pa = planned("a", &["w1", "w2"]);
        let waves = [
            wave("w1", OnFailure::Rollback),
            wave("w2", OnFailure::Rollback),
        ];
        let out = run(&[(&a, &pa)], &waves, vec!["w2 gate"]);
        assert!(matches!(
            out.result,
            Err(ApplyError::GateFailed { ref wave, rolled_back: true, .. }) if wave == "w2"
        ));
        assert_eq!(waves_run(&a), ["w1", "w2", "rollback w2", "(finish)"]);
    }

    #[test]
    fn an_undo_that_fails_says_where_each_host_stands_and_exits_5() {
        let a = FakeHost::new("a");
        let b = FakeHost::new("b").fail_step("files/bw2").fail_undo();
        let (pa, pb) = (planned("a", &["w1", "w2"]), planned("b", &["w1", "w2"]));
        let waves = [
            wave("w1", OnFailure::Rollback),
            wave("w2", OnFailure::Rollback),
        ];
        let out = run(&[(&a, &pa), (&b, &pb)], &waves, vec![]);
        match out.result {
            Err(ApplyError::UndoFailed {
                cause,
                failures,
                standings,
            }) => {
                assert!(matches!(*cause, ApplyError::Step { .. }));
                assert_eq!(failures.len(), 1);
                assert_eq!(
                    failures[0].to_string(),
                    "b: `restore files/bw2` failed: b: step 1 failed as told"
                );
                assert_eq!(
                    standings,
                    vec![
                        Standing {
                            host: "a".into(),
                            holds: vec!["w1".into()],
                            between: None
                        },
                        Standing {
                            host: "b".into(),
                            holds: vec!["w1".into()],
                            between: Some("w2".into())
                        },
                    ]
                );
            }
            other => panic!("expected UndoFailed, got {other:?}"),
        }
        let out = run(&[(&a, &pa), (&b, &pb)], &waves, vec![]);
        let e = anyhow::Error::from(out.result.expect_err("the apply must fail"));
        assert_eq!(crate::exit::of_error(&e), crate::exit::Exit::RollbackFailed);
        assert!(e.to_string().contains(
            "where the hosts stand: a holds wave w1; b holds wave w1 and is between states in wave w2 (its undo failed)"
        ));
    }

    /// Regression: a commit read from a host was cut at byte 12, which panics inside a
    /// multi-byte character.
    #[test]
    fn a_lock_with_a_non_ascii_commit_is_shown_without_panicking() {
        let lock = Lock {
            operator: "o".into(),
            machine: "m".into(),
            pid: 1,
            started_at: "t".into(),
            commit: Some("ééééééééééééé".into()),
            token: "x".into(),
        };
        assert!(lock.to_string().ends_with(", commit éééééééééééé"));
    }

    #[test]
    fn a_held_lock_stops_the_apply_before_anything_runs() {
        use base64::Engine as _;
        let lock = Lock {
            operator: "ghost".into(),
            machine: "gone".into(),
            pid: 1,
            started_at: "then".into(),
            commit: None,
            token: "x".into(),
        };
        let held = base64::engine::general_purpose::STANDARD
            .encode(serde_json::to_vec(&lock).unwrap_or_default());
        let a = FakeHost::new("a");
        let b = FakeHost::new("b").answer("set -C;", 0, &format!("held {held}\n"));
        let (pa, pb) = (planned("a", &["w1"]), planned("b", &["w1"]));
        let out = run(
            &[(&a, &pa), (&b, &pb)],
            &[wave("w1", OnFailure::Rollback)],
            vec![],
        );
        assert!(matches!(out.result, Err(ApplyError::Locked { ref host, .. }) if host == "b"));
        assert!(waves_run(&a).is_empty() && waves_run(&b).is_empty());
    }
}
