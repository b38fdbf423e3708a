use bytes::BytesMut;
use kafka_protocol::messages::incremental_alter_configs_request::AlterableConfig;
use kafka_protocol::protocol::{Encodable, StrBytes};

use super::*;
use crate::handler::describe_configs::{RESOURCE_BROKER, RESOURCE_TOPIC};
use crate::handler::test_support;

fn op(name: &'static str, operation: i8, value: Option<&'static str>) -> AlterableConfig {
    AlterableConfig::default()
        .with_name(StrBytes::from_static_str(name))
        .with_config_operation(operation)
        .with_value(value.map(StrBytes::from_static_str))
}

fn request(resource_type: i8, name: &str, ops: Vec<AlterableConfig>) -> IncrementalAlterConfigsRequest {
    IncrementalAlterConfigsRequest::default().with_resources(vec![AlterConfigsResource::default()
        .with_resource_type(resource_type)
        .with_resource_name(StrBytes::from_string(name.to_owned()))
        .with_configs(ops)])
}

async fn config(ctx: &Context, topic: &str) -> TopicConfig {
    ctx.storage.describe_topic(topic).await.unwrap().unwrap().config
}

#[tokio::test]
async fn set_and_delete_change_only_the_named_keys() {
    let t = test_support::context().await;
    let ctx = &t.ctx;
    let initial =
        TopicConfig::from_entries([("retention.ms", Some("1000")), ("retention.bytes", Some("10"))]).unwrap();
    ctx.storage.create_topic("t", 1, initial, false).await.unwrap();
    let ops = vec![
        op("segment.bytes", OP_SET, Some("2097152")),
        op("retention.bytes", OP_DELETE, None),
    ];
    let resp = handle(ctx, 1, request(RESOURCE_TOPIC, "t", ops)).await;
    assert_eq!(
        (
            resp.responses[0].error_code,
            resp.responses[0].error_message.as_ref()
        ),
        (0, None)
    );
    let c = config(ctx, "t").await;
    assert_eq!(
        (c.retention_ms, c.retention_bytes, c.segment_bytes),
        (1000, -1, 2_097_152)
    );
    for v in 0..=1 {
        resp.encode(&mut BytesMut::new(), v).unwrap();
    }
}

#[tokio::test]
async fn append_and_subtract_apply_to_list_configs_only() {
    let t = test_support::context().await;
    let ctx = &t.ctx;
    ctx.storage
        .create_topic("t", 1, TopicConfig::default(), false)
        .await
        .unwrap();
    // Appending an item already present leaves a valid list.
    let resp = handle(
        ctx,
        1,
        request(
            RESOURCE_TOPIC,
            "t",
            vec![op("cleanup.policy", OP_APPEND, Some("delete"))],
        ),
    )
    .await;
    assert_eq!(resp.responses[0].error_code, 0, "{resp:?}");

    let cases = [
        (op("cleanup.policy", OP_APPEND, Some("compact")), "cleanup.policy"),
        (
            op("cleanup.policy", OP_SUBTRACT, Some("delete")),
            "cleanup.policy",
        ),
        (
            op("retention.ms", OP_APPEND, Some("5")),
            "Can't APPEND to key retention.ms",
        ),
        (
            op("retention.ms", OP_SUBTRACT, Some("5")),
            "because its type is not LIST",
        ),
        (op("no.such.config", OP_APPEND, Some("5")), "no.such.config"),
    ];
    for (o, fragment) in cases {
        let resp = handle(ctx, 1, request(RESOURCE_TOPIC, "t", vec![o])).await;
        let r = &resp.responses[0];
        assert_eq!(
            r.error_code,
            ResponseError::InvalidConfig.code(),
            "{fragment}: {r:?}"
        );
        assert!(
            r.error_message.as_deref().unwrap_or_default().contains(fragment),
            "{r:?}"
        );
    }
    assert_eq!(config(ctx, "t").await, TopicConfig::default());
}

