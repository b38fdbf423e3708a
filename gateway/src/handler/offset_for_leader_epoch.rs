//! OffsetForLeaderEpoch: every partition has had one leader epoch, 0, since its creation, so
//! epoch 0 ends at the high watermark and no newer epoch exists.

use std::sync::Arc;

use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};
use kafka_protocol::ResponseError;

use super::Context;
use crate::storage::{OffsetSpec, TopicPartition};

/// The leader epoch of every partition.
const LEADER_EPOCH: i32 = 0;
/// "No epoch" / "no offset" (Kafka's UNDEFINED_EPOCH and UNDEFINED_EPOCH_OFFSET).
const UNDEFINED: i32 = -1;

pub(super) async fn handle(
    ctx: &Context,
    _version: i16,
    req: OffsetForLeaderEpochRequest,
) -> OffsetForLeaderEpochResponse {
    let mut topics = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let meta = ctx.storage.describe_topic(&t.topic.0).await;
        let mut partitions = Vec::with_capacity(t.partitions.len());
        for p in t.partitions {
            let base = EpochEndOffset::default().with_partition(p.partition);
            let meta = match &meta {
                Ok(Some(m)) if p.partition >= 0 && p.partition < m.partitions => m,
                Ok(_) => {
                    partitions.push(base.with_error_code(ResponseError::UnknownTopicOrPartition.code()));
                    continue;
                }
                Err(e) => {
                    partitions.push(base.with_error_code(e.response_error().code()));
                    continue;
                }
            };
            // The client's view of the leader epoch (-1 = not checked) must not be ahead of ours.
            if p.current_leader_epoch > LEADER_EPOCH {
                partitions.push(base.with_error_code(ResponseError::UnknownLeaderEpoch.code()));
                continue;
            }
            // An epoch newer than ours was never seen: no end offset (as Kafka). An undefined or
            // older one is answered with epoch 0 ending at the high watermark, so a client's
            // position (never beyond it) validates instead of being reset as "diverged".
            if p.leader_epoch > LEADER_EPOCH {
                partitions.push(
                    base.with_leader_epoch(UNDEFINED)
                        .with_end_offset(i64::from(UNDEFINED)),
                );
                continue;
            }
            let tp = TopicPartition {
                topic: Arc::clone(&meta.name),
                partition: p.partition,
            };
            partitions.push(match ctx.storage.list_offset(&tp, OffsetSpec::Latest).await {
                Ok(found) => base
                    .with_leader_epoch(LEADER_EPOCH)
                    .with_end_offset(found.map_or(0, |o| o.offset)),
                Err(e) => base.with_error_code(e.response_error().code()),
            });
        }
        topics.push(
            OffsetForLeaderTopicResult::default()
                .with_topic(t.topic)
                .with_partitions(partitions),
        );
    }
    OffsetForLeaderEpochResponse::default().with_topics(topics)
}

#[cfg(test)]
#[path = "offset_for_leader_epoch_test.rs"]
mod tests;
