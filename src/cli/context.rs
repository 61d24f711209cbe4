//! What every subcommand needs from the command line and the environment: the loaded plan,
//! the output format, colour.

use std::io::IsTerminal;
use std::path::Path;

use anyhow::Context as _;

use crate::cli::{ColorChoice, Global, Output, homes};
use crate::load::{self, Loaded, NamedText, Request};
use crate::repo::{GitTree, PlanRepo, WorkTree};
use crate::run::observe::{Observed, observe_all};
use crate::run::session::Session;

pub struct Context {
    pub output: Output,
    pub color: bool,
    inventory: Option<std::path::PathBuf>,
    secrets_file: Option<std::path::PathBuf>,
    ssh_config: Option<std::path::PathBuf>,
    persist: Option<std::time::Duration>,
}

impl Context {
    pub fn new(g: &Global) -> Self {
        let color = match g.color {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => {
                std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none()
            }
        };
        Context {
            output: g.output,
            color,
            inventory: g.inventory.clone(),
            secrets_file: g.secrets_file.clone(),
            ssh_config: g.ssh_config.clone(),
            persist: g.persist,
        }
    }

    /// The same options for a plan repo just made: no `-i`, its own inventory is the default.
    pub fn for_new_repo(&self) -> Context {
        Context {
            output: self.output,
            color: self.color,
            inventory: None,
            secrets_file: self.secrets_file.clone(),
            ssh_config: self.ssh_config.clone(),
            persist: self.persist,
        }
    }

    /// `--ssh-config` (or `WAVECTL_SSH_CONFIG`), when given.
    pub fn ssh_config(&self) -> Option<&Path> {
        self.ssh_config.as_deref()
    }

    pub fn palette(&self) -> crate::diff::Palette {
        if self.color {
            crate::diff::Palette::colored()
        } else {
            crate::diff::Palette::plain()
        }
    }

    pub fn runtime(&self) -> anyhow::Result<tokio::runtime::Runtime> {
        Ok(tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?)
    }

    /// The commit the plan comes from and whether its repo has uncommitted changes.
    pub fn plan_commit(&self, plan: &Path) -> anyhow::Result<crate::run::git::PlanCommit> {
        let (repo, _) = WorkTree::for_plan(plan);
        crate::run::git::plan_commit(repo.root())
            .with_context(|| format!("cannot read git state of {}", repo.root().display()))
    }

    /// The inventory alone (`-i`, else this directory's default: see `load::default_inventory`).
    pub fn inventory(&self) -> anyhow::Result<crate::inventory::Inventory> {
        let named = match &self.inventory {
            Some(p) => read_named(p)?,
            None => load::default_inventory(&WorkTree::new(".".into(), String::new())),
        };
        let (inv, diags) = crate::inventory::parse_inventory(&named.name, &named.text);
        if !diags.is_empty() {
            let mut sources = load::Sources::default();
            sources.add(&named.name, &named.text);
            return Err(load::Invalid::new(diags, sources).into());
        }
        let mut inv = inv;
        self.default_ssh_config(&mut inv);
        Ok(inv)
    }

    /// Reads, validates and expands the plan from the work tree.
    pub fn load(&self, plan: &Path) -> anyhow::Result<Loaded> {
        self.load_with_homes(plan, &std::collections::BTreeMap::new())
    }

    /// Like `load`, for commands that reach the hosts: a root under `~` is resolved with the
    /// host's own home directory first (one short connection per such host).
    pub fn load_online(&self, plan: &Path) -> anyhow::Result<Loaded> {
        let loaded = self.load(plan)?;
        if !has_tilde_roots(&loaded) {
            return Ok(loaded);
        }
        let remembered = homes::remembered(&loaded.inventory);
        if homes::covers(&loaded.inventory, &remembered) {
            return self.load_with_homes(plan, &remembered);
        }
        let homes = self.runtime()?.block_on(async {
            let names: Vec<String> = loaded.desired.hosts.keys().cloned().collect();
            let session = Session::connect(&loaded.inventory, &names).await;
            let homes = session.homes(&loaded.inventory).await;
            session.close().await;
            homes
        });
        homes::remember(&loaded.inventory, &homes);
        self.load_with_homes(plan, &homes)
    }

    /// The plan repo's commit for `rev` (any git revision), read from git objects.
    pub fn git_tree(&self, plan: &Path, rev: &str) -> anyhow::Result<GitTree> {
        let (work, _) = WorkTree::for_plan(plan);
        GitTree::open(work.root(), rev).map_err(|e| {
            crate::cli::report::Hinted::new(
                format!(
                    "cannot read revision `{rev}` of the plan repo {}: {}",
                    work.root().display(),
                    e.message()
                ),
                "name a commit, tag or branch of the plan repo (git log --oneline; git tag)",
            )
            .into()
        })
    }

    /// `load` of the plan as `tree` holds it (the work tree when `None`); the inventory
    /// always comes from the work tree: it says where the machines are now.
    pub fn load_at(&self, plan: &Path, tree: Option<&GitTree>) -> anyhow::Result<Loaded> {
        self.load_from(plan, tree, &std::collections::BTreeMap::new())
    }

