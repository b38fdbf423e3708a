//! The storage contract of one Kafka record inside one SeaweedMQ message value.
//!
//! SMQ's `DataMessage` has proto3 `bytes` key and value (no null), a broker-rewritten `ts_ns`
//! and no headers, so the gateway stores each record's Kafka view in a small versioned envelope
//! in the value. `docs/seaweedmq-mapping.md` is the normative description; in short:
//!
//! ```text
//! 0      magic 0xC1 (never the first byte of UTF-8 text)
//! 1      version (1 or 2)
//! 2..6   CRC32C, big-endian, over byte 1 and bytes 6..end
//! 6      flags: bit 0 key present, bit 1 value present, bits 2-7 zero
//! ...    varlong timestamp_ms, varlong producer_id, varint producer_epoch, varint sequence
//! ...    v2 only: varint offset_delta, varint last_offset_delta; when offset_delta is 0 the
//!        batch header: varint attributes, varlong base_timestamp, varlong max_timestamp,
//!        varint partition_leader_epoch
//! ...    if key present: uvarint length, key bytes
//! ...    uvarint header count; per header: uvarint key length, UTF-8 key,
//!        varint value length (-1 = null), value bytes
//! ...    if value present: the value is every remaining byte
//! ```
//!
//! Raw mode: a value that is not an envelope (wrong magic, too short, or CRC mismatch) is a bare
//! value written by the seed gateway or an SMQ-native publisher. A bare value is taken for an
//! envelope only if it starts with the magic byte *and* carries a matching CRC32C over the rest,
//! a 2^-32 chance for a value that starts with 0xC1. The magic and CRC positions never change
//! across versions, so a reader recognises an envelope from a newer writer and reports
//! [`EnvelopeError::UnsupportedVersion`] instead of misreading it as raw.
//!
//! Decoding is zero-copy: key, value and header values are slices of the input buffer.

use bytes::{BufMut, Bytes, BytesMut};

use super::batch_codec::wire::{
    put_nullable_bytes, put_uvarint, put_varint, uvarint_len, varint_len, Reader, WireError,
};

/// First byte of every envelope. 0xC1 never starts valid UTF-8, so text values are never
/// mistaken for envelopes, and it is not a common protobuf/Avro/Confluent first byte.
pub const MAGIC: u8 = 0xC1;
/// The envelope version this code writes (for records with a [`BatchPosition`]).
pub const VERSION: u8 = 2;
/// The first version, without batch positions; still read, and written for records without one.
pub const VERSION_1: u8 = 1;
/// Bytes before the flags: magic, version, CRC32C.
const PREFIX_LEN: usize = 6;
const FLAG_KEY: u8 = 0x01;
const FLAG_VALUE: u8 = 0x02;
/// Kafka's "no producer" / "no timestamp" value, used for fields a raw value does not carry.
const NONE: i64 = -1;

/// One Kafka record as stored in an SMQ message value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// Kafka key; `None` is null, distinct from empty.
    pub key: Option<Bytes>,
    /// Kafka value; `None` is null (a tombstone), distinct from empty.
    pub value: Option<Bytes>,
    /// Record headers in order, duplicates kept.
    pub headers: Vec<(String, Option<Bytes>)>,
    /// The record's Kafka timestamp (CreateTime as produced) in milliseconds.
    pub timestamp_ms: i64,
    /// Idempotent producer id, or -1.
    pub producer_id: i64,
    /// Producer epoch, or -1.
    pub producer_epoch: i16,
    /// The record's producer sequence (base sequence plus offset delta), or -1.
    pub sequence: i32,
    /// Where the record sat in its produced batch (version 2); `None` for version 1 and raw
    /// values.
    pub batch: Option<BatchPosition>,
}

/// A record's place in the Kafka batch it was produced in, so reads rebuild that batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchPosition {
    /// The record's offset delta in its batch.
    pub offset_delta: i32,
    /// The batch's last offset delta (record count minus one).
    pub last_offset_delta: i32,
    /// The batch header, carried by the first record (offset delta 0) only.
    pub header: Option<BatchFields>,
}

