//! Malformed input: the gateway answers or closes the offending connection, and keeps serving
//! every other connection.

use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ApiVersionsResponse, ProduceRequest, ResponseHeader};
use kafka_protocol::protocol::Decodable;
use tests::harness::phase::note;
use tests::harness::raw::{frame, record_batch, topic_name, CloseOutcome, RawClient};
use tests::{phase, Gateway, GatewayOptions};

const CLOSE_DEADLINE: Duration = Duration::from_secs(10);
const API_VERSIONS_KEY: i16 = 18;

/// A fresh connection completes ApiVersions and Metadata, and the process is alive.
fn assert_still_serving(gw: &mut Gateway) -> Result<()> {
    ensure!(gw.is_running(), "gateway process exited\n{}", gw.log_tail());
    let mut client = RawClient::connect(gw.kafka_addr())?;
    let versions = client
        .api_versions()
        .context("ApiVersions on a fresh connection")?;
    ensure!(
        versions.error_code == 0,
        "ApiVersions error {}",
        versions.error_code
    );
    ensure!(!versions.api_keys.is_empty(), "ApiVersions lists no APIs");
    let md = client.metadata(&[]).context("Metadata on a fresh connection")?;
    ensure!(md.brokers.len() == 1, "metadata brokers: {:?}", md.brokers);
    Ok(())
}

/// The gateway logged a warning or error naming this connection's peer address (it says why it
/// closed the connection).
fn assert_logged_close(gw: &Gateway, peer: std::net::SocketAddr) -> Result<()> {
    let needle = format!("peer={peer}");
    let line = gw.wait_for_log_line(Duration::from_secs(5), |l| {
        l.contains(&needle) && (l.contains(" WARN ") || l.contains(" ERROR "))
    })?;
    note(format!("logged: {line}"));
    Ok(())
}

/// Request header v1 fields (api key, version, correlation id, client id) without a body.
fn header_v1(api_key: i16, version: i16, correlation_id: i32) -> BytesMut {
    let mut buf = BytesMut::new();
    buf.put_i16(api_key);
    buf.put_i16(version);
    buf.put_i32(correlation_id);
    let client_id = b"kgw-bad-input";
    buf.put_i16(client_id.len() as i16);
    buf.put_slice(client_id);
    buf
}

/// Deterministic pseudo-random bytes (xorshift64*), so a failure is reproducible from its seed.
fn pseudo_random(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            (state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8
        })
        .collect()
}

#[test]
fn random_frames_are_answered_or_closed_and_others_keep_working() -> Result<()> {
    let mut gw = Gateway::start("bad-random", GatewayOptions::default())?;
    for seed in 0..24u64 {
        let len = 1
            + (pseudo_random(seed ^ 0xABCD, 2)
                .iter()
                .map(|b| *b as usize)
                .sum::<usize>()
                % 300);
        phase(format!("seed {seed}: random frame of {len} bytes"));
        let mut bad = RawClient::connect(gw.kafka_addr())?;
        bad.write_all(&frame(&pseudo_random(seed, len)))?;
        // Answered (a response frame) or closed; silently keeping the connection open fails.
        match bad.read_frame() {
            Ok(Some(_)) => note("answered"),
            Ok(None) | Err(_) => assert_logged_close(&gw, bad.local_addr()?)?,
        }
        assert_still_serving(&mut gw)?;
    }
    Ok(())
}

#[test]
fn truncated_frame_then_close_does_not_disturb_others() -> Result<()> {
    let mut gw = Gateway::start("bad-truncated", GatewayOptions::default())?;
    phase("a frame announcing 100 bytes, 12 sent, then EOF");
    let mut bad = RawClient::connect(gw.kafka_addr())?;
    let mut partial = BytesMut::new();
    partial.put_i32(100);
    partial.put_slice(&header_v1(API_VERSIONS_KEY, 3, 1)[..8]);
    bad.write_all(&partial)?;
    bad.shutdown_write()?;
    ensure!(
        bad.expect_closed(CLOSE_DEADLINE)? == CloseOutcome::Closed { frames: 0 },
        "no response to a partial frame"
    );
    assert_still_serving(&mut gw)?;

    phase("a 3-byte size prefix, then EOF");
    let mut bad = RawClient::connect(gw.kafka_addr())?;
    bad.write_all(&[0, 0, 1])?;
    bad.shutdown_write()?;
    bad.expect_closed(CLOSE_DEADLINE)?;
    assert_still_serving(&mut gw)
}

