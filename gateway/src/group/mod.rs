//! Consumer groups: Kafka's classic group protocol and committed offsets.
//!
//! Layers, each hiding the one below:
//! - [`GroupState`] (`state.rs`, `join.rs`, `membership.rs`, `offsets.rs`): one group's pure,
//!   I/O-free state machine (Empty, PreparingRebalance, CompletingRebalance, Stable, Dead) with
//!   its committed offsets. Time is a `now_ms` argument; calls return either a response or a
//!   [`Token`] for a response that a later call or [`GroupState::tick`] completes. Side effects
//!   (durable records, completions, rebalance events) accumulate in [`Effects`], drained by the
//!   caller with [`GroupState::take_effects`].
//! - [`record`] and [`store`]: the durable form, an append-only log of [`GroupRecord`]s with
//!   snapshots, replayed on start.
//! - [`GroupCoordinator`] (`coordinator.rs`): the async wrapper handlers call. It holds one mutex
//!   per group, persists records before answering, resolves pending JoinGroup/SyncGroup futures,
//!   and drives [`GroupState::tick`] from one timer task that sleeps until the next deadline.
//! - [`GroupMetrics`]: group counts by state, rebalances, and capped consumer lag series.
//!
//! Protocol metadata and assignments are opaque [`bytes::Bytes`] everywhere; the only place they
//! are looked into is [`subscription`], which reads a `consumer` group's subscribed topics the way
//! Kafka does (offset expiry and OffsetDelete need them).

use kafka_protocol::ResponseError;

mod coordinator;
mod join;
mod log;
mod member;
mod membership;
mod metrics;
mod offsets;
mod persist;
mod rebalance;
pub mod record;
mod registry;
mod state;
pub mod store;
pub mod subscription;
mod timer;
mod types;

#[cfg(test)]
mod tests;

pub use coordinator::{GroupCoordinator, PartitionResults};
pub use log::{GroupLog, LogFuture, OwnershipFuture};
pub use member::Member;
pub use metrics::GroupMetrics;
pub use record::GroupRecord;
pub use state::{Completion, Effects, GroupPhase, GroupState, Reply, Token};
pub use store::StoreError;
pub use types::*;

/// Group coordinator settings, named after the Kafka broker configs they mirror.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupConfig {
    /// `group.min.session.timeout.ms`: smallest session timeout a member may ask for.
    pub min_session_timeout_ms: u64,
    /// `group.max.session.timeout.ms`: largest session timeout a member may ask for.
    pub max_session_timeout_ms: u64,
    /// `group.initial.rebalance.delay.ms`: how long the first rebalance of an empty group waits
    /// for more members (extended by each newcomer, bounded by the rebalance timeout).
    pub initial_rebalance_delay_ms: u64,
    /// `group.max.size`: most members a group accepts.
    pub max_size: usize,
    /// How long a member that joined for the first time may wait in a rebalance before it is
    /// dropped (Kafka's fixed five minutes).
    pub new_member_join_timeout_ms: u64,
    /// `offsets.retention.minutes` in milliseconds.
    pub offsets_retention_ms: u64,
    /// `offsets.retention.check.interval.ms`.
    pub offsets_retention_check_interval_ms: u64,
    /// `offset.metadata.max.bytes`: longest metadata string a commit may carry.
    pub offset_metadata_max_bytes: usize,
    /// Size of the live group log above which it is compacted into a snapshot.
    pub log_compact_bytes: u64,
}

impl Default for GroupConfig {
    fn default() -> Self {
        Self {
            min_session_timeout_ms: 6_000,
            max_session_timeout_ms: 1_800_000,
            initial_rebalance_delay_ms: 3_000,
            max_size: i32::MAX as usize,
            new_member_join_timeout_ms: 300_000,
            offsets_retention_ms: 7 * 24 * 60 * 60 * 1000,
            offsets_retention_check_interval_ms: 600_000,
            offset_metadata_max_bytes: 4096,
            log_compact_bytes: 16 * 1024 * 1024,
        }
    }
}

/// Failures of the group coordinator layer (Kafka-level refusals are [`ResponseError`]s in the
/// responses, not this type).
#[derive(Debug, thiserror::Error)]
pub enum GroupError {
    /// The durable group log could not be read or written.
    #[error("group store failed")]
    Store(#[from] StoreError),
    /// The prometheus registry refused a metric (duplicate registration).
    #[error("group metrics registration failed")]
    Metrics(#[from] prometheus::Error),
}

impl GroupError {
    /// The Kafka error a request failing with this error is answered with.
    pub fn response_error(&self) -> ResponseError {
        match self {
            GroupError::Store(e) => e.response_error(),
            GroupError::Metrics(_) => ResponseError::UnknownServerError,
        }
    }

    /// A bounded label for metrics and logs.
    pub fn metric_label(&self) -> &'static str {
        match self {
            GroupError::Store(_) => "store",
            GroupError::Metrics(_) => "metrics",
        }
    }
}
