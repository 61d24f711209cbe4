//! Probes and their verdicts, pure: the shell script a probe runs on its host, and the judgment
//! of what it printed. The retry loop (time passed in) lives in `run::probe`.

use crate::backend::script::Script;
use crate::backend::supervisor;
use crate::backend::supervisord::parse_proc_line;
use crate::observed::ProcessState;
use crate::primitive::{Probe, StreamConfig};

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "result", content = "detail", rename_all = "snake_case")]
pub enum Verdict {
    Pass(String),
    Fail(String),
}

impl Verdict {
    pub fn passed(&self) -> bool {
        matches!(self, Verdict::Pass(_))
    }

    pub fn detail(&self) -> &str {
        match self {
            Verdict::Pass(d) | Verdict::Fail(d) => d,
        }
    }
}

/// The host-side script of a probe: every value one quoted word, URLs after `--url` so none
/// can be read as an option.
pub fn script(probe: &Probe, root: &str) -> String {
    let mut s = Script::new();
    match probe {
        Probe::Http { url, .. } => {
            s.raw("b=$(mktemp)\ncode=$(curl -s -o \"$b\" -w '%{http_code}' --max-time 5 --url")
                .arg(url)
                .raw(" || true)\nprintf 'status %s\\n' \"$code\"\nhead -c 4096 \"$b\"\nrm -f \"$b\"\n");
        }
        Probe::Tcp { address, port, .. } => {
            s.raw("if timeout 3 bash -c 'exec 3<>\"/dev/tcp/$0/$1\"'")
                .arg(address)
                .raw(" ")
                .num(*port)
                .raw(" 2>/dev/null; then echo open; else echo closed; fi\n");
        }
        Probe::Process {
            name, supervisor, ..
        } => {
            s.raw("cd")
                .arg(root)
                .raw(" || exit 0\n")
                .raw(supervisor::of(*supervisor).functions())
                .raw("wv_procs 2>/dev/null | n=")
                .word(name)
                .raw(" awk '$1 == ENVIRON[\"n\"]'\n");
        }
        Probe::PromQuery { url, expr, .. } => {
            s.raw("curl -s --max-time 5 -G --data-urlencode")
                .arg(format!("query={expr}"))
                .raw(" --url")
                .arg(url)
                .raw(" || echo 'unreachable'\n");
        }
        Probe::Command { run, .. } => {
            s.raw("cd").arg(root).raw(" 2>/dev/null;");
            for a in run {
                s.arg(a);
            }
            s.raw(" </dev/null >/dev/null 2>&1; echo \"exit $?\"\n");
        }
        Probe::AlertQuiet { url, .. } => {
            s.script(&crate::backend::alerts::alertmanager_script(url));
            s.raw("\n");
        }
        Probe::NatsStream { monitor, .. } => {
            s.raw("curl -s --max-time 5 --url")
                .arg(format!("{monitor}{}", crate::backend::nats::JSZ_STREAMS))
                .raw(" || true\n");
        }
    }
    s.into_string()
}

