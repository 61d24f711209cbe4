//! The doctor step, pure: the one script that asks a host, in one round trip, everything the
//! plan needs there (programs, free ports, a writable root, disk space, its clock), the parser
//! of its answer, and the verdicts with the command that fixes each problem.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::backend::script::Script;
use crate::backend::supervisor::{self, Backend};
use crate::backend::supervisord::parse_proc_line;
use crate::plan::schema::Plan;
use crate::primitive::{Check, HostDesired, Probe};

/// Less free space than this under a root is a problem: Prometheus, NATS and the logs live
/// there.
pub const MIN_FREE_KB: u64 = 1024 * 1024;
/// A clock further off than this from the operator's: Prometheus drops samples out of its
/// time window, gates and generations carry wrong times.
pub const MAX_SKEW_MS: i64 = 5_000;

/// A port the plan makes a program listen on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedPort {
    pub port: u16,
    /// Who listens there, as the plan names it (`hub.central`, `nats.nats-pc2 (monitor)`).
    pub who: String,
}

/// Every port the plan listens on, by host.
pub fn planned_ports(plan: &Plan) -> BTreeMap<String, Vec<PlannedPort>> {
    let mut out: BTreeMap<String, Vec<PlannedPort>> = BTreeMap::new();
    let mut add = |host: &str, port: u16, who: String| {
        out.entry(host.to_string())
            .or_default()
            .push(PlannedPort { port, who });
    };
    for h in &plan.hubs {
        add(
            h.host.get_ref(),
            *h.port.get_ref(),
            format!("hub.{}", h.name.get_ref()),
        );
    }
    for g in &plan.pushgateways {
        let who = format!("pushgateway.{}", g.name.get_ref());
        add(g.host.get_ref(), *g.port.get_ref(), who);
    }
    for n in &plan.nats {
        let id = format!("nats.{}", n.name.get_ref());
        add(n.host.get_ref(), *n.port.get_ref(), id.clone());
        add(
            n.host.get_ref(),
            *n.monitor_port.get_ref(),
            format!("{id} (monitor)"),
        );
        if let Some(p) = &n.cluster_port {
            add(n.host.get_ref(), *p.get_ref(), format!("{id} (cluster)"));
        }
        if let Some(p) = &n.leafnode_port {
            add(n.host.get_ref(), *p.get_ref(), format!("{id} (leafnode)"));
        }
    }
    for p in &plan.processes {
        for port in &p.listen {
            let who = format!("process.{}", p.name.get_ref());
            add(p.host.get_ref(), *port.get_ref(), who);
        }
    }
    out
}

/// The programs a host needs: those observe checks (supervisor, the programs its processes
/// run, sqlite3 for migrations), those its probes and the stream listing run, and `ss`, `df`
/// and `date` for the doctor itself.
pub fn needed_programs(desired: &HostDesired, probes: &[&Check]) -> Vec<String> {
    let mut out = crate::backend::observe::needed_programs(desired);
    let mut need = |p: &str| {
        if !out.iter().any(|o| o == p) {
            out.push(p.to_string());
        }
    };
    for p in ["sed", "grep", "find", "xargs", "tail", "sort"] {
        need(p);
    }
    if !desired.streams.is_empty() {
        need("curl");
    }
    for c in probes {
        match c.probe {
            Probe::Http { .. } | Probe::PromQuery { .. } | Probe::NatsStream { .. } => {
                need("curl");
            }
            Probe::Tcp { .. } => {
                need("bash");
                need("timeout");
            }
            Probe::AlertQuiet { .. } => need("curl"),
            Probe::Process { .. } | Probe::Command { .. } => {}
        }
    }
    for p in ["ss", "df", "date"] {
        need(p);
    }
    out
}

/// The Debian package of a program, for the programs the doctor checks beyond observe's.
pub fn package_of(program: &str) -> Option<&'static str> {
    if let Some(p) = crate::backend::package_of(program) {
        return Some(p);
    }
    Some(match program {
        "sed" => "sed",
        "grep" => "grep",
        "find" | "xargs" => "findutils",
        "bash" => "bash",
        "tail" | "sort" | "timeout" | "df" | "date" | "mktemp" | "head" => "coreutils",
        "ss" => "iproute2",
        "node" | "nodejs" => "nodejs",
        "python3" => "python3",
        _ => return None,
    })
}

