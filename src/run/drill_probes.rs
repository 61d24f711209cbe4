//! The partition drill's messages: numbered probes published on each side's own stream during
//! the cut (JetStream publishes, acked by the local server, through the host's connection),
//! and the count of them, by number, in each side's aggregate stream.

use std::collections::BTreeMap;
use std::time::Duration;

use async_nats::jetstream::message::PublishMessage;
use futures::future::join_all;
use serde::{Deserialize, Serialize};

use crate::backend::drill::DrillId;
use crate::load::Loaded;
use crate::run::streams::{self, Servers};
use crate::transport::Host;

/// One side of a partition as its streams see it: where its probes are published and the
/// aggregate stream that must end up holding both sides' probes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SideStreams {
    pub host: String,
    pub server: String,
    pub subject: String,
    pub local: String,
    pub aggregate: String,
}

/// The streams of `a` and `b`: on each, a stream with a literal subject (its own) and an
/// aggregate that sources it and the other side's.
pub fn side_streams(
    loaded: &Loaded,
    a: &str,
    b: &str,
) -> Result<(SideStreams, SideStreams), String> {
    let streams_of = |h: &str| {
        loaded
            .desired
            .hosts
            .get(h)
            .map(|d| d.streams.clone())
            .unwrap_or_default()
    };
    let (sa, sb) = (streams_of(a), streams_of(b));
    let literal = |s: &crate::primitive::StreamSpec| {
        s.config
            .subjects
            .iter()
            .find(|x| !x.contains('*') && !x.contains('>'))
            .cloned()
    };
    for la in sa.iter().filter(|s| literal(s).is_some()) {
        for lb in sb.iter().filter(|s| literal(s).is_some()) {
            let sources = |agg: &crate::primitive::StreamSpec, x: &str, y: &str| {
                let names: Vec<&str> = agg.config.sources.iter().map(|s| s.name.as_str()).collect();
                names.contains(&x) && names.contains(&y)
            };
            let agg_a = sa
                .iter()
                .find(|s| s.server == la.server && sources(s, &la.config.name, &lb.config.name));
            let agg_b = sb
                .iter()
                .find(|s| s.server == lb.server && sources(s, &lb.config.name, &la.config.name));
            if let (Some(agg_a), Some(agg_b)) = (agg_a, agg_b) {
                let side =
                    |host: &str,
                     l: &crate::primitive::StreamSpec,
                     agg: &crate::primitive::StreamSpec| SideStreams {
                        host: host.to_string(),
                        server: l.server.clone(),
                        subject: literal(l).unwrap_or_default(),
                        local: l.config.name.clone(),
                        aggregate: agg.config.name.clone(),
                    };
                return Ok((side(a, la, agg_a), side(b, lb, agg_b)));
            }
        }
    }
    Err(format!(
        "the plan has no aggregate streams to check a partition of {a} and {b} by: expected on each host a stream with its own subject and an aggregate stream whose `sources` hold it and the other host's (like METRICS_ALL_MAINPC and METRICS_ALL_PC2 of plans/phase2.toml)"
    ))
}

/// A probe message's payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeMessage {
    pub drill: String,
    pub side: String,
    pub n: u64,
}

/// A JetStream context on a side's server and the position its aggregate had before.
pub struct SideClient {
    pub side: SideStreams,
    pub js: async_nats::jetstream::Context,
    pub start_seq: u64,
}

async fn last_seq(js: &async_nats::jetstream::Context, stream: &str) -> Result<u64, String> {
    let mut s = js
        .get_stream(stream)
        .await
        .map_err(|e| format!("stream {stream}: {e}"))?;
    let info = s
        .info()
        .await
        .map_err(|e| format!("stream {stream}: {e}"))?;
    Ok(info.state.last_sequence)
}

