//! What the uptime report asks the central hub, from the hub's own host: one script of `curl`s
//! to its HTTP API (raw `up` and `probe_success` samples of the window, and each batch's fresh
//! heartbeats per step), and the parser of what it printed. Pure.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::backend::script::Script;
use crate::uptime::{Answers, Series};

/// Prometheus answers at most 11 000 points per series in a range query.
const MAX_POINTS: u64 = 10_000;

/// One batch query: the batch's name and its PromQL.
pub struct BatchQuery {
    pub batch: String,
    pub query: String,
}

/// The step of the batch queries over `seconds`: the scrape interval, or coarser so that the
/// hub's point limit holds.
pub fn step(seconds: u64, scrape_secs: u64) -> u64 {
    scrape_secs.max(1).max(seconds.div_ceil(MAX_POINTS))
}

/// The script run on the hub's host: prints `wv-now SECONDS`, then per query a `wv-q NAME`
/// line followed by the hub's one-line JSON answer (or `unreachable`).
pub fn script(base: &str, seconds: u64, step: u64, batches: &[BatchQuery]) -> String {
    let mut s = Script::new();
    s.raw("now=$(date +%s)\necho \"wv-now $now\"\n");
    let query = format!("{base}/api/v1/query");
    for (name, selector) in [("up", "up"), ("probes", "probe_success")] {
        s.raw("echo").arg(format!("wv-q {name}")).raw("\n");
        s.raw("curl -sf --max-time 30 --url")
            .arg(&query)
            .raw(" --data-urlencode")
            .arg(format!("query={selector}[{seconds}s]"))
            .raw(" --data-urlencode \"time=$now\" || echo unreachable\necho\n");
    }
    let range = format!("{base}/api/v1/query_range");
    for b in batches {
        s.raw("echo")
            .arg(format!("wv-q batch {}", b.batch))
            .raw("\n");
        s.raw("curl -sf --max-time 30 --url")
            .arg(&range)
            .raw(" --data-urlencode")
            .arg(format!("query={}", b.query))
            .raw(" --data-urlencode \"start=$((now - ")
            .num(seconds)
            .raw("))\" --data-urlencode \"end=$now\" --data-urlencode")
            .arg(format!("step={step}s"))
            .raw(" || echo unreachable\necho\n");
    }
    s.into_string()
}

#[derive(Deserialize)]
struct Response {
    status: String,
    data: Option<Data>,
    error: Option<String>,
}

#[derive(Deserialize)]
struct Data {
    result: Vec<Matrix>,
}

#[derive(Deserialize)]
struct Matrix {
    metric: BTreeMap<String, String>,
    values: Vec<(f64, String)>,
}

fn series(text: &str) -> Result<Vec<Series>, String> {
    if text.trim() == "unreachable" || text.trim().is_empty() {
        return Err("the hub does not answer".to_string());
    }
    let r: Response =
        serde_json::from_str(text).map_err(|e| format!("the hub's answer is not JSON: {e}"))?;
    if r.status != "success" {
        return Err(r.error.unwrap_or(r.status));
    }
    Ok(r.data
        .map(|d| d.result)
        .unwrap_or_default()
        .into_iter()
        .map(|m| Series {
            labels: m.metric,
            samples: m
                .values
                .into_iter()
                .filter_map(|(t, v)| v.parse::<f64>().ok().map(|v| (t, v)))
                .collect(),
        })
        .collect())
}

/// What the script printed, as the report's answers.
pub fn parse(stdout: &str, step: u64) -> Result<Answers, String> {
    let mut answers = Answers {
        step: step as f64,
        ..Answers::default()
    };
    let mut lines = stdout.lines();
    let mut now = None;
    while let Some(line) = lines.next() {
        if let Some(n) = line.strip_prefix("wv-now ") {
            now = n.trim().parse::<f64>().ok();
            continue;
        }
        let Some(name) = line.strip_prefix("wv-q ") else {
            continue;
        };
        let answer = series(lines.next().unwrap_or_default())
            .map_err(|e| format!("asking the hub for `{name}`: {e}"))?;
        match name {
            "up" => answers.up = answer,
            "probes" => answers.probes = answer,
            _ => {
                if let Some(batch) = name.strip_prefix("batch ") {
                    let steps = answer.into_iter().flat_map(|s| s.samples).collect();
                    answers.batches.insert(batch.to_string(), steps);
                }
            }
        }
    }
    answers.now = now.ok_or("the hub's host did not print its clock")?;
    Ok(answers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_quotes_every_query() {
        let b = vec![BatchQuery {
            batch: "pilot".into(),
            query: crate::uptime::heartbeat_query("pilot", 75),
        }];
        let s = script("http://127.0.0.2:9000", 3600, 30, &b);
        assert!(s.contains("'query=up[3600s]'"), "{s}");
        assert!(s.contains("$((now - 3600))"), "{s}");
        assert!(s.contains("'step=30s'"), "{s}");
        assert!(s.contains("batch=\"pilot\""), "{s}");
    }

    #[test]
    fn answers_are_parsed_by_query() {
        let out = "wv-now 2000\nwv-q up\n{\"status\":\"success\",\"data\":{\"resultType\":\"matrix\",\"result\":[{\"metric\":{\"job\":\"prometheus-central\"},\"values\":[[1970,\"1\"],[2000,\"0\"]]}]}}\n\nwv-q probes\n{\"status\":\"success\",\"data\":{\"result\":[]}}\n\nwv-q batch pilot\n{\"status\":\"success\",\"data\":{\"result\":[{\"metric\":{},\"values\":[[1980,\"3\"]]}]}}\n";
        let a = parse(out, 30).expect("parsed");
        assert_eq!(a.now, 2000.0);
        assert_eq!(a.up[0].samples, vec![(1970.0, 1.0), (2000.0, 0.0)]);
        assert_eq!(a.batches["pilot"], vec![(1980.0, 3.0)]);
        let err = parse("wv-now 1\nwv-q up\nunreachable\n", 30).unwrap_err();
        assert!(err.contains("does not answer"), "{err}");
    }

    #[test]
    fn the_step_keeps_under_the_point_limit() {
        assert_eq!(step(3600, 30), 30);
        assert_eq!(step(168 * 3600, 30), 61);
    }
}
