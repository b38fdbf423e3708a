//! Metadata: brokers, topics with ids, partition leaders; auto-creation of unknown topics.

use kafka_protocol::messages::metadata_response::{MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use tracing::{debug, warn};

use super::{authorized_ops, Context};
use crate::storage::{TopicConfig, TopicMeta};

pub(super) async fn handle(ctx: &Context, version: i16, req: MetadataRequest) -> MetadataResponse {
    let b = &ctx.broker;
    let mut resp = MetadataResponse::default()
        .with_brokers(vec![MetadataResponseBroker::default()
            .with_node_id(BrokerId(b.node_id))
            .with_host(StrBytes::from_string(b.host.clone()))
            .with_port(b.port)
            .with_rack(b.rack.clone().map(StrBytes::from_string))])
        .with_cluster_id(Some(StrBytes::from_string(b.cluster_id.clone())))
        .with_controller_id(BrokerId(b.node_id))
        // The cluster field is only sent v8-v10; later versions ask DescribeCluster instead.
        .with_cluster_authorized_operations(authorized_ops::cluster(
            (8..=10).contains(&version) && req.include_cluster_authorized_operations,
        ));
    let topic_ops = authorized_ops::topic(version >= 8 && req.include_topic_authorized_operations);
    // v0: an empty list means all topics; v1+: null means all, empty means none.
    let all = match &req.topics {
        None => true,
        Some(t) => t.is_empty() && version == 0,
    };
    if all {
        match ctx.storage.list_topics().await {
            Ok(mut topics) => {
                topics.sort_by(|a, b| a.name.cmp(&b.name));
                resp.topics = topics.iter().map(|t| topic_entry(ctx, t, topic_ops)).collect();
            }
            Err(e) => warn!(error = %e, "listing topics failed"),
        }
        return resp;
    }
    // Auto-creation: the request flag exists from v4; older versions always allow it.
    let allow_create = ctx.options.auto_create_topics && (version < 4 || req.allow_auto_topic_creation);
    for t in req.topics.unwrap_or_default() {
        let entry = match t.name {
            Some(name) => by_name(ctx, name.0.as_str(), allow_create, topic_ops).await,
            None => by_id(ctx, t.topic_id, topic_ops).await,
        };
        resp.topics.push(entry);
    }
    resp
}

async fn by_name(ctx: &Context, name: &str, allow_create: bool, ops: i32) -> MetadataResponseTopic {
    let error = |e: ResponseError| {
        MetadataResponseTopic::default()
            .with_name(Some(TopicName(StrBytes::from_string(name.to_owned()))))
            .with_error_code(e.code())
            .with_topic_authorized_operations(authorized_ops::OMITTED)
    };
    match ctx.storage.describe_topic(name).await {
        Ok(Some(meta)) => topic_entry(ctx, &meta, ops),
        Ok(None) if allow_create => {
            let created = ctx
                .storage
                .create_topic(name, ctx.options.default_partitions, TopicConfig::default(), false)
                .await;
            match created {
                Ok(meta) => {
                    debug!(topic = name, partitions = meta.partitions, "auto-created topic");
                    topic_entry(ctx, &meta, ops)
                }
                // A concurrent request created it first.
                Err(e) if e.response_error() == ResponseError::TopicAlreadyExists => {
                    match ctx.storage.describe_topic(name).await {
                        Ok(Some(meta)) => topic_entry(ctx, &meta, ops),
                        _ => error(ResponseError::LeaderNotAvailable),
                    }
                }
                Err(e) => error(e.response_error()),
            }
        }
        Ok(None) => error(ResponseError::UnknownTopicOrPartition),
        Err(e) => error(e.response_error()),
    }
}

async fn by_id(ctx: &Context, id: uuid::Uuid, ops: i32) -> MetadataResponseTopic {
    match super::topic_by_id(ctx, id).await {
        Some(meta) => topic_entry(ctx, &meta, ops),
        None => MetadataResponseTopic::default()
            .with_topic_id(id)
            .with_error_code(ResponseError::UnknownTopicId.code())
            .with_topic_authorized_operations(authorized_ops::OMITTED),
    }
}

fn topic_entry(ctx: &Context, meta: &TopicMeta, ops: i32) -> MetadataResponseTopic {
    let node = BrokerId(ctx.broker.node_id);
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(StrBytes::from_string(meta.name.to_string()))))
        .with_topic_id(meta.id)
        .with_topic_authorized_operations(ops)
        .with_partitions(
            (0..meta.partitions)
                .map(|p| {
                    MetadataResponsePartition::default()
                        .with_partition_index(p)
                        .with_leader_id(node)
                        .with_leader_epoch(0)
                        .with_replica_nodes(vec![node])
                        .with_isr_nodes(vec![node])
                })
                .collect(),
        )
}
