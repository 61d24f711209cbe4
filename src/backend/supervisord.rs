//! supervisord: the commands wavectl runs through `supervisorctl`, and parsing its status.

use crate::observed::ProcessState;

/// The per-root supervisord config, relative to the root.
pub const CONF: &str = "files/supervisor/supervisord.conf";
pub const PIDFILE: &str = "run/supervisord.pid";

/// A program's `command=` value: each argument one word for supervisord's shlex split,
/// written so that its INI reader keeps it whole. Arguments are one line (the value types
/// refuse newlines); `%` is doubled (supervisord expands `%(name)s`); whitespace is never
/// directly followed by `;` or `#` (an inline comment to that reader): the quote is closed
/// and reopened after every whitespace character. Plain words stay bare (the set shlex
/// leaves bare, so program files written before keep their bytes).
pub fn command_line(argv: &[String]) -> String {
    argv.iter()
        .map(|a| {
            let plain = !a.is_empty()
                && a.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-./:@]_".contains(c));
            if plain {
                return a.clone();
            }
            let mut w = String::from("'");
            for c in a.chars() {
                match c {
                    '\'' => w.push_str("'\\''"),
                    '%' => w.push_str("%%"),
                    c if c.is_whitespace() => {
                        w.push(c);
                        w.push_str("''");
                    }
                    c => w.push(c),
                }
            }
            w.push('\'');
            w
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A plain INI value for supervisord (a directory): `%` doubled.
pub fn ini_value(text: &str) -> String {
    text.replace('%', "%%")
}

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
    fn a_command_line_survives_supervisords_ini_reader_and_shlex() {
        let argv: Vec<String> = ["/bin/sh", "-c", "echo 100% ;done #x", "it's"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            command_line(&argv),
            r"/bin/sh -c 'echo ''100%% '';done ''#x' 'it'\''s'"
        );
    }

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
