//! Backend-neutral conformance scenarios for [`Storage`].
//!
//! Every backend's tests call [`run_all`] (or single scenarios) against a fresh instance. Each
//! scenario uses its own topic names, so they can share one instance, and panics with a message
//! naming the broken expectation.

use std::time::Duration;

use bytes::{Bytes, BytesMut};

use super::{
    Durability, OffsetAndTimestamp, OffsetSpec, Storage, StorageError, TimestampType, TopicConfig,
    TopicPartition,
};
use crate::records::{self, batch_codec, testing::batch, BatchHeader};

const DEADLINE: Duration = Duration::from_secs(10);

fn tp(topic: &str, partition: i32) -> TopicPartition {
    TopicPartition::new(topic, partition)
}

fn plain(values: &[&[u8]], timestamp: i64) -> BytesMut {
    batch(values, timestamp, -1, -1, -1)
}

async fn create<S: Storage>(s: &S, name: &str, partitions: i32, config: TopicConfig) {
    s.create_topic(name, partitions, config, false)
        .await
        .unwrap_or_else(|e| panic!("create {name}: {e}"));
}

/// Appends with acks=all and returns the base offset.
async fn append<S: Storage>(s: &S, tp: &TopicPartition, b: BytesMut) -> i64 {
    s.append(tp, b.freeze(), Durability::Durable)
        .await
        .unwrap_or_else(|e| panic!("append to {tp}: {e}"))
        .base_offset
}

/// The headers of the batches in `records`.
fn headers(records: &Bytes) -> Vec<BatchHeader> {
    records::iter_headers(records)
        .map(|r| r.expect("stored batches parse").0)
        .collect()
}

/// Create, describe, list, duplicate create, invalid counts, validate-only, delete.
pub async fn topic_lifecycle<S: Storage>(s: &S) {
    let config = TopicConfig {
        retention_ms: 1234,
        ..TopicConfig::default()
    };
    let meta = s
        .create_topic("conf-life", 3, config.clone(), false)
        .await
        .expect("create");
    assert_eq!((meta.partitions, &meta.config), (3, &config));
    let described = s
        .describe_topic("conf-life")
        .await
        .unwrap()
        .expect("described after create");
    assert_eq!(described, meta, "describe returns what create returned");
    assert!(s
        .list_topics()
        .await
        .unwrap()
        .iter()
        .any(|t| t.name.as_ref() == "conf-life"));
    let dup = s
        .create_topic("conf-life", 1, TopicConfig::default(), false)
        .await;
    assert!(
        matches!(dup, Err(StorageError::TopicAlreadyExists(_))),
        "duplicate create: {dup:?}"
    );
    for bad in [0, -1] {
        let r = s
            .create_topic("conf-life-bad", bad, TopicConfig::default(), false)
            .await;
        assert!(
            matches!(r, Err(StorageError::InvalidPartitions(_))),
            "{bad} partitions: {r:?}"
        );
    }
    s.create_topic("conf-life-dry", 1, TopicConfig::default(), true)
        .await
        .expect("validate only");
    assert!(
        s.describe_topic("conf-life-dry").await.unwrap().is_none(),
        "validate_only creates nothing"
    );
    let deleted = s.delete_topic("conf-life").await.expect("delete");
    assert_eq!(deleted.id, meta.id);
    assert!(s.describe_topic("conf-life").await.unwrap().is_none());
    assert!(matches!(
        s.delete_topic("conf-life").await,
        Err(StorageError::UnknownTopicOrPartition(_))
    ));
    let gone = s
        .append(
            &tp("conf-life", 0),
            plain(&[b"x"], 1).freeze(),
            Durability::Durable,
        )
        .await;
    assert!(
        matches!(gone, Err(StorageError::UnknownTopicOrPartition(_))),
        "append after delete: {gone:?}"
    );
}

