//! Requests naming the same topic or partition many times: Metadata answers each topic once,
//! ListOffsets answers every row of a repeated partition with INVALID_REQUEST (as Kafka does).

use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::test_support::context;
use super::window::Held;
use super::*;
use crate::storage::TopicConfig;

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
