use bytes::BytesMut;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::DescribeConfigsRequest;
use kafka_protocol::protocol::{Encodable, StrBytes};
use kafka_protocol::ResponseError;

use super::*;
use crate::handler::test_support;

fn resource(resource_type: i8, name: &str, keys: Option<&[&'static str]>) -> DescribeConfigsResource {
    DescribeConfigsResource::default()
        .with_resource_type(resource_type)
        .with_resource_name(StrBytes::from_string(name.to_owned()))
        .with_configuration_keys(keys.map(|k| k.iter().map(|k| StrBytes::from_static_str(k)).collect()))
}

fn find<'a>(result: &'a DescribeConfigsResult, name: &str) -> &'a DescribeConfigsResourceResult {
    result
        .configs
        .iter()
        .find(|c| c.name.as_str() == name)
        .unwrap_or_else(|| panic!("{name} missing"))
}

#[tokio::test]
async fn topic_configs_report_overrides_defaults_and_synonyms() {
    let t = test_support::context().await;
    let ctx = &t.ctx;
    let config = TopicConfig::from_entries([("retention.ms", Some("5000"))]).unwrap();
    ctx.storage.create_topic("t", 1, config, false).await.unwrap();
    let req = DescribeConfigsRequest::default()
        .with_resources(vec![resource(RESOURCE_TOPIC, "t", None)])
        .with_include_synonyms(true)
        .with_include_documentation(true);
    let resp = handle(ctx, 4, req).await;
    let r = &resp.results[0];
    assert_eq!((r.error_code, r.error_message.as_ref()), (0, None), "{r:?}");
    assert_eq!(r.configs.len(), TopicConfig::default().entries().len());

    let retention = find(r, "retention.ms");
    assert_eq!(retention.value.as_deref(), Some("5000"));
    assert_eq!(
        (
            retention.config_source,
            retention.read_only,
            retention.config_type
        ),
        (SOURCE_DYNAMIC_TOPIC, false, 5)
    );
    let sources: Vec<(i8, Option<&str>)> = retention
        .synonyms
        .iter()
        .map(|s| (s.source, s.value.as_deref()))
        .collect();
    assert_eq!(
        sources,
        vec![
            (SOURCE_DYNAMIC_TOPIC, Some("5000")),
            (SOURCE_DEFAULT, Some("604800000"))
        ]
    );
    assert!(retention.documentation.is_some());

    let segment = find(r, "segment.bytes");
    assert_eq!(segment.config_source, SOURCE_DEFAULT);
    assert_eq!(segment.synonyms.len(), 1);
    let compression = find(r, "compression.type");
    assert!(
        !compression.read_only,
        "compression.type is a writable topic config, as in Kafka"
    );
    assert_eq!(compression.value.as_deref(), Some("producer"));
    for v in 1..=4 {
        resp.encode(&mut BytesMut::new(), v).unwrap();
    }
}

#[tokio::test]
async fn keys_filter_and_include_flags_apply() {
    let t = test_support::context().await;
    let ctx = &t.ctx;
    ctx.storage
        .create_topic("t", 1, TopicConfig::default(), false)
        .await
        .unwrap();
    let keys: &[&'static str] = &["max.message.bytes", "no.such.key"];
    let req =
        DescribeConfigsRequest::default().with_resources(vec![resource(RESOURCE_TOPIC, "t", Some(keys))]);
    let resp = handle(ctx, 4, req).await;
    let configs = &resp.results[0].configs;
    assert_eq!(configs.len(), 1, "{configs:?}");
    assert_eq!(configs[0].name.as_str(), "max.message.bytes");
    assert!(configs[0].synonyms.is_empty() && configs[0].documentation.is_none());
}

#[tokio::test]
async fn broker_resource_reports_read_only_settings() {
    let t = test_support::context().await;
    let ctx = &t.ctx;
    let id = ctx.broker.node_id.to_string();
    let req = DescribeConfigsRequest::default()
        .with_resources(vec![
            resource(RESOURCE_BROKER, &id, None),
            resource(RESOURCE_BROKER, "", None),
            resource(RESOURCE_BROKER, "12345", None),
        ])
        .with_include_synonyms(true);
    let resp = handle(ctx, 4, req).await;
    for r in &resp.results[..2] {
        assert_eq!(r.error_code, 0, "{r:?}");
        assert!(r.configs.iter().all(|c| c.read_only), "{r:?}");
        let partitions = find(r, "num.partitions");
        assert_eq!(
            partitions.value.as_deref(),
            Some(ctx.options.default_partitions.to_string().as_str())
        );
        assert_eq!(partitions.config_source, 4);
        assert_eq!(find(r, "node.id").value.as_deref(), Some(id.as_str()));
        assert_eq!(find(r, "default.replication.factor").value.as_deref(), Some("1"));
    }
    assert_eq!(resp.results[2].error_code, ResponseError::InvalidRequest.code());
    for v in 1..=4 {
        resp.encode(&mut BytesMut::new(), v).unwrap();
    }
}

#[tokio::test]
async fn unknown_topics_and_resource_types_are_errors() {
    let t = test_support::context().await;
    let req = DescribeConfigsRequest::default().with_resources(vec![
        resource(RESOURCE_TOPIC, "missing", None),
        resource(8, "root", None),
    ]);
    let resp = handle(&t.ctx, 4, req).await;
    let r = &resp.results;
    assert_eq!(r[0].error_code, ResponseError::UnknownTopicOrPartition.code());
    assert!(r[0]
        .error_message
        .as_deref()
        .unwrap_or_default()
        .contains("missing"));
    assert!(r[0].configs.is_empty());
    assert_eq!(r[1].error_code, ResponseError::InvalidRequest.code());
    assert_eq!((r[1].resource_type, r[1].resource_name.as_str()), (8, "root"));
}
