//! Appends: one Kafka record batch becomes one burst of messages on the partition's publish
//! stream.
//!
//! [`Inner::start_append`] does, under the partition's append lock, everything that fixes the
//! batch's place in the partition: the idempotent-producer check, (re)opening the publish stream
//! and handing the messages to it. The stream is FIFO, so a batch handed off later gets higher
//! offsets. The wait for the broker's acks is returned as a separate future: Produce awaits it
//! after releasing its connection's turn, so a pipelining client's next request is handed off
//! while this one's acks are still in flight (one round trip per request otherwise caps a
//! connection at a few dozen requests per second).
//!
//! Without a write-ahead log, idempotent batches are the exception: they wait for their acks
//! under the lock, because the producer table must record each batch's offsets before the next
//! batch is checked. With one, the offsets are known (and the batch kept) before the ack.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use tracing::{debug, error, warn};

use super::batch_codec::decode_validated_batch;
use super::envelope::BatchFields;
use super::partition::{message_of, raw_message_of, rebuild_producers, PartitionState, REBUILD_WINDOW};
use super::pb::messaging_pb::DataMessage;
use super::publish::{Acked, Publisher};
use super::wal_replicate::Replication;
use super::{client, Inner};
use crate::records::BatchHeader;
use crate::storage::producer_state::SequenceCheck;
use crate::storage::{
    AppendOutcome, Durability, Offset, Result, StorageError, TimestampType, TopicPartition, ValueFormat,
};

/// How long an acks=all append waits for the broker to flush and checkpoint it (the usual wait
/// is bounded by the longer of `-logFlushInterval`, 5 s by default, and the ~2 s checkpoint
/// period; see `durability`).
pub(super) const DURABLE_DEADLINE: std::time::Duration = std::time::Duration::from_secs(25);
/// How long an acks=all answer waits for WAL replication before also polling the broker's
/// flush (either answers it).
const REPLICATION_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

/// An appended batch: the answer, and the end offset acks=all waits to be durable.
pub(super) struct Appended {
    pub outcome: AppendOutcome,
    pub end_offset: Offset,
}

/// The wait for a handed-off batch's acks.
pub(super) type Acks = Pin<Box<dyn Future<Output = Result<Appended>> + Send>>;

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn io(e: impl std::fmt::Display) -> StorageError {
    StorageError::Io(std::io::Error::other(e.to_string()))
}

impl Inner {
    /// Appends and waits for `durability`.
    pub(super) async fn append_batch(
        &self,
        tp: &TopicPartition,
        batch: Bytes,
        durability: Durability,
    ) -> Result<AppendOutcome> {
        let appended = self.start_append(tp, batch).await?.await?;
        if durability == Durability::Durable {
            self.wait_acked_durable(tp, appended.end_offset).await?;
        }
        Ok(appended.outcome)
    }

    /// Waits until the records of `tp` below `end` survive the loss of any one process: in the
    /// write-ahead log on stable storage when it holds them, otherwise flushed and checkpointed
    /// by the broker.
    pub(super) async fn wait_acked_durable(&self, tp: &TopicPartition, end: Offset) -> Result<()> {
        let state = self.partition_state(tp);
        if let Some(wal) = &self.wal {
            let invalid_from = *state.wal_invalid_from.lock();
            if let Some((start, wal_end)) = wal.offsets(tp) {
                if wal_end >= end && invalid_from.is_none_or(|from| end <= from) {
                    // The WAL is dense from `start`; what lies below it (written before the WAL
                    // took batches, or trimmed as durable) is covered by SMQ's own flush.
                    if start > 0 {
                        state
                            .wait_durable(&self.client, tp, start.min(end), DURABLE_DEADLINE)
                            .await
                            .map_err(|e| e.into_storage(&tp.to_string()))?;
                    }
                    let Some(repl) = &self.replication else {
                        return wal.wait_durable(tp, end).await;
                    };
                    // On a majority of gateways' disks, or flushed by SMQ, whichever comes
                    // first (a peer that is down costs latency, never an answer).
                    let replicated = async {
                        wal.wait_durable(tp, end).await?;
                        repl.wait_replicated(tp, &state, end).await;
                        Ok(())
                    };
                    // Replication normally takes milliseconds: the broker's checkpoint is
                    // polled only for answers that take longer.
                    let flushed = async {
                        tokio::time::sleep(REPLICATION_GRACE).await;
                        state.wait_durable(&self.client, tp, end, DURABLE_DEADLINE).await
                    };
                    return tokio::select! {
                        r = replicated => r,
                        r = flushed => r.map_err(|e| e.into_storage(&tp.to_string())),
                    };
                }
            }
        }
        state
            .wait_durable(&self.client, tp, end, DURABLE_DEADLINE)
            .await
            .map_err(|e| e.into_storage(&tp.to_string()))
    }