/// Appended batches read back byte for byte (with the assigned base offsets) and offsets are
/// dense across batches.
pub async fn append_read_round_trip<S: Storage>(s: &S) {
    create(s, "conf-rt", 1, TopicConfig::default()).await;
    let p = tp("conf-rt", 0);
    let mut expected = BytesMut::new();
    let mut next = 0;
    for (i, n) in [3usize, 1, 5].into_iter().enumerate() {
        let values: Vec<Vec<u8>> = (0..n).map(|j| format!("value-{i}-{j}").into_bytes()).collect();
        let refs: Vec<&[u8]> = values.iter().map(Vec::as_slice).collect();
        let b = plain(&refs, 1000 + i as i64);
        let mut stored = b.clone();
        records::set_base_offset(&mut stored, next);
        expected.extend_from_slice(&stored);
        let outcome = s
            .append(&p, b.freeze(), Durability::Durable)
            .await
            .expect("append");
        assert_eq!(outcome.base_offset, next, "offsets are dense");
        assert!(!outcome.duplicate);
        assert_eq!(outcome.log_append_time_ms, -1);
        next += n as i64;
    }
    let out = s.read(&p, 0, 1 << 20).await.expect("read");
    assert_eq!(
        out.records,
        expected.freeze(),
        "stored bytes are returned unchanged"
    );
    assert_eq!((out.high_watermark, out.log_start_offset), (9, 0));
}

/// Reads start at the batch containing the offset, return whole batches, at least one.
pub async fn read_positions_and_limits<S: Storage>(s: &S) {
    create(s, "conf-read", 1, TopicConfig::default()).await;
    let p = tp("conf-read", 0);
    for i in 0..4 {
        append(s, &p, plain(&[b"aaaaaaaaaa", b"bbbbbbbbbb"], i)).await;
    }
    let mid = s.read(&p, 3, 1 << 20).await.expect("read mid");
    let hs = headers(&mid.records);
    assert_eq!(
        hs.first().map(|h| h.base_offset),
        Some(2),
        "starts at the batch holding offset 3"
    );
    assert_eq!(hs.len(), 3);
    let one = s.read(&p, 0, 1).await.expect("tiny max_bytes");
    assert_eq!(
        headers(&one.records).len(),
        1,
        "at least one whole batch even past max_bytes"
    );
    let batch_len = one.records.len();
    let partial = s.read(&p, 0, 2 * batch_len - 1).await.expect("read");
    assert_eq!(partial.records.len(), batch_len, "only whole batches");
    let at_end = s.read(&p, 8, 1 << 20).await.expect("read at high watermark");
    assert!(at_end.records.is_empty());
    assert_eq!(at_end.high_watermark, 8);
    let past = s.read(&p, 9, 1 << 20).await;
    assert!(
        matches!(past, Err(StorageError::OffsetOutOfRange { offset: 9, .. })),
        "{past:?}"
    );
    let missing = s.read(&tp("conf-read", 1), 0, 100).await;
    assert!(
        matches!(missing, Err(StorageError::UnknownTopicOrPartition(_))),
        "{missing:?}"
    );
    let no_topic = s.read(&tp("conf-no-such-topic", 0), 0, 100).await;
    assert!(
        matches!(no_topic, Err(StorageError::UnknownTopicOrPartition(_))),
        "{no_topic:?}"
    );
}

