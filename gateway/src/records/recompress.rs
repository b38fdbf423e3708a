//! `compression.type` on write: a produced v2 batch whose codec differs from the topic's is
//! stored recompressed with the topic's codec, as Kafka's `LogValidator` does; the header
//! (producer id, epoch, sequence, timestamps, offsets) is kept and the CRC recomputed. A
//! `producer` topic, or a batch already in the topic's codec, is stored as received.
//!
//! Compression uses the `kafka-protocol` crate's compressors (the same framings Kafka's Java
//! producer writes: xerial snappy, LZ4 frames, gzip, zstd).

use bytes::{Bytes, BytesMut};
use kafka_protocol::compression::{Compressor, Gzip, Lz4, Snappy, Zstd};

use super::batch_codec::compression::{decompress, Compression, DecompressError};
use super::batch_codec::CodecError;
use super::validate::MAX_UNCOMPRESSED_BATCH_BYTES;
use super::{BatchError, BatchHeader, HEADER_LEN, LOG_OVERHEAD};
use crate::storage::CompressionType;

const CODEC_MASK: i16 = 0x07;

/// `batch` (one whole, validated v2 batch) in the codec `target` asks for.
///
/// # Errors
/// [`CodecError`] when the records section does not decompress within
/// [`MAX_UNCOMPRESSED_BATCH_BYTES`] or the recompressed batch does not fit the format.
pub fn to_topic_codec(batch: Bytes, target: CompressionType) -> Result<Bytes, CodecError> {
    let Some(id) = target.attribute_id() else {
        return Ok(batch);
    };
    let header = BatchHeader::parse(&batch)?;
    if header.attributes & CODEC_MASK == id {
        return Ok(batch);
    }
    let source = Compression::from_attributes(header.attributes)
        .ok_or(CodecError::UnknownCompression(header.attributes & CODEC_MASK))?;
    let limit = usize::try_from(MAX_UNCOMPRESSED_BATCH_BYTES).unwrap_or(usize::MAX);
    let section = decompress(source, &batch[HEADER_LEN..], limit).map_err(CodecError::Decompress)?;
    let packed = compress(target, &section)?;
    let mut out = BytesMut::with_capacity(HEADER_LEN + packed.len());
    out.extend_from_slice(&batch[..HEADER_LEN]);
    out.extend_from_slice(&packed);
    let length = i32::try_from(out.len() - LOG_OVERHEAD)
        .map_err(|_| BatchError::Invalid("recompressed batch exceeds 2 GiB".into()))?;
    out[8..12].copy_from_slice(&length.to_be_bytes());
    let attributes = (header.attributes & !CODEC_MASK) | id;
    out[21..23].copy_from_slice(&attributes.to_be_bytes());
    let crc = crc32c::crc32c(&out[21..]);
    out[17..21].copy_from_slice(&crc.to_be_bytes());
    Ok(out.freeze())
}

/// Compresses a records section with the topic's codec.
fn compress(target: CompressionType, section: &[u8]) -> Result<BytesMut, CodecError> {
    let mut out = BytesMut::with_capacity(section.len() / 2 + 64);
    let fill = |b: &mut BytesMut| -> anyhow::Result<()> {
        b.extend_from_slice(section);
        Ok(())
    };
    let done = match target {
        CompressionType::Producer | CompressionType::Uncompressed => {
            out.extend_from_slice(section);
            Ok(())
        }
        CompressionType::Gzip => <Gzip as Compressor<BytesMut>>::compress(&mut out, fill),
        CompressionType::Snappy => <Snappy as Compressor<BytesMut>>::compress(&mut out, fill),
        CompressionType::Lz4 => <Lz4 as Compressor<BytesMut>>::compress(&mut out, fill),
        CompressionType::Zstd => <Zstd as Compressor<BytesMut>>::compress(&mut out, fill),
    };
    done.map_err(|e| {
        CodecError::Decompress(DecompressError::Corrupt {
            codec: Compression::None,
            source: std::io::Error::other(e.to_string()),
        })
    })?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::batch_codec::decode_batch;
    use crate::records::testing::batch;

    #[test]
    fn batches_take_the_topic_codec_and_keep_their_records_and_header() {
        let plain = batch(&[b"alpha", b"beta", b"gamma"], 1_000, 7, 1, 5).freeze();
        let original = decode_batch(&plain).unwrap();
        let same = to_topic_codec(plain.clone(), CompressionType::Producer).unwrap();
        assert_eq!(same, plain, "producer: stored as received");
        let mut previous = plain.clone();
        for target in [
            CompressionType::Gzip,
            CompressionType::Snappy,
            CompressionType::Lz4,
            CompressionType::Zstd,
            CompressionType::Uncompressed,
        ] {
            let out = to_topic_codec(previous.clone(), target).unwrap();
            let d = decode_batch(&out).unwrap_or_else(|e| panic!("{target:?}: {e}"));
            assert_eq!(Some(d.attributes & CODEC_MASK), target.attribute_id());
            assert_eq!(d.records, original.records, "{target:?}");
            assert_eq!(
                (d.producer_id, d.producer_epoch, d.base_sequence, d.max_timestamp),
                (7, 1, 5, 1_000)
            );
            let again = to_topic_codec(out.clone(), target).unwrap();
            assert_eq!(again, out, "{target:?}: a batch already in the codec is kept");
            previous = out;
        }
    }
}
