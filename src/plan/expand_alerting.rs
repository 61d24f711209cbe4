//! Expansion of the alerting path: alertmanagers (config with their receivers' secrets, mode
//! 0600; one cluster per plan), blackbox exporters, and what an alerting hub scrapes to watch
//! every subsystem (other hubs, Pushgateways, alertmanagers, blackbox exporters, NATS JetStream
//! and process health through a blackbox exporter).

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::{Expander, listen, url};
use crate::diagnostic::Diagnostic;
use crate::plan::health::{
    self, JOB_ALERTMANAGER, JOB_BLACKBOX, JOB_HEALTH, JOB_HUB, JOB_JETSTREAM,
};
use crate::plan::resource::Kind;
use crate::plan::schema::{Alertmanager, Blackbox, Hub, ProbeRef, Receiver};

/// The YAML key whose value is a secret in an alertmanager config (masked when shown).
pub const SECRET_YAML_KEY: &str = "bot_token";

/// The default Telegram Bot API.
pub const TELEGRAM_API: &str = "https://api.telegram.org";

impl Expander<'_> {
    /// A scrape job of `target` through the blackbox exporter `bb` with `module`; its
    /// `instance` is the target, so every hub's alert about it has the same labels.
    fn probe_job(
        job: String,
        bb: &str,
        module: &str,
        target: &str,
        host: &str,
        component: &str,
    ) -> Value {
        json!({
            "name": job, "honor_labels": false, "targets": [bb], "host": host,
            "metrics_path": "/probe", "component": component, "instance": target,
            "params": [{ "key": "module", "value": module }, { "key": "target", "value": target }],
        })
    }

    /// What an alerting hub scrapes besides itself and the Pushgateways.
    pub(super) fn health_scrapes(&self, hub: &Hub, scrape: &mut Vec<Value>) {
        let plan = self.plan;
        for job in scrape.iter_mut() {
            let name = job["name"].as_str().unwrap_or_default();
            let component = name.split_once('-').map_or(name, |(_, c)| c).to_string();
            job["component"] = json!(component);
        }
        let mut push = |job: String, host: &str, target: String, component: &str| {
            scrape.push(json!({
                "name": job, "honor_labels": false, "targets": [target], "host": host,
                "component": component,
            }));
        };
        for other in plan
            .hubs
            .iter()
            .filter(|h| h.name.get_ref() != hub.name.get_ref())
        {
            if let Some(h) = self.host(other.host.get_ref()) {
                let n = other.name.get_ref();
                push(
                    format!("{JOB_HUB}{n}"),
                    h.name.get_ref(),
                    listen(h, *other.port.get_ref()),
                    n,
                );
            }
        }
        for am in &plan.alertmanagers {
            if let Some(h) = self.host(am.host.get_ref()) {
                let n = am.name.get_ref();
                push(
                    format!("{JOB_ALERTMANAGER}{n}"),
                    h.name.get_ref(),
                    listen(h, *am.port.get_ref()),
                    n,
                );
            }
        }
        for bb in &plan.blackboxes {
            if let Some(h) = self.host(bb.host.get_ref()) {
                let n = bb.name.get_ref();
                push(
                    format!("{JOB_BLACKBOX}{n}"),
                    h.name.get_ref(),
                    listen(h, *bb.port.get_ref()),
                    n,
                );
            }
        }
        let Some(bb) = self.hub_blackbox(hub) else {
            return;
        };
        for node in &plan.nats {
            let Some(h) = self.host(node.host.get_ref()) else {
                continue;
            };
            let target = format!(
                "{}/healthz?js-enabled-only=true",
                url(h, *node.monitor_port.get_ref())
            );
            let n = node.name.get_ref();
            scrape.push(Self::probe_job(
                format!("{JOB_JETSTREAM}{n}"),
                &bb,
                "http_2xx",
                &target,
                h.name.get_ref(),
                n,
            ));
        }
        for p in &plan.processes {
            let Some(probe) = health::probed_health(p) else {
                continue;
            };
            let n = p.name.get_ref();
            let host = p.host.get_ref();
            // Job names are unique in a Prometheus config: a process on many hosts gets one
            // job per host.
            let on_hosts = plan
                .processes
                .iter()
                .filter(|q| q.name.get_ref() == n)
                .count();
            let job = if on_hosts > 1 {
                format!("{JOB_HEALTH}{n}@{host}")
            } else {
                format!("{JOB_HEALTH}{n}")
            };
            match probe {
                ProbeRef::Http(h) => {
                    let target = self
                        .host(h.host.get_ref())
                        .and_then(|ph| crate::render::render_str(&h.url, &self.context(ph)).ok())
                        .unwrap_or_else(|| h.url.to_string());
                    scrape.push(Self::probe_job(job, &bb, "http_2xx", &target, host, n));
                }
                ProbeRef::Tcp(t) => {
                    let Some(th) = self.host(t.host.get_ref()) else {
                        continue;
                    };
                    let target = listen(th, t.port);
                    scrape.push(Self::probe_job(job, &bb, "tcp_connect", &target, host, n));
                }
                _ => {}
            }
        }
    }

    /// `address:port` of the blackbox exporter a hub probes through.
    fn hub_blackbox(&self, hub: &Hub) -> Option<String> {
        let plan = self.plan;
        let bb = match &hub.blackbox {
            Some(n) => plan
                .blackboxes
                .iter()
                .find(|b| b.name.get_ref() == n.get_ref()),
            None => plan
                .blackboxes
                .iter()
                .find(|b| b.host.get_ref() == hub.host.get_ref()),
        }?;
        Some(listen(self.host(bb.host.get_ref())?, *bb.port.get_ref()))
    }

    pub(super) fn blackbox(&mut self, bb: &Blackbox) {
        let Some(host) = self.host(bb.host.get_ref()) else {
            return;
        };
        let name = bb.name.get_ref();
        let origin = self.origin(Kind::Blackbox, name, bb.host.get_ref());
        let mut ctx = self.context(host);
        ctx.insert("blackbox", &json!({ "name": name }));
        let path = format!("files/blackbox/{name}.yml");
        let config = self.config_file(bb.host.get_ref(), &path, "blackbox.yml.tera", &ctx, &origin);
        let command = vec![
            "prometheus-blackbox-exporter".to_string(),
            format!("--config.file={}/{path}", host.root),
            format!("--web.listen-address={}", listen(host, *bb.port.get_ref())),
        ];
        let p = self.service_process(name, command, config, origin.clone());
        self.add_process(bb.host.get_ref(), p);
        let check = Self::http_check(
            format!("blackbox {name} healthy"),
            host,
            format!("{}/-/healthy", url(host, *bb.port.get_ref())),
        );
        self.add_check(bb.host.get_ref(), check, &origin);
    }

    pub(super) fn alertmanager(&mut self, am: &Alertmanager) {
        let Some(host) = self.host(am.host.get_ref()) else {
            return;
        };
        let plan = self.plan;
        let name = am.name.get_ref();
        let origin = self.origin(Kind::Alertmanager, name, am.host.get_ref());
        let mut ctx = self.context(host);
        let receivers: Vec<Value> = am
            .receivers
            .iter()
            .map(|r| self.receiver(r, &ctx))
            .collect();
        let route = &am.route;
        let first = am.receivers.first().map(|r| r.name.get_ref().to_string());
        let routes: Vec<Value> = route
            .routes
            .iter()
            .map(|r| {
                let matchers: Vec<Value> = r
                    .matchers
                    .iter()
                    .map(|(k, v)| json!({ "label": k, "value": v }))
                    .collect();
                json!({ "receiver": r.receiver.get_ref(), "continue": r.continue_, "matchers": matchers })
            })
            .collect();
        ctx.insert("alertmanager", &json!({ "name": name }));
        ctx.insert(
            "route",
            &json!({
                "receiver": route.receiver.as_ref().map(|r| r.get_ref().to_string()).or(first),
                "group_by": route.group_by, "group_wait": route.group_wait.compact(),
                "group_interval": route.group_interval.compact(),
                "repeat_interval": route.repeat_interval.compact(), "routes": routes,
            }),
        );
        ctx.insert("receivers", &receivers);
        let has_secret = am.receivers.iter().any(|r| r.telegram.is_some());
        let path = format!("files/alertmanager/{name}.yml");
        let mut config = BTreeMap::new();
        if let Some(text) = self.render("alertmanager.yml.tera", &ctx) {
            let (mode, keys) = if has_secret {
                (0o600, vec![SECRET_YAML_KEY.to_string()])
            } else {
                (0o644, vec![])
            };
            let sha = self.add_file(
                am.host.get_ref(),
                path.clone(),
                text,
                mode,
                keys,
                origin.clone(),
            );
            config.insert(path.clone(), sha);
        }
        let mut command = Vec::new();
        if has_secret {
            config.insert(super::PATH_REDACT_TOKEN.to_string(), String::new());
            command.push("/bin/sh".to_string());
            command.push(format!("{}/{}", host.root, super::PATH_REDACT_TOKEN));
        }
        command.extend([
            "prometheus-alertmanager".to_string(),
            format!("--config.file={}/{path}", host.root),
            format!("--storage.path={}/data/alertmanager/{name}", host.root),
            format!("--web.listen-address={}", listen(host, *am.port.get_ref())),
        ]);
        let peers: Vec<String> = plan
            .alertmanagers
            .iter()
            .filter(|o| o.name.get_ref() != name)
            .filter_map(|o| {
                Some(listen(
                    self.host(o.host.get_ref())?,
                    *o.cluster_port.get_ref(),
                ))
            })
            .collect();
        if peers.is_empty() {
            // A lone alertmanager gossips with nobody.
            command.push("--cluster.listen-address=".into());
        } else {
            let me = listen(host, *am.cluster_port.get_ref());
            command.push(format!("--cluster.listen-address={me}"));
            command.push(format!("--cluster.advertise-address={me}"));
            command.extend(peers.into_iter().map(|p| format!("--cluster.peer={p}")));
        }
        let p = self.service_process(name, command, config, origin.clone());
        self.add_process(am.host.get_ref(), p);
        let check = Self::http_check(
            format!("alertmanager {name} ready"),
            host,
            format!("{}/-/ready", url(host, *am.port.get_ref())),
        );
        self.add_check(am.host.get_ref(), check, &origin);
    }

    fn receiver(&mut self, r: &Receiver, ctx: &tera::Context) -> Value {
        let name = r.name.get_ref();
        let what = format!("receiver `{name}`");
        let mut out = json!({ "name": name });
        if let Some(t) = &r.telegram {
            let t = t.get_ref();
            let chat = self.render_field(
                t.chat_id.get_ref(),
                ctx,
                t.chat_id.span(),
                &format!("{what} chat_id"),
            );
            let chat_id: i64 = match chat.trim().parse() {
                Ok(id) => id,
                Err(_) => {
                    self.diags.push(Diagnostic::new(
                        self.inputs.file,
                        t.chat_id.span(),
                        format!("{what} chat_id, once rendered, is `{}`, expected a Telegram chat id (an integer such as -1001234567890)", crate::value::shown(&chat)),
                    ));
                    0
                }
            };
            let api_url = match &t.api_url {
                Some(u) => {
                    let text =
                        self.render_field(u.get_ref(), ctx, u.span(), &format!("{what} api_url"));
                    self.checked(text, u.span(), &format!("{what} api_url"), http_url)
                }
                None => TELEGRAM_API.to_string(),
            };
            let token = self
                .inputs
                .secrets
                .get(t.bot_token.get_ref().as_str())
                .cloned()
                .unwrap_or_default();
            out["telegram"] = json!({
                "bot_token": token, "chat_id": chat_id, "api_url": api_url,
                "send_resolved": t.send_resolved,
            });
        }
        if let Some(w) = &r.webhook {
            let w = w.get_ref();
            let text =
                self.render_field(w.url.get_ref(), ctx, w.url.span(), &format!("{what} url"));
            let url = self.checked(text, w.url.span(), &format!("{what} url"), http_url);
            out["webhook"] = json!({ "url": url, "send_resolved": w.send_resolved });
        }
        out
    }
}

/// An `http://` or `https://` URL on one line.
fn http_url(text: &str) -> Result<(), String> {
    crate::value::Line::new(text)?;
    let rest = text
        .strip_prefix("http://")
        .or_else(|| text.strip_prefix("https://"));
    match rest {
        Some(r) if !r.is_empty() && !r.starts_with('/') && !r.contains(char::is_whitespace) => {
            Ok(())
        }
        _ => Err(format!(
            "`{}` is not an http:// or https:// URL",
            crate::value::shown(text)
        )),
    }
}
