//! Cross-reference checks over a parsed plan and inventory: duplicate names, dangling
//! references, port clashes, wave cycles, JetStream topologies that cannot survive losing a
//! machine, unprovided secrets. Pure: every problem is returned, none stops the others.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;

use serde_spanned::Spanned;

use crate::diagnostic::Diagnostic;
use crate::inventory::Inventory;
use crate::plan::resource::{Kind, ResourceId, Selector};
use crate::plan::schema::{Gate, NatsNode, Plan, ProbeRef};
use crate::plan::waves;

#[path = "validate_alerting.rs"]
mod alerting;
#[path = "validate_pm2.rs"]
mod pm2;

struct Checker<'a> {
    file: &'a str,
    plan: &'a Plan,
    inventory: &'a Inventory,
    diags: Vec<Diagnostic>,
}

/// Checks the plan against itself and the inventory. `secrets_provided` are the secret names
/// the operator's environment or secrets file can supply.
pub fn validate(
    file: &str,
    plan: &Plan,
    inventory: &Inventory,
    secrets_provided: &BTreeSet<String>,
) -> Vec<Diagnostic> {
    let mut c = Checker {
        file,
        plan,
        inventory,
        diags: Vec::new(),
    };
    c.duplicate_names();
    c.hosts();
    c.hub_references();
    c.batch_references();
    c.nats_topology();
    c.streams();
    c.processes(secrets_provided);
    c.pm2_program_names();
    for m in &plan.migrations {
        c.diags.extend(crate::plan::migration_rules::check_fields(
            file,
            m,
            secrets_provided,
        ));
    }
    c.files();
    c.alerting(secrets_provided);
    c.ports();
    c.waves();
    c.diags.extend(plan.drill.validate(file));
    c.diags
}

