use bytes::{Bytes, BytesMut};
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{self as kp, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions};

use super::wire::XorShift;
use super::*;
use crate::records::{split_and_validate, testing};

fn out(
    offset_delta: i32,
    timestamp_ms: i64,
    key: Option<&'static [u8]>,
    value: Option<&'static [u8]>,
) -> RecordOut {
    RecordOut {
        offset_delta,
        timestamp_ms,
        key: key.map(Bytes::from_static),
        value: value.map(Bytes::from_static),
        headers: Vec::new(),
    }
}

fn random_records(rng: &mut XorShift, n: usize) -> Vec<RecordOut> {
    let base = rng.i64() >> 8;
    (0..n)
        .map(|i| RecordOut {
            offset_delta: i as i32,
            timestamp_ms: base + rng.below(20_000) as i64 - 10_000,
            key: rng.nullable(30),
            value: rng.nullable(500),
            headers: rng.headers(),
        })
        .collect()
}

/// Records as the kafka-protocol crate models them (headers deduplicated by its `IndexMap`).
fn to_kp(records: &[RecordOut], producer_id: i64) -> Vec<kp::Record> {
    records
        .iter()
        .map(|r| kp::Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id,
            producer_epoch: if producer_id < 0 { -1 } else { 3 },
            timestamp_type: kp::TimestampType::Creation,
            offset: i64::from(r.offset_delta),
            sequence: if producer_id < 0 { -1 } else { 10 + r.offset_delta },
            timestamp: r.timestamp_ms,
            key: r.key.clone(),
            value: r.value.clone(),
            headers: r
                .headers
                .iter()
                .map(|(k, v)| (StrBytes::from_string(k.clone()), v.clone()))
                .collect::<IndexMap<_, _>>(),
        })
        .collect()
}

fn dedup_headers(h: &[(String, Option<Bytes>)]) -> Vec<(String, Option<Bytes>)> {
    let map: IndexMap<String, Option<Bytes>> = h.iter().cloned().collect();
    map.into_iter().collect()
}

#[test]
fn decodes_the_test_builder_batch_and_reencodes_it_byte_for_byte() {
    let built = testing::batch(&[b"a", b"", b"ccc"], 1_700_000_000_000, -1, -1, -1);
    let d = decode_batch(&built).unwrap();
    assert_eq!(
        (d.base_offset, d.record_count, d.compression),
        (0, 3, Compression::None)
    );
    assert_eq!((d.producer_id, d.producer_epoch, d.base_sequence), (-1, -1, -1));
    assert_eq!(d.timestamp_type, TimestampType::CreateTime);
    let values: Vec<_> = d.records.iter().map(|r| r.value.clone().unwrap()).collect();
    assert_eq!(values, [&b"a"[..], b"", b"ccc"]);
    assert!(d
        .records
        .iter()
        .all(|r| r.key.is_none() && r.timestamp_ms == 1_700_000_000_000));
    assert_eq!(&encode_batch(0, &d.records, false)[..], &built[..]);
    let idem = decode_batch(&testing::batch(&[b"x"], 5, 1000, 2, 77)).unwrap();
    assert_eq!(
        (idem.producer_id, idem.producer_epoch, idem.base_sequence),
        (1000, 2, 77)
    );
}

#[test]
fn decodes_crate_encoded_batches_with_every_codec() {
    let mut rng = XorShift(0xdead_beef);
    let codecs = [
        (kp::Compression::None, Compression::None),
        (kp::Compression::Gzip, Compression::Gzip),
        (kp::Compression::Snappy, Compression::Snappy),
        (kp::Compression::Lz4, Compression::Lz4),
        (kp::Compression::Zstd, Compression::Zstd),
    ];
    for (theirs, ours) in codecs {
        for n in [1, 2, 17, 200] {
            let mut records = random_records(&mut rng, n);
            for r in &mut records {
                r.headers = dedup_headers(&r.headers);
            }
            let mut buf = BytesMut::new();
            let options = RecordEncodeOptions {
                version: 2,
                compression: theirs,
            };
            RecordBatchEncoder::encode(&mut buf, &to_kp(&records, 4242), &options).unwrap();
            let d = decode_batch(&buf).unwrap();
            let frozen = buf.clone().freeze();
            let validated = decode_validated_batch(&frozen).unwrap();
            assert_eq!(validated, d, "{ours:?}: the produce-path decoder agrees");
            if ours == Compression::None {
                let inside = |b: &Bytes| frozen.as_ptr_range().contains(&b.as_ptr()) || b.is_empty();
                assert!(
                    validated
                        .records
                        .iter()
                        .flat_map(|r| [&r.key, &r.value])
                        .flatten()
                        .all(inside),
                    "uncompressed keys and values are views of the batch"
                );
            }
            assert_eq!(d.compression, ours);
            assert_eq!((d.producer_id, d.producer_epoch, d.base_sequence), (4242, 3, 10));
            assert_eq!(d.records, records, "{ours:?} with {n} records");
            assert_eq!(
                d.max_timestamp,
                records.iter().map(|r| r.timestamp_ms).max().unwrap()
            );
        }
    }
}

