//! `wavectl unpin PLAN [--host H]`: lift the pin a rollback left on the plan's hosts (journaled
//! on each), so that `apply` of other commits runs again.

use std::io::Write;
use std::path::Path;

use futures::future::join_all;

use crate::cli::Context;
use crate::exit::Exit;

pub fn run(ctx: &Context, plan: &Path, only: Option<&str>) -> anyhow::Result<Exit> {
    let loaded = ctx.load_online(plan)?;
    if let Some(h) = only
        && !loaded.desired.hosts.contains_key(h)
    {
        anyhow::bail!("host `{h}` has nothing of this plan; expected one of its hosts");
    }
    let entry = crate::run::journal_entry("unpin".into());
    let results = ctx.runtime()?.block_on(join_all(
        loaded
            .desired
            .hosts
            .iter()
            .filter(|(name, _)| only.is_none_or(|o| o == name.as_str()))
            .filter_map(|(name, desired)| Some((loaded.inventory.host(name)?, desired)))
            .map(|(host, desired)| {
                let inventory = &loaded.inventory;
                let entry = &entry;
                async move {
                    let name = host.name.get_ref().to_string();
                    let conn = crate::transport::connect(inventory, host).await?;
                    let script = crate::backend::pin::unpin_script(&desired.root, entry);
                    let out = conn.run(&script).await;
                    conn.close().await;
                    anyhow::Ok((name, out?))
                }
            }),
    ));
    let mut stdout = anstream::stdout();
    let mut exit = Exit::Ok;
    for r in results {
        match r {
            Ok((name, out)) if out.success() => writeln!(stdout, "{name}: {}", out.stdout.trim())?,
            Ok((name, out)) => {
                exit = Exit::Error;
                writeln!(stdout, "{name}: cannot unpin: {}", out.stderr.trim())?;
            }
            Err(e) => {
                exit = Exit::Error;
                writeln!(stdout, "error: {e}")?;
            }
        }
    }
    Ok(exit)
}
