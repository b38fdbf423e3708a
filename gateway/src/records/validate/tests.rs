use std::io::Write;

use bytes::{BufMut, Bytes, BytesMut};

use super::*;
use crate::records::{split_and_validate, BatchError, LOG_OVERHEAD};

const NOW: i64 = 1_700_000_000_000;

fn put_varint(buf: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        buf.push((z as u8) | 0x80);
        z >>= 7;
    }
    buf.push(z as u8);
}

/// One encoded record (length prefix included).
fn record(offset_delta: i64, ts_delta: i64, key: Option<&[u8]>, value: &[u8], headers: &[(&[u8], Option<&[u8]>)]) -> Vec<u8> {
    let mut r = vec![0u8];
    put_varint(&mut r, ts_delta);
    put_varint(&mut r, offset_delta);
    match key {
        Some(k) => {
            put_varint(&mut r, k.len() as i64);
            r.extend_from_slice(k);
        }
        None => put_varint(&mut r, -1),
    }
    put_varint(&mut r, value.len() as i64);
    r.extend_from_slice(value);
    put_varint(&mut r, headers.len() as i64);
    for (k, v) in headers {
        put_varint(&mut r, k.len() as i64);
        r.extend_from_slice(k);
        match v {
            Some(v) => {
                put_varint(&mut r, v.len() as i64);
                r.extend_from_slice(v);
            }
            None => put_varint(&mut r, -1),
        }
    }
    let mut out = Vec::new();
    put_varint(&mut out, r.len() as i64);
    out.extend(r);
    out
}

fn records(n: usize, value_len: usize) -> Vec<u8> {
    let value = vec![b'v'; value_len];
    let mut out = Vec::new();
    for i in 0..n {
        let h: &[(&[u8], Option<&[u8]>)] = if i % 2 == 0 { &[(b"h", Some(b"x")), (b"n", None)] } else { &[] };
        out.extend(record(i as i64, i as i64, Some(b"key"), &value, h));
    }
    out
}

/// A batch with a valid CRC around `section`, declaring `count` records.
fn batch_of(section: &[u8], count: i32, codec: i16, base_ts: i64) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i64(0);
    b.put_i32((HEADER_LEN - LOG_OVERHEAD + section.len()) as i32);
    b.put_i32(0);
    b.put_i8(2);
    b.put_u32(0);
    b.put_i16(codec);
    b.put_i32(count - 1);
    b.put_i64(base_ts);
    b.put_i64(base_ts);
    b.put_i64(-1);
    b.put_i16(-1);
    b.put_i32(-1);
    b.put_i32(count);
    b.put_slice(section);
    let crc = crc32c::crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    b.freeze()
}

fn check(batch: &Bytes) -> Result<(), RecordError> {
    let (h, bytes) = split_and_validate(batch.clone()).expect("header valid").pop().unwrap();
    validate_records(&h, &bytes, Some(TimestampBounds { now_ms: NOW, before_max_ms: i64::MAX, after_max_ms: 3_600_000 }))
}

fn invalid(r: Result<(), RecordError>, needle: &str) {
    match r {
        Err(e @ RecordError::Invalid { .. }) => {
            assert_eq!(e.response_error(), ResponseError::InvalidRecord);
            assert!(e.to_string().contains(needle), "{e}");
        }
        other => panic!("expected an invalid record ({needle}), got {other:?}"),
    }
}

fn gzip(d: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(d).unwrap();
    e.finish().unwrap()
}

fn xerial(d: &[u8]) -> Vec<u8> {
    let mut out = XERIAL_MAGIC.to_vec();
    out.extend([0, 0, 0, 1, 0, 0, 0, 1]);
    for chunk in d.chunks(32 * 1024) {
        let c = snap::raw::Encoder::new().compress_vec(chunk).unwrap();
        out.extend((c.len() as u32).to_be_bytes());
        out.extend(c);
    }
    out
}

fn lz4(d: &[u8]) -> Vec<u8> {
    let mut e = lz4::EncoderBuilder::new().build(Vec::new()).unwrap();
    e.write_all(d).unwrap();
    let (out, r) = e.finish();
    r.unwrap();
    out
}

fn compressed(codec: i16, d: &[u8]) -> Vec<u8> {
    match codec {
        1 => gzip(d),
        2 => xerial(d),
        3 => lz4(d),
        4 => zstd::encode_all(d, 3).unwrap(),
        _ => d.to_vec(),
    }
}