/// Earliest, latest, by timestamp and max timestamp.
pub async fn list_offsets<S: Storage>(s: &S) {
    create(s, "conf-lo", 1, TopicConfig::default()).await;
    let p = tp("conf-lo", 0);
    let empty = s.list_offset(&p, OffsetSpec::Latest).await.unwrap();
    assert_eq!(empty.map(|o| o.offset), Some(0));
    assert_eq!(s.list_offset(&p, OffsetSpec::Timestamp(0)).await.unwrap(), None);
    append(s, &p, plain(&[b"a", b"b"], 100)).await;
    append(s, &p, plain(&[b"c"], 300)).await;
    append(s, &p, plain(&[b"d", b"e"], 200)).await;
    let p = &p;
    let get = |spec| async move { s.list_offset(p, spec).await.expect("list_offset") };
    assert_eq!(get(OffsetSpec::Earliest).await.map(|o| o.offset), Some(0));
    assert_eq!(get(OffsetSpec::Latest).await.map(|o| o.offset), Some(5));
    let by_time = get(OffsetSpec::Timestamp(150))
        .await
        .expect("a batch at or after 150");
    assert_eq!(
        by_time,
        OffsetAndTimestamp {
            offset: 2,
            timestamp: 300
        }
    );
    assert_eq!(get(OffsetSpec::Timestamp(50)).await.map(|o| o.offset), Some(0));
    assert_eq!(get(OffsetSpec::Timestamp(301)).await, None);
    let max = get(OffsetSpec::MaxTimestamp).await.expect("max timestamp");
    assert_eq!(
        max,
        OffsetAndTimestamp {
            offset: 2,
            timestamp: 300
        }
    );
}

/// One batch of keyless records with these CreateTime timestamps, its records section
/// gzip-compressed by kafka-protocol's compressor when `gzip`.
fn timed(timestamps: &[i64], gzip: bool) -> BytesMut {
    use bytes::BufMut;
    use kafka_protocol::compression::{Compressor, Gzip};
    let records: Vec<batch_codec::RecordOut> = timestamps
        .iter()
        .enumerate()
        .map(|(i, &timestamp_ms)| batch_codec::RecordOut {
            offset_delta: i as i32,
            timestamp_ms,
            key: None,
            value: Some(Bytes::from(format!("v{i}"))),
            headers: Vec::new(),
        })
        .collect();
    let plain = batch_codec::encode_batch(0, &records, false);
    if !gzip {
        return BytesMut::from(&plain[..]);
    }
    let mut section = BytesMut::new();
    <Gzip as Compressor<BytesMut>>::compress(&mut section, |b: &mut BytesMut| {
        b.put_slice(&plain[records::HEADER_LEN..]);
        Ok(())
    })
    .expect("gzip");
    let mut out = BytesMut::from(&plain[..records::HEADER_LEN]);
    out.extend_from_slice(&section);
    let len = i32::try_from(out.len() - records::LOG_OVERHEAD).expect("small batch");
    out[8..12].copy_from_slice(&len.to_be_bytes());
    out[22] |= 1; // attributes (i16 at 21): codec id 1, gzip
    let crc = crc32c::crc32c(&out[21..]);
    out[17..21].copy_from_slice(&crc.to_be_bytes());
    out
}

/// Timestamp lookups resolve to a record inside a batch: the first record whose timestamp
/// reaches the target, and the first record holding the largest timestamp (Kafka's
/// `searchForTimestamp` and `offsetOfMaxTimestamp`), also inside compressed batches.
pub async fn timestamps_inside_batches<S: Storage>(s: &S) {
    create(s, "conf-ts-in", 1, TopicConfig::default()).await;
    let p = tp("conf-ts-in", 0);
    let base = 1_700_000_000_000_i64;
    let ten: Vec<i64> = (0..10).map(|i| base + i * 1000).collect();
    assert_eq!(append(s, &p, timed(&ten, false)).await, 0);
    let out_of_order = [base + 30_000, base + 50_000, base + 40_000, base + 50_000];
    assert_eq!(append(s, &p, timed(&out_of_order, true)).await, 10);
    assert_eq!(append(s, &p, timed(&[base + 10_000], false)).await, 14);
    let p = &p;
    let at = |ts| async move {
        s.list_offset(p, OffsetSpec::Timestamp(ts))
            .await
            .expect("list_offset by timestamp")
            .map(|o| (o.offset, o.timestamp))
    };
    assert_eq!(at(base).await, Some((0, base)), "exact first record");
    assert_eq!(
        at(base + 4_500).await,
        Some((5, base + 5_000)),
        "between records 4 and 5"
    );
    assert_eq!(
        at(base + 9_000).await,
        Some((9, base + 9_000)),
        "last record of the batch"
    );
    assert_eq!(at(base + 9_001).await, Some((10, base + 30_000)), "next batch");
    assert_eq!(
        at(base + 35_000).await,
        Some((11, base + 50_000)),
        "inside a gzip batch"
    );
    assert_eq!(
        at(base + 40_000).await,
        Some((11, base + 50_000)),
        "the earliest offset reaching the target, not the closest timestamp"
    );
    assert_eq!(at(base + 50_001).await, None);
    let max = s
        .list_offset(p, OffsetSpec::MaxTimestamp)
        .await
        .expect("list_offset max timestamp");
    assert_eq!(
        max,
        Some(OffsetAndTimestamp {
            offset: 11,
            timestamp: base + 50_000
        }),
        "the first record holding the largest timestamp"
    );
}

