use bytes::{Bytes, BytesMut};

use super::*;
use crate::records::batch_codec::wire::XorShift;

fn sample() -> Envelope {
    Envelope {
        key: Some(Bytes::from_static(b"k")),
        value: Some(Bytes::from_static(b"v")),
        headers: vec![("h".into(), None), ("h".into(), Some(Bytes::new()))],
        timestamp_ms: 1_700_000_000_000,
        producer_id: -1,
        producer_epoch: -1,
        sequence: -1,
        batch: None,
    }
}

fn random_envelope(rng: &mut XorShift) -> Envelope {
    Envelope {
        key: rng.nullable(40),
        value: rng.nullable(300),
        headers: rng.headers(),
        timestamp_ms: rng.i64(),
        producer_id: rng.i64(),
        producer_epoch: rng.next() as i16,
        sequence: rng.next() as i32,
        batch: match rng.below(3) {
            0 => None,
            n => {
                let last = rng.below(1000) as i32;
                let delta = if n == 1 {
                    0
                } else {
                    rng.below(last as u64 + 1) as i32
                };
                let header = BatchFields {
                    attributes: rng.next() as i16,
                    base_timestamp: rng.i64(),
                    max_timestamp: rng.i64(),
                    partition_leader_epoch: rng.next() as i32,
                };
                Some(BatchPosition::new(delta, last, header))
            }
        },
    }
}

/// Recomputes the CRC after a deliberate mutation, so only the body is wrong.
fn reseal(mut b: BytesMut) -> Bytes {
    let crc = checksum(&b);
    b[2..PREFIX_LEN].copy_from_slice(&crc.to_be_bytes());
    b.freeze()
}

#[test]
fn format_v1_is_pinned_byte_for_byte() {
    // A storage contract: changing this layout needs a new VERSION, not an edit here.
    let got = encode(&sample());
    let body: &[u8] = &[
        0x03, // flags: key and value present
        0x80, 0xa0, 0xab, 0xfe, 0xf9, 0x62, // varlong 1_700_000_000_000
        0x01, 0x01, 0x01, // producer id, epoch, sequence = -1
        0x01, b'k', // key
        0x02, 0x01, b'h', 0x01, 0x01, b'h', 0x00, // two headers: h=null, h=""
        b'v', // value = rest
    ];
    let mut want = vec![MAGIC, VERSION_1, 0, 0, 0, 0];
    want.extend_from_slice(body);
    let crc = checksum(&want);
    want[2..6].copy_from_slice(&crc.to_be_bytes());
    assert_eq!(&got[..], &want[..]);
    assert_eq!(encoded_len(&sample()), want.len());
}

fn fields() -> BatchFields {
    BatchFields {
        attributes: 0x08,
        base_timestamp: 1_700_000_000_000,
        max_timestamp: 1_700_000_000_002,
        partition_leader_epoch: -1,
    }
}

#[test]
fn format_v2_is_pinned_byte_for_byte() {
    // A storage contract: changing this layout needs a new VERSION, not an edit here.
    let first = Envelope {
        batch: Some(BatchPosition::new(0, 2, fields())),
        ..sample()
    };
    let body: &[u8] = &[
        0x03, // flags: key and value present
        0x80, 0xa0, 0xab, 0xfe, 0xf9, 0x62, // varlong 1_700_000_000_000
        0x01, 0x01, 0x01, // producer id, epoch, sequence = -1
        0x00, 0x04, // offset delta 0, last offset delta 2
        0x10, // attributes 0x08
        0x80, 0xa0, 0xab, 0xfe, 0xf9, 0x62, // base timestamp
        0x84, 0xa0, 0xab, 0xfe, 0xf9, 0x62, // max timestamp (+2)
        0x01, // partition leader epoch -1
        0x01, b'k', // key
        0x02, 0x01, b'h', 0x01, 0x01, b'h', 0x00, // two headers: h=null, h=""
        b'v', // value = rest
    ];
    let mut want = vec![MAGIC, VERSION, 0, 0, 0, 0];
    want.extend_from_slice(body);
    let crc = checksum(&want);
    want[2..6].copy_from_slice(&crc.to_be_bytes());
    assert_eq!(&encode(&first)[..], &want[..]);
    assert_eq!(encoded_len(&first), want.len());
    // Later records carry only their deltas.
    let later = Envelope {
        batch: Some(BatchPosition::new(1, 2, fields())),
        ..sample()
    };
    let got = encode(&later);
    assert_eq!(got.len(), want.len() - 14);
    assert_eq!(decode(got).unwrap(), later);
    assert_eq!(decode(Bytes::from(want)).unwrap(), first);
}

