//! Expansion: each plan resource becomes per-host primitives (files with their rendered bytes,
//! supervisor programs, migrations, streams, checks). Pure: templates, migration files and
//! secret values are passed in, so a plan read from any git commit expands the same way.

use std::collections::BTreeMap;

use serde_json::json;
use tera::Context;

use crate::diagnostic::Diagnostic;
use crate::inventory::{Host, Inventory};
use crate::plan::migrations;
use crate::plan::resource::{Instance, Kind, ResourceId, agent_program};
use crate::plan::schema::{
    Batch, Gate, Hub, NatsNode, Plan, ProbeRef, Process, Pushgateway, Stream,
};
use crate::plan::validate::parse_mode;
use crate::plan::waves::{self, IMPLICIT_WAVE};
use crate::primitive::{
    Check, DatabaseSpec, Desired, FileSpec, HostDesired, Origin, PgTarget, Probe, ProcessSpec,
    StreamConfig, StreamSourceSpec, WaveSpec,
};
use crate::render::Templates;

/// Everything expansion reads besides the plan itself.
pub struct Inputs<'a> {
    pub file: &'a str,
    pub inventory: &'a Inventory,
    pub templates: &'a Templates,
    /// Migration directory (as written in the plan) -> its files, `None` when it is missing.
    pub migration_files: &'a BTreeMap<String, Option<Vec<(String, String)>>>,
    /// Secret name -> value.
    pub secrets: &'a BTreeMap<String, String>,
}

#[path = "expand_alerting.rs"]
mod alerting;

struct Expander<'a> {
    plan: &'a Plan,
    inputs: &'a Inputs<'a>,
    /// Resource on its host -> wave name.
    waves: BTreeMap<Instance, String>,
    /// Wave names in run order.
    wave_order: Vec<String>,
    hosts: BTreeMap<String, HostDesired>,
    diags: Vec<Diagnostic>,
}

pub const PATH_RUN_WITH_ENV: &str = "files/bin/run-with-env.sh";
pub const PATH_HEARTBEAT: &str = "files/agents/heartbeat.sh";
pub const PATH_REDACT_TOKEN: &str = "files/bin/redact-bot-token.sh";
pub const PATH_SUPERVISORD_CONF: &str = "files/supervisor/supervisord.conf";
/// The event listener `supervisord.conf` runs (it counts each program's starts).
pub const PATH_SPAWN_COUNTER: &str = "files/supervisor/spawns.sh";

/// Expands a validated plan. Problems that only show while rendering (template errors,
/// migration directories) come back as diagnostics.
pub fn expand(plan: &Plan, inputs: &Inputs<'_>) -> Result<Desired, Vec<Diagnostic>> {
    let order = waves::order(plan).unwrap_or_else(|_| (0..plan.waves.len()).collect());
    let assignment = waves::assign(plan, &order);
    let waves = plan
        .resources()
        .into_iter()
        .map(|r| {
            let wave = match assignment.get(&r.instance()) {
                Some(&w) => plan.waves[w].name.get_ref().to_string(),
                None => IMPLICIT_WAVE.to_string(),
            };
            (r.instance(), wave)
        })
        .collect();
    let wave_order = if plan.waves.is_empty() {
        vec![IMPLICIT_WAVE.to_string()]
    } else {
        order
            .iter()
            .map(|&w| plan.waves[w].name.get_ref().to_string())
            .collect()
    };
    let mut x = Expander {
        plan,
        inputs,
        waves,
        wave_order,
        hosts: BTreeMap::new(),
        diags: Vec::new(),
    };
    for host in &inputs.inventory.hosts {
        if plan
            .resources()
            .iter()
            .any(|r| r.host == *host.name.get_ref())
        {
            x.hosts.insert(
                host.name.get_ref().to_string(),
                HostDesired {
                    root: host.root.to_string(),
                    supervisor: *host.supervisor.get_ref(),
                    ..HostDesired::default()
                },
            );
        }
    }
    for hub in &plan.hubs {
        x.hub(hub);
    }
    for gw in &plan.pushgateways {
        x.pushgateway(gw);
    }
    for node in &plan.nats {
        x.nats(node);
    }
    for stream in &plan.streams {
        x.stream(stream);
    }
    for batch in &plan.batches {
        x.batch(batch);
    }
    for process in &plan.processes {
        x.process(process);
    }
    for am in &plan.alertmanagers {
        x.alertmanager(am);
    }
    for bb in &plan.blackboxes {
        x.blackbox(bb);
    }
    x.migrations();
    x.plan_files();
    x.host_files();
    x.file_collisions();
    let waves = x.wave_specs();
    if !x.diags.is_empty() {
        return Err(x.diags);
    }
    for h in x.hosts.values_mut() {
        sort_by_wave(h, &x.wave_order);
    }
    Ok(Desired {
        plan: plan.name.to_string(),
        waves,
        hosts: x.hosts,
    })
}

/// Primitives in wave order, stable within a wave (the order the plan named them).
fn sort_by_wave(h: &mut HostDesired, order: &[String]) {
    let rank = |o: &Origin| {
        order
            .iter()
            .position(|w| *w == o.wave)
            .unwrap_or(usize::MAX)
    };
    h.files.sort_by_key(|f| rank(&f.origin));
    h.processes.sort_by_key(|p| rank(&p.origin));
    h.databases.sort_by_key(|d| rank(&d.origin));
    h.streams.sort_by_key(|s| rank(&s.origin));
}

