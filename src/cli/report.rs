//! How an error is shown: `error: ...`, each `caused by: ...`, then one `hint: ...` gathered
//! from the first error in the chain that carries one.

use std::io::Write;

use crate::run::apply::ApplyError;
use crate::run::observe::HostError;
use crate::transport::TransportError;

/// An error of the command line itself, with what to run next.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Hinted {
    pub message: String,
    pub hint: String,
}

impl Hinted {
    pub fn new(message: impl Into<String>, hint: impl Into<String>) -> Self {
        Hinted {
            message: message.into(),
            hint: hint.into(),
        }
    }
}

/// The hint of the first error in the chain that has one.
pub fn hint_of(e: &anyhow::Error) -> Option<String> {
    e.chain().find_map(|c| {
        if let Some(h) = c.downcast_ref::<Hinted>() {
            Some(h.hint.clone())
        } else if let Some(a) = c.downcast_ref::<ApplyError>() {
            a.hint()
        } else if let Some(t) = c.downcast_ref::<TransportError>() {
            t.hint()
        } else if let Some(h) = c.downcast_ref::<HostError>() {
            h.hint()
        } else if c.is::<crate::cli::apply::RollbackStopped>() {
            Some("the wave whose gate failed was undone, the waves before it stay applied and are recorded: `wavectl history` shows each host's generation and its waves, `wavectl status` their health; fix the cause, then run the rollback again".into())
        } else {
            None
        }
    })
}

/// Prints `e` on stderr.
pub fn report(e: &anyhow::Error) {
    let _ = write!(anstream::stderr(), "{}", render(e));
}

/// The printed form of `e`.
pub fn render(e: &anyhow::Error) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    if let Some(invalid) = e.downcast_ref::<crate::load::Invalid>() {
        let n = invalid.diagnostics.len();
        let _ = write!(out, "{invalid}");
        let _ = writeln!(
            out,
            "error: {n} problem{} found",
            if n == 1 { "" } else { "s" }
        );
        return out;
    }
    let _ = writeln!(out, "error: {e}");
    for cause in e.chain().skip(1) {
        let _ = writeln!(out, "caused by: {cause}");
    }
    if let Some(h) = hint_of(e) {
        let _ = writeln!(out, "hint: {h}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_prints_its_causes_then_one_hint() {
        let e = anyhow::Error::from(Hinted::new("the plan repo is dirty", "commit it"))
            .context("cannot apply");
        assert_eq!(
            render(&e),
            "error: cannot apply\ncaused by: the plan repo is dirty\nhint: commit it\n"
        );
    }

    #[test]
    fn an_apply_error_brings_its_hint() {
        let e = anyhow::Error::from(ApplyError::GateFailed {
            wave: "w".into(),
            failures: "g: down".into(),
            rolled_back: false,
        });
        assert_eq!(
            render(&e),
            "error: wave w: gate failed: g: down; the wave stays applied (on_failure = pause)\nhint: inspect the hosts (`wavectl status`), then apply again or roll back\n"
        );
    }
}
