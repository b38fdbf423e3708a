//! Kafka record batch v2 (magic 2) headers: validation and in-place rewrites.
//!
//! On the usual data path the gateway does not rewrite records. It reads the fixed 61-byte batch
//! header, checks the length, magic and CRC32C, and rewrites the base offset (and for LogAppendTime
//! topics the timestamp, attributes and CRC) directly in the received bytes. Records are decoded
//! and re-encoded only where Kafka does it too: a topic whose `compression.type` names another
//! codec ([`recompress`]), and clients older than message format v2 ([`legacy`]: up-conversion
//! on Produce v0-2, down-conversion for Fetch v0-3).
//!
//! Layout (big-endian): baseOffset i64 @0, batchLength i32 @8, partitionLeaderEpoch i32 @12,
//! magic i8 @16, crc u32 @17, attributes i16 @21, lastOffsetDelta i32 @23, baseTimestamp i64 @27,
//! maxTimestamp i64 @35, producerId i64 @43, producerEpoch i16 @51, baseSequence i32 @53,
//! recordCount i32 @57; the CRC covers bytes 21.. to the end of the batch.

use bytes::{Buf, Bytes};

pub mod batch_codec;
pub mod legacy;
pub mod recompress;
pub mod validate;

/// Size of the v2 batch header.
pub const HEADER_LEN: usize = 61;
/// Bytes before `batchLength`'s coverage starts (baseOffset + batchLength).
pub const LOG_OVERHEAD: usize = 12;
const CRC_START: usize = 21;
const ATTR_TIMESTAMP_TYPE: i16 = 0x08;
const ATTR_TRANSACTIONAL: i16 = 0x10;
const ATTR_CONTROL: i16 = 0x20;

/// A batch failed validation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// Fewer bytes than the header or the declared length.
    #[error("truncated record batch: {0}")]
    Truncated(String),
    /// Not magic 2.
    #[error("unsupported record batch magic {0} (only v2 is accepted)")]
    Magic(i8),
    /// CRC32C mismatch.
    #[error("record batch crc mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    Crc {
        /// CRC carried by the batch.
        stored: u32,
        /// CRC computed over the bytes.
        computed: u32,
    },
    /// A field holds an impossible value.
    #[error("invalid record batch: {0}")]
    Invalid(String),
    /// The record count disagrees with the offset range, or is zero (Kafka answers these
    /// INVALID_RECORD, the structural problems above CORRUPT_MESSAGE).
    #[error("invalid record batch: {0}")]
    OffsetRange(String),
}

/// The decoded fixed header of one v2 batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    /// Offset of the first record.
    pub base_offset: i64,
    /// Bytes after the length field.
    pub batch_length: i32,
    /// Attributes (compression, timestamp type, transactional, control).
    pub attributes: i16,
    /// Offset delta of the last record.
    pub last_offset_delta: i32,
    /// Timestamp of the first record.
    pub base_timestamp: i64,
    /// Largest timestamp in the batch.
    pub max_timestamp: i64,
    /// Idempotent producer id or -1.
    pub producer_id: i64,
    /// Producer epoch or -1.
    pub producer_epoch: i16,
    /// Sequence of the first record or -1.
    pub base_sequence: i32,
    /// Number of records.
    pub record_count: i32,
}

impl BatchHeader {
    /// Parses the header at the start of `buf` without validating the CRC.
    ///
    /// # Errors
    /// [`BatchError`] when the header is truncated, not magic 2, or inconsistent.
    pub fn parse(buf: &[u8]) -> Result<Self, BatchError> {
        if buf.len() < HEADER_LEN {
            return Err(BatchError::Truncated(format!("{} bytes, header needs {HEADER_LEN}", buf.len())));
        }
        let mut b = buf;
        let base_offset = b.get_i64();
        let batch_length = b.get_i32();
        let _leader_epoch = b.get_i32();
        let magic = b.get_i8();
        if magic != 2 {
            return Err(BatchError::Magic(magic));
        }
        let _crc = b.get_u32();
        let h = Self {
            base_offset,
            batch_length,
            attributes: b.get_i16(),
            last_offset_delta: b.get_i32(),
            base_timestamp: b.get_i64(),
            max_timestamp: b.get_i64(),
            producer_id: b.get_i64(),
            producer_epoch: b.get_i16(),
            base_sequence: b.get_i32(),
            record_count: b.get_i32(),
        };
        if (h.batch_length as i64) < (HEADER_LEN - LOG_OVERHEAD) as i64 {
            return Err(BatchError::Invalid(format!("batch length {} below header size", h.batch_length)));
        }
        if h.last_offset_delta < 0 || h.record_count < 0 {
            return Err(BatchError::Invalid("negative record count or offset delta".into()));
        }
        Ok(h)
    }

    /// Total bytes of the batch including the offset and length fields.
    pub fn total_len(&self) -> usize {
        LOG_OVERHEAD + self.batch_length as usize
    }

    /// Offset of the last record.
    pub fn last_offset(&self) -> i64 {
        self.base_offset + i64::from(self.last_offset_delta)
    }

