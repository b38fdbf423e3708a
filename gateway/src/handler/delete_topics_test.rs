use bytes::BytesMut;
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::{DeleteTopicsRequest, TopicName};
use kafka_protocol::protocol::{Encodable, StrBytes};
use kafka_protocol::ResponseError;

use super::*;
use crate::handler::test_support;
use crate::storage::TopicConfig;

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_owned()))
}

fn encodes(resp: &DeleteTopicsResponse, version: i16) {
    resp.encode(&mut BytesMut::new(), version)
        .unwrap_or_else(|e| panic!("v{version}: {e}"));
}

#[tokio::test]
async fn deletes_by_name_and_reports_unknown_topics() {
    let t = test_support::context().await;
    let ctx = &t.ctx;
    let meta = ctx
        .storage
        .create_topic("doomed", 2, TopicConfig::default(), false)
        .await
        .unwrap();
    let req = DeleteTopicsRequest::default().with_topic_names(vec![name("doomed"), name("missing")]);
    let resp = handle(ctx, 5, req).await;
    assert_eq!(resp.responses[0].error_code, 0, "{resp:?}");
    assert_eq!(
        resp.responses[0].name.as_ref().map(|n| n.0.as_str()),
        Some("doomed")
    );
    assert_eq!(resp.responses[0].topic_id, meta.id);
    assert_eq!(
        resp.responses[1].error_code,
        ResponseError::UnknownTopicOrPartition.code()
    );
    assert!(ctx.storage.describe_topic("doomed").await.unwrap().is_none());
    for v in 1..=5 {
        encodes(&resp, v);
    }
}

#[tokio::test]
async fn v6_deletes_by_name_or_id() {
    let t = test_support::context().await;
    let ctx = &t.ctx;
    let by_id = ctx
        .storage
        .create_topic("by-id", 1, TopicConfig::default(), false)
        .await
        .unwrap();
    ctx.storage
        .create_topic("by-name", 1, TopicConfig::default(), false)
        .await
        .unwrap();
    let both = ctx
        .storage
        .create_topic("both", 1, TopicConfig::default(), false)
        .await
        .unwrap();
    let unknown_id = uuid::Uuid::new_v4();
    let req = DeleteTopicsRequest::default().with_topics(vec![
        DeleteTopicState::default()
            .with_name(None)
            .with_topic_id(by_id.id),
        DeleteTopicState::default().with_name(Some(name("by-name"))),
        DeleteTopicState::default()
            .with_name(None)
            .with_topic_id(unknown_id),
        DeleteTopicState::default()
            .with_name(Some(name("both")))
            .with_topic_id(both.id),
    ]);
    let resp = handle(ctx, 6, req).await;
    encodes(&resp, 6);
    let r = &resp.responses;
    assert_eq!(r[0].error_code, 0, "{r:?}");
    assert_eq!(r[0].name.as_ref().map(|n| n.0.as_str()), Some("by-id"));
    assert_eq!(r[0].topic_id, by_id.id);
    assert_eq!(r[1].error_code, 0, "{r:?}");
    assert_eq!(r[2].error_code, ResponseError::UnknownTopicId.code());
    assert_eq!((r[2].name.as_ref(), r[2].topic_id), (None, unknown_id));
    assert_eq!(r[3].error_code, ResponseError::InvalidRequest.code());
    let left: Vec<String> = ctx
        .storage
        .list_topics()
        .await
        .unwrap()
        .iter()
        .map(|t| t.name.to_string())
        .collect();
    assert_eq!(left, vec!["both".to_string()]);
}
