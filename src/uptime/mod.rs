//! The uptime report, as pure functions: which series of the central hub watch which component
//! of the plan, the timeline each series draws (up, down, no data), its outages, and the
//! figures against the seed's 99.9 % target.
//!
//! # How a timeline is read
//!
//! A scrape sample at `t` holds its value until the next sample, for at most `hold` (two
//! scrape intervals). Past that the hub has no data: it was down itself, or not yet running.
//! An outage runs from the first sample that saw the component down to the first sample that
//! saw it up again, so its measured length is within one scrape interval of the real one. For
//! the hub the report reads, a hole in its own samples is its own outage.
//!
//! Batches are read from the hub's evaluation of their heartbeats at every step: the number of
//! agents whose last heartbeat is fresh (no older than the heartbeat rule's limit). A batch is
//! up at a step when all its agents are fresh; coverage is the share of agent-steps fresh.

pub mod plot;

use std::collections::BTreeMap;

use serde::Serialize;

use crate::plan::health::{
    JOB_ALERTMANAGER, JOB_BLACKBOX, JOB_HEALTH, JOB_HUB, JOB_JETSTREAM, JOB_PUSHGATEWAY,
};
use crate::plan::schema::{Hub, Plan};

/// The seed's availability target (Task 2K: 168 hours at 99.9 %).
pub const TARGET_PERCENT: f64 = 99.9;

/// One series as the hub returned it: its labels and `(unix seconds, value)` samples.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Series {
    pub labels: BTreeMap<String, String>,
    pub samples: Vec<(f64, f64)>,
}

impl Series {
    fn label(&self, key: &str) -> &str {
        self.labels.get(key).map_or("", String::as_str)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Up,
    Down,
    NoData,
}

/// `[start, end)` in unix seconds, in one state.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Segment {
    pub start: f64,
    pub end: f64,
    pub state: State,
}

/// The timeline of 0/1 samples over `[from, to]`: each sample holds for at most `hold`
/// seconds; the time no sample covers is `gap` (no data, or down for the hub itself).
pub fn timeline(samples: &[(f64, f64)], from: f64, to: f64, hold: f64, gap: State) -> Vec<Segment> {
    let mut out: Vec<Segment> = Vec::new();
    let mut push = |start: f64, end: f64, state: State| {
        let (start, end) = (start.max(from), end.min(to));
        if end <= start {
            return;
        }
        match out.last_mut() {
            Some(last) if last.state == state && (last.end - start).abs() < 1e-9 => last.end = end,
            _ => out.push(Segment { start, end, state }),
        }
    };
    let inside: Vec<(f64, f64)> = samples.iter().copied().filter(|(t, _)| *t <= to).collect();
    let Some(first) = inside.first() else {
        push(from, to, State::NoData);
        return out;
    };
    // Before the first sample the hub holds nothing: that is history, not an outage.
    push(from, first.0, State::NoData);
    for (i, (t, v)) in inside.iter().enumerate() {
        let next = inside.get(i + 1).map_or(to, |n| n.0);
        let state = if *v > 0.0 { State::Up } else { State::Down };
        let held = (t + hold).min(next);
        push(*t, held, state);
        push(held, next, gap);
    }
    out
}

/// One outage: from the first sample that saw it down to the first that saw it up again.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Outage {
    pub start: f64,
    pub end: f64,
    pub seconds: f64,
    /// Still down at the end of the report.
    pub ongoing: bool,
}

pub fn outages(segments: &[Segment], to: f64) -> Vec<Outage> {
    segments
        .iter()
        .filter(|s| s.state == State::Down)
        .map(|s| Outage {
            start: s.start,
            end: s.end,
            seconds: s.end - s.start,
            ongoing: (s.end - to).abs() < 1e-9,
        })
        .collect()
}

fn total(segments: &[Segment], state: State) -> f64 {
    segments
        .iter()
        .filter(|s| s.state == state)
        .map(|s| s.end - s.start)
        // An empty f64 sum is -0.0.
        .fold(0.0, |a, b| a + b)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Hub,
    Pushgateway,
    Alertmanager,
    Blackbox,
    Nats,
    Batch,
    Process,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Hub => "hub",
            Kind::Pushgateway => "pushgateway",
            Kind::Alertmanager => "alertmanager",
            Kind::Blackbox => "blackbox",
            Kind::Nats => "nats",
            Kind::Batch => "batch",
            Kind::Process => "process",
        }
    }
}

