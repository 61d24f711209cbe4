//! The observe step: one script per host that reports, in one round trip, the managed files
//! (mode, hash, and the text of those that differ from the plan), the supervisor's view of
//! every program, state.json, the lock and which needed programs are missing.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

use crate::backend::script::Script;
use crate::backend::supervisor;
use crate::backend::supervisord::parse_proc_line;
use crate::observed::{HostObserved, ObservedFile, ObservedProcess};
use crate::primitive::{HostDesired, StreamConfig};
use crate::state::{HostState, Lock, Pin, STATE_SCHEMA};

/// The programs a host needs for `desired`.
pub fn needed_programs(desired: &HostDesired) -> Vec<String> {
    // Every host needs its supervisor's programs, besides those its processes run.
    let mut out: Vec<String> = supervisor::of(desired.supervisor)
        .base_programs()
        .iter()
        .map(|s| s.to_string())
        .collect();
    for p in &desired.processes {
        if let Some(cmd) = p.command.first()
            && !cmd.starts_with('/')
            && !out.contains(cmd)
        {
            out.push(cmd.clone());
        }
    }
    for db in &desired.databases {
        let program = crate::backend::engine::for_db(db).program();
        if !out.iter().any(|p| p == program) {
            out.push(program.into());
        }
    }
    out
}

/// The script; `root` is the host root, `desired` what the plan wants there (its file hashes
/// decide which files' text comes back). Every value is a quoted word; the list of wanted
/// hashes travels as base64, so no path can end its carrier.
pub fn script(root: &str, desired: &HostDesired) -> String {
    let mut s = Script::new();
    s.set("R", root);
    // A root under `~` was rendered with a remembered home: the caller checks it against this.
    s.raw("printf 'home %s\\n' \"$HOME\"\n");
    s.raw("for b in");
    for p in needed_programs(desired) {
        s.arg(p);
    }
    s.raw(concat!(
        "; do if command -v \"$b\" >/dev/null 2>&1; then echo \"bin ok $b\"; else echo \"bin missing $b\"; fi; done\n",
        // A host never set up has no root: nothing more to report.
        "cd \"$R\" 2>/dev/null || exit 0\n",
        "[ -f state.json ] && printf 'state %s\\n' \"$(base64 -w0 state.json)\"\n",
        "[ -f lock ] && printf 'lock %s\\n' \"$(base64 -w0 lock)\"\n",
        "[ -f pin.json ] && printf 'pin %s\\n' \"$(base64 -w0 pin.json)\"\n",
        // Where a locked host's apply got to: its journal's last line.
        "[ -f lock ] && [ -f journal.jsonl ] && printf 'lastjournal %s\\n' \"$(tail -n 1 journal.jsonl | base64 -w0)\"\n",
        "if [ -d files ]; then\n",
        "  find files -type f ! -name '*.wv-tmp.*' -printf 'mode %m %p\\n'\n",
        "  sums=$(find files -type f ! -name '*.wv-tmp.*' -print0 | xargs -0 -r sha256sum)\n",
        "  [ -n \"$sums\" ] && printf '%s\\n' \"$sums\" | sed 's/^/sha /'\n",
        "  want=$(base64 -d",
    ));
    let mut want = String::new();
    for f in &desired.files {
        let _ = writeln!(want, "{}  {}", f.sha256(), f.path);
    }
    s.base64_stdin(want.as_bytes());
    s.raw(concat!(
        ")\n",
        // The files whose hash is not the planned one (`HASH  PATH` lines on both sides).
        "  printf '%s\\n' \"$sums\" | WANT=\"$want\" awk 'BEGIN { n = split(ENVIRON[\"WANT\"], l, \"\\n\"); for (i = 1; i <= n; i++) { k = index(l[i], \"  \"); if (k) want[substr(l[i], k + 2)] = substr(l[i], 1, k - 1) } } { k = index($0, \"  \"); p = substr($0, k + 2) } k && (p in want) && want[p] != substr($0, 1, k - 1) { print p }' |\n",
        "  while read -r p; do printf 'content %s %s\\n' \"$p\" \"$(base64 -w0 < \"$p\")\"; done\n",
        "fi\n",
    ));
    // Each NATS server's streams with their configs, from its monitoring endpoint (an empty
    // answer: the server does not run).
    let mut servers: Vec<(&str, &str)> = desired
        .streams
        .iter()
        .map(|s| (s.server.as_str(), s.monitor.as_str()))
        .collect();
    servers.sort();
    servers.dedup();
    for (server, monitor) in servers {
        s.raw("printf 'jsz %s '")
            .arg(server)
            .raw("; curl -s --max-time 3")
            .arg(format!("{monitor}{}", crate::backend::nats::JSZ_STREAMS))
            .raw(" | tr -d '\\n'; echo\n");
    }
    // Each database's migrations, as its own section (the list script never creates one).
    for db in &desired.databases {
        s.raw("printf 'dbsection %s\\n'").arg(&db.name).raw("\n");
        s.raw("( ")
            .script(&crate::backend::engine::for_db(db).list_script(root, db))
            .raw(" ) 2>/dev/null | sed 's/^/dbline /'\n");
    }
    let backend = supervisor::of(desired.supervisor);
    supervisor::when_running(&mut s, backend);
    s.raw(backend.functions())
        .raw(backend.observe())
        .raw("fi\nexit 0");
    s.into_string()
}

