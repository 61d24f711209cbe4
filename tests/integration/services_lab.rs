//! The services themselves, deployed on real machines: Prometheus hubs (edge remote-writing to
//! central), Pushgateways, NATS JetStream with one domain per machine joined by a leafnode, the
//! streams and their cross-machine aggregates, and a pilot batch of agents, all in waves with
//! gates. Besides wavectl's own view, the tests ask the services directly (HTTP from here, the
//! JetStream API through async-nats). Each test has its own lab network (127.0.5x).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use async_nats::jetstream::{self, publish::PublishAck, stream::Info};
use futures::TryStreamExt;
use serde_json::Value;

use crate::common::{Repo, Run, json, pid_of};
use crate::lab::Lab;

const DAY: Duration = Duration::from_secs(24 * 3600);

/// The test plan for a lab on 127.0.`net`: the reference plan's services, small and fast
/// (1 s scrapes, a 1 s heartbeat). `metrics_pc2_age` is METRICS_PC2's max_age; `extra` is
/// appended as is (more resources and their wave).
fn plan(net: u8, metrics_pc2_age: &str, extra: &str) -> String {
    format!(
        r#"version = 1
name = "services-lab"

[[pushgateway]]
name = "pushgateway-mainpc"
host = "mainpc"
port = 9091

[[pushgateway]]
name = "pushgateway-pc2"
host = "pc2"
port = 9091

[[hub]]
name = "central"
host = "mainpc"
port = 9000
scrape_interval = "1s"
retention = "2h"

[[hub]]
name = "edge"
host = "pc2"
port = 9100
scrape_interval = "1s"
retention = "2h"
remote_write = ["central"]

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

[[stream]]
name = "METRICS_MAINPC"
server = "nats-mainpc"
subjects = ["observability.metrics.mainpc"]
max_age = "24h"

[[stream]]
name = "METRICS_PC2"
server = "nats-pc2"
subjects = ["observability.metrics.pc2"]
max_age = "{metrics_pc2_age}"

[[stream]]
name = "HEALTH_CLUSTER"
server = "nats-mainpc"
subjects = ["observability.health.cluster"]
max_age = "24h"

[[stream]]
name = "ALERTS_URGENT"
server = "nats-mainpc"
subjects = ["observability.alerts.urgent"]
max_age = "24h"

[[stream]]
name = "METRICS_ALL_MAINPC"
server = "nats-mainpc"
max_age = "24h"
sources = [{{ stream = "METRICS_MAINPC" }}, {{ stream = "METRICS_PC2" }}]

[[stream]]
name = "METRICS_ALL_PC2"
server = "nats-pc2"
max_age = "24h"
sources = [{{ stream = "METRICS_PC2" }}, {{ stream = "METRICS_MAINPC" }}]

[[batch]]
name = "pilot"
host = "pc2"
agents = ["ObservabilityHub", "ResourceManager", "UnifiedUtilsAgent"]
primary_hub = "edge"
fallback_hub = "central"
heartbeat_interval = "1s"

[[wave]]
name = "gateways-and-hubs"
select = ["pushgateway.*", "hub.*"]
max_parallel = 2
[[wave.gate]]
http = {{ host = "mainpc", url = "http://127.0.{net}.2:9091/-/ready" }}
timeout = "30s"
interval = "500ms"
[[wave.gate]]
http = {{ host = "pc2", url = "http://127.0.{net}.3:9091/-/ready" }}
timeout = "30s"
interval = "500ms"
[[wave.gate]]
http = {{ host = "mainpc", url = "http://127.0.{net}.2:9000/-/ready" }}
timeout = "30s"
interval = "500ms"
[[wave.gate]]
http = {{ host = "pc2", url = "http://127.0.{net}.3:9100/-/ready" }}
timeout = "30s"
interval = "500ms"

[[wave]]
name = "nats"
select = ["nats.*", "stream.*"]
max_parallel = 2
[[wave.gate]]
nats_stream = {{ stream = "METRICS_ALL_MAINPC" }}
timeout = "30s"
interval = "500ms"
[[wave.gate]]
nats_stream = {{ stream = "METRICS_ALL_PC2" }}
timeout = "30s"
interval = "500ms"

[[wave]]
name = "pilot"
select = ["batch.pilot"]
[[wave.gate]]
prom_query = {{ hub = "edge", expr = 'agent_heartbeat{{batch="pilot"}}', min = 3 }}
timeout = "60s"
interval = "1s"
[[wave.gate]]
prom_query = {{ hub = "central", expr = 'agent_heartbeat{{batch="pilot",hub="edge"}}', min = 3 }}
timeout = "60s"
interval = "1s"
{extra}"#
    )
}

