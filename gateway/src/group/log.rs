//! [`GroupLog`]: where a coordinator's group records become durable and which groups this
//! gateway coordinates.
//!
//! Two implementations: [`GroupStore`] (a local file log; this process coordinates every group)
//! and the raft-backed log of `crate::cluster`, where each group has one owner at a time with a
//! fencing epoch. The coordinator stamps every group it holds in memory with the epoch it was
//! loaded under, and reloads the group from [`GroupLog::load`] when the epoch changes.

use std::future::Future;
use std::pin::Pin;

use kafka_protocol::ResponseError;
use tokio::sync::oneshot;

use super::record::GroupRecord;
use super::store::{GroupStore, ImageGroup, StoreError};

/// The future of [`GroupLog::ownership`].
pub type OwnershipFuture<'a> = Pin<Box<dyn Future<Output = Result<u64, ResponseError>> + Send + 'a>>;

/// The future of [`GroupLog::renew`] and [`GroupLog::release`].
pub type LogFuture<'a> = Pin<Box<dyn Future<Output = Result<(), StoreError>> + Send + 'a>>;

/// Durability and ownership of consumer groups.
pub trait GroupLog: Send + Sync + std::fmt::Debug + 'static {
    /// The epoch under which this gateway coordinates `group_id`, claiming the group first if
    /// nobody owns it; otherwise the Kafka error to answer with (NOT_COORDINATOR when another
    /// node owns it, COORDINATOR_NOT_AVAILABLE when ownership cannot be decided now).
    fn ownership<'a>(&'a self, group_id: &'a str) -> OwnershipFuture<'a>;

    /// The durable state of `group_id`, read when this gateway starts coordinating it. `None`
    /// when nothing is stored (or, for a log replayed at open, always).
    fn load(&self, group_id: &str) -> Option<ImageGroup>;

    /// Groups with durable state that this gateway coordinates but may not have loaded yet.
    fn owned_groups(&self) -> Vec<String>;

    /// Appends `records` of `group_id`, written under `epoch`. Calls for one group are logged in
    /// call order; the receiver resolves once the records are durable, or with
    /// [`StoreError::Fenced`] when `epoch` is no longer this gateway's.
    fn submit(
        &self,
        group_id: &str,
        epoch: u64,
        records: Vec<GroupRecord>,
    ) -> oneshot::Receiver<Result<(), StoreError>>;

    /// Retires `epoch` of `group_id` after one of its writes failed, so the coordinator drops
    /// the in-memory group (which holds the failed change) and reloads it with [`Self::load`].
    /// Ordered after every earlier [`Self::submit`] of the group: once it resolves `Ok`, those
    /// writes are durable or refused, [`Self::load`] reflects the durable ones, and
    /// [`Self::ownership`] answers a newer epoch (or another owner). Writes under `epoch`
    /// submitted later are fenced.
    ///
    /// # Errors
    /// [`StoreError`] when the log cannot order the renewal now; the caller retries later.
    fn renew<'a>(&'a self, group_id: &'a str, epoch: u64) -> LogFuture<'a>;

    /// Groups this gateway holds a claim on but that have no durable state (claimed by a
    /// FindCoordinator or a request that wrote nothing), with the claim's epoch.
    fn idle_claims(&self) -> Vec<(String, u64)>;

    /// Drops each claim `(group_id, epoch)` whose group still has no durable state and is still
    /// held under that epoch, so groups that were looked up but never used do not accumulate.
    ///
    /// # Errors
    /// [`StoreError`] when the log cannot take the change now.
    fn release(&self, claims: Vec<(String, u64)>) -> LogFuture<'_>;
}

/// The local log coordinates every group; its epochs only count how often a group's in-memory
/// state was discarded after a failed write.
impl GroupLog for GroupStore {
    fn ownership<'a>(&'a self, group_id: &'a str) -> OwnershipFuture<'a> {
        let epoch = self.epochs.lock().get(group_id).copied().unwrap_or(0);
        Box::pin(std::future::ready(Ok(epoch)))
    }

    /// Groups are replayed at open; this serves the reload after a failed write.
    fn load(&self, group_id: &str) -> Option<ImageGroup> {
        self.image_of(group_id)
    }

    fn owned_groups(&self) -> Vec<String> {
        Vec::new()
    }

    fn submit(
        &self,
        _group_id: &str,
        _epoch: u64,
        records: Vec<GroupRecord>,
    ) -> oneshot::Receiver<Result<(), StoreError>> {
        GroupStore::submit(self, records)
    }

    fn renew<'a>(&'a self, group_id: &'a str, epoch: u64) -> LogFuture<'a> {
        Box::pin(async move {
            // An empty submission is acknowledged after every earlier one.
            GroupStore::submit(self, Vec::new())
                .await
                .unwrap_or(Err(StoreError::Closed))?;
            let mut epochs = self.epochs.lock();
            let current = epochs.entry(group_id.to_owned()).or_default();
            if *current == epoch {
                *current += 1;
            }
            Ok(())
        })
    }

    fn idle_claims(&self) -> Vec<(String, u64)> {
        Vec::new()
    }

    fn release(&self, _claims: Vec<(String, u64)>) -> LogFuture<'_> {
        Box::pin(std::future::ready(Ok(())))
    }
}
