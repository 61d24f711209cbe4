//! One resource on many hosts: a `[[process]]` or `[[file]]` that names `hosts` (a list of
//! host names, `*`, `group:NAME`) becomes one entry per host it picks, each with its own
//! `host`, so validation and expansion see one instance per host like any other resource.
//! Pure: the plan and the inventory in, the instances and every problem out.

use std::collections::BTreeSet;
use std::ops::Range;

use serde_spanned::Spanned;

use crate::diagnostic::Diagnostic;
use crate::inventory::Inventory;
use crate::plan::schema::{Hosts, Name, Plan, is_no_host};
use crate::value::{HostPick, Ident};

/// What instantiation needs of an entry with `host` or `hosts`.
trait OnHosts: Clone {
    fn kind(&self) -> &'static str;
    fn name(&self) -> &Name;
    fn host(&self) -> &Name;
    fn hosts(&self) -> Option<&Spanned<Hosts>>;
    fn set_host(&mut self, host: Name);
}

macro_rules! on_hosts {
    ($t:ty, $kind:literal, $also:expr) => {
        impl OnHosts for $t {
            fn kind(&self) -> &'static str {
                $kind
            }
            fn name(&self) -> &Name {
                &self.name
            }
            fn host(&self) -> &Name {
                &self.host
            }
            fn hosts(&self) -> Option<&Spanned<Hosts>> {
                self.hosts.as_ref()
            }
            fn set_host(&mut self, host: Name) {
                let also: fn(&mut $t, &Name) = $also;
                also(self, &host);
                self.host = host;
            }
        }
    };
}

on_hosts!(crate::plan::schema::Process, "process", |p, host| {
    // A health probe that names no host runs on the instance's own host.
    if let Some(h) = p.health.as_mut() {
        for probe_host in h.get_mut().probe_host_mut() {
            if is_no_host(probe_host) {
                *probe_host = Spanned::new(0..0, host.get_ref().clone());
            }
        }
    }
});
on_hosts!(crate::plan::schema::PlanFile, "file", |_f, _host| {});

/// Replaces every process and file entry by its instances, one per host. An entry whose hosts
/// cannot be resolved stays as one entry without a host (validation skips it), so the rest of
/// the plan is still checked without echoes of the fault.
pub fn instantiate(file: &str, plan: &mut Plan, inventory: &Inventory) -> Vec<Diagnostic> {
    let mut diags = Vec::new();
    plan.processes = expand_all(file, &plan.processes, inventory, &mut diags);
    plan.files = expand_all(file, &plan.files, inventory, &mut diags);
    diags
}

fn expand_all<T: OnHosts>(
    file: &str,
    entries: &[T],
    inventory: &Inventory,
    diags: &mut Vec<Diagnostic>,
) -> Vec<T> {
    let mut out = Vec::new();
    for entry in entries {
        let hosts = match (is_no_host(entry.host()), entry.hosts()) {
            (false, None) => {
                let mut one = entry.clone();
                one.set_host(entry.host().clone());
                out.push(one);
                continue;
            }
            (false, Some(h)) => {
                diags.push(Diagnostic::new(
                    file,
                    h.span(),
                    format!(
                        "{} `{}` has both `host` and `hosts`, expected exactly one of them",
                        entry.kind(),
                        entry.name().get_ref()
                    ),
                ));
                Vec::new()
            }
            (true, None) => {
                diags.push(Diagnostic::new(
                    file,
                    entry.name().span(),
                    format!(
                        "{} `{}` has neither `host` nor `hosts`, expected `host = \"NAME\"` or `hosts = [\"NAME\", ...]` (or `\"*\"`, `\"group:NAME\"`)",
                        entry.kind(),
                        entry.name().get_ref()
                    ),
                ));
                Vec::new()
            }
            (true, Some(h)) => resolve(file, entry, h, inventory, diags),
        };
        if hosts.is_empty() {
            out.push(entry.clone());
        }
        for host in hosts {
            let mut instance = entry.clone();
            instance.set_host(host);
            out.push(instance);
        }
    }
    out
}