/// A path on the host: absolute as given, else under the root.
pub fn absolute(root: &str, path: &str) -> String {
    if path.starts_with('/') {
        path.to_string()
    } else {
        format!("{root}/{path}")
    }
}

/// What one host reported.
#[derive(Debug, Clone, Default)]
pub struct Observation {
    pub missing_programs: Vec<String>,
    pub state: Option<HostState>,
    pub lock: Option<Lock>,
    /// `$HOME` of the login, as the host reported it (a root under `~` is under it).
    pub home: Option<String>,
    /// The rollback that pinned the host, if one did.
    pub pin: Option<Pin>,
    /// The last journal line of a locked host: where its apply got to.
    pub last_step: Option<serde_json::Value>,
    pub observed: HostObserved,
    /// Databases that block an apply (dirty, not a database, locked), one message each.
    pub database_problems: Vec<String>,
    /// The message count of every stream the NATS servers reported, by stream name.
    pub stream_messages: BTreeMap<String, u64>,
    /// Every stream of each NATS server that answered, by server (plan name).
    pub nats_streams: BTreeMap<String, Vec<StreamConfig>>,
}

/// A report that cannot be trusted: the host must be looked at, not reset.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ObserveError {
    #[error("{root}/state.json is unreadable ({reason}); it is left as is")]
    BadState { root: String, reason: String },
    #[error(
        "{root}/state.json has schema {found}, newer than this wavectl ({STATE_SCHEMA}); upgrade wavectl"
    )]
    NewerState { root: String, found: u32 },
    #[error("{root}/pin.json is unreadable ({reason})")]
    BadPin { root: String, reason: String },
    #[error("{root}/lock is unreadable ({reason})")]
    BadLock { root: String, reason: String },
}

/// A file the script sent as base64, read as JSON; the error says why not.
fn decode<T: serde::de::DeserializeOwned>(b64: &str) -> Result<T, String> {
    let bytes = B64.decode(b64.trim()).map_err(|e| e.to_string())?;
    serde_json::from_slice(&bytes).map_err(|e| e.to_string())
}

