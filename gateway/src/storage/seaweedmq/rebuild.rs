//! Fetched SMQ messages back into Kafka record batches.
//!
//! Version-2 envelopes carry each record's place in its produced batch, and the first record
//! carries the batch header, so consecutive messages that form a whole produced batch become
//! that batch again (same record count, offsets, timestamps, attributes minus compression,
//! producer fields and partition leader epoch). Everything else (version-1 envelopes, raw
//! values, and the pieces of a batch interleaved with another publisher) is grouped into
//! derived batches of consecutive messages, as [`BatchMeta::derived`] describes.

use bytes::{Bytes, BytesMut};

use super::batch_codec::{encode_batch_into, encoded_record_len, BatchMeta, Record};
use super::envelope::{self, BatchPosition, Envelope, EnvelopeError};
use super::pb::messaging_pb::DataMessage;
use crate::records::HEADER_LEN;

/// One fetched message, decoded: its record (offset delta not yet meaningful) and the envelope
/// fields that say which batch it belongs to.
#[derive(Debug)]
pub struct Stored {
    /// The Kafka record.
    pub record: Record,
    /// Position in the produced batch (version-2 envelopes only).
    pub batch: Option<BatchPosition>,
    /// Producer id of the record, or -1.
    pub producer_id: i64,
    /// Producer epoch of the record, or -1.
    pub producer_epoch: i16,
    /// Sequence of the record, or -1.
    pub sequence: i32,
}

impl Stored {
    /// About the bytes the record takes in a batch (key, value and header payloads).
    pub fn approx_len(&self) -> usize {
        let r = &self.record;
        8 + r.key.as_ref().map_or(0, |k| k.len())
            + r.value.as_ref().map_or(0, |v| v.len())
            + r.headers
                .iter()
                .map(|(k, v)| k.len() + v.as_ref().map_or(0, |v| v.len()) + 2)
                .sum::<usize>()
    }
}

/// Decodes fetched messages (message `i` at offset `base + i`).
///
/// # Errors
/// [`EnvelopeError`] for an envelope this gateway cannot read.
pub fn decode_messages(messages: Vec<DataMessage>) -> Result<Vec<Stored>, EnvelopeError> {
    messages
        .into_iter()
        .map(|m| {
            let e: Envelope = envelope::decode_message(m.key, m.value, m.ts_ns)?;
            Ok(Stored {
                record: Record {
                    offset_delta: 0,
                    timestamp_ms: e.timestamp_ms,
                    key: e.key,
                    value: e.value,
                    headers: e.headers,
                },
                batch: e.batch,
                producer_id: e.producer_id,
                producer_epoch: e.producer_epoch,
                sequence: e.sequence,
            })
        })
        .collect()
}

/// How many messages from `at` form the produced batch that starts there (0 when `at` does not
/// start a version-2 batch), and whether all of its records are present.
fn produced_run(stored: &[Stored], at: usize) -> (usize, bool) {
    let Some(p) = stored[at]
        .batch
        .filter(|p| p.offset_delta == 0 && p.header.is_some())
    else {
        return (0, false);
    };
    let want = usize::try_from(p.last_offset_delta).unwrap_or(0) + 1;
    let mut n = 1;
    while n < want
        && stored.get(at + n).is_some_and(|s| {
            s.batch.is_some_and(|q| {
                usize::try_from(q.offset_delta).is_ok_and(|d| d == n)
                    && q.last_offset_delta == p.last_offset_delta
            })
        })
    {
        n += 1;
    }
    (n, n == want)
}

/// True when `stored` begins with a whole produced batch of at least `min_len` records.
pub fn starts_with_whole_batch(stored: &[Stored], min_len: usize) -> bool {
    if stored.is_empty() {
        return false;
    }
    let (n, whole) = produced_run(stored, 0);
    whole && n >= min_len
}

/// Steps back from a read position to the start of the produced batch holding it: the first
/// message's offset delta (0 when it starts a batch or carries no position).
pub fn offset_delta_of_first(stored: &[Stored]) -> i64 {
    stored
        .first()
        .and_then(|s| s.batch)
        .map_or(0, |p| i64::from(p.offset_delta))
}

/// Encodes `stored` (message `i` at `base + i`) as record batches, whole batches only and at
/// most `max_bytes` of them unless the first alone is larger. A produced batch cut off by the
/// end of the fetched messages is left out, unless it is the first, which is served as far as
/// it was fetched. Returns the encoded batches and the records left out (they start a produced
/// batch, at `base` plus the number encoded).
pub fn encode_batches(
    base: i64,
    mut stored: Vec<Stored>,
    log_append_time: bool,
    max_bytes: usize,
) -> (Bytes, Vec<Stored>) {
    let mut groups: Vec<(usize, usize, Option<BatchMeta>)> = Vec::new();
    let mut at = 0;
    let mut total = 0;
    while at < stored.len() {
        let (n, whole) = produced_run(&stored, at);
        let (len, meta) = if n > 0 {
            if !whole && at + n == stored.len() && !groups.is_empty() {
                break;
            }
            let first = &stored[at];
            let header = first.batch.and_then(|p| p.header);
            let meta = header.map(|h| BatchMeta {
                attributes: h.attributes,
                partition_leader_epoch: h.partition_leader_epoch,
                base_timestamp: h.base_timestamp,
                max_timestamp: h.max_timestamp,
                producer_id: first.producer_id,
                producer_epoch: first.producer_epoch,
                base_sequence: first.sequence,
            });
            (n, meta)
        } else {
            let mut n = 1;
            while at + n < stored.len() && produced_run(&stored, at + n).0 == 0 {
                n += 1;
            }
            (n, None)
        };
        for (i, s) in stored[at..at + len].iter_mut().enumerate() {
            s.record.offset_delta = i32::try_from(i).unwrap_or(i32::MAX);
        }
        let size = group_len(&stored[at..at + len], meta.as_ref());
        if !groups.is_empty() && total + size > max_bytes {
            break;
        }
        total += size;
        groups.push((at, len, meta));
        at += len;
    }
    let rest = stored.split_off(at);
    let records: Vec<Record> = stored.into_iter().map(|s| s.record).collect();
    let mut out = BytesMut::with_capacity(total);
    for (start, len, meta) in groups {
        let slice = &records[start..start + len];
        let meta = meta.unwrap_or_else(|| BatchMeta::derived(slice, log_append_time));
        encode_batch_into(&mut out, base + start as i64, &meta, slice);
    }
    (out.freeze(), rest)
}

/// Encoded size of a group: the batch header and its records against the base timestamp.
fn group_len(group: &[Stored], meta: Option<&BatchMeta>) -> usize {
    let base_timestamp = match meta {
        Some(m) => m.base_timestamp,
        None => group.first().map_or(0, |s| s.record.timestamp_ms),
    };
    HEADER_LEN
        + group
            .iter()
            .map(|s| encoded_record_len(&s.record, base_timestamp))
            .sum::<usize>()
}
