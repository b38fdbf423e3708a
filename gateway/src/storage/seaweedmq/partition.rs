//! Per-partition state of the SeaweedMQ backend: the publish stream, the idempotent-producer
//! table, and the high-watermark watch with its on-demand poller.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Mutex};
use tracing::debug;

use super::batch_codec::Record;
use super::client::SmqClient;
use super::envelope;
use super::error::SmqResult;
use super::pb::messaging_pb::DataMessage;
use super::publish::Publisher;
use crate::records::BatchHeader;
use crate::storage::producer_state::{next_sequence, ProducerStateTable};
use crate::storage::{Offset, TopicPartition};

/// How many of a partition's newest records are scanned to rebuild its producer table.
pub const REBUILD_WINDOW: i64 = 10_000;
const POLL_MIN: Duration = Duration::from_millis(50);
const POLL_MAX: Duration = Duration::from_secs(1);

/// Guarded by the partition's append lock.
#[derive(Debug, Default)]
pub struct AppendState {
    /// The open publish stream, if any.
    pub publisher: Option<Publisher>,
    /// Idempotent-producer table; `None` until first needed (then rebuilt from envelopes).
    pub producers: Option<ProducerStateTable>,
    /// The broker's high watermark when the open stream started: no ack may be below it.
    pub floor: Offset,
    /// The offset the open stream's next message will get (the stream is the partition's
    /// only publisher and FIFO); write-ahead log entries are written there before submitting.
    pub next_expected: Offset,
    /// Counts the publish streams opened with the write-ahead log; an ack from an older stream
    /// never changes the WAL's state.
    pub generation: u64,
    /// The leadership epoch ([`super::SeaweedStorage::leaders_changed`]) the open stream and
    /// the producer table belong to: after a change another gateway may have written.
    pub leadership: u64,
    /// When the producer table was last rebuilt to double-check a sequence error (at most
    /// one such rebuild per [`SEQUENCE_RECHECK_EVERY`], so a client sending bad sequences
    /// cannot make every request cost a rebuild).
    pub sequence_rechecked: Option<std::time::Instant>,
}

/// Least time between two rebuilds of a partition's producer table for a sequence error.
pub const SEQUENCE_RECHECK_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// One Kafka partition on SMQ.
#[derive(Debug)]
pub struct PartitionState {
    /// Serialises appends, so one batch's frames are sent back to back.
    pub append: Mutex<AppendState>,
    /// High watermark as last seen (own acks, fetches, range info).
    pub hw: watch::Sender<Offset>,
    poller: AtomicBool,
    /// The next offset not known to be durable (the lower of the broker's checkpoint and its
    /// last flushed offset, plus one).
    pub durable: watch::Sender<Offset>,
    pub(super) durable_poller: AtomicBool,
    /// How far the partition directory's flushed log files were listed (used by the poller).
    pub(super) flushed: parking_lot::Mutex<super::durability::FlushCursor>,
    /// Records read past the last fetch answer.
    pub(super) read_ahead: super::read_ahead::ReadAheadSlot,
    /// The partition directory's log files, for reading flushed messages directly.
    pub(super) files: Mutex<super::log_files::FileIndex>,
    /// True while the write-ahead log keeper runs (`wal_sync`).
    pub(super) keeper: AtomicBool,
    /// Why appends are refused (the broker lost records that cannot be restored at their
    /// offsets); `None` normally.
    pub(super) fenced: parking_lot::Mutex<Option<String>>,
    /// Set when another publisher interleaved with this gateway's stream: the WAL's entries
    /// from this offset on sit at offsets the broker gave to other records. Cleared (and those
    /// entries dropped) once SeaweedMQ has flushed everything up to the WAL's end.
    pub(super) wal_invalid_from: parking_lot::Mutex<Option<Offset>>,
    /// True from the start of a write-ahead-log recovery until one succeeds: reads wait for
    /// it rather than report what the broker says meanwhile.
    pub(super) recovering: AtomicBool,
    /// The offset a recovery could not read back, with the broker's flushed end and high
    /// watermark then, and since when (`wal_sync`'s hole detection).
    pub(super) unreadable: parking_lot::Mutex<Option<(Offset, Offset, Offset, std::time::Instant)>>,
    /// Offsets the broker counted but never stored at the partition's end, once proven: reads
    /// skip them and the reported high watermark stops before them ([`super::holes`]).
    pub(super) holes: super::holes::Holes,
}

