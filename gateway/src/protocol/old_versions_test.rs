//! The request versions below Kafka 4.0's floors that the vendored `kafka-protocol` serves again
//! (vendor/kafka-protocol/PATCHED.md): each request decodes from, and each response encodes to,
//! the bytes of Kafka's protocol guide for that version, written out field by field here.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

/// Big-endian fields of a non-flexible message.
#[derive(Default)]
struct W(BytesMut);

impl W {
    fn i8(mut self, v: i8) -> Self {
        self.0.put_i8(v);
        self
    }
    fn i16(mut self, v: i16) -> Self {
        self.0.put_i16(v);
        self
    }
    fn i32(mut self, v: i32) -> Self {
        self.0.put_i32(v);
        self
    }
    fn i64(mut self, v: i64) -> Self {
        self.0.put_i64(v);
        self
    }
    fn str(mut self, s: &str) -> Self {
        self.0.put_i16(s.len() as i16);
        self.0.put_slice(s.as_bytes());
        self
    }
    fn null_str(mut self) -> Self {
        self.0.put_i16(-1);
        self
    }
    fn bytes(mut self, b: &[u8]) -> Self {
        self.0.put_i32(b.len() as i32);
        self.0.put_slice(b);
        self
    }
    fn done(self) -> Bytes {
        self.0.freeze()
    }
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_owned())
}

fn decode<T: Decodable>(bytes: Bytes, version: i16) -> T {
    let mut buf = bytes;
    let out = T::decode(&mut buf, version).unwrap_or_else(|e| panic!("v{version}: {e}"));
    assert!(buf.is_empty(), "v{version}: {} bytes left over", buf.len());
    out
}

fn encode<T: Encodable>(msg: &T, version: i16) -> Bytes {
    let mut buf = BytesMut::new();
    msg.encode(&mut buf, version)
        .unwrap_or_else(|e| panic!("v{version}: {e}"));
    assert_eq!(
        buf.len(),
        msg.compute_size(version).unwrap(),
        "v{version}: computed size"
    );
    buf.freeze()
}

#[test]
fn produce_v0_to_v2() {
    // acks, timeout, [topic [partition records]]; no transactional id before v3.
    for v in 0..=2 {
        let wire = W::default()
            .i16(1)
            .i32(1000)
            .i32(1)
            .str("t")
            .i32(1)
            .i32(0)
            .bytes(b"ab")
            .done();
        let req: ProduceRequest = decode(wire, v);
        assert_eq!((req.acks, req.timeout_ms, req.transactional_id), (1, 1000, None));
        assert_eq!(
            req.topic_data[0].partition_data[0].records.as_deref(),
            Some(&b"ab"[..])
        );
    }
    let partition = produce_response::PartitionProduceResponse::default()
        .with_index(0)
        .with_base_offset(7)
        .with_log_append_time_ms(99);
    let resp = ProduceResponse::default()
        .with_responses(vec![produce_response::TopicProduceResponse::default()
            .with_name(TopicName(s("t")))
            .with_partition_responses(vec![partition])])
        .with_throttle_time_ms(5);
    let head = || W::default().i32(1).str("t").i32(1).i32(0).i16(0).i64(7);
    assert_eq!(encode(&resp, 0), head().done(), "v0: no throttle, no append time");
    assert_eq!(encode(&resp, 1), head().i32(5).done(), "v1: throttle time");
    assert_eq!(
        encode(&resp, 2),
        head().i64(99).i32(5).done(),
        "v2: log append time"
    );
}

