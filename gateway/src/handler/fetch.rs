//! Fetch: stored batches returned as bytes, with long-poll on per-partition notifications.
//!
//! The handler subscribes to every requested partition's high-watermark watch *before* reading,
//! so an append landing between the read and the wait still wakes it. It waits until `min_bytes`
//! are available or `max_wait_ms` (at most [`MAX_WAIT`]) passes; there is no sleep loop, and
//! nothing read is held while it waits. Fetch sessions (KIP-227) are not kept: responses carry
//! session id 0, which tells clients to keep sending full fetch requests.
//! Fetch v0-3 (clients older than Kafka 0.11) get the stored batches down-converted to message
//! format v0/v1 by the record layer ([`crate::records::legacy`]).
//!
//! Hostile requests cost no more than honest ones: a partition named more than once is answered
//! once, with the parameters of its last occurrence (Kafka keys the request by partition), and
//! the partitions are read in rounds whose read limits together fit what is left of the
//! response limit, so a request naming many partitions reads no more than its response holds
//! (plus, per partition, the one batch KIP-74 lets through when it alone exceeds its share).
//! Partitions left once the response is full are not read: they carry their offsets only.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::{join_all, select_all};
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{BrokerId, FetchRequest, FetchResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::warn;

use super::Context;
use crate::records::{iter_headers, legacy};
use crate::storage::{Offset, OffsetSpec, ReadOutcome, StorageError, TopicPartition};

/// The longest a Fetch waits for `min_bytes`, whatever its `max_wait_ms` (clients use at most
/// a few seconds; a longer wait only holds a request slot).
pub(super) const MAX_WAIT: Duration = Duration::from_secs(30);

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
    let mut wanted: Vec<Wanted> = Vec::new();
    // (topic name, topic id, partition) -> index in `wanted`: one of the two names the topic.
    let mut seen: HashMap<(&str, uuid::Uuid, i32), usize> = HashMap::new();
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
                // Kafka 3.x's `message.downconversion.enable=false`: clients that need message
                // format v0/v1 (Fetch v0-3) are refused rather than served converted data.
                Some(m) if legacy::fetch_magic(version).is_some() && !m.config.allows_down_conversion() => {
                    (None, Some(ResponseError::UnsupportedVersion))
                }
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
            let w = Wanted {
                topic_index,
                tp,
                partition: p.partition,
                offset: p.fetch_offset,
                max_bytes: p.partition_max_bytes.max(0) as usize,
                error,
            };
            match seen.entry((t.topic.0.as_str(), t.topic_id, p.partition)) {
                std::collections::hash_map::Entry::Occupied(first) => {
                    // Answered in the first one's place, with the later one's offset and limit.
                    let first = &mut wanted[*first.get()];
                    first.offset = w.offset;
                    first.max_bytes = w.max_bytes;
                }
                std::collections::hash_map::Entry::Vacant(slot) => {
                    slot.insert(wanted.len());
                    wanted.push(w);
                }
            }
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
    let deadline = Instant::now() + wait_limit(req.max_wait_ms);
    let min_bytes = req.min_bytes.max(0) as usize;
    let max_bytes = (req.max_bytes.max(0) as usize).min(ctx.options.fetch_max_bytes);
    let mut timed_out = false;
    loop {
        let (parts, total, any_error) = read_all(ctx, &wanted, max_bytes).await;
        if timed_out || total >= min_bytes || any_error || watches.is_empty() || Instant::now() >= deadline {
            return build(ctx, topics, &wanted, parts, version, req.isolation_level);
        }
        // A parked long-poll holds no data: what it returns is read again when it wakes.
        drop(parts);
        timed_out = !wait_for_change(&mut watches, deadline).await;
    }
}

