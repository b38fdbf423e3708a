//! Kafka record batch v2 to individual records and back: used where records must be looked at
//! one by one (SeaweedMQ stores one message per record; timestamp lookups inside a batch).
//!
//! Decoding reuses [`crate::records`] for the 61-byte header and CRC32C, decompresses the records
//! section with a size limit ([`compression`]) and parses records by hand. The `kafka-protocol`
//! crate's `RecordBatchDecoder` is not used for records because it keeps headers in an
//! `IndexMap`, which silently merges duplicate header keys that Kafka allows and preserves in
//! order; its encoder is used in the tests as an independent producer of compressed batches.
//!
//! Invariants checked on decode (as Kafka's broker checks them): magic 2, CRC32C, declared
//! length, `record_count == last_offset_delta + 1`, record `i` has `offset_delta == i`, every
//! record consumes exactly its declared size, and no bytes trail the last record.

use bytes::{BufMut, Bytes, BytesMut};

use self::wire::{put_nullable_bytes, put_varint, varint_len, Reader, WireError};
use crate::records::{BatchError, BatchHeader, HEADER_LEN, LOG_OVERHEAD};

pub mod compression;
pub(crate) mod wire;

pub use self::compression::Compression;
pub use crate::storage::config::TimestampType;

/// Largest decompressed records section [`decode_batch`] accepts (Kafka clients default to
/// batches of 1 MiB compressed; this leaves room for very compressible data).
pub const DEFAULT_MAX_UNCOMPRESSED_BYTES: usize = 128 * 1024 * 1024;

const ATTR_TIMESTAMP_TYPE: i16 = 0x08;
const ATTR_TRANSACTIONAL: i16 = 0x10;
const ATTR_CONTROL: i16 = 0x20;
/// Smallest possible encoded record: length, attributes, timestamp delta, offset delta, key,
/// value and header count, one byte each.
const MIN_RECORD_LEN: usize = 7;

/// A batch could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The header, length or CRC is invalid.
    #[error(transparent)]
    Batch(#[from] BatchError),
    /// Attributes name compression id 5, 6 or 7.
    #[error("unknown compression codec id {0}")]
    UnknownCompression(i16),
    /// The records section does not decompress within the limit.
    #[error("cannot decompress records: {0}")]
    Decompress(#[source] compression::DecompressError),
    /// A record is malformed.
    #[error("invalid record {index}: {reason}")]
    Record {
        /// Index of the record in the batch.
        index: usize,
        /// What is wrong.
        reason: String,
    },
}

impl CodecError {
    /// The Kafka error a produce of this batch is answered with.
    pub fn response_error(&self) -> kafka_protocol::ResponseError {
        use kafka_protocol::ResponseError;
        match self {
            Self::Batch(BatchError::Crc { .. })
            | Self::Decompress(compression::DecompressError::Corrupt { .. }) => ResponseError::CorruptMessage,
            Self::Decompress(compression::DecompressError::TooLarge { .. }) => ResponseError::MessageTooLarge,
            Self::Batch(_) | Self::UnknownCompression(_) | Self::Record { .. } => {
                ResponseError::InvalidRecord
            }
        }
    }

    /// A bounded label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Batch(BatchError::Crc { .. }) => "crc",
            Self::Batch(_) => "header",
            Self::UnknownCompression(_) => "compression",
            Self::Decompress(_) => "decompress",
            Self::Record { .. } => "record",
        }
    }
}

/// One Kafka record with its batch-relative offset and absolute timestamp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Offset relative to the batch's base offset.
    pub offset_delta: i32,
    /// Absolute timestamp in milliseconds (base timestamp plus the record's delta).
    pub timestamp_ms: i64,
    /// Key; `None` is null, distinct from empty.
    pub key: Option<Bytes>,
    /// Value; `None` is null (a tombstone), distinct from empty.
    pub value: Option<Bytes>,
    /// Headers in wire order, duplicates kept. Keys are decoded as UTF-8 with invalid sequences
    /// replaced, as Kafka's Java client does.
    pub headers: Vec<(String, Option<Bytes>)>,
}

/// A record to encode into a batch: the same shape as a decoded [`Record`].
pub type RecordOut = Record;