/// The hosts `hosts` picks, in the order it names them (a selector's in inventory order), each
/// at the position of the entry that picked it.
fn resolve<T: OnHosts>(
    file: &str,
    entry: &T,
    hosts: &Spanned<Hosts>,
    inventory: &Inventory,
    diags: &mut Vec<Diagnostic>,
) -> Vec<Name> {
    let what = format!("{} `{}`", entry.kind(), entry.name().get_ref());
    let mut error = |span: Range<usize>, message: String| {
        diags.push(Diagnostic::new(file, span, message));
    };
    if hosts.get_ref().0.is_empty() {
        error(
            hosts.span(),
            format!("{what} has an empty `hosts`, expected at least one host name or selector"),
        );
        return Vec::new();
    }
    let mut out: Vec<Name> = Vec::new();
    let mut named = BTreeSet::new();
    for sel in &hosts.get_ref().0 {
        // A single string carries no span of its own: it is the whole value.
        let span = if sel.span().is_empty() {
            hosts.span()
        } else {
            sel.span()
        };
        let picked: Vec<&Ident> = match sel.get_ref().pick() {
            HostPick::Every => inventory.hosts.iter().map(|h| h.name.get_ref()).collect(),
            HostPick::Group(g) => {
                let members: Vec<&Ident> = inventory
                    .hosts
                    .iter()
                    .filter(|h| h.groups.iter().any(|x| x.get_ref() == g))
                    .map(|h| h.name.get_ref())
                    .collect();
                if members.is_empty() {
                    let known = inventory.groups();
                    let expected = if known.is_empty() {
                        "no host of the inventory has `groups`".to_string()
                    } else {
                        format!(
                            "expected one of {}",
                            list(known.iter().map(|g| format!("group:{g}")))
                        )
                    };
                    error(
                        span.clone(),
                        format!("{what}: `group:{g}` matches no host of the inventory; {expected}"),
                    );
                }
                members
            }
            HostPick::Host(h) => match inventory.host(h) {
                Some(host) => {
                    if !named.insert(h.to_string()) {
                        error(
                            span.clone(),
                            format!(
                                "{what} names host `{h}` twice in `hosts`, expected each host once"
                            ),
                        );
                    }
                    vec![host.name.get_ref()]
                }
                None => {
                    error(
                        span.clone(),
                        format!(
                            "{what} is on host `{h}`, which is not in the inventory; expected one of {}",
                            list(inventory.hosts.iter().map(|h| h.name.get_ref().to_string()))
                        ),
                    );
                    Vec::new()
                }
            },
        };
        for name in picked {
            if !out.iter().any(|o| o.get_ref() == name) {
                out.push(Spanned::new(span.clone(), name.clone()));
            }
        }
    }
    out
}