/// Judges what a probe's script printed.
pub fn judge(probe: &Probe, stdout: &str) -> Verdict {
    match probe {
        Probe::Http { status, body, .. } => {
            let (first, rest) = stdout.split_once('\n').unwrap_or((stdout, ""));
            let code: u16 = first
                .strip_prefix("status ")
                .and_then(|c| c.trim().parse().ok())
                .unwrap_or(0);
            if code == 0 {
                return Verdict::Fail("no answer".into());
            }
            if code != *status {
                return Verdict::Fail(format!("HTTP {code}, expected {status}"));
            }
            match body {
                Some(b) if !rest.contains(b.as_str()) => {
                    Verdict::Fail(format!("HTTP {code} but the body lacks `{b}`"))
                }
                _ => Verdict::Pass(format!("HTTP {code}")),
            }
        }
        Probe::Tcp { address, port, .. } => match stdout.trim() {
            "open" => Verdict::Pass(format!("{address}:{port} accepts connections")),
            _ => Verdict::Fail(format!("{address}:{port} refuses or does not answer")),
        },
        Probe::Process { name, soak_s, .. } => match stdout.lines().find_map(parse_proc_line) {
            Some(l) if l.state == ProcessState::Running && l.uptime_s.unwrap_or(0) >= *soak_s => {
                Verdict::Pass(format!("running for {}s", l.uptime_s.unwrap_or(0)))
            }
            Some(l) if l.state == ProcessState::Running => Verdict::Fail(format!(
                "running for {}s, needs {soak_s}s without a restart",
                l.uptime_s.unwrap_or(0)
            )),
            Some(l) => Verdict::Fail(format!("{name} is {}", l.state.name())),
            None => Verdict::Fail(format!("{name} is unknown to the supervisor")),
        },
        Probe::PromQuery { expr, min, .. } => {
            let Ok(doc) = serde_json::from_str::<serde_json::Value>(stdout) else {
                return Verdict::Fail("the hub does not answer".into());
            };
            if doc["status"] != "success" {
                return Verdict::Fail(format!(
                    "query failed: {}",
                    doc["error"].as_str().unwrap_or("unknown error")
                ));
            }
            let series = doc["data"]["result"].as_array().map_or(0, Vec::len) as u64;
            if series >= *min {
                Verdict::Pass(format!("{series} series"))
            } else {
                Verdict::Fail(format!(
                    "`{expr}` returned {series} series, expected at least {min}"
                ))
            }
        }
        Probe::Command { run, .. } => match stdout.trim() {
            "exit 0" => Verdict::Pass("exit 0".into()),
            other => Verdict::Fail(format!("`{}` ended with {other}", run.join(" "))),
        },
        Probe::AlertQuiet {
            alertmanager,
            max_firing,
            ..
        } => match crate::backend::alerts::parse_alertmanager(stdout) {
            None => Verdict::Fail(format!("alertmanager {alertmanager} does not answer")),
            Some(alerts) => {
                let firing: Vec<&str> = alerts.iter().map(|a| a.name.as_str()).collect();
                if firing.len() as u64 <= *max_firing {
                    Verdict::Pass(format!("{} firing", firing.len()))
                } else {
                    Verdict::Fail(format!(
                        "{} firing ({}), expected at most {max_firing}",
                        firing.len(),
                        firing.join(", ")
                    ))
                }
            }
        },
        Probe::NatsStream { server, stream, .. } => {
            match crate::backend::nats::streams_of_jsz(stdout) {
                None => Verdict::Fail(format!("nats server {server} does not answer")),
                Some(list) => judge_stream(stream, list.iter().find(|s| s.name == stream.name)),
            }
        }
    }
}