/// The script. `root` is the host root; nothing under it is changed (a probe file is made
/// and removed in the nearest directory that exists).
pub fn script(root: &str, backend: &dyn Backend, programs: &[String]) -> String {
    let mut s = Script::new();
    s.set("R", root);
    // The clock first: the round trip's halves bound when it was read.
    s.raw("printf 'clock %s\\n' \"$(date +%s%N)\"\nfor b in");
    for p in programs {
        s.arg(p);
    }
    s.raw(concat!(
        "; do if command -v \"$b\" >/dev/null 2>&1; then echo \"bin ok $b\"; else echo \"bin missing $b\"; fi; done\n",
        "printf 'user %s\\n' \"$(id -un)\"\n",
        // The root, or the directory apply would create it in.
        "d=$R; while [ ! -e \"$d\" ]; do d=$(dirname \"$d\"); done\n",
        "t=\"$d/.wv-doctor.$$\"\n",
        "if [ -d \"$d\" ] && ( : > \"$t\" ) 2>/dev/null; then rm -f \"$t\"; printf 'root ok %s\\n' \"$d\"; else printf 'root denied %s\\n' \"$d\"; fi\n",
        "printf 'disk %s\\n' \"$(df -Pk \"$d\" 2>/dev/null | awk 'NR == 2 { print $4 }')\"\n",
        "if command -v ss >/dev/null 2>&1; then\n",
        "  ss -Hltnp 2>/dev/null | sed 's/^/listen /'\n",
        // The parent of every listener: a program of this root's supervisord is wavectl's own.
        "  for p in $(ss -Hltnp 2>/dev/null | grep -o 'pid=[0-9]*' | cut -d= -f2 | sort -u); do\n",
        "    printf 'ppid %s %s\\n' \"$p\" \"$(sed -n 's/^PPid:[[:space:]]*//p' /proc/\"$p\"/status 2>/dev/null)\"\n",
        "  done\n",
        "fi\n",
        "cd \"$R\" 2>/dev/null || exit 0\n",
    ));
    // The daemon's pid: its programs are wavectl's own (reported as `supervisord` whatever
    // the backend).
    supervisor::when_running(&mut s, backend);
    s.raw("  printf 'supervisord %s\\n' \"$(cat ")
        .raw(backend.pidfile())
        .raw(")\"\n")
        .raw(backend.functions())
        .raw("  wv_procs 2>/dev/null | sed 's/^/proc /'\nfi\nexit 0");
    s.into_string()
}

/// A socket listening on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    pub address: String,
    pub port: u16,
    pub pid: Option<u32>,
    pub program: Option<String>,
}

impl Listener {
    /// `address:port`, an IPv6 address in brackets.
    fn shown(&self) -> String {
        if self.address.contains(':') {
            format!("[{}]:{}", self.address, self.port)
        } else {
            format!("{}:{}", self.address, self.port)
        }
    }
}

/// What the doctor script printed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub present: Vec<String>,
    pub missing: Vec<String>,
    pub user: Option<String>,
    /// The host's clock, nanoseconds since the epoch.
    pub clock_ns: Option<i128>,
    /// The root or its nearest existing parent, and whether a file can be made there.
    pub root_dir: Option<String>,
    pub root_writable: bool,
    pub free_kb: Option<u64>,
    /// None: `ss` missing, ports not checked.
    pub listeners: Option<Vec<Listener>>,
    pub parents: BTreeMap<u32, u32>,
    pub supervisord: Option<u32>,
    /// The pid of each program this root's supervisord runs.
    pub programs: BTreeMap<u32, String>,
}

