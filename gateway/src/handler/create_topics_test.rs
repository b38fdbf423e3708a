use bytes::BytesMut;
use kafka_protocol::messages::create_topics_request::{
    CreatableReplicaAssignment, CreatableTopic, CreatableTopicConfig,
};
use kafka_protocol::messages::{BrokerId, CreateTopicsRequest, TopicName};
use kafka_protocol::protocol::{Encodable, StrBytes};
use kafka_protocol::ResponseError;

use super::*;
use crate::handler::test_support;

fn topic(name: &str, partitions: i32, replication: i16) -> CreatableTopic {
    CreatableTopic::default()
        .with_name(TopicName(StrBytes::from_string(name.to_owned())))
        .with_num_partitions(partitions)
        .with_replication_factor(replication)
}

fn config(name: &'static str, value: Option<&'static str>) -> CreatableTopicConfig {
    CreatableTopicConfig::default()
        .with_name(StrBytes::from_static_str(name))
        .with_value(value.map(StrBytes::from_static_str))
}

fn request(topics: Vec<CreatableTopic>) -> CreateTopicsRequest {
    CreateTopicsRequest::default()
        .with_topics(topics)
        .with_timeout_ms(1000)
}

fn encodes(resp: &CreateTopicsResponse, version: i16) {
    resp.encode(&mut BytesMut::new(), version)
        .unwrap_or_else(|e| panic!("v{version}: {e}"));
}

#[tokio::test]
async fn creates_topics_and_reports_them_per_version() {
    let t = test_support::context().await;
    let ctx = &t.ctx;
    let req = request(vec![
        topic("explicit", 3, 1).with_configs(vec![config("retention.ms", Some("1000"))]),
        topic("defaulted", -1, -1),
    ]);
    let resp = handle(ctx, 7, req).await;
    assert!(
        resp.topics
            .iter()
            .all(|r| r.error_code == 0 && r.error_message.is_none()),
        "{resp:?}"
    );
    encodes(&resp, 7);

    let explicit = ctx.storage.describe_topic("explicit").await.unwrap().unwrap();
    assert_eq!(explicit.partitions, 3);
    assert_eq!(explicit.config.retention_ms, 1000);
    let defaulted = ctx.storage.describe_topic("defaulted").await.unwrap().unwrap();
    assert_eq!(defaulted.partitions, ctx.options.default_partitions);

    let r = &resp.topics[0];
    assert_eq!(r.topic_id, explicit.id);
    assert_eq!((r.num_partitions, r.replication_factor), (3, 1));
    let configs = r.configs.as_ref().unwrap();
    let retention = configs
        .iter()
        .find(|c| c.name.as_str() == "retention.ms")
        .unwrap();
    assert_eq!(retention.value.as_deref(), Some("1000"));
    assert_eq!(retention.config_source, SOURCE_DYNAMIC_TOPIC);
    let segment = configs
        .iter()
        .find(|c| c.name.as_str() == "segment.bytes")
        .unwrap();
    assert_eq!(segment.config_source, SOURCE_DEFAULT);
    assert!(configs
        .iter()
        .any(|c| c.name.as_str() == "min.insync.replicas" && !c.read_only));
    assert_eq!(resp.topics[1].num_partitions, ctx.options.default_partitions);

    // Before v5 the result carries no partition count or configs, and every version encodes.
    let resp = handle(ctx, 4, request(vec![topic("older", 1, 1)])).await;
    assert_eq!(resp.topics[0].error_code, 0);
    for v in 2..=7 {
        encodes(&resp, v);
    }
}

#[tokio::test]
async fn manual_assignments_naming_the_leader_and_kafka_topic_configs_are_accepted() {
    let t = test_support::context().await;
    let ctx = &t.ctx;
    let here = |p| {
        CreatableReplicaAssignment::default()
            .with_partition_index(p)
            .with_broker_ids(vec![BrokerId(ctx.broker.node_id)])
    };
    let assigned = topic("assigned", -1, -1)
        .with_assignments(vec![here(1), here(0)])
        .with_configs(vec![
            config("compression.type", Some("zstd")),
            config("min.insync.replicas", Some("2")),
            config("unclean.leader.election.enable", Some("true")),
        ]);
    let resp = handle(ctx, 7, request(vec![assigned])).await;
    let r = &resp.topics[0];
    assert_eq!(r.error_code, 0, "{r:?}");
    assert_eq!((r.num_partitions, r.replication_factor), (2, 1));
    let meta = ctx.storage.describe_topic("assigned").await.unwrap().unwrap();
    assert_eq!(meta.partitions, 2);
    assert_eq!(
        meta.config.compression_type,
        crate::storage::CompressionType::Zstd
    );
    assert_eq!(
        meta.config.stored.get("min.insync.replicas").map(String::as_str),
        Some("2")
    );
    encodes(&resp, 7);
}

#[tokio::test]
async fn validate_only_creates_nothing() {
    let t = test_support::context().await;
    let ctx = &t.ctx;
    let resp = handle(ctx, 7, request(vec![topic("dry", 2, 1)]).with_validate_only(true)).await;
    assert_eq!(resp.topics[0].error_code, 0, "{resp:?}");
    assert_eq!(resp.topics[0].num_partitions, 2);
    assert!(ctx.storage.describe_topic("dry").await.unwrap().is_none());
    // Validation still runs.
    let resp = handle(ctx, 7, request(vec![topic("dry", 0, 1)]).with_validate_only(true)).await;
    assert_eq!(resp.topics[0].error_code, ResponseError::InvalidPartitions.code());
}