/// How long a Fetch may wait for `min_bytes`: its `max_wait_ms`, at most [`MAX_WAIT`].
fn wait_limit(max_wait_ms: i32) -> Duration {
    Duration::from_millis(max_wait_ms.max(0) as u64).min(MAX_WAIT)
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

/// Reads the requested partitions in rounds (on a remote backend each read is a round trip, so
/// a round's reads run at once): each round takes, in request order, the partitions whose read
/// limits together fit what is left of the response limit. The limit is applied in request
/// order as if they had been read one by one: KIP-74 lets the first non-empty partition exceed
/// it by one batch; every later partition keeps only the whole batches that still fit. Once the
/// response is full, the remaining partitions are not read, only located.
async fn read_all(
    ctx: &Context,
    wanted: &[Wanted],
    max_bytes: usize,
) -> (Vec<Option<PartResult>>, usize, bool) {
    let limit = max_bytes.max(1);
    let mut out: Vec<Option<PartResult>> = wanted.iter().map(|_| None).collect();
    let mut total = 0usize;
    let mut next = 0;
    while next < wanted.len() && total < limit {
        let left = limit - total;
        let mut round = Vec::new();
        let mut assigned = 0usize;
        while next < wanted.len() && assigned < left {
            if let Some(tp) = &wanted[next].tp {
                let share = wanted[next].max_bytes.min(left - assigned).max(1);
                assigned += share;
                round.push((next, tp, share));
            }
            next += 1;
        }
        let reads = join_all(
            round
                .iter()
                .map(|&(i, tp, share)| ctx.storage.read(tp, wanted[i].offset, share)),
        )
        .await;
        for ((i, _, _), read) in round.into_iter().zip(reads) {
            out[i] = Some(read.map(|mut outcome| {
                if total > 0 {
                    let keep = whole_batches_within(&outcome.records, max_bytes.saturating_sub(total));
                    outcome.records.truncate(keep);
                }
                total += outcome.records.len();
                outcome
            }));
        }
    }
    let rest = join_all(
        wanted[next..]
            .iter()
            .map(|w| async move { Some(locate(ctx, w.tp.as_ref()?, w.offset).await) }),
    )
    .await;
    for (slot, located) in out[next..].iter_mut().zip(rest) {
        *slot = located;
    }
    let any_error = out.iter().any(|r| !matches!(r, Some(Ok(_))));
    (out, total, any_error)
}

/// A partition's offsets without its data, for partitions past a full response; an offset
/// outside the log is refused as a read would refuse it.
async fn locate(ctx: &Context, tp: &TopicPartition, offset: Offset) -> PartResult {
    let log_start = ctx
        .storage
        .list_offset(tp, OffsetSpec::Earliest)
        .await?
        .map_or(0, |o| o.offset);
    let high_watermark = ctx
        .storage
        .list_offset(tp, OffsetSpec::Latest)
        .await?
        .map_or(0, |o| o.offset);
    if offset < log_start || offset > high_watermark {
        return Err(StorageError::OffsetOutOfRange {
            offset,
            log_start,
            high_watermark,
        });
    }
    Ok(ReadOutcome {
        records: bytes::Bytes::new(),
        high_watermark,
        log_start_offset: log_start,
    })
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
                let base = base
                    .with_high_watermark(o.high_watermark)
                    .with_last_stable_offset(o.high_watermark)
                    .with_log_start_offset(o.log_start_offset);
                // Fetch v0-3 clients read message format v0/v1 only.
                match legacy::fetch_magic(version).map(|m| legacy::down_convert(&o.records, m, w.offset)) {
                    None => base.with_records(Some(o.records)),
                    Some(Ok(set)) => base.with_records(Some(set)),
                    Some(Err(e)) => {
                        warn!(partition = w.partition, offset = w.offset, error = %e, "cannot down-convert stored batches");
                        error_partition(base, ResponseError::CorruptMessage)
                    }
                }
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
    // A topic whose every partition repeated an earlier one has nothing left to answer.
    topics.retain(|t| !t.partitions.is_empty());
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

#[cfg(test)]
#[path = "fetch_test.rs"]
mod tests;
