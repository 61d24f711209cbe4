//! `wavectl drill PLAN KIND [TARGET] [--for DURATION] [--yes]`: a recovery drill on the running
//! system, measured against the plan's `[drill]` thresholds; the result table (or `-o json`),
//! exit 0 pass, 1 fail, 130 interrupted (what it did is restored first).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use crate::backend::drill::{DrillId, ms_rfc3339};
use crate::cli::report::Hinted;
use crate::cli::{Context, Output};
use crate::exit::Exit;
use crate::run::apply::Stop;
use crate::run::drill::{self, Drill, Kind, Outcome};
use crate::run::observe::{Observed, close_all};
use crate::transport::Host;

/// The kinds on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum KindArg {
    /// SIGKILL a planned program (TARGET: NAME or NAME@HOST); measure until it runs again
    /// with a new pid and its health checks are green.
    KillProcess,
    /// Stop a hub, Pushgateway or NATS server (TARGET: its name) for --for (30s): meanwhile,
    /// the time until the central hub holds a fresh heartbeat of every batch that used it;
    /// then start it again and measure until its health checks are green.
    StopService,
    /// Cut the link between two machines (TARGET: A,B; default the plan's two hosts) for
    /// --for (60s) with an nftables table of wavectl's own whose rules expire by themselves;
    /// publish numbered probes on both sides; after the heal both aggregate streams must hold
    /// every probe, none twice.
    Partition,
    /// SIGSTOP every planned program of a host (TARGET: HOST) for --for (30s), then SIGCONT;
    /// measure until its health checks are green. For labs only: a real host's programs stop
    /// serving for that long.
    FreezeHost,
}

impl KindArg {
    fn kind(self) -> Kind {
        match self {
            KindArg::KillProcess => Kind::KillProcess,
            KindArg::StopService => Kind::StopService,
            KindArg::Partition => Kind::Partition,
            KindArg::FreezeHost => Kind::FreezeHost,
        }
    }

    fn default_hold(self) -> Duration {
        match self {
            KindArg::Partition => Duration::from_secs(60),
            _ => Duration::from_secs(30),
        }
    }
}

pub struct Args<'a> {
    pub plan: &'a Path,
    pub kind: KindArg,
    pub target: Option<&'a str>,
    pub hold: Option<Duration>,
    pub yes: bool,
}

pub fn run(ctx: &Context, args: &Args) -> anyhow::Result<Exit> {
    let loaded = ctx.load(args.plan)?;
    if !args.yes && !std::io::stdin().is_terminal() {
        return Err(Hinted::new(
            "a drill changes the running system and stdin is not a terminal to ask on",
            "pass --yes to run it without asking",
        )
        .into());
    }
    if args.kind != KindArg::Partition && args.target.is_none() {
        let what = if args.kind == KindArg::KillProcess {
            "a program (NAME or NAME@HOST)"
        } else {
            "a host"
        };
        anyhow::bail!("{} needs a TARGET: {what}", args.kind.kind().name());
    }
    let hold = args.hold.unwrap_or_else(|| args.kind.default_hold());
    let thresholds = loaded.plan.drill.thresholds();
    let stop = Arc::new(Stop::default());
    ctx.runtime()?.block_on(async {
        // The drill restores what it did and exits 130.
        tokio::spawn(crate::cli::apply::stop_on_signal(
            stop.clone(),
            "interrupted: restoring what the drill did (interrupt again to exit at once)",
            "interrupted again: exiting now. Left: what the drill changed, as its record on the hosts says (an nftables table expires by itself, frozen programs get SIGCONT from the host's reaper); the next `wavectl drill` restores the rest",
        ));
        let (loaded, observed) = ctx.observe(args.plan, None, loaded).await?;
        let result = drill_on(ctx, args, &loaded, &observed, thresholds, &stop, hold).await;
        close_all(observed).await;
        let (outcome, previous) = result?;
        let mut out = anstream::stdout().lock();
        match ctx.output {
            Output::Json => {
                let mut doc = serde_json::to_value(&outcome)?;
                doc["schema"] = json!("wavectl.drill/1");
                doc["passed"] = json!(outcome.passed());
                doc["thresholds"] = serde_json::to_value(thresholds)?;
                doc["previous_interrupted"] = json!(previous);
                writeln!(out, "{doc}")?;
            }
            Output::Human => write!(out, "{}", human(&outcome))?,
        }
        Ok(if outcome.interrupted {
            Exit::Interrupted
        } else if outcome.passed() {
            Exit::Ok
        } else {
            Exit::Error
        })
    })
}

