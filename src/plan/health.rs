//! The health of every subsystem as alert rules: what an alerting hub (one with `alerting`)
//! evaluates, derived from the plan. Each rule judges only the series the hub scraped itself
//! (`hub=""`: samples remote-written from another hub carry its `hub` label), so two alerting
//! hubs raise the same alerts with the same labels and the alertmanagers deduplicate them.
//! Pure.

use serde::Serialize;

use crate::plan::schema::{Hub, Plan, ProbeRef};

/// Every derived rule's alert name, as `health.skip` and overriding `alert_rules` name them.
pub const RULE_NAMES: &[&str] = &[
    "HubDown",
    "PushgatewayDown",
    "AlertmanagerDown",
    "BlackboxDown",
    "NatsJetStreamUnavailable",
    "ProcessUnhealthy",
    "AgentHeartbeatStale",
];

/// Scrape job name prefixes of what an alerting hub watches.
pub const JOB_HUB: &str = "prometheus-";
pub const JOB_PUSHGATEWAY: &str = "pushgateway-";
pub const JOB_ALERTMANAGER: &str = "alertmanager-";
pub const JOB_BLACKBOX: &str = "blackbox-";
pub const JOB_JETSTREAM: &str = "jetstream-";
pub const JOB_HEALTH: &str = "health-";

/// One alert rule as the rules template renders it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rule {
    pub name: String,
    pub expr: String,
    #[serde(rename = "for")]
    pub for_: Option<String>,
    pub severity: String,
    pub summary: Option<String>,
    /// Labels besides `severity` (each rule's alert name with its labels is unique).
    pub labels: Vec<Label>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Label {
    pub key: String,
    pub value: String,
}

/// True when some target can only be watched through a blackbox exporter.
pub fn needs_blackbox(plan: &Plan) -> bool {
    !plan.nats.is_empty() || plan.processes.iter().any(|p| probed_health(p).is_some())
}

/// A process health check a blackbox exporter can run: (module, target).
pub fn probed_health(p: &crate::plan::schema::Process) -> Option<ProbeRef<'_>> {
    let gate = p.health.as_ref()?.get_ref();
    match *gate.probes().first()? {
        r @ (ProbeRef::Http(_) | ProbeRef::Tcp(_)) => Some(r),
        _ => None,
    }
}

fn down(name: &str, prefix: &str, what: &str, down_for: &str, severity: &str) -> Rule {
    Rule {
        name: name.to_string(),
        expr: format!("up{{job=~\"{prefix}.+\",hub=\"\"}} == 0"),
        for_: Some(down_for.to_string()),
        severity: severity.to_string(),
        summary: Some(format!(
            "{what} {{{{ $labels.component }}}} on {{{{ $labels.source_host }}}} is down"
        )),
        labels: Vec::new(),
    }
}

