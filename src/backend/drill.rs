//! `wavectl drill` on the host side, pure: the drill record (`ROOT/drill.json`, what a drill
//! changed and whether it finished), the scripts that kill, freeze, thaw and restart programs,
//! the nftables table of a partition (built from validated addresses and ports only, every
//! element with a timeout, and a reaper on the host that deletes the table when it is due),
//! and the parsers of what those scripts print. Every value goes through the script builder.

use std::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::backend::script::Script;
use crate::backend::supervisord;
use crate::primitive::Probe;

/// The record's file, relative to the root.
pub const RECORD: &str = "drill.json";
pub const RECORD_SCHEMA: &str = "wavectl.drill/1";
/// wavectl's own nftables table (family inet).
pub const NFT_TABLE: &str = "wavectl";

/// A drill's id: hex digits only (it goes into an nft comment and file contents).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DrillId(String);

impl DrillId {
    pub fn new(text: &str) -> Result<DrillId, String> {
        if text.is_empty() || text.len() > 32 || !text.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(format!(
                "invalid drill id `{text}`, expected 1 to 32 hex digits"
            ));
        }
        Ok(DrillId(text.to_ascii_lowercase()))
    }

    pub fn from_parts(ms: u64, pid: u32) -> DrillId {
        DrillId(format!("{ms:x}{pid:x}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for DrillId {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        DrillId::new(&s)
    }
}

impl From<DrillId> for String {
    fn from(d: DrillId) -> String {
        d.0
    }
}

impl fmt::Display for DrillId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Something a drill changed on a host, and how to undo it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "what", rename_all = "snake_case")]
pub enum Changed {
    /// SIGKILL sent; the supervisor restarts it (or the drill does).
    Killed { program: String, pid: u32 },
    /// Stopped through the supervisor; started again by the drill (or the next one).
    Stopped { program: String },
    /// SIGSTOP sent; SIGCONT undoes it (a reaper on the host sends it at `thaw_at_ms`).
    Frozen {
        program: String,
        pid: u32,
        thaw_at_ms: u64,
    },
    /// The nftables table `inet wavectl`; its elements expire and a reaper on the host
    /// deletes it at `expires_at_ms`.
    NftTable { expires_at_ms: u64 },
}

impl fmt::Display for Changed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Changed::Killed { program, pid } => write!(f, "program {program} killed (pid {pid})"),
            Changed::Stopped { program } => write!(f, "program {program} stopped"),
            Changed::Frozen {
                program,
                pid,
                thaw_at_ms,
            } => write!(
                f,
                "program {program} frozen with SIGSTOP (pid {pid}; the host's reaper sends SIGCONT at {})",
                ms_rfc3339(*thaw_at_ms)
            ),
            Changed::NftTable { expires_at_ms } => write!(
                f,
                "nftables table inet {NFT_TABLE} (its rules expire by themselves; the host's reaper deletes it at {})",
                ms_rfc3339(*expires_at_ms)
            ),
        }
    }
}

/// `ROOT/drill.json`: written before a drill changes anything, rewritten as it goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub schema: String,
    pub id: DrillId,
    pub kind: String,
    pub target: String,
    pub operator: String,
    pub pid: u32,
    pub started_at_ms: u64,
    pub changed: Vec<Changed>,
    pub finished: bool,
    #[serde(default)]
    pub finished_at_ms: Option<u64>,
    /// pass, fail, interrupted, or `restored by DRILL_ID`.
    #[serde(default)]
    pub result: Option<String>,
}

impl Record {
    /// What the next `drill` or `status` says of a record that never finished.
    pub fn interrupted_line(&self, host: &str) -> String {
        let left = if self.changed.is_empty() {
            "nothing".to_string()
        } else {
            self.changed
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        };
        format!(
            "{host}: the drill {} ({} {}) by {} at {} was interrupted; it left: {left}",
            self.id,
            self.kind,
            self.target,
            self.operator,
            ms_rfc3339(self.started_at_ms)
        )
    }
}

/// `ms` since the epoch as RFC 3339 (seconds).
pub fn ms_rfc3339(ms: u64) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms))
        .to_string()
}

/// Writes the record atomically and appends `journal` to the host's journal.
pub fn write_record_script(root: &str, record: &Record, journal: &serde_json::Value) -> Script {
    let body = serde_json::to_vec_pretty(record).unwrap_or_default();
    let mut s = Script::new();
    s.raw("cd")
        .arg(root)
        .raw(" || exit 1\nbase64 -d > drill.json.tmp");
    s.base64_stdin(&body);
    s.raw("mv -f drill.json.tmp drill.json || exit 1\nprintf '%s\\n'")
        .arg(journal.to_string())
        .raw(" >> journal.jsonl\n");
    s
}