#[tokio::test]
async fn refusals_and_validate_only_leave_the_config_alone() {
    let t = test_support::context().await;
    let ctx = &t.ctx;
    ctx.storage
        .create_topic("t", 1, TopicConfig::default(), false)
        .await
        .unwrap();
    let dry =
        request(RESOURCE_TOPIC, "t", vec![op("retention.ms", OP_SET, Some("1"))]).with_validate_only(true);
    assert_eq!(handle(ctx, 1, dry).await.responses[0].error_code, 0);

    let cases = [
        (
            request(RESOURCE_TOPIC, "t", vec![op("retention.ms", 9, Some("1"))]),
            ResponseError::InvalidRequest,
        ),
        (
            request(RESOURCE_TOPIC, "t", vec![op("retention.ms", OP_SET, None)]),
            ResponseError::InvalidRequest,
        ),
        (
            request(
                RESOURCE_TOPIC,
                "t",
                vec![
                    op("retention.ms", OP_SET, Some("1")),
                    op("retention.ms", OP_DELETE, None),
                ],
            ),
            ResponseError::InvalidRequest,
        ),
        // A valid op before an invalid one is not applied either.
        (
            request(
                RESOURCE_TOPIC,
                "t",
                vec![
                    op("retention.ms", OP_SET, Some("1")),
                    op("segment.bytes", OP_SET, Some("1")),
                ],
            ),
            ResponseError::InvalidConfig,
        ),
        (
            request(RESOURCE_TOPIC, "missing", vec![]),
            ResponseError::UnknownTopicOrPartition,
        ),
        // Kafka's controller validates the changes before it looks the topic up.
        (
            request(
                RESOURCE_TOPIC,
                "missing",
                vec![op("compression.type", OP_SET, Some("zstd"))],
            ),
            ResponseError::UnknownTopicOrPartition,
        ),
        (
            request(
                RESOURCE_TOPIC,
                "missing",
                vec![op("retention.ms", OP_SET, Some("x"))],
            ),
            ResponseError::InvalidConfig,
        ),
        (
            request(
                RESOURCE_TOPIC,
                "t",
                vec![
                    op("min.compaction.lag.ms", OP_SET, Some("10")),
                    op("max.compaction.lag.ms", OP_SET, Some("5")),
                ],
            ),
            ResponseError::InvalidConfig,
        ),
        (
            request(
                RESOURCE_BROKER,
                "1",
                vec![op("log.retention.ms", OP_SET, Some("1"))],
            ),
            ResponseError::InvalidRequest,
        ),
    ];
    for (req, error) in cases {
        let resp = handle(ctx, 1, req).await;
        assert_eq!(resp.responses[0].error_code, error.code(), "{resp:?}");
        assert!(resp.responses[0].error_message.is_some());
    }
    assert_eq!(config(ctx, "t").await, TopicConfig::default());
}

/// 100,000 resources naming two topics, and one resource repeating a config key 100,000 times:
/// refused as duplicates in one pass, not pairwise.
#[tokio::test]
async fn huge_requests_of_duplicates_are_refused_in_linear_time() {
    let t = test_support::context().await;
    let ctx = &t.ctx;
    let started = std::time::Instant::now();
    let resources = (0..100_000)
        .map(|i| {
            AlterConfigsResource::default()
                .with_resource_type(RESOURCE_TOPIC)
                .with_resource_name(StrBytes::from_static_str(if i % 2 == 0 { "a" } else { "b" }))
        })
        .collect();
    let resp = handle(
        ctx,
        1,
        IncrementalAlterConfigsRequest::default().with_resources(resources),
    )
    .await;
    assert_eq!(resp.responses.len(), 100_000);
    assert!(resp
        .responses
        .iter()
        .all(|r| r.error_code == ResponseError::InvalidRequest.code()));
    ctx.storage
        .create_topic("t", 1, TopicConfig::default(), false)
        .await
        .unwrap();
    let ops = vec![op("retention.ms", OP_SET, Some("1000")); 100_000];
    let resp = handle(ctx, 1, request(RESOURCE_TOPIC, "t", ops)).await;
    let r = &resp.responses[0];
    assert_eq!(r.error_code, ResponseError::InvalidRequest.code(), "{r:?}");
    let elapsed = started.elapsed();
    assert!(elapsed < std::time::Duration::from_secs(10), "took {elapsed:?}");
}
