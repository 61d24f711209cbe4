//! From zero to your own machines: the README's "On your own machines" block run word for word
//! on a lab (its two addresses replaced by the lab's machines): `init` with two hosts,
//! `doctor` green, `apply --yes`, `diff` in sync, `status`; then `doctor` red, naming the
//! package, when a needed program is hidden from a host's PATH. And `init` into an existing
//! directory refuses and changes nothing; completions and man pages.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::{StopSupervisord, bin, project_root};
use crate::lab::Lab;

const NET: u8 = 100;

/// The fenced block of the README's "On your own machines" section.
fn readme_block() -> String {
    let readme = std::fs::read_to_string(project_root().join("README.md")).expect("README");
    let section = readme
        .split("## On your own machines")
        .nth(1)
        .expect("a `## On your own machines` section");
    let start = section.find("```sh\n").expect("a ```sh block") + "```sh\n".len();
    let len = section[start..].find("```").expect("the block's end");
    section[start..start + len].to_string()
}

/// An ssh config as an operator's: the lab's key and known hosts for its addresses.
fn operator_ssh_config(lab: &Lab) -> PathBuf {
    let path = lab.dir().join("operator_ssh_config");
    let text = format!(
        "Host 127.0.{NET}.*\n  IdentityFile {dir}/id_ed25519\n  IdentitiesOnly yes\n  UserKnownHostsFile {dir}/known_hosts\n  GlobalKnownHostsFile /dev/null\n  StrictHostKeyChecking yes\n  BatchMode yes\n",
        dir = lab.dir().display()
    );
    std::fs::write(&path, text).expect("write ssh config");
    path
}

/// `cmd` with the operator's environment: HOME, wavectl first on PATH, the ssh config.
fn operator(cmd: &mut Command, home: &Path, ssh_config: &Path) {
    let bin_dir = bin().parent().expect("bin dir").to_path_buf();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    cmd.env("HOME", home)
        .env("PATH", path)
        .env("WAVECTL_SSH_CONFIG", ssh_config)
        .env("NO_COLOR", "1")
        .env_remove("WAVECTL_SECRETS_FILE")
        .env_remove("TELEGRAM_TOKEN")
        .stdin(std::process::Stdio::null());
}

