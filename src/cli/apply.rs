//! `wavectl apply PLAN [--yes] [--allow-dirty] [--unpin]` and `wavectl rollback --to REV`: observe,
//! show the diff, confirm on a TTY (refuse at once off a TTY without `--yes`), then lock, apply
//! wave by wave, record a generation per host. A rollback is this same apply of the plan as an
//! older commit holds it, with its waves in reverse order; it keeps the streams that plan lacks
//! (unless `--delete-streams`) and pins the hosts to that commit.

use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;
use std::time::Instant;

use serde_json::json;

use crate::cli::progress::{Bars, JsonLines, Lines};
use crate::cli::report::Hinted;
use crate::cli::{Context, Output};
use crate::diff::HumanDiff;
use crate::diff::{Change, ChangeSet, StreamAction};
use crate::exit::Exit;
use crate::load::Loaded;
use crate::repo::GitTree;
use crate::run::apply::{Job, Stop, apply, targets};
use crate::run::decide::{Readiness, WaveSelection, readiness, select_waves};
use crate::run::events::Sink;
use crate::run::git::PlanCommit;
use crate::run::observe::Observed;
use crate::run::observe::close_all;
use crate::run::probe::Probes;
use crate::state::{Pin, Pinned};
use crate::transport::Host;

pub struct Options {
    pub yes: bool,
    pub allow_dirty: bool,
    /// Apply although a rollback pinned the hosts to another commit; lifts the pin.
    pub unpin: bool,
    /// Show what would change and stop.
    pub dry_run: bool,
    /// Take over the locks of an apply that died on this machine (journaled).
    pub force_unlock: bool,
    /// Only these waves (`--wave`, `--from-wave`, `--to-wave`).
    pub waves: WaveSelection,
    /// Only these resources (`--select kind.name`).
    pub select: Vec<String>,
    /// Only this host (`rollback --host H`).
    pub host: Option<String>,
    /// Set for `rollback --to REV`.
    pub rollback: Option<Rollback>,
}

/// What makes an apply a rollback.
pub struct Rollback {
    pub tree: GitTree,
    pub reason: Option<String>,
    pub delete_streams: bool,
}

/// A gate or step failed while rolling back: the hosts need a human (exit 5).
#[derive(Debug, thiserror::Error)]
#[error("the rollback to {rev} stopped: {cause}")]
pub struct RollbackStopped {
    pub rev: String,
    pub cause: String,
}

