//! Typed topic configuration: the Kafka topic configs the gateway honours.
//!
//! Writable keys: `retention.ms`, `retention.bytes`, `segment.bytes`, `segment.ms`,
//! `cleanup.policy` (only `delete`), `max.message.bytes`, `message.timestamp.type`,
//! `message.timestamp.before.max.ms`, `message.timestamp.after.max.ms`, and the
//! gateway's own `seaweedmq.value.format` (how the SeaweedMQ backend stores record values; the
//! embedded log always stores batches as produced).
//! Other well-known Kafka topic configs are reported by DescribeConfigs as read-only with the
//! value the gateway actually behaves with; setting them is refused with INVALID_CONFIG.

use serde::{Deserialize, Serialize};

use super::StorageError;

/// `cleanup.policy`: only deletion is supported (compaction is refused at validation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum CleanupPolicy {
    /// Old segments are deleted by retention.
    #[default]
    Delete,
}

/// `message.timestamp.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum TimestampType {
    /// Timestamps set by the producer are kept.
    #[default]
    CreateTime,
    /// The broker stamps each batch with its append time.
    LogAppendTime,
}

/// `seaweedmq.value.format`: what a record becomes in SeaweedMQ (docs/seaweedmq-mapping.md §5-6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum ValueFormat {
    /// The value carries an envelope with key, headers, timestamp, null flags and producer
    /// state, so every Kafka field round-trips.
    #[default]
    Envelope,
    /// The bare value (and key), for topics shared with SMQ-native readers. Headers, the
    /// producer's timestamp, null-versus-empty and idempotent state across restarts are lost.
    Raw,
}

impl ValueFormat {
    fn name(self) -> &'static str {
        match self {
            Self::Envelope => "envelope",
            Self::Raw => "raw",
        }
    }
}

/// Kafka's default `max.message.bytes` (1 MiB + record batch overhead).
pub const DEFAULT_MAX_MESSAGE_BYTES: i32 = 1_048_588;
/// Kafka 4's default `message.timestamp.before.max.ms`: no limit on past timestamps.
pub const DEFAULT_TIMESTAMP_BEFORE_MAX_MS: i64 = i64::MAX;
/// Kafka 4's default `message.timestamp.after.max.ms`: one hour (KIP-937).
pub const DEFAULT_TIMESTAMP_AFTER_MAX_MS: i64 = 3_600_000;
/// Smallest `segment.bytes` accepted (Kafka 4.0's minimum).
pub const MIN_SEGMENT_BYTES: i64 = 1_048_576;

/// Per-topic configuration. Defaults match Apache Kafka's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TopicConfig {
    /// Delete segments whose newest record is older than this (ms); -1 = forever.
    pub retention_ms: i64,
    /// Delete oldest segments while the partition is larger than this; -1 = unlimited.
    pub retention_bytes: i64,
    /// Roll a new segment when the active one reaches this size.
    pub segment_bytes: i64,
    /// Roll a new segment when the active one is older than this (ms).
    pub segment_ms: i64,
    /// Cleanup policy.
    pub cleanup_policy: CleanupPolicy,
    /// Largest record batch accepted.
    pub max_message_bytes: i32,
    /// Timestamp type of the topic.
    pub message_timestamp_type: TimestampType,
    /// CreateTime topics: how far in the past a record timestamp may be (ms).
    pub message_timestamp_before_max_ms: i64,
    /// CreateTime topics: how far in the future a record timestamp may be (ms).
    pub message_timestamp_after_max_ms: i64,
    /// How the SeaweedMQ backend stores record values.
    pub value_format: ValueFormat,
}

impl Default for TopicConfig {
    fn default() -> Self {
        Self {
            retention_ms: 604_800_000,
            retention_bytes: -1,
            segment_bytes: 1_073_741_824,
            segment_ms: 604_800_000,
            cleanup_policy: CleanupPolicy::Delete,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            message_timestamp_type: TimestampType::CreateTime,
            message_timestamp_before_max_ms: DEFAULT_TIMESTAMP_BEFORE_MAX_MS,
            message_timestamp_after_max_ms: DEFAULT_TIMESTAMP_AFTER_MAX_MS,
            value_format: ValueFormat::Envelope,
        }
    }
}

/// One config as DescribeConfigs reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigEntry {
    /// Kafka config name.
    pub name: &'static str,
    /// Current value.
    pub value: String,
    /// True when the value is the default (not a topic override).
    pub is_default: bool,
    /// True when the gateway does not let clients change it.
    pub read_only: bool,
    /// Kafka config type (ConfigType enum of DescribeConfigs v3+): 3=INT, 5=LONG, 2=STRING.
    pub config_type: i8,
}

/// Configs reported read-only: (name, value the gateway behaves with, Kafka config type).
const READ_ONLY: &[(&str, &str, i8)] = &[
    ("compression.type", "producer", 2),
    ("min.insync.replicas", "1", 3),
    ("unclean.leader.election.enable", "false", 1),
    ("message.downconversion.enable", "false", 1),
    ("min.compaction.lag.ms", "0", 5),
    ("delete.retention.ms", "86400000", 5),
    ("file.delete.delay.ms", "60000", 5),
    ("flush.messages", "9223372036854775807", 5),
    ("flush.ms", "9223372036854775807", 5),
    ("index.interval.bytes", "4096", 3),
    ("preallocate", "false", 1),
];