async fn drill_on(
    ctx: &Context,
    args: &Args<'_>,
    loaded: &crate::load::Loaded,
    observed: &[Observed],
    thresholds: crate::plan::drill::Thresholds,
    stop: &Stop,
    hold: Duration,
) -> anyhow::Result<(Outcome, Vec<String>)> {
    let mut conns: BTreeMap<String, &dyn Host> = BTreeMap::new();
    for o in observed {
        match (&o.connection, &o.report) {
            (Some(c), Ok(_)) => {
                conns.insert(o.host.clone(), c);
            }
            (_, Err(e)) => {
                return Err(Hinted::new(
                    format!("refusing to drill: host {} does not answer: {e}", o.host),
                    "a drill needs every host of the plan; run `wavectl status` and fix the host first",
                )
                .into());
            }
            _ => {}
        }
    }
    let d = Drill {
        loaded,
        conns,
        id: DrillId::from_parts(drill::now_ms(), std::process::id()),
        operator: crate::run::operator(),
        thresholds,
        stop,
        hold,
    };
    if let Some((host, lock)) = observed
        .iter()
        .find_map(|o| Some((&o.host, o.report.as_ref().ok()?.lock.as_ref()?)))
    {
        return Err(Hinted::new(
            format!("refusing to drill: {host} is locked by {lock}"),
            "wait for the apply to finish (or `wavectl unlock` a stale lock), then drill",
        )
        .into());
    }
    // A drill that died before it finished: say so, and undo what it left.
    let mut previous = Vec::new();
    let left = drill::interrupted(loaded, &d.conns).await;
    if let Some((host, rec)) = left.iter().find(|(_, r)| drill::still_running(r)) {
        return Err(Hinted::new(
            format!(
                "refusing to drill: the drill {} ({} {}) runs on {host} (pid {})",
                rec.id, rec.kind, rec.target, rec.pid
            ),
            "wait for it to finish; one drill at a time",
        )
        .into());
    }
    for (host, rec) in left {
        let line = rec.interrupted_line(&host);
        eprintln!("{line}");
        for r in drill::restore_left(&d, &host, rec).await {
            eprintln!("  restored: {r}");
        }
        previous.push(line);
    }
    let problems = drill::health_problems(loaded, &d.conns).await;
    if !problems.is_empty() {
        return Err(Hinted::new(
            format!(
                "refusing to drill: the system is not healthy:\n  {}",
                problems.join("\n  ")
            ),
            "run `wavectl status PLAN`, bring it back to green (`wavectl apply`), then drill",
        )
        .into());
    }
    if !args.yes
        && !confirm(&format!(
            "run the {} drill on {}",
            args.kind.kind().name(),
            args.target.unwrap_or("the plan's two hosts")
        ))?
    {
        anyhow::bail!("not confirmed; nothing was changed");
    }
    let _ = ctx;
    let outcome = match args.kind {
        KindArg::KillProcess => d.kill_process(args.target.unwrap_or_default()).await,
        KindArg::FreezeHost => d.freeze_host(args.target.unwrap_or_default()).await,
        KindArg::StopService => d.stop_service(args.target.unwrap_or_default()).await,
        KindArg::Partition => d.partition(args.target).await,
    };
    let mut outcome = outcome.map_err(|e| {
        anyhow::Error::new(Hinted::new(
            e.to_string(),
            "nothing of the drill is left on the hosts but its record (`wavectl status` shows what is)",
        ))
    })?;
    // The system must be as it was: the same checks as before, given the time a restore
    // takes to settle.
    if !outcome.interrupted {
        let start = tokio::time::Instant::now();
        loop {
            let after = drill::health_problems(loaded, &d.conns).await;
            if after.is_empty() {
                break;
            }
            if start.elapsed() >= Duration::from_secs(30) {
                outcome
                    .problems
                    .extend(after.into_iter().map(|p| format!("after the drill: {p}")));
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    Ok((outcome, previous))
}

/// The result table (what an interrupted drill before it left went to stderr).
pub fn human(o: &Outcome) -> String {
    let mut t = String::new();
    let verdict = if o.interrupted {
        "INTERRUPTED"
    } else if o.passed() {
        "PASS"
    } else {
        "FAIL"
    };
    let _ = writeln!(
        t,
        "drill {} {} {}: {verdict}",
        o.id,
        o.kind.name(),
        o.target
    );
    let _ = writeln!(
        t,
        "  {:<40} {:>12} {:>12}  RESULT",
        "FIGURE", "MEASURED", "LIMIT"
    );
    for f in &o.figures {
        let show = |v: u64| match f.unit {
            "ms" => format!("{:.2} s", v as f64 / 1000.0),
            u => format!("{v} {u}"),
        };
        let measured = f.value.map_or("never".to_string(), show);
        let limit = f.limit.map_or("-".to_string(), |l| {
            format!("{} {}", if f.at_least { ">=" } else { "<=" }, show(l))
        });
        let result = if f.limit.is_none() {
            ""
        } else if f.passed {
            "pass"
        } else {
            "FAIL"
        };
        let _ = writeln!(t, "  {:<40} {measured:>12} {limit:>12}  {result}", f.name);
    }
    if !o.outages.is_empty() {
        let _ = writeln!(t, "outages:");
        for x in &o.outages {
            let _ = writeln!(
                t,
                "  {} on {}: down {} ({}), up {}, {}",
                x.component,
                x.host,
                ms_rfc3339(x.down_at),
                x.down_at,
                x.up_at
                    .map_or("never".into(), |u| format!("{} ({u})", ms_rfc3339(u))),
                x.length_ms
                    .map_or("-".into(), |l| format!("{:.2} s", l as f64 / 1000.0)),
            );
        }
    }
    for r in &o.restored {
        let _ = writeln!(t, "restored: {r}");
    }
    for p in &o.problems {
        let _ = writeln!(t, "problem: {p}");
    }
    t
}

/// For `status`: each host's drill that never finished, in the words the next drill uses.
pub async fn interrupted_lines(
    loaded: &crate::load::Loaded,
    observed: &[Observed],
) -> Vec<(String, String)> {
    let conns: BTreeMap<String, &dyn Host> = observed
        .iter()
        .filter_map(|o| Some((o.host.clone(), o.connection.as_ref()? as &dyn Host)))
        .collect();
    drill::interrupted(loaded, &conns)
        .await
        .into_iter()
        .map(|(h, r)| {
            let line = if drill::still_running(&r) {
                format!(
                    "{h}: the drill {} ({} {}) is running (pid {})",
                    r.id, r.kind, r.target, r.pid
                )
            } else {
                format!(
                    "{} (the next `wavectl drill` restores it)",
                    r.interrupted_line(&h)
                )
            };
            (h, line)
        })
        .collect()
}

fn confirm(question: &str) -> anyhow::Result<bool> {
    eprint!("{question}? [y/N] ");
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::drill::{Figure, Outage};

    #[test]
    fn the_result_table_shows_each_figure_against_its_limit_and_each_outage() {
        let o = Outcome {
            id: "abc".into(),
            kind: Kind::KillProcess,
            target: "nanoclaw@mainpc".into(),
            figures: vec![
                Figure {
                    name: "restart".into(),
                    value: Some(1_050),
                    unit: "ms",
                    limit: Some(5_000),
                    at_least: false,
                    passed: true,
                },
                Figure {
                    name: "acked on pc2 during the cut".into(),
                    value: Some(99),
                    unit: "msgs",
                    limit: Some(100),
                    at_least: true,
                    passed: false,
                },
            ],
            outages: vec![Outage {
                component: "nanoclaw".into(),
                host: "mainpc".into(),
                down_at: 0,
                up_at: Some(1_050),
                length_ms: Some(1_050),
            }],
            restored: vec!["started nanoclaw".into()],
            problems: Vec::new(),
            interrupted: false,
            messages: None,
        };
        assert_eq!(
            human(&o),
            "drill abc kill-process nanoclaw@mainpc: FAIL\n  FIGURE                                       MEASURED        LIMIT  RESULT\n  restart                                        1.05 s    <= 5.00 s  pass\n  acked on pc2 during the cut                   99 msgs  >= 100 msgs  FAIL\noutages:\n  nanoclaw on mainpc: down 1970-01-01T00:00:00Z (0), up 1970-01-01T00:00:01Z (1050), 1.05 s\nrestored: started nanoclaw\n"
        );
    }
}