pub fn parse(stdout: &str) -> Report {
    let mut r = Report::default();
    for line in stdout.lines() {
        let (tag, rest) = line.split_once(' ').unwrap_or((line, ""));
        match tag {
            "bin" => match rest.split_once(' ') {
                Some(("ok", p)) => r.present.push(p.to_string()),
                Some(("missing", p)) => r.missing.push(p.to_string()),
                _ => {}
            },
            "user" => r.user = Some(rest.trim().to_string()).filter(|u| !u.is_empty()),
            "clock" => r.clock_ns = rest.trim().parse().ok(),
            "root" => {
                let (verdict, dir) = rest.split_once(' ').unwrap_or((rest, ""));
                r.root_writable = verdict == "ok";
                r.root_dir = Some(dir.to_string());
            }
            "disk" => r.free_kb = rest.trim().parse().ok(),
            "listen" => {
                if let Some(l) = parse_listener(rest) {
                    r.listeners.get_or_insert_with(Vec::new).push(l);
                } else {
                    r.listeners.get_or_insert_with(Vec::new);
                }
            }
            "ppid" => {
                let mut w = rest.split_whitespace();
                if let (Some(Ok(p)), Some(Ok(pp))) =
                    (w.next().map(str::parse), w.next().map(str::parse))
                {
                    r.parents.insert(p, pp);
                }
            }
            "supervisord" => r.supervisord = rest.trim().parse().ok(),
            "proc" => {
                if let Some(s) = parse_proc_line(rest)
                    && let Some(pid) = s.pid
                {
                    r.programs.insert(pid, s.name);
                }
            }
            _ => {}
        }
    }
    if r.present.iter().any(|p| p == "ss") && r.listeners.is_none() {
        // ss ran and printed nothing: nothing listens.
        r.listeners = Some(Vec::new());
    }
    r
}

/// `LISTEN 0 4096 127.0.0.2:9091 0.0.0.0:* users:(("prometheus",pid=12,fd=3))`.
fn parse_listener(line: &str) -> Option<Listener> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let local = *words.get(3)?;
    let (addr, port) = local.rsplit_once(':')?;
    let addr = addr.trim_start_matches('[').trim_end_matches(']');
    let addr = addr.split('%').next().unwrap_or(addr).to_string();
    let users = words.get(5..).map(|w| w.join(" ")).unwrap_or_default();
    let pid = users
        .split_once("pid=")
        .and_then(|(_, r)| r.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|p| p.parse().ok());
    let program = users.split('"').nth(1).map(str::to_string);
    Some(Listener {
        address: addr,
        port: port.parse().ok()?,
        pid,
        program,
    })
}

/// One thing the doctor looked at on a host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub check: String,
    pub ok: bool,
    pub detail: String,
    /// The command (or edit) that fixes it.
    pub fix: Option<String>,
}

impl Finding {
    fn ok(check: impl Into<String>, detail: impl Into<String>) -> Self {
        Finding {
            check: check.into(),
            ok: true,
            detail: detail.into(),
            fix: None,
        }
    }

    fn bad(check: impl Into<String>, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Finding {
            check: check.into(),
            ok: false,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }
}

/// What the doctor needs to judge one host's report.
pub struct Judge<'a> {
    pub root: &'a str,
    /// Where the host's services listen.
    pub address: &'a str,
    pub ports: &'a [PlannedPort],
    /// The operator's clock half-way through the round trip, nanoseconds since the epoch.
    pub local_clock_ns: i128,
    /// Half the round trip, the clock reading's uncertainty.
    pub slack_ms: i64,
}

