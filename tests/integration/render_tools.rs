//! The configs rendered for `plans/phase2.toml` are accepted by the real tools: `promtool check
//! config` for both hubs, and two real `nats-server`s that start, link by leafnode and report
//! JetStream healthy.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use wavectl::load::{Loaded, NamedText, Request, load};
use wavectl::repo::WorkTree;

use crate::common::project_root;

/// The reference plan with its hosts moved to addresses and a root no other test uses.
fn phase2_into(root: &Path) -> Loaded {
    let inventory = format!(
        r#"
[[host]]
name = "mainpc"
ssh = "mainpc"
address = "127.0.30.2"
root = "{0}/mainpc"

[[host]]
name = "pc2"
ssh = "pc2"
address = "127.0.30.3"
root = "{0}/pc2"
"#,
        root.display()
    );
    let repo = WorkTree::new(project_root(), String::new());
    let env = |name: &str| (name == "TELEGRAM_TOKEN").then(|| "render-test-token".to_string());
    let req = Request {
        plan_path: "plans/phase2.toml",
        inventory: Some(NamedText {
            name: "test-inventory.toml".into(),
            text: inventory,
        }),
        secrets_file: None,
        env: &env,
        homes: &Default::default(),
        builtins: None,
    };
    let loaded = load(&repo, &req).unwrap_or_else(|e| panic!("phase2 does not load:\n{e}"));
    for host in loaded.desired.hosts.values() {
        for f in &host.files {
            let path = Path::new(&host.root).join(&f.path);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(&path, &f.content).expect("write");
        }
    }
    loaded
}

#[test]
fn rendered_prometheus_configs_pass_promtool() {
    let dir = tempfile::tempdir().expect("temp");
    phase2_into(dir.path());
    for config in [
        "mainpc/files/prometheus/central.yml",
        "pc2/files/prometheus/edge.yml",
    ] {
        let out = Command::new("promtool")
            .args(["check", "config"])
            .arg(dir.path().join(config))
            .output()
            .expect("promtool (Debian package prometheus) must be installed");
        assert!(
            out.status.success(),
            "promtool rejected {config}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // The central hub's alert rules were checked along with its config; check them alone too.
    let rules = dir.path().join("mainpc/files/prometheus/central.rules.yml");
    let out = Command::new("promtool")
        .args(["check", "rules"])
        .arg(&rules)
        .output()
        .expect("promtool");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// A child process that is killed and reaped however the test ends.
pub struct Running(pub Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A nats-server on `conf`, its log in `log`, stopped when dropped.
pub fn start_nats(conf: &Path, log: &Path) -> Running {
    let log = std::fs::File::create(log).expect("log");
    let child = Command::new("nats-server")
        .arg("-c")
        .arg(conf)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start nats-server");
    Running(child)
}

pub fn http_get(addr: &str, path: &str) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&addr.parse().ok()?, Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    Some(body)
}

pub fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ok() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn rendered_nats_configs_start_real_servers_joined_by_a_leafnode() {
    let dir = tempfile::tempdir().expect("temp");
    phase2_into(dir.path());
    let mut servers = Vec::new();
    for (host, name) in [("mainpc", "nats-mainpc"), ("pc2", "nats-pc2")] {
        let conf = dir.path().join(format!("{host}/files/nats/{name}.conf"));
        let check = Command::new("nats-server")
            .arg("-t")
            .arg("-c")
            .arg(&conf)
            .output()
            .expect("nats-server (Debian package nats-server) must be installed");
        assert!(
            check.status.success(),
            "nats-server -t rejected {name}: {}",
            String::from_utf8_lossy(&check.stderr)
        );
        servers.push(start_nats(&conf, &dir.path().join(format!("{name}.log"))));
    }
    // -t only parses; the running servers prove the config (domains, leafnodes) is accepted.
    for monitor in ["127.0.30.2:8222", "127.0.30.3:8223"] {
        wait_for(&format!("{monitor} healthz"), || {
            http_get(monitor, "/healthz?js-enabled-only=true")
                .is_some_and(|r| r.starts_with("HTTP/1.0 200") || r.starts_with("HTTP/1.1 200"))
        });
    }
    wait_for("the pc2 -> mainpc leafnode", || {
        http_get("127.0.30.2:8222", "/leafz")
            .is_some_and(|r| r.contains("\"leafnodes\": 1") || r.contains("\"leafnodes\":1"))
    });
    for s in &mut servers {
        assert!(
            s.0.try_wait().expect("wait").is_none(),
            "a nats-server exited early"
        );
    }
}

#[test]
fn rendered_alertmanager_configs_pass_amtool_and_hold_the_secret_in_0600() {
    let dir = tempfile::tempdir().expect("temp");
    let loaded = phase2_into(dir.path());
    for (host, name) in [("mainpc", "am-mainpc"), ("pc2", "am-pc2")] {
        let rel = format!("files/alertmanager/{name}.yml");
        let spec = loaded.desired.hosts[host]
            .files
            .iter()
            .find(|f| f.path == rel)
            .expect("the alertmanager config is rendered");
        assert_eq!(spec.mode, 0o600, "a config holding the bot token is 0600");
        assert!(spec.content.contains("render-test-token"));
        let out = Command::new("amtool")
            .args(["check-config"])
            .arg(dir.path().join(host).join(&rel))
            .output()
            .expect("amtool (Debian package prometheus-alertmanager) must be installed");
        assert!(
            out.status.success(),
            "amtool rejected {rel}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let bb = dir
            .path()
            .join(format!("{host}/files/blackbox/blackbox-{host}.yml"));
        let out = Command::new("prometheus-blackbox-exporter")
            .arg("--config.check")
            .arg(format!("--config.file={}", bb.display()))
            .output()
            .expect("prometheus-blackbox-exporter must be installed");
        assert!(
            out.status.success(),
            "blackbox exporter rejected its config: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn derived_health_rules_pass_their_promtool_unit_tests() {
    let dir = tempfile::tempdir().expect("temp");
    phase2_into(dir.path());
    let work = dir.path().join("rules");
    std::fs::create_dir_all(&work).expect("mkdir");
    std::fs::copy(
        dir.path().join("mainpc/files/prometheus/central.rules.yml"),
        work.join("central.rules.yml"),
    )
    .expect("copy the rendered rules");
    let test = work.join("central-health.test.yml");
    std::fs::copy(
        project_root().join("tests/rules/central-health.test.yml"),
        &test,
    )
    .expect("copy the rule tests");
    let out = Command::new("promtool")
        .args(["test", "rules"])
        .arg(&test)
        .output()
        .expect("promtool");
    assert!(
        out.status.success(),
        "promtool test rules:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
