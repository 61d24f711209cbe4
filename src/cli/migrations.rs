//! `wavectl migrations status|accept|resolve|baseline`: what each database records, and the
//! operator's explicit decisions about it (each written to the host's journal).

use std::io::Write;
use std::path::Path;

use anyhow::{Context as _, bail};
use serde_json::json;

use crate::backend::engine;
use crate::cli::{Context, Output};
use crate::exit::Exit;
use crate::primitive::DatabaseSpec;
use crate::run::observe::close_all;

#[derive(Debug, clap::Subcommand)]
pub enum Migrations {
    /// Each migration of each database: applied (when, generation), pending, drifted, or to revert.
    Status {
        plan: std::path::PathBuf,
        #[arg(long)]
        db: Option<String>,
    },
    /// Take a reviewed edit of an applied migration's file: record its new checksum.
    Accept {
        plan: std::path::PathBuf,
        #[arg(long)]
        db: String,
        /// The migration number (e.g. 0004).
        id: u32,
    },
    /// Clear the dirty mark a failed no-transaction migration left, after checking the database.
    Resolve {
        plan: std::path::PathBuf,
        #[arg(long)]
        db: String,
    },
    /// Record migrations 1..=N as applied without running them (a database made before wavectl).
    Baseline {
        plan: std::path::PathBuf,
        #[arg(long)]
        db: String,
        id: u32,
    },
}

pub fn run(ctx: &Context, cmd: &Migrations) -> anyhow::Result<Exit> {
    match cmd {
        Migrations::Status { plan, db } => status(ctx, plan, db.as_deref()),
        Migrations::Accept { plan, db, id } => {
            decide(ctx, plan, db, &format!("accept {id:04}"), |root, spec| {
                let m = spec
                    .migrations
                    .iter()
                    .find(|m| m.id == *id)
                    .with_context(|| format!("the plan has no migration {id:04} in {db}"))?;
                Ok(engine::for_db(spec).accept_script(root, spec, m))
            })
        }
        Migrations::Resolve { plan, db } => decide(ctx, plan, db, "resolve", |root, spec| {
            Ok(engine::for_db(spec).resolve_script(root, spec))
        }),
        Migrations::Baseline { plan, db, id } => {
            decide(ctx, plan, db, &format!("baseline {id:04}"), |root, spec| {
                Ok(engine::for_db(spec).baseline_script(root, spec, *id))
            })
        }
    }
}

fn status(ctx: &Context, plan: &Path, only: Option<&str>) -> anyhow::Result<Exit> {
    let loaded = ctx.load(plan)?;
    ctx.runtime()?.block_on(async {
        let (loaded, observed) = ctx.observe(plan, None, loaded).await?;
        let mut rows = Vec::new();
        let mut errors = Vec::new();
        for o in &observed {
            let Some(desired) = loaded.desired.hosts.get(&o.host) else { continue };
            let report = match &o.report {
                Ok(r) => r,
                Err(e) => {
                    errors.push(e.to_string());
                    continue;
                }
            };
            errors.extend(report.database_problems.iter().cloned());
            for db in desired.databases.iter().filter(|d| only.is_none_or(|n| n == d.name)) {
                let applied = report.observed.databases.get(&db.name).cloned().unwrap_or_default();
                for m in &db.migrations {
                    let a = applied.iter().find(|a| a.id == m.id);
                    let state = match a {
                        None => "pending",
                        Some(a) if a.checksum != m.checksum => "drifted",
                        Some(_) => "applied",
                    };
                    rows.push(json!({ "host": o.host, "db": db.name, "id": m.id, "name": m.name, "state": state,
                        "applied_at": a.map(|a| a.applied_at.clone()), "generation": a.map(|a| a.generation) }));
                }
                for a in applied.iter().filter(|a| !db.migrations.iter().any(|m| m.id == a.id)) {
                    rows.push(json!({ "host": o.host, "db": db.name, "id": a.id, "name": a.name, "state": "not in plan (to revert)",
                        "applied_at": a.applied_at, "generation": a.generation }));
                }
            }
        }
        close_all(observed).await;
        if let Some(db) = only
            && rows.iter().all(|r| r["db"] != db) && errors.is_empty() {
                bail!("the plan has no database `{db}`");
            }
        let mut out = anstream::stdout().lock();
        match ctx.output {
            Output::Json => writeln!(out, "{}", json!({ "migrations": rows, "errors": errors }))?,
            Output::Human => {
                for r in &rows {
                    let when = match (&r["applied_at"], &r["generation"]) {
                        (serde_json::Value::String(at), g) => format!(" ({at}, generation {g})"),
                        _ => String::new(),
                    };
                    writeln!(out, "{} {} {:04}_{}: {}{when}", r["host"].as_str().unwrap_or(""), r["db"].as_str().unwrap_or(""), r["id"].as_u64().unwrap_or(0), r["name"].as_str().unwrap_or(""), r["state"].as_str().unwrap_or(""))?;
                }
                for e in &errors {
                    writeln!(out, "error: {e}")?;
                }
            }
        }
        Ok(crate::exit::of_reach(errors.is_empty()))
    })
}

/// Runs one operator decision on the host holding `db`, and journals it there; `script` is
/// given the host root and the database.
fn decide(
    ctx: &Context,
    plan: &Path,
    db: &str,
    what: &str,
    script: impl Fn(&str, &DatabaseSpec) -> anyhow::Result<String>,
) -> anyhow::Result<Exit> {
    let loaded = ctx.load_online(plan)?;
    let Some((host, spec)) = loaded.desired.hosts.iter().find_map(|(h, d)| {
        d.databases
            .iter()
            .find(|x| x.name == db)
            .map(|x| (h.clone(), x.clone()))
    }) else {
        bail!("the plan has no database `{db}`");
    };
    let inv = loaded
        .inventory
        .host(&host)
        .with_context(|| format!("host {host} is not in the inventory"))?;
    let body = script(&inv.root, &spec)?;
    let entry = crate::run::journal_entry(format!("migrations {what} {db}"));
    let full = crate::backend::apply::journaled(&inv.root, &body, &entry);
    ctx.runtime()?.block_on(async {
        let conn = crate::transport::connect(&loaded.inventory, inv).await?;
        let out = conn.run(full.as_str()).await?;
        conn.close().await;
        if !out.success() {
            bail!(
                "{host}: {}",
                engine::for_db(&spec).parse_failure(&out.stderr, db)
            );
        }
        print!("{}", out.stdout);
        Ok(Exit::Ok)
    })
}