impl Judge<'_> {
    /// Every finding, in a fixed order: programs, root, disk, ports, clock.
    pub fn findings(&self, r: &Report) -> Vec<Finding> {
        let mut out = Vec::new();
        for p in &r.missing {
            let fix = match package_of(p) {
                _ if p == "pm2" => crate::backend::pm2::install_command(),
                Some(pkg) => format!("apt-get install {pkg}"),
                None => format!(
                    "install `{p}` and put it on the host's PATH (or set `env = {{ PATH = \"...\" }}` for the host in the inventory)"
                ),
            };
            let pkg = match package_of(p) {
                _ if p == "pm2" => " (npm package pm2)".to_string(),
                Some(pkg) => format!(" (Debian package {pkg})"),
                None => String::new(),
            };
            out.push(Finding::bad(
                format!("program {p}"),
                format!("`{p}` is not on the PATH{pkg}"),
                fix,
            ));
        }
        if r.missing.is_empty() {
            out.push(Finding::ok(
                "programs",
                format!("all {} found: {}", r.present.len(), r.present.join(", ")),
            ));
        }
        let user = r.user.as_deref().unwrap_or("USER");
        match &r.root_dir {
            Some(dir) if r.root_writable && dir == self.root => {
                out.push(Finding::ok("root", format!("{} is writable", self.root)));
            }
            Some(dir) if r.root_writable => out.push(Finding::ok(
                "root",
                format!(
                    "{} does not exist yet; {dir} is writable, apply creates it",
                    self.root
                ),
            )),
            Some(dir) => out.push(Finding::bad(
                "root",
                format!(
                    "{dir} is not writable by {user}, so {} cannot be written",
                    self.root
                ),
                format!("sudo install -d -o {user} {}", self.root),
            )),
            None => out.push(Finding::bad(
                "root",
                format!("the host did not say whether {} is writable", self.root),
                "check that the host's /bin/sh is a POSIX shell",
            )),
        }
        match r.free_kb {
            Some(kb) if kb >= MIN_FREE_KB => {
                out.push(Finding::ok(
                    "disk",
                    format!("{} free under {}", human_kb(kb), self.root),
                ));
            }
            Some(kb) => out.push(Finding::bad(
                "disk",
                format!(
                    "only {} free under {} (at least {} wanted)",
                    human_kb(kb),
                    self.root,
                    human_kb(MIN_FREE_KB)
                ),
                format!(
                    "free space on the file system of {} (df -h {}; du -sh {}/data {}/logs)",
                    self.root, self.root, self.root, self.root
                ),
            )),
            None => out.push(Finding::bad(
                "disk",
                format!("free space under {} unknown (df gave nothing)", self.root),
                "apt-get install coreutils",
            )),
        }
        self.ports(r, &mut out);
        match r.clock_ns {
            Some(ns) => {
                let skew_ms = ((ns - self.local_clock_ns) / 1_000_000) as i64;
                let shown = match skew_ms {
                    -49..=49 => "0.0s".to_string(),
                    ms => format!("{:+.1}s", ms as f64 / 1000.0),
                };
                if skew_ms.abs() <= MAX_SKEW_MS + self.slack_ms {
                    out.push(Finding::ok("clock", format!("{shown} from this machine")));
                } else {
                    out.push(Finding::bad(
                        "clock",
                        format!(
                            "{shown} from this machine (more than {}s)",
                            MAX_SKEW_MS / 1000
                        ),
                        "timedatectl set-ntp true (or apt-get install chrony)",
                    ));
                }
            }
            None => out.push(Finding::bad(
                "clock",
                "the host did not tell its time",
                "apt-get install coreutils",
            )),
        }
        out
    }

    fn ports(&self, r: &Report, out: &mut Vec<Finding>) {
        if self.ports.is_empty() {
            return;
        }
        let Some(listeners) = &r.listeners else {
            out.push(Finding::bad(
                "ports",
                "ports not checked: `ss` is missing",
                "apt-get install iproute2",
            ));
            return;
        };
        let mut free = Vec::new();
        for p in self.ports {
            let holder = listeners.iter().find(|l| {
                l.port == p.port
                    && (l.address == self.address
                        || matches!(l.address.as_str(), "0.0.0.0" | "*" | "::"))
            });
            match holder {
                None => free.push(p.port.to_string()),
                Some(l) => match self.ours(r, l) {
                    Some(program) => out.push(Finding::ok(
                        format!("port {}", p.port),
                        format!(
                            "{}:{} is held by wavectl's own program {program} ({})",
                            l.address, p.port, p.who
                        ),
                    )),
                    None => {
                        let by = match (&l.program, l.pid) {
                            (Some(name), Some(pid)) => format!("`{name}` (pid {pid})"),
                            _ => "a process of another user".to_string(),
                        };
                        out.push(Finding::bad(
                            format!("port {}", p.port),
                            format!("{} is taken by {by}; {} needs it", l.shown(), p.who),
                            format!("stop what holds it (sudo ss -ltnp 'sport = :{}'), or give {} another port in the plan", p.port, p.who),
                        ));
                    }
                },
            }
        }
        if !free.is_empty() {
            out.push(Finding::ok(
                "ports",
                format!("free on {}: {}", self.address, free.join(", ")),
            ));
        }
    }

    /// The supervisord program holding a listener, when it is this root's.
    fn ours(&self, r: &Report, l: &Listener) -> Option<String> {
        let pid = l.pid?;
        if let Some(name) = r.programs.get(&pid) {
            return Some(name.clone());
        }
        let sup = r.supervisord?;
        (r.parents.get(&pid) == Some(&sup))
            .then(|| l.program.clone().unwrap_or_else(|| pid.to_string()))
    }
}