fn text(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A directory of links to every program on the lab's PATH but `hidden`.
fn path_without(dir: &Path, hidden: &str) -> PathBuf {
    let links = dir.join("path-without");
    std::fs::create_dir_all(&links).expect("mkdir");
    std::fs::set_permissions(&links, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    for d in [
        "/usr/local/bin",
        "/usr/bin",
        "/bin",
        "/usr/local/sbin",
        "/usr/sbin",
        "/sbin",
    ] {
        let Ok(entries) = std::fs::read_dir(d) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name();
            let link = links.join(&name);
            if name != hidden && !link.exists() {
                let _ = std::os::unix::fs::symlink(e.path(), link);
            }
        }
    }
    assert!(links.join("sh").exists() && !links.join(hidden).exists());
    links
}

#[test]
fn the_readme_own_machines_block_runs_on_a_lab_then_doctor_names_a_hidden_program() {
    let lab = Lab::up(NET, 2);
    let home = tempfile::Builder::new()
        .prefix("wvhome")
        .tempdir_in("/tmp")
        .expect("home");
    // The roots are `~/.wavectl` on each machine; the lab stops their supervisords too.
    let _stop: Vec<StopSupervisord> = ["mainpc", "pc2"]
        .iter()
        .map(|h| StopSupervisord(lab.dir().join(h).join("home/.wavectl")))
        .collect();
    let ssh_config = operator_ssh_config(&lab);

    let block = readme_block();
    let mut script = block.clone();
    for (readme, host) in [("ops@192.168.1.10", "mainpc"), ("ops@192.168.1.11", "pc2")] {
        assert!(
            script.contains(readme),
            "the README block names {readme}:\n{block}"
        );
        let n = if host == "mainpc" { 2 } else { 3 };
        script = script.replace(readme, &format!("t{NET}-{host}@127.0.{NET}.{n}:2222"));
    }
    for step in [
        "wavectl init",
        "wavectl doctor",
        "wavectl apply --yes",
        "wavectl diff",
        "wavectl status",
    ] {
        assert!(
            script.contains(step),
            "the README block runs `{step}`:\n{block}"
        );
    }
    let mut sh = Command::new("sh");
    sh.arg("-e").arg("-c").arg(&script).current_dir(home.path());
    operator(&mut sh, home.path(), &ssh_config);
    let out = sh.output().expect("run the README block");
    let shown = text(&out);
    assert!(out.status.success(), "{shown}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("plans/phase2.toml: ok: plan phase2-resilience with 2 hosts"),
        "{shown}"
    );
    assert!(stdout.contains("doctor: ok, 2 hosts ready"), "{shown}");
    assert!(stdout.contains("in sync: nothing to do"), "{shown}");
    assert!(
        stdout.contains("mainpc: reachable, generation 1"),
        "{shown}"
    );
    assert!(stdout.contains("pc2: reachable, generation 1"), "{shown}");
    assert!(
        !shown.contains("your-bot-token"),
        "a secret was printed:\n{shown}"
    );

    let repo = home.path().join("wave");
    let wavectl = |args: &[&str]| {
        let mut cmd = Command::new(bin());
        cmd.args(args).current_dir(&repo);
        operator(&mut cmd, home.path(), &ssh_config);
        cmd.env(
            "WAVECTL_SECRETS_FILE",
            home.path().join(".wavectl-secrets.toml"),
        );
        cmd.output().expect("run wavectl")
    };
    // After the apply, the planned ports are held by wavectl's own programs: still green.
    let json = wavectl(&["doctor", "-o", "json", "plans/phase2.toml"]);
    assert_eq!(json.status.code(), Some(0), "{}", text(&json));
    let doc: serde_json::Value = serde_json::from_slice(&json.stdout).expect("doctor JSON");
    assert_eq!(doc["ok"], true);
    let checks = doc["hosts"][0]["checks"].as_array().expect("checks");
    assert!(
        checks.iter().any(|c| c["check"] == "port 9000"
            && c["ok"] == true
            && c["detail"]
                .as_str()
                .is_some_and(|d| d.contains("wavectl's own program central"))),
        "{doc:#}"
    );
    let diff = wavectl(&["diff", "plans/phase2.toml"]);
    assert_eq!(diff.status.code(), Some(0), "{}", text(&diff));

    // pc2 with a PATH that lacks nats-server: red, with the package and the fix.
    let links = path_without(lab.dir(), "nats-server");
    let inventory =
        std::fs::read_to_string(repo.join("inventories/hosts.toml")).expect("inventory");
    assert!(
        inventory.trim_end().ends_with("address = \"127.0.100.3\""),
        "pc2 is the last host:\n{inventory}"
    );
    let red = home.path().join("inventory-without-nats.toml");
    std::fs::write(
        &red,
        format!("{inventory}env = {{ PATH = \"{}\" }}\n", links.display()),
    )
    .expect("write inventory");
    let out = wavectl(&[
        "-i",
        red.to_str().expect("utf-8"),
        "doctor",
        "plans/phase2.toml",
    ]);
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(1), "{shown}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let pc2 = stdout.split("pc2 (root ").nth(1).expect("pc2's findings");
    assert!(
        pc2.contains("FAIL  program nats-server: `nats-server` is not on the PATH (Debian package nats-server)\n        fix: apt-get install nats-server\n"),
        "{shown}"
    );
    let mainpc = stdout.split("pc2 (root ").next().unwrap_or_default();
    assert!(!mainpc.contains("FAIL"), "only pc2 lacks it:\n{shown}");
    assert!(
        stdout.ends_with("doctor: 1 problem (each with its fix above)\n"),
        "{shown}"
    );
}

/// Every path under `dir` with its mode and bytes (a link's target).
fn tree(dir: &Path) -> BTreeMap<PathBuf, (u32, Vec<u8>)> {
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).expect("read dir").flatten() {
            let p = e.path();
            let meta = std::fs::symlink_metadata(&p).expect("stat");
            let bytes = if meta.is_dir() {
                todo.push(p.clone());
                Vec::new()
            } else if meta.file_type().is_symlink() {
                std::fs::read_link(&p)
                    .expect("link")
                    .into_os_string()
                    .into_encoded_bytes()
            } else {
                std::fs::read(&p).expect("read")
            };
            out.insert(p, (meta.permissions().mode(), bytes));
        }
    }
    out
}

fn init(dir: &Path, args: &[&str], env: &[(&str, &Path)]) -> Output {
    let mut cmd = Command::new(bin());
    cmd.arg("init")
        .arg(dir)
        .args(args)
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run wavectl init")
}

const HOSTS: &[&str] = &[
    "--host",
    "mainpc=ops@192.0.2.10",
    "--host",
    "pc2=ops@192.0.2.11",
];

#[test]
fn init_into_an_existing_repo_refuses_and_changes_nothing() {
    let repo = crate::common::Repo::with_plan("version = 1\nname = \"mine\"\n").commit("mine");
    std::fs::write(repo.path().join("notes"), "uncommitted\n").expect("write");
    let before = tree(repo.path());
    let out = init(repo.path(), HOSTS, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("is already a git repository; wavectl init never writes into an existing directory, and nothing was changed"),
        "{}",
        text(&out)
    );
    assert_eq!(tree(repo.path()), before, "init changed the existing repo");

    // A directory with anything in it, even without git, is refused alike.
    let dir = tempfile::TempDir::new().expect("dir");
    std::fs::write(dir.path().join("keep.txt"), "mine\n").expect("write");
    let before = tree(dir.path());
    let out = init(dir.path(), HOSTS, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("is not empty"),
        "{}",
        text(&out)
    );
    assert_eq!(tree(dir.path()), before);
    assert_eq!(
        std::fs::read_dir(dir.path().parent().expect("parent"))
            .expect("ls")
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().contains("wavectl-init"))
            .count(),
        0,
        "no staging directory left behind"
    );
}

