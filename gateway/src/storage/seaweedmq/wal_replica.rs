//! Copies of other gateways' write-ahead-log entries, and the peer service that stores and
//! returns them (docs/seaweedmq-mapping.md §3.4).
//!
//! Invariants:
//! - a push is answered only once its entries are on stable storage here (group-committed
//!   `fdatasync` of the embedded log's segments, like the WAL itself);
//! - entries are kept per source gateway, per partition, at their SeaweedMQ offsets and in
//!   offset order: an entry below what this node already holds from that source is a resend
//!   and is skipped;
//! - a copy is dropped only below an offset SeaweedMQ has flushed and checkpointed: the source
//!   says so with each push, and a janitor asks the broker for sources that went quiet (a dead
//!   gateway's copies are kept until SeaweedMQ made them durable, by a recovery or by itself).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};
use tracing::{debug, warn};

use super::client::SmqClient;
use super::durability::FlushCursor;
use crate::records::BatchHeader;
use crate::storage::local::WriteAheadLog;
use crate::storage::{validate_topic_name, Offset, Result, StorageError, TopicPartition};

/// Generated messages, client and server of `kafka_gateway.wal.v1`.
#[allow(
    missing_docs,
    unreachable_pub,
    clippy::all,
    rust_2018_idioms,
    missing_debug_implementations
)]
pub mod pb {
    tonic::include_proto!("kafka_gateway.wal.v1");
}

/// How often copies of quiet sources are checked against the broker's flush.
const JANITOR_INTERVAL: Duration = Duration::from_secs(2);
/// How often the janitor checks whether the brokers of partitions it holds copies of are
/// reachable, besides whenever a publish stream fails (a killed broker restarted here served
/// again within 0.7 s; the checkpoint must be set before that).
const HOLD_INTERVAL: Duration = Duration::from_millis(500);
/// Newest log files read to find a partition's last flushed offset (as the writer's keeper).
const HOLD_FILES_CHECKED: usize = 16;
/// A source that pushed within this long trims its copies itself (`durable_below`).
const QUIET_AFTER: Duration = Duration::from_secs(10);
/// Largest answer of one fetch, in batch bytes (at least one entry per source).
const FETCH_MAX_BYTES: u64 = 16 << 20;

fn io(e: impl std::fmt::Display) -> StorageError {
    StorageError::Io(std::io::Error::other(e.to_string()))
}

/// The copies this node holds, one WAL per source gateway under `<dir>/<source id>/`.
#[derive(Debug)]
pub struct ReplicaStore {
    dir: PathBuf,
    sources: parking_lot::Mutex<HashMap<u64, Arc<WriteAheadLog>>>,
    /// Serializes opening a source's WAL.
    opening: tokio::sync::Mutex<()>,
    /// When each source last pushed each partition.
    pushed: parking_lot::Mutex<HashMap<(u64, TopicPartition), Instant>>,
    /// This node's id and its own WAL: a fetch returns its entries too (the writer's own copy
    /// is one of the majority an answer counted on).
    own: Option<(u64, Arc<WriteAheadLog>)>,
    cancel: CancellationToken,
}

impl ReplicaStore {
    /// Opens the copies under `dir` (recovering every source's WAL found there).
    ///
    /// # Errors
    /// I/O errors reading the directory or recovering a WAL.
    pub async fn open(
        dir: PathBuf,
        own: Option<(u64, Arc<WriteAheadLog>)>,
        cancel: CancellationToken,
    ) -> Result<Arc<Self>> {
        std::fs::create_dir_all(&dir).map_err(StorageError::Io)?;
        let store = Arc::new(Self {
            dir: dir.clone(),
            sources: parking_lot::Mutex::new(HashMap::new()),
            opening: tokio::sync::Mutex::new(()),
            pushed: parking_lot::Mutex::new(HashMap::new()),
            own,
            cancel,
        });
        for entry in std::fs::read_dir(&dir).map_err(StorageError::Io)? {
            let entry = entry.map_err(StorageError::Io)?;
            if let Some(source) = entry.file_name().to_str().and_then(|n| n.parse::<u64>().ok()) {
                store.source(source).await?;
            }
        }
        Ok(store)
    }

    async fn source(&self, source: u64) -> Result<Arc<WriteAheadLog>> {
        if let Some(wal) = self.sources.lock().get(&source) {
            return Ok(Arc::clone(wal));
        }
        let _opening = self.opening.lock().await;
        if let Some(wal) = self.sources.lock().get(&source) {
            return Ok(Arc::clone(wal));
        }
        let wal = Arc::new(WriteAheadLog::open(self.dir.join(source.to_string()), &self.cancel).await?);
        self.sources.lock().insert(source, Arc::clone(&wal));
        Ok(wal)
    }

