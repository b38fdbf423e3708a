//! Message format v0/v1 ("message sets", magic 0 and 1) for clients older than Kafka 0.11:
//! up-conversion of produced message sets to one v2 batch, and down-conversion of stored v2
//! batches for Fetch below v4. The `kafka-protocol` crate has no codec for these formats (its
//! record module reads and writes v2 only), so this module is the codec, and it checks every
//! length read off the wire against the bytes left before using it.
//!
//! Layout (big-endian), repeated: `offset i64, size i32, crc u32, magic i8, attributes i8,
//! [timestamp i64 when magic 1], key (i32 length, -1 null), value (i32 length, -1 null)`. The
//! CRC32 (IEEE) covers magic to the end of the message. Attributes bits 0-2 name the codec of a
//! wrapper message whose value is a compressed inner message set; bit 3 (magic 1) is
//! LogAppendTime.
//!
//! Up-conversion follows Kafka's `LogValidator`: every message's CRC is checked (wrappers and
//! inner messages), inner messages must carry the wrapper's magic, nested compression is
//! refused, and the records become one v2 batch in the topic's codec (the producer's codec when
//! the topic keeps the producer's). Magic 0 messages have no timestamp (-1). Down-conversion
//! writes uncompressed messages (headers dropped, as Kafka drops them), starting at the fetch
//! offset; a LogAppendTime batch's records carry its time.

use bytes::{BufMut, Bytes, BytesMut};

use super::batch_codec::compression::{decompress, Compression};
use super::batch_codec::{decode_batches, encode_batch, CodecError, RecordOut};
use super::recompress::to_topic_codec;
use super::validate::MAX_UNCOMPRESSED_BATCH_BYTES;
use crate::storage::{CompressionType, TimestampType};

/// `offset` and `size` before each message.
const LOG_OVERHEAD: usize = 12;
/// crc, magic, attributes, key length, value length.
const MIN_V0: usize = 4 + 1 + 1 + 4 + 4;
/// A magic 1 message adds its timestamp.
const MIN_V1: usize = MIN_V0 + 8;
const ATTR_CODEC: u8 = 0x07;
const ATTR_LOG_APPEND_TIME: u8 = 0x08;

/// A legacy message set could not be converted.
#[derive(Debug, thiserror::Error)]
pub enum LegacyError {
    /// A message's CRC32 does not match its bytes.
    #[error("message crc mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    Crc {
        /// CRC carried by the message.
        stored: u32,
        /// CRC computed over the bytes.
        computed: u32,
    },
    /// Lengths, magic or nesting are invalid.
    #[error("invalid message set: {0}")]
    Invalid(String),
    /// A compressed wrapper's value does not decompress, or v2 encoding failed.
    #[error(transparent)]
    Codec(#[from] CodecError),
}

impl LegacyError {
    /// The Kafka error a produce of this message set is answered with.
    pub fn response_error(&self) -> kafka_protocol::ResponseError {
        match self {
            Self::Crc { .. } => kafka_protocol::ResponseError::CorruptMessage,
            Self::Invalid(_) => kafka_protocol::ResponseError::InvalidRecord,
            Self::Codec(e) => e.response_error(),
        }
    }

    /// A bounded label for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Crc { .. } => "crc",
            Self::Invalid(_) => "invalid",
            Self::Codec(e) => e.kind(),
        }
    }
}

fn invalid(why: impl Into<String>) -> LegacyError {
    LegacyError::Invalid(why.into())
}

/// The magic byte of the first message or batch of a produced record set (offset 16 in both
/// layouts), or `None` when it is too short to tell.
pub fn magic_of(records: &[u8]) -> Option<i8> {
    records.get(16).map(|b| *b as i8)
}

/// One decoded legacy message.
struct Message {
    magic: i8,
    attributes: u8,
    timestamp: i64,
    key: Option<Bytes>,
    value: Option<Bytes>,
}

/// Reads a big-endian integer of `N` bytes at `at`, if present.
fn be<const N: usize>(buf: &[u8], at: usize) -> Option<[u8; N]> {
    buf.get(at..at.checked_add(N)?)?.try_into().ok()
}

