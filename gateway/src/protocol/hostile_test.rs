//! Hostile frames: wire counts and lengths far larger than the frame must be refused by the
//! decoder before anything is allocated from them (the process used to abort on a 14-byte
//! Metadata request). The allocation check reads the process's peak virtual size: an unchecked
//! `Vec::with_capacity(2^31 - 1)` of any request struct reserves tens of GB even where the
//! kernel lets it succeed, and aborts the test binary where it does not.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Encodable, StrBytes};

use super::{decode_request, versions, CodecError};

/// Peak virtual memory growth allowed across a test (thread stacks and malloc arenas of tests
/// running in parallel stay far below it; one unchecked 2^31-element array is far above).
const PEAK_GROWTH_LIMIT: u64 = 4 << 30;

/// The process's peak virtual size in bytes (`VmPeak`), where the platform reports it.
fn vm_peak() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmPeak:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Runs `f` and fails if the process's peak virtual size grew by more than the limit.
fn without_huge_allocation(f: impl FnOnce()) {
    let before = vm_peak();
    f();
    if let (Some(before), Some(after)) = (before, vm_peak()) {
        assert!(
            after.saturating_sub(before) < PEAK_GROWTH_LIMIT,
            "peak virtual size grew by {} MiB",
            (after - before) >> 20
        );
    }
}

/// A request header v1 (non-flexible) with a null client id.
fn header_v1(api: ApiKey, version: i16) -> BytesMut {
    let mut b = BytesMut::new();
    b.put_i16(api as i16);
    b.put_i16(version);
    b.put_i32(1);
    b.put_i16(-1);
    b
}

/// A request header v2 (flexible): v1 plus an empty tagged-field section.
fn header_v2(api: ApiKey, version: i16) -> BytesMut {
    let mut b = header_v1(api, version);
    b.put_u8(0);
    b
}

