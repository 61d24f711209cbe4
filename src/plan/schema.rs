//! The plan file's shape (`version = 1`): what operators write, deserialized with spans kept on
//! every name and reference so that validation can point at them. Unknown keys are errors.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_spanned::Spanned;

use crate::units::{Dur, Size};
use crate::value::{
    Address, Arg, EnvKey, HostPath, HostSelector, Ident, Line, PgName, RelPath, Subject,
    TemplateName, Text,
};

/// A name or a reference to one, with its position.
pub type Name = Spanned<Ident>;

/// The whole plan, after each entry was deserialized on its own (see `plan::load`).
#[derive(Debug, Default)]
pub struct Plan {
    pub version: u32,
    pub name: Ident,
    pub vars: BTreeMap<EnvKey, Text>,
    pub hubs: Vec<Hub>,
    pub pushgateways: Vec<Pushgateway>,
    pub nats: Vec<NatsNode>,
    pub streams: Vec<Stream>,
    pub batches: Vec<Batch>,
    pub processes: Vec<Process>,
    pub migrations: Vec<MigrationSet>,
    pub files: Vec<PlanFile>,
    pub alertmanagers: Vec<Alertmanager>,
    pub blackboxes: Vec<Blackbox>,
    pub waves: Vec<Wave>,
}

/// A Prometheus server.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hub {
    pub name: Name,
    pub host: Name,
    pub port: Spanned<u16>,
    #[serde(default = "default_scrape_interval")]
    pub scrape_interval: Dur,
    #[serde(default = "default_retention")]
    pub retention: Dur,
    /// Hubs this one forwards its samples to; the targets run the remote-write receiver.
    #[serde(default)]
    pub remote_write: Vec<Name>,
    #[serde(default)]
    pub alert_rules: Vec<AlertRule>,
    /// How often rules are evaluated (30s).
    #[serde(default = "default_evaluation_interval")]
    pub evaluation_interval: Dur,
    /// Alertmanagers this hub sends its alerts to. A hub with `alerting` also watches the
    /// health of every subsystem of the plan with derived rules (see `health`).
    #[serde(default)]
    pub alerting: Vec<Name>,
    /// The blackbox exporter that probes NATS servers and process health URLs for this hub
    /// (default: the one on the hub's host).
    pub blackbox: Option<Name>,
    /// Settings of the derived health rules.
    #[serde(default)]
    pub health: HealthRules,
}

/// The derived health rules of an alerting hub: thresholds, and rules left out.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthRules {
    /// How long a target must be down before its alert fires (1m).
    #[serde(rename = "down_for", default = "default_down_for")]
    pub down_for: Dur,
    /// A heartbeat older than this many of its batch's intervals fires (3).
    #[serde(default = "default_heartbeat_missed")]
    pub heartbeat_missed: Spanned<u32>,
    /// Derived rules (by alert name) this hub does not get.
    #[serde(default)]
    pub skip: Vec<Spanned<Ident>>,
}

impl Default for HealthRules {
    fn default() -> Self {
        HealthRules {
            down_for: default_down_for(),
            heartbeat_missed: default_heartbeat_missed(),
            skip: Vec::new(),
        }
    }
}

/// A Prometheus Alertmanager. All alertmanagers of a plan form one cluster (each names the
/// others with `--cluster.peer`), so losing a machine neither silences nor doubles a
/// notification.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Alertmanager {
    pub name: Name,
    pub host: Name,
    #[serde(default = "default_alertmanager_port")]
    pub port: Spanned<u16>,
    /// Gossip port of the cluster (TCP and UDP).
    #[serde(default = "default_alertmanager_cluster_port")]
    pub cluster_port: Spanned<u16>,
    #[serde(default)]
    pub route: Route,
    #[serde(rename = "receiver", default)]
    pub receivers: Vec<Receiver>,
}

/// The root of the route tree: every alert goes to `receiver` (default: the first one).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    pub receiver: Option<Name>,
    #[serde(default = "default_group_by")]
    pub group_by: Vec<EnvKey>,
    #[serde(default = "default_group_wait")]
    pub group_wait: Dur,
    #[serde(default = "default_group_interval")]
    pub group_interval: Dur,
    #[serde(default = "default_repeat_interval")]
    pub repeat_interval: Dur,
    /// Sub-routes: alerts matching `match` go to their receiver instead.
    #[serde(default)]
    pub routes: Vec<SubRoute>,
}

