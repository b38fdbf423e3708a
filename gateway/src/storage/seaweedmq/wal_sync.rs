//! Keeping SeaweedMQ and the gateway's write-ahead log (WAL) in step
//! (docs/seaweedmq-mapping.md §3.3).
//!
//! An acks=all batch is answered once SMQ acknowledged it (in the broker's memory, which gives
//! its offsets) and the WAL holds it at those offsets on stable storage. Until SMQ's own flush
//! covers them, the WAL is the copy that survives a broker crash. Invariants:
//!
//! * WAL entries are written at the offsets the partition's one FIFO stream will give them,
//!   before SMQ sees them ([`super::append`]), so the WAL is dense up to everything submitted;
//!   each ack must confirm its offsets. Entries are trimmed only below what the broker has both
//!   flushed and checkpointed.
//! * Before a partition's publish stream is (re)opened, every WAL entry the broker no longer has
//!   is published again, in order, and must land at its original offset; otherwise the
//!   partition refuses appends with a clear error instead of renumbering records.
//! * A restarted broker continues after its checkpoint, which can run ahead of its flushed
//!   files. While the broker is unreachable, the keeper lowers the checkpoint to the last
//!   flushed offset, so the restarted broker continues right after what it really kept and the
//!   replay refills the rest at the same offsets.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{debug, error, info, warn};

use super::durability::FlushCursor;
use super::partition::{AppendState, PartitionState};
use super::publish::Publisher;
use super::wal_replay::{Kept, ReplaySpan};
use super::{client, Inner, TopicInfo};
use crate::storage::{Offset, Result, StorageError, TopicPartition};

/// How often a partition with unflushed WAL entries is checked (trim, broker restarts).
const KEEP_INTERVAL: Duration = Duration::from_millis(500);
/// Recent log files whose last offsets bound what the broker flushed, before its checkpoint
/// is lowered.
const CHECKPOINT_FILES_CHECKED: usize = 16;
/// Longest a read waits for a running write-ahead-log recovery of its partition.
const READ_WAITS_FOR_RECOVERY: Duration = Duration::from_secs(10);
/// Longest a recovery waits for the broker to flush a partition it unloads (SeaweedMQ's
/// default flush interval is 5 s).
const UNLOAD_FLUSH_WAIT: Duration = Duration::from_secs(7);
/// How long after an unloading partition's flush is seen the broker may still hold it.
const UNLOAD_SETTLE: Duration = Duration::from_millis(300);

fn io(e: impl std::fmt::Display) -> StorageError {
    StorageError::Io(std::io::Error::other(e.to_string()))
}

