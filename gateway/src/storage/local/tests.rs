//! Tests of the local backend: conformance, recovery from torn writes, retention, restart
//! persistence, segment rolling and group commit.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::{FsyncMode, LocalOptions, LocalStorage};
use crate::records::testing::batch;
use crate::storage::{
    conformance, Durability, OffsetSpec, Storage, StorageError, TopicConfig, TopicPartition,
};

async fn open(dir: &Path) -> LocalStorage {
    LocalStorage::open(LocalOptions::new(dir)).await.expect("open")
}

fn tp(topic: &str, p: i32) -> TopicPartition {
    TopicPartition::new(topic, p)
}

/// Segment `.log` files of partition 0 of `topic`, sorted.
async fn segment_files(s: &LocalStorage, dir: &Path, topic: &str) -> Vec<PathBuf> {
    let id = s.describe_topic(topic).await.unwrap().expect("topic").id;
    let pdir = super::meta::partition_dir(dir, id, 0);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&pdir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    files.sort();
    files
}

fn small_segments() -> TopicConfig {
    TopicConfig {
        segment_bytes: 1000,
        ..TopicConfig::default()
    }
}

#[tokio::test]
async fn conformance_with_fsync_always() {
    let dir = tempfile::tempdir().unwrap();
    conformance::run_all(&open(dir.path()).await).await;
}

#[tokio::test]
async fn conformance_with_interval_fsync() {
    let dir = tempfile::tempdir().unwrap();
    let options = LocalOptions {
        fsync: FsyncMode::Interval(Duration::from_millis(20)),
        ..LocalOptions::new(dir.path())
    };
    let s = LocalStorage::open(options).await.unwrap();
    conformance::run_all(&s).await;
    s.flush().await.unwrap();
}

#[tokio::test]
async fn torn_tail_is_truncated_and_appends_continue() {
    let dir = tempfile::tempdir().unwrap();
    let p = tp("torn", 0);
    let log = {
        let s = open(dir.path()).await;
        s.create_topic("torn", 1, TopicConfig::default(), false)
            .await
            .unwrap();
        for i in 0..3 {
            s.append(&p, batch(&[b"one", b"two"], i, -1, -1, -1).freeze(), Durability::Durable)
                .await
                .unwrap();
        }
        segment_files(&s, dir.path(), "torn").await.pop().unwrap()
    };
    let valid_len = std::fs::metadata(&log).unwrap().len();
    // A torn write: half of a fourth batch.
    let fourth = batch(&[b"three"], 9, -1, -1, -1);
    std::fs::OpenOptions::new()
        .append(true)
        .open(&log)
        .unwrap()
        .write_all(&fourth[..fourth.len() / 2])
        .unwrap();
    let s = open(dir.path()).await;
    assert_eq!(
        std::fs::metadata(&log).unwrap().len(),
        valid_len,
        "torn tail truncated"
    );
    assert_eq!(s.offsets(&p).unwrap(), (0, 6));
    assert_eq!(
        s.append(&p, batch(&[b"four"], 10, -1, -1, -1).freeze(), Durability::Durable)
            .await
            .unwrap()
            .base_offset,
        6
    );
    drop(s);
    // Garbage after valid batches, and a bit flip inside the last batch.
    let len_before_garbage = std::fs::metadata(&log).unwrap().len();
    std::fs::OpenOptions::new()
        .append(true)
        .open(&log)
        .unwrap()
        .write_all(&[0xAB; 100])
        .unwrap();
    let s = open(dir.path()).await;
    assert_eq!(std::fs::metadata(&log).unwrap().len(), len_before_garbage);
    assert_eq!(s.offsets(&p).unwrap(), (0, 7));
    drop(s);
    let mut bytes = std::fs::read(&log).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xFF;
    std::fs::write(&log, &bytes).unwrap();
    let s = open(dir.path()).await;
    assert_eq!(s.offsets(&p).unwrap(), (0, 6), "batch with a bad crc dropped");
    let out = s.read(&p, 0, 1 << 20).await.unwrap();
    crate::records::split_and_validate(bytes::BytesMut::from(&out.records[..]).freeze())
        .expect("valid prefix reads back");
    assert_eq!(
        s.append(&p, batch(&[b"again"], 11, -1, -1, -1).freeze(), Durability::Durable)
            .await
            .unwrap()
            .base_offset,
        6
    );
}

