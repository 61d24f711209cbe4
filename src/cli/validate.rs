//! `wavectl validate PLAN`: every problem of plan, inventory, templates and migration files.

use std::path::Path;

use serde_json::json;

use crate::cli::{Context, Output};
use crate::diagnostic::line_col;
use crate::exit::Exit;
use crate::load::Invalid;

pub fn run(ctx: &Context, plan: &Path) -> anyhow::Result<Exit> {
    let loaded = match ctx.load(plan) {
        Ok(l) => l,
        Err(e) if ctx.output == Output::Json => match e.downcast::<Invalid>() {
            Ok(invalid) => {
                println!("{}", problems_json(&invalid));
                return Ok(Exit::Error);
            }
            Err(e) => return Err(e),
        },
        Err(e) => return Err(e),
    };
    print_summary(ctx, plan, &loaded);
    Ok(Exit::Ok)
}

/// The one-line summary of a valid plan (a JSON document with `-o json`).
pub fn print_summary(ctx: &Context, plan: &Path, loaded: &crate::load::Loaded) {
    let d = &loaded.desired;
    let count =
        |f: fn(&crate::primitive::HostDesired) -> usize| d.hosts.values().map(f).sum::<usize>();
    let summary = json!({
        "ok": true,
        "plan": d.plan,
        "hosts": d.hosts.len(),
        "waves": d.waves.len(),
        "files": count(|h| h.files.len()),
        "processes": count(|h| h.processes.len()),
        "migrations": count(|h| h.databases.iter().map(|db| db.migrations.len()).sum()),
        "streams": count(|h| h.streams.len()),
    });
    match ctx.output {
        Output::Json => println!("{summary}"),
        Output::Human => println!(
            "{}: ok: plan {} with {} hosts, {} waves, {} files, {} processes, {} migrations, {} streams",
            plan.display(),
            d.plan,
            summary["hosts"],
            summary["waves"],
            summary["files"],
            summary["processes"],
            summary["migrations"],
            summary["streams"]
        ),
    }
}

fn problems_json(invalid: &Invalid) -> serde_json::Value {
    let problems: Vec<_> = invalid
        .diagnostics
        .iter()
        .map(|d| {
            let (line, column) = invalid.sources.text(&d.file).map_or((0, 0), |t| line_col(t, d.span.start));
            json!({ "file": d.file, "line": line, "column": column, "message": d.message, "hint": d.hint })
        })
        .collect();
    json!({ "ok": false, "problems": problems })
}
