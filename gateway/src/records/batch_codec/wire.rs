//! Kafka's variable-length integers (zig-zag varints) and a bounds-checked reader over `Bytes`.
//!
//! Shared by the record batch codec and the envelope codec. Every read checks the remaining
//! length first, so truncated or hostile input yields [`WireError`], never a panic, and slices
//! handed out are zero-copy views of the input buffer.

use bytes::{BufMut, Bytes, BytesMut};

/// A low-level read failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum WireError {
    /// The input ended inside a field.
    #[error("input ends at byte {at} but {needed} more bytes are needed")]
    Truncated {
        /// Position of the read that failed.
        at: usize,
        /// Bytes the read needed.
        needed: usize,
    },
    /// A varint ran past 10 bytes or past the range of its target type.
    #[error("malformed varint at byte {at}")]
    Varint {
        /// Position of the varint.
        at: usize,
    },
}

/// Appends `v` as a zig-zag varint (Kafka's `varint`/`varlong`).
pub(crate) fn put_varint(buf: &mut BytesMut, v: i64) {
    put_uvarint(buf, ((v << 1) ^ (v >> 63)) as u64);
}

/// Appends `v` as an unsigned LEB128 varint.
pub(crate) fn put_uvarint(buf: &mut BytesMut, mut v: u64) {
    while v >= 0x80 {
        buf.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    buf.put_u8(v as u8);
}

/// Number of bytes `put_varint(v)` writes.
pub(crate) fn varint_len(v: i64) -> usize {
    uvarint_len(((v << 1) ^ (v >> 63)) as u64)
}

/// Number of bytes `put_uvarint(v)` writes.
pub(crate) fn uvarint_len(v: u64) -> usize {
    let bits = 64 - (v | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

/// A forward-only reader over a shared buffer.
#[derive(Debug)]
pub(crate) struct Reader<'a> {
    buf: &'a Bytes,
    pos: usize,
    end: usize,
}

impl<'a> Reader<'a> {
    /// Reads `buf[start..end]`; `end` must not exceed `buf.len()` (clamped if it does).
    pub(crate) fn new(buf: &'a Bytes, start: usize, end: usize) -> Self {
        let end = end.min(buf.len());
        Self {
            buf,
            pos: start.min(end),
            end,
        }
    }

    /// Current absolute position in the underlying buffer.
    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    /// Bytes left before the end of this reader's window.
    pub(crate) fn remaining(&self) -> usize {
        self.end - self.pos
    }

    fn need(&self, n: usize) -> Result<(), WireError> {
        if self.remaining() < n {
            return Err(WireError::Truncated {
                at: self.pos,
                needed: n,
            });
        }
        Ok(())
    }

    /// One byte.
    pub(crate) fn u8(&mut self) -> Result<u8, WireError> {
        self.need(1)?;
        let b = self.buf[self.pos];
        self.pos += 1;
        Ok(b)
    }

    /// An unsigned LEB128 varint of at most 10 bytes.
    pub(crate) fn uvarint(&mut self) -> Result<u64, WireError> {
        let start = self.pos;
        let mut out = 0u64;
        for i in 0..10 {
            let b = self.u8().map_err(|_| WireError::Truncated {
                at: start,
                needed: i + 1,
            })?;
            if i == 9 && b > 1 {
                return Err(WireError::Varint { at: start });
            }
            out |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(out);
            }
        }
        Err(WireError::Varint { at: start })
    }

    /// A zig-zag varlong.
    pub(crate) fn varlong(&mut self) -> Result<i64, WireError> {
        let z = self.uvarint()?;
        Ok(((z >> 1) as i64) ^ -((z & 1) as i64))
    }

    /// A zig-zag varint that must fit an `i32`.
    pub(crate) fn varint(&mut self) -> Result<i32, WireError> {
        let at = self.pos;
        i32::try_from(self.varlong()?).map_err(|_| WireError::Varint { at })
    }

    /// The next `n` bytes as a zero-copy slice.
    pub(crate) fn bytes(&mut self, n: usize) -> Result<Bytes, WireError> {
        self.need(n)?;
        let out = self.buf.slice(self.pos..self.pos + n);
        self.pos += n;
        Ok(out)
    }

    /// A `varint` length followed by that many bytes; length -1 means null.
    ///
    /// Lengths below -1 are reported as [`WireError::Varint`].
    pub(crate) fn nullable_bytes(&mut self) -> Result<Option<Bytes>, WireError> {
        let at = self.pos;
        match self.varint()? {
            -1 => Ok(None),
            n if n < -1 => Err(WireError::Varint { at }),
            n => self.bytes(n as usize).map(Some),
        }
    }

    /// Everything up to the end of the window.
    pub(crate) fn rest(&mut self) -> Bytes {
        let out = self.buf.slice(self.pos..self.end);
        self.pos = self.end;
        out
    }
}

/// Appends a `varint` length and the bytes, or -1 for `None`.
pub(crate) fn put_nullable_bytes(buf: &mut BytesMut, b: Option<&Bytes>) {
    match b {
        None => put_varint(buf, -1),
        Some(b) => {
            put_varint(buf, b.len() as i64);
            buf.put_slice(b);
        }
    }
}

/// Decodes a header key the way Kafka's Java client does: UTF-8, invalid sequences replaced.
pub(crate) fn header_key(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A deterministic xorshift generator for property-style tests.
#[cfg(test)]
#[derive(Debug)]
pub(crate) struct XorShift(pub(crate) u64);

#[cfg(test)]
impl XorShift {
    /// Next 64 random bits.
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Uniform in `0..n` (`n > 0`).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// `n` random bytes.
    pub(crate) fn bytes(&mut self, n: usize) -> bytes::Bytes {
        (0..n).map(|_| self.next() as u8).collect::<Vec<_>>().into()
    }

    /// `None`, empty or up to `max` random bytes, each a third of the time.
    pub(crate) fn nullable(&mut self, max: usize) -> Option<bytes::Bytes> {
        match self.below(3) {
            0 => None,
            1 => Some(bytes::Bytes::new()),
            _ => {
                let n = self.below(max as u64 + 1) as usize;
                Some(self.bytes(n))
            }
        }
    }

    /// A random i64 biased towards small magnitudes and the extremes.
    pub(crate) fn i64(&mut self) -> i64 {
        match self.below(4) {
            0 => self.below(2000) as i64 - 1000,
            1 => [i64::MIN, i64::MAX, -1, 0][self.below(4) as usize],
            _ => self.next() as i64 >> self.below(64),
        }
    }

    /// A short random header list with repeated keys and null values.
    pub(crate) fn headers(&mut self) -> Vec<(String, Option<bytes::Bytes>)> {
        let names = ["", "k", "trace-id", "ключ", "k"];
        (0..self.below(5))
            .map(|_| (names[self.below(5) as usize].to_owned(), self.nullable(20)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip_with_predicted_lengths() {
        let samples = [
            0i64,
            1,
            -1,
            63,
            -64,
            64,
            300,
            -300,
            i32::MAX as i64,
            i32::MIN as i64,
            i64::MAX,
            i64::MIN,
        ];
        for v in samples {
            let mut b = BytesMut::new();
            put_varint(&mut b, v);
            assert_eq!(b.len(), varint_len(v), "length of {v}");
            let b = b.freeze();
            let mut r = Reader::new(&b, 0, b.len());
            assert_eq!(r.varlong().unwrap(), v);
            assert_eq!(r.remaining(), 0);
        }
    }

    #[test]
    fn overlong_and_truncated_varints_are_errors() {
        let b = Bytes::from_static(&[0xff; 11]);
        assert!(matches!(
            Reader::new(&b, 0, 11).uvarint(),
            Err(WireError::Varint { at: 0 })
        ));
        let b = Bytes::from_static(&[0x80, 0x80]);
        assert!(matches!(
            Reader::new(&b, 0, 2).uvarint(),
            Err(WireError::Truncated { .. })
        ));
        let mut big = BytesMut::new();
        put_varint(&mut big, i64::from(i32::MAX) + 1);
        let big = big.freeze();
        assert!(matches!(
            Reader::new(&big, 0, big.len()).varint(),
            Err(WireError::Varint { .. })
        ));
        let b = Bytes::from_static(&[0x03]); // zig-zag -2: an invalid length
        assert!(Reader::new(&b, 0, 1).nullable_bytes().is_err());
    }
}