#[test]
fn fetch_v0_to_v3() {
    for v in 0..=3 {
        let mut w = W::default().i32(-1).i32(100).i32(1);
        if v == 3 {
            w = w.i32(4096);
        }
        let wire = w.i32(1).str("t").i32(1).i32(0).i64(42).i32(1024).done();
        let req: FetchRequest = decode(wire, v);
        assert_eq!((req.max_wait_ms, req.min_bytes, req.isolation_level), (100, 1, 0));
        assert_eq!(req.max_bytes, if v == 3 { 4096 } else { i32::MAX });
        let p = &req.topics[0].partitions[0];
        assert_eq!((p.fetch_offset, p.partition_max_bytes), (42, 1024));
    }
    let resp = FetchResponse::default()
        .with_throttle_time_ms(3)
        .with_responses(vec![fetch_response::FetchableTopicResponse::default()
            .with_topic(TopicName(s("t")))
            .with_partitions(vec![fetch_response::PartitionData::default()
                .with_high_watermark(9)
                .with_last_stable_offset(9)
                .with_records(Some(Bytes::from_static(b"xyz")))])]);
    let body = |w: W| w.i32(1).str("t").i32(1).i32(0).i16(0).i64(9).bytes(b"xyz").done();
    assert_eq!(encode(&resp, 0), body(W::default()), "v0");
    assert_eq!(
        encode(&resp, 1),
        body(W::default().i32(3)),
        "v1: throttle time first"
    );
}

#[test]
fn list_offsets_v0() {
    let wire = W::default()
        .i32(-1)
        .i32(1)
        .str("t")
        .i32(1)
        .i32(0)
        .i64(-2)
        .i32(1)
        .done();
    let req: ListOffsetsRequest = decode(wire, 0);
    let p = &req.topics[0].partitions[0];
    assert_eq!((p.timestamp, p.max_num_offsets), (-2, 1));
    let resp = ListOffsetsResponse::default().with_topics(vec![
        list_offsets_response::ListOffsetsTopicResponse::default()
            .with_name(TopicName(s("t")))
            .with_partitions(vec![
                list_offsets_response::ListOffsetsPartitionResponse::default()
                    .with_old_style_offsets(vec![5]),
            ]),
    ]);
    let want = W::default()
        .i32(1)
        .str("t")
        .i32(1)
        .i32(0)
        .i16(0)
        .i32(1)
        .i64(5)
        .done();
    assert_eq!(encode(&resp, 0), want);
}

#[test]
fn offset_commit_v0_v1_and_offset_fetch_v0() {
    let v0 = W::default()
        .str("g")
        .i32(1)
        .str("t")
        .i32(1)
        .i32(0)
        .i64(10)
        .str("m")
        .done();
    let req: OffsetCommitRequest = decode(v0, 0);
    assert_eq!(
        (req.generation_id_or_member_epoch, req.member_id.as_str()),
        (-1, "")
    );
    assert_eq!(req.topics[0].partitions[0].committed_offset, 10);
    let v1 = W::default()
        .str("g")
        .i32(3)
        .str("member")
        .i32(1)
        .str("t")
        .i32(1)
        .i32(0)
        .i64(10)
        .i64(1234)
        .str("m")
        .done();
    let req: OffsetCommitRequest = decode(v1, 1);
    assert_eq!(
        (req.generation_id_or_member_epoch, req.member_id.as_str()),
        (3, "member")
    );
    let p = &req.topics[0].partitions[0];
    assert_eq!(
        (p.commit_timestamp, p.committed_metadata.as_deref()),
        (1234, Some("m"))
    );

    let req: OffsetFetchRequest = decode(W::default().str("g").i32(1).str("t").i32(1).i32(0).done(), 0);
    assert_eq!(req.group_id.as_str(), "g");
    let resp = OffsetFetchResponse::default().with_topics(vec![
        offset_fetch_response::OffsetFetchResponseTopic::default()
            .with_name(TopicName(s("t")))
            .with_partitions(vec![
                offset_fetch_response::OffsetFetchResponsePartition::default()
                    .with_committed_offset(10)
                    .with_metadata(Some(s("m"))),
            ]),
    ]);
    let want = W::default()
        .i32(1)
        .str("t")
        .i32(1)
        .i32(0)
        .i64(10)
        .str("m")
        .i16(0)
        .done();
    assert_eq!(encode(&resp, 0), want, "no group error code, no throttle time");
}

