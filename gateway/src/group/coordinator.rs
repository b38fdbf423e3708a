//! [`GroupCoordinator`]: the async face of the group state machines.
//!
//! Each group lives in its own `parking_lot::Mutex` (short critical sections, never held across
//! an await). A call locks the group, runs the state machine at the current time, submits the
//! resulting records to the store while still holding the lock (so a group's records are logged
//! in state order), then awaits durability before answering the caller and completing any
//! pending JoinGroup/SyncGroup futures. One timer task sleeps until the earliest group deadline
//! (or until woken by an earlier one) and ticks the groups that are due; it also runs offset
//! expiry every `offsets_retention_check_interval_ms`.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::Arc;

use kafka_protocol::ResponseError;
use parking_lot::Mutex;
use tokio::sync::{oneshot, Notify};
use tokio_util::sync::CancellationToken;

use super::log::GroupLog;
use super::registry::{run_timer, Answer, Clock, Inner, Slot, Waiter};
use super::state::{GroupPhase, GroupState, Reply};
use super::store::{GroupStore, StoreError};
use super::timer::Schedule;
use super::types::*;
use super::{GroupConfig, GroupError, GroupMetrics};
use crate::storage::{Offset, TopicPartition};

/// Per-partition results of OffsetCommit and OffsetDelete.
pub type PartitionResults = Vec<(TopicPartition, Option<ResponseError>)>;

/// Consumer group coordinator for one gateway: group membership, committed offsets, and their
/// durability. Cheap to clone.
#[derive(Clone)]
pub struct GroupCoordinator {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for GroupCoordinator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupCoordinator")
            .field("groups", &self.inner.groups.lock().len())
            .finish()
    }
}

impl GroupCoordinator {
    /// Opens the group store in `dir` (replaying it), restores every group and starts the timer
    /// task, which stops when `shutdown` is cancelled or the coordinator is dropped.
    ///
    /// # Errors
    /// [`GroupError::Store`] if the store cannot be opened.
    pub async fn open(
        dir: &Path,
        config: GroupConfig,
        metrics: GroupMetrics,
        shutdown: CancellationToken,
    ) -> Result<Self, GroupError> {
        let path = dir.to_owned();
        let compact = config.log_compact_bytes;
        let (store, image) = tokio::task::spawn_blocking(move || GroupStore::open(&path, compact))
            .await
            .map_err(|_| GroupError::Store(StoreError::Closed))??;
        let clock = Clock::new();
        let now = clock.now_ms();
        let mut groups = HashMap::new();
        let mut schedule = Schedule::default();
        for (id, image_group) in &image.groups {
            let state = GroupState::restore(id, image_group, config, now);
            metrics.transition(None, Some(state.phase()));
            if let Some(deadline) = state.next_deadline() {
                schedule.schedule(id, deadline);
            }
            groups.insert(id.clone(), Arc::new(Mutex::new(Slot::new(state, 0))));
        }
        let wake = Arc::new(Notify::new());
        let inner = Arc::new(Inner {
            config,
            clock,
            groups: Mutex::new(groups),
            log: Arc::new(store),
            schedule: Mutex::new(schedule),
            wake: wake.clone(),
            metrics,
        });
        tokio::spawn(run_timer(Arc::downgrade(&inner), wake, shutdown));
        Ok(Self { inner })
    }

    /// A coordinator whose groups live in `log` (the cluster's replicated log): groups are
    /// loaded when this gateway starts coordinating them, not at open. The timer task stops when
    /// `shutdown` is cancelled or the coordinator is dropped.
    pub fn with_log(
        log: Arc<dyn GroupLog>,
        config: GroupConfig,
        metrics: GroupMetrics,
        shutdown: CancellationToken,
    ) -> Self {
        let wake = Arc::new(Notify::new());
        let inner = Arc::new(Inner {
            config,
            clock: Clock::new(),
            groups: Mutex::new(HashMap::new()),
            log,
            schedule: Mutex::new(Schedule::default()),
            wake: wake.clone(),
            metrics,
        });
        tokio::spawn(run_timer(Arc::downgrade(&inner), wake, shutdown));
        Self { inner }
    }

