//! `wavectl apply PLAN [--yes] [--allow-dirty]`: observe, show the diff, confirm on a TTY, then
//! lock, apply wave by wave, record a generation per host.

use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;
use std::time::Instant;

use anyhow::bail;
use serde_json::json;

use crate::cli::progress::{Bars, JsonLines, Lines};
use crate::cli::{Context, Output};
use crate::diff::HumanDiff;
use crate::exit::Exit;
use crate::run::apply::{ApplyError, Job, apply, targets};
use crate::run::events::Sink;
use crate::run::observe::{close_all, observe_all};
use crate::run::probe::Probes;
use crate::transport::Host;

pub struct Options {
    pub yes: bool,
    pub allow_dirty: bool,
}

pub fn run(ctx: &Context, plan: &Path, opts: &Options) -> anyhow::Result<Exit> {
    let start = Instant::now();
    let loaded = ctx.load_online(plan)?;
    let commit = ctx.plan_commit(plan)?;
    if commit.dirty && !opts.allow_dirty {
        let files = commit
            .dirty_files
            .iter()
            .take(10)
            .cloned()
            .collect::<Vec<_>>()
            .join(", ");
        bail!(
            "the plan repo has changes no commit holds ({files}); a generation must name the commit it came from\nhint: commit them, or run with --allow-dirty (the generation is then marked dirty)"
        );
    }
    ctx.runtime()?.block_on(async {
        let observed = observe_all(&loaded).await;
        let changes = crate::run::changes_for(&loaded, &observed);
        let mut stdout = anstream::stdout();
        let result = if !changes.unreachable.is_empty() {
            let list: Vec<String> = changes.unreachable.iter().map(|u| u.error.clone()).collect();
            Err(anyhow::anyhow!(
                "{}\nhint: nothing was changed; bring the host(s) back or remove them from the inventory, then apply again",
                list.join("\n")
            ))
        } else if changes.has_problems() {
            write!(stdout, "{}", HumanDiff { changes: &changes, palette: ctx.palette() })?;
            Err(anyhow::anyhow!("problems above stop the apply before anything runs"))
        } else if changes.is_empty() {
            match ctx.output {
                Output::Json => writeln!(stdout, "{}", json!({ "event": "in_sync" }))?,
                Output::Human => writeln!(stdout, "in sync: nothing to do")?,
            }
            Ok(Exit::Ok)
        } else {
            if ctx.output == Output::Human {
                write!(stdout, "{}", HumanDiff { changes: &changes, palette: ctx.palette() })?;
            }
            if !opts.yes && std::io::stdin().is_terminal() && !confirm()? {
                writeln!(stdout, "nothing applied")?;
                close_all(observed).await;
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
                        let conn = o.connection.as_ref()?;
                        let root = loaded.desired.hosts.get(&o.host)?.root.as_str();
                        Some((o.host.clone(), (conn as &dyn Host, root)))
                    })
                    .collect(),
            };
            let servers = crate::run::streams::servers(&loaded);
            let job = Job {
                plan: &loaded.desired.plan,
                waves: &loaded.desired.waves,
                checks: loaded.desired.hosts.values().flat_map(|h| &h.checks).collect(),
                servers: &servers,
                commit: &commit,
                gate: &probes,
            };
            let targets = targets(&loaded.desired, &observed, &changes);
            match apply(&job, &targets, sink.as_ref()).await {
                Ok(applied) => {
                    let secs = start.elapsed().as_secs_f64();
                    match ctx.output {
                        Output::Json => writeln!(stdout, "{}", json!({ "event": "applied", "generations": applied.generations, "seconds": secs }))?,
                        Output::Human => {
                            let list: Vec<String> = applied.generations.iter().map(|(h, g)| format!("{h} generation {g}")).collect();
                            writeln!(stdout, "applied in {secs:.1}s: {}", list.join(", "))?;
                        }
                    }
                    Ok(Exit::Ok)
                }
                Err(e) => {
                    let exit = match e {
                        ApplyError::Locked { .. } => Exit::Locked,
                        ApplyError::UndoFailed { .. } => Exit::RollbackFailed,
                        ApplyError::GateFailed { .. } => Exit::GateFailed,
                        _ => Exit::Error,
                    };
                    let mut err = anstream::stderr();
                    writeln!(err, "error: {e}")?;
                    if let Some(h) = e.hint() {
                        writeln!(err, "hint: {h}")?;
                    }
                    Ok(exit)
                }
            }
        };
        close_all(observed).await;
        result
    })
}

fn confirm() -> anyhow::Result<bool> {
    eprint!("Apply these changes? [y/N] ");
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}
