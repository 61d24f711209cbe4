//! The executor's decisions, pure: whether a change set may be applied, what a wave's result
//! means under its `on_failure`, which hosts an undo covers, and where each host stands when
//! an undo failed. Plain data in and out: no tokio, no SSH, no git, no processes.

use std::fmt;

use crate::diff::{Change, ChangeSet};
use crate::plan::resource::Selector;
use crate::plan::schema::OnFailure;
use crate::primitive::Desired;

/// Whether a change set may be applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readiness {
    /// A host did not answer: its changes are unknown, nothing may run.
    Unreachable,
    /// A host has problems (missing programs, checksum drift, ...): nothing may run.
    Blocked,
    /// Nothing to do.
    InSync,
    /// Changes to apply, nothing in the way.
    Ready,
}

pub fn readiness(changes: &ChangeSet) -> Readiness {
    if !changes.unreachable.is_empty() {
        Readiness::Unreachable
    } else if changes.has_problems() {
        Readiness::Blocked
    } else if changes.is_empty() {
        Readiness::InSync
    } else {
        Readiness::Ready
    }
}

/// Which waves an apply or rollback runs: all of them, or those named with `--wave`, or the
/// run from `--from-wave` to `--to-wave` (in run order).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WaveSelection {
    pub waves: Vec<String>,
    pub from: Option<String>,
    pub to: Option<String>,
}

impl WaveSelection {
    pub fn is_all(&self) -> bool {
        self.waves.is_empty() && self.from.is_none() && self.to.is_none()
    }

    /// The selected waves of `order` (the run order), or the name that matches no wave.
    pub fn resolve(&self, order: &[String]) -> Result<Vec<String>, String> {
        let known = |w: &String| {
            if order.contains(w) {
                Ok(())
            } else {
                Err(format!(
                    "no wave is named `{w}`; expected one of {}",
                    order.join(", ")
                ))
            }
        };
        for w in self.waves.iter().chain(&self.from).chain(&self.to) {
            known(w)?;
        }
        if self.is_all() {
            return Ok(order.to_vec());
        }
        let pos = |w: &Option<String>, default: usize| {
            w.as_ref()
                .and_then(|w| order.iter().position(|o| o == w))
                .unwrap_or(default)
        };
        let (from, to) = (
            pos(&self.from, 0),
            pos(&self.to, order.len().saturating_sub(1)),
        );
        Ok(order
            .iter()
            .enumerate()
            .filter(|(i, w)| {
                self.waves.contains(w)
                    || ((self.from.is_some() || self.to.is_some()) && *i >= from && *i <= to)
            })
            .map(|(_, w)| w.clone())
            .collect())
    }
}

/// Keeps only the selected waves' changes (removals belong to no wave: only a full run does
/// them). Refuses, per host, a selected wave whose predecessors in `order` still have changes
/// there: a wave runs on what the waves before it made.
pub fn select_waves(
    changes: &mut ChangeSet,
    order: &[String],
    selected: &[String],
) -> Result<(), Vec<String>> {
    if selected.len() == order.len() {
        return Ok(());
    }
    let mut refused = Vec::new();
    for h in &mut changes.hosts {
        let first = h
            .waves
            .iter()
            .filter(|w| selected.contains(&w.wave))
            .filter_map(|w| order.iter().position(|o| *o == w.wave))
            .min();
        if let Some(first) = first {
            let pending: Vec<&str> = h
                .waves
                .iter()
                .filter(|w| !selected.contains(&w.wave))
                .filter(|w| {
                    order
                        .iter()
                        .position(|o| *o == w.wave)
                        .is_some_and(|p| p < first)
                })
                .map(|w| w.wave.as_str())
                .collect();
            if !pending.is_empty() {
                refused.push(format!(
                    "host {}: wave {} comes after {}, which {} not applied there yet",
                    h.host,
                    order[first],
                    pending.join(", "),
                    if pending.len() == 1 { "is" } else { "are" }
                ));
            }
        }
        h.waves.retain(|w| selected.contains(&w.wave));
        h.removals.clear();
    }
    if refused.is_empty() {
        Ok(())
    } else {
        Err(refused)
    }
}