#[test]
fn init_writes_a_committed_repo_that_validates_and_refuses_bad_host_values() {
    let parent = tempfile::TempDir::new().expect("dir");
    // An empty directory is accepted; git needs no configured identity.
    let dir = parent.path().join("wave");
    std::fs::create_dir(&dir).expect("mkdir");
    let out = init(&dir, HOSTS, &[("HOME", parent.path())]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("plans/phase2.toml: ok: plan phase2-resilience with 2 hosts, 9 waves"),
        "{stdout}"
    );
    assert!(
        stdout.contains("note: the plan needs secret TELEGRAM_TOKEN before apply"),
        "{stdout}"
    );
    let status = Command::new("git")
        .args(["status", "--porcelain"])
        .current_dir(&dir)
        .output()
        .expect("git");
    assert_eq!(
        String::from_utf8_lossy(&status.stdout),
        "",
        "everything is committed"
    );
    let inventory = std::fs::read_to_string(dir.join("inventories/hosts.toml")).expect("inventory");
    assert!(
        inventory.contains("name = \"pc2\"\nssh = \"ops@192.0.2.11\"\naddress = \"192.0.2.11\"\n"),
        "{inventory}"
    );
    for f in [
        "templates/README",
        "migrations/README",
        "templates/standin.sh.tera",
        "migrations/nanoclaw/0001_queue.up.sql",
    ] {
        assert!(dir.join(f).is_file(), "{f}");
    }

    let minimal = parent.path().join("small");
    let out = init(
        &minimal,
        &[
            "--minimal",
            "--host",
            "solo=ops@192.0.2.12,root=/srv/wavectl",
        ],
        &[("HOME", parent.path())],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(
            "plans/minimal.toml: ok: plan minimal with 1 hosts, 2 waves, 5 files, 2 processes"
        ),
        "{}",
        text(&out)
    );

    for (spec, says) in [
        (
            "pc2=ops@192.0.2.11,address=1.2.3.4;id",
            "error: --host pc2: invalid address `1.2.3.4;id`, expected an IP address or a DNS name",
        ),
        (
            "pc2=-oProxyCommand=x",
            "error: --host pc2: invalid ssh destination `-oProxyCommand=x`",
        ),
        (
            "pc 2=ops@h",
            "error: --host `pc 2=ops@h`: invalid name `pc 2`",
        ),
        (
            "pc2=ops@h,root=/srv/../etc",
            "error: --host pc2: invalid root `/srv/../etc`",
        ),
    ] {
        let fresh = parent.path().join("bad");
        let out = init(
            &fresh,
            &["--host", "mainpc=ops@192.0.2.10", "--host", spec],
            &[],
        );
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr).starts_with(says),
            "{spec}: {}",
            text(&out)
        );
        assert!(!fresh.exists(), "nothing is written for a bad --host");
    }
}

#[test]
fn init_without_hosts_off_a_terminal_lists_the_ssh_config_hosts() {
    let parent = tempfile::TempDir::new().expect("dir");
    let cfg = parent.path().join("ssh_config");
    std::fs::write(
        &cfg,
        "Host *\n  User ops\nHost alpha beta\n  HostName 192.0.2.20\nHost gamma\n",
    )
    .expect("write");
    let dir = parent.path().join("wave");
    let out = init(&dir, &[], &[("WAVECTL_SSH_CONFIG", &cfg)]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&format!("no --host given and stdin is not a terminal to choose from the hosts of {}: alpha, beta, gamma", cfg.display())), "{stderr}");
    assert!(
        stderr.contains("hint: name them: wavectl init DIR --host alpha=alpha --host beta=beta"),
        "{stderr}"
    );
    assert!(!dir.exists());
}

#[test]
fn completions_and_one_man_page_per_subcommand() {
    for (shell, marker) in [
        ("bash", "_wavectl()"),
        ("zsh", "#compdef wavectl"),
        ("fish", "complete -c wavectl"),
    ] {
        let out = Command::new(bin())
            .args(["completions", shell])
            .output()
            .expect("run");
        assert!(out.status.success());
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains(marker) && text.contains("doctor") && text.contains("init"),
            "{shell}"
        );
    }
    let dir = tempfile::TempDir::new().expect("dir");
    let out = Command::new(bin())
        .arg("man")
        .arg(dir.path())
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", text(&out));
    let mut pages: Vec<String> = std::fs::read_dir(dir.path())
        .expect("ls")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    pages.sort();
    for p in [
        "wavectl.1",
        "wavectl-init.1",
        "wavectl-doctor.1",
        "wavectl-apply.1",
        "wavectl-rollback.1",
        "wavectl-migrations-status.1",
        "wavectl-completions.1",
    ] {
        assert!(pages.contains(&p.to_string()), "{p} in {pages:?}");
    }
    assert!(
        !pages.contains(&"wavectl-man.1".to_string()),
        "the packaging command is hidden"
    );
    let init = std::fs::read_to_string(dir.path().join("wavectl-init.1")).expect("page");
    assert!(
        init.contains("\\-\\-minimal") || init.contains("--minimal"),
        "{init}"
    );
}
