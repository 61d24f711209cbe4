//! The alerting path end to end on a real lab: hubs evaluate the derived health rules, two
//! clustered alertmanagers deliver through the Telegram receiver to a stand-in Bot API (a small
//! HTTP server this test runs on a lab address, recording every `POST /bot<token>/sendMessage`),
//! and the bot token shows up nowhere but in the alertmanagers' 0600 configs.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::common::{Repo, Run, json};
use crate::lab::Lab;

/// One request the stand-in Bot API received.
#[derive(Debug, Clone)]
struct Received {
    at: Instant,
    path: String,
    text: String,
}

/// A stand-in Telegram Bot API: answers every POST as Telegram does and records it. Stopped
/// and joined when dropped.
struct StandIn {
    addr: String,
    got: Arc<Mutex<Vec<Received>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl StandIn {
    fn start(ip: &str) -> StandIn {
        let listener = TcpListener::bind((ip, 0)).expect("bind the stand-in Bot API");
        let addr = listener.local_addr().expect("addr").to_string();
        let got = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (g, s) = (got.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(stream) = stream
                    && let Some(r) = serve(stream)
                {
                    g.lock().expect("lock").push(r);
                }
            }
        });
        StandIn {
            addr,
            got,
            stop,
            thread: Some(thread),
        }
    }

    fn received(&self) -> Vec<Received> {
        self.got.lock().expect("lock").clone()
    }

    /// Messages since `t` whose text contains every one of `words`.
    fn matching(&self, since: Instant, words: &[&str]) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|r| r.at >= since && words.iter().all(|w| r.text.contains(w)))
            .collect()
    }

    /// Waits up to `limit` for a message since `since` containing `words`.
    fn wait_for(&self, since: Instant, words: &[&str], limit: Duration) -> Option<Received> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Some(r) = self.matching(since, words).into_iter().next() {
                return Some(r);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        None
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(&self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Reads one HTTP request and answers it like the Bot API's sendMessage.
fn serve(stream: TcpStream) -> Option<Received> {
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line).ok()?;
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 || line == "\r\n" {
            break;
        }
        if let Some((k, v)) = line.split_once(':')
            && k.eq_ignore_ascii_case("content-length")
        {
            length = v.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    let mut parts = request_line.split_whitespace();
    let (method, path) = (parts.next()?.to_string(), parts.next()?.to_string());
    let doc: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let text = doc["text"].as_str().unwrap_or_default().to_string();
    let answer = serde_json::json!({
        "ok": true,
        "result": { "message_id": 1, "date": 0, "chat": { "id": -100777, "type": "group" }, "text": text },
    })
    .to_string();
    let mut out = stream;
    let _ = write!(
        out,
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
        answer.len()
    );
    (method == "POST").then_some(Received {
        at: Instant::now(),
        path,
        text,
    })
}

fn plan(api: &str) -> String {
    format!(
        r#"
version = 1
name = "alerts-lab"

[vars]
tg_api = "http://{api}"
tg_chat = "-100777"

[[pushgateway]]
name = "pg-mainpc"
host = "mainpc"

[[pushgateway]]
name = "pg-pc2"
host = "pc2"

[[hub]]
name = "central"
host = "mainpc"
port = 9000
scrape_interval = "1s"
evaluation_interval = "1s"
alerting = ["am-mainpc", "am-pc2"]
health = {{ down_for = "3s" }}

[[hub]]
name = "edge"
host = "pc2"
port = 9100
scrape_interval = "1s"
evaluation_interval = "1s"
alerting = ["am-mainpc", "am-pc2"]
health = {{ down_for = "3s" }}

[[blackbox]]
name = "bb-mainpc"
host = "mainpc"

[[blackbox]]
name = "bb-pc2"
host = "pc2"

[[nats]]
name = "nats-mainpc"
host = "mainpc"
port = 4222
monitor_port = 8222
leafnode_port = 7422
domain = "mainpc"

[[nats]]
name = "nats-pc2"
host = "pc2"
port = 4223
monitor_port = 8223
domain = "pc2"
leafnode_remotes = ["nats-mainpc"]

[[batch]]
name = "pilot"
host = "pc2"
agents = ["Pilot1", "Pilot2"]
primary_hub = "edge"
fallback_hub = "central"
heartbeat_interval = "1s"

[[alertmanager]]
name = "am-mainpc"
host = "mainpc"
route = {{ group_wait = "1s", group_interval = "5s", repeat_interval = "1h" }}
[[alertmanager.receiver]]
name = "telegram"
telegram = {{ bot_token = "TELEGRAM_TOKEN", chat_id = "{{{{ host.vars.tg_chat }}}}", api_url = "{{{{ host.vars.tg_api }}}}" }}

[[alertmanager]]
name = "am-pc2"
host = "pc2"
route = {{ group_wait = "1s", group_interval = "5s", repeat_interval = "1h" }}
[[alertmanager.receiver]]
name = "telegram"
telegram = {{ bot_token = "TELEGRAM_TOKEN", chat_id = "{{{{ host.vars.tg_chat }}}}", api_url = "{{{{ host.vars.tg_api }}}}" }}

[[wave]]
name = "stack"
select = ["pushgateway.*", "hub.*", "blackbox.*", "nats.*", "batch.*"]
max_parallel = 2

[[wave]]
name = "alerting"
select = ["alertmanager.*"]
max_parallel = 2
[[wave.gate]]
alert_quiet = {{ alertmanager = "am-mainpc", max_firing = 0 }}
timeout = "90s"
interval = "1s"
"#
    )
}

fn supervisorctl(lab: &Lab, host: &str, action: &str, program: &str) {
    let root = lab.root(host);
    let out = lab.ssh(
        host,
        &format!(
            "cd {} && supervisorctl -c files/supervisor/supervisord.conf {action} {program}",
            root.display()
        ),
    );
    assert!(
        out.contains(if action == "stop" {
            "stopped"
        } else {
            "started"
        }),
        "supervisorctl {action} {program} on {host}: {out}"
    );
}

/// Every file under `dir` whose bytes contain `needle`.
fn files_containing(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        let Ok(meta) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        if meta.is_dir() {
            out.extend(files_containing(&p, needle));
        } else if meta.is_file()
            && let Ok(bytes) = std::fs::read(&p)
            && bytes.windows(needle.len()).any(|w| w == needle)
        {
            out.push(p.display().to_string());
        }
    }
    out
}

fn firing_names(run: &Run) -> Vec<String> {
    let doc = json(run);
    doc["alertmanagers"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|a| a["alerts"].as_array().cloned().unwrap_or_default())
        .map(|a| {
            format!(
                "{}/{}",
                a["name"].as_str().unwrap_or_default(),
                a["labels"]["instance"].as_str().unwrap_or_default()
            )
        })
        .collect()
}

#[test]
fn a_stopped_agent_and_a_stopped_nats_server_reach_telegram_once_through_the_alertmanager_cluster()
{
    let lab = Lab::up(110, 2);
    let standin = StandIn::start("127.0.110.1");
    let token = format!("4242:tok{}", std::process::id());
    let repo = Repo::with_plan(&plan(&standin.addr))
        .env("TELEGRAM_TOKEN", &token)
        .commit("alerting plan")
        .with_inventory(lab.inventory());
    let mut outputs: Vec<Run> = Vec::new();

    let check = repo.run(&["render", "plans/p.toml", "--host", "mainpc"]);
    assert!(
        check.stdout.contains("bot_token: \"********\""),
        "{}",
        check.stdout
    );
    outputs.push(check);
    let apply = repo.run(&["apply", "--yes", "plans/p.toml"]);
    assert_eq!(apply.code, 0, "{}{}", apply.stdout, apply.stderr);
    outputs.push(apply);
    let quiet = repo.run(&["alerts", "-o", "json", "plans/p.toml"]);
    assert_eq!(
        quiet.code, 0,
        "nothing fires after the gate: {}{}",
        quiet.stdout, quiet.stderr
    );
    outputs.push(quiet);

    // An agent stops for good: exactly one notification names it.
    let killed = Instant::now();
    supervisorctl(&lab, "pc2", "stop", "agent-Pilot1");
    let firing = ["Alerts Firing", "AgentHeartbeatStale", "Pilot1"];
    let first = standin
        .wait_for(killed, &firing, Duration::from_secs(120))
        .unwrap_or_else(|| panic!("no notification within 120 s; got {:?}", standin.received()));
    let took = first.at - killed;
    eprintln!(
        "figure: agent stopped -> Telegram notification in {:.1} s",
        took.as_secs_f64()
    );
    assert!(first.path.ends_with("/sendMessage") && first.path.starts_with("/bot"));
    assert_eq!(first.path, format!("/bot{token}/sendMessage"));
    let alerts = repo.run(&["alerts", "-o", "json", "plans/p.toml"]);
    assert_eq!(alerts.code, 2, "{}{}", alerts.stdout, alerts.stderr);
    assert!(
        firing_names(&alerts).contains(&"AgentHeartbeatStale/Pilot1".to_string()),
        "{}",
        alerts.stdout
    );
    outputs.push(alerts);
    let human = repo.run(&["alerts", "plans/p.toml"]);
    assert!(
        human.stdout.contains("AgentHeartbeatStale"),
        "{}",
        human.stdout
    );
    outputs.push(human);
    let status = repo.run(&["status", "-o", "json", "plans/p.toml"]);
    let doc = json(&status);
    let pc2 = doc["hosts"]
        .as_array()
        .and_then(|h| h.iter().find(|h| h["host"] == "pc2"))
        .cloned()
        .expect("pc2 in status");
    assert!(
        pc2["alerts_firing"].as_u64() >= Some(1),
        "{}",
        status.stdout
    );
    outputs.push(status);
    // The second alertmanager of the cluster would send after its peer timeout (15 s).
    std::thread::sleep(Duration::from_secs(20));
    let sent = standin.matching(killed, &firing);
    assert_eq!(sent.len(), 1, "one notification, not {sent:?}");

    // Back: a resolved notification.
    let back = Instant::now();
    supervisorctl(&lab, "pc2", "start", "agent-Pilot1");
    standin
        .wait_for(
            back,
            &["Alerts Resolved", "AgentHeartbeatStale", "Pilot1"],
            Duration::from_secs(60),
        )
        .unwrap_or_else(|| panic!("no resolved notification; got {:?}", standin.received()));

    // mainpc's alertmanager stops, then pc2's NATS server: pc2's alertmanager still delivers,
    // once.
    supervisorctl(&lab, "mainpc", "stop", "am-mainpc");
    let stopped = Instant::now();
    supervisorctl(&lab, "pc2", "stop", "nats-pc2");
    let js = ["Alerts Firing", "NatsJetStreamUnavailable", "nats-pc2"];
    let first = standin
        .wait_for(stopped, &js, Duration::from_secs(120))
        .unwrap_or_else(|| {
            panic!(
                "no JetStream alert within 120 s; got {:?}",
                standin.received()
            )
        });
    eprintln!(
        "figure: nats-pc2 stopped -> Telegram notification in {:.1} s (mainpc's alertmanager down)",
        (first.at - stopped).as_secs_f64()
    );
    std::thread::sleep(Duration::from_secs(20));
    let sent = standin.matching(stopped, &js);
    assert_eq!(sent.len(), 1, "one notification, not {sent:?}");

    // The token: in the 0600 configs, and nowhere else.
    let needle = token.as_bytes();
    for run in &outputs {
        assert!(
            !run.stdout.contains(&token) && !run.stderr.contains(&token),
            "token in output: {run:?}"
        );
    }
    for host in ["mainpc", "pc2"] {
        let root = lab.root(host);
        let config = root.join(format!("files/alertmanager/am-{host}.yml"));
        let mode = std::fs::metadata(&config)
            .expect("config")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{}", config.display());
        let found = files_containing(&root, needle);
        assert_eq!(
            found,
            vec![config.display().to_string()],
            "the token is only in the config"
        );
    }
    let mut in_cmdline = Vec::new();
    for e in std::fs::read_dir("/proc").expect("/proc").flatten() {
        if let Ok(bytes) = std::fs::read(e.path().join("cmdline"))
            && bytes.windows(needle.len()).any(|w| w == needle)
        {
            in_cmdline.push(e.path().display().to_string());
        }
    }
    assert!(
        in_cmdline.is_empty(),
        "token on command lines: {in_cmdline:?}"
    );
}
