//! Where the machines are: hosts with their SSH destination, address, root and backend.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_spanned::Spanned;

use crate::diagnostic::Diagnostic;
use crate::toml_doc::Document;
use crate::units::Dur;
use crate::value::{Address, EnvKey, Ident, Root, SshDest, Text};

/// The lab inventory compiled into the binary: used when no inventory is given and the plan
/// repo has no `inventories/lab.toml`.
pub const EMBEDDED_LAB: &str = include_str!("../inventories/lab.toml");

#[derive(Debug, Default)]
pub struct Inventory {
    /// ssh_config file passed to `ssh -F`; the operator's own config when absent.
    pub ssh_config: Option<String>,
    pub connect_timeout: Option<Dur>,
    pub command_timeout: Option<Dur>,
    /// `--persist`: start ssh masters that stay up this long after their last use, for the
    /// runs that follow (not an inventory field: it is how this run connects).
    pub persist: Option<std::time::Duration>,
    pub hosts: Vec<Host>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Host {
    pub name: Spanned<Ident>,
    /// An ssh_config alias or `user@host:port`.
    pub ssh: Option<SshDest>,
    /// The address services listen on and probes connect to.
    pub address: Spanned<Address>,
    /// Directory holding all of wavectl's state and files on the host (`~` is the ssh user's
    /// home, resolved on the host).
    #[serde(default = "default_root")]
    pub root: Root,
    #[serde(default = "default_supervisor")]
    pub supervisor: Spanned<Supervisor>,
    #[serde(default)]
    pub transport: Transport,
    #[serde(default)]
    pub vars: BTreeMap<EnvKey, Text>,
    /// Environment of every script wavectl runs on the host (e.g. a `PATH` with the
    /// directories where its programs live), exported first; the supervisord it starts
    /// inherits it.
    #[serde(default)]
    pub env: BTreeMap<EnvKey, Text>,
    /// Groups the host belongs to: a plan's `hosts = "group:NAME"` picks their members.
    #[serde(default)]
    pub groups: Vec<Spanned<Ident>>,
}

/// The process supervisor a host runs its programs under (`backend::supervisor::of` picks
/// its backend). systemd is named so that an inventory asking for it gets a clear error.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Supervisor {
    #[default]
    Supervisord,
    Systemd,
    Pm2,
}

impl Supervisor {
    pub fn is_default(&self) -> bool {
        *self == Supervisor::default()
    }

    pub fn is_built(self) -> bool {
        matches!(self, Supervisor::Supervisord | Supervisor::Pm2)
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    #[default]
    Ssh,
    Local,
}

fn default_supervisor() -> Spanned<Supervisor> {
    Spanned::new(0..0, Supervisor::Supervisord)
}

fn default_root() -> Root {
    Root::new("~/.wavectl").unwrap_or_default()
}

const TOP_LEVEL: &[&str] = &["ssh_config", "connect_timeout", "command_timeout", "host"];

impl Inventory {
    pub fn host(&self, name: &str) -> Option<&Host> {
        self.hosts.iter().find(|h| h.name.get_ref() == name)
    }

    /// Every group some host belongs to, sorted.
    pub fn groups(&self) -> std::collections::BTreeSet<&str> {
        self.hosts
            .iter()
            .flat_map(|h| h.groups.iter().map(|g| g.get_ref().as_str()))
            .collect()
    }
}

/// Parses an inventory; checks its own consistency (duplicate names, missing ssh destination).
pub fn parse_inventory(file: &str, text: &str) -> (Inventory, Vec<Diagnostic>) {
    let mut doc = Document::parse(file, text);
    let mut inv = Inventory::default();
    if doc.is_malformed() {
        return (inv, doc.diagnostics);
    }
    for (key, value) in doc.take_entries() {
        match key.get_ref().as_str() {
            "ssh_config" => inv.ssh_config = doc.value(value),
            "connect_timeout" => inv.connect_timeout = doc.value(value),
            "command_timeout" => inv.command_timeout = doc.value(value),
            "host" => inv.hosts = doc.array("host", value),
            _ => doc.unknown_key(&key, TOP_LEVEL),
        }
    }
    let mut seen: BTreeMap<&str, ()> = BTreeMap::new();
    for host in &inv.hosts {
        if seen.insert(host.name.get_ref(), ()).is_some() {
            doc.error(
                host.name.span(),
                format!("duplicate host name `{}`", host.name.get_ref()),
            );
        }
        if !host.supervisor.get_ref().is_built() {
            doc.error(
                host.supervisor.span(),
                format!(
                    "supervisor `{}` is not built into this wavectl yet, expected `supervisord` or `pm2`",
                    serde_json::to_value(host.supervisor.get_ref())
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default()
                ),
            );
        }
        if host.transport == Transport::Ssh && host.ssh.is_none() {
            doc.error(
                host.name.span(),
                format!(
                    "host `{}` uses transport `ssh` but has no `ssh` destination, expected `ssh = \"alias\"` or `ssh = \"user@host:port\"`",
                    host.name.get_ref()
                ),
            );
        }
    }
    (inv, doc.diagnostics)
}
