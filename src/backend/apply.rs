//! The apply steps as shell scripts: take the lock, apply one wave's changes on a host (atomic
//! writes with the previous bytes kept in `backups/<generation>/`, supervisor programs), undo
//! a wave, and record the new generation. Every step appends a journal line. Each builder
//! returns the script with the typed list of its steps, and the parser of what the script
//! prints (`step N`, `failed N`) lives here too: `run/` sees only `Progress`.

use std::fmt;

use serde_json::json;

use crate::backend::script::Script;
use crate::backend::supervisor::{self, Backend};
use crate::backend::{engine, sqlite};
use crate::diff::{Change, FileAction, MigrationAction, ProcessAction};
use crate::inventory::Supervisor;
use crate::plan::schema::Engine;
use crate::primitive::HostDesired;
use crate::state::{HostState, Lock};

/// One step of an apply script, as the executor and the progress display see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    WriteFile {
        path: String,
    },
    Chmod {
        path: String,
        mode: u32,
    },
    Delete {
        path: String,
    },
    ApplyMigration {
        db: String,
        id: u32,
        file: String,
        engine: Engine,
    },
    RevertMigration {
        db: String,
        id: u32,
        file: String,
        engine: Engine,
    },
    /// The supervisor (by name) acting on the program files that changed.
    SupervisorUpdate(&'static str),
    Restart {
        name: String,
    },
    Start {
        name: String,
    },
    Stop {
        name: String,
    },
    WaitRunning,
    RecordGeneration,
    Restore {
        path: String,
    },
}

/// The step's label, as progress, errors and the host's journal show it.
impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::WriteFile { path } => write!(f, "write {path}"),
            Step::Chmod { path, mode } => write!(f, "chmod {mode:04o} {path}"),
            Step::Delete { path } => write!(f, "delete {path}"),
            Step::ApplyMigration { db, file, .. } => write!(f, "apply migration {db} {file}"),
            Step::RevertMigration { db, file, .. } => write!(f, "revert migration {db} {file}"),
            Step::SupervisorUpdate(name) => write!(f, "{name} update"),
            Step::Restart { name } => write!(f, "restart {name}"),
            Step::Start { name } => write!(f, "start {name}"),
            Step::Stop { name } => write!(f, "stop {name}"),
            Step::WaitRunning => f.write_str("wait for processes to run"),
            Step::RecordGeneration => f.write_str("record generation"),
            Step::Restore { path } => write!(f, "restore {path}"),
        }
    }
}

/// What a line printed by an apply script says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    Done(Step),
    /// The script stopped in this step (`None`: before its first step).
    Failed(Option<Step>),
}

/// Why a script stopped: the step it was in and the host's message for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub step: Option<Step>,
    pub message: String,
}

impl Failure {
    /// The step's label, `start` when the script stopped before its first step.
    pub fn label(&self) -> String {
        self.step
            .as_ref()
            .map_or_else(|| "start".to_string(), Step::to_string)
    }
}

/// A script with the steps it runs, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Built {
    pub script: Script,
    pub steps: Vec<Step>,
}

impl Built {
    /// What one stdout line of the script says, if it is a progress line.
    pub fn progress(&self, line: &str) -> Option<Progress> {
        let (word, n) = line.split_once(' ')?;
        let n: usize = n.trim().parse().ok()?;
        let step = n.checked_sub(1).and_then(|i| self.steps.get(i)).cloned();
        match word {
            "step" => step.map(Progress::Done),
            "failed" => Some(Progress::Failed(step)),
            _ => None,
        }
    }

    /// Where and why the script failed, from everything it printed.
    pub fn failure(&self, stdout: &str, stderr: &str) -> Failure {
        let step = stdout
            .lines()
            .rev()
            .find_map(|l| match self.progress(l) {
                Some(Progress::Failed(s)) => Some(s),
                _ => None,
            })
            .flatten();
        let message = match &step {
            // The engine's error, mapped to the migration file and its line.
            Some(
                Step::ApplyMigration { file, engine, .. }
                | Step::RevertMigration { file, engine, .. },
            ) => engine::of(*engine).parse_failure(stderr, file),
            _ => last_line(stderr).to_string(),
        };
        Failure { step, message }
    }
}

