use bytes::{Bytes, BytesMut};
use kafka_protocol::compression::{Compressor, Gzip};

use super::*;
use crate::records::batch_codec::decode_batch;
use crate::records::{split_and_validate, testing};

/// `(timestamp, key, value)` of one test message.
type Msg = (i64, Option<&'static [u8]>, Option<&'static [u8]>);

fn set(magic: i8, messages: &[Msg]) -> BytesMut {
    let mut out = BytesMut::new();
    for (i, (ts, k, v)) in messages.iter().enumerate() {
        let (k, v) = (k.map(Bytes::from_static), v.map(Bytes::from_static));
        put_message(&mut out, i as i64, magic, 0, *ts, k.as_ref(), v.as_ref());
    }
    out
}

/// A magic-1 wrapper message whose value is `inner` gzip-compressed.
fn gzip_wrapper(inner: &[u8], wrapper_attributes: u8, timestamp: i64) -> BytesMut {
    let mut packed = BytesMut::new();
    <Gzip as Compressor<BytesMut>>::compress(&mut packed, |b: &mut BytesMut| {
        b.extend_from_slice(inner);
        Ok(())
    })
    .unwrap();
    let mut out = BytesMut::new();
    put_message(
        &mut out,
        1,
        1,
        1 | wrapper_attributes,
        timestamp,
        None,
        Some(&packed.freeze()),
    );
    out
}

#[test]
fn v0_and_v1_sets_become_one_valid_v2_batch() {
    let v1 = set(1, &[(1_000, Some(b"k"), Some(b"a")), (1_005, None, None)]).freeze();
    let batch = up_convert(v1, CompressionType::Producer).unwrap();
    assert_eq!(split_and_validate(batch.clone()).unwrap().len(), 1);
    let d = decode_batch(&batch).unwrap();
    assert_eq!(d.compression, Compression::None);
    assert_eq!((d.records.len(), d.max_timestamp, d.producer_id), (2, 1_005, -1));
    assert_eq!(d.records[0].key.as_deref(), Some(&b"k"[..]));
    assert_eq!(d.records[1].value, None, "a null value stays null");
    let v0 = set(0, &[(0, None, Some(b"x"))]).freeze();
    let d = decode_batch(&up_convert(v0, CompressionType::Producer).unwrap()).unwrap();
    assert_eq!(
        (d.records[0].timestamp_ms, d.max_timestamp),
        (-1, -1),
        "magic 0 has no time"
    );
}

#[test]
fn compressed_wrappers_keep_their_codec_unless_the_topic_names_one() {
    let inner = set(1, &[(7, None, Some(b"one")), (8, None, Some(b"two"))]);
    let wrapped = gzip_wrapper(&inner, 0, 8).freeze();
    let d = decode_batch(&up_convert(wrapped.clone(), CompressionType::Producer).unwrap()).unwrap();
    assert_eq!(d.compression, Compression::Gzip);
    let values: Vec<_> = d.records.iter().map(|r| r.value.clone().unwrap()).collect();
    assert_eq!(
        values,
        vec![Bytes::from_static(b"one"), Bytes::from_static(b"two")]
    );
    assert_eq!(d.records[1].offset_delta, 1);
    let d = decode_batch(&up_convert(wrapped, CompressionType::Zstd).unwrap()).unwrap();
    assert_eq!(d.compression, Compression::Zstd);
    // A LogAppendTime wrapper's time applies to its inner messages.
    let stamped = gzip_wrapper(&inner, ATTR_LOG_APPEND_TIME, 99).freeze();
    let d = decode_batch(&up_convert(stamped, CompressionType::Producer).unwrap()).unwrap();
    assert!(d.records.iter().all(|r| r.timestamp_ms == 99));
}

#[test]
fn bad_crcs_magics_nesting_and_every_truncation_are_errors() {
    let mut bad = set(1, &[(1, None, Some(b"value"))]);
    let last = bad.len() - 1;
    bad[last] ^= 1;
    let e = up_convert(bad.freeze(), CompressionType::Producer).unwrap_err();
    assert!(matches!(e, LegacyError::Crc { .. }), "{e}");
    assert_eq!(e.response_error(), kafka_protocol::ResponseError::CorruptMessage);
    let mixed = gzip_wrapper(&set(0, &[(0, None, Some(b"v"))]), 0, 0).freeze();
    let e = up_convert(mixed, CompressionType::Producer).unwrap_err();
    assert!(e.to_string().contains("inner record has magic 0"), "{e}");
    let nested = gzip_wrapper(&gzip_wrapper(&set(1, &[(0, None, Some(b"v"))]), 0, 0), 0, 0).freeze();
    assert!(up_convert(nested, CompressionType::Producer).is_err());
    let good = set(1, &[(1, Some(b"key"), Some(b"value")), (2, None, Some(b"v2"))]).freeze();
    let first_len = LOG_OVERHEAD + i32::from_be_bytes(good[8..12].try_into().unwrap()) as usize;
    for cut in (0..good.len()).filter(|c| *c != first_len) {
        let r = up_convert(good.slice(..cut), CompressionType::Producer);
        assert!(r.is_err(), "a set cut at {cut} bytes is refused");
    }
    // Lengths larger than the bytes left, negative sizes.
    let mut huge = BytesMut::from(&good[..]);
    huge[8..12].copy_from_slice(&i32::MAX.to_be_bytes());
    assert!(up_convert(huge.freeze(), CompressionType::Producer).is_err());
    let mut negative = BytesMut::from(&good[..]);
    negative[8..12].copy_from_slice(&(-5i32).to_be_bytes());
    assert!(up_convert(negative.freeze(), CompressionType::Producer).is_err());
}

