//! One partition's log: appends under a short lock, lock-free positional reads, offset lookups
//! and log-start moves.
//!
//! Locking: `state` (a `parking_lot::Mutex`) guards segment bookkeeping and is held only for
//! in-memory work and the `write(2)` of an append, never across an fsync (see `flush.rs`) or a
//! read of record data: readers copy what they need (an `Arc<File>`, a position range) under
//! the lock and `pread` after releasing it. The high watermark is published under the lock
//! after the bytes are written, so whatever a watcher or reader sees as below it is readable.

use std::fs::File;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use parking_lot::Mutex;
use tokio::sync::watch;

use super::flush::SyncStatus;
use super::recovery::Recovered;
use super::segment::{self, read_header_at, Segment};
use super::timestamp::MaxTimestampPlan;
use crate::records::{self, BatchHeader, LOG_OVERHEAD};
use crate::storage::producer_state::{ProducerStateTable, SequenceCheck};
use crate::storage::{
    AppendOutcome, Offset, Result, StorageError, TimestampType, TopicConfig, TopicPartition,
};

/// A sealed segment whose data still needs an fsync and whose index files need writing.
#[derive(Debug)]
pub(crate) struct SealedSegment {
    /// Data file.
    pub(crate) file: Arc<File>,
    /// Base offset (file name).
    pub(crate) base_offset: Offset,
    /// Offset index image.
    pub(crate) offset_index: Vec<u8>,
    /// Time index image.
    pub(crate) time_index: Vec<u8>,
}

/// Mutable bookkeeping of a partition.
#[derive(Debug)]
pub(crate) struct PartitionState {
    /// Segments by base offset; the last one is active. Never empty.
    pub(crate) segments: Vec<Segment>,
    /// First readable offset.
    pub(crate) log_start: Offset,
    /// Idempotent-producer state.
    pub(crate) producers: ProducerStateTable,
    /// Rolled segments not yet synced.
    pub(crate) sealed: Vec<SealedSegment>,
    /// Set once an fsync failed: the page cache can no longer be trusted, appends are refused.
    pub(crate) failed: Option<Arc<str>>,
}

impl PartitionState {
    /// The active segment.
    pub(crate) fn active(&self) -> &Segment {
        &self.segments[self.segments.len() - 1]
    }

    fn active_mut(&mut self) -> &mut Segment {
        let last = self.segments.len() - 1;
        &mut self.segments[last]
    }

    /// The high watermark: offset the next record gets.
    pub(crate) fn next_offset(&self) -> Offset {
        self.active().next_offset
    }
}

/// The result of [`Partition::append`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Appended {
    /// What the caller reports.
    pub(crate) outcome: AppendOutcome,
    /// Offset after the batch: what must be durable for an acks=all reply.
    pub(crate) end_offset: Offset,
}

/// Where a read will copy from, computed under the lock.
#[derive(Debug)]
pub(crate) struct ReadPlan {
    /// File and `[hint, end)` byte range to search; `None` when nothing is readable.
    pub(crate) source: Option<(Arc<File>, u64, u64)>,
    /// Requested offset.
    pub(crate) offset: Offset,
    /// High watermark at planning time.
    pub(crate) high_watermark: Offset,
    /// Log start at planning time.
    pub(crate) log_start: Offset,
}

/// A partition of the local log.
#[derive(Debug)]
pub(crate) struct Partition {
    /// Its name, for errors and logs.
    pub(crate) tp: TopicPartition,
    /// Directory of its segment files.
    pub(crate) dir: PathBuf,
    /// Bookkeeping; see the module docs for what may happen under it.
    pub(crate) state: Mutex<PartitionState>,
    /// High watermark for long-poll fetches.
    pub(crate) hw: watch::Sender<Offset>,
    /// Durable offset for acks=all appends (group commit; see `flush.rs`).
    pub(crate) durable: watch::Sender<SyncStatus>,
    /// True while a sync loop runs for this partition.
    pub(crate) syncing: Mutex<bool>,
    /// Serializes writes of the `log-start` file.
    pub(crate) log_start_file: tokio::sync::Mutex<()>,
    /// Bytes between offset index entries.
    pub(crate) index_interval: u64,
}

fn corrupt(e: impl std::fmt::Display) -> StorageError {
    StorageError::CorruptBatch(e.to_string())
}

