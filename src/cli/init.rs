//! `wavectl init DIR [--host NAME=SSH_DEST[,address=IP][,root=PATH]]... [--minimal]`: a new
//! plan repo for the operator's own machines, committed and validated. It never writes into a
//! directory that holds anything: the repo is built beside it and moved into place whole.

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde_json::json;

use crate::cli::report::Hinted;
use crate::cli::{Context, Output};
use crate::exit::Exit;
use crate::scaffold::{self, NewHost};
use crate::value::{Address, Ident, SshDest};

pub struct Args<'a> {
    pub dir: &'a Path,
    pub hosts: &'a [String],
    pub minimal: bool,
}

pub fn run(ctx: &Context, args: &Args<'_>) -> anyhow::Result<Exit> {
    refuse_existing(args.dir)?;
    let wanted = if args.minimal { 1 } else { 2 };
    let hosts = match args.hosts {
        [] => offer_ssh_config_hosts(ctx, wanted)?,
        specs => specs
            .iter()
            .map(|s| NewHost::parse(s).map_err(|e| Hinted::new(e, "e.g. --host mainpc=ops@192.168.1.10 --host pc2=ops@192.168.1.11,address=192.168.1.11").into()))
            .collect::<anyhow::Result<Vec<_>>>()?,
    };
    check_hosts(&hosts, args.minimal)?;
    let hosts = hosts
        .into_iter()
        .map(|h| {
            let address = match &h.address {
                Some(a) => a.clone(),
                None => address_from_ssh(ctx, &h)?,
            };
            Ok((h, address))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;

    let files = repo_files(ctx, args, &hosts);
    let commit = create(args.dir, &files)?;

    let plan = args.dir.join(files[0].0);
    let inventory = files[1].0;
    let fresh = ctx.for_new_repo();
    let (loaded, missing) = fresh.load_lenient(&plan, &Default::default())?;
    if ctx.output == Output::Json {
        println!(
            "{}",
            json!({
                "ok": true,
                "dir": args.dir.display().to_string(),
                "plan": files[0].0,
                "inventory": inventory,
                "commit": commit,
                "hosts": hosts.iter().map(|(h, a)| json!({ "name": h.name.as_str(), "ssh": h.ssh.as_str(), "address": a.as_str() })).collect::<Vec<_>>(),
                "missing_secrets": missing,
            })
        );
        return Ok(Exit::Ok);
    }
    println!(
        "created {} (commit {}): {}, {inventory} with {}",
        args.dir.display(),
        &commit[..10.min(commit.len())],
        files[0].0,
        hosts
            .iter()
            .map(|(h, a)| format!("{} ({}, address {a})", h.name, h.ssh))
            .collect::<Vec<_>>()
            .join(", ")
    );
    crate::cli::validate::print_summary(&fresh, &plan, &loaded);
    for name in &missing {
        println!(
            "note: the plan needs secret {name} before apply: export {name}=... or put `{name} = \"...\"` in a secrets file outside the repo (--secrets-file FILE)"
        );
    }
    println!(
        "next: cd {} && wavectl doctor {} && wavectl apply {}",
        args.dir.display(),
        files[0].0,
        files[0].0
    );
    Ok(Exit::Ok)
}

/// A directory that exists and holds anything (an existing repo above all) is left alone.
fn refuse_existing(dir: &Path) -> anyhow::Result<()> {
    let Ok(meta) = std::fs::symlink_metadata(dir) else {
        return Ok(());
    };
    let what = if !meta.is_dir() {
        Some("is not a directory".to_string())
    } else if dir.join(".git").exists() {
        Some("is already a git repository".to_string())
    } else {
        let mut entries =
            std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))?;
        entries.next().map(|_| "is not empty".to_string())
    };
    match what {
        Some(what) => Err(Hinted::new(
            format!(
                "{} {what}; wavectl init never writes into an existing directory, and nothing was changed",
                dir.display()
            ),
            "name a new directory (wavectl init DIR creates it)",
        )
        .into()),
        None => Ok(()),
    }
}