#[tokio::test]
async fn refusals_carry_kafka_codes_and_messages() {
    let t = test_support::context().await;
    let ctx = &t.ctx;
    handle(ctx, 7, request(vec![topic("exists", 1, 1)])).await;
    let long = "x".repeat(250);
    let assigned = topic("assigned", -1, -1).with_assignments(vec![CreatableReplicaAssignment::default()
        .with_partition_index(0)
        .with_broker_ids(vec![BrokerId(ctx.broker.node_id)])]);
    let cases: Vec<(CreatableTopic, ResponseError, &str)> = vec![
        (topic("exists", 1, 1), ResponseError::TopicAlreadyExists, "exists"),
        (
            topic("bad name", 1, 1),
            ResponseError::InvalidTopicException,
            "' '",
        ),
        (topic("..", 1, 1), ResponseError::InvalidTopicException, ".."),
        (topic("", 1, 1), ResponseError::InvalidTopicException, "empty"),
        (topic(&long, 1, 1), ResponseError::InvalidTopicException, "249"),
        (
            topic("zero", 0, 1),
            ResponseError::InvalidPartitions,
            "larger than 0",
        ),
        (topic("negative", -5, 1), ResponseError::InvalidPartitions, "-5"),
        (
            topic("replicated", 1, 3),
            ResponseError::InvalidReplicationFactor,
            "replication factor of 3",
        ),
        (
            topic("unreplicated", 1, 0),
            ResponseError::InvalidReplicationFactor,
            "larger than 0",
        ),
        (
            assigned.with_num_partitions(1),
            ResponseError::InvalidRequest,
            "numPartitions was not set to -1",
        ),
        (
            topic("elsewhere", -1, -1).with_assignments(vec![CreatableReplicaAssignment::default()
                .with_partition_index(0)
                .with_broker_ids(vec![BrokerId(ctx.broker.node_id + 7)])]),
            ResponseError::InvalidReplicaAssignment,
            "no such broker is registered",
        ),
        (
            topic("gap", -1, -1).with_assignments(vec![CreatableReplicaAssignment::default()
                .with_partition_index(1)
                .with_broker_ids(vec![BrokerId(ctx.broker.node_id)])]),
            ResponseError::InvalidReplicaAssignment,
            "consecutive",
        ),
        (
            topic("twice", -1, -1).with_assignments(vec![CreatableReplicaAssignment::default()
                .with_partition_index(0)
                .with_broker_ids(vec![BrokerId(ctx.broker.node_id), BrokerId(ctx.broker.node_id)])]),
            ResponseError::InvalidReplicaAssignment,
            "more than once",
        ),
        (
            topic("badconf", 1, 1).with_configs(vec![config("retention.ms", Some("soon"))]),
            ResponseError::InvalidConfig,
            "retention.ms",
        ),
        (
            topic("compacted", 1, 1).with_configs(vec![config("cleanup.policy", Some("compact"))]),
            ResponseError::InvalidConfig,
            "cleanup.policy",
        ),
        (
            topic("nullconf", 1, 1).with_configs(vec![config("retention.ms", None)]),
            ResponseError::InvalidConfig,
            "null",
        ),
    ];
    for (req_topic, error, fragment) in cases {
        let name = req_topic.name.0.to_string();
        let resp = handle(ctx, 7, request(vec![req_topic])).await;
        let r = &resp.topics[0];
        assert_eq!(r.error_code, error.code(), "{name}: {r:?}");
        let message = r.error_message.as_deref().unwrap_or_default();
        assert!(message.contains(fragment), "{name}: {message}");
        assert!(r.configs.is_none() && r.num_partitions == -1, "{name}: {r:?}");
        encodes(&resp, 7);
        if error != ResponseError::TopicAlreadyExists {
            assert!(
                ctx.storage.describe_topic(&name).await.unwrap().is_none(),
                "{name} was created"
            );
        }
    }
}

#[tokio::test]
async fn a_topic_listed_twice_is_refused_both_times() {
    let t = test_support::context().await;
    let resp = handle(
        &t.ctx,
        7,
        request(vec![topic("twice", 1, 1), topic("twice", 2, 1)]),
    )
    .await;
    assert!(
        resp.topics
            .iter()
            .all(|r| r.error_code == ResponseError::InvalidRequest.code()),
        "{resp:?}"
    );
    assert!(t.ctx.storage.describe_topic("twice").await.unwrap().is_none());
}

#[test]
fn topic_names_follow_kafka_rules() {
    for ok in ["a", "A-b_c.d", "0", &"x".repeat(249), "..."] {
        assert!(crate::storage::validate_topic_name(ok).is_ok(), "{ok}");
    }
    for bad in ["", ".", "..", "a/b", "é", "a b", &"x".repeat(250)] {
        assert!(crate::storage::validate_topic_name(bad).is_err(), "{bad}");
    }
}