impl Partition {
    /// Wraps a recovered partition.
    pub(crate) fn new(tp: TopicPartition, dir: PathBuf, recovered: Recovered, index_interval: u64) -> Self {
        let Recovered {
            segments,
            log_start,
            producers,
        } = recovered;
        let next = segments.last().map_or(0, |s| s.next_offset);
        Self {
            tp,
            dir,
            state: Mutex::new(PartitionState {
                segments,
                log_start,
                producers,
                sealed: Vec::new(),
                failed: None,
            }),
            hw: watch::Sender::new(next),
            durable: watch::Sender::new(SyncStatus {
                durable: next,
                failed: None,
            }),
            syncing: Mutex::new(false),
            log_start_file: tokio::sync::Mutex::new(()),
            index_interval,
        }
    }

    /// Current `(log start, high watermark)`.
    pub(crate) fn offsets(&self) -> (Offset, Offset) {
        let st = self.state.lock();
        (st.log_start, st.next_offset())
    }

    /// Assigns offsets to one batch and writes it to the active segment (rolling first when
    /// the segment is full or old). Does not wait for durability.
    ///
    /// # Errors
    /// Corrupt or oversized batches, idempotence violations, and I/O failures.
    pub(crate) fn append(&self, batch: Bytes, config: &TopicConfig, now_ms: i64) -> Result<Appended> {
        let mut header = BatchHeader::parse(&batch).map_err(corrupt)?;
        if header.total_len() != batch.len() {
            return Err(corrupt(format!(
                "batch declares {} bytes, {} given",
                header.total_len(),
                batch.len()
            )));
        }
        let max = usize::try_from(config.max_message_bytes).unwrap_or(0);
        if batch.len() > max {
            return Err(StorageError::BatchTooLarge {
                size: batch.len(),
                max,
            });
        }
        let mut st = self.state.lock();
        if let Some(why) = &st.failed {
            return Err(StorageError::Io(io::Error::other(format!(
                "partition {} is offline: {why}",
                self.tp
            ))));
        }
        if let SequenceCheck::Duplicate { base_offset } = st.producers.check(&header)? {
            let outcome = AppendOutcome {
                base_offset,
                log_append_time_ms: -1,
                log_start_offset: st.log_start,
                duplicate: true,
            };
            return Ok(Appended {
                outcome,
                end_offset: base_offset + header.offset_count(),
            });
        }
        let base = st.next_offset();
        let segment_bytes = u64::try_from(config.segment_bytes).unwrap_or(u64::MAX);
        if st.active().should_roll(
            batch.len() as u64,
            header.offset_count(),
            now_ms,
            segment_bytes,
            config.segment_ms,
        ) {
            self.roll(&mut st, base)?;
        }
        header.base_offset = base;
        let mut log_append_time_ms = -1;
        if config.message_timestamp_type == TimestampType::LogAppendTime {
            header.max_timestamp = now_ms;
            log_append_time_ms = now_ms;
        }
        let stored = records::stored_header(&batch, base, (log_append_time_ms >= 0).then_some(now_ms));
        let interval = self.index_interval;
        if let Err(e) =
            st.active_mut()
                .append(&stored, &batch[records::HEADER_LEN..], &header, now_ms, interval)
        {
            self.on_write_error(&mut st, &e);
            return Err(e.into());
        }
        st.producers.record(&header, base);
        let end_offset = header.last_offset() + 1;
        self.hw.send_replace(end_offset);
        let outcome = AppendOutcome {
            base_offset: base,
            log_append_time_ms,
            log_start_offset: st.log_start,
            duplicate: false,
        };
        Ok(Appended { outcome, end_offset })
    }