fn check_hosts(hosts: &[NewHost], minimal: bool) -> anyhow::Result<()> {
    if !minimal && hosts.len() < 2 {
        return Err(Hinted::new(
            format!(
                "the reference plan needs two hosts (the roles of {} and {}), {} given",
                scaffold::ROLES[0],
                scaffold::ROLES[1],
                hosts.len()
            ),
            "give a second --host, or --minimal for one hub and one Pushgateway on one host",
        )
        .into());
    }
    for (i, h) in hosts.iter().enumerate() {
        if hosts[..i].iter().any(|o| o.name == h.name) {
            anyhow::bail!("--host {}: the name is given twice", h.name);
        }
    }
    Ok(())
}

/// The repo's files, plan first, inventory second.
fn repo_files(
    ctx: &Context,
    args: &Args<'_>,
    hosts: &[(NewHost, Address)],
) -> Vec<(&'static str, String)> {
    let names: Vec<&Ident> = hosts.iter().map(|(h, _)| &h.name).collect();
    let plan = if args.minimal {
        ("plans/minimal.toml", scaffold::minimal_plan(names[0]))
    } else {
        (
            "plans/phase2.toml",
            scaffold::phase2_plan(names[0], names[1]),
        )
    };
    let ssh_config = ctx.ssh_config().map(|p| p.display().to_string());
    let mut files = vec![
        plan,
        (
            "inventories/hosts.toml",
            scaffold::inventory(hosts, ssh_config.as_deref()),
        ),
        ("templates/README", scaffold::TEMPLATES_README.to_string()),
        ("migrations/README", scaffold::MIGRATIONS_README.to_string()),
    ];
    if !args.minimal {
        let (path, text) = scaffold::STANDIN_TEMPLATE;
        files.push((path, text.to_string()));
        for (path, text) in scaffold::NANOCLAW_MIGRATIONS {
            files.push((path, text.to_string()));
        }
    }
    files
}

/// Writes the files and their first commit into a directory beside `dir`, then moves it into
/// place (a rename cannot replace a directory that meanwhile got entries). Returns the commit.
fn create(dir: &Path, files: &[(&str, String)]) -> anyhow::Result<String> {
    let parent = match dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(p) => p.to_path_buf(),
        None => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent)
        .with_context(|| format!("cannot create {}", parent.display()))?;
    let base = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "repo".into());
    let staging = parent.join(format!(".{base}.wavectl-init.{}", std::process::id()));
    let result = write_repo(&staging, files).and_then(|commit| {
        std::fs::rename(&staging, dir).with_context(|| {
            format!(
                "cannot move the new repo into {} (did it appear meanwhile?)",
                dir.display()
            )
        })?;
        Ok(commit)
    });
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&staging);
    }
    result
}

fn write_repo(at: &Path, files: &[(&str, String)]) -> anyhow::Result<String> {
    for (path, text) in files {
        let full = at.join(path);
        if let Some(p) = full.parent() {
            std::fs::create_dir_all(p).with_context(|| format!("cannot create {}", p.display()))?;
        }
        std::fs::write(&full, text).with_context(|| format!("cannot write {}", full.display()))?;
    }
    let git = |e: git2::Error| anyhow::anyhow!("git: {}", e.message());
    let repo = git2::Repository::init(at).map_err(git)?;
    let mut index = repo.index().map_err(git)?;
    index
        .add_all(["*"], git2::IndexAddOption::DEFAULT, None)
        .map_err(git)?;
    index.write().map_err(git)?;
    let tree = repo
        .find_tree(index.write_tree().map_err(git)?)
        .map_err(git)?;
    let sig = match repo.signature() {
        Ok(s) => s,
        Err(_) => {
            let operator = crate::run::operator();
            let name = operator.split('@').next().unwrap_or("wavectl").to_string();
            git2::Signature::now(&name, &operator).map_err(git)?
        }
    };
    let oid = repo
        .commit(
            Some("HEAD"),
            &sig,
            &sig,
            "wavectl init: plan, inventory, templates/ and migrations/",
            &tree,
            &[],
        )
        .map_err(git)?;
    Ok(oid.to_string())
}

