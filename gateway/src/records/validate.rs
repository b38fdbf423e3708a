//! Record-level validation of produced v2 batches, as Apache Kafka's `LogValidator` does it.
//!
//! [`super::split_and_validate`] checks each batch's header, length and CRC32C. This module
//! walks the records inside: each record's varint length must match its encoded fields
//! (attributes, timestamp delta, offset delta, key, value, headers) and stay inside the batch,
//! record `i` must carry offset delta `i`, the header's record count must be the number of
//! records present, and no bytes may follow the last record. For CreateTime topics every record
//! timestamp must lie within `[now - message.timestamp.before.max.ms, now +
//! message.timestamp.after.max.ms]`.
//!
//! Uncompressed batches are walked in one pass over the received bytes, without allocating.
//! Compressed batches are decompressed as a stream and walked as it comes out, so memory stays at
//! the codec's buffers whatever the batch expands to; the decompressed size is capped at
//! [`MAX_UNCOMPRESSED_BATCH_BYTES`] (the cap bounds CPU, not memory).
//!
//! One difference from Kafka: Kafka rewrites a compressed batch whose inner offsets are not
//! `0..n` (old clients wrote them wrong); the gateway stores batches as received and refuses them.

use std::io::{BufRead, Read};

use kafka_protocol::ResponseError;

use super::{BatchHeader, HEADER_LEN};

/// Largest records section a compressed batch may decompress to.
///
/// A fixed cap rather than a multiple of `max.message.bytes`: decompression is streamed, so the
/// cap only bounds the CPU one batch can cost (about 50 ms of one core for 64 MiB of gzip), and a
/// fixed value cannot be raised by a topic config. 64 MiB is 64 times Kafka's default 1 MiB
/// batch, beyond the ratio of real data; a producer told MESSAGE_TOO_LARGE splits its batch.
pub const MAX_UNCOMPRESSED_BATCH_BYTES: u64 = 64 * 1024 * 1024;

const ATTR_TIMESTAMP_TYPE: i16 = 0x08;
/// Kafka's `RecordBatch.NO_TIMESTAMP`: such records are not range-checked.
const NO_TIMESTAMP: i64 = -1;
const XERIAL_MAGIC: [u8; 8] = [0x82, b'S', b'N', b'A', b'P', b'P', b'Y', 0];
const XERIAL_HEADER_LEN: usize = 16;

/// The allowed window for CreateTime record timestamps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimestampBounds {
    /// Broker time the batch is checked at (ms since the epoch).
    pub now_ms: i64,
    /// `message.timestamp.before.max.ms`: how far in the past a timestamp may be.
    pub before_max_ms: i64,
    /// `message.timestamp.after.max.ms`: how far in the future a timestamp may be.
    pub after_max_ms: i64,
}

impl TimestampBounds {
    fn allows(&self, ts: i64) -> bool {
        ts == NO_TIMESTAMP
            || (self.now_ms.saturating_sub(ts) <= self.before_max_ms
                && ts.saturating_sub(self.now_ms) <= self.after_max_ms)
    }
}

/// A batch's records failed validation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// A record is malformed or out of place (Kafka's `InvalidRecordException`).
    #[error("invalid record {index}: {reason}")]
    Invalid {
        /// Index of the record in the batch (the record count for trailing bytes).
        index: i32,
        /// What is wrong.
        reason: String,
    },
    /// A CreateTime timestamp outside the topic's window.
    #[error("timestamp {timestamp} of record {index} is out of range [{min}, {max}]")]
    Timestamp {
        /// Index of the record in the batch.
        index: i32,
        /// The record's timestamp.
        timestamp: i64,
        /// Earliest allowed timestamp.
        min: i64,
        /// Latest allowed timestamp.
        max: i64,
    },
    /// The compressed records section cannot be decompressed, or names an unknown codec.
    #[error("corrupt compressed records: {0}")]
    Corrupt(String),
    /// The records section decompresses to more than the cap.
    #[error("records decompress to more than {limit} bytes")]
    TooLarge {
        /// The cap in force.
        limit: u64,
    },
}

impl RecordError {
    /// The Kafka error the partition is answered with.
    pub fn response_error(&self) -> ResponseError {
        match self {
            Self::Invalid { .. } => ResponseError::InvalidRecord,
            Self::Timestamp { .. } => ResponseError::InvalidTimestamp,
            Self::Corrupt(_) => ResponseError::CorruptMessage,
            Self::TooLarge { .. } => ResponseError::MessageTooLarge,
        }
    }