    /// Whether the batch the stream will give offset `expected` goes to the WAL: only while
    /// the WAL takes batches ([`super::SeaweedOptions::wal_only_while`]) and where it stays
    /// dense (an empty WAL moves to `expected`; a non-empty one must end there, and a WAL past
    /// `expected` is the append's error, as before).
    fn wal_takes(
        &self,
        wal: &crate::storage::local::WriteAheadLog,
        tp: &TopicPartition,
        expected: Offset,
    ) -> bool {
        *self.wal_takes.borrow()
            && wal
                .offsets(tp)
                .is_none_or(|(start, end)| start == end || end >= expected)
    }

    /// Hands `batch` to the partition's publish stream; the returned future waits for its acks.
    pub(super) async fn start_append(&self, tp: &TopicPartition, batch: Bytes) -> Result<Acks> {
        let name = tp.to_string();
        let info = self.partition_of(tp).await?;
        let max = usize::try_from(info.meta.config.max_message_bytes).unwrap_or(0);
        if batch.len() > max {
            return Err(StorageError::BatchTooLarge {
                size: batch.len(),
                max,
            });
        }
        let log_append = info.meta.config.message_timestamp_type == TimestampType::LogAppendTime;
        let append_time = now_ms();
        let raw = info.meta.config.value_format == ValueFormat::Raw;
        let (header, messages) = messages_of_batch(&batch, raw, log_append.then_some(append_time))?;
        // What the write-ahead log keeps: the batch as SMQ stores it (LogAppendTime stamped), so
        // a replay publishes the same messages.
        let wal_batch = match (&self.wal, log_append) {
            (None, _) => None,
            (Some(_), false) => Some(batch),
            (Some(_), true) => {
                let mut b = bytes::BytesMut::from(&batch[..]);
                let stamped = crate::records::stored_header(&batch, 0, Some(append_time));
                b[..crate::records::HEADER_LEN].copy_from_slice(&stamped);
                Some(b.freeze())
            }
        };
        let answer = Answer {
            log_append_time_ms: if log_append { append_time } else { -1 },
            log_start_offset: info.doc.log_start(tp.partition),
        };
        if !self.leads(tp) {
            // The Produce handler checks the same with its view of the cluster; this one also
            // covers a gateway that has not (re)joined its cluster yet, whose view is empty or
            // stale: it must not write while the partition's leader does.
            return Err(StorageError::NotLeader(format!(
                "{name}: this gateway does not lead the partition (it has not joined its cluster yet, or the leader moved)"
            )));
        }
        let state = self.partition_state(tp);
        if let Some(wal) = &self.wal {
            wal.ensure(tp, info.meta.id, info.meta.partitions).await?;
        }
        let mut guard = state.append.lock().await;
        let idempotent = header.is_idempotent();
        let leadership = self.leadership.get().map_or(0, |l| (l.fingerprint)());
        if guard.leadership != leadership {
            // Another gateway may have led this partition meanwhile. The stream is kept (closing
            // it can make SeaweedMQ 4.48 unload the partition and burn offsets, §3.3), but if
            // the broker's end moved, the producer sequences and offsets are learnt again.
            guard.leadership = leadership;
            if guard.publisher.as_ref().is_some_and(|p| !p.is_closed()) {
                let hw = self
                    .client
                    .range_info(&tp.topic, tp.partition)
                    .await
                    .map_err(|e| e.into_storage(&name))?
                    .high_watermark;
                if hw != guard.next_expected {
                    debug!(partition = %name, high_watermark = hw, expected = guard.next_expected, "another gateway wrote this partition; continuing at the broker's end");
                    guard.generation += 1;
                    guard.producers = None;
                    guard.floor = hw;
                    guard.next_expected = hw;
                    state.advance(hw);
                }
            } else {
                guard.producers = None;
            }
        }
        if guard.publisher.as_ref().is_none_or(Publisher::is_closed) {
            guard.publisher = None;
            if self.wal.is_some() {
                self.reopen_with_wal(tp, &info, &state, &mut guard).await?;
            } else {
                // A restarted broker continues offsets after its last checkpoint, without what it
                // had not flushed. Losing durable (flushed and checkpointed) messages is a breach:
                // appending would renumber records acks=all answered for, so it is refused. Losing
                // unflushed ones is the acks=1 risk (no acks=all producer was answered for them):
                // their offsets are handed out again, as after Kafka's unclean leader election.
                let broker_hw = self
                    .client
                    .range_info(&tp.topic, tp.partition)
                    .await
                    .map_err(|e| e.into_storage(&name))?
                    .high_watermark;
                let durable = *state.durable.borrow();
                if broker_hw < durable {
                    error!(partition = %name, broker_high_watermark = broker_hw, durable_high_watermark = durable, "the broker lost flushed and checkpointed messages; refusing appends that would reuse their offsets");
                    return Err(io(format!(
                    "{name}: the broker's high watermark {broker_hw} is below the durable {durable}; appending would reuse offsets"
                )));
                }
                let seen = *state.hw.borrow();
                if broker_hw < seen {
                    warn!(partition = %name, broker_high_watermark = broker_hw, seen_high_watermark = seen, "the broker restarted without messages it had not flushed; their offsets are handed out again");
                    state.hw.send_replace(broker_hw);
                    state.read_ahead.clear(&self.read_ahead_budget);
                }
                guard.floor = broker_hw;
                guard.next_expected = broker_hw;
                self.wait_unloaded_flush(tp, broker_hw).await;
                let channels = self.client.discovery().channels();
                let publisher = self
                    .client
                    .on_leader(&tp.topic, tp.partition, |leader, partition| async move {
                        Publisher::open(channels, &leader, client::smq_topic(&tp.topic), partition).await
                    })
                    .await
                    .map_err(|e| e.into_storage(&name))?;
                guard.publisher = Some(publisher);
            }
        }
        if !self.leads(tp) {
            // Again, with the lock held and the stream open: a request can wait here for a
            // broker restart's recovery (tens of seconds) while the leadership moves on.
            return Err(StorageError::NotLeader(format!(
                "{name}: the partition's leader moved while this append waited"
            )));
        }
        // After the stream is open: it keeps the partition loaded on the broker while the
        // rebuild's reads come and go (see `Inner::wait_unloaded_flush`), and the table then
        // includes whatever a WAL replay put back.
        if idempotent && guard.producers.is_none() {
            let (start, hw) = self.range(tp, &info).await?;
            let from = start.max(hw - REBUILD_WINDOW);
            let table = rebuild_producers(&self.client, tp, from, hw, &state.holes)
                .await
                .map_err(|e| e.into_storage(&name))?;
            debug!(partition = %name, producers = table.len(), from, to = hw, "rebuilt producer state from envelopes");
            guard.producers = Some(table);
        }
        // Checked after a reopen: its replay may have put a lost batch back (and into the table).
        let mut check = guard.producers.as_ref().map(|t| t.check(&header)).transpose();
        if matches!(
            check,
            Err(StorageError::OutOfOrderSequence { .. } | StorageError::ProducerFenced { .. })
        ) && guard.publisher.as_ref().is_some_and(|p| !p.is_closed())
        {
            // While a membership change settles, two gateways can each see themselves as the
            // partition's leader for a moment (their views of the live members differ), and
            // the other one's appends make this table stale without any change this gateway
            // saw. Before a producer is told its sequence is wrong, the broker's end is
            // compared with this gateway's: if it is past what this gateway submitted, or the
            // table was not rebuilt for this reason lately, the table is learnt again (the end
            // behind it only means this gateway's batches are in flight).
            let hw = self
                .client
                .range_info(&tp.topic, tp.partition)
                .await
                .map_err(|e| e.into_storage(&name))?
                .high_watermark;
            let stale = guard
                .sequence_rechecked
                .is_none_or(|at| at.elapsed() >= super::partition::SEQUENCE_RECHECK_EVERY);
            // Not while this gateway's own batches are in flight (the end behind what it
            // submitted): the rebuilt table would miss them.
            if hw > guard.next_expected || (stale && hw == guard.next_expected) {
                warn!(partition = %name, high_watermark = hw, expected = guard.next_expected, "rebuilding the producer state from the stored batches before answering a sequence error (another gateway may have written this partition)");
                guard.sequence_rechecked = Some(std::time::Instant::now());
                if hw > guard.next_expected {
                    guard.generation += 1;
                    guard.floor = hw;
                    guard.next_expected = hw;
                    state.advance(hw);
                }
                let (start, hw) = self.range(tp, &info).await?;
                let from = start.max(hw - REBUILD_WINDOW);
                let table = rebuild_producers(&self.client, tp, from, hw, &state.holes)
                    .await
                    .map_err(|e| e.into_storage(&name))?;
                check = Ok(Some(table.check(&header)?));
                guard.producers = Some(table);
            }
        }
        let check = check?;
        if let Some(SequenceCheck::Duplicate { base_offset }) = check {
            // The original may have been answered with an error before it was flushed, so
            // acks=all waits for the original's records.
            let appended = Appended {
                outcome: answer.outcome(base_offset, true),
                end_offset: base_offset + i64::from(header.record_count),
            };
            return Ok(Box::pin(std::future::ready(Ok(appended))));
        }
        if guard.publisher.is_none() {
            return Err(io("publish stream unavailable"));
        }
        let floor = guard.floor;
        // The stream is this partition's only publisher and FIFO: the batch will get the next
        // `messages.len()` offsets. It goes to the WAL there before SMQ sees it, so the WAL stays
        // dense up to everything submitted (a batch whose ack is lost with the broker is
        // republished like the rest); the ack must confirm the offsets.
        let expected = guard.next_expected;
        let wal = match (&self.wal, wal_batch) {
            (Some(wal), Some(batch)) if self.wal_takes(wal, tp, expected) => {
                wal.append(tp, info.meta.id, &batch, expected)?;
                Some(WalCheck {
                    expected,
                    generation: guard.generation,
                    replicate: self
                        .replication
                        .clone()
                        .map(|r| (r, batch, (info.meta.id, info.meta.partitions))),
                })
            }
            _ => None,
        };
        guard.next_expected = expected + messages.len() as i64;
        if idempotent && wal.is_some() {
            // The WAL holds the batch at these offsets and republishes it if the broker loses
            // it, so it is stored even if its ack never arrives: a retry of it is a duplicate
            // from now on. (Without a WAL the table learns a batch only from its ack.)
            if let Some(table) = guard.producers.as_mut() {
                table.record(&header, expected);
            }
        }
        let Some(publisher) = guard.publisher.as_ref() else {
            return Err(io("publish stream unavailable"));
        };
        let pending = publisher
            .submit(messages)
            .await
            .map_err(|e| e.into_storage(&name))?;
        let acks = async move {
            pending
                .await
                .map_err(|_| io("publish stream dropped"))?
                .map_err(|e| e.into_storage(&name))
        };
        if idempotent && wal.is_none() {
            let acked = acks.await?;
            if acked.base_offset >= floor {
                if let Some(table) = guard.producers.as_mut() {
                    table.record(&header, acked.base_offset);
                }
            }
            drop(guard);
            let appended = settle(&state, tp, acked, floor, answer, wal).await;
            self.after_wal_append(tp, &state);
            return Ok(Box::pin(std::future::ready(appended)));
        }
        drop(guard);
        self.after_wal_append(tp, &state);
        let tp = tp.clone();
        Ok(Box::pin(async move {
            let acked = acks.await?;
            settle(&state, &tp, acked, floor, answer, wal).await
        }))
    }
}