impl Default for PartitionState {
    fn default() -> Self {
        Self {
            append: Mutex::new(AppendState::default()),
            hw: watch::channel(0).0,
            poller: AtomicBool::new(false),
            durable: watch::channel(0).0,
            durable_poller: AtomicBool::new(false),
            flushed: parking_lot::Mutex::new(super::durability::FlushCursor::default()),
            read_ahead: super::read_ahead::ReadAheadSlot::default(),
            files: Mutex::new(super::log_files::FileIndex::default()),
            keeper: AtomicBool::new(false),
            fenced: parking_lot::Mutex::new(None),
            wal_invalid_from: parking_lot::Mutex::new(None),
            recovering: AtomicBool::new(false),
            unreadable: parking_lot::Mutex::new(None),
            holes: super::holes::Holes::default(),
        }
    }
}

impl PartitionState {
    /// Raises the watched high watermark to `hw` (never lowers it).
    pub fn advance(&self, hw: Offset) {
        self.hw.send_if_modified(|cur| {
            if hw > *cur {
                *cur = hw;
                true
            } else {
                false
            }
        });
    }

    /// Starts the range-info poller unless one runs. It polls with backoff (50 ms doubling to
    /// 1 s while nothing changes) and exits once no receiver is left.
    pub fn ensure_poller(self: &Arc<Self>, client: Arc<SmqClient>, tp: TopicPartition) {
        if self.poller.swap(true, Ordering::AcqRel) {
            return;
        }
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            self.poller.store(false, Ordering::Release);
            return;
        };
        let me = Arc::clone(self);
        handle.spawn(async move {
            let mut delay = POLL_MIN;
            loop {
                if me.hw.receiver_count() == 0 {
                    break;
                }
                match client.range_info(&tp.topic, tp.partition).await {
                    Ok(ri) if ri.high_watermark > *me.hw.borrow() => {
                        me.advance(ri.high_watermark);
                        delay = POLL_MIN;
                    }
                    Ok(_) => delay = (delay * 2).min(POLL_MAX),
                    Err(e) => {
                        debug!(partition = %tp, error = %e, "high watermark poll failed");
                        delay = POLL_MAX;
                    }
                }
                tokio::time::sleep(delay).await;
            }
            me.poller.store(false, Ordering::Release);
            // A watcher may have arrived between the check and the flag reset.
            if me.hw.receiver_count() > 0 {
                me.ensure_poller(client, tp);
            }
        });
    }
}

/// The SMQ message of one Kafka record (the key also goes to SMQ's key for SMQ-native readers),
/// with its position in the produced batch so reads rebuild that batch.
pub fn message_of(
    record: &Record,
    timestamp_ms: i64,
    header: &BatchHeader,
    fields: envelope::BatchFields,
) -> DataMessage {
    let idempotent = header.is_idempotent() && header.base_sequence >= 0;
    let sequence = if idempotent {
        header.base_sequence.wrapping_add(record.offset_delta)
    } else {
        -1
    };
    let sequence = if sequence < 0 && idempotent {
        sequence - i32::MIN
    } else {
        sequence
    };
    let env = envelope::Envelope {
        key: record.key.clone(),
        value: record.value.clone(),
        headers: record.headers.clone(),
        timestamp_ms,
        producer_id: if idempotent { header.producer_id } else { -1 },
        producer_epoch: if idempotent { header.producer_epoch } else { -1 },
        sequence,
        batch: Some(envelope::BatchPosition::new(
            record.offset_delta,
            header.last_offset_delta,
            fields,
        )),
    };
    DataMessage {
        key: record.key.clone().unwrap_or_default(),
        value: envelope::encode(&env),
        ts_ns: 0,
    }
}

/// The SMQ message of a record on a raw-format topic: the bare key and value (null stored as
/// empty), no envelope. The broker stamps its ingest time (`ts_ns` 0), which reads serve as the
/// record's timestamp (docs/seaweedmq-mapping.md §6).
pub fn raw_message_of(record: &Record) -> DataMessage {
    DataMessage {
        key: record.key.clone().unwrap_or_default(),
        value: record.value.clone().unwrap_or_default(),
        ts_ns: 0,
    }
}