fn human_kb(kb: u64) -> String {
    if kb >= 1024 * 1024 {
        format!("{:.1} GiB", kb as f64 / (1024.0 * 1024.0))
    } else {
        format!("{} MiB", kb / 1024)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn judge<'a>(ports: &'a [PlannedPort]) -> Judge<'a> {
        Judge {
            root: "/srv/wv",
            address: "10.0.0.2",
            ports,
            local_clock_ns: 1_700_000_000_000_000_000,
            slack_ms: 100,
        }
    }

    #[test]
    fn the_doctor_script_quotes_every_value() {
        insta::assert_snapshot!(script(
            "/srv/wv root",
            &crate::backend::supervisord::Supervisord,
            &["nats-server".into(), "x'$(id)".into()]
        ));
    }

    #[test]
    fn a_missing_program_names_its_package_and_the_fix() {
        let r = parse("bin ok supervisord\nbin missing nats-server\nbin missing mytool\n");
        let f = judge(&[]).findings(&r);
        assert_eq!(
            (f[0].detail.as_str(), f[0].fix.as_deref()),
            (
                "`nats-server` is not on the PATH (Debian package nats-server)",
                Some("apt-get install nats-server")
            )
        );
        assert!(
            f[1].fix.as_deref().is_some_and(|x| x.contains("PATH")),
            "{f:?}"
        );
    }

    #[test]
    fn a_missing_pm2_is_installed_from_npm_at_the_pinned_version() {
        let r = parse("bin missing pm2\n");
        let f = judge(&[]).findings(&r);
        assert_eq!(
            (f[0].detail.as_str(), f[0].fix.as_deref()),
            (
                "`pm2` is not on the PATH (npm package pm2)",
                Some("npm install -g pm2@6.0.14")
            )
        );
    }

    #[test]
    fn a_port_is_free_ours_or_taken() {
        let report = concat!(
            "bin ok ss\n",
            "listen LISTEN 0 4096 10.0.0.2:9091 0.0.0.0:* users:((\"prometheus-pus\",pid=40,fd=3))\n",
            "listen LISTEN 0 4096 0.0.0.0:9000 0.0.0.0:* users:((\"python3\",pid=77,fd=3))\n",
            "listen LISTEN 0 4096 10.0.0.9:4222 0.0.0.0:*\n",
            "listen LISTEN 0 4096 [::]:8222 [::]:*\n",
            "supervisord 30\n",
            "ppid 40 30\nppid 77 1\n",
            "proc pushgateway-main RUNNING 40 1000 1060\n",
        );
        let r = parse(report);
        let ports = [9091, 9000, 4222, 8222].map(|port| PlannedPort {
            port,
            who: format!("x.{port}"),
        });
        let f: Vec<(String, bool)> = judge(&ports)
            .findings(&r)
            .into_iter()
            .filter(|f| f.check.starts_with("port"))
            .map(|f| (f.detail, f.ok))
            .collect();
        assert_eq!(
            f,
            vec![
                (
                    "10.0.0.2:9091 is held by wavectl's own program pushgateway-main (x.9091)"
                        .to_string(),
                    true
                ),
                (
                    "0.0.0.0:9000 is taken by `python3` (pid 77); x.9000 needs it".to_string(),
                    false
                ),
                (
                    "[::]:8222 is taken by a process of another user; x.8222 needs it".to_string(),
                    false
                ),
                ("free on 10.0.0.2: 4222".to_string(), true),
            ]
        );
    }

    #[test]
    fn root_disk_and_clock_are_judged_with_their_fixes() {
        let r = parse(concat!(
            "user ops\n",
            "clock 1700000009000000000\n",
            "root denied /srv\n",
            "disk 1000\n",
        ));
        let f = judge(&[]).findings(&r);
        let bad: Vec<(&str, &str)> = f
            .iter()
            .filter(|f| !f.ok)
            .map(|f| (f.check.as_str(), f.fix.as_deref().unwrap_or("")))
            .collect();
        assert_eq!(bad[0], ("root", "sudo install -d -o ops /srv/wv"));
        assert_eq!(bad[1].0, "disk");
        assert_eq!(
            bad[2],
            (
                "clock",
                "timedatectl set-ntp true (or apt-get install chrony)"
            )
        );
        let r = parse("clock 1700000001000000000\nroot ok /srv/wv\ndisk 99999999\n");
        assert!(judge(&[]).findings(&r).iter().all(|f| f.ok));
    }
}