fn repo(lab: &Lab, text: &str) -> Repo {
    Repo::with_plan(text)
        .commit("plan")
        .with_inventory(lab.inventory())
}

fn apply(repo: &Repo) -> Run {
    let start = Instant::now();
    let run = repo.run(&["apply", "--yes", "plans/p.toml"]);
    assert_eq!(
        run.code, 0,
        "apply failed:\nstdout:\n{}\nstderr:\n{}",
        run.stdout, run.stderr
    );
    eprintln!("apply took {:?}", start.elapsed());
    run
}

fn assert_in_sync(repo: &Repo) {
    let diff = repo.run(&["diff", "plans/p.toml"]);
    assert_eq!(
        diff.code, 0,
        "not in sync:\nstdout:\n{}\nstderr:\n{}",
        diff.stdout, diff.stderr
    );
}

/// A lab on 127.0.`net` with the test plan applied.
fn deployed(net: u8) -> (Lab, Repo) {
    let lab = Lab::up(net, 2);
    let repo = repo(&lab, &plan(net, "24h", ""));
    apply(&repo);
    (lab, repo)
}

/// `(status, body)` of one HTTP/1.0 request, or `None` when nothing answers.
fn http(addr: &str, method: &str, path: &str, body: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr.parse().ok()?, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let code = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((code, body.to_string()))
}

/// Percent-encodes a query parameter.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Every service answers ready over HTTP (asked from here), and `status` finds both hosts
/// reachable without drift, every process running and every probe passed; the names of the
/// probes per host.
fn ready_and_green(
    repo: &Repo,
    mainpc: &str,
    pc2: &str,
) -> Result<BTreeMap<String, Vec<String>>, String> {
    for (addr, path) in [
        (format!("{mainpc}:9000"), "/-/ready"),
        (format!("{pc2}:9100"), "/-/ready"),
        (format!("{mainpc}:9091"), "/-/ready"),
        (format!("{pc2}:9091"), "/-/ready"),
        (format!("{mainpc}:8222"), "/healthz?js-enabled-only=true"),
        (format!("{pc2}:8223"), "/healthz?js-enabled-only=true"),
    ] {
        let answer = http(&addr, "GET", path, "");
        if answer.as_ref().map(|a| a.0) != Some(200) {
            return Err(format!("http://{addr}{path}: {answer:?}"));
        }
    }
    let status = repo.run(&["status", "-o", "json", "plans/p.toml"]);
    if status.code != 0 {
        return Err(format!(
            "status exit {}: {}{}",
            status.code, status.stdout, status.stderr
        ));
    }
    let doc = json(&status);
    let mut probes: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for h in doc["hosts"].as_array().expect("hosts") {
        let host = h["host"].as_str().expect("host").to_string();
        if h["reachable"] != true || h["drift"] != false {
            return Err(format!("{host}: {h}"));
        }
        for p in h["probes"].as_array().expect("probes") {
            if p["passed"] != true {
                return Err(format!("{host}: probe not passed: {p}"));
            }
            probes
                .entry(host.clone())
                .or_default()
                .push(p["name"].as_str().expect("name").to_string());
        }
        for p in h["processes"].as_array().expect("processes") {
            if p["state"] != "RUNNING" {
                return Err(format!("{host}: process not running: {p}"));
            }
        }
    }
    Ok(probes)
}

// --- JetStream, straight to the servers' client ports -----------------------------------

