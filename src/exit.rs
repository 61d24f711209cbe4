//! Exit statuses, decided in one place (see the README's table).

use std::process::ExitCode;

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
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> ExitCode {
        ExitCode::from(e as u8)
    }
}
