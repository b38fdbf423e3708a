//! Checking what a broker kept against the write-ahead log, and republishing what it lost
//! (docs/seaweedmq-mapping.md §3.3): the parts of [`super::wal_sync`]'s recovery that read the
//! broker back and publish again.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{debug, error, info};

use super::append::messages_of_batch;
use super::durability::FlushCursor;
use super::partition::PartitionState;
use super::publish::Publisher;
use super::{Inner, TopicInfo};
use crate::records::BatchHeader;
use crate::storage::{Offset, Result, StorageError, TimestampType, TopicPartition, ValueFormat};

/// How long an offset right after the broker's flushed files stays unreadable, with the flushed
/// files and the high watermark unchanged, before it counts as never stored (three default
/// flush intervals).
const HOLE_AFTER: Duration = Duration::from_secs(15);
/// Longest one read-back of a probed offset may take (the subscription's own deadline is 5 s).
const PROBE_READ: Duration = Duration::from_secs(6);
/// WAL bytes read per replay step.
const REPLAY_READ_BYTES: usize = 4 << 20;

/// What [`Inner::check_broker_kept`] found.
pub(super) enum Kept {
    /// The broker holds what it should (or nothing can be checked).
    Yes,
    /// The broker counted offsets from this one up to its high watermark without storing
    /// anything there.
    HoleFrom(Offset),
}

/// WAL entries to publish again: `from..end`, each landing `shift` offsets after its own (0
/// normally; past a hole, the hole's length).
pub(super) struct ReplaySpan {
    pub(super) from: Offset,
    pub(super) end: Offset,
    pub(super) shift: Offset,
}

fn io(e: impl std::fmt::Display) -> StorageError {
    StorageError::Io(std::io::Error::other(e.to_string()))
}

impl Inner {
    /// Refuses further appends to `tp` with `why` (kept until the gateway restarts).
    pub(super) fn fence(&self, tp: &TopicPartition, state: &PartitionState, why: String) -> StorageError {
        error!(partition = %tp, reason = %why, "partition fenced: appends are refused; the write-ahead log keeps its records");
        *state.fenced.lock() = Some(why.clone());
        io(why)
    }

    /// Checks that the broker still holds the first WAL entry past its flushed files, when
    /// that entry is below the broker's high watermark. A broker that restarted keeps only its
    /// flushed files but continues after its checkpoint, so records between the two are gone
    /// while their offsets count as used: they cannot be published again at their offsets.
    pub(super) async fn check_broker_kept(
        &self,
        tp: &TopicPartition,
        info: &TopicInfo,
        start: Offset,
        below: Offset,
        broker_hw: Offset,
    ) -> Result<Kept> {
        let Some(wal) = &self.wal else {
            return Ok(Kept::Yes);
        };
        let name = tp.to_string();
        let mut cursor = FlushCursor::default();
        let flushed = self
            .client
            .flushed(&tp.topic, tp.partition, &mut cursor)
            .await
            .map_err(|e| e.into_storage(&name))?;
        let probe = (flushed + 1).max(start);
        if probe >= below {
            return Ok(Kept::Yes);
        }
        debug!(partition = %name, probe, flushed, below, "reading back the first unflushed write-ahead log offset");
        let expected = wal_message_at(wal, tp, info, probe).await?;
        let fetched = self
            .client
            .fetch(&tp.topic, tp.partition, probe, 1 << 20, 1)
            .await
            .map_err(|e| e.into_storage(&name))?;
        let mut messages = if fetched.next_offset == probe + fetched.messages.len() as i64 {
            fetched.messages
        } else {
            Vec::new()
        };
        if messages.is_empty() {
            // FetchMessage answers nothing for some in-memory offsets; a subscription reads them.
            // One try, bounded: unanswered means unreadable for now (decided by the caller's
            // retries), not a reason to keep the partition's appends waiting here.
            messages = tokio::time::timeout(
                PROBE_READ,
                self.client.subscribe_read(&tp.topic, tp.partition, probe, 1),
            )
            .await
            .ok()
            .and_then(std::result::Result::ok)
            .unwrap_or_default();
        }
        let state = self.partition_state(tp);
        let Some(first) = messages.first() else {
            // The broker flushes what it holds in memory at least every flush interval: an
            // offset right after its flushed files, below its high watermark, that stays
            // unreadable while neither moves was never stored.
            let now = Instant::now();
            let mut seen = state.unreadable.lock();
            match *seen {
                Some((p, f, h, since)) if (p, f, h) == (probe, flushed, broker_hw) => {
                    if probe == flushed + 1 && now.duration_since(since) >= HOLE_AFTER {
                        *seen = None;
                        return Ok(Kept::HoleFrom(probe));
                    }
                }
                _ => *seen = Some((probe, flushed, broker_hw, now)),
            }
            // Nothing readable proves neither yet: refuse for now (retriable), decide later.
            return Err(io(format!(
                "{name}: cannot yet read offset {probe} back from the broker to check it kept the write-ahead log's records"
            )));
        };
        *state.unreadable.lock() = None;
        if Some(&first.value) == expected.as_ref() {
            return Ok(Kept::Yes);
        }
        Err(self.fence(
            tp,
            &state,
            format!("{name}: the broker holds other records than the write-ahead log at offset {probe} (it restarted without offsets {probe}..{below}, its checkpoint having run ahead of its flushed files, and another writer used them); they cannot be published again at their offsets. The gateway's write-ahead log keeps them"),
        ))
    }

