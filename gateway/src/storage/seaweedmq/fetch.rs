//! Reading messages by offset: `FetchMessage` on the leader, with a `SubscribeMessage`
//! (`EXACT_OFFSET`) fallback for the broker quirk where a freshly reloaded partition reports
//! nothing below its real high watermark (reference §5.6).
//!
//! Neither RPC returns per-message offsets: message `i` of a read starting at `offset` has
//! offset `offset + i` (SMQ offsets are dense).

use std::time::Duration;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;
use tracing::{debug, warn};

use super::client::{smq_topic, SmqClient};
use super::error::{SmqError, SmqErrorKind, SmqResult};
use super::pb::messaging_pb::subscribe_message_request::{AckMessage, InitMessage, Message as SubRequest};
use super::pb::messaging_pb::subscribe_message_response::Message as SubResponse;
use super::pb::messaging_pb::{DataMessage, FetchMessageRequest, SubscribeMessageRequest};
use super::pb::schema_pb::{OffsetType, PartitionOffset};

/// Largest `max_messages` the broker honours in one `FetchMessage`.
pub const MAX_MESSAGES: i32 = 10_000;
/// Largest `max_bytes` the broker honours in one `FetchMessage`.
pub const MAX_BYTES: i32 = 100 * 1024 * 1024;
/// How long the fallback subscription may take to deliver what range info promised.
const FALLBACK_DEADLINE: Duration = Duration::from_secs(5);

/// Messages read from one offset.
#[derive(Debug, Default)]
pub struct Fetched {
    /// Messages; message `i` has offset `start + i`.
    pub messages: Vec<DataMessage>,
    /// The broker's high watermark (advisory: see the module docs).
    pub high_watermark: i64,
    /// The broker's log start.
    pub log_start: i64,
    /// The offset after the last message as the broker numbers it. When it is not
    /// `start + messages.len()`, the broker served messages from another position (a
    /// restarted broker reads in-memory data for flushed offsets it cannot locate).
    pub next_offset: i64,
}

impl SmqClient {
    /// `FetchMessage` from `offset` of Kafka partition `index`.
    ///
    /// # Errors
    /// [`SmqErrorKind::OffsetOutOfRange`] for offsets below the log start, or other
    /// [`SmqError`]s after retries.
    pub async fn fetch(
        &self,
        name: &str,
        index: i32,
        offset: i64,
        max_bytes: i32,
        max_messages: i32,
    ) -> SmqResult<Fetched> {
        self.on_leader(name, index, |leader, partition| async move {
            let mut c = self.discovery().channels().broker(&leader)?;
            let request = FetchMessageRequest {
                topic: Some(smq_topic(name)),
                partition: Some(partition),
                start_offset: offset,
                max_bytes: max_bytes.clamp(1, MAX_BYTES),
                max_messages: max_messages.clamp(1, MAX_MESSAGES),
                consumer_group: "kafka-gateway".to_string(),
                ..Default::default()
            };
            let r = c
                .fetch_message(request)
                .await
                .map_err(|s| SmqError::rpc("FetchMessage", &leader, s))?
                .into_inner();
            if r.error_code != 0 || !r.error.is_empty() {
                let kind = match r.error_code {
                    0 if r.error.contains("not found") => SmqErrorKind::PartitionNotFound,
                    0 => SmqErrorKind::Other,
                    code => SmqErrorKind::from_fetch_code(code),
                };
                return Err(SmqError::Server {
                    op: "FetchMessage",
                    code: r.error_code,
                    message: r.error,
                    kind,
                });
            }
            let served = i64::try_from(r.messages.len()).unwrap_or(i64::MAX);
            tracing::trace!(
                topic = name,
                partition = index,
                offset,
                served,
                next_offset = r.next_offset,
                "FetchMessage"
            );
            if served > 0 && r.next_offset != offset.saturating_add(served) {
                // A restarted broker that cannot locate flushed offsets serves newer in-memory
                // messages for older offsets. Numbering them from `offset` would misplace them.
                warn!(
                    topic = name,
                    partition = index,
                    offset,
                    served,
                    next_offset = r.next_offset,
                    "FetchMessage served messages from another position; discarding them"
                );
                return Ok(Fetched {
                    messages: Vec::new(),
                    high_watermark: r.high_water_mark,
                    log_start: r.log_start_offset,
                    next_offset: offset,
                });
            }
            Ok(Fetched {
                messages: r.messages,
                high_watermark: r.high_water_mark,
                log_start: r.log_start_offset,
                next_offset: r.next_offset,
            })
        })
        .await
    }

