//! `wavectl history`: the generations each host recorded: number, commit and subject, when,
//! who, apply or rollback, the result and the waves applied; and the host's pin.

use std::io::Write;

use serde_json::json;

use crate::cli::{Context, Output};
use crate::exit::Exit;

pub fn run(ctx: &Context) -> anyhow::Result<Exit> {
    let inventory = ctx.inventory()?;
    let reports = ctx
        .runtime()?
        .block_on(crate::run::generations::of_all(&inventory));
    let mut out = anstream::stdout().lock();
    let mut all_reached = true;
    let mut docs = Vec::new();
    for (host, report) in &reports {
        match report {
            Err(e) => {
                all_reached = false;
                docs.push(json!({ "host": host, "error": e }));
                if ctx.output == Output::Human {
                    writeln!(out, "{host}: unreachable: {e}")?;
                }
            }
            Ok(history) => {
                let gens = &history.generations;
                let rows: Vec<_> = gens
                    .iter()
                    .map(|g| json!({ "generation": g.generation, "commit": g.commit, "subject": g.subject, "dirty": g.dirty, "operator": g.operator, "applied_at": g.applied_at, "plan": g.plan, "waves": g.waves, "result": g.result, "rollback_to": g.rollback_to }))
                    .collect();
                docs.push(json!({ "host": host, "generations": rows, "pin": history.pin }));
                if ctx.output == Output::Human {
                    writeln!(
                        out,
                        "{host}:{}",
                        if gens.is_empty() {
                            " no generation yet"
                        } else {
                            ""
                        }
                    )?;
                    for g in gens {
                        let commit = g
                            .commit
                            .as_deref()
                            .map_or("-".to_string(), |c| c.chars().take(12).collect());
                        let dirty = if g.dirty { " (dirty)" } else { "" };
                        let subject = g.subject.as_deref().unwrap_or("");
                        let what = match &g.rollback_to {
                            Some(rev) => format!("rollback to {rev}"),
                            None => "apply".to_string(),
                        };
                        let result = if g.result.is_empty() {
                            "ok"
                        } else {
                            g.result.as_str()
                        };
                        writeln!(
                            out,
                            "  {:>4}  {commit}{dirty}  {}  {}  {what}: {result}  waves [{}]  {subject}",
                            g.generation,
                            g.applied_at,
                            g.operator,
                            g.waves.join(", ")
                        )?;
                    }
                    if let Some(pin) = &history.pin {
                        writeln!(out, "  {pin}")?;
                    }
                }
            }
        }
    }
    if ctx.output == Output::Json {
        writeln!(out, "{}", json!({ "hosts": docs }))?;
    }
    Ok(crate::exit::of_reach(all_reached))
}