#[tokio::test]
async fn topics_offsets_log_start_and_producers_survive_restart() {
    let dir = tempfile::tempdir().unwrap();
    let p = tp("keep", 1);
    let config = TopicConfig {
        retention_ms: 99_000,
        ..TopicConfig::default()
    };
    let first = batch(&[b"a", b"b"], 5, 77, 0, 0);
    let meta = {
        let s = open(dir.path()).await;
        let meta = s.create_topic("keep", 2, config.clone(), false).await.unwrap();
        s.create_topic("gone", 1, TopicConfig::default(), false)
            .await
            .unwrap();
        s.append(&p, first.clone().freeze(), Durability::Durable).await.unwrap();
        s.append(&p, batch(&[b"c", b"d"], 6, 77, 0, 2).freeze(), Durability::Durable)
            .await
            .unwrap();
        assert_eq!(s.delete_records(&p, 1).await.unwrap(), 1);
        s.delete_topic("gone").await.unwrap();
        meta
    };
    let s = open(dir.path()).await;
    assert_eq!(s.list_topics().await.unwrap(), vec![meta]);
    assert_eq!(s.offsets(&p).unwrap(), (1, 4));
    let retry = s.append(&p, first.freeze(), Durability::Durable).await.unwrap();
    assert!(
        retry.duplicate && retry.base_offset == 0,
        "producer state replayed: {retry:?}"
    );
    let gap = s
        .append(&p, batch(&[b"x"], 7, 77, 0, 9).freeze(), Durability::Durable)
        .await;
    assert!(
        matches!(gap, Err(StorageError::OutOfOrderSequence { expected: 4, .. })),
        "{gap:?}"
    );
    let max = s
        .list_offset(&p, OffsetSpec::MaxTimestamp)
        .await
        .unwrap()
        .unwrap();
    // Both records of the last batch carry time 6: the first of them answers (Kafka's
    // offsetOfMaxTimestamp), not the batch's last offset.
    assert_eq!((max.offset, max.timestamp), (2, 6));
}

#[tokio::test]
async fn segments_roll_and_sealed_indexes_are_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let p = tp("roll", 0);
    let value = [7u8; 200];
    let files = {
        let s = open(dir.path()).await;
        s.create_topic("roll", 1, small_segments(), false).await.unwrap();
        for i in 0..20 {
            s.append(&p, batch(&[&value], 1000 + i, -1, -1, -1).freeze(), Durability::Durable)
                .await
                .unwrap();
        }
        s.flush().await.unwrap();
        segment_files(&s, dir.path(), "roll").await
    };
    assert!(files.len() >= 4, "segment.bytes=1000 rolls: {files:?}");
    for f in &files {
        let name = f.file_stem().unwrap().to_str().unwrap();
        assert_eq!(name.len(), 20, "20-digit base offset names");
    }
    assert!(
        files[0].with_extension("index").exists(),
        "sealed segment index persisted"
    );
    std::fs::remove_file(files[1].with_extension("index")).unwrap();
    std::fs::write(files[2].with_extension("timeindex"), b"garbage").unwrap();
    let s = open(dir.path()).await;
    assert_eq!(s.offsets(&p).unwrap(), (0, 20));
    for offset in 0..20 {
        let out = s.read(&p, offset, 1).await.unwrap();
        let (h, _) = crate::records::iter_headers(&out.records)
            .next()
            .unwrap()
            .unwrap();
        assert_eq!(h.base_offset, offset, "every offset found after rebuild");
    }
    let at = s
        .list_offset(&p, OffsetSpec::Timestamp(1010))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((at.offset, at.timestamp), (10, 1010));
    let max = s
        .list_offset(&p, OffsetSpec::MaxTimestamp)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((max.offset, max.timestamp), (19, 1019));
}

#[tokio::test]
async fn retention_by_size_and_time_deletes_whole_sealed_segments() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path()).await;
    let value = [1u8; 200];
    let now = super::retention::now_ms();
    s.create_topic(
        "size",
        1,
        TopicConfig {
            retention_bytes: 1500,
            ..small_segments()
        },
        false,
    )
    .await
    .unwrap();
    s.create_topic(
        "time",
        1,
        TopicConfig {
            retention_ms: 60_000,
            ..small_segments()
        },
        false,
    )
    .await
    .unwrap();
    for i in 0..20 {
        s.append(
            &tp("size", 0),
            batch(&[&value], now, -1, -1, -1).freeze(),
            Durability::Durable,
        )
        .await
        .unwrap();
        // The first 10 records are two hours old, the rest current.
        let ts = if i < 10 { now - 7_200_000 } else { now };
        s.append(
            &tp("time", 0),
            batch(&[&value], ts, -1, -1, -1).freeze(),
            Durability::Durable,
        )
        .await
        .unwrap();
    }
    let before = segment_files(&s, dir.path(), "size").await.len();
    assert!(s.enforce_retention().await.unwrap() > 0);
    let size_files = segment_files(&s, dir.path(), "size").await;
    let total: u64 = size_files
        .iter()
        .map(|f| std::fs::metadata(f).unwrap().len())
        .sum();
    assert!(
        size_files.len() < before && total <= 1500 + 1000,
        "size retention: {total} bytes left"
    );
    let (log_start, hw) = s.offsets(&tp("size", 0)).unwrap();
    assert_eq!(hw, 20);
    assert!(log_start > 0);
    let first_base: i64 = size_files[0]
        .file_stem()
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        log_start, first_base,
        "log start moves to the first remaining segment"
    );
    assert!(matches!(
        s.read(&tp("size", 0), 0, 100).await,
        Err(StorageError::OffsetOutOfRange { .. })
    ));
    let (time_start, _) = s.offsets(&tp("time", 0)).unwrap();
    assert!(
        time_start > 0 && time_start <= 10,
        "only old segments deleted: log start {time_start}"
    );
    let read = s.read(&tp("time", 0), time_start, 1 << 20).await.unwrap();
    assert!(!read.records.is_empty());
    assert_eq!(s.enforce_retention().await.unwrap(), 0, "nothing more to delete");
    // The active segment is never deleted, even when everything is expired.
    s.alter_topic_config(
        "time",
        TopicConfig {
            retention_ms: 0,
            ..small_segments()
        },
        false,
    )
    .await
    .unwrap();
    s.enforce_retention().await.unwrap();
    assert_eq!(segment_files(&s, dir.path(), "time").await.len(), 1);
    assert_eq!(s.offsets(&tp("time", 0)).unwrap().1, 20);
}

