use bytes::BytesMut;
use kafka_protocol::messages::create_partitions_request::{
    CreatePartitionsAssignment, CreatePartitionsTopic,
};
use kafka_protocol::messages::{BrokerId, CreatePartitionsRequest, TopicName};
use kafka_protocol::protocol::{Encodable, StrBytes};
use kafka_protocol::ResponseError;

use super::*;
use crate::handler::test_support;
use crate::storage::TopicConfig;

fn grow_to(topic: &str, count: i32) -> CreatePartitionsTopic {
    CreatePartitionsTopic::default()
        .with_name(TopicName(StrBytes::from_string(topic.to_owned())))
        .with_count(count)
        .with_assignments(None)
}

fn request(topics: Vec<CreatePartitionsTopic>) -> CreatePartitionsRequest {
    CreatePartitionsRequest::default()
        .with_topics(topics)
        .with_timeout_ms(1000)
}

async fn partitions(ctx: &Context, topic: &str) -> i32 {
    ctx.storage
        .describe_topic(topic)
        .await
        .unwrap()
        .unwrap()
        .partitions
}

#[tokio::test]
async fn grows_topics_and_refuses_shrinking() {
    let t = test_support::context().await;
    let ctx = &t.ctx;
    ctx.storage
        .create_topic("t", 2, TopicConfig::default(), false)
        .await
        .unwrap();
    let resp = handle(ctx, 3, request(vec![grow_to("t", 4)])).await;
    assert_eq!(resp.results[0].error_code, 0, "{resp:?}");
    assert!(resp.results[0].error_message.is_none());
    assert_eq!(partitions(ctx, "t").await, 4);
    for v in 0..=3 {
        resp.encode(&mut BytesMut::new(), v).unwrap();
    }

    for (count, fragment) in [(3, "higher than the requested 3"), (4, "already has 4")] {
        let resp = handle(ctx, 3, request(vec![grow_to("t", count)])).await;
        let r = &resp.results[0];
        assert_eq!(r.error_code, ResponseError::InvalidPartitions.code(), "{r:?}");
        assert!(
            r.error_message.as_deref().unwrap_or_default().contains(fragment),
            "{r:?}"
        );
    }
    let resp = handle(ctx, 3, request(vec![grow_to("missing", 3)])).await;
    assert_eq!(
        resp.results[0].error_code,
        ResponseError::UnknownTopicOrPartition.code()
    );
    assert_eq!(partitions(ctx, "t").await, 4);
}

#[tokio::test]
async fn validate_only_changes_nothing() {
    let t = test_support::context().await;
    let ctx = &t.ctx;
    ctx.storage
        .create_topic("t", 1, TopicConfig::default(), false)
        .await
        .unwrap();
    let resp = handle(ctx, 3, request(vec![grow_to("t", 5)]).with_validate_only(true)).await;
    assert_eq!(resp.results[0].error_code, 0, "{resp:?}");
    assert_eq!(partitions(ctx, "t").await, 1);
}

#[tokio::test]
async fn assignments_must_name_this_broker_once_per_new_partition() {
    let t = test_support::context().await;
    let ctx = &t.ctx;
    ctx.storage
        .create_topic("t", 1, TopicConfig::default(), false)
        .await
        .unwrap();
    let here = || CreatePartitionsAssignment::default().with_broker_ids(vec![BrokerId(ctx.broker.node_id)]);
    let elsewhere =
        CreatePartitionsAssignment::default().with_broker_ids(vec![BrokerId(ctx.broker.node_id + 1)]);
    for assignments in [vec![here()], vec![here(), elsewhere]] {
        let resp = handle(
            ctx,
            3,
            request(vec![grow_to("t", 3).with_assignments(Some(assignments))]),
        )
        .await;
        assert_eq!(
            resp.results[0].error_code,
            ResponseError::InvalidReplicaAssignment.code(),
            "{resp:?}"
        );
    }
    let resp = handle(
        ctx,
        3,
        request(vec![grow_to("t", 3).with_assignments(Some(vec![here(), here()]))]),
    )
    .await;
    assert_eq!(resp.results[0].error_code, 0, "{resp:?}");
    assert_eq!(partitions(ctx, "t").await, 3);
}

#[tokio::test]
async fn a_topic_listed_twice_is_refused() {
    let t = test_support::context().await;
    let ctx = &t.ctx;
    ctx.storage
        .create_topic("t", 1, TopicConfig::default(), false)
        .await
        .unwrap();
    let resp = handle(ctx, 3, request(vec![grow_to("t", 2), grow_to("t", 3)])).await;
    assert!(
        resp.results
            .iter()
            .all(|r| r.error_code == ResponseError::InvalidRequest.code()),
        "{resp:?}"
    );
    assert_eq!(partitions(ctx, "t").await, 1);
}

/// 100,000 entries naming two topics: every one refused as a duplicate, in one pass (the
/// pairwise check took 22 s of a runtime worker on such a request).
#[tokio::test]
async fn a_huge_request_of_duplicates_is_refused_in_linear_time() {
    let t = test_support::context().await;
    let started = std::time::Instant::now();
    let topics = (0..100_000)
        .map(|i| grow_to(if i % 2 == 0 { "a" } else { "b" }, 2))
        .collect();
    let resp = handle(&t.ctx, 3, request(topics)).await;
    let elapsed = started.elapsed();
    assert_eq!(resp.results.len(), 100_000);
    assert!(resp
        .results
        .iter()
        .all(|r| r.error_code == ResponseError::InvalidRequest.code()));
    assert!(elapsed < std::time::Duration::from_secs(10), "took {elapsed:?}");
}
