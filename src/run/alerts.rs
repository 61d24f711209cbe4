//! Asking every hub and alertmanager of the plan what fires, each from its own host over that
//! host's connection, all at once.

use std::collections::BTreeMap;

use futures::future::join_all;

use crate::backend::alerts::{Alert, Source, SourceKind};
use crate::transport::Host;

/// What one source answered: its alerts, or why it did not.
#[derive(Debug, Clone)]
pub struct Answer {
    pub source: Source,
    pub alerts: Result<Vec<Alert>, String>,
}

/// Asks each source through the connection of its host.
pub async fn ask(sources: &[Source], hosts: &BTreeMap<String, &dyn Host>) -> Vec<Answer> {
    join_all(sources.iter().map(|s| async move {
        let alerts = match hosts.get(&s.host) {
            None => Err(format!("host {} is not reachable", s.host)),
            Some(conn) => match conn.run(&s.script()).await {
                Err(e) => Err(e.to_string()),
                Ok(out) => s
                    .parse(&out.stdout)
                    .ok_or_else(|| format!("{} does not answer at {}", s.name, s.url)),
            },
        };
        Answer {
            source: s.clone(),
            alerts,
        }
    }))
    .await
}

/// Firing alerts per host they are about, each alert once across the alertmanagers; `None`
/// when the plan has no alertmanager or none answered.
pub fn firing_per_host(answers: &[Answer]) -> Option<BTreeMap<String, usize>> {
    let lists: Vec<&[Alert]> = answers
        .iter()
        .filter(|a| a.source.kind == SourceKind::Alertmanager)
        .filter_map(|a| a.alerts.as_deref().ok())
        .collect();
    (!lists.is_empty()).then(|| crate::backend::alerts::firing_per_host(lists))
}