/// What tells the hub a component is up.
#[derive(Debug, Clone, PartialEq)]
pub enum Watch {
    /// `up` of this scrape job.
    Up { job: String },
    /// `probe_success` of this blackbox job.
    Probe { job: String },
    /// The batch's fresh heartbeats, evaluated by the hub (see [`heartbeat_query`]).
    Heartbeats { agents: usize, limit_secs: u64 },
    /// Nothing the hub scrapes says so.
    Unwatched(&'static str),
}

/// A component of the plan and how the report hub watches it.
#[derive(Debug, Clone, PartialEq)]
pub struct Component {
    pub kind: Kind,
    pub name: String,
    pub host: String,
    pub watch: Watch,
}

impl Component {
    pub fn label(&self) -> String {
        format!("{}.{}@{}", self.kind.as_str(), self.name, self.host)
    }
}

/// The hub a report reads: `name` if given, else the hub others remote-write to (the
/// central one), else the first.
pub fn report_hub<'p>(plan: &'p Plan, name: Option<&str>) -> Option<&'p Hub> {
    if let Some(n) = name {
        return plan.hubs.iter().find(|h| h.name.get_ref() == n);
    }
    plan.hubs
        .iter()
        .find(|h| {
            plan.hubs.iter().any(|o| {
                o.remote_write
                    .iter()
                    .any(|r| r.get_ref() == h.name.get_ref())
            })
        })
        .or_else(|| plan.hubs.first())
}

/// Every component of the plan, in plan order, with what `hub` reads of it.
pub fn components(plan: &Plan, hub: &Hub) -> Vec<Component> {
    let mut out = Vec::new();
    let mut add = |kind, name: &str, host: &str, watch| {
        out.push(Component {
            kind,
            name: name.to_string(),
            host: host.to_string(),
            watch,
        });
    };
    let job = |prefix: &str, name: &str| format!("{prefix}{name}");
    for h in &plan.hubs {
        let n = h.name.get_ref();
        add(
            Kind::Hub,
            n,
            h.host.get_ref(),
            Watch::Up {
                job: job(JOB_HUB, n),
            },
        );
    }
    for p in &plan.pushgateways {
        let n = p.name.get_ref();
        let w = Watch::Up {
            job: job(JOB_PUSHGATEWAY, n),
        };
        add(Kind::Pushgateway, n, p.host.get_ref(), w);
    }
    for n in &plan.nats {
        let name = n.name.get_ref();
        let w = Watch::Probe {
            job: job(JOB_JETSTREAM, name),
        };
        add(Kind::Nats, name, n.host.get_ref(), w);
    }
    for a in &plan.alertmanagers {
        let n = a.name.get_ref();
        let w = Watch::Up {
            job: job(JOB_ALERTMANAGER, n),
        };
        add(Kind::Alertmanager, n, a.host.get_ref(), w);
    }
    for b in &plan.blackboxes {
        let n = b.name.get_ref();
        add(
            Kind::Blackbox,
            n,
            b.host.get_ref(),
            Watch::Up {
                job: job(JOB_BLACKBOX, n),
            },
        );
    }
    let scrape = hub.scrape_interval.as_secs().max(1);
    let missed = u64::from(*hub.health.heartbeat_missed.get_ref());
    for b in &plan.batches {
        let limit_secs = b.heartbeat_interval.as_secs().max(1) * missed + scrape;
        let w = Watch::Heartbeats {
            agents: b.agents.len(),
            limit_secs,
        };
        add(Kind::Batch, b.name.get_ref(), b.host.get_ref(), w);
    }
    for p in &plan.processes {
        let n = p.name.get_ref();
        let w = if crate::plan::health::probed_health(p).is_some() {
            Watch::Probe {
                job: JOB_HEALTH.to_string(),
            }
        } else {
            Watch::Unwatched("no http or tcp health probe: the hub does not watch it")
        };
        add(Kind::Process, n, p.host.get_ref(), w);
    }
    out
}

/// The PromQL that counts a batch's agents with a fresh heartbeat at each step.
pub fn heartbeat_query(batch: &str, limit_secs: u64) -> String {
    format!(
        "count(time() - max by (instance) (agent_heartbeat{{batch=\"{batch}\",hub=\"\"}}) <= {limit_secs})"
    )
}