/// The last line of a host's message, `(no message)` when it said nothing.
pub fn last_line(stderr: &str) -> &str {
    stderr.trim().lines().last().unwrap_or("(no message)")
}

/// The progress lines a script prints for step `n` (1-based; 0 is before the first step):
/// for fakes that play a host.
pub fn done_line(n: usize) -> String {
    format!("step {n}")
}

pub fn failed_line(n: usize) -> String {
    format!("failed {n}")
}

/// Functions every apply script starts with. `G` is the generation being made, `W` the wave
/// (as a JSON string), `WV_STEP` the number of the step running.
const PRELUDE: &str = r#"set -eu
umask 022
WV_STEP=0
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
"#;

/// The header of a step script: root, generation, wave (a JSON string, so the journal lines
/// stay JSON for any name), then the prelude.
fn header(s: &mut Script, backend: &dyn Backend, root: &str, generation: u64, wave: &str) {
    s.set("R", root)
        .raw("cd \"$R\"\nG=")
        .num(generation)
        .raw("\n")
        .set("W", json!(wave).to_string())
        .raw(PRELUDE)
        .raw(backend.functions());
}

/// What the lock script answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockReply {
    Locked,
    /// Another apply holds the lock.
    Held(Lock),
    /// Neither: the lock could not be taken (the message is on stderr) or is unreadable.
    Refused,
}

/// Takes the host's lock if free; prints `locked`, or `held <base64 of the lock>`.
pub fn lock_script(root: &str, lock: &Lock) -> Script {
    let mut body = serde_json::to_string(lock).unwrap_or_default();
    body.push('\n');
    let mut s = Script::new();
    s.set("R", root)
        .raw("mkdir -p \"$R\" && cd \"$R\" || exit 3\nif ( set -C; base64 -d > lock ) 2>/dev/null")
        .base64_stdin(body.as_bytes())
        .raw("then echo locked; else printf 'held %s\\n' \"$(base64 -w0 lock)\"; fi\n");
    s
}

pub fn parse_lock_reply(stdout: &str) -> LockReply {
    use base64::Engine as _;
    let text = stdout.trim();
    if text == "locked" {
        return LockReply::Locked;
    }
    text.strip_prefix("held ")
        .and_then(|b| {
            base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .ok()
        })
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .map_or(LockReply::Refused, LockReply::Held)
}

/// `script` run in the host's root and, when it succeeds, `entry` appended to the host's
/// journal: for the steps decided on the operator's side (migration decisions, reverts,
/// unlock).
pub fn journaled(root: &str, script: &str, entry: &serde_json::Value) -> Script {
    let mut s = Script::new();
    s.raw("cd").arg(root).raw(" || exit 1\n");
    subshell(&mut s, script);
    s.raw(" || exit 1\nprintf '%s\\n'")
        .arg(entry.to_string())
        .raw(" >> journal.jsonl\n");
    s
}

/// The text of another builder (sqlite's, which returns a `String`) run in a subshell, as one
/// quoted word handed to `eval`: nothing in it can end its carrier or leak into this script.
/// (When the sqlite builders return a `Script`, this becomes `( ` + append + ` )`.)
fn subshell(s: &mut Script, text: &str) {
    s.raw("( eval").arg(text.trim_end()).raw(" )");
}

/// Removes the lock if it is still the one with `token`.
pub fn unlock_script(root: &str, token: &str) -> Script {
    let mut s = Script::new();
    s.raw("cd")
        .arg(root)
        .raw(" 2>/dev/null || exit 0\ngrep -qF")
        .arg(format!("\"token\":{}", json!(token)))
        .raw(" lock 2>/dev/null && rm -f lock\nexit 0\n");
    s
}

/// The built-in templates recorded by the newest generation made from `commit`:
/// `templates <base64 of builtins/N.json>`, or nothing.
pub fn recorded_templates_script(root: &str, commit: &str) -> Script {
    let mut s = Script::new();
    s.raw("cd")
        .arg(root)
        .raw(" 2>/dev/null || exit 0\nc=")
        .word(format!("\"commit\": {}", json!(commit)))
        .raw("\nfor n in $(ls builtins 2>/dev/null | sed -n 's/^\\([0-9][0-9]*\\)\\.json$/\\1/p' | sort -rn); do\n  if grep -qF \"$c\" \"generations/$n.json\" 2>/dev/null; then printf 'templates %s\\n' \"$(base64 -w0 \"builtins/$n.json\")\"; exit 0; fi\ndone\nexit 0\n");
    s
}