fn put_uvarint(b: &mut BytesMut, mut v: u32) {
    while v >= 0x80 {
        b.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    b.put_u8(v as u8);
}

fn assert_malformed(frame: BytesMut) {
    without_huge_allocation(|| match decode_request(frame.freeze()) {
        Err(CodecError::Malformed { .. }) => {}
        other => panic!("expected a malformed-request error, got {other:?}"),
    });
}

#[test]
fn metadata_v0_with_topic_count_i32_max_is_refused() {
    let mut f = header_v1(ApiKey::Metadata, 0);
    f.put_i32(i32::MAX);
    assert_eq!(f.len(), 14, "the 14-byte frame of the report");
    assert_malformed(f);
}

#[test]
fn flexible_metadata_with_compact_array_count_u32_max_is_refused() {
    let mut f = header_v2(ApiKey::Metadata, 12);
    put_uvarint(&mut f, u32::MAX);
    assert_malformed(f);
}

#[test]
fn produce_with_huge_topic_count_is_refused() {
    let mut f = header_v1(ApiKey::Produce, 8);
    f.put_i16(-1); // transactional id
    f.put_i16(-1); // acks
    f.put_i32(30_000); // timeout
    f.put_i32(i32::MAX); // topics
    assert_malformed(f);
}

#[test]
fn fetch_with_huge_nested_partition_count_is_refused() {
    let mut f = header_v1(ApiKey::Fetch, 4);
    f.put_i32(-1); // replica id
    f.put_i32(500); // max wait
    f.put_i32(1); // min bytes
    f.put_i32(1 << 20); // max bytes
    f.put_i8(0); // isolation level
    f.put_i32(1); // one topic
    f.put_i16(1);
    f.put_u8(b't');
    f.put_i32(i32::MAX - 1); // its partitions
    assert_malformed(f);
}

#[test]
fn huge_string_and_bytes_lengths_are_refused() {
    // CreateTopics v4: a topic name claiming 32767 bytes in a tiny frame.
    let mut f = header_v1(ApiKey::CreateTopics, 4);
    f.put_i32(1);
    f.put_i16(i16::MAX);
    f.put_slice(b"abc");
    assert_malformed(f);
    // Flexible Metadata: a topic name whose compact length is u32::MAX.
    let mut f = header_v2(ApiKey::Metadata, 12);
    put_uvarint(&mut f, 2); // one topic
    f.put_slice(&[0; 16]); // topic id
    put_uvarint(&mut f, u32::MAX);
    assert_malformed(f);
    // JoinGroup v5: protocol metadata bytes claiming i32::MAX.
    let mut f = header_v1(ApiKey::JoinGroup, 5);
    f.put_i16(1);
    f.put_slice(b"g"); // group id
    f.put_i32(10_000); // session timeout
    f.put_i32(10_000); // rebalance timeout
    f.put_i16(0); // member id
    f.put_i16(-1); // group instance id
    f.put_i16(8);
    f.put_slice(b"consumer"); // protocol type
    f.put_i32(1); // one protocol
    f.put_i16(5);
    f.put_slice(b"range");
    f.put_i32(i32::MAX);
    assert_malformed(f);
}

#[test]
fn flexible_header_with_huge_tagged_field_count_is_refused() {
    let mut f = header_v1(ApiKey::Metadata, 12);
    put_uvarint(&mut f, u32::MAX);
    assert_malformed(f);
}

/// A default (mostly empty) request body of every served API.
fn default_body(api: ApiKey) -> RequestKind {
    match api {
        ApiKey::Produce => RequestKind::Produce(ProduceRequest::default()),
        ApiKey::Fetch => RequestKind::Fetch(FetchRequest::default()),
        ApiKey::ListOffsets => RequestKind::ListOffsets(ListOffsetsRequest::default()),
        ApiKey::Metadata => RequestKind::Metadata(MetadataRequest::default()),
        ApiKey::ApiVersions => RequestKind::ApiVersions(ApiVersionsRequest::default()),
        ApiKey::CreateTopics => RequestKind::CreateTopics(CreateTopicsRequest::default()),
        ApiKey::DeleteTopics => RequestKind::DeleteTopics(DeleteTopicsRequest::default()),
        ApiKey::DeleteRecords => RequestKind::DeleteRecords(DeleteRecordsRequest::default()),
        ApiKey::InitProducerId => RequestKind::InitProducerId(InitProducerIdRequest::default()),
        ApiKey::OffsetForLeaderEpoch => {
            RequestKind::OffsetForLeaderEpoch(OffsetForLeaderEpochRequest::default())
        }
        ApiKey::DescribeConfigs => RequestKind::DescribeConfigs(DescribeConfigsRequest::default()),
        ApiKey::AlterConfigs => RequestKind::AlterConfigs(AlterConfigsRequest::default()),
        ApiKey::CreatePartitions => RequestKind::CreatePartitions(CreatePartitionsRequest::default()),
        ApiKey::IncrementalAlterConfigs => {
            RequestKind::IncrementalAlterConfigs(IncrementalAlterConfigsRequest::default())
        }
        ApiKey::DescribeCluster => RequestKind::DescribeCluster(DescribeClusterRequest::default()),
        ApiKey::FindCoordinator => RequestKind::FindCoordinator(FindCoordinatorRequest::default()),
        ApiKey::JoinGroup => RequestKind::JoinGroup(JoinGroupRequest::default()),
        ApiKey::Heartbeat => RequestKind::Heartbeat(HeartbeatRequest::default()),
        ApiKey::LeaveGroup => RequestKind::LeaveGroup(LeaveGroupRequest::default()),
        ApiKey::SyncGroup => RequestKind::SyncGroup(SyncGroupRequest::default()),
        ApiKey::OffsetCommit => RequestKind::OffsetCommit(OffsetCommitRequest::default()),
        ApiKey::OffsetFetch => RequestKind::OffsetFetch(OffsetFetchRequest::default()),
        ApiKey::DescribeGroups => RequestKind::DescribeGroups(DescribeGroupsRequest::default()),
        ApiKey::ListGroups => RequestKind::ListGroups(ListGroupsRequest::default()),
        ApiKey::DeleteGroups => RequestKind::DeleteGroups(DeleteGroupsRequest::default()),
        ApiKey::OffsetDelete => RequestKind::OffsetDelete(OffsetDeleteRequest::default()),
        ApiKey::SaslHandshake => RequestKind::SaslHandshake(SaslHandshakeRequest::default()),
        ApiKey::SaslAuthenticate => RequestKind::SaslAuthenticate(SaslAuthenticateRequest::default()),
        ApiKey::DescribeUserScramCredentials => {
            RequestKind::DescribeUserScramCredentials(DescribeUserScramCredentialsRequest::default())
        }
        ApiKey::AlterUserScramCredentials => {
            RequestKind::AlterUserScramCredentials(AlterUserScramCredentialsRequest::default())
        }
        other => panic!("no default body for {other:?}: add it with its SUPPORTED entry"),
    }
}

/// Every served API at every served version, with a maximal count or length written at every
/// offset of its (valid) frame: i32::MAX, i16::MAX and a u32::MAX varint. Whatever field each
/// lands in, decoding returns (an error or a request) without a huge allocation.
#[test]
fn every_served_request_survives_maximal_lengths_at_every_offset() {
    let patterns: [&[u8]; 3] = [
        &[0x7f, 0xff, 0xff, 0xff],
        &[0x7f, 0xff],
        &[0xff, 0xff, 0xff, 0xff, 0x0f],
    ];
    let mut frames = 0usize;
    without_huge_allocation(|| {
        for range in versions::SUPPORTED {
            for version in range.min..=range.max {
                let mut valid = BytesMut::new();
                RequestHeader::default()
                    .with_request_api_key(range.key as i16)
                    .with_request_api_version(version)
                    .with_client_id(Some(StrBytes::from_static_str("c")))
                    .encode(&mut valid, range.key.request_header_version(version))
                    .expect("header encodes");
                default_body(range.key)
                    .encode(&mut valid, version)
                    .expect("default body encodes");
                assert!(
                    decode_request(valid.clone().freeze()).is_ok(),
                    "{:?} v{version}",
                    range.key
                );
                // From the client id on: the api key, version and correlation id are not lengths.
                for at in 8..valid.len() {
                    for p in patterns {
                        let mut f = valid[..at].to_vec();
                        f.extend_from_slice(p);
                        f.extend_from_slice(valid.get(at + p.len()..).unwrap_or_default());
                        let _ = decode_request(Bytes::from(f));
                        frames += 1;
                    }
                }
            }
        }
    });
    assert!(frames > 1000, "only {frames} hostile frames tried");
}