#[test]
fn impossible_batch_positions_are_malformed() {
    for (delta, last) in [(3, 2), (-1, 2)] {
        let e = Envelope {
            batch: Some(BatchPosition {
                offset_delta: delta,
                last_offset_delta: last,
                header: None,
            }),
            ..sample()
        };
        assert!(matches!(decode(encode(&e)), Err(EnvelopeError::Malformed(_))));
    }
}

#[test]
fn null_and_empty_stay_distinct() {
    for key in [None, Some(Bytes::new()), Some(Bytes::from_static(b"x"))] {
        for value in [None, Some(Bytes::new()), Some(Bytes::from_static(b"y"))] {
            let e = Envelope {
                key: key.clone(),
                value: value.clone(),
                ..sample()
            };
            let got = decode(encode(&e)).unwrap();
            assert_eq!(got, e, "key {key:?} value {value:?}");
        }
    }
}

#[test]
fn random_envelopes_round_trip_through_both_decoders() {
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    for _ in 0..3000 {
        let e = random_envelope(&mut rng);
        let buf = encode(&e);
        assert_eq!(buf.len(), encoded_len(&e));
        assert!(is_envelope(&buf));
        assert_eq!(decode(buf.clone()).unwrap(), e);
        assert_eq!(decode_strict(buf.clone()).unwrap(), e);
        assert_eq!(
            decode_message(Bytes::from_static(b"ignored"), buf, 5_000_000).unwrap(),
            e
        );
    }
}

#[test]
fn decoding_is_zero_copy() {
    let buf = encode(&Envelope {
        value: Some(Bytes::from(vec![7u8; 1000])),
        ..sample()
    });
    let range = buf.as_ptr() as usize..buf.as_ptr() as usize + buf.len();
    let e = decode(buf.clone()).unwrap();
    assert!(range.contains(&(e.value.unwrap().as_ptr() as usize)));
    assert!(range.contains(&(e.key.unwrap().as_ptr() as usize)));
}

#[test]
fn every_truncation_is_an_error_when_strict_and_raw_when_lenient() {
    let mut rng = XorShift(42);
    for _ in 0..200 {
        let buf = encode(&random_envelope(&mut rng));
        for cut in 0..buf.len() {
            let prefix = buf.slice(..cut);
            assert!(
                decode_strict(prefix.clone()).is_err(),
                "prefix of {cut} bytes accepted"
            );
            let lenient = decode(prefix.clone()).unwrap();
            assert_eq!(lenient.value.unwrap_or_default(), prefix);
            assert_eq!(
                (lenient.key, lenient.timestamp_ms, lenient.producer_id),
                (None, -1, -1)
            );
        }
    }
}

#[test]
fn every_bit_flip_is_caught_by_the_crc() {
    let buf = encode(&sample());
    for i in 1..buf.len() {
        for bit in 0..8 {
            let mut b = BytesMut::from(&buf[..]);
            b[i] ^= 1 << bit;
            let b = b.freeze();
            assert!(
                matches!(decode_strict(b.clone()), Err(EnvelopeError::Checksum { .. })),
                "byte {i} bit {bit}"
            );
            assert_eq!(decode(b.clone()).unwrap().value, Some(b));
        }
    }
}

#[test]
fn random_garbage_never_panics_and_is_raw() {
    let mut rng = XorShift(7);
    for _ in 0..5000 {
        let n = rng.below(64) as usize;
        let mut b = BytesMut::from(&rng.bytes(n)[..]);
        if n > 0 && rng.below(2) == 0 {
            b[0] = MAGIC;
        }
        let b = b.freeze();
        let e = decode(b.clone()).unwrap();
        assert_eq!(e.value.unwrap_or_default(), b);
        assert!(decode_strict(b).is_err());
    }
}

