//! The whole offline pipeline: read plan, inventory, templates and migration files from a plan
//! repo; parse, validate and expand. Every problem comes back at once with the sources needed
//! to show it.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use crate::diagnostic::Diagnostic;
use crate::inventory::{self, Inventory};
use crate::plan::expand::{self, Inputs};
use crate::plan::load::parse_plan;
use crate::plan::schema::Plan;
use crate::plan::validate::validate;
use crate::primitive::Desired;
use crate::render::{TemplateSource, Templates};
use crate::repo::PlanRepo;
use crate::secrets;

/// A file given to the loader: the name shown to the operator and its text.
#[derive(Debug, Clone)]
pub struct NamedText {
    pub name: String,
    pub text: String,
}

/// What the operator pointed at, besides the plan repo.
pub struct Request<'a> {
    /// Path of the plan inside the repo.
    pub plan_path: &'a str,
    /// The inventory; `None` = the repo's `inventories/lab.toml`, else the built-in lab.
    pub inventory: Option<NamedText>,
    pub secrets_file: Option<NamedText>,
    pub env: &'a dyn Fn(&str) -> Option<String>,
    /// The built-in templates to render with: an older generation's recorded bytes for a
    /// rollback to its commit; `None` = this binary's.
    pub builtins: Option<&'a BTreeMap<String, String>>,
    /// Home directories of hosts, as they reported them: a root `~/...` is under it. Offline
    /// (validate, render) there are none and `~` stays as written.
    pub homes: &'a BTreeMap<String, String>,
}

/// A plan ready to diff and apply.
pub struct Loaded {
    pub plan: Plan,
    pub inventory: Inventory,
    pub desired: Desired,
    /// Secret values, for masking output.
    pub secrets: BTreeMap<String, String>,
    pub sources: Sources,
    /// The built-in templates it rendered with (recorded with each generation).
    pub builtins: BTreeMap<String, String>,
}

/// Texts of the files diagnostics point into, by shown name.
#[derive(Debug, Default, Clone)]
pub struct Sources(BTreeMap<String, String>);

impl Sources {
    pub fn add(&mut self, name: &str, text: &str) {
        self.0.insert(name.to_string(), text.to_string());
    }

    pub fn text(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// All diagnostics, each with its line and caret, in the order given.
    pub fn render(&self, diags: &[Diagnostic]) -> String {
        let mut out = String::new();
        for d in diags {
            let _ = write!(
                out,
                "{}",
                d.display(self.0.get(&d.file).map(String::as_str))
            );
        }
        out
    }
}

/// The plan could not be loaded: every problem found, and the texts to show them with.
#[derive(Debug)]
pub struct Invalid {
    pub diagnostics: Vec<Diagnostic>,
    pub sources: Sources,
}

impl Invalid {
    /// Sorted by file and position; one template error hit by several resources shows once.
    pub fn new(mut diagnostics: Vec<Diagnostic>, sources: Sources) -> Self {
        diagnostics.sort_by(|a, b| {
            (&a.file, a.span.start, &a.message).cmp(&(&b.file, b.span.start, &b.message))
        });
        diagnostics.dedup();
        Invalid {
            diagnostics,
            sources,
        }
    }
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.sources.render(&self.diagnostics))
    }
}

impl std::error::Error for Invalid {}

pub const LAB_INVENTORY: &str = "inventories/lab.toml";

/// The inventory used when none is given: the repo's `inventories/lab.toml`, else the only
/// inventory in its `inventories/` (as `wavectl init` writes it), else the built-in lab.
pub fn default_inventory(repo: &dyn PlanRepo) -> NamedText {
    if let Ok(Some(text)) = repo.read(LAB_INVENTORY) {
        return NamedText {
            name: repo.display(LAB_INVENTORY),
            text,
        };
    }
    let tomls: Vec<String> = repo
        .list("inventories")
        .ok()
        .flatten()
        .unwrap_or_default()
        .into_iter()
        .filter(|n| n.ends_with(".toml"))
        .collect();
    if let [only] = tomls.as_slice() {
        let path = format!("inventories/{only}");
        if let Ok(Some(text)) = repo.read(&path) {
            return NamedText {
                name: repo.display(&path),
                text,
            };
        }
    }
    NamedText {
        name: "<built-in>/inventories/lab.toml".into(),
        text: inventory::EMBEDDED_LAB.into(),
    }
}

