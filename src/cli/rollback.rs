//! `wavectl rollback --to REV [PLAN]`: the plan as REV holds it, applied like any plan (one code
//! path: `cli::apply`), waves in reverse order, then the hosts pinned to REV.

use std::path::{Path, PathBuf};

use crate::cli::Context;
use crate::cli::apply::{self, Rollback};
use crate::cli::report::Hinted;
use crate::exit::Exit;

pub struct Args<'a> {
    pub to: &'a str,
    pub plan: Option<&'a Path>,
    pub reason: Option<&'a str>,
    pub delete_streams: bool,
    pub run: crate::cli::RunFlags,
    /// Only these waves of the old plan.
    pub waves: &'a [String],
    /// Only these resources (`kind.name`, `kind.*`, `host.NAME`).
    pub select: &'a [String],
    /// Only this host (and, with `previous`, only its previous generation counts).
    pub host: Option<&'a str>,
}

pub fn run(ctx: &Context, args: &Args<'_>) -> anyhow::Result<Exit> {
    let plan = match args.plan {
        Some(p) => p.to_path_buf(),
        None => only_plan()?,
    };
    let rev = match args.to {
        "previous" => previous(ctx, args.host)?,
        rev => rev.to_string(),
    };
    let mut tree = ctx.git_tree(&plan, &rev)?;
    if args.to == "previous" {
        tree.rev = format!(
            "previous ({})",
            tree.commit.chars().take(12).collect::<String>()
        );
    }
    // Render with the built-in templates the hosts recorded for that commit, not this binary's.
    let inventory = ctx.inventory()?;
    tree.builtins = ctx
        .runtime()?
        .block_on(crate::run::generations::recorded_templates(
            &inventory,
            &tree.commit,
        ));
    if tree.builtins.is_none() {
        eprintln!(
            "note: no generation of {} recorded its built-in templates; rendering with this wavectl's",
            tree.commit.chars().take(12).collect::<String>()
        );
    }
    let opts = apply::Options {
        yes: args.run.yes,
        allow_dirty: false,
        unpin: false,
        dry_run: args.run.dry_run,
        force_unlock: args.run.force_unlock,
        waves: crate::run::decide::WaveSelection {
            waves: args.waves.to_vec(),
            ..Default::default()
        },
        select: args.select.to_vec(),
        host: args.host.map(str::to_string),
        rollback: Some(Rollback {
            tree,
            reason: args.reason.map(str::to_string),
            delete_streams: args.delete_streams,
        }),
    };
    apply::run(ctx, &plan, &opts)
}

/// The plan when none is named: the only `.toml` in `plans/`.
fn only_plan() -> anyhow::Result<PathBuf> {
    let mut plans: Vec<PathBuf> = std::fs::read_dir("plans")
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "toml"))
                .collect()
        })
        .unwrap_or_default();
    plans.sort();
    match plans.as_slice() {
        [one] => Ok(one.clone()),
        _ => Err(Hinted::new(
            "which plan? plans/ here does not hold exactly one plan",
            "name it: `wavectl rollback --to REV plans/phase2.toml`",
        )
        .into()),
    }
}

/// The commit of each host's previous generation (its last one when its last apply was
/// interrupted); the hosts must agree.
fn previous(ctx: &Context, only: Option<&str>) -> anyhow::Result<String> {
    let mut inventory = ctx.inventory()?;
    if let Some(h) = only {
        inventory.hosts.retain(|x| x.name.get_ref() == h);
        if inventory.hosts.is_empty() {
            anyhow::bail!("host `{h}` is not in the inventory");
        }
    }
    let reports = ctx
        .runtime()?
        .block_on(crate::run::generations::of_all(&inventory));
    let mut commits: Vec<(String, String)> = Vec::new();
    let mut problems = Vec::new();
    for (host, report) in reports {
        match report {
            Err(e) => problems.push(format!("{host}: {e}")),
            Ok(h) if h.generations.is_empty() => {}
            // An apply that died recorded no generation: its host's last one is the last good
            // one. Otherwise the generation before the last.
            Ok(h) => match h
                .generations
                .iter()
                .rev()
                .nth(
                    if h.lock.as_ref().is_some_and(crate::run::lock_is_orphaned) {
                        0
                    } else {
                        1
                    },
                )
                .and_then(|g| g.commit.clone())
            {
                Some(c) => commits.push((host, c)),
                None => problems.push(format!(
                    "{host}: has no previous generation with a commit (generations: {})",
                    h.generations.len()
                )),
            },
        }
    }
    if !problems.is_empty() {
        return Err(Hinted::new(
            format!(
                "cannot find the previous generation: {}",
                problems.join("; ")
            ),
            "name the revision: `wavectl rollback --to COMMIT` (`wavectl history` lists them)",
        )
        .into());
    }
    let mut distinct: Vec<&String> = commits.iter().map(|(_, c)| c).collect();
    distinct.sort();
    distinct.dedup();
    match distinct.as_slice() {
        [one] => Ok((*one).clone()),
        [] => Err(Hinted::new(
            "no host has a generation yet: there is nothing to roll back",
            "apply a plan first",
        )
        .into()),
        _ => Err(Hinted::new(
            format!(
                "the hosts' previous generations disagree: {}",
                commits
                    .iter()
                    .map(|(h, c)| format!("{h} at {}", c.chars().take(12).collect::<String>()))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            "name the revision (`wavectl rollback --to COMMIT`), or one host: `--host NAME`",
        )
        .into()),
    }
}
