//! Produce, Fetch, Metadata and ListOffsets through the handlers at every supported version,
//! with each response encoded at its version (catching fields a version cannot carry).

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::test_support::context;
use super::window::Held;
use super::*;
use crate::protocol::{encode_response, versions};
use crate::records::testing::batch;
use crate::storage::TopicConfig;

fn range(key: ApiKey) -> std::ops::RangeInclusive<i16> {
    let r = versions::lookup(key as i16).unwrap();
    r.min..=r.max
}

fn header(key: ApiKey, v: i16) -> RequestHeader {
    RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(v)
}

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_owned()))
}

fn produce_req(topic: &str, id: uuid::Uuid, records: Bytes, acks: i16) -> ProduceRequest {
    ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(1000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(name(topic))
            .with_topic_id(id)
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(records))])])
}

async fn run(ctx: &Context, key: ApiKey, v: i16, body: RequestKind) -> ResponseKind {
    let reply = dispatch(
        ctx,
        &header(key, v),
        &super::test_support::client(),
        &Held::untracked(),
        body,
    )
    .await
    .unwrap()
    .unwrap();
    encode_response(key, v, 1, &reply).unwrap_or_else(|e| panic!("{key:?} v{v}: {e}"));
    reply
}

#[tokio::test]
async fn every_version_round_trips_produce_fetch_metadata_list_offsets() {
    let t = context().await;
    let ctx = &t.ctx;
    let meta = ctx
        .storage
        .create_topic("t", 1, TopicConfig::default(), false)
        .await
        .unwrap();
    let mut expected_offset = 0;
    for v in range(ApiKey::Produce) {
        let records = batch(&[b"a", b"b"], 1000 + i64::from(v), -1, -1, -1).freeze();
        let ResponseKind::Produce(r) = run(
            ctx,
            ApiKey::Produce,
            v,
            RequestKind::Produce(produce_req("t", meta.id, records, -1)),
        )
        .await
        else {
            panic!()
        };
        let p = &r.responses[0].partition_responses[0];
        assert_eq!(
            (p.error_code, p.base_offset),
            (0, expected_offset),
            "produce v{v}"
        );
        expected_offset += 2;
    }
    for v in range(ApiKey::Fetch) {
        let req = FetchRequest::default()
            .with_max_wait_ms(0)
            .with_max_bytes(1 << 20)
            .with_topics(vec![FetchTopic::default()
                .with_topic(name("t"))
                .with_topic_id(meta.id)
                .with_partitions(vec![FetchPartition::default()
                    .with_fetch_offset(4)
                    .with_partition_max_bytes(1 << 20)])]);
        let ResponseKind::Fetch(r) = run(ctx, ApiKey::Fetch, v, RequestKind::Fetch(req)).await else {
            panic!()
        };
        let p = &r.responses[0].partitions[0];
        assert_eq!(
            (p.error_code, p.high_watermark),
            (0, expected_offset),
            "fetch v{v}"
        );
        let records = p.records.as_ref().unwrap();
        // Both formats start with the first offset and carry the magic at byte 16.
        let first_offset = i64::from_be_bytes(records[..8].try_into().unwrap());
        assert_eq!(first_offset, 4, "fetch v{v} starts at offset 4");
        let magic = crate::records::legacy::fetch_magic(v).unwrap_or(2);
        assert_eq!(
            records[16] as i8, magic,
            "fetch v{v} reads message format v{magic}"
        );
    }
    for v in range(ApiKey::Metadata) {
        let topic = MetadataRequestTopic::default().with_name(Some(name("t")));
        let req = MetadataRequest::default().with_topics(Some(vec![topic]));
        let ResponseKind::Metadata(r) = run(ctx, ApiKey::Metadata, v, RequestKind::Metadata(req)).await
        else {
            panic!()
        };
        assert_eq!(r.topics[0].error_code, 0, "metadata v{v}");
        assert_eq!(r.topics[0].partitions.len(), 1);
    }
    for v in range(ApiKey::ListOffsets) {
        // One request per timestamp: Kafka refuses a partition named twice in one request.
        let mut offsets = Vec::new();
        for ts in [-2i64, -1, 1005] {
            let req = ListOffsetsRequest::default().with_topics(vec![ListOffsetsTopic::default()
                .with_name(name("t"))
                .with_partitions(vec![ListOffsetsPartition::default().with_timestamp(ts)])]);
            let ResponseKind::ListOffsets(r) =
                run(ctx, ApiKey::ListOffsets, v, RequestKind::ListOffsets(req)).await
            else {
                panic!()
            };
            let p = &r.topics[0].partitions[0];
            offsets.push(if v == 0 { p.old_style_offsets[0] } else { p.offset });
        }
        // Produce v_n wrote two records at time 1000 + n, from the lowest version on.
        let at_1005 = 2 * (5 - i64::from(*range(ApiKey::Produce).start()));
        assert_eq!(offsets, vec![0, expected_offset, at_1005], "list offsets v{v}");
    }
}