/// Prints the record (nothing when there is none).
pub fn read_record_script(root: &str) -> Script {
    let mut s = Script::new();
    s.raw("cd")
        .arg(root)
        .raw(" 2>/dev/null || exit 0\ncat drill.json 2>/dev/null\nexit 0\n");
    s
}

pub fn parse_record(text: &str) -> Result<Option<Record>, String> {
    if text.trim().is_empty() {
        return Ok(None);
    }
    serde_json::from_str(text)
        .map(Some)
        .map_err(|e| format!("{RECORD} is not a drill record: {e}"))
}

/// Prints `at MS` with the host's clock.
const NOW: &str = "printf 'at %s\\n' \"$(date +%s%3N)\"\n";

/// One program's line from the supervisor, as `NAME STATE PID ...` in `$wv_l`.
fn proc_line(s: &mut Script, program: &str) {
    s.raw("wv_l=$(wv_procs 2>/dev/null | n=")
        .word(program)
        .raw(" awk '$1 == ENVIRON[\"n\"]')\nset -- $wv_l\n");
}

/// The supervisor's state of each program, one `NAME STATE PID` line each, then `at MS`.
pub fn procs_script(root: &str) -> Script {
    let mut s = Script::new();
    s.raw("cd")
        .arg(root)
        .raw(" || exit 1\n")
        .raw(supervisord::FUNCTIONS)
        .raw("wv_procs || exit 1\n")
        .raw(NOW);
    s
}

/// SIGKILL `program`, then wait up to `wait_s` until the supervisor runs it again with
/// another pid. Prints `killed PID MS`, then `up PID MS` or `timeout STATE`; or
/// `notrunning STATE` without killing anything.
pub fn kill_script(root: &str, program: &str, wait_s: u64) -> Script {
    let mut s = Script::new();
    s.raw("cd")
        .arg(root)
        .raw(" || exit 1\n")
        .raw(supervisord::FUNCTIONS);
    proc_line(&mut s, program);
    s.raw("[ \"$2\" = RUNNING ] || { echo \"notrunning ${2:-ABSENT}\"; exit 0; }\nwv_old=$3\n")
        .raw("kill -KILL \"$wv_old\" || { echo 'notrunning KILL-FAILED'; exit 0; }\n")
        .raw("echo \"killed $wv_old $(date +%s%3N)\"\nwv_end=$(( $(date +%s) + ")
        .num(wait_s)
        .raw(" ))\nwhile :; do\n");
    proc_line(&mut s, program);
    s.raw("  if [ \"$2\" = RUNNING ] && [ \"$3\" != \"$wv_old\" ]; then echo \"up $3 $(date +%s%3N)\"; exit 0; fi\n")
        .raw("  [ \"$(date +%s)\" -lt \"$wv_end\" ] || { echo \"timeout ${2:-ABSENT}\"; exit 0; }\n")
        .raw("  sleep 0.05\ndone\n");
    s
}

/// What the kill script printed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KillReport {
    pub killed: Option<(u32, u64)>,
    pub up: Option<(u32, u64)>,
    /// `notrunning STATE` or `timeout STATE`.
    pub problem: Option<String>,
}

pub fn parse_kill(out: &str) -> KillReport {
    let mut r = KillReport {
        killed: None,
        up: None,
        problem: None,
    };
    for line in out.lines() {
        let w: Vec<&str> = line.split_whitespace().collect();
        let pair = |w: &[&str]| Some((w.get(1)?.parse().ok()?, w.get(2)?.parse().ok()?));
        match w.first() {
            Some(&"killed") => r.killed = pair(&w),
            Some(&"up") => r.up = pair(&w),
            Some(&"notrunning") => {
                r.problem = Some(format!("not running ({})", w.get(1).unwrap_or(&"?")));
            }
            Some(&"timeout") => {
                r.problem = Some(format!(
                    "not running again (supervisor says {})",
                    w.get(1).unwrap_or(&"?")
                ));
            }
            _ => {}
        }
    }
    r
}

