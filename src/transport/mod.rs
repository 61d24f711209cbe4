//! Running a shell script on a host: over SSH (one multiplexed connection per host, reused for
//! every step, each script a session opened on the master's socket itself: no ssh client
//! process per script, so a Ctrl-C on the terminal reaches wavectl alone and the script it
//! has running on a host finishes its step) or locally (the host is a directory here).
//! Scripts go on stdin, never on a command line, so nothing they carry (secrets among it)
//! shows in `ps` on either side.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use openssh::{ControlPersist, KnownHosts, Session, SessionBuilder};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};

use crate::inventory::{Host as InventoryHost, Inventory, Transport as Kind};

#[cfg(test)]
pub mod fake;
mod host;
mod master;

pub use host::Host;

/// How a host failed to run a script.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("host {host}: cannot connect over ssh to `{destination}`: {reason}")]
    Connect {
        host: String,
        destination: String,
        reason: String,
    },
    #[error("host {host}: no answer within {seconds}s")]
    Timeout { host: String, seconds: u64 },
    #[error("host {host}: the ssh connection broke: {source}")]
    Ssh {
        host: String,
        #[source]
        source: openssh::Error,
    },
    #[error("host {host}: cannot run the local shell: {source}")]
    Local {
        host: String,
        #[source]
        source: std::io::Error,
    },
}

impl TransportError {
    pub fn hint(&self) -> Option<String> {
        match self {
            TransportError::Connect { reason, .. } if reason.contains("Host key verification failed") || reason.contains("HOST IDENTIFICATION HAS CHANGED") => Some(
                "the host's key is not the one in known_hosts: check the machine, then update known_hosts (ssh-keygen -R HOST)".into(),
            ),
            TransportError::Connect { reason, .. } if reason.contains("Permission denied") => {
                Some("authentication failed: check the user, the key (ssh-add -l) and the host's authorized_keys".into())
            }
            TransportError::Connect { .. } | TransportError::Timeout { .. } => {
                Some("check that the machine is up and sshd answers (ssh -v HOST true)".into())
            }
            _ => None,
        }
    }
}