impl Checker<'_> {
    fn error(&mut self, span: Range<usize>, message: impl Into<String>) {
        self.diags.push(Diagnostic::new(self.file, span, message));
    }

    fn duplicate_names(&mut self) {
        let resources = self.plan.resources();
        let mut seen: BTreeMap<(Kind, &str, &str), usize> = BTreeMap::new();
        for r in &resources {
            // Processes and files may run on many hosts: their names are unique per host.
            let host = if r.kind.is_per_host() {
                r.host.as_str()
            } else {
                ""
            };
            if seen
                .insert((r.kind, r.name.as_str(), host), r.span.start)
                .is_some()
            {
                if r.kind.is_per_host() {
                    self.error(
                        r.span.clone(),
                        format!(
                            "duplicate {} name `{}` on host `{}`, expected each {} to have a unique name on its host",
                            r.kind.key(),
                            r.name,
                            r.host,
                            r.kind.key()
                        ),
                    );
                    continue;
                }
                self.error(
                    r.span.clone(),
                    format!(
                        "duplicate {} name `{}`, expected each {} to have a unique name",
                        r.kind.key(),
                        r.name,
                        r.kind.key()
                    ),
                );
            }
        }
        let mut waves = BTreeSet::new();
        for w in &self.plan.waves {
            if !waves.insert(w.name.get_ref().as_str()) {
                self.error(
                    w.name.span(),
                    format!(
                        "duplicate wave name `{}`, expected each wave to have a unique name",
                        w.name.get_ref()
                    ),
                );
            }
        }
        // Services, agents and processes all become supervisor programs of their host.
        let mut programs: BTreeMap<(String, String), ResourceId> = BTreeMap::new();
        for p in self.plan.programs() {
            let key = (p.host.clone(), p.name.clone());
            if let Some(first) = programs.get(&key) {
                if p.resource.kind == Kind::Process && *first == p.resource {
                    // A process twice on one host: reported above as a duplicate name.
                    continue;
                }
                let msg = format!(
                    "{} needs the program name `{}` on host `{}`, which {first} already uses; expected unique names per host",
                    p.resource, p.name, p.host
                );
                self.error(p.span.clone(), msg);
            } else {
                programs.insert(key, p.resource);
            }
        }
    }

    fn host_exists(&mut self, host: &crate::plan::schema::Name, what: &str) {
        // An entry whose `hosts` did not resolve was reported by `plan::instances`.
        if crate::plan::schema::is_no_host(host) {
            return;
        }
        if self.inventory.host(host.get_ref()).is_none() {
            let known = self
                .inventory
                .hosts
                .iter()
                .map(|h| format!("`{}`", h.name.get_ref()))
                .collect::<Vec<_>>()
                .join(", ");
            self.error(
                host.span(),
                format!(
                    "{what} is on host `{}`, which is not in the inventory; expected one of {known}",
                    host.get_ref()
                ),
            );
        }
    }

    fn hosts(&mut self) {
        let p = self.plan;
        for r in &p.hubs {
            self.host_exists(&r.host, &format!("hub `{}`", r.name.get_ref()));
        }
        for r in &p.pushgateways {
            self.host_exists(&r.host, &format!("pushgateway `{}`", r.name.get_ref()));
        }
        for r in &p.nats {
            self.host_exists(&r.host, &format!("nats server `{}`", r.name.get_ref()));
        }
        for r in &p.batches {
            self.host_exists(&r.host, &format!("batch `{}`", r.name.get_ref()));
        }
        for r in &p.processes {
            self.host_exists(&r.host, &format!("process `{}`", r.name.get_ref()));
        }
        for r in &p.migrations {
            self.host_exists(&r.host, &format!("migration set `{}`", r.name.get_ref()));
        }
        for r in &p.files {
            self.host_exists(&r.host, &format!("file `{}`", r.name.get_ref()));
        }
        for r in &p.alertmanagers {
            self.host_exists(&r.host, &format!("alertmanager `{}`", r.name.get_ref()));
        }
        for r in &p.blackboxes {
            self.host_exists(&r.host, &format!("blackbox `{}`", r.name.get_ref()));
        }
    }

    /// Reports `reference` when no resource of `kind` has that name.
    fn exists(&mut self, kind: Kind, reference: &crate::plan::schema::Name, field: &str) -> bool {
        let names: Vec<String> = self
            .plan
            .resources()
            .into_iter()
            .filter(|r| r.kind == kind)
            .map(|r| r.name)
            .collect();
        if names.iter().any(|n| n == reference.get_ref()) {
            return true;
        }
        let expected = if names.is_empty() {
            format!("the plan has no {}", kind.noun())
        } else {
            format!(
                "expected one of {}",
                names
                    .iter()
                    .map(|n| format!("`{n}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        self.error(
            reference.span(),
            format!(
                "`{field}` refers to {} `{}`, which does not exist; {expected}",
                kind.key(),
                reference.get_ref()
            ),
        );
        false
    }

    fn hub_references(&mut self) {
        for hub in &self.plan.hubs {
            for target in &hub.remote_write {
                if self.exists(Kind::Hub, target, "remote_write")
                    && target.get_ref() == hub.name.get_ref()
                {
                    self.error(
                        target.span(),
                        format!("hub `{}` cannot remote_write to itself", hub.name.get_ref()),
                    );
                }
            }
            for rule in &hub.alert_rules {
                if rule.expr.trim().is_empty() {
                    self.error(
                        hub.name.span(),
                        format!(
                            "alert rule `{}` of hub `{}` has an empty `expr`",
                            rule.name,
                            hub.name.get_ref()
                        ),
                    );
                }
            }
        }
    }

    fn batch_references(&mut self) {
        for b in &self.plan.batches {
            self.exists(Kind::Hub, &b.primary_hub, "primary_hub");
            if let Some(f) = &b.fallback_hub
                && self.exists(Kind::Hub, f, "fallback_hub")
                && f.get_ref() == b.primary_hub.get_ref()
            {
                self.error(
                    f.span(),
                    "`fallback_hub` is the same hub as `primary_hub`, expected another hub",
                );
            }
            self.on_host_or_named(
                Kind::Pushgateway,
                b.pushgateway.as_ref(),
                &b.host,
                "pushgateway",
                &b.name,
            );
            self.on_host_or_named(Kind::Nats, b.nats.as_ref(), &b.host, "nats", &b.name);
            if b.agents.is_empty() {
                self.error(
                    b.name.span(),
                    format!(
                        "batch `{}` has no agents, expected at least one",
                        b.name.get_ref()
                    ),
                );
            }
        }
    }

    /// A batch's Pushgateway/NATS server: the named one, or the one on the batch's host, if any.
    fn on_host_or_named(
        &mut self,
        kind: Kind,
        named: Option<&crate::plan::schema::Name>,
        host: &crate::plan::schema::Name,
        field: &str,
        batch: &crate::plan::schema::Name,
    ) {
        if let Some(n) = named {
            self.exists(kind, n, field);
            return;
        }
        let on_host = self
            .plan
            .resources()
            .into_iter()
            .filter(|r| r.kind == kind && r.host == *host.get_ref())
            .count();
        // None is fine (the agent runs without one); two or more is ambiguous.
        if on_host > 1 {
            self.error(
                batch.span(),
                format!(
                    "batch `{}` does not name its `{field}` and host `{}` has {on_host} {} resources; expected `{field} = \"...\"`",
                    batch.get_ref(),
                    host.get_ref(),
                    kind.noun()
                ),
            );
        }
    }

    fn nats_topology(&mut self) {
        let nodes = &self.plan.nats;
        let mut clusters: BTreeMap<&str, Vec<&NatsNode>> = BTreeMap::new();
        for n in nodes {
            if let Some(c) = &n.cluster {
                clusters.entry(c.get_ref()).or_default().push(n);
                if n.cluster_port.is_none() {
                    self.error(
                        c.span(),
                        format!(
                            "nats server `{}` joins cluster `{}` but has no `cluster_port`",
                            n.name.get_ref(),
                            c.get_ref()
                        ),
                    );
                }
            }
            if let Some(d) = &n.domain
                && (d.get_ref().is_empty()
                    || !d
                        .get_ref()
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'))
            {
                self.error(d.span(), format!("invalid JetStream domain `{}`, expected letters, digits, `-` or `_` (nats-server refuses it at start)", d.get_ref()));
            }
            for remote in &n.leafnode_remotes {
                if !self.exists(Kind::Nats, remote, "leafnode_remotes") {
                    continue;
                }
                let target = nodes.iter().find(|t| t.name.get_ref() == remote.get_ref());
                if target.is_some_and(|t| t.leafnode_port.is_none()) {
                    self.error(remote.span(), format!("nats server `{}` accepts no leafnode connections, expected it to set `leafnode_port`", remote.get_ref()));
                }
                if target.is_some_and(|t| t.name.get_ref() == n.name.get_ref()) {
                    self.error(
                        remote.span(),
                        "a nats server cannot be its own leafnode remote",
                    );
                }
            }
        }
        for (name, members) in clusters {
            if members.len() == 2 {
                let second = members[1]
                    .cluster
                    .as_ref()
                    .map(|c| c.span())
                    .unwrap_or_default();
                self.diags.push(
                    Diagnostic::new(
                        self.file,
                        second,
                        format!(
                            "JetStream cluster `{name}` has 2 servers (`{}`, `{}`): its meta group needs both, so losing either machine stops JetStream; expected 3 or more servers",
                            members[0].name.get_ref(),
                            members[1].name.get_ref()
                        ),
                    )
                    .with_hint("for two machines, give each server its own `domain`, link them with `leafnode_remotes`, and let each side's aggregate stream source the other's stream"),
                );
            }
        }
    }

    fn streams(&mut self) {
        let plan = self.plan;
        for s in &plan.streams {
            if !self.exists(Kind::Nats, &s.server, "server") {
                continue;
            }
            if s.subjects.is_empty() && s.sources.is_empty() {
                self.error(
                    s.name.span(),
                    format!(
                        "stream `{}` has neither `subjects` nor `sources`, expected at least one",
                        s.name.get_ref()
                    ),
                );
            }
            let server = plan
                .nats
                .iter()
                .find(|n| n.name.get_ref() == s.server.get_ref());
            let cluster_size = server
                .and_then(|n| n.cluster.as_ref())
                .map(|c| {
                    plan.nats
                        .iter()
                        .filter(|m| m.cluster.as_ref().map(|x| x.get_ref()) == Some(c.get_ref()))
                        .count()
                })
                .unwrap_or(1);
            if usize::from(*s.replicas.get_ref()) > cluster_size || *s.replicas.get_ref() == 0 {
                self.error(
                    s.replicas.span(),
                    format!("stream `{}` asks for {} replicas but its server's JetStream has {cluster_size} server(s), expected 1..={cluster_size}", s.name.get_ref(), s.replicas.get_ref()),
                );
            }
            for src in &s.sources {
                if !self.exists(Kind::Stream, &src.stream, "sources.stream") {
                    continue;
                }
                if src.stream.get_ref() == s.name.get_ref() {
                    self.error(src.stream.span(), "a stream cannot source itself");
                    continue;
                }
                self.cross_domain_source(s.server.get_ref(), &src.stream);
            }
        }
        self.overlapping_subjects();
    }

    /// A source on another server must be reachable: same cluster, or another domain linked to
    /// this server's by a leafnode.
    fn cross_domain_source(&mut self, server: &str, source: &crate::plan::schema::Name) {
        let plan = self.plan;
        let Some(other) = plan
            .streams
            .iter()
            .find(|t| t.name.get_ref() == source.get_ref())
        else {
            return;
        };
        let other_server = other.server.get_ref();
        if other_server == server {
            return;
        }
        let node = |name: &str| plan.nats.iter().find(|n| n.name.get_ref() == name);
        let (Some(a), Some(b)) = (node(server), node(other_server)) else {
            return;
        };
        let same_cluster = a.cluster.is_some()
            && a.cluster.as_ref().map(|c| c.get_ref()) == b.cluster.as_ref().map(|c| c.get_ref());
        if same_cluster {
            return;
        }
        let linked = a
            .leafnode_remotes
            .iter()
            .any(|r| r.get_ref() == other_server)
            || b.leafnode_remotes.iter().any(|r| r.get_ref() == server);
        let domains = a.domain.is_some()
            && b.domain.is_some()
            && a.domain.as_ref().map(|d| d.get_ref()) != b.domain.as_ref().map(|d| d.get_ref());
        if !(linked && domains) {
            self.error(
                source.span(),
                format!(
                    "stream `{}` is on nats server `{other_server}`, which this stream's server `{server}` cannot reach: expected both servers to have different `domain`s and a leafnode link (`leafnode_remotes`) between them",
                    source.get_ref()
                ),
            );
        }
    }

    fn overlapping_subjects(&mut self) {
        let mut seen: Vec<(&str, &Spanned<crate::value::Subject>)> = Vec::new();
        for s in &self.plan.streams {
            for subject in &s.subjects {
                if let Some((other, _)) = seen
                    .iter()
                    .find(|(_, prev)| subjects_overlap(prev.get_ref(), subject.get_ref()))
                {
                    self.error(
                        subject.span(),
                        format!("subject `{}` of stream `{}` overlaps a subject of stream `{other}`: a publish would be stored twice; expected disjoint subjects", subject.get_ref(), s.name.get_ref()),
                    );
                }
            }
            for subject in &s.subjects {
                seen.push((s.name.get_ref(), subject));
            }
        }
    }

    fn processes(&mut self, provided: &BTreeSet<String>) {
        for p in &self.plan.processes {
            if p.command.get_ref().is_empty() || p.command.get_ref()[0].trim().is_empty() {
                self.error(
                    p.command.span(),
                    format!(
                        "process `{}` has an empty `command`, expected a program and its arguments",
                        p.name.get_ref()
                    ),
                );
            }
            for secret in &p.secrets {
                if !provided.contains(secret.get_ref().as_str()) {
                    self.diags.push(
                        Diagnostic::new(self.file, secret.span(), format!("secret `{}` is not provided", secret.get_ref()))
                            .with_hint(format!("export {} in the environment, or add `{} = \"...\"` to the secrets file (--secrets-file, outside the plan repo)", secret.get_ref(), secret.get_ref())),
                    );
                }
                if p.env.contains_key(secret.get_ref().as_str()) {
                    self.error(secret.span(), format!("`{}` is both a secret and a plain `env` entry of process `{}`; expected it in one place", secret.get_ref(), p.name.get_ref()));
                }
            }
            if let Some(h) = &p.health {
                self.gate(h);
            }
        }
    }

    fn files(&mut self) {
        for f in &self.plan.files {
            if f.template.is_some() == f.content.is_some() {
                self.error(
                    f.name.span(),
                    format!(
                        "file `{}` needs exactly one of `template` or `content`",
                        f.name.get_ref()
                    ),
                );
            }
            let path = f.path.get_ref();
            if path.starts_with('/') || path.split('/').any(|c| c == ".." || c.is_empty()) {
                self.error(f.path.span(), format!("invalid file path `{path}`, expected a relative path under the host's files/ without `..`"));
            }
            if parse_mode(f.mode.get_ref()).is_none() {
                self.error(
                    f.mode.span(),
                    format!(
                        "invalid mode `{}`, expected an octal mode such as \"0644\"",
                        f.mode.get_ref()
                    ),
                );
            }
        }
    }

    fn ports(&mut self) {
        // (address, port) -> who listens there.
        let mut used: BTreeMap<(String, u16), String> = BTreeMap::new();
        let plan = self.plan;
        let mut listeners: Vec<Listener<'_>> = Vec::new();
        for h in &plan.hubs {
            listeners.push((
                &h.host,
                &h.port,
                format!("hub.{}", h.name.get_ref()),
                &h.name,
            ));
        }
        for g in &plan.pushgateways {
            listeners.push((
                &g.host,
                &g.port,
                format!("pushgateway.{}", g.name.get_ref()),
                &g.name,
            ));
        }
        for n in &plan.nats {
            let id = format!("nats.{}", n.name.get_ref());
            listeners.push((&n.host, &n.port, id.clone(), &n.name));
            listeners.push((&n.host, &n.monitor_port, format!("{id} (monitor)"), &n.name));
            if let Some(p) = &n.cluster_port {
                listeners.push((&n.host, p, format!("{id} (cluster)"), &n.name));
            }
            if let Some(p) = &n.leafnode_port {
                listeners.push((&n.host, p, format!("{id} (leafnode)"), &n.name));
            }
        }
        for a in &plan.alertmanagers {
            let id = format!("alertmanager.{}", a.name.get_ref());
            listeners.push((&a.host, &a.port, id.clone(), &a.name));
            listeners.push((&a.host, &a.cluster_port, format!("{id} (cluster)"), &a.name));
        }
        for b in &plan.blackboxes {
            listeners.push((
                &b.host,
                &b.port,
                format!("blackbox.{}", b.name.get_ref()),
                &b.name,
            ));
        }
        for p in &plan.processes {
            for port in &p.listen {
                listeners.push((
                    &p.host,
                    port,
                    format!("process.{}", p.name.get_ref()),
                    &p.name,
                ));
            }
        }
        // In file order, so the second of two clashing listeners is the one reported.
        listeners.sort_by_key(|(_, port, _, name)| {
            if port.span().is_empty() {
                name.span().start
            } else {
                port.span().start
            }
        });
        for (host, port, who, name) in listeners {
            let Some(h) = self.inventory.host(host.get_ref()) else {
                continue;
            };
            let key = (h.address.get_ref().to_string(), *port.get_ref());
            let (span, default) = if port.span().is_empty() {
                (name.span(), " (its default)")
            } else {
                (port.span(), "")
            };
            if key.1 == 0 {
                self.error(
                    span,
                    format!("{who} listens on port 0, expected a port number from 1 to 65535"),
                );
            } else if let Some(first) = used.get(&key) {
                self.error(
                    span,
                    format!("port {}{default} on {} (host `{}`) is already used by {first}; {who} needs another port", key.1, key.0, host.get_ref()),
                );
            } else {
                used.insert(key, who);
            }
        }
    }

    fn waves(&mut self) {
        let plan = self.plan;
        let names: BTreeSet<&str> = plan
            .waves
            .iter()
            .map(|w| w.name.get_ref().as_str())
            .collect();
        let resources = plan.resources();
        for w in &plan.waves {
            for a in &w.after {
                if !names.contains(a.get_ref().as_str()) {
                    self.error(
                        a.span(),
                        format!(
                            "`after` refers to wave `{}`, which does not exist",
                            a.get_ref()
                        ),
                    );
                }
            }
            if w.select.is_empty() {
                self.error(
                    w.name.span(),
                    format!(
                        "wave `{}` has an empty `select`, expected at least one selector",
                        w.name.get_ref()
                    ),
                );
            }
            for s in &w.select {
                match Selector::parse(s.get_ref()) {
                    Err(e) => self.error(s.span(), e),
                    Ok(sel) if !resources.iter().any(|r| sel.matches(r)) => {
                        self.error(
                            s.span(),
                            format!(
                                "wave `{}` selects `{}`, which matches no resource of the plan",
                                w.name.get_ref(),
                                s.get_ref()
                            ),
                        );
                    }
                    Ok(_) => {}
                }
            }
            if w.max_parallel == 0 {
                self.error(
                    w.name.span(),
                    format!(
                        "wave `{}` has `max_parallel = 0`, expected 1 or more",
                        w.name.get_ref()
                    ),
                );
            }
            for g in &w.gate {
                self.gate(g);
            }
        }
        match waves::order(plan) {
            Err(cycle) => {
                let names: Vec<&str> = cycle
                    .iter()
                    .map(|&i| plan.waves[i].name.get_ref().as_str())
                    .collect();
                // Point at the `after` entry of the first wave that names the next one in the cycle.
                let first = &plan.waves[cycle[0]];
                let next = cycle.get(1).map_or(first.name.get_ref().as_str(), |&i| {
                    plan.waves[i].name.get_ref().as_str()
                });
                let closing = first.after.iter().find(|a| a.get_ref() == next);
                let span = closing.map(|a| a.span()).unwrap_or(first.name.span());
                self.error(
                    span,
                    format!(
                        "waves `after` each other in a cycle: {} -> {}",
                        names.join(" -> "),
                        names[0]
                    ),
                );
            }
            Ok(order) if !plan.waves.is_empty() => {
                let assigned = waves::assign(plan, &order);
                for r in &resources {
                    if !assigned.contains_key(&r.instance()) {
                        let instances = resources.iter().filter(|x| x.id() == r.id()).count();
                        let on = if instances > 1 {
                            format!(" on host `{}`", r.host)
                        } else {
                            String::new()
                        };
                        self.error(
                            r.span.clone(),
                            format!(
                                "{}{on} is selected by no wave, expected a wave to `select` it",
                                r.id()
                            ),
                        );
                    }
                }
            }
            Ok(_) => {}
        }
    }

    fn gate(&mut self, gate: &Spanned<Gate>) {
        let probes = gate.get_ref().probes();
        if probes.len() != 1 {
            self.error(
                gate.span(),
                format!("a gate needs exactly one probe, found {}; expected one of `http`, `tcp`, `process`, `nats_stream`, `prom_query`, `command`, `alert_quiet`", probes.len()),
            );
        }
        for probe in probes {
            let host = match probe {
                ProbeRef::Http(p) => Some(&p.host),
                ProbeRef::Tcp(p) => Some(&p.host),
                ProbeRef::Process(p) => Some(&p.host),
                ProbeRef::Command(p) => Some(&p.host),
                _ => None,
            };
            if host.is_some_and(crate::plan::schema::is_no_host) {
                self.error(
                    gate.span(),
                    "missing field `host` in the probe, expected the host it runs on (only a process's `health` defaults to the process's host)",
                );
                continue;
            }
            match probe {
                ProbeRef::Http(p) => self.host_exists(&p.host, "http probe"),
                ProbeRef::Tcp(p) => self.host_exists(&p.host, "tcp probe"),
                ProbeRef::Command(p) => {
                    self.host_exists(&p.host, "command probe");
                    if p.run.is_empty() {
                        self.error(gate.span(), "command probe has an empty `run`, expected a program and its arguments");
                    }
                }
                ProbeRef::Process(p) => {
                    self.host_exists(&p.host, "process probe");
                    let programs = self.plan.programs();
                    let known = programs.iter().any(|x| x.name == *p.name.get_ref());
                    let on_host = programs
                        .iter()
                        .any(|x| x.name == *p.name.get_ref() && x.host == *p.host.get_ref());
                    let host_known = self.inventory.host(p.host.get_ref()).is_some();
                    if known && !on_host && host_known {
                        let hosts: Vec<String> = programs
                            .iter()
                            .filter(|x| x.name == *p.name.get_ref())
                            .map(|x| format!("`{}`", x.host))
                            .collect();
                        self.error(
                            p.name.span(),
                            format!(
                                "process probe names `{}` on host `{}`, which does not run it; expected one of its hosts: {}",
                                p.name.get_ref(),
                                p.host.get_ref(),
                                hosts.join(", ")
                            ),
                        );
                    }
                    if !known {
                        self.error(
                            p.name.span(),
                            format!(
                                "process probe names `{}`, which is no process of the plan",
                                p.name.get_ref()
                            ),
                        );
                    }
                }
                ProbeRef::NatsStream(p) => {
                    self.exists(Kind::Stream, &p.stream, "nats_stream.stream");
                }
                ProbeRef::PromQuery(p) => {
                    self.exists(Kind::Hub, &p.hub, "prom_query.hub");
                }
                ProbeRef::AlertQuiet(p) => {
                    self.exists(
                        Kind::Alertmanager,
                        &p.alertmanager,
                        "alert_quiet.alertmanager",
                    );
                }
            }
        }
    }
}

/// Something that listens: its host, port, who it is (`hub.edge`) and its name in the plan.
type Listener<'a> = (
    &'a crate::plan::schema::Name,
    &'a Spanned<u16>,
    String,
    &'a crate::plan::schema::Name,
);

/// Octal mode text (`"0644"`) to its value.
pub fn parse_mode(text: &str) -> Option<u32> {
    if text.is_empty() || text.len() > 4 {
        return None;
    }
    u32::from_str_radix(text, 8).ok()
}

/// Whether two NATS subjects (with `*` and `>` wildcards) can match the same message.
pub fn subjects_overlap(a: &str, b: &str) -> bool {
    let (mut x, mut y) = (a.split('.'), b.split('.'));
    loop {
        match (x.next(), y.next()) {
            (None, None) => return true,
            (Some(">"), _) | (_, Some(">")) => return true,
            (Some(p), Some(q)) if p == "*" || q == "*" || p == q => continue,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::subjects_overlap;

    #[test]
    fn subjects_overlap_with_wildcards() {
        assert!(subjects_overlap(
            "observability.metrics.pc2",
            "observability.metrics.pc2"
        ));
        assert!(subjects_overlap(
            "observability.>",
            "observability.metrics.pc2"
        ));
        assert!(subjects_overlap(
            "observability.*.pc2",
            "observability.metrics.pc2"
        ));
        assert!(!subjects_overlap(
            "observability.metrics.pc2",
            "observability.metrics.mainpc"
        ));
        assert!(!subjects_overlap(
            "observability.metrics",
            "observability.metrics.pc2"
        ));
    }
}