    /// Writes one batch at `base`, an offset another system assigned (the SeaweedMQ backend's
    /// write-ahead log: offsets come from the broker). No producer check and no offset
    /// assignment: `base` below the high watermark is refused (the log stays dense below its
    /// end); `base` above it starts a new segment there, leaving a gap nobody reads. Does not
    /// wait for durability.
    ///
    /// # Errors
    /// A corrupt batch, `base` below the high watermark, an offline partition, I/O failures.
    pub(crate) fn append_at(
        &self,
        batch: &[u8],
        base: Offset,
        config: &TopicConfig,
        now_ms: i64,
    ) -> Result<Offset> {
        let mut header = BatchHeader::parse(batch).map_err(corrupt)?;
        if header.total_len() != batch.len() {
            return Err(corrupt(format!(
                "batch declares {} bytes, {} given",
                header.total_len(),
                batch.len()
            )));
        }
        let mut st = self.state.lock();
        if let Some(why) = &st.failed {
            return Err(StorageError::Io(io::Error::other(format!(
                "partition {} is offline: {why}",
                self.tp
            ))));
        }
        let next = st.next_offset();
        if base < next {
            return Err(StorageError::Io(io::Error::other(format!(
                "{}: offset {base} is below the log end {next}",
                self.tp
            ))));
        }
        let segment_bytes = u64::try_from(config.segment_bytes).unwrap_or(u64::MAX);
        let gap = base > next && st.active().size > 0;
        if gap
            || st.active().should_roll(
                batch.len() as u64,
                header.offset_count(),
                now_ms,
                segment_bytes,
                config.segment_ms,
            )
        {
            self.roll(&mut st, base)?;
        } else if base > next {
            // The empty active segment moves to `base`.
            let old = st.segments.pop().map(|s| s.base_offset);
            st.segments.push(Segment::create(&self.dir, base)?);
            if let Some(old) = old {
                segment::delete_files(&self.dir, old)?;
            }
        }
        if st.log_start == next && base > next {
            st.log_start = base;
        }
        header.base_offset = base;
        let stored = records::stored_header(batch, base, None);
        let interval = self.index_interval;
        if let Err(e) =
            st.active_mut()
                .append(&stored, &batch[records::HEADER_LEN..], &header, now_ms, interval)
        {
            self.on_write_error(&mut st, &e);
            return Err(e.into());
        }
        let end_offset = header.last_offset() + 1;
        self.hw.send_replace(end_offset);
        Ok(end_offset)
    }

    /// Bytes of segment data held (including a partly trimmed first segment).
    pub(crate) fn size_bytes(&self) -> u64 {
        self.state.lock().segments.iter().map(|s| s.size).sum()
    }

    /// A failed append: the segment dropped the partial bytes (the partition stays writable,
    /// as after a full disk is freed) unless that failed too; then the partition goes offline.
    fn on_write_error(&self, st: &mut PartitionState, e: &io::Error) {
        if st.active().unclean_tail {
            tracing::error!(partition = %self.tp, error = %e, "a failed write left bytes that could not be removed; taking the partition offline");
            let why: Arc<str> = e.to_string().into();
            st.failed = Some(Arc::clone(&why));
            self.durable.send_modify(|s| s.failed = Some(why));
        } else {
            tracing::warn!(partition = %self.tp, error = %e, "append failed; nothing of it was kept");
        }
    }

    /// Seals the active segment and starts a new one at `next`.
    fn roll(&self, st: &mut PartitionState, next: Offset) -> io::Result<()> {
        let new = Segment::create(&self.dir, next)?;
        let old = st.active();
        let (offset_index, time_index) = old.index_images();
        let sealed = SealedSegment {
            file: Arc::clone(&old.file),
            base_offset: old.base_offset,
            offset_index,
            time_index,
        };
        tracing::debug!(partition = %self.tp, base = next, "rolling segment");
        st.sealed.push(sealed);
        st.segments.push(new);
        Ok(())
    }

    /// Checks `offset` against the log range and finds the segment range to read from.
    ///
    /// # Errors
    /// [`StorageError::OffsetOutOfRange`] outside `[log start, high watermark]`.
    pub(crate) fn plan_read(&self, offset: Offset) -> Result<ReadPlan> {
        let st = self.state.lock();
        let (log_start, high_watermark) = (st.log_start, st.next_offset());
        if offset < log_start || offset > high_watermark {
            return Err(StorageError::OffsetOutOfRange {
                offset,
                log_start,
                high_watermark,
            });
        }
        let i = st
            .segments
            .partition_point(|s| s.base_offset <= offset)
            .saturating_sub(1);
        let source = st.segments[i..]
            .iter()
            .find(|s| s.next_offset > offset)
            .map(|s| (Arc::clone(&s.file), s.position_hint(offset), s.size));
        Ok(ReadPlan {
            source,
            offset,
            high_watermark,
            log_start,
        })
    }

    /// Segments that may hold a batch with max timestamp at or after `timestamp`, as
    /// `(file, hint, size)`, plus the log start.
    pub(crate) fn plan_timestamp(&self, timestamp: i64) -> (Vec<(Arc<File>, u64, u64)>, Offset) {
        let st = self.state.lock();
        let plans = st
            .segments
            .iter()
            .filter(|s| s.max_timestamp >= timestamp && s.next_offset > st.log_start)
            .map(|s| (Arc::clone(&s.file), s.timestamp_hint(timestamp), s.size))
            .collect();
        (plans, st.log_start)
    }