#[tokio::test]
async fn corrupt_batches_unknown_topics_and_acks_zero() {
    let t = context().await;
    let ctx = &t.ctx;
    let meta = ctx
        .storage
        .create_topic("c", 1, TopicConfig::default(), false)
        .await
        .unwrap();
    let mut bad = batch(&[b"x"], 1, -1, -1, -1);
    let last = bad.len() - 1;
    bad[last] ^= 1;
    let ResponseKind::Produce(r) = run(
        ctx,
        ApiKey::Produce,
        9,
        RequestKind::Produce(produce_req("c", meta.id, bad.freeze(), 1)),
    )
    .await
    else {
        panic!()
    };
    assert_eq!(
        r.responses[0].partition_responses[0].error_code,
        ResponseError::CorruptMessage.code()
    );
    let ok = batch(&[b"x"], 1, -1, -1, -1).freeze();
    let ResponseKind::Produce(r) = run(
        ctx,
        ApiKey::Produce,
        9,
        RequestKind::Produce(produce_req("nope", uuid::Uuid::nil(), ok.clone(), 1)),
    )
    .await
    else {
        panic!()
    };
    assert_eq!(
        r.responses[0].partition_responses[0].error_code,
        ResponseError::UnknownTopicOrPartition.code()
    );
    let none = dispatch(
        ctx,
        &header(ApiKey::Produce, 9),
        &super::test_support::client(),
        &Held::untracked(),
        RequestKind::Produce(produce_req("c", meta.id, ok, 0)),
    )
    .await
    .unwrap();
    assert!(none.is_none(), "acks=0 gets no response");
}

#[tokio::test]
async fn fetch_long_poll_wakes_on_append_and_times_out_without_one() {
    let t = context().await;
    let ctx = std::sync::Arc::new(t.ctx);
    let meta = ctx
        .storage
        .create_topic("w", 1, TopicConfig::default(), false)
        .await
        .unwrap();
    let fetch = |wait_ms: i32| {
        FetchRequest::default()
            .with_max_wait_ms(wait_ms)
            .with_min_bytes(1)
            .with_max_bytes(1 << 20)
            .with_topics(vec![FetchTopic::default().with_topic(name("w")).with_partitions(
                vec![FetchPartition::default()
                    .with_fetch_offset(0)
                    .with_partition_max_bytes(1 << 20)],
            )])
    };
    // Nothing arrives: the long poll ends empty at its deadline.
    let ResponseKind::Fetch(r) = run(&ctx, ApiKey::Fetch, 12, RequestKind::Fetch(fetch(50))).await else {
        panic!()
    };
    assert!(r.responses[0].partitions[0].records.as_ref().unwrap().is_empty());
    // A long poll of 30 s returns as soon as a produce lands.
    let waiter = {
        let ctx = std::sync::Arc::clone(&ctx);
        tokio::spawn(async move {
            dispatch(
                &ctx,
                &header(ApiKey::Fetch, 12),
                &super::test_support::client(),
                &Held::untracked(),
                RequestKind::Fetch(fetch(30_000)),
            )
            .await
        })
    };
    let ok = batch(&[b"late"], 1, -1, -1, -1).freeze();
    run(
        &ctx,
        ApiKey::Produce,
        9,
        RequestKind::Produce(produce_req("w", meta.id, ok, 1)),
    )
    .await;
    let reply = tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .expect("woken before 10 s")
        .unwrap();
    let Some(ResponseKind::Fetch(r)) = reply.unwrap() else {
        panic!()
    };
    assert!(!r.responses[0].partitions[0].records.as_ref().unwrap().is_empty());
}

#[tokio::test]
async fn metadata_reports_authorized_operations_only_when_asked() {
    let t = context().await;
    let ctx = &t.ctx;
    ctx.storage
        .create_topic("ops", 1, TopicConfig::default(), false)
        .await
        .unwrap();
    for v in 8..=13 {
        for asked in [false, true] {
            let req = MetadataRequest::default()
                .with_topics(Some(vec![
                    MetadataRequestTopic::default().with_name(Some(name("ops")))
                ]))
                .with_include_topic_authorized_operations(asked)
                .with_include_cluster_authorized_operations(asked && v <= 10);
            let ResponseKind::Metadata(r) = run(ctx, ApiKey::Metadata, v, RequestKind::Metadata(req)).await
            else {
                panic!()
            };
            let ops = r.topics[0].topic_authorized_operations;
            if asked {
                // READ (3), WRITE (4) and DESCRIBE (8) are among a topic's operations; bit 31 is not.
                assert_eq!(ops & (1 << 3 | 1 << 4 | 1 << 8), 1 << 3 | 1 << 4 | 1 << 8, "v{v}");
                assert!(ops > 0, "v{v}: {ops:#x}");
            } else {
                assert_eq!(ops, i32::MIN, "v{v}");
            }
        }
    }
}

