//! Running probes on their hosts, once (for `status`) or until they pass or time out (gates),
//! and the gate judge the executor asks (a trait, so unit tests can fail a gate without
//! probing anything).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures::future::LocalBoxFuture;

use crate::backend::script::Script;
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

impl Probes<'_> {
    /// Runs a probe once, from its host's side.
    pub async fn once(&self, probe: &Probe) -> Verdict {
        let host = probe.host();
        let Some((conn, root)) = self.hosts.get(host) else {
            return Verdict::Fail(format!("host {host} is not connected"));
        };
        let script = gate::script(probe, root);
        match conn.run(&script).await {
            Ok(out) => gate::judge(probe, &out.stdout),
            Err(e) => Verdict::Fail(e.to_string()),
        }
    }

    /// Runs each of `probes` (all probed from `host`) once, in one script: one exchange with
    /// the host for all of them (`status`). Sections of the answer are cut at a line holding
    /// a token made for this run, which no probe's output can know in advance.
    pub async fn once_each(&self, host: &str, probes: &[&Probe]) -> Vec<Verdict> {
        let Some((conn, root)) = self.hosts.get(host) else {
            return probes
                .iter()
                .map(|_| Verdict::Fail(format!("host {host} is not connected")))
                .collect();
        };
        let token = format!("wv-probe-{:016x}", rand_token());
        // All at once, each into its own file; then printed in order.
        let mut s = Script::new();
        s.raw("wv_p=$(mktemp -d)\n");
        for (i, p) in probes.iter().enumerate() {
            s.raw("( ")
                .script(&gate::script(p, root))
                .raw(" ) </dev/null >\"$wv_p/")
                .num(i as u64)
                .raw("\" 2>/dev/null &\n");
        }
        s.raw("wait\n");
        for i in 0..probes.len() {
            s.raw("printf '\\n%s %s\\n'")
                .arg(&token)
                .raw(" ")
                .num(i as u64)
                .raw("\ncat \"$wv_p/")
                .num(i as u64)
                .raw("\"\n");
        }
        s.raw("rm -rf \"$wv_p\"\n");
        let out = match conn.run(s.as_str()).await {
            Ok(out) => out.stdout,
            Err(e) => {
                return probes
                    .iter()
                    .map(|_| Verdict::Fail(e.to_string()))
                    .collect();
            }
        };
        let mut sections: BTreeMap<usize, &str> = BTreeMap::new();
        let marker = format!("\n{token} ");
        for part in out.split(marker.as_str()).skip(1) {
            let (n, text) = part.split_once('\n').unwrap_or((part, ""));
            if let Ok(n) = n.trim().parse() {
                sections.insert(n, text);
            }
        }
        probes
            .iter()
            .enumerate()
            .map(|(i, p)| gate::judge(p, sections.get(&i).copied().unwrap_or("")))
            .collect()
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
            .filter(|g| g.probe.host() == host),
    );
    out
}

/// A number no probe's output can predict: the clock's nanoseconds mixed with the process id
/// through the standard library's randomly keyed hasher.
fn rand_token() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.write_u32(std::process::id());
    h.finish()
}