impl Inner {
    /// Opens the publish stream of `tp` after replaying what the broker lost from the WAL.
    /// Called with the append lock held and no open stream.
    pub(super) async fn reopen_with_wal(
        &self,
        tp: &TopicPartition,
        info: &TopicInfo,
        state: &Arc<PartitionState>,
        guard: &mut AppendState,
    ) -> Result<()> {
        let name = tp.to_string();
        let Some(wal) = self.wal.clone() else {
            return Err(io("no write-ahead log"));
        };
        if let Some(why) = state.fenced.lock().clone() {
            return Err(io(why));
        }
        state.recovering.store(true, Ordering::Release);
        self.resume_after_divergence(tp, state, &wal).await?;
        let broker_hw = match self.client.range_info(&tp.topic, tp.partition).await {
            Ok(ri) => ri.high_watermark,
            Err(e) => {
                // The broker may be down: make sure it restarts right after what it flushed.
                self.hold_checkpoint_at_flush(tp).await;
                return Err(e.into_storage(&name));
            }
        };
        // Other gateways' copies of what the broker lost join the local WAL first (§3.4).
        self.import_copies(tp, info, state, broker_hw).await?;
        let (start, end) = wal.offsets(tp).unwrap_or((broker_hw, broker_hw));
        debug!(partition = %name, broker_high_watermark = broker_hw, wal_start = start, wal_end = end, "reopening the publish stream after the write-ahead log's checks");
        let broker_hw = if broker_hw < end {
            self.counter_past_flushed(tp, guard, broker_hw).await?
        } else {
            broker_hw
        };
        // Held here until the recovery succeeds: `guard` gets a stream only together with the
        // offsets it continues at, so a failed attempt leaves no stream behind to append on.
        let mut stream = guard.publisher.take();
        if broker_hw < start {
            // Entries below `start` were trimmed as flushed and checkpointed: the broker lost
            // durable records. Refused on every attempt (never renumbered); not fenced, in case
            // the broker reports a transient value.
            error!(partition = %name, broker_high_watermark = broker_hw, wal_start = start, "the broker lost flushed and checkpointed records; refusing appends that would reuse their offsets");
            return Err(io(format!(
                "{name}: the broker's high watermark {broker_hw} is below the write-ahead log's first entry {start}: the broker lost records it had flushed; appending would reuse their offsets"
            )));
        }
        let mut floor = broker_hw;
        if start < end {
            if stream.is_none() {
                // Opened before the checks read anything back, and kept open: SeaweedMQ 4.48
                // unloads a partition when its last publisher and subscriber leave, and a
                // publish that reaches it while it unloads fails after its offset was counted
                // ("log buffer is stopping"), leaving a hole no one can fill. Our own read-back
                // subscriptions ending would start such an unload.
                self.wait_unloaded_flush(tp, broker_hw).await;
                stream = Some(self.open_publisher(tp).await?);
            }
            let kept = self
                .check_broker_kept(tp, info, start, end.min(broker_hw), broker_hw)
                .await?;
            // Republished from the broker's end at their own offsets; after a hole, from the
            // hole on, each `shift` offsets later.
            let (from, shift) = match kept {
                Kept::Yes => (broker_hw, 0),
                Kept::HoleFrom(hole) => (hole, broker_hw - hole),
            };
            if from < end {
                let publisher = match stream.take() {
                    Some(p) => p,
                    None => self.open_publisher(tp).await?,
                };
                self.replay(
                    tp,
                    info,
                    state,
                    &publisher,
                    ReplaySpan { from, end, shift },
                    guard.producers.as_mut(),
                )
                .await?;
                stream = Some(publisher);
                floor = end + shift;
            }
            if shift > 0 {
                // The WAL's entries from the hole on name offsets the broker gave other
                // records: like an interleaving, appends wait until SeaweedMQ has flushed the
                // renumbered copies, then the WAL drops them (`resume_after_divergence`).
                error!(partition = %name, hole_from = from, hole_to = broker_hw, renumbered_to = floor, "SeaweedMQ counted offsets it never stored (a publish that reached the partition while the broker unloaded it); the write-ahead log's records from the hole on were republished after it, at later offsets");
                *state.wal_invalid_from.lock() = Some(from);
                state.advance(floor);
                drop(stream);
                guard.generation += 1;
                state.recovering.store(false, Ordering::Release);
                return Err(io(format!(
                    "{name}: SeaweedMQ skipped offsets {from}..{broker_hw}; appends resume once it has flushed the records republished after them"
                )));
            }
        }
        let seen = *state.hw.borrow();
        if floor < seen {
            warn!(partition = %name, broker_high_watermark = floor, seen_high_watermark = seen, "the broker restarted without messages that were never acknowledged; their offsets are handed out again");
            state.hw.send_replace(floor);
            state.read_ahead.clear(&self.read_ahead_budget);
        }
        state.advance(floor);
        guard.floor = floor;
        guard.next_expected = floor;
        let stream = match stream {
            Some(p) => p,
            None => self.open_publisher(tp).await?,
        };
        guard.generation += 1;
        guard.publisher = Some(stream);
        state.recovering.store(false, Ordering::Release);
        Ok(())
    }