    /// JoinGroup. Resolves when the member has passed the join barrier (or at once for errors,
    /// MEMBER_ID_REQUIRED, and rejoins that change nothing).
    pub async fn join_group(&self, group_id: &str, req: JoinRequest) -> JoinResponse {
        let member_id = req.member_id.clone();
        let fail = |e| JoinResponse::error(member_id.as_str(), e);
        if group_id.is_empty() {
            return fail(ResponseError::InvalidGroupId);
        }
        let slot = match self.inner.slot(group_id, req.member_id.is_empty()).await {
            Ok(Some(slot)) => slot,
            Ok(None) => return fail(ResponseError::UnknownMemberId),
            Err(e) => return fail(e),
        };
        let answer = self
            .inner
            .apply(group_id, &slot, |s, now| match s.state.join_group(req, now) {
                Reply::Done(r) => Answer::Now(r),
                Reply::Pending(token) => {
                    let (tx, rx) = oneshot::channel();
                    s.waiters.insert(token, Waiter::Join(tx));
                    Answer::Later(rx)
                }
            });
        match answer.await {
            Ok(Answer::Now(r)) => r,
            Ok(Answer::Later(rx)) => rx
                .await
                .unwrap_or_else(|_| fail(ResponseError::CoordinatorNotAvailable)),
            Err(e) => fail(e.response_error()),
        }
    }

    /// SyncGroup. Followers resolve when the leader's assignment arrives.
    pub async fn sync_group(&self, group_id: &str, req: SyncRequest) -> SyncResponse {
        if group_id.is_empty() {
            return SyncResponse::error(ResponseError::InvalidGroupId);
        }
        let slot = match self.inner.slot(group_id, false).await {
            Ok(Some(slot)) => slot,
            Ok(None) => return SyncResponse::error(ResponseError::UnknownMemberId),
            Err(e) => return SyncResponse::error(e),
        };
        let answer = self
            .inner
            .apply(group_id, &slot, |s, now| match s.state.sync_group(req, now) {
                Reply::Done(r) => Answer::Now(r),
                Reply::Pending(token) => {
                    let (tx, rx) = oneshot::channel();
                    s.waiters.insert(token, Waiter::Sync(tx));
                    Answer::Later(rx)
                }
            });
        match answer.await {
            Ok(Answer::Now(r)) => r,
            Ok(Answer::Later(rx)) => rx
                .await
                .unwrap_or_else(|_| SyncResponse::error(ResponseError::CoordinatorNotAvailable)),
            Err(e) => SyncResponse::error(e.response_error()),
        }
    }

    /// Heartbeat.
    ///
    /// # Errors
    /// The Kafka error to answer with (REBALANCE_IN_PROGRESS asks the member to rejoin).
    pub async fn heartbeat(
        &self,
        group_id: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
    ) -> Result<(), ResponseError> {
        if group_id.is_empty() {
            return Err(ResponseError::InvalidGroupId);
        }
        let slot = self
            .inner
            .slot(group_id, false)
            .await?
            .ok_or(ResponseError::UnknownMemberId)?;
        self.inner
            .apply(group_id, &slot, |s, now| {
                s.state.heartbeat(member_id, instance_id, generation, now)
            })
            .await
            .map_err(|e| e.response_error())?
    }