#[test]
fn valid_batches_of_every_codec_are_accepted() {
    let section = records(50, 100);
    for codec in 0..=4 {
        let b = batch_of(&compressed(codec, &section), 50, codec, NOW);
        check(&b).unwrap_or_else(|e| panic!("codec {codec}: {e}"));
    }
    // Raw snappy (no xerial framing), as librdkafka writes it.
    let raw = snap::raw::Encoder::new().compress_vec(&section).unwrap();
    check(&batch_of(&raw, 50, 2, NOW)).unwrap();
    // The test-support builder's batches too.
    let b = crate::records::testing::batch(&[b"a", b"", b"ccc"], NOW, -1, -1, -1).freeze();
    check(&b).unwrap();
}

#[test]
fn record_count_above_the_records_present_is_refused() {
    let section = records(3, 10);
    invalid(check(&batch_of(&section, 4, 0, NOW)), "record count");
    invalid(check(&batch_of(&compressed(4, &section), 4, 4, NOW)), "record count");
}

#[test]
fn record_count_below_the_records_present_leaves_trailing_bytes() {
    let section = records(3, 10);
    invalid(check(&batch_of(&section, 2, 0, NOW)), "after the last record");
    invalid(check(&batch_of(&compressed(1, &section), 2, 1, NOW)), "after the last record");
}

#[test]
fn trailing_garbage_is_refused() {
    let mut section = records(2, 10);
    section.extend([0xde, 0xad]);
    invalid(check(&batch_of(&section, 2, 0, NOW)), "after the last record");
    invalid(check(&batch_of(&compressed(3, &section), 2, 3, NOW)), "after the last record");
}

#[test]
fn truncated_record_is_refused() {
    let mut section = records(2, 10);
    section.truncate(section.len() - 3);
    invalid(check(&batch_of(&section, 2, 0, NOW)), "past the end");
    // In a compressed stream the end is only found by reading.
    invalid(check(&batch_of(&compressed(2, &section), 2, 2, NOW)), "record count");
}

#[test]
fn record_length_past_the_batch_end_is_refused() {
    let mut section = records(1, 10);
    let mut second = vec![];
    put_varint(&mut second, 1_000_000);
    second.extend(&record(1, 0, None, b"x", &[])[1..]);
    section.extend(second);
    invalid(check(&batch_of(&section, 2, 0, NOW)), "past the end of the batch");
}

#[test]
fn record_length_disagreeing_with_its_fields_is_refused() {
    // A record whose length claims one byte more than its fields, followed by one byte that
    // would otherwise be read as the next record's start.
    let mut r = record(0, 0, None, b"abc", &[]);
    r[0] += 2; // zigzag: +1 in value
    r.push(0);
    invalid(check(&batch_of(&r, 1, 0, NOW)), "its fields take");
}

#[test]
fn non_consecutive_offset_deltas_are_refused() {
    let mut section = record(0, 0, None, b"a", &[]);
    section.extend(record(2, 0, None, b"b", &[]));
    invalid(check(&batch_of(&section, 2, 0, NOW)), "offset delta 2, expected 1");
    invalid(check(&batch_of(&compressed(1, &section), 2, 1, NOW)), "offset delta 2, expected 1");
    let mut dup = record(0, 0, None, b"a", &[]);
    dup.extend(record(0, 0, None, b"b", &[]));
    invalid(check(&batch_of(&dup, 2, 0, NOW)), "offset delta 0, expected 1");
}

#[test]
fn negative_lengths_and_long_varints_are_refused() {
    let mut r = record(0, 0, None, b"a", &[]);
    // key length -1 (0x01) -> -2 (0x03)
    assert_eq!(r[4], 0x01);
    r[4] = 0x03;
    invalid(check(&batch_of(&r, 1, 0, NOW)), "key length -2");
    let mut section = vec![0xff; 6];
    section.push(0);
    invalid(check(&batch_of(&section, 1, 0, NOW)), "malformed varint");
}

#[test]
fn wrong_count_against_offset_range_is_invalid_record_in_the_header_check() {
    let mut b = BytesMut::from(&batch_of(&records(2, 1), 2, 0, NOW)[..]);
    b[57..61].copy_from_slice(&3i32.to_be_bytes());
    let crc = crc32c::crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    assert!(matches!(split_and_validate(b.freeze()), Err(BatchError::OffsetRange(_))));
}

