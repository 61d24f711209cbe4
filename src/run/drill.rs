//! `wavectl drill`, the executor: checks that the system is healthy, journals the drill on its
//! hosts, does it (kill, freeze, partition), measures with the hosts' own clocks, and always
//! restores what it did — also when interrupted, and, for a drill that died, on the next run.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use crate::backend::drill::{self as hostside, Changed, DrillId, Record, Side};
use crate::backend::script::Script;
use crate::gate;
use crate::load::Loaded;
use crate::plan::drill::Thresholds;
use crate::plan::schema::Hub;
use crate::primitive::Check;
use crate::run::apply::Stop;
use crate::run::drill_probes;
use crate::transport::Host;

/// The kinds of drill.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    KillProcess,
    StopService,
    Partition,
    FreezeHost,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::KillProcess => "kill-process",
            Kind::StopService => "stop-service",
            Kind::Partition => "partition",
            Kind::FreezeHost => "freeze-host",
        }
    }
}

/// One measured figure against its threshold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Figure {
    pub name: String,
    /// None: never reached (e.g. the process did not come back).
    pub value: Option<u64>,
    pub unit: &'static str,
    pub limit: Option<u64>,
    /// The limit is a minimum (messages published) rather than a maximum.
    pub at_least: bool,
    pub passed: bool,
}

impl Figure {
    fn at_most(name: &str, value: Option<u64>, unit: &'static str, limit: u64) -> Figure {
        Figure {
            name: name.into(),
            value,
            unit,
            limit: Some(limit),
            at_least: false,
            passed: value.is_some_and(|v| v <= limit),
        }
    }

    fn at_least(name: &str, value: u64, unit: &'static str, limit: u64) -> Figure {
        Figure {
            name: name.into(),
            value: Some(value),
            unit,
            limit: Some(limit),
            at_least: true,
            passed: value >= limit,
        }
    }

    fn info(name: &str, value: Option<u64>, unit: &'static str) -> Figure {
        Figure {
            name: name.into(),
            value,
            unit,
            limit: None,
            at_least: false,
            passed: true,
        }
    }
}

/// An outage the drill caused: a component down from `down_at` to `up_at` (unix ms, the
/// host's clock).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Outage {
    pub component: String,
    pub host: String,
    pub down_at: u64,
    pub up_at: Option<u64>,
    pub length_ms: Option<u64>,
}

fn outage(component: String, host: &str, down_at: u64, up_at: Option<u64>) -> Outage {
    Outage {
        component,
        host: host.to_string(),
        down_at,
        up_at,
        length_ms: up_at.map(|u| u.saturating_sub(down_at)),
    }
}

/// What a drill found and did.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub id: String,
    pub kind: Kind,
    pub target: String,
    pub figures: Vec<Figure>,
    pub outages: Vec<Outage>,
    /// Restores the drill made (what it undid), in order.
    pub restored: Vec<String>,
    /// What went wrong beyond the figures (e.g. the program was not running).
    pub problems: Vec<String>,
    pub interrupted: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub messages: Option<serde_json::Value>,
}

impl Outcome {
    pub fn passed(&self) -> bool {
        !self.interrupted && self.problems.is_empty() && self.figures.iter().all(|f| f.passed)
    }
}

/// Everything a drill runs with.
pub struct Drill<'a> {
    pub loaded: &'a Loaded,
    pub conns: BTreeMap<String, &'a dyn Host>,
    pub id: DrillId,
    pub operator: String,
    pub thresholds: Thresholds,
    pub stop: &'a Stop,
    /// `--for`: how long a freeze or a cut lasts.
    pub hold: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum DrillError {
    #[error("host {host}: {message}")]
    Host { host: String, message: String },
    #[error("{0}")]
    Target(String),
}