/// What a script printed and how it ended.
#[derive(Debug, Clone)]
pub struct ScriptOutput {
    pub status: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl ScriptOutput {
    pub fn success(&self) -> bool {
        self.status == Some(0)
    }
}

/// An open line to one host.
pub enum Connection {
    Ssh {
        host: String,
        session: Session,
        timeout: Duration,
        /// The host's inventory `env`, exported before every script.
        preamble: String,
        /// The master outlives this run (the operator's, or a `--persist` one): leave it up.
        keep: bool,
    },
    Local {
        host: String,
        timeout: Duration,
        preamble: String,
    },
}

/// The `export` lines of a host's inventory `env`.
fn preamble(host: &InventoryHost) -> String {
    let mut s = crate::backend::script::Script::new();
    for (key, value) in &host.env {
        s.export(key, value);
    }
    s.into_string()
}

/// Seconds an ssh control master with no session stays up.
const MASTER_IDLE_S: usize = 300;
/// Timeouts used when the inventory sets none.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const COMMAND_TIMEOUT: Duration = Duration::from_secs(300);

pub async fn connect(
    inventory: &Inventory,
    host: &InventoryHost,
) -> Result<Connection, TransportError> {
    let name = host.name.get_ref().to_string();
    let timeout = inventory
        .command_timeout
        .as_ref()
        .map_or(COMMAND_TIMEOUT, |d| d.value());
    match host.transport {
        Kind::Local => Ok(Connection::Local {
            host: name,
            timeout,
            preamble: preamble(host),
        }),
        Kind::Ssh => {
            // `user@host:port` is split here: ssh itself would read `host:port` as a host name.
            let (destination, port) = match &host.ssh {
                Some(dest) => dest.split(),
                None => (host.address.get_ref().to_string(), None),
            };
            let connect_timeout = inventory
                .connect_timeout
                .as_ref()
                .map_or(CONNECT_TIMEOUT, |d| d.value());
            let target = master::Target {
                destination: &destination,
                port,
                config: inventory.ssh_config.as_deref(),
            };
            // A master that outlives this run: the operator's own, an earlier `--persist`
            // one, or one started now for `--persist`. Used as is, and left up.
            let kept = match target.existing().await {
                Some(ctl) => Some(Ok(ctl)),
                None => match inventory.persist {
                    Some(idle) => Some(target.start_persistent(idle, connect_timeout).await),
                    None => None,
                },
            };
            match kept {
                Some(Ok(ctl)) => {
                    return Ok(Connection::Ssh {
                        host: name,
                        session: Session::resume_mux(ctl.into_boxed_path(), None),
                        timeout,
                        preamble: preamble(host),
                        keep: true,
                    });
                }
                Some(Err(reason)) => {
                    return Err(TransportError::Connect {
                        host: name,
                        destination,
                        reason,
                    });
                }
                None => {}
            }
            let mut b = SessionBuilder::default();
            if let Some(port) = port {
                b.port(port);
            }
            b.known_hosts_check(KnownHosts::Strict)
                .connect_timeout(connect_timeout)
                .server_alive_interval(Duration::from_secs(5));
            // A wavectl killed mid-apply leaves its control master behind: it exits by itself
            // once idle this long.
            if let Some(idle) = std::num::NonZeroUsize::new(MASTER_IDLE_S) {
                b.control_persist(ControlPersist::IdleFor(idle));
            }
            if let Some(cfg) = &inventory.ssh_config {
                b.config_file(cfg);
            }
            // Control sockets live in a short path: Unix socket paths are limited to ~100 bytes.
            b.control_directory(control_dir());
            let attempt = tokio::time::timeout(
                connect_timeout + Duration::from_secs(2),
                b.connect_mux(&destination),
            )
            .await;
            match attempt {
                Err(_) => Err(TransportError::Timeout {
                    host: name,
                    seconds: connect_timeout.as_secs(),
                }),
                Ok(Err(e)) => Err(TransportError::Connect {
                    host: name,
                    destination,
                    reason: error_text(&e),
                }),
                Ok(Ok(session)) => Ok(Connection::Ssh {
                    host: name,
                    session,
                    keep: false,
                    timeout,
                    preamble: preamble(host),
                }),
            }
        }
    }
}

fn control_dir() -> PathBuf {
    let dir = std::env::temp_dir();
    let _ = std::fs::create_dir_all(&dir);
    dir
}

/// The whole cause chain of an openssh error, which carries ssh's own stderr.
fn error_text(e: &openssh::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(s.to_string().trim());
        source = s.source();
    }
    text
}

impl Connection {
    pub fn host(&self) -> &str {
        match self {
            Connection::Ssh { host, .. } | Connection::Local { host, .. } => host,
        }
    }

    /// Runs `script` with `sh -s` on the host.
    pub async fn run(&self, script: &str) -> Result<ScriptOutput, TransportError> {
        self.run_streaming(script, |_| {}).await
    }

    /// Runs `script`, handing each stdout line to `on_line` as it arrives (for progress).
    pub async fn run_streaming(
        &self,
        script: &str,
        on_line: impl FnMut(&str),
    ) -> Result<ScriptOutput, TransportError> {
        let timeout = match self {
            Connection::Ssh { timeout, .. } | Connection::Local { timeout, .. } => *timeout,
        };
        match tokio::time::timeout(timeout, self.run_inner(script, on_line)).await {
            Ok(r) => r,
            Err(_) => Err(TransportError::Timeout {
                host: self.host().to_string(),
                seconds: timeout.as_secs(),
            }),
        }
    }