pub fn run(ctx: &Context, plan: &Path, opts: &Options) -> anyhow::Result<Exit> {
    let start = Instant::now();
    let verb = if opts.rollback.is_some() {
        "rollback"
    } else {
        "apply"
    };
    // Never wait on a closed stdin: a script without --yes is refused before anything runs.
    if !opts.yes && !opts.dry_run && !std::io::stdin().is_terminal() {
        return Err(Hinted::new(
            format!("{verb} needs --yes when stdin is not a terminal; nothing was changed"),
            format!("review with `wavectl {verb} --dry-run ...` (or `wavectl diff`), then run it again with --yes"),
        )
        .into());
    }
    let tree = opts.rollback.as_ref().map(|r| &r.tree);
    let loaded = ctx.load_at(plan, tree)?;
    let commit = match &opts.rollback {
        Some(r) => PlanCommit {
            commit: Some(r.tree.commit.clone()),
            dirty: false,
            dirty_files: Vec::new(),
            subject: r.tree.subject.clone(),
        },
        None => ctx.plan_commit(plan)?,
    };
    if opts.rollback.is_none() && commit.dirty && !opts.allow_dirty {
        let files = commit
            .dirty_files
            .iter()
            .take(10)
            .cloned()
            .collect::<Vec<_>>()
            .join(", ");
        return Err(Hinted::new(
            format!("the plan repo has changes no commit holds ({files}); a generation must name the commit it came from"),
            "commit them, or run with --allow-dirty (the generation is then marked dirty)",
        )
        .into());
    }
    ctx.runtime()?.block_on(async {
        let (loaded, observed) = ctx.observe(plan, tree, loaded).await?;
        let mut changes = crate::run::changes_for(&loaded, &observed);
        let mut stdout = anstream::stdout();
        if opts.rollback.is_none()
            && !opts.unpin
            && let Err(e) = refuse_pinned(&observed, &commit)
        {
            close_all(observed).await;
            return Err(e);
        }
        if !opts.dry_run
            && let Err(e) = take_over_interrupted(&loaded, &observed, opts).await
        {
            close_all(observed).await;
            return Err(e);
        }
        let kept = match &opts.rollback {
            Some(r) if !r.delete_streams => keep_streams(&mut changes),
            _ => Vec::new(),
        };
        for (host, stream) in &kept {
            let messages = observed
                .iter()
                .find(|o| &o.host == host)
                .and_then(|o| o.report.as_ref().ok()?.stream_messages.get(stream).copied())
                .map_or("its".to_string(), |n| format!("{n}"));
            writeln!(
                stdout,
                "{host}: stream {stream} is not in the plan at {}: kept with {messages} messages (deleting it would lose them; --delete-streams removes it)",
                opts.rollback.as_ref().map_or("", |r| r.tree.rev.as_str())
            )?;
        }
        if let Err(e) = select(&loaded, &mut changes, opts) {
            close_all(observed).await;
            return Err(e);
        }
        if opts.dry_run {
            write!(stdout, "{}", HumanDiff { changes: &changes, palette: ctx.palette() })?;
            close_all(observed).await;
            return Ok(crate::exit::of_readiness(readiness(&changes)));
        }
        let result = match readiness(&changes) {
            Readiness::Unreachable => {
                let list: Vec<String> = changes.unreachable.iter().map(|u| u.error.clone()).collect();
                Err(Hinted::new(
                    list.join("\n"),
                    "nothing was changed; bring the host(s) back or remove them from the inventory, then apply again",
                )
                .into())
            }
            Readiness::Blocked => {
                write!(stdout, "{}", HumanDiff { changes: &changes, palette: ctx.palette() })?;
                Err(anyhow::anyhow!("problems above stop the apply before anything runs"))
            }
            Readiness::InSync => {
                match ctx.output {
                    Output::Json => writeln!(stdout, "{}", json!({ "event": "in_sync" }))?,
                    Output::Human => writeln!(stdout, "in sync: nothing to do")?,
                }
                Ok(Exit::Ok)
            }
            Readiness::Ready => {
                let record = Record { commit: &commit, released_streams: &kept };
                apply_changes(ctx, &loaded, &observed, &changes, &record, opts, start).await
            }
        };
        let result = match (result, &opts.rollback) {
            (Ok(Exit::Ok), _) => record_pins(&loaded, &observed, opts).await.map(|()| Exit::Ok),
            (Err(e), Some(r)) if crate::exit::of_error(&e) == Exit::GateFailed => {
                Err(anyhow::Error::new(RollbackStopped { rev: r.tree.rev.clone(), cause: e.to_string() }))
            }
            (other, _) => other,
        };
        close_all(observed).await;
        result
    })
}

/// The wave names in the order this run takes them: a rollback's newest first.
fn run_order(loaded: &Loaded, opts: &Options) -> Vec<String> {
    let mut order: Vec<String> = loaded
        .desired
        .waves
        .iter()
        .map(|w| w.name.clone())
        .collect();
    if opts.rollback.is_some() {
        order.reverse();
    }
    order
}

/// Narrows `changes` to the selected waves (`--wave`, `--from-wave`, `--to-wave`).
fn select(loaded: &Loaded, changes: &mut ChangeSet, opts: &Options) -> anyhow::Result<()> {
    if let Some(only) = &opts.host {
        if !loaded.desired.hosts.contains_key(only) {
            anyhow::bail!("host `{only}` has nothing of this plan; expected one of its hosts");
        }
        changes.hosts.retain(|h| &h.host == only);
        changes.unreachable.retain(|u| &u.host == only);
    }
    if !opts.select.is_empty() {
        let selectors = opts
            .select
            .iter()
            .map(|s| crate::plan::resource::Selector::parse(s))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| {
                Hinted::new(
                    e,
                    "for example `--select batch.pilot` or `--select process.*`",
                )
            })?;
        crate::run::decide::select_resources(changes, &loaded.desired, &selectors);
    }
    if opts.waves.is_all() {
        return Ok(());
    }
    let order = run_order(loaded, opts);
    let selected = opts
        .waves
        .resolve(&order)
        .map_err(|e| Hinted::new(e, "`wavectl validate PLAN -o json` lists the plan's waves"))?;
    select_waves(changes, &order, &selected).map_err(|refused| {
        Hinted::new(
            format!("{}; nothing was changed", refused.join("; ")),
            "run the waves before it first (or all of them: leave out --wave)",
        )
        .into()
    })
}

/// Hosts pinned by a rollback to another commit than `commit` refuse the apply (exit 6).
fn refuse_pinned(observed: &[Observed], commit: &PlanCommit) -> anyhow::Result<()> {
    let pins: Vec<(String, Pin)> = observed
        .iter()
        .filter_map(|o| {
            let pin = o.report.as_ref().ok()?.pin.clone()?;
            (Some(&pin.commit) != commit.commit.as_ref()).then(|| (o.host.clone(), pin))
        })
        .collect();
    if pins.is_empty() {
        return Ok(());
    }
    Err(anyhow::Error::new(Pinned { pins }).context(Hinted::new(
        "refused: an emergency rollback pinned the hosts; nothing was changed",
        "when the cause is fixed, run `wavectl unpin` (or `wavectl apply --unpin PLAN`)",
    )))
}

