//! What fires: the scripts that ask a hub (`/api/v1/alerts`) or an alertmanager
//! (`/api/v2/alerts`, active and neither silenced nor inhibited) from its own host, and the
//! parsers of their answers. Pure.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::backend::script::Script;
use crate::inventory::Inventory;
use crate::plan::schema::Plan;

/// One alert as a hub or an alertmanager reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Alert {
    pub name: String,
    /// `firing` or `pending` (a hub), `active` (an alertmanager).
    pub state: String,
    pub labels: BTreeMap<String, String>,
    pub summary: Option<String>,
    /// When it started (alertmanager) or became active (hub), RFC 3339.
    pub since: Option<String>,
}

impl Alert {
    /// The host the alert is about: the `source_host` label of the scrape it came from, else
    /// the `host` label the agent pushed.
    pub fn host(&self) -> Option<&str> {
        self.labels
            .get("source_host")
            .or_else(|| self.labels.get("host"))
            .map(String::as_str)
    }

    /// Alerts of two alertmanagers of one cluster are the same alert when their labels are.
    pub fn identity(&self) -> &BTreeMap<String, String> {
        &self.labels
    }
}

/// Where alerts can be read: a hub or an alertmanager of the plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    Hub,
    Alertmanager,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Source {
    pub kind: SourceKind,
    pub name: String,
    /// The host it runs on: it is asked from there.
    pub host: String,
    /// Its base URL as its host sees it.
    pub url: String,
}

impl Source {
    pub fn script(&self) -> String {
        match self.kind {
            SourceKind::Hub => hub_script(&self.url),
            SourceKind::Alertmanager => alertmanager_script(&self.url),
        }
    }

    pub fn parse(&self, stdout: &str) -> Option<Vec<Alert>> {
        match self.kind {
            SourceKind::Hub => parse_hub(stdout),
            SourceKind::Alertmanager => parse_alertmanager(stdout),
        }
    }
}

/// Every hub with `alerting` and every alertmanager of the plan, in plan order.
pub fn sources(plan: &Plan, inventory: &Inventory) -> Vec<Source> {
    let mut out = Vec::new();
    let mut add = |kind, name: &str, host: &str, port: u16| {
        if let Some(h) = inventory.host(host) {
            out.push(Source {
                kind,
                name: name.to_string(),
                host: host.to_string(),
                url: format!("http://{}:{port}", h.address.get_ref()),
            });
        }
    };
    for hub in plan.hubs.iter().filter(|h| !h.alerting.is_empty()) {
        add(
            SourceKind::Hub,
            hub.name.get_ref(),
            hub.host.get_ref(),
            *hub.port.get_ref(),
        );
    }
    for am in &plan.alertmanagers {
        add(
            SourceKind::Alertmanager,
            am.name.get_ref(),
            am.host.get_ref(),
            *am.port.get_ref(),
        );
    }
    out
}

/// `curl` of a URL, printing `unreachable` when nothing answers.
fn curl(url: String) -> String {
    let mut s = Script::new();
    s.raw("curl -sf --max-time 5 --url")
        .arg(url)
        .raw(" || echo unreachable");
    s.into_string()
}

/// The active alerts of the alertmanager at `base` (`http://address:port`).
pub fn alertmanager_script(base: &str) -> String {
    curl(format!(
        "{base}/api/v2/alerts?active=true&silenced=false&inhibited=false"
    ))
}

/// The pending and firing alerts of the hub at `base`.
pub fn hub_script(base: &str) -> String {
    curl(format!("{base}/api/v1/alerts"))
}

fn labels(v: &serde_json::Value) -> BTreeMap<String, String> {
    v.as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default()
}

fn alert(v: &serde_json::Value, state: String, since: &str) -> Alert {
    let labels = labels(&v["labels"]);
    Alert {
        name: labels.get("alertname").cloned().unwrap_or_default(),
        state,
        summary: v["annotations"]["summary"].as_str().map(str::to_string),
        since: v[since].as_str().map(str::to_string),
        labels,
    }
}