    /// Reads up to `count` messages from `offset` with a short-lived `SubscribeMessage`
    /// (`EXACT_OFFSET`), acknowledging each one. Used when `FetchMessage` returns nothing below
    /// the high watermark.
    ///
    /// # Errors
    /// [`SmqError`] when the subscription fails or delivers nothing before its deadline.
    pub async fn subscribe_read(
        &self,
        name: &str,
        index: i32,
        offset: i64,
        count: usize,
    ) -> SmqResult<Vec<DataMessage>> {
        self.on_leader(name, index, |leader, partition| async move {
            let mut c = self.discovery().channels().broker(&leader)?;
            let (tx, rx) = mpsc::channel::<SubscribeMessageRequest>(count.clamp(1, 1024) + 1);
            let init = SubscribeMessageRequest {
                message: Some(SubRequest::Init(InitMessage {
                    consumer_group: "kafka-gateway-fallback".to_string(),
                    consumer_id: format!("kafka-gateway-{}", uuid::Uuid::new_v4()),
                    client_id: "kafka-gateway".to_string(),
                    topic: Some(smq_topic(name)),
                    partition_offset: Some(PartitionOffset { partition: Some(partition), start_ts_ns: 0, start_offset: offset }),
                    offset_type: OffsetType::ExactOffset as i32,
                    sliding_window_size: i32::try_from(count.clamp(1, 1024)).unwrap_or(1024),
                    ..Default::default()
                })),
            };
            tx.send(init).await.map_err(|_| SmqError::Protocol("subscribe request stream closed".into()))?;
            // The deadline covers the call itself: a broker unloading the partition accepts the
            // subscriber and then never answers, not even with response headers.
            let deadline = tokio::time::Instant::now() + FALLBACK_DEADLINE;
            let mut stream = tokio::time::timeout_at(deadline, c.subscribe_message(ReceiverStream::new(rx)))
                .await
                .map_err(|_| SmqError::Unavailable(format!("partition {name}-{index}: SubscribeMessage on {leader} did not answer")))?
                .map_err(|s| SmqError::rpc("SubscribeMessage", &leader, s))?
                .into_inner();
            let mut out = Vec::new();
            while out.len() < count {
                let next = match tokio::time::timeout_at(deadline, stream.next()).await {
                    Ok(Some(Ok(m))) => m,
                    Ok(Some(Err(s))) => return Err(SmqError::rpc("SubscribeMessage", &leader, s)),
                    Ok(None) | Err(_) => break,
                };
                match next.message {
                    Some(SubResponse::Data(d)) => {
                        let ack = AckMessage { ts_ns: d.ts_ns, key: d.key.clone() };
                        let _ = tx.try_send(SubscribeMessageRequest { message: Some(SubRequest::Ack(ack)) });
                        out.push(d);
                    }
                    Some(SubResponse::Ctrl(ctrl)) if !ctrl.error.is_empty() => {
                        return Err(SmqError::Server { op: "SubscribeMessage", code: 0, message: ctrl.error, kind: SmqErrorKind::Other });
                    }
                    Some(SubResponse::Ctrl(ctrl)) if ctrl.is_end_of_stream || ctrl.is_end_of_topic => break,
                    _ => {}
                }
            }
            drop(tx);
            debug!(topic = name, partition = index, offset, got = out.len(), "fallback subscription read");
            if out.is_empty() {
                return Err(SmqError::Unavailable(format!(
                    "partition {name}-{index}: neither FetchMessage nor SubscribeMessage returned offset {offset}"
                )));
            }
            Ok(out)
        })
        .await
    }
}
