//! `wavectl diff PLAN`: observe every host and print what apply would change.
//! Exit 0 in sync, 2 changes, 1 error (a host unreachable, a problem that blocks apply).

use std::io::Write;
use std::path::Path;

use crate::cli::{Context, Output};
use crate::diff::HumanDiff;
use crate::exit::Exit;
use crate::run::observe::close_all;

pub fn run(ctx: &Context, plan: &Path) -> anyhow::Result<Exit> {
    let loaded = ctx.load(plan)?;
    ctx.runtime()?.block_on(async {
        let (loaded, observed) = ctx.observe(plan, None, loaded).await?;
        let changes = crate::run::changes_for(&loaded, &observed);
        let pins: Vec<String> = observed
            .iter()
            .filter_map(|o| {
                Some(format!(
                    "{}: {}",
                    o.host,
                    o.report.as_ref().ok()?.pin.as_ref()?
                ))
            })
            .chain(observed.iter().filter_map(|o| {
                let r = o.report.as_ref().ok()?;
                let lock = r.lock.as_ref().filter(|l| crate::run::lock_is_orphaned(l))?;
                Some(format!(
                    "{}: {} (run `wavectl apply --force-unlock` or `wavectl rollback --to previous --force-unlock`)",
                    o.host,
                    crate::run::interrupted(lock, r.last_step.as_ref())
                ))
            }))
            .collect();
        close_all(observed).await;
        let mut out = anstream::stdout().lock();
        if ctx.output == Output::Human {
            for p in &pins {
                writeln!(out, "{p}")?;
            }
        }
        match ctx.output {
            Output::Json => writeln!(out, "{}", serde_json::to_string(&changes)?)?,
            Output::Human => write!(
                out,
                "{}",
                HumanDiff {
                    changes: &changes,
                    palette: ctx.palette()
                }
            )?,
        }
        Ok(crate::exit::of_readiness(crate::run::decide::readiness(
            &changes,
        )))
    })
}