/// What ssh makes of an alias: the `hostname` of `ssh -G`.
fn address_from_ssh(ctx: &Context, h: &NewHost) -> anyhow::Result<Address> {
    let (dest, _) = h.ssh.split();
    let mut cmd = std::process::Command::new("ssh");
    if let Some(cfg) = ctx.ssh_config() {
        cmd.arg("-F").arg(cfg);
    }
    let hint = format!(
        "give it: --host {}={},address=IP",
        h.name.as_str(),
        h.ssh.as_str()
    );
    let out = cmd.arg("-G").arg("--").arg(&dest).output().map_err(|e| {
        Hinted::new(
            format!(
                "--host {}: cannot run ssh -G to find its address: {e}",
                h.name.as_str()
            ),
            hint.clone(),
        )
    })?;
    let text = String::from_utf8_lossy(&out.stdout);
    let found = text
        .lines()
        .find_map(|l| l.strip_prefix("hostname "))
        .map(str::trim)
        .filter(|_| out.status.success());
    match found.map(Address::new) {
        Some(Ok(a)) => Ok(a),
        _ => Err(Hinted::new(
            format!(
                "--host {}: no address given and ssh does not say where `{dest}` is",
                h.name.as_str()
            ),
            hint,
        )
        .into()),
    }
}

/// Without `--host`: the aliases of the operator's ssh config, chosen on a terminal, listed in
/// the refusal otherwise.
fn offer_ssh_config_hosts(ctx: &Context, wanted: usize) -> anyhow::Result<Vec<NewHost>> {
    let file = match ctx.ssh_config() {
        Some(p) => p.to_path_buf(),
        None => PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".ssh/config"),
    };
    let aliases = std::fs::read_to_string(&file)
        .map(|t| scaffold::ssh_config_hosts(&t))
        .unwrap_or_default();
    let example = "wavectl init DIR --host mainpc=ops@192.168.1.10 --host pc2=ops@192.168.1.11";
    if aliases.is_empty() {
        return Err(Hinted::new(
            format!("no --host given, and {} names no hosts", file.display()),
            format!("name the machines: {example}"),
        )
        .into());
    }
    let listed = aliases.join(", ");
    if !std::io::stdin().is_terminal() {
        let suggestion: Vec<String> = aliases
            .iter()
            .take(wanted)
            .map(|a| format!("--host {}={a}", host_name_of(a)))
            .collect();
        return Err(Hinted::new(
            format!(
                "no --host given and stdin is not a terminal to choose from the hosts of {}: {listed}",
                file.display()
            ),
            format!("name them: wavectl init DIR {}", suggestion.join(" ")),
        )
        .into());
    }
    let default: Vec<&str> = aliases.iter().take(wanted).map(String::as_str).collect();
    let mut err = std::io::stderr().lock();
    writeln!(err, "hosts in {}: {listed}", file.display())?;
    write!(
        err,
        "which to use, separated by spaces (the first takes the reference plan's {} role{}) [{}]: ",
        scaffold::ROLES[0],
        if wanted > 1 {
            format!(", the second {}'s", scaffold::ROLES[1])
        } else {
            String::new()
        },
        default.join(" ")
    )?;
    err.flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    let chosen: Vec<&str> = match line.split_whitespace().collect::<Vec<_>>() {
        v if v.is_empty() => default,
        v => v,
    };
    chosen
        .into_iter()
        .map(|alias| {
            let ssh = SshDest::new(alias).map_err(anyhow::Error::msg)?;
            let name = Ident::new(host_name_of(alias)).map_err(anyhow::Error::msg)?;
            Ok(NewHost {
                name,
                ssh,
                address: None,
                root: None,
            })
        })
        .collect()
}

/// A host name for an alias: the alias itself where it is a valid name.
fn host_name_of(alias: &str) -> String {
    let cleaned: String = alias
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    cleaned.trim_start_matches(['-', '_', '.']).to_string()
}