/// Rebuilds a producer table from the envelopes of the partition's newest records. Version-2
/// envelopes name their batch exactly. For version 1, consecutive records of one producer and
/// epoch with consecutive sequences count as one batch, so adjacent version-1 batches of a
/// producer merge, and a retry of one of them after a gateway restart is answered
/// OUT_OF_ORDER_SEQUENCE instead of as a duplicate. Producers whose records lie before the scanned window are unknown and accepted
/// at any sequence (as after Kafka's producer expiry). Offsets in `holes` (never stored) are
/// skipped; an unreadable offset is reported to `holes`, which proves a hole at the end.
///
/// # Errors
/// [`super::error::SmqError`] when the partition cannot be read.
pub async fn rebuild_producers(
    client: &SmqClient,
    tp: &TopicPartition,
    start: Offset,
    end: Offset,
    holes: &super::holes::Holes,
) -> SmqResult<ProducerStateTable> {
    let mut table = ProducerStateTable::new();
    let mut run: Option<(BatchHeader, Offset)> = None;
    let mut offset = start;
    while offset < end {
        let fetched = client
            .fetch(
                &tp.topic,
                tp.partition,
                offset,
                super::fetch::MAX_BYTES,
                super::fetch::MAX_MESSAGES,
            )
            .await?;
        let messages = if fetched.messages.is_empty() {
            // A proven hole is skipped (checked before the subscription, which takes up to a
            // minute of retries to give up on an offset that holds nothing).
            if holes.check_end(client, tp, offset, end).await {
                offset = holes.skip(offset);
                continue;
            }
            let Some(allowance) = holes.subscription_allowance(offset) else {
                return Err(super::error::SmqError::Unavailable(format!(
                    "partition {tp}: nothing readable at offset {offset} yet; checking whether SeaweedMQ ever stored it"
                )));
            };
            let want = usize::try_from((end - offset).min(1000)).unwrap_or(1000);
            let read = client.subscribe_read(&tp.topic, tp.partition, offset, want);
            let read = tokio::time::timeout(allowance, read).await.unwrap_or_else(|_| {
                Err(super::error::SmqError::Unavailable(format!(
                    "partition {tp}: no answer from the subscription at offset {offset}"
                )))
            });
            match read {
                Ok(messages) => {
                    holes.readable(offset);
                    messages
                }
                Err(_) if holes.check_end(client, tp, offset, end).await => {
                    offset = holes.skip(offset);
                    continue;
                }
                Err(e) => return Err(e),
            }
        } else {
            fetched.messages
        };
        for m in messages {
            let at = offset;
            offset += 1;
            let Ok(e) = envelope::decode(m.value) else {
                continue;
            };
            if e.producer_id < 0 || e.sequence < 0 {
                continue;
            }
            if let Some(p) = e.batch {
                // Version 2: the produced batch is known exactly.
                if p.offset_delta == 0 {
                    if let Some((h, base)) = run.take() {
                        table.record(&h, base);
                    }
                    let mut h = header_for(e.producer_id, e.producer_epoch, e.sequence);
                    h.last_offset_delta = p.last_offset_delta;
                    h.record_count = p.last_offset_delta.saturating_add(1);
                    table.record(&h, at);
                }
                continue;
            }
            let extends = run.as_ref().is_some_and(|(h, _)| {
                h.producer_id == e.producer_id
                    && h.producer_epoch == e.producer_epoch
                    && next_sequence(h.last_sequence()) == e.sequence
            });
            if extends {
                if let Some((h, _)) = run.as_mut() {
                    h.last_offset_delta += 1;
                    h.record_count += 1;
                }
            } else {
                if let Some((h, base)) = run.take() {
                    table.record(&h, base);
                }
                run = Some((header_for(e.producer_id, e.producer_epoch, e.sequence), at));
            }
        }
    }
    if let Some((h, base)) = run {
        table.record(&h, base);
    }
    Ok(table)
}

fn header_for(producer_id: i64, producer_epoch: i16, base_sequence: i32) -> BatchHeader {
    BatchHeader {
        base_offset: 0,
        batch_length: 0,
        attributes: 0,
        last_offset_delta: 0,
        base_timestamp: -1,
        max_timestamp: -1,
        producer_id,
        producer_epoch,
        base_sequence,
        record_count: 1,
    }
}