fn nullable(buf: &Bytes, at: &mut usize) -> Result<Option<Bytes>, LegacyError> {
    let len = i32::from_be_bytes(be(buf, *at).ok_or_else(|| invalid("truncated length"))?);
    *at += 4;
    if len < 0 {
        return Ok(None);
    }
    let len = len as usize;
    let end = at.checked_add(len).filter(|e| *e <= buf.len());
    let end = end.ok_or_else(|| invalid(format!("length {len} exceeds the message")))?;
    let out = buf.slice(*at..end);
    *at = end;
    Ok(Some(out))
}

/// Splits a message set into messages, checking each one's size, magic and CRC.
fn parse_set(set: &Bytes) -> Result<Vec<Message>, LegacyError> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < set.len() {
        let size = be::<4>(set, pos + 8).map(i32::from_be_bytes);
        let size = size.ok_or_else(|| invalid("truncated message header"))?;
        let body_start = pos + LOG_OVERHEAD;
        let size = usize::try_from(size).map_err(|_| invalid(format!("negative message size {size}")))?;
        let end = body_start
            .checked_add(size)
            .filter(|e| *e <= set.len())
            .ok_or_else(|| invalid(format!("message size {size} exceeds the message set")))?;
        out.push(parse_message(&set.slice(body_start..end))?);
        pos = end;
    }
    Ok(out)
}

fn parse_message(m: &Bytes) -> Result<Message, LegacyError> {
    let magic = *m.get(4).ok_or_else(|| invalid("truncated message"))? as i8;
    let min = match magic {
        0 => MIN_V0,
        1 => MIN_V1,
        other => {
            return Err(invalid(format!(
                "message magic {other} inside a v0/v1 message set"
            )))
        }
    };
    if m.len() < min {
        return Err(invalid(format!(
            "message of {} bytes is shorter than {min}",
            m.len()
        )));
    }
    let stored = u32::from_be_bytes(be(m, 0).ok_or_else(|| invalid("truncated crc"))?);
    let mut crc = flate2::Crc::new();
    crc.update(&m[4..]);
    let computed = crc.sum();
    if stored != computed {
        return Err(LegacyError::Crc { stored, computed });
    }
    let attributes = m[5];
    let mut at = 6;
    let timestamp = if magic == 1 {
        at += 8;
        i64::from_be_bytes(be(m, 6).ok_or_else(|| invalid("truncated timestamp"))?)
    } else {
        -1
    };
    let key = nullable(m, &mut at)?;
    let value = nullable(m, &mut at)?;
    if at != m.len() {
        return Err(invalid(format!("{} bytes after the value", m.len() - at)));
    }
    Ok(Message {
        magic,
        attributes,
        timestamp,
        key,
        value,
    })
}

/// Converts a produced v0/v1 message set into one v2 batch (base offset 0, no producer id) in
/// the topic's codec.
///
/// # Errors
/// [`LegacyError`] for a bad CRC (CORRUPT_MESSAGE) or an invalid structure (INVALID_RECORD).
pub fn up_convert(set: Bytes, topic_codec: CompressionType) -> Result<Bytes, LegacyError> {
    let limit = usize::try_from(MAX_UNCOMPRESSED_BATCH_BYTES).unwrap_or(usize::MAX);
    let mut records: Vec<RecordOut> = Vec::new();
    let mut source = Compression::None;
    for outer in parse_set(&set)? {
        let codec = Compression::from_attributes(i16::from(outer.attributes & ATTR_CODEC))
            .ok_or_else(|| invalid(format!("unknown codec {}", outer.attributes & ATTR_CODEC)))?;
        if codec == Compression::None {
            push(&mut records, outer)?;
            continue;
        }
        source = codec;
        let packed = outer
            .value
            .ok_or_else(|| invalid("compressed message without a value"))?;
        let inner = decompress(codec, &packed, limit).map_err(CodecError::Decompress)?;
        let wrapper_time = (outer.attributes & ATTR_LOG_APPEND_TIME != 0).then_some(outer.timestamp);
        for m in parse_set(&inner)? {
            if m.magic != outer.magic {
                return Err(invalid(format!(
                    "compressed outer record has magic {} while inner record has magic {}",
                    outer.magic, m.magic
                )));
            }
            if m.attributes & ATTR_CODEC != 0 {
                return Err(invalid("compressed message inside a compressed message"));
            }
            let timestamp = wrapper_time.unwrap_or(m.timestamp);
            push(&mut records, Message { timestamp, ..m })?;
        }
    }
    if records.is_empty() {
        return Err(invalid("empty message set"));
    }
    let target = match (topic_codec, source) {
        (CompressionType::Producer, Compression::None) => CompressionType::Uncompressed,
        (CompressionType::Producer, Compression::Gzip) => CompressionType::Gzip,
        (CompressionType::Producer, Compression::Snappy) => CompressionType::Snappy,
        (CompressionType::Producer, Compression::Lz4) => CompressionType::Lz4,
        (CompressionType::Producer, Compression::Zstd) => CompressionType::Zstd,
        (topic, _) => topic,
    };
    Ok(to_topic_codec(encode_batch(0, &records, false), target)?)
}

