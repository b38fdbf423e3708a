//! Entry points of the fuzz targets in `fuzz/` (cargo-fuzz, nightly) and of the stable test that
//! replays their committed corpora (`fuzz_entry::tests`), so both run the same code.
//!
//! Each function takes arbitrary bytes, shapes them the way an attacker (or a corrupted disk)
//! could present them to one reader of the gateway, calls that reader exactly as production code
//! does, and panics only when a property that must hold for every input is broken. A decoder
//! refusing the input is a normal outcome. Where a checksum guards the reader, the entry first
//! rewrites the checksum so that mutations reach the parser behind it; a flag byte keeps the
//! unrepaired path reachable too.
//!
//! Not part of the gateway's API: hidden from the docs and kept out of every production path.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::protocol::{decode_request, versions::SUPPORTED, Decoded};
use crate::records::validate::{validate_records, TimestampBounds};
use crate::records::{iter_headers, split_and_validate, BatchHeader, HEADER_LEN, LOG_OVERHEAD};
use crate::records::batch_codec::{self, DecodedBatch};
use crate::storage::seaweedmq::envelope;
use crate::storage::seaweedmq::pb::messaging_pb::DataMessage;
use crate::storage::seaweedmq::rebuild::{decode_messages, encode_batches};

/// An entry function: arbitrary bytes in, a panic only for a broken property.
pub type Entry = fn(&[u8]);

/// The fuzz targets, by the name of their `fuzz/fuzz_targets/<name>.rs` file and corpus
/// directory, with their entry function.
pub const TARGETS: &[(&str, Entry)] = &[
    ("request", request),
    ("record_batch", record_batch),
    ("smq_envelope", smq_envelope),
    ("smq_batch_codec", smq_batch_codec),
    ("group_log", group_log),
    ("raft_log", raft_log),
];

/// A request frame (size prefix removed) through [`decode_request`], the server's decoder,
/// including the length pre-check of the patched `kafka-protocol`.
///
/// Byte 0 picks an API of [`SUPPORTED`] and byte 1 a version in its range, so every served API
/// is reached at every supported version; the remaining bytes follow the API key and version as
/// the rest of the header (correlation id, client id, tagged fields) and the body. With byte 0
/// equal to 255 the remaining bytes are the whole frame, unknown APIs and versions included.
pub fn request(data: &[u8]) {
    let frame = match data {
        [255, rest @ ..] => Bytes::copy_from_slice(rest),
        [api, version, rest @ ..] => {
            let range = &SUPPORTED[usize::from(*api) % SUPPORTED.len()];
            let span = (range.max - range.min + 1) as u8;
            let mut f = BytesMut::with_capacity(4 + rest.len());
            f.put_i16(range.key as i16);
            f.put_i16(range.min + i16::from(version % span));
            f.put_slice(rest);
            f.freeze()
        }
        _ => return,
    };
    if let Ok(Decoded::Request { header, api, .. }) = decode_request(frame.clone()) {
        assert_eq!(header.request_api_key, api as i16, "header names another api");
        assert_eq!(&frame[..2], &(api as i16).to_be_bytes(), "decoded another api");
    }
}

/// Rewrites the batches in `buf` so each carries a length inside the buffer and a valid CRC32C,
/// leaving every other byte as the fuzzer made it.
fn repair_batches(buf: &mut [u8]) {
    let mut pos = 0;
    while buf.len() - pos >= HEADER_LEN {
        let rest = buf.len() - pos;
        let declared = (&buf[pos + 8..pos + 12]).get_i32();
        let len = match usize::try_from(declared) {
            Ok(l) if l >= HEADER_LEN - LOG_OVERHEAD && l + LOG_OVERHEAD <= rest => l + LOG_OVERHEAD,
            _ => rest,
        };
        buf[pos + 8..pos + 12].copy_from_slice(&((len - LOG_OVERHEAD) as i32).to_be_bytes());
        let crc = crc32c::crc32c(&buf[pos + 21..pos + len]);
        buf[pos + 17..pos + 21].copy_from_slice(&crc.to_be_bytes());
        pos += len;
    }
}