fn list(items: impl Iterator<Item = String>) -> String {
    items
        .map(|i| format!("`{i}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use crate::diagnostic::Diagnostic;
    use crate::inventory::parse_inventory;
    use crate::plan::expand::{Inputs, expand};
    use crate::plan::load::parse_plan;
    use crate::plan::validate::validate;
    use crate::primitive::{Desired, Probe};
    use crate::render::Templates;

    const INVENTORY: &str = r#"
[[host]]
name = "mainpc"
ssh = "mainpc"
address = "127.0.10.2"
root = "/srv/wv/mainpc"

[[host]]
name = "pc2"
ssh = "pc2"
address = "127.0.10.3"
root = "/srv/wv/pc2"
groups = ["edge"]

[[host]]
name = "pc3"
ssh = "pc3"
address = "127.0.10.4"
root = "/srv/wv/pc3"
groups = ["edge", "lab"]
"#;

    /// The offline pipeline of `load.rs`, without a repo: parse, instantiate, validate, expand.
    fn desired(plan: &str) -> Result<Desired, Vec<Diagnostic>> {
        let (mut plan, diags) = parse_plan("p.toml", plan);
        assert!(diags.is_empty(), "{diags:?}");
        let (inv, diags) = parse_inventory("lab.toml", INVENTORY);
        assert!(diags.is_empty(), "{diags:?}");
        let mut diags = super::instantiate("p.toml", &mut plan, &inv);
        diags.extend(validate("p.toml", &plan, &inv, &BTreeSet::new()));
        if !diags.is_empty() {
            return Err(diags);
        }
        let templates = Templates::load(&crate::render::builtins(), &BTreeMap::new())?;
        let inputs = Inputs {
            file: "p.toml",
            inventory: &inv,
            templates: &templates,
            migration_files: &BTreeMap::new(),
            secrets: &BTreeMap::new(),
        };
        expand(&plan, &inputs)
    }

    fn messages(plan: &str) -> Vec<String> {
        match desired(plan) {
            Ok(_) => Vec::new(),
            Err(d) => d.into_iter().map(|d| d.message).collect(),
        }
    }

    const EXPORTER: &str = r#"version = 1
name = "t"

[[process]]
name = "exporter"
hosts = ["mainpc", "pc2"]
command = ["/usr/bin/exporter", "--listen={{ host.address }}:9100", "--name={{ host.name }}"]
env = { SOURCE = "{{ host.name }}" }
listen = [9100]
health = { http = { url = "http://{{ host.address }}:9100/" } }
"#;

    #[test]
    fn one_process_on_two_hosts_is_one_program_per_host_with_its_own_host_context() {
        let d = desired(EXPORTER).expect("valid");
        assert_eq!(
            d.hosts.keys().collect::<Vec<_>>(),
            ["mainpc", "pc2"],
            "pc3 is not named"
        );
        let mut shown = String::new();
        for (host, h) in &d.hosts {
            let p = h
                .processes
                .iter()
                .find(|p| p.name == "exporter")
                .expect("the exporter on every host");
            assert_eq!(p.origin.resource, "process.exporter");
            shown.push_str(&format!("## {host}: {}\n", p.command.join(" ")));
            for f in h
                .files
                .iter()
                .filter(|f| f.origin.resource == "process.exporter")
            {
                shown.push_str(&format!("### {}\n{}", f.path, f.content));
            }
            let health: Vec<_> = h.checks.iter().map(|c| &c.probe).collect();
            assert!(
                matches!(health.as_slice(), [Probe::Http { host: probe_host, url, .. }]
                    if probe_host == host && url == &format!("http://{}:9100/", if host == "mainpc" { "127.0.10.2" } else { "127.0.10.3" })),
                "{host}: {health:?}"
            );
        }
        insta::assert_snapshot!(shown);
    }

    #[test]
    fn selectors_pick_every_host_or_a_group_in_inventory_order() {
        let plan = |hosts: &str| {
            format!(
                "version = 1\nname = \"t\"\n[[process]]\nname = \"x\"\nhosts = {hosts}\ncommand = [\"/bin/true\"]\n"
            )
        };
        let on = |hosts: &str| -> Vec<String> {
            desired(&plan(hosts))
                .expect("valid")
                .hosts
                .iter()
                .filter(|(_, h)| h.processes.iter().any(|p| p.name == "x"))
                .map(|(n, _)| n.clone())
                .collect()
        };
        assert_eq!(on("\"*\""), ["mainpc", "pc2", "pc3"]);
        assert_eq!(on("\"group:edge\""), ["pc2", "pc3"]);
        assert_eq!(on("[\"mainpc\", \"group:lab\"]"), ["mainpc", "pc3"]);
        // Overlapping selectors pick a host once.
        assert_eq!(on("[\"group:edge\", \"group:lab\"]"), ["pc2", "pc3"]);
    }

    #[test]
    fn the_same_name_on_two_hosts_is_fine_twice_on_one_host_is_not() {
        let two = "version = 1\nname = \"t\"\n[[process]]\nname = \"x\"\nhost = \"mainpc\"\ncommand = [\"/bin/true\"]\n[[process]]\nname = \"x\"\nhost = \"pc2\"\ncommand = [\"/bin/true\"]\n";
        assert_eq!(messages(two), Vec::<String>::new());
        let clash = "version = 1\nname = \"t\"\n[[process]]\nname = \"x\"\nhosts = \"*\"\ncommand = [\"/bin/true\"]\n[[process]]\nname = \"x\"\nhost = \"pc2\"\ncommand = [\"/bin/true\"]\n";
        assert_eq!(
            messages(clash),
            [
                "duplicate process name `x` on host `pc2`, expected each process to have a unique name on its host"
            ]
        );
    }

    #[test]
    fn a_host_selector_in_a_wave_takes_the_instances_of_that_host_only() {
        let plan = format!(
            "{EXPORTER}\n[[wave]]\nname = \"canary\"\nselect = [\"host.pc2\"]\n\n[[wave]]\nname = \"rest\"\nselect = [\"process.exporter\"]\n"
        );
        let d = desired(&plan).expect("valid");
        let wave = |host: &str| d.hosts[host].processes[0].origin.wave.clone();
        assert_eq!(wave("pc2"), "canary");
        assert_eq!(wave("mainpc"), "rest");
    }

    #[test]
    fn a_process_probe_names_a_process_on_its_own_host() {
        let plan = format!(
            "{EXPORTER}\n[[wave]]\nname = \"w\"\nselect = [\"process.*\"]\n[[wave.gate]]\nprocess = {{ host = \"pc2\", name = \"exporter\" }}\n[[wave.gate]]\nprocess = {{ host = \"pc3\", name = \"exporter\" }}\n"
        );
        assert_eq!(
            messages(&plan),
            [
                "process probe names `exporter` on host `pc3`, which does not run it; expected one of its hosts: `mainpc`, `pc2`"
            ]
        );
    }
}
