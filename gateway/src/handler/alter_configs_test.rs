use bytes::BytesMut;
use kafka_protocol::messages::alter_configs_request::{AlterConfigsResource, AlterableConfig};
use kafka_protocol::protocol::{Encodable, StrBytes};

use super::*;
use crate::handler::test_support;

fn resource(
    resource_type: i8,
    name: &str,
    configs: &[(&'static str, Option<&'static str>)],
) -> AlterConfigsResource {
    AlterConfigsResource::default()
        .with_resource_type(resource_type)
        .with_resource_name(StrBytes::from_string(name.to_owned()))
        .with_configs(
            configs
                .iter()
                .map(|(k, v)| {
                    AlterableConfig::default()
                        .with_name(StrBytes::from_static_str(k))
                        .with_value(v.map(StrBytes::from_static_str))
                })
                .collect(),
        )
}

fn request(resources: Vec<AlterConfigsResource>) -> AlterConfigsRequest {
    AlterConfigsRequest::default().with_resources(resources)
}

async fn config(ctx: &Context, topic: &str) -> TopicConfig {
    ctx.storage.describe_topic(topic).await.unwrap().unwrap().config
}

#[tokio::test]
async fn replaces_the_whole_topic_config() {
    let t = test_support::context().await;
    let ctx = &t.ctx;
    let initial = TopicConfig::from_entries([("retention.ms", Some("1000"))]).unwrap();
    ctx.storage.create_topic("t", 1, initial, false).await.unwrap();
    let resp = handle(
        ctx,
        2,
        request(vec![resource(
            RESOURCE_TOPIC,
            "t",
            &[("retention.bytes", Some("4096"))],
        )]),
    )
    .await;
    assert_eq!(
        (
            resp.responses[0].error_code,
            resp.responses[0].error_message.as_ref()
        ),
        (0, None)
    );
    let expected = TopicConfig::from_entries([("retention.bytes", Some("4096"))]).unwrap();
    assert_eq!(
        config(ctx, "t").await,
        expected,
        "retention.ms returns to its default"
    );
    for v in 0..=2 {
        resp.encode(&mut BytesMut::new(), v).unwrap();
    }
}

#[tokio::test]
async fn validate_only_and_refusals_leave_the_config_alone() {
    let t = test_support::context().await;
    let ctx = &t.ctx;
    ctx.storage
        .create_topic("t", 1, TopicConfig::default(), false)
        .await
        .unwrap();
    let dry = request(vec![resource(
        RESOURCE_TOPIC,
        "t",
        &[("retention.ms", Some("1"))],
    )])
    .with_validate_only(true);
    assert_eq!(handle(ctx, 2, dry).await.responses[0].error_code, 0);

    let cases: Vec<(AlterConfigsResource, ResponseError, &str)> = vec![
        (
            resource(RESOURCE_TOPIC, "t", &[("retention.ms", Some("x"))]),
            ResponseError::InvalidConfig,
            "retention.ms",
        ),
        (
            resource(RESOURCE_TOPIC, "t", &[("preallocate", Some("maybe"))]),
            ResponseError::InvalidConfig,
            "preallocate",
        ),
        (
            resource(RESOURCE_TOPIC, "t", &[("no.such.key", Some("1"))]),
            ResponseError::InvalidConfig,
            "Unknown topic config name: no.such.key",
        ),
        // A valid change of a missing topic: the topic is unknown (Kafka checks the config
        // first, then the topic).
        (
            resource(RESOURCE_TOPIC, "missing", &[("compression.type", Some("zstd"))]),
            ResponseError::UnknownTopicOrPartition,
            "missing",
        ),
        (
            resource(RESOURCE_TOPIC, "t", &[("retention.ms", None)]),
            ResponseError::InvalidConfig,
            "null",
        ),
        (
            resource(
                RESOURCE_TOPIC,
                "t",
                &[("retention.ms", Some("1")), ("retention.ms", Some("2"))],
            ),
            ResponseError::InvalidRequest,
            "more than once",
        ),
        (
            resource(RESOURCE_TOPIC, "missing", &[]),
            ResponseError::UnknownTopicOrPartition,
            "missing",
        ),
        (
            resource(RESOURCE_BROKER, "1", &[("num.partitions", Some("3"))]),
            ResponseError::InvalidRequest,
            "broker",
        ),
        (
            resource(16, "x", &[]),
            ResponseError::InvalidRequest,
            "resource type 16",
        ),
    ];
    for (res, error, fragment) in cases {
        let resp = handle(ctx, 2, request(vec![res])).await;
        let r = &resp.responses[0];
        assert_eq!(r.error_code, error.code(), "{fragment}: {r:?}");
        assert!(
            r.error_message.as_deref().unwrap_or_default().contains(fragment),
            "{r:?}"
        );
    }
    assert_eq!(config(ctx, "t").await, TopicConfig::default());
}

#[tokio::test]
async fn a_resource_listed_twice_is_refused() {
    let t = test_support::context().await;
    let ctx = &t.ctx;
    ctx.storage
        .create_topic("t", 1, TopicConfig::default(), false)
        .await
        .unwrap();
    let one = || resource(RESOURCE_TOPIC, "t", &[("retention.ms", Some("1"))]);
    let resp = handle(ctx, 2, request(vec![one(), one()])).await;
    assert!(resp
        .responses
        .iter()
        .all(|r| r.error_code == ResponseError::InvalidRequest.code()));
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
        .map(|i| resource(RESOURCE_TOPIC, if i % 2 == 0 { "a" } else { "b" }, &[]))
        .collect();
    let resp = handle(ctx, 2, request(resources)).await;
    assert_eq!(resp.responses.len(), 100_000);
    assert!(resp
        .responses
        .iter()
        .all(|r| r.error_code == ResponseError::InvalidRequest.code()));
    ctx.storage
        .create_topic("t", 1, TopicConfig::default(), false)
        .await
        .unwrap();
    let keys = vec![("retention.ms", Some("1000")); 100_000];
    let resp = handle(ctx, 2, request(vec![resource(RESOURCE_TOPIC, "t", &keys)])).await;
    let r = &resp.responses[0];
    assert_eq!(r.error_code, ResponseError::InvalidRequest.code(), "{r:?}");
    let elapsed = started.elapsed();
    assert!(elapsed < std::time::Duration::from_secs(10), "took {elapsed:?}");
}
