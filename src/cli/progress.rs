//! Showing a run's events: a bar per host on a TTY (indicatif), plain lines otherwise, JSON lines
//! with `--output json`.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Mutex;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::run::events::{Event, Sink};

/// One bar per host: "wave 3/9 week1-nats [=====>   ] 5/12 write files/...".
pub struct Bars {
    multi: MultiProgress,
    bars: Mutex<BTreeMap<String, ProgressBar>>,
}

impl Bars {
    pub fn new() -> Self {
        Bars {
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
            bars: Mutex::new(BTreeMap::new()),
        }
    }

    fn bar(&self, host: &str) -> ProgressBar {
        let mut bars = self.bars.lock().unwrap_or_else(|e| e.into_inner());
        bars.entry(host.to_string())
            .or_insert_with(|| {
                let style =
                    ProgressStyle::with_template("{prefix:>10} {msg:32!} [{bar:30}] {pos}/{len}")
                        .unwrap_or_else(|_| ProgressStyle::default_bar())
                        .progress_chars("=> ");
                let b = self.multi.add(ProgressBar::new(0).with_style(style));
                b.set_prefix(host.to_string());
                b
            })
            .clone()
    }
}

impl Default for Bars {
    fn default() -> Self {
        Self::new()
    }
}

impl Sink for Bars {
    fn event(&self, e: Event) {
        match e {
            Event::WaveStart {
                host,
                wave,
                wave_index,
                wave_count,
                steps,
            } => {
                let b = self.bar(&host);
                b.set_length(steps as u64);
                b.set_position(0);
                b.set_message(format!("wave {}/{wave_count} {wave}", wave_index + 1));
            }
            Event::Step { host, step, .. } => self.bar(&host).set_position(step as u64),
            Event::WaveDone { .. } => {}
            Event::Failed {
                host, step, error, ..
            } => {
                let b = self.bar(&host);
                b.abandon_with_message(format!("FAILED at {step}: {error}"));
            }
            Event::Recorded { host, generation } => self
                .bar(&host)
                .finish_with_message(format!("generation {generation} recorded")),
            gate @ Event::Gate { .. } => {
                let _ = self.multi.println(gate.to_string());
            }
            Event::RolledBack { host, wave } => self
                .bar(&host)
                .abandon_with_message(format!("wave {wave} rolled back")),
        }
    }
}

/// Plain lines on stderr, for logs and pipes.
pub struct Lines;

impl Sink for Lines {
    fn event(&self, e: Event) {
        let _ = writeln!(std::io::stderr(), "{e}");
    }
}

/// One JSON object per line on stdout (`apply --output json`).
pub struct JsonLines;

impl Sink for JsonLines {
    fn event(&self, e: Event) {
        if let Ok(text) = serde_json::to_string(&e) {
            let _ = writeln!(std::io::stdout(), "{text}");
        }
    }
}