    /// LeaveGroup (batch form; v0-v2 pass one member).
    ///
    /// # Errors
    /// A group-level error; per-member errors are in the results.
    pub async fn leave_group(
        &self,
        group_id: &str,
        members: Vec<LeavingMember>,
    ) -> Result<Vec<LeaveResult>, ResponseError> {
        if group_id.is_empty() {
            return Err(ResponseError::InvalidGroupId);
        }
        let Some(slot) = self.inner.slot(group_id, false).await? else {
            let unknown = Some(ResponseError::UnknownMemberId);
            return Ok(members
                .into_iter()
                .map(|member| LeaveResult {
                    member,
                    error: unknown,
                })
                .collect());
        };
        self.inner
            .apply(group_id, &slot, |s, now| s.state.leave_group(members, now))
            .await
            .map_err(|e| e.response_error())?
    }

    /// OffsetCommit. Resolves once the offsets are durable.
    ///
    /// # Errors
    /// An error for every partition of the request (validation or store failure).
    pub async fn commit_offsets(
        &self,
        group_id: &str,
        req: CommitRequest,
    ) -> Result<PartitionResults, ResponseError> {
        let create = req.generation_id < 0;
        let slot = self
            .inner
            .slot(group_id, create)
            .await?
            .ok_or(ResponseError::IllegalGeneration)?;
        self.inner
            .apply(group_id, &slot, |s, now| s.state.commit_offsets(req, now))
            .await
            .map_err(|e| e.response_error())?
    }

    /// OffsetFetch: the committed offsets of `partitions`, or of every partition with one when
    /// `None`. Partitions without a commit (or an unknown group) map to `None`.
    ///
    /// # Errors
    /// NOT_COORDINATOR or COORDINATOR_NOT_AVAILABLE when this gateway does not coordinate the
    /// group.
    pub async fn fetch_offsets(
        &self,
        group_id: &str,
        partitions: Option<&[TopicPartition]>,
    ) -> Result<Vec<(TopicPartition, Option<CommittedOffset>)>, ResponseError> {
        let slot = self.inner.slot(group_id, false).await?;
        let guard = slot.as_ref().map(|s| s.lock());
        let state = guard
            .as_ref()
            .map(|g| &g.state)
            .filter(|s| s.phase() != GroupPhase::Dead);
        Ok(match partitions {
            Some(tps) => tps
                .iter()
                .map(|tp| (tp.clone(), state.and_then(|s| s.fetch_offset(tp).cloned())))
                .collect(),
            None => state
                .map(|s| {
                    s.offsets()
                        .iter()
                        .map(|(tp, o)| (tp.clone(), Some(o.clone())))
                        .collect()
                })
                .unwrap_or_default(),
        })
    }

    /// OffsetDelete.
    ///
    /// # Errors
    /// GROUP_ID_NOT_FOUND, NON_EMPTY_GROUP, or COORDINATOR_NOT_AVAILABLE on store failure.
    pub async fn delete_offsets(
        &self,
        group_id: &str,
        partitions: Vec<TopicPartition>,
    ) -> Result<PartitionResults, ResponseError> {
        let slot = self
            .inner
            .slot(group_id, false)
            .await?
            .ok_or(ResponseError::GroupIdNotFound)?;
        self.inner
            .apply(group_id, &slot, |s, _| s.state.delete_offsets(partitions))
            .await
            .map_err(|e| e.response_error())?
    }

    /// DeleteGroups: each group is deleted only if Empty.
    pub async fn delete_groups(&self, group_ids: &[String]) -> Vec<(String, Option<ResponseError>)> {
        let mut results = Vec::with_capacity(group_ids.len());
        for id in group_ids {
            let error = match self.inner.slot(id, false).await {
                Err(e) => Some(e),
                Ok(None) => Some(ResponseError::GroupIdNotFound),
                Ok(Some(slot)) => match self
                    .inner
                    .apply(id, &slot, |s, now| s.state.delete_group(now))
                    .await
                {
                    Ok(r) => r.err(),
                    Err(e) => Some(e.response_error()),
                },
            };
            results.push((id.clone(), error));
        }
        results
    }