    /// After another publisher interleaved ([`super::append`]'s `diverged`): refuses (with a
    /// retriable error) until SeaweedMQ has flushed and checkpointed every offset below the
    /// WAL's end, then drops the WAL's entries, whose offsets no longer match the broker's.
    async fn resume_after_divergence(
        &self,
        tp: &TopicPartition,
        state: &Arc<PartitionState>,
        wal: &crate::storage::local::WriteAheadLog,
    ) -> Result<()> {
        let Some(from) = *state.wal_invalid_from.lock() else {
            return Ok(());
        };
        let name = tp.to_string();
        let end = wal.offsets(tp).map_or(from, |(_, end)| end);
        // What this gateway published past the WAL's end (records republished after a hole)
        // must be flushed too before the WAL stops holding them.
        let target = end.max(*state.hw.borrow());
        let mut cursor = FlushCursor::default();
        let durable = self
            .client
            .durable_through(&tp.topic, tp.partition, &mut cursor)
            .await
            .map_err(|e| e.into_storage(&name))?;
        if durable + 1 < target {
            return Err(io(format!(
                "{name}: the write-ahead log's offsets no longer match the broker's (another publisher, or offsets the broker skipped); appends resume once SeaweedMQ has flushed offsets below {target} (flushed through {durable})"
            )));
        }
        wal.trim(tp, end).await?;
        *state.wal_invalid_from.lock() = None;
        info!(partition = %name, invalid_from = from, end, "SeaweedMQ flushed what the write-ahead log held; it resumes at the broker's offsets");
        Ok(())
    }

    /// Makes sure the broker's offset counter for `tp` continues after every record it has
    /// flushed, before anything is republished; returns its high watermark. SeaweedMQ 4.48
    /// writes no offset attributes on a partition's first log file (it starts at offset 0), and
    /// a restarted broker continues after the larger of its checkpoint (written every 2 s) and
    /// the highest offset attribute: restarted before its checkpoint covered that file, it
    /// would hand the file's offsets out again. The checkpoint is raised to the flushed
    /// records before the partition is loaded (the stream opened here loads it); may leave an
    /// open publisher in `guard`.
    async fn counter_past_flushed(
        &self,
        tp: &TopicPartition,
        guard: &mut AppendState,
        broker_hw: Offset,
    ) -> Result<Offset> {
        let name = tp.to_string();
        let storage = |e: super::error::SmqError| e.into_storage(&name);
        let flushed = self
            .client
            .flushed_max(&tp.topic, tp.partition, CHECKPOINT_FILES_CHECKED)
            .await
            .map_err(storage)?;
        if flushed < broker_hw {
            return Ok(broker_hw);
        }
        let checkpoint = self
            .client
            .checkpoint(&tp.topic, tp.partition)
            .await
            .map_err(storage)?;
        if checkpoint < flushed {
            self.client
                .write_checkpoint(&tp.topic, tp.partition, flushed)
                .await
                .map_err(storage)?;
            warn!(partition = %name, broker_high_watermark = broker_hw, checkpoint, flushed, "the broker's offsets were behind its flushed records: raised its checkpoint to them before it loads the partition");
        }
        let publisher = self.open_publisher(tp).await?;
        let loaded = self
            .client
            .range_info(&tp.topic, tp.partition)
            .await
            .map_err(storage)?
            .high_watermark;
        if loaded <= flushed {
            // Loaded before the checkpoint was raised: closing the stream lets the broker
            // unload the partition, and the next attempt loads it from the raised checkpoint.
            drop(publisher);
            return Err(io(format!(
                "{name}: the broker continues at offset {loaded}, inside records it flushed (through {flushed}); waiting for it to reload the partition from the corrected checkpoint"
            )));
        }
        guard.publisher = Some(publisher);
        Ok(loaded)
    }

