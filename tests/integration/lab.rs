//! A private lab for one test: real sshd "machines" on `127.0.N.2`, `127.0.N.3`, ... with their own
//! users and roots, started by `scripts/lab` and torn down (processes by PID, users, files) when
//! the test ends, pass or fail.

use std::path::PathBuf;
use std::process::{Command, Output};

use tempfile::TempDir;

use crate::common::project_root;

#[must_use]
pub struct Lab {
    dir: TempDir,
}

impl Lab {
    /// Starts `hosts` machines on 127.0.`net`.x; each test uses its own `net`.
    pub fn up(net: u8, hosts: usize) -> Lab {
        Lab::up_with(net, hosts, &[])
    }

    /// `up` with more options for `scripts/lab up` (`--supervisor pm2`).
    pub fn up_with(net: u8, hosts: usize, options: &[&str]) -> Lab {
        let dir = tempfile::Builder::new()
            .prefix("wvlab")
            .tempdir_in("/tmp")
            .expect("temp dir");
        let lab = Lab { dir };
        let out = lab.script(
            &[
                "up",
                "--net",
                &format!("127.0.{net}"),
                "--tag",
                &format!("t{net}"),
                "--hosts",
                &hosts.to_string(),
            ]
            .into_iter()
            .chain(options.iter().copied())
            .collect::<Vec<_>>(),
        );
        assert!(
            out.status.success(),
            "lab up failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        lab
    }

    fn script(&self, args: &[&str]) -> Output {
        let mut full: Vec<&str> = args.to_vec();
        let dir = self.dir.path().to_string_lossy().into_owned();
        full.extend(["--dir", &dir]);
        Command::new(project_root().join("scripts/lab"))
            .args(&full)
            .output()
            .expect("run scripts/lab")
    }

    /// The lab's directory: `id_ed25519`, `known_hosts`, `ssh_config`, one directory per host.
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    pub fn inventory(&self) -> PathBuf {
        self.dir.path().join("inventory.toml")
    }

    /// The wavectl root of a host.
    pub fn root(&self, host: &str) -> PathBuf {
        self.dir.path().join(host).join("root")
    }

    /// Runs a shell command on a host as its user.
    pub fn ssh(&self, host: &str, command: &str) -> String {
        let out = Command::new("ssh")
            .arg("-F")
            .arg(self.dir.path().join("ssh_config"))
            .arg(host)
            .arg(command)
            .output()
            .expect("ssh");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn sshd_pid(&self, host: &str) -> i32 {
        let text = std::fs::read_to_string(self.dir.path().join(host).join("sshd/sshd.pid"))
            .expect("sshd pid file");
        text.trim().parse().expect("pid")
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let out = self.script(&["down", "--purge"]);
        if !out.status.success() {
            eprintln!("lab down failed: {}", String::from_utf8_lossy(&out.stderr));
        }
    }
}
