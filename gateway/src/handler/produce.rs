//! Produce: validate each v2 batch, append it as received, answer with the assigned offsets.
//!
//! Requests of one connection append in request order ([`super::produce_order`]). Partitions of
//! one request are appended concurrently, and acks=all waits for durability after the
//! connection's turn is released, so pipelined requests and partitions share one group-committed
//! flush. acks=0 requests get no response frame.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use futures::future::join_all;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use tracing::debug;

use super::{Client, Context};
use crate::records::{split_and_validate, BatchError};
use crate::storage::{AppendOutcome, Durability, Offset, StorageError, TopicMeta, TopicPartition};

/// One partition's work, detached from the request so the record bytes can be owned uniquely.
struct Item {
    topic_index: usize,
    partition: i32,
    records: Option<Bytes>,
}

pub(super) async fn handle(
    ctx: &Context,
    client: &Client,
    version: i16,
    req: ProduceRequest,
) -> Option<ProduceResponse> {
    // Taken before the first await, so in the order the connection sent the requests.
    let mut ticket = client.produce_order.ticket();
    let acks = req.acks;
    let mut topics: Vec<(TopicName, uuid::Uuid, Result<TopicMeta, ResponseError>)> = Vec::new();
    let mut items = Vec::new();
    let mut resolved: HashMap<String, Result<TopicMeta, ResponseError>> = HashMap::new();
    for t in req.topic_data {
        let meta = if version >= 13 {
            super::topic_by_id(ctx, t.topic_id)
                .await
                .ok_or(ResponseError::UnknownTopicId)
        } else {
            let name = t.name.0.to_string();
            match resolved.get(&name) {
                Some(r) => r.clone(),
                None => {
                    let r = lookup(ctx, &name).await;
                    resolved.insert(name, r.clone());
                    r
                }
            }
        };
        let topic_index = topics.len();
        topics.push((
            TopicName(StrBytes::from_string(t.name.0.to_string())),
            t.topic_id,
            meta,
        ));
        for p in t.partition_data {
            items.push(Item {
                topic_index,
                partition: p.index,
                records: p.records,
            });
        }
    }
    let transactional = req.transactional_id.is_some();
    let invalid_acks = !matches!(acks, -1 | 0 | 1);
    ticket.turn().await;
    let appended = join_all(items.into_iter().map(|item| {
        let meta = topics[item.topic_index].2.clone();
        async move {
            let outcome = if invalid_acks {
                Err((ResponseError::InvalidRequiredAcks, None))
            } else if transactional {
                Err((
                    ResponseError::TransactionalIdAuthorizationFailed,
                    Some("transactions are not supported".into()),
                ))
            } else {
                match meta {
                    Ok(meta) => append_partition(ctx, &meta, item.partition, item.records).await,
                    Err(e) => Err((e, None)),
                }
            };
            (item.topic_index, item.partition, outcome)
        }
    }))
    .await;
    drop(ticket);
    let results: Vec<(usize, i32, Result<AppendOutcome, PartitionError>)> = if acks == -1 {
        join_all(appended.into_iter().map(|(ti, partition, outcome)| async move {
            let outcome = match outcome {
                Ok(a) => ctx
                    .storage
                    .wait_durable(&a.tp, a.end_offset)
                    .await
                    .map(|()| a.outcome)
                    .map_err(storage_error),
                Err(e) => Err(e),
            };
            (ti, partition, outcome)
        }))
        .await
    } else {
        appended
            .into_iter()
            .map(|(ti, p, o)| (ti, p, o.map(|a| a.outcome)))
            .collect()
    };
    if acks == 0 {
        return None;
    }
    let mut responses: Vec<TopicProduceResponse> = topics
        .into_iter()
        .map(|(name, id, _)| TopicProduceResponse::default().with_name(name).with_topic_id(id))
        .collect();
    for (ti, partition, outcome) in results {
        let p = match outcome {
            Ok(o) => PartitionProduceResponse::default()
                .with_index(partition)
                .with_base_offset(o.base_offset)
                .with_log_append_time_ms(o.log_append_time_ms)
                .with_log_start_offset(o.log_start_offset),
            Err((e, msg)) => PartitionProduceResponse::default()
                .with_index(partition)
                .with_error_code(e.code())
                .with_base_offset(-1)
                .with_log_append_time_ms(-1)
                .with_log_start_offset(-1)
                .with_error_message(msg.map(StrBytes::from_string)),
        };
        responses[ti].partition_responses.push(p);
    }
    Some(ProduceResponse::default().with_responses(responses))
}

async fn lookup(ctx: &Context, name: &str) -> Result<TopicMeta, ResponseError> {
    match ctx.storage.lookup_topic(name).await {
        Ok(Some(meta)) => Ok(meta),
        Ok(None) => Err(ResponseError::UnknownTopicOrPartition),
        Err(e) => Err(e.response_error()),
    }
}

type PartitionError = (ResponseError, Option<String>);

/// A partition's appended batches: the first batch's outcome (the answer) and the end offset
/// of the last (what acks=all waits for).
struct Appended {
    outcome: AppendOutcome,
    tp: TopicPartition,
    end_offset: Offset,
}

/// Appends a partition's batches in order with [`Durability::Accepted`].
async fn append_partition(
    ctx: &Context,
    meta: &TopicMeta,
    partition: i32,
    records: Option<Bytes>,
) -> Result<Appended, PartitionError> {
    if partition < 0 || partition >= meta.partitions {
        return Err((ResponseError::UnknownTopicOrPartition, None));
    }
    let records = records
        .filter(|r| !r.is_empty())
        .ok_or((ResponseError::InvalidRecord, None))?;
    let size = records.len();
    // Batches stay views of the received frame: storage rewrites only their headers.
    let batches = split_and_validate(records).map_err(|e| {
        debug!(topic = %meta.name, partition, error = %e, "rejecting record batch");
        let code = match e {
            BatchError::Magic(_) => ResponseError::UnsupportedForMessageFormat,
            _ => ResponseError::CorruptMessage,
        };
        (code, Some(e.to_string()))
    })?;
    if batches
        .iter()
        .any(|(h, _)| h.is_transactional() || h.is_control())
    {
        return Err((
            ResponseError::TransactionalIdAuthorizationFailed,
            Some("transactions are not supported".into()),
        ));
    }
    let tp = TopicPartition {
        topic: Arc::clone(&meta.name),
        partition,
    };
    let mut first: Option<AppendOutcome> = None;
    let mut end_offset = 0;
    let mut records_count = 0i64;
    for (header, batch) in batches {
        records_count += i64::from(header.record_count);
        let outcome = ctx
            .storage
            .append(&tp, batch, Durability::Accepted)
            .await
            .map_err(storage_error)?;
        end_offset = outcome.base_offset + header.offset_count();
        first.get_or_insert(outcome);
    }
    let label = ctx.metrics.topic_label(&meta.name);
    ctx.metrics
        .bytes_in
        .with_label_values(&[label])
        .inc_by(size as u64);
    ctx.metrics
        .produce_records
        .with_label_values(&[label])
        .inc_by(records_count as u64);
    let outcome = first.ok_or((ResponseError::InvalidRecord, None))?;
    Ok(Appended {
        outcome,
        tp,
        end_offset,
    })
}

fn storage_error(e: StorageError) -> PartitionError {
    let code = e.response_error();
    (code, Some(e.to_string()))
}