    /// Stores `req`'s entries and returns the offset after the last entry held from its source.
    ///
    /// # Errors
    /// A malformed request ([`StorageError::InvalidRequest`]-like I/O errors) or a failed write.
    pub async fn push(&self, req: pb::PushRequest) -> Result<pb::PushReply> {
        validate_topic_name(&req.topic)?;
        let id = uuid::Uuid::from_slice(&req.topic_id).map_err(|_| io("topic id is not 16 bytes"))?;
        if req.partition < 0 || req.partition >= req.partitions || req.partitions > super::MAX_PARTITIONS {
            return Err(io(format!(
                "partition {} of {} is out of range",
                req.partition, req.partitions
            )));
        }
        let tp = TopicPartition::new(req.topic.as_str(), req.partition);
        let wal = self.source(req.source).await?;
        wal.ensure(&tp, id, req.partitions).await?;
        let mut end = wal.offsets(&tp).map_or(0, |(_, end)| end);
        for entry in &req.entries {
            let header =
                BatchHeader::parse(&entry.batch).map_err(|e| StorageError::CorruptBatch(e.to_string()))?;
            if header.total_len() != entry.batch.len() || entry.base_offset < 0 {
                return Err(StorageError::CorruptBatch(format!(
                    "entry at {} declares {} bytes, carries {}",
                    entry.base_offset,
                    header.total_len(),
                    entry.batch.len()
                )));
            }
            if entry.base_offset < end {
                // A resend, unless the source renumbered its records (after SeaweedMQ skipped
                // offsets): then this copy cannot follow it until it is trimmed.
                let held = read_entries(&wal, &tp, entry.base_offset, 1).await?;
                let same = held.first().is_some_and(|h| {
                    h.base_offset == entry.base_offset && same_records(&h.batch, &entry.batch)
                });
                if !same {
                    wal.wait_durable(&tp, end).await?;
                    return Ok(pb::PushReply { end, conflict: true });
                }
                continue;
            }
            end = wal.append(&tp, id, &entry.batch, entry.base_offset)?;
        }
        wal.wait_durable(&tp, end).await?;
        self.pushed
            .lock()
            .insert((req.source, tp.clone()), Instant::now());
        if req.durable_below > 0 {
            wal.trim(&tp, req.durable_below).await?;
        }
        Ok(pb::PushReply { end, conflict: false })
    }

    /// Every source's entries of `req`'s partition from `req.from` on.
    ///
    /// # Errors
    /// I/O errors reading a copy.
    pub async fn fetch(&self, req: &pb::FetchRequest) -> Result<pb::FetchReply> {
        validate_topic_name(&req.topic)?;
        let tp = TopicPartition::new(req.topic.as_str(), req.partition);
        let max_bytes = req.max_bytes.clamp(1, FETCH_MAX_BYTES);
        let mut sources: Vec<(u64, Arc<WriteAheadLog>)> = self
            .sources
            .lock()
            .iter()
            .map(|(s, w)| (*s, Arc::clone(w)))
            .collect();
        sources.extend(self.own.clone());
        let mut reply = pb::FetchReply::default();
        for (source, wal) in sources {
            let entries = read_entries(&wal, &tp, req.from, max_bytes).await?;
            if !entries.is_empty() {
                reply.sources.push(pb::SourceEntries { source, entries });
            }
        }
        Ok(reply)
    }