    /// A bounded label for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Invalid { .. } => "invalid_record",
            Self::Timestamp { .. } => "invalid_timestamp",
            Self::Corrupt(_) => "corrupt_compressed",
            Self::TooLarge { .. } => "decompressed_too_large",
        }
    }
}

/// Validates the records of one batch whose header, length and CRC have been checked
/// ([`super::split_and_validate`]). `timestamps` is `None` for LogAppendTime topics.
///
/// # Errors
/// [`RecordError`] for the first problem found.
pub fn validate_records(
    header: &BatchHeader,
    batch: &[u8],
    timestamps: Option<TimestampBounds>,
) -> Result<(), RecordError> {
    // A batch stamped LogAppendTime by its producer carries one timestamp for all records, its
    // max timestamp (Kafka's `DefaultRecord` reads it so); check that once.
    let per_record = match timestamps {
        Some(b) if header.attributes & ATTR_TIMESTAMP_TYPE != 0 => {
            check_timestamp(&b, 0, header.max_timestamp)?;
            None
        }
        other => other,
    };
    let section = &batch[HEADER_LEN..];
    match header.attributes & 0x07 {
        0 => walk_records(&mut SliceInput { buf: section, pos: 0 }, header, per_record),
        1 => walk_stream(flate2::bufread::MultiGzDecoder::new(section), "gzip", header, per_record),
        2 => walk_stream(SnappyReader::new(section), "snappy", header, per_record),
        3 => {
            let d = lz4::Decoder::new(section).map_err(|e| RecordError::Corrupt(format!("lz4: {e}")))?;
            walk_stream(d, "lz4", header, per_record)
        }
        4 => {
            let d = zstd::stream::read::Decoder::with_buffer(section)
                .map_err(|e| RecordError::Corrupt(format!("zstd: {e}")))?;
            walk_stream(d, "zstd", header, per_record)
        }
        id => Err(RecordError::Corrupt(format!("unknown compression codec id {id}"))),
    }
}

fn walk_stream(
    reader: impl Read,
    codec: &'static str,
    header: &BatchHeader,
    timestamps: Option<TimestampBounds>,
) -> Result<(), RecordError> {
    let limit = MAX_UNCOMPRESSED_BATCH_BYTES;
    let mut input = StreamInput {
        r: std::io::BufReader::with_capacity(64 * 1024, reader.take(limit + 1)),
        pos: 0,
        limit,
        codec,
    };
    walk_records(&mut input, header, timestamps)
}

fn check_timestamp(b: &TimestampBounds, index: i32, ts: i64) -> Result<(), RecordError> {
    if b.allows(ts) {
        return Ok(());
    }
    Err(RecordError::Timestamp {
        index,
        timestamp: ts,
        min: b.now_ms.saturating_sub(b.before_max_ms),
        max: b.now_ms.saturating_add(b.after_max_ms),
    })
}

/// Why reading the records section stopped.
enum Stop {
    /// The section ended.
    Eof,
    /// A varint longer than its type allows.
    Varint,
    /// Decompression failed or went over the cap.
    Fail(RecordError),
}

/// The records section, as bytes in memory or as a decompressing stream.
trait Input {
    fn byte(&mut self) -> Result<u8, Stop>;
    fn skip(&mut self, n: usize) -> Result<(), Stop>;
    /// Bytes consumed so far.
    fn pos(&self) -> u64;
    /// False when fewer than `n` bytes can follow (only known for bytes in memory).
    fn may_hold(&self, n: usize) -> bool;
    fn at_end(&mut self) -> Result<bool, Stop>;
}

struct SliceInput<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Input for SliceInput<'_> {
    #[inline]
    fn byte(&mut self) -> Result<u8, Stop> {
        let b = *self.buf.get(self.pos).ok_or(Stop::Eof)?;
        self.pos += 1;
        Ok(b)
    }

    #[inline]
    fn skip(&mut self, n: usize) -> Result<(), Stop> {
        if n > self.buf.len() - self.pos {
            return Err(Stop::Eof);
        }
        self.pos += n;
        Ok(())
    }

    #[inline]
    fn pos(&self) -> u64 {
        self.pos as u64
    }

    #[inline]
    fn may_hold(&self, n: usize) -> bool {
        n <= self.buf.len() - self.pos
    }

    fn at_end(&mut self) -> Result<bool, Stop> {
        Ok(self.pos == self.buf.len())
    }
}