    async fn run_inner(
        &self,
        script: &str,
        on_line: impl FnMut(&str),
    ) -> Result<ScriptOutput, TransportError> {
        let preamble = match self {
            Connection::Ssh { preamble, .. } | Connection::Local { preamble, .. } => preamble,
        };
        let full;
        let script = if preamble.is_empty() {
            script
        } else {
            full = format!("{preamble}{script}");
            full.as_str()
        };
        match self {
            Connection::Ssh { host, session, .. } => {
                let ssh_err = |source| TransportError::Ssh {
                    host: host.clone(),
                    source,
                };
                let io = |e| TransportError::Ssh {
                    host: host.clone(),
                    source: openssh::Error::ChildIo(e),
                };
                let mut child = session
                    .command("sh")
                    .arg("-s")
                    .stdin(openssh::Stdio::piped())
                    .stdout(openssh::Stdio::piped())
                    .stderr(openssh::Stdio::piped())
                    .spawn()
                    .await
                    .map_err(ssh_err)?;
                let (stdin, stdout, stderr) = (
                    child.stdin().take(),
                    child.stdout().take(),
                    child.stderr().take(),
                );
                let (stdout, stderr) = exchange(script, stdin, stdout, stderr, on_line)
                    .await
                    .map_err(io)?;
                let status = child.wait().await.map_err(ssh_err)?;
                Ok(ScriptOutput {
                    status: status.code(),
                    stdout,
                    stderr,
                })
            }
            Connection::Local { host, .. } => {
                let local = |source| TransportError::Local {
                    host: host.clone(),
                    source,
                };
                let mut child = tokio::process::Command::new("sh")
                    .arg("-s")
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .kill_on_drop(true)
                    .spawn()
                    .map_err(local)?;
                let (stdin, stdout, stderr) =
                    (child.stdin.take(), child.stdout.take(), child.stderr.take());
                let (stdout, stderr) = exchange(script, stdin, stdout, stderr, on_line)
                    .await
                    .map_err(local)?;
                let status = child.wait().await.map_err(local)?;
                Ok(ScriptOutput {
                    status: status.code(),
                    stdout,
                    stderr,
                })
            }
        }
    }

    /// A local address that reaches `address:port` as the host sees it: an SSH port forward,
    /// or the address itself for a local host.
    pub async fn forward(
        &self,
        address: &str,
        port: u16,
    ) -> Result<std::net::SocketAddr, TransportError> {
        let remote: std::net::SocketAddr =
            format!("{address}:{port}")
                .parse()
                .map_err(|e| TransportError::Local {
                    host: self.host().to_string(),
                    source: std::io::Error::new(
                        std::io::ErrorKind::InvalidInput,
                        format!("{address}:{port}: {e}"),
                    ),
                })?;
        match self {
            Connection::Local { .. } => Ok(remote),
            Connection::Ssh { host, session, .. } => {
                // A free local port: bind, note, release, forward (ssh binds it right away).
                let local = std::net::TcpListener::bind("127.0.0.1:0")
                    .and_then(|l| l.local_addr())
                    .map_err(|source| TransportError::Local {
                        host: host.clone(),
                        source,
                    })?;
                session
                    .request_port_forward(openssh::ForwardType::Local, local, remote)
                    .await
                    .map_err(|source| TransportError::Ssh {
                        host: host.clone(),
                        source,
                    })?;
                Ok(local)
            }
        }
    }

    pub async fn close(self) {
        match self {
            Connection::Ssh {
                session,
                keep: true,
                ..
            } => {
                let _ = session.detach();
            }
            Connection::Ssh { session, .. } => {
                let _ = session.close().await;
            }
            Connection::Local { .. } => {}
        }
    }
}

/// Feeds the script on stdin while reading stdout line by line and stderr whole, all at once
/// (a full pipe on one side must not stall the other).
async fn exchange(
    script: &str,
    stdin: Option<impl AsyncWrite + Unpin>,
    stdout: Option<impl AsyncRead + Unpin>,
    stderr: Option<impl AsyncRead + Unpin>,
    mut on_line: impl FnMut(&str),
) -> std::io::Result<(String, String)> {
    let feed = async {
        if let Some(mut w) = stdin {
            w.write_all(script.as_bytes()).await?;
            w.shutdown().await?;
        }
        Ok::<_, std::io::Error>(())
    };
    let read_out = async {
        let mut all = String::new();
        if let Some(r) = stdout {
            let mut lines = BufReader::new(r).lines();
            while let Some(line) = lines.next_line().await? {
                on_line(&line);
                all.push_str(&line);
                all.push('\n');
            }
        }
        Ok::<_, std::io::Error>(all)
    };
    let read_err = async {
        let mut buf = Vec::new();
        if let Some(mut r) = stderr {
            r.read_to_end(&mut buf).await?;
        }
        Ok::<_, std::io::Error>(String::from_utf8_lossy(&buf).into_owned())
    };
    let (fed, out, err) = tokio::join!(feed, read_out, read_err);
    // A script that exits early closes its stdin: what it printed says why, not the broken pipe.
    if let Err(e) = fed
        && e.kind() != std::io::ErrorKind::BrokenPipe
    {
        return Err(e);
    }
    Ok((out?, err?))
}
