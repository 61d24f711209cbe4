//! JetStream streams: wavectl's stream config to and from the JetStream API's, so that what a
//! server reports compares field by field with the plan.

use std::collections::BTreeMap;
use std::time::Duration;

use async_nats::jetstream::stream::{Config, External, RetentionPolicy, Source, StorageType};

use crate::plan::schema::{Retention, Storage};
use crate::primitive::{StreamConfig, StreamSourceSpec};

pub fn to_api(c: &StreamConfig) -> Config {
    let sources: Vec<Source> = c
        .sources
        .iter()
        .map(|s| Source {
            name: s.name.clone(),
            external: s.external_api.as_ref().map(|api| External {
                api_prefix: api.clone(),
                delivery_prefix: None,
            }),
            ..Default::default()
        })
        .collect();
    Config {
        name: c.name.clone(),
        subjects: c.subjects.clone(),
        storage: match c.storage {
            Storage::File => StorageType::File,
            Storage::Memory => StorageType::Memory,
        },
        retention: match c.retention {
            Retention::Limits => RetentionPolicy::Limits,
            Retention::Interest => RetentionPolicy::Interest,
            Retention::Workqueue => RetentionPolicy::WorkQueue,
        },
        max_age: Duration::from_millis(c.max_age_ms),
        max_bytes: c.max_bytes,
        max_messages: c.max_msgs,
        num_replicas: usize::from(c.replicas),
        duplicate_window: Duration::from_millis(c.duplicate_window_ms),
        sources: (!sources.is_empty()).then_some(sources),
        ..Default::default()
    }
}

pub fn from_api(c: &Config) -> StreamConfig {
    let mut sources: Vec<StreamSourceSpec> = c
        .sources
        .iter()
        .flatten()
        .map(|s| StreamSourceSpec {
            name: s.name.clone(),
            external_api: s.external.as_ref().map(|e| e.api_prefix.clone()),
        })
        .collect();
    sources.sort();
    StreamConfig {
        name: c.name.clone(),
        subjects: c.subjects.clone(),
        storage: match c.storage {
            StorageType::Memory => Storage::Memory,
            _ => Storage::File,
        },
        retention: match c.retention {
            RetentionPolicy::Interest => Retention::Interest,
            RetentionPolicy::WorkQueue => Retention::Workqueue,
            _ => Retention::Limits,
        },
        max_age_ms: c.max_age.as_millis() as u64,
        max_bytes: c.max_bytes,
        max_msgs: c.max_messages,
        replicas: u8::try_from(c.num_replicas).unwrap_or(u8::MAX),
        duplicate_window_ms: c.duplicate_window.as_millis() as u64,
        sources,
    }
}

/// The stream configs in a `/jsz?streams=true&config=true` answer; `None` when it is none.
pub fn streams_of_jsz(json: &str) -> Option<Vec<StreamConfig>> {
    let doc: serde_json::Value = serde_json::from_str(json).ok()?;
    let mut out = Vec::new();
    for account in doc["account_details"].as_array().into_iter().flatten() {
        for stream in account["stream_detail"].as_array().into_iter().flatten() {
            let config: Config = serde_json::from_value(stream["config"].clone()).ok()?;
            out.push(from_api(&config));
        }
    }
    Some(out)
}

/// Each stream's message count, from the same `/jsz` answer (`state.messages`).
pub fn messages_of_jsz(json: &str) -> BTreeMap<String, u64> {
    let doc: serde_json::Value = serde_json::from_str(json).unwrap_or_default();
    let mut out = BTreeMap::new();
    for account in doc["account_details"].as_array().into_iter().flatten() {
        for stream in account["stream_detail"].as_array().into_iter().flatten() {
            if let (Some(name), Some(n)) = (
                stream["name"].as_str(),
                stream["state"]["messages"].as_u64(),
            ) {
                out.insert(name.to_string(), n);
            }
        }
    }
    out
}

/// The `/jsz` query that lists every stream with its config.
pub const JSZ_STREAMS: &str = "/jsz?streams=true&config=true";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_counts_come_from_the_streams_state() {
        let jsz = r#"{"account_details":[{"stream_detail":[{"name":"S","state":{"messages":42,"bytes":100}},{"name":"T","state":{"messages":0}}]}]}"#;
        let m = messages_of_jsz(jsz);
        assert_eq!((m["S"], m["T"]), (42, 0));
        assert!(messages_of_jsz("").is_empty());
    }

    #[test]
    fn a_config_survives_the_round_trip_through_the_api_type() {
        let c = StreamConfig {
            name: "METRICS_ALL_PC2".into(),
            subjects: vec![],
            storage: Storage::File,
            retention: Retention::Limits,
            max_age_ms: 86_400_000,
            max_bytes: -1,
            max_msgs: -1,
            replicas: 1,
            duplicate_window_ms: 120_000,
            sources: vec![
                StreamSourceSpec {
                    name: "METRICS_MAINPC".into(),
                    external_api: Some("$JS.mainpc.API".into()),
                },
                StreamSourceSpec {
                    name: "METRICS_PC2".into(),
                    external_api: None,
                },
            ],
        };
        assert_eq!(from_api(&to_api(&c)), c);
    }
}