#[test]
fn encode_decode_round_trips_exactly_and_validates() {
    let mut rng = XorShift(0x1234_5678);
    for round in 0..300 {
        let n = 1 + rng.below(30) as usize;
        let records = random_records(&mut rng, n);
        let lat = round % 5 == 0;
        let base = (rng.next() >> 4) as i64;
        let bytes = encode_batch(base, &records, lat);
        let (h, _) = split_and_validate(BytesMut::from(&bytes[..]).freeze())
            .unwrap()
            .pop()
            .unwrap();
        assert_eq!(
            (h.base_offset, h.record_count, h.last_offset_delta),
            (base, n as i32, n as i32 - 1)
        );
        let d = decode_batch(&bytes).unwrap();
        assert_eq!(d.records, records);
        assert_eq!(d.base_timestamp, records[0].timestamp_ms);
        assert_eq!(
            d.max_timestamp,
            records.iter().map(|r| r.timestamp_ms).max().unwrap()
        );
        assert_eq!(d.timestamp_type == TimestampType::LogAppendTime, lat);
        // The crate's independent decoder agrees on everything it can represent.
        let theirs = RecordBatchDecoder::decode(&mut bytes.clone()).unwrap();
        for (t, o) in theirs.records.iter().zip(&records) {
            assert_eq!(
                (t.offset, t.timestamp),
                (base + i64::from(o.offset_delta), o.timestamp_ms)
            );
            assert_eq!((&t.key, &t.value), (&o.key, &o.value));
        }
    }
    assert!(encode_batch(0, &[], false).is_empty());
}

#[test]
fn duplicate_headers_keep_order_and_null_differs_from_empty() {
    let mut r = out(0, 9, Some(b""), None);
    r.headers = vec![
        ("a".into(), Some(Bytes::from_static(b"1"))),
        ("a".into(), None),
        ("a".into(), Some(Bytes::new())),
    ];
    let records = vec![r, out(1, 3, None, Some(b""))];
    let d = decode_batch(&encode_batch(7, &records, false)).unwrap();
    assert_eq!(d.records, records);
    assert_eq!((d.base_timestamp, d.max_timestamp), (9, 9));
}

#[test]
fn invalid_batches_are_errors() {
    let good = encode_batch(
        0,
        &[out(0, 1, Some(b"k"), Some(b"v")), out(1, 2, None, Some(b"w"))],
        false,
    );
    let mut crc = BytesMut::from(&good[..]);
    let last = crc.len() - 1;
    crc[last] ^= 1;
    assert!(matches!(
        decode_batch(&crc),
        Err(CodecError::Batch(BatchError::Crc { .. }))
    ));
    assert!(matches!(
        decode_batch(&good[..good.len() - 1]),
        Err(CodecError::Batch(_))
    ));
    let mut trailing = BytesMut::from(&good[..]);
    trailing.extend_from_slice(&[0]);
    assert!(decode_batch(&trailing).is_err());
    assert_eq!(decode_batches(&[&good[..], &good[..]].concat()).unwrap().len(), 2);
    let gap = encode_batch(0, &[out(0, 1, None, None), out(2, 1, None, None)], false);
    let mut gap = BytesMut::from(&gap[..]);
    gap[23..27].copy_from_slice(&1i32.to_be_bytes());
    let gap = reseal(gap);
    assert!(
        matches!(decode_batch(&gap), Err(CodecError::Record { index: 1, .. })),
        "{:?}",
        decode_batch(&gap)
    );
    let mut codec = BytesMut::from(&good[..]);
    codec[22] |= 0x05;
    let codec = reseal(codec);
    assert!(matches!(
        decode_batch(&codec),
        Err(CodecError::UnknownCompression(5))
    ));
    let mut gz = BytesMut::from(&good[..]);
    gz[22] |= 0x01;
    let gz = reseal(gz);
    let err = decode_batch(&gz).unwrap_err();
    assert!(matches!(err, CodecError::Decompress(_)));
    assert_eq!(
        err.response_error(),
        kafka_protocol::ResponseError::CorruptMessage
    );
}

fn reseal(mut b: BytesMut) -> Bytes {
    let crc = crc32c::crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    b.freeze()
}

#[test]
fn random_corruption_of_a_sealed_batch_never_panics() {
    let mut rng = XorShift(31337);
    let good = encode_batch(0, &random_records(&mut rng, 8), false);
    let mut rejected = 0;
    for _ in 0..5000 {
        let mut b = BytesMut::from(&good[..]);
        for _ in 0..1 + rng.below(3) {
            let i = HEADER_LEN + rng.below((good.len() - HEADER_LEN) as u64) as usize;
            b[i] = rng.next() as u8;
        }
        rejected += usize::from(decode_batch(&reseal(b)).is_err());
    }
    assert!(rejected > 500, "only {rejected} corruptions were rejected");
    for n in 0..HEADER_LEN + 5 {
        assert!(decode_batch(&rng.bytes(n)).is_err());
    }
}
