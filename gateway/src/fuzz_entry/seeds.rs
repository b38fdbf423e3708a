//! Seed inputs of the fuzz targets: real frames built with the encoders clients and the gateway
//! use, in each target's input shape (see the entry functions).

use std::collections::{BTreeMap, BTreeSet};

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Encodable, StrBytes};
use kafka_protocol::records::{self as kp, RecordBatchEncoder, RecordEncodeOptions};

use crate::cluster::{ClusterNode, Command, TypeConfig};
use crate::group::record::{encode_frame, GroupMetadataRecord, GroupRecord, OffsetCommitRecord, FILE_MAGIC};
use crate::protocol::versions::SUPPORTED;
use crate::storage::seaweedmq::envelope::{self, BatchFields, BatchPosition, Envelope};

fn topic() -> TopicName {
    TopicName(StrBytes::from_static_str("orders"))
}

fn body(api: ApiKey, batch: &Bytes) -> RequestKind {
    match api {
        ApiKey::Produce => RequestKind::Produce(
            ProduceRequest::default()
                .with_acks(-1)
                .with_timeout_ms(1000)
                .with_topic_data(vec![produce_request::TopicProduceData::default()
                    .with_name(topic())
                    .with_partition_data(vec![produce_request::PartitionProduceData::default()
                        .with_index(0)
                        .with_records(Some(batch.clone()))])]),
        ),
        ApiKey::Fetch => RequestKind::Fetch(
            FetchRequest::default()
                .with_max_wait_ms(500)
                .with_max_bytes(1 << 20)
                .with_topics(vec![fetch_request::FetchTopic::default()
                    .with_topic(topic())
                    .with_partitions(vec![fetch_request::FetchPartition::default()
                        .with_partition(0)
                        .with_fetch_offset(5)
                        .with_partition_max_bytes(1 << 20)])]),
        ),
        ApiKey::Metadata => RequestKind::Metadata(MetadataRequest::default().with_topics(Some(vec![
            metadata_request::MetadataRequestTopic::default().with_name(Some(topic())),
        ]))),
        ApiKey::OffsetCommit => RequestKind::OffsetCommit(
            OffsetCommitRequest::default()
                .with_group_id(GroupId(StrBytes::from_static_str("g")))
                .with_topics(vec![offset_commit_request::OffsetCommitRequestTopic::default()
                    .with_name(topic())
                    .with_partitions(vec![
                        offset_commit_request::OffsetCommitRequestPartition::default()
                            .with_partition_index(0)
                            .with_committed_offset(42),
                    ])]),
        ),
        other => default_body(other),
    }
}

fn default_body(api: ApiKey) -> RequestKind {
    macro_rules! d {
        ($($key:ident => $ty:ident),* $(,)?) => {
            match api {
                $(ApiKey::$key => RequestKind::$key($ty::default()),)*
                other => panic!("no seed body for {other:?}"),
            }
        };
    }
    d!(
        ListOffsets => ListOffsetsRequest,
        ApiVersions => ApiVersionsRequest,
        CreateTopics => CreateTopicsRequest,
        DeleteTopics => DeleteTopicsRequest,
        DeleteRecords => DeleteRecordsRequest,
        InitProducerId => InitProducerIdRequest,
        OffsetForLeaderEpoch => OffsetForLeaderEpochRequest,
        DescribeConfigs => DescribeConfigsRequest,
        AlterConfigs => AlterConfigsRequest,
        CreatePartitions => CreatePartitionsRequest,
        IncrementalAlterConfigs => IncrementalAlterConfigsRequest,
        DescribeCluster => DescribeClusterRequest,
        FindCoordinator => FindCoordinatorRequest,
        JoinGroup => JoinGroupRequest,
        Heartbeat => HeartbeatRequest,
        LeaveGroup => LeaveGroupRequest,
        SyncGroup => SyncGroupRequest,
        OffsetFetch => OffsetFetchRequest,
        DescribeGroups => DescribeGroupsRequest,
        ListGroups => ListGroupsRequest,
        DeleteGroups => DeleteGroupsRequest,
        OffsetDelete => OffsetDeleteRequest,
        SaslHandshake => SaslHandshakeRequest,
        SaslAuthenticate => SaslAuthenticateRequest,
        DescribeUserScramCredentials => DescribeUserScramCredentialsRequest,
        AlterUserScramCredentials => AlterUserScramCredentialsRequest,
    )
}