/// A decoded v2 batch: its header fields and records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedBatch {
    /// Offset of the first record as carried by the batch (producers send 0).
    pub base_offset: i64,
    /// Partition leader epoch field.
    pub partition_leader_epoch: i32,
    /// Raw attributes.
    pub attributes: i16,
    /// Codec the records section was compressed with.
    pub compression: Compression,
    /// Whether timestamps are CreateTime or LogAppendTime.
    pub timestamp_type: TimestampType,
    /// Transactional batch flag.
    pub is_transactional: bool,
    /// Control batch flag (transaction markers).
    pub is_control: bool,
    /// Offset delta of the last record.
    pub last_offset_delta: i32,
    /// Timestamp the record deltas are relative to.
    pub base_timestamp: i64,
    /// Largest timestamp in the batch (the append time for LogAppendTime batches).
    pub max_timestamp: i64,
    /// Idempotent producer id or -1.
    pub producer_id: i64,
    /// Producer epoch or -1.
    pub producer_epoch: i16,
    /// Sequence of the first record or -1.
    pub base_sequence: i32,
    /// Number of records (equals `records.len()` and `last_offset_delta + 1`).
    pub record_count: i32,
    /// Records in offset order.
    pub records: Vec<Record>,
}

/// Decodes exactly one v2 batch (no trailing bytes), decompressing with the default limit.
///
/// # Errors
/// [`CodecError`] for an invalid header, CRC, codec, oversized or corrupt compressed data, or a
/// malformed record.
pub fn decode_batch(batch: &[u8]) -> Result<DecodedBatch, CodecError> {
    decode_batch_with_limit(batch, DEFAULT_MAX_UNCOMPRESSED_BYTES)
}

/// Decodes every batch of a record set (concatenated batches).
///
/// # Errors
/// As [`decode_batch`], for the first bad batch.
pub fn decode_batches(mut records: &[u8]) -> Result<Vec<DecodedBatch>, CodecError> {
    let mut out = Vec::with_capacity(1);
    while !records.is_empty() {
        let len = BatchHeader::parse(records)?.total_len();
        if records.len() < len {
            return Err(
                BatchError::Truncated(format!("declared {len} bytes, {} present", records.len())).into(),
            );
        }
        out.push(decode_batch(&records[..len])?);
        records = &records[len..];
    }
    Ok(out)
}

/// Decodes one v2 batch whose decompressed records section may hold at most
/// `max_uncompressed` bytes.
///
/// # Errors
/// As [`decode_batch`].
pub fn decode_batch_with_limit(batch: &[u8], max_uncompressed: usize) -> Result<DecodedBatch, CodecError> {
    let h = BatchHeader::parse(batch)?;
    check_len(&h, batch)?;
    let stored = u32::from_be_bytes([batch[17], batch[18], batch[19], batch[20]]);
    let computed = crc32c::crc32c(&batch[21..]);
    if stored != computed {
        return Err(BatchError::Crc { stored, computed }.into());
    }
    let compression = Compression::from_attributes(h.attributes)
        .ok_or(CodecError::UnknownCompression(h.attributes & 0x07))?;
    let section = compression::decompress(compression, &batch[HEADER_LEN..], max_uncompressed)
        .map_err(CodecError::Decompress)?;
    decode_parts(&h, batch, compression, &section)
}

/// Decodes one v2 batch whose CRC32C the caller has already checked (a produced batch: the
/// Produce handler validates every batch before storage sees it). An uncompressed batch's keys
/// and values are views of `batch`, not copies.
///
/// # Errors
/// As [`decode_batch`], except that the CRC is not checked.
pub fn decode_validated_batch(batch: &Bytes) -> Result<DecodedBatch, CodecError> {
    let h = BatchHeader::parse(batch)?;
    check_len(&h, batch)?;
    let compression = Compression::from_attributes(h.attributes)
        .ok_or(CodecError::UnknownCompression(h.attributes & 0x07))?;
    let section = match compression {
        Compression::None => batch.slice(HEADER_LEN..),
        codec => compression::decompress(codec, &batch[HEADER_LEN..], DEFAULT_MAX_UNCOMPRESSED_BYTES)
            .map_err(CodecError::Decompress)?,
    };
    decode_parts(&h, batch, compression, &section)
}

fn check_len(h: &BatchHeader, batch: &[u8]) -> Result<(), CodecError> {
    let len = h.total_len();
    if batch.len() != len {
        return Err(BatchError::Invalid(format!(
            "batch declares {len} bytes but {} were given",
            batch.len()
        ))
        .into());
    }
    Ok(())
}

