//! Produce: up-convert message format v0/v1 (Produce v0-2), validate each v2 batch, append it as received (recompressed when the topic's
//! `compression.type` names another codec), answer with the assigned offsets.
//!
//! Requests of one connection append in request order ([`super::produce_order`]): under the
//! connection's turn a request only hands its batches to storage
//! ([`Storage::start_append`](crate::storage::Storage::start_append)), which fixes their order.
//! It awaits the appends, and for acks=all their durability, after the turn passed on, so
//! pipelined requests overlap their backend round trips and share one group-committed flush.
//! The request's bytes leave the connection's window ([`super::window`]) at the same point.
//! Partitions of one request are appended concurrently. acks=0 requests get no response frame.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use futures::future::join_all;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use tracing::debug;

use super::window::Held;
use super::{Client, Context};
use crate::cluster::view::partition_leader;
use crate::records::legacy::{magic_of, up_convert};
use crate::records::recompress::to_topic_codec;
use crate::records::validate::{validate_records, TimestampBounds};
use crate::records::{split_and_validate, BatchError};
use crate::storage::config::TimestampType;
use crate::storage::{AppendOutcome, PendingAppend, StorageError, TopicMeta, TopicPartition};

/// One partition's work, detached from the request so the record bytes can be owned uniquely.
struct Item {
    topic_index: usize,
    partition: i32,
    records: Option<Bytes>,
}

