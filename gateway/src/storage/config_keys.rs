//! Kafka topic configs the gateway stores and reports without changing its behaviour for them,
//! each validated with Apache Kafka 4's type and range (`LogConfig`'s `ConfigDef`).
//!
//! They exist so that tools and clients which set them (Kafka Connect, Streams, Terraform
//! providers, `kafka-configs`) work unchanged: Kafka accepts every one of them on any topic. What
//! each means here is documented in docs/compatibility.md: replication, flushing, index and
//! tiered-storage settings have no equivalent in the gateway's storage.

/// How a value is checked, following Kafka's `ConfigDef` validators.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Kind {
    /// `LONG` at least `min`.
    Long {
        /// Smallest value.
        min: i64,
    },
    /// `INT` within `[min, max]`.
    Int {
        /// Smallest value.
        min: i32,
        /// Largest value.
        max: i32,
    },
    /// `DOUBLE` within `[0, 1]` (`min.cleanable.dirty.ratio`).
    Ratio,
    /// `BOOLEAN` (`true`/`false`, any case).
    Bool,
    /// A replica throttle list: empty, `*`, or `partition:broker` pairs.
    Throttled,
    /// `STRING` with no value check (removed keys of older Kafka versions).
    Text,
}

/// One stored-only topic config.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Key {
    /// Kafka config name.
    pub(crate) name: &'static str,
    /// Value check.
    pub(crate) kind: Kind,
    /// Kafka's default, reported while the topic does not override it.
    pub(crate) default: &'static str,
    /// DescribeConfigs `ConfigType` code (1 BOOLEAN, 3 INT, 5 LONG, 6 DOUBLE, 2 STRING, 7 LIST).
    pub(crate) config_type: i8,
}

const fn long(name: &'static str, min: i64, default: &'static str) -> Key {
    Key {
        name,
        kind: Kind::Long { min },
        default,
        config_type: 5,
    }
}

const fn int(name: &'static str, min: i32, max: i32, default: &'static str) -> Key {
    Key {
        name,
        kind: Kind::Int { min, max },
        default,
        config_type: 3,
    }
}

const fn boolean(name: &'static str, default: &'static str) -> Key {
    Key {
        name,
        kind: Kind::Bool,
        default,
        config_type: 1,
    }
}

/// Every stored-only key. The honoured ones (`retention.*`, `segment.bytes`, `segment.ms`,
/// `cleanup.policy`, `max.message.bytes`, `message.timestamp.*`, `compression.type`) are typed
/// fields of [`TopicConfig`](super::TopicConfig).
pub(crate) const STORED: &[Key] = &[
    long("segment.jitter.ms", 0, "0"),
    int("segment.index.bytes", 4, i32::MAX, "10485760"),
    long("flush.messages", 1, "9223372036854775807"),
    long("flush.ms", 0, "9223372036854775807"),
    int("index.interval.bytes", 0, i32::MAX, "4096"),
    long("delete.retention.ms", 0, "86400000"),
    long("min.compaction.lag.ms", 0, "0"),
    long("max.compaction.lag.ms", 1, "9223372036854775807"),
    long("file.delete.delay.ms", 0, "60000"),
    Key {
        name: "min.cleanable.dirty.ratio",
        kind: Kind::Ratio,
        default: "0.5",
        config_type: 6,
    },
    boolean("unclean.leader.election.enable", "false"),
    int("min.insync.replicas", 1, i32::MAX, "1"),
    int("compression.gzip.level", -1, 9, "-1"),
    int("compression.lz4.level", 1, 17, "9"),
    int("compression.zstd.level", -131_072, 22, "3"),
    boolean("preallocate", "false"),
    Key {
        name: "leader.replication.throttled.replicas",
        kind: Kind::Throttled,
        default: "",
        config_type: 7,
    },
    Key {
        name: "follower.replication.throttled.replicas",
        kind: Kind::Throttled,
        default: "",
        config_type: 7,
    },
    boolean("remote.storage.enable", "false"),
    long("local.retention.ms", -2, "-2"),
    long("local.retention.bytes", -2, "-2"),
    boolean("remote.log.copy.disable", "false"),
    boolean("remote.log.delete.on.disable", "false"),
    // Removed in Kafka 4.0 but accepted by the 3.x brokers whose clients the gateway serves.
    boolean("message.downconversion.enable", "true"),
    Key {
        name: "message.format.version",
        kind: Kind::Text,
        default: "3.0-IV1",
        config_type: 2,
    },
    long("message.timestamp.difference.max.ms", 0, "9223372036854775807"),
];