    /// Until `cancel` fires: every [`HOLD_INTERVAL`], holds the checkpoints of partitions it
    /// has copies of while their broker is unreachable ([`Self::hold_checkpoints`]); every
    /// [`JANITOR_INTERVAL`], drops copies SeaweedMQ has flushed and checkpointed.
    pub async fn janitor(
        self: Arc<Self>,
        client: Arc<SmqClient>,
        metrics: Option<super::wal_metrics::WalMetrics>,
    ) {
        let mut cursors: HashMap<TopicPartition, FlushCursor> = HashMap::new();
        let mut last_trim = Instant::now();
        let mut held: HashMap<TopicPartition, Offset> = HashMap::new();
        // A failing publish stream is the first sign of a dead broker, well before a poll:
        // a restarted broker serves again within a second.
        let stream_failed = client.discovery().channels().stream_failed();
        loop {
            tokio::select! {
                () = tokio::time::sleep(HOLD_INTERVAL) => {}
                () = stream_failed.notified() => {}
                () = self.cancel.cancelled() => return,
            }
            self.hold_checkpoints(&client, &mut held, metrics.as_ref()).await;
            if last_trim.elapsed() < JANITOR_INTERVAL {
                continue;
            }
            last_trim = Instant::now();
            let sources: Vec<(u64, Arc<WriteAheadLog>)> = self
                .sources
                .lock()
                .iter()
                .map(|(s, w)| (*s, Arc::clone(w)))
                .collect();
            if let Some(m) = &metrics {
                m.copies_bytes(copies_bytes(sources.iter().map(|(_, w)| w.as_ref())));
            }
            for (source, wal) in sources {
                for topic in wal.topics() {
                    for p in 0..topic.partitions {
                        let tp = TopicPartition::new(Arc::clone(&topic.name), p);
                        if wal.offsets(&tp).is_none_or(|(s, e)| s >= e) {
                            continue;
                        }
                        let recent = self
                            .pushed
                            .lock()
                            .get(&(source, tp.clone()))
                            .is_some_and(|at| at.elapsed() < QUIET_AFTER);
                        if recent {
                            continue;
                        }
                        let cursor = cursors.entry(tp.clone()).or_default();
                        match client.durable_through(&tp.topic, tp.partition, cursor).await {
                            Ok(last) => {
                                if let Err(e) = wal.trim(&tp, last + 1).await {
                                    warn!(partition = %tp, error = %e, "could not trim a write-ahead-log copy");
                                }
                            }
                            Err(e) => debug!(partition = %tp, error = %e, "broker flush unknown; copy kept"),
                        }
                    }
                }
            }
        }
    }
}

impl ReplicaStore {
    /// The partitions this node holds copies of above what SeaweedMQ made durable, with the
    /// lowest offset held (over every source).
    fn copied_partitions(&self) -> HashMap<TopicPartition, Offset> {
        let sources: Vec<Arc<WriteAheadLog>> = self.sources.lock().values().cloned().collect();
        let mut held: HashMap<TopicPartition, Offset> = HashMap::new();
        for wal in sources {
            for topic in wal.topics() {
                for p in 0..topic.partitions {
                    let tp = TopicPartition::new(Arc::clone(&topic.name), p);
                    if let Some((s, _)) = wal.offsets(&tp).filter(|(s, e)| s < e) {
                        held.entry(tp).and_modify(|x| *x = (*x).min(s)).or_insert(s);
                    }
                }
            }
        }
        held
    }

    /// While the broker leading a partition this node holds copies of is unreachable, sets the
    /// partition's checkpoint to the broker's last flushed offset, as the writer's keeper does
    /// for its own WAL (`wal_sync.rs`, `hold_checkpoint_at_flush`): the restarted broker then
    /// continues right after what it flushed, and the partition's next writer republishes the
    /// copies at their offsets (§3.4). Without this, a writer that died before the broker left
    /// nobody to lower a checkpoint that ran ahead of the flushed files, and the records in
    /// between became holes.
    ///
    /// Lowered only when the copies held here start at or below the first unflushed offset
    /// (so every record the broker may hand out again is held by some gateway), and never
    /// while the broker answers: a running broker keeps its own counter, and a call naming
    /// the partition would make a restarted broker load the stale checkpoint. `held` remembers
    /// the value set per partition so each is logged once.
    async fn hold_checkpoints(
        &self,
        client: &SmqClient,
        held: &mut HashMap<TopicPartition, Offset>,
        metrics: Option<&super::wal_metrics::WalMetrics>,
    ) {
        let copies = self.copied_partitions();
        held.retain(|tp, _| copies.contains_key(tp));
        let mut unreachable: HashMap<String, bool> = HashMap::new();
        for (tp, start) in copies {
            // Looked up while the broker answers (the balancer is a broker), so that it is
            // known when the broker is down.
            let leader = match client.cached_leader(&tp.topic, tp.partition) {
                Some(leader) => leader,
                None => {
                    let _ = tokio::time::timeout(HOLD_INTERVAL, client.layout(&tp.topic, false)).await;
                    continue;
                }
            };
            let down = match unreachable.get(&leader) {
                Some(down) => *down,
                None => {
                    let down = client.broker_unreachable(&leader).await;
                    unreachable.insert(leader, down);
                    down
                }
            };
            if !down {
                held.remove(&tp);
                continue;
            }
            let result: super::error::SmqResult<Option<Offset>> = async {
                let checkpoint = client.checkpoint(&tp.topic, tp.partition).await?;
                let flushed = client
                    .flushed_max(&tp.topic, tp.partition, HOLD_FILES_CHECKED)
                    .await?;
                if checkpoint == flushed || (checkpoint > flushed && flushed + 1 < start) {
                    return Ok(None);
                }
                client.write_checkpoint(&tp.topic, tp.partition, flushed).await?;
                Ok(Some(flushed))
            }
            .await;
            match result {
                Ok(Some(set)) if held.insert(tp.clone(), set) != Some(set) => {
                    if let Some(m) = metrics {
                        m.checkpoint_held();
                    }
                    warn!(partition = %tp, checkpoint = set, copies_from = start, "broker unreachable: set its checkpoint to its last flushed offset so it restarts there; the partition's next writer republishes the copies held after it");
                }
                Ok(_) => {}
                Err(e) => {
                    debug!(partition = %tp, error = %e, "could not check the broker's checkpoint for held copies")
                }
            }
        }
    }
}