pub fn load(repo: &dyn PlanRepo, req: &Request<'_>) -> Result<Loaded, Invalid> {
    let mut sources = Sources::default();
    let fail = |diagnostics, sources| Err(Invalid::new(diagnostics, sources));
    let plan_name = repo.display(req.plan_path);
    let plan_text = match repo.read(req.plan_path) {
        Ok(Some(t)) => t,
        Ok(None) => {
            return fail(
                vec![Diagnostic::whole_file(&plan_name, "plan file not found")],
                sources,
            );
        }
        Err(e) => {
            return fail(
                vec![Diagnostic::whole_file(
                    &plan_name,
                    format!("cannot read plan: {e}"),
                )],
                sources,
            );
        }
    };
    sources.add(&plan_name, &plan_text);
    let inventory = match &req.inventory {
        Some(i) => i.clone(),
        None => default_inventory(repo),
    };
    sources.add(&inventory.name, &inventory.text);

    let (mut plan, mut diags) = parse_plan(&plan_name, &plan_text);
    let (mut inv, inv_diags) = inventory::parse_inventory(&inventory.name, &inventory.text);
    diags.extend(inv_diags);
    for h in &mut inv.hosts {
        if let Some(home) = req.homes.get(h.name.get_ref().as_str())
            && h.root.starts_with('~')
        {
            match crate::value::Root::new(h.root.resolved(home)) {
                Ok(root) => h.root = root,
                Err(e) => diags.push(Diagnostic::new(
                    &inventory.name,
                    h.name.span(),
                    format!(
                        "host `{}`: its home `{}` gives {e}",
                        h.name.get_ref(),
                        crate::value::shown(home)
                    ),
                )),
            }
        }
    }
    let mut secret_file_values = BTreeMap::new();
    if let Some(s) = &req.secrets_file {
        sources.add(&s.name, &s.text);
        let (values, d) = secrets::parse_secrets_file(&s.name, &s.text);
        secret_file_values = values;
        diags.extend(d);
    }
    // Cross-checks on a half-parsed plan would only report echoes of the first problems.
    if !diags.is_empty() {
        return fail(diags, sources);
    }

    let names: BTreeSet<String> = plan
        .processes
        .iter()
        .flat_map(|p| p.secrets.iter().map(|s| s.get_ref().to_string()))
        .chain(
            plan.alertmanagers
                .iter()
                .flat_map(|a| &a.receivers)
                .filter_map(|r| r.telegram.as_ref())
                .map(|t| t.get_ref().bot_token.get_ref().to_string()),
        )
        .chain(plan.migrations.iter().filter_map(|m| {
            let p = m.postgres.as_ref()?;
            Some(p.get_ref().password_secret.get_ref().to_string())
        }))
        .collect();
    let secret_values = secrets::resolve(&names, req.env, &secret_file_values);
    let provided = secret_values.keys().cloned().collect();
    let mut diags = crate::plan::instances::instantiate(&plan_name, &mut plan, &inv);
    diags.extend(validate(&plan_name, &plan, &inv, &provided));
    if !diags.is_empty() {
        return fail(diags, sources);
    }

    let overrides = match template_overrides(repo) {
        Ok(o) => o,
        Err(d) => return fail(vec![d], sources),
    };
    // Recorded bytes win; a template the recording generation did not have comes from this
    // binary (its caller renders it only where the recorded files refer to it).
    let mut builtins = crate::render::builtins();
    if let Some(recorded) = req.builtins {
        builtins.extend(recorded.clone());
    }
    let templates = match Templates::load(&builtins, &overrides) {
        Ok(t) => t,
        Err(diags) => {
            for src in overrides.values() {
                sources.add(&src.file, &src.text);
            }
            return fail(diags, sources);
        }
    };
    for src in templates.sources() {
        sources.add(&src.file, &src.text);
    }
    let migration_files = read_migration_dirs(repo, &plan);
    // Engine rules point into migration files: their text shows the line.
    for (dir, files) in &migration_files {
        for (name, text) in files.iter().flatten() {
            sources.add(&format!("{}/{name}", dir.trim_end_matches('/')), text);
        }
    }
    let inputs = Inputs {
        file: &plan_name,
        inventory: &inv,
        templates: &templates,
        migration_files: &migration_files,
        secrets: &secret_values,
    };
    match expand::expand(&plan, &inputs) {
        Ok(desired) => Ok(Loaded {
            plan,
            inventory: inv,
            desired,
            secrets: secret_values,
            sources,
            builtins,
        }),
        Err(diags) => fail(diags, sources),
    }
}

fn template_overrides(repo: &dyn PlanRepo) -> Result<BTreeMap<String, TemplateSource>, Diagnostic> {
    let mut out = BTreeMap::new();
    let names = repo
        .list("templates")
        .map_err(|e| {
            Diagnostic::whole_file(
                &repo.display("templates"),
                format!("cannot list templates: {e}"),
            )
        })?
        .unwrap_or_default();
    for name in names.into_iter().filter(|n| n.ends_with(".tera")) {
        let path = format!("templates/{name}");
        let file = repo.display(&path);
        let text = repo
            .read(&path)
            .map_err(|e| Diagnostic::whole_file(&file, format!("cannot read template: {e}")))?
            .unwrap_or_default();
        out.insert(name, TemplateSource { file, text });
    }
    Ok(out)
}

fn read_migration_dirs(
    repo: &dyn PlanRepo,
    plan: &Plan,
) -> BTreeMap<String, Option<Vec<(String, String)>>> {
    let mut out = BTreeMap::new();
    for m in &plan.migrations {
        let dir = m.dir.get_ref().trim_end_matches('/').to_string();
        let files = repo.list(&dir).ok().flatten().map(|names| {
            names
                .into_iter()
                .filter_map(|n| {
                    let text = repo.read(&format!("{dir}/{n}")).ok().flatten()?;
                    Some((n, text))
                })
                .collect()
        });
        out.insert(m.dir.get_ref().to_string(), files);
    }
    out
}