fn push(records: &mut Vec<RecordOut>, m: Message) -> Result<(), LegacyError> {
    let offset_delta = i32::try_from(records.len()).map_err(|_| invalid("too many messages"))?;
    records.push(RecordOut {
        offset_delta,
        timestamp_ms: m.timestamp,
        key: m.key,
        value: m.value,
        headers: Vec::new(),
    });
    Ok(())
}

/// The message format a Fetch of `version` reads: magic 0 below v2, magic 1 for v2-3, `None`
/// (v2 batches as stored) from v4.
pub fn fetch_magic(version: i16) -> Option<i8> {
    match version {
        ..=1 => Some(0),
        2 | 3 => Some(1),
        _ => None,
    }
}

/// Rewrites stored v2 batches as an uncompressed message set of `magic` (0 or 1), from
/// `from_offset` on; control batches are skipped.
///
/// # Errors
/// [`CodecError`] when a stored batch does not decode.
pub fn down_convert(stored: &[u8], magic: i8, from_offset: i64) -> Result<Bytes, CodecError> {
    let mut out = BytesMut::with_capacity(stored.len());
    for batch in decode_batches(stored)? {
        if batch.is_control {
            continue;
        }
        let log_append = batch.timestamp_type == TimestampType::LogAppendTime;
        for r in &batch.records {
            let offset = batch.base_offset + i64::from(r.offset_delta);
            if offset < from_offset {
                continue;
            }
            let timestamp = if log_append {
                batch.max_timestamp
            } else {
                r.timestamp_ms
            };
            let attributes = if magic >= 1 && log_append {
                ATTR_LOG_APPEND_TIME
            } else {
                0
            };
            put_message(
                &mut out,
                offset,
                magic,
                attributes,
                timestamp,
                r.key.as_ref(),
                r.value.as_ref(),
            );
        }
    }
    Ok(out.freeze())
}

/// Appends one uncompressed message with its offset and size prefix.
fn put_message(
    out: &mut BytesMut,
    offset: i64,
    magic: i8,
    attributes: u8,
    timestamp: i64,
    key: Option<&Bytes>,
    value: Option<&Bytes>,
) {
    let field = |b: Option<&Bytes>| 4 + b.map_or(0, Bytes::len);
    let size = 4 + 1 + 1 + if magic >= 1 { 8 } else { 0 } + field(key) + field(value);
    out.put_i64(offset);
    out.put_i32(i32::try_from(size).unwrap_or(i32::MAX));
    let crc_at = out.len();
    out.put_u32(0);
    out.put_i8(magic);
    out.put_u8(attributes);
    if magic >= 1 {
        out.put_i64(timestamp);
    }
    for b in [key, value] {
        match b {
            Some(b) => {
                out.put_i32(i32::try_from(b.len()).unwrap_or(i32::MAX));
                out.put_slice(b);
            }
            None => out.put_i32(-1),
        }
    }
    let mut crc = flate2::Crc::new();
    crc.update(&out[crc_at + 4..]);
    out[crc_at..crc_at + 4].copy_from_slice(&crc.sum().to_be_bytes());
}

#[cfg(test)]
#[path = "legacy_test.rs"]
mod tests;