/// Prints the host's lock in base64, or nothing when there is none.
pub fn read_lock_script(root: &str) -> Script {
    let mut s = Script::new();
    s.raw("cd")
        .arg(root)
        .raw(" 2>/dev/null && [ -f lock ] && base64 -w0 lock; true\n");
    s
}

/// Prints `gen <base64>` for each generation the host recorded.
pub fn generations_script(root: &str) -> Script {
    let mut s = Script::new();
    s.raw("cd")
        .arg(root)
        .raw(" 2>/dev/null || exit 0\nfor f in generations/*.json; do [ -f \"$f\" ] && printf 'gen %s\\n' \"$(base64 -w0 \"$f\")\"; done\n[ -f pin.json ] && printf 'pin %s\\n' \"$(base64 -w0 pin.json)\"\n[ -f lock ] && printf 'lock %s\\n' \"$(base64 -w0 lock)\"; true\n");
    s
}

/// Whether `changes` write or delete the supervisor program file of `name`: then the
/// backend's update restarts (or removes) the program by itself.
fn program_file_changes(backend: &dyn Backend, changes: &[Change], name: &str) -> bool {
    let conf = backend.program_path(name);
    changes
        .iter()
        .any(|c| matches!(c, Change::File { path, .. } if *path == conf))
}

/// Whether `changes` touch the supervisor's config or program files.
fn supervisor_files_change(backend: &dyn Backend, changes: &[Change]) -> bool {
    changes
        .iter()
        .any(|c| matches!(c, Change::File { path, .. } if path.starts_with(backend.files_dir())))
}

/// The programs whose program files `changes` write or delete.
fn changed_programs<'c>(backend: &dyn Backend, changes: &'c [Change]) -> Vec<&'c str> {
    changes
        .iter()
        .filter_map(|c| match c {
            Change::File { path, .. } => backend.program_of_path(path),
            _ => None,
        })
        .collect()
}

/// The numbered steps of a script: each sets `WV_STEP`, runs its body, journals itself and
/// prints `step N`.
#[derive(Default)]
struct Steps {
    script: Script,
    steps: Vec<Step>,
}

impl Steps {
    fn step(&mut self, step: Step, body: impl FnOnce(&mut Script)) {
        let label = json!(step.to_string()).to_string();
        self.steps.push(step);
        let n = self.steps.len() as u64;
        self.script.raw("WV_STEP=").num(n).raw("\n");
        body(&mut self.script);
        self.script
            .raw("wv_journal")
            .arg(label)
            .raw(" ok\necho step ")
            .num(n)
            .raw("\n");
    }

    fn build(self, mut head: Script) -> Built {
        head.append(&self.script);
        Built {
            script: head,
            steps: self.steps,
        }
    }
}

