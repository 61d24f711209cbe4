//! `wavectl unlock HOST`: break a stale lock (its apply died), after showing whose it was.

use std::io::{BufRead, IsTerminal, Write};

use anyhow::{Context as _, bail};
use base64::Engine as _;

use crate::cli::Context;
use crate::exit::Exit;
use crate::state::Lock;

pub fn run(ctx: &Context, host: &str, yes: bool) -> anyhow::Result<Exit> {
    let inventory = ctx.inventory()?;
    let h = inventory
        .host(host)
        .with_context(|| format!("host `{host}` is not in the inventory"))?;
    ctx.runtime()?.block_on(async {
        let conn = crate::transport::connect(&inventory, h).await?;
        let out = conn
            .run(crate::backend::apply::read_lock_script(&h.root).as_str())
            .await?;
        let text = out.stdout.trim();
        if text.is_empty() {
            conn.close().await;
            println!("{host}: not locked");
            return Ok(Exit::Ok);
        }
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text)
            .context("the lock is unreadable")?;
        let owner = serde_json::from_slice::<Lock>(&bytes).map_or_else(
            |_| String::from_utf8_lossy(&bytes).into_owned(),
            |l| l.to_string(),
        );
        println!("{host}: locked by {owner}");
        if !yes && std::io::stdin().is_terminal() {
            eprint!("Break this lock? Only if that apply is dead. [y/N] ");
            let mut answer = String::new();
            std::io::stdin().lock().read_line(&mut answer)?;
            if !matches!(answer.trim(), "y" | "Y" | "yes") {
                conn.close().await;
                println!("left as is");
                return Ok(Exit::Error);
            }
        } else if !yes {
            bail!("not a terminal: pass --yes to break the lock of {owner}");
        }
        let entry = crate::run::journal_entry(format!("unlock (was: {owner})"));
        let out = conn
            .run(crate::backend::apply::journaled(&h.root, "rm -f lock", &entry).as_str())
            .await?;
        conn.close().await;
        if !out.success() {
            bail!("{host}: cannot remove the lock: {}", out.stderr.trim());
        }
        let _ = writeln!(
            std::io::stdout(),
            "{host}: unlocked; run `wavectl diff` to see where it stands"
        );
        Ok(Exit::Ok)
    })
}