/// The stored-only key called `name`.
pub(crate) fn find(name: &str) -> Option<&'static Key> {
    STORED.iter().find(|k| k.name == name)
}

/// Checks `value` for `key` and returns it normalised (trimmed; booleans lower-case).
///
/// # Errors
/// Why the value is invalid, in Kafka's words where it has them.
pub(crate) fn check(key: &Key, value: &str) -> Result<String, String> {
    let v = value.trim();
    match key.kind {
        Kind::Long { min } => {
            let n: i64 = v.parse().map_err(|_| "not a number of type LONG".to_string())?;
            if n < min {
                return Err(format!("value must be at least {min}"));
            }
        }
        Kind::Int { min, max } => {
            let n: i32 = v.parse().map_err(|_| "not a number of type INT".to_string())?;
            if n < min || n > max {
                return Err(format!("value must be between {min} and {max}"));
            }
        }
        Kind::Ratio => {
            let n: f64 = v.parse().map_err(|_| "not a number of type DOUBLE".to_string())?;
            if !(0.0..=1.0).contains(&n) {
                return Err("value must be between 0 and 1".into());
            }
        }
        Kind::Bool => {
            return match v.to_ascii_lowercase().as_str() {
                b @ ("true" | "false") => Ok(b.to_string()),
                _ => Err("expected value to be either true or false".into()),
            };
        }
        Kind::Throttled => check_throttled(v)?,
        Kind::Text => {}
    }
    Ok(v.to_string())
}

/// Kafka's `ThrottledReplicaListValidator`: `*`, or `partition:broker` pairs of integers.
fn check_throttled(v: &str) -> Result<(), String> {
    if v.is_empty() || v == "*" {
        return Ok(());
    }
    let pair = |p: &str| {
        let (partition, broker) = p.trim().split_once(':')?;
        (partition.trim().parse::<u32>().is_ok() && broker.trim().parse::<u32>().is_ok()).then_some(())
    };
    if v.split(',').all(|p| pair(p).is_some()) {
        Ok(())
    } else {
        Err(
            "must be the literal '*' or a list of replicas in the following format: \
             [partitionId]:[brokerId],[partitionId]:[brokerId],..."
                .into(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_follow_kafka_validators() {
        let k = |n| find(n).unwrap();
        assert_eq!(check(k("preallocate"), " TRUE").as_deref(), Ok("true"));
        assert!(check(k("preallocate"), "yes").is_err());
        assert!(check(k("min.insync.replicas"), "0").is_err());
        assert!(check(k("min.cleanable.dirty.ratio"), "0.25").is_ok());
        assert!(check(k("min.cleanable.dirty.ratio"), "1.5").is_err());
        assert!(check(k("compression.zstd.level"), "-131072").is_ok());
        assert!(check(k("compression.gzip.level"), "10").is_err());
        assert!(check(k("local.retention.ms"), "-2").is_ok());
        assert!(check(k("local.retention.ms"), "-3").is_err());
        for ok in ["", "*", "0:1,1:2"] {
            assert!(
                check(k("leader.replication.throttled.replicas"), ok).is_ok(),
                "{ok}"
            );
        }
        assert!(check(k("follower.replication.throttled.replicas"), "0-1").is_err());
        assert!(find("no.such.key").is_none());
        for key in STORED {
            assert!(
                check(key, key.default).is_ok(),
                "default of {} is valid",
                key.name
            );
        }
    }
}
