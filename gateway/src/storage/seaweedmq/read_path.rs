//! The read side of [`SeaweedStorage`](super::SeaweedStorage): messages by offset (from the
//! flushed log files when they hold them, else `FetchMessage`), rebuilt into the produced record
//! batches, and timestamp scans.

use tracing::{debug, trace, warn};

use super::error::SmqErrorKind;
use super::fetch::{MAX_BYTES, MAX_MESSAGES};
use super::pb::messaging_pb::DataMessage;
use super::read_ahead::{Cached, READ_AHEAD_BYTES};
use super::rebuild::{
    decode_messages, encode_batches, offset_delta_of_first, starts_with_whole_batch, Stored,
};
use super::{Inner, TopicInfo};
use crate::storage::{
    Offset, OffsetAndTimestamp, ReadOutcome, Result, StorageError, TimestampType, TopicPartition,
};

/// Most FetchMessage calls one read continues with after the first.
const MAX_ROUNDS: usize = 8;
/// Longest run of offsets the broker never stored that a read skips ([`Inner::past_hole`]).
const MAX_HOLE: i64 = 64;

impl Inner {
    /// Records from `offset` (message `i` at `offset + i`): from the flushed log files when they
    /// hold `offset`, else FetchMessage, with the subscribe fallback when that returns nothing
    /// below the high watermark. Returns the records, the offset of the first (`offset`, or
    /// the next stored offset when the broker never stored `offset`: see [`Self::past_hole`]
    /// and [`super::holes`]), the log start and the broker's high watermark (which may count a
    /// proven hole at the end: callers report it through [`super::holes::Holes::reported`]).
    pub(super) async fn read_records(
        &self,
        tp: &TopicPartition,
        info: &TopicInfo,
        offset: Offset,
        max_bytes: usize,
    ) -> Result<(Vec<Stored>, Offset, Offset, Offset)> {
        let name = tp.to_string();
        let gw_start = info.doc.log_start(tp.partition);
        let out_of_range = |log_start, high_watermark| StorageError::OffsetOutOfRange {
            offset,
            log_start,
            high_watermark,
        };
        if offset < gw_start {
            let (start, hw) = self.range(tp, info).await?;
            return Err(out_of_range(start, hw));
        }
        let state = self.partition_state(tp);
        // A read in a proven hole continues after it.
        let offset = state.holes.skip(offset);
        let flushed = match self.read_flushed(tp, offset).await {
            Some(messages) => Some((offset, messages)),
            None => self.past_hole(tp, offset).await,
        };
        if let Some((first, messages)) = flushed {
            let n = i64::try_from(messages.len()).unwrap_or(0);
            state.advance(first + n);
            let (start, hw) = self.broker_range(tp, info).await?;
            let records = decode_messages(messages)
                .map_err(|e| StorageError::CorruptBatch(format!("stored record in {name}: {e}")))?;
            return Ok((records, first, start, hw.max(first + n)));
        }
        let max = i32::try_from(max_bytes).unwrap_or(MAX_BYTES).clamp(1, MAX_BYTES);
        let fetched = match self
            .client
            .fetch(&tp.topic, tp.partition, offset, max, MAX_MESSAGES)
            .await
        {
            Ok(f) => f,
            Err(e) if e.kind() == SmqErrorKind::OffsetOutOfRange => {
                let (start, hw) = self.broker_range(tp, info).await?;
                if offset < start || offset > hw {
                    return Err(out_of_range(start, state.holes.reported(hw)));
                }
                // In range: the broker could not serve it (its disk read failed); as nothing.
                super::fetch::Fetched::default()
            }
            Err(e) => return Err(e.into_storage(&name)),
        };
        let (messages, start, hw) = if fetched.messages.is_empty() {
            let (start, hw) = self.broker_range(tp, info).await?;
            if offset > hw || offset < start {
                return Err(out_of_range(start, state.holes.reported(hw)));
            }
            // Never stored, and nothing after it: the partition ends here. Checked before the
            // subscription too, which takes up to a minute of retries to give up on an offset
            // that holds nothing (a client's request would time out before the check).
            if offset == hw || state.holes.check_end(&self.client, tp, offset, hw).await {
                return Ok((Vec::new(), offset, start, hw));
            }
            if state.holes.unsafe_to_subscribe(&self.client, tp, offset).await {
                debug!(partition = %name, offset, high_watermark = hw, "not reading by subscription: records after an offset nothing is stored at would be numbered from it");
                return Err(StorageError::Io(std::io::Error::other(format!(
                    "{name}: SeaweedMQ stores nothing at offset {offset}; the records after it are readable once the broker has flushed them"
                ))));
            }
            let Some(allowance) = state.holes.subscription_allowance(offset) else {
                return Err(StorageError::Io(std::io::Error::other(format!(
                    "{name}: nothing readable at offset {offset} yet; checking whether SeaweedMQ ever stored it"
                ))));
            };
            warn!(partition = %name, offset, high_watermark = hw, "FetchMessage returned nothing below the high watermark; reading by subscription");
            let want = usize::try_from((hw - offset).min(1000)).unwrap_or(1000);
            let read = self.client.subscribe_read(&tp.topic, tp.partition, offset, want);
            let msgs = match tokio::time::timeout(allowance, read).await.unwrap_or_else(|_| {
                Err(super::error::SmqError::Unavailable(format!(
                    "{name}: no answer from the subscription at offset {offset}"
                )))
            }) {
                Ok(msgs) => {
                    state.holes.readable(offset);
                    msgs
                }
                Err(_) if state.holes.check_end(&self.client, tp, offset, hw).await => {
                    return Ok((Vec::new(), offset, start, hw));
                }
                Err(e) => return Err(e.into_storage(&name)),
            };
            (msgs, start, hw)
        } else {
            let n = i64::try_from(fetched.messages.len()).unwrap_or(0);
            state.advance(offset + n);
            let hw = fetched.high_watermark.max(offset + n).max(*state.hw.borrow());
            (fetched.messages, fetched.log_start.max(gw_start), hw)
        };
        let records = decode_messages(messages)
            .map_err(|e| StorageError::CorruptBatch(format!("stored record in {name}: {e}")))?;
        Ok((records, offset, start, hw))
    }

