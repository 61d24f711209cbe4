//! `rollback --to REV`: the plan as an older commit holds it, applied on a real lab with its
//! waves reversed; newer programs, files and migrations gone; the hosts pinned until `unpin`;
//! a closed stdin without `--yes` refused at once.

use std::time::{Duration, Instant};

use crate::common::{Repo, json};
use crate::lab::Lab;

const V1: &str = r#"version = 1
name = "rb"

[[process]]
name = "base"
host = "mainpc"
command = ["sleep", "infinity"]
env = { LEVEL = "v1" }

[[migration]]
name = "app"
host = "mainpc"
database = "app.db"
dir = "migrations/app"

[[wave]]
name = "one"
select = ["process.base", "migration.app"]
"#;

/// v1 plus a second wave: a new program, a file, and v1's program with another env.
fn v2() -> String {
    V1.replace("LEVEL = \"v1\"", "LEVEL = \"v2\"")
        + r#"
[[process]]
name = "newer"
host = "mainpc"
command = ["sleep", "infinity"]

[[file]]
name = "note"
host = "mainpc"
path = "note.txt"
content = "v2\n"

[[wave]]
name = "two"
select = ["process.newer", "file.note"]
"#
}

fn migration(repo: Repo, id: u32, sql: &str, down: &str) -> Repo {
    repo.file(&format!("migrations/app/{id:04}_m{id}.up.sql"), sql)
        .file(&format!("migrations/app/{id:04}_m{id}.down.sql"), down)
}

fn schema(lab: &Lab) -> String {
    crate::common::sqlite3(&lab.root("mainpc").join("data/app.db"), &[], ".schema")
}

