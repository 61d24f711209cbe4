//! The plan's `[drill]` section: the pass thresholds of `wavectl drill` (defaults from the
//! seed: back within 5 s, fail over within 5 s, no message lost), and their checks.

use std::ops::Range;
use std::time::Duration;

use serde::Deserialize;
use serde_spanned::Spanned;

use crate::diagnostic::Diagnostic;
use crate::units::Dur;

/// `[drill]`: every field optional.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DrillSettings {
    /// kill-process: the longest a killed program may take to run again (new pid, health
    /// probe green). Seed: 5s.
    pub restart_max: Option<Spanned<Dur>>,
    /// stop-service: the longest until the central hub sees the agents' heartbeats again
    /// after the outage is detected. Seed: 5s.
    pub failover_max: Option<Spanned<Dur>>,
    /// freeze-host and partition: the longest from the restore (SIGCONT, link healed) until
    /// the host's health probes are green again / both aggregate streams hold every probe.
    pub recovery_max: Option<Spanned<Dur>>,
    /// partition: probe messages that may be missing after the heal. Seed: 0.
    pub max_loss: Option<Spanned<u64>>,
    /// partition: numbered probe messages published on each side during the cut (100).
    pub probe_messages: Option<Spanned<u64>>,
}

/// The thresholds a drill judges against, defaults filled in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Thresholds {
    pub restart_max_ms: u64,
    pub failover_max_ms: u64,
    pub recovery_max_ms: u64,
    pub max_loss: u64,
    pub probe_messages: u64,
}

pub const DEFAULT_RESTART_MS: u64 = 5_000;
pub const DEFAULT_FAILOVER_MS: u64 = 5_000;
pub const DEFAULT_RECOVERY_MS: u64 = 30_000;
pub const DEFAULT_PROBE_MESSAGES: u64 = 100;
const MIN_DURATION: Duration = Duration::from_millis(100);
const MAX_DURATION: Duration = Duration::from_secs(600);
const MAX_PROBE_MESSAGES: u64 = 100_000;

impl DrillSettings {
    pub fn thresholds(&self) -> Thresholds {
        let ms = |d: &Option<Spanned<Dur>>, default: u64| {
            d.as_ref()
                .map_or(default, |d| d.get_ref().value().as_millis() as u64)
        };
        Thresholds {
            restart_max_ms: ms(&self.restart_max, DEFAULT_RESTART_MS),
            failover_max_ms: ms(&self.failover_max, DEFAULT_FAILOVER_MS),
            recovery_max_ms: ms(&self.recovery_max, DEFAULT_RECOVERY_MS),
            max_loss: self.max_loss.as_ref().map_or(0, |n| *n.get_ref()),
            probe_messages: self
                .probe_messages
                .as_ref()
                .map_or(DEFAULT_PROBE_MESSAGES, |n| *n.get_ref()),
        }
    }

    /// Problems of the section, each at its value.
    pub fn validate(&self, file: &str) -> Vec<Diagnostic> {
        let mut out = Vec::new();
        let mut err = |span: Range<usize>, msg: String| out.push(Diagnostic::new(file, span, msg));
        for (key, d) in [
            ("restart_max", &self.restart_max),
            ("failover_max", &self.failover_max),
            ("recovery_max", &self.recovery_max),
        ] {
            if let Some(d) = d {
                let v = d.get_ref().value();
                if !(MIN_DURATION..=MAX_DURATION).contains(&v) {
                    err(
                        d.span(),
                        format!(
                            "drill `{key}` of {} is out of range, expected a duration from 100ms to 10m",
                            d.get_ref().compact()
                        ),
                    );
                }
            }
        }
        if let Some(n) = &self.probe_messages
            && !(1..=MAX_PROBE_MESSAGES).contains(n.get_ref())
        {
            err(
                n.span(),
                format!(
                    "drill `probe_messages` of {} is out of range, expected 1 to {MAX_PROBE_MESSAGES}",
                    n.get_ref()
                ),
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(section: &str) -> (DrillSettings, Vec<Diagnostic>) {
        let text = format!("version = 1\nname = \"p\"\n{section}");
        let (plan, mut diags) = crate::plan::load::parse_plan("p.toml", &text);
        diags.extend(plan.drill.validate("p.toml"));
        (plan.drill, diags)
    }

    #[test]
    fn defaults_are_the_seeds_targets() {
        let t = DrillSettings::default().thresholds();
        assert_eq!(t.restart_max_ms, 5_000);
        assert_eq!(t.failover_max_ms, 5_000);
        assert_eq!(t.max_loss, 0);
        assert_eq!(t.probe_messages, 100);
    }

    #[test]
    fn the_plan_overrides_each_threshold() {
        let (s, diags) =
            parse("[drill]\nrestart_max = \"2s\"\nmax_loss = 3\nprobe_messages = 250\n");
        assert!(diags.is_empty(), "{diags:?}");
        let t = s.thresholds();
        assert_eq!(t.restart_max_ms, 2_000);
        assert_eq!(t.failover_max_ms, 5_000);
        assert_eq!(t.max_loss, 3);
        assert_eq!(t.probe_messages, 250);
    }

    #[test]
    fn out_of_range_values_are_refused_at_their_position() {
        let (_, diags) = parse("[drill]\nrestart_max = \"0s\"\nprobe_messages = 0\n");
        let msgs: Vec<_> = diags.iter().map(|d| d.message.as_str()).collect();
        assert_eq!(diags.len(), 2, "{msgs:?}");
        assert!(msgs[0].contains("restart_max"), "{msgs:?}");
        assert!(msgs[1].contains("probe_messages"), "{msgs:?}");
    }
}
