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
}

impl GroupLog for GroupStore {
    fn ownership<'a>(&'a self, _group_id: &'a str) -> OwnershipFuture<'a> {
        Box::pin(std::future::ready(Ok(0)))
    }

    fn load(&self, _group_id: &str) -> Option<ImageGroup> {
        None
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
}