/// The batch header fields a rebuilt batch needs besides its records (producer id, epoch and
/// base sequence come from the first record's own fields).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchFields {
    /// Batch attributes as stored: compression bits clear (reads are uncompressed), the
    /// timestamp-type bit set on LogAppendTime topics.
    pub attributes: i16,
    /// The batch's base timestamp.
    pub base_timestamp: i64,
    /// The batch's max timestamp (the append time on LogAppendTime topics).
    pub max_timestamp: i64,
    /// The partition leader epoch field as produced.
    pub partition_leader_epoch: i32,
}

fn batch_len(b: &BatchPosition) -> usize {
    varint_len(i64::from(b.offset_delta))
        + varint_len(i64::from(b.last_offset_delta))
        + b.header.as_ref().map_or(0, |h| {
            varint_len(i64::from(h.attributes))
                + varint_len(h.base_timestamp)
                + varint_len(h.max_timestamp)
                + varint_len(i64::from(h.partition_leader_epoch))
        })
}

/// A value could not be decoded as an envelope.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    /// The value does not start with [`MAGIC`] (strict decoding only).
    #[error("value is not an envelope (first byte {0:#04x})")]
    NotEnvelope(u8),
    /// The value ends inside a field.
    #[error("truncated envelope: {0}")]
    Truncated(String),
    /// The CRC32C does not match (strict decoding only; lenient decoding reads the value raw).
    #[error("envelope crc mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    Checksum {
        /// CRC carried by the envelope.
        stored: u32,
        /// CRC computed over the bytes.
        computed: u32,
    },
    /// A valid envelope of a version this gateway does not know (written by a newer gateway).
    #[error("unsupported envelope version {0}")]
    UnsupportedVersion(u8),
    /// A field holds an impossible value.
    #[error("malformed envelope: {0}")]
    Malformed(String),
}

impl EnvelopeError {
    /// A bounded label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::NotEnvelope(_) => "not_envelope",
            Self::Truncated(_) => "truncated",
            Self::Checksum { .. } => "checksum",
            Self::UnsupportedVersion(_) => "version",
            Self::Malformed(_) => "malformed",
        }
    }
}

impl From<WireError> for EnvelopeError {
    fn from(e: WireError) -> Self {
        match e {
            WireError::Truncated { .. } => Self::Truncated(e.to_string()),
            WireError::Varint { .. } => Self::Malformed(e.to_string()),
        }
    }
}

/// Size of `encode(e)` in bytes.
pub fn encoded_len(e: &Envelope) -> usize {
    let key = e
        .key
        .as_ref()
        .map_or(0, |k| uvarint_len(k.len() as u64) + k.len());
    let headers: usize = e
        .headers
        .iter()
        .map(|(k, v)| {
            uvarint_len(k.len() as u64)
                + k.len()
                + v.as_ref().map_or(1, |v| varint_len(v.len() as i64) + v.len())
        })
        .sum();
    PREFIX_LEN
        + 1
        + varint_len(e.timestamp_ms)
        + varint_len(e.producer_id)
        + varint_len(i64::from(e.producer_epoch))
        + varint_len(i64::from(e.sequence))
        + e.batch.as_ref().map_or(0, batch_len)
        + key
        + uvarint_len(e.headers.len() as u64)
        + headers
        + e.value.as_ref().map_or(0, Bytes::len)
}

/// Encodes `e`: version [`VERSION`] with its batch position, version [`VERSION_1`] without.
/// A position whose header presence does not match `offset_delta == 0` is written as given and
/// read back as malformed, so callers build it with [`BatchPosition::new`].
pub fn encode(e: &Envelope) -> Bytes {
    let mut b = BytesMut::with_capacity(encoded_len(e));
    b.put_u8(MAGIC);
    b.put_u8(if e.batch.is_some() { VERSION } else { VERSION_1 });
    b.put_u32(0);
    let mut flags = 0;
    if e.key.is_some() {
        flags |= FLAG_KEY;
    }
    if e.value.is_some() {
        flags |= FLAG_VALUE;
    }
    b.put_u8(flags);
    put_varint(&mut b, e.timestamp_ms);
    put_varint(&mut b, e.producer_id);
    put_varint(&mut b, i64::from(e.producer_epoch));
    put_varint(&mut b, i64::from(e.sequence));
    if let Some(p) = &e.batch {
        put_varint(&mut b, i64::from(p.offset_delta));
        put_varint(&mut b, i64::from(p.last_offset_delta));
        if let Some(h) = &p.header {
            put_varint(&mut b, i64::from(h.attributes));
            put_varint(&mut b, h.base_timestamp);
            put_varint(&mut b, h.max_timestamp);
            put_varint(&mut b, i64::from(h.partition_leader_epoch));
        }
    }
    if let Some(k) = &e.key {
        put_uvarint(&mut b, k.len() as u64);
        b.put_slice(k);
    }
    put_uvarint(&mut b, e.headers.len() as u64);
    for (k, v) in &e.headers {
        put_uvarint(&mut b, k.len() as u64);
        b.put_slice(k.as_bytes());
        put_nullable_bytes(&mut b, v.as_ref());
    }
    if let Some(v) = &e.value {
        b.put_slice(v);
    }
    let crc = checksum(&b);
    b[2..PREFIX_LEN].copy_from_slice(&crc.to_be_bytes());
    b.freeze()
}