pub fn parse(root: &str, stdout: &str) -> Result<Observation, ObserveError> {
    let mut o = Observation::default();
    let mut modes: BTreeMap<String, u32> = BTreeMap::new();
    let mut shas: BTreeMap<String, String> = BTreeMap::new();
    let mut contents: BTreeMap<String, String> = BTreeMap::new();
    let mut spawned: BTreeMap<String, u32> = BTreeMap::new();
    let mut status = Vec::new();
    let mut current_db: Option<String> = None;
    let mut db_lines: BTreeMap<String, String> = BTreeMap::new();
    for line in stdout.lines() {
        let (tag, rest) = line.split_once(' ').unwrap_or((line, ""));
        match tag {
            "home" if rest.starts_with('/') => o.home = Some(rest.to_string()),
            "bin" => {
                if let Some(p) = rest.strip_prefix("missing ") {
                    o.missing_programs.push(p.to_string());
                }
            }
            "state" => {
                let bad = |reason: String| ObserveError::BadState {
                    root: root.into(),
                    reason,
                };
                let bytes = B64.decode(rest.trim()).map_err(|e| bad(e.to_string()))?;
                let raw: serde_json::Value =
                    serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
                let found = raw.get("schema").and_then(|s| s.as_u64()).unwrap_or(0) as u32;
                if found > STATE_SCHEMA {
                    return Err(ObserveError::NewerState {
                        root: root.into(),
                        found,
                    });
                }
                o.state = Some(serde_json::from_value(raw).map_err(|e| bad(e.to_string()))?);
            }
            "lock" => {
                o.lock = Some(decode(rest).map_err(|reason| ObserveError::BadLock {
                    root: root.into(),
                    reason,
                })?);
            }
            "lastjournal" => o.last_step = decode(rest).ok(),
            "pin" => {
                o.pin = Some(decode(rest).map_err(|reason| ObserveError::BadPin {
                    root: root.into(),
                    reason,
                })?);
            }
            "mode" => {
                if let Some((m, p)) = rest.split_once(' ') {
                    modes.insert(p.to_string(), u32::from_str_radix(m, 8).unwrap_or(0));
                }
            }
            "sha" => {
                if let Some((sha, p)) = rest.split_once("  ") {
                    shas.insert(p.to_string(), sha.to_string());
                }
            }
            "content" => {
                if let Some((p, b)) = rest.split_once(' ') {
                    if let Ok(bytes) = B64.decode(b.trim()) {
                        contents
                            .insert(p.to_string(), String::from_utf8_lossy(&bytes).into_owned());
                    }
                } else {
                    contents.insert(rest.to_string(), String::new());
                }
            }
            "dbsection" => {
                current_db = Some(rest.to_string());
                db_lines.entry(rest.to_string()).or_default();
            }
            "dbline" => {
                if let Some(db) = &current_db {
                    let buf = db_lines.entry(db.clone()).or_default();
                    buf.push_str(rest);
                    buf.push('\n');
                }
            }
            "jsz" => {
                let (server, json) = rest.split_once(' ').unwrap_or((rest, ""));
                if let Some(streams) = crate::backend::nats::streams_of_jsz(json) {
                    o.nats_streams.insert(server.to_string(), streams);
                }
                o.stream_messages
                    .extend(crate::backend::nats::messages_of_jsz(json));
            }
            "proc" => status.extend(parse_proc_line(rest)),
            "spawns" => {
                let mut w = rest.split_whitespace();
                if let (Some(name), Some(n)) = (w.next(), w.next().and_then(|n| n.parse().ok())) {
                    spawned.insert(name.to_string(), n);
                }
            }
            _ => {}
        }
    }
    for (db, text) in db_lines {
        match crate::backend::engine::parse_list(&text) {
            Ok(listing) => {
                if let Some(why) = &listing.dirty {
                    o.database_problems.push(format!(
                        "database {db} is dirty: {why}; check it by hand, then run `wavectl migrations resolve PLAN --db {db}`"
                    ));
                }
                o.observed.databases.insert(db, listing.applied);
            }
            Err(e) => o.database_problems.push(format!("database {db}: {e}")),
        }
    }
    for (path, sha256) in shas {
        let mode = modes.get(&path).copied().unwrap_or(0);
        let content = contents.remove(&path);
        o.observed.files.insert(
            path,
            ObservedFile {
                sha256,
                mode,
                content,
            },
        );
    }
    let hashes = o
        .state
        .as_ref()
        .map(|s| s.processes.clone())
        .unwrap_or_default();
    for l in status
        .into_iter()
        .filter(|l| l.name != crate::backend::supervisord::SPAWN_COUNTER)
    {
        let restarts = spawned.get(&l.name).map_or(0, |n| n.saturating_sub(1));
        let p = ObservedProcess {
            state: l.state,
            pid: l.pid,
            uptime_s: l.uptime_s,
            restarts,
            spec_hash: hashes.get(&l.name).cloned(),
        };
        o.observed.processes.insert(l.name, p);
    }
    Ok(o)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observed::ProcessState;

    #[test]
    fn a_report_parses_into_files_processes_state_and_missing_programs() {
        let state = B64.encode(r#"{"schema":1,"generation":4,"commit":"abc","plan":"p","applied_at":"t","operator":"op","files":{},"processes":{"edge":"h1"}}"#);
        let report = format!(
            "bin ok supervisord\nbin missing nats-server\nstate {state}\nmode 644 files/a.yml\nmode 600 files/env/x.env\nsha {a}  files/a.yml\nsha {b}  files/env/x.env\ncontent files/a.yml {content}\nproc edge RUNNING 42 1000 1060\nproc oracle FATAL 0 0 1060\nproc wv-spawns RUNNING 43 999 1060\nspawns edge 3\n",
            a = "a".repeat(64),
            b = "b".repeat(64),
            content = B64.encode("x: 1\n"),
        );
        let o = parse("/r", &report).unwrap();
        assert_eq!(o.missing_programs, vec!["nats-server"]);
        assert_eq!(o.state.as_ref().unwrap().generation, 4);
        assert_eq!(
            o.observed.files["files/a.yml"].content.as_deref(),
            Some("x: 1\n")
        );
        assert_eq!(o.observed.files["files/env/x.env"].mode, 0o600);
        assert_eq!(o.observed.files["files/env/x.env"].content, None);
        let edge = &o.observed.processes["edge"];
        assert_eq!(
            (
                edge.state,
                edge.pid,
                edge.restarts,
                edge.spec_hash.as_deref()
            ),
            (ProcessState::Running, Some(42), 2, Some("h1"))
        );
        assert_eq!(edge.uptime_s, Some(60));
        assert_eq!(o.observed.processes["oracle"].state, ProcessState::Fatal);
        assert!(!o.observed.processes.contains_key("wv-spawns"));
    }

    fn hostile_desired() -> HostDesired {
        use crate::primitive::{DatabaseSpec, FileSpec, Origin};
        let origin = Origin {
            wave: "w".into(),
            resource: "file.f".into(),
        };
        HostDesired {
            files: vec![FileSpec {
                path: "files/a'b.yml".into(),
                content: "WV_B64\nEOF_WANT\n$(touch /tmp/wv-marker)\n".into(),
                mode: 0o644,
                secret_keys: vec![],
                origin: origin.clone(),
            }],
            databases: vec![DatabaseSpec {
                name: "app".into(),
                engine: Default::default(),
                path: "data/app.db".into(),
                postgres: None,
                migrations: vec![],
                origin,
            }],
            ..HostDesired::default()
        }
    }

    #[test]
    fn the_observe_script_quotes_every_value_and_carries_hashes_in_base64() {
        insta::assert_snapshot!(script("/srv/wv root", &hostile_desired()));
    }

    #[test]
    fn the_observe_script_reports_only_the_files_that_differ() {
        let root = std::env::temp_dir().join(format!("wv-observe-{}", std::process::id()));
        let files = root.join("files");
        std::fs::create_dir_all(&files).unwrap();
        let desired = hostile_desired();
        // One file as planned, one that differs.
        std::fs::write(files.join("a'b.yml"), &desired.files[0].content).unwrap();
        std::fs::write(files.join("other.yml"), "x").unwrap();
        let mut wanted = desired.clone();
        wanted.files.push(crate::primitive::FileSpec {
            path: "files/other.yml".into(),
            content: "y".into(),
            ..desired.files[0].clone()
        });
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(script(root.to_str().unwrap(), &wanted))
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        std::fs::remove_dir_all(&root).unwrap();
        let o = parse("/r", &stdout).unwrap();
        assert_eq!(
            o.observed.files["files/other.yml"].content.as_deref(),
            Some("x")
        );
        assert_eq!(o.observed.files["files/a'b.yml"].content, None, "{stdout}");
        assert!(!std::path::Path::new("/tmp/wv-marker").exists());
    }

    #[test]
    fn stream_configs_come_from_the_monitoring_endpoint() {
        // As nats-server 2.9.10 answers (one stream, config fields as it prints them).
        let jsz = r#"{"account_details":[{"stream_detail":[{"name":"S","config":{"name":"S","subjects":["a.b"],"retention":"limits","max_consumers":-1,"max_msgs":-1,"max_bytes":-1,"max_age":86400000000000,"max_msgs_per_subject":-1,"max_msg_size":-1,"discard":"old","storage":"file","num_replicas":1,"duplicate_window":120000000000,"sources":[{"name":"T","external":{"api":"$JS.pc2.API","deliver":""}}],"allow_direct":false,"mirror_direct":false,"sealed":false,"deny_delete":false,"deny_purge":false,"allow_rollup_hdrs":false}}]}]}"#;
        let o = parse("/r", &format!("jsz nats-a {jsz}\njsz nats-b \n")).unwrap();
        let s = &o.nats_streams["nats-a"][0];
        assert_eq!(
            (
                s.name.as_str(),
                s.max_age_ms,
                s.sources[0].external_api.as_deref()
            ),
            ("S", 86_400_000, Some("$JS.pc2.API"))
        );
        assert!(
            !o.nats_streams.contains_key("nats-b"),
            "a server that did not answer reports nothing"
        );
    }

    #[test]
    fn a_newer_state_schema_is_an_error_not_a_reset() {
        let state = B64.encode(r#"{"schema":99}"#);
        let err = parse("/r", &format!("state {state}\n")).unwrap_err();
        assert_eq!(
            err,
            ObserveError::NewerState {
                root: "/r".into(),
                found: 99
            }
        );
        let err = parse("/r", "state !!!\n").unwrap_err();
        assert!(matches!(err, ObserveError::BadState { .. }));
    }
}