/// The derived rules of `hub` (none unless it has `alerting`), minus those it skips or its
/// own `alert_rules` override by name.
pub fn rules(plan: &Plan, hub: &Hub) -> Vec<Rule> {
    if hub.alerting.is_empty() {
        return Vec::new();
    }
    let h = &hub.health;
    let down_for = h.down_for.compact();
    let mut out = vec![
        down("HubDown", JOB_HUB, "hub", &down_for, "critical"),
        down(
            "PushgatewayDown",
            JOB_PUSHGATEWAY,
            "pushgateway",
            &down_for,
            "critical",
        ),
        down(
            "AlertmanagerDown",
            JOB_ALERTMANAGER,
            "alertmanager",
            &down_for,
            "critical",
        ),
        down(
            "BlackboxDown",
            JOB_BLACKBOX,
            "blackbox exporter",
            &down_for,
            "warning",
        ),
    ];
    if !plan.nats.is_empty() {
        out.push(Rule {
            name: "NatsJetStreamUnavailable".into(),
            expr: format!("probe_success{{job=~\"{JOB_JETSTREAM}.+\",hub=\"\"}} == 0"),
            for_: Some(down_for.clone()),
            severity: "critical".into(),
            summary: Some(
                "JetStream of nats server {{ $labels.component }} on {{ $labels.source_host }} is unavailable".into(),
            ),
            labels: Vec::new(),
        });
    }
    if plan.processes.iter().any(|p| probed_health(p).is_some()) {
        out.push(Rule {
            name: "ProcessUnhealthy".into(),
            expr: format!("probe_success{{job=~\"{JOB_HEALTH}.+\",hub=\"\"}} == 0"),
            for_: Some(down_for.clone()),
            severity: "critical".into(),
            summary: Some(
                "process {{ $labels.component }} on {{ $labels.source_host }} fails its health probe".into(),
            ),
            labels: Vec::new(),
        });
    }
    // A heartbeat reaches the hub one scrape after it was pushed: the threshold allows that.
    let scrape_s = hub.scrape_interval.as_secs().max(1);
    for b in &plan.batches {
        let interval = b.heartbeat_interval.as_secs().max(1);
        let limit = interval * u64::from(*h.heartbeat_missed.get_ref()) + scrape_s;
        out.push(Rule {
            name: "AgentHeartbeatStale".into(),
            expr: format!(
                "time() - agent_heartbeat{{batch=\"{}\",hub=\"\"}} > {limit}",
                b.name.get_ref()
            ),
            for_: None,
            severity: "critical".into(),
            summary: Some(
                "agent {{ $labels.instance }} of batch {{ $labels.batch }} sent no heartbeat for {{ $value | humanizeDuration }}".into(),
            ),
            labels: vec![Label {
                key: "batch".into(),
                value: b.name.get_ref().to_string(),
            }],
        });
    }
    out.retain(|r| {
        !h.skip.iter().any(|s| s.get_ref() == r.name.as_str())
            && !hub.alert_rules.iter().any(|a| a.name == r.name.as_str())
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(text: &str) -> Plan {
        let (plan, diags) = crate::plan::load::parse_plan("p.toml", text);
        assert!(diags.is_empty(), "{diags:?}");
        plan
    }

    const BASE: &str = r#"
version = 1
name = "t"
[[hub]]
name = "central"
host = "mainpc"
port = 9000
scrape_interval = "5s"
alerting = ["am"]
[[batch]]
name = "pilot"
host = "mainpc"
agents = ["a"]
primary_hub = "central"
heartbeat_interval = "5s"
"#;

    #[test]
    fn an_alerting_hub_gets_down_and_heartbeat_rules() {
        let p = plan(BASE);
        let rules = rules(&p, &p.hubs[0]);
        let names: Vec<&str> = rules.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "HubDown",
                "PushgatewayDown",
                "AlertmanagerDown",
                "BlackboxDown",
                "AgentHeartbeatStale"
            ]
        );
        let hb = &rules[4];
        // 3 heartbeats of 5 s, plus one scrape of 5 s.
        assert_eq!(
            hb.expr,
            "time() - agent_heartbeat{batch=\"pilot\",hub=\"\"} > 20"
        );
        assert_eq!(rules[0].expr, "up{job=~\"prometheus-.+\",hub=\"\"} == 0");
        assert_eq!(rules[0].for_.as_deref(), Some("1m"));
    }

    #[test]
    fn skipped_and_overridden_rules_are_left_out() {
        let text = format!(
            "{BASE}[hub.health]\nskip = [\"BlackboxDown\"]\ndown_for = \"5s\"\n[[hub.alert_rules]]\nname = \"HubDown\"\nexpr = \"up == 0\"\n"
        );
        let p = plan(&text);
        let rules = rules(&p, &p.hubs[0]);
        assert!(
            rules
                .iter()
                .all(|r| r.name != "BlackboxDown" && r.name != "HubDown")
        );
        assert_eq!(rules[0].for_.as_deref(), Some("5s"));
    }

    #[test]
    fn a_hub_without_alerting_derives_nothing() {
        let p = plan(&BASE.replace("alerting = [\"am\"]\n", ""));
        assert!(rules(&p, &p.hubs[0]).is_empty());
    }
}