/// A produced record set through the Produce path's checks: [`split_and_validate`] (header,
/// length, CRC, count) then [`validate_records`] (records, offsets, timestamps, compressed
/// streams) per batch, and the fetch path's [`iter_headers`] over an accepted set.
///
/// Byte 0: bit 0 repairs lengths and CRCs first, bit 1 selects LogAppendTime (no timestamp
/// bounds), bits 2-3 the bounds. Property: a batch the validator accepts is one the SeaweedMQ
/// backend can split into records (the same record count), so both backends take the same
/// batches.
pub fn record_batch(data: &[u8]) {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let mut buf = rest.to_vec();
    if flags & 1 != 0 {
        repair_batches(&mut buf);
    }
    let timestamps = (flags & 2 == 0).then_some(TimestampBounds {
        now_ms: 1_700_000_000_000,
        before_max_ms: [i64::MAX, 0, 1000, 3_600_000][usize::from(flags >> 2 & 3)],
        after_max_ms: [3_600_000, 0, i64::MAX, 1][usize::from(flags >> 2 & 3)],
    });
    let set = Bytes::from(buf);
    let Ok(batches) = split_and_validate(set.clone()) else {
        return;
    };
    assert_eq!(iter_headers(&set).filter(Result::is_ok).count(), batches.len());
    for (header, batch) in &batches {
        if validate_records(header, batch, timestamps).is_err() {
            continue;
        }
        let decoded = batch_codec::decode_validated_batch(batch)
            .unwrap_or_else(|e| panic!("validated batch refused by the SeaweedMQ codec: {e}"));
        assert_eq!(decoded.records.len(), header.record_count as usize);
    }
}

/// Fetched SeaweedMQ messages through the read path: [`envelope::decode_strict`] per value, then
/// [`decode_messages`] and [`encode_batches`], which rebuild the produced record batches.
///
/// The input is a sequence of messages, each: a flag byte (bit 0 makes the value an envelope by
/// setting the magic byte and CRC32C, bit 1 gives the message a key), a length byte for the key,
/// a big-endian u16 length for the value, then the bytes. Property: whatever the messages hold,
/// the rebuilt batches are valid Kafka batches (they pass the Produce path's checks and decode
/// to the records served).
pub fn smq_envelope(data: &[u8]) {
    let mut input = data;
    let mut messages = Vec::new();
    while input.len() >= 4 && messages.len() < 256 {
        let flags = input.get_u8();
        let key_len = usize::from(input.get_u8()).min(input.len());
        let key = Bytes::copy_from_slice(&input[..if flags & 2 != 0 { key_len } else { 0 }]);
        input.advance(if flags & 2 != 0 { key_len } else { 0 });
        if input.len() < 2 {
            break;
        }
        let value_len = usize::from(input.get_u16()).min(input.len());
        let mut value = input[..value_len].to_vec();
        input.advance(value_len);
        if flags & 1 != 0 && value.len() > 6 {
            value[0] = envelope::MAGIC;
            let crc = envelope::checksum(&value);
            value[2..6].copy_from_slice(&crc.to_be_bytes());
        }
        let value = Bytes::from(value);
        let _ = envelope::decode_strict(value.clone());
        let ts_ns = i64::from(flags) * 1_000_000_007;
        messages.push(DataMessage { key, value, ts_ns });
    }
    let log_append_time = data.first().is_some_and(|f| f & 4 != 0);
    let Ok(stored) = decode_messages(messages) else {
        return;
    };
    let count = stored.len();
    let (batches, rest) = encode_batches(7, stored, log_append_time, 1 << 20);
    if count > 0 {
        assert!(
            !batches.is_empty() || rest.len() == count,
            "nothing served and nothing left"
        );
    }
    if batches.is_empty() {
        return;
    }
    let split = split_and_validate(batches.clone())
        .unwrap_or_else(|e| panic!("rebuilt batches fail the produce checks: {e}"));
    for (header, batch) in &split {
        validate_records(header, batch, None)
            .unwrap_or_else(|e| panic!("rebuilt batch has invalid records: {e}"));
    }
    let decoded = batch_codec::decode_batches(&batches)
        .unwrap_or_else(|e| panic!("rebuilt batches do not decode: {e}"));
    let served: usize = decoded.iter().map(|b| b.records.len()).sum();
    assert_eq!(
        served + rest.len(),
        count,
        "records lost or duplicated by the rebuild"
    );
}