#[test]
fn create_and_delete_topics_v0() {
    let topic = || W::default().i32(1).str("t").i32(2).i16(1).i32(0).i32(0);
    let req: CreateTopicsRequest = decode(topic().i32(500).done(), 0);
    assert_eq!(
        (req.topics[0].num_partitions, req.timeout_ms, req.validate_only),
        (2, 500, false)
    );
    let req: CreateTopicsRequest = decode(topic().i32(500).i8(1).done(), 1);
    assert!(req.validate_only, "v1 carries validate_only");
    let resp = CreateTopicsResponse::default()
        .with_throttle_time_ms(4)
        .with_topics(vec![create_topics_response::CreatableTopicResult::default()
            .with_name(TopicName(s("t")))
            .with_error_code(36)
            .with_error_message(Some(s("exists")))]);
    assert_eq!(encode(&resp, 0), W::default().i32(1).str("t").i16(36).done());
    assert_eq!(
        encode(&resp, 1),
        W::default().i32(1).str("t").i16(36).str("exists").done()
    );

    let req: DeleteTopicsRequest = decode(W::default().i32(1).str("t").i32(500).done(), 0);
    assert_eq!(req.topic_names[0].as_str(), "t");
    let resp = DeleteTopicsResponse::default()
        .with_throttle_time_ms(4)
        .with_responses(vec![delete_topics_response::DeletableTopicResult::default()
            .with_name(Some(TopicName(s("t"))))
            .with_error_code(3)]);
    assert_eq!(
        encode(&resp, 0),
        W::default().i32(1).str("t").i16(3).done(),
        "no throttle time"
    );
}

#[test]
fn describe_configs_v0() {
    let wire = W::default().i32(1).i8(2).str("t").i32(-1).done();
    let req: DescribeConfigsRequest = decode(wire, 0);
    assert_eq!(
        (req.resources[0].resource_name.as_str(), req.include_synonyms),
        ("t", false)
    );
    let resp = DescribeConfigsResponse::default().with_results(vec![
        describe_configs_response::DescribeConfigsResult::default()
            .with_error_message(None)
            .with_resource_type(2)
            .with_resource_name(s("t"))
            .with_configs(vec![
                describe_configs_response::DescribeConfigsResourceResult::default()
                    .with_name(s("retention.ms"))
                    .with_value(Some(s("1")))
                    .with_is_default(true)
                    .with_config_source(5),
            ]),
    ]);
    let want = W::default()
        .i32(0)
        .i32(1)
        .i16(0)
        .null_str()
        .i8(2)
        .str("t")
        .i32(1)
        .str("retention.ms")
        .str("1")
        .i8(0)
        .i8(1)
        .i8(0)
        .done();
    assert_eq!(
        encode(&resp, 0),
        want,
        "read_only, is_default, is_sensitive; no source, no synonyms"
    );
}

#[test]
fn offset_for_leader_epoch_v0_v1() {
    for v in 0..=1 {
        let req: OffsetForLeaderEpochRequest =
            decode(W::default().i32(1).str("t").i32(1).i32(0).i32(4).done(), v);
        let p = &req.topics[0].partitions[0];
        assert_eq!((p.leader_epoch, p.current_leader_epoch), (4, -1));
    }
    let resp = OffsetForLeaderEpochResponse::default()
        .with_throttle_time_ms(2)
        .with_topics(vec![
            offset_for_leader_epoch_response::OffsetForLeaderTopicResult::default()
                .with_topic(TopicName(s("t")))
                .with_partitions(vec![offset_for_leader_epoch_response::EpochEndOffset::default()
                    .with_leader_epoch(4)
                    .with_end_offset(77)]),
        ]);
    let head = || W::default().i32(1).str("t").i32(1).i16(0).i32(0);
    assert_eq!(encode(&resp, 0), head().i64(77).done(), "v0: no leader epoch");
    assert_eq!(encode(&resp, 1), head().i32(4).i64(77).done(), "v1: leader epoch");
}