/// The batch from its parsed header, its bytes and its (decompressed) records section.
fn decode_parts(
    h: &BatchHeader,
    batch: &[u8],
    compression: Compression,
    section: &Bytes,
) -> Result<DecodedBatch, CodecError> {
    if h.record_count != h.last_offset_delta + 1 {
        return Err(BatchError::Invalid(format!(
            "record count {} does not match last offset delta {}",
            h.record_count, h.last_offset_delta
        ))
        .into());
    }
    let records = decode_records(section, h.record_count as usize, h.base_timestamp)?;
    let leader_epoch = i32::from_be_bytes([batch[12], batch[13], batch[14], batch[15]]);
    Ok(DecodedBatch {
        base_offset: h.base_offset,
        partition_leader_epoch: leader_epoch,
        attributes: h.attributes,
        compression,
        timestamp_type: if h.attributes & ATTR_TIMESTAMP_TYPE != 0 {
            TimestampType::LogAppendTime
        } else {
            TimestampType::CreateTime
        },
        is_transactional: h.attributes & ATTR_TRANSACTIONAL != 0,
        is_control: h.attributes & ATTR_CONTROL != 0,
        last_offset_delta: h.last_offset_delta,
        base_timestamp: h.base_timestamp,
        max_timestamp: h.max_timestamp,
        producer_id: h.producer_id,
        producer_epoch: h.producer_epoch,
        base_sequence: h.base_sequence,
        record_count: h.record_count,
        records,
    })
}

fn decode_records(section: &Bytes, count: usize, base_timestamp: i64) -> Result<Vec<Record>, CodecError> {
    let mut r = Reader::new(section, 0, section.len());
    let mut out = Vec::with_capacity(count.min(section.len() / MIN_RECORD_LEN + 1));
    for index in 0..count {
        let bad = |e: WireError| CodecError::Record {
            index,
            reason: e.to_string(),
        };
        let size = r.varint().map_err(bad)?;
        if size < 0 || size as usize > r.remaining() {
            return Err(CodecError::Record {
                index,
                reason: format!("size {size} with {} bytes left", r.remaining()),
            });
        }
        let end = r.pos() + size as usize;
        let mut rec = Reader::new(section, r.pos(), end);
        let record = decode_record(&mut rec, base_timestamp).map_err(bad)?;
        if rec.remaining() != 0 {
            return Err(CodecError::Record {
                index,
                reason: format!("{} unread bytes inside the record", rec.remaining()),
            });
        }
        if record.offset_delta as usize != index {
            return Err(CodecError::Record {
                index,
                reason: format!("offset delta {}", record.offset_delta),
            });
        }
        r = Reader::new(section, end, section.len());
        out.push(record);
    }
    if r.remaining() != 0 {
        return Err(CodecError::Record {
            index: count,
            reason: format!("{} bytes after the last record", r.remaining()),
        });
    }
    Ok(out)
}

fn decode_record(r: &mut Reader<'_>, base_timestamp: i64) -> Result<Record, WireError> {
    let _attributes = r.u8()?;
    let timestamp_delta = r.varlong()?;
    let offset_delta = r.varint()?;
    let key = r.nullable_bytes()?;
    let value = r.nullable_bytes()?;
    let at = r.pos();
    let count = r.varint()?;
    if count < 0 {
        return Err(WireError::Varint { at });
    }
    let mut headers = Vec::with_capacity((count as usize).min(r.remaining() / 2));
    for _ in 0..count {
        let at = r.pos();
        let key = match r.nullable_bytes()? {
            Some(k) => wire::header_key(&k),
            None => return Err(WireError::Varint { at }),
        };
        headers.push((key, r.nullable_bytes()?));
    }
    Ok(Record {
        offset_delta,
        timestamp_ms: base_timestamp.wrapping_add(timestamp_delta),
        key,
        value,
        headers,
    })
}

/// The header fields of a batch to encode, besides its base offset and records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchMeta {
    /// Attributes; the compression bits must be clear (the records are written uncompressed).
    pub attributes: i16,
    /// Partition leader epoch field.
    pub partition_leader_epoch: i32,
    /// Timestamp the record deltas are relative to.
    pub base_timestamp: i64,
    /// Max timestamp field.
    pub max_timestamp: i64,
    /// Producer id or -1.
    pub producer_id: i64,
    /// Producer epoch or -1.
    pub producer_epoch: i16,
    /// Base sequence or -1.
    pub base_sequence: i32,
}

impl BatchMeta {
    /// The header of a batch built from `records` alone: base timestamp of the first record,
    /// the largest timestamp, no producer, partition leader epoch 0, and the timestamp-type
    /// attribute when `log_append_time`. `records` must not be empty.
    pub fn derived(records: &[RecordOut], log_append_time: bool) -> Self {
        let base_timestamp = records.first().map_or(-1, |r| r.timestamp_ms);
        Self {
            attributes: if log_append_time { ATTR_TIMESTAMP_TYPE } else { 0 },
            partition_leader_epoch: 0,
            base_timestamp,
            max_timestamp: records
                .iter()
                .map(|r| r.timestamp_ms)
                .max()
                .unwrap_or(base_timestamp),
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
        }
    }
}