/// delete_records moves the log start; reads below it are out of range.
pub async fn delete_records<S: Storage>(s: &S) {
    create(s, "conf-del", 1, TopicConfig::default()).await;
    let p = tp("conf-del", 0);
    for i in 0..3 {
        append(s, &p, plain(&[b"x", b"y"], i)).await;
    }
    assert_eq!(s.delete_records(&p, 3).await.expect("delete"), 3);
    assert_eq!(s.delete_records(&p, 1).await.expect("no move back"), 3);
    assert!(matches!(
        s.read(&p, 1, 100).await,
        Err(StorageError::OffsetOutOfRange { .. })
    ));
    let out = s.read(&p, 3, 1 << 20).await.expect("read at log start");
    assert_eq!(out.log_start_offset, 3);
    assert!(headers(&out.records)
        .first()
        .is_some_and(|h| h.last_offset() >= 3));
    let earliest = s.list_offset(&p, OffsetSpec::Earliest).await.unwrap();
    assert_eq!(earliest.map(|o| o.offset), Some(3));
    assert!(matches!(
        s.delete_records(&p, 7).await,
        Err(StorageError::OffsetOutOfRange { .. })
    ));
    assert_eq!(s.delete_records(&p, -1).await.expect("delete to hw"), 6);
    assert_eq!(
        append(s, &p, plain(&[b"z"], 9)).await,
        6,
        "appends continue after deleting all"
    );
}

/// Idempotent producers: duplicates return the original offset, gaps and old epochs fail.
pub async fn idempotent_producer<S: Storage>(s: &S) {
    create(s, "conf-idem", 1, TopicConfig::default()).await;
    let p = tp("conf-idem", 0);
    let first = batch(&[b"a", b"b"], 1, 4000, 0, 0);
    assert_eq!(append(s, &p, first.clone()).await, 0);
    assert_eq!(append(s, &p, batch(&[b"c"], 1, 4000, 0, 2)).await, 2);
    let retry = s
        .append(&p, first.freeze(), Durability::Durable)
        .await
        .expect("retry");
    assert!(
        retry.duplicate && retry.base_offset == 0,
        "retry is a duplicate of offset 0: {retry:?}"
    );
    assert_eq!(
        s.read(&p, 0, 1 << 20).await.unwrap().high_watermark,
        3,
        "duplicates store nothing"
    );
    let gap = s
        .append(&p, batch(&[b"d"], 1, 4000, 0, 7).freeze(), Durability::Durable)
        .await;
    assert!(
        matches!(
            gap,
            Err(StorageError::OutOfOrderSequence {
                expected: 3,
                got: 7,
                ..
            })
        ),
        "{gap:?}"
    );
    let bad_epoch = s
        .append(&p, batch(&[b"d"], 1, 4000, 1, 5).freeze(), Durability::Durable)
        .await;
    assert!(
        matches!(bad_epoch, Err(StorageError::OutOfOrderSequence { .. })),
        "{bad_epoch:?}"
    );
    assert_eq!(
        append(s, &p, batch(&[b"e"], 1, 4000, 1, 0)).await,
        3,
        "new epoch starts at 0"
    );
    let fenced = s
        .append(&p, batch(&[b"f"], 1, 4000, 0, 3).freeze(), Durability::Durable)
        .await;
    assert!(
        matches!(fenced, Err(StorageError::ProducerFenced { .. })),
        "{fenced:?}"
    );
}