#[test]
fn stored_batches_down_convert_to_the_fetch_versions_format() {
    assert_eq!(
        (fetch_magic(0), fetch_magic(1), fetch_magic(2), fetch_magic(3)),
        (Some(0), Some(0), Some(1), Some(1))
    );
    assert_eq!(fetch_magic(4), None);
    let mut first = testing::batch(&[b"a", b"b"], 500, -1, -1, -1);
    first[0..8].copy_from_slice(&10i64.to_be_bytes());
    let mut second = testing::batch(&[b"c"], 600, -1, -1, -1);
    second[0..8].copy_from_slice(&12i64.to_be_bytes());
    let mut stored = first;
    stored.extend_from_slice(&second);
    for magic in [0, 1] {
        let set = down_convert(&stored, magic, 11).unwrap();
        let messages = parse_set(&set).unwrap();
        let values: Vec<_> = messages.iter().map(|m| m.value.clone().unwrap()).collect();
        assert_eq!(
            values,
            vec![Bytes::from_static(b"b"), Bytes::from_static(b"c")],
            "magic {magic}"
        );
        assert!(messages.iter().all(|m| m.magic == magic && m.key.is_none()));
        let offsets: Vec<i64> = (0..2)
            .map(|i| {
                let mut pos = 0;
                for _ in 0..i {
                    let size = i32::from_be_bytes(set[pos + 8..pos + 12].try_into().unwrap());
                    pos += LOG_OVERHEAD + size as usize;
                }
                i64::from_be_bytes(set[pos..pos + 8].try_into().unwrap())
            })
            .collect();
        assert_eq!(offsets, vec![11, 12]);
        let times: Vec<i64> = messages.iter().map(|m| m.timestamp).collect();
        assert_eq!(times, if magic == 1 { vec![500, 600] } else { vec![-1, -1] });
    }
    // Round trip: what a magic 1 client would read back up-converts to the same records.
    let back = up_convert(down_convert(&stored, 1, 0).unwrap(), CompressionType::Producer).unwrap();
    assert_eq!(decode_batch(&back).unwrap().records.len(), 3);
}

/// Recomputes the CRC of every message of `set` whose declared size fits, so mutations reach the
/// checks behind the CRC.
fn fix_crcs(set: &mut [u8]) {
    let mut pos = 0;
    while pos + LOG_OVERHEAD + 4 <= set.len() {
        let size = i32::from_be_bytes(set[pos + 8..pos + 12].try_into().unwrap());
        let Ok(size) = usize::try_from(size) else { return };
        let (body, end) = (pos + LOG_OVERHEAD, pos + LOG_OVERHEAD + size);
        if size < 4 || end > set.len() {
            return;
        }
        let mut crc = flate2::Crc::new();
        crc.update(&set[body + 4..end]);
        set[body..body + 4].copy_from_slice(&crc.sum().to_be_bytes());
        pos = end;
    }
}

/// Random byte changes (with CRCs made valid again) of plain and compressed message sets are
/// refused or converted into a valid batch, never a panic.
#[test]
fn mutated_message_sets_are_refused_or_converted_never_a_panic() {
    use crate::records::batch_codec::wire::XorShift;
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    let plain = set(
        1,
        &[
            (1, Some(b"key"), Some(b"value")),
            (2, None, Some(b"v2")),
            (3, Some(b""), None),
        ],
    );
    let (mut ok, mut refused) = (0, 0);
    for round in 0..3000 {
        let mut m = plain.clone();
        for _ in 0..=rng.below(3) {
            let at = rng.below(m.len() as u64) as usize;
            m[at] = match rng.below(3) {
                0 => m[at] ^ (1 << rng.below(8)),
                1 => 0xff,
                _ => rng.next() as u8,
            };
        }
        if rng.below(4) == 0 {
            m.truncate(rng.below(m.len() as u64) as usize);
        }
        fix_crcs(&mut m);
        let input = if round % 2 == 0 {
            m.freeze()
        } else {
            let mut wrapper = gzip_wrapper(&m, 0, 1);
            fix_crcs(&mut wrapper);
            wrapper.freeze()
        };
        match up_convert(input, CompressionType::Producer) {
            Ok(batch) => {
                ok += 1;
                assert!(
                    split_and_validate(batch).is_ok(),
                    "round {round}: converted batch is valid"
                );
            }
            Err(_) => refused += 1,
        }
    }
    assert!(
        ok > 0 && refused > 0,
        "both outcomes reached: {ok} converted, {refused} refused"
    );
}