struct StreamInput<R> {
    r: std::io::BufReader<std::io::Take<R>>,
    pos: u64,
    limit: u64,
    codec: &'static str,
}

impl<R: Read> StreamInput<R> {
    fn fill(&mut self) -> Result<&[u8], Stop> {
        let codec = self.codec;
        let limit = self.limit;
        self.r.fill_buf().map_err(|e| {
            Stop::Fail(if e.get_ref().is_some_and(|inner| inner.is::<OverCap>()) {
                RecordError::TooLarge { limit }
            } else {
                RecordError::Corrupt(format!("{codec}: {e}"))
            })
        })
    }

    fn advance(&mut self, n: usize) -> Result<(), Stop> {
        self.r.consume(n);
        self.pos += n as u64;
        if self.pos > self.limit {
            return Err(Stop::Fail(RecordError::TooLarge { limit: self.limit }));
        }
        Ok(())
    }
}

impl<R: Read> Input for StreamInput<R> {
    fn byte(&mut self) -> Result<u8, Stop> {
        let b = *self.fill()?.first().ok_or(Stop::Eof)?;
        self.advance(1)?;
        Ok(b)
    }

    fn skip(&mut self, mut n: usize) -> Result<(), Stop> {
        while n > 0 {
            let got = self.fill()?.len().min(n);
            if got == 0 {
                return Err(Stop::Eof);
            }
            self.advance(got)?;
            n -= got;
        }
        Ok(())
    }

    fn pos(&self) -> u64 {
        self.pos
    }

    fn may_hold(&self, _n: usize) -> bool {
        true
    }

    fn at_end(&mut self) -> Result<bool, Stop> {
        let empty = self.fill()?.is_empty();
        if !empty && self.pos >= self.limit {
            return Err(Stop::Fail(RecordError::TooLarge { limit: self.limit }));
        }
        Ok(empty)
    }
}

/// Zigzag varint of at most 5 bytes (Kafka's `ByteUtils.readVarint`).
#[inline]
fn varint(input: &mut impl Input) -> Result<i32, Stop> {
    let mut raw = 0u32;
    let mut shift = 0;
    loop {
        let b = input.byte()?;
        raw |= u32::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok((raw >> 1) as i32 ^ -((raw & 1) as i32));
        }
        shift += 7;
        if shift > 28 {
            return Err(Stop::Varint);
        }
    }
}

/// Zigzag varlong of at most 10 bytes (Kafka's `ByteUtils.readVarlong`).
#[inline]
fn varlong(input: &mut impl Input) -> Result<i64, Stop> {
    let mut raw = 0u64;
    let mut shift = 0;
    loop {
        let b = input.byte()?;
        raw |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok((raw >> 1) as i64 ^ -((raw & 1) as i64));
        }
        shift += 7;
        if shift > 63 {
            return Err(Stop::Varint);
        }
    }
}

/// Skips a nullable length-prefixed field (-1 is null); refuses other negative lengths.
#[inline]
fn skip_nullable(input: &mut impl Input, what: &'static str) -> Result<(), Walk> {
    let len = varint(input)?;
    if len < -1 {
        return Err(Walk::Bad(format!("{what} length {len}")));
    }
    if len > 0 {
        input.skip(len as usize)?;
    }
    Ok(())
}

/// A failure inside one record, before its index is attached.
enum Walk {
    Stop(Stop),
    Bad(String),
}

impl From<Stop> for Walk {
    fn from(s: Stop) -> Self {
        Self::Stop(s)
    }
}

fn walk_records(
    input: &mut impl Input,
    header: &BatchHeader,
    timestamps: Option<TimestampBounds>,
) -> Result<(), RecordError> {
    let invalid = |index: i32, reason: String| RecordError::Invalid { index, reason };
    let stop = |index: i32, s: Stop| match s {
        Stop::Eof => invalid(index, "records end before the batch's record count".into()),
        Stop::Varint => invalid(index, "malformed varint".into()),
        Stop::Fail(e) => e,
    };
    for index in 0..header.record_count {
        let ts_delta = match walk_record(input, index) {
            Ok(d) => d,
            Err(Walk::Stop(s)) => return Err(stop(index, s)),
            Err(Walk::Bad(reason)) => return Err(invalid(index, reason)),
        };
        if let Some(b) = &timestamps {
            check_timestamp(b, index, header.base_timestamp.wrapping_add(ts_delta))?;
        }
    }
    match input.at_end() {
        Ok(true) => Ok(()),
        Ok(false) => Err(invalid(header.record_count, "bytes after the last record".into())),
        Err(s) => Err(stop(header.record_count, s)),
    }
}