pub(super) async fn handle(
    ctx: &Context,
    client: &Client,
    held: &Held,
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
    let invalid_acks = !matches!(acks, -1..=1);
    ticket.turn().await;
    // Under the turn, each partition's batches are only handed to storage (their order is then
    // fixed); the answers are awaited after the turn passes to the next request.
    let started = join_all(items.into_iter().map(|item| {
        let meta = topics[item.topic_index].2.clone();
        async move {
            let started = if invalid_acks {
                Err((ResponseError::InvalidRequiredAcks, None))
            } else if transactional {
                Err((
                    ResponseError::TransactionalIdAuthorizationFailed,
                    Some("transactions are not supported".into()),
                ))
            } else {
                match meta {
                    Ok(meta) => start_partition(ctx, &meta, version, item.partition, item.records).await,
                    Err(e) => Err((e, None)),
                }
            };
            (item.topic_index, item.partition, started)
        }
    }))
    .await;
    drop(ticket);
    // The batches are with storage now; awaiting their answers holds none of the request's bytes.
    held.release();
    let results: Vec<(usize, i32, Result<AppendOutcome, PartitionError>)> =
        join_all(started.into_iter().map(|(ti, partition, started)| async move {
            let outcome = match started {
                Ok(started) => finish_partition(ctx, started, acks == -1).await,
                Err(e) => Err(e),
            };
            (ti, partition, outcome)
        }))
        .await;
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

/// A partition's batches, handed to storage in order and not yet answered.
struct Started {
    tp: TopicPartition,
    /// Each batch's pending append and its offset count.
    appends: Vec<(PendingAppend, i64)>,
    bytes: usize,
    records: i64,
}

/// Validates a partition's batches and starts appending them, in order.
async fn start_partition(
    ctx: &Context,
    meta: &TopicMeta,
    version: i16,
    partition: i32,
    records: Option<Bytes>,
) -> Result<Started, PartitionError> {
    if partition < 0 || partition >= meta.partitions {
        return Err((ResponseError::UnknownTopicOrPartition, None));
    }
    // One writer per partition, the leader Metadata names: SeaweedMQ numbers the messages of
    // all publishers in arrival order, so two gateways writing a partition at once would split
    // each other's batches across offsets. A client with stale Metadata refreshes and retries,
    // as with Kafka.
    let ids: Vec<i32> = ctx.brokers().iter().map(|b| b.node_id).collect();
    if let Some(leader) = partition_leader(&meta.name, partition, &ids) {
        if leader != ctx.broker.node_id {
            return Err((
                ResponseError::NotLeaderOrFollower,
                Some(format!("partition {partition} is led by broker {leader}")),
            ));
        }
    }
    let records = records
        .filter(|r| !r.is_empty())
        .ok_or((ResponseError::InvalidRecord, None))?;
    let bytes = records.len();
    // Produce v0-2 may carry message format v0/v1: up-converted to one v2 batch first, then
    // checked like any produced batch.
    let records = if version <= 2 && magic_of(&records).is_some_and(|m| m < 2) {
        up_convert(records, meta.config.compression_type).map_err(|e| {
            debug!(topic = %meta.name, partition, kind = e.kind(), error = %e, "rejecting message set");
            (e.response_error(), Some(e.to_string()))
        })?
    } else {
        records
    };
    // Batches stay views of the received frame: storage rewrites only their headers.
    let batches = split_and_validate(records).map_err(|e| {
        debug!(topic = %meta.name, partition, error = %e, "rejecting record batch");
        let code = match e {
            BatchError::Magic(_) => ResponseError::UnsupportedForMessageFormat,
            BatchError::OffsetRange(_) => ResponseError::InvalidRecord,
            _ => ResponseError::CorruptMessage,
        };
        (code, Some(e.to_string()))
    })?;
    validate_batches(meta, partition, &batches)?;
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
    let mut appends = Vec::with_capacity(batches.len());
    let mut records = 0i64;
    for (header, batch) in batches {
        records += i64::from(header.record_count);
        let batch = to_topic_codec(batch, meta.config.compression_type).map_err(|e| {
            debug!(topic = %meta.name, partition, kind = e.kind(), error = %e, "cannot recompress batch");
            (e.response_error(), Some(e.to_string()))
        })?;
        let pending = ctx
            .storage
            .start_append(&tp, batch)
            .await
            .map_err(storage_error)?;
        appends.push((pending, header.offset_count()));
    }
    Ok(Started {
        tp,
        appends,
        bytes,
        records,
    })
}

/// Checks the records inside each batch (Kafka's `LogValidator`): structure, offset deltas and
/// CreateTime timestamps. A batch over `max.message.bytes` is refused first, as Kafka does before
/// validating, so an oversized batch costs no walk or decompression.
fn validate_batches(
    meta: &TopicMeta,
    partition: i32,
    batches: &[(crate::records::BatchHeader, Bytes)],
) -> Result<(), PartitionError> {
    let config = &meta.config;
    let max = usize::try_from(config.max_message_bytes).unwrap_or(0);
    let timestamps = match config.message_timestamp_type {
        TimestampType::CreateTime => Some(TimestampBounds {
            now_ms: now_ms(),
            before_max_ms: config.message_timestamp_before_max_ms,
            after_max_ms: config.message_timestamp_after_max_ms,
        }),
        TimestampType::LogAppendTime => None,
    };
    for (header, batch) in batches {
        if batch.len() > max {
            return Err(storage_error(StorageError::BatchTooLarge {
                size: batch.len(),
                max,
            }));
        }
        validate_records(header, batch, timestamps).map_err(|e| {
            debug!(topic = %meta.name, partition, kind = e.kind(), error = %e, "rejecting record batch");
            (e.response_error(), Some(e.to_string()))
        })?;
    }
    Ok(())
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Awaits a partition's appends (and, for acks=all, their durability); the answer is the first
/// batch's outcome.
async fn finish_partition(
    ctx: &Context,
    started: Started,
    durable: bool,
) -> Result<AppendOutcome, PartitionError> {
    let mut first: Option<AppendOutcome> = None;
    let mut end_offset = 0;
    for (pending, offset_count) in started.appends {
        let outcome = pending.await.map_err(storage_error)?;
        end_offset = outcome.base_offset + offset_count;
        first.get_or_insert(outcome);
    }
    let outcome = first.ok_or((ResponseError::InvalidRecord, None))?;
    let label = ctx.metrics.topic_label(&started.tp.topic);
    ctx.metrics
        .bytes_in
        .with_label_values(&[label])
        .inc_by(started.bytes as u64);
    ctx.metrics
        .produce_records
        .with_label_values(&[label])
        .inc_by(started.records as u64);
    if durable {
        ctx.storage
            .wait_durable(&started.tp, end_offset)
            .await
            .map_err(storage_error)?;
    }
    Ok(outcome)
}

fn storage_error(e: StorageError) -> PartitionError {
    let code = e.response_error();
    (code, Some(e.to_string()))
}