/// Starts `programs` and waits until they run; prints `started`.
pub fn start_script(root: &str, programs: &[&str]) -> Script {
    let mut s = Script::new();
    s.raw("cd")
        .arg(root)
        .raw(" || exit 1\n")
        .raw(supervisord::FUNCTIONS)
        .raw("wv_start");
    for p in programs {
        s.arg(p);
    }
    s.raw(" || exit 1\nwv_wait_running");
    for p in programs {
        s.arg(p);
    }
    s.raw(" || exit 1\necho started\n");
    s
}

/// Stops `program` through the supervisor; prints `at MS` once it is down.
pub fn stop_script(root: &str, program: &str) -> Script {
    let mut s = Script::new();
    s.raw("cd")
        .arg(root)
        .raw(" || exit 1\n")
        .raw(supervisord::FUNCTIONS)
        .raw("wv_stop")
        .arg(program)
        .raw(" || exit 1\n")
        .raw(NOW);
    s
}

/// Asks a hub (from its host) for the newest heartbeat of every batch: `at MS`, then the
/// API's JSON answer.
pub fn heartbeats_script(query_url: &str) -> Script {
    let mut s = Script::new();
    s.raw(NOW)
        .raw("curl -s --max-time 5 -G --data-urlencode 'query=max by (batch) (agent_heartbeat)' --url")
        .arg(query_url)
        .raw(" || echo unreachable\n");
    s
}

/// The newest heartbeat (unix seconds, as the agents push it) of each batch in a Prometheus
/// query answer.
pub fn parse_heartbeats(json: &str) -> std::collections::BTreeMap<String, u64> {
    let v: serde_json::Value = serde_json::from_str(json.trim()).unwrap_or_default();
    v["data"]["result"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| {
            let batch = r["metric"]["batch"].as_str()?.to_string();
            let secs = r["value"][1].as_str()?.parse::<f64>().ok()?;
            Some((batch, secs as u64))
        })
        .collect()
}

/// SIGSTOP each running program of `programs`, and leave a reaper on the host that sends
/// SIGCONT after `thaw_after_s` should wavectl not come back. Prints `frozen NAME PID MS`
/// per program and `at MS`.
pub fn freeze_script(root: &str, programs: &[&str], thaw_after_s: u64) -> Script {
    let mut s = Script::new();
    s.raw("cd")
        .arg(root)
        .raw(" || exit 1\n")
        .raw(supervisord::FUNCTIONS)
        .raw("wv_pids=''\n");
    for p in programs {
        proc_line(&mut s, p);
        s.raw("if [ \"$2\" = RUNNING ] && kill -STOP \"$3\"; then wv_pids=\"$wv_pids $3\"; echo \"frozen $1 $3 $(date +%s%3N)\"; fi\n");
    }
    s.raw("[ -z \"$wv_pids\" ] || setsid sh -c 'sleep \"$1\"; shift; kill -CONT \"$@\"' wv-drill-thaw ")
        .num(thaw_after_s)
        .raw(" $wv_pids </dev/null >/dev/null 2>&1 &\n")
        .raw(NOW);
    s
}

/// `frozen NAME PID MS` lines.
pub fn parse_frozen(out: &str) -> Vec<(String, u32, u64)> {
    out.lines()
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            (w.first() == Some(&"frozen") && w.len() == 4)
                .then(|| Some((w[1].to_string(), w[2].parse().ok()?, w[3].parse().ok()?)))
                .flatten()
        })
        .collect()
}

/// SIGCONT to `pids`; prints `at MS`.
pub fn thaw_script(pids: &[u32]) -> Script {
    let mut s = Script::new();
    if !pids.is_empty() {
        s.raw("kill -CONT");
        for p in pids {
            s.raw(" ").num(*p);
        }
        s.raw(" 2>/dev/null\n");
    }
    s.raw(NOW);
    s
}

/// `at MS` in a script's output.
pub fn parse_at(out: &str) -> Option<u64> {
    out.lines()
        .find_map(|l| l.strip_prefix("at ")?.trim().parse().ok())
}

/// A probe run once from its host, with the host's clock before it: `at MS`, then the
/// probe's own output (judged by `gate::judge`).
pub fn timed_probe_script(probe: &Probe, root: &str) -> Script {
    let mut s = Script::new();
    s.raw(NOW).script(&crate::gate::script(probe, root));
    s.raw("\n");
    s
}

/// The probe's output after the `at MS` line.
pub fn split_timed(out: &str) -> (Option<u64>, &str) {
    match out.split_once('\n') {
        Some((first, rest)) => (
            first
                .strip_prefix("at ")
                .and_then(|t| t.trim().parse().ok()),
            rest,
        ),
        None => (None, out),
    }
}