/// Keeps only the changes of the resources `selectors` name (`kind.name`, `kind.*`,
/// `host.NAME`), by the resource each primitive came from; what belongs to no resource of the
/// plan (removals, the host's shared files) is left out.
pub fn select_resources(changes: &mut ChangeSet, desired: &Desired, selectors: &[Selector]) {
    for h in &mut changes.hosts {
        let Some(d) = desired.hosts.get(&h.host) else {
            h.waves.clear();
            continue;
        };
        let host = h.host.clone();
        let keep = |c: &Change| {
            let origin = match c {
                Change::File { path, .. } => {
                    d.files.iter().find(|f| &f.path == path).map(|f| &f.origin)
                }
                Change::Process { name, .. } => d
                    .processes
                    .iter()
                    .find(|p| &p.name == name)
                    .map(|p| &p.origin),
                Change::Migration { database, .. } => d
                    .databases
                    .iter()
                    .find(|x| &x.name == database)
                    .map(|x| &x.origin),
                Change::Stream { name, .. } => d
                    .streams
                    .iter()
                    .find(|s| &s.config.name == name)
                    .map(|s| &s.origin),
            };
            let Some((kind, name)) = origin.and_then(|o| o.resource.split_once('.')) else {
                return false;
            };
            selectors.iter().any(|s| match s {
                Selector::One(k, n) => k.key() == kind && n == name,
                Selector::AllOf(k) => k.key() == kind,
                Selector::Host(n) => *n == host,
            })
        };
        for w in &mut h.waves {
            w.changes.retain(|c| keep(c));
        }
        h.waves.retain(|w| !w.changes.is_empty());
        h.removals.clear();
    }
}

/// How a wave ended on the hosts it touched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaveResult {
    /// Every step ran and the gate passed.
    Passed,
    /// A step failed on one of its hosts.
    StepFailed,
    /// Every step ran but the gate failed.
    GateFailed,
}

/// What the executor does after a wave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Keep the wave and go on to the next.
    Proceed,
    /// Keep the wave and stop: an operator looks (`on_failure = "pause"`).
    Pause,
    /// Undo the wave on every host it touched (earlier waves stay) and stop.
    Undo,
}

impl Next {
    /// Whether the wave's changes stay applied (and are recorded in the generation).
    pub fn keeps(self) -> bool {
        self != Next::Undo
    }
}

/// A failed step always undoes its wave; a failed gate does what `on_failure` says.
pub fn next(result: WaveResult, on_failure: OnFailure) -> Next {
    match (result, on_failure) {
        (WaveResult::Passed, _) => Next::Proceed,
        (WaveResult::StepFailed, _) => Next::Undo,
        (WaveResult::GateFailed, OnFailure::Rollback) => Next::Undo,
        (WaveResult::GateFailed, OnFailure::Pause) => Next::Pause,
        (WaveResult::GateFailed, OnFailure::Continue) => Next::Proceed,
    }
}

/// The hosts an undo of a wave covers: every host the wave touched, not only the one that
/// failed (a wave is all or nothing), in the order given.
pub fn undo_hosts<'a>(touched: &[&'a str]) -> Vec<&'a str> {
    let mut out: Vec<&str> = Vec::new();
    for h in touched {
        if !out.contains(h) {
            out.push(h);
        }
    }
    out
}

/// Where a host stands after an apply stopped: the waves it holds, and the wave it is caught
/// in the middle of when undoing that wave failed there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Standing {
    pub host: String,
    pub holds: Vec<String>,
    pub between: Option<String>,
}

impl fmt::Display for Standing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} holds ", self.host)?;
        if self.holds.is_empty() {
            f.write_str("no wave of this apply")?;
        } else {
            write!(
                f,
                "wave{} {}",
                if self.holds.len() == 1 { "" } else { "s" },
                self.holds.join(", ")
            )?;
        }
        if let Some(w) = &self.between {
            write!(f, " and is between states in wave {w} (its undo failed)")?;
        }
        Ok(())
    }
}

