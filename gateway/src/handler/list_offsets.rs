//! ListOffsets: earliest, latest, by timestamp and max timestamp. v0 (clients older than Kafka
//! 0.10.1) answers the offset in its list form (`old_style_offsets`). Every row of a partition
//! named more than once gets INVALID_REQUEST, as Kafka answers (`duplicatePartitions`).

use std::collections::HashSet;
use std::sync::Arc;

use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};
use kafka_protocol::ResponseError;

use super::Context;
use crate::storage::{OffsetSpec, TopicPartition};

/// Kafka's special timestamps (ListOffsetsRequest).
const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL: i64 = -4;
const LATEST_TIERED: i64 = -5;

pub(super) async fn handle(ctx: &Context, version: i16, req: ListOffsetsRequest) -> ListOffsetsResponse {
    let repeated: HashSet<(String, i32)> = super::dedup::repeated(req.topics.iter().flat_map(|t| {
        t.partitions
            .iter()
            .map(|p| (t.name.0.to_string(), p.partition_index))
    }));
    let mut topics = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let meta = ctx.storage.describe_topic(&t.name.0).await;
        let mut partitions = Vec::with_capacity(t.partitions.len());
        for p in t.partitions {
            let base = ListOffsetsPartitionResponse::default()
                .with_partition_index(p.partition_index)
                .with_timestamp(-1)
                .with_offset(-1)
                // The leader epoch field exists from v4; older versions must leave the default.
                .with_leader_epoch(if version >= 4 { 0 } else { -1 });
            if !repeated.is_empty() && repeated.contains(&(t.name.0.to_string(), p.partition_index)) {
                partitions.push(base.with_error_code(ResponseError::InvalidRequest.code()));
                continue;
            }
            let meta = match &meta {
                Ok(Some(m)) if p.partition_index >= 0 && p.partition_index < m.partitions => m,
                Ok(_) => {
                    partitions.push(base.with_error_code(ResponseError::UnknownTopicOrPartition.code()));
                    continue;
                }
                Err(e) => {
                    partitions.push(base.with_error_code(e.response_error().code()));
                    continue;
                }
            };
            let spec = match p.timestamp {
                LATEST => OffsetSpec::Latest,
                EARLIEST | EARLIEST_LOCAL => OffsetSpec::Earliest,
                MAX_TIMESTAMP => OffsetSpec::MaxTimestamp,
                // No tiered storage: there is no tiered offset to report.
                LATEST_TIERED => {
                    partitions.push(base);
                    continue;
                }
                ts if ts >= 0 => OffsetSpec::Timestamp(ts),
                _ => {
                    partitions.push(base.with_error_code(ResponseError::InvalidRequest.code()));
                    continue;
                }
            };
            let tp = TopicPartition {
                topic: Arc::clone(&meta.name),
                partition: p.partition_index,
            };
            let entry = match ctx.storage.list_offset(&tp, spec).await {
                // v0 answers a list of offsets (Kafka 3.9 lists at most max_num_offsets): the
                // one found, or none.
                Ok(found) if version == 0 => base.with_old_style_offsets(
                    found
                        .filter(|_| p.max_num_offsets > 0)
                        .map(|f| f.offset)
                        .into_iter()
                        .collect(),
                ),
                Ok(Some(found)) => base.with_offset(found.offset).with_timestamp(found.timestamp),
                Ok(None) => base,
                Err(e) => base.with_error_code(e.response_error().code()),
            };
            partitions.push(entry);
        }
        topics.push(
            ListOffsetsTopicResponse::default()
                .with_name(t.name)
                .with_partitions(partitions),
        );
    }
    ListOffsetsResponse::default().with_topics(topics)
}
