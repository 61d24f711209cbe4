//! `wavectl apply PLAN [--yes] [--allow-dirty]`: observe, show the diff, confirm on a TTY, then
//! lock, apply wave by wave, record a generation per host.

use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;
use std::time::Instant;

use serde_json::json;

use crate::cli::progress::{Bars, JsonLines, Lines};
use crate::cli::report::Hinted;
use crate::cli::{Context, Output};
use crate::diff::ChangeSet;
use crate::diff::HumanDiff;
use crate::exit::Exit;
use crate::load::Loaded;
use crate::run::apply::{Job, apply, targets};
use crate::run::decide::{Readiness, readiness};
use crate::run::events::Sink;
use crate::run::git::PlanCommit;
use crate::run::observe::Observed;
use crate::run::observe::close_all;
use crate::run::probe::Probes;
use crate::transport::Host;

pub struct Options {
    pub yes: bool,
    pub allow_dirty: bool,
}

pub fn run(ctx: &Context, plan: &Path, opts: &Options) -> anyhow::Result<Exit> {
    let start = Instant::now();
    let loaded = ctx.load(plan)?;
    let commit = ctx.plan_commit(plan)?;
    if commit.dirty && !opts.allow_dirty {
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
        let (loaded, observed) = ctx.observe(plan, loaded).await?;
        let changes = crate::run::changes_for(&loaded, &observed);
        let mut stdout = anstream::stdout();
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
            Readiness::Ready => apply_changes(ctx, &loaded, &observed, &changes, &commit, opts, start).await,
        };
        close_all(observed).await;
        result
    })
}

/// Shows the changes, asks on a TTY, then applies them wave by wave (`start`: when the
/// command started, for the time it reports).
async fn apply_changes(
    ctx: &Context,
    loaded: &Loaded,
    observed: &[Observed],
    changes: &ChangeSet,
    commit: &PlanCommit,
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
    if !opts.yes && std::io::stdin().is_terminal() && !confirm()? {
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
    let job = Job {
        plan: &loaded.desired.plan,
        waves: &loaded.desired.waves,
        checks: loaded
            .desired
            .hosts
            .values()
            .flat_map(|h| &h.checks)
            .collect(),
        servers: &servers,
        commit,
        gate: &probes,
    };
    let targets = targets(&loaded.desired, observed, changes);
    let applied = apply(&job, &targets, sink.as_ref()).await?;
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

fn confirm() -> anyhow::Result<bool> {
    eprint!("Apply these changes? [y/N] ");
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}
