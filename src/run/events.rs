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