impl Default for Route {
    fn default() -> Self {
        Route {
            receiver: None,
            group_by: default_group_by(),
            group_wait: default_group_wait(),
            group_interval: default_group_interval(),
            repeat_interval: default_repeat_interval(),
            routes: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubRoute {
    pub receiver: Name,
    /// Label name -> exact value.
    #[serde(rename = "match", default)]
    pub matchers: BTreeMap<EnvKey, Line>,
    #[serde(rename = "continue", default)]
    pub continue_: bool,
}

/// Where notifications go: exactly one of `telegram` or `webhook`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Receiver {
    pub name: Name,
    pub telegram: Option<Spanned<Telegram>>,
    pub webhook: Option<Spanned<Webhook>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Telegram {
    /// The secret holding the bot token (from the environment or the secrets file).
    pub bot_token: Spanned<EnvKey>,
    /// The chat's numeric id; may use `{{ host.vars.X }}`.
    pub chat_id: Spanned<Line>,
    /// Telegram's API (`https://api.telegram.org`); tests and air-gapped sites point it
    /// elsewhere. May use `{{ host.vars.X }}`.
    pub api_url: Option<Spanned<Line>>,
    #[serde(default = "yes")]
    pub send_resolved: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Webhook {
    /// May use `{{ host.vars.X }}`.
    pub url: Spanned<Line>,
    #[serde(default = "yes")]
    pub send_resolved: bool,
}

/// A Prometheus blackbox exporter: the hubs' prober of NATS JetStream health and process
/// health URLs.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Blackbox {
    pub name: Name,
    pub host: Name,
    #[serde(default = "default_blackbox_port")]
    pub port: Spanned<u16>,
}

#[derive(Debug, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct AlertRule {
    pub name: Ident,
    pub expr: Text,
    #[serde(rename = "for")]
    pub for_: Option<Dur>,
    #[serde(default = "default_severity")]
    pub severity: Ident,
    pub summary: Option<Text>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pushgateway {
    pub name: Name,
    pub host: Name,
    #[serde(default = "default_pushgateway_port")]
    pub port: Spanned<u16>,
}

/// A nats-server with JetStream.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatsNode {
    pub name: Name,
    pub host: Name,
    pub port: Spanned<u16>,
    pub monitor_port: Spanned<u16>,
    /// JetStream domain: one per machine in the topology that survives losing a machine.
    pub domain: Option<Name>,
    /// Cluster name: servers with the same name form a JetStream cluster (3 or more).
    pub cluster: Option<Name>,
    pub cluster_port: Option<Spanned<u16>>,
    /// Port on which this server accepts leafnode connections.
    pub leafnode_port: Option<Spanned<u16>>,
    /// Servers this one connects to as a leafnode.
    #[serde(default)]
    pub leafnode_remotes: Vec<Name>,
    #[serde(default = "default_max_store")]
    pub max_store: Size,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stream {
    pub name: Name,
    pub server: Name,
    #[serde(default)]
    pub subjects: Vec<Spanned<Subject>>,
    #[serde(default)]
    pub storage: Storage,
    #[serde(default)]
    pub retention: Retention,
    pub max_age: Option<Dur>,
    pub max_bytes: Option<i64>,
    pub max_msgs: Option<i64>,
    #[serde(default = "default_replicas")]
    pub replicas: Spanned<u8>,
    pub duplicate_window: Option<Dur>,
    /// Streams whose messages this one copies in; another machine's stream is reached through
    /// its JetStream domain.
    #[serde(default)]
    pub sources: Vec<StreamSource>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamSource {
    pub stream: Name,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Storage {
    #[default]
    File,
    Memory,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Retention {
    #[default]
    Limits,
    Interest,
    Workqueue,
}

/// A named set of agents on one host, migrated together.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Batch {
    pub name: Name,
    pub host: Name,
    pub agents: Vec<Name>,
    pub primary_hub: Name,
    pub fallback_hub: Option<Name>,
    /// Defaults to the Pushgateway on the batch's host.
    pub pushgateway: Option<Name>,
    /// Defaults to the NATS server on the batch's host.
    pub nats: Option<Name>,
    /// Command each agent runs; `{{ agent }}` is replaced by the agent's name. Defaults to the
    /// built-in heartbeat agent.
    pub command: Option<Vec<Arg>>,
    #[serde(default = "default_heartbeat")]
    pub heartbeat_interval: Dur,
}

/// One entry of the PM2-like process list. It names exactly one of `host` or `hosts`; after
/// `plan::instances` each entry is one instance on one host (`host` set, `hosts` kept).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Process {
    pub name: Name,
    #[serde(default = "no_host")]
    pub host: Name,
    pub hosts: Option<Spanned<Hosts>>,
    pub command: Spanned<Vec<Arg>>,
    /// Working directory: an absolute path on the host once templates are rendered.
    pub cwd: Option<Spanned<Arg>>,
    #[serde(default)]
    pub env: BTreeMap<EnvKey, Text>,
    /// Env files on the host, read by the process at start.
    #[serde(default)]
    pub env_files: Vec<Spanned<HostPath>>,
    /// Names of secrets, from the operator's environment or the secrets file; delivered in an
    /// env file of mode 0600, never on a command line.
    #[serde(default)]
    pub secrets: Vec<Spanned<EnvKey>>,
    #[serde(default = "yes")]
    pub autorestart: bool,
    #[serde(default = "default_restart_delay")]
    pub restart_delay: Dur,
    #[serde(default = "default_start_retries")]
    pub max_restarts: u32,
    #[serde(default = "default_min_uptime")]
    pub min_uptime: Dur,
    #[serde(default)]
    pub stop_signal: StopSignal,
    #[serde(default = "default_kill_timeout")]
    pub kill_timeout: Dur,
    #[serde(default)]
    pub log: LogRotation,
    /// Ports the process listens on (checked for clashes with everything else on the host).
    #[serde(default)]
    pub listen: Vec<Spanned<u16>>,
    pub health: Option<Spanned<Gate>>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
pub enum StopSignal {
    #[default]
    TERM,
    INT,
    QUIT,
    HUP,
    KILL,
    USR1,
    USR2,
}

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct LogRotation {
    #[serde(default = "default_log_size")]
    pub max_size: Size,
    #[serde(default = "default_log_keep")]
    pub keep: u32,
}

impl Default for LogRotation {
    fn default() -> Self {
        LogRotation {
            max_size: default_log_size(),
            keep: default_log_keep(),
        }
    }
}

/// A database and the directory of its migration files.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MigrationSet {
    pub name: Name,
    pub host: Name,
    #[serde(default)]
    pub engine: Engine,
    /// sqlite: path on the host, under the host root's `data/`.
    pub database: Option<Spanned<RelPath>>,
    /// postgres: the server the host's `psql` connects to.
    pub postgres: Option<Spanned<PgServer>>,
    /// Directory in the plan repo holding `NNNN_name.up.sql` and `NNNN_name.down.sql`.
    pub dir: Spanned<RelPath>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    #[default]
    Sqlite,
    Postgres,
}

/// Where a `postgres` migration set's database is, as the host reaches it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PgServer {
    pub host: Spanned<Address>,
    #[serde(default = "default_pg_port")]
    pub port: Spanned<u16>,
    pub user: Spanned<PgName>,
    pub dbname: Spanned<PgName>,
    /// The secret (environment or secrets file) holding the user's password.
    pub password_secret: Spanned<EnvKey>,
}

fn default_pg_port() -> Spanned<u16> {
    Spanned::new(0..0, 5432)
}

/// A file the plan puts on a host, from a template or literal content; like a process, on
/// `host` or on every host of `hosts`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanFile {
    pub name: Name,
    #[serde(default = "no_host")]
    pub host: Name,
    pub hosts: Option<Spanned<Hosts>>,
    /// Relative to the host root's `files/`.
    pub path: Spanned<RelPath>,
    pub template: Option<Spanned<TemplateName>>,
    pub content: Option<String>,
    #[serde(default = "default_mode")]
    pub mode: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Wave {
    pub name: Name,
    /// `kind.name`, `kind.*` or `host.NAME`; a resource belongs to the first wave selecting it.
    pub select: Vec<Spanned<String>>,
    /// Waves that must run before this one; otherwise waves run in file order.
    #[serde(default)]
    pub after: Vec<Name>,
    #[serde(default = "default_max_parallel")]
    pub max_parallel: u32,
    #[serde(default)]
    pub on_failure: OnFailure,
    #[serde(default)]
    pub gate: Vec<Spanned<Gate>>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OnFailure {
    #[default]
    Rollback,
    Pause,
    Continue,
}

/// A gate or health check: exactly one probe key, retried every `interval` until it passes or
/// `timeout` runs out.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Gate {
    pub http: Option<HttpProbe>,
    pub tcp: Option<TcpProbe>,
    pub process: Option<ProcessProbe>,
    pub nats_stream: Option<NatsStreamProbe>,
    pub prom_query: Option<PromQueryProbe>,
    pub command: Option<CommandProbe>,
    pub alert_quiet: Option<AlertQuietProbe>,
    #[serde(default = "default_gate_timeout")]
    pub timeout: Dur,
    #[serde(default = "default_gate_interval")]
    pub interval: Dur,
}

/// The probe of a gate, once validation made sure exactly one is set.
#[derive(Debug, Clone, Copy)]
pub enum ProbeRef<'a> {
    Http(&'a HttpProbe),
    Tcp(&'a TcpProbe),
    Process(&'a ProcessProbe),
    NatsStream(&'a NatsStreamProbe),
    PromQuery(&'a PromQueryProbe),
    Command(&'a CommandProbe),
    AlertQuiet(&'a AlertQuietProbe),
}

impl Gate {
    /// The host a probe runs on, for the probes that name one.
    pub fn probe_host_mut(&mut self) -> Vec<&mut Name> {
        let mut out = Vec::new();
        out.extend(self.http.as_mut().map(|p| &mut p.host));
        out.extend(self.tcp.as_mut().map(|p| &mut p.host));
        out.extend(self.process.as_mut().map(|p| &mut p.host));
        out.extend(self.command.as_mut().map(|p| &mut p.host));
        out
    }

    /// Every probe key that is set (validation requires exactly one).
    pub fn probes(&self) -> Vec<ProbeRef<'_>> {
        let mut out = Vec::new();
        out.extend(self.http.as_ref().map(ProbeRef::Http));
        out.extend(self.tcp.as_ref().map(ProbeRef::Tcp));
        out.extend(self.process.as_ref().map(ProbeRef::Process));
        out.extend(self.nats_stream.as_ref().map(ProbeRef::NatsStream));
        out.extend(self.prom_query.as_ref().map(ProbeRef::PromQuery));
        out.extend(self.command.as_ref().map(ProbeRef::Command));
        out.extend(self.alert_quiet.as_ref().map(ProbeRef::AlertQuiet));
        out
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpProbe {
    /// Inside a process's `health`: the process's host when not given.
    #[serde(default = "no_host")]
    pub host: Name,
    pub url: Arg,
    #[serde(default = "default_status")]
    pub status: u16,
    pub body: Option<Text>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TcpProbe {
    /// Inside a process's `health`: the process's host when not given.
    #[serde(default = "no_host")]
    pub host: Name,
    pub port: u16,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessProbe {
    /// Inside a process's `health`: the process's host when not given.
    #[serde(default = "no_host")]
    pub host: Name,
    pub name: Name,
    #[serde(default = "default_soak")]
    pub soak: Dur,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatsStreamProbe {
    pub stream: Name,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromQueryProbe {
    pub hub: Name,
    pub expr: Text,
    #[serde(default = "one")]
    pub min: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandProbe {
    /// Inside a process's `health`: the process's host when not given.
    #[serde(default = "no_host")]
    pub host: Name,
    pub run: Vec<Arg>,
}

/// Passes while the alertmanager has at most `max_firing` active, unsilenced alerts.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertQuietProbe {
    pub alertmanager: Name,
    #[serde(default)]
    pub max_firing: u64,
}

/// Where a resource runs when it names several hosts: `hosts = ["a", "b"]`, `hosts = "*"`,
/// `hosts = "group:edge"`, or a list mixing them. A single string is one selector.
#[derive(Debug, Clone, Default)]
pub struct Hosts(pub Vec<Spanned<HostSelector>>);

impl<'de> Deserialize<'de> for Hosts {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Hosts;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a list of host names or selectors, or one selector (`\"*\"`, `\"group:NAME\"`)")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Hosts, E> {
                // The span is the whole value's: `plan::instances` puts it in.
                let one = HostSelector::new(v).map_err(E::custom)?;
                Ok(Hosts(vec![Spanned::new(0..0, one)]))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Hosts, A::Error> {
                let mut out = Vec::new();
                while let Some(item) = seq.next_element::<Spanned<HostSelector>>()? {
                    out.push(item);
                }
                Ok(Hosts(out))
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// `host` when a resource gives `hosts` instead: empty, at no position.
fn no_host() -> Name {
    Spanned::new(0..0, Ident::default())
}

/// True for the `host` of an entry that did not write one.
pub fn is_no_host(host: &Name) -> bool {
    host.get_ref().is_empty() && host.span().is_empty()
}

fn default_evaluation_interval() -> Dur {
    Dur::parse("30s").expect("valid literal")
}
fn default_down_for() -> Dur {
    Dur::parse("1m").expect("valid literal")
}
fn default_heartbeat_missed() -> Spanned<u32> {
    Spanned::new(0..0, 3)
}
fn default_alertmanager_port() -> Spanned<u16> {
    Spanned::new(0..0, 9093)
}
fn default_alertmanager_cluster_port() -> Spanned<u16> {
    Spanned::new(0..0, 9094)
}
fn default_blackbox_port() -> Spanned<u16> {
    Spanned::new(0..0, 9115)
}
fn default_group_by() -> Vec<EnvKey> {
    ["alertname", "instance"]
        .into_iter()
        .filter_map(|l| EnvKey::new(l).ok())
        .collect()
}
fn default_group_wait() -> Dur {
    Dur::parse("30s").expect("valid literal")
}
fn default_group_interval() -> Dur {
    Dur::parse("5m").expect("valid literal")
}
fn default_repeat_interval() -> Dur {
    Dur::parse("4h").expect("valid literal")
}
fn default_scrape_interval() -> Dur {
    Dur::parse("15s").expect("valid literal")
}
fn default_retention() -> Dur {
    Dur::parse("15d").expect("valid literal")
}
fn default_severity() -> Ident {
    Ident::new("warning").unwrap_or_default()
}
fn default_pushgateway_port() -> Spanned<u16> {
    Spanned::new(0..0, 9091)
}
fn default_max_store() -> Size {
    Size(1 << 30)
}
fn default_replicas() -> Spanned<u8> {
    Spanned::new(0..0, 1)
}
fn default_heartbeat() -> Dur {
    Dur::parse("5s").expect("valid literal")
}
fn yes() -> bool {
    true
}
fn default_restart_delay() -> Dur {
    Dur::parse("1s").expect("valid literal")
}
fn default_start_retries() -> u32 {
    10
}
fn default_min_uptime() -> Dur {
    Dur::parse("1s").expect("valid literal")
}
fn default_kill_timeout() -> Dur {
    Dur::parse("10s").expect("valid literal")
}
fn default_log_size() -> Size {
    Size(10 << 20)
}
fn default_log_keep() -> u32 {
    5
}
fn default_mode() -> Spanned<String> {
    Spanned::new(0..0, "0644".to_string())
}
fn default_max_parallel() -> u32 {
    1
}
fn default_gate_timeout() -> Dur {
    Dur::parse("60s").expect("valid literal")
}
fn default_gate_interval() -> Dur {
    Dur::parse("2s").expect("valid literal")
}
fn default_status() -> u16 {
    200
}
fn default_soak() -> Dur {
    Dur::parse("10s").expect("valid literal")
}
fn one() -> u64 {
    1
}
