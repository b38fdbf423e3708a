//! Requests naming the same topic or partition many times: Metadata answers each topic once,
//! ListOffsets answers every row of a repeated partition with INVALID_REQUEST, OffsetCommit answers
//! every entry and keeps the last offset (as Kafka does).

use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::test_support::context;
use super::window::Held;
use super::*;
use crate::storage::{TopicConfig, TopicPartition};

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_owned()))
}

async fn run(ctx: &Context, key: ApiKey, v: i16, body: RequestKind) -> ResponseKind {
    let header = RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(v);
    dispatch(ctx, &header, &test_support::client(), &Held::untracked(), body)
        .await
        .expect("dispatched")
        .expect("answered")
}

#[tokio::test]
async fn metadata_answers_a_topic_named_many_times_once() {
    let t = context().await;
    let ctx = &t.ctx;
    let big = ctx
        .storage
        .create_topic("big", 50, TopicConfig::default(), false)
        .await
        .unwrap();
    ctx.storage
        .create_topic("small", 1, TopicConfig::default(), false)
        .await
        .unwrap();
    let by_name = |n: &str| MetadataRequestTopic::default().with_name(Some(name(n)));
    let mut topics: Vec<MetadataRequestTopic> = (0..2000).map(|_| by_name("big")).collect();
    topics.insert(1, by_name("small"));
    let by_id = MetadataRequestTopic::default()
        .with_name(None)
        .with_topic_id(big.id);
    topics.extend([by_id.clone(), by_id]);
    let req = MetadataRequest::default()
        .with_topics(Some(topics))
        .with_allow_auto_topic_creation(false);
    let ResponseKind::Metadata(r) = run(ctx, ApiKey::Metadata, 12, RequestKind::Metadata(req)).await else {
        panic!("not a Metadata response")
    };
    let answered: Vec<(Option<&str>, usize)> = r
        .topics
        .iter()
        .map(|t| (t.name.as_ref().map(|n| n.0.as_str()), t.partitions.len()))
        .collect();
    // Once by name, once by id, in the order first asked.
    assert_eq!(
        answered,
        vec![(Some("big"), 50), (Some("small"), 1), (Some("big"), 50)]
    );
}

#[tokio::test]
async fn list_offsets_refuses_every_row_of_a_repeated_partition() {
    let t = context().await;
    let ctx = &t.ctx;
    ctx.storage
        .create_topic("t", 2, TopicConfig::default(), false)
        .await
        .unwrap();
    let part = |p: i32| {
        ListOffsetsPartition::default()
            .with_partition_index(p)
            .with_timestamp(-1)
    };
    let req = ListOffsetsRequest::default().with_topics(vec![
        ListOffsetsTopic::default()
            .with_name(name("t"))
            .with_partitions(vec![part(0), part(1)]),
        ListOffsetsTopic::default()
            .with_name(name("t"))
            .with_partitions(vec![part(0)]),
    ]);
    let ResponseKind::ListOffsets(r) = run(ctx, ApiKey::ListOffsets, 7, RequestKind::ListOffsets(req)).await
    else {
        panic!("not a ListOffsets response")
    };
    let rows: Vec<(i32, i16)> = r
        .topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(|p| (p.partition_index, p.error_code)))
        .collect();
    let invalid = ResponseError::InvalidRequest.code();
    assert_eq!(rows, vec![(0, invalid), (1, 0), (0, invalid)]);
}

#[tokio::test]
async fn offset_commit_answers_every_entry_and_keeps_the_last_offset() {
    use kafka_protocol::messages::offset_commit_request::{
        OffsetCommitRequestPartition, OffsetCommitRequestTopic,
    };
    let t = context().await;
    let ctx = &t.ctx;
    ctx.storage
        .create_topic("t", 2, TopicConfig::default(), false)
        .await
        .unwrap();
    let part = |p: i32, offset: i64| {
        OffsetCommitRequestPartition::default()
            .with_partition_index(p)
            .with_committed_offset(offset)
    };
    let topic = |n: &str, parts: Vec<OffsetCommitRequestPartition>| {
        OffsetCommitRequestTopic::default()
            .with_name(name(n))
            .with_partitions(parts)
    };
    // 20,000 entries for one partition, then the topic again, and an unknown topic between.
    let many: Vec<OffsetCommitRequestPartition> = (0..20_000).map(|i| part(0, i)).collect();
    let req = OffsetCommitRequest::default()
        .with_group_id(GroupId(StrBytes::from_static_str("g")))
        .with_generation_id_or_member_epoch(-1)
        .with_topics(vec![
            topic("t", many),
            topic("nope", vec![part(0, 1)]),
            topic("t", vec![part(1, 5), part(0, 7), part(1, 6)]),
        ]);
    let req = RequestKind::OffsetCommit(req);
    let codes = super::group_test_support::commit_codes(ctx, 8, req).await;
    assert_eq!(codes.len(), 20_000 + 1 + 3, "one answer per request entry");
    let unknown = ResponseError::UnknownTopicOrPartition.code();
    let tail: Vec<(&str, i32, i16)> = codes[20_000..]
        .iter()
        .map(|(t, p, c)| (t.as_str(), *p, *c))
        .collect();
    assert_eq!(
        tail,
        vec![("nope", 0, unknown), ("t", 1, 0), ("t", 0, 0), ("t", 1, 0)]
    );
    assert!(codes[..20_000]
        .iter()
        .all(|(t, p, c)| t == "t" && *p == 0 && *c == 0));
    let tps = [TopicPartition::new("t", 0), TopicPartition::new("t", 1)];
    let fetched = ctx.groups.fetch_offsets("g", Some(&tps)).await.unwrap();
    let offsets: Vec<Option<i64>> = fetched
        .iter()
        .map(|(_, c)| c.as_ref().map(|c| c.offset))
        .collect();
    assert_eq!(
        offsets,
        vec![Some(7), Some(6)],
        "the last entry of each partition wins"
    );
}
