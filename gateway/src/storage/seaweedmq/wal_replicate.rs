//! Sending this gateway's write-ahead-log entries to its peers, and gathering their copies
//! before a partition's publish stream opens (docs/seaweedmq-mapping.md §3.4).
//!
//! Invariants:
//! - only *confirmed* entries are sent: SeaweedMQ acknowledged them at the offsets the WAL
//!   holds them at, so copies of one partition from different sources never disagree unless
//!   a writer skipped the recovery below (then the partition is fenced, not guessed);
//! - each peer receives a partition's entries in offset order, one request at a time, so its
//!   answer (the end of what it holds from this source, fsynced) covers every entry sent;
//! - `replicated` is the end below which every confirmed entry is on at least `needed` peers
//!   (with this node's WAL, a majority of the members); acks=all waits for it or for
//!   SeaweedMQ's own flush, whichever comes first, so a peer that is down slows acks=all to
//!   the flush interval and never loses an answer;
//! - entries leave the send buffer once every current peer has them or SeaweedMQ made them
//!   durable, so the buffer is bounded by what the broker has not flushed.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::{FuturesUnordered, StreamExt};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::partition::PartitionState;
use super::wal_replica::pb;
use crate::storage::{Offset, Result, StorageError, TopicPartition};

/// Bytes of entries in one push.
const PUSH_BYTES: usize = 4 << 20;
/// Longest a push or fetch may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// How often an idle sender re-checks the membership.
const IDLE_CHECK: Duration = Duration::from_secs(1);
/// Retry delays after a failed push.
const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(2);

/// What the backend needs from the cluster to replicate its WAL.
pub trait WalPeers: Send + Sync + std::fmt::Debug {
    /// This node's id.
    fn node_id(&self) -> u64;
    /// The other members, and how many of them must hold an entry before acks=all may be
    /// answered from the WAL (a majority of all members counting this one, minus one).
    /// `None` while the membership is unknown.
    fn peers(&self) -> Option<(Vec<u64>, usize)>;
    /// Sends `req` to `peer`'s [`super::wal_replica::ReplicaService`].
    fn push(
        &self,
        peer: u64,
        req: pb::PushRequest,
    ) -> BoxFuture<'static, std::result::Result<pb::PushReply, String>>;
    /// Asks `peer` for its copies.
    fn fetch(
        &self,
        peer: u64,
        req: pb::FetchRequest,
    ) -> BoxFuture<'static, std::result::Result<pb::FetchReply, String>>;
}

fn io(e: impl std::fmt::Display) -> StorageError {
    StorageError::Io(std::io::Error::other(e.to_string()))
}

/// This node's side of WAL replication.
#[derive(Debug)]
pub(crate) struct Replication {
    peers: Arc<dyn WalPeers>,
    parts: parking_lot::Mutex<HashMap<TopicPartition, Arc<Part>>>,
    stop: CancellationToken,
    metrics: Option<super::wal_metrics::WalMetrics>,
}

/// One confirmed entry waiting to be on every peer.
#[derive(Debug, Clone)]
struct Entry {
    base: Offset,
    end: Offset,
    batch: Bytes,
}

#[derive(Debug)]
struct Part {
    tp: TopicPartition,
    /// Topic id and partition count, as the receivers' WALs need them.
    meta: parking_lot::Mutex<(uuid::Uuid, i32)>,
    entries: parking_lot::Mutex<VecDeque<Entry>>,
    /// End of the last entry queued.
    last_end: watch::Sender<Offset>,
    /// Every entry below this is on `needed` peers.
    replicated: watch::Sender<Offset>,
    /// What each peer acknowledged holding.
    acked: parking_lot::Mutex<HashMap<u64, Offset>>,
    /// Peers with a running sender.
    senders: parking_lot::Mutex<HashSet<u64>>,
    /// Peers holding other records of this source below an offset (see `PushReply.conflict`):
    /// nothing is sent to them until SeaweedMQ made that offset durable.
    blocked: parking_lot::Mutex<HashMap<u64, Offset>>,
    state: Arc<PartitionState>,
}

impl Replication {
    pub(crate) fn new(
        peers: Arc<dyn WalPeers>,
        stop: CancellationToken,
        metrics: Option<super::wal_metrics::WalMetrics>,
    ) -> Arc<Self> {
        Arc::new(Self {
            peers,
            parts: parking_lot::Mutex::new(HashMap::new()),
            stop,
            metrics,
        })
    }

    pub(crate) fn node_id(&self) -> u64 {
        self.peers.node_id()
    }