/// What the hub answered, by query.
#[derive(Debug, Clone, Default)]
pub struct Answers {
    /// The hub's clock when it was asked.
    pub now: f64,
    /// `up[range]`, raw samples: the hub's own scrapes (`hub=""`) and other hubs' (`hub="edge"`).
    pub up: Vec<Series>,
    /// `probe_success[range]`, raw samples, the same way.
    pub probes: Vec<Series>,
    /// Per batch name: the fresh-agent count at each step.
    pub batches: BTreeMap<String, Vec<(f64, f64)>>,
    /// The step of the batch queries, seconds.
    pub step: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ComponentReport {
    pub kind: Kind,
    pub name: String,
    pub host: String,
    /// Percent of the observed time up; `None` when nothing was observed.
    pub uptime_percent: Option<f64>,
    pub observed_seconds: f64,
    pub down_seconds: f64,
    pub outages: Vec<Outage>,
    /// Batches: percent of agent-steps with a fresh heartbeat.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub heartbeat_coverage_percent: Option<f64>,
    /// Why there are no figures, when there are none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    #[serde(skip)]
    pub timeline: Vec<Segment>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub hub: String,
    pub hours: u64,
    pub from: f64,
    pub to: f64,
    /// The oldest sample the hub holds in the window; later than `from` when it holds less
    /// history than asked.
    pub history_from: Option<f64>,
    /// Hours of history the hub actually holds in the window.
    pub history_hours: f64,
    /// The hub holds less history than asked: the figures cover `history_hours` only.
    pub short_history: bool,
    pub components: Vec<ComponentReport>,
    /// Percent of the observed time every watched component was up at once.
    pub overall_percent: Option<f64>,
    pub target_percent: f64,
    pub meets_target: bool,
}

fn percent(up: f64, down: f64) -> Option<f64> {
    (up + down > 0.0).then(|| 100.0 * up / (up + down))
}

/// The series of `component`: the hub's own scrape of it first (`hub=""`), then what other
/// hubs remote-wrote of it (`hub="edge"`).
fn series_of<'a>(c: &Component, answers: &'a Answers) -> Vec<&'a Series> {
    let (list, job) = match &c.watch {
        Watch::Up { job } => (&answers.up, job),
        Watch::Probe { job } => (&answers.probes, job),
        _ => return Vec::new(),
    };
    let mut found: Vec<&Series> = list
        .iter()
        .filter(|s| {
            if c.kind == Kind::Process {
                s.label("job").starts_with(job.as_str())
                    && s.label("component") == c.name
                    && s.label("source_host") == c.host
            } else {
                s.label("job") == job
            }
        })
        .collect();
    found.sort_by_key(|s| !s.label("hub").is_empty());
    found
}

/// `base` with its no-data spans taken from `other` where `other` knows (another hub's view).
fn fill(base: &[Segment], other: &[Segment]) -> Vec<Segment> {
    let mut out: Vec<Segment> = Vec::new();
    let mut push = |start: f64, end: f64, state: State| {
        if end <= start {
            return;
        }
        match out.last_mut() {
            Some(last) if last.state == state && (last.end - start).abs() < 1e-9 => last.end = end,
            _ => out.push(Segment { start, end, state }),
        }
    };
    for b in base {
        if b.state != State::NoData {
            push(b.start, b.end, b.state);
            continue;
        }
        let mut at = b.start;
        for o in other.iter().filter(|o| o.end > b.start && o.start < b.end) {
            let (start, end) = (o.start.max(b.start), o.end.min(b.end));
            push(at, start, State::NoData);
            push(start, end, o.state);
            at = end;
        }
        push(at, b.end, State::NoData);
    }
    out
}

/// A component's timeline: the hub's own samples, its holes filled with the other hubs'
/// views.
///
/// For the hub itself its own samples prove it up, each until the next one `own_hold` later at
/// most. A longer hole starts at its last sign of life: there the other hubs say what they saw
/// (a hub remote-writing to it scrapes it too), and what nobody saw, after its first sample,
/// is its outage.
fn component_timeline(
    plan: &Plan,
    series: &[&Series],
    own: bool,
    (from, to): (f64, f64),
    (hold, own_hold): (f64, f64),
) -> Vec<Segment> {
    let Some((first, others)) = series.split_first() else {
        return Vec::new();
    };
    let own = own && first.label("hub").is_empty();
    let mut t = if own {
        proven(&first.samples, from, to, own_hold)
    } else {
        timeline(&first.samples, from, to, hold, State::NoData)
    };
    for o in others {
        let interval = plan
            .hubs
            .iter()
            .find(|h| h.name.get_ref().as_str() == o.label("hub"))
            .map_or(hold, |h| h.scrape_interval.as_secs().max(1) as f64 + 1.0);
        t = fill(&t, &timeline(&o.samples, from, to, interval, State::NoData));
    }
    if own {
        let start = first.samples.first().map_or(to, |x| x.0);
        for seg in t
            .iter_mut()
            .filter(|s| s.state == State::NoData && s.start >= start)
        {
            seg.state = State::Down;
        }
    }
    t
}