#[test]
fn rollback_to_a_tag_returns_the_hosts_to_it_and_pins_them() {
    let lab = Lab::up(74, 1);
    let repo = Repo::with_plan(V1).with_inventory(lab.inventory());
    let repo = migration(repo, 1, "CREATE TABLE a (x);\n", "DROP TABLE a;\n")
        .commit("v1")
        .tag("phase1");
    let apply = repo.run(&["apply", "--yes", "plans/p.toml"]);
    assert_eq!(apply.code, 0, "{}{}", apply.stdout, apply.stderr);
    let v1_schema = schema(&lab);

    let repo = migration(
        repo.file("plans/p.toml", &v2()),
        2,
        "CREATE TABLE b (y);\n",
        "DROP TABLE b;\n",
    )
    .commit("v2");
    let apply = repo.run(&["apply", "--yes", "plans/p.toml"]);
    assert_eq!(apply.code, 0, "{}{}", apply.stdout, apply.stderr);
    assert_ne!(schema(&lab), v1_schema);

    // Not on a terminal and no --yes: refused at once, nothing changed.
    let t = Instant::now();
    let refused = repo.run(&["rollback", "--to", "phase1", "plans/p.toml"]);
    assert_eq!(refused.code, 1, "{}", refused.stderr);
    assert!(t.elapsed() < Duration::from_secs(2));
    assert!(refused.stderr.contains("--yes"), "{}", refused.stderr);
    assert!(lab.root("mainpc").join("files/note.txt").exists());

    let index_before = std::fs::read(repo.path().join(".git/index")).expect("index");
    let plan_before = std::fs::read(repo.path().join("plans/p.toml")).expect("plan");
    let rb = repo.run(&[
        "rollback",
        "--to",
        "phase1",
        "--yes",
        "--reason",
        "drill",
        "plans/p.toml",
    ]);
    assert_eq!(rb.code, 0, "{}{}", rb.stdout, rb.stderr);
    assert_eq!(
        std::fs::read(repo.path().join(".git/index")).expect("index"),
        index_before
    );
    assert_eq!(
        std::fs::read(repo.path().join("plans/p.toml")).expect("plan"),
        plan_before
    );
    // The newer wave's program and file are gone, the migration reverted, the env is v1's.
    assert!(!lab.root("mainpc").join("files/note.txt").exists());
    assert!(
        !lab.root("mainpc")
            .join("files/supervisor/programs/newer.conf")
            .exists()
    );
    assert_eq!(schema(&lab), v1_schema);
    let env = std::fs::read_to_string(lab.root("mainpc").join("files/env/base.env")).expect("env");
    assert!(env.contains("LEVEL='v1'"), "{env}");
    let status = json(&repo.run(&["status", "-o", "json", "plans/p.toml"]));
    let procs = status["hosts"][0]["processes"].as_array().expect("procs");
    // Status reads the work tree's plan (v2): its newer program is absent from the host.
    let newer = procs.iter().find(|p| p["name"] == "newer").expect("newer");
    assert_eq!(newer["state"], "ABSENT", "{procs:?}");
    assert_eq!(status["hosts"][0]["pin"]["rev"], "phase1");
    assert_eq!(status["hosts"][0]["pin"]["reason"], "drill");

    let history = json(&repo.run(&["history", "-o", "json"]));
    let host = &history["hosts"][0];
    let last = host["generations"]
        .as_array()
        .expect("gens")
        .last()
        .expect("a generation")
        .clone();
    assert_eq!(last["rollback_to"], "phase1", "{last}");
    assert_eq!(last["result"], "ok");
    assert_eq!(last["subject"], "v1");
    assert_eq!(host["pin"]["reason"], "drill");

    // The phase1 tree is in sync.
    let phase1 = Repo::with_plan(V1).with_inventory(lab.inventory());
    let phase1 = migration(phase1, 1, "CREATE TABLE a (x);\n", "DROP TABLE a;\n").commit("v1");
    let diff = phase1.run(&["diff", "plans/p.toml"]);
    assert_eq!(diff.code, 0, "{}{}", diff.stdout, diff.stderr);

    // Pinned: an apply of HEAD is refused with who, what and why, until unpinned.
    let pinned = repo.run(&["apply", "--yes", "plans/p.toml"]);
    assert_eq!(pinned.code, 6, "{}{}", pinned.stdout, pinned.stderr);
    assert!(
        pinned.stderr.contains("pinned to phase1") && pinned.stderr.contains("drill"),
        "{}",
        pinned.stderr
    );
    assert!(lab.root("mainpc").join("pin.json").exists());
    let unpin = repo.run(&["unpin", "plans/p.toml"]);
    assert_eq!(unpin.code, 0, "{}{}", unpin.stdout, unpin.stderr);
    assert!(!lab.root("mainpc").join("pin.json").exists());
    let apply = repo.run(&["apply", "--yes", "plans/p.toml"]);
    assert_eq!(apply.code, 0, "{}{}", apply.stdout, apply.stderr);
    assert!(lab.root("mainpc").join("files/note.txt").exists());

    // `previous`: the generation before the last one (the rollback's, i.e. phase1's commit).
    let prev = repo.run(&["rollback", "--to", "previous", "--yes", "plans/p.toml"]);
    assert_eq!(prev.code, 0, "{}{}", prev.stdout, prev.stderr);
    assert!(!lab.root("mainpc").join("files/note.txt").exists());
    let forward = repo.run(&["apply", "--yes", "--unpin", "plans/p.toml"]);
    assert_eq!(forward.code, 0, "{}{}", forward.stdout, forward.stderr);
    assert!(!lab.root("mainpc").join("pin.json").exists());
    assert_eq!(repo.run(&["diff", "plans/p.toml"]).code, 0);
}