#[tokio::test]
async fn fetch_limit_applies_in_partition_order_after_concurrent_reads() {
    let t = context().await;
    let ctx = &t.ctx;
    ctx.storage
        .create_topic("lim", 3, TopicConfig::default(), false)
        .await
        .unwrap();
    let one = batch(&[b"0123456789"], 1, -1, -1, -1).freeze();
    let size = one.len();
    for p in 0..3 {
        let tp = crate::storage::TopicPartition::new("lim", p);
        for _ in 0..2 {
            ctx.storage
                .append(&tp, one.clone(), crate::storage::Durability::Accepted)
                .await
                .unwrap();
        }
    }
    let fetch = |max_bytes: i32| {
        FetchRequest::default()
            .with_max_wait_ms(0)
            .with_max_bytes(max_bytes)
            .with_topics(vec![FetchTopic::default()
                .with_topic(name("lim"))
                .with_partitions(
                    (0..3)
                        .map(|p| {
                            FetchPartition::default()
                                .with_partition(p)
                                .with_fetch_offset(0)
                                .with_partition_max_bytes(1 << 20)
                        })
                        .collect(),
                )])
    };
    let sizes = |r: &FetchResponse| -> Vec<(usize, i64)> {
        r.responses[0]
            .partitions
            .iter()
            .map(|p| (p.records.as_ref().map_or(0, |b| b.len()), p.high_watermark))
            .collect()
    };
    // Room for three batches: partition 0 takes two, partition 1 one, partition 2 none.
    let ResponseKind::Fetch(r) =
        run(ctx, ApiKey::Fetch, 12, RequestKind::Fetch(fetch(3 * size as i32))).await
    else {
        panic!()
    };
    assert_eq!(sizes(&r), vec![(2 * size, 2), (size, 2), (0, 2)]);
    // A limit below one batch still returns the first partition's first batch (KIP-74).
    let ResponseKind::Fetch(r) = run(ctx, ApiKey::Fetch, 12, RequestKind::Fetch(fetch(1))).await else {
        panic!()
    };
    assert_eq!(sizes(&r), vec![(size, 2), (0, 2), (0, 2)]);
}

#[tokio::test]
async fn invalid_records_fail_their_partition_only() {
    let t = context().await;
    let ctx = &t.ctx;
    let meta = ctx
        .storage
        .create_topic("v", 3, TopicConfig::default(), false)
        .await
        .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    // Partition 0: the first record's offset delta is 2 instead of 0.
    let mut bad_offsets = batch(&[b"a", b"b"], now, -1, -1, -1);
    let at = crate::records::HEADER_LEN + 3;
    assert_eq!(bad_offsets[at], 0);
    bad_offsets[at] = 4;
    let crc = crc32c::crc32c(&bad_offsets[21..]);
    bad_offsets[17..21].copy_from_slice(&crc.to_be_bytes());
    // Partition 1: two hours ahead of the broker clock (after.max.ms defaults to one hour).
    let future = batch(&[b"x"], now + 7_200_000, -1, -1, -1);
    let good = batch(&[b"ok"], now, -1, -1, -1);
    let req = ProduceRequest::default()
        .with_acks(1)
        .with_timeout_ms(1000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(name("v"))
            .with_topic_id(meta.id)
            .with_partition_data(
                [bad_offsets, future, good]
                    .into_iter()
                    .enumerate()
                    .map(|(i, b)| {
                        PartitionProduceData::default()
                            .with_index(i as i32)
                            .with_records(Some(b.freeze()))
                    })
                    .collect(),
            )]);
    let ResponseKind::Produce(r) = run(ctx, ApiKey::Produce, 9, RequestKind::Produce(req)).await else {
        panic!()
    };
    let mut codes: Vec<_> = r.responses[0]
        .partition_responses
        .iter()
        .map(|p| (p.index, p.error_code, p.base_offset))
        .collect();
    codes.sort();
    assert_eq!(
        codes,
        vec![
            (0, ResponseError::InvalidRecord.code(), -1),
            (1, ResponseError::InvalidTimestamp.code(), -1),
            (2, 0, 0),
        ]
    );
}