    /// Number of offsets the batch occupies.
    pub fn offset_count(&self) -> i64 {
        i64::from(self.last_offset_delta) + 1
    }

    /// True for batches written by an idempotent (or transactional) producer.
    pub fn is_idempotent(&self) -> bool {
        self.producer_id >= 0
    }

    /// True for transactional batches (not supported by the gateway).
    pub fn is_transactional(&self) -> bool {
        self.attributes & ATTR_TRANSACTIONAL != 0
    }

    /// True for control batches (transaction markers).
    pub fn is_control(&self) -> bool {
        self.attributes & ATTR_CONTROL != 0
    }

    /// Sequence number of the last record (wrapping as Kafka does).
    pub fn last_sequence(&self) -> i32 {
        if self.base_sequence < 0 {
            return -1;
        }
        let last = i64::from(self.base_sequence) + i64::from(self.last_offset_delta);
        (last % (i64::from(i32::MAX) + 1)) as i32
    }
}

/// Splits a produce request's record set into whole batches and validates each (length, magic,
/// CRC32C). Returns the batches as separate views of the received buffer, without copying.
///
/// # Errors
/// [`BatchError`] for the first invalid or truncated batch; nothing is returned in that case, so
/// a corrupt record set is rejected as a whole as Kafka does.
pub fn split_and_validate(mut records: Bytes) -> Result<Vec<(BatchHeader, Bytes)>, BatchError> {
    let mut out = Vec::with_capacity(1);
    while !records.is_empty() {
        let header = BatchHeader::parse(&records)?;
        let len = header.total_len();
        if records.len() < len {
            return Err(BatchError::Truncated(format!("declared {len} bytes, {} present", records.len())));
        }
        let batch = records.split_to(len);
        let stored = u32::from_be_bytes([batch[17], batch[18], batch[19], batch[20]]);
        let computed = crc32c::crc32c(&batch[CRC_START..]);
        if stored != computed {
            return Err(BatchError::Crc { stored, computed });
        }
        if header.record_count <= 0 || header.record_count != header.last_offset_delta + 1 {
            return Err(BatchError::OffsetRange(format!(
                "record count {} does not match last offset delta {}",
                header.record_count, header.last_offset_delta
            )));
        }
        out.push((header, batch));
    }
    if out.is_empty() {
        return Err(BatchError::Truncated("empty record set".into()));
    }
    Ok(out)
}

/// The header a batch is stored with: the received header with `base_offset` written in and,
/// for LogAppendTime topics, the timestamp-type attribute, `maxTimestamp` and a CRC recomputed
/// over the new header bytes plus the unchanged records. Storing this header followed by
/// `batch[HEADER_LEN..]` stores the rewritten batch without copying the records.
///
/// # Panics
/// If `batch` is shorter than [`HEADER_LEN`] (callers pass validated batches).
pub fn stored_header(batch: &[u8], base_offset: i64, log_append_time_ms: Option<i64>) -> [u8; HEADER_LEN] {
    let mut header = [0u8; HEADER_LEN];
    header.copy_from_slice(&batch[..HEADER_LEN]);
    set_base_offset(&mut header, base_offset);
    if let Some(now_ms) = log_append_time_ms {
        let attrs = i16::from_be_bytes([header[21], header[22]]) | ATTR_TIMESTAMP_TYPE;
        header[21..23].copy_from_slice(&attrs.to_be_bytes());
        header[35..43].copy_from_slice(&now_ms.to_be_bytes());
        let crc = crc32c::crc32c_append(crc32c::crc32c(&header[CRC_START..]), &batch[HEADER_LEN..]);
        header[17..21].copy_from_slice(&crc.to_be_bytes());
    }
    header
}

/// Writes `base_offset` into the batch. The base offset is outside the CRC, so no recompute.
pub fn set_base_offset(batch: &mut [u8], base_offset: i64) {
    batch[0..8].copy_from_slice(&base_offset.to_be_bytes());
}

/// Stamps a batch with LogAppendTime: sets the timestamp-type attribute and `maxTimestamp`, then
/// recomputes the CRC (both fields are covered by it).
pub fn set_log_append_time(batch: &mut [u8], now_ms: i64) {
    let attrs = i16::from_be_bytes([batch[21], batch[22]]) | ATTR_TIMESTAMP_TYPE;
    batch[21..23].copy_from_slice(&attrs.to_be_bytes());
    batch[35..43].copy_from_slice(&now_ms.to_be_bytes());
    let crc = crc32c::crc32c(&batch[CRC_START..]);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
}