    /// Where the batch with the largest timestamp is, for
    /// [`execute_max_timestamp_lookup`](super::timestamp::execute_max_timestamp_lookup).
    pub(crate) fn max_timestamp(&self) -> Option<MaxTimestampPlan> {
        let st = self.state.lock();
        let mut best: Option<&Segment> = None;
        for s in st
            .segments
            .iter()
            .filter(|s| s.next_offset > st.log_start && s.size > 0)
        {
            if best.is_none_or(|b| s.max_timestamp > b.max_timestamp) {
                best = Some(s);
            }
        }
        best.map(|s| MaxTimestampPlan {
            file: Arc::clone(&s.file),
            from: s.position_hint(s.offset_of_max_timestamp),
            end: s.size,
            offset: s.offset_of_max_timestamp,
            timestamp: s.max_timestamp,
        })
    }

    /// Moves the log start to `offset` (`-1` = the high watermark) and detaches the segments
    /// entirely below it. Returns the new log start and the base offsets of segment files to
    /// delete; the caller persists the log start and deletes the files.
    ///
    /// # Errors
    /// [`StorageError::OffsetOutOfRange`] for an offset above the high watermark or below -1.
    pub(crate) fn move_log_start(&self, offset: Offset) -> Result<(Offset, bool, Vec<Offset>)> {
        let mut st = self.state.lock();
        let high_watermark = st.next_offset();
        let target = if offset == -1 { high_watermark } else { offset };
        if target < 0 || target > high_watermark {
            return Err(StorageError::OffsetOutOfRange {
                offset,
                log_start: st.log_start,
                high_watermark,
            });
        }
        if target <= st.log_start {
            return Ok((st.log_start, false, Vec::new()));
        }
        st.log_start = target;
        st.producers.remove_before(target);
        let doomed = detach_below(&mut st, target);
        Ok((target, true, doomed))
    }
}

/// Detaches every non-active segment whose offsets all lie below `log_start`; returns their
/// base offsets.
pub(crate) fn detach_below(st: &mut PartitionState, log_start: Offset) -> Vec<Offset> {
    let mut n = 0;
    while n + 1 < st.segments.len() && st.segments[n + 1].base_offset <= log_start {
        n += 1;
    }
    let doomed: Vec<Offset> = st.segments.drain(..n).map(|s| s.base_offset).collect();
    st.sealed.retain(|s| !doomed.contains(&s.base_offset));
    doomed
}

/// Deletes detached segment files, logging (not failing on) errors: leftovers are removed on
/// the next open because they lie below the log start.
pub(crate) fn delete_segment_files(dir: &std::path::Path, bases: &[Offset]) {
    for &base in bases {
        if let Err(e) = segment::delete_files(dir, base) {
            tracing::warn!(dir = %dir.display(), base, error = %e, "failed to delete segment files");
        }
    }
}

/// Executes a read plan: finds the batch holding the offset and copies whole batches up to
/// `max_bytes` (at least one) with one `pread`.
///
/// # Errors
/// I/O errors.
pub(crate) fn execute_read(plan: &ReadPlan, max_bytes: usize) -> io::Result<Bytes> {
    let Some((file, mut pos, end)) = &plan.source else {
        return Ok(Bytes::new());
    };
    let first = loop {
        if pos >= *end {
            return Ok(Bytes::new());
        }
        let h = read_header_at(file, pos)?;
        if h.last_offset() >= plan.offset {
            break h;
        }
        pos += h.total_len() as u64;
    };
    let available = usize::try_from(end - pos).unwrap_or(usize::MAX);
    let want = max_bytes.min(available).max(first.total_len());
    let mut buf = BytesMut::zeroed(want);
    std::os::unix::fs::FileExt::read_exact_at(&**file, &mut buf, pos)?;
    let mut keep = 0usize;
    while keep + LOG_OVERHEAD <= buf.len() {
        let len = i32::from_be_bytes([buf[keep + 8], buf[keep + 9], buf[keep + 10], buf[keep + 11]]);
        let total = LOG_OVERHEAD + usize::try_from(len).unwrap_or(usize::MAX / 2);
        if keep + total > buf.len() {
            break;
        }
        keep += total;
    }
    buf.truncate(keep.max(first.total_len()));
    Ok(buf.freeze())
}
