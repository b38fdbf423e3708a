//! OffsetDelete (v0): removes committed offsets of partitions a group no longer consumes.
//!
//! Partitions of unknown topics get UNKNOWN_TOPIC_OR_PARTITION (as in Kafka, where they are
//! filtered out before the coordinator); the coordinator answers GROUP_SUBSCRIBED_TO_TOPIC for
//! topics a live consumer group still subscribes to.

use std::collections::HashMap;

use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::{OffsetDeleteRequest, OffsetDeleteResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use tracing::debug;

use super::Context;
use crate::storage::TopicPartition;

pub(super) async fn handle(ctx: &Context, _version: i16, req: OffsetDeleteRequest) -> OffsetDeleteResponse {
    let group_id = req.group_id.0.to_string();
    if group_id.is_empty() {
        return OffsetDeleteResponse::default().with_error_code(ResponseError::InvalidGroupId.code());
    }
    let mut outcome: Vec<(TopicPartition, Option<ResponseError>)> = Vec::new();
    let mut to_delete = Vec::new();
    for topic in req.topics {
        let name = topic.name.0.to_string();
        let exists = matches!(ctx.storage.describe_topic(&name).await, Ok(Some(_)));
        for p in topic.partitions {
            let tp = TopicPartition::new(name.as_str(), p.partition_index);
            if exists {
                to_delete.push(tp.clone());
                outcome.push((tp, None));
            } else {
                outcome.push((tp, Some(ResponseError::UnknownTopicOrPartition)));
            }
        }
    }
    let mut deleted: HashMap<TopicPartition, Option<ResponseError>> = HashMap::new();
    // Called even with nothing to delete, so an unknown group is reported as in Kafka.
    match ctx.groups.delete_offsets(&group_id, to_delete).await {
        Ok(results) => deleted.extend(results),
        Err(e) => {
            debug!(group = %group_id, error = ?e, "offset delete refused");
            return OffsetDeleteResponse::default().with_error_code(e.code());
        }
    }
    let mut topics: Vec<OffsetDeleteResponseTopic> = Vec::new();
    for (tp, early) in outcome {
        let error = early.or_else(|| deleted.get(&tp).copied().flatten());
        let partition = OffsetDeleteResponsePartition::default()
            .with_partition_index(tp.partition)
            .with_error_code(error.map_or(0, |e| e.code()));
        match topics.last_mut() {
            Some(t) if *t.name.0 == *tp.topic => t.partitions.push(partition),
            _ => topics.push(
                OffsetDeleteResponseTopic::default()
                    .with_name(TopicName(StrBytes::from_string(tp.topic.to_string())))
                    .with_partitions(vec![partition]),
            ),
        }
    }
    debug!(group = %group_id, partitions = topics.iter().map(|t| t.partitions.len()).sum::<usize>(), "offsets deleted");
    OffsetDeleteResponse::default().with_topics(topics)
}