/// A record batch through the SeaweedMQ batch codec's decoders ([`batch_codec::decode_batch`]
/// with CRC, [`batch_codec::decode_validated_batch`] as the append path uses it,
/// [`batch_codec::decode_batches`] over a record set).
///
/// Byte 0: bit 0 repairs lengths and CRCs first. Properties: the two single-batch decoders agree,
/// and a decoded batch encodes (uncompressed) and decodes back to the same records.
pub fn smq_batch_codec(data: &[u8]) {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let mut buf = rest.to_vec();
    if flags & 1 != 0 {
        repair_batches(&mut buf);
    }
    let set = Bytes::from(buf);
    let _ = batch_codec::decode_batches(&set);
    let one = match BatchHeader::parse(&set) {
        Ok(h) if h.total_len() <= set.len() => set.slice(..h.total_len()),
        _ => set,
    };
    let Ok(decoded) = batch_codec::decode_batch(&one) else {
        return;
    };
    let validated = batch_codec::decode_validated_batch(&one)
        .unwrap_or_else(|e| panic!("decode_batch accepted what decode_validated_batch refuses: {e}"));
    assert_eq!(decoded, validated, "the two decoders disagree");
    round_trip(&decoded);
}

fn round_trip(decoded: &DecodedBatch) {
    let log_append_time = decoded.timestamp_type == batch_codec::TimestampType::LogAppendTime;
    let encoded = batch_codec::encode_batch(decoded.base_offset, &decoded.records, log_append_time);
    let again = batch_codec::decode_batch(&encoded)
        .unwrap_or_else(|e| panic!("re-encoded batch does not decode: {e}"));
    assert_eq!(
        again.records, decoded.records,
        "records changed by encode and decode"
    );
}

/// Splits `data` into length-prefixed payloads (big-endian u16 lengths) and frames each as the
/// logs do: u32 length, CRC32C, payload.
fn framed_payloads(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 64);
    while data.len() >= 2 {
        let len = usize::from(data.get_u16()).min(data.len());
        let payload = &data[..len];
        out.extend_from_slice(&(len as u32).to_be_bytes());
        out.extend_from_slice(&crc32c::crc32c(payload).to_be_bytes());
        out.extend_from_slice(payload);
        data.advance(len);
    }
    out
}

/// A group log file (local group store) through the reader used at open (`decode_all`), its
/// records applied to the group image.
///
/// Byte 0: 0 feeds the rest as the file; otherwise the rest is a sequence of u16-length-prefixed
/// JSON payloads, framed with valid CRCs behind the file header. Property: the image's records
/// (what a snapshot holds) frame and read back to the same image.
pub fn group_log(data: &[u8]) {
    use crate::group::record::{encode_frame, FILE_MAGIC};
    use crate::group::store::{decode_all, GroupImage};

    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let file = if mode == 0 {
        rest.to_vec()
    } else {
        let mut f = FILE_MAGIC.to_vec();
        f.extend(framed_payloads(rest));
        f
    };
    let (records, valid, _) = decode_all(&file);
    assert!(valid <= file.len());
    let mut image = GroupImage::default();
    records.iter().for_each(|r| image.apply(r));
    let mut snapshot = FILE_MAGIC.to_vec();
    for r in image.records() {
        encode_frame(&r, &mut snapshot).expect("records serialize");
    }
    let (again, valid, err) = decode_all(&snapshot);
    assert!(
        err.is_none() && valid == snapshot.len(),
        "snapshot does not read back: {err:?}"
    );
    let mut reread = GroupImage::default();
    again.iter().for_each(|r| reread.apply(r));
    assert_eq!(reread, image, "snapshot changes the image");
}

/// A raft log file through the reader used at open: the frame scan (`log_file::scan`, with the
/// log store's index extraction) and the entry decoding (`log_store::decode_entries`).
///
/// Byte 0: 0 feeds the rest as the file; otherwise the rest is a sequence of u16-length-prefixed
/// JSON payloads, framed with valid CRCs. Property: the scan keeps only a prefix of the file, and
/// every frame it keeps decodes as an entry.
pub fn raft_log(data: &[u8]) {
    use crate::cluster::log_file::scan;
    use crate::cluster::log_store::{decode_entries, entry_index};

    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let file = if mode == 0 {
        rest.to_vec()
    } else {
        framed_payloads(rest)
    };
    let scanned = scan(&file, entry_index);
    assert!(scanned.valid_len <= file.len());
    let frames = scanned.frames.len();
    let floor = scanned.frames.first().map(|(i, _)| *i);
    let entries = decode_entries(scanned.frames.clone(), None)
        .unwrap_or_else(|e| panic!("a scanned frame does not decode: {e}"));
    assert!(entries.len() <= frames);
    let above = decode_entries(scanned.frames, floor).expect("decoded once");
    assert!(above.keys().all(|i| Some(*i) > floor));
}

#[cfg(test)]
mod seeds;
#[cfg(test)]
mod tests;
