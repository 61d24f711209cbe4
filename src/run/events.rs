//! What a run reports while it works; the CLI decides how to show it (bars, lines, JSON).

use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A host's changes for a wave start: `steps` in all.
    WaveStart {
        host: String,
        wave: String,
        wave_index: usize,
        wave_count: usize,
        steps: usize,
    },
    /// One step finished on a host.
    Step {
        host: String,
        wave: String,
        step: usize,
        steps: usize,
        what: String,
    },
    /// A host finished a wave.
    WaveDone { host: String, wave: String },
    /// A step failed: what ran last and what the host said.
    Failed {
        host: String,
        wave: String,
        step: String,
        error: String,
    },
    /// A check of a wave's gate was judged.
    Gate {
        wave: String,
        check: String,
        passed: bool,
        detail: String,
    },
    /// A wave was undone on a host after a failed step or gate.
    RolledBack { host: String, wave: String },
    /// The new generation is recorded on the host.
    Recorded { host: String, generation: u64 },
}

/// Receives events from any task.
pub trait Sink: Send + Sync {
    fn event(&self, e: Event);
}

/// The plain one-line form of an event (logs, pipes, and the gate lines above the bars).
impl std::fmt::Display for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Event::WaveStart {
                host,
                wave,
                wave_index,
                wave_count,
                steps,
            } => {
                write!(
                    f,
                    "{host}: wave {}/{wave_count} {wave}: {steps} steps",
                    wave_index + 1
                )
            }
            Event::Step {
                host,
                wave,
                step,
                steps,
                what,
            } => write!(f, "{host}: {wave}: step {step}/{steps} {what}"),
            Event::WaveDone { host, wave } => write!(f, "{host}: {wave}: done"),
            Event::Failed {
                host,
                wave,
                step,
                error,
            } => write!(f, "{host}: {wave}: FAILED at {step}: {error}"),
            Event::Recorded { host, generation } => {
                write!(f, "{host}: generation {generation} recorded")
            }
            Event::Gate {
                wave,
                check,
                passed,
                detail,
            } => {
                write!(
                    f,
                    "gate {wave}: {} {check}: {detail}",
                    if *passed { "pass" } else { "FAIL" }
                )
            }
            Event::RolledBack { host, wave } => write!(f, "{host}: {wave}: rolled back"),
        }
    }
}
