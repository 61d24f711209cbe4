//! `wavectl history`: the generations each host recorded: number, commit, who, when.

use std::io::Write;

use base64::Engine as _;
use futures::future::join_all;
use serde_json::json;

use crate::cli::{Context, Output};
use crate::exit::Exit;
use crate::state::HostState;

pub fn run(ctx: &Context) -> anyhow::Result<Exit> {
    let inventory = ctx.inventory()?;
    let reports = ctx
        .runtime()?
        .block_on(join_all(inventory.hosts.iter().map(|h| {
            let inventory = &inventory;
            async move {
                let name = h.name.get_ref().clone();
                let conn = match crate::transport::connect(inventory, h).await {
                    Ok(c) => c,
                    Err(e) => return (name, Err(e.to_string())),
                };
                let script = crate::backend::apply::generations_script(&h.root).into_string();
                let out = conn.run(&script).await;
                conn.close().await;
                match out {
                    Err(e) => (name, Err(e.to_string())),
                    Ok(out) => {
                        let mut gens: Vec<HostState> = out
                            .stdout
                            .lines()
                            .filter_map(|l| l.strip_prefix("gen "))
                            .filter_map(|b| {
                                base64::engine::general_purpose::STANDARD
                                    .decode(b.trim())
                                    .ok()
                            })
                            .filter_map(|bytes| serde_json::from_slice(&bytes).ok())
                            .collect();
                        gens.sort_by_key(|g| g.generation);
                        (name, Ok(gens))
                    }
                }
            }
        })));
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
            Ok(gens) => {
                let rows: Vec<_> = gens
                    .iter()
                    .map(|g| json!({ "generation": g.generation, "commit": g.commit, "dirty": g.dirty, "operator": g.operator, "applied_at": g.applied_at, "plan": g.plan }))
                    .collect();
                docs.push(json!({ "host": host, "generations": rows }));
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
                        writeln!(
                            out,
                            "  {:>4}  {commit}{dirty}  {}  {}  {}",
                            g.generation, g.applied_at, g.operator, g.plan
                        )?;
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