/// Encodes `records` as one uncompressed v2 batch at `base_offset` with a valid CRC32C.
///
/// The header comes from [`BatchMeta::derived`]: base timestamp of the first record, max
/// timestamp the largest; producer id, epoch and base sequence -1 and partition leader epoch 0.
/// With `log_append_time` the timestamp-type attribute is set (clients then read every record's
/// time from the max timestamp, so pass the append times as the records' timestamps). Offset
/// deltas are written as given and the last one sets `last_offset_delta`; callers pass `0..n`
/// for dense offsets. An empty slice yields an empty byte string, since Kafka batches hold at
/// least one record. Callers bound the total size (fetch `max_bytes`); the format's length field
/// is an `i32`.
pub fn encode_batch(base_offset: i64, records: &[RecordOut], log_append_time: bool) -> Bytes {
    if records.is_empty() {
        return Bytes::new();
    }
    let meta = BatchMeta::derived(records, log_append_time);
    let mut b = BytesMut::with_capacity(encoded_batch_len(&meta, records));
    encode_batch_into(&mut b, base_offset, &meta, records);
    b.freeze()
}

/// Bytes [`encode_batch_into`] appends for `records` under `meta`.
pub fn encoded_batch_len(meta: &BatchMeta, records: &[RecordOut]) -> usize {
    HEADER_LEN
        + records
            .iter()
            .map(|r| encoded_record_len(r, meta.base_timestamp))
            .sum::<usize>()
}

/// Appends one uncompressed v2 batch of `records` (at least one) with the header `meta` and a
/// valid CRC32C; `last_offset_delta` is the last record's offset delta.
pub fn encode_batch_into(b: &mut BytesMut, base_offset: i64, meta: &BatchMeta, records: &[RecordOut]) {
    let start = b.len();
    let base_ts = meta.base_timestamp;
    let body_len: usize = records.iter().map(|r| encoded_record_len(r, base_ts)).sum();
    b.reserve(HEADER_LEN + body_len);
    b.put_i64(base_offset);
    b.put_i32((HEADER_LEN - LOG_OVERHEAD + body_len) as i32);
    b.put_i32(meta.partition_leader_epoch);
    b.put_i8(2);
    b.put_u32(0);
    b.put_i16(meta.attributes & !0x07);
    b.put_i32(records.last().map_or(0, |r| r.offset_delta));
    b.put_i64(base_ts);
    b.put_i64(meta.max_timestamp);
    b.put_i64(meta.producer_id);
    b.put_i16(meta.producer_epoch);
    b.put_i32(meta.base_sequence);
    b.put_i32(records.len() as i32);
    for r in records {
        let inner = record_body_len(r, base_ts);
        put_varint(b, inner as i64);
        b.put_i8(0);
        put_varint(b, r.timestamp_ms.wrapping_sub(base_ts));
        put_varint(b, i64::from(r.offset_delta));
        put_nullable_bytes(b, r.key.as_ref());
        put_nullable_bytes(b, r.value.as_ref());
        put_varint(b, r.headers.len() as i64);
        for (k, v) in &r.headers {
            put_varint(b, k.len() as i64);
            b.put_slice(k.as_bytes());
            put_nullable_bytes(b, v.as_ref());
        }
    }
    let crc = crc32c::crc32c(&b[start + 21..]);
    b[start + 17..start + 21].copy_from_slice(&crc.to_be_bytes());
}

fn nullable_len(b: Option<&Bytes>) -> usize {
    b.map_or(1, |b| varint_len(b.len() as i64) + b.len())
}

fn record_body_len(r: &Record, base_ts: i64) -> usize {
    1 + varint_len(r.timestamp_ms.wrapping_sub(base_ts))
        + varint_len(i64::from(r.offset_delta))
        + nullable_len(r.key.as_ref())
        + nullable_len(r.value.as_ref())
        + varint_len(r.headers.len() as i64)
        + r.headers
            .iter()
            .map(|(k, v)| varint_len(k.len() as i64) + k.len() + nullable_len(v.as_ref()))
            .sum::<usize>()
}

/// Bytes one record takes in a batch whose base timestamp is `base_ts` (length prefix included).
pub fn encoded_record_len(r: &Record, base_ts: i64) -> usize {
    let inner = record_body_len(r, base_ts);
    varint_len(inner as i64) + inner
}

#[cfg(test)]
mod tests;