fn url(host: &Host, port: u16) -> String {
    format!("http://{}:{port}", host.address.get_ref())
}

fn listen(host: &Host, port: u16) -> String {
    format!("{}:{port}", host.address.get_ref())
}

impl<'a> Expander<'a> {
    fn host(&self, name: &str) -> Option<&'a Host> {
        self.inputs.inventory.host(name)
    }

    /// The wave and resource of what `name` of `kind` puts on `host`.
    fn origin(&self, kind: Kind, name: &str, host: &str) -> Origin {
        let id = ResourceId {
            kind,
            name: name.to_string(),
        };
        let resource = id.to_string();
        Origin {
            wave: self
                .waves
                .get(&(id, host.to_string()))
                .cloned()
                .unwrap_or_else(|| IMPLICIT_WAVE.into()),
            resource,
        }
    }

    fn context(&self, host: &Host) -> Context {
        let mut vars = self.plan.vars.clone();
        vars.extend(host.vars.clone());
        let mut ctx = Context::new();
        ctx.insert("root", &host.root);
        ctx.insert("plan", &json!({ "name": self.plan.name }));
        ctx.insert(
            "host",
            &json!({ "name": host.name.get_ref(), "address": host.address.get_ref(), "vars": vars }),
        );
        ctx
    }

    fn render(&mut self, template: &str, ctx: &Context) -> Option<String> {
        match self.inputs.templates.render(template, ctx) {
            Ok(s) => Some(s),
            Err(d) => {
                self.diags.push(d);
                None
            }
        }
    }

    /// Renders one plan string (a command argument, an env value) as a template.
    fn render_field(
        &mut self,
        text: &str,
        ctx: &Context,
        span: std::ops::Range<usize>,
        what: &str,
    ) -> String {
        match crate::render::render_str(text, ctx) {
            Ok(s) => s,
            Err(e) => {
                self.diags.push(Diagnostic::new(
                    self.inputs.file,
                    span,
                    format!("{what}: {e}"),
                ));
                text.to_string()
            }
        }
    }

    /// `value` when `rule` accepts it; otherwise a diagnostic at `span` (a template rendered
    /// something the field cannot carry, e.g. a newline from a var into an argument).
    fn checked(
        &mut self,
        value: String,
        span: std::ops::Range<usize>,
        what: &str,
        rule: impl Fn(&str) -> Result<(), String>,
    ) -> String {
        if let Err(e) = rule(&value) {
            self.diags.push(Diagnostic::new(
                self.inputs.file,
                span,
                format!("{what}, once rendered: {e}"),
            ));
        }
        value
    }

    /// Renders `template` into the config file `path` (mode 0644) of `host`: the config hashes
    /// the service that reads it restarts on.
    pub(super) fn config_file(
        &mut self,
        host: &str,
        path: &str,
        template: &str,
        ctx: &Context,
        origin: &Origin,
    ) -> BTreeMap<String, String> {
        let mut config = BTreeMap::new();
        if let Some(text) = self.render(template, ctx) {
            let sha = self.add_file(host, path.to_string(), text, 0o644, vec![], origin.clone());
            config.insert(path.to_string(), sha);
        }
        config
    }

    fn add_file(
        &mut self,
        host: &str,
        path: String,
        content: String,
        mode: u32,
        secret_keys: Vec<String>,
        origin: Origin,
    ) -> String {
        let f = FileSpec {
            path: path.clone(),
            content,
            mode,
            secret_keys,
            origin,
        };
        let sha = f.sha256();
        if let Some(h) = self.hosts.get_mut(host) {
            h.files.push(f);
        }
        sha
    }

    fn add_process(&mut self, host: &str, p: ProcessSpec) {
        if let Some(h) = self.hosts.get_mut(host) {
            h.processes.push(p);
        }
    }

    /// A resource's health check: part of the gate of the resource's wave.
    fn add_check(&mut self, host: &str, mut check: Check, origin: &Origin) {
        check.wave.clone_from(&origin.wave);
        if let Some(h) = self.hosts.get_mut(host) {
            h.checks.push(check);
        }
    }

    fn service_process(
        &self,
        name: &str,
        command: Vec<String>,
        config: BTreeMap<String, String>,
        origin: Origin,
    ) -> ProcessSpec {
        ProcessSpec {
            name: name.to_string(),
            command,
            cwd: None,
            env_files: Vec::new(),
            autorestart: true,
            restart_delay_ms: 1000,
            max_restarts: 10,
            min_uptime_s: 1,
            stop_signal: Default::default(),
            kill_timeout_s: 30,
            log_max_bytes: 10 << 20,
            log_keep: 5,
            config_hashes: config,
            origin,
        }
    }

    fn http_check(name: String, host: &Host, url: String) -> Check {
        Check {
            name,
            wave: String::new(),
            probe: Probe::Http {
                host: host.name.get_ref().to_string(),
                url,
                status: 200,
                body: None,
            },
            timeout_ms: 60_000,
            interval_ms: 1000,
        }
    }

    fn hub(&mut self, hub: &Hub) {
        let Some(host) = self.host(hub.host.get_ref()) else {
            return;
        };
        let name = hub.name.get_ref();
        let origin = self.origin(Kind::Hub, name, hub.host.get_ref());
        let plan = self.plan;
        let mut scrape = vec![json!({
            "name": format!("prometheus-{name}"),
            "honor_labels": false,
            "targets": [listen(host, *hub.port.get_ref())],
            "host": host.name.get_ref(),
        })];
        // Its host's Pushgateways, and those of every batch that names this hub; an alerting
        // hub watches them all.
        let mut gateways: Vec<&str> = plan
            .pushgateways
            .iter()
            .filter(|g| g.host.get_ref() == hub.host.get_ref() || !hub.alerting.is_empty())
            .map(|g| g.name.get_ref().as_str())
            .collect();
        for b in &plan.batches {
            let names_me = b.primary_hub.get_ref() == name
                || b.fallback_hub.as_ref().is_some_and(|f| f.get_ref() == name);
            if names_me
                && let Some(g) = self.batch_pushgateway(b)
                && !gateways.contains(&g)
            {
                gateways.push(g);
            }
        }
        for g in gateways {
            let Some(gw) = plan.pushgateways.iter().find(|x| x.name.get_ref() == g) else {
                continue;
            };
            let Some(gw_host) = self.host(gw.host.get_ref()) else {
                continue;
            };
            scrape.push(json!({
                "name": format!("pushgateway-{g}"),
                "honor_labels": true,
                "targets": [listen(gw_host, *gw.port.get_ref())],
                "host": gw_host.name.get_ref(),
            }));
        }
        if !hub.alerting.is_empty() {
            self.health_scrapes(hub, &mut scrape);
        }
        let alertmanagers: Vec<String> = hub
            .alerting
            .iter()
            .filter_map(|a| {
                plan.alertmanagers
                    .iter()
                    .find(|m| m.name.get_ref() == a.get_ref())
            })
            .filter_map(|m| Some(listen(self.host(m.host.get_ref())?, *m.port.get_ref())))
            .collect();
        let remote_write: Vec<_> = hub
            .remote_write
            .iter()
            .filter_map(|t| plan.hubs.iter().find(|h| h.name.get_ref() == t.get_ref()))
            .filter_map(|t| {
                let th = self.host(t.host.get_ref())?;
                Some(json!({ "name": t.name.get_ref(), "url": format!("{}/api/v1/write", url(th, *t.port.get_ref())) }))
            })
            .collect();
        let rules_path = format!("files/prometheus/{name}.rules.yml");
        let mut ctx = self.context(host);
        let health_rules = crate::plan::health::rules(plan, hub);
        let has_rules = !hub.alert_rules.is_empty() || !health_rules.is_empty();
        let rules_file = has_rules.then(|| format!("{}/{rules_path}", host.root));
        ctx.insert(
            "hub",
            &json!({
                "name": name, "scrape_interval": hub.scrape_interval.compact(),
                "evaluation_interval": hub.evaluation_interval.compact(), "rules_file": rules_file,
                "health_group": format!("{name}-health"),
            }),
        );
        ctx.insert("scrape", &scrape);
        ctx.insert("remote_write", &remote_write);
        ctx.insert("alertmanagers", &alertmanagers);
        let config_path = format!("files/prometheus/{name}.yml");
        let mut config = self.config_file(
            hub.host.get_ref(),
            &config_path,
            "prometheus.yml.tera",
            &ctx,
            &origin,
        );
        if has_rules {
            let rules: Vec<_> = hub
                .alert_rules
                .iter()
                .map(|r| json!({ "name": r.name, "expr": r.expr, "for": r.for_.as_ref().map(|d| d.compact()), "severity": r.severity, "summary": r.summary }))
                .collect();
            ctx.insert("rules", &rules);
            ctx.insert("health_rules", &health_rules);
            if let Some(text) = self.render("prometheus-rules.yml.tera", &ctx) {
                let sha = self.add_file(
                    hub.host.get_ref(),
                    rules_path.clone(),
                    text,
                    0o644,
                    vec![],
                    origin.clone(),
                );
                config.insert(rules_path, sha);
            }
        }
        let receiver = plan
            .hubs
            .iter()
            .any(|h| h.remote_write.iter().any(|t| t.get_ref() == name));
        let mut command = vec![
            "prometheus".to_string(),
            format!("--config.file={}/{config_path}", host.root),
            format!("--storage.tsdb.path={}/data/prometheus/{name}", host.root),
            format!("--storage.tsdb.retention.time={}", hub.retention.compact()),
            format!("--web.listen-address={}", listen(host, *hub.port.get_ref())),
        ];
        if receiver {
            command.push("--web.enable-remote-write-receiver".into());
        }
        if !hub.remote_write.is_empty() {
            // Stop within the kill timeout even when the target hub is down (the default waits
            // a minute to flush the remote-write backlog).
            command.push("--storage.remote.flush-deadline=10s".into());
        }
        let p = self.service_process(name, command, config, origin.clone());
        self.add_process(hub.host.get_ref(), p);
        let check = Self::http_check(
            format!("hub {name} ready"),
            host,
            format!("{}/-/ready", url(host, *hub.port.get_ref())),
        );
        self.add_check(hub.host.get_ref(), check, &origin);
    }

    fn batch_pushgateway(&self, b: &'a Batch) -> Option<&'a str> {
        match &b.pushgateway {
            Some(n) => Some(n.get_ref()),
            None => self
                .plan
                .pushgateways
                .iter()
                .find(|g| g.host.get_ref() == b.host.get_ref())
                .map(|g| g.name.get_ref().as_str()),
        }
    }

    fn batch_nats(&self, b: &'a Batch) -> Option<&'a NatsNode> {
        match &b.nats {
            Some(n) => self
                .plan
                .nats
                .iter()
                .find(|x| x.name.get_ref() == n.get_ref()),
            None => self
                .plan
                .nats
                .iter()
                .find(|x| x.host.get_ref() == b.host.get_ref()),
        }
    }

    fn pushgateway(&mut self, gw: &crate::plan::schema::Pushgateway) {
        let Some(host) = self.host(gw.host.get_ref()) else {
            return;
        };
        let name = gw.name.get_ref();
        let origin = self.origin(Kind::Pushgateway, name, gw.host.get_ref());
        let command = vec![
            "prometheus-pushgateway".to_string(),
            format!("--web.listen-address={}", listen(host, *gw.port.get_ref())),
            format!(
                "--persistence.file={}/data/pushgateway/{name}.db",
                host.root
            ),
            "--persistence.interval=30s".to_string(),
        ];
        let p = self.service_process(name, command, BTreeMap::new(), origin.clone());
        self.add_process(gw.host.get_ref(), p);
        let check = Self::http_check(
            format!("pushgateway {name} ready"),
            host,
            format!("{}/-/ready", url(host, *gw.port.get_ref())),
        );
        self.add_check(gw.host.get_ref(), check, &origin);
    }

    fn nats(&mut self, node: &NatsNode) {
        let Some(host) = self.host(node.host.get_ref()) else {
            return;
        };
        let plan = self.plan;
        let name = node.name.get_ref();
        let origin = self.origin(Kind::Nats, name, node.host.get_ref());
        let cluster = node.cluster.as_ref().map(|c| {
            let routes: Vec<String> = plan
                .nats
                .iter()
                .filter(|m| m.name.get_ref() != name && m.cluster.as_ref().map(|x| x.get_ref()) == Some(c.get_ref()))
                .filter_map(|m| Some(format!("nats-route://{}", listen(self.host(m.host.get_ref())?, *m.cluster_port.as_ref()?.get_ref()))))
                .collect();
            json!({ "name": c.get_ref(), "listen": node.cluster_port.as_ref().map(|p| listen(host, *p.get_ref())), "routes": routes })
        });
        let remotes: Vec<String> = node
            .leafnode_remotes
            .iter()
            .filter_map(|r| plan.nats.iter().find(|m| m.name.get_ref() == r.get_ref()))
            .filter_map(|m| {
                Some(format!(
                    "nats-leaf://{}",
                    listen(
                        self.host(m.host.get_ref())?,
                        *m.leafnode_port.as_ref()?.get_ref()
                    )
                ))
            })
            .collect();
        let mut ctx = self.context(host);
        ctx.insert(
            "nats",
            &json!({
                "name": name,
                "listen": listen(host, *node.port.get_ref()),
                "monitor": listen(host, *node.monitor_port.get_ref()),
                "store_dir": format!("{}/data/nats/{name}", host.root),
                "max_store": node.max_store.0,
                "domain": node.domain.as_ref().map(|d| d.get_ref()),
                "cluster": cluster,
                "leafnode_listen": node.leafnode_port.as_ref().map(|p| listen(host, *p.get_ref())),
                "leafnode_remotes": remotes,
            }),
        );
        let path = format!("files/nats/{name}.conf");
        let config = self.config_file(node.host.get_ref(), &path, "nats.conf.tera", &ctx, &origin);
        let command = vec![
            "nats-server".to_string(),
            "-c".to_string(),
            format!("{}/{path}", host.root),
        ];
        let p = self.service_process(name, command, config, origin.clone());
        self.add_process(node.host.get_ref(), p);
        let check = Self::http_check(
            format!("nats {name} healthy"),
            host,
            format!(
                "{}/healthz?js-enabled-only=true",
                url(host, *node.monitor_port.get_ref())
            ),
        );
        self.add_check(node.host.get_ref(), check, &origin);
    }

    fn stream_config(&self, s: &Stream) -> StreamConfig {
        let plan = self.plan;
        let domain_of = |server: &str| {
            plan.nats
                .iter()
                .find(|n| n.name.get_ref() == server)
                .and_then(|n| n.domain.as_ref())
                .map(|d| d.get_ref().to_string())
        };
        let my_domain = domain_of(s.server.get_ref());
        let sources = s
            .sources
            .iter()
            .map(|src| {
                let other = plan
                    .streams
                    .iter()
                    .find(|t| t.name.get_ref() == src.stream.get_ref());
                let other_domain = other.and_then(|o| domain_of(o.server.get_ref()));
                let external_api = match other_domain {
                    Some(d) if Some(&d) != my_domain.as_ref() => Some(format!("$JS.{d}.API")),
                    _ => None,
                };
                StreamSourceSpec {
                    name: src.stream.get_ref().to_string(),
                    external_api,
                }
            })
            .collect::<Vec<_>>();
        // Sorted, as servers report them: the order of sources means nothing.
        let mut sources = sources;
        sources.sort();
        let ms =
            |d: &Option<crate::units::Dur>| d.as_ref().map_or(0, |d| d.value().as_millis() as u64);
        StreamConfig {
            name: s.name.get_ref().to_string(),
            subjects: s.subjects.iter().map(|x| x.get_ref().to_string()).collect(),
            storage: s.storage,
            retention: s.retention,
            max_age_ms: ms(&s.max_age),
            max_bytes: s.max_bytes.unwrap_or(-1),
            max_msgs: s.max_msgs.unwrap_or(-1),
            replicas: *s.replicas.get_ref(),
            duplicate_window_ms: s
                .duplicate_window
                .as_ref()
                .map_or(120_000, |d| d.value().as_millis() as u64),
            sources,
        }
    }

    fn stream(&mut self, s: &Stream) {
        let Some(node) = self
            .plan
            .nats
            .iter()
            .find(|n| n.name.get_ref() == s.server.get_ref())
        else {
            return;
        };
        let monitor = self
            .host(node.host.get_ref())
            .map(|h| url(h, *node.monitor_port.get_ref()))
            .unwrap_or_default();
        let spec = crate::primitive::StreamSpec {
            server: node.name.get_ref().to_string(),
            monitor,
            config: self.stream_config(s),
            origin: self.origin(Kind::Stream, s.name.get_ref(), node.host.get_ref()),
        };
        if let Some(h) = self.hosts.get_mut(node.host.get_ref().as_str()) {
            h.streams.push(spec);
        }
    }

    fn batch(&mut self, b: &Batch) {
        let Some(host) = self.host(b.host.get_ref()) else {
            return;
        };
        let plan = self.plan;
        let origin = self.origin(Kind::Batch, b.name.get_ref(), b.host.get_ref());
        let hub_url = |name: &str| -> String {
            plan.hubs
                .iter()
                .find(|h| h.name.get_ref() == name)
                .and_then(|h| Some(url(self.host(h.host.get_ref())?, *h.port.get_ref())))
                .unwrap_or_default()
        };
        let primary = hub_url(b.primary_hub.get_ref());
        let fallback = b
            .fallback_hub
            .as_ref()
            .map(|f| hub_url(f.get_ref()))
            .unwrap_or_default();
        let gateway_url =
            |g: &Pushgateway| Some(url(self.host(g.host.get_ref())?, *g.port.get_ref()));
        let primary_gateway = self
            .batch_pushgateway(b)
            .and_then(|g| plan.pushgateways.iter().find(|x| x.name.get_ref() == g));
        let gateway = primary_gateway.and_then(gateway_url).unwrap_or_default();
        // Where heartbeats go while its own Pushgateway is down: the one on its fallback hub's
        // host, when that is another.
        let fallback_gateway = b
            .fallback_hub
            .as_ref()
            .and_then(|f| plan.hubs.iter().find(|h| h.name.get_ref() == f.get_ref()))
            .and_then(|h| {
                plan.pushgateways
                    .iter()
                    .find(|g| g.host.get_ref() == h.host.get_ref())
            })
            .filter(|g| primary_gateway.is_none_or(|p| p.name.get_ref() != g.name.get_ref()))
            .and_then(gateway_url)
            .unwrap_or_default();
        let nats = self
            .batch_nats(b)
            .and_then(|n| {
                Some(format!(
                    "nats://{}",
                    listen(self.host(n.host.get_ref())?, *n.port.get_ref())
                ))
            })
            .unwrap_or_default();
        for agent in &b.agents {
            let name = agent.get_ref();
            let mut ctx = self.context(host);
            ctx.insert(
                "agent",
                &json!({
                    "name": name, "batch": b.name.get_ref(),
                    "primary_hub_url": primary, "fallback_hub_url": fallback,
                    "pushgateway_url": gateway, "fallback_pushgateway_url": fallback_gateway,
                    "nats_url": nats,
                    "heartbeat_s": b.heartbeat_interval.as_secs().max(1),
                }),
            );
            let env_path = format!("files/agents/{name}.env");
            let mut config =
                self.config_file(b.host.get_ref(), &env_path, "agent.env.tera", &ctx, &origin);
            let command = match &b.command {
                Some(cmd) => cmd
                    .iter()
                    .map(|arg| {
                        self.render_field(
                            arg,
                            &ctx,
                            agent.span(),
                            &format!("batch `{}` command", b.name.get_ref()),
                        )
                    })
                    .collect(),
                None => {
                    config.insert(PATH_HEARTBEAT.to_string(), String::new());
                    vec![
                        "/bin/sh".to_string(),
                        format!("{}/{PATH_HEARTBEAT}", host.root),
                    ]
                }
            };
            let mut p = self.service_process(&agent_program(name), command, config, origin.clone());
            p.env_files = vec![env_path];
            p.kill_timeout_s = 10;
            self.add_process(b.host.get_ref(), p);
        }
    }

    fn process(&mut self, proc_: &Process) {
        let Some(host) = self.host(proc_.host.get_ref()) else {
            return;
        };
        let name = proc_.name.get_ref();
        let origin = self.origin(Kind::Process, name, proc_.host.get_ref());
        let ctx = self.context(host);
        let what = format!("process `{name}`");
        let command = proc_
            .command
            .get_ref()
            .iter()
            .map(|a| {
                let arg =
                    self.render_field(a, &ctx, proc_.command.span(), &format!("{what} command"));
                self.checked(arg, proc_.command.span(), &format!("{what} command"), |v| {
                    crate::value::Arg::new(v).map(|_| ())
                })
            })
            .collect();
        // A `~` root is resolved with the host's home before anything reaches the host; offline
        // (validate, render) the home stands for an absolute directory.
        let unresolved = host.root.starts_with('~');
        let cwd = proc_.cwd.as_ref().map(|c| {
            let dir = self.render_field(c.get_ref(), &ctx, c.span(), &format!("{what} cwd"));
            self.checked(dir, c.span(), &format!("{what} cwd"), |v| {
                match v.strip_prefix('~').filter(|_| unresolved) {
                    Some(rest) => crate::value::check_rendered_absolute(&format!("/home{rest}")),
                    None => crate::value::check_rendered_absolute(v),
                }
            })
        });
        let mut env: Vec<serde_json::Value> = Vec::new();
        for (k, v) in &proc_.env {
            let v = self.render_field(v, &ctx, proc_.name.span(), &format!("{what} env {k}"));
            env.push(json!({ "key": k, "value": v }));
        }
        let secret_keys: Vec<String> = proc_
            .secrets
            .iter()
            .map(|s| s.get_ref().to_string())
            .collect();
        for key in &secret_keys {
            // validate reports a missing secret; expansion renders what it has.
            let value = self.inputs.secrets.get(key).cloned().unwrap_or_default();
            env.push(json!({ "key": key, "value": value }));
        }
        let mut config = BTreeMap::new();
        let mut env_files: Vec<String> = proc_
            .env_files
            .iter()
            .map(|f| f.get_ref().to_string())
            .collect();
        if !env.is_empty() {
            let mut ectx = ctx.clone();
            ectx.insert(
                "process",
                &json!({ "name": name, "has_secrets": !secret_keys.is_empty() }),
            );
            ectx.insert("env", &env);
            let path = format!("files/env/{name}.env");
            let mode = if secret_keys.is_empty() { 0o644 } else { 0o600 };
            if let Some(text) = self.render("process.env.tera", &ectx) {
                let sha = self.add_file(
                    proc_.host.get_ref(),
                    path.clone(),
                    text,
                    mode,
                    secret_keys,
                    origin.clone(),
                );
                config.insert(path.clone(), sha);
            }
            env_files.insert(0, path);
        }
        let p = ProcessSpec {
            name: name.to_string(),
            command,
            cwd,
            env_files,
            autorestart: proc_.autorestart,
            restart_delay_ms: proc_.restart_delay.value().as_millis() as u64,
            max_restarts: proc_.max_restarts,
            min_uptime_s: proc_.min_uptime.as_secs(),
            stop_signal: proc_.stop_signal,
            kill_timeout_s: proc_.kill_timeout.as_secs(),
            log_max_bytes: proc_.log.max_size.0,
            log_keep: proc_.log.keep,
            config_hashes: config,
            origin: origin.clone(),
        };
        self.add_process(proc_.host.get_ref(), p);
        // A process on many hosts has a health check on each: its name says whose it is, in
        // gate lines and failures.
        let instances = self
            .plan
            .processes
            .iter()
            .filter(|p| p.name.get_ref() == name)
            .count();
        let check_name = if instances > 1 {
            format!("process {name} health on {}", proc_.host.get_ref())
        } else {
            format!("process {name} health")
        };
        if let Some(h) = &proc_.health
            && let Some(check) = self.check(&check_name, h.get_ref())
        {
            self.add_check(proc_.host.get_ref(), check, &origin);
        }
    }

    fn migrations(&mut self) {
        for m in &self.plan.migrations {
            let dir = m.dir.get_ref();
            let parsed = match self.inputs.migration_files.get(dir.as_str()) {
                Some(Some(files)) => migrations::parse_dir(dir, files),
                _ => Err(vec![format!(
                    "migration directory `{dir}` does not exist in the plan repo"
                )]),
            };
            match parsed {
                Ok(list) => {
                    for d in crate::plan::migration_rules::check_files(m, &list) {
                        self.diags.push(d);
                    }
                    let name = m.name.get_ref();
                    // validate requires the field of the engine; a missing one expands empty.
                    let path = match &m.database {
                        Some(db) => format!("data/{}", db.get_ref()),
                        None => format!("run/pgpass-{name}"),
                    };
                    let postgres = m.postgres.as_ref().map(|p| {
                        let p = p.get_ref();
                        let secret = p.password_secret.get_ref().to_string();
                        PgTarget {
                            host: p.host.get_ref().to_string(),
                            port: *p.port.get_ref(),
                            user: p.user.get_ref().to_string(),
                            dbname: p.dbname.get_ref().to_string(),
                            password: self
                                .inputs
                                .secrets
                                .get(&secret)
                                .cloned()
                                .unwrap_or_default(),
                            password_secret: secret,
                        }
                    });
                    if let Some(t) = &postgres {
                        let file = self.inputs.file;
                        self.diags
                            .extend(crate::plan::migration_rules::check_password(
                                file,
                                m,
                                &t.password,
                            ));
                    }
                    let spec = DatabaseSpec {
                        name: name.to_string(),
                        engine: m.engine,
                        path,
                        postgres,
                        migrations: list,
                        origin: self.origin(Kind::Migration, m.name.get_ref(), m.host.get_ref()),
                    };
                    if let Some(h) = self.hosts.get_mut(m.host.get_ref().as_str()) {
                        h.databases.push(spec);
                    }
                }
                Err(errors) => {
                    for e in errors {
                        self.diags
                            .push(Diagnostic::new(self.inputs.file, m.dir.span(), e));
                    }
                }
            }
        }
    }

    fn plan_files(&mut self) {
        for f in &self.plan.files {
            let Some(host) = self.host(f.host.get_ref()) else {
                continue;
            };
            let origin = self.origin(Kind::File, f.name.get_ref(), f.host.get_ref());
            let ctx = self.context(host);
            let content = match (&f.template, &f.content) {
                (Some(t), _) if !self.inputs.templates.contains(t.get_ref()) => {
                    self.diags.push(Diagnostic::new(
                        self.inputs.file,
                        t.span(),
                        format!("template `{}` does not exist, expected a file templates/{} in the plan repo", t.get_ref(), t.get_ref()),
                    ));
                    continue;
                }
                (Some(t), _) => match self.render(t.get_ref(), &ctx) {
                    Some(c) => c,
                    None => continue,
                },
                (None, Some(c)) => c.clone(),
                (None, None) => continue,
            };
            let mode = parse_mode(f.mode.get_ref()).unwrap_or(0o644);
            self.add_file(
                f.host.get_ref(),
                format!("files/{}", f.path.get_ref()),
                content,
                mode,
                vec![],
                origin,
            );
        }
    }

    /// A `[[file]]` whose path another resource of its host also writes: two owners of one
    /// file would overwrite each other on every apply.
    fn file_collisions(&mut self) {
        for f in &self.plan.files {
            let path = format!("files/{}", f.path.get_ref());
            let Some(h) = self.hosts.get(f.host.get_ref().as_str()) else {
                continue;
            };
            let me = format!("file.{}", f.name.get_ref());
            let owners: Vec<&str> = h
                .files
                .iter()
                .filter(|x| x.path == path)
                .map(|x| x.origin.resource.as_str())
                .collect();
            if owners.len() < 2 {
                continue;
            }
            let other = owners
                .iter()
                .find(|o| **o != me)
                .copied()
                .unwrap_or(me.as_str());
            self.diags.push(Diagnostic::new(
                self.inputs.file,
                f.path.span(),
                format!(
                    "file `{}` writes `{path}` on host `{}`, which {other} also writes; expected a path no other resource of the host writes",
                    f.name.get_ref(),
                    f.host.get_ref()
                ),
            ));
        }
    }

    /// Per-host files shared by every program: supervisord's config, one program file per
    /// process, the env wrapper and the built-in agent. They go with the host's first wave.
    fn host_files(&mut self) {
        let names: Vec<String> = self.hosts.keys().cloned().collect();
        for name in names {
            let Some(host) = self.host(&name) else {
                continue;
            };
            let Some(h) = self.hosts.get(&name) else {
                continue;
            };
            let first_wave = self
                .wave_order
                .iter()
                .find(|w| {
                    h.files.iter().any(|f| f.origin.wave == **w)
                        || h.processes.iter().any(|p| p.origin.wave == **w)
                        || h.databases.iter().any(|d| d.origin.wave == **w)
                        || h.streams.iter().any(|s| s.origin.wave == **w)
                })
                .cloned()
                .unwrap_or_else(|| IMPLICIT_WAVE.into());
            let host_origin = Origin {
                wave: first_wave,
                resource: format!("host.{name}"),
            };
            let processes = h.processes.clone();
            let ctx = self.context(host);
            if processes.is_empty() {
                continue;
            }
            let backend = crate::backend::supervisor::of(*host.supervisor.get_ref());
            let files = backend.host_files(&mut |template, _| self.render(template, &ctx));
            for f in files {
                self.add_file(
                    &name,
                    f.path,
                    f.content,
                    f.mode,
                    vec![],
                    host_origin.clone(),
                );
            }
            if processes.iter().any(|p| !p.env_files.is_empty())
                && let Some(text) = self.render("run-with-env.sh.tera", &ctx)
            {
                self.add_file(
                    &name,
                    PATH_RUN_WITH_ENV.into(),
                    text,
                    0o755,
                    vec![],
                    host_origin.clone(),
                );
            }
            let mut shared = Vec::new();
            for (path, template, mode) in [
                (PATH_HEARTBEAT, "agent-heartbeat.sh.tera", 0o755),
                (PATH_REDACT_TOKEN, "redact-bot-token.sh.tera", 0o755),
            ] {
                if processes.iter().any(|p| p.config_hashes.contains_key(path))
                    && let Some(text) = self.render(template, &ctx)
                {
                    let sha =
                        self.add_file(&name, path.into(), text, mode, vec![], host_origin.clone());
                    shared.push((path, sha));
                }
            }
            for mut p in processes {
                for (path, sha) in &shared {
                    if let Some(slot) = p.config_hashes.get_mut(*path) {
                        slot.clone_from(sha);
                    }
                }
                self.program_file(host, &mut p);
                if let Some(h) = self.hosts.get_mut(&name)
                    && let Some(slot) = h.processes.iter_mut().find(|x| x.name == p.name)
                {
                    *slot = p;
                }
            }
        }
    }

    fn program_file(&mut self, host: &Host, p: &mut ProcessSpec) {
        let root = &host.root;
        let mut argv: Vec<String> = Vec::new();
        if !p.env_files.is_empty() {
            argv.push(format!("{root}/{PATH_RUN_WITH_ENV}"));
            for f in &p.env_files {
                argv.push(if f.starts_with('/') {
                    f.clone()
                } else {
                    format!("{root}/{f}")
                });
            }
            argv.push("--".into());
        }
        argv.extend(p.command.iter().cloned());
        let ctx = self.context(host);
        let backend = crate::backend::supervisor::of(*host.supervisor.get_ref());
        let file = backend.program_file(root.as_ref(), p, &argv, &mut |template, process| {
            let mut ctx = ctx.clone();
            if let Some(process) = process {
                ctx.insert("process", &process);
            }
            self.render(template, &ctx)
        });
        if let Some(f) = file {
            let sha = self.add_file(
                host.name.get_ref(),
                f.path.clone(),
                f.content,
                f.mode,
                vec![],
                p.origin.clone(),
            );
            p.config_hashes.insert(f.path, sha);
        }
    }

    fn check(&self, name: &str, gate: &Gate) -> Option<Check> {
        let plan = self.plan;
        let probe = match *gate.probes().first()? {
            ProbeRef::Http(p) => Probe::Http {
                host: p.host.get_ref().to_string(),
                // `{{ host.address }}` and friends: the URL as the probing host sees it.
                url: crate::render::render_str(&p.url, &self.context(self.host(p.host.get_ref())?))
                    .ok()
                    .filter(|u| crate::value::Arg::new(u.as_str()).is_ok())
                    .unwrap_or_else(|| p.url.to_string()),
                status: p.status,
                body: p.body.as_ref().map(|b| b.to_string()),
            },
            ProbeRef::Tcp(p) => Probe::Tcp {
                host: p.host.get_ref().to_string(),
                address: self.host(p.host.get_ref())?.address.get_ref().to_string(),
                port: p.port,
            },
            ProbeRef::Process(p) => Probe::Process {
                host: p.host.get_ref().to_string(),
                name: p.name.get_ref().to_string(),
                soak_s: p.soak.as_secs(),
                supervisor: *self.host(p.host.get_ref())?.supervisor.get_ref(),
            },
            ProbeRef::Command(p) => Probe::Command {
                host: p.host.get_ref().to_string(),
                run: p.run.iter().map(|a| a.to_string()).collect(),
            },
            ProbeRef::NatsStream(p) => {
                let s = plan
                    .streams
                    .iter()
                    .find(|s| s.name.get_ref() == p.stream.get_ref())?;
                let node = plan
                    .nats
                    .iter()
                    .find(|n| n.name.get_ref() == s.server.get_ref())?;
                Probe::NatsStream {
                    host: node.host.get_ref().to_string(),
                    server: node.name.get_ref().to_string(),
                    monitor: url(
                        self.host(node.host.get_ref())?,
                        *node.monitor_port.get_ref(),
                    ),
                    stream: self.stream_config(s),
                }
            }
            ProbeRef::AlertQuiet(p) => {
                let am = plan
                    .alertmanagers
                    .iter()
                    .find(|a| a.name.get_ref() == p.alertmanager.get_ref())?;
                let host = self.host(am.host.get_ref())?;
                Probe::AlertQuiet {
                    host: host.name.get_ref().to_string(),
                    alertmanager: am.name.get_ref().to_string(),
                    url: url(host, *am.port.get_ref()),
                    max_firing: p.max_firing,
                }
            }
            ProbeRef::PromQuery(p) => {
                let hub = plan
                    .hubs
                    .iter()
                    .find(|h| h.name.get_ref() == p.hub.get_ref())?;
                let host = self.host(hub.host.get_ref())?;
                Probe::PromQuery {
                    host: host.name.get_ref().to_string(),
                    url: format!("{}/api/v1/query", url(host, *hub.port.get_ref())),
                    expr: p.expr.to_string(),
                    min: p.min,
                }
            }
        };
        Some(Check {
            name: name.to_string(),
            wave: String::new(),
            probe,
            timeout_ms: gate.timeout.value().as_millis() as u64,
            interval_ms: gate.interval.value().as_millis() as u64,
        })
    }

    fn wave_specs(&self) -> Vec<WaveSpec> {
        if self.plan.waves.is_empty() {
            return vec![WaveSpec {
                name: IMPLICIT_WAVE.into(),
                max_parallel: 1,
                on_failure: Default::default(),
                gates: vec![],
            }];
        }
        self.wave_order
            .iter()
            .filter_map(|name| self.plan.waves.iter().find(|w| w.name.get_ref() == name))
            .map(|w| WaveSpec {
                name: w.name.get_ref().to_string(),
                max_parallel: w.max_parallel,
                on_failure: w.on_failure,
                gates: w
                    .gate
                    .iter()
                    .enumerate()
                    .filter_map(|(i, g)| {
                        let mut c = self
                            .check(&format!("{} gate {}", w.name.get_ref(), i + 1), g.get_ref())?;
                        c.wave.clone_from(w.name.get_ref());
                        Some(c)
                    })
                    .collect(),
            })
            .collect()
    }
}