/// The hub's own samples as proof of life: up from one sample to the next when they are at
/// most `hold` apart, no data in a longer hole (from its last sample on).
fn proven(samples: &[(f64, f64)], from: f64, to: f64, hold: f64) -> Vec<Segment> {
    let inside: Vec<(f64, f64)> = samples.iter().copied().filter(|(t, _)| *t <= to).collect();
    let Some(first) = inside.first() else {
        return timeline(&inside, from, to, hold, State::NoData);
    };
    let mut out: Vec<Segment> = vec![Segment {
        start: from,
        end: first.0.max(from),
        state: State::NoData,
    }];
    out.retain(|s| s.end > s.start);
    for (k, (t, v)) in inside.iter().enumerate() {
        let next = inside.get(k + 1).map_or(to, |n| n.0);
        // A hole starts at the last sign of life.
        let state = if next - t > hold {
            State::NoData
        } else if *v > 0.0 {
            State::Up
        } else {
            State::Down
        };
        let (start, end) = (t.max(from), next);
        if end <= start {
            continue;
        }
        match out.last_mut() {
            Some(last) if last.state == state && (last.end - start).abs() < 1e-9 => last.end = end,
            _ => out.push(Segment { start, end, state }),
        }
    }
    out
}

/// Builds the report of `hub` over the last `hours` from what it answered.
pub fn report(plan: &Plan, hub: &Hub, hours: u64, answers: &Answers) -> Report {
    let to = answers.now;
    let from = to - (hours * 3600) as f64;
    let interval = hub.scrape_interval.as_secs().max(1) as f64;
    // Another component's sample holds through one late or lost scrape; the hub's own samples
    // come every interval while it runs, so a hole longer than that is its outage.
    let hold = 2.0 * interval + 1.0;
    let own_hold = interval + 1.0;
    let own_job = format!("{JOB_HUB}{}", hub.name.get_ref());
    let own = answers
        .up
        .iter()
        .find(|s| s.label("job") == own_job && s.label("hub").is_empty());
    // Where the hub holds data at all: its own scrapes.
    let observed = own.map(|s| timeline(&s.samples, from, to, own_hold, State::NoData));
    let history_from = answers
        .up
        .iter()
        .chain(&answers.probes)
        .filter(|s| s.label("hub").is_empty())
        .filter_map(|s| s.samples.first().map(|x| x.0))
        .filter(|t| *t >= from - interval)
        .fold(None, |m: Option<f64>, t| Some(m.map_or(t, |m| m.min(t))));
    let mut reports = Vec::new();
    for c in components(plan, hub) {
        let own = c.kind == Kind::Hub && c.name == hub.name.get_ref().as_str();
        let mut coverage = None;
        let mut note = None;
        let segments = match &c.watch {
            Watch::Unwatched(why) => {
                note = Some((*why).to_string());
                Vec::new()
            }
            &Watch::Heartbeats { agents, .. } => {
                let steps = answers.batches.get(&c.name).cloned().unwrap_or_default();
                let (segments, cov) = batch_timeline(
                    &steps,
                    agents,
                    observed.as_deref().unwrap_or(&[]),
                    answers.step.max(1.0),
                    from,
                    to,
                );
                coverage = cov;
                segments
            }
            _ => match series_of(&c, answers).as_slice() {
                [] => {
                    note = Some(format!(
                        "hub {} holds no series of it in this window",
                        hub.name.get_ref()
                    ));
                    Vec::new()
                }
                series => component_timeline(plan, series, own, (from, to), (hold, own_hold)),
            },
        };
        let up = total(&segments, State::Up);
        let down = total(&segments, State::Down);
        reports.push(ComponentReport {
            kind: c.kind,
            name: c.name.clone(),
            host: c.host.clone(),
            uptime_percent: percent(up, down),
            observed_seconds: up + down,
            down_seconds: down,
            outages: outages(&segments, to),
            heartbeat_coverage_percent: coverage,
            note,
            timeline: segments,
        });
    }
    let overall_percent = overall(&reports);
    let history_hours = history_from.map_or(0.0, |h| ((to - h.max(from)) / 3600.0).max(0.0));
    Report {
        hub: hub.name.get_ref().to_string(),
        hours,
        from,
        to,
        history_from,
        history_hours,
        short_history: history_from.is_none_or(|h| h > from + hold),
        meets_target: overall_percent.is_some_and(|p| p >= TARGET_PERCENT),
        overall_percent,
        target_percent: TARGET_PERCENT,
        components: reports,
    }
}