/// The script applying `changes` (one wave's, or the removals) on a host.
pub fn wave_script(
    root: &str,
    generation: u64,
    commit: Option<&str>,
    wave: &str,
    desired: &HostDesired,
    changes: &[Change],
) -> Built {
    let mut s = Steps::default();
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
                s.step(Step::WriteFile { path: path.clone() }, |b| {
                    b.raw("wv_write")
                        .arg(path)
                        .raw(" ")
                        .word(format!("{:04o}", f.mode))
                        .base64_stdin(f.content.as_bytes());
                });
            }
            FileAction::Chmod => {
                let m = mode.unwrap_or(0o644);
                s.step(
                    Step::Chmod {
                        path: path.clone(),
                        mode: m,
                    },
                    |b| {
                        b.raw("wv_backup")
                            .arg(path)
                            .raw("\nchmod ")
                            .word(format!("{m:04o}"))
                            .arg(path)
                            .raw("\n");
                    },
                );
            }
            FileAction::Delete => {
                s.step(Step::Delete { path: path.clone() }, |b| {
                    b.raw("wv_backup")
                        .arg(path)
                        .raw("\nrm -f")
                        .arg(path)
                        .raw("\n");
                });
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
        let eng = engine::for_db(db);
        match action {
            MigrationAction::Revert => {
                let step = Step::RevertMigration {
                    db: database.clone(),
                    id: *id,
                    file: sqlite::down_file_name(*id, name),
                    engine: db.engine,
                };
                s.step(step, |b| {
                    subshell(b, &eng.revert_script(root, db, *id));
                    b.raw("\n");
                });
            }
            MigrationAction::Apply => {
                let Some(m) = db.migrations.iter().find(|m| m.id == *id) else {
                    continue;
                };
                let step = Step::ApplyMigration {
                    db: database.clone(),
                    id: *id,
                    file: sqlite::up_file_name(*id, name),
                    engine: db.engine,
                };
                s.step(step, |b| {
                    subshell(b, &eng.apply_script(root, db, m, generation, commit));
                    b.raw("\n");
                });
            }
        }
    }
    let backend = supervisor::of(desired.supervisor);
    let program_changed = |name: &str| program_file_changes(backend, changes, name);
    if supervisor_files_change(backend, changes) {
        let names = changed_programs(backend, changes);
        s.step(Step::SupervisorUpdate(backend.name()), |b| {
            backend.update_step(b, &names, false);
        });
    }
    let mut wait = Vec::new();
    for c in changes {
        let Change::Process { name, action, .. } = c else {
            continue;
        };
        match action {
            ProcessAction::Restart if !program_changed(name) => {
                s.step(Step::Restart { name: name.clone() }, |b| {
                    supervisor::supervise(b, backend, "wv_restart", name).raw("\n");
                });
                wait.push(name);
            }
            // A new program file: `update` added and started it.
            ProcessAction::Start if program_changed(name) => wait.push(name),
            ProcessAction::Start => {
                s.step(Step::Start { name: name.clone() }, |b| {
                    supervisor::supervise(b, backend, "wv_start", name).raw("\n");
                });
                wait.push(name);
            }
            ProcessAction::Restart => wait.push(name),
            ProcessAction::StopAndRemove => {}
        }
    }
    if !wait.is_empty() {
        s.step(Step::WaitRunning, |b| {
            b.raw("wv_wait_running");
            for n in &wait {
                b.arg(n);
            }
            b.raw("\n");
        });
    }
    let mut head = Script::new();
    header(&mut head, backend, root, generation, wave);
    s.build(head)
}

/// Records the new generation (state.json and generations/<N>.json) and releases the lock.
/// `builtins`: the built-in templates the generation rendered with, kept beside it as
/// `builtins/N.json` so that a rollback to its commit renders the same bytes.
pub fn finish_script(
    root: &str,
    state: &HostState,
    builtins: &std::collections::BTreeMap<String, String>,
    token: &str,
) -> Built {
    let body = serde_json::to_string_pretty(state).unwrap_or_default();
    let templates = serde_json::to_string(builtins).unwrap_or_default();
    let mut s = Steps::default();
    s.step(Step::RecordGeneration, |b| {
        b.raw("wv_write state.json 0644")
            .base64_stdin(body.as_bytes())
            .raw("mkdir -p generations\ncp -p state.json \"generations/$G.json\"\n")
            .raw("wv_write \"builtins/$G.json\" 0644")
            .base64_stdin(templates.as_bytes());
    });
    s.script.append(&unlock_script(root, token));
    let mut head = Script::new();
    // It runs no supervisor function: the default backend's definitions are inert here.
    header(
        &mut head,
        supervisor::of(Supervisor::default()),
        root,
        state.generation,
        "(finish)",
    );
    s.build(head)
}