/// Connects to the side's server; a publish waits up to `ack_wait` for its ack (a server
/// whose link to the other side is cut may hold acks back for a while).
pub async fn connect(
    conn: &dyn Host,
    servers: &Servers,
    side: SideStreams,
    ack_wait: Duration,
) -> Result<SideClient, String> {
    let mut js = streams::jetstream(conn, servers, &side.server, Duration::from_secs(10))
        .await
        .map_err(|e| e.to_string())?;
    js.set_timeout(ack_wait);
    let start_seq = last_seq(&js, &side.aggregate).await?;
    Ok(SideClient {
        side,
        js,
        start_seq,
    })
}

/// Publishes probe 0 (before the cut: the client's reply subscription is then in place on
/// both servers); true when it was acked.
pub async fn warm_up(c: &SideClient, id: &DrillId) -> bool {
    publish_range(c, id, 0..=0).await.acked == 1
}

/// Publishes probes 1..=n on the side's subject, each with its own message id (a retry is
/// dropped by the stream as a duplicate); returns how many the local server acked.
pub async fn publish(c: &SideClient, id: &DrillId, n: u64) -> Published {
    publish_range(c, id, 1..=n).await
}

async fn publish_range(
    c: &SideClient,
    id: &DrillId,
    range: std::ops::RangeInclusive<u64>,
) -> Published {
    let one = |i: u64| {
        let js = c.js.clone();
        let subject = c.side.subject.clone();
        let payload = serde_json::to_vec(&ProbeMessage {
            drill: id.to_string(),
            side: c.side.host.clone(),
            n: i,
        })
        .unwrap_or_default();
        let msg_id = format!("wvdrill-{id}-{}-{i}", c.side.host);
        async move {
            let start = std::time::Instant::now();
            for _ in 0..3 {
                let sent = js
                    .send_publish(
                        subject.clone(),
                        PublishMessage::build()
                            .payload(payload.clone().into())
                            .message_id(&msg_id),
                    )
                    .await;
                if let Ok(ack) = sent
                    && ack.await.is_ok()
                {
                    return Some(start.elapsed().as_millis() as u64);
                }
            }
            None
        }
    };
    let acks = join_all(range.map(one)).await;
    Published {
        acked: acks.iter().flatten().count() as u64,
        slowest_ack_ms: acks.iter().flatten().max().copied(),
    }
}

/// How many probes the local server acked, and the longest one waited for its ack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    pub acked: u64,
    pub slowest_ack_ms: Option<u64>,
}

/// How many times each (side, number) of this drill's probes is in the side's aggregate
/// stream since before the drill.
pub async fn count(c: &SideClient, id: &DrillId) -> Result<BTreeMap<(String, u64), u32>, String> {
    let stream =
        c.js.get_stream(&c.side.aggregate)
            .await
            .map_err(|e| format!("stream {}: {e}", c.side.aggregate))?;
    let last = last_seq(&c.js, &c.side.aggregate).await?;
    let mut out = BTreeMap::new();
    for seq in c.start_seq + 1..=last {
        let Ok(m) = stream.get_raw_message(seq).await else {
            continue;
        };
        if let Ok(p) = serde_json::from_slice::<ProbeMessage>(&m.payload)
            && p.drill == id.as_str()
        {
            *out.entry((p.side, p.n)).or_insert(0) += 1;
        }
    }
    Ok(out)
}

/// What an aggregate holds of both sides' probes 1..=n.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Tally {
    pub present: u64,
    pub missing: u64,
    pub duplicates: u64,
}

pub fn tally(counts: &BTreeMap<(String, u64), u32>, sides: &[&str], n: u64) -> Tally {
    let mut t = Tally::default();
    for side in sides {
        for i in 1..=n {
            match counts.get(&(side.to_string(), i)).copied().unwrap_or(0) {
                0 => t.missing += 1,
                c => {
                    t.present += 1;
                    t.duplicates += u64::from(c - 1);
                }
            }
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tally_counts_every_number_once() {
        let mut c = BTreeMap::new();
        c.insert(("a".to_string(), 1), 1);
        c.insert(("a".to_string(), 2), 2);
        c.insert(("b".to_string(), 1), 1);
        let t = tally(&c, &["a", "b"], 2);
        assert_eq!(
            t,
            Tally {
                present: 3,
                missing: 1,
                duplicates: 1
            }
        );
    }
}