/// A batch's steps as a timeline: up when every agent is fresh; a step the hub evaluated to
/// nothing (no agent fresh) is down while the hub itself has data, no data otherwise.
fn batch_timeline(
    steps: &[(f64, f64)],
    agents: usize,
    observed: &[Segment],
    step: f64,
    from: f64,
    to: f64,
) -> (Vec<Segment>, Option<f64>) {
    let has_data = |t: f64| {
        observed
            .iter()
            .any(|s| s.state == State::Up && s.start <= t && t < s.end)
    };
    // The hub evaluates at `from + k * step`; a step it returned nothing for had no agent fresh.
    let key = |t: f64| (t * 1000.0).round() as i64;
    let counts: BTreeMap<i64, f64> = steps.iter().map(|(t, v)| (key(*t), *v)).collect();
    let mut samples = Vec::new();
    let (mut fresh, mut expected) = (0.0, 0.0);
    let mut t = from;
    while t <= to {
        if has_data(t) {
            let n = counts.get(&key(t)).copied().unwrap_or(0.0);
            fresh += n.min(agents as f64);
            expected += agents as f64;
            samples.push((t, if n >= agents as f64 { 1.0 } else { 0.0 }));
        }
        t += step;
    }
    let segments = timeline(&samples, from, to, step + 1.0, State::NoData);
    (segments, (expected > 0.0).then(|| 100.0 * fresh / expected))
}

