//! Snapshots of the diff core's two renderings for the four shapes of a change set: nothing to
//! do, only creates, mixed updates with a masked secret, and removals.

use std::collections::BTreeMap;

use wavectl::diff::{ChangeSet, HumanDiff, Palette, diff};
use wavectl::load::{Loaded, NamedText, Request, load};
use wavectl::observed::{
    AppliedMigration, HostObserved, ObservedFile, ObservedProcess, ObservedStream, ProcessState,
    converged,
};
use wavectl::repo::WorkTree;

use crate::common::project_root;

const SECRET: &str = "tg-token-NEW-5f2a9c";
const OLD_SECRET: &str = "tg-token-OLD-77b1e0";

fn fixture() -> Loaded {
    let dir = project_root().join("tests/fixtures/diff");
    let repo = WorkTree::new(dir.clone(), "fixture/".into());
    let inventory = std::fs::read_to_string(dir.join("inventory.toml")).expect("inventory");
    let env = |name: &str| (name == "TELEGRAM_TOKEN").then(|| SECRET.to_string());
    let req = Request {
        plan_path: "plans/plan.toml",
        inventory: Some(NamedText {
            name: "inventory.toml".into(),
            text: inventory,
        }),
        secrets_file: None,
        env: &env,
        homes: &Default::default(),
        builtins: None,
    };
    load(&repo, &req).unwrap_or_else(|e| panic!("fixture plan is invalid:\n{e}"))
}

fn converged_all(loaded: &Loaded) -> BTreeMap<String, HostObserved> {
    loaded
        .desired
        .hosts
        .iter()
        .map(|(n, h)| (n.clone(), converged(h)))
        .collect()
}

fn render(
    loaded: &Loaded,
    observed: &BTreeMap<String, HostObserved>,
) -> (ChangeSet, String, String) {
    let changes = diff(&loaded.desired, observed, &loaded.secrets);
    let human = HumanDiff {
        changes: &changes,
        palette: Palette::plain(),
    }
    .to_string();
    let json = serde_json::to_string_pretty(&changes).expect("json");
    for text in [&human, &json] {
        assert!(
            !text.contains(SECRET) && !text.contains(OLD_SECRET),
            "a secret leaked:\n{text}"
        );
    }
    (changes, human, json)
}

#[test]
fn diff_of_a_converged_deployment_is_empty() {
    let loaded = fixture();
    let (changes, human, json) = render(&loaded, &converged_all(&loaded));
    assert!(changes.is_empty());
    insta::assert_snapshot!("nothing_to_do_human", human);
    insta::assert_snapshot!("nothing_to_do_json", json);
}

#[test]
fn diff_of_empty_hosts_creates_everything_in_wave_order() {
    let loaded = fixture();
    let (changes, human, json) = render(&loaded, &BTreeMap::new());
    assert!(changes.changes().all(|c| !c.is_destructive()));
    insta::assert_snapshot!("only_creates_human", human);
    insta::assert_snapshot!("only_creates_json", json);
}

#[test]
fn diff_shows_updates_with_the_secret_masked_on_both_sides() {
    let loaded = fixture();
    let mut observed = converged_all(&loaded);
    let mainpc = observed.get_mut("mainpc").expect("mainpc");
    // The host still has the env file with last month's token and log level.
    let env = mainpc
        .files
        .get_mut("files/env/nanoclaw.env")
        .expect("env file");
    let old = env
        .content
        .clone()
        .expect("content")
        .replace(SECRET, OLD_SECRET)
        .replace("'info'", "'debug'");
    *env = ObservedFile {
        sha256: wavectl::primitive::sha256_hex(old.as_bytes()),
        mode: 0o644,
        content: Some(old),
    };
    mainpc
        .processes
        .get_mut("nanoclaw")
        .expect("nanoclaw")
        .spec_hash = Some("previous".into());
    let pc2 = observed.get_mut("pc2").expect("pc2");
    // An operator edited one agent's env on the host by hand.
    let agent = pc2
        .files
        .get_mut("files/agents/ResourceManager.env")
        .expect("agent env");
    let edited = agent
        .content
        .clone()
        .expect("content")
        .replace("127.0.20.2:9000", "127.0.20.9:9000");
    *agent = ObservedFile {
        sha256: wavectl::primitive::sha256_hex(edited.as_bytes()),
        mode: 0o644,
        content: Some(edited),
    };
    pc2.processes
        .get_mut("agent-ResourceManager")
        .expect("agent")
        .spec_hash = Some("previous".into());
    pc2.processes.get_mut("gw-pc2").expect("gw").state = ProcessState::Fatal;
    pc2.streams
        .get_mut("METRICS_PC2")
        .expect("stream")
        .config
        .max_age_ms = 3_600_000;
    let (_, human, json) = render(&loaded, &observed);
    assert!(human.contains("TELEGRAM_TOKEN=********"), "{human}");
    insta::assert_snapshot!("mixed_updates_human", human);
    insta::assert_snapshot!("mixed_updates_json", json);
}

#[test]
fn diff_removes_what_left_the_plan_in_undo_order() {
    let loaded = fixture();
    let mut observed = converged_all(&loaded);
    let pc2 = observed.get_mut("pc2").expect("pc2");
    pc2.processes.insert(
        "agent-LegacyAgent".into(),
        ObservedProcess {
            state: ProcessState::Running,
            pid: Some(4242),
            uptime_s: Some(9),
            restarts: 0,
            spec_hash: Some("x".into()),
        },
    );
    pc2.files.insert(
        "files/agents/LegacyAgent.env".into(),
        ObservedFile {
            sha256: "ab".repeat(32),
            mode: 0o644,
            content: None,
        },
    );
    let mut old_stream = pc2.streams["METRICS_PC2"].clone();
    old_stream.config.name = "METRICS_OLD".into();
    pc2.streams
        .insert("METRICS_OLD".into(), ObservedStream { ..old_stream });
    let mainpc = observed.get_mut("mainpc").expect("mainpc");
    mainpc
        .databases
        .get_mut("app")
        .expect("app db")
        .push(AppliedMigration {
            id: 3,
            name: "c".into(),
            checksum: "cc".repeat(32),
            applied_at: "2026-11-01T00:00:00Z".into(),
            generation: 2,
            irreversible: false,
            down_checksum: "dd".repeat(32),
        });
    let (changes, human, json) = render(&loaded, &observed);
    assert_eq!(changes.changes().filter(|c| c.is_destructive()).count(), 4);
    insta::assert_snapshot!("removal_human", human);
    insta::assert_snapshot!("removal_json", json);
}