#[tokio::test]
async fn a_topics_compression_type_recompresses_produced_batches() {
    let t = context().await;
    let ctx = &t.ctx;
    let config = TopicConfig::from_entries([("compression.type", Some("lz4"))]).unwrap();
    let meta = ctx.storage.create_topic("z", 1, config, false).await.unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let sent = batch(&[b"one", b"two"], now, -1, -1, -1).freeze();
    let req = produce_req("z", meta.id, sent.clone(), 1);
    let ResponseKind::Produce(r) = run(ctx, ApiKey::Produce, 9, RequestKind::Produce(req)).await else {
        panic!()
    };
    assert_eq!(r.responses[0].partition_responses[0].error_code, 0, "{r:?}");
    let tp = crate::storage::TopicPartition::new("z", 0);
    let stored = ctx.storage.read(&tp, 0, 1 << 20).await.unwrap().records;
    let decoded = crate::records::batch_codec::decode_batch(&stored).unwrap();
    assert_eq!(decoded.attributes & 0x07, 3, "stored in the topic's codec (lz4)");
    let values: Vec<_> = decoded.records.iter().map(|r| r.value.clone().unwrap()).collect();
    assert_eq!(
        values,
        vec![Bytes::from_static(b"one"), Bytes::from_static(b"two")]
    );
}

/// Clients older than Kafka 0.11: Produce v0-2 with message format v0/v1 is stored as v2 batches
/// and read back by Fetch v0-3 in the old format; a bad message CRC is CORRUPT_MESSAGE.
#[tokio::test]
async fn legacy_message_sets_round_trip_through_old_versions() {
    use crate::records::legacy;
    let t = context().await;
    let ctx = &t.ctx;
    let meta = ctx
        .storage
        .create_topic("old", 1, TopicConfig::default(), false)
        .await
        .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let stored = batch(&[b"m0", b"m1"], now, -1, -1, -1);
    for (v, magic) in [(0, 0), (2, 1)] {
        let set = legacy::down_convert(&stored, magic, 0).unwrap();
        let req = produce_req("old", meta.id, set, 1);
        let ResponseKind::Produce(r) = run(ctx, ApiKey::Produce, v, RequestKind::Produce(req)).await else {
            panic!()
        };
        assert_eq!(
            r.responses[0].partition_responses[0].error_code, 0,
            "produce v{v}: {r:?}"
        );
    }
    let tp = crate::storage::TopicPartition::new("old", 0);
    let read = ctx.storage.read(&tp, 0, 1 << 20).await.unwrap();
    let batches = crate::records::batch_codec::decode_batches(&read.records).unwrap();
    assert_eq!(batches.len(), 2, "each message set became one v2 batch");
    assert_eq!(
        batches[1].records[1].timestamp_ms, now,
        "magic 1 keeps the producer's time"
    );
    for v in [0, 1, 2, 3] {
        let req = FetchRequest::default()
            .with_max_wait_ms(0)
            .with_topics(vec![FetchTopic::default()
                .with_topic(name("old"))
                .with_partitions(vec![FetchPartition::default()
                    .with_fetch_offset(1)
                    .with_partition_max_bytes(1 << 20)])]);
        let ResponseKind::Fetch(r) = run(ctx, ApiKey::Fetch, v, RequestKind::Fetch(req)).await else {
            panic!()
        };
        let set = r.responses[0].partitions[0].records.clone().unwrap();
        let back = legacy::up_convert(set, crate::storage::CompressionType::Producer).unwrap();
        let values: Vec<_> = crate::records::batch_codec::decode_batch(&back)
            .unwrap()
            .records
            .into_iter()
            .map(|r| r.value.unwrap())
            .collect();
        assert_eq!(values, [&b"m1"[..], b"m0", b"m1"], "fetch v{v} from offset 1");
    }
    // message.downconversion.enable=false refuses old fetches, as Kafka 3.x does.
    let mut no_conversion = meta.config.clone();
    no_conversion
        .set("message.downconversion.enable", Some("false"))
        .unwrap();
    ctx.storage
        .alter_topic_config("old", no_conversion, false)
        .await
        .unwrap();
    for (v, code) in [(3, ResponseError::UnsupportedVersion.code()), (4, 0)] {
        let req = FetchRequest::default()
            .with_max_wait_ms(0)
            .with_topics(vec![FetchTopic::default()
                .with_topic(name("old"))
                .with_partitions(vec![
                    FetchPartition::default().with_partition_max_bytes(1 << 20)
                ])]);
        let ResponseKind::Fetch(r) = run(ctx, ApiKey::Fetch, v, RequestKind::Fetch(req)).await else {
            panic!()
        };
        assert_eq!(r.responses[0].partitions[0].error_code, code, "fetch v{v}");
    }
    let mut corrupt = BytesMut::from(&legacy::down_convert(&stored, 1, 0).unwrap()[..]);
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0x55;
    let req = produce_req("old", meta.id, corrupt.freeze(), 1);
    let ResponseKind::Produce(r) = run(ctx, ApiKey::Produce, 2, RequestKind::Produce(req)).await else {
        panic!()
    };
    assert_eq!(
        r.responses[0].partition_responses[0].error_code,
        ResponseError::CorruptMessage.code()
    );
}
