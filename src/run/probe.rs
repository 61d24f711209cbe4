//! Running probes on their hosts, once (for `status`) or until they pass or time out (gates),
//! and the gate judge the executor asks (a trait, so unit tests can fail a gate without
//! probing anything).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures::future::LocalBoxFuture;

use crate::gate::{self, Verdict};
use crate::load::Loaded;
use crate::primitive::{Check, Probe};
use crate::transport::Host;

/// Judges one check of a wave's gate.
pub trait GateJudge {
    fn judge<'a>(&'a self, check: &'a Check) -> LocalBoxFuture<'a, Verdict>;
}

/// The connected hosts by name, with their roots: where probes run.
pub struct Probes<'a> {
    pub hosts: BTreeMap<String, (&'a dyn Host, &'a str)>,
}

impl GateJudge for Probes<'_> {
    fn judge<'a>(&'a self, check: &'a Check) -> LocalBoxFuture<'a, Verdict> {
        Box::pin(self.until(check))
    }
}

fn probe_host(p: &Probe) -> &str {
    match p {
        Probe::Http { host, .. }
        | Probe::Tcp { host, .. }
        | Probe::Process { host, .. }
        | Probe::NatsStream { host, .. }
        | Probe::PromQuery { host, .. }
        | Probe::Command { host, .. }
        | Probe::AlertQuiet { host, .. } => host,
    }
}

impl Probes<'_> {
    /// Runs a probe once, from its host's side.
    pub async fn once(&self, probe: &Probe) -> Verdict {
        let host = probe_host(probe);
        let Some((conn, root)) = self.hosts.get(host) else {
            return Verdict::Fail(format!("host {host} is not connected"));
        };
        let script = gate::script(probe, root);
        match conn.run(&script).await {
            Ok(out) => gate::judge(probe, &out.stdout),
            Err(e) => Verdict::Fail(e.to_string()),
        }
    }

    /// Retries a check every `interval` until it passes or `timeout` has passed.
    pub async fn until(&self, check: &Check) -> Verdict {
        let start = Instant::now();
        loop {
            let v = self.once(&check.probe).await;
            if v.passed() || start.elapsed() >= Duration::from_millis(check.timeout_ms) {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(check.interval_ms.max(100))).await;
        }
    }
}

/// The checks that concern `host`: its health checks and the wave gates probed from it.
pub fn checks_of<'a>(loaded: &'a Loaded, host: &str) -> Vec<&'a Check> {
    let mut out: Vec<&Check> = loaded
        .desired
        .hosts
        .get(host)
        .map(|h| h.checks.iter().collect())
        .unwrap_or_default();
    out.extend(
        loaded
            .desired
            .waves
            .iter()
            .flat_map(|w| &w.gates)
            .filter(|g| probe_host(&g.probe) == host),
    );
    out
}