    /// ListGroups, filtered by state names (case-insensitive) and group types (`classic`), each
    /// filter ignored when empty.
    pub async fn list_groups(&self, states: &[String], types: &[String]) -> Vec<GroupListing> {
        if !types.is_empty() && !types.iter().any(|t| t.eq_ignore_ascii_case("classic")) {
            return Vec::new();
        }
        // Every group this gateway coordinates, loaded or not; groups that moved away drop out.
        let mut ids: BTreeSet<String> = self.inner.log.owned_groups().into_iter().collect();
        ids.extend(
            self.inner
                .slots()
                .iter()
                .map(|s| s.lock().state.group_id().to_owned()),
        );
        let mut slots = Vec::with_capacity(ids.len());
        for id in &ids {
            if let Ok(Some(slot)) = self.inner.slot(id, false).await {
                slots.push(slot);
            }
        }
        let mut listings: Vec<GroupListing> = slots
            .iter()
            .map(|s| s.lock().state.listing())
            .filter(|l| l.state != GroupPhase::Dead.as_str())
            .filter(|l| states.is_empty() || states.iter().any(|s| s.eq_ignore_ascii_case(l.state)))
            .collect();
        listings.sort_by(|a, b| a.group_id.cmp(&b.group_id));
        listings
    }

    /// DescribeGroups for one group; `Ok(None)` if it does not exist.
    ///
    /// # Errors
    /// NOT_COORDINATOR or COORDINATOR_NOT_AVAILABLE when this gateway does not coordinate the
    /// group.
    pub async fn describe_group(&self, group_id: &str) -> Result<Option<GroupDescription>, ResponseError> {
        let Some(slot) = self.inner.slot(group_id, false).await? else {
            return Ok(None);
        };
        let description = slot.lock().state.describe();
        Ok((description.state != GroupPhase::Dead.as_str()).then_some(description))
    }

    /// Removes the committed offsets of deleted topics from every group.
    pub async fn remove_topics(&self, topics: &[String]) {
        let topics: BTreeSet<String> = topics.iter().cloned().collect();
        for slot in self.inner.slots() {
            let id = slot.lock().state.group_id().to_owned();
            if let Err(e) = self
                .inner
                .apply(&id, &slot, |s, _| s.state.remove_topics(&topics))
                .await
            {
                tracing::warn!(group = %id, error = %e, "removing offsets of deleted topics failed");
            }
        }
    }

    /// Runs offset expiry now, then releases idle group claims (the timer also does both
    /// every `offsets_retention_check_interval_ms`).
    pub async fn expire_offsets(&self) {
        self.inner.expire_offsets().await;
        self.inner.release_idle_claims().await;
    }

    /// Publishes consumer lag per group and partition: `hwm` returns a partition's high
    /// watermark (or `None` if unknown). Series beyond the metrics cap are dropped, largest
    /// lags kept.
    pub fn update_lag(&self, hwm: impl Fn(&TopicPartition) -> Option<Offset>) {
        let mut series = Vec::new();
        for slot in self.inner.slots() {
            let guard = slot.lock();
            for (tp, committed) in guard.state.offsets() {
                if let Some(high) = hwm(tp) {
                    let lag = (high - committed.offset).max(0);
                    series.push((
                        guard.state.group_id().to_owned(),
                        tp.topic.to_string(),
                        tp.partition,
                        lag,
                    ));
                }
            }
        }
        self.inner.metrics.set_lag(series);
    }

    /// Stops coordinating every group held in memory (at shutdown): pending JoinGroup and
    /// SyncGroup calls are answered COORDINATOR_NOT_AVAILABLE at once, so clients look for the
    /// coordinator elsewhere instead of holding the connection until the shutdown grace ends.
    pub fn release_all(&self) {
        let ids: Vec<String> = self.inner.groups.lock().keys().cloned().collect();
        for id in ids {
            self.inner.evict(&id);
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> &GroupConfig {
        &self.inner.config
    }
}