/// The parts of the answer known before the acks.
#[derive(Clone, Copy)]
struct Answer {
    log_append_time_ms: i64,
    log_start_offset: Offset,
}

impl Answer {
    fn outcome(self, base_offset: Offset, duplicate: bool) -> AppendOutcome {
        AppendOutcome {
            base_offset,
            log_append_time_ms: self.log_append_time_ms,
            log_start_offset: self.log_start_offset,
            duplicate,
        }
    }
}

/// Checks a batch's acks against the offsets the stream started from and publishes the new
/// high watermark.
async fn settle(
    state: &Arc<PartitionState>,
    tp: &TopicPartition,
    acked: Acked,
    floor: Offset,
    answer: Answer,
    wal: Option<WalCheck>,
) -> Result<Appended> {
    if acked.base_offset < floor {
        // The broker's offset counter went backwards while this stream was open: the messages
        // now sit at offsets that belong to earlier records. Never acknowledge them.
        state.append.lock().await.publisher = None;
        error!(partition = %tp, base = acked.base_offset, expected_at_least = floor, "the broker assigned offsets below its high watermark; the batch is not acknowledged");
        return Err(io(format!(
            "{tp}: the broker assigned offset {} below its high watermark {floor}",
            acked.base_offset
        )));
    }
    if let Some(check) = wal {
        if acked.base_offset != check.expected || !acked.contiguous {
            diverged(state, tp, &acked, &check).await;
        } else if let Some((repl, batch, meta)) = check.replicate {
            // Confirmed: SMQ holds the batch where the WAL does; peers may keep copies.
            repl.enqueue(tp, state, meta, acked.base_offset, acked.last_offset + 1, batch);
        }
    }
    state.advance(acked.last_offset + 1);
    if !acked.contiguous {
        warn!(partition = %tp, base = acked.base_offset, last = acked.last_offset, "another publisher interleaved with this batch; its offsets are not contiguous");
    }
    Ok(Appended {
        outcome: answer.outcome(acked.base_offset, false),
        end_offset: acked.last_offset + 1,
    })
}

