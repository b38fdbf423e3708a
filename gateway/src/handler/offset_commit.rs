//! OffsetCommit (v2-9): retention time v2-4, leader epoch v6+, group instance id v7+.
//!
//! As in Kafka, partitions of unknown topics (or beyond a topic's partition count) are answered
//! with UNKNOWN_TOPIC_OR_PARTITION and never reach the coordinator; the rest are committed (or
//! refused together with the coordinator's group-level error).

use std::collections::HashMap;

use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::{OffsetCommitRequest, OffsetCommitResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use tracing::debug;

use super::Context;
use crate::group::{CommitRequest, OffsetCommit};
use crate::storage::TopicPartition;

/// A leader epoch of -1 means "unknown" on the wire.
const NO_LEADER_EPOCH: i32 = -1;

pub(super) async fn handle(ctx: &Context, version: i16, req: OffsetCommitRequest) -> OffsetCommitResponse {
    let group_id = req.group_id.0.to_string();
    // Per (topic, partition) in request order: an early error, or `None` to be committed.
    let mut outcome: Vec<(TopicPartition, Option<ResponseError>)> = Vec::new();
    let mut offsets = Vec::new();
    let mut partition_counts: HashMap<String, Option<i32>> = HashMap::new();
    for topic in req.topics {
        let name = topic.name.0.to_string();
        if !partition_counts.contains_key(&name) {
            let count = match ctx.storage.lookup_topic(&name).await {
                Ok(meta) => meta.map(|m| m.partitions),
                Err(e) => {
                    debug!(topic = %name, error = %e, "offset commit could not describe topic");
                    None
                }
            };
            partition_counts.insert(name.clone(), count);
        }
        let count = partition_counts[&name];
        for p in topic.partitions {
            let tp = TopicPartition::new(name.as_str(), p.partition_index);
            let known = count.is_some_and(|n| (0..n).contains(&p.partition_index));
            if group_id.is_empty() {
                outcome.push((tp, Some(ResponseError::InvalidGroupId)));
            } else if !known {
                outcome.push((tp, Some(ResponseError::UnknownTopicOrPartition)));
            } else {
                let epoch = if version >= 6 {
                    p.committed_leader_epoch
                } else {
                    NO_LEADER_EPOCH
                };
                offsets.push(OffsetCommit {
                    tp: tp.clone(),
                    offset: p.committed_offset,
                    leader_epoch: (epoch >= 0).then_some(epoch),
                    metadata: p.committed_metadata.map(|m| m.to_string()).unwrap_or_default(),
                });
                outcome.push((tp, None));
            }
        }
    }
    let mut committed: HashMap<TopicPartition, Option<ResponseError>> = HashMap::new();
    if !offsets.is_empty() {
        let commit = CommitRequest {
            member_id: req.member_id.to_string(),
            instance_id: (version >= 7)
                .then(|| req.group_instance_id.map(|i| i.to_string()))
                .flatten(),
            generation_id: req.generation_id_or_member_epoch,
            retention_ms: (version <= 4).then_some(req.retention_time_ms),
            offsets,
        };
        let member = commit.member_id.clone();
        let tps: Vec<TopicPartition> = commit.offsets.iter().map(|o| o.tp.clone()).collect();
        match ctx.groups.commit_offsets(&group_id, commit).await {
            Ok(results) => committed.extend(results),
            Err(e) => {
                debug!(group = %group_id, member = %member, error = ?e, "offset commit refused");
                committed.extend(tps.into_iter().map(|tp| (tp, Some(e))));
            }
        }
    }
    let mut topics: Vec<OffsetCommitResponseTopic> = Vec::new();
    for (tp, early) in outcome {
        let error = early.or_else(|| committed.get(&tp).copied().flatten());
        let partition = OffsetCommitResponsePartition::default()
            .with_partition_index(tp.partition)
            .with_error_code(error.map_or(0, |e| e.code()));
        match topics.last_mut() {
            Some(t) if *t.name.0 == *tp.topic => t.partitions.push(partition),
            _ => topics.push(
                OffsetCommitResponseTopic::default()
                    .with_name(TopicName(StrBytes::from_string(tp.topic.to_string())))
                    .with_partitions(vec![partition]),
            ),
        }
    }
    OffsetCommitResponse::default().with_topics(topics)
}