/// An alertmanager's `/api/v2/alerts` answer; `None` when it did not answer with one.
pub fn parse_alertmanager(stdout: &str) -> Option<Vec<Alert>> {
    let doc: serde_json::Value = serde_json::from_str(stdout.trim()).ok()?;
    let list = doc.as_array()?;
    Some(
        list.iter()
            .map(|a| {
                let state = a["status"]["state"]
                    .as_str()
                    .unwrap_or("active")
                    .to_string();
                alert(a, state, "startsAt")
            })
            .collect(),
    )
}

/// A hub's `/api/v1/alerts` answer; `None` when it did not answer with one.
pub fn parse_hub(stdout: &str) -> Option<Vec<Alert>> {
    let doc: serde_json::Value = serde_json::from_str(stdout.trim()).ok()?;
    if doc["status"] != "success" {
        return None;
    }
    let list = doc["data"]["alerts"].as_array()?;
    Some(
        list.iter()
            .map(|a| {
                let state = a["state"].as_str().unwrap_or_default().to_string();
                alert(a, state, "activeAt")
            })
            .collect(),
    )
}

/// The firing alerts of several alertmanagers of one cluster, each once, counted by the host
/// they are about (`-` when they name none).
pub fn firing_per_host<'a>(
    lists: impl IntoIterator<Item = &'a [Alert]>,
) -> BTreeMap<String, usize> {
    let mut seen = std::collections::BTreeSet::new();
    let mut out = BTreeMap::new();
    for a in lists.into_iter().flatten() {
        if seen.insert(a.identity().clone()) {
            *out.entry(a.host().unwrap_or("-").to_string()).or_insert(0) += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const AM: &str = r#"[{"annotations":{"summary":"agent a of batch pilot sent no heartbeat for 12s"},"endsAt":"2026-01-01T00:05:00Z","fingerprint":"f1","receivers":[{"name":"telegram"}],"startsAt":"2026-01-01T00:00:00Z","status":{"inhibitedBy":[],"silencedBy":[],"state":"active"},"updatedAt":"2026-01-01T00:00:01Z","labels":{"alertname":"AgentHeartbeatStale","batch":"pilot","instance":"a","source_host":"pc2","severity":"critical"}}]"#;

    #[test]
    fn scripts_quote_the_url_and_say_when_nothing_answers() {
        assert_eq!(
            alertmanager_script("http://127.0.0.2:9093"),
            "curl -sf --max-time 5 --url 'http://127.0.0.2:9093/api/v2/alerts?active=true&silenced=false&inhibited=false' || echo unreachable"
        );
        assert_eq!(
            hub_script("http://127.0.0.2:9000"),
            "curl -sf --max-time 5 --url 'http://127.0.0.2:9000/api/v1/alerts' || echo unreachable"
        );
    }

    #[test]
    fn an_alertmanager_answer_lists_its_active_alerts() {
        let alerts = parse_alertmanager(AM).expect("parsed");
        assert_eq!(alerts.len(), 1);
        assert_eq!(alerts[0].name, "AgentHeartbeatStale");
        assert_eq!(alerts[0].state, "active");
        assert_eq!(alerts[0].host(), Some("pc2"));
        assert_eq!(alerts[0].since.as_deref(), Some("2026-01-01T00:00:00Z"));
        assert_eq!(parse_alertmanager("unreachable"), None);
        assert_eq!(parse_alertmanager("[]"), Some(vec![]));
    }

    #[test]
    fn a_hub_answer_lists_pending_and_firing() {
        let out = r#"{"status":"success","data":{"alerts":[{"labels":{"alertname":"HubDown","source_host":"pc2"},"annotations":{},"state":"pending","activeAt":"2026-01-01T00:00:00Z","value":"0e+00"}]}}"#;
        let alerts = parse_hub(out).expect("parsed");
        assert_eq!(alerts[0].name, "HubDown");
        assert_eq!(alerts[0].state, "pending");
        assert_eq!(parse_hub(r#"{"status":"error"}"#), None);
    }

    #[test]
    fn a_cluster_counts_each_alert_once_per_host() {
        let a = parse_alertmanager(AM).expect("parsed");
        let counts = firing_per_host([a.as_slice(), a.as_slice()]);
        assert_eq!(counts, BTreeMap::from([("pc2".to_string(), 1)]));
    }
}
