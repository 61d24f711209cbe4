//! Micro-benchmarks of the pure core: `cargo bench --bench core`.
//! - load: parse, validate, expand and render the reference plan (plans/phase2.toml) for the
//!   lab inventory;
//! - diff: 20 hosts x ~100 primitives each, in sync and with one change per host.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use criterion::{Criterion, black_box, criterion_group, criterion_main};
use wavectl::diff::diff;
use wavectl::load::{Loaded, NamedText, Request, load};
use wavectl::observed::{HostObserved, converged};
use wavectl::repo::WorkTree;

fn load_plan(root: &Path, plan: &str, inventory: &str) -> Loaded {
    let repo = WorkTree::new(root.to_path_buf(), String::new());
    let env = |name: &str| (name == "TELEGRAM_TOKEN").then(|| "bench-token".to_string());
    let req = Request {
        plan_path: plan,
        inventory: Some(NamedText {
            name: "inventory.toml".into(),
            text: inventory.to_string(),
        }),
        secrets_file: None,
        env: &env,
        homes: &BTreeMap::new(),
        builtins: None,
    };
    load(&repo, &req).unwrap_or_else(|e| panic!("{plan} is invalid:\n{e}"))
}

/// An inventory of `n` hosts and a plan of 33 programs with an env each on every host: a
/// program file, an env file and the program, ~100 primitives per host.
fn many_hosts(dir: &Path, n: usize) -> (String, String) {
    let mut inv = String::new();
    for i in 1..=n {
        let _ = writeln!(
            inv,
            "[[host]]\nname = \"h{i}\"\nssh = \"u@127.0.95.{}\"\naddress = \"127.0.95.{}\"\nroot = \"/srv/wv/h{i}\"\n",
            i + 1,
            i + 1
        );
    }
    let mut plan = String::from("version = 1\nname = \"bench\"\n");
    for p in 0..33 {
        let _ = writeln!(
            plan,
            "\n[[process]]\nname = \"worker{p}\"\nhosts = \"*\"\ncommand = [\"sleep\", \"infinity\"]\nenv = {{ WORKER = \"{p}\", HOST = \"{{{{ host.name }}}}\" }}"
        );
    }
    plan.push_str("\n[[wave]]\nname = \"workers\"\nselect = [\"process.*\"]\n");
    std::fs::create_dir_all(dir.join("plans")).expect("plans dir");
    std::fs::write(dir.join("plans/bench.toml"), &plan).expect("plan");
    (plan, inv)
}

fn benches(c: &mut Criterion) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let lab = std::fs::read_to_string(root.join("inventories/lab.toml")).expect("lab inventory");
    c.bench_function("load + expand + render plans/phase2.toml", |b| {
        b.iter(|| black_box(load_plan(root, "plans/phase2.toml", &lab)))
    });

    let dir = tempfile::TempDir::new().expect("temp dir");
    let (_, inventory) = many_hosts(dir.path(), 20);
    let loaded = load_plan(dir.path(), "plans/bench.toml", &inventory);
    let primitives: usize = loaded
        .desired
        .hosts
        .values()
        .map(|h| h.files.len() + h.processes.len())
        .sum();
    eprintln!("diff benchmark: 20 hosts, {primitives} primitives");
    let in_sync: BTreeMap<String, HostObserved> = loaded
        .desired
        .hosts
        .iter()
        .map(|(n, h)| (n.clone(), converged(h)))
        .collect();
    c.bench_function("diff 20 hosts x 100 primitives, in sync", |b| {
        b.iter(|| black_box(diff(&loaded.desired, &in_sync, &loaded.secrets)))
    });
    let mut one_each = in_sync.clone();
    for h in one_each.values_mut() {
        if let Some(f) = h.files.values_mut().next() {
            f.sha256 = "0".repeat(64);
            f.content = Some("old\n".into());
        }
    }
    c.bench_function("diff 20 hosts x 100 primitives, one change each", |b| {
        b.iter(|| black_box(diff(&loaded.desired, &one_each, &loaded.secrets)))
    });
}

criterion_group!(core, benches);
criterion_main!(core);