    /// Waits (at most [`UNLOAD_FLUSH_WAIT`]) until the broker's flushed files reach its high
    /// watermark `broker_hw`, i.e. it holds nothing unflushed in memory. After a gateway
    /// restarted, the broker unloads the partitions its old streams published to and flushes
    /// them first; a stream opened before that flush ends would publish into the unloading
    /// partition (see `reopen_with_wal`), and reads would wait on it without an answer. Waiting longer proves nothing: a broker that keeps
    /// records in memory for another publisher is not unloading.
    pub(super) async fn wait_unloaded_flush(&self, tp: &TopicPartition, broker_hw: Offset) {
        let deadline = Instant::now() + UNLOAD_FLUSH_WAIT;
        let mut waited = false;
        loop {
            match self
                .client
                .flushed_max(&tp.topic, tp.partition, CHECKPOINT_FILES_CHECKED)
                .await
            {
                Ok(flushed) if flushed + 1 >= broker_hw => {
                    if waited {
                        // The broker checks for the end of its flush every 113 ms before it
                        // drops the unloaded partition; a stream opened in between would
                        // still join it.
                        tokio::time::sleep(UNLOAD_SETTLE).await;
                    }
                    return;
                }
                Ok(flushed) if Instant::now() >= deadline => {
                    debug!(partition = %tp, flushed, broker_high_watermark = broker_hw, "the broker still holds unflushed records; opening the stream anyway");
                    return;
                }
                Err(e) if Instant::now() >= deadline => {
                    debug!(partition = %tp, error = %e, "could not read the broker's flushed files");
                    return;
                }
                _ => {
                    waited = true;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }

    async fn open_publisher(&self, tp: &TopicPartition) -> Result<Publisher> {
        let channels = self.client.discovery().channels();
        self.client
            .on_leader(&tp.topic, tp.partition, |leader, partition| async move {
                Publisher::open(channels, &leader, client::smq_topic(&tp.topic), partition).await
            })
            .await
            .map_err(|e| e.into_storage(&tp.to_string()))
    }

    /// Sets the broker's checkpoint of `tp` to its last flushed offset while the broker is
    /// unreachable, so that the restarted broker continues right after what it flushed:
    /// * lowered when it runs ahead while the WAL holds the records in between (the replay
    ///   refills them at their offsets);
    /// * raised when it lags a flushed file without offset attributes (a partition's first
    ///   file, see [`Self::counter_past_flushed`]), before any read or publish loads the
    ///   partition from the stale value: once loaded, the broker would keep handing out
    ///   flushed offsets again for its lifetime.
    ///
    /// Only while the broker is unreachable (a running broker could flush between the read and
    /// the write).
    pub(super) async fn hold_checkpoint_at_flush(&self, tp: &TopicPartition) {
        let Some(wal) = &self.wal else { return };
        let Some((start, end)) = wal.offsets(tp) else {
            return;
        };
        if start >= end {
            return;
        }
        let result: super::error::SmqResult<()> = async {
            let checkpoint = self.client.checkpoint(&tp.topic, tp.partition).await?;
            let flushed = self
                .client
                .flushed_max(&tp.topic, tp.partition, CHECKPOINT_FILES_CHECKED)
                .await?;
            if checkpoint < flushed {
                self.client.write_checkpoint(&tp.topic, tp.partition, flushed).await?;
                warn!(partition = %tp, checkpoint, flushed, "broker unreachable: raised its checkpoint to its flushed records so it does not hand their offsets out again");
                return Ok(());
            }
            // Only records the WAL holds may be uncounted again.
            if checkpoint == flushed || flushed + 1 < start {
                return Ok(());
            }
            self.client.write_checkpoint(&tp.topic, tp.partition, flushed).await?;
            warn!(partition = %tp, checkpoint, flushed, "broker unreachable: lowered its checkpoint to its last flushed offset so it restarts there; the write-ahead log republishes the rest");
            Ok(())
        }
        .await;
        if let Err(e) = result {
            debug!(partition = %tp, error = %e, "could not check the broker's checkpoint");
        }
    }

    /// Before a read asks the broker about `tp`: if the WAL holds entries and the publish
    /// stream broke (a broker restart), recovers first, so the broker does not load the
    /// partition (and report its high watermark) before its checkpoint was corrected and the
    /// lost records republished. Skipped while an append or the keeper holds the partition.
    pub(super) async fn recover_before_read(&self, tp: &TopicPartition, info: &TopicInfo) -> Result<()> {
        let Some(wal) = &self.wal else { return Ok(()) };
        if wal.offsets(tp).is_none_or(|(s, e)| s >= e) {
            return Ok(());
        }
        let state = self.partition_state(tp);
        if state.fenced.lock().is_some() {
            return Ok(());
        }
        let mut guard = match state.append.try_lock() {
            Ok(g) => g,
            // An append holds the lock (its stream is open or being opened): read on.
            Err(_) if !state.recovering.load(Ordering::Acquire) => return Ok(()),
            // A recovery runs: wait for it (bounded; a read answers in seconds or fails).
            Err(_) => tokio::time::timeout(READ_WAITS_FOR_RECOVERY, state.append.lock())
                .await
                .map_err(|_| io(format!("{tp}: recovering from a broker restart")))?,
        };
        if guard.publisher.as_ref().is_some_and(|p| !p.is_closed()) {
            return Ok(());
        }
        guard.publisher = None;
        self.reopen_with_wal(tp, info, &state, &mut guard).await
    }

    /// After a WAL append: makes sure the partition's keeper runs.
    pub(super) fn after_wal_append(&self, tp: &TopicPartition, state: &Arc<PartitionState>) {
        if self.wal.is_none() || state.keeper.swap(true, Ordering::AcqRel) {
            return;
        }
        let Some(me) = self.me.upgrade() else {
            state.keeper.store(false, Ordering::Release);
            return;
        };
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            state.keeper.store(false, Ordering::Release);
            return;
        };
        let (tp, state) = (tp.clone(), Arc::clone(state));
        handle.spawn(async move {
            keep(&me, &tp, &state).await;
            state.keeper.store(false, Ordering::Release);
        });
    }
}

impl Inner {
    /// Graceful shutdown: waits, at most `deadline`, until SeaweedMQ has flushed and
    /// checkpointed everything the WAL holds, with the publish streams still open (so the
    /// broker keeps the partitions loaded and flushes on its own interval). A gateway that
    /// leaves nothing to replay restarts without touching the broker's unload path, where
    /// records are briefly unreadable. Entries not drained in time stay in the WAL and are
    /// recovered by the next start, as after a crash.
    /// Returns how many partitions were not drained in time.
    pub(super) async fn drain_wal(&self, deadline: Duration) -> Result<usize> {
        let Some(wal) = &self.wal else { return Ok(0) };
        let started = Instant::now();
        let mut pending = Vec::new();
        for topic in wal.topics() {
            for p in 0..topic.partitions {
                let tp = TopicPartition::new(Arc::clone(&topic.name), p);
                if let Some((start, end)) = wal.offsets(&tp).filter(|(s, e)| s < e) {
                    let state = self.partition_state(&tp);
                    self.after_wal_append(&tp, &state);
                    pending.push((tp, state, start, end));
                }
            }
        }
        if pending.is_empty() {
            return Ok(0);
        }
        info!(
            partitions = pending.len(),
            "waiting for SeaweedMQ to flush what the write-ahead log holds"
        );
        let mut left = 0usize;
        for (tp, state, _, end) in &pending {
            let remaining = deadline.saturating_sub(started.elapsed());
            if state
                .wait_durable(&self.client, tp, *end, remaining)
                .await
                .is_err()
            {
                left += 1;
                warn!(partition = %tp, end, "not flushed by SeaweedMQ in time; the write-ahead log keeps it");
            }
        }
        info!(
            partitions = pending.len(),
            not_drained = left,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "write-ahead log drain"
        );
        Ok(left)
    }
}

/// Runs while `tp` has WAL entries the broker has not made durable: trims what it has,
/// notices a broken publish stream (a broker restart) and replays, and updates the metrics.
async fn keep(inner: &Arc<Inner>, tp: &TopicPartition, state: &Arc<PartitionState>) {
    let Some(wal) = inner.wal.clone() else { return };
    let mut cursor = FlushCursor::default();
    let mut oldest: Option<(Offset, Instant)> = None;
    loop {
        // Woken early when the partition's open stream breaks: the checkpoint must be
        // corrected while the broker is down (see `hold_checkpoint_at_flush`).
        let broken = state.append.try_lock().ok().and_then(|g| {
            g.publisher
                .as_ref()
                .filter(|p| !p.is_closed())
                .map(Publisher::close_signal)
        });
        match broken {
            Some(signal) => {
                tokio::select! {
                    () = tokio::time::sleep(KEEP_INTERVAL) => {}
                    () = signal.closed() => {}
                }
            }
            None => tokio::time::sleep(KEEP_INTERVAL).await,
        }
        if Arc::strong_count(inner) <= 1 {
            break;
        }
        let Some((start, end)) = wal.offsets(tp) else {
            break;
        };
        if let Some(m) = &inner.wal_metrics {
            let age = match oldest {
                Some((o, since)) if o == start => since.elapsed(),
                _ => {
                    oldest = Some((start, Instant::now()));
                    Duration::ZERO
                }
            };
            m.observe(
                tp,
                wal.size_bytes(tp),
                if start < end { age } else { Duration::ZERO },
            );
        }
        if start >= end {
            break;
        }
        match inner
            .client
            .durable_through(&tp.topic, tp.partition, &mut cursor)
            .await
        {
            Ok(last) => {
                state.advance_durable(last + 1);
                if let Err(e) = wal.trim(tp, last + 1).await {
                    warn!(partition = %tp, error = %e, "write-ahead log trim failed");
                }
            }
            Err(e) => debug!(partition = %tp, error = %e, "durability poll failed"),
        }
        let closed = state
            .append
            .try_lock()
            .map(|g| g.publisher.as_ref().is_none_or(Publisher::is_closed))
            .unwrap_or(false);
        if !closed || state.fenced.lock().is_some() || !inner.leads(tp) {
            // Another gateway leads the partition: it takes the copies of what the broker lost
            // (§3.4) before it appends; publishing here would interleave with it.
            continue;
        }
        // The stream broke (or none is open) with entries the broker may have lost: recover
        // now rather than on the next produce, so consumers see them again.
        let Ok(Some(info)) = inner.topic(&tp.topic, false).await else {
            continue;
        };
        let mut guard = state.append.lock().await;
        if guard.publisher.as_ref().is_some_and(|p| !p.is_closed()) {
            continue;
        }
        guard.publisher = None;
        if let Err(e) = inner.reopen_with_wal(tp, &info, state, &mut guard).await {
            warn!(partition = %tp, error = %e, "write-ahead log recovery not yet possible");
        }
    }
    if let Some(m) = &inner.wal_metrics {
        m.observe(tp, wal.size_bytes(tp), Duration::ZERO);
    }
}

/// Starts the keepers of every WAL partition with entries (after a gateway restart).
pub(super) fn keep_recovered(inner: &Arc<Inner>) {
    let Some(wal) = &inner.wal else { return };
    for topic in wal.topics() {
        for p in 0..topic.partitions {
            let tp = TopicPartition::new(Arc::clone(&topic.name), p);
            if wal.offsets(&tp).is_some_and(|(s, e)| s < e) {
                let state = inner.partition_state(&tp);
                inner.after_wal_append(&tp, &state);
            }
        }
    }
}
