//! OffsetCommit (v2-9): retention time v2-4, leader epoch v6+, group instance id v7+.
//!
//! As in Kafka, partitions of unknown topics (or beyond a topic's partition count) are answered
//! with UNKNOWN_TOPIC_OR_PARTITION and never reach the coordinator; the rest are committed (or
//! refused together with the coordinator's group-level error). A partition named twice is
//! answered twice, in request order, and keeps its last valid offset (Kafka writes one record
//! per entry and replays them in order; the coordinator writes only the last). Linear in the
//! request size: one topic lookup per distinct topic, index-addressed results.

use std::collections::HashMap;

use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::{OffsetCommitRequest, OffsetCommitResponse, TopicName};
use kafka_protocol::ResponseError;
use tracing::debug;

use super::Context;
use crate::group::{CommitRequest, OffsetCommit};
use crate::storage::TopicPartition;

/// A leader epoch of -1 means "unknown" on the wire.
const NO_LEADER_EPOCH: i32 = -1;

/// One partition entry of the request: its index and either an early error or the position of
/// its commit in the coordinator request.
type Entry = (i32, Result<usize, ResponseError>);

pub(super) async fn handle(ctx: &Context, version: i16, req: OffsetCommitRequest) -> OffsetCommitResponse {
    let group_id = req.group_id.0.to_string();
    // Per request topic and entry, in request order: an early error, or the index of its commit.
    let mut outcome: Vec<(TopicName, Vec<Entry>)> = Vec::new();
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
        let mut entries = Vec::with_capacity(topic.partitions.len());
        for p in topic.partitions {
            let known = count.is_some_and(|n| (0..n).contains(&p.partition_index));
            let entry = if group_id.is_empty() {
                Err(ResponseError::InvalidGroupId)
            } else if !known {
                Err(ResponseError::UnknownTopicOrPartition)
            } else {
                let epoch = if version >= 6 {
                    p.committed_leader_epoch
                } else {
                    NO_LEADER_EPOCH
                };
                offsets.push(OffsetCommit {
                    tp: TopicPartition::new(name.as_str(), p.partition_index),
                    offset: p.committed_offset,
                    leader_epoch: (epoch >= 0).then_some(epoch),
                    metadata: p.committed_metadata.map(|m| m.to_string()).unwrap_or_default(),
                });
                Ok(offsets.len() - 1)
            };
            entries.push((p.partition_index, entry));
        }
        outcome.push((topic.name, entries));
    }
    // One result per commit entry, in order (duplicates included).
    let committed: Vec<Option<ResponseError>> = if offsets.is_empty() {
        Vec::new()
    } else {
        let n = offsets.len();
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
        match ctx.groups.commit_offsets(&group_id, commit).await {
            Ok(results) if results.len() == n => results.into_iter().map(|(_, e)| e).collect(),
            Ok(results) => {
                tracing::error!(group = %group_id, expected = n, got = results.len(), "offset commit results do not match the request");
                vec![Some(ResponseError::UnknownServerError); n]
            }
            Err(e) => {
                debug!(group = %group_id, member = %member, error = ?e, "offset commit refused");
                vec![Some(e); n]
            }
        }
    };
    // As Kafka answers: one topic per request topic, one partition per request entry.
    let topics = outcome
        .into_iter()
        .map(|(name, entries)| {
            let partitions = entries
                .into_iter()
                .map(|(partition, entry)| {
                    let error = entry.map_or_else(Some, |i| committed[i]);
                    OffsetCommitResponsePartition::default()
                        .with_partition_index(partition)
                        .with_error_code(error.map_or(0, |e| e.code()))
                })
                .collect();
            OffsetCommitResponseTopic::default()
                .with_name(name)
                .with_partitions(partitions)
        })
        .collect();
    OffsetCommitResponse::default().with_topics(topics)
}