/// A high-watermark watcher wakes when another task appends.
pub async fn watch_high_watermark<S: Storage>(s: &S) {
    create(s, "conf-watch", 1, TopicConfig::default()).await;
    let p = tp("conf-watch", 0);
    let mut rx = s.watch_high_watermark(&p).expect("watch");
    assert_eq!(*rx.borrow_and_update(), 0);
    let append_done = s.append(&p, plain(&[b"a", b"b"], 1).freeze(), Durability::Accepted);
    let (appended, woke) = tokio::join!(
        append_done,
        tokio::time::timeout(DEADLINE, rx.wait_for(|hw| *hw >= 2))
    );
    appended.expect("append");
    assert!(woke.expect("watcher woke before the deadline").is_ok());
    assert!(matches!(
        s.watch_high_watermark(&tp("conf-watch", 5)),
        Err(StorageError::UnknownTopicOrPartition(_))
    ));
}

/// Partitions grow (never shrink) and new partitions accept appends.
pub async fn create_partitions<S: Storage>(s: &S) {
    create(s, "conf-grow", 1, TopicConfig::default()).await;
    let dry = s
        .create_partitions("conf-grow", 4, true)
        .await
        .expect("validate only");
    assert_eq!(dry.partitions, 4);
    assert_eq!(
        s.describe_topic("conf-grow").await.unwrap().map(|t| t.partitions),
        Some(1)
    );
    let meta = s.create_partitions("conf-grow", 3, false).await.expect("grow");
    assert_eq!(meta.partitions, 3);
    assert_eq!(
        s.describe_topic("conf-grow").await.unwrap().map(|t| t.partitions),
        Some(3)
    );
    assert_eq!(append(s, &tp("conf-grow", 2), plain(&[b"x"], 1)).await, 0);
    refuses_shrinking_and_unknown_topics(s, "conf-grow", 3).await;
}

/// A backend that cannot add partitions refuses with [`StorageError::Unsupported`] (Kafka
/// INVALID_REQUEST with the reason), for validate-only requests too, and leaves the topic as it
/// was; shrinking and unknown topics get the usual errors.
pub async fn create_partitions_refused<S: Storage>(s: &S) {
    create(s, "conf-nogrow", 1, TopicConfig::default()).await;
    for validate_only in [true, false] {
        let r = s.create_partitions("conf-nogrow", 3, validate_only).await;
        match r {
            Err(e @ StorageError::Unsupported(_)) => assert_eq!(
                e.response_error(),
                kafka_protocol::ResponseError::InvalidRequest,
                "refusal is a non-retriable Kafka error"
            ),
            other => panic!("growing (validate_only {validate_only}) must be refused: {other:?}"),
        }
    }
    assert_eq!(
        s.describe_topic("conf-nogrow")
            .await
            .unwrap()
            .map(|t| t.partitions),
        Some(1),
        "a refused grow changes nothing"
    );
    assert_eq!(append(s, &tp("conf-nogrow", 0), plain(&[b"x"], 1)).await, 0);
    refuses_shrinking_and_unknown_topics(s, "conf-nogrow", 1).await;
}