impl TopicConfig {
    /// Builds a config from creation entries applied over the defaults.
    ///
    /// # Errors
    /// [`StorageError::InvalidConfig`] naming the first unknown, read-only or invalid entry.
    pub fn from_entries<'a>(entries: impl IntoIterator<Item = (&'a str, Option<&'a str>)>) -> Result<Self, StorageError> {
        let mut config = Self::default();
        for (name, value) in entries {
            config.set(name, value)?;
        }
        Ok(config)
    }

    /// Sets one key; `None` resets it to the default.
    ///
    /// # Errors
    /// [`StorageError::InvalidConfig`] for unknown, read-only or out-of-range values.
    pub fn set(&mut self, name: &str, value: Option<&str>) -> Result<(), StorageError> {
        let defaults = Self::default();
        let invalid = |why: &str| {
            StorageError::InvalidConfig(match value {
                Some(v) => format!("invalid value '{v}' for {name}: {why}"),
                None => format!("{name} cannot be reset: {why}"),
            })
        };
        let long = |min: i64| -> Result<Option<i64>, StorageError> {
            match value {
                None => Ok(None),
                Some(v) => {
                    let n: i64 = v.trim().parse().map_err(|_| invalid("not an integer"))?;
                    if n < min {
                        return Err(invalid(&format!("must be at least {min}")));
                    }
                    Ok(Some(n))
                }
            }
        };
        match name {
            "retention.ms" => self.retention_ms = long(-1)?.unwrap_or(defaults.retention_ms),
            "retention.bytes" => self.retention_bytes = long(-1)?.unwrap_or(defaults.retention_bytes),
            "segment.bytes" => {
                let n = long(MIN_SEGMENT_BYTES)?.unwrap_or(defaults.segment_bytes);
                if n > i64::from(i32::MAX) {
                    return Err(invalid("must fit in an int"));
                }
                self.segment_bytes = n;
            }
            "segment.ms" => self.segment_ms = long(1)?.unwrap_or(defaults.segment_ms),
            "max.message.bytes" => {
                let n = long(0)?.map_or(i64::from(defaults.max_message_bytes), |n| n);
                self.max_message_bytes = i32::try_from(n).map_err(|_| invalid("must fit in an int"))?;
            }
            "cleanup.policy" => match value.map(str::trim) {
                None | Some("delete") => self.cleanup_policy = CleanupPolicy::Delete,
                Some(_) => return Err(invalid("only \"delete\" is supported")),
            },
            "message.timestamp.type" => {
                self.message_timestamp_type = match value.map(str::trim) {
                    None | Some("CreateTime") => TimestampType::CreateTime,
                    Some("LogAppendTime") => TimestampType::LogAppendTime,
                    Some(_) => return Err(invalid("expected CreateTime or LogAppendTime")),
                }
            }
            "message.timestamp.before.max.ms" => {
                self.message_timestamp_before_max_ms = long(0)?.unwrap_or(defaults.message_timestamp_before_max_ms)
            }
            "message.timestamp.after.max.ms" => {
                self.message_timestamp_after_max_ms = long(0)?.unwrap_or(defaults.message_timestamp_after_max_ms)
            }
            "seaweedmq.value.format" => {
                self.value_format = match value.map(str::trim) {
                    None | Some("envelope") => ValueFormat::Envelope,
                    Some("raw") => ValueFormat::Raw,
                    Some(_) => return Err(invalid("expected envelope or raw")),
                }
            }
            _ if READ_ONLY.iter().any(|(n, _, _)| *n == name) => {
                return Err(StorageError::InvalidConfig(format!("config {name} is read-only on this gateway")))
            }
            _ => return Err(StorageError::InvalidConfig(format!("unknown topic config {name}"))),
        }
        Ok(())
    }

    /// Every config of the topic, writable ones first, as DescribeConfigs reports them.
    pub fn entries(&self) -> Vec<ConfigEntry> {
        let d = Self::default();
        let ts = |t: TimestampType| match t {
            TimestampType::CreateTime => "CreateTime",
            TimestampType::LogAppendTime => "LogAppendTime",
        };
        let mut out = vec![
            entry("retention.ms", self.retention_ms.to_string(), self.retention_ms == d.retention_ms, 5),
            entry("retention.bytes", self.retention_bytes.to_string(), self.retention_bytes == d.retention_bytes, 5),
            entry("segment.bytes", self.segment_bytes.to_string(), self.segment_bytes == d.segment_bytes, 3),
            entry("segment.ms", self.segment_ms.to_string(), self.segment_ms == d.segment_ms, 5),
            entry("cleanup.policy", "delete".into(), true, 7),
            entry(
                "max.message.bytes",
                self.max_message_bytes.to_string(),
                self.max_message_bytes == d.max_message_bytes,
                3,
            ),
            entry(
                "message.timestamp.type",
                ts(self.message_timestamp_type).into(),
                self.message_timestamp_type == d.message_timestamp_type,
                2,
            ),
            entry(
                "message.timestamp.before.max.ms",
                self.message_timestamp_before_max_ms.to_string(),
                self.message_timestamp_before_max_ms == d.message_timestamp_before_max_ms,
                5,
            ),
            entry(
                "message.timestamp.after.max.ms",
                self.message_timestamp_after_max_ms.to_string(),
                self.message_timestamp_after_max_ms == d.message_timestamp_after_max_ms,
                5,
            ),
            entry(
                "seaweedmq.value.format",
                self.value_format.name().into(),
                self.value_format == d.value_format,
                2,
            ),
        ];
        out.extend(READ_ONLY.iter().map(|(name, value, t)| ConfigEntry {
            name,
            value: (*value).to_string(),
            is_default: true,
            read_only: true,
            config_type: *t,
        }));
        out
    }
}

