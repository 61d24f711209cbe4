//! `wavectl render PLAN [--host H]`: the files the plan would write, secrets masked.

use std::io::Write;
use std::path::Path;

use anyhow::bail;
use serde_json::json;

use crate::cli::{Context, Output};
use crate::exit::Exit;
use crate::secrets::mask;

pub fn run(ctx: &Context, plan: &Path, only: Option<&str>) -> anyhow::Result<Exit> {
    let loaded = ctx.load(plan)?;
    if let Some(h) = only
        && !loaded.desired.hosts.contains_key(h)
    {
        let known: Vec<&str> = loaded.desired.hosts.keys().map(String::as_str).collect();
        bail!(
            "the plan puts nothing on host `{h}`; hosts with resources: {}",
            known.join(", ")
        );
    }
    let hosts = loaded
        .desired
        .hosts
        .iter()
        .filter(|(name, _)| only.is_none_or(|h| h == name.as_str()));
    let mut out = anstream::stdout().lock();
    let mut docs = Vec::new();
    for (name, host) in hosts {
        for f in &host.files {
            let content = mask(&f.content, &f.secret_keys, &loaded.secrets);
            match ctx.output {
                Output::Json => docs.push(json!({
                    "host": name, "path": f.path, "absolute_path": format!("{}/{}", host.root, f.path),
                    "mode": format!("{:04o}", f.mode), "sha256": f.sha256(), "wave": f.origin.wave,
                    "resource": f.origin.resource, "content": content,
                })),
                Output::Human => {
                    writeln!(
                        out,
                        "# {name}:{}/{} (mode {:04o}, {} in wave {})",
                        host.root, f.path, f.mode, f.origin.resource, f.origin.wave
                    )?;
                    write!(out, "{content}")?;
                    if !content.ends_with('\n') {
                        writeln!(out)?;
                    }
                    writeln!(out)?;
                }
            }
        }
    }
    if ctx.output == Output::Json {
        writeln!(out, "{}", json!({ "files": docs }))?;
    }
    Ok(Exit::Ok)
}
