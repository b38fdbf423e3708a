//! Timestamp lookups resolved to the record, as Kafka's `FileRecords.searchForTimestamp` and
//! `RecordBatch.offsetOfMaxTimestamp` do.
//!
//! The time index and batch headers only narrow the search to a batch (its max timestamp); the
//! answer is a record inside it, so the one matching batch is read and decoded (decompressed
//! when needed). Records of a LogAppendTime batch all carry the batch's max timestamp. Fetch
//! never goes through here: it keeps returning the stored bytes.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use super::segment::read_header_at;
use crate::records::batch_codec::{decode_batch, DecodedBatch};
use crate::records::BatchHeader;
use crate::storage::{Offset, OffsetAndTimestamp, TimestampType};

/// Where to find the batch holding a partition's largest timestamp: the segment file, a
/// position at or before the batch, the end of the segment's data, the last offset of the batch
/// and the timestamp.
#[derive(Debug, Clone)]
pub(crate) struct MaxTimestampPlan {
    /// Segment data file.
    pub(crate) file: Arc<File>,
    /// Position to start walking batch headers from (offset index floor).
    pub(crate) from: u64,
    /// End of the segment's whole batches.
    pub(crate) end: u64,
    /// Last offset of the batch holding the maximum timestamp.
    pub(crate) offset: Offset,
    /// The maximum timestamp.
    pub(crate) timestamp: i64,
}

fn invalid(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}

/// Reads and decodes the whole batch whose header `h` sits at `pos`.
fn read_batch(file: &File, pos: u64, h: &BatchHeader) -> io::Result<DecodedBatch> {
    let mut buf = vec![0u8; h.total_len()];
    file.read_exact_at(&mut buf, pos)?;
    decode_batch(&buf).map_err(invalid)
}

/// `(offset, timestamp)` of each record of `batch` as Kafka reports them: a LogAppendTime
/// batch's records all carry its max timestamp.
fn record_times(batch: &DecodedBatch) -> impl Iterator<Item = (Offset, i64)> + '_ {
    let log_append = batch.timestamp_type == TimestampType::LogAppendTime;
    batch.records.iter().map(move |r| {
        let ts = if log_append {
            batch.max_timestamp
        } else {
            r.timestamp_ms
        };
        (batch.base_offset + i64::from(r.offset_delta), ts)
    })
}

/// Finds the first record at or after the log start whose timestamp reaches `timestamp`,
/// walking the batches of `plans` (`(file, start position, end)`, in offset order) and decoding
/// only batches whose max timestamp reaches it.
///
/// # Errors
/// I/O errors; `InvalidData` for a stored batch that does not decode.
pub(crate) fn execute_timestamp_lookup(
    plans: &[(Arc<File>, u64, u64)],
    log_start: Offset,
    timestamp: i64,
) -> io::Result<Option<OffsetAndTimestamp>> {
    for (file, hint, end) in plans {
        let mut pos = *hint;
        while pos < *end {
            let h = read_header_at(file, pos)?;
            if h.max_timestamp >= timestamp && h.last_offset() >= log_start {
                let batch = read_batch(file, pos, &h)?;
                let found = record_times(&batch).find(|&(o, ts)| ts >= timestamp && o >= log_start);
                if let Some((offset, timestamp)) = found {
                    return Ok(Some(OffsetAndTimestamp { offset, timestamp }));
                }
            }
            pos += h.total_len() as u64;
        }
    }
    Ok(None)
}

/// The first record of the planned batch whose timestamp equals the batch's max timestamp.
/// Falls back to the batch's last offset when no record carries it (a header whose max
/// timestamp no record carries, as a producer may send).
///
/// # Errors
/// I/O errors; `InvalidData` when the batch is missing or does not decode.
pub(crate) fn execute_max_timestamp_lookup(plan: &MaxTimestampPlan) -> io::Result<OffsetAndTimestamp> {
    let mut pos = plan.from;
    while pos < plan.end {
        let h = read_header_at(&plan.file, pos)?;
        if h.last_offset() >= plan.offset {
            let batch = read_batch(&plan.file, pos, &h)?;
            let offset = record_times(&batch)
                .find(|&(_, ts)| ts == batch.max_timestamp)
                .map_or(plan.offset, |(o, _)| o);
            return Ok(OffsetAndTimestamp {
                offset,
                timestamp: plan.timestamp,
            });
        }
        pos += h.total_len() as u64;
    }
    Err(invalid(format!(
        "no batch holds offset {} of the max timestamp",
        plan.offset
    )))
}