#[test]
fn timestamps_outside_the_window_are_refused() {
    let hour = 3_600_000;
    // One record an hour and a bit ahead of the broker clock.
    let mut section = record(0, 0, None, b"a", &[]);
    section.extend(record(1, hour + 1, None, b"b", &[]));
    for codec in [0, 4] {
        match check(&batch_of(&compressed(codec, &section), 2, codec, NOW)) {
            Err(e @ RecordError::Timestamp { index: 1, .. }) => {
                assert_eq!(e.response_error(), ResponseError::InvalidTimestamp)
            }
            other => panic!("{other:?}"),
        }
    }
    // Exactly at the limit is allowed; far past is allowed by the default before.max.ms.
    let mut ok = record(0, 0, None, b"a", &[]);
    ok.extend(record(1, hour, None, b"b", &[]));
    check(&batch_of(&ok, 2, 0, NOW)).unwrap();
    check(&batch_of(&records(1, 1), 1, 0, 0)).unwrap();
    // before.max.ms set: an old record is refused; -1 (no timestamp) never is.
    let (h, bytes) = split_and_validate(batch_of(&records(1, 1), 1, 0, NOW - 10_001)).unwrap().pop().unwrap();
    let bounds = TimestampBounds { now_ms: NOW, before_max_ms: 10_000, after_max_ms: 0 };
    assert!(matches!(validate_records(&h, &bytes, Some(bounds)), Err(RecordError::Timestamp { .. })));
    let (h, bytes) = split_and_validate(batch_of(&records(1, 1), 1, 0, -1)).unwrap().pop().unwrap();
    validate_records(&h, &bytes, Some(bounds)).unwrap();
    // LogAppendTime topics are not checked.
    let (h, bytes) = split_and_validate(batch_of(&records(1, 1), 1, 0, i64::MAX - 5)).unwrap().pop().unwrap();
    validate_records(&h, &bytes, None).unwrap();
    // Extreme values do not overflow.
    assert!(validate_records(&h, &bytes, Some(bounds)).is_err());
}

#[test]
fn zip_bombs_stop_at_the_cap_without_holding_the_output() {
    // One record whose value is 65 MiB of zeros: a few hundred KiB compressed.
    let big = 65 * 1024 * 1024;
    let mut section = vec![];
    let mut r = vec![0u8, 0, 0, 1];
    put_varint(&mut r, big as i64);
    let body_len = r.len() + big + 1;
    put_varint(&mut section, body_len as i64);
    section.extend(&r);
    section.resize(section.len() + big, 0);
    section.push(0);
    for codec in 1..=4 {
        let c = compressed(codec, &section);
        assert!(c.len() < 8 * 1024 * 1024, "codec {codec}: {}", c.len());
        let e = check(&batch_of(&c, 1, codec, NOW)).unwrap_err();
        assert_eq!(e, RecordError::TooLarge { limit: MAX_UNCOMPRESSED_BATCH_BYTES }, "codec {codec}");
        assert_eq!(e.response_error(), ResponseError::MessageTooLarge);
    }
    // Garbage after the compressed magic is corrupt, not a panic.
    for codec in 1..=4 {
        let e = check(&batch_of(&[0x5a; 64], 1, codec, NOW)).unwrap_err();
        assert_eq!(e.response_error(), ResponseError::CorruptMessage, "codec {codec}: {e}");
    }
    let e = check(&batch_of(&records(1, 1), 1, 6, NOW)).unwrap_err();
    assert!(matches!(e, RecordError::Corrupt(_)));
}

#[test]
fn snappy_block_declaring_an_impossible_size_is_refused_before_allocating() {
    // Preamble varint of 1 GiB then three bytes.
    let block = [0x80, 0x80, 0x80, 0x80, 0x04, 0, 0, 0];
    let e = check(&batch_of(&block, 1, 2, NOW)).unwrap_err();
    assert!(matches!(e, RecordError::Corrupt(_)), "{e}");
}

/// Cost of the walk on the produce hot path: 1 MiB of 1 KiB records, against the CRC32C pass
/// every batch already gets. Run with
/// `cargo test --release -p kafka-gateway --lib validate::tests::hot_path_cost -- --ignored --nocapture`.
#[test]
#[ignore]
fn hot_path_cost() {
    let section = records(1000, 1024);
    let b = batch_of(&section, 1000, 0, NOW);
    let (h, bytes) = split_and_validate(b.clone()).unwrap().pop().unwrap();
    let bounds = Some(TimestampBounds { now_ms: NOW, before_max_ms: i64::MAX, after_max_ms: 3_600_000 });
    let rounds = 2000;
    let t = std::time::Instant::now();
    for _ in 0..rounds {
        std::hint::black_box(split_and_validate(std::hint::black_box(b.clone())).unwrap());
    }
    let split = t.elapsed() / rounds;
    let t = std::time::Instant::now();
    for _ in 0..rounds {
        validate_records(&h, std::hint::black_box(&bytes), bounds).unwrap();
    }
    let walk = t.elapsed() / rounds;
    // The benchmark's report (it runs only with --ignored --nocapture).
    eprintln!("batch of {} bytes, 1000 records: split_and_validate (crc) {split:?}, validate_records {walk:?}", b.len());
}