/// Defines `wv_nft`: `nft` as root, `sudo -n nft` otherwise.
const NFT_FN: &str = "if [ \"$(id -u)\" -eq 0 ]; then wv_nft() { nft \"$@\"; }; else wv_nft() { sudo -n nft \"$@\"; }; fi\n";

/// May this host's user run nft? Prints `nft ok USER UID` or `nft denied USER UID: ERROR`.
pub fn nft_check_script() -> Script {
    let mut s = Script::new();
    s.raw(NFT_FN).raw(
        "if wv_err=$(wv_nft list tables 2>&1 >/dev/null); then echo \"nft ok $(id -un) $(id -u)\"; else echo \"nft denied $(id -un) $(id -u): $(printf '%s' \"$wv_err\" | head -n 1)\"; fi\n",
    );
    s
}

/// What the nft check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NftAccess {
    pub user: String,
    pub uid: u32,
    pub allowed: bool,
    pub error: String,
}

pub fn parse_nft_check(out: &str) -> Option<NftAccess> {
    let line = out.lines().find(|l| l.starts_with("nft "))?;
    let mut w = line.splitn(4, ' ');
    let _ = w.next();
    let verdict = w.next()?;
    let user = w.next()?.to_string();
    let rest = w.next()?;
    let (uid, error) = rest.split_once(": ").unwrap_or((rest, ""));
    Some(NftAccess {
        user,
        uid: uid.trim().parse().ok()?,
        allowed: verdict == "ok",
        error: error.to_string(),
    })
}

/// One machine of a partition: its address and the ports the plan listens on there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Side {
    pub host: String,
    pub address: IpAddr,
    pub ports: Vec<u16>,
}

/// The nftables ruleset of a cut between `a` (the host the table goes on) and `b`: every
/// packet from one's address to the other's, to or from a planned port of either (TCP and
/// UDP), is dropped: a's clients to b's servers and their replies, b's clients to a's
/// servers and theirs. It matches on the way out, before NAT (output, priority -150: a reply
/// still carries the address its peer was seen with) and after it (postrouting: the source
/// a packet really leaves with), and on the way in (input), so it holds on one host for both
/// directions, also where the machines' addresses are source-NATed (the lab). Every set element expires after `timeout_s`. Built from addresses and ports
/// only.
pub fn nft_ruleset(a: &Side, b: &Side, timeout_s: u64, id: &DrillId) -> Result<String, String> {
    let family = match (a.address, b.address) {
        (IpAddr::V4(_), IpAddr::V4(_)) => "ip",
        (IpAddr::V6(_), IpAddr::V6(_)) => "ip6",
        _ => {
            return Err(format!(
                "hosts {} ({}) and {} ({}) have addresses of different families",
                a.host, a.address, b.host, b.address
            ));
        }
    };
    if a.ports.is_empty() && b.ports.is_empty() {
        return Err(format!(
            "the plan has no port on {} or {}: nothing to cut",
            a.host, b.host
        ));
    }
    let el = |from: &Side, to: &Side, ports: &[u16]| -> Vec<String> {
        ports
            .iter()
            .map(|p| {
                format!(
                    "{} . {} . {p} timeout {timeout_s}s",
                    from.address, to.address
                )
            })
            .collect()
    };
    // Clients to servers (by destination port), servers' replies (by source port).
    let to_server = [el(a, b, &b.ports), el(b, a, &a.ports)].concat();
    let reply = [el(a, b, &a.ports), el(b, a, &b.ports)].concat();
    let mut text = format!("table inet {NFT_TABLE} {{\n  comment \"wavectl drill {id}\"\n");
    let mut rules = String::new();
    for (name, port, elements) in [("to_server", "dport", to_server), ("reply", "sport", reply)] {
        text.push_str(&format!(
            "  set {name} {{\n    typeof {family} saddr . {family} daddr . th {port}\n    flags timeout\n    elements = {{ {} }}\n  }}\n",
            elements.join(", ")
        ));
        rules.push_str(&format!(
            "    meta l4proto {{ tcp, udp }} {family} saddr . {family} daddr . th {port} @{name} drop\n"
        ));
    }
    for (hook, priority) in [("output", -150), ("postrouting", 200), ("input", -10)] {
        text.push_str(&format!(
            "  chain {hook} {{\n    type filter hook {hook} priority {priority}; policy accept;\n{rules}  }}\n"
        ));
    }
    text.push_str("}\n");
    Ok(text)
}