fn entry(name: &'static str, value: String, is_default: bool, config_type: i8) -> ConfigEntry {
    ConfigEntry { name, value, is_default, read_only: false, config_type }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_kafka_and_overrides_apply() {
        let c = TopicConfig::from_entries([("retention.ms", Some("1000")), ("message.timestamp.type", Some("LogAppendTime"))])
            .unwrap();
        assert_eq!(c.retention_ms, 1000);
        assert_eq!(c.message_timestamp_type, TimestampType::LogAppendTime);
        assert_eq!(c.max_message_bytes, DEFAULT_MAX_MESSAGE_BYTES);
        let e = c.entries();
        assert!(e.iter().any(|e| e.name == "retention.ms" && e.value == "1000" && !e.is_default));
        assert!(e.iter().any(|e| e.name == "min.insync.replicas" && e.read_only));
    }

    #[test]
    fn bad_values_are_refused_with_a_message() {
        for (k, v) in [
            ("retention.ms", "abc"),
            ("retention.ms", "-5"),
            ("segment.bytes", "10"),
            ("cleanup.policy", "compact"),
            ("seaweedmq.value.format", "avro"),
            ("min.insync.replicas", "2"),
            ("no.such.config", "1"),
        ] {
            let err = TopicConfig::from_entries([(k, Some(v))]).unwrap_err();
            assert!(matches!(err, StorageError::InvalidConfig(_)), "{k}={v}");
            assert!(err.to_string().contains(k), "{err}");
        }
    }

    #[test]
    fn value_format_is_envelope_unless_set_to_raw_and_old_documents_read_as_envelope() {
        let c = TopicConfig::from_entries([("seaweedmq.value.format", Some(" raw"))]).unwrap();
        assert_eq!(c.value_format, ValueFormat::Raw);
        let e = c.entries();
        assert!(e.iter().any(|e| e.name == "seaweedmq.value.format" && e.value == "raw" && !e.is_default && !e.read_only));
        let mut json = serde_json::to_value(TopicConfig::default()).unwrap();
        json.as_object_mut().unwrap().remove("value_format");
        let old: TopicConfig = serde_json::from_value(json).unwrap();
        assert_eq!(old.value_format, ValueFormat::Envelope);
    }

    #[test]
    fn timestamp_windows_default_to_kafka_4_and_old_documents_get_them() {
        let d = TopicConfig::default();
        assert_eq!(d.message_timestamp_before_max_ms, i64::MAX);
        assert_eq!(d.message_timestamp_after_max_ms, 3_600_000);
        let c = TopicConfig::from_entries([
            ("message.timestamp.before.max.ms", Some("1000")),
            ("message.timestamp.after.max.ms", Some("0")),
        ])
        .unwrap();
        assert_eq!((c.message_timestamp_before_max_ms, c.message_timestamp_after_max_ms), (1000, 0));
        let e = c.entries();
        assert!(e.iter().any(|e| e.name == "message.timestamp.before.max.ms" && e.value == "1000" && !e.is_default && !e.read_only));
        assert!(d.entries().iter().any(|e| e.name == "message.timestamp.after.max.ms" && e.value == "3600000" && e.is_default));
        for bad in ["-1", "x"] {
            assert!(TopicConfig::from_entries([("message.timestamp.after.max.ms", Some(bad))]).is_err());
        }
        let mut json = serde_json::to_value(TopicConfig::default()).unwrap();
        let obj = json.as_object_mut().unwrap();
        obj.remove("message_timestamp_before_max_ms");
        obj.remove("message_timestamp_after_max_ms");
        let old: TopicConfig = serde_json::from_value(json).unwrap();
        assert_eq!(old, TopicConfig::default());
    }

    #[test]
    fn none_resets_to_default() {
        let mut c = TopicConfig::from_entries([("retention.bytes", Some("100"))]).unwrap();
        c.set("retention.bytes", None).unwrap();
        assert_eq!(c, TopicConfig::default());
    }
}