/// Undoes one wave's `changes` on a host after a failed step or gate: every file back to the
/// bytes kept in `backups/<generation>/` (or removed when the generation created it),
/// the supervisor updated, and the programs it restarted restarted again on the old files.
/// Migrations and streams are undone by the caller.
pub fn rollback_script(
    root: &str,
    supervisor: Supervisor,
    generation: u64,
    wave: &str,
    changes: &[Change],
) -> Built {
    let backend = supervisor::of(supervisor);
    let mut s = Steps::default();
    for c in changes.iter().rev() {
        let Change::File { path, .. } = c else {
            continue;
        };
        s.step(Step::Restore { path: path.clone() }, |b| {
            b.raw("if [ -e \"backups/$G/\"")
                .word(path)
                .raw(" ]; then\n  t=")
                .word(path)
                .raw(".wv-tmp.$$\n  cp -p \"backups/$G/\"")
                .word(path)
                .raw(" \"$t\"\n  sync \"$t\"\n  mv -f \"$t\"")
                .arg(path)
                .raw("\nelif grep -qxF")
                .arg(path)
                .raw(" \"backups/$G/created\" 2>/dev/null; then\n  rm -f")
                .arg(path)
                .raw("\nfi\n");
        });
    }
    if supervisor_files_change(backend, changes) {
        let names = changed_programs(backend, changes);
        s.step(Step::SupervisorUpdate(backend.name()), |b| {
            backend.update_step(b, &names, true);
        });
    }
    let mut again = Vec::new();
    for c in changes {
        let Change::Process { name, action, .. } = c else {
            continue;
        };
        if *action == ProcessAction::StopAndRemove {
            // `update` re-added it from its restored program file; when it is not
            // `autostart`, it ran before the wave all the same, so it runs again.
            s.step(Step::Start { name: name.clone() }, |b| {
                supervisor::supervise(b, backend, "wv_start", name).raw("\n");
            });
            continue;
        }
        if program_file_changes(backend, changes, name) {
            continue;
        }
        match action {
            ProcessAction::Restart => {
                s.step(Step::Restart { name: name.clone() }, |b| {
                    supervisor::supervise(b, backend, "wv_restart", name).raw("\n");
                });
                again.push(name);
            }
            // It was down before the wave started it.
            ProcessAction::Start => s.step(Step::Stop { name: name.clone() }, |b| {
                supervisor::supervise(b, backend, "wv_stop", name).raw("\n");
            }),
            ProcessAction::StopAndRemove => {}
        }
    }
    if !again.is_empty() {
        s.step(Step::WaitRunning, |b| {
            b.raw("wv_wait_running");
            for n in &again {
                b.arg(n);
            }
            b.raw("\n");
        });
    }
    let mut head = Script::new();
    header(
        &mut head,
        backend,
        root,
        generation,
        &format!("rollback {wave}"),
    );
    s.build(head)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::primitive::{FileSpec, Origin};

    fn file(path: &str, action: FileAction) -> Change {
        Change::File {
            path: path.into(),
            action,
            mode: Some(0o600),
            mode_before: Some(0o644),
            sha256: None,
            sha256_before: None,
            diff: None,
        }
    }

    fn process(name: &str, action: ProcessAction) -> Change {
        Change::Process {
            name: name.into(),
            action,
            reason: String::new(),
        }
    }

    fn spec(path: &str, content: &str) -> FileSpec {
        FileSpec {
            path: path.into(),
            content: content.into(),
            mode: 0o644,
            secret_keys: vec![],
            origin: Origin {
                wave: "w".into(),
                resource: "process.a".into(),
            },
        }
    }

    fn lock() -> Lock {
        Lock {
            operator: "ops".into(),
            machine: "laptop".into(),
            pid: 7,
            started_at: "2026-11-23T00:00:00Z".into(),
            commit: None,
            token: "t0k".into(),
        }
    }

    #[test]
    fn the_supervisor_functions_name_the_paths_of_the_backend() {
        use crate::backend::supervisord::{CONF, FUNCTIONS, PIDFILE};
        assert!(FUNCTIONS.contains(&format!("-c \"$PWD/{CONF}\"")));
        assert!(FUNCTIONS.contains(&format!("[ -f {PIDFILE} ]")));
        assert_eq!(FUNCTIONS.matches("files/supervisor/").count(), 1);
        let pm2 = crate::backend::pm2::FUNCTIONS;
        assert!(pm2.contains(&format!("[ -f {} ]", crate::backend::pm2::PIDFILE)));
        assert!(pm2.contains(&format!("PM2_HOME=\"$PWD/{}\"", crate::backend::pm2::HOME)));
    }

    #[test]
    fn a_pm2_wave_updates_exactly_the_programs_whose_files_changed() {
        let changes = vec![
            file("files/pm2/a.json", FileAction::Create),
            file("files/pm2/gone.json", FileAction::Delete),
            process("a", ProcessAction::Start),
            process("b", ProcessAction::Restart),
            process("gone", ProcessAction::StopAndRemove),
        ];
        let desired = HostDesired {
            supervisor: Supervisor::Pm2,
            files: vec![spec("files/pm2/a.json", "{}\n")],
            ..HostDesired::default()
        };
        let built = wave_script("/r", 3, None, "w", &desired, &changes);
        assert_eq!(
            built.steps,
            vec![
                Step::WriteFile {
                    path: "files/pm2/a.json".into()
                },
                Step::Delete {
                    path: "files/pm2/gone.json".into()
                },
                Step::SupervisorUpdate("pm2"),
                Step::Restart { name: "b".into() },
                Step::WaitRunning,
            ]
        );
        let text = built.script.as_str();
        assert!(text.contains("\nwv_update 'a' 'gone'\n"), "{text}");
        assert!(text.contains("\nwv_restart 'b'\n"), "{text}");
        assert!(text.contains("\nwv_wait_running 'a' 'b'\n"), "{text}");
        assert!(!text.contains("wv_supervisord"), "{text}");
        let back = rollback_script("/r", Supervisor::Pm2, 3, "w", &changes);
        assert!(back.script.as_str().contains("\nwv_update 'a' 'gone'\n"));
    }

    #[test]
    fn a_journaled_step_runs_in_the_root_and_is_recorded_only_when_it_succeeds() {
        let entry = serde_json::json!({ "step": "unlock" });
        insta::assert_snapshot!(journaled("/r", "rm -f lock", &entry).as_str());
    }

    #[test]
    fn lock_script_creates_the_lock_exclusively() {
        insta::assert_snapshot!(lock_script("/srv/wv root", &lock()).as_str());
    }

    #[test]
    fn unlock_script_removes_only_its_own_lock() {
        insta::assert_snapshot!(unlock_script("/srv/wv root", "t0k").as_str());
    }

    #[test]
    fn read_lock_and_generations_scripts_read_in_the_root() {
        insta::assert_snapshot!(format!(
            "{}{}",
            read_lock_script("/srv/it's"),
            generations_script("/srv/it's")
        ));
    }

    #[test]
    fn a_lock_reply_is_locked_held_or_refused() {
        use base64::Engine as _;
        assert_eq!(parse_lock_reply("locked\n"), LockReply::Locked);
        let held = base64::engine::general_purpose::STANDARD
            .encode(serde_json::to_string(&lock()).unwrap_or_default());
        assert_eq!(
            parse_lock_reply(&format!("held {held}\n")),
            LockReply::Held(lock())
        );
        assert_eq!(parse_lock_reply("held !!\n"), LockReply::Refused);
        assert_eq!(parse_lock_reply(""), LockReply::Refused);
    }

    #[test]
    fn a_restart_whose_program_file_changed_is_left_to_update() {
        let changes = vec![
            file("files/supervisor/programs/a.conf", FileAction::Update),
            process("a", ProcessAction::Restart),
            process("b", ProcessAction::Restart),
        ];
        let desired = HostDesired {
            files: vec![spec("files/supervisor/programs/a.conf", "[program:a]\n")],
            ..HostDesired::default()
        };
        let built = wave_script("/r", 3, None, "w", &desired, &changes);
        assert_eq!(
            built.steps,
            vec![
                Step::WriteFile {
                    path: "files/supervisor/programs/a.conf".into()
                },
                Step::SupervisorUpdate("supervisord"),
                Step::Restart { name: "b".into() },
                Step::WaitRunning,
            ]
        );
        insta::assert_snapshot!(built.script.as_str());
    }

    #[test]
    fn wave_script_quotes_every_plan_value() {
        let changes = vec![
            file("files/it's $(id)\nx", FileAction::Create),
            file("files/old", FileAction::Delete),
            file("files/mode", FileAction::Chmod),
            process("p'q", ProcessAction::Start),
        ];
        let desired = HostDesired {
            files: vec![spec("files/it's $(id)\nx", "WV_B64\n")],
            ..HostDesired::default()
        };
        let built = wave_script("/srv/a b", 1, None, "wave \"1\"\n", &desired, &changes);
        insta::assert_snapshot!(built.script.as_str());
    }

    #[test]
    fn finish_script_records_the_generation_then_unlocks() {
        let state = HostState {
            schema: 1,
            generation: 4,
            plan: "plans/p.toml".into(),
            ..HostState::default()
        };
        let builtins = std::collections::BTreeMap::from([(
            "agent.env.tera".to_string(),
            "A={{ agent.name | sh }}\n".to_string(),
        )]);
        let built = finish_script("/r", &state, &builtins, "t0k");
        assert_eq!(built.steps, vec![Step::RecordGeneration]);
        insta::assert_snapshot!(built.script.as_str());
    }

    #[test]
    fn rollback_script_restores_files_newest_first_and_undoes_processes() {
        let changes = vec![
            file("files/a.env", FileAction::Update),
            file("files/supervisor/programs/n.conf", FileAction::Create),
            process("n", ProcessAction::Start),
            process("r", ProcessAction::Restart),
            process("s", ProcessAction::Start),
        ];
        let built = rollback_script("/r", Supervisor::Supervisord, 2, "agents", &changes);
        assert_eq!(
            built.steps,
            vec![
                Step::Restore {
                    path: "files/supervisor/programs/n.conf".into()
                },
                Step::Restore {
                    path: "files/a.env".into()
                },
                Step::SupervisorUpdate("supervisord"),
                Step::Restart { name: "r".into() },
                Step::Stop { name: "s".into() },
                Step::WaitRunning,
            ]
        );
        insta::assert_snapshot!(built.script.as_str());
    }

    #[test]
    fn progress_lines_name_typed_steps() {
        let built = rollback_script(
            "/r",
            Supervisor::Supervisord,
            2,
            "w",
            &[file("files/a", FileAction::Update)],
        );
        let restore = Step::Restore {
            path: "files/a".into(),
        };
        assert_eq!(
            built.progress("step 1"),
            Some(Progress::Done(restore.clone()))
        );
        assert_eq!(
            built.progress("failed 1"),
            Some(Progress::Failed(Some(restore)))
        );
        assert_eq!(built.progress("failed 0"), Some(Progress::Failed(None)));
        assert_eq!(built.progress("step 9"), None);
        assert_eq!(built.progress("stepping 1"), None);
        let f = built.failure("step 1\nfailed 0\n", "boom\nlast words\n");
        assert_eq!(f.label(), "start");
        assert_eq!(f.message, "last words");
    }

    #[test]
    fn a_script_fails_at_its_step_with_the_last_line_of_stderr() {
        let changes = vec![
            file("files/a", FileAction::Delete),
            process("a", ProcessAction::Start),
        ];
        let built = wave_script("/r", 1, None, "w", &HostDesired::default(), &changes);
        let f = built.failure("step 1\nstep 2\nfailed 3\n", "a could not start\n");
        assert_eq!(f.step, Some(Step::WaitRunning));
        assert_eq!(f.label(), "wait for processes to run");
        assert_eq!(f.message, "a could not start");
    }

    /// The scripts run for real: a wave on a fresh root writes the planned bytes, its
    /// rollback removes what it created, and a wave name with quotes and a newline keeps every
    /// journal line JSON.
    #[test]
    fn a_wave_and_its_rollback_run_in_sh() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("r o'ot");
        std::fs::create_dir_all(&root).expect("mkdir");
        let root = root.to_string_lossy().into_owned();
        let path = "files/x $(touch m) 'y";
        let content = "line\nWV_B64\n'$(touch m)'\n";
        let changes = vec![file(path, FileAction::Create)];
        let desired = HostDesired {
            files: vec![spec(path, content)],
            ..HostDesired::default()
        };
        let run = |s: &Script| {
            use std::io::Write as _;
            let mut child = std::process::Command::new("sh")
                .arg("-s")
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("sh");
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(s.as_str().as_bytes())
                .expect("write");
            child.wait_with_output().expect("wait")
        };
        let wave = "w \"1\"\n\\";
        let built = wave_script(&root, 1, None, wave, &desired, &changes);
        let out = run(&built.script);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout), "step 1\n");
        let written = std::fs::read_to_string(format!("{root}/{path}")).expect("written");
        assert_eq!(written, content);
        let journal = std::fs::read_to_string(format!("{root}/journal.jsonl")).expect("journal");
        for line in journal.lines() {
            let v: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
            assert_eq!(v["wave"], wave);
        }
        let back = rollback_script(&root, Supervisor::Supervisord, 1, wave, &changes);
        let out = run(&back.script);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!std::path::Path::new(&format!("{root}/{path}")).exists());
        assert!(!std::path::Path::new(&format!("{root}/m")).exists());
        assert!(!std::path::Path::new("m").exists());
    }
}