/// Every served API at every supported version, in the `request` target's input shape.
pub(super) fn requests() -> Vec<Vec<u8>> {
    let batch = Bytes::from(batches().swap_remove(0));
    let mut out = Vec::new();
    for (i, range) in SUPPORTED.iter().enumerate() {
        for version in range.min..=range.max {
            let mut frame = BytesMut::new();
            let header = RequestHeader::default()
                .with_request_api_key(range.key as i16)
                .with_request_api_version(version)
                .with_correlation_id(9)
                .with_client_id(Some(StrBytes::from_static_str("seed")));
            if header
                .encode(&mut frame, range.key.request_header_version(version))
                .is_err()
                || body(range.key, &batch).encode(&mut frame, version).is_err()
            {
                continue;
            }
            let mut seed = vec![i as u8, (version - range.min) as u8];
            seed.extend_from_slice(&frame[4..]);
            out.push(seed);
        }
    }
    out
}

fn kp_records(n: i64) -> Vec<kp::Record> {
    (0..n)
        .map(|i| kp::Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: kp::TimestampType::Creation,
            offset: i,
            sequence: -1,
            timestamp: 1_700_000_000_000 + i,
            key: (i % 3 != 0).then(|| Bytes::from(format!("key-{i}"))),
            value: Some(Bytes::from(vec![b'v'; 20 + i as usize])),
            headers: [(StrBytes::from_static_str("h"), Some(Bytes::from_static(b"x")))]
                .into_iter()
                .collect(),
        })
        .collect()
}

/// Valid batches: the test builder's, and kafka-protocol's in every codec.
pub(super) fn batches() -> Vec<Vec<u8>> {
    let mut out =
        vec![crate::records::testing::batch(&[b"a", b"bc"], 1_700_000_000_000, -1, -1, -1).to_vec()];
    for compression in [
        kp::Compression::None,
        kp::Compression::Gzip,
        kp::Compression::Snappy,
        kp::Compression::Lz4,
        kp::Compression::Zstd,
    ] {
        let mut buf = BytesMut::new();
        let options = RecordEncodeOptions {
            version: 2,
            compression,
        };
        RecordBatchEncoder::encode(&mut buf, &kp_records(5), &options).expect("encodable");
        out.push(buf.to_vec());
    }
    out
}

fn message(flags: u8, key: &[u8], value: &[u8]) -> Vec<u8> {
    let mut m = vec![flags | if key.is_empty() { 0 } else { 2 }, key.len() as u8];
    m.extend_from_slice(key);
    m.put_u16(value.len() as u16);
    m.extend_from_slice(value);
    m
}

fn envelope(i: i32, n: i32, batch: bool) -> Bytes {
    envelope::encode(&Envelope {
        key: Some(Bytes::from(format!("k{i}"))),
        value: (i != 1).then(|| Bytes::from(vec![b'v'; 10])),
        headers: vec![("h".into(), Some(Bytes::from_static(b"1"))), ("h".into(), None)],
        timestamp_ms: 1_700_000_000_000 + i64::from(i),
        producer_id: 3,
        producer_epoch: 0,
        sequence: i,
        batch: batch.then(|| {
            BatchPosition::new(
                i,
                n - 1,
                BatchFields {
                    attributes: 0,
                    base_timestamp: 1_700_000_000_000,
                    max_timestamp: 1_700_000_000_000 + i64::from(n),
                    partition_leader_epoch: 2,
                },
            )
        }),
    })
}