/// Loads `ruleset` (replacing a table of wavectl's left from before) and leaves a reaper on
/// the host that deletes the table after `reap_after_s` if it still is this drill's. Prints
/// `cut MS`.
pub fn nft_add_script(ruleset: &str, id: &DrillId, reap_after_s: u64) -> Script {
    let mut s = Script::new();
    s.raw(NFT_FN)
        .raw("wv_nft list table inet wavectl >/dev/null 2>&1 && { wv_nft delete table inet wavectl || exit 1; }\n")
        .raw("wv_rs=$(mktemp) || exit 1\nbase64 -d > \"$wv_rs\"");
    s.base64_stdin(ruleset.as_bytes());
    s.raw("wv_nft -f \"$wv_rs\"; wv_rc=$?\nrm -f \"$wv_rs\"\n[ \"$wv_rc\" -eq 0 ] || exit 1\n")
        .raw("echo \"cut $(date +%s%3N)\"\n")
        .raw("setsid sh -c 'sleep \"$1\"; if [ \"$(id -u)\" -eq 0 ]; then n=nft; else n=\"sudo -n nft\"; fi; $n list table inet wavectl 2>/dev/null | grep -qF \"wavectl drill $2\" && $n delete table inet wavectl' wv-drill-reaper ")
        .num(reap_after_s)
        .arg(id.as_str())
        .raw(" </dev/null >/dev/null 2>&1 &\n");
    s
}

/// Deletes wavectl's table if there is one; prints `healed MS` (and `absent` when there was
/// none).
pub fn nft_delete_script() -> Script {
    let mut s = Script::new();
    s.raw(NFT_FN)
        .raw("if wv_nft list table inet wavectl >/dev/null 2>&1; then wv_nft delete table inet wavectl || exit 1; else echo absent; fi\n")
        .raw("echo \"healed $(date +%s%3N)\"\n");
    s
}