/// A `nats_stream` probe: the stream exists with exactly the planned config.
fn judge_stream(want: &StreamConfig, have: Option<&StreamConfig>) -> Verdict {
    match have {
        None => Verdict::Fail(format!("stream {} does not exist", want.name)),
        Some(h) if h == want => Verdict::Pass("exists as planned".into()),
        Some(h) => {
            let mut diffs = Vec::new();
            if h.subjects != want.subjects {
                diffs.push("subjects");
            }
            if h.max_age_ms != want.max_age_ms {
                diffs.push("max_age");
            }
            if h.sources != want.sources {
                diffs.push("sources");
            }
            if h.replicas != want.replicas {
                diffs.push("replicas");
            }
            if diffs.is_empty() {
                diffs.push("limits or storage");
            }
            Verdict::Fail(format!(
                "stream {} differs from the plan in {}",
                want.name,
                diffs.join(", ")
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prom(min: u64) -> Probe {
        Probe::PromQuery {
            host: "mainpc".into(),
            url: "http://127.0.0.2:9000/api/v1/query".into(),
            expr: "up".into(),
            min,
        }
    }

    #[test]
    fn every_probe_script_quotes_its_values() {
        let hostile = "x'$(touch /tmp/wv-probe-marker)'";
        let probes = [
            Probe::Http {
                host: "h".into(),
                url: format!("-o/tmp/x http://a/{hostile}"),
                status: 200,
                body: None,
            },
            Probe::Tcp {
                host: "h".into(),
                address: hostile.into(),
                port: 9,
            },
            Probe::Process {
                host: "h".into(),
                name: hostile.into(),
                soak_s: 1,
                supervisor: Default::default(),
            },
            Probe::PromQuery {
                host: "h".into(),
                url: "http://a/api/v1/query".into(),
                expr: hostile.into(),
                min: 1,
            },
            Probe::Command {
                host: "h".into(),
                run: vec!["test".into(), "-n".into(), hostile.into()],
            },
        ];
        let scripts: Vec<String> = probes.iter().map(|p| script(p, "/srv/wv root")).collect();
        insta::assert_snapshot!(scripts.join("----\n"));
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(script(&probes[1], "/nonexistent"))
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "closed\n");
        assert!(!std::path::Path::new("/tmp/wv-probe-marker").exists());
    }

    #[test]
    fn prom_query_counts_series() {
        let out = r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"1"]},{"metric":{},"value":[1,"1"]}]}}"#;
        assert_eq!(judge(&prom(2), out), Verdict::Pass("2 series".into()));
        assert_eq!(
            judge(&prom(3), out),
            Verdict::Fail("`up` returned 2 series, expected at least 3".into())
        );
        assert_eq!(
            judge(&prom(1), "unreachable"),
            Verdict::Fail("the hub does not answer".into())
        );
    }

    #[test]
    fn http_checks_status_and_body() {
        let p = Probe::Http {
            host: "h".into(),
            url: "http://x/-/ready".into(),
            status: 200,
            body: Some("Ready".into()),
        };
        assert!(judge(&p, "status 200\nPrometheus Server is Ready.\n").passed());
        assert_eq!(
            judge(&p, "status 503\n"),
            Verdict::Fail("HTTP 503, expected 200".into())
        );
        assert_eq!(judge(&p, "status 000\n"), Verdict::Fail("no answer".into()));
        assert_eq!(
            script(&p, "/r"),
            "b=$(mktemp)\ncode=$(curl -s -o \"$b\" -w '%{http_code}' --max-time 5 --url 'http://x/-/ready' || true)\nprintf 'status %s\\n' \"$code\"\nhead -c 4096 \"$b\"\nrm -f \"$b\"\n"
        );
    }

    #[test]
    fn nats_stream_is_judged_from_the_servers_stream_list() {
        let want = StreamConfig {
            name: "S".into(),
            subjects: vec!["a.b".into()],
            storage: crate::plan::schema::Storage::File,
            retention: crate::plan::schema::Retention::Limits,
            max_age_ms: 86_400_000,
            max_bytes: -1,
            max_msgs: -1,
            replicas: 1,
            duplicate_window_ms: 120_000,
            sources: vec![],
        };
        let p = Probe::NatsStream {
            host: "h".into(),
            server: "n".into(),
            monitor: "http://x:8222".into(),
            stream: want,
        };
        let jsz = |max_age: u64| {
            format!(
                r#"{{"account_details":[{{"stream_detail":[{{"config":{{"name":"S","subjects":["a.b"],"retention":"limits","max_consumers":-1,"max_msgs":-1,"max_bytes":-1,"max_age":{max_age},"max_msgs_per_subject":-1,"max_msg_size":-1,"discard":"old","storage":"file","num_replicas":1,"duplicate_window":120000000000}}}}]}}]}}"#
            )
        };
        assert_eq!(
            judge(&p, &jsz(86_400_000_000_000)),
            Verdict::Pass("exists as planned".into())
        );
        assert_eq!(
            judge(&p, &jsz(3_600_000_000_000)),
            Verdict::Fail("stream S differs from the plan in max_age".into())
        );
        assert_eq!(
            judge(&p, r#"{"account_details":[]}"#),
            Verdict::Fail("stream S does not exist".into())
        );
        assert_eq!(
            judge(&p, ""),
            Verdict::Fail("nats server n does not answer".into())
        );
    }

    #[test]
    fn alert_quiet_counts_the_active_alerts_of_its_alertmanager() {
        let p = Probe::AlertQuiet {
            host: "mainpc".into(),
            alertmanager: "am-mainpc".into(),
            url: "http://127.0.0.2:9093".into(),
            max_firing: 0,
        };
        assert_eq!(
            script(&p, "/r"),
            "curl -sf --max-time 5 --url 'http://127.0.0.2:9093/api/v2/alerts?active=true&silenced=false&inhibited=false' || echo unreachable\n"
        );
        assert_eq!(judge(&p, "[]\n"), Verdict::Pass("0 firing".into()));
        assert_eq!(
            judge(&p, r#"[{"labels":{"alertname":"HubDown"}}]"#),
            Verdict::Fail("1 firing (HubDown), expected at most 0".into())
        );
        assert_eq!(
            judge(&p, "unreachable\n"),
            Verdict::Fail("alertmanager am-mainpc does not answer".into())
        );
    }

    #[test]
    fn process_needs_its_soak_time() {
        let p = Probe::Process {
            host: "h".into(),
            name: "nanoclaw".into(),
            soak_s: 10,
            supervisor: Default::default(),
        };
        assert!(judge(&p, "nanoclaw RUNNING 7 1000 1012\n").passed());
        assert_eq!(
            judge(&p, "nanoclaw RUNNING 7 1000 1003\n"),
            Verdict::Fail("running for 3s, needs 10s without a restart".into())
        );
        assert_eq!(
            judge(&p, "nanoclaw FATAL 0 1000 1003\n"),
            Verdict::Fail("nanoclaw is FATAL".into())
        );
    }
}
