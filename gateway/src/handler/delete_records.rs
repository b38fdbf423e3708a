//! DeleteRecords: moves a partition's log start forward (`-1` = up to the high watermark).

use std::sync::Arc;

use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};
use kafka_protocol::ResponseError;
use tracing::{debug, info};

use super::Context;
use crate::storage::{OffsetSpec, StorageError, TopicPartition};

/// The offset meaning "everything up to the high watermark".
const HIGH_WATERMARK: i64 = -1;

pub(super) async fn handle(ctx: &Context, _version: i16, req: DeleteRecordsRequest) -> DeleteRecordsResponse {
    let mut topics = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let meta = ctx.storage.describe_topic(&t.name.0).await;
        let mut partitions = Vec::with_capacity(t.partitions.len());
        for p in t.partitions {
            let base = DeleteRecordsPartitionResult::default().with_partition_index(p.partition_index);
            let result = match &meta {
                Ok(Some(m)) if p.partition_index >= 0 && p.partition_index < m.partitions => {
                    let tp = TopicPartition {
                        topic: Arc::clone(&m.name),
                        partition: p.partition_index,
                    };
                    delete(ctx, &tp, p.offset).await
                }
                Ok(_) => Err(ResponseError::UnknownTopicOrPartition),
                Err(e) => Err(e.response_error()),
            };
            partitions.push(match result {
                Ok(low_watermark) => base.with_low_watermark(low_watermark).with_error_code(0),
                Err(error) => base.with_low_watermark(-1).with_error_code(error.code()),
            });
        }
        topics.push(
            DeleteRecordsTopicResult::default()
                .with_name(t.name)
                .with_partitions(partitions),
        );
    }
    DeleteRecordsResponse::default().with_topics(topics)
}

/// Deletes records below `offset` and returns the new low watermark. An offset below the current
/// log start changes nothing; one beyond the high watermark is out of range.
async fn delete(ctx: &Context, tp: &TopicPartition, offset: i64) -> Result<i64, ResponseError> {
    if offset < 0 && offset != HIGH_WATERMARK {
        return Err(ResponseError::OffsetOutOfRange);
    }
    let high_watermark = ctx
        .storage
        .list_offset(tp, OffsetSpec::Latest)
        .await
        .map_err(|e| e.response_error())?
        .map_or(0, |o| o.offset);
    if offset > high_watermark {
        debug!(%tp, offset, high_watermark, "delete records beyond the high watermark");
        return Err(ResponseError::OffsetOutOfRange);
    }
    match ctx.storage.delete_records(tp, offset).await {
        Ok(low_watermark) => {
            info!(%tp, offset, low_watermark, "deleted records");
            Ok(low_watermark)
        }
        Err(e @ StorageError::OffsetOutOfRange { .. }) => {
            debug!(%tp, error = %e, "delete records out of range");
            Err(ResponseError::OffsetOutOfRange)
        }
        Err(e) => Err(e.response_error()),
    }
}

#[cfg(test)]
#[path = "delete_records_test.rs"]
mod tests;