    /// When `offset` is an offset the broker counted but never stored (SeaweedMQ 4.48 does so
    /// for a publish that reaches a partition while it unloads; see docs/seaweedmq-mapping.md
    /// §3.3), the messages from the next stored offset, read from the flushed log files: the
    /// broker writes its files in offset order, so a flushed record after `offset`, with the one
    /// before it flushed too, means nothing exists in between. A broker read would label the
    /// next records with the missing offsets. `None` otherwise (at most [`MAX_HOLE`] offsets
    /// are skipped).
    async fn past_hole(&self, tp: &TopicPartition, offset: Offset) -> Option<(Offset, Vec<DataMessage>)> {
        let state = self.partition_state(tp);
        let hw = *state.hw.borrow();
        // Cheap first: the flushed files this gateway has listed reach past `offset` (a
        // consumer reading records still in the broker's memory stops here).
        if offset + 1 >= hw || state.files.lock().await.last_offset() <= offset {
            return None;
        }
        if offset > 0 && self.read_flushed(tp, offset - 1).await.is_none() {
            return None;
        }
        for next in offset + 1..(offset + 1 + MAX_HOLE).min(hw) {
            if let Some(messages) = self.read_flushed(tp, next).await {
                warn!(partition = %tp, from = offset, to = next, "SeaweedMQ stores nothing at these offsets; reads continue after them");
                return Some((next, messages));
            }
        }
        None
    }

    /// Messages from `offset` read from the partition's flushed log files ([`super::log_files`]),
    /// or `None` when they do not hold it or cannot be read (the broker serves it then).
    async fn read_flushed(&self, tp: &TopicPartition, offset: Offset) -> Option<Vec<DataMessage>> {
        let state = self.partition_state(tp);
        if offset >= *state.hw.borrow() {
            // Nothing at or past the known high watermark is flushed (a caught-up consumer).
            return None;
        }
        let dir = match self.client.partition_dir_of(&tp.topic, tp.partition).await {
            Ok(dir) => dir,
            Err(e) => {
                debug!(partition = %tp, error = %e, "no partition directory; reading through the broker");
                return None;
            }
        };
        let mut index = state.files.lock().await;
        match self
            .client
            .log_files
            .read(&self.client, &dir, &mut index, offset)
            .await
        {
            Ok(Some(messages)) if !messages.is_empty() => {
                trace!(partition = %tp, offset, messages = messages.len(), "read from a flushed log file");
                Some(messages)
            }
            Ok(_) => None,
            Err(e) => {
                debug!(partition = %tp, offset, error = %e, "reading the flushed log file failed; reading through the broker");
                None
            }
        }
    }