/// Iterates the headers of concatenated stored batches (trusting their lengths).
pub fn iter_headers(mut buf: &[u8]) -> impl Iterator<Item = Result<(BatchHeader, usize), BatchError>> + '_ {
    let mut pos = 0usize;
    std::iter::from_fn(move || {
        if buf.is_empty() {
            return None;
        }
        let item = BatchHeader::parse(buf).and_then(|h| {
            let len = h.total_len();
            if buf.len() < len {
                return Err(BatchError::Truncated(format!("declared {len} bytes, {} present", buf.len())));
            }
            Ok((h, pos))
        });
        match &item {
            Ok((h, _)) => {
                let len = h.total_len();
                buf = &buf[len..];
                pos += len;
            }
            Err(_) => buf = &[],
        }
        Some(item)
    })
}

#[cfg(any(test, feature = "test-util"))]
pub mod testing {
    //! Builders of valid v2 batches for tests (records with key/value, no headers).

    use bytes::{BufMut, BytesMut};

    fn put_varint(buf: &mut BytesMut, v: i64) {
        let mut z = ((v << 1) ^ (v >> 63)) as u64;
        while z >= 0x80 {
            buf.put_u8((z as u8) | 0x80);
            z >>= 7;
        }
        buf.put_u8(z as u8);
    }

    /// Builds an uncompressed v2 batch of `values` with the given producer fields.
    pub fn batch(values: &[&[u8]], timestamp: i64, producer_id: i64, epoch: i16, base_sequence: i32) -> BytesMut {
        let mut records = BytesMut::new();
        for (i, v) in values.iter().enumerate() {
            let mut r = BytesMut::new();
            r.put_i8(0);
            put_varint(&mut r, 0);
            put_varint(&mut r, i as i64);
            put_varint(&mut r, -1);
            put_varint(&mut r, v.len() as i64);
            r.put_slice(v);
            put_varint(&mut r, 0);
            put_varint(&mut records, r.len() as i64);
            records.put_slice(&r);
        }
        let n = values.len() as i32;
        let mut b = BytesMut::new();
        b.put_i64(0);
        b.put_i32((super::HEADER_LEN - super::LOG_OVERHEAD + records.len()) as i32);
        b.put_i32(0);
        b.put_i8(2);
        b.put_u32(0);
        b.put_i16(0);
        b.put_i32(n - 1);
        b.put_i64(timestamp);
        b.put_i64(timestamp);
        b.put_i64(producer_id);
        b.put_i16(epoch);
        b.put_i32(base_sequence);
        b.put_i32(n);
        b.put_slice(&records);
        let crc = crc32c::crc32c(&b[super::CRC_START..]);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_batch_round_trips_and_offsets_rewrite() {
        let b = testing::batch(&[b"a", b"bb", b"ccc"], 1000, -1, -1, -1).freeze();
        let mut batches = split_and_validate(b).unwrap();
        assert_eq!(batches.len(), 1);
        let (h, bytes) = batches.pop().unwrap();
        assert_eq!(h.record_count, 3);
        let mut stored = stored_header(&bytes, 42, None).to_vec();
        stored.extend_from_slice(&bytes[HEADER_LEN..]);
        let h2 = BatchHeader::parse(&stored).unwrap();
        assert_eq!(h2.base_offset, 42);
        assert_eq!(h2.last_offset(), 44);
        split_and_validate(Bytes::from(stored)).unwrap();
    }

    #[test]
    fn corrupt_crc_and_truncation_are_rejected() {
        let mut b = testing::batch(&[b"x"], 1, -1, -1, -1);
        let last = b.len() - 1;
        b[last] ^= 0xff;
        assert!(matches!(split_and_validate(b.freeze()), Err(BatchError::Crc { .. })));
        let b = testing::batch(&[b"x"], 1, -1, -1, -1);
        let short = Bytes::copy_from_slice(&b[..b.len() - 2]);
        assert!(matches!(split_and_validate(short), Err(BatchError::Truncated(_))));
        let mut m = testing::batch(&[b"x"], 1, -1, -1, -1);
        m[16] = 1;
        assert!(matches!(split_and_validate(m.freeze()), Err(BatchError::Magic(1))));
    }

    #[test]
    fn log_append_time_keeps_crc_valid() {
        let b = testing::batch(&[b"x", b"y"], 5, -1, -1, -1);
        let mut in_place = b.clone();
        set_log_append_time(&mut in_place, 777);
        let (h, _) = split_and_validate(in_place.clone().freeze()).unwrap().pop().unwrap();
        assert_eq!(h.max_timestamp, 777);
        assert_ne!(h.attributes & ATTR_TIMESTAMP_TYPE, 0);
        // The split form (new header + untouched records) is the same bytes.
        let mut split = stored_header(&b, 0, Some(777)).to_vec();
        split.extend_from_slice(&b[HEADER_LEN..]);
        assert_eq!(&split[..], &in_place[..]);
    }

    #[test]
    fn iter_headers_walks_concatenated_batches() {
        let mut all = testing::batch(&[b"a"], 1, -1, -1, -1);
        all.extend_from_slice(&testing::batch(&[b"b", b"c"], 2, -1, -1, -1));
        let hs: Vec<_> = iter_headers(&all).collect::<Result<_, _>>().unwrap();
        assert_eq!(hs.len(), 2);
        assert_eq!(hs[1].0.record_count, 2);
    }
}
