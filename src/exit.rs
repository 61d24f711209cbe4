//! Exit statuses, decided in one place (see the README's table): what a command's outcome or
//! error means as a process status.

use std::process::ExitCode;

use crate::run::apply::ApplyError;
use crate::run::decide::Readiness;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Success, or in sync.
    Ok = 0,
    /// Bad input, unreachable host, internal error.
    Error = 1,
    /// `diff` found changes.
    Drift = 2,
    /// A gate failed and its wave was rolled back.
    GateFailed = 3,
    /// A host is locked by another apply.
    Locked = 4,
    /// A rollback itself failed: the state needs a human.
    RollbackFailed = 5,
    /// Refused: the hosts are pinned by an emergency rollback.
    Pinned = 6,
    /// Interrupted by SIGINT/SIGTERM: the current wave was undone.
    Interrupted = 130,
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> ExitCode {
        ExitCode::from(e as u8)
    }
}

/// The status of a command: what it returned, or what its error means.
pub fn exit_of(result: &anyhow::Result<Exit>) -> Exit {
    match result {
        Ok(exit) => *exit,
        Err(e) => of_error(e),
    }
}

/// What an error means: an apply's failure has its own status; output closed early (piped
/// into `head`) is not an error; everything else is 1.
pub fn of_error(e: &anyhow::Error) -> Exit {
    if is_broken_pipe(e) {
        return Exit::Ok;
    }
    let has = |is: fn(&(dyn std::error::Error + 'static)) -> bool| e.chain().any(is);
    if has(|c| c.is::<crate::state::Pinned>()) {
        return Exit::Pinned;
    }
    if has(|c| c.is::<crate::cli::apply::RollbackStopped>()) {
        return Exit::RollbackFailed;
    }
    match e.chain().find_map(|c| c.downcast_ref::<ApplyError>()) {
        Some(ApplyError::Locked { .. }) => Exit::Locked,
        Some(ApplyError::UndoFailed { .. }) => Exit::RollbackFailed,
        Some(ApplyError::GateFailed { .. }) => Exit::GateFailed,
        Some(ApplyError::Interrupted { .. }) => Exit::Interrupted,
        _ => Exit::Error,
    }
}

pub fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain()
        .filter_map(|c| c.downcast_ref::<std::io::Error>())
        .any(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
}

/// What `diff` exits with: 0 in sync, 2 changes, 1 when a host is unreachable or a problem
/// blocks an apply.
pub fn of_readiness(r: Readiness) -> Exit {
    match r {
        Readiness::Unreachable | Readiness::Blocked => Exit::Error,
        Readiness::InSync => Exit::Ok,
        Readiness::Ready => Exit::Drift,
    }
}

/// What a command that reads every host exits with: 1 when one did not answer.
pub fn of_reach(all_reached: bool) -> Exit {
    if all_reached { Exit::Ok } else { Exit::Error }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_apply_failure_has_its_status() {
        let gate = ApplyError::GateFailed {
            wave: "w".into(),
            failures: String::new(),
            rolled_back: true,
        };
        assert_eq!(of_error(&gate.into()), Exit::GateFailed);
        let other = anyhow::anyhow!("bad input");
        assert_eq!(of_error(&other), Exit::Error);
        let pipe = anyhow::Error::from(std::io::Error::from(std::io::ErrorKind::BrokenPipe));
        assert_eq!(exit_of(&Err(pipe)), Exit::Ok);
        assert_eq!(of_readiness(Readiness::Ready), Exit::Drift);
        assert_eq!(of_readiness(Readiness::Blocked), Exit::Error);
    }

    #[test]
    fn a_pin_refuses_with_6_and_a_stopped_rollback_needs_a_human() {
        let pin = crate::state::Pin {
            rev: "phase1".into(),
            commit: "c".into(),
            operator: "o".into(),
            pinned_at: "t".into(),
            reason: None,
        };
        let pinned = anyhow::Error::new(crate::state::Pinned {
            pins: vec![("mainpc".into(), pin)],
        })
        .context("refused");
        assert_eq!(of_error(&pinned), Exit::Pinned);
        let stopped = crate::cli::apply::RollbackStopped {
            rev: "phase1".into(),
            cause: "gate failed".into(),
        };
        assert_eq!(of_error(&stopped.into()), Exit::RollbackFailed);
    }
}
