//! supervisord: the host-side functions that drive the per-root supervisord over its own
//! unix socket (its XML-RPC interface, with curl: no Python starts per call), and parsing what
//! they print.

use crate::backend::script::Script;
use crate::backend::supervisor::{Backend, BackendFile, Render};
use crate::observed::ProcessState;
use crate::primitive::ProcessSpec;

/// The per-root supervisord config, relative to the root.
pub const CONF: &str = "files/supervisor/supervisord.conf";
pub const PIDFILE: &str = "run/supervisord.pid";
/// The event listener that counts each program's starts in `run/spawns/NAME`.
pub const SPAWN_COUNTER: &str = "wv-spawns";

/// Shell functions for scripts that run in the root. Names reach them as arguments and are
/// checked against the name rule (`value::Ident`) before they go into a request; nothing of
/// the plan is pasted into this text. Each function's variables carry its own prefix: sh has
/// no local scope, and these functions call each other.
///
/// - `wv_rpc METHOD PARAMS`: one call; the answer's XML on stdout.
/// - `wv_calls METHOD EXTRA NAME...`: `system.multicall` of METHOD(NAME, EXTRA...) per name.
/// - `wv_faults "CODES"`: reads an answer; each fault whose code is not in CODES goes to
///   stderr, status 1 if any did.
/// - `wv_procs`: every process as `NAME STATE PID START NOW`.
/// - `wv_start`/`wv_stop`/`wv_restart NAME...`: all at once, without waiting on each (a stop
///   waits until all are down; starts are waited for by `wv_wait_running`).
/// - `wv_update`: reread the config; stop and remove the programs that changed or went, add
///   the changed and new ones (supervisorctl's `update`, without its second per program).
pub const FUNCTIONS: &str = r#"wv_rpc() {
  curl -sS --max-time 60 --unix-socket run/supervisor.sock -H 'Content-Type: text/xml' \
    --data-binary "<?xml version=\"1.0\"?><methodCall><methodName>$1</methodName><params>$2</params></methodCall>" \
    http://localhost/RPC2
}
wv_calls() {
  ca_m=$1; ca_a=$2; shift 2
  ca_c=""
  for ca_n in "$@"; do
    case "$ca_n" in ''|*[!A-Za-z0-9._-]*) echo "not a program name: $ca_n" >&2; return 1 ;; esac
    ca_c="$ca_c<value><struct><member><name>methodName</name><value><string>$ca_m</string></value></member><member><name>params</name><value><array><data><value><string>$ca_n</string></value>$ca_a</data></array></value></member></struct></value>"
  done
  wv_rpc system.multicall "<param><value><array><data>$ca_c</data></array></value></param>"
}
wv_faults() {
  awk -v ok=" $1 " '/<name>faultCode<\/name>/ { getline; c = $0; gsub(/[^0-9]/, "", c) }
    /<name>faultString<\/name>/ { getline; t = $0; sub(/^[ \t]*<value><string>/, "", t); sub(/<\/string><\/value>.*/, "", t)
      if (index(ok, " " c " ") == 0) { print "supervisord: " t > "/dev/stderr"; bad = 1 } }
    END { exit bad }'
}
wv_procs() {
  pr_r=$(wv_rpc supervisor.getAllProcessInfo "") || return 1
  printf '%s\n' "$pr_r" | awk '/^[ \t]*<name>[a-z_]*<\/name>/ { k = $0; sub(/^[ \t]*<name>/, "", k); sub(/<\/name>.*/, "", k); next }
    k != "" && /<value>/ { v = $0; sub(/^[ \t]*<value><[a-z0-9]*>/, "", v); sub(/<\/[a-z0-9]*><\/value>.*/, "", v); f[k] = v; k = ""; next }
    /<\/struct>/ { if (f["name"] != "") print f["name"], f["statename"], f["pid"], f["start"], f["now"]; split("", f) }'
}
wv_supervisord() {
  if [ -f run/supervisord.pid ] && kill -0 "$(cat run/supervisord.pid)" 2>/dev/null; then return 0; fi
  supervisord -c "$PWD/files/supervisor/supervisord.conf" </dev/null >/dev/null 2>&1
  sd_i=0
  until wv_rpc supervisor.getPID "" 2>/dev/null | grep -q '<int>'; do
    sd_i=$((sd_i + 1)); [ "$sd_i" -lt 100 ] || { echo "supervisord did not start; see $PWD/logs/supervisord.log" >&2; return 1; }
    sleep 0.1
  done
}
wv_wait_running() {
  wr_end=$(( $(date +%s) + 30 ))
  while :; do
    wr_bad=$(wv_procs | WANT="$*" awk 'BEGIN { n = split(ENVIRON["WANT"], w, " ") } { s[$1] = $2 } END { for (i = 1; i <= n; i++) if (s[w[i]] != "RUNNING") print w[i], ((w[i] in s) ? s[w[i]] : "ABSENT") }')
    [ -z "$wr_bad" ] && return 0
    wr_fatal=$(printf '%s\n' "$wr_bad" | awk '$2 == "FATAL" { print $1 }')
    for wr_n in $wr_fatal; do echo "$wr_n could not start (FATAL: it exits too quickly); see $PWD/logs/$wr_n.log" >&2; done
    [ -z "$wr_fatal" ] || return 1
    [ "$(date +%s)" -lt "$wr_end" ] || { echo "not running 30s after start:$(printf '%s\n' "$wr_bad" | awk '{ printf " %s", $1 }') (see $PWD/logs/)" >&2; return 1; }
    sleep 0.2
  done
}
wv_wait_stopped() {
  ws_end=$(( $(date +%s) + 120 ))
  while :; do
    ws_up=$(wv_procs | WANT="$*" awk 'BEGIN { n = split(ENVIRON["WANT"], w, " "); for (i = 1; i <= n; i++) want[w[i]] = 1 } ($1 in want) && $2 ~ /^(RUNNING|STARTING|STOPPING|BACKOFF)$/ { printf " %s", $1 }')
    [ -z "$ws_up" ] && return 0
    [ "$(date +%s)" -lt "$ws_end" ] || { echo "still running 120s after stop:$ws_up" >&2; return 1; }
    sleep 0.1
  done
}
wv_start() {
  st_r=$(wv_calls supervisor.startProcess '<value><boolean>0</boolean></value>' "$@") || return 1
  printf '%s\n' "$st_r" | wv_faults "60"
}
wv_stop() {
  sp_r=$(wv_calls supervisor.stopProcess '<value><boolean>0</boolean></value>' "$@") || return 1
  printf '%s\n' "$sp_r" | wv_faults "10 70" && wv_wait_stopped "$@"
}
wv_restart() {
  wv_stop "$@" && wv_start "$@"
}
wv_update() {
  wv_supervisord || return 1
  up_r=$(wv_rpc supervisor.reloadConfig "") || { echo "supervisord did not answer on $PWD/run/supervisor.sock" >&2; return 1; }
  printf '%s\n' "$up_r" | wv_faults "" || return 1
  up_l=$(printf '%s\n' "$up_r" | awk '/<array><data>/ { d++; if (d == 3) k++; next } /<\/data><\/array>/ { d--; next } d == 3 && /<string>/ { v = $0; sub(/.*<string>/, "", v); sub(/<\/string>.*/, "", v); print k, v }')
  up_down=$(printf '%s\n' "$up_l" | awk 'NF == 2 && $1 != 1 { print $2 }')
  up_up=$(printf '%s\n' "$up_l" | awk 'NF == 2 && $1 != 3 { print $2 }')
  if [ -n "$up_down" ]; then
    wv_stop $up_down || return 1
    up_r=$(wv_calls supervisor.removeProcessGroup "" $up_down) || return 1
    printf '%s\n' "$up_r" | wv_faults "" || return 1
  fi
  if [ -n "$up_up" ]; then
    up_r=$(wv_calls supervisor.addProcessGroup "" $up_up) || return 1
    printf '%s\n' "$up_r" | wv_faults "90" || return 1
  fi
  printf '%s\n' "$up_l" | awk 'NF == 2 { print $2 ": " ($1 == 1 ? "added" : $1 == 2 ? "changed" : "removed") }'
}
"#;

