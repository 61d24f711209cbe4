//! `wavectl doctor PLAN`: per host, what the plan needs there and what is missing, each
//! problem with the command that fixes it. Exit 0 when nothing is, 1 otherwise.

use std::fmt::Write as _;
use std::io::Write;
use std::path::Path;

use serde_json::json;

use crate::backend::doctor::Finding;
use crate::cli::{Context, Output};
use crate::exit::Exit;
use crate::run::doctor::HostDoctor;
use crate::run::session::Session;

pub fn run(ctx: &Context, plan: &Path) -> anyhow::Result<Exit> {
    let (loaded, _) = ctx.load_lenient(plan, &Default::default())?;
    let (loaded, missing_secrets, hosts) = ctx.runtime()?.block_on(async {
        let names: Vec<String> = loaded.desired.hosts.keys().cloned().collect();
        let session = Session::connect(&loaded.inventory, &names).await;
        // `~` roots are resolved on the same connections the doctor script then runs on.
        let homes = session.homes(&loaded.inventory).await;
        let (loaded, missing) = ctx.load_lenient(plan, &homes)?;
        let hosts = crate::run::doctor::examine(session, &loaded).await;
        anyhow::Ok((loaded, missing, hosts))
    })?;
    let secrets: Vec<Finding> = missing_secrets
        .iter()
        .map(|name| Finding {
            check: format!("secret {name}"),
            ok: false,
            detail: format!("{name} is in neither the environment nor the secrets file"),
            fix: Some(format!(
                "export {name}=... (or put `{name} = \"...\"` in a secrets file outside the plan repo and pass --secrets-file FILE)"
            )),
        })
        .collect();
    let problems = secrets.len()
        + hosts
            .iter()
            .map(|h| match &h.findings {
                Ok(f) => f.iter().filter(|f| !f.ok).count(),
                Err(_) => 1,
            })
            .sum::<usize>();
    let mut out = anstream::stdout().lock();
    match ctx.output {
        Output::Json => writeln!(out, "{}", to_json(&hosts, &secrets, problems))?,
        Output::Human => {
            let roots = |h: &str| loaded.desired.hosts.get(h).map(|d| d.root.clone());
            write!(out, "{}", human(&hosts, &secrets, problems, roots))?
        }
    }
    Ok(if problems == 0 { Exit::Ok } else { Exit::Error })
}

fn to_json(hosts: &[HostDoctor], secrets: &[Finding], problems: usize) -> serde_json::Value {
    let hosts: Vec<_> = hosts
        .iter()
        .map(|h| match &h.findings {
            Ok(f) => json!({ "host": h.host, "reachable": true, "ok": f.iter().all(|f| f.ok), "checks": f }),
            Err(u) => json!({ "host": h.host, "reachable": false, "ok": false, "error": u.error, "hint": u.hint }),
        })
        .collect();
    json!({ "ok": problems == 0, "problems": problems, "hosts": hosts, "secrets": secrets })
}

fn human(
    hosts: &[HostDoctor],
    secrets: &[Finding],
    problems: usize,
    root: impl Fn(&str) -> Option<String>,
) -> String {
    let mut text = String::new();
    let line = |text: &mut String, f: &Finding| {
        let mark = if f.ok { "ok" } else { "FAIL" };
        let _ = writeln!(text, "  {mark:<5} {}: {}", f.check, f.detail);
        if let Some(fix) = f.fix.as_deref().filter(|_| !f.ok) {
            let _ = writeln!(text, "        fix: {fix}");
        }
    };
    for h in hosts {
        let _ = writeln!(
            text,
            "{} (root {})",
            h.host,
            root(&h.host).unwrap_or_default()
        );
        match &h.findings {
            Ok(findings) => findings.iter().for_each(|f| line(&mut text, f)),
            Err(u) => {
                let _ = writeln!(text, "  FAIL  reachable: {}", u.error);
                if let Some(hint) = &u.hint {
                    let _ = writeln!(text, "        fix: {hint}");
                }
            }
        }
    }
    if !secrets.is_empty() {
        let _ = writeln!(text, "secrets");
        secrets.iter().for_each(|f| line(&mut text, f));
    }
    match problems {
        0 => {
            let _ = writeln!(text, "doctor: ok, {} hosts ready", hosts.len());
        }
        n => {
            let _ = writeln!(
                text,
                "doctor: {n} problem{} (each with its fix above)",
                if n == 1 { "" } else { "s" }
            );
        }
    }
    text
}