/// Another publisher (a gateway serving the partition under an older or newer view of its
/// leader) interleaved with this stream, so the WAL holds this batch, and everything this
/// stream submitted after it, at offsets the broker gave to other records.
///
/// The batch itself is stored (SMQ acknowledged it at `acked`): its acks=all answer waits for
/// SMQ's own flush instead of the WAL ([`Inner::wait_acked_durable`]). The stream is closed and
/// the WAL marked invalid from the batch's expected offset; the next reopen waits until SMQ
/// has flushed everything up to the WAL's end, drops those entries and continues at the
/// broker's offsets ([`Inner::reopen_with_wal`]). Acks of the old stream's later batches find a
/// newer generation and change nothing.
async fn diverged(state: &Arc<PartitionState>, tp: &TopicPartition, acked: &Acked, check: &WalCheck) {
    let mut guard = state.append.lock().await;
    if guard.generation != check.generation {
        return;
    }
    guard.generation += 1;
    guard.publisher = None;
    // Its offsets were recorded at WAL time; rebuilt from the stored envelopes when next needed.
    guard.producers = None;
    let mut invalid = state.wal_invalid_from.lock();
    let from = invalid.map_or(check.expected, |f| f.min(check.expected));
    *invalid = Some(from);
    warn!(partition = %tp, expected = check.expected, base = acked.base_offset, last = acked.last_offset, "another publisher interleaved: this batch waits for SeaweedMQ's flush, and the write-ahead log resumes once SeaweedMQ has flushed what it holds");
}

