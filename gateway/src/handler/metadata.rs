//! Metadata: brokers, topics with ids, partition leaders; auto-creation of unknown topics.
//! A topic named (or identified) more than once is answered once, as Kafka answers the set of
//! requested topics.
//!
//! The controller is a broker of the same answer's list, this node whenever it is listed: any
//! member serves admin requests, so a client never waits on a dead raft leader
//! ([`crate::cluster::view::controller_for`]).

use std::collections::HashSet;

use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use tracing::{debug, warn};

use super::{authorized_ops, Context};
use crate::cluster::view::partition_leader;
use crate::storage::{TopicConfig, TopicMeta};

/// Answers with the brokers' addresses on `listener`, the one the client connected to.
pub(super) async fn handle(
    ctx: &Context,
    listener: &str,
    version: i16,
    req: MetadataRequest,
) -> MetadataResponse {
    let brokers = ctx.brokers_on(listener);
    let ids: Vec<i32> = brokers.iter().map(|b| b.node_id).collect();
    let controller = ctx.controller_id(&brokers);
    let mut resp = MetadataResponse::default()
        .with_brokers(
            brokers
                .into_iter()
                .map(|b| {
                    MetadataResponseBroker::default()
                        .with_node_id(BrokerId(b.node_id))
                        .with_host(StrBytes::from_string(b.host))
                        .with_port(b.port)
                        .with_rack(b.rack.map(StrBytes::from_string))
                })
                .collect(),
        )
        .with_cluster_id(Some(StrBytes::from_string(ctx.cluster_id())))
        .with_controller_id(BrokerId(controller))
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
                resp.topics = topics.iter().map(|t| topic_entry(&ids, t, topic_ops)).collect();
            }
            Err(e) => warn!(error = %e, "listing topics failed"),
        }
        return resp;
    }
    // Auto-creation: the request flag exists from v4; older versions always allow it.
    let allow_create = ctx.options.auto_create_topics && (version < 4 || req.allow_auto_topic_creation);
    let mut seen_names = HashSet::new();
    let mut seen_ids = HashSet::new();
    for t in req.topics.unwrap_or_default() {
        let first = match &t.name {
            Some(name) => seen_names.insert(name.0.clone()),
            None => seen_ids.insert(t.topic_id),
        };
        if !first {
            continue;
        }
        let entry = match t.name {
            Some(name) => by_name(ctx, &ids, name.0.as_str(), allow_create, topic_ops).await,
            None => by_id(ctx, &ids, t.topic_id, topic_ops).await,
        };
        resp.topics.push(entry);
    }
    resp
}

async fn by_name(
    ctx: &Context,
    ids: &[i32],
    name: &str,
    allow_create: bool,
    ops: i32,
) -> MetadataResponseTopic {
    let error = |e: ResponseError| {
        MetadataResponseTopic::default()
            .with_name(Some(TopicName(StrBytes::from_string(name.to_owned()))))
            .with_error_code(e.code())
            .with_topic_authorized_operations(authorized_ops::OMITTED)
    };
    match ctx.storage.describe_topic(name).await {
        Ok(Some(meta)) => topic_entry(ids, &meta, ops),
        Ok(None) if allow_create => {
            let created = match auto_create(ctx, name).await {
                Ok(created) => created,
                Err((e, reason)) => {
                    debug!(topic = name, error = ?e, %reason, "auto-create refused");
                    return error(e);
                }
            };
            match created {
                Ok(meta) => {
                    debug!(topic = name, partitions = meta.partitions, "auto-created topic");
                    topic_entry(ids, &meta, ops)
                }
                // A concurrent request created it first.
                Err(e) if e.response_error() == ResponseError::TopicAlreadyExists => {
                    match ctx.storage.describe_topic(name).await {
                        Ok(Some(meta)) => topic_entry(ids, &meta, ops),
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

/// Creates `name` with the default partitions within the resource caps; the outer error is a
/// refusal by the caps.
async fn auto_create(
    ctx: &Context,
    name: &str,
) -> Result<crate::storage::Result<TopicMeta>, super::caps::Failure> {
    let mut creation = ctx.caps.begin(ctx).await?;
    let partitions = ctx.options.default_partitions;
    creation.admit(1, usize::try_from(partitions).unwrap_or(usize::MAX))?;
    let created = ctx
        .storage
        .create_topic(name, partitions, TopicConfig::default(), false)
        .await;
    if let Ok(meta) = &created {
        creation.created(1, usize::try_from(meta.partitions).unwrap_or(0));
    }
    Ok(created)
}

async fn by_id(ctx: &Context, ids: &[i32], id: uuid::Uuid, ops: i32) -> MetadataResponseTopic {
    match super::topic_by_id(ctx, id).await {
        Some(meta) => topic_entry(ids, &meta, ops),
        None => MetadataResponseTopic::default()
            .with_topic_id(id)
            .with_error_code(ResponseError::UnknownTopicId.code())
            .with_topic_authorized_operations(authorized_ops::OMITTED),
    }
}

/// A topic with its partition leaders spread over `ids`; every broker serves every partition,
/// so each partition lists all brokers as replicas and in-sync replicas.
fn topic_entry(ids: &[i32], meta: &TopicMeta, ops: i32) -> MetadataResponseTopic {
    let replicas: Vec<BrokerId> = ids.iter().copied().map(BrokerId).collect();
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(StrBytes::from_string(meta.name.to_string()))))
        .with_topic_id(meta.id)
        .with_topic_authorized_operations(ops)
        .with_partitions(
            (0..meta.partitions)
                .map(|p| {
                    let leader = partition_leader(&meta.name, p, ids).unwrap_or(-1);
                    MetadataResponsePartition::default()
                        .with_partition_index(p)
                        .with_leader_id(BrokerId(leader))
                        .with_leader_epoch(0)
                        .with_replica_nodes(replicas.clone())
                        .with_isr_nodes(replicas.clone())
                })
                .collect(),
        )
}