    /// Publishes the WAL's entries in `span` again and checks their offsets.
    pub(super) async fn replay(
        &self,
        tp: &TopicPartition,
        info: &TopicInfo,
        state: &Arc<PartitionState>,
        publisher: &Publisher,
        span: ReplaySpan,
        mut producers: Option<&mut crate::storage::producer_state::ProducerStateTable>,
    ) -> Result<()> {
        let Some(wal) = &self.wal else { return Ok(()) };
        let ReplaySpan { from, end, shift } = span;
        let name = tp.to_string();
        let raw = info.meta.config.value_format == ValueFormat::Raw;
        let log_append = info.meta.config.message_timestamp_type == TimestampType::LogAppendTime;
        let mut next = from;
        let mut records = 0u64;
        while next < end {
            let bytes = wal.read(tp, next, REPLAY_READ_BYTES).await?;
            if bytes.is_empty() {
                break;
            }
            let mut rest = &bytes[..];
            while rest.len() >= crate::records::HEADER_LEN && next < end {
                let header =
                    BatchHeader::parse(rest).map_err(|e| StorageError::CorruptBatch(e.to_string()))?;
                let at = bytes.len() - rest.len();
                let batch = bytes.slice(at..at + header.total_len());
                rest = &rest[header.total_len()..];
                if header.last_offset() < next {
                    continue;
                }
                if header.base_offset > next {
                    return Err(self.fence(tp, state, format!("{name}: the write-ahead log has no entry at offset {next} (next entry at {}); the broker lost records nobody can restore", header.base_offset)));
                }
                let stamp = (log_append && header.attributes & 0x08 != 0).then_some(header.max_timestamp);
                let (_, messages) = messages_of_batch(&batch, raw, stamp)?;
                if header.is_idempotent() {
                    // The batch may never have been acknowledged (its ack was lost with the
                    // broker): a retry of it is a duplicate now.
                    if let Some(table) = producers.as_deref_mut() {
                        table.record(&header, header.base_offset + shift);
                    }
                }
                let skip = usize::try_from(next - header.base_offset).unwrap_or(0);
                let messages: Vec<_> = messages.into_iter().skip(skip).collect();
                let count = messages.len() as i64;
                let acked = publisher
                    .submit(messages)
                    .await
                    .map_err(|e| e.into_storage(&name))?
                    .await
                    .map_err(|_| io("publish stream dropped"))?
                    .map_err(|e| e.into_storage(&name))?;
                let at = next + shift;
                if acked.base_offset != at || acked.last_offset != at + count - 1 || !acked.contiguous {
                    return Err(self.fence(tp, state, format!(
                        "{name}: replayed records from offset {next} landed at {}..{}, not at {at} (another writer interleaved)",
                        acked.base_offset, acked.last_offset
                    )));
                }
                next += count;
                records += count as u64;
            }
        }
        if next < end {
            return Err(self.fence(
                tp,
                state,
                format!("{name}: the write-ahead log ends at {next}, before its recorded end {end}"),
            ));
        }
        if let Some(m) = &self.wal_metrics {
            m.replayed(tp, records);
        }
        info!(partition = %name, from, to = end, records, "republished records the broker had lost from the write-ahead log");
        Ok(())
    }
}

/// The message the WAL holds at `offset`, as it was published.
async fn wal_message_at(
    wal: &crate::storage::local::WriteAheadLog,
    tp: &TopicPartition,
    info: &TopicInfo,
    offset: Offset,
) -> Result<Option<bytes::Bytes>> {
    let bytes = wal.read(tp, offset, 1).await?;
    if bytes.len() < crate::records::HEADER_LEN {
        return Ok(None);
    }
    let header = BatchHeader::parse(&bytes).map_err(|e| StorageError::CorruptBatch(e.to_string()))?;
    if offset < header.base_offset || offset > header.last_offset() {
        return Ok(None);
    }
    let raw = info.meta.config.value_format == ValueFormat::Raw;
    let log_append = info.meta.config.message_timestamp_type == TimestampType::LogAppendTime;
    let stamp = (log_append && header.attributes & 0x08 != 0).then_some(header.max_timestamp);
    let (_, messages) = messages_of_batch(&bytes.slice(..header.total_len()), raw, stamp)?;
    let i = usize::try_from(offset - header.base_offset).unwrap_or(usize::MAX);
    Ok(messages.into_iter().nth(i).map(|m| m.value))
}