/// Locks left by an apply that died on this machine: named with where it stopped, and taken
/// over (journaled) with `--force-unlock`. A live lock, or one from another machine, is left
/// to the lock step (exit 4).
async fn take_over_interrupted(
    loaded: &Loaded,
    observed: &[Observed],
    opts: &Options,
) -> anyhow::Result<()> {
    let mut refused = Vec::new();
    for o in observed {
        let (Some(conn), Ok(report)) = (&o.connection, &o.report) else {
            continue;
        };
        let Some(lock) = report
            .lock
            .as_ref()
            .filter(|l| crate::run::lock_is_orphaned(l))
        else {
            continue;
        };
        let what = crate::run::interrupted(lock, report.last_step.as_ref());
        if !opts.force_unlock {
            refused.push(format!("host {}: {what}; its process is gone", o.host));
            continue;
        }
        let Some(root) = loaded.desired.hosts.get(&o.host).map(|d| d.root.as_str()) else {
            continue;
        };
        let entry = crate::run::journal_entry(format!("force-unlock: {what}"));
        let script = crate::backend::apply::journaled(root, "rm -f lock", &entry);
        let out = conn.run(script.as_str()).await?;
        if !out.success() {
            anyhow::bail!(
                "host {}: cannot take over the lock: {}",
                o.host,
                out.stderr.trim()
            );
        }
        eprintln!("{}: took over the lock: {what}", o.host);
    }
    if refused.is_empty() {
        return Ok(());
    }
    Err(Hinted::new(
        refused.join("\n"),
        "take over with `wavectl apply --force-unlock PLAN` (it converges from where the hosts stand), or return every host to its last good generation with `wavectl rollback --to previous --force-unlock`",
    )
    .into())
}

/// Takes the deletions of streams out of a rollback's changes; returns them (host, stream).
fn keep_streams(changes: &mut ChangeSet) -> Vec<(String, String)> {
    let mut kept = Vec::new();
    for h in &mut changes.hosts {
        let host = h.host.clone();
        let is_delete = |c: &Change| {
            matches!(
                c,
                Change::Stream {
                    action: StreamAction::Delete,
                    ..
                }
            )
        };
        for c in h.waves.iter().flat_map(|w| &w.changes).chain(&h.removals) {
            if let Change::Stream {
                name,
                action: StreamAction::Delete,
                ..
            } = c
            {
                kept.push((host.clone(), name.clone()));
            }
        }
        for w in &mut h.waves {
            w.changes.retain(|c| !is_delete(c));
        }
        h.removals.retain(|c| !is_delete(c));
    }
    kept
}

/// After a rollback: a pin on every host it reached. After `apply --unpin`: the pins lifted.
async fn record_pins(loaded: &Loaded, observed: &[Observed], opts: &Options) -> anyhow::Result<()> {
    let hosts: Vec<(&str, &dyn Host, &str)> = observed
        .iter()
        .filter_map(|o| {
            let conn: &dyn Host = o.connection.as_ref()?;
            o.report.as_ref().ok()?;
            if opts.host.as_ref().is_some_and(|h| *h != o.host) {
                return None;
            }
            let root = loaded.desired.hosts.get(&o.host)?.root.as_str();
            Some((o.host.as_str(), conn, root))
        })
        .collect();
    let scripts: Vec<(&str, &dyn Host, String)> = match &opts.rollback {
        Some(r) => {
            let pin = Pin {
                rev: r.tree.rev.clone(),
                commit: r.tree.commit.clone(),
                operator: crate::run::operator(),
                pinned_at: crate::run::now_rfc3339(),
                reason: r.reason.clone(),
            };
            let entry = crate::run::journal_entry(format!("pin to {} ({})", pin.rev, pin.commit));
            hosts
                .iter()
                .map(|(n, h, root)| (*n, *h, crate::backend::pin::pin_script(root, &pin, &entry)))
                .collect()
        }
        None if opts.unpin => {
            let entry = crate::run::journal_entry("unpin (apply --unpin)".into());
            hosts
                .iter()
                .map(|(n, h, root)| (*n, *h, crate::backend::pin::unpin_script(root, &entry)))
                .collect()
        }
        None => return Ok(()),
    };
    let results = futures::future::join_all(
        scripts
            .iter()
            .map(|(n, h, s)| async move { (*n, h.run(s).await) }),
    )
    .await;
    for (name, r) in results {
        match r {
            Ok(out) if out.success() => {}
            Ok(out) => anyhow::bail!("host {name}: cannot record the pin: {}", out.stderr.trim()),
            Err(e) => anyhow::bail!("host {name}: cannot record the pin: {e}"),
        }
    }
    Ok(())
}

