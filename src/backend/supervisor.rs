//! The supervisor seam: what every process supervisor backend gives the rest of wavectl (the
//! files a process becomes, the shell functions that drive it, the observe section, the
//! daemon's pid file), and the one place that picks the backend from the host's inventory
//! `supervisor`. A new backend is a new file implementing `Backend`, plus one arm in `of`.
//!
//! The shell functions share one contract, so apply, rollback, observe, gates and doctor are
//! written once against it (scripts run in the root, names arrive as arguments and are
//! checked against the name rule before use):
//! - `wv_procs`: every process as `NAME STATE PID START NOW [RESTARTS]`, STATE in
//!   supervisord's names (`RUNNING`, `STARTING`, `BACKOFF`, `STOPPING`, `STOPPED`, `EXITED`,
//!   `FATAL`), nothing when the daemon does not run.
//! - `wv_start`/`wv_stop`/`wv_restart NAME...`: all at once (a stop waits until they are down).
//! - `wv_update NAME...`: act on the program files of NAME... that were written or deleted
//!   (supervisord rereads all of them and ignores the names).
//! - `wv_wait_running NAME...`: until all run, or fail with the reason.

use crate::backend::script::Script;
use crate::inventory::Supervisor;
use crate::primitive::ProcessSpec;

/// Renders a built-in template with a context extended by one JSON value (`process`).
pub type Render<'a> = dyn FnMut(&'static str, Option<serde_json::Value>) -> Option<String> + 'a;

/// A file a backend wants on the host: path under the root, bytes, mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendFile {
    pub path: String,
    pub content: String,
    pub mode: u32,
}

/// One process supervisor, as the rest of wavectl sees it.
pub trait Backend: Sync {
    /// Its name, as steps and messages show it (`supervisord update`).
    fn name(&self) -> &'static str;
    /// The shell functions of the contract above.
    fn functions(&self) -> &'static str;
    /// The daemon's pid file, relative to the root.
    fn pidfile(&self) -> &'static str;
    /// Programs a host needs for the backend and the scripts around it, in report order.
    fn base_programs(&self) -> &'static [&'static str];
    /// The directory (relative to the root, with a trailing `/`) of every file the backend
    /// reads: a change under it calls for `wv_update`.
    fn files_dir(&self) -> &'static str;
    /// The program file of process `name`, relative to the root.
    fn program_path(&self, name: &str) -> String;
    /// The program whose file is `path`, if `path` is one.
    fn program_of_path<'p>(&self, path: &'p str) -> Option<&'p str>;
    /// Shell text that makes sure the daemon runs before a start, stop or restart.
    fn ensure_daemon(&self) -> &'static str;
    /// The body of the update step of a wave (`rollback`: of its undo, after the files were
    /// restored); `names` are the programs whose files the wave wrote or deleted.
    fn update_step(&self, s: &mut Script, names: &[&str], rollback: bool);
    /// The observe section: `proc ...` lines and `spawns NAME N` (starts so far) per program.
    fn observe(&self) -> &'static str;
    /// Names of helper programs of the backend itself, left out of what a host runs.
    fn helpers(&self) -> &'static [&'static str];
    /// Files every host with processes gets (the daemon's own config).
    fn host_files(&self, render: &mut Render<'_>) -> Vec<BackendFile>;
    /// The program file of one process; `argv` is its command line with the env wrapper.
    fn program_file(
        &self,
        root: &str,
        p: &ProcessSpec,
        argv: &[String],
        render: &mut Render<'_>,
    ) -> Option<BackendFile>;
}

/// The backend of a host: the one place it is chosen.
pub fn of(kind: Supervisor) -> &'static dyn Backend {
    match kind {
        Supervisor::Supervisord => &crate::backend::supervisord::Supervisord,
        Supervisor::Pm2 => &crate::backend::pm2::Pm2,
        // Refused by the inventory (`Supervisor::is_built`) before anything runs.
        Supervisor::Systemd => &crate::backend::supervisord::Supervisord,
    }
}

/// The script part that runs `function` on `name` with the daemon up.
pub fn supervise<'s>(
    s: &'s mut Script,
    backend: &dyn Backend,
    function: &'static str,
    name: &str,
) -> &'s mut Script {
    s.raw(backend.ensure_daemon()).raw(function).arg(name)
}

/// The prelude that defines the functions and runs them only when the daemon runs: for
/// observe and doctor, which must not start one.
pub fn when_running(s: &mut Script, backend: &dyn Backend) {
    s.raw("if [ -f ")
        .raw(backend.pidfile())
        .raw(" ] && kill -0 \"$(cat ")
        .raw(backend.pidfile())
        .raw(")\" 2>/dev/null; then\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_built_backend_names_its_program_files_under_its_directory() {
        for kind in [Supervisor::Supervisord, Supervisor::Pm2] {
            let b = of(kind);
            let path = b.program_path("agent-x");
            assert!(path.starts_with(b.files_dir()), "{path}");
            assert_eq!(b.program_of_path(&path), Some("agent-x"));
            assert_eq!(b.program_of_path("files/prometheus/x.yml"), None);
        }
    }
}
