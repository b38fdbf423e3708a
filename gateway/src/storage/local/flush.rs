//! Durability by group commit.
//!
//! An acks=all append writes its batch, then waits on the partition's `durable` watch until the
//! durable offset passes its end. At most one sync loop runs per partition, on the blocking
//! pool: each round takes, under the partition lock, the files written so far (rolled segments
//! and the active one) and the high watermark, releases the lock, `fdatasync`s the files and
//! publishes the high watermark as durable. Every append written before a round started is
//! covered by that round's single fdatasync, so concurrent producers share syncs, and appends
//! and reads continue while a sync is in flight. Different partitions sync in parallel.
//!
//! A failed fsync marks the partition offline (its page cache may have dropped the data), wakes
//! waiters with the error and refuses further appends.

use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{debug, error};

use super::partition::Partition;
use super::segment;
use super::Inner;
use crate::storage::{Offset, Result, StorageError};

/// What the flusher has made durable.
#[derive(Debug, Clone)]
pub(crate) struct SyncStatus {
    /// Every offset below this is on stable storage.
    pub(crate) durable: Offset,
    /// The error of a failed sync; the partition is offline once set.
    pub(crate) failed: Option<Arc<str>>,
}

impl Partition {
    /// True when written data or sealed segments are waiting for a sync.
    pub(crate) fn is_dirty(&self) -> bool {
        let st = self.state.lock();
        !st.sealed.is_empty() || st.next_offset() > self.durable.borrow().durable
    }

    /// Waits until every offset below `end` is durable, starting a sync if none runs.
    ///
    /// # Errors
    /// [`StorageError::Io`] when the sync failed or the partition was dropped.
    pub(crate) async fn wait_durable(self: &Arc<Self>, end: Offset) -> Result<()> {
        let mut rx = self.durable.subscribe();
        if rx.borrow().durable >= end {
            return Ok(());
        }
        self.request_sync();
        let status = rx
            .wait_for(|s| s.durable >= end || s.failed.is_some())
            .await
            .map_err(|_| {
                StorageError::Io(std::io::Error::other(format!("partition {} was closed", self.tp)))
            })?;
        match &status.failed {
            Some(why) if status.durable < end => Err(StorageError::Io(std::io::Error::other(format!(
                "fsync of {} failed: {why}",
                self.tp
            )))),
            _ => Ok(()),
        }
    }

    /// Starts the partition's sync loop unless it is already running.
    pub(crate) fn request_sync(self: &Arc<Self>) {
        let mut running = self.syncing.lock();
        if *running {
            return;
        }
        *running = true;
        let me = Arc::clone(self);
        tokio::task::spawn_blocking(move || me.sync_loop());
    }

    /// Syncs until nothing written is left unsynced. Runs on the blocking pool.
    fn sync_loop(&self) {
        loop {
            let (sealed, active, end) = {
                let mut st = self.state.lock();
                (
                    std::mem::take(&mut st.sealed),
                    Arc::clone(&st.active().file),
                    st.next_offset(),
                )
            };
            let result = (|| -> std::io::Result<()> {
                for s in &sealed {
                    s.file.sync_data()?;
                    segment::write_indexes(&self.dir, s.base_offset, &s.offset_index, &s.time_index)?;
                }
                active.sync_data()?;
                if !sealed.is_empty() {
                    // New segment files were created: make their directory entries durable.
                    super::meta::fsync_dir(&self.dir)?;
                }
                Ok(())
            })();
            if let Err(e) = result {
                error!(partition = %self.tp, error = %e, "fsync failed, taking partition offline");
                let why: Arc<str> = e.to_string().into();
                self.state.lock().failed = Some(Arc::clone(&why));
                self.durable.send_modify(|s| s.failed = Some(why));
                *self.syncing.lock() = false;
                return;
            }
            self.durable.send_if_modified(|s| {
                let advanced = end > s.durable;
                s.durable = s.durable.max(end);
                advanced
            });
            // Checked under `syncing`: an append that finishes its write after this check
            // finds `running == false` and starts a new loop, so no write is left unsynced.
            let mut running = self.syncing.lock();
            let st = self.state.lock();
            if st.sealed.is_empty() && st.next_offset() <= self.durable.borrow().durable {
                *running = false;
                return;
            }
        }
    }
}

/// Starts a sync on every dirty partition every `period`, until cancelled or the storage is
/// dropped. This is the only flushing for `FsyncMode::Interval`, and covers acks<all writes
/// under `FsyncMode::Always`.
pub(crate) async fn run_periodic_flush(inner: Weak<Inner>, period: Duration, cancel: CancellationToken) {
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = cancel.cancelled() => break,
            _ = tick.tick() => {}
        }
        let Some(inner) = inner.upgrade() else { break };
        for p in inner.all_partitions() {
            if p.is_dirty() {
                p.request_sync();
            }
        }
    }
    debug!("periodic flush stopped");
}
