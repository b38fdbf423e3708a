//! What the gateway keeps about a topic besides what SMQ's `topic.conf` holds.
//!
//! SMQ stores the partition layout and retention. Everything else of a Kafka topic (its id,
//! the full [`TopicConfig`], and per-partition log starts moved by DeleteRecords, which SMQ
//! cannot delete) is one JSON document in the filer's key-value store under
//! `kafka-gateway/topics/<name>`. A topic created by another SMQ client has no document: its id
//! is derived from its name and SMQ creation time, its config is the default with SMQ's
//! retention, and its log start is SMQ's.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::pb::messaging_pb::TopicRetention;
use crate::storage::TopicConfig;

/// The key-value key of a topic's document.
pub fn kv_key(name: &str) -> String {
    format!("kafka-gateway/topics/{name}")
}

/// The gateway's document for one topic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GatewayMeta {
    /// Kafka topic id (KIP-516).
    pub id: Uuid,
    /// The topic's configuration.
    pub config: TopicConfig,
    /// Partition index to the first offset the gateway serves (DeleteRecords).
    #[serde(default)]
    pub log_start: BTreeMap<i32, i64>,
}

impl GatewayMeta {
    /// The document of a topic without one: derived id, defaults plus SMQ's retention.
    pub fn derived(name: &str, created_at_ns: i64, retention: Option<&TopicRetention>) -> Self {
        let seed = format!("seaweedmq:kafka/{name}@{created_at_ns}");
        let config = TopicConfig {
            retention_ms: retention_ms(retention),
            ..TopicConfig::default()
        };
        Self {
            id: Uuid::new_v5(&Uuid::NAMESPACE_URL, seed.as_bytes()),
            config,
            log_start: BTreeMap::new(),
        }
    }

    /// The gateway log start of `partition` (0 when never moved).
    pub fn log_start(&self, partition: i32) -> i64 {
        self.log_start.get(&partition).copied().unwrap_or(0)
    }
}

/// SMQ retention for a Kafka `retention.ms` (-1 = forever = disabled; rounded up to seconds).
pub fn smq_retention(retention_ms: i64) -> TopicRetention {
    if retention_ms < 0 {
        return TopicRetention {
            retention_seconds: 0,
            enabled: false,
        };
    }
    TopicRetention {
        retention_seconds: (retention_ms + 999) / 1000,
        enabled: true,
    }
}

/// Kafka `retention.ms` for an SMQ retention (none or disabled = -1).
pub fn retention_ms(retention: Option<&TopicRetention>) -> i64 {
    match retention {
        Some(r) if r.enabled => r.retention_seconds.saturating_mul(1000),
        _ => -1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_maps_both_ways_and_ids_are_stable() {
        assert_eq!(
            smq_retention(-1),
            TopicRetention {
                retention_seconds: 0,
                enabled: false
            }
        );
        assert_eq!(smq_retention(1500).retention_seconds, 2);
        assert_eq!(retention_ms(Some(&smq_retention(604_800_000))), 604_800_000);
        assert_eq!(retention_ms(None), -1);
        let a = GatewayMeta::derived("t", 42, None);
        assert_eq!(a.id, GatewayMeta::derived("t", 42, None).id);
        assert_ne!(a.id, GatewayMeta::derived("t", 43, None).id);
        let json = serde_json::to_vec(&a).unwrap();
        assert_eq!(serde_json::from_slice::<GatewayMeta>(&json).unwrap(), a);
    }
}
