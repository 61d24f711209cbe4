//! The `local` transport: a host that is a directory on this machine goes through the same
//! observe, apply and status code as an SSH host.

use crate::common::{Repo, StopSupervisord};

#[test]
fn a_local_host_is_applied_and_observed_like_a_remote_one() {
    let roots = tempfile::tempdir().expect("temp");
    let root = roots.path().join("local-root");
    let _stop = StopSupervisord(root.clone());
    let inventory = format!(
        "[[host]]\nname = \"here\"\ntransport = \"local\"\naddress = \"127.0.70.2\"\nroot = \"{}\"\n",
        root.display()
    );
    let plan = "version = 1\nname = \"local\"\n\n[[process]]\nname = \"worker\"\nhost = \"here\"\ncommand = [\"sleep\", \"infinity\"]\nenv = { MODE = \"local\" }\n";
    let repo = Repo::with_plan(plan)
        .file("inventories/lab.toml", &inventory)
        .commit("local plan");
    assert_eq!(repo.run(&["diff", "plans/p.toml"]).code, 2);
    let apply = repo.run(&["apply", "--yes", "plans/p.toml"]);
    assert_eq!(apply.code, 0, "{}{}", apply.stdout, apply.stderr);
    assert!(
        std::fs::read_to_string(root.join("files/env/worker.env"))
            .expect("env file")
            .contains("MODE='local'")
    );
    let status = repo.run(&["status", "plans/p.toml"]);
    assert!(
        status.stdout.contains("here: reachable, generation 1"),
        "{}",
        status.stdout
    );
    assert!(
        status
            .stdout
            .lines()
            .any(|l| l.trim_start().starts_with("worker") && l.contains("RUNNING")),
        "{}",
        status.stdout
    );
    assert_eq!(repo.run(&["diff", "plans/p.toml"]).code, 0);
}