#[tokio::test]
async fn background_retention_runs_on_its_interval() {
    let dir = tempfile::tempdir().unwrap();
    let options = LocalOptions {
        retention_check_interval: Duration::from_millis(20),
        ..LocalOptions::new(dir.path())
    };
    let s = LocalStorage::open(options).await.unwrap();
    s.create_topic(
        "bg",
        1,
        TopicConfig {
            retention_bytes: 0,
            ..small_segments()
        },
        false,
    )
    .await
    .unwrap();
    for _ in 0..10 {
        s.append(
            &tp("bg", 0),
            batch(&[&[3u8; 400]], 1, -1, -1, -1).freeze(),
            Durability::Accepted,
        )
        .await
        .unwrap();
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while segment_files(&s, dir.path(), "bg").await.len() > 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "retention task did not delete segments"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(s.offsets(&tp("bg", 0)).unwrap().0 > 0);
}

#[tokio::test]
async fn a_torn_sealed_segment_drops_the_segments_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let p = tp("sealed", 0);
    let files = {
        let s = open(dir.path()).await;
        s.create_topic("sealed", 1, small_segments(), false)
            .await
            .unwrap();
        for i in 0..12 {
            s.append(&p, batch(&[&[5u8; 300]], i, -1, -1, -1).freeze(), Durability::Durable)
                .await
                .unwrap();
        }
        segment_files(&s, dir.path(), "sealed").await
    };
    assert!(files.len() >= 3);
    let len = std::fs::metadata(&files[1]).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&files[1])
        .unwrap()
        .set_len(len - 10)
        .unwrap();
    let s = open(dir.path()).await;
    let second_base: i64 = files[1].file_stem().unwrap().to_str().unwrap().parse().unwrap();
    let (_, hw) = s.offsets(&p).unwrap();
    assert!(
        hw > second_base && hw < 12,
        "log is the valid prefix: high watermark {hw}"
    );
    assert!(!files[2].exists(), "segments after the torn one removed");
    assert_eq!(
        s.append(&p, batch(&[b"next"], 1, -1, -1, -1).freeze(), Durability::Durable)
            .await
            .unwrap()
            .base_offset,
        hw
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_durable_appends_get_dense_unique_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let s = Arc::new(open(dir.path()).await);
    s.create_topic("gc", 2, TopicConfig::default(), false)
        .await
        .unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..16 {
        let s = Arc::clone(&s);
        tasks.spawn(async move {
            let p = tp("gc", t % 2);
            let mut offsets = Vec::new();
            for _ in 0..25 {
                let o = s
                    .append(&p, batch(&[&[t as u8; 512]], 1, -1, -1, -1).freeze(), Durability::Durable)
                    .await
                    .unwrap();
                offsets.push((t % 2, o.base_offset));
            }
            offsets
        });
    }
    let mut all: Vec<(i32, i64)> = tasks.join_all().await.into_iter().flatten().collect();
    all.sort_unstable();
    for part in 0..2 {
        let got: Vec<i64> = all.iter().filter(|(p, _)| *p == part).map(|(_, o)| *o).collect();
        assert_eq!(got, (0..200).collect::<Vec<_>>(), "partition {part}");
    }
}

#[tokio::test]
async fn dropping_the_storage_stops_background_tasks_and_releases_it() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path()).await;
    let weak = Arc::downgrade(&s.inner);
    drop(s);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while weak.upgrade().is_some() {
        assert!(tokio::time::Instant::now() < deadline, "storage still referenced");
        tokio::task::yield_now().await;
    }
}
