//! The plan's resources under one name each (`kind.name`), the unit that waves select.

use std::fmt;
use std::ops::Range;

use crate::plan::schema::Plan;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Hub,
    Pushgateway,
    Nats,
    Stream,
    Batch,
    Process,
    Migration,
    File,
    Alertmanager,
    Blackbox,
}

impl Kind {
    pub const ALL: [Kind; 10] = [
        Kind::Hub,
        Kind::Pushgateway,
        Kind::Nats,
        Kind::Stream,
        Kind::Batch,
        Kind::Process,
        Kind::Migration,
        Kind::File,
        Kind::Alertmanager,
        Kind::Blackbox,
    ];

    /// The plan key (`[[hub]]`) and selector prefix (`hub.edge`).
    pub fn key(self) -> &'static str {
        match self {
            Kind::Hub => "hub",
            Kind::Pushgateway => "pushgateway",
            Kind::Nats => "nats",
            Kind::Stream => "stream",
            Kind::Batch => "batch",
            Kind::Process => "process",
            Kind::Migration => "migration",
            Kind::File => "file",
            Kind::Alertmanager => "alertmanager",
            Kind::Blackbox => "blackbox",
        }
    }

    /// How messages name one of this kind.
    pub fn noun(self) -> &'static str {
        match self {
            Kind::Nats => "nats server",
            Kind::Migration => "migration set",
            Kind::Blackbox => "blackbox exporter",
            k => k.key(),
        }
    }

    /// Kinds whose entries may run on many hosts (`hosts`): their names are unique per host.
    pub fn is_per_host(self) -> bool {
        matches!(self, Kind::Process | Kind::File)
    }

    pub fn from_key(key: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.key() == key)
    }
}

/// One resource of the plan: its kind, name, the host it lives on and where it is named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    pub kind: Kind,
    pub name: String,
    pub host: String,
    pub span: Range<usize>,
}

impl Resource {
    pub fn id(&self) -> ResourceId {
        ResourceId {
            kind: self.kind,
            name: self.name.clone(),
        }
    }

    /// The resource on its host: one of the instances of a resource with `hosts`.
    pub fn instance(&self) -> Instance {
        (self.id(), self.host.clone())
    }
}

/// A resource on one host: what a wave deploys (a selector `host.NAME` takes the instances of
/// one host only).
pub type Instance = (ResourceId, String);

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ResourceId {
    pub kind: Kind,
    pub name: String,
}

impl fmt::Display for ResourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.kind.key(), self.name)
    }
}

impl Plan {
    /// Every resource in file order, kind by kind. A stream lives on its server's host.
    pub fn resources(&self) -> Vec<Resource> {
        let mut out = Vec::new();
        let mut push = |kind, name: &crate::plan::schema::Name, host: &str| {
            out.push(Resource {
                kind,
                name: name.get_ref().to_string(),
                host: host.to_string(),
                span: name.span(),
            })
        };
        for r in &self.hubs {
            push(Kind::Hub, &r.name, r.host.get_ref());
        }
        for r in &self.pushgateways {
            push(Kind::Pushgateway, &r.name, r.host.get_ref());
        }
        for r in &self.nats {
            push(Kind::Nats, &r.name, r.host.get_ref());
        }
        for r in &self.streams {
            let host = self
                .nats
                .iter()
                .find(|n| n.name.get_ref() == r.server.get_ref())
                .map(|n| n.host.get_ref().as_str())
                .unwrap_or("");
            push(Kind::Stream, &r.name, host);
        }
        for r in &self.batches {
            push(Kind::Batch, &r.name, r.host.get_ref());
        }
        for r in &self.processes {
            push(Kind::Process, &r.name, r.host.get_ref());
        }
        for r in &self.migrations {
            push(Kind::Migration, &r.name, r.host.get_ref());
        }
        for r in &self.files {
            push(Kind::File, &r.name, r.host.get_ref());
        }
        for r in &self.alertmanagers {
            push(Kind::Alertmanager, &r.name, r.host.get_ref());
        }
        for r in &self.blackboxes {
            push(Kind::Blackbox, &r.name, r.host.get_ref());
        }
        out
    }
}

/// A supervisor program that a resource runs on its host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Program {
    pub host: String,
    pub name: String,
    pub resource: ResourceId,
    pub span: Range<usize>,
}

/// The supervisor program name of an agent.
pub fn agent_program(agent: &str) -> String {
    format!("agent-{agent}")
}

impl Plan {
    /// Every supervisor program the plan runs: one per hub, Pushgateway, NATS server and
    /// process, alertmanager and blackbox exporter (named like the resource), one per agent (`agent-NAME`).
    pub fn programs(&self) -> Vec<Program> {
        let mut out = Vec::new();
        for r in self.resources() {
            match r.kind {
                Kind::Hub
                | Kind::Pushgateway
                | Kind::Nats
                | Kind::Process
                | Kind::Alertmanager
                | Kind::Blackbox => out.push(Program {
                    host: r.host.clone(),
                    name: r.name.clone(),
                    resource: r.id(),
                    span: r.span.clone(),
                }),
                Kind::Batch => {
                    let batch = self.batches.iter().find(|b| *b.name.get_ref() == r.name);
                    for agent in batch.map(|b| b.agents.as_slice()).unwrap_or_default() {
                        out.push(Program {
                            host: r.host.clone(),
                            name: agent_program(agent.get_ref()),
                            resource: r.id(),
                            span: agent.span(),
                        });
                    }
                }
                Kind::Stream | Kind::Migration | Kind::File => {}
            }
        }
        out
    }
}

/// A wave's `select` entry: `kind.name`, `kind.*` or `host.NAME`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    One(Kind, String),
    AllOf(Kind),
    Host(String),
}

impl Selector {
    pub fn parse(text: &str) -> Result<Selector, String> {
        let expected = "expected `kind.name`, `kind.*` or `host.NAME` where kind is one of hub, pushgateway, nats, stream, batch, process, migration, file, alertmanager, blackbox";
        let (prefix, rest) = text
            .split_once('.')
            .ok_or_else(|| format!("invalid selector `{text}`, {expected}"))?;
        if prefix == "host" {
            return Ok(Selector::Host(rest.to_string()));
        }
        let kind = Kind::from_key(prefix)
            .ok_or_else(|| format!("unknown kind `{prefix}` in selector `{text}`, {expected}"))?;
        Ok(match rest {
            "*" => Selector::AllOf(kind),
            name => Selector::One(kind, name.to_string()),
        })
    }

    pub fn matches(&self, r: &Resource) -> bool {
        match self {
            Selector::One(kind, name) => r.kind == *kind && &r.name == name,
            Selector::AllOf(kind) => r.kind == *kind,
            Selector::Host(host) => &r.host == host,
        }
    }
}
