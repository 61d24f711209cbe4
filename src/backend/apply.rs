//! The apply steps as shell scripts: take the lock, apply one wave's changes on a host (atomic
//! writes with the previous bytes kept in `backups/<generation>/`, supervisord programs), undo
//! what left the plan, and record the new generation. Every step appends a journal line.

use std::fmt::Write as _;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::json;

use crate::backend::sh_quote;
use crate::backend::sqlite;
use crate::backend::supervisord::{CONF, PIDFILE};
use crate::diff::{Change, FileAction, MigrationAction, ProcessAction};

/// Step labels of migrations: `apply migration DB FILE`, `revert migration DB FILE`.
pub const APPLY_PREFIX: &str = "apply migration ";
pub const REVERT_PREFIX: &str = "revert migration ";
use crate::primitive::HostDesired;
use crate::state::{HostState, Lock};

/// Functions every apply script starts with. `G` is the generation being made, `W` the wave.
const PRELUDE: &str = r#"set -eu
umask 022
WV_STEP=start
trap 'rc=$?; [ "$rc" -eq 0 ] || printf "failed %s\n" "$WV_STEP"' EXIT
mkdir -p files logs run data "backups/$G"
wv_journal() {
  printf '{"ts":"%s","generation":%s,"wave":%s,"step":%s,"result":"%s"}\n' \
    "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$G" "$W" "$1" "$2" >> journal.jsonl
}
wv_backup() {
  if [ -e "$1" ]; then
    mkdir -p "backups/$G/$(dirname "$1")"
    [ -e "backups/$G/$1" ] || cp -p "$1" "backups/$G/$1"
  else
    grep -qxF "$1" "backups/$G/created" 2>/dev/null || printf '%s\n' "$1" >> "backups/$G/created"
  fi
}
wv_write() {
  d=$(dirname "$1")
  mkdir -p "$d"
  t="$1.wv-tmp.$$"
  (umask 077; base64 -d > "$t")
  chmod "$2" "$t"
  sync "$t"
  wv_backup "$1"
  mv -f "$t" "$1"
  sync "$d"
}
wv_supervisord() {
  if [ -f PIDFILE ] && kill -0 "$(cat PIDFILE)" 2>/dev/null; then return 0; fi
  supervisord -c "$PWD/CONF" </dev/null >/dev/null 2>&1
  i=0
  until supervisorctl -c CONF pid >/dev/null 2>&1; do
    i=$((i + 1)); [ "$i" -lt 100 ] || { echo "supervisord did not start; see $PWD/logs/supervisord.log" >&2; return 1; }
    sleep 0.1
  done
}
wv_update() {
  wv_supervisord
  supervisorctl -c CONF reread >/dev/null
  supervisorctl -c CONF update
}
wv_wait_running() {
  end=$(( $(date +%s) + 30 ))
  while :; do
    st=$(supervisorctl -c CONF status 2>/dev/null || true)
    bad=""
    for n in "$@"; do
      line=$(printf '%s\n' "$st" | grep "^$n " || true)
      case "$line" in
        *" RUNNING "*) ;;
        *" FATAL "*) echo "$n could not start (FATAL: it exits too quickly); see $PWD/logs/$n.log" >&2; return 1 ;;
        *) bad="$bad $n" ;;
      esac
    done
    [ -z "$bad" ] && return 0
    [ "$(date +%s)" -lt "$end" ] || { echo "not running 30s after start:$bad (see $PWD/logs/)" >&2; return 1; }
    sleep 0.2
  done
}
"#;

fn prelude() -> String {
    PRELUDE.replace("PIDFILE", PIDFILE).replace("CONF", CONF)
}

/// Takes the host's lock if free; prints `locked`, or `held <base64 of the lock>`.
pub fn lock_script(root: &str, lock: &Lock) -> String {
    let body = serde_json::to_string(lock).unwrap_or_default();
    format!(
        "R={root}\nmkdir -p \"$R\" && cd \"$R\" || exit 3\nif ( set -C; cat > lock ) 2>/dev/null <<'WV_LOCK'\n{body}\nWV_LOCK\nthen echo locked; else printf 'held %s\\n' \"$(base64 -w0 lock)\"; fi\n",
        root = sh_quote(root)
    )
}

