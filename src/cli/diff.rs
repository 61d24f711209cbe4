//! `wavectl diff PLAN`: observe every host and print what apply would change.
//! Exit 0 in sync, 2 changes, 1 error (a host unreachable, a problem that blocks apply).

use std::io::Write;
use std::path::Path;

use serde_json::json;

use crate::cli::{Context, Output};
use crate::diff::HumanDiff;
use crate::exit::Exit;
use crate::run::observe::{close_all, observe_all};

pub fn run(ctx: &Context, plan: &Path) -> anyhow::Result<Exit> {
    let loaded = ctx.load(plan)?;
    ctx.runtime()?.block_on(async {
        let observed = observe_all(&loaded).await;
        let changes = crate::run::changes_for(&loaded, &observed);
        let unreachable: Vec<_> = observed
            .iter()
            .filter_map(|o| {
                o.report
                    .as_ref()
                    .err()
                    .map(|e| (o.host.clone(), e.to_string(), e.hint()))
            })
            .collect();
        let mut out = anstream::stdout().lock();
        match ctx.output {
            Output::Json => {
                let mut doc = serde_json::to_value(&changes)?;
                doc["unreachable"] = json!(
                    unreachable
                        .iter()
                        .map(|(h, e, hint)| json!({ "host": h, "error": e, "hint": hint }))
                        .collect::<Vec<_>>()
                );
                doc["in_sync"] = json!(changes.is_empty() && unreachable.is_empty());
                writeln!(out, "{doc}")?;
            }
            Output::Human => {
                write!(
                    out,
                    "{}",
                    HumanDiff {
                        changes: &changes,
                        palette: ctx.palette()
                    }
                )?;
                for (_, e, hint) in &unreachable {
                    writeln!(out, "error: {e}")?;
                    if let Some(h) = hint {
                        writeln!(out, "hint: {h}")?;
                    }
                }
            }
        }
        close_all(observed).await;
        Ok(if !unreachable.is_empty() || changes.has_problems() {
            Exit::Error
        } else if changes.is_empty() {
            Exit::Ok
        } else {
            Exit::Drift
        })
    })
}