/// A program's `command=` value: each argument one word for supervisord's shlex split,
/// written so that its INI reader keeps it whole. Arguments are one line (the value types
/// refuse newlines); `%` is doubled (supervisord expands `%(name)s`); whitespace is never
/// directly followed by `;` or `#` (an inline comment to that reader): the quote is closed
/// and reopened after every whitespace character. Plain words stay bare (the set shlex
/// leaves bare, so program files written before keep their bytes).
pub fn command_line(argv: &[String]) -> String {
    argv.iter()
        .map(|a| {
            let plain = !a.is_empty()
                && a.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-./:@]_".contains(c));
            if plain {
                return a.clone();
            }
            let mut w = String::from("'");
            for c in a.chars() {
                match c {
                    '\'' => w.push_str("'\\''"),
                    '%' => w.push_str("%%"),
                    c if c.is_whitespace() => {
                        w.push(c);
                        w.push_str("''");
                    }
                    c => w.push(c),
                }
            }
            w.push('\'');
            w
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A plain INI value for supervisord (a directory): `%` doubled.
pub fn ini_value(text: &str) -> String {
    text.replace('%', "%%")
}

/// One process as `wv_procs` prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusLine {
    pub name: String,
    pub state: ProcessState,
    pub pid: Option<u32>,
    pub uptime_s: Option<u64>,
}

/// Parses `NAME STATE PID START NOW` (supervisord's process info: the pid is 0 and the start
/// 0 or stale when the process does not run).
pub fn parse_proc_line(line: &str) -> Option<StatusLine> {
    let mut words = line.split_whitespace();
    let name = words.next()?.to_string();
    let state = match words.next()? {
        "RUNNING" => ProcessState::Running,
        "STARTING" => ProcessState::Starting,
        "BACKOFF" => ProcessState::Backoff,
        "STOPPING" => ProcessState::Stopping,
        "STOPPED" => ProcessState::Stopped,
        "EXITED" => ProcessState::Exited,
        "FATAL" => ProcessState::Fatal,
        _ => ProcessState::Unknown,
    };
    let mut number = || words.next().and_then(|w| w.parse::<u64>().ok());
    let (pid, start, now) = (number(), number(), number());
    let running = state == ProcessState::Running;
    Some(StatusLine {
        name,
        state,
        pid: pid
            .filter(|p| *p > 0 && running)
            .and_then(|p| u32::try_from(p).ok()),
        uptime_s: match (start, now) {
            (Some(start), Some(now)) if running && start > 0 => Some(now.saturating_sub(start)),
            _ => None,
        },
    })
}

/// supervisord as the supervisor seam's backend.
pub struct Supervisord;

/// Where supervisord's program files live, relative to the root.
const PROGRAMS_DIR: &str = "files/supervisor/programs/";

impl Backend for Supervisord {
    fn name(&self) -> &'static str {
        "supervisord"
    }

    fn functions(&self) -> &'static str {
        FUNCTIONS
    }

    fn pidfile(&self) -> &'static str {
        PIDFILE
    }

    fn base_programs(&self) -> &'static [&'static str] {
        // curl speaks to supervisord over its socket.
        &["supervisord", "curl", "sha256sum", "base64", "awk"]
    }

    fn files_dir(&self) -> &'static str {
        "files/supervisor/"
    }

    fn program_path(&self, name: &str) -> String {
        format!("{PROGRAMS_DIR}{name}.conf")
    }

    fn program_of_path<'p>(&self, path: &'p str) -> Option<&'p str> {
        path.strip_prefix(PROGRAMS_DIR)?.strip_suffix(".conf")
    }

    fn ensure_daemon(&self) -> &'static str {
        "wv_supervisord\n"
    }

    fn update_step(&self, s: &mut Script, _names: &[&str], rollback: bool) {
        if !rollback {
            // `update` adds new programs, restarts those whose program file changed and
            // stops and removes those whose file is gone, each kind all at once.
            s.raw("wv_update\n");
            return;
        }
        // When the wave created supervisord's own config, no program ran before it: stop
        // supervisord (and with it its programs) instead of reloading a config that is gone.
        s.raw("if [ -f ")
            .raw(CONF)
            .raw(" ]; then\n  wv_update\nelif [ -f ")
            .raw(PIDFILE)
            .raw(" ] && kill -0 \"$(cat ")
            .raw(PIDFILE)
            .raw(")\" 2>/dev/null; then\n  p=$(cat ")
            .raw(PIDFILE)
            .raw(")\n  kill -TERM \"$p\"\n  i=0\n  while kill -0 \"$p\" 2>/dev/null && ! ps -o stat= -p \"$p\" | grep -q Z && [ \"$i\" -lt 300 ]; do sleep 0.1; i=$((i + 1)); done\nfi\n");
    }

    fn observe(&self) -> &'static str {
        concat!(
            "  wv_procs | sed 's/^/proc /'\n",
            // Starts counted by the event listener: a number per program, not a log.
            "  [ -d run/spawns ] && find run/spawns -maxdepth 1 -type f ! -name '*.tmp' -exec awk 'FNR == 1 { n = FILENAME; sub(/.*\\//, \"\", n); print \"spawns\", n, $1 + 0 }' {} +\n",
        )
    }

    fn helpers(&self) -> &'static [&'static str] {
        &[SPAWN_COUNTER]
    }

    fn host_files(&self, render: &mut Render<'_>) -> Vec<BackendFile> {
        use crate::plan::expand::{PATH_SPAWN_COUNTER, PATH_SUPERVISORD_CONF};
        let mut out = Vec::new();
        let Some(conf) = render("supervisord.conf.tera", None) else {
            return out;
        };
        // A supervisord.conf rendered with older built-ins may not run the listener.
        let counts_spawns = conf.contains(PATH_SPAWN_COUNTER);
        out.push(BackendFile {
            path: PATH_SUPERVISORD_CONF.into(),
            content: conf,
            mode: 0o644,
        });
        if counts_spawns && let Some(text) = render("supervisor-spawns.sh.tera", None) {
            out.push(BackendFile {
                path: PATH_SPAWN_COUNTER.into(),
                content: text,
                mode: 0o755,
            });
        }
        out
    }

    fn program_file(
        &self,
        _root: &str,
        p: &ProcessSpec,
        argv: &[String],
        render: &mut Render<'_>,
    ) -> Option<BackendFile> {
        let process = serde_json::json!({
            "name": p.name, "origin": p.origin.resource, "wave": p.origin.wave,
            "command_line": command_line(argv), "cwd": p.cwd.as_deref().map(ini_value), "autorestart": p.autorestart,
            "min_uptime_s": p.min_uptime_s, "max_restarts": p.max_restarts,
            "stop_signal": format!("{:?}", p.stop_signal), "kill_timeout_s": p.kill_timeout_s,
            "log_max_bytes": p.log_max_bytes, "log_keep": p.log_keep,
        });
        Some(BackendFile {
            path: self.program_path(&p.name),
            content: render("supervisor-program.conf.tera", Some(process))?,
            mode: 0o644,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_line_survives_supervisords_ini_reader_and_shlex() {
        let argv: Vec<String> = ["/bin/sh", "-c", "echo 100% ;done #x", "it's"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            command_line(&argv),
            r"/bin/sh -c 'echo ''100%% '';done ''#x' 'it'\''s'"
        );
    }

    #[test]
    fn process_lines_of_each_state_parse() {
        let l =
            parse_proc_line("agent-ResourceManager RUNNING 4711 1796100000 1796193784").unwrap();
        assert_eq!(
            (l.name.as_str(), l.state, l.pid, l.uptime_s),
            (
                "agent-ResourceManager",
                ProcessState::Running,
                Some(4711),
                Some(93_784)
            )
        );
        let l = parse_proc_line("edge FATAL 0 1796100000 1796193784").unwrap();
        assert_eq!(
            (l.state, l.pid, l.uptime_s),
            (ProcessState::Fatal, None, None)
        );
        let l = parse_proc_line("oracle STOPPED 0 0 1796193784").unwrap();
        assert_eq!((l.state, l.pid), (ProcessState::Stopped, None));
        assert_eq!(
            parse_proc_line("odd WHATEVER").unwrap().state,
            ProcessState::Unknown
        );
    }
}