/// `script` run in the host's root and, when it succeeds, `entry` appended to the host's
/// journal: for the steps decided on the operator's side (migration decisions, reverts,
/// unlock).
pub fn journaled(root: &str, script: &str, entry: &serde_json::Value) -> String {
    format!(
        "cd {} || exit 1\n( {} ) || exit 1\nprintf '%s\\n' {} >> journal.jsonl\n",
        sh_quote(root),
        script.trim_end(),
        sh_quote(&entry.to_string())
    )
}

/// Removes the lock if it is still the one with `token`.
pub fn unlock_script(root: &str, token: &str) -> String {
    format!(
        "cd {} 2>/dev/null || exit 0\ngrep -qF {} lock 2>/dev/null && rm -f lock\nexit 0\n",
        sh_quote(root),
        sh_quote(&format!("\"token\":\"{token}\""))
    )
}

/// Whether `changes` write or delete the supervisor program file of `name`: then supervisord's
/// `update` restarts (or removes) the program by itself.
fn program_file_changes(changes: &[Change], name: &str) -> bool {
    let conf = format!("files/supervisor/programs/{name}.conf");
    changes
        .iter()
        .any(|c| matches!(c, Change::File { path, .. } if *path == conf))
}

/// Whether `changes` touch supervisord's config or program files.
fn supervisor_files_change(changes: &[Change]) -> bool {
    changes
        .iter()
        .any(|c| matches!(c, Change::File { path, .. } if path.starts_with("files/supervisor/")))
}

/// One numbered step of a script: its description (for progress) and its shell text.
struct Steps {
    text: String,
    count: usize,
}

impl Steps {
    fn new() -> Self {
        Steps {
            text: String::new(),
            count: 0,
        }
    }

    fn step(&mut self, what: &str, body: &str) {
        self.count += 1;
        let label = json!(what).to_string();
        let _ = writeln!(self.text, "WV_STEP={}", sh_quote(what));
        self.text.push_str(body);
        if !body.ends_with('\n') {
            self.text.push('\n');
        }
        let _ = writeln!(self.text, "wv_journal {} ok", sh_quote(&label));
        let _ = writeln!(self.text, "printf 'step %s\\n' {}", sh_quote(what));
    }
}

/// The script applying `changes` (one wave's, or the removals) on a host.
/// Returns the script and its number of steps.
pub fn wave_script(
    root: &str,
    generation: u64,
    commit: Option<&str>,
    wave: &str,
    desired: &HostDesired,
    changes: &[Change],
) -> (String, usize) {
    let mut s = Steps::new();
    // Files first: programs read them when they start.
    for c in changes {
        let Change::File {
            path, action, mode, ..
        } = c
        else {
            continue;
        };
        match action {
            FileAction::Create | FileAction::Update => {
                let Some(f) = desired.files.iter().find(|f| &f.path == path) else {
                    continue;
                };
                let encoded = B64.encode(f.content.as_bytes());
                let mut body = format!("wv_write {} {:04o} <<'WV_EOF'\n", sh_quote(path), f.mode);
                for chunk in encoded.as_bytes().chunks(76) {
                    body.push_str(std::str::from_utf8(chunk).unwrap_or_default());
                    body.push('\n');
                }
                body.push_str("WV_EOF\n");
                s.step(&format!("write {path}"), &body);
            }
            FileAction::Chmod => {
                let m = mode.unwrap_or(0o644);
                s.step(
                    &format!("chmod {m:04o} {path}"),
                    &format!("wv_backup {p}\nchmod {m:04o} {p}\n", p = sh_quote(path)),
                );
            }
            FileAction::Delete => {
                s.step(
                    &format!("delete {path}"),
                    &format!("wv_backup {p}\nrm -f {p}\n", p = sh_quote(path)),
                );
            }
        }
    }
    // Then the schema, before the programs that use it: reverts (newest first, from the down
    // SQL recorded in the database), then applies, each in its own transaction.
    for c in changes {
        let Change::Migration {
            database,
            id,
            name,
            action,
        } = c
        else {
            continue;
        };
        let Some(db) = desired.databases.iter().find(|d| &d.name == database) else {
            continue;
        };
        let path = crate::backend::observe::absolute(root, &db.path);
        match action {
            MigrationAction::Revert => {
                let label = format!(
                    "{REVERT_PREFIX}{database} {}",
                    sqlite::down_file_name(*id, name)
                );
                s.step(
                    &label,
                    &format!("( {} )\n", sqlite::revert_script(&path, *id).trim_end()),
                );
            }
            MigrationAction::Apply => {
                let Some(m) = db.migrations.iter().find(|m| m.id == *id) else {
                    continue;
                };
                let label = format!(
                    "{APPLY_PREFIX}{database} {}",
                    sqlite::up_file_name(*id, name)
                );
                s.step(
                    &label,
                    &format!(
                        "( {} )\n",
                        sqlite::apply_script(&path, m, generation, commit).trim_end()
                    ),
                );
            }
        }
    }
    let program_changed = |name: &str| program_file_changes(changes, name);
    let processes: Vec<(&String, &ProcessAction)> = changes
        .iter()
        .filter_map(|c| match c {
            Change::Process { name, action, .. } => Some((name, action)),
            _ => None,
        })
        .collect();
    if supervisor_files_change(changes) {
        // `update` adds new programs, restarts those whose program file changed and stops and
        // removes those whose file is gone.
        s.step("supervisord update", "wv_update\n");
    }
    let mut wait = Vec::new();
    for (name, action) in processes {
        match action {
            ProcessAction::Restart if !program_changed(name) => {
                s.step(
                    &format!("restart {name}"),
                    &format!(
                        "wv_supervisord\nsupervisorctl -c {CONF} restart {}\n",
                        sh_quote(name)
                    ),
                );
                wait.push(name.clone());
            }
            // A new program file: `update` added and started it.
            ProcessAction::Start if program_changed(name) => wait.push(name.clone()),
            ProcessAction::Start => {
                s.step(&format!("start {name}"), &format!("wv_supervisord\nsupervisorctl -c {CONF} start {} | grep -v 'already started' || true\n", sh_quote(name)));
                wait.push(name.clone());
            }
            ProcessAction::Restart => wait.push(name.clone()),
            ProcessAction::StopAndRemove => {}
        }
    }
    if !wait.is_empty() {
        let names: Vec<String> = wait.iter().map(|n| sh_quote(n)).collect();
        s.step(
            "wait for processes to run",
            &format!("wv_wait_running {}\n", names.join(" ")),
        );
    }
    let header = format!(
        "R={}\ncd \"$R\"\nG={generation}\nW={}\n",
        sh_quote(root),
        sh_quote(&json!(wave).to_string())
    );
    (format!("{header}{}{}", prelude(), s.text), s.count)
}