impl Drill<'_> {
    fn conn(&self, host: &str) -> Result<&dyn Host, DrillError> {
        self.conns
            .get(host)
            .copied()
            .ok_or_else(|| DrillError::Host {
                host: host.into(),
                message: "not connected".into(),
            })
    }

    fn root(&self, host: &str) -> &str {
        self.loaded
            .desired
            .hosts
            .get(host)
            .map_or("", |d| d.root.as_str())
    }

    /// Runs a script; its stdout when it succeeded.
    async fn exec(&self, host: &str, script: &Script) -> Result<String, DrillError> {
        let out = self
            .conn(host)?
            .run(script.as_str())
            .await
            .map_err(|e| DrillError::Host {
                host: host.into(),
                message: e.to_string(),
            })?;
        if !out.success() {
            return Err(DrillError::Host {
                host: host.into(),
                message: format!(
                    "a drill script failed (exit {:?}): {}",
                    out.status,
                    out.stderr.trim()
                ),
            });
        }
        Ok(out.stdout)
    }

    fn record(&self, kind: Kind, target: &str, changed: Vec<Changed>) -> Record {
        Record {
            schema: hostside::RECORD_SCHEMA.into(),
            id: self.id.clone(),
            kind: kind.name().into(),
            target: target.into(),
            operator: self.operator.clone(),
            pid: std::process::id(),
            started_at_ms: now_ms(),
            changed,
            finished: false,
            finished_at_ms: None,
            result: None,
        }
    }

    async fn write(&self, host: &str, rec: &Record, event: &str) -> Result<(), DrillError> {
        let journal = serde_json::json!({
            "ts": crate::run::now_rfc3339(), "operator": self.operator, "step": format!("drill {} {} {}: {event}", rec.id, rec.kind, rec.target),
            "result": rec.result.clone().unwrap_or_else(|| "running".into()),
        });
        self.exec(
            host,
            &hostside::write_record_script(self.root(host), rec, &journal),
        )
        .await
        .map(|_| ())
    }

    async fn finish(&self, host: &str, rec: &mut Record, result: &str) {
        rec.finished = true;
        rec.finished_at_ms = Some(now_ms());
        rec.result = Some(result.into());
        let _ = self.write(host, rec, "finished").await;
    }

    /// Waits `d`, or less when a stop is requested; false if it was.
    async fn hold_for(&self, d: Duration) -> bool {
        let end = tokio::time::Instant::now() + d;
        while tokio::time::Instant::now() < end {
            if self.stop.requested() {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        !self.stop.requested()
    }

    /// Runs each check from its host until all pass at once; the host time of the last
    /// round, or None once `timeout` has passed.
    async fn until_green(&self, checks: &[&Check], timeout: Duration) -> Option<u64> {
        let start = tokio::time::Instant::now();
        loop {
            let mut all = true;
            let mut at = 0u64;
            for c in checks {
                let host = c.probe.host();
                let script = hostside::timed_probe_script(&c.probe, self.root(host));
                let ok = match self.exec(host, &script).await {
                    Ok(out) => {
                        let (t, rest) = hostside::split_timed(&out);
                        at = at.max(t.unwrap_or(0));
                        gate::judge(&c.probe, rest).passed()
                    }
                    Err(_) => false,
                };
                all &= ok;
                if !ok {
                    break;
                }
            }
            if all {
                return Some(at);
            }
            if start.elapsed() >= timeout {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `kill-process NAME[@HOST]`: SIGKILL, then the time until the supervisor runs it
    /// again (new pid) and its health checks are green.
    pub async fn kill_process(&self, target: &str) -> Result<Outcome, DrillError> {
        let (host, program) = self.resolve_program(target)?;
        let mut o = self.outcome(Kind::KillProcess, &format!("{program}@{host}"));
        let limit = self.thresholds.restart_max_ms;
        let checks = checks_naming(self.loaded, &host, &program);
        let pid = self.running_pid(&host, &program).await?;
        let mut rec = self.record(
            Kind::KillProcess,
            &o.target,
            vec![Changed::Killed {
                program: program.clone(),
                pid,
            }],
        );
        self.write(&host, &rec, "started").await?;
        let wait_s = limit / 1000 + 10;
        let out = self
            .exec(
                &host,
                &hostside::kill_script(self.root(&host), &program, wait_s),
            )
            .await?;
        let r = hostside::parse_kill(&out);
        let Some((_, killed_at)) = r.killed else {
            o.problems.push(format!(
                "{program} on {host} is {}: nothing was killed",
                r.problem.unwrap_or_default()
            ));
            self.finish(&host, &mut rec, "fail").await;
            return Ok(o);
        };
        let mut back_at = r.up.map(|(_, at)| at);
        if let Some(p) = r.problem {
            o.problems
                .push(format!("{program} on {host}: {p} within {wait_s}s"));
        }
        let mut green_at = back_at;
        if back_at.is_some() && !checks.is_empty() {
            green_at = self
                .until_green(&checks, Duration::from_millis(limit + 10_000))
                .await;
        }
        o.figures.push(Figure::info(
            "running again",
            back_at.map(|b| b - killed_at),
            "ms",
        ));
        o.figures.push(Figure::at_most(
            if checks.is_empty() {
                "restart"
            } else {
                "restart (health green)"
            },
            green_at.map(|g| g.saturating_sub(killed_at)),
            "ms",
            limit,
        ));
        if back_at.is_none() {
            // The supervisor did not bring it back: the drill does.
            match self
                .exec(
                    &host,
                    &hostside::start_script(self.root(&host), &[&program]),
                )
                .await
            {
                Ok(_) => {
                    let at = self.host_now(&host).await;
                    o.restored
                        .push(format!("started {program} on {host} again"));
                    back_at = at;
                    green_at = at;
                }
                Err(e) => o
                    .problems
                    .push(format!("could not start {program} again: {e}")),
            }
        }
        o.outages.push(outage(
            program.clone(),
            &host,
            killed_at,
            green_at.or(back_at),
        ));
        let result = if o.passed() { "pass" } else { "fail" };
        self.finish(&host, &mut rec, result).await;
        Ok(o)
    }

    /// `stop-service NAME`: stop a hub, Pushgateway or NATS server for `--for`; meanwhile
    /// the time until the central hub holds a heartbeat pushed after the stop from every batch
    /// that used it (they must reach it another way: their fallback); then start it again and
    /// the time until its health checks are green.
    pub async fn stop_service(&self, target: &str) -> Result<Outcome, DrillError> {
        let plan = &self.loaded.plan;
        let found = plan
            .hubs
            .iter()
            .map(|h| (&h.name, &h.host, "hub"))
            .chain(
                plan.pushgateways
                    .iter()
                    .map(|g| (&g.name, &g.host, "pushgateway")),
            )
            .chain(plan.nats.iter().map(|n| (&n.name, &n.host, "nats")))
            .find(|(n, _, _)| n.get_ref().as_str() == target);
        let Some((name, host, kind)) = found else {
            let all: Vec<String> = plan
                .hubs
                .iter()
                .map(|h| h.name.get_ref().to_string())
                .chain(
                    plan.pushgateways
                        .iter()
                        .map(|g| g.name.get_ref().to_string()),
                )
                .chain(plan.nats.iter().map(|n| n.name.get_ref().to_string()))
                .collect();
            return Err(DrillError::Target(format!(
                "no hub, Pushgateway or NATS server `{target}` in the plan; expected one of: {}",
                all.join(", ")
            )));
        };
        let (program, host) = (name.get_ref().to_string(), host.get_ref().to_string());
        let mut o = self.outcome(Kind::StopService, &format!("{program}@{host}"));
        // The batches that used it: their heartbeats must reach the central hub without it.
        let batches: Vec<String> = plan
            .batches
            .iter()
            .filter(|b| match kind {
                "hub" => b.primary_hub.get_ref().as_str() == program,
                "pushgateway" => match &b.pushgateway {
                    Some(g) => g.get_ref().as_str() == program,
                    None => plan.pushgateways.iter().any(|g| {
                        g.name.get_ref().as_str() == program && g.host.get_ref() == b.host.get_ref()
                    }),
                },
                _ => false,
            })
            .map(|b| b.name.get_ref().to_string())
            .collect();
        // Who must see the heartbeats: the central hub, or, when it is the one stopped, the
        // fallback hub of the batches that used it.
        let watcher = watching_hub(self.loaded, &program, &batches);
        let central = watcher.and_then(|h| hub_endpoint(self.loaded, h));
        let checks = checks_naming(self.loaded, &host, &program);
        let mut rec = self.record(
            Kind::StopService,
            &o.target,
            vec![Changed::Stopped {
                program: program.clone(),
            }],
        );
        self.write(&host, &rec, "started").await?;
        let stopped = self
            .exec(&host, &hostside::stop_script(self.root(&host), &program))
            .await;
        let stopped_at = match stopped {
            Ok(out) => hostside::parse_at(&out).unwrap_or_else(now_ms),
            Err(e) => {
                let _ = self
                    .exec(
                        &host,
                        &hostside::start_script(self.root(&host), &[&program]),
                    )
                    .await;
                self.finish(&host, &mut rec, "fail").await;
                return Err(e);
            }
        };
        // An agent detects the loss at its next heartbeat and the central hub sees the
        // failed-over one at its next scrape: the seed's failover target counts from the
        // detection, and the hub's view comes one scrape later.
        let detect_ms = plan
            .batches
            .iter()
            .filter(|b| batches.contains(&b.name.get_ref().to_string()))
            .map(|b| b.heartbeat_interval.value().as_millis() as u64)
            .max()
            .unwrap_or(0);
        let failover_limit =
            self.thresholds.failover_max_ms + detect_ms + watcher.map_or(0, scrape_ms);
        // While it is down: the central hub's view of the batches' heartbeats. It stays down
        // until they are seen or the failover limit has passed, even past --for.
        let down_for = if batches.is_empty() {
            self.hold
        } else {
            self.hold.max(Duration::from_millis(failover_limit + 1000))
        };
        let watched_from = tokio::time::Instant::now();
        let (hold_end, watch_end) = (watched_from + self.hold, watched_from + down_for);
        let mut seen_at = None;
        let mut held = true;
        if let (false, Some((chost, url))) = (batches.is_empty(), &central) {
            let since_s = stopped_at.div_ceil(1000);
            while seen_at.is_none() && tokio::time::Instant::now() < watch_end {
                if self.stop.requested() {
                    held = false;
                    break;
                }
                if let Ok(out) = self.exec(chost, &hostside::heartbeats_script(url)).await {
                    let (at, rest) = hostside::split_timed(&out);
                    let hb = hostside::parse_heartbeats(rest);
                    if batches
                        .iter()
                        .all(|b| hb.get(b).is_some_and(|s| *s >= since_s))
                    {
                        seen_at = at;
                    }
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
        if held {
            held = self
                .hold_for(hold_end.saturating_duration_since(tokio::time::Instant::now()))
                .await;
        }
        let started_at = self.host_now(&host).await;
        let started = self
            .exec(
                &host,
                &hostside::start_script(self.root(&host), &[&program]),
            )
            .await;
        match &started {
            Ok(_) => o
                .restored
                .push(format!("started {program} on {host} again")),
            Err(e) => o
                .problems
                .push(format!("could not start {program} again: {e}")),
        }
        if !held {
            o.interrupted = true;
            o.outages
                .push(outage(program.clone(), &host, stopped_at, started_at));
            self.finish(&host, &mut rec, "interrupted").await;
            return Ok(o);
        }
        let limit = self.thresholds.restart_max_ms;
        let green_at = if checks.is_empty() {
            started_at
        } else {
            self.until_green(&checks, Duration::from_millis(limit + 10_000))
                .await
        };
        if !batches.is_empty() {
            o.figures.push(Figure::at_most(
                &format!(
                    "heartbeats at {} ({} batches)",
                    watcher.map_or("central", |h| h.name.get_ref().as_str()),
                    batches.len()
                ),
                seen_at.map(|s| s.saturating_sub(stopped_at)),
                "ms",
                failover_limit,
            ));
        }
        o.figures.push(Figure::info(
            "down",
            started_at.map(|s| s.saturating_sub(stopped_at)),
            "ms",
        ));
        o.figures.push(Figure::at_most(
            "recovery after start (health green)",
            green_at.zip(started_at).map(|(g, s)| g.saturating_sub(s)),
            "ms",
            limit,
        ));
        o.outages.push(outage(
            program.clone(),
            &host,
            stopped_at,
            green_at.or(started_at),
        ));
        let result = if o.passed() { "pass" } else { "fail" };
        self.finish(&host, &mut rec, result).await;
        Ok(o)
    }

    /// `freeze-host HOST`: SIGSTOP every planned program of the host for `--for`, SIGCONT,
    /// then the time until the host's health checks are green.
    pub async fn freeze_host(&self, host: &str) -> Result<Outcome, DrillError> {
        let desired = self.loaded.desired.hosts.get(host).ok_or_else(|| {
            DrillError::Target(format!(
                "no host `{host}` in the plan; expected one of: {}",
                self.loaded
                    .desired
                    .hosts
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })?;
        let mut o = self.outcome(Kind::FreezeHost, host);
        let programs: Vec<&str> = desired.processes.iter().map(|p| p.name.as_str()).collect();
        let checks: Vec<&Check> = desired.checks.iter().collect();
        let thaw_after = self.hold.as_secs() + 30;
        let thaw_at = now_ms() + thaw_after * 1000;
        let mut rec = self.record(Kind::FreezeHost, host, Vec::new());
        self.write(host, &rec, "started").await?;
        let out = self
            .exec(
                host,
                &hostside::freeze_script(self.root(host), &programs, thaw_after),
            )
            .await;
        let frozen = out
            .as_deref()
            .map(hostside::parse_frozen)
            .unwrap_or_default();
        rec.changed = frozen
            .iter()
            .map(|(program, pid, _)| Changed::Frozen {
                program: program.clone(),
                pid: *pid,
                thaw_at_ms: thaw_at,
            })
            .collect();
        let _ = self.write(host, &rec, "frozen").await;
        let frozen_at = frozen.iter().map(|f| f.2).min();
        let held = self.hold_for(self.hold).await;
        let pids: Vec<u32> = frozen.iter().map(|f| f.1).collect();
        let thawed = self.exec(host, &hostside::thaw_script(&pids)).await;
        let thawed_at = thawed.as_deref().ok().and_then(hostside::parse_at);
        match &thawed {
            Ok(_) => o
                .restored
                .push(format!("SIGCONT to {} program(s) on {host}", pids.len())),
            Err(e) => o.problems.push(format!(
                "SIGCONT failed: {e} (the host's reaper sends it in {thaw_after}s)"
            )),
        }
        if let Err(e) = out {
            o.problems.push(e.to_string());
        }
        if !held {
            o.interrupted = true;
            self.finish(host, &mut rec, "interrupted").await;
            return Ok(o);
        }
        let limit = self.thresholds.recovery_max_ms;
        let green_at = self
            .until_green(&checks, Duration::from_millis(limit + 5_000))
            .await;
        o.figures.push(Figure::info(
            "frozen",
            frozen_at.zip(thawed_at).map(|(f, t)| t.saturating_sub(f)),
            "ms",
        ));
        o.figures.push(Figure::at_most(
            "recovery after SIGCONT (health green)",
            green_at.zip(thawed_at).map(|(g, t)| g.saturating_sub(t)),
            "ms",
            limit,
        ));
        for (program, _, at) in &frozen {
            o.outages
                .push(outage(program.clone(), host, *at, green_at.or(thawed_at)));
        }
        let result = if o.passed() { "pass" } else { "fail" };
        self.finish(host, &mut rec, result).await;
        Ok(o)
    }

    /// `partition A,B`: an nftables table on A drops the traffic between A and B on their
    /// planned ports for `--for` (its elements expire by themselves); probes are published
    /// on both sides during the cut; after the heal both aggregates must hold every probe
    /// once.
    pub async fn partition(&self, target: Option<&str>) -> Result<Outcome, DrillError> {
        let (a, b) = self.pair(target)?;
        let mut o = self.outcome(Kind::Partition, &format!("{a},{b}"));
        let (streams_a, streams_b) =
            drill_probes::side_streams(self.loaded, &a, &b).map_err(DrillError::Target)?;
        // May we?
        let out = self.exec(&a, &hostside::nft_check_script()).await?;
        let acc_a = hostside::parse_nft_check(&out).ok_or_else(|| DrillError::Host {
            host: a.clone(),
            message: format!("the nft check printed nothing usable: {out}"),
        })?;
        if !acc_a.allowed {
            return Err(DrillError::Host {
                host: a.clone(),
                message: format!(
                    "user {} may not run nft ({}); grant it passwordless sudo for nft only: `echo '{} ALL=(root) NOPASSWD: /usr/sbin/nft' > /etc/sudoers.d/wavectl-drill && chmod 0440 /etc/sudoers.d/wavectl-drill` (as root on {a}), or install nftables (`apt-get install nftables sudo`)",
                    acc_a.user, acc_a.error, acc_a.user
                ),
            });
        }
        let side = |h: &str| -> Result<Side, DrillError> {
            let inv = self
                .loaded
                .inventory
                .host(h)
                .ok_or_else(|| DrillError::Target(format!("no host {h} in the inventory")))?;
            let addr = inv.address.get_ref().to_string();
            let address = addr.parse().map_err(|_| {
                DrillError::Target(format!(
                    "host {h} has address `{addr}`: a partition needs IP addresses (the rule matches addresses, not names); give the host's IP as `address` in the inventory"
                ))
            })?;
            Ok(Side {
                host: h.to_string(),
                address,
                ports: planned_ports(self.loaded, h),
            })
        };
        let (sa, sb) = (side(&a)?, side(&b)?);
        let hold_s = self.hold.as_secs().max(1);
        let ruleset =
            hostside::nft_ruleset(&sa, &sb, hold_s, &self.id).map_err(DrillError::Target)?;
        let servers = crate::run::streams::servers(self.loaded);
        let ack_wait = self.hold.max(Duration::from_secs(5));
        let ca = drill_probes::connect(self.conn(&a)?, &servers, streams_a, ack_wait)
            .await
            .map_err(|e| DrillError::Host {
                host: a.clone(),
                message: e,
            })?;
        let cb = drill_probes::connect(self.conn(&b)?, &servers, streams_b, ack_wait)
            .await
            .map_err(|e| DrillError::Host {
                host: b.clone(),
                message: e,
            })?;
        let (wa, wb) = futures::join!(
            drill_probes::warm_up(&ca, &self.id),
            drill_probes::warm_up(&cb, &self.id)
        );
        if !(wa && wb) {
            return Err(DrillError::Target(format!(
                "a probe published before the cut was not acked (on {}): the streams are not healthy",
                if wa { &b } else { &a }
            )));
        }
        let reap_after = hold_s + 5;
        let mut rec = self.record(
            Kind::Partition,
            &o.target,
            vec![Changed::NftTable {
                expires_at_ms: now_ms() + reap_after * 1000,
            }],
        );
        self.write(&a, &rec, "started").await?;
        let mut rec_b = rec.clone();
        rec_b.changed.clear();
        let _ = self.write(&b, &rec_b, "started").await;
        let cut = self
            .exec(
                &a,
                &hostside::nft_add_script(&ruleset, &self.id, reap_after),
            )
            .await;
        let cut_at = match cut {
            Ok(out) => hostside::parse_stamp(&out, "cut").unwrap_or_else(now_ms),
            Err(e) => {
                let _ = self.exec(&a, &hostside::nft_delete_script()).await;
                self.finish(&a, &mut rec, "fail").await;
                self.finish(&b, &mut rec_b, "fail").await;
                return Err(e);
            }
        };
        let n = self.thresholds.probe_messages;
        let (pub_a, pub_b) = futures::join!(
            drill_probes::publish(&ca, &self.id, n),
            drill_probes::publish(&cb, &self.id, n)
        );
        // During the cut each aggregate may hold only its own side's probes.
        let crossed = {
            let (ta, tb) = futures::join!(
                drill_probes::count(&ca, &self.id),
                drill_probes::count(&cb, &self.id)
            );
            let of = |r: &Result<BTreeMap<(String, u64), u32>, String>, other: &str| {
                r.as_ref().map_or(0, |m| {
                    m.keys().filter(|(s, n)| s == other && *n > 0).count() as u64
                })
            };
            of(&ta, &b) + of(&tb, &a)
        };
        let rest = self
            .hold
            .saturating_sub(Duration::from_millis(now_ms().saturating_sub(cut_at)));
        let held = self.hold_for(rest).await;
        let healed = self.exec(&a, &hostside::nft_delete_script()).await;
        let healed_at = healed
            .as_ref()
            .ok()
            .and_then(|out| hostside::parse_stamp(out, "healed"));
        match &healed {
            Ok(_) => o.restored.push(format!("deleted the nftables table inet {} on {a}", hostside::NFT_TABLE)),
            Err(e) => o.problems.push(format!("could not delete the nftables table on {a}: {e} (its elements expire at the cut's end; the host's reaper deletes it)")),
        }
        o.outages
            .push(outage(format!("link {a}-{b}"), &a, cut_at, healed_at));
        if !held {
            o.interrupted = true;
            self.finish(&a, &mut rec, "interrupted").await;
            self.finish(&b, &mut rec_b, "interrupted").await;
            return Ok(o);
        }
        // Catch-up: both aggregates hold every probe of both sides.
        let sides = [a.as_str(), b.as_str()];
        let limit = self.thresholds.recovery_max_ms;
        let deadline = tokio::time::Instant::now() + Duration::from_millis(limit + 10_000);
        let (mut tally_a, mut tally_b);
        let mut caught_up_at = None;
        loop {
            let (ta, tb) = futures::join!(
                drill_probes::count(&ca, &self.id),
                drill_probes::count(&cb, &self.id)
            );
            tally_a = ta
                .as_ref()
                .map(|m| drill_probes::tally(m, &sides, n))
                .unwrap_or_default();
            tally_b = tb
                .as_ref()
                .map(|m| drill_probes::tally(m, &sides, n))
                .unwrap_or_default();
            if tally_a.missing == 0 && tally_b.missing == 0 && ta.is_ok() && tb.is_ok() {
                caught_up_at = Some(now_ms());
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        // A duplicate may land after the last probe: look once more.
        if let (Ok(ma), Ok(mb)) = futures::join!(
            drill_probes::count(&ca, &self.id),
            drill_probes::count(&cb, &self.id)
        ) {
            tally_a = drill_probes::tally(&ma, &sides, n);
            tally_b = drill_probes::tally(&mb, &sides, n);
        }
        o.figures.push(Figure::at_least(
            &format!("acked on {a} during the cut"),
            pub_a.acked,
            "msgs",
            n,
        ));
        o.figures.push(Figure::at_least(
            &format!("acked on {b} during the cut"),
            pub_b.acked,
            "msgs",
            n,
        ));
        o.figures.push(Figure::info(
            &format!("slowest ack on {a}"),
            pub_a.slowest_ack_ms,
            "ms",
        ));
        o.figures.push(Figure::info(
            &format!("slowest ack on {b}"),
            pub_b.slowest_ack_ms,
            "ms",
        ));
        o.figures.push(Figure::at_most(
            "crossed the cut while it lasted",
            Some(crossed),
            "msgs",
            0,
        ));
        o.figures.push(Figure::info(
            "cut",
            healed_at.map(|h| h.saturating_sub(cut_at)),
            "ms",
        ));
        o.figures.push(Figure::at_most(
            "catch-up after the heal",
            caught_up_at
                .zip(healed_at)
                .map(|(c, h)| c.saturating_sub(h)),
            "ms",
            limit,
        ));
        o.figures.push(Figure::at_most(
            "lost",
            Some(tally_a.missing + tally_b.missing),
            "msgs",
            self.thresholds.max_loss,
        ));
        o.figures.push(Figure::at_most(
            "duplicates",
            Some(tally_a.duplicates + tally_b.duplicates),
            "msgs",
            0,
        ));
        o.messages = Some(serde_json::json!({
            "per_side": n,
            "acked": { a.clone(): pub_a.acked, b.clone(): pub_b.acked },
            "slowest_ack_ms": { a.clone(): pub_a.slowest_ack_ms, b.clone(): pub_b.slowest_ack_ms },
            "aggregates": [
                { "host": a, "stream": ca.side.aggregate, "present": tally_a.present, "missing": tally_a.missing, "duplicates": tally_a.duplicates },
                { "host": b, "stream": cb.side.aggregate, "present": tally_b.present, "missing": tally_b.missing, "duplicates": tally_b.duplicates },
            ],
        }));
        let result = if o.passed() { "pass" } else { "fail" };
        self.finish(&a, &mut rec, result).await;
        self.finish(&b, &mut rec_b, result).await;
        Ok(o)
    }

    fn outcome(&self, kind: Kind, target: &str) -> Outcome {
        Outcome {
            id: self.id.to_string(),
            kind,
            target: target.into(),
            figures: Vec::new(),
            outages: Vec::new(),
            restored: Vec::new(),
            problems: Vec::new(),
            interrupted: false,
            messages: None,
        }
    }

    async fn host_now(&self, host: &str) -> Option<u64> {
        let mut s = Script::new();
        s.raw("printf 'at %s\\n' \"$(date +%s%3N)\"\n");
        self.exec(host, &s)
            .await
            .ok()
            .as_deref()
            .and_then(hostside::parse_at)
    }

    async fn running_pid(&self, host: &str, program: &str) -> Result<u32, DrillError> {
        let out = self
            .exec(host, &hostside::procs_script(self.root(host)))
            .await?;
        let procs = parse_procs(&out);
        match procs.get(program) {
            Some((state, pid)) if state == "RUNNING" => Ok(*pid),
            Some((state, _)) => Err(DrillError::Target(format!(
                "{program} on {host} is {state}, not RUNNING: nothing to kill"
            ))),
            None => Err(DrillError::Target(format!(
                "{program} is not a program of the supervisor on {host}"
            ))),
        }
    }

    /// `NAME` or `NAME@HOST` -> (host, program).
    fn resolve_program(&self, target: &str) -> Result<(String, String), DrillError> {
        let (name, on) = match target.split_once('@') {
            Some((n, h)) => (n, Some(h)),
            None => (target, None),
        };
        let found: Vec<(String, String)> = self
            .loaded
            .desired
            .hosts
            .iter()
            .filter(|(h, _)| on.is_none_or(|o| o == h.as_str()))
            .flat_map(|(h, d)| {
                d.processes
                    .iter()
                    .filter(|p| p.name == name)
                    .map(move |p| (h.clone(), p.name.clone()))
            })
            .collect();
        match found.as_slice() {
            [one] => Ok(one.clone()),
            [] => {
                let all: Vec<String> = self
                    .loaded
                    .desired
                    .hosts
                    .iter()
                    .flat_map(|(h, d)| d.processes.iter().map(move |p| format!("{}@{h}", p.name)))
                    .collect();
                Err(DrillError::Target(format!(
                    "no planned program `{target}`; expected NAME or NAME@HOST, one of: {}",
                    all.join(", ")
                )))
            }
            many => Err(DrillError::Target(format!(
                "program `{name}` runs on several hosts ({}); name one as NAME@HOST",
                many.iter()
                    .map(|(h, _)| h.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    }

    /// `A,B`, or the plan's two hosts.
    fn pair(&self, target: Option<&str>) -> Result<(String, String), DrillError> {
        let hosts: Vec<&String> = self.loaded.desired.hosts.keys().collect();
        let (a, b) = match target {
            Some(t) => t
                .split_once(',')
                .map(|(a, b)| (a.trim().to_string(), b.trim().to_string()))
                .ok_or_else(|| {
                    DrillError::Target(format!(
                        "invalid partition target `{t}`, expected two hosts as A,B"
                    ))
                })?,
            None if hosts.len() == 2 => (hosts[0].clone(), hosts[1].clone()),
            None => {
                return Err(DrillError::Target(format!(
                    "name the two hosts to cut apart as A,B (the plan has {})",
                    hosts
                        .iter()
                        .map(|h| h.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
        };
        for h in [&a, &b] {
            if !self.loaded.desired.hosts.contains_key(h) {
                return Err(DrillError::Target(format!("no host `{h}` in the plan")));
            }
        }
        if a == b {
            return Err(DrillError::Target(format!(
                "a partition needs two different hosts, not {a} twice"
            )));
        }
        Ok((a, b))
    }
}

/// The hub that must see the batches' heartbeats while `stopped` is down: the central one (as
/// the uptime report picks it: the one other hubs remote-write to, else the first), or, when
/// that is the one stopped, the batches' fallback hub, else any other.
fn watching_hub<'p>(loaded: &'p Loaded, stopped: &str, batches: &[String]) -> Option<&'p Hub> {
    let plan = &loaded.plan;
    let central = crate::uptime::report_hub(plan, None)?;
    if central.name.get_ref().as_str() != stopped {
        return Some(central);
    }
    let fallback = plan
        .batches
        .iter()
        .filter(|b| batches.contains(&b.name.get_ref().to_string()))
        .find_map(|b| b.fallback_hub.as_ref())
        .and_then(|f| plan.hubs.iter().find(|h| h.name.get_ref() == f.get_ref()));
    fallback.or_else(|| {
        plan.hubs
            .iter()
            .find(|h| h.name.get_ref().as_str() != stopped)
    })
}

/// A hub's host and query URL as its host sees it.
fn hub_endpoint(loaded: &Loaded, hub: &Hub) -> Option<(String, String)> {
    let host = hub.host.get_ref().to_string();
    let address = loaded.inventory.host(&host)?.address.get_ref().to_string();
    let address = if address.contains(':') {
        format!("[{address}]")
    } else {
        address
    };
    Some((
        host,
        format!("http://{address}:{}/api/v1/query", hub.port.get_ref()),
    ))
}

fn scrape_ms(hub: &Hub) -> u64 {
    hub.scrape_interval.value().as_millis() as u64
}

/// The health checks of `host` that name `program` (`process NAME health`, `hub NAME ready`).
fn checks_naming<'a>(loaded: &'a Loaded, host: &str, program: &str) -> Vec<&'a Check> {
    loaded
        .desired
        .hosts
        .get(host)
        .map(|d| {
            d.checks
                .iter()
                .filter(|c| c.name.split_whitespace().any(|w| w == program))
                .collect()
        })
        .unwrap_or_default()
}

/// Every port the plan listens on at `host` (hubs, Pushgateways, NATS, alertmanagers,
/// blackbox exporters, processes' `listen`).
pub fn planned_ports(loaded: &Loaded, host: &str) -> Vec<u16> {
    let plan = &loaded.plan;
    let mut ports: Vec<u16> = crate::backend::doctor::planned_ports(plan)
        .remove(host)
        .unwrap_or_default()
        .into_iter()
        .map(|p| p.port)
        .collect();
    for am in plan
        .alertmanagers
        .iter()
        .filter(|a| a.host.get_ref().as_str() == host)
    {
        ports.push(*am.port.get_ref());
        ports.push(*am.cluster_port.get_ref());
    }
    for bb in plan
        .blackboxes
        .iter()
        .filter(|b| b.host.get_ref().as_str() == host)
    {
        ports.push(*bb.port.get_ref());
    }
    ports.sort_unstable();
    ports.dedup();
    ports
}

/// `NAME STATE PID ...` lines -> name -> (state, pid).
pub fn parse_procs(out: &str) -> BTreeMap<String, (String, u32)> {
    out.lines()
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            (w.len() >= 3 && w[0] != "at").then(|| {
                (
                    w[0].to_string(),
                    (w[1].to_string(), w[2].parse().unwrap_or(0)),
                )
            })
        })
        .collect()
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Why the system is not fit for a drill: unreachable hosts, programs not running, red health
/// checks (the probes `status` runs for each resource).
pub async fn health_problems(loaded: &Loaded, conns: &BTreeMap<String, &dyn Host>) -> Vec<String> {
    let mut out = Vec::new();
    let mut probes = crate::run::probe::Probes {
        hosts: BTreeMap::new(),
    };
    for (host, desired) in &loaded.desired.hosts {
        let Some(conn) = conns.get(host) else {
            out.push(format!("{host}: unreachable"));
            continue;
        };
        probes
            .hosts
            .insert(host.clone(), (*conn, desired.root.as_str()));
        match conn
            .run(hostside::procs_script(&desired.root).as_str())
            .await
        {
            Ok(o) if o.success() => {
                let procs = parse_procs(&o.stdout);
                for p in &desired.processes {
                    match procs.get(&p.name) {
                        Some((s, _)) if s == "RUNNING" => {}
                        Some((s, _)) => out.push(format!("{host}: program {} is {s}", p.name)),
                        None => out.push(format!(
                            "{host}: program {} is not loaded (run `wavectl apply`)",
                            p.name
                        )),
                    }
                }
            }
            Ok(o) => out.push(format!(
                "{host}: the supervisor does not answer: {}",
                o.stderr.trim()
            )),
            Err(e) => out.push(format!("{host}: {e}")),
        }
    }
    for (host, desired) in &loaded.desired.hosts {
        if !probes.hosts.contains_key(host) {
            continue;
        }
        let list: Vec<_> = desired.checks.iter().map(|c| &c.probe).collect();
        if list.is_empty() {
            continue;
        }
        let verdicts = probes.once_each(host, &list).await;
        for (c, v) in desired.checks.iter().zip(verdicts) {
            if !v.passed() {
                out.push(format!("{host}: {} is red: {}", c.name, v.detail()));
            }
        }
    }
    out
}

/// The drill records of every host that never finished.
pub async fn interrupted(
    loaded: &Loaded,
    conns: &BTreeMap<String, &dyn Host>,
) -> Vec<(String, Record)> {
    let mut out = Vec::new();
    for (host, desired) in &loaded.desired.hosts {
        let Some(conn) = conns.get(host) else {
            continue;
        };
        let Ok(o) = conn
            .run(hostside::read_record_script(&desired.root).as_str())
            .await
        else {
            continue;
        };
        if let Ok(Some(r)) = hostside::parse_record(&o.stdout)
            && !r.finished
        {
            out.push((host.clone(), r));
        }
    }
    out
}

/// Whether the drill of `rec` still runs: started from this machine by a process that is
/// alive (then its record is not an interrupted one).
pub fn still_running(rec: &Record) -> bool {
    rec.operator == crate::run::operator()
        && std::path::Path::new(&format!("/proc/{}", rec.pid)).exists()
        && std::fs::read_to_string(format!("/proc/{}/cmdline", rec.pid))
            .is_ok_and(|c| c.contains("drill"))
}

/// Undoes what an interrupted drill left on `host`, then marks its record restored.
pub async fn restore_left(d: &Drill<'_>, host: &str, mut rec: Record) -> Vec<String> {
    let mut done = Vec::new();
    for c in &rec.changed {
        let r = match c {
            Changed::Killed { program, .. } | Changed::Stopped { program } => {
                let out = d.exec(host, &hostside::procs_script(d.root(host))).await;
                let running = out
                    .as_deref()
                    .map(parse_procs)
                    .ok()
                    .and_then(|p| p.get(program).cloned())
                    .is_some_and(|(s, _)| s == "RUNNING");
                if running {
                    Ok(format!("{program} on {host} runs"))
                } else {
                    d.exec(host, &hostside::start_script(d.root(host), &[program]))
                        .await
                        .map(|_| format!("started {program} on {host}"))
                }
            }
            Changed::Frozen { program, pid, .. } => d
                .exec(host, &hostside::thaw_script(&[*pid]))
                .await
                .map(|_| format!("SIGCONT to {program} (pid {pid}) on {host}")),
            Changed::NftTable { .. } => {
                d.exec(host, &hostside::nft_delete_script())
                    .await
                    .map(|out| {
                        if out.contains("absent") {
                            format!("the nftables table on {host} had expired")
                        } else {
                            format!("deleted the nftables table on {host}")
                        }
                    })
            }
        };
        done.push(r.unwrap_or_else(|e| format!("could not restore: {e}")));
    }
    let by = format!("restored by drill {}", d.id);
    d.finish(host, &mut rec, &by).await;
    done
}