/// Fetched message sequences: a whole produced batch, v1 envelopes, raw values, a cut batch,
/// a mix, and one with a broken CRC the entry repairs.
pub(super) fn smq_messages() -> Vec<Vec<u8>> {
    let whole: Vec<u8> = (0..3)
        .flat_map(|i| message(0, b"", &envelope(i, 3, true)))
        .collect();
    let v1: Vec<u8> = (0..2)
        .flat_map(|i| message(0, b"", &envelope(i, 0, false)))
        .collect();
    let raw = [message(0, b"smq-key", b"plain value"), message(0, b"", b"")].concat();
    let cut: Vec<u8> = (0..2)
        .flat_map(|i| message(0, b"", &envelope(i, 4, true)))
        .collect();
    let mixed = [whole.clone(), raw.clone(), v1.clone(), cut.clone(), whole.clone()].concat();
    let mut repaired = message(1, b"", &envelope(0, 1, true));
    repaired[5] ^= 0xff;
    vec![whole, v1, raw, cut, mixed, repaired]
}

fn group_records() -> Vec<GroupRecord> {
    let meta: GroupMetadataRecord = serde_json::from_value(serde_json::json!({
        "group_id": "g", "protocol_type": "consumer", "protocol": "range", "generation": 3,
        "leader": "m-1", "state_timestamp_ms": 1_700_000_000_000u64,
        "members": [{"member_id": "m-1", "instance_id": null, "client_id": "c",
            "client_host": "/127.0.0.1", "rebalance_timeout_ms": 300000, "session_timeout_ms": 45000,
            "protocols": [{"name": "range", "metadata": "0001"}], "assignment": "00010203"}]
    }))
    .expect("metadata record");
    let commit = |partition| {
        GroupRecord::OffsetCommit(OffsetCommitRecord {
            group_id: "g".into(),
            topic: "orders".into(),
            partition,
            offset: 42,
            leader_epoch: Some(1),
            metadata: String::new(),
            commit_timestamp_ms: 1_700_000_000_000,
            expire_timestamp_ms: None,
        })
    };
    vec![
        GroupRecord::Metadata(meta),
        commit(0),
        commit(1),
        GroupRecord::OffsetDelete {
            group_id: "g".into(),
            topic: "orders".into(),
            partition: 1,
        },
        GroupRecord::GroupDelete {
            group_id: "other".into(),
        },
    ]
}

fn payloads(items: impl IntoIterator<Item = Vec<u8>>) -> Vec<u8> {
    let mut out = vec![1u8];
    for p in items {
        out.put_u16(p.len() as u16);
        out.extend_from_slice(&p);
    }
    out
}

/// A group log file as written (mode 0) and its records as payloads (mode 1).
pub(super) fn group_logs() -> Vec<Vec<u8>> {
    let mut file = vec![0u8];
    file.extend_from_slice(FILE_MAGIC);
    for r in group_records() {
        encode_frame(&r, &mut file).expect("serializable");
    }
    let json = payloads(
        group_records()
            .iter()
            .map(|r| serde_json::to_vec(r).expect("serializable")),
    );
    vec![file, json]
}

/// Raft log entries (blank, membership, group commands) as payloads (mode 1) and as a file.
pub(super) fn raft_logs() -> Vec<Vec<u8>> {
    use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, Membership};
    let node = ClusterNode {
        cluster_addr: "127.0.0.1:1".into(),
        ..Default::default()
    };
    let membership = Membership::new(
        vec![BTreeSet::from([1u64, 2])],
        BTreeMap::from([(1u64, node.clone()), (2, node)]),
    );
    let kinds = vec![
        EntryPayload::<TypeConfig>::Blank,
        EntryPayload::Membership(membership),
        EntryPayload::Normal(Command::ClaimGroup { group_id: "g".into() }),
        EntryPayload::Normal(Command::GroupWrites {
            owner: 1,
            epoch: 2,
            group_id: "g".into(),
            records: group_records(),
        }),
    ];
    let entries: Vec<Vec<u8>> = kinds
        .into_iter()
        .enumerate()
        .map(|(i, payload)| {
            let log_id = LogId::new(CommittedLeaderId::new(1, 1), i as u64 + 1);
            serde_json::to_vec(&Entry::<TypeConfig> { log_id, payload }).expect("serializable")
        })
        .collect();
    let mut file = vec![0u8];
    for e in &entries {
        crate::cluster::log_file::encode_frame(e, &mut file).expect("small frame");
    }
    vec![payloads(entries), file]
}
