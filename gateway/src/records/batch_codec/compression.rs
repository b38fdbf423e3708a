//! Bounded decompression of a v2 batch's records section (attributes bits 0-2).
//!
//! Every codec stops once the output would exceed the caller's limit, so a small hostile batch
//! cannot make the gateway allocate gigabytes (a "decompression bomb"). Formats follow Kafka's
//! Java client: gzip (possibly multi-member), snappy in xerial framing with a fallback to raw
//! snappy (as `SnappyInputStream` does), the LZ4 frame format, and zstd frames.

use std::io::Read;

use bytes::Bytes;

/// The compression codec of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Uncompressed.
    None,
    /// gzip (attributes 1).
    Gzip,
    /// snappy (attributes 2).
    Snappy,
    /// LZ4 frame (attributes 3).
    Lz4,
    /// zstd (attributes 4).
    Zstd,
}

impl Compression {
    /// The codec named by a batch's attributes, or `None` for the reserved ids 5-7.
    pub fn from_attributes(attributes: i16) -> Option<Self> {
        match attributes & 0x07 {
            0 => Some(Self::None),
            1 => Some(Self::Gzip),
            2 => Some(Self::Snappy),
            3 => Some(Self::Lz4),
            4 => Some(Self::Zstd),
            _ => None,
        }
    }
}

/// Why a records section could not be decompressed.
#[derive(Debug, thiserror::Error)]
pub enum DecompressError {
    /// The codec rejected the input.
    #[error("corrupt {codec:?} data: {source}")]
    Corrupt {
        /// Codec in use.
        codec: Compression,
        /// The codec's complaint.
        #[source]
        source: std::io::Error,
    },
    /// The output would exceed the limit.
    #[error("decompressed records exceed {limit} bytes")]
    TooLarge {
        /// The limit in force.
        limit: usize,
    },
}

const XERIAL_MAGIC: [u8; 8] = [0x82, b'S', b'N', b'A', b'P', b'P', b'Y', 0];
const XERIAL_HEADER_LEN: usize = 16;

/// Decompresses `input` (a whole records section) with `codec`, producing at most `limit` bytes.
pub(crate) fn decompress(codec: Compression, input: &[u8], limit: usize) -> Result<Bytes, DecompressError> {
    let corrupt = |source: std::io::Error| DecompressError::Corrupt { codec, source };
    match codec {
        Compression::None => {
            if input.len() > limit {
                return Err(DecompressError::TooLarge { limit });
            }
            Ok(Bytes::copy_from_slice(input))
        }
        Compression::Gzip => read_bounded(flate2::read::MultiGzDecoder::new(input), limit, codec),
        Compression::Lz4 => read_bounded(lz4::Decoder::new(input).map_err(corrupt)?, limit, codec),
        Compression::Zstd => read_bounded(
            zstd::stream::read::Decoder::new(input).map_err(corrupt)?,
            limit,
            codec,
        ),
        Compression::Snappy => snappy(input, limit),
    }
}

fn read_bounded(reader: impl Read, limit: usize, codec: Compression) -> Result<Bytes, DecompressError> {
    let mut out = Vec::new();
    reader
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|source| DecompressError::Corrupt { codec, source })?;
    if out.len() > limit {
        return Err(DecompressError::TooLarge { limit });
    }
    Ok(Bytes::from(out))
}

fn snappy(input: &[u8], limit: usize) -> Result<Bytes, DecompressError> {
    let corrupt = |msg: String| DecompressError::Corrupt {
        codec: Compression::Snappy,
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, msg),
    };
    let mut out = Vec::new();
    let append_block = |block: &[u8], out: &mut Vec<u8>| -> Result<(), DecompressError> {
        let n = snap::raw::decompress_len(block).map_err(|e| corrupt(e.to_string()))?;
        if out.len().saturating_add(n) > limit {
            return Err(DecompressError::TooLarge { limit });
        }
        let start = out.len();
        out.resize(start + n, 0);
        let written = snap::raw::Decoder::new()
            .decompress(block, &mut out[start..])
            .map_err(|e| corrupt(e.to_string()))?;
        out.truncate(start + written);
        Ok(())
    };
    if input.len() < XERIAL_HEADER_LEN || input[..8] != XERIAL_MAGIC {
        append_block(input, &mut out)?;
        return Ok(Bytes::from(out));
    }
    let mut rest = &input[XERIAL_HEADER_LEN..];
    while !rest.is_empty() {
        if rest.len() < 4 {
            return Err(corrupt("truncated xerial block length".into()));
        }
        let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        rest = &rest[4..];
        if rest.len() < len {
            return Err(corrupt(format!(
                "xerial block of {len} bytes, {} present",
                rest.len()
            )));
        }
        append_block(&rest[..len], &mut out)?;
        rest = &rest[len..];
    }
    Ok(Bytes::from(out))
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn bombs_stop_at_the_limit() {
        let zeros = vec![0u8; 1 << 20];
        let gz = gzip(&zeros);
        assert!(gz.len() < 10_000);
        assert!(matches!(
            decompress(Compression::Gzip, &gz, 1000),
            Err(DecompressError::TooLarge { limit: 1000 })
        ));
        assert_eq!(
            decompress(Compression::Gzip, &gz, 1 << 20).unwrap().len(),
            1 << 20
        );
        let zst = zstd::encode_all(&zeros[..], 3).unwrap();
        assert!(matches!(
            decompress(Compression::Zstd, &zst, 1000),
            Err(DecompressError::TooLarge { .. })
        ));
        let sn = snap::raw::Encoder::new().compress_vec(&zeros).unwrap();
        assert!(matches!(
            decompress(Compression::Snappy, &sn, 1000),
            Err(DecompressError::TooLarge { .. })
        ));
        assert!(matches!(
            decompress(Compression::None, &zeros, 1000),
            Err(DecompressError::TooLarge { .. })
        ));
    }

    #[test]
    fn multi_member_gzip_and_raw_snappy_are_read() {
        let mut two = gzip(b"hello ");
        two.extend(gzip(b"world"));
        assert_eq!(
            &decompress(Compression::Gzip, &two, 100).unwrap()[..],
            b"hello world"
        );
        let raw = snap::raw::Encoder::new().compress_vec(b"plain snappy").unwrap();
        assert_eq!(
            &decompress(Compression::Snappy, &raw, 100).unwrap()[..],
            b"plain snappy"
        );
    }

    #[test]
    fn garbage_is_an_error_for_every_codec() {
        let junk = [0x5au8; 64];
        for c in [
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            assert!(decompress(c, &junk, 1 << 20).is_err(), "{c:?} accepted garbage");
        }
        let mut xerial = XERIAL_MAGIC.to_vec();
        xerial.extend([0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 9, 1]);
        assert!(decompress(Compression::Snappy, &xerial, 100).is_err());
    }
}
