//! Fetch: stored batches returned as bytes, with long-poll on per-partition notifications.
//!
//! The handler subscribes to every requested partition's high-watermark watch *before* reading,
//! so an append landing between the read and the wait still wakes it. It waits until `min_bytes`
//! are available or `max_wait_ms` passes; there is no sleep loop. Fetch sessions (KIP-227) are not
//! kept: responses carry session id 0, which tells clients to keep sending full fetch requests.

use std::sync::Arc;
use std::time::Duration;

use futures::future::{join_all, select_all};
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{BrokerId, FetchRequest, FetchResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use tokio::sync::watch;
use tokio::time::Instant;

use super::Context;
use crate::records::iter_headers;
use crate::storage::{Offset, StorageError, TopicPartition};

/// One requested partition, resolved.
struct Wanted {
    topic_index: usize,
    tp: Option<TopicPartition>,
    partition: i32,
    offset: Offset,
    max_bytes: usize,
    error: Option<ResponseError>,
}

pub(super) async fn handle(ctx: &Context, version: i16, req: FetchRequest) -> FetchResponse {
    let mut topics = Vec::new();
    let mut wanted = Vec::new();
    for t in &req.topics {
        let meta = if version >= 13 {
            super::topic_by_id(ctx, t.topic_id).await
        } else {
            ctx.storage.lookup_topic(&t.topic.0).await.ok().flatten()
        };
        let missing = if version >= 13 {
            ResponseError::UnknownTopicId
        } else {
            ResponseError::UnknownTopicOrPartition
        };
        let topic_index = topics.len();
        topics.push(
            FetchableTopicResponse::default()
                .with_topic(t.topic.clone())
                .with_topic_id(t.topic_id),
        );
        for p in &t.partitions {
            let (tp, error) = match &meta {
                Some(m) if p.partition >= 0 && p.partition < m.partitions => (
                    Some(TopicPartition {
                        topic: Arc::clone(&m.name),
                        partition: p.partition,
                    }),
                    None,
                ),
                Some(_) => (None, Some(ResponseError::UnknownTopicOrPartition)),
                None => (None, Some(missing)),
            };
            wanted.push(Wanted {
                topic_index,
                tp,
                partition: p.partition,
                offset: p.fetch_offset,
                max_bytes: p.partition_max_bytes.max(0) as usize,
                error,
            });
        }
    }
    let mut watches: Vec<watch::Receiver<Offset>> = wanted
        .iter()
        .filter_map(|w| w.tp.as_ref())
        .filter_map(|tp| ctx.storage.watch_high_watermark(tp).ok())
        .collect();
    for w in &mut watches {
        w.borrow_and_update();
    }
    let deadline = Instant::now() + Duration::from_millis(req.max_wait_ms.max(0) as u64);
    let min_bytes = req.min_bytes.max(0) as usize;
    let max_bytes = (req.max_bytes.max(0) as usize).min(ctx.options.fetch_max_bytes);
    loop {
        let (parts, total, any_error) = read_all(ctx, &wanted, max_bytes).await;
        let done = total >= min_bytes || any_error || watches.is_empty() || Instant::now() >= deadline;
        if done || !wait_for_change(&mut watches, deadline).await {
            return build(ctx, topics, &wanted, parts, version, req.isolation_level);
        }
    }
}

/// Waits until any watched high watermark moves or the deadline passes. Returns false on timeout.
async fn wait_for_change(watches: &mut [watch::Receiver<Offset>], deadline: Instant) -> bool {
    let changed = select_all(watches.iter_mut().map(|w| Box::pin(w.changed())));
    matches!(
        tokio::time::timeout_at(deadline, changed).await,
        Ok((Ok(()), _, _))
    )
}

type PartResult = Result<crate::storage::ReadOutcome, StorageError>;

/// Reads every requested partition at once (on a remote backend each read is a round trip),
/// then applies the response limit in request order as if they had been read one by one:
/// KIP-74 lets the first non-empty partition exceed it by one batch; every later partition keeps
/// only the whole batches that still fit.
async fn read_all(
    ctx: &Context,
    wanted: &[Wanted],
    max_bytes: usize,
) -> (Vec<Option<PartResult>>, usize, bool) {
    let limit = max_bytes.max(1);
    let reads = join_all(wanted.iter().map(|w| async move {
        let tp = w.tp.as_ref()?;
        Some(
            ctx.storage
                .read(tp, w.offset, w.max_bytes.min(limit).max(1))
                .await,
        )
    }))
    .await;
    let mut total = 0usize;
    let mut any_error = false;
    let out = reads
        .into_iter()
        .map(|r| {
            let mut outcome = match r {
                None => {
                    any_error = true;
                    return None;
                }
                Some(Err(e)) => {
                    any_error = true;
                    return Some(Err(e));
                }
                Some(Ok(o)) => o,
            };
            if total > 0 {
                let keep = whole_batches_within(&outcome.records, max_bytes.saturating_sub(total));
                outcome.records.truncate(keep);
            }
            total += outcome.records.len();
            Some(Ok(outcome))
        })
        .collect();
    (out, total, any_error)
}

/// The length of the longest prefix of `records` made of whole batches and at most `limit` long.
fn whole_batches_within(records: &[u8], limit: usize) -> usize {
    let mut end = 0;
    for item in iter_headers(records) {
        let Ok((header, pos)) = item else { break };
        let next = pos + header.total_len();
        if next > limit {
            break;
        }
        end = next;
    }
    end
}

fn build(
    ctx: &Context,
    mut topics: Vec<FetchableTopicResponse>,
    wanted: &[Wanted],
    parts: Vec<Option<PartResult>>,
    version: i16,
    isolation_level: i8,
) -> FetchResponse {
    for (w, part) in wanted.iter().zip(parts) {
        let base = PartitionData::default()
            .with_partition_index(w.partition)
            .with_preferred_read_replica(BrokerId(-1))
            .with_aborted_transactions((isolation_level == 1).then(Vec::new));
        let p = match (w.error, part) {
            (Some(e), _) => error_partition(base, e),
            (None, None) => error_partition(base, ResponseError::UnknownServerError),
            (None, Some(Ok(o))) => {
                if let Some(tp) = &w.tp {
                    let label = ctx.metrics.topic_label(&tp.topic);
                    ctx.metrics
                        .bytes_out
                        .with_label_values(&[label])
                        .inc_by(o.records.len() as u64);
                    let n: i64 = iter_headers(&o.records)
                        .filter_map(Result::ok)
                        .map(|(h, _)| i64::from(h.record_count))
                        .sum();
                    ctx.metrics
                        .fetch_records
                        .with_label_values(&[label])
                        .inc_by(n as u64);
                }
                base.with_high_watermark(o.high_watermark)
                    .with_last_stable_offset(o.high_watermark)
                    .with_log_start_offset(o.log_start_offset)
                    .with_records(Some(o.records))
            }
            (None, Some(Err(e))) => {
                let (hw, ls) = match &e {
                    StorageError::OffsetOutOfRange {
                        log_start,
                        high_watermark,
                        ..
                    } => (*high_watermark, *log_start),
                    _ => (-1, -1),
                };
                base.with_error_code(e.response_error().code())
                    .with_high_watermark(hw)
                    .with_last_stable_offset(hw)
                    .with_log_start_offset(ls)
                    .with_records(Some(bytes::Bytes::new()))
            }
        };
        topics[w.topic_index].partitions.push(p);
    }
    if version >= 13 {
        for t in &mut topics {
            t.topic = TopicName(StrBytes::default());
        }
    }
    FetchResponse::default().with_responses(topics).with_session_id(0)
}

fn error_partition(base: PartitionData, e: ResponseError) -> PartitionData {
    base.with_error_code(e.code())
        .with_high_watermark(-1)
        .with_last_stable_offset(-1)
        .with_log_start_offset(-1)
        .with_records(Some(bytes::Bytes::new()))
}
