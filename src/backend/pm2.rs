//! PM2: a process becomes an ecosystem file `files/pm2/NAME.json` (one app, built with
//! serde_json), driven with `pm2 startOrReload` / `startOrRestart` / `stop` / `delete` /
//! `jlist` under the root's own `PM2_HOME` (`run/pm2`), so one machine runs several roots.
//! Secrets never reach an ecosystem file or a command line: the app is the env wrapper
//! (`files/bin/run-with-env.sh`), which reads the 0600 env files and `exec`s the command.

use serde_json::json;

use crate::backend::script::Script;
use crate::backend::supervisor::{Backend, BackendFile, Render};
use crate::primitive::ProcessSpec;

/// The version `scripts/install-deps` installs and the missing-program hint names.
pub const VERSION: &str = "6.0.14";
/// The root's PM2_HOME, relative to the root.
pub const HOME: &str = "run/pm2";
pub const PIDFILE: &str = "run/pm2/pm2.pid";
const DIR: &str = "files/pm2/";

/// The command that installs pm2 where it is missing.
pub fn install_command() -> String {
    format!("npm install -g pm2@{VERSION}")
}

/// Shell functions of the supervisor contract (see `backend::supervisor`) for PM2. Names
/// reach them as arguments and are checked before they reach pm2: the name rule, and neither
/// `all` nor a number (pm2 reads those as every process and as a process id). Each
/// function's variables carry its own prefix (sh has no local scope).
///
/// - `wv_pm2 ARGS...`: pm2 under the root's PM2_HOME, a directory of mode 0700 (its first
///   call starts the daemon).
/// - `wv_apps NAME...`: the apps of NAME's ecosystem files, merged into `run/pm2-apps.json`,
///   so one pm2 call acts on all of them.
/// - `wv_pm2_kill`: stops the daemon (and so its processes), waiting until it is gone.
pub const FUNCTIONS: &str = r#"wv_pm2() {
  [ -d run/pm2 ] || (umask 077; mkdir -p run/pm2)
  PM2_HOME="$PWD/run/pm2" NO_COLOR=1 FORCE_COLOR=0 pm2 "$@"
}
wv_pm2_up() {
  [ -f run/pm2/pm2.pid ] && kill -0 "$(cat run/pm2/pm2.pid)" 2>/dev/null
}
wv_names() {
  for nm_n in "$@"; do
    case "$nm_n" in ''|*[!A-Za-z0-9._-]*) echo "not a program name: $nm_n" >&2; return 1 ;; esac
    case "$nm_n" in
      all) echo "pm2 reads 'all' as every process: not a program name on a pm2 host" >&2; return 1 ;;
      *[!0-9]*) ;;
      *) echo "pm2 reads a number as a process id: $nm_n is not a program name on a pm2 host" >&2; return 1 ;;
    esac
  done
}
wv_procs() {
  wv_pm2_up || return 0
  pr_j=$(wv_pm2 jlist 2>/dev/null) || return 1
  printf '%s\n' "$pr_j" | node -e 'let s = "";
process.stdin.on("data", (d) => { s += d; }).on("end", () => {
  let a = [];
  for (const l of s.split("\n")) { try { const v = JSON.parse(l); if (Array.isArray(v)) a = v; } catch (e) {} }
  const st = { online: "RUNNING", launching: "STARTING", "waiting restart": "BACKOFF", stopping: "STOPPING", stopped: "STOPPED", "one-launch-status": "EXITED", errored: "FATAL" };
  const now = Math.floor(Date.now() / 1000);
  for (const p of a) {
    const e = p.pm2_env || {};
    console.log(p.name, st[e.status] || "UNKNOWN", p.pid || 0, Math.floor((e.pm_uptime || 0) / 1000), now, e.restart_time || 0);
  }
});'
}
wv_known() {
  kn_k=$(wv_procs | awk '{ print $1 }')
  for kn_n in "$@"; do printf '%s\n' "$kn_k" | grep -qxF -- "$kn_n" && printf '%s\n' "$kn_n"; done
  return 0
}
wv_apps() {
  wv_names "$@" || return 1
  node -e 'const fs = require("fs");
const apps = [];
for (const n of process.argv.slice(1)) apps.push(...JSON.parse(fs.readFileSync("files/pm2/" + n + ".json", "utf8")).apps);
fs.writeFileSync("run/pm2-apps.json", JSON.stringify({ apps }));' "$@"
}
wv_pm2_kill() {
  wv_pm2_up || return 0
  pk_p=$(cat run/pm2/pm2.pid)
  wv_pm2 kill >/dev/null 2>&1 || kill -TERM "$pk_p" 2>/dev/null || true
  pk_i=0
  while kill -0 "$pk_p" 2>/dev/null && ! ps -o stat= -p "$pk_p" | grep -q Z && [ "$pk_i" -lt 100 ]; do sleep 0.1; pk_i=$((pk_i + 1)); done
}
wv_start() {
  wv_apps "$@" && wv_pm2 startOrRestart run/pm2-apps.json --update-env >/dev/null
}
wv_restart() {
  wv_start "$@"
}
wv_stop() {
  wv_names "$@" || return 1
  sp_l=$(wv_known "$@")
  [ -z "$sp_l" ] || wv_pm2 stop $sp_l >/dev/null
}
wv_update() {
  wv_names "$@" || return 1
  up_new=""; up_gone=""
  for up_n in "$@"; do
    if [ -f "files/pm2/$up_n.json" ]; then up_new="$up_new $up_n"; else up_gone="$up_gone $up_n"; fi
  done
  if [ -n "$up_gone" ]; then
    up_l=$(wv_known $up_gone)
    if [ -n "$up_l" ]; then wv_pm2 delete $up_l >/dev/null || return 1; fi
    for up_n in $up_gone; do echo "$up_n: removed"; done
  fi
  if [ -n "$up_new" ]; then
    wv_apps $up_new && wv_pm2 startOrReload run/pm2-apps.json --update-env >/dev/null || return 1
    for up_n in $up_new; do echo "$up_n: started"; done
  fi
  # No program left: the daemon goes too, so nothing of this root keeps running.
  if ! ls files/pm2/*.json >/dev/null 2>&1; then wv_pm2_kill; fi
}
wv_wait_running() {
  wr_end=$(( $(date +%s) + 30 ))
  wr_prev=""
  while :; do
    wr_now=$(wv_procs)
    # pm2 calls a process online as soon as it is spawned: it counts as running once two
    # looks in a row saw it online with the same pid (one that exits at once never does).
    wr_bad=$(printf '%s\n' "$wr_now" | WANT="$*" PREV="$wr_prev" awk 'BEGIN { n = split(ENVIRON["WANT"], w, " "); m = split(ENVIRON["PREV"], p, "\n"); for (i = 1; i <= m; i++) { split(p[i], f, " "); if (f[2] == "RUNNING") was[f[1]] = f[3] } } { s[$1] = $2; pid[$1] = $3 } END { for (i = 1; i <= n; i++) { k = w[i]; if (s[k] != "RUNNING") print k, ((k in s) ? s[k] : "ABSENT"); else if (was[k] != pid[k]) print k, "STARTING" } }')
    wr_prev=$wr_now
    [ -z "$wr_bad" ] && return 0
    wr_fatal=$(printf '%s\n' "$wr_bad" | awk '$2 == "FATAL" { print $1 }')
    for wr_n in $wr_fatal; do echo "$wr_n could not start (pm2: errored, it exits too quickly); see $PWD/logs/$wr_n.log" >&2; done
    [ -z "$wr_fatal" ] || return 1
    [ "$(date +%s)" -lt "$wr_end" ] || { echo "not running 30s after start:$(printf '%s\n' "$wr_bad" | awk '{ printf " %s", $1 }') (see $PWD/logs/)" >&2; return 1; }
    sleep 0.2
  done
}
"#;

/// PM2 as the supervisor seam's backend.
pub struct Pm2;

impl Backend for Pm2 {
    fn name(&self) -> &'static str {
        "pm2"
    }

    fn functions(&self) -> &'static str {
        FUNCTIONS
    }

    fn pidfile(&self) -> &'static str {
        PIDFILE
    }

    fn base_programs(&self) -> &'static [&'static str] {
        &["pm2", "node", "sha256sum", "base64", "awk"]
    }

    fn files_dir(&self) -> &'static str {
        DIR
    }

    fn program_path(&self, name: &str) -> String {
        format!("{DIR}{name}.json")
    }

    fn program_of_path<'p>(&self, path: &'p str) -> Option<&'p str> {
        path.strip_prefix(DIR)?.strip_suffix(".json")
    }

    fn ensure_daemon(&self) -> &'static str {
        // pm2's first command starts the daemon.
        ""
    }

    fn update_step(&self, s: &mut Script, names: &[&str], _rollback: bool) {
        s.raw("wv_update");
        for n in names {
            s.arg(n);
        }
        s.raw("\n");
    }

    fn observe(&self) -> &'static str {
        // jlist's restart count is the starts so far less the first.
        "  wv_procs | awk '{ print \"proc\", $1, $2, $3, $4, $5; print \"spawns\", $1, $6 + 1 }'\n"
    }

    fn helpers(&self) -> &'static [&'static str] {
        &[]
    }

    fn host_files(&self, _render: &mut Render<'_>) -> Vec<BackendFile> {
        Vec::new()
    }

    fn program_file(
        &self,
        root: &str,
        p: &ProcessSpec,
        argv: &[String],
        _render: &mut Render<'_>,
    ) -> Option<BackendFile> {
        Some(BackendFile {
            path: self.program_path(&p.name),
            content: ecosystem(root, p, argv),
            mode: 0o644,
        })
    }
}

/// The ecosystem file of one process. Its env is not here: every variable and secret is in
/// the process's env files, which the wrapper in `argv` reads (pm2 keeps an app's `env` in
/// its daemon and prints it in `jlist`). PM2 stops a process with SIGINT, then SIGKILL after
/// `kill_timeout`; it has no per-app stop signal. Log rotation is pm2-logrotate's (a module
/// of the PM2_HOME, not of an app): without it a log grows unbounded.
pub fn ecosystem(root: &str, p: &ProcessSpec, argv: &[String]) -> String {
    let log = format!("{root}/logs/{}.log", p.name);
    let app = json!({
        "name": p.name,
        "script": argv.first().cloned().unwrap_or_default(),
        "args": argv.iter().skip(1).collect::<Vec<_>>(),
        "interpreter": "none",
        "exec_mode": "fork",
        "cwd": p.cwd.clone().unwrap_or_else(|| root.to_string()),
        "autorestart": p.autorestart,
        "restart_delay": p.restart_delay_ms,
        "max_restarts": p.max_restarts,
        "min_uptime": p.min_uptime_s * 1000,
        "kill_timeout": p.kill_timeout_s * 1000,
        "treekill": true,
        "out_file": log,
        "error_file": log,
        "merge_logs": true,
        "vizion": false,
        "automation": false,
        "pmx": false,
    });
    let mut text = serde_json::to_string_pretty(&json!({ "apps": [app] })).unwrap_or_default();
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ecosystem_file_carries_the_argv_as_a_list_and_no_environment() {
        let p = ProcessSpec {
            name: "oracle".into(),
            command: vec![],
            cwd: None,
            env_files: vec![],
            autorestart: true,
            restart_delay_ms: 1000,
            max_restarts: 3,
            min_uptime_s: 2,
            stop_signal: Default::default(),
            kill_timeout_s: 5,
            log_max_bytes: 0,
            log_keep: 0,
            config_hashes: Default::default(),
            origin: crate::primitive::Origin {
                wave: "w".into(),
                resource: "process.oracle".into(),
            },
        };
        let argv: Vec<String> = [
            "/r/files/bin/run-with-env.sh",
            "/r/files/env/oracle.env",
            "--",
            "sh",
            "-c",
            "echo \"$(id)\" 'x'",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let text = ecosystem("/r", &p, &argv);
        let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        let app = &v["apps"][0];
        assert_eq!(app["script"], "/r/files/bin/run-with-env.sh");
        assert_eq!(app["args"][4], "echo \"$(id)\" 'x'");
        assert_eq!(app["cwd"], "/r");
        assert_eq!(app["min_uptime"], 2000);
        assert_eq!(app["kill_timeout"], 5000);
        assert_eq!(app["out_file"], "/r/logs/oracle.log");
        assert!(app.get("env").is_none());
    }

    #[test]
    fn a_pm2_hosts_observe_and_process_probe_ask_pm2_and_start_no_daemon() {
        let desired = crate::primitive::HostDesired {
            root: "/r".into(),
            supervisor: crate::inventory::Supervisor::Pm2,
            ..Default::default()
        };
        let observe = crate::backend::observe::script("/r", &desired);
        // Only when the root's daemon runs: observing never starts one.
        assert!(observe.contains(&format!(
            "if [ -f {PIDFILE} ] && kill -0 \"$(cat {PIDFILE})\" 2>/dev/null; then\n{FUNCTIONS}"
        )));
        assert!(observe.contains("print \"spawns\", $1, $6 + 1"));
        assert!(!observe.contains("supervisor.sock"));
        let needed = crate::backend::observe::needed_programs(&desired);
        assert_eq!(&needed[..2], ["pm2", "node"]);
        let probe = crate::primitive::Probe::Process {
            host: "h".into(),
            name: "a'b".into(),
            soak_s: 1,
            supervisor: crate::inventory::Supervisor::Pm2,
        };
        let script = crate::gate::script(&probe, "/r");
        assert!(script.contains(FUNCTIONS) && script.contains("n='a'\\''b'"));
    }

    #[test]
    fn the_update_step_names_each_program() {
        let mut s = Script::new();
        Pm2.update_step(&mut s, &["a", "b'c"], false);
        assert_eq!(s.as_str(), "wv_update 'a' 'b'\\''c'\n");
    }
}