/// Asking `topic` (with `current` partitions) for the same or fewer partitions is
/// INVALID_PARTITIONS; growing a topic that does not exist is UNKNOWN_TOPIC_OR_PARTITION.
async fn refuses_shrinking_and_unknown_topics<S: Storage>(s: &S, topic: &str, current: i32) {
    for total in [current, current - 1] {
        let r = s.create_partitions(topic, total, false).await;
        assert!(
            matches!(r, Err(StorageError::InvalidPartitions(_))),
            "{topic}: grow to {total}: {r:?}"
        );
    }
    let r = s.create_partitions("conf-missing", 2, false).await;
    assert!(
        matches!(r, Err(StorageError::UnknownTopicOrPartition(_))),
        "{r:?}"
    );
}

/// Topic config changes are visible to describe and to appends.
pub async fn alter_config<S: Storage>(s: &S) {
    create(s, "conf-alter", 1, TopicConfig::default()).await;
    let p = tp("conf-alter", 0);
    let small = TopicConfig {
        max_message_bytes: 100,
        ..TopicConfig::default()
    };
    s.alter_topic_config("conf-alter", small.clone(), true)
        .await
        .expect("validate only");
    assert_eq!(
        s.describe_topic("conf-alter").await.unwrap().map(|t| t.config),
        Some(TopicConfig::default())
    );
    s.alter_topic_config("conf-alter", small.clone(), false)
        .await
        .expect("alter");
    assert_eq!(
        s.describe_topic("conf-alter").await.unwrap().map(|t| t.config),
        Some(small)
    );
    let big = s
        .append(&p, plain(&[&[0u8; 200]], 1).freeze(), Durability::Durable)
        .await;
    assert!(
        matches!(big, Err(StorageError::BatchTooLarge { max: 100, .. })),
        "{big:?}"
    );
    let r = s
        .alter_topic_config("conf-missing", TopicConfig::default(), false)
        .await;
    assert!(
        matches!(r, Err(StorageError::UnknownTopicOrPartition(_))),
        "{r:?}"
    );
}

/// LogAppendTime topics stamp batches with the broker time.
pub async fn log_append_time<S: Storage>(s: &S) {
    let config = TopicConfig {
        message_timestamp_type: TimestampType::LogAppendTime,
        ..TopicConfig::default()
    };
    create(s, "conf-lat", 1, config).await;
    let p = tp("conf-lat", 0);
    let outcome = s
        .append(&p, plain(&[b"a"], 5).freeze(), Durability::Durable)
        .await
        .expect("append");
    assert!(
        outcome.log_append_time_ms > 5,
        "broker time returned: {outcome:?}"
    );
    let out = s.read(&p, 0, 1 << 20).await.expect("read");
    let h = headers(&out.records)[0];
    assert_eq!(h.max_timestamp, outcome.log_append_time_ms);
    records::split_and_validate(BytesMut::from(&out.records[..]).freeze()).expect("crc still valid");
}

/// What a backend supports beyond the contract every backend meets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// Partitions can be added to an existing topic ([`create_partitions`]); without it the
    /// backend must refuse clearly ([`create_partitions_refused`]).
    pub grow_partitions: bool,
}

impl Capabilities {
    /// Everything supported.
    pub const ALL: Self = Self {
        grow_partitions: true,
    };
}

/// Runs every scenario against one storage instance that supports everything.
pub async fn run_all<S: Storage>(s: &S) {
    run_with(s, Capabilities::ALL).await;
}

/// Runs every scenario against one storage instance, the partition-growth one according to
/// `caps`.
pub async fn run_with<S: Storage>(s: &S, caps: Capabilities) {
    topic_lifecycle(s).await;
    append_read_round_trip(s).await;
    read_positions_and_limits(s).await;
    list_offsets(s).await;
    timestamps_inside_batches(s).await;
    delete_records(s).await;
    idempotent_producer(s).await;
    watch_high_watermark(s).await;
    if caps.grow_partitions {
        create_partitions(s).await;
    } else {
        create_partitions_refused(s).await;
    }
    alter_config(s).await;
    log_append_time(s).await;
}
