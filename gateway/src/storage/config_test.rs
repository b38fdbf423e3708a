//! Tests of the typed topic configuration.

use super::*;

#[test]
fn defaults_match_kafka_and_overrides_apply() {
    let c = TopicConfig::from_entries([
        ("retention.ms", Some("1000")),
        ("message.timestamp.type", Some("LogAppendTime")),
    ])
    .unwrap();
    assert_eq!(c.retention_ms, 1000);
    assert_eq!(c.message_timestamp_type, TimestampType::LogAppendTime);
    assert_eq!(c.max_message_bytes, DEFAULT_MAX_MESSAGE_BYTES);
    let e = c.entries();
    assert!(e
        .iter()
        .any(|e| e.name == "retention.ms" && e.value == "1000" && !e.is_default));
    assert!(e
        .iter()
        .any(|e| e.name == "min.insync.replicas" && !e.read_only && e.is_default));
    assert!(
        e.iter().all(|e| !e.read_only),
        "Kafka has no read-only topic config"
    );
}

#[test]
fn bad_values_are_refused_with_a_message() {
    for (k, v) in [
        ("retention.ms", "abc"),
        ("retention.ms", "-5"),
        ("segment.bytes", "10"),
        ("cleanup.policy", "compact"),
        ("seaweedmq.value.format", "avro"),
        ("min.insync.replicas", "0"),
        ("compression.type", "brotli"),
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
    assert!(e
        .iter()
        .any(|e| e.name == "seaweedmq.value.format" && e.value == "raw" && !e.is_default && !e.read_only));
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
    assert_eq!(
        (
            c.message_timestamp_before_max_ms,
            c.message_timestamp_after_max_ms
        ),
        (1000, 0)
    );
    let e = c.entries();
    assert!(e.iter().any(|e| e.name == "message.timestamp.before.max.ms"
        && e.value == "1000"
        && !e.is_default
        && !e.read_only));
    assert!(d
        .entries()
        .iter()
        .any(|e| e.name == "message.timestamp.after.max.ms" && e.value == "3600000" && e.is_default));
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
fn every_kafka_4_topic_config_is_accepted_stored_and_reported() {
    let c = TopicConfig::from_entries([
        ("compression.type", Some("zstd")),
        ("min.insync.replicas", Some("2")),
        ("preallocate", Some("TRUE")),
        ("delete.retention.ms", Some("1000")),
    ])
    .unwrap();
    assert_eq!(c.compression_type, CompressionType::Zstd);
    let e = c.entries();
    let get = |n: &str| {
        e.iter()
            .find(|e| e.name == n)
            .unwrap_or_else(|| panic!("{n} reported"))
    };
    assert_eq!(
        (
            get("compression.type").value.as_str(),
            get("compression.type").is_default
        ),
        ("zstd", false)
    );
    assert_eq!(
        (
            get("min.insync.replicas").value.as_str(),
            get("min.insync.replicas").is_default
        ),
        ("2", false)
    );
    assert_eq!(get("preallocate").value, "true");
    assert_eq!(
        (get("flush.ms").value.as_str(), get("flush.ms").is_default),
        ("9223372036854775807", true)
    );
    let err = TopicConfig::from_entries([("no.such.config", Some("1"))]).unwrap_err();
    assert_eq!(err.to_string(), "Unknown topic config name: no.such.config");
    let lag = TopicConfig::from_entries([
        ("min.compaction.lag.ms", Some("10")),
        ("max.compaction.lag.ms", Some("5")),
    ]);
    assert!(lag
        .unwrap_err()
        .to_string()
        .contains("min.compaction.lag.ms (10) > max.compaction.lag.ms (5)"));
    assert!(TopicConfig::from_entries([("remote.storage.enable", Some("true"))]).is_err());
    let mut json = serde_json::to_value(TopicConfig::default()).unwrap();
    json.as_object_mut().unwrap().remove("stored");
    json.as_object_mut().unwrap().remove("compression_type");
    let old: TopicConfig = serde_json::from_value(json).unwrap();
    assert_eq!(
        old,
        TopicConfig::default(),
        "documents written before these keys read as defaults"
    );
}

#[test]
fn none_resets_to_default() {
    let mut c = TopicConfig::from_entries([("retention.bytes", Some("100"))]).unwrap();
    c.set("retention.bytes", None).unwrap();
    assert_eq!(c, TopicConfig::default());
}