    /// Whether acks=all may skip replication: the membership is known and this node is alone.
    pub(crate) fn alone(&self) -> bool {
        self.peers
            .peers()
            .is_some_and(|(p, needed)| p.is_empty() || needed == 0)
    }

    fn part(&self, tp: &TopicPartition, state: &Arc<PartitionState>) -> Arc<Part> {
        let mut parts = self.parts.lock();
        Arc::clone(parts.entry(tp.clone()).or_insert_with(|| {
            Arc::new(Part {
                tp: tp.clone(),
                meta: parking_lot::Mutex::new((uuid::Uuid::nil(), 0)),
                entries: parking_lot::Mutex::new(VecDeque::new()),
                last_end: watch::channel(0).0,
                replicated: watch::channel(0).0,
                acked: parking_lot::Mutex::new(HashMap::new()),
                senders: parking_lot::Mutex::new(HashSet::new()),
                blocked: parking_lot::Mutex::new(HashMap::new()),
                state: Arc::clone(state),
            })
        }))
    }

    /// Queues a confirmed entry (`batch` at `base`..`end`) for every peer.
    pub(crate) fn enqueue(
        self: &Arc<Self>,
        tp: &TopicPartition,
        state: &Arc<PartitionState>,
        (topic_id, partitions): (uuid::Uuid, i32),
        base: Offset,
        end: Offset,
        batch: Bytes,
    ) {
        if self.alone() {
            return;
        }
        let part = self.part(tp, state);
        *part.meta.lock() = (topic_id, partitions);
        {
            let durable = *state.durable.borrow();
            let mut entries = part.entries.lock();
            while entries.front().is_some_and(|e| e.end <= durable) {
                entries.pop_front();
            }
            entries.push_back(Entry { base, end, batch });
        }
        part.last_end.send_modify(|e| *e = (*e).max(end));
        let Some((peers, _)) = self.peers.peers() else {
            return;
        };
        for peer in peers {
            if part.senders.lock().insert(peer) {
                tokio::spawn(send_to(Arc::clone(self), Arc::clone(&part), peer));
            }
        }
    }

