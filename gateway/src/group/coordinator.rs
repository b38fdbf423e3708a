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
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kafka_protocol::ResponseError;
use parking_lot::Mutex;
use tokio::sync::{oneshot, Notify};
use tokio_util::sync::CancellationToken;

use super::state::{Completion, GroupPhase, GroupState, Reply, Token};
use super::store::{GroupStore, StoreError};
use super::timer::Schedule;
use super::types::*;
use super::{GroupConfig, GroupError, GroupMetrics};
use crate::storage::{Offset, TopicPartition};

/// Per-partition results of OffsetCommit and OffsetDelete.
pub type PartitionResults = Vec<(TopicPartition, Option<ResponseError>)>;

/// Milliseconds since the Unix epoch, advancing with tokio's clock (so paused-time tests and
/// production read the same source).
#[derive(Debug, Clone, Copy)]
struct Clock {
    base_ms: u64,
    start: tokio::time::Instant,
}

impl Clock {
    fn new() -> Self {
        let base_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        Self {
            base_ms,
            start: tokio::time::Instant::now(),
        }
    }

    fn now_ms(&self) -> u64 {
        self.base_ms + self.start.elapsed().as_millis() as u64
    }

    fn instant_at(&self, ms: u64) -> tokio::time::Instant {
        self.start + Duration::from_millis(ms.saturating_sub(self.base_ms))
    }
}

enum Waiter {
    Join(oneshot::Sender<JoinResponse>),
    Sync(oneshot::Sender<SyncResponse>),
}

struct Slot {
    state: GroupState,
    waiters: HashMap<Token, Waiter>,
}

type SlotRef = Arc<Mutex<Slot>>;

/// Either an answer now or a receiver of the answer.
enum Answer<T> {
    Now(T),
    Later(oneshot::Receiver<T>),
}