/// Where each host of `held` (host, waves kept in order) stands when undoing `wave` failed on
/// `failed_hosts`.
pub fn standings(held: &[(&str, Vec<String>)], wave: &str, failed_hosts: &[&str]) -> Vec<Standing> {
    held.iter()
        .map(|(host, waves)| Standing {
            host: host.to_string(),
            holds: waves.clone(),
            between: failed_hosts.contains(host).then(|| wave.to_string()),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order() -> Vec<String> {
        ["one", "two", "three"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    }

    fn changes(waves: &[&str]) -> ChangeSet {
        use crate::diff::{Change, HostChanges, ProcessAction, WaveChanges};
        ChangeSet {
            hosts: vec![HostChanges {
                host: "mainpc".into(),
                waves: waves
                    .iter()
                    .map(|w| WaveChanges {
                        wave: w.to_string(),
                        changes: vec![Change::Process {
                            name: format!("p-{w}"),
                            action: ProcessAction::Start,
                            reason: String::new(),
                        }],
                    })
                    .collect(),
                removals: vec![],
                problems: vec![],
            }],
            schema: crate::diff::SCHEMA,
            unreachable: vec![],
        }
    }

    #[test]
    fn a_selection_names_waves_or_a_run_of_them() {
        let sel = |waves: &[&str], from: Option<&str>, to: Option<&str>| WaveSelection {
            waves: waves.iter().map(|s| s.to_string()).collect(),
            from: from.map(str::to_string),
            to: to.map(str::to_string),
        };
        assert_eq!(sel(&[], None, None).resolve(&order()).unwrap(), order());
        assert_eq!(
            sel(&["two"], None, None).resolve(&order()).unwrap(),
            vec!["two"]
        );
        assert_eq!(
            sel(&[], Some("two"), None).resolve(&order()).unwrap(),
            vec!["two", "three"]
        );
        assert_eq!(
            sel(&[], None, Some("two")).resolve(&order()).unwrap(),
            vec!["one", "two"]
        );
        assert!(
            sel(&["nope"], None, None)
                .resolve(&order())
                .unwrap_err()
                .contains("no wave is named `nope`")
        );
    }

    #[test]
    fn a_wave_whose_predecessors_are_not_applied_is_refused() {
        let mut c = changes(&["one", "two"]);
        let err = select_waves(&mut c, &order(), &["two".to_string()]).unwrap_err();
        assert_eq!(
            err,
            vec!["host mainpc: wave two comes after one, which is not applied there yet"]
        );
        let mut c = changes(&["two", "three"]);
        select_waves(&mut c, &order(), &["two".to_string()]).unwrap();
        assert_eq!(c.hosts[0].waves.len(), 1);
        assert_eq!(c.hosts[0].waves[0].wave, "two");
    }
    use crate::diff::{HostChanges, Unreachable, WaveChanges};

    fn set(hosts: Vec<HostChanges>, unreachable: Vec<Unreachable>) -> ChangeSet {
        ChangeSet {
            schema: crate::diff::SCHEMA,
            hosts,
            unreachable,
        }
    }

    fn host(waves: usize, problems: &[&str]) -> HostChanges {
        HostChanges {
            host: "h".into(),
            waves: (0..waves)
                .map(|i| WaveChanges {
                    wave: format!("w{i}"),
                    changes: vec![],
                })
                .collect(),
            removals: vec![],
            problems: problems.iter().map(|p| p.to_string()).collect(),
        }
    }

    #[test]
    fn an_unreachable_host_or_a_problem_blocks_an_apply() {
        let gone = Unreachable {
            host: "g".into(),
            error: "down".into(),
            hint: None,
        };
        assert_eq!(
            readiness(&set(vec![host(1, &[])], vec![gone])),
            Readiness::Unreachable
        );
        assert_eq!(
            readiness(&set(vec![host(1, &["drift"])], vec![])),
            Readiness::Blocked
        );
        assert_eq!(
            readiness(&set(vec![host(0, &[])], vec![])),
            Readiness::InSync
        );
        assert_eq!(
            readiness(&set(vec![host(2, &[])], vec![])),
            Readiness::Ready
        );
    }

    #[test]
    fn a_failed_step_undoes_its_wave_whatever_on_failure_says() {
        for f in [OnFailure::Rollback, OnFailure::Pause, OnFailure::Continue] {
            assert_eq!(next(WaveResult::StepFailed, f), Next::Undo);
            assert_eq!(next(WaveResult::Passed, f), Next::Proceed);
        }
    }

    #[test]
    fn a_failed_gate_does_what_on_failure_says() {
        assert_eq!(
            next(WaveResult::GateFailed, OnFailure::Rollback),
            Next::Undo
        );
        assert_eq!(next(WaveResult::GateFailed, OnFailure::Pause), Next::Pause);
        assert_eq!(
            next(WaveResult::GateFailed, OnFailure::Continue),
            Next::Proceed
        );
        assert!(Next::Pause.keeps() && Next::Proceed.keeps() && !Next::Undo.keeps());
    }

    #[test]
    fn an_undo_covers_every_host_the_wave_touched_once() {
        assert_eq!(undo_hosts(&["a", "b", "a"]), vec!["a", "b"]);
    }

    #[test]
    fn standings_say_which_waves_each_host_holds_and_where_an_undo_failed() {
        let held = vec![("a", vec!["w1".to_string()]), ("b", vec![])];
        let s = standings(&held, "w2", &["b"]);
        assert_eq!(s[0].to_string(), "a holds wave w1");
        assert_eq!(
            s[1].to_string(),
            "b holds no wave of this apply and is between states in wave w2 (its undo failed)"
        );
    }
}