    /// Resolves once every confirmed entry of `tp` below `end` is on enough peers (at once
    /// when this node is alone); pending while the membership is unknown or peers are down.
    pub(crate) async fn wait_replicated(
        &self,
        tp: &TopicPartition,
        state: &Arc<PartitionState>,
        end: Offset,
    ) {
        if self.alone() {
            return;
        }
        let mut rx = self.part(tp, state).replicated.subscribe();
        if rx.wait_for(|r| *r >= end).await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// Every peer's copies of `tp` from `from` on, by source. Needs answers from enough peers
    /// that any set of `needed` peers plus the writer includes one of them.
    ///
    /// # Errors
    /// Too few peers answered (retriable), or the membership is unknown.
    pub(crate) async fn gather(&self, tp: &TopicPartition, from: Offset) -> Result<Vec<pb::SourceEntries>> {
        let Some((peers, needed)) = self.peers.peers() else {
            return Err(io(format!("{tp}: the cluster membership is not known yet")));
        };
        let required = peers.len().saturating_sub(needed);
        let mut calls: FuturesUnordered<_> = peers
            .iter()
            .map(|peer| {
                let req = pb::FetchRequest {
                    topic: tp.topic.to_string(),
                    partition: tp.partition,
                    from,
                    max_bytes: 16 << 20,
                };
                let call = self.peers.fetch(*peer, req);
                let peer = *peer;
                async move { (peer, tokio::time::timeout(CALL_TIMEOUT, call).await) }
            })
            .collect();
        let mut answered = 0usize;
        let mut out = Vec::new();
        while let Some((peer, result)) = calls.next().await {
            match result {
                Ok(Ok(reply)) => {
                    answered += 1;
                    out.extend(reply.sources);
                }
                Ok(Err(e)) => {
                    debug!(partition = %tp, peer, error = %e, "peer did not return its write-ahead-log copies")
                }
                Err(_) => {
                    debug!(partition = %tp, peer, "peer did not return its write-ahead-log copies in time")
                }
            }
        }
        if answered < required {
            return Err(io(format!(
                "{tp}: {answered} of {} peers returned their write-ahead-log copies, {required} needed before appending",
                peers.len()
            )));
        }
        Ok(out)
    }
}

/// Merges copies into one entry per offset range, in offset order.
///
/// # Errors
/// Two copies that disagree (different bytes, or overlapping ranges with different starts).
pub(crate) fn merge_copies(
    tp: &TopicPartition,
    copies: impl IntoIterator<Item = pb::SourceEntries>,
) -> std::result::Result<BTreeMap<Offset, (Offset, Bytes)>, String> {
    let mut merged: BTreeMap<Offset, (Offset, Bytes)> = BTreeMap::new();
    for source in copies {
        for entry in source.entries {
            let header = crate::records::BatchHeader::parse(&entry.batch).map_err(|e| e.to_string())?;
            let (base, end) = (entry.base_offset, entry.base_offset + header.offset_count());
            if let Some((b, (e, bytes))) = merged.range(..end).next_back() {
                if *e > base
                    && (*b != base || *e != end || !super::wal_replica::same_records(bytes, &entry.batch))
                {
                    return Err(format!(
                        "{tp}: copies of offsets {base}..{end} (from gateway {}) and {b}..{e} disagree",
                        source.source
                    ));
                }
                if *b == base {
                    continue;
                }
            }
            merged.insert(base, (end, entry.batch));
        }
    }
    Ok(merged)
}

/// Sends `part`'s entries to `peer` in order until the peer leaves the membership or the node
/// stops.
async fn send_to(repl: Arc<Replication>, part: Arc<Part>, peer: u64) {
    let mut last_end = part.last_end.subscribe();
    let mut retry = RETRY_FIRST;
    let mut failing = false;
    loop {
        if repl.stop.is_cancelled() || !repl.peers.peers().is_some_and(|(p, _)| p.contains(&peer)) {
            part.senders.lock().remove(&peer);
            part.acked.lock().remove(&peer);
            return;
        }
        let durable = *part.state.durable.borrow();
        let blocked = part.blocked.lock().get(&peer).copied();
        if let Some(until) = blocked {
            if durable < until {
                tokio::select! {
                    () = tokio::time::sleep(IDLE_CHECK) => {}
                    () = repl.stop.cancelled() => {}
                }
                continue;
            }
            // Everything below `durable` is SMQ's; the peer's conflicting copies are trimmed.
            part.blocked.lock().remove(&peer);
            part.acked.lock().insert(peer, durable);
        }
        let from = part.acked.lock().get(&peer).copied().unwrap_or(0);
        let batch: Vec<Entry> = {
            let entries = part.entries.lock();
            let mut bytes = 0usize;
            entries
                .iter()
                .filter(|e| e.end > from.max(durable))
                .take_while(|e| {
                    bytes += e.batch.len();
                    bytes <= PUSH_BYTES || bytes == e.batch.len()
                })
                .cloned()
                .collect()
        };
        let Some(batch_end) = batch.last().map(|e| e.end) else {
            last_end.mark_unchanged();
            tokio::select! {
                _ = last_end.changed() => {}
                () = tokio::time::sleep(IDLE_CHECK) => {}
                () = repl.stop.cancelled() => {}
            }
            continue;
        };
        let (topic_id, partitions) = *part.meta.lock();
        let req = pb::PushRequest {
            source: repl.peers.node_id(),
            topic: part.tp.topic.to_string(),
            topic_id: Bytes::copy_from_slice(topic_id.as_bytes()),
            partitions,
            partition: part.tp.partition,
            entries: batch
                .into_iter()
                .map(|e| pb::WalEntry {
                    base_offset: e.base,
                    batch: e.batch,
                })
                .collect(),
            durable_below: durable,
        };
        match tokio::time::timeout(CALL_TIMEOUT, repl.peers.push(peer, req)).await {
            Ok(Ok(reply)) if reply.conflict => {
                if let Some(m) = &repl.metrics {
                    m.push_failed(peer, "conflict");
                }
                warn!(partition = %part.tp, peer, held_until = reply.end, "the peer holds other records of this gateway at these offsets (renumbered after SeaweedMQ skipped offsets); it gets copies again once SeaweedMQ flushed past them");
                part.blocked.lock().insert(peer, reply.end);
            }
            Ok(Ok(reply)) if reply.end >= batch_end => {
                retry = RETRY_FIRST;
                if std::mem::take(&mut failing) {
                    tracing::info!(partition = %part.tp, peer, "write-ahead-log copies reach the peer again");
                }
                part.acked.lock().insert(peer, batch_end);
                advance(&repl, &part);
            }
            outcome => {
                if let Some(m) = &repl.metrics {
                    m.push_failed(peer, "error");
                }
                let why = match outcome {
                    Ok(Ok(reply)) => format!("peer holds entries only up to {}", reply.end),
                    Ok(Err(e)) => e,
                    Err(_) => "timed out".to_owned(),
                };
                if std::mem::replace(&mut failing, true) {
                    debug!(partition = %part.tp, peer, error = %why, "write-ahead-log copy still not sent");
                } else {
                    warn!(partition = %part.tp, peer, error = %why, "write-ahead-log copy not sent; retrying, and acks=all may wait for SeaweedMQ's flush meanwhile");
                }
                tokio::select! {
                    () = tokio::time::sleep(retry) => {}
                    () = repl.stop.cancelled() => {}
                }
                retry = (retry * 2).min(RETRY_MAX);
            }
        }
    }
}

/// Recomputes `replicated` and drops entries every current peer holds or SMQ made durable.
fn advance(repl: &Replication, part: &Part) {
    let Some((peers, needed)) = repl.peers.peers() else {
        return;
    };
    let acked = part.acked.lock().clone();
    let mut ends: Vec<Offset> = peers.iter().map(|p| acked.get(p).copied().unwrap_or(0)).collect();
    ends.sort_unstable_by(|a, b| b.cmp(a));
    if needed > 0 {
        if let Some(r) = ends.get(needed - 1) {
            part.replicated.send_modify(|x| *x = (*x).max(*r));
        }
    }
    let everyone = ends.last().copied().unwrap_or(0);
    let drop_below = everyone.max(*part.state.durable.borrow());
    let mut entries = part.entries.lock();
    while entries.front().is_some_and(|e| e.end <= drop_below) {
        entries.pop_front();
    }
}

impl super::Inner {
    /// Before `tp`'s publish stream opens: puts the copies peers hold of entries at or after
    /// the broker's high watermark `broker_hw` into the local WAL (their writer may be gone and
    /// the broker may have lost them), so the replay that follows republishes them at their
    /// offsets. This node's own entries take part in the comparison: copies that disagree with
    /// each other or with them, or that leave a gap, fence the partition instead of guessing.
    ///
    /// # Errors
    /// Too few peers answered, the local WAL still ends below `broker_hw` (retriable), or the
    /// partition was fenced.
    pub(super) async fn import_copies(
        &self,
        tp: &TopicPartition,
        info: &super::TopicInfo,
        state: &PartitionState,
        broker_hw: Offset,
    ) -> Result<()> {
        let (Some(repl), Some(store), Some(wal)) = (&self.replication, &self.replicas, &self.wal) else {
            return Ok(());
        };
        // From the broker's high watermark: below it the broker holds the records, or lost
        // them in a restart whose checkpoint no gateway could set (§3.4). Taking copies from
        // its flushed end instead was tried: FetchMessage and the subscription often cannot
        // read in-memory offsets back, and SeaweedMQ did not flush for over 15 s, so the hole
        // check took records the broker held for a hole and republished 5,187 of them again.
        let from = broker_hw;
        let req = pb::FetchRequest {
            topic: tp.topic.to_string(),
            partition: tp.partition,
            from,
            max_bytes: 16 << 20,
        };
        let mut copies = store.fetch(&req).await?.sources;
        copies.extend(repl.gather(tp, from).await?);
        if copies.is_empty() {
            return Ok(());
        }
        let own = super::wal_replica::read_entries(wal, tp, from, u64::MAX).await?;
        copies.push(pb::SourceEntries {
            source: repl.node_id(),
            entries: own,
        });
        let merged = merge_copies(tp, copies).map_err(|why| self.fence(tp, state, why))?;
        let (start, end) = wal.offsets(tp).unwrap_or((from, from));
        let mut next = if start < end { end } else { from };
        let missing: Vec<_> = merged.into_iter().filter(|(_, (e, _))| *e > next).collect();
        if missing.is_empty() {
            return Ok(());
        }
        if start < end && end < from {
            return Err(io(format!(
                "{tp}: waiting for SeaweedMQ to flush this gateway's write-ahead-log entries below {from} before taking other gateways' copies after it"
            )));
        }
        let first = next;
        for (base, (e, batch)) in missing {
            if base != next {
                return Err(self.fence(
                    tp,
                    state,
                    format!("{tp}: the write-ahead-log copies resume at offset {base}, not at {next}: offsets {next}..{base} were lost with the gateway that wrote them"),
                ));
            }
            wal.append(tp, info.meta.id, &batch, base)?;
            next = e;
        }
        wal.wait_durable(tp, next).await?;
        tracing::info!(partition = %tp, from = first, to = next, broker_high_watermark = broker_hw, "took other gateways' write-ahead-log copies of records the broker does not have; they are republished at their offsets");
        Ok(())
    }
}
