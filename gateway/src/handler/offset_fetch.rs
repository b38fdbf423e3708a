//! OffsetFetch: one group (v1-7; `topics` null means every committed partition from v2) or many
//! groups (v8+).
//!
//! A partition without a commit answers offset -1, metadata "" and no error, as in Kafka.
//! `require_stable` (v7+) needs no handling: without transactions no commit is ever pending. The
//! member id and epoch of v9 only concern KIP-848 consumer groups; classic groups ignore them.

use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{OffsetFetchRequest, OffsetFetchResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::Context;
use crate::group::CommittedOffset;
use crate::storage::TopicPartition;

/// "No committed offset" and "unknown leader epoch" on the wire.
const NO_OFFSET: i64 = -1;
const NO_LEADER_EPOCH: i32 = -1;

/// One partition's answer, independent of the response version.
struct PartitionAnswer {
    partition: i32,
    offset: i64,
    leader_epoch: i32,
    metadata: String,
    error: Option<ResponseError>,
}

/// One group's answer: a group-level error, or partitions grouped by topic.
struct GroupAnswer {
    error: Option<ResponseError>,
    topics: Vec<(String, Vec<PartitionAnswer>)>,
}

/// Looks up the committed offsets of `topics` (each with its partitions), or of every partition
/// with a commit when `None`.
async fn fetch_group(ctx: &Context, group_id: &str, topics: Option<Vec<(String, Vec<i32>)>>) -> GroupAnswer {
    if group_id.is_empty() {
        return failed(topics, ResponseError::InvalidGroupId);
    }
    let requested_topics = topics.clone();
    let requested: Option<Vec<TopicPartition>> = topics.map(|ts| {
        ts.into_iter()
            .flat_map(|(name, parts)| {
                let name: std::sync::Arc<str> = name.into();
                parts
                    .into_iter()
                    .map(move |p| TopicPartition::new(name.clone(), p))
            })
            .collect()
    });
    let mut found = match ctx.groups.fetch_offsets(group_id, requested.as_deref()).await {
        Ok(found) => found,
        Err(e) => return failed(requested_topics, e),
    };
    if requested.is_none() {
        found.sort_by(|a, b| a.0.cmp(&b.0));
    }
    let mut topics: Vec<(String, Vec<PartitionAnswer>)> = Vec::new();
    for (tp, committed) in found {
        let a = answer(tp.partition, committed, None);
        match topics.last_mut() {
            Some((name, parts)) if **name == *tp.topic => parts.push(a),
            _ => topics.push((tp.topic.to_string(), vec![a])),
        }
    }
    GroupAnswer { error: None, topics }
}

/// A group-level failure; requested partitions still get entries, so v1 (no group-level
/// error) can carry it.
fn failed(topics: Option<Vec<(String, Vec<i32>)>>, error: ResponseError) -> GroupAnswer {
    let topics = topics
        .unwrap_or_default()
        .into_iter()
        .map(|(name, parts)| {
            (
                name,
                parts.into_iter().map(|p| answer(p, None, Some(error))).collect(),
            )
        })
        .collect();
    GroupAnswer {
        error: Some(error),
        topics,
    }
}

fn answer(
    partition: i32,
    committed: Option<CommittedOffset>,
    error: Option<ResponseError>,
) -> PartitionAnswer {
    match committed {
        Some(c) => PartitionAnswer {
            partition,
            offset: c.offset,
            leader_epoch: c.leader_epoch.unwrap_or(NO_LEADER_EPOCH),
            metadata: c.metadata,
            error,
        },
        None => PartitionAnswer {
            partition,
            offset: NO_OFFSET,
            leader_epoch: NO_LEADER_EPOCH,
            metadata: String::new(),
            error,
        },
    }
}

pub(super) async fn handle(ctx: &Context, version: i16, req: OffsetFetchRequest) -> OffsetFetchResponse {
    let text = |s: String| StrBytes::from_string(s);
    // The leader epoch exists from v5; below it the field keeps its default.
    let epoch = |e: i32| if version >= 5 { e } else { NO_LEADER_EPOCH };
    if version >= 8 {
        let mut answers = Vec::with_capacity(req.groups.len());
        for g in req.groups {
            let topics = g.topics.map(|ts| {
                ts.into_iter()
                    .map(|t| (t.name.0.to_string(), t.partition_indexes))
                    .collect()
            });
            let a = fetch_group(ctx, &g.group_id.0, topics).await;
            answers.push((g.group_id, a));
        }
        let groups = answers
            .into_iter()
            .map(|(group_id, a)| {
                let topics = a
                    .topics
                    .into_iter()
                    .map(|(name, parts)| {
                        OffsetFetchResponseTopics::default()
                            .with_name(TopicName(text(name)))
                            .with_partitions(
                                parts
                                    .into_iter()
                                    .map(|p| {
                                        OffsetFetchResponsePartitions::default()
                                            .with_partition_index(p.partition)
                                            .with_committed_offset(p.offset)
                                            .with_committed_leader_epoch(p.leader_epoch)
                                            .with_metadata(Some(text(p.metadata)))
                                            .with_error_code(p.error.map_or(0, |e| e.code()))
                                    })
                                    .collect(),
                            )
                    })
                    .collect();
                OffsetFetchResponseGroup::default()
                    .with_group_id(group_id)
                    .with_error_code(a.error.map_or(0, |e| e.code()))
                    .with_topics(topics)
            })
            .collect();
        return OffsetFetchResponse::default().with_groups(groups);
    }
    let topics = req.topics.map(|ts| {
        ts.into_iter()
            .map(|t| (t.name.0.to_string(), t.partition_indexes))
            .collect()
    });
    let a = fetch_group(ctx, &req.group_id.0, topics).await;
    let topics = a
        .topics
        .into_iter()
        .map(|(name, parts)| {
            OffsetFetchResponseTopic::default()
                .with_name(TopicName(text(name)))
                .with_partitions(
                    parts
                        .into_iter()
                        .map(|p| {
                            OffsetFetchResponsePartition::default()
                                .with_partition_index(p.partition)
                                .with_committed_offset(p.offset)
                                .with_committed_leader_epoch(epoch(p.leader_epoch))
                                .with_metadata(Some(text(p.metadata)))
                                .with_error_code(p.error.map_or(0, |e| e.code()))
                        })
                        .collect(),
                )
        })
        .collect();
    // v1 has no group-level error code: it is carried by the partitions.
    let top = if version >= 2 {
        a.error.map_or(0, |e| e.code())
    } else {
        0
    };
    OffsetFetchResponse::default()
        .with_topics(topics)
        .with_error_code(top)
}