#[test]
fn oversized_and_negative_frame_lengths_close_the_connection() -> Result<()> {
    let mut gw = Gateway::start("bad-oversized", GatewayOptions::default())?;
    for (what, len) in [
        ("200 MiB (above the 100 MiB default limit)", 200 << 20),
        ("i32::MAX", i32::MAX),
        ("-1", -1),
    ] {
        phase(format!("frame length {what}"));
        let mut bad = RawClient::connect(gw.kafka_addr())?;
        let mut buf = BytesMut::new();
        buf.put_i32(len);
        buf.put_slice(&header_v1(API_VERSIONS_KEY, 3, 1));
        bad.write_all(&buf)?;
        // The body is never sent: the gateway must reject on the length alone.
        ensure!(
            bad.expect_closed(CLOSE_DEADLINE)? == CloseOutcome::Closed { frames: 0 },
            "gateway answered a frame of length {len}"
        );
        assert_logged_close(&gw, bad.local_addr()?)?;
        assert_still_serving(&mut gw)?;
    }
    Ok(())
}

#[test]
fn unknown_api_key_closes_the_connection() -> Result<()> {
    let mut gw = Gateway::start("bad-api-key", GatewayOptions::default())?;
    for key in [9999i16, -1, 1000] {
        phase(format!("request with api key {key}"));
        let mut bad = RawClient::connect(gw.kafka_addr())?;
        bad.write_all(&frame(&header_v1(key, 0, 7)))?;
        bad.expect_closed(CLOSE_DEADLINE)?;
        assert_logged_close(&gw, bad.local_addr()?)?;
        assert_still_serving(&mut gw)?;
    }
    Ok(())
}

#[test]
fn unsupported_api_versions_version_gets_v0_error_with_ranges() -> Result<()> {
    let mut gw = Gateway::start("bad-api-version", GatewayOptions::default())?;
    phase("ApiVersions v99");
    let mut client = RawClient::connect(gw.kafka_addr())?;
    client.write_all(&frame(&header_v1(API_VERSIONS_KEY, 99, 42)))?;
    let mut payload = client.read_frame()?.context("no response to ApiVersions v99")?;
    let header = ResponseHeader::decode(&mut payload, 0)?;
    ensure!(
        header.correlation_id == 42,
        "correlation id {}",
        header.correlation_id
    );
    let body = ApiVersionsResponse::decode(&mut payload, 0).context("v0-shaped ApiVersions body")?;
    ensure!(
        body.error_code == ResponseError::UnsupportedVersion.code(),
        "error code {} (want UNSUPPORTED_VERSION)",
        body.error_code
    );
    let own = body
        .api_keys
        .iter()
        .find(|k| k.api_key == API_VERSIONS_KEY)
        .context("ApiVersions range listed")?;
    ensure!(
        own.min_version == 0 && own.max_version >= 3,
        "ApiVersions range {own:?}"
    );

    phase("the client downgrades on the same connection");
    let versions = client.api_versions()?;
    ensure!(
        versions.error_code == 0,
        "ApiVersions v3 after downgrade: error {}",
        versions.error_code
    );
    assert_still_serving(&mut gw)
}

fn produce(client: &mut RawClient, topic: &str, records: Bytes) -> Result<(i16, i64)> {
    let request = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(topic_name(topic))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(records))])]);
    let response = client.send(&request, 9)?;
    let Some(partition) = response
        .responses
        .first()
        .and_then(|t| t.partition_responses.first())
    else {
        bail!("empty produce response");
    };
    Ok((partition.error_code, partition.base_offset))
}

#[test]
fn crc_corrupted_batch_is_rejected_with_corrupt_message() -> Result<()> {
    let mut gw = Gateway::start("bad-crc", GatewayOptions::default())?;
    let mut client = RawClient::connect(gw.kafka_addr())?;
    client.create_topic("crc", 1)?;

    phase("produce a batch whose last byte was flipped after the CRC was computed");
    let good = record_batch(&[b"one", b"two", b"three"])?;
    let mut corrupt = BytesMut::from(&good[..]);
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0xFF;
    let (code, _) = produce(&mut client, "crc", corrupt.freeze())?;
    ensure!(
        code == ResponseError::CorruptMessage.code(),
        "error code {code} (want CORRUPT_MESSAGE)"
    );

    phase("the same connection still produces; the corrupt batch was not stored");
    let (code, base) = produce(&mut client, "crc", good)?;
    ensure!(
        code == 0 && base == 0,
        "valid produce after corrupt one: error {code}, base offset {base}"
    );
    assert_still_serving(&mut gw)
}