#[test]
fn apply_with_stdin_closed_and_no_yes_is_refused_at_once() {
    let repo = Repo::with_plan("version = 1\nname = \"t\"\n").commit("empty");
    let t = Instant::now();
    let run = repo.run(&["apply", "plans/p.toml"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(t.elapsed() < Duration::from_secs(2));
    assert!(run.stderr.contains("needs --yes"), "{}", run.stderr);
}

#[test]
fn an_unknown_revision_is_named() {
    let repo = Repo::with_plan("version = 1\nname = \"t\"\n").commit("one");
    let run = repo.run(&["rollback", "--to", "no-such-tag", "--yes", "plans/p.toml"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains("cannot read revision `no-such-tag`"),
        "{}",
        run.stderr
    );
}

/// Regression: a resource moved to a wave with another name changed its program file only in
/// a comment, `supervisord update` ignored it, and the program kept its old environment.
#[test]
fn a_program_moved_to_another_wave_restarts_with_its_new_environment() {
    let lab = Lab::up(75, 1);
    let plan = |wave: &str, level: &str| {
        format!(
            "version = 1\nname = \"w\"\n\n[[process]]\nname = \"agent\"\nhost = \"mainpc\"\ncommand = [\"sleep\", \"infinity\"]\nenv = {{ LEVEL = \"{level}\" }}\n\n[[wave]]\nname = \"{wave}\"\nselect = [\"process.*\"]\n"
        )
    };
    let repo = Repo::with_plan(&plan("week1", "one"))
        .with_inventory(lab.inventory())
        .commit("week1");
    let apply = repo.run(&["apply", "--yes", "plans/p.toml"]);
    assert_eq!(apply.code, 0, "{}{}", apply.stdout, apply.stderr);
    let repo = repo
        .file("plans/p.toml", &plan("week2-pilot", "two"))
        .commit("week2");
    let apply = repo.run(&["apply", "--yes", "plans/p.toml"]);
    assert_eq!(apply.code, 0, "{}{}", apply.stdout, apply.stderr);
    let pid = crate::common::pid_of(&repo, "mainpc", "agent").expect("agent runs");
    let environ = std::fs::read(format!("/proc/{pid}/environ")).expect("environ");
    let environ = String::from_utf8_lossy(&environ);
    assert!(environ.split('\0').any(|v| v == "LEVEL=two"), "{environ}");
    assert_eq!(repo.run(&["diff", "plans/p.toml"]).code, 0);
}

/// A plan of two waves; the second waits in its gate for a flag file under the root.
fn gated_plan(root: &std::path::Path, v: &str) -> String {
    format!(
        r#"version = 1
name = "k"

[[file]]
name = "a"
host = "mainpc"
path = "a.txt"
content = "{v}\n"

[[process]]
name = "worker"
host = "mainpc"
command = ["sleep", "infinity"]
env = {{ V = "{v}" }}

[[wave]]
name = "one"
select = ["file.a"]

[[wave]]
name = "two"
select = ["process.worker"]
[[wave.gate]]
command = {{ host = "mainpc", run = ["test", "-f", "{flag}"] }}
timeout = "60s"
interval = "200ms"
"#,
        flag = root.join("data/flag").display()
    )
}

/// A lab where the gated plan's v1 is applied, its gate's flag removed, and the repo at v2.
fn gated_v1_then_v2(net: u8, hosts: usize) -> (Lab, Repo, std::path::PathBuf) {
    let lab = Lab::up(net, hosts);
    let root = lab.root("mainpc");
    let repo = Repo::with_plan(&gated_plan(&root, "v1"))
        .with_inventory(lab.inventory())
        .commit("v1");
    lab.ssh(
        "mainpc",
        &format!("mkdir -p {0}/data && touch {0}/data/flag", root.display()),
    );
    let apply = repo.run(&["apply", "--yes", "plans/p.toml"]);
    assert_eq!(apply.code, 0, "{}{}", apply.stdout, apply.stderr);
    lab.ssh("mainpc", &format!("rm -f {}/data/flag", root.display()));
    let repo = repo
        .file("plans/p.toml", &gated_plan(&root, "v2"))
        .commit("v2");
    (lab, repo, root)
}

/// Runs `wavectl apply --yes` and SIGKILLs it once the host's journal gained a line holding
/// `marker`.
fn apply_and_kill_at(repo: &Repo, journal: &std::path::Path, marker: &str) {
    apply_and_signal_at(repo, journal, marker, "KILL");
}

/// Runs `wavectl apply --yes`, sends it `signal` once the host's journal gained a line holding
/// `marker`, and returns its exit status.
fn apply_and_signal_at(
    repo: &Repo,
    journal: &std::path::Path,
    marker: &str,
    signal: &str,
) -> Option<i32> {
    signal_at(repo, journal, marker, signal, false)
}

/// Like `apply_and_signal_at`; with `group`, wavectl leads its own process group and the
/// signal goes to the whole group, as a Ctrl-C on a terminal does.
fn signal_at(
    repo: &Repo,
    journal: &std::path::Path,
    marker: &str,
    signal: &str,
    group: bool,
) -> Option<i32> {
    use std::os::unix::process::CommandExt;
    let before = std::fs::read_to_string(journal).unwrap_or_default().len();
    let mut command = std::process::Command::new(crate::common::bin());
    if group {
        command.process_group(0);
    }
    let mut child = command
        .args(["-i"])
        .arg(repo.inventory_path())
        .args(["apply", "--yes", "plans/p.toml"])
        .current_dir(repo.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn wavectl");
    let start = Instant::now();
    loop {
        let text = std::fs::read_to_string(journal).unwrap_or_default();
        if text.get(before..).is_some_and(|new| new.contains(marker)) {
            break;
        }
        if start.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("the journal never held {marker}:\n{text}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let target = if group {
        format!("-{}", child.id())
    } else {
        child.id().to_string()
    };
    let ok = std::process::Command::new("kill")
        .arg(format!("-{signal}"))
        .arg("--")
        .arg(target)
        .status()
        .expect("kill")
        .success();
    assert!(ok, "kill -{signal}");
    child.wait().expect("wavectl ends").code()
}

#[test]
fn an_apply_killed_mid_wave_is_named_and_taken_over_or_rolled_back() {
    let (lab, repo, root) = gated_v1_then_v2(76, 1);
    let journal = root.join("journal.jsonl");

    // v2: killed while wave two waits for its gate.
    apply_and_kill_at(&repo, &journal, "\"wave\":\"two\"");
    let a = std::fs::read_to_string(root.join("files/a.txt")).expect("a.txt");
    assert!(a == "v1\n" || a == "v2\n", "{a:?}");
    assert!(root.join("lock").exists());

    let diff = repo.run(&["diff", "plans/p.toml"]);
    assert!(
        diff.stdout.contains("was interrupted in wave two"),
        "{}",
        diff.stdout
    );
    let refused = repo.run(&["apply", "--yes", "plans/p.toml"]);
    assert_eq!(refused.code, 1, "{}{}", refused.stdout, refused.stderr);
    assert!(
        refused.stderr.contains("--force-unlock"),
        "{}",
        refused.stderr
    );

    // Back to the last good generation, from the interrupted state (its gates pass again).
    lab.ssh("mainpc", &format!("touch {}/data/flag", root.display()));
    let back = repo.run(&[
        "rollback",
        "--to",
        "previous",
        "--yes",
        "--force-unlock",
        "plans/p.toml",
    ]);
    assert_eq!(back.code, 0, "{}{}", back.stdout, back.stderr);
    assert_eq!(
        std::fs::read_to_string(root.join("files/a.txt")).expect("a"),
        "v1\n"
    );
    assert!(!root.join("lock").exists());
    let unpin = repo.run(&["unpin", "plans/p.toml"]);
    assert_eq!(unpin.code, 0, "{}", unpin.stderr);

    // Killed again, then taken over: converges.
    lab.ssh("mainpc", &format!("rm -f {}/data/flag", root.display()));
    apply_and_kill_at(&repo, &journal, "\"wave\":\"two\"");
    lab.ssh("mainpc", &format!("touch {}/data/flag", root.display()));
    let over = repo.run(&["apply", "--yes", "--force-unlock", "plans/p.toml"]);
    assert_eq!(over.code, 0, "{}{}", over.stdout, over.stderr);
    assert_eq!(
        std::fs::read_to_string(root.join("files/a.txt")).expect("a"),
        "v2\n"
    );
    let diff = repo.run(&["diff", "plans/p.toml"]);
    assert_eq!(diff.code, 0, "{}{}", diff.stdout, diff.stderr);
    assert!(
        std::fs::read_to_string(&journal)
            .expect("journal")
            .contains("force-unlock")
    );
}

#[test]
fn sigint_mid_wave_undoes_the_wave_on_every_host_and_exits_130() {
    let (_lab, repo, root) = gated_v1_then_v2(77, 2);
    let journal = root.join("journal.jsonl");
    let t = Instant::now();
    let code = apply_and_signal_at(&repo, &journal, "\"wave\":\"two\"", "INT");
    assert_eq!(code, Some(130));
    assert!(
        t.elapsed() < Duration::from_secs(50),
        "it waited out the gate"
    );
    assert!(!root.join("lock").exists(), "the lock was released");
    // Wave one stays, wave two is undone: the worker's env is v1's again.
    assert_eq!(
        std::fs::read_to_string(root.join("files/a.txt")).expect("a"),
        "v2\n"
    );
    let env = std::fs::read_to_string(root.join("files/env/worker.env")).expect("env");
    assert!(env.contains("V='v1'"), "{env}");
    let history = json(&repo.run(&["history", "-o", "json"]));
    let gens = history["hosts"][0]["generations"]
        .as_array()
        .expect("gens")
        .clone();
    assert_eq!(
        gens.last().expect("gen")["result"],
        "interrupted, rolled back at two"
    );
}

/// Ctrl-C on a terminal signals wavectl's whole process group while a wave's script runs on
/// the host: the wave is undone all the same, the lock released, exit 130.
#[test]
fn ctrl_c_to_the_process_group_mid_script_undoes_the_wave_and_exits_130() {
    let (_lab, repo, root) = gated_v1_then_v2(86, 1);
    let journal = root.join("journal.jsonl");
    let code = signal_at(
        &repo,
        &journal,
        "\"step\":\"write files/env/worker.env\"",
        "INT",
        true,
    );
    assert_eq!(code, Some(130));
    assert!(!root.join("lock").exists(), "the lock was released");
    let env = std::fs::read_to_string(root.join("files/env/worker.env")).expect("env");
    assert!(env.contains("V='v1'"), "{env}");
    let diff = repo.run(&["diff", "plans/p.toml"]);
    assert_eq!(diff.code, 2, "{}{}", diff.stdout, diff.stderr);
    // With its gate's flag in place the same apply goes through.
    std::fs::write(root.join("data/flag"), "").expect("flag");
    let again = repo.run(&["apply", "--yes", "plans/p.toml"]);
    assert_eq!(again.code, 0, "{}{}", again.stdout, again.stderr);
}

#[test]
fn a_rollback_renders_with_the_builtin_templates_its_generation_recorded() {
    let lab = Lab::up(78, 1);
    let root = lab.root("mainpc");
    let repo = Repo::with_plan(V1).with_inventory(lab.inventory());
    let repo = migration(repo, 1, "CREATE TABLE a (x);\n", "DROP TABLE a;\n")
        .commit("v1")
        .tag("phase1");
    let apply = repo.run(&["apply", "--yes", "plans/p.toml"]);
    assert_eq!(apply.code, 0, "{}{}", apply.stdout, apply.stderr);
    // As if generation 1 had been made by a wavectl whose built-in env template differed.
    let recorded = root.join("builtins/1.json");
    let mut templates: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&recorded).expect("recorded templates"))
            .expect("json");
    let env = templates["process.env.tera"]
        .as_str()
        .expect("process.env.tera")
        .to_string();
    templates["process.env.tera"] = format!("# rendered by an older wavectl\n{env}").into();
    std::fs::write(&recorded, templates.to_string()).expect("plant");

    let repo = repo.file("plans/p.toml", &v2()).commit("v2");
    let apply = repo.run(&["apply", "--yes", "plans/p.toml"]);
    assert_eq!(apply.code, 0, "{}{}", apply.stdout, apply.stderr);
    let rb = repo.run(&["rollback", "--to", "phase1", "--yes", "plans/p.toml"]);
    assert_eq!(rb.code, 0, "{}{}", rb.stdout, rb.stderr);
    let env = std::fs::read_to_string(root.join("files/env/base.env")).expect("env");
    assert!(env.starts_with("# rendered by an older wavectl\n"), "{env}");
    assert!(env.contains("LEVEL='v1'"), "{env}");
    // The generation the rollback made recorded the bytes it rendered with.
    let last: serde_json::Value = serde_json::from_slice(
        &std::fs::read(root.join("builtins/3.json")).expect("gen 3 templates"),
    )
    .expect("json");
    assert_eq!(last["process.env.tera"], templates["process.env.tera"]);
}

#[test]
fn one_wave_is_applied_or_rolled_back_alone_after_its_predecessors() {
    let lab = Lab::up(79, 1);
    let root = lab.root("mainpc");
    let plan = |v: &str| {
        format!(
            "version = 1\nname = \"sel\"\n\n[[file]]\nname = \"a\"\nhost = \"mainpc\"\npath = \"a.txt\"\ncontent = \"{v}\\n\"\n\n[[process]]\nname = \"worker\"\nhost = \"mainpc\"\ncommand = [\"sleep\", \"infinity\"]\nenv = {{ V = \"{v}\" }}\n\n[[wave]]\nname = \"one\"\nselect = [\"file.a\"]\n\n[[wave]]\nname = \"two\"\nselect = [\"process.worker\"]\n"
        )
    };
    let repo = Repo::with_plan(&plan("v1"))
        .with_inventory(lab.inventory())
        .commit("v1")
        .tag("v1");
    let apply = repo.run(&["apply", "--yes", "plans/p.toml"]);
    assert_eq!(apply.code, 0, "{}{}", apply.stdout, apply.stderr);
    let repo = repo.file("plans/p.toml", &plan("v2")).commit("v2");
    let env = || std::fs::read_to_string(root.join("files/env/worker.env")).expect("env");
    let a = || std::fs::read_to_string(root.join("files/a.txt")).expect("a");

    let refused = repo.run(&["apply", "--yes", "--wave", "two", "plans/p.toml"]);
    assert_eq!(refused.code, 1, "{}{}", refused.stdout, refused.stderr);
    assert!(
        refused.stderr.contains("wave two comes after one"),
        "{}",
        refused.stderr
    );
    assert_eq!(a(), "v1\n");

    let one = repo.run(&["apply", "--yes", "--wave", "one", "plans/p.toml"]);
    assert_eq!(one.code, 0, "{}{}", one.stdout, one.stderr);
    assert_eq!(a(), "v2\n");
    assert!(env().contains("V='v1'"), "wave two is left as it was");

    let back = repo.run(&[
        "rollback",
        "--to",
        "v1",
        "--wave",
        "one",
        "--yes",
        "plans/p.toml",
    ]);
    assert_eq!(back.code, 0, "{}{}", back.stdout, back.stderr);
    assert_eq!(a(), "v1\n");
    let unknown = repo.run(&[
        "apply",
        "--yes",
        "--unpin",
        "--wave",
        "nope",
        "plans/p.toml",
    ]);
    assert_eq!(unknown.code, 1);
    assert!(
        unknown.stderr.contains("no wave is named `nope`"),
        "{}",
        unknown.stderr
    );

    // One resource: the worker goes back to v1, the file stays at v2.
    let all = repo.run(&["apply", "--yes", "--unpin", "plans/p.toml"]);
    assert_eq!(all.code, 0, "{}{}", all.stdout, all.stderr);
    assert!(env().contains("V='v2'"));
    let one = repo.run(&[
        "rollback",
        "--to",
        "v1",
        "--select",
        "process.worker",
        "--yes",
        "plans/p.toml",
    ]);
    assert_eq!(one.code, 0, "{}{}", one.stdout, one.stderr);
    assert!(env().contains("V='v1'"), "{}", env());
    assert_eq!(a(), "v2\n");
}

#[test]
fn previous_of_one_host_when_the_hosts_histories_differ() {
    let lab = Lab::up(80, 2);
    let plan = |v: &str| {
        format!(
            "version = 1\nname = \"h\"\n\n[[file]]\nname = \"m\"\nhost = \"mainpc\"\npath = \"m.txt\"\ncontent = \"{v}\\n\"\n\n[[file]]\nname = \"p\"\nhost = \"pc2\"\npath = \"p.txt\"\ncontent = \"v1\\n\"\n"
        )
    };
    let repo = Repo::with_plan(&plan("v1"))
        .with_inventory(lab.inventory())
        .commit("v1");
    assert_eq!(repo.run(&["apply", "--yes", "plans/p.toml"]).code, 0);
    // Only mainpc changes: it has a previous generation, pc2 does not.
    let repo = repo.file("plans/p.toml", &plan("v2")).commit("v2");
    assert_eq!(repo.run(&["apply", "--yes", "plans/p.toml"]).code, 0);
    let refused = repo.run(&["rollback", "--to", "previous", "--yes", "plans/p.toml"]);
    assert_eq!(refused.code, 1, "{}{}", refused.stdout, refused.stderr);
    assert!(
        refused.stderr.contains("pc2: has no previous generation"),
        "{}",
        refused.stderr
    );
    let one = repo.run(&[
        "rollback",
        "--to",
        "previous",
        "--host",
        "mainpc",
        "--yes",
        "plans/p.toml",
    ]);
    assert_eq!(one.code, 0, "{}{}", one.stdout, one.stderr);
    let m = std::fs::read_to_string(lab.root("mainpc").join("files/m.txt")).expect("m");
    assert_eq!(m, "v1\n");
    assert!(lab.root("mainpc").join("pin.json").exists());
    assert!(
        !lab.root("pc2").join("pin.json").exists(),
        "only the named host is pinned"
    );
}

#[test]
fn sigkill_at_five_points_never_leaves_a_half_file_and_converges() {
    let (_lab, repo, root) = gated_v1_then_v2(81, 1);
    let journal = root.join("journal.jsonl");
    std::fs::write(root.join("data/flag"), "").expect("flag");
    let mut repo = repo;
    let (mut old, mut new) = ("v1", "v2");
    for marker in [
        "\"step\":\"write files/a.txt\"",
        "\"step\":\"write files/env/worker.env\"",
        "\"step\":\"restart worker\"",
        "\"step\":\"wait for processes to run\"",
        "\"step\":\"record generation\"",
    ] {
        apply_and_kill_at(&repo, &journal, marker);
        let a = std::fs::read_to_string(root.join("files/a.txt")).expect("a.txt");
        assert!(
            a == format!("{old}\n") || a == format!("{new}\n"),
            "{marker}: {a:?}"
        );
        // The host may still be finishing the script it had when wavectl died (a lock can
        // only go away, never come back): a lock there after `diff` was there during it.
        let diff = repo.run(&["diff", "plans/p.toml"]);
        if root.join("lock").exists() {
            assert!(
                diff.stdout.contains("was interrupted"),
                "{marker}: {}",
                diff.stdout
            );
        }
        let over = repo.run(&["apply", "--yes", "--force-unlock", "plans/p.toml"]);
        assert_eq!(over.code, 0, "{marker}: {}{}", over.stdout, over.stderr);
        let diff = repo.run(&["diff", "plans/p.toml"]);
        assert_eq!(diff.code, 0, "{marker}: {}{}", diff.stdout, diff.stderr);
        assert_eq!(
            std::fs::read_to_string(root.join("files/a.txt")).expect("a"),
            format!("{new}\n")
        );
        (old, new) = (new, old);
        repo = repo
            .file("plans/p.toml", &gated_plan(&root, new))
            .commit(new);
    }
}
