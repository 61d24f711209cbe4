//! `wavectl report PLAN --hours N`: per component, uptime, outages and heartbeat coverage over
//! the last N hours, read from the central hub's Prometheus through its host's connection;
//! overall against the seed's 99.9 % target. Exit 0 when the target is met, 2 when not, 1 when
//! the hub cannot be asked.

use std::fmt::Write as _;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use anyhow::Context as _;
use serde_json::json;

use crate::backend::uptime::{self as ask, BatchQuery};
use crate::cli::{Context, Output};
use crate::exit::Exit;
use crate::uptime::{self, Report, Watch};

pub struct Args<'a> {
    pub plan: &'a Path,
    pub hours: u64,
    pub hub: Option<&'a str>,
    pub svg: Option<&'a Path>,
}

pub fn run(ctx: &Context, args: &Args) -> anyhow::Result<Exit> {
    if args.hours == 0 {
        anyhow::bail!("--hours must be at least 1");
    }
    let loaded = ctx.load_online(args.plan)?;
    let plan = &loaded.plan;
    let Some(hub) = uptime::report_hub(plan, args.hub) else {
        match args.hub {
            Some(n) => {
                anyhow::bail!("the plan has no hub `{n}`; expected one of its [[hub]] names")
            }
            None => anyhow::bail!("the plan has no [[hub]]: there is nothing to read uptime from"),
        }
    };
    let host = loaded.inventory.host(hub.host.get_ref()).with_context(|| {
        format!(
            "hub {} is on host {}, which the inventory lacks",
            hub.name.get_ref(),
            hub.host.get_ref()
        )
    })?;
    let base = format!("http://{}:{}", host.address.get_ref(), hub.port.get_ref());
    let seconds = args.hours * 3600;
    let step = ask::step(seconds, hub.scrape_interval.as_secs());
    let batches: Vec<BatchQuery> = uptime::components(plan, hub)
        .into_iter()
        .filter_map(|c| match c.watch {
            Watch::Heartbeats { limit_secs, .. } => Some(BatchQuery {
                query: uptime::heartbeat_query(&c.name, limit_secs),
                batch: c.name,
            }),
            _ => None,
        })
        .collect();
    let script = ask::script(&base, seconds, step, &batches);
    let stdout = ctx
        .runtime()?
        .block_on(async {
            let conn = crate::transport::connect(&loaded.inventory, host).await?;
            let out = conn.run(&script).await;
            conn.close().await;
            anyhow::Ok(out?.stdout)
        })
        .with_context(|| {
            format!(
                "cannot reach host {} of hub {}",
                hub.host.get_ref(),
                hub.name.get_ref()
            )
        })?;
    let answers = ask::parse(&stdout, step).map_err(|e| {
        anyhow::anyhow!(
            "hub {} at {base} (asked on {}): {e}",
            hub.name.get_ref(),
            hub.host.get_ref()
        )
    })?;
    let report = uptime::report(plan, hub, args.hours, &answers);
    if let Some(path) = args.svg {
        let svg = uptime::plot::svg(&report).map_err(anyhow::Error::msg)?;
        std::fs::write(path, svg).with_context(|| format!("cannot write {}", path.display()))?;
    }
    let mut out = anstream::stdout().lock();
    match ctx.output {
        Output::Json => writeln!(out, "{}", json_doc(&report, hub.host.get_ref()))?,
        Output::Human => write!(out, "{}", human(&report, hub.host.get_ref()))?,
    }
    Ok(if report.meets_target {
        Exit::Ok
    } else {
        Exit::Drift
    })
}

fn json_doc(report: &Report, host: &str) -> serde_json::Value {
    json!({
        "schema": "wavectl.report/1",
        "hub_host": host,
        "report": report,
    })
}

fn time(t: f64) -> String {
    let at = UNIX_EPOCH + Duration::from_secs_f64(t.max(0.0));
    humantime::format_rfc3339_seconds(at).to_string()
}

fn length(seconds: f64) -> String {
    let s = seconds.round() as u64;
    match s {
        0..120 => format!("{s} s"),
        120..7200 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

fn human(report: &Report, host: &str) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "uptime seen by hub {} on {host}, {} to {} ({} h)",
        report.hub,
        time(report.from),
        time(report.to),
        report.hours
    );
    if report.short_history {
        let _ = writeln!(
            t,
            "  the hub holds {:.2} h of the {} h asked{}: the figures cover that only",
            report.history_hours,
            report.hours,
            report
                .history_from
                .map_or(String::new(), |h| format!(" (since {})", time(h)))
        );
    }
    let _ = writeln!(
        t,
        "{:<44} {:>9} {:>8} {:>9} {:>11}",
        "COMPONENT", "UPTIME", "OUTAGES", "LONGEST", "HEARTBEATS"
    );
    for c in &report.components {
        let name = format!("{}.{}@{}", c.kind.as_str(), c.name, c.host);
        if let Some(note) = &c.note {
            let _ = writeln!(t, "{name:<44} {:>9} {note}", "-");
            continue;
        }
        let longest = c.outages.iter().map(|o| o.seconds).fold(0.0, f64::max);
        let _ = writeln!(
            t,
            "{name:<44} {:>9} {:>8} {:>9} {:>11}",
            c.uptime_percent.map_or("-".into(), |p| format!("{p:.3}%")),
            c.outages.len(),
            if c.outages.is_empty() {
                "-".into()
            } else {
                length(longest)
            },
            c.heartbeat_coverage_percent
                .map_or(String::new(), |p| format!("{p:.2}%")),
        );
    }
    let _ = writeln!(
        t,
        "overall {} (every watched component up at once; target {} %): {}",
        report
            .overall_percent
            .map_or("no data".into(), |p| format!("{p:.3} %")),
        report.target_percent,
        if report.meets_target {
            "met"
        } else {
            "NOT met"
        }
    );
    let outages: Vec<_> = report
        .components
        .iter()
        .flat_map(|c| c.outages.iter().map(move |o| (c, o)))
        .collect();
    if !outages.is_empty() {
        let _ = writeln!(t, "outages:");
        for (c, o) in outages {
            let _ = writeln!(
                t,
                "  {:<44} {} .. {} {:>9}{}",
                format!("{}.{}@{}", c.kind.as_str(), c.name, c.host),
                time(o.start),
                time(o.end),
                length(o.seconds),
                if o.ongoing { " (still down)" } else { "" }
            );
        }
    }
    t
}