/// Walks one record; returns its timestamp delta.
#[inline]
fn walk_record(input: &mut impl Input, index: i32) -> Result<i64, Walk> {
    let len = varint(input)?;
    if len < 0 {
        return Err(Walk::Bad(format!("negative record length {len}")));
    }
    if !input.may_hold(len as usize) {
        return Err(Walk::Bad(format!("record length {len} runs past the end of the batch")));
    }
    let start = input.pos();
    let _attributes = input.byte()?;
    let ts_delta = varlong(input)?;
    let offset_delta = varint(input)?;
    if offset_delta != index {
        return Err(Walk::Bad(format!("offset delta {offset_delta}, expected {index}")));
    }
    skip_nullable(input, "key")?;
    skip_nullable(input, "value")?;
    let headers = varint(input)?;
    if headers < 0 {
        return Err(Walk::Bad(format!("header count {headers}")));
    }
    for _ in 0..headers {
        let key = varint(input)?;
        if key < 0 {
            return Err(Walk::Bad(format!("header key length {key}")));
        }
        input.skip(key as usize)?;
        skip_nullable(input, "header value")?;
    }
    let read = input.pos() - start;
    if read != len as u64 {
        return Err(Walk::Bad(format!("record length {len} but its fields take {read} bytes")));
    }
    Ok(ts_delta)
}

/// A snappy block would take the output past [`MAX_UNCOMPRESSED_BATCH_BYTES`].
#[derive(Debug)]
struct OverCap;

impl std::fmt::Display for OverCap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("decompressed records over the cap")
    }
}

impl std::error::Error for OverCap {}

/// Snappy as Kafka's Java client writes it (xerial framing, blocks of raw snappy) or raw snappy,
/// decompressed block by block into one reused buffer. A block may not expand past the cap.
struct SnappyReader<'a> {
    rest: &'a [u8],
    raw: bool,
    block: Vec<u8>,
    at: usize,
    produced: u64,
}

impl<'a> SnappyReader<'a> {
    fn new(input: &'a [u8]) -> Self {
        let xerial = input.len() >= XERIAL_HEADER_LEN && input[..8] == XERIAL_MAGIC;
        Self {
            rest: if xerial { &input[XERIAL_HEADER_LEN..] } else { input },
            raw: !xerial,
            block: Vec::new(),
            at: 0,
            produced: 0,
        }
    }

    fn next_block(&mut self) -> std::io::Result<bool> {
        let bad = |m: String| std::io::Error::new(std::io::ErrorKind::InvalidData, m);
        if self.rest.is_empty() {
            return Ok(false);
        }
        let block = if self.raw {
            std::mem::take(&mut self.rest)
        } else {
            if self.rest.len() < 4 {
                return Err(bad("truncated xerial block length".into()));
            }
            let len = u32::from_be_bytes([self.rest[0], self.rest[1], self.rest[2], self.rest[3]]) as usize;
            let rest = &self.rest[4..];
            if rest.len() < len {
                return Err(bad(format!("xerial block of {len} bytes, {} present", rest.len())));
            }
            self.rest = &rest[len..];
            &rest[..len]
        };
        let n = snap::raw::decompress_len(block).map_err(|e| bad(e.to_string()))?;
        // A snappy tag of 3 bytes copies at most 64, so a block cannot expand more than ~22
        // times: a larger declared length is corrupt, refused before anything is allocated.
        if n as u64 > 22 * block.len() as u64 + 64 {
            return Err(bad(format!("block of {} bytes declares {n} decompressed", block.len())));
        }
        if self.produced + n as u64 > MAX_UNCOMPRESSED_BATCH_BYTES {
            return Err(std::io::Error::other(OverCap));
        }
        self.block.resize(n, 0);
        let written = snap::raw::Decoder::new()
            .decompress(block, &mut self.block)
            .map_err(|e| bad(e.to_string()))?;
        self.block.truncate(written);
        self.produced += self.block.len() as u64;
        self.at = 0;
        Ok(true)
    }
}

impl Read for SnappyReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.at == self.block.len() {
            if !self.next_block()? {
                return Ok(0);
            }
        }
        let n = out.len().min(self.block.len() - self.at);
        out[..n].copy_from_slice(&self.block[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests;
