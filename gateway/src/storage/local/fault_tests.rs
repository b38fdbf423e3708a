//! Disk faults in the embedded log: a write that fails part-way must leave nothing a restart
//! misreads, and must never cost acknowledged data in later segments.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::segment::Segment;
use super::{LocalOptions, LocalStorage};
/// A plain (non-idempotent) batch of `values`.
fn batch(values: &[&[u8]]) -> bytes::Bytes {
    crate::records::testing::batch(values, 1_700_000_000_000, -1, -1, -1).freeze()
}
use crate::records::BatchHeader;
use crate::storage::{Durability, Storage, TopicConfig, TopicPartition};

async fn open(dir: &Path) -> LocalStorage {
    LocalStorage::open(LocalOptions::new(dir)).await.expect("open")
}

fn log_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("partition dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    files.sort();
    files
}

/// The state a failed write used to leave: part of a batch after a segment's last batch, then a
/// roll sealed the segment and later segments were written and acknowledged. A restart drops the
/// partial bytes and keeps every later segment.
#[tokio::test]
async fn a_partial_write_sealed_by_a_roll_costs_no_later_segment() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tp = TopicPartition::new("faults", 0);
    let config = TopicConfig {
        segment_bytes: 1000,
        ..TopicConfig::default()
    };
    let pdir = {
        let s = open(dir.path()).await;
        let meta = s.create_topic("faults", 1, config, false).await.expect("create");
        for i in 0..30u8 {
            s.append(&tp, batch(&[&[i; 100]]), Durability::Durable).await.expect("append");
        }
        super::meta::partition_dir(dir.path(), meta.id, 0)
    };
    let files = log_files(&pdir);
    assert!(files.len() >= 3, "segments rolled: {files:?}");
    // A torn batch at the end of the first (sealed) segment: a valid-looking start, cut short.
    let torn = batch(&[&[7u8; 100]]);
    let mut f = std::fs::OpenOptions::new().append(true).open(&files[0]).expect("open segment");
    f.write_all(&torn[..torn.len() / 2]).expect("write partial batch");
    drop(f);

    let s = open(dir.path()).await;
    let (start, end) = s.offsets(&tp).expect("offsets");
    assert_eq!((start, end), (0, 30), "every acknowledged record survives the restart");
    let mut offset = 0;
    while offset < end {
        let out = s.read(&tp, offset, 1 << 20).await.expect("read");
        let header = BatchHeader::parse(&out.records).expect("a batch");
        assert_eq!(header.base_offset, offset, "batches continue densely");
        offset = header.last_offset() + 1;
    }
    assert_eq!(log_files(&pdir).len(), files.len(), "no segment was removed");
}

/// A write that fails and whose partial bytes cannot be removed marks the segment unclean (the
/// partition then goes offline: later appends are refused instead of landing after them).
#[tokio::test]
async fn a_failed_write_whose_bytes_cannot_be_removed_marks_the_segment_unclean() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("00000000000000000000.log");
    std::fs::write(&path, b"").expect("create segment");
    // Read-only: the write fails (EBADF) and so does the truncate.
    let file = std::fs::File::open(&path).expect("open read-only");
    let mut seg = Segment::empty(dir.path(), 0, file);
    let b = batch(&[b"v"]);
    let header = BatchHeader::parse(&b).expect("header");
    let err = seg
        .append(&b[..crate::records::HEADER_LEN], &b[crate::records::HEADER_LEN..], &header, 0, 4096)
        .expect_err("a read-only segment refuses the write");
    assert!(seg.unclean_tail, "the failed cleanup is recorded: {err}");
    assert_eq!(seg.size, 0, "nothing is accounted");
}