    /// Connects to every host of `loaded` (the plan as `load_at(plan, tree)` read it) and
    /// observes it, one round trip per host. A root under `~` is rendered with the home this
    /// machine remembers for the host; the observe script reports `$HOME`, and when it differs
    /// (or nothing is remembered) the home is asked on the connection that then observes, the
    /// plan is loaded again with it, and it is remembered.
    pub async fn observe(
        &self,
        plan: &Path,
        tree: Option<&GitTree>,
        loaded: Loaded,
    ) -> anyhow::Result<(Loaded, Vec<Observed>)> {
        if !has_tilde_roots(&loaded) {
            let observed = observe_all(&loaded).await;
            return Ok((loaded, observed));
        }
        let remembered = homes::remembered(&loaded.inventory);
        if homes::covers(&loaded.inventory, &remembered) {
            let loaded = self.load_from(plan, tree, &remembered)?;
            let observed = observe_all(&loaded).await;
            let reported: std::collections::BTreeMap<String, String> = observed
                .iter()
                .filter_map(|o| Some((o.host.clone(), o.report.as_ref().ok()?.home.clone()?)))
                .collect();
            let moved = remembered
                .iter()
                .any(|(host, home)| reported.get(host).is_some_and(|r| r != home));
            if !moved {
                return Ok((loaded, observed));
            }
            futures::future::join_all(
                observed
                    .into_iter()
                    .filter_map(|o| o.connection)
                    .map(crate::transport::Connection::close),
            )
            .await;
        }
        let names: Vec<String> = loaded.desired.hosts.keys().cloned().collect();
        let session = Session::connect(&loaded.inventory, &names).await;
        let homes = session.homes(&loaded.inventory).await;
        homes::remember(&loaded.inventory, &homes);
        let loaded = self.load_from(plan, tree, &homes)?;
        let observed = session.observe(&loaded).await;
        Ok((loaded, observed))
    }

    fn load_with_homes(
        &self,
        plan: &Path,
        homes: &std::collections::BTreeMap<String, String>,
    ) -> anyhow::Result<Loaded> {
        self.load_from(plan, None, homes)
    }

    /// `load` for commands that check a plan before its secrets are at hand (`init`,
    /// `doctor`): a secret that neither the environment nor the secrets file provides gets a
    /// stand-in, and its name is returned. Nothing loaded this way may reach a host's files.
    pub fn load_lenient(
        &self,
        plan: &Path,
        homes: &std::collections::BTreeMap<String, String>,
    ) -> anyhow::Result<(Loaded, Vec<String>)> {
        let missing = std::cell::RefCell::new(std::collections::BTreeSet::new());
        let loaded = self.load_env(plan, None, homes, Some(&missing))?;
        Ok((loaded, missing.into_inner().into_iter().collect()))
    }

    fn load_from(
        &self,
        plan: &Path,
        tree: Option<&GitTree>,
        homes: &std::collections::BTreeMap<String, String>,
    ) -> anyhow::Result<Loaded> {
        self.load_env(plan, tree, homes, None)
    }

    fn load_env(
        &self,
        plan: &Path,
        tree: Option<&GitTree>,
        homes: &std::collections::BTreeMap<String, String>,
        stand_in: Option<&std::cell::RefCell<std::collections::BTreeSet<String>>>,
    ) -> anyhow::Result<Loaded> {
        let (repo, plan_path) = WorkTree::for_plan(plan);
        let inventory = match (&self.inventory, tree) {
            (Some(p), _) => Some(read_named(p)?),
            // An old commit's inventory says where the machines were: read today's.
            (None, Some(_)) => Some(load::default_inventory(&repo)),
            (None, None) => None,
        };
        let secrets_file = match &self.secrets_file {
            Some(p) => {
                refuse_inside_repo(p, repo.root())?;
                Some(read_named(p)?)
            }
            None => None,
        };
        let in_file: std::collections::BTreeMap<String, String> = secrets_file
            .as_ref()
            .map(|f| crate::secrets::parse_secrets_file(&f.name, &f.text).0)
            .unwrap_or_default();
        let env = |name: &str| {
            std::env::var(name).ok().or_else(|| {
                let missing = stand_in.filter(|_| !in_file.contains_key(name))?;
                missing.borrow_mut().insert(name.to_string());
                Some(crate::secrets::MASK.to_string())
            })
        };
        let req = Request {
            plan_path: &plan_path,
            inventory,
            secrets_file,
            env: &env,
            homes,
            builtins: tree.and_then(|t| t.builtins.as_ref()),
        };
        let source: &dyn PlanRepo = match tree {
            Some(t) => t,
            None => &repo,
        };
        let mut loaded = load::load(source, &req)?;
        self.default_ssh_config(&mut loaded.inventory);
        Ok(loaded)
    }

    /// `--ssh-config` (or `WAVECTL_SSH_CONFIG`) for an inventory that names no ssh_config.
    fn default_ssh_config(&self, inv: &mut crate::inventory::Inventory) {
        if inv.ssh_config.is_none() {
            inv.ssh_config = self.ssh_config.as_ref().map(|p| p.display().to_string());
        }
        inv.persist = self.persist;
    }
}

fn has_tilde_roots(loaded: &Loaded) -> bool {
    loaded
        .inventory
        .hosts
        .iter()
        .any(|h| h.root.starts_with('~'))
}

fn read_named(path: &Path) -> anyhow::Result<NamedText> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(NamedText {
        name: path.display().to_string(),
        text,
    })
}

/// Secrets kept in the plan repo end up in git history: refuse before reading them.
fn refuse_inside_repo(secrets: &Path, repo_root: &Path) -> anyhow::Result<()> {
    let abs = std::fs::canonicalize(secrets)
        .with_context(|| format!("cannot read secrets file {}", secrets.display()))?;
    if abs.starts_with(repo_root) && repo_root.join(".git").exists() {
        anyhow::bail!(
            "secrets file {} is inside the plan repo {}; move it outside git (e.g. /etc/wavectl/secrets.toml)",
            secrets.display(),
            repo_root.display()
        );
    }
    Ok(())
}