/// CRC32C over the version byte and everything after the CRC field; `buf.len() >= PREFIX_LEN`.
pub(crate) fn checksum(buf: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(&buf[1..2]), &buf[PREFIX_LEN..])
}

fn stored_checksum(buf: &[u8]) -> u32 {
    u32::from_be_bytes([buf[2], buf[3], buf[4], buf[5]])
}

/// True when `buf` is an envelope of any version: magic byte and a matching CRC32C.
pub fn is_envelope(buf: &[u8]) -> bool {
    buf.len() > PREFIX_LEN && buf[0] == MAGIC && stored_checksum(buf) == checksum(buf)
}

/// Decodes a stored value, reading anything that is not an envelope as a raw value.
///
/// A raw value yields `key: None` (the caller fills it from SMQ's key, see [`decode_message`]),
/// `value: Some(buf)` (`None` when `buf` is empty, since SMQ cannot store null and the seed
/// gateway served empty values as null), no headers, and -1 for the timestamp and producer
/// fields.
///
/// # Errors
/// Only for values that are envelopes by magic and CRC but cannot be read:
/// [`EnvelopeError::UnsupportedVersion`], [`EnvelopeError::Malformed`],
/// [`EnvelopeError::Truncated`].
pub fn decode(buf: Bytes) -> Result<Envelope, EnvelopeError> {
    if !is_envelope(&buf) {
        return Ok(raw(None, buf, NONE));
    }
    decode_body(&buf)
}

/// Decodes a value that must be an envelope (for callers that know the topic holds only
/// envelopes and want corruption reported rather than read as raw bytes).
///
/// # Errors
/// [`EnvelopeError`] for a missing magic byte, truncation, CRC mismatch, unknown version or a
/// malformed body.
pub fn decode_strict(buf: Bytes) -> Result<Envelope, EnvelopeError> {
    match buf.first() {
        None => return Err(EnvelopeError::Truncated("empty value".into())),
        Some(&b) if b != MAGIC => return Err(EnvelopeError::NotEnvelope(b)),
        Some(_) => {}
    }
    if buf.len() <= PREFIX_LEN {
        return Err(EnvelopeError::Truncated(format!(
            "{} bytes, the prefix needs {}",
            buf.len(),
            PREFIX_LEN + 1
        )));
    }
    let (stored, computed) = (stored_checksum(&buf), checksum(&buf));
    if stored != computed {
        return Err(EnvelopeError::Checksum { stored, computed });
    }
    decode_body(&buf)
}

/// Decodes one SMQ message (`DataMessage.key`, `.value`, `.ts_ns`) into the Kafka record view.
///
/// Envelopes carry their own key and timestamp, and SMQ's key and `ts_ns` are ignored. A raw
/// value takes its key from SMQ (empty means null, as the seed gateway served it) and its
/// timestamp from `ts_ns` (the broker's ingest time, in milliseconds).
///
/// # Errors
/// As [`decode`].
pub fn decode_message(smq_key: Bytes, value: Bytes, ts_ns: i64) -> Result<Envelope, EnvelopeError> {
    if is_envelope(&value) {
        return decode_body(&value);
    }
    let key = (!smq_key.is_empty()).then_some(smq_key);
    Ok(raw(key, value, ts_ns.div_euclid(1_000_000)))
}