/// Bytes of segment data the copy WALs hold, over all their partitions.
fn copies_bytes<'a>(wals: impl Iterator<Item = &'a WriteAheadLog>) -> u64 {
    let mut total = 0;
    for wal in wals {
        for topic in wal.topics() {
            for p in 0..topic.partitions {
                total += wal.size_bytes(&TopicPartition::new(Arc::clone(&topic.name), p));
            }
        }
    }
    total
}

/// Whether two batches hold the same records (a stored copy has its base offset set).
pub(super) fn same_records(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.len() >= 8 && a[8..] == b[8..]
}

/// The whole batches of `tp` in `wal` from `from` on, up to about `max_bytes`.
pub(super) async fn read_entries(
    wal: &WriteAheadLog,
    tp: &TopicPartition,
    from: Offset,
    max_bytes: u64,
) -> Result<Vec<pb::WalEntry>> {
    let Some((start, end)) = wal.offsets(tp) else {
        return Ok(Vec::new());
    };
    let mut next = from.max(start);
    let mut entries = Vec::new();
    let mut bytes_out = 0u64;
    while next < end && bytes_out < max_bytes {
        let chunk = wal.read(tp, next, 1 << 20).await?;
        if chunk.is_empty() {
            break;
        }
        let mut at = 0usize;
        let before = next;
        while chunk.len() - at >= crate::records::HEADER_LEN {
            let header =
                BatchHeader::parse(&chunk[at..]).map_err(|e| StorageError::CorruptBatch(e.to_string()))?;
            let len = header.total_len();
            if at + len > chunk.len() {
                break;
            }
            if header.last_offset() >= next {
                entries.push(pb::WalEntry {
                    base_offset: header.base_offset,
                    batch: chunk.slice(at..at + len),
                });
                bytes_out += len as u64;
                next = header.last_offset() + 1;
            }
            at += len;
        }
        if next == before {
            break;
        }
    }
    Ok(entries)
}

/// The peer service storing and returning copies on the cluster port.
#[derive(Debug, Clone)]
pub struct ReplicaService {
    store: Arc<ReplicaStore>,
}

impl ReplicaService {
    /// Serves `store`.
    pub fn new(store: Arc<ReplicaStore>) -> Self {
        Self { store }
    }

    /// The tonic service, bounded to `max_message_bytes` both ways.
    pub fn into_server(
        self,
        max_message_bytes: usize,
    ) -> pb::wal_replica_service_server::WalReplicaServiceServer<Self> {
        pb::wal_replica_service_server::WalReplicaServiceServer::new(self)
            .max_decoding_message_size(max_message_bytes)
            .max_encoding_message_size(max_message_bytes)
    }
}

fn status(e: &StorageError) -> Status {
    match e {
        StorageError::Io(_) => Status::unavailable(e.to_string()),
        _ => Status::invalid_argument(e.to_string()),
    }
}

#[tonic::async_trait]
impl pb::wal_replica_service_server::WalReplicaService for ReplicaService {
    async fn push(
        &self,
        request: Request<pb::PushRequest>,
    ) -> std::result::Result<Response<pb::PushReply>, Status> {
        self.store
            .push(request.into_inner())
            .await
            .map(Response::new)
            .map_err(|e| status(&e))
    }

    async fn fetch(
        &self,
        request: Request<pb::FetchRequest>,
    ) -> std::result::Result<Response<pb::FetchReply>, Status> {
        self.store
            .fetch(request.get_ref())
            .await
            .map(Response::new)
            .map_err(|e| status(&e))
    }
}