/// Where the write-ahead log put a batch, for its ack to confirm.
pub(super) struct WalCheck {
    expected: Offset,
    /// The stream generation the batch was submitted on.
    generation: u64,
    /// Where the batch goes once its offsets are confirmed, when the WAL is replicated.
    replicate: Option<(Arc<Replication>, Bytes, (uuid::Uuid, i32))>,
}

/// The SMQ messages of one validated Kafka batch: one per record, enveloped (or bare on a raw
/// topic). `log_append_time` stamps every record with the broker-side append time.
///
/// # Errors
/// [`StorageError::CorruptBatch`] for a batch that does not decode or has no records.
pub(super) fn messages_of_batch(
    batch: &Bytes,
    raw: bool,
    log_append_time: Option<i64>,
) -> Result<(BatchHeader, Vec<DataMessage>)> {
    let header = BatchHeader::parse(batch).map_err(|e| StorageError::CorruptBatch(e.to_string()))?;
    let decoded = decode_validated_batch(batch).map_err(|e| StorageError::CorruptBatch(e.to_string()))?;
    let fields = BatchFields {
        attributes: if log_append_time.is_some() {
            header.attributes | 0x08
        } else {
            header.attributes
        } & !0x07,
        base_timestamp: log_append_time.unwrap_or(header.base_timestamp),
        max_timestamp: log_append_time.unwrap_or(header.max_timestamp),
        partition_leader_epoch: decoded.partition_leader_epoch,
    };
    let messages: Vec<_> = decoded
        .records
        .iter()
        .map(|r| {
            if raw {
                return raw_message_of(r);
            }
            message_of(r, log_append_time.unwrap_or(r.timestamp_ms), &header, fields)
        })
        .collect();
    if messages.is_empty() {
        return Err(StorageError::CorruptBatch("record batch without records".into()));
    }
    Ok((header, messages))
}