/// What the new generations record besides the changes: the commit, and the streams a
/// rollback keeps but no longer manages.
struct Record<'a> {
    commit: &'a PlanCommit,
    released_streams: &'a [(String, String)],
}

/// Shows the changes, asks on a TTY, then applies them wave by wave (`start`: when the
/// command started, for the time it reports).
async fn apply_changes(
    ctx: &Context,
    loaded: &Loaded,
    observed: &[Observed],
    changes: &ChangeSet,
    record: &Record<'_>,
    opts: &Options,
    start: Instant,
) -> anyhow::Result<Exit> {
    let mut stdout = anstream::stdout();
    if ctx.output == Output::Human {
        let diff = HumanDiff {
            changes,
            palette: ctx.palette(),
        };
        write!(stdout, "{diff}")?;
    }
    if !opts.yes
        && !confirm(if opts.rollback.is_some() {
            "Roll back"
        } else {
            "Apply these changes"
        })?
    {
        writeln!(stdout, "nothing applied")?;
        return Ok(Exit::Error);
    }
    let sink: Box<dyn Sink> = match ctx.output {
        Output::Json => Box::new(JsonLines),
        Output::Human if std::io::stderr().is_terminal() => Box::new(Bars::new()),
        Output::Human => Box::new(Lines),
    };
    let probes = Probes {
        hosts: observed
            .iter()
            .filter_map(|o| {
                let conn: &dyn Host = o.connection.as_ref()?;
                let root = loaded.desired.hosts.get(&o.host)?.root.as_str();
                Some((o.host.clone(), (conn, root)))
            })
            .collect(),
    };
    let servers = crate::run::streams::servers(loaded);
    // A rollback runs the old plan's waves newest first.
    let order = run_order(loaded, opts);
    let waves: Vec<_> = order
        .iter()
        .filter_map(|n| loaded.desired.waves.iter().find(|w| &w.name == n).cloned())
        .collect();
    let stop = std::sync::Arc::new(Stop::default());
    // The apply finishes its current step, undoes the current wave, releases the locks and
    // exits 130.
    let handler = tokio::spawn(stop_on_signal(
        stop.clone(),
        "interrupted: finishing the current step, then undoing the current wave on every host it touched (interrupt again to exit at once)",
        "interrupted again: exiting now. Left undone: the current wave on its hosts and their locks; run `wavectl diff`, then `wavectl apply --force-unlock` or `wavectl rollback --to previous --force-unlock`",
    ));
    let job = Job {
        released_streams: record.released_streams,
        builtins: &loaded.builtins,
        stop: &stop,
        rollback_to: opts.rollback.as_ref().map(|r| r.tree.rev.as_str()),
        plan: &loaded.desired.plan,
        waves: &waves,
        checks: loaded
            .desired
            .hosts
            .values()
            .flat_map(|h| &h.checks)
            .collect(),
        servers: &servers,
        commit: record.commit,
        gate: &probes,
    };
    let targets = targets(&loaded.desired, observed, changes);
    let applied = apply(&job, &targets, sink.as_ref()).await;
    handler.abort();
    let applied = applied?;
    let secs = start.elapsed().as_secs_f64();
    match ctx.output {
        Output::Json => writeln!(
            stdout,
            "{}",
            json!({ "event": "applied", "generations": applied.generations, "seconds": secs })
        )?,
        Output::Human => {
            let list: Vec<String> = applied
                .generations
                .iter()
                .map(|(h, g)| format!("{h} generation {g}"))
                .collect();
            writeln!(stdout, "applied in {secs:.1}s: {}", list.join(", "))?;
        }
    }
    Ok(Exit::Ok)
}

/// SIGINT or SIGTERM: `stop` is requested (the run says `first`); a second one prints `again`
/// and exits 130 at once.
pub(crate) async fn stop_on_signal(
    stop: std::sync::Arc<Stop>,
    first: &'static str,
    again: &'static str,
) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return;
    };
    loop {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
        if stop.requested() {
            eprintln!("{again}");
            std::process::exit(Exit::Interrupted as i32);
        }
        stop.request();
        eprintln!("{first}");
    }
}

fn confirm(question: &str) -> anyhow::Result<bool> {
    eprint!("{question}? [y/N] ");
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}