/// `WORD MS` in a script's output (`cut`, `healed`).
pub fn parse_stamp(out: &str, word: &str) -> Option<u64> {
    out.lines().find_map(|l| {
        let (w, ms) = l.split_once(' ')?;
        (w == word).then(|| ms.trim().parse().ok()).flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;

    fn b64(bytes: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    fn id() -> DrillId {
        DrillId::new("abc123").unwrap()
    }

    fn side(host: &str, ip: &str, ports: &[u16]) -> Side {
        Side {
            host: host.into(),
            address: ip.parse().unwrap(),
            ports: ports.to_vec(),
        }
    }

    #[test]
    fn a_drill_id_is_hex_only() {
        assert!(DrillId::new("deadbeef01").is_ok());
        assert!(DrillId::new("abc; rm -rf /").is_err());
        assert!(DrillId::new("").is_err());
        assert!(serde_json::from_str::<DrillId>("\"x'y\"").is_err());
    }

    #[test]
    fn a_cut_drops_both_ways_between_the_two_addresses_and_every_element_expires() {
        let a = side("mainpc", "127.0.150.2", &[4222, 7422]);
        let b = side("pc2", "127.0.150.3", &[4223]);
        let r = nft_ruleset(&a, &b, 60, &id()).unwrap();
        let rules = "    meta l4proto { tcp, udp } ip saddr . ip daddr . th dport @to_server drop\n    meta l4proto { tcp, udp } ip saddr . ip daddr . th sport @reply drop\n";
        assert_eq!(
            r,
            format!(
                "table inet wavectl {{\n  comment \"wavectl drill abc123\"\n  set to_server {{\n    typeof ip saddr . ip daddr . th dport\n    flags timeout\n    elements = {{ 127.0.150.2 . 127.0.150.3 . 4223 timeout 60s, 127.0.150.3 . 127.0.150.2 . 4222 timeout 60s, 127.0.150.3 . 127.0.150.2 . 7422 timeout 60s }}\n  }}\n  set reply {{\n    typeof ip saddr . ip daddr . th sport\n    flags timeout\n    elements = {{ 127.0.150.2 . 127.0.150.3 . 4222 timeout 60s, 127.0.150.2 . 127.0.150.3 . 7422 timeout 60s, 127.0.150.3 . 127.0.150.2 . 4223 timeout 60s }}\n  }}\n  chain output {{\n    type filter hook output priority -150; policy accept;\n{rules}  }}\n  chain postrouting {{\n    type filter hook postrouting priority 200; policy accept;\n{rules}  }}\n  chain input {{\n    type filter hook input priority -10; policy accept;\n{rules}  }}\n}}\n"
            )
        );
        let v6 = side("pc3", "::1", &[1]);
        assert!(nft_ruleset(&a, &v6, 60, &id()).is_err());
        assert!(
            nft_ruleset(
                &side("x", "10.0.0.1", &[]),
                &side("y", "10.0.0.2", &[]),
                60,
                &id()
            )
            .is_err()
        );
    }

    #[test]
    fn the_kill_script_quotes_the_program_and_waits_for_a_new_pid() {
        let s = kill_script("/srv/wv root", "nanoclaw", 15).into_string();
        assert!(s.starts_with("cd '/srv/wv root' || exit 1\n"));
        assert!(s.contains("n='nanoclaw' awk '$1 == ENVIRON[\"n\"]'"));
        assert!(s.contains("wv_end=$(( $(date +%s) + 15 ))"));
        let r = parse_kill("killed 41 1000\nup 57 2400\n");
        assert_eq!(r.killed, Some((41, 1000)));
        assert_eq!(r.up, Some((57, 2400)));
        assert_eq!(r.problem, None);
        assert!(
            parse_kill("killed 41 1000\ntimeout EXITED\n")
                .problem
                .unwrap()
                .contains("EXITED")
        );
    }

    #[test]
    fn the_record_round_trips_and_says_what_an_interrupted_drill_left() {
        let r = Record {
            schema: RECORD_SCHEMA.into(),
            id: id(),
            kind: "partition".into(),
            target: "mainpc,pc2".into(),
            operator: "ops@laptop".into(),
            pid: 7,
            started_at_ms: 0,
            changed: vec![Changed::NftTable {
                expires_at_ms: 60_000,
            }],
            finished: false,
            finished_at_ms: None,
            result: None,
        };
        let text = serde_json::to_string(&r).unwrap();
        assert_eq!(parse_record(&text).unwrap(), Some(r.clone()));
        assert_eq!(parse_record("").unwrap(), None);
        assert_eq!(
            r.interrupted_line("mainpc"),
            "mainpc: the drill abc123 (partition mainpc,pc2) by ops@laptop at 1970-01-01T00:00:00Z was interrupted; it left: nftables table inet wavectl (its rules expire by themselves; the host's reaper deletes it at 1970-01-01T00:01:00Z)"
        );
        let s = write_record_script("/r", &r, &serde_json::json!({"a": "it's"})).into_string();
        assert!(s.contains(&b64(&serde_json::to_vec_pretty(&r).unwrap())[..40]));
        assert!(s.contains("printf '%s\\n' '{\"a\":\"it'\\''s\"}' >> journal.jsonl"));
    }

    #[test]
    fn the_stop_script_quotes_the_program_and_heartbeats_parse_per_batch() {
        let s = stop_script("/r", "edge").into_string();
        assert!(s.contains("wv_stop 'edge' || exit 1\n"), "{s}");
        let q = heartbeats_script("http://127.0.0.2:9000/api/v1/query").into_string();
        assert!(
            q.contains("--url 'http://127.0.0.2:9000/api/v1/query'"),
            "{q}"
        );
        let hb = parse_heartbeats(
            r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"batch":"pilot"},"value":[1796187000.1,"1796186990"]}]}}"#,
        );
        assert_eq!(hb.get("pilot"), Some(&1_796_186_990));
        assert!(parse_heartbeats("unreachable").is_empty());
    }

    #[test]
    fn the_nft_check_reads_user_uid_and_the_refusal() {
        let ok = parse_nft_check("nft ok t150-mainpc 1001\n").unwrap();
        assert!(ok.allowed);
        assert_eq!(ok.uid, 1001);
        let no = parse_nft_check("nft denied ops 1000: sudo: a password is required\n").unwrap();
        assert!(!no.allowed);
        assert_eq!(no.error, "sudo: a password is required");
    }

    #[test]
    fn the_nft_reaper_gets_the_id_as_an_argument() {
        let s = nft_add_script("table inet wavectl {}\n", &id(), 65).into_string();
        assert!(s.contains("wv-drill-reaper 65 'abc123' </dev/null"), "{s}");
        assert!(s.contains("base64 -d > \"$wv_rs\" <<'WV_B64'\n"), "{s}");
    }
}
