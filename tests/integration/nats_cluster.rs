//! The clustered NATS topology: three servers rendered from a plan form a JetStream cluster
//! (real nats-servers on 127.0.31.x), and a stream with 3 replicas is created from the plan's
//! config and placed on all three.

use std::path::Path;

use wavectl::load::{NamedText, Request, load};
use wavectl::repo::WorkTree;

use crate::render_tools::{http_get, start_nats, wait_for};

const PLAN: &str = r#"version = 1
name = "cluster"

[[nats]]
name = "n1"
host = "a"
port = 4222
monitor_port = 8222
cluster = "obs"
cluster_port = 6222

[[nats]]
name = "n2"
host = "b"
port = 4222
monitor_port = 8222
cluster = "obs"
cluster_port = 6222

[[nats]]
name = "n3"
host = "c"
port = 4222
monitor_port = 8222
cluster = "obs"
cluster_port = 6222

[[stream]]
name = "EVENTS"
server = "n1"
subjects = ["events.>"]
replicas = 3
max_age = "1h"
"#;

#[test]
fn three_rendered_servers_form_a_jetstream_cluster_holding_a_replicated_stream() {
    let dir = tempfile::tempdir().expect("temp");
    let mut inventory = String::new();
    for (i, h) in ["a", "b", "c"].iter().enumerate() {
        inventory.push_str(&format!("[[host]]\nname = \"{h}\"\nssh = \"{h}\"\naddress = \"127.0.31.{}\"\nroot = \"{}/{h}\"\n\n", i + 2, dir.path().display()));
    }
    let repo_dir = tempfile::tempdir().expect("temp");
    std::fs::create_dir_all(repo_dir.path().join("plans")).expect("mkdir");
    std::fs::write(repo_dir.path().join("plans/p.toml"), PLAN).expect("plan");
    let repo = WorkTree::new(repo_dir.path().to_path_buf(), String::new());
    let env = |_: &str| None;
    let req = Request {
        plan_path: "plans/p.toml",
        inventory: Some(NamedText {
            name: "inventory.toml".into(),
            text: inventory,
        }),
        secrets_file: None,
        env: &env,
        homes: &Default::default(),
        builtins: None,
    };
    let loaded = load(&repo, &req).unwrap_or_else(|e| panic!("{e}"));
    let mut servers = Vec::new();
    for (host, desired) in &loaded.desired.hosts {
        for f in &desired.files {
            let path = Path::new(&desired.root).join(&f.path);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(&path, &f.content).expect("write");
        }
        let name = match host.as_str() {
            "a" => "n1",
            "b" => "n2",
            _ => "n3",
        };
        let conf = Path::new(&desired.root).join(format!("files/nats/{name}.conf"));
        servers.push(start_nats(&conf, &dir.path().join(format!("{name}.log"))));
    }
    for i in 2..=4 {
        let monitor = format!("127.0.31.{i}:8222");
        wait_for(&format!("{monitor} JetStream healthy"), || {
            http_get(&monitor, "/healthz?js-enabled-only=true").is_some_and(|r| r.contains(" 200 "))
        });
        wait_for(&format!("{monitor} routes to both peers"), || {
            http_get(&monitor, "/routez").is_some_and(|r| r.contains("\"num_routes\": 2"))
        });
    }
    // The stream as the plan configures it, created through the JetStream API.
    let spec = loaded.desired.hosts["a"].streams[0].config.clone();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let (replicas, peers) = rt.block_on(async {
        let client = async_nats::connect("127.0.31.2:4222")
            .await
            .expect("connect n1");
        let js = async_nats::jetstream::new(client);
        let mut last = None;
        for _ in 0..50 {
            // The cluster elects its meta leader a moment after the routes come up.
            match js
                .create_stream(wavectl::backend::nats::to_api(&spec))
                .await
            {
                Ok(_) => {
                    last = None;
                    break;
                }
                Err(e) => last = Some(e.to_string()),
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
        assert!(last.is_none(), "stream not created: {last:?}");
        let mut stream = js.get_stream("EVENTS").await.expect("stream");
        let info = stream.info().await.expect("info");
        let cluster = info.cluster.clone().expect("cluster info");
        (info.config.num_replicas, 1 + cluster.replicas.len())
    });
    assert_eq!(replicas, 3);
    assert_eq!(peers, 3, "the leader and two replicas");
    drop(servers);
}