#[test]
fn sealed_but_malformed_bodies_are_errors_not_panics() {
    let good = encode(&sample());
    let mut rng = XorShift(99);
    let mut errors = 0;
    for _ in 0..5000 {
        let mut b = BytesMut::from(&good[..]);
        let cut = PREFIX_LEN + 1 + rng.below((good.len() - PREFIX_LEN - 1) as u64) as usize;
        b.truncate(cut);
        let i = PREFIX_LEN + rng.below((cut - PREFIX_LEN) as u64) as usize;
        b[i] = rng.next() as u8;
        // Whatever the mutation, both decoders return (never panic) and agree.
        let sealed = reseal(b);
        let (lenient, strict) = (decode(sealed.clone()), decode_strict(sealed));
        assert_eq!(lenient, strict);
        errors += usize::from(strict.is_err());
    }
    assert!(errors > 1000, "only {errors} mutations were rejected");
    let mut flags = BytesMut::from(&good[..]);
    flags[PREFIX_LEN] |= 0x80;
    assert!(matches!(decode(reseal(flags)), Err(EnvelopeError::Malformed(_))));
    let mut epoch = BytesMut::from(
        &encode(&Envelope {
            producer_epoch: 0,
            ..sample()
        })[..],
    );
    // Replace the epoch varint 0x00 with 0xff 0xff 0x03 (zig-zag 65536: epoch 32768 > i16::MAX).
    let at = PREFIX_LEN + 1 + 6 + 1;
    assert_eq!(epoch[at], 0);
    let tail = epoch.split_off(at + 1);
    epoch.truncate(at);
    epoch.extend_from_slice(&[0x80, 0x80, 0x04]);
    epoch.extend_from_slice(&tail);
    assert!(matches!(decode(reseal(epoch)), Err(EnvelopeError::Malformed(_))));
    let mut trailing = BytesMut::from(
        &encode(&Envelope {
            value: None,
            ..sample()
        })[..],
    );
    trailing.extend_from_slice(b"x");
    assert!(matches!(
        decode(reseal(trailing)),
        Err(EnvelopeError::Malformed(_))
    ));
}

#[test]
fn newer_versions_are_recognised_not_read_raw() {
    let mut b = BytesMut::from(&encode(&sample())[..]);
    b[1] = 3;
    let b = reseal(b);
    assert!(is_envelope(&b));
    assert_eq!(decode(b.clone()), Err(EnvelopeError::UnsupportedVersion(3)));
    assert_eq!(decode_strict(b), Err(EnvelopeError::UnsupportedVersion(3)));
}

#[test]
fn raw_values_take_key_and_time_from_smq() {
    let e = decode_message(
        Bytes::from_static(b"key"),
        Bytes::from_static(b"{\"json\":1}"),
        1_700_000_000_123_456_789,
    )
    .unwrap();
    assert_eq!(e.key.as_deref(), Some(&b"key"[..]));
    assert_eq!(e.value.as_deref(), Some(&b"{\"json\":1}"[..]));
    assert_eq!(e.timestamp_ms, 1_700_000_000_123);
    assert_eq!((e.producer_id, e.producer_epoch, e.sequence), (-1, -1, -1));
    assert!(e.headers.is_empty());
    // SMQ bytes have no null: empty key and value read back as null, as the seed served them.
    let e = decode_message(Bytes::new(), Bytes::new(), 0).unwrap();
    assert_eq!((e.key, e.value), (None, None));
    // A raw value that starts with the magic byte but has no matching CRC stays raw.
    let v = Bytes::from_static(&[MAGIC, VERSION, 1, 2, 3, 4, 5, 6, 7]);
    assert_eq!(decode_message(Bytes::new(), v.clone(), 0).unwrap().value, Some(v));
    let e = decode(Bytes::from_static(b"plain")).unwrap();
    assert_eq!((e.key, e.timestamp_ms), (None, -1));
}