/// Records the new generation (state.json and generations/<N>.json) and releases the lock.
pub fn finish_script(root: &str, state: &HostState, token: &str) -> String {
    let body = serde_json::to_string_pretty(state).unwrap_or_default();
    let encoded = B64.encode(body.as_bytes());
    let header = format!(
        "R={}\ncd \"$R\"\nG={}\nW='\"(finish)\"'\n",
        sh_quote(root),
        state.generation
    );
    let mut s = Steps::new();
    s.step(
        "record generation",
        &format!(
            "wv_write state.json 0644 <<'WV_EOF'\n{encoded}\nWV_EOF\nmkdir -p generations\ncp -p state.json \"generations/$G.json\"\n"
        ),
    );
    format!(
        "{header}{}{}{}",
        prelude(),
        s.text,
        unlock_script(root, token)
    )
}

/// Undoes one wave's `changes` on a host after a failed step or gate: every file back to the
/// bytes kept in `backups/<generation>/` (or removed when the generation created it),
/// supervisord reloaded, and the programs it restarted restarted again on the old files.
/// Migrations and streams are undone by the caller. Returns the script and its step count.
pub fn rollback_script(
    root: &str,
    generation: u64,
    wave: &str,
    changes: &[Change],
) -> (String, usize) {
    let mut s = Steps::new();
    for c in changes.iter().rev() {
        let Change::File { path, .. } = c else {
            continue;
        };
        let p = sh_quote(path);
        s.step(
            &format!("restore {path}"),
            &format!(
                "if [ -e \"backups/$G/\"{p} ]; then\n  t={p}.wv-tmp.$$\n  cp -p \"backups/$G/\"{p} \"$t\"\n  sync \"$t\"\n  mv -f \"$t\" {p}\nelif grep -qxF {p} \"backups/$G/created\" 2>/dev/null; then\n  rm -f {p}\nfi\n"
            ),
        );
    }
    if supervisor_files_change(changes) {
        // When this wave created supervisord's own config, no program ran before it: stop
        // supervisord (and with it its programs) instead of reloading a config that is gone.
        s.step(
            "supervisord update",
            &format!(
                "if [ -f {CONF} ]; then\n  wv_update\nelif [ -f {PIDFILE} ] && kill -0 \"$(cat {PIDFILE})\" 2>/dev/null; then\n  p=$(cat {PIDFILE})\n  kill -TERM \"$p\"\n  i=0\n  while kill -0 \"$p\" 2>/dev/null && ! ps -o stat= -p \"$p\" | grep -q Z && [ \"$i\" -lt 300 ]; do sleep 0.1; i=$((i + 1)); done\nfi\n"
            ),
        );
    }
    for c in changes {
        let Change::Process { name, action, .. } = c else {
            continue;
        };
        if program_file_changes(changes, name) {
            continue;
        }
        let n = sh_quote(name);
        match action {
            ProcessAction::Restart => s.step(
                &format!("restart {name}"),
                &format!("wv_supervisord\nsupervisorctl -c {CONF} restart {n}\n"),
            ),
            // It was down before the wave started it.
            ProcessAction::Start => s.step(
                &format!("stop {name}"),
                &format!("wv_supervisord\nsupervisorctl -c {CONF} stop {n} || true\n"),
            ),
            ProcessAction::StopAndRemove => {}
        }
    }
    let header = format!(
        "R={}\ncd \"$R\"\nG={generation}\nW={}\n",
        sh_quote(root),
        sh_quote(&json!(format!("rollback {wave}")).to_string())
    );
    (format!("{header}{}{}", prelude(), s.text), s.count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_journaled_step_runs_in_the_root_and_is_recorded_only_when_it_succeeds() {
        let entry = serde_json::json!({ "step": "unlock" });
        assert_eq!(
            journaled("/r", "rm -f lock", &entry),
            "cd '/r' || exit 1\n( rm -f lock ) || exit 1\nprintf '%s\\n' '{\"step\":\"unlock\"}' >> journal.jsonl\n"
        );
    }

    #[test]
    fn lock_script_creates_the_lock_exclusively() {
        let lock = Lock {
            operator: "ops".into(),
            machine: "laptop".into(),
            pid: 7,
            started_at: "2026-11-23T00:00:00Z".into(),
            commit: None,
            token: "t0k".into(),
        };
        assert_eq!(
            lock_script("/srv/wv root", &lock),
            "R='/srv/wv root'\nmkdir -p \"$R\" && cd \"$R\" || exit 3\nif ( set -C; cat > lock ) 2>/dev/null <<'WV_LOCK'\n{\"operator\":\"ops\",\"machine\":\"laptop\",\"pid\":7,\"started_at\":\"2026-11-23T00:00:00Z\",\"commit\":null,\"token\":\"t0k\"}\nWV_LOCK\nthen echo locked; else printf 'held %s\\n' \"$(base64 -w0 lock)\"; fi\n"
        );
    }

    #[test]
    fn a_restart_whose_program_file_changed_is_left_to_update() {
        let changes = vec![
            Change::File {
                path: "files/supervisor/programs/a.conf".into(),
                action: FileAction::Update,
                mode: Some(0o644),
                mode_before: Some(0o644),
                sha256: None,
                sha256_before: None,
                diff: None,
            },
            Change::Process {
                name: "a".into(),
                action: ProcessAction::Restart,
                reason: String::new(),
            },
            Change::Process {
                name: "b".into(),
                action: ProcessAction::Restart,
                reason: String::new(),
            },
        ];
        let desired = HostDesired {
            files: vec![crate::primitive::FileSpec {
                path: "files/supervisor/programs/a.conf".into(),
                content: "[program:a]\n".into(),
                mode: 0o644,
                secret_keys: vec![],
                origin: crate::primitive::Origin {
                    wave: "w".into(),
                    resource: "process.a".into(),
                },
            }],
            ..HostDesired::default()
        };
        let (script, steps) = wave_script("/r", 3, None, "w", &desired, &changes);
        assert_eq!(steps, 4);
        assert!(script.contains("wv_write 'files/supervisor/programs/a.conf' 0644 <<'WV_EOF'\nW3Byb2dyYW06YV0K\nWV_EOF\n"));
        assert!(
            script.contains("supervisorctl -c files/supervisor/supervisord.conf restart 'b'\n")
        );
        assert!(!script.contains("restart 'a'"));
        assert!(script.contains("wv_wait_running 'a' 'b'\n"));
    }
}
