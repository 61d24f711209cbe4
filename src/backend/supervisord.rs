//! supervisord: the commands wavectl runs through `supervisorctl`, and parsing its status.

use crate::observed::ProcessState;

/// The per-root supervisord config, relative to the root.
pub const CONF: &str = "files/supervisor/supervisord.conf";
pub const PIDFILE: &str = "run/supervisord.pid";

/// One line of `supervisorctl status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusLine {
    pub name: String,
    pub state: ProcessState,
    pub pid: Option<u32>,
    pub uptime_s: Option<u64>,
}

/// Parses `name  RUNNING   pid 123, uptime 1 day, 0:00:12` and the other states' lines.
pub fn parse_status_line(line: &str) -> Option<StatusLine> {
    let mut words = line.split_whitespace();
    let name = words.next()?.to_string();
    let state = match words.next()? {
        "RUNNING" => ProcessState::Running,
        "STARTING" => ProcessState::Starting,
        "BACKOFF" => ProcessState::Backoff,
        "STOPPING" => ProcessState::Stopping,
        "STOPPED" => ProcessState::Stopped,
        "EXITED" => ProcessState::Exited,
        "FATAL" => ProcessState::Fatal,
        _ => ProcessState::Unknown,
    };
    let rest: Vec<&str> = words.collect();
    let rest = rest.join(" ");
    let pid = rest
        .strip_prefix("pid ")
        .and_then(|r| r.split(',').next())
        .and_then(|p| p.trim().parse().ok());
    let uptime_s = rest
        .split_once("uptime ")
        .and_then(|(_, u)| parse_uptime(u));
    Some(StatusLine {
        name,
        state,
        pid,
        uptime_s,
    })
}

/// `0:00:12`, `1 day, 2:03:04`, `3 days, 0:00:01`.
fn parse_uptime(text: &str) -> Option<u64> {
    let (days, clock) = match text.split_once(',') {
        Some((d, c)) => (d.split_whitespace().next()?.parse::<u64>().ok()?, c.trim()),
        None => (0, text.trim()),
    };
    let parts: Vec<u64> = clock
        .split(':')
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    let [h, m, s] = parts[..] else { return None };
    Some(days * 86_400 + h * 3600 + m * 60 + s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines_of_each_shape_parse() {
        let l = parse_status_line(
            "agent-ResourceManager            RUNNING   pid 4711, uptime 1 day, 2:03:04",
        )
        .unwrap();
        assert_eq!(
            (l.name.as_str(), l.state, l.pid, l.uptime_s),
            (
                "agent-ResourceManager",
                ProcessState::Running,
                Some(4711),
                Some(93_784)
            )
        );
        let l =
            parse_status_line("edge   FATAL     Exited too quickly (process log may have details)")
                .unwrap();
        assert_eq!(
            (l.state, l.pid, l.uptime_s),
            (ProcessState::Fatal, None, None)
        );
        let l = parse_status_line("oracle STOPPED   Nov 23 04:00 PM").unwrap();
        assert_eq!(l.state, ProcessState::Stopped);
    }
}