    /// Whole record batches from the batch holding `offset`, rebuilt as produced. Reads ask the
    /// broker for [`READ_AHEAD_BYTES`]; what the answer leaves out is kept for the next read
    /// at the following offset ([`super::read_ahead`]).
    pub(super) async fn read_batches(
        &self,
        tp: &TopicPartition,
        offset: Offset,
        max_bytes: usize,
    ) -> Result<ReadOutcome> {
        let info = self.partition_of(tp).await?;
        self.recover_before_read(tp, &info).await?;
        let state = self.partition_state(tp);
        let want = max_bytes.max(READ_AHEAD_BYTES);
        let cached = if offset >= info.doc.log_start(tp.partition) {
            state.read_ahead.take(offset, &self.read_ahead_budget)
        } else {
            None
        };
        let (mut stored, mut log_start, mut hw, base) = match cached {
            Some(c) => {
                let hw = c.high_watermark.max(*state.hw.borrow());
                (c.records, c.log_start, hw, offset)
            }
            None => self.read_from(tp, &info, offset, want).await?,
        };
        // FetchMessage stops at the end of a flushed file; continue up to max_bytes.
        let mut next = base + stored.len() as i64;
        let mut bytes: usize = stored.iter().map(Stored::approx_len).sum();
        let mut rounds = 0;
        while !stored.is_empty() && next < hw && bytes < max_bytes && rounds < MAX_ROUNDS {
            rounds += 1;
            let more = match self.read_records(tp, &info, next, want).await {
                Ok((more, first, start, high)) if !more.is_empty() && first == next => {
                    hw = hw.max(high);
                    log_start = log_start.max(start);
                    more
                }
                // A hole: served from its far side by the next read.
                Ok(_) => break,
                Err(e) => {
                    debug!(partition = %tp, offset = next, error = %e, "continuing a read failed; serving what was read");
                    break;
                }
            };
            next += more.len() as i64;
            bytes += more.iter().map(Stored::approx_len).sum::<usize>();
            stored.extend(more);
        }
        let log_append = info.meta.config.message_timestamp_type == TimestampType::LogAppendTime;
        let (records, rest) = encode_batches(base, stored, log_append, max_bytes);
        let served = next - rest.len() as i64;
        state
            .read_ahead
            .put(Cached::new(served, rest, log_start, hw), &self.read_ahead_budget);
        Ok(ReadOutcome {
            records,
            high_watermark: state.holes.reported(hw),
            log_start_offset: log_start,
        })
    }

    /// The first read of [`Inner::read_batches`]: from `offset`, stepping back to the start of
    /// the produced batch holding it, as Kafka's reads do. Returns the records, log start, high
    /// watermark and the offset of the first record.
    async fn read_from(
        &self,
        tp: &TopicPartition,
        info: &TopicInfo,
        offset: Offset,
        want: usize,
    ) -> Result<(Vec<Stored>, Offset, Offset, Offset)> {
        let (stored, first, log_start, hw) = self.read_records(tp, info, offset, want).await?;
        let delta = offset_delta_of_first(&stored);
        if delta > 0 && first - delta >= log_start {
            let from = first - delta;
            let (back, at, start, high) = self.read_records(tp, info, from, want).await?;
            if at == from && starts_with_whole_batch(&back, usize::try_from(delta).unwrap_or(usize::MAX) + 1)
            {
                return Ok((back, start, high, from));
            }
        }
        Ok((stored, log_start, hw, first))
    }

    /// Scans `[start, hw)` for the first record with timestamp >= `at` (`Some(at)`) or the
    /// record with the largest timestamp (`None`). Cost: reads the partition from its start.
    pub(super) async fn scan_timestamps(
        &self,
        tp: &TopicPartition,
        info: &TopicInfo,
        at: Option<i64>,
    ) -> Result<Option<OffsetAndTimestamp>> {
        let (mut offset, hw) = self.range(tp, info).await?;
        let mut best: Option<OffsetAndTimestamp> = None;
        while offset < hw {
            let (records, first, _, _) = self.read_records(tp, info, offset, MAX_BYTES as usize).await?;
            if records.is_empty() {
                break;
            }
            offset = first;
            for (i, r) in records.iter().enumerate() {
                let found = OffsetAndTimestamp {
                    offset: offset + i as i64,
                    timestamp: r.record.timestamp_ms,
                };
                match at {
                    Some(t) if r.record.timestamp_ms >= t => return Ok(Some(found)),
                    Some(_) => {}
                    None if best.is_none_or(|b| r.record.timestamp_ms > b.timestamp) => best = Some(found),
                    None => {}
                }
            }
            offset += records.len() as i64;
        }
        Ok(best)
    }
}