/// A JetStream context on `addr` once the server answers JetStream requests (it may have just
/// been started).
async fn js(addr: &str) -> jetstream::Context {
    let start = Instant::now();
    let mut last = String::new();
    while start.elapsed() < Duration::from_secs(20) {
        match async_nats::ConnectOptions::new()
            .connection_timeout(Duration::from_secs(2))
            .connect(addr)
            .await
        {
            Ok(client) => {
                let js = jetstream::new(client);
                match js.stream_names().try_next().await {
                    Ok(_) => return js,
                    Err(e) => last = e.to_string(),
                }
            }
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("JetStream on {addr} not ready after 20 s: {last}");
}

/// A stream's info, or `None` when the server does not have it.
async fn info(js: &jetstream::Context, name: &str) -> Option<Info> {
    let stream = js.get_stream(name).await.ok()?;
    Some(stream.get_info().await.expect("stream info"))
}

/// Publishes `id` (as payload and as `Nats-Msg-Id`, unique across machines) and waits for its
/// ack.
async fn publish(js: &jetstream::Context, subject: &str, id: &str) -> PublishAck {
    let mut headers = HeaderMap::new();
    headers.insert("Nats-Msg-Id", id);
    js.publish_with_headers(subject.to_string(), headers, id.to_string().into())
        .await
        .unwrap_or_else(|e| panic!("publish {id} on {subject}: {e}"))
        .await
        .unwrap_or_else(|e| panic!("ack of {id} on {subject}: {e}"))
}

/// Publishes `ids` on `subject`; every one is acked by `stream` in `domain`, once.
async fn publish_all(
    js: &jetstream::Context,
    subject: &str,
    stream: &str,
    domain: &str,
    ids: &[String],
) {
    for id in ids {
        let ack = publish(js, subject, id).await;
        assert_eq!(
            (ack.stream.as_str(), ack.domain.as_str(), ack.duplicate),
            (stream, domain, false),
            "ack of {id}"
        );
    }
}

/// Every message of a stream as `(subject, payload)`, in sequence order.
async fn messages(js: &jetstream::Context, name: &str) -> Vec<(String, String)> {
    let stream = js.get_stream(name).await.expect("stream");
    let state = stream.get_info().await.expect("info").state;
    let mut out = Vec::new();
    if state.messages == 0 {
        return out;
    }
    for seq in state.first_sequence..=state.last_sequence {
        let m = stream
            .get_raw_message(seq)
            .await
            .unwrap_or_else(|e| panic!("{name} message {seq}: {e}"));
        out.push((
            m.subject.to_string(),
            String::from_utf8_lossy(&m.payload).into_owned(),
        ));
    }
    out
}

/// Waits until stream `name` holds `want` messages; returns how long it took.
async fn wait_for_count(
    js: &jetstream::Context,
    name: &str,
    want: u64,
    within: Duration,
) -> Duration {
    let start = Instant::now();
    loop {
        let have = info(js, name).await.map_or(0, |i| i.state.messages);
        if have == want {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < within,
            "{name} holds {have} messages after {within:?}, expected {want}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn ids(prefix: &str, n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("{prefix}-{i:03}")).collect()
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Runtime::new().expect("tokio runtime")
}

// --- The tests ------------------------------------------------------------------------------

#[test]
fn apply_brings_up_every_service_ready_with_its_streams_and_every_probe_green() {
    let net = 50;
    let start = Instant::now();
    let (_lab, repo) = deployed(net);
    let mainpc = format!("127.0.{net}.2");
    let pc2 = format!("127.0.{net}.3");

    // Apply waited for every wave's gate: right after it, everything is ready and green.
    let mut probes =
        ready_and_green(&repo, &mainpc, &pc2).unwrap_or_else(|e| panic!("right after apply: {e}"));
    for list in probes.values_mut() {
        list.sort();
    }
    let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(
        probes,
        BTreeMap::from([
            (
                "mainpc".to_string(),
                strings(&[
                    "gateways-and-hubs gate 1",
                    "gateways-and-hubs gate 3",
                    "hub central ready",
                    "nats gate 1",
                    "nats nats-mainpc healthy",
                    "pilot gate 2",
                    "pushgateway pushgateway-mainpc ready",
                ])
            ),
            (
                "pc2".to_string(),
                strings(&[
                    "gateways-and-hubs gate 2",
                    "gateways-and-hubs gate 4",
                    "hub edge ready",
                    "nats gate 2",
                    "nats nats-pc2 healthy",
                    "pilot gate 1",
                    "pushgateway pushgateway-pc2 ready",
                ])
            ),
        ])
    );

    // The streams, asked of each server: the planned config, on the planned server only.
    rt().block_on(async {
        let on_mainpc = js(&format!("{mainpc}:4222")).await;
        let on_pc2 = js(&format!("{pc2}:4223")).await;
        for (name, subject, home, other) in [
            (
                "METRICS_MAINPC",
                "observability.metrics.mainpc",
                &on_mainpc,
                &on_pc2,
            ),
            (
                "METRICS_PC2",
                "observability.metrics.pc2",
                &on_pc2,
                &on_mainpc,
            ),
            (
                "HEALTH_CLUSTER",
                "observability.health.cluster",
                &on_mainpc,
                &on_pc2,
            ),
            (
                "ALERTS_URGENT",
                "observability.alerts.urgent",
                &on_mainpc,
                &on_pc2,
            ),
        ] {
            let i = info(home, name)
                .await
                .unwrap_or_else(|| panic!("{name} missing on its server"));
            assert_eq!(i.config.subjects, vec![subject.to_string()], "{name}");
            assert_eq!(i.config.max_age, DAY, "{name}");
            assert!(
                i.config.sources.as_ref().is_none_or(Vec::is_empty),
                "{name}"
            );
            assert!(
                info(other, name).await.is_none(),
                "{name} on the wrong server"
            );
        }
        // The servers asked above are the planned ones, each in its own JetStream domain.
        for (js, name, domain) in [
            (&on_mainpc, "nats-mainpc", "mainpc"),
            (&on_pc2, "nats-pc2", "pc2"),
        ] {
            let server = js.client().server_info();
            assert_eq!(
                (server.server_name.as_str(), server.domain.as_deref()),
                (name, Some(domain))
            );
        }
        // The aggregates: no subjects, the local stream plus the other domain's.
        for (name, js, local, remote, api) in [
            (
                "METRICS_ALL_MAINPC",
                &on_mainpc,
                "METRICS_MAINPC",
                "METRICS_PC2",
                "$JS.pc2.API",
            ),
            (
                "METRICS_ALL_PC2",
                &on_pc2,
                "METRICS_PC2",
                "METRICS_MAINPC",
                "$JS.mainpc.API",
            ),
        ] {
            let i = info(js, name).await.expect("aggregate stream");
            assert!(
                i.config.subjects.is_empty(),
                "{name}: {:?}",
                i.config.subjects
            );
            assert_eq!(i.config.max_age, DAY, "{name}");
            let mut sources: Vec<(String, Option<String>)> = i
                .config
                .sources
                .clone()
                .unwrap_or_default()
                .into_iter()
                .map(|s| (s.name, s.external.map(|e| e.api_prefix)))
                .collect();
            sources.sort();
            let mut want = vec![
                (local.to_string(), None),
                (remote.to_string(), Some(api.to_string())),
            ];
            want.sort();
            assert_eq!(sources, want, "{name}");
        }
    });

    assert_in_sync(&repo);
    eprintln!(
        "test body took {:?} (lab teardown follows)",
        start.elapsed()
    );
}

#[test]
fn a_metric_pushed_on_pc2_reaches_the_central_hub_through_the_edge_hubs_remote_write() {
    let net = 51;
    let start = Instant::now();
    let (_lab, _repo) = deployed(net);
    let pushed = http(
        &format!("127.0.{net}.3:9091"),
        "POST",
        "/metrics/job/wavectl_test",
        "wavectl_e2e_probe 42\n",
    );
    assert!(
        matches!(pushed, Some((200, _))),
        "push to pc2's Pushgateway: {pushed:?}"
    );
    let pushed_at = Instant::now();
    let path = format!(
        "/api/v1/query?query={}",
        encode(r#"wavectl_e2e_probe{hub="edge"}"#)
    );
    let central = format!("127.0.{net}.2:9000");
    let series = loop {
        let answer = http(&central, "GET", &path, "");
        let doc: Option<Value> = answer
            .as_ref()
            .and_then(|(_, body)| serde_json::from_str(body).ok());
        if let Some(doc) = &doc {
            assert_eq!(doc["status"], "success", "{doc}");
            let result = doc["data"]["result"].as_array().expect("result");
            if !result.is_empty() {
                break result.clone();
            }
        }
        assert!(
            pushed_at.elapsed() < Duration::from_secs(60),
            "central has no wavectl_e2e_probe{{hub=\"edge\"}} 60 s after the push; last answer: {answer:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    eprintln!("on central after {:?}", pushed_at.elapsed());
    assert_eq!(series.len(), 1, "{series:?}");
    let s = &series[0];
    assert_eq!(s["value"][1], "42", "{s}");
    assert_eq!(s["metric"]["job"], "wavectl_test", "{s}");
    assert_eq!(s["metric"]["source_host"], "pc2", "{s}");
    assert_eq!(s["metric"]["__name__"], "wavectl_e2e_probe", "{s}");
    eprintln!(
        "test body took {:?} (lab teardown follows)",
        start.elapsed()
    );
}

/// Starts the nats servers again when the test ends, pass or fail.
struct StartAgain<'a> {
    lab: &'a Lab,
}

impl StartAgain<'_> {
    fn supervisorctl(&self, host: &str, action: &str, program: &str) -> String {
        self.lab.ssh(
            host,
            &format!(
                "supervisorctl -c {}/files/supervisor/supervisord.conf {action} {program}",
                self.lab.root(host).display()
            ),
        )
    }
}

impl Drop for StartAgain<'_> {
    fn drop(&mut self) {
        self.supervisorctl("mainpc", "start", "nats-mainpc");
        self.supervisorctl("pc2", "start", "nats-pc2");
    }
}

#[test]
fn jetstream_keeps_accepting_on_either_machine_alone_and_catches_up_without_loss_or_duplicates() {
    let net = 52;
    let start = Instant::now();
    let (lab, _repo) = deployed(net);
    let ctl = StartAgain { lab: &lab };
    let mainpc = format!("127.0.{net}.2:4222");
    let pc2 = format!("127.0.{net}.3:4223");
    let pc2_first = ids("pc2-a", 20);
    let mainpc_alone = ids("mainpc-b", 10);
    let pc2_alone = ids("pc2-c", 100);
    rt().block_on(async {
        // Both up: pc2's messages reach mainpc's aggregate.
        {
            let on_pc2 = js(&pc2).await;
            publish_all(
                &on_pc2,
                "observability.metrics.pc2",
                "METRICS_PC2",
                "pc2",
                &pc2_first,
            )
            .await;
            let on_mainpc = js(&mainpc).await;
            let took = wait_for_count(
                &on_mainpc,
                "METRICS_ALL_MAINPC",
                20,
                Duration::from_secs(15),
            )
            .await;
            eprintln!("20 pc2 messages on mainpc after {took:?}");
        }

        // pc2's server down: mainpc still acks its own subject.
        let out = ctl.supervisorctl("pc2", "stop", "nats-pc2");
        assert!(out.contains("nats-pc2: stopped"), "{out}");
        {
            let on_mainpc = js(&mainpc).await;
            publish_all(
                &on_mainpc,
                "observability.metrics.mainpc",
                "METRICS_MAINPC",
                "mainpc",
                &mainpc_alone,
            )
            .await;
        }

        // mainpc's server down, pc2's back: pc2 acks and keeps them.
        let out = ctl.supervisorctl("mainpc", "stop", "nats-mainpc");
        assert!(out.contains("nats-mainpc: stopped"), "{out}");
        let out = ctl.supervisorctl("pc2", "start", "nats-pc2");
        assert!(out.contains("nats-pc2: started"), "{out}");
        {
            let on_pc2 = js(&pc2).await;
            publish_all(
                &on_pc2,
                "observability.metrics.pc2",
                "METRICS_PC2",
                "pc2",
                &pc2_alone,
            )
            .await;
            let stored = info(&on_pc2, "METRICS_PC2").await.expect("METRICS_PC2");
            assert_eq!(stored.state.messages, 120);
        }

        // mainpc back: its aggregate catches up with everything, once.
        let out = ctl.supervisorctl("mainpc", "start", "nats-mainpc");
        assert!(out.contains("nats-mainpc: started"), "{out}");
        let back = Instant::now();
        let on_mainpc = js(&mainpc).await;
        let on_pc2 = js(&pc2).await;
        let want_total = (pc2_first.len() + mainpc_alone.len() + pc2_alone.len()) as u64;
        wait_for_count(
            &on_mainpc,
            "METRICS_ALL_MAINPC",
            want_total,
            Duration::from_secs(15),
        )
        .await;
        eprintln!(
            "METRICS_ALL_MAINPC complete {:?} after mainpc's return",
            back.elapsed()
        );
        wait_for_count(
            &on_pc2,
            "METRICS_ALL_PC2",
            want_total,
            Duration::from_secs(15),
        )
        .await;
        eprintln!(
            "METRICS_ALL_PC2 complete {:?} after mainpc's return",
            back.elapsed()
        );
        // Nothing more arrives late (a duplicate would).
        tokio::time::sleep(Duration::from_secs(2)).await;

        let mut want: Vec<(String, String)> = pc2_first
            .iter()
            .chain(&pc2_alone)
            .map(|id| ("observability.metrics.pc2".to_string(), id.clone()))
            .chain(
                mainpc_alone
                    .iter()
                    .map(|id| ("observability.metrics.mainpc".to_string(), id.clone())),
            )
            .collect();
        want.sort();
        for (js, name) in [
            (&on_mainpc, "METRICS_ALL_MAINPC"),
            (&on_pc2, "METRICS_ALL_PC2"),
        ] {
            let mut have = messages(js, name).await;
            have.sort();
            assert_eq!(have.len(), want.len(), "{name}: {have:?}");
            assert_eq!(have, want, "{name}");
        }
        // The local streams hold exactly their own machine's messages.
        assert_eq!(
            info(&on_mainpc, "METRICS_MAINPC")
                .await
                .expect("stream")
                .state
                .messages,
            10
        );
        assert_eq!(
            info(&on_pc2, "METRICS_PC2")
                .await
                .expect("stream")
                .state
                .messages,
            120
        );
    });
    drop(ctl);
    eprintln!(
        "test body took {:?} (lab teardown follows)",
        start.elapsed()
    );
}

#[test]
fn a_longer_max_age_updates_the_stream_in_place_keeping_its_messages() {
    let net = 53;
    let start = Instant::now();
    let (_lab, repo) = deployed(net);
    let pc2 = format!("127.0.{net}.3:4223");
    let runtime = rt();
    let before = runtime.block_on(async {
        let on_pc2 = js(&pc2).await;
        publish_all(
            &on_pc2,
            "observability.metrics.pc2",
            "METRICS_PC2",
            "pc2",
            &ids("age", 5),
        )
        .await;
        info(&on_pc2, "METRICS_PC2").await.expect("METRICS_PC2")
    });
    assert_eq!(before.state.messages, 5);
    assert_eq!(before.config.max_age, DAY);
    let server_pid = pid_of(&repo, "pc2", "nats-pc2").expect("nats-pc2 running");

    let repo = repo
        .file("plans/p.toml", &plan(net, "48h", ""))
        .commit("keep pc2 metrics for two days");
    let diff = repo.run(&["diff", "plans/p.toml"]);
    assert_eq!(diff.code, 2, "{}{}", diff.stdout, diff.stderr);
    assert!(
        diff.stdout
            .contains("\n    ~ stream METRICS_PC2 on nats-pc2: update max_age 24h -> 48h\n"),
        "{}",
        diff.stdout
    );
    let doc = json(&repo.run(&["diff", "-o", "json", "plans/p.toml"]));
    let changes: Vec<Value> = doc["hosts"]
        .as_array()
        .expect("hosts")
        .iter()
        .flat_map(|h| {
            let waves = h["waves"].as_array().cloned().unwrap_or_default();
            let removals = h["removals"].as_array().cloned().unwrap_or_default();
            waves
                .into_iter()
                .flat_map(|w| w["changes"].as_array().cloned().unwrap_or_default())
                .chain(removals)
        })
        .collect();
    assert_eq!(
        changes,
        vec![serde_json::json!({
            "kind": "stream", "server": "nats-pc2", "name": "METRICS_PC2", "action": "update",
            "fields": [{ "field": "max_age", "before": "24h", "after": "48h" }]
        })],
        "exactly one change: {doc}"
    );

    apply(&repo);
    let after = runtime.block_on(async {
        let on_pc2 = js(&pc2).await;
        info(&on_pc2, "METRICS_PC2").await.expect("METRICS_PC2")
    });
    assert_eq!(after.config.max_age, 2 * DAY);
    assert_eq!(after.state.messages, 5, "the messages were kept");
    assert_eq!(
        after.created, before.created,
        "the stream was updated, not recreated"
    );
    assert_eq!(after.config.subjects, before.config.subjects);
    assert_eq!(
        pid_of(&repo, "pc2", "nats-pc2"),
        Some(server_pid),
        "the server was not restarted"
    );
    assert_in_sync(&repo);
    eprintln!(
        "test body took {:?} (lab teardown follows)",
        start.elapsed()
    );
}

#[test]
fn a_program_missing_on_a_host_is_named_with_its_install_command_and_nothing_is_applied() {
    let net = 54;
    let start = Instant::now();
    let lab = Lab::up(net, 2);
    let extra = r#"
[[process]]
name = "needs-missing"
host = "pc2"
command = ["wavectl-no-such-program", "x"]

[[wave]]
name = "apps"
select = ["process.*"]
"#;
    let repo = repo(&lab, &plan(net, "24h", extra));
    let problem = "program `wavectl-no-such-program` is not installed on pc2; install it: put it on the host's PATH (wavectl does not know which package provides it)";

    let diff = repo.run(&["diff", "plans/p.toml"]);
    assert_eq!(diff.code, 1, "{}{}", diff.stdout, diff.stderr);
    assert!(
        diff.stdout.contains(&format!("pc2\n  problem: {problem}")),
        "{}",
        diff.stdout
    );
    let doc = json(&repo.run(&["diff", "-o", "json", "plans/p.toml"]));
    let problems: Vec<Value> = doc["hosts"]
        .as_array()
        .expect("hosts")
        .iter()
        .flat_map(|h| h["problems"].as_array().cloned().unwrap_or_default())
        .collect();
    assert_eq!(problems.len(), 1, "{doc}");
    assert!(
        problems[0].as_str().is_some_and(|p| p.starts_with(problem)),
        "{doc}"
    );

    let run = repo.run(&["apply", "--yes", "plans/p.toml"]);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert!(run.stdout.contains(problem), "{}", run.stdout);
    assert!(
        run.stderr
            .contains("problems above stop the apply before anything runs"),
        "{}",
        run.stderr
    );
    // Nothing was written on either host: no generation, no files, no lock left behind.
    for host in ["pc2", "mainpc"] {
        let root = lab.root(host);
        for f in ["state.json", "files", "lock", "journal.jsonl"] {
            assert!(
                !root.join(f).exists(),
                "{host}: {} exists after a refused apply",
                root.join(f).display()
            );
        }
    }
    eprintln!(
        "test body took {:?} (lab teardown follows)",
        start.elapsed()
    );
}