struct Inner {
    config: GroupConfig,
    clock: Clock,
    groups: Mutex<HashMap<String, SlotRef>>,
    store: GroupStore,
    schedule: Mutex<Schedule>,
    wake: Arc<Notify>,
    metrics: GroupMetrics,
}

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
            groups.insert(
                id.clone(),
                Arc::new(Mutex::new(Slot {
                    state,
                    waiters: HashMap::new(),
                })),
            );
        }
        let wake = Arc::new(Notify::new());
        let inner = Arc::new(Inner {
            config,
            clock,
            groups: Mutex::new(groups),
            store,
            schedule: Mutex::new(schedule),
            wake: wake.clone(),
            metrics,
        });
        tokio::spawn(run_timer(Arc::downgrade(&inner), wake, shutdown));
        Ok(Self { inner })
    }

    /// JoinGroup. Resolves when the member has passed the join barrier (or at once for errors,
    /// MEMBER_ID_REQUIRED, and rejoins that change nothing).
    pub async fn join_group(&self, group_id: &str, req: JoinRequest) -> JoinResponse {
        let member_id = req.member_id.clone();
        let fail = |e| JoinResponse::error(member_id.as_str(), e);
        if group_id.is_empty() {
            return fail(ResponseError::InvalidGroupId);
        }
        let Some(slot) = self.inner.slot(group_id, req.member_id.is_empty()) else {
            return fail(ResponseError::UnknownMemberId);
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
            Err(_) => fail(ResponseError::CoordinatorNotAvailable),
        }
    }

    /// SyncGroup. Followers resolve when the leader's assignment arrives.
    pub async fn sync_group(&self, group_id: &str, req: SyncRequest) -> SyncResponse {
        if group_id.is_empty() {
            return SyncResponse::error(ResponseError::InvalidGroupId);
        }
        let Some(slot) = self.inner.slot(group_id, false) else {
            return SyncResponse::error(ResponseError::UnknownMemberId);
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
            Err(_) => SyncResponse::error(ResponseError::CoordinatorNotAvailable),
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
            .ok_or(ResponseError::UnknownMemberId)?;
        self.inner
            .apply(group_id, &slot, |s, now| {
                s.state.heartbeat(member_id, instance_id, generation, now)
            })
            .await
            .map_err(|_| ResponseError::CoordinatorNotAvailable)?
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
        let Some(slot) = self.inner.slot(group_id, false) else {
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
            .map_err(|_| ResponseError::CoordinatorNotAvailable)?
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
            .ok_or(ResponseError::IllegalGeneration)?;
        self.inner
            .apply(group_id, &slot, |s, now| s.state.commit_offsets(req, now))
            .await
            .map_err(|_| ResponseError::CoordinatorNotAvailable)?
    }

    /// OffsetFetch: the committed offsets of `partitions`, or of every partition with one when
    /// `None`. Partitions without a commit (or an unknown group) map to `None`.
    pub fn fetch_offsets(
        &self,
        group_id: &str,
        partitions: Option<&[TopicPartition]>,
    ) -> Vec<(TopicPartition, Option<CommittedOffset>)> {
        let slot = self.inner.slot(group_id, false);
        let guard = slot.as_ref().map(|s| s.lock());
        let state = guard
            .as_ref()
            .map(|g| &g.state)
            .filter(|s| s.phase() != GroupPhase::Dead);
        match partitions {
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
        }
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
            .ok_or(ResponseError::GroupIdNotFound)?;
        self.inner
            .apply(group_id, &slot, |s, _| s.state.delete_offsets(partitions))
            .await
            .map_err(|_| ResponseError::CoordinatorNotAvailable)?
    }

    /// DeleteGroups: each group is deleted only if Empty.
    pub async fn delete_groups(&self, group_ids: &[String]) -> Vec<(String, Option<ResponseError>)> {
        let mut results = Vec::with_capacity(group_ids.len());
        for id in group_ids {
            let error = match self.inner.slot(id, false) {
                None => Some(ResponseError::GroupIdNotFound),
                Some(slot) => match self
                    .inner
                    .apply(id, &slot, |s, now| s.state.delete_group(now))
                    .await
                {
                    Ok(r) => r.err(),
                    Err(_) => Some(ResponseError::CoordinatorNotAvailable),
                },
            };
            results.push((id.clone(), error));
        }
        results
    }

    /// ListGroups, filtered by state names (case-insensitive) and group types (`classic`), each
    /// filter ignored when empty.
    pub fn list_groups(&self, states: &[String], types: &[String]) -> Vec<GroupListing> {
        if !types.is_empty() && !types.iter().any(|t| t.eq_ignore_ascii_case("classic")) {
            return Vec::new();
        }
        let mut listings: Vec<GroupListing> = self
            .inner
            .slots()
            .iter()
            .map(|s| s.lock().state.listing())
            .filter(|l| l.state != GroupPhase::Dead.as_str())
            .filter(|l| states.is_empty() || states.iter().any(|s| s.eq_ignore_ascii_case(l.state)))
            .collect();
        listings.sort_by(|a, b| a.group_id.cmp(&b.group_id));
        listings
    }

    /// DescribeGroups for one group; `None` if it does not exist.
    pub fn describe_group(&self, group_id: &str) -> Option<GroupDescription> {
        let slot = self.inner.slot(group_id, false)?;
        let description = slot.lock().state.describe();
        (description.state != GroupPhase::Dead.as_str()).then_some(description)
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

    /// Runs offset expiry now (the timer also runs it periodically).
    pub async fn expire_offsets(&self) {
        self.inner.expire_offsets().await;
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

    /// The configuration in force.
    pub fn config(&self) -> &GroupConfig {
        &self.inner.config
    }
}

impl Inner {
    /// The group's slot; with `create`, a missing or dead group is (re)created Empty.
    fn slot(&self, group_id: &str, create: bool) -> Option<SlotRef> {
        let mut groups = self.groups.lock();
        if let Some(slot) = groups.get(group_id) {
            if !create || slot.lock().state.phase() != GroupPhase::Dead {
                return Some(slot.clone());
            }
        }
        if !create {
            return None;
        }
        let state = GroupState::new(group_id, self.config, self.clock.now_ms());
        self.metrics.transition(None, Some(GroupPhase::Empty));
        let slot = Arc::new(Mutex::new(Slot {
            state,
            waiters: HashMap::new(),
        }));
        groups.insert(group_id.to_owned(), slot.clone());
        Some(slot)
    }

    fn slots(&self) -> Vec<SlotRef> {
        self.groups.lock().values().cloned().collect()
    }

    /// Runs `f` on the group at the current time, persists the records it produced, then
    /// delivers completions (as errors if persisting failed) and returns `f`'s output.
    async fn apply<T>(
        &self,
        group_id: &str,
        slot: &SlotRef,
        f: impl FnOnce(&mut Slot, u64) -> T,
    ) -> Result<T, StoreError> {
        let (out, ack, deliveries, dead) = {
            let mut s = slot.lock();
            let now = self.clock.now_ms();
            let live = |p: GroupPhase| (p != GroupPhase::Dead).then_some(p);
            let before = live(s.state.phase());
            let out = f(&mut s, now);
            let after = live(s.state.phase());
            self.metrics.transition(before, after);
            let effects = s.state.take_effects();
            effects
                .rebalances_ms
                .iter()
                .for_each(|ms| self.metrics.rebalance(*ms));
            let ack = (!effects.records.is_empty()).then(|| self.store.submit(effects.records));
            let deliveries: Vec<(Waiter, Completion)> = effects
                .completions
                .into_iter()
                .filter_map(|c| {
                    let token = match &c {
                        Completion::Join(t, _) | Completion::Sync(t, _) => *t,
                    };
                    s.waiters.remove(&token).map(|w| (w, c))
                })
                .collect();
            if let Some(deadline) = s.state.next_deadline() {
                if self.schedule.lock().schedule(group_id, deadline) {
                    self.wake.notify_one();
                }
            }
            (out, ack, deliveries, after.is_none())
        };
        let stored = match ack {
            Some(rx) => rx.await.unwrap_or(Err(StoreError::Closed)),
            None => Ok(()),
        };
        for (waiter, completion) in deliveries {
            deliver(waiter, completion, stored.is_ok());
        }
        if dead {
            let mut groups = self.groups.lock();
            if groups.get(group_id).is_some_and(|s| Arc::ptr_eq(s, slot)) {
                groups.remove(group_id);
            }
        }
        stored.map(|()| out)
    }

    async fn expire_offsets(&self) {
        let retention = self.config.offsets_retention_ms;
        for slot in self.slots() {
            let id = slot.lock().state.group_id().to_owned();
            if let Err(e) = self
                .apply(&id, &slot, |s, now| s.state.expire_offsets(now, retention))
                .await
            {
                tracing::warn!(group = %id, error = %e, "offset expiry failed");
            }
        }
    }
}

fn deliver(waiter: Waiter, completion: Completion, stored: bool) {
    let failed = ResponseError::CoordinatorNotAvailable;
    // A send fails only when the caller went away (connection closed); nothing to do then.
    match (waiter, completion) {
        (Waiter::Join(tx), Completion::Join(_, r)) => {
            let _ = tx.send(if stored {
                r
            } else {
                JoinResponse::error(r.member_id, failed)
            });
        }
        (Waiter::Sync(tx), Completion::Sync(_, r)) => {
            let _ = tx.send(if stored { r } else { SyncResponse::error(failed) });
        }
        (Waiter::Join(tx), Completion::Sync(..)) => {
            let _ = tx.send(JoinResponse::error("", ResponseError::UnknownServerError));
        }
        (Waiter::Sync(tx), Completion::Join(..)) => {
            let _ = tx.send(SyncResponse::error(ResponseError::UnknownServerError));
        }
    }
}

/// The timer task: ticks due groups, runs offset expiry, sleeps until the next deadline.
async fn run_timer(inner: Weak<Inner>, wake: Arc<Notify>, shutdown: CancellationToken) {
    let mut next_expiry: Option<u64> = None;
    loop {
        let notified = wake.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let Some(strong) = inner.upgrade() else { return };
        let now = strong.clock.now_ms();
        let due = strong.schedule.lock().pop_due(now);
        for id in due {
            if let Some(slot) = strong.slot(&id, false) {
                if let Err(e) = strong.apply(&id, &slot, |s, now| s.state.tick(now)).await {
                    tracing::warn!(group = %id, error = %e, "group timeout handling failed to persist");
                }
            }
        }
        let interval = strong.config.offsets_retention_check_interval_ms;
        let expiry_at = next_expiry.get_or_insert(now + interval);
        if *expiry_at <= now {
            strong.expire_offsets().await;
            *expiry_at = strong.clock.now_ms() + interval;
        }
        let expiry_at = *expiry_at;
        let next = strong
            .schedule
            .lock()
            .peek()
            .map_or(expiry_at, |d| d.min(expiry_at));
        let at = strong.clock.instant_at(next);
        drop(strong);
        tokio::select! {
            _ = tokio::time::sleep_until(at) => {}
            _ = &mut notified => {}
            _ = shutdown.cancelled() => return,
        }
    }
}
