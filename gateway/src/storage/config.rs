//! Typed topic configuration: the Kafka topic configs the gateway honours.
//!
//! Honoured keys: `retention.ms`, `retention.bytes`, `segment.bytes`, `segment.ms`,
//! `cleanup.policy` (only `delete`), `max.message.bytes`, `message.timestamp.type`,
//! `message.timestamp.before.max.ms`, `message.timestamp.after.max.ms`, `compression.type`
//! (batches are recompressed on produce when it names a codec), and the gateway's own
//! `seaweedmq.value.format` (how the SeaweedMQ backend stores record values).
//! Every other topic config Apache Kafka 4 accepts is validated as Kafka does and stored
//! (`storage::config_keys`); unknown names are refused with INVALID_CONFIG, as Kafka does.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::config_keys;
use super::StorageError;

/// `compression.type`: the codec batches are stored in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum CompressionType {
    /// Batches are stored with the codec the producer chose.
    #[default]
    Producer,
    /// Batches are stored uncompressed.
    Uncompressed,
    /// gzip.
    Gzip,
    /// snappy (xerial framing, as Kafka's Java producer writes it).
    Snappy,
    /// lz4 (Kafka's framed format).
    Lz4,
    /// zstd.
    Zstd,
}

impl CompressionType {
    const NAMES: &'static [(&'static str, Self)] = &[
        ("uncompressed", Self::Uncompressed),
        ("zstd", Self::Zstd),
        ("lz4", Self::Lz4),
        ("snappy", Self::Snappy),
        ("gzip", Self::Gzip),
        ("producer", Self::Producer),
    ];

    /// Kafka's name of the codec.
    pub fn name(self) -> &'static str {
        Self::NAMES
            .iter()
            .find(|(_, c)| *c == self)
            .map_or("producer", |(n, _)| n)
    }

    /// The batch attribute codec id a batch must carry, or `None` to keep the producer's.
    pub fn attribute_id(self) -> Option<i16> {
        match self {
            Self::Producer => None,
            Self::Uncompressed => Some(0),
            Self::Gzip => Some(1),
            Self::Snappy => Some(2),
            Self::Lz4 => Some(3),
            Self::Zstd => Some(4),
        }
    }
}

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
    /// Codec batches are stored in.
    pub compression_type: CompressionType,
    /// Overrides of the stored-only Kafka configs (`config_keys::STORED`), by name.
    pub stored: BTreeMap<String, String>,
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
            compression_type: CompressionType::Producer,
            stored: BTreeMap::new(),
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

impl TopicConfig {
    /// Builds a config from creation entries applied over the defaults.
    ///
    /// # Errors
    /// [`StorageError::InvalidConfig`] naming the first unknown or invalid entry, or a
    /// combination Kafka refuses ([`TopicConfig::validate`]).
    pub fn from_entries<'a>(entries: impl IntoIterator<Item = (&'a str, Option<&'a str>)>) -> Result<Self, StorageError> {
        let mut config = Self::default();
        for (name, value) in entries {
            config.set(name, value)?;
        }
        config.validate()?;
        Ok(config)
    }

    /// Checks the combinations Kafka's `LogConfig.validateValues` refuses, and remote storage,
    /// which a broker without tiered storage refuses.
    ///
    /// # Errors
    /// [`StorageError::InvalidConfig`] with Kafka's message.
    pub fn validate(&self) -> Result<(), StorageError> {
        let long = |name: &str| {
            let v = self.stored.get(name).map(String::as_str);
            v.or_else(|| config_keys::find(name).map(|k| k.default))
                .and_then(|v| v.parse::<i64>().ok())
                .unwrap_or(0)
        };
        let (min_lag, max_lag) = (long("min.compaction.lag.ms"), long("max.compaction.lag.ms"));
        if min_lag > max_lag {
            return Err(StorageError::InvalidConfig(format!(
                "conflict topic config setting min.compaction.lag.ms ({min_lag}) > max.compaction.lag.ms ({max_lag})"
            )));
        }
        if self.stored.get("remote.storage.enable").is_some_and(|v| v == "true") {
            return Err(StorageError::InvalidConfig(
                "Tiered Storage functionality is disabled in the broker. Topic cannot be configured with \
                 remote log storage (remote.storage.enable)."
                    .into(),
            ));
        }
        Ok(())
    }

    /// Sets one key; `None` resets it to the default.
    ///
    /// # Errors
    /// [`StorageError::InvalidConfig`] for unknown names and out-of-range values.
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
            "compression.type" => {
                self.compression_type = match value.map(str::trim) {
                    None => CompressionType::Producer,
                    Some(v) => CompressionType::NAMES
                        .iter()
                        .find(|(n, _)| *n == v)
                        .map(|(_, c)| *c)
                        .ok_or_else(|| {
                            invalid("String must be one of: uncompressed, zstd, lz4, snappy, gzip, producer")
                        })?,
                }
            }
            _ => {
                let Some(key) = config_keys::find(name) else {
                    return Err(StorageError::InvalidConfig(format!("Unknown topic config name: {name}")));
                };
                match value {
                    None => {
                        self.stored.remove(name);
                    }
                    Some(v) => {
                        let v = config_keys::check(key, v).map_err(|why| invalid(&why))?;
                        self.stored.insert(name.to_string(), v);
                    }
                }
            }
        }
        Ok(())
    }

    /// `message.downconversion.enable` (Kafka 3.x, default true): whether Fetch v0-3 clients are
    /// served stored batches converted to message format v0/v1.
    pub fn allows_down_conversion(&self) -> bool {
        self.stored.get("message.downconversion.enable").is_none_or(|v| v == "true")
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
        out.push(entry(
            "compression.type",
            self.compression_type.name().into(),
            self.compression_type == d.compression_type,
            2,
        ));
        out.extend(config_keys::STORED.iter().map(|k| {
            let set = self.stored.get(k.name);
            ConfigEntry {
                name: k.name,
                value: set.map_or_else(|| k.default.to_string(), String::clone),
                is_default: set.is_none(),
                read_only: false,
                config_type: k.config_type,
            }
        }));
        out
    }
}

fn entry(name: &'static str, value: String, is_default: bool, config_type: i8) -> ConfigEntry {
    ConfigEntry { name, value, is_default, read_only: false, config_type }
}

#[cfg(test)]
#[path = "config_test.rs"]
mod tests;