/// Percent of the time at least one watched component was observed during which all of them
/// were up (a component's no-data time counts neither way).
fn overall(components: &[ComponentReport]) -> Option<f64> {
    let mut edges: Vec<f64> = components
        .iter()
        .flat_map(|c| c.timeline.iter().flat_map(|s| [s.start, s.end]))
        .collect();
    edges.sort_by(f64::total_cmp);
    edges.dedup();
    let (mut up, mut down) = (0.0, 0.0);
    for w in edges.windows(2) {
        let mid = (w[0] + w[1]) / 2.0;
        let states: Vec<State> = components
            .iter()
            .filter_map(|c| {
                c.timeline
                    .iter()
                    .find(|s| s.start <= mid && mid < s.end)
                    .map(|s| s.state)
            })
            .filter(|s| *s != State::NoData)
            .collect();
        if states.is_empty() {
            continue;
        }
        if states.contains(&State::Down) {
            down += w[1] - w[0];
        } else {
            up += w[1] - w[0];
        }
    }
    percent(up, down)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples(start: f64, every: f64, values: &[f64]) -> Vec<(f64, f64)> {
        values
            .iter()
            .enumerate()
            .map(|(i, v)| (start + i as f64 * every, *v))
            .collect()
    }

    #[test]
    fn an_outage_runs_from_the_first_down_sample_to_the_first_up_one() {
        let s = samples(1000.0, 30.0, &[1.0, 1.0, 0.0, 0.0, 1.0, 1.0]);
        let t = timeline(&s, 1000.0, 1180.0, 61.0, State::NoData);
        let o = outages(&t, 1180.0);
        assert_eq!(o.len(), 1);
        assert_eq!((o[0].start, o[0].end, o[0].seconds), (1060.0, 1120.0, 60.0));
        assert!(!o[0].ongoing);
        assert_eq!(total(&t, State::Up), 120.0);
    }

    #[test]
    fn before_the_first_sample_and_in_holes_there_is_no_data() {
        let mut s = samples(2000.0, 30.0, &[1.0, 1.0]);
        s.extend(samples(2300.0, 30.0, &[1.0]));
        let t = timeline(&s, 1000.0, 2400.0, 61.0, State::NoData);
        assert_eq!(
            t[0],
            Segment {
                start: 1000.0,
                end: 2000.0,
                state: State::NoData
            }
        );
        assert_eq!(total(&t, State::Down), 0.0);
        assert_eq!(total(&t, State::Up), 30.0 + 61.0 + 61.0);
        // The hub's own holes are its outages.
        let own = timeline(&s, 1000.0, 2400.0, 61.0, State::Down);
        assert_eq!(outages(&own, 2400.0).len(), 2, "{own:?}");
    }

    #[test]
    fn another_hubs_view_fills_the_holes_of_the_hubs_own() {
        let seg = |start, end, state| Segment { start, end, state };
        let base = vec![
            seg(0.0, 10.0, State::Up),
            seg(10.0, 40.0, State::NoData),
            seg(40.0, 50.0, State::Up),
        ];
        let edge = vec![
            seg(0.0, 20.0, State::Up),
            seg(20.0, 30.0, State::Down),
            seg(30.0, 35.0, State::Up),
        ];
        assert_eq!(
            fill(&base, &edge),
            vec![
                seg(0.0, 20.0, State::Up),
                seg(20.0, 30.0, State::Down),
                seg(30.0, 35.0, State::Up),
                seg(35.0, 40.0, State::NoData),
                seg(40.0, 50.0, State::Up)
            ]
        );
    }

    #[test]
    fn the_hubs_own_outage_starts_where_the_other_hub_saw_it_go() {
        // Its own samples every 30 s up to 1000, then none until 1120; the edge (15 s) saw it
        // down from 1010 to 1090.
        let own = samples(910.0, 30.0, &[1.0, 1.0, 1.0, 1.0]);
        let mut own_all = own.clone();
        own_all.push((1120.0, 1.0));
        let proof = proven(&own_all, 900.0, 1150.0, 31.0);
        assert_eq!(
            proof[1],
            Segment {
                start: 910.0,
                end: 1000.0,
                state: State::Up
            },
            "{proof:?}"
        );
        assert_eq!(
            proof[2],
            Segment {
                start: 1000.0,
                end: 1120.0,
                state: State::NoData
            },
            "{proof:?}"
        );
        let edge = Series {
            labels: [("hub".to_string(), "edge".to_string())].into(),
            samples: samples(995.0, 15.0, &[1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0]),
        };
        let own_series = Series {
            labels: BTreeMap::new(),
            samples: own_all,
        };
        let plan = Plan::default();
        let t = component_timeline(
            &plan,
            &[&own_series, &edge],
            true,
            (900.0, 1150.0),
            (61.0, 31.0),
        );
        let o = outages(&t, 1150.0);
        assert_eq!(o.len(), 1, "{t:?}");
        assert_eq!((o[0].start, o[0].end), (1010.0, 1085.0), "{t:?}");
    }

    #[test]
    fn an_outage_at_the_end_is_ongoing() {
        let s = samples(0.0, 10.0, &[1.0, 0.0]);
        let o = outages(&timeline(&s, 0.0, 15.0, 21.0, State::NoData), 15.0);
        assert_eq!(o.len(), 1);
        assert!(o[0].ongoing);
        assert_eq!(o[0].seconds, 5.0);
    }

    #[test]
    fn a_batch_is_down_while_an_agent_is_stale() {
        let observed = vec![Segment {
            start: 0.0,
            end: 1000.0,
            state: State::Up,
        }];
        let steps = vec![(0.0, 3.0), (60.0, 2.0), (120.0, 3.0)];
        let (t, cov) = batch_timeline(&steps, 3, &observed, 60.0, 0.0, 150.0);
        let o = outages(&t, 150.0);
        assert_eq!(o.len(), 1);
        assert_eq!((o[0].start, o[0].end), (60.0, 120.0));
        assert!((cov.unwrap() - 100.0 * 8.0 / 9.0).abs() < 1e-9);
    }

    #[test]
    fn overall_is_the_time_all_watched_components_were_up() {
        let c = |segs: Vec<Segment>| ComponentReport {
            kind: Kind::Hub,
            name: "x".into(),
            host: "h".into(),
            uptime_percent: None,
            observed_seconds: 0.0,
            down_seconds: 0.0,
            outages: Vec::new(),
            heartbeat_coverage_percent: None,
            note: None,
            timeline: segs,
        };
        let seg = |start, end, state| Segment { start, end, state };
        let a = c(vec![
            seg(0.0, 50.0, State::Up),
            seg(50.0, 60.0, State::Down),
            seg(60.0, 100.0, State::Up),
        ]);
        let b = c(vec![
            seg(0.0, 55.0, State::Up),
            seg(55.0, 70.0, State::Down),
            seg(70.0, 100.0, State::Up),
        ]);
        let nodata = c(vec![seg(0.0, 100.0, State::NoData)]);
        assert_eq!(overall(&[a, b, nodata]), Some(80.0));
    }
}
