//! SSH control masters that outlive one wavectl run: the operator's own (their ssh_config
//! sets `ControlPath` and a master is up), or the one an earlier `--persist` run left. Either
//! is used as it is and left running; only a master wavectl starts without `--persist` is
//! closed at the end of the run.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::process::Command;

/// How ssh reaches one host: the arguments every `ssh` call for it takes.
pub struct Target<'a> {
    pub destination: &'a str,
    pub port: Option<u16>,
    pub config: Option<&'a str>,
}

impl Target<'_> {
    fn command(&self) -> Command {
        let mut c = Command::new("ssh");
        c.stdin(Stdio::null()).kill_on_drop(true);
        if let Some(cfg) = self.config {
            c.arg("-F").arg(cfg);
        }
        if let Some(port) = self.port {
            c.arg("-p").arg(port.to_string());
        }
        c
    }

    /// The control socket `--persist` masters of this target live at: one per destination,
    /// port and ssh_config, in a directory of this user's.
    pub fn persist_path(&self) -> PathBuf {
        let mut h = Sha256::new();
        h.update(self.destination.as_bytes());
        h.update([0]);
        h.update(self.port.unwrap_or(0).to_be_bytes());
        h.update([0]);
        h.update(self.config.unwrap_or("").as_bytes());
        let id = hex::encode(&h.finalize()[..8]);
        persist_dir().join(format!("cm-{id}"))
    }

    /// A live master for this target at `ctl`.
    async fn alive(&self, ctl: &Path) -> bool {
        if !ctl.exists() {
            return false;
        }
        let mut c = self.command();
        c.arg("-S")
            .arg(ctl)
            .args(["-O", "check", "-o", "BatchMode=yes"])
            .arg(self.destination)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        matches!(c.status().await, Ok(s) if s.success())
    }

    /// The `ControlPath` the ssh_config gives this target, when it gives one. Asking ssh
    /// (`ssh -G`) costs a process: skipped when no config ssh reads mentions one.
    async fn configured_path(&self) -> Option<PathBuf> {
        if !may_set_control_path(self.config) {
            return None;
        }
        let mut c = self.command();
        c.arg("-G").arg(self.destination).stderr(Stdio::null());
        let out = c.output().await.ok()?;
        if !out.status.success() {
            return None;
        }
        String::from_utf8_lossy(&out.stdout).lines().find_map(|l| {
            let path = l.strip_prefix("controlpath ")?.trim();
            (path != "none" && path.starts_with('/')).then(|| PathBuf::from(path))
        })
    }

    /// A running master to use: the operator's own first, then one a `--persist` run left.
    pub async fn existing(&self) -> Option<PathBuf> {
        if let Some(path) = self.configured_path().await
            && self.alive(&path).await
        {
            return Some(path);
        }
        let ours = self.persist_path();
        (trusted(&persist_dir()) && self.alive(&ours).await).then_some(ours)
    }

    /// Starts a master at `persist_path()` that stays up `idle` after its last use. The error
    /// is ssh's own message.
    pub async fn start_persistent(
        &self,
        idle: Duration,
        connect_timeout: Duration,
    ) -> Result<PathBuf, String> {
        let ctl = self.persist_path();
        let dir = persist_dir();
        if !dir.exists() {
            std::fs::create_dir_all(&dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            restrict(&dir);
        }
        if !trusted(&dir) {
            return Err(format!(
                "{} is not this user's alone (owner and mode 0700); remove it",
                dir.display()
            ));
        }
        let log = ctl.with_extension("log");
        let _ = std::fs::remove_file(&ctl);
        let mut c = self.command();
        // `-f`: ssh goes to the background once authenticated; its messages go to `-E`, not to
        // a pipe the background master would keep open.
        c.arg("-M")
            .arg("-S")
            .arg(&ctl)
            .arg("-E")
            .arg(&log)
            .args([
                "-f",
                "-N",
                "-o",
                "BatchMode=yes",
                "-o",
                "StrictHostKeyChecking=yes",
            ])
            .arg("-o")
            .arg(format!("ControlPersist={}s", idle.as_secs().max(1)))
            .arg("-o")
            .arg(format!(
                "ConnectTimeout={}",
                connect_timeout.as_secs().max(1)
            ))
            .args(["-o", "ServerAliveInterval=5"])
            .arg(self.destination)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let status = tokio::time::timeout(connect_timeout + Duration::from_secs(2), c.status())
            .await
            .map_err(|_| "no answer in time".to_string())?
            .map_err(|e| format!("cannot run ssh: {e}"))?;
        if status.success() && ctl.exists() {
            // Wanted only when the start fails; the master keeps its open file.
            let _ = std::fs::remove_file(&log);
            return Ok(ctl);
        }
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        Err(text
            .trim()
            .lines()
            .last()
            .unwrap_or("ssh failed")
            .to_string())
    }
}

/// Whether the ssh configs this target reads could set a `ControlPath`: `-F FILE` alone, else
/// the user's and the system's (an `Include` could name any file: then it could).
fn may_set_control_path(config: Option<&str>) -> bool {
    let files: Vec<PathBuf> = match config {
        Some(cfg) => vec![PathBuf::from(cfg)],
        None => {
            let mut v = vec![PathBuf::from("/etc/ssh/ssh_config")];
            if let Some(home) = std::env::var_os("HOME") {
                v.push(PathBuf::from(home).join(".ssh/config"));
            }
            v
        }
    };
    files.iter().any(|f| {
        std::fs::read_to_string(f).is_ok_and(|t| {
            let t = t.to_ascii_lowercase();
            t.contains("controlpath") || t.contains("include")
        })
    })
}

/// This user's directory of masters (the owner of `/proc/self` is this process's user).
fn persist_dir() -> PathBuf {
    std::env::temp_dir().join(format!("wavectl-{}", my_uid()))
}

fn my_uid() -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").map_or(0, |m| m.uid())
}

/// A directory of masters someone else could reach into (not ours, or open to others) is
/// never used: its sockets would hand our commands to their connection.
fn trusted(dir: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(dir)
        .is_ok_and(|m| m.is_dir() && m.uid() == my_uid() && m.mode() & 0o077 == 0)
}

fn restrict(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
}