fn raw(key: Option<Bytes>, value: Bytes, timestamp_ms: i64) -> Envelope {
    Envelope {
        key,
        value: (!value.is_empty()).then_some(value),
        headers: Vec::new(),
        timestamp_ms,
        producer_id: NONE,
        producer_epoch: NONE as i16,
        sequence: NONE as i32,
        batch: None,
    }
}

/// Decodes an envelope whose magic and CRC were checked.
fn decode_body(buf: &Bytes) -> Result<Envelope, EnvelopeError> {
    let version = buf[1];
    if version != VERSION && version != VERSION_1 {
        return Err(EnvelopeError::UnsupportedVersion(version));
    }
    let mut r = Reader::new(buf, PREFIX_LEN, buf.len());
    let flags = r.u8()?;
    if flags & !(FLAG_KEY | FLAG_VALUE) != 0 {
        return Err(EnvelopeError::Malformed(format!(
            "reserved flag bits set: {flags:#04x}"
        )));
    }
    let timestamp_ms = r.varlong()?;
    let producer_id = r.varlong()?;
    let epoch = r.varint()?;
    let producer_epoch =
        i16::try_from(epoch).map_err(|_| EnvelopeError::Malformed(format!("producer epoch {epoch}")))?;
    let sequence = r.varint()?;
    let batch = if version == VERSION {
        Some(batch_position(&mut r)?)
    } else {
        None
    };
    let key = if flags & FLAG_KEY != 0 {
        Some(sized(&mut r)?)
    } else {
        None
    };
    let count = r.uvarint()?;
    // Each header takes at least two bytes, which bounds the allocation for hostile counts.
    let mut headers = Vec::with_capacity((count as usize).min(r.remaining() / 2));
    for _ in 0..count {
        let k = sized(&mut r)?;
        let k = std::str::from_utf8(&k)
            .map_err(|e| EnvelopeError::Malformed(format!("header key is not UTF-8: {e}")))?;
        headers.push((k.to_owned(), r.nullable_bytes()?));
    }
    let value = if flags & FLAG_VALUE != 0 {
        Some(r.rest())
    } else if r.remaining() != 0 {
        return Err(EnvelopeError::Malformed(format!(
            "{} bytes after a null value",
            r.remaining()
        )));
    } else {
        None
    };
    Ok(Envelope {
        key,
        value,
        headers,
        timestamp_ms,
        producer_id,
        producer_epoch,
        sequence,
        batch,
    })
}

impl BatchPosition {
    /// The position of record `offset_delta` of a batch; the header goes with delta 0 only.
    pub fn new(offset_delta: i32, last_offset_delta: i32, header: BatchFields) -> Self {
        Self {
            offset_delta,
            last_offset_delta,
            header: (offset_delta == 0).then_some(header),
        }
    }
}

fn batch_position(r: &mut Reader<'_>) -> Result<BatchPosition, EnvelopeError> {
    let offset_delta = r.varint()?;
    let last_offset_delta = r.varint()?;
    if offset_delta < 0 || offset_delta > last_offset_delta {
        return Err(EnvelopeError::Malformed(format!(
            "offset delta {offset_delta} outside 0..={last_offset_delta}"
        )));
    }
    let header = if offset_delta == 0 {
        let attributes = r.varint()?;
        let attributes = i16::try_from(attributes)
            .map_err(|_| EnvelopeError::Malformed(format!("batch attributes {attributes}")))?;
        Some(BatchFields {
            attributes,
            base_timestamp: r.varlong()?,
            max_timestamp: r.varlong()?,
            partition_leader_epoch: r.varint()?,
        })
    } else {
        None
    };
    Ok(BatchPosition {
        offset_delta,
        last_offset_delta,
        header,
    })
}

/// A uvarint length and that many bytes.
fn sized(r: &mut Reader<'_>) -> Result<Bytes, EnvelopeError> {
    let at = r.pos();
    let n = r.uvarint()?;
    let n = usize::try_from(n).map_err(|_| EnvelopeError::Malformed(format!("length {n} at byte {at}")))?;
    Ok(r.bytes(n)?)
}

#[cfg(test)]
mod tests;
