//! The shell around the core: connect to hosts, observe them, apply change sets, all hosts in
//! parallel; events go to whatever owns the terminal.

pub mod alerts;
pub mod apply;
pub mod decide;
pub mod doctor;
pub mod drill;
pub mod drill_probes;
pub mod events;
pub mod generations;
pub mod git;
pub mod observe;
pub mod probe;
pub mod session;
pub mod streams;

/// `user@machine` of whoever runs wavectl, for locks and generations.
pub fn operator() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .ok()
        .or_else(user_of_uid)
        .unwrap_or_else(|| "unknown".into());
    format!("{user}@{}", machine())
}

/// The login name of this process's uid, from /etc/passwd (when USER is not set, as in cron).
fn user_of_uid() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_whitespace()
        .next()?
        .to_string();
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() > 2 && f[2] == uid).then(|| f[0].to_string())
    })
}

/// Whether the apply that holds `lock` is gone: it ran on this machine and its pid is no longer
/// a wavectl process. A lock from another machine is never judged from here.
pub fn lock_is_orphaned(lock: &crate::state::Lock) -> bool {
    if lock.machine != machine() {
        return false;
    }
    match std::fs::read(format!("/proc/{}/cmdline", lock.pid)) {
        Ok(cmdline) => !String::from_utf8_lossy(&cmdline).contains("wavectl"),
        Err(_) => true,
    }
}

/// `the apply of COMMIT by USER at T was interrupted in wave W (last step: S)`, from the lock
/// and the host's last journal line.
pub fn interrupted(lock: &crate::state::Lock, last: Option<&serde_json::Value>) -> String {
    let commit: String = lock
        .commit
        .as_deref()
        .map_or("an uncommitted plan".into(), |c| {
            c.chars().take(12).collect()
        });
    let mut s = format!(
        "the apply of {commit} by {} at {} was interrupted",
        lock.operator, lock.started_at
    );
    if let Some(l) = last {
        let field = |k: &str| l.get(k).and_then(|v| v.as_str()).unwrap_or("?").to_string();
        s.push_str(&format!(
            " in wave {} (last step done: {}, generation {})",
            field("wave"),
            field("step"),
            l.get("generation").map_or("?".into(), |g| g.to_string())
        ));
    }
    s
}

pub fn machine() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

/// A journal entry for a step decided on the operator's side: when, who, what.
pub fn journal_entry(step: String) -> serde_json::Value {
    serde_json::json!({ "ts": now_rfc3339(), "operator": operator(), "step": step, "result": "ok" })
}

pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

/// The change set for the hosts that answered, with each host's blocking problems added:
/// missing programs (with the package to install) and unreadable states.
pub fn changes_for(
    loaded: &crate::load::Loaded,
    observed: &[observe::Observed],
) -> crate::diff::ChangeSet {
    let map = observe::observed_map(observed);
    let mut changes = crate::diff::diff(&loaded.desired, &map, &loaded.secrets);
    changes.hosts.retain(|h| map.contains_key(&h.host));
    for o in observed {
        if let Err(e) = &o.report {
            changes.unreachable.push(crate::diff::Unreachable {
                host: o.host.clone(),
                error: e.to_string(),
                hint: e.hint(),
            });
        }
    }
    for h in &mut changes.hosts {
        let Some(Ok(report)) = observed
            .iter()
            .find(|o| o.host == h.host)
            .map(|o| &o.report)
        else {
            continue;
        };
        for p in &report.missing_programs {
            let how = match crate::backend::install_command(p) {
                Some(cmd) => cmd,
                None => {
                    "put it on the host's PATH (wavectl does not know which package provides it)"
                        .to_string()
                }
            };
            h.problems.push(format!(
                "program `{p}` is not installed on {}; install it: {how}",
                h.host
            ));
        }
        h.problems.extend(report.database_problems.iter().cloned());
    }
    changes
}
