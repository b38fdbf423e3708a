//! The coordinator's internals: the group registry, the locked call path that persists
//! effects before answering, and the timer task.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kafka_protocol::ResponseError;
use parking_lot::Mutex;
use tokio::sync::{oneshot, Notify};
use tokio_util::sync::CancellationToken;

use super::log::GroupLog;
use super::state::{Completion, GroupPhase, GroupState, Token};
use super::store::StoreError;
use super::timer::Schedule;
use super::types::{JoinResponse, SyncResponse};
use super::{GroupConfig, GroupMetrics};

/// Milliseconds since the Unix epoch, advancing with tokio's clock (so paused-time tests and
/// production read the same source).
#[derive(Debug, Clone, Copy)]
pub(super) struct Clock {
    base_ms: u64,
    start: tokio::time::Instant,
}

impl Clock {
    pub(super) fn new() -> Self {
        let base_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        Self {
            base_ms,
            start: tokio::time::Instant::now(),
        }
    }

    pub(super) fn now_ms(&self) -> u64 {
        self.base_ms + self.start.elapsed().as_millis() as u64
    }

    pub(super) fn instant_at(&self, ms: u64) -> tokio::time::Instant {
        self.start + Duration::from_millis(ms.saturating_sub(self.base_ms))
    }
}

pub(super) enum Waiter {
    Join(oneshot::Sender<JoinResponse>),
    Sync(oneshot::Sender<SyncResponse>),
}

pub(super) struct Slot {
    pub(super) state: GroupState,
    pub(super) waiters: HashMap<Token, Waiter>,
    /// Ownership epoch the group was loaded under; its records are written under it.
    pub(super) epoch: u64,
    /// A write of this group failed: `state` holds changes the log does not, so nothing is
    /// served from it or written on top of it; the group is reloaded once the log retired
    /// `epoch` ([`GroupLog::renew`]).
    pub(super) failed: bool,
    /// A renewal of `epoch` is under way or done.
    pub(super) renewing: bool,
}

impl Slot {
    pub(super) fn new(state: GroupState, epoch: u64) -> Self {
        Self {
            state,
            waiters: HashMap::new(),
            epoch,
            failed: false,
            renewing: false,
        }
    }
}

pub(super) type SlotRef = Arc<Mutex<Slot>>;

/// Either an answer now or a receiver of the answer.
pub(super) enum Answer<T> {
    Now(T),
    Later(oneshot::Receiver<T>),
}

pub(super) struct Inner {
    pub(super) config: GroupConfig,
    pub(super) clock: Clock,
    pub(super) groups: Mutex<HashMap<String, SlotRef>>,
    pub(super) log: Arc<dyn GroupLog>,
    pub(super) schedule: Mutex<Schedule>,
    pub(super) wake: Arc<Notify>,
    pub(super) metrics: GroupMetrics,
}

impl Inner {
    /// The group's slot if this gateway coordinates the group; with `create`, a missing or dead
    /// group is (re)created Empty. A group held under an older ownership epoch is dropped and
    /// reloaded from the durable log.
    ///
    /// # Errors
    /// The Kafka error to answer when this gateway does not coordinate the group.
    pub(super) async fn slot(&self, group_id: &str, create: bool) -> Result<Option<SlotRef>, ResponseError> {
        let epoch = match self.log.ownership(group_id).await {
            Ok(epoch) => epoch,
            Err(e) => {
                self.evict(group_id);
                return Err(e);
            }
        };
        let mut groups = self.groups.lock();
        if let Some(slot) = groups.get(group_id) {
            let (same_epoch, dead, failed) = {
                let s = slot.lock();
                (s.epoch == epoch, s.state.phase() == GroupPhase::Dead, s.failed)
            };
            if same_epoch && failed {
                // Retried here when an earlier renewal failed.
                self.renew(group_id, slot);
                return Err(ResponseError::CoordinatorNotAvailable);
            }
            if same_epoch && (!create || !dead) {
                return Ok(Some(slot.clone()));
            }
            if !same_epoch {
                let old = groups.remove(group_id);
                self.release(old);
            }
        }
        let now = self.clock.now_ms();
        let state = match self.log.load(group_id) {
            Some(image) => GroupState::restore(group_id, &image, self.config, now),
            None if create => GroupState::new(group_id, self.config, now),
            None => return Ok(None),
        };
        tracing::debug!(group = group_id, epoch, "coordinating group");
        self.metrics.transition(None, Some(state.phase()));
        if let Some(deadline) = state.next_deadline() {
            if self.schedule.lock().schedule(group_id, deadline) {
                self.wake.notify_one();
            }
        }
        let slot = Arc::new(Mutex::new(Slot::new(state, epoch)));
        groups.insert(group_id.to_owned(), slot.clone());
        Ok(Some(slot))
    }

    /// Marks the group failed (a write of it was not stored), answers its pending
    /// JoinGroup/SyncGroup calls, and asks the log to retire its epoch unless that is under way.
    /// The group is reloaded from the log by the first [`Inner::slot`] call after the log
    /// answers the new epoch.
    fn renew(&self, group_id: &str, slot: &SlotRef) {
        let epoch = {
            let mut s = slot.lock();
            s.failed = true;
            // Dropped senders answer COORDINATOR_NOT_AVAILABLE: the members rejoin.
            s.waiters.clear();
            if s.renewing {
                return;
            }
            s.renewing = true;
            s.epoch
        };
        tracing::info!(
            group = group_id,
            epoch,
            "discarding group state after a failed write"
        );
        let (log, slot, group_id) = (self.log.clone(), slot.clone(), group_id.to_owned());
        tokio::spawn(async move {
            if let Err(e) = log.renew(&group_id, epoch).await {
                tracing::warn!(group = %group_id, error = %e, "retiring the group epoch failed, will retry");
                slot.lock().renewing = false;
            }
        });
    }

    /// Forgets a group this gateway no longer coordinates; its pending JoinGroup/SyncGroup
    /// callers are answered by their dropped senders (COORDINATOR_NOT_AVAILABLE).
    pub(super) fn evict(&self, group_id: &str) {
        let old = self.groups.lock().remove(group_id);
        self.release(old);
    }

    fn release(&self, old: Option<SlotRef>) {
        if let Some(old) = old {
            let phase = old.lock().state.phase();
            let live = (phase != GroupPhase::Dead).then_some(phase);
            self.metrics.transition(live, None);
            tracing::info!(
                group = old.lock().state.group_id(),
                "no longer coordinating group"
            );
        }
    }

    pub(super) fn slots(&self) -> Vec<SlotRef> {
        self.groups.lock().values().cloned().collect()
    }

    /// Runs `f` on the group at the current time, persists the records it produced, then
    /// delivers completions (as errors if persisting failed) and returns `f`'s output.
    pub(super) async fn apply<T>(
        &self,
        group_id: &str,
        slot: &SlotRef,
        f: impl FnOnce(&mut Slot, u64) -> T,
    ) -> Result<T, StoreError> {
        let (out, ack, deliveries, dead) = {
            let mut s = slot.lock();
            if s.failed {
                return Err(StoreError::Reloading);
            }
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
            let ack =
                (!effects.records.is_empty()).then(|| self.log.submit(group_id, s.epoch, effects.records));
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
        let fenced = matches!(stored, Err(StoreError::Fenced));
        if stored.is_err() && !fenced {
            self.renew(group_id, slot);
        }
        if dead || fenced {
            let mut groups = self.groups.lock();
            if groups.get(group_id).is_some_and(|s| Arc::ptr_eq(s, slot)) {
                let old = groups.remove(group_id);
                drop(groups);
                if fenced {
                    self.release(old);
                }
            }
        }
        stored.map(|()| out)
    }

    /// Runs offset expiry on every group held in memory, all groups at once so that one slow
    /// write holds up no other group.
    pub(super) async fn expire_offsets(&self) {
        let retention = self.config.offsets_retention_ms;
        let passes = self.slots().into_iter().map(|slot| async move {
            let id = slot.lock().state.group_id().to_owned();
            if let Err(e) = self
                .apply(&id, &slot, |s, now| s.state.expire_offsets(now, retention))
                .await
            {
                tracing::warn!(group = %id, error = %e, "offset expiry failed");
            }
        });
        futures::future::join_all(passes).await;
    }

    /// Drops this gateway's claims on groups that have no durable state and are not held in
    /// memory (looked up by FindCoordinator, never used), so they do not pile up in the log.
    pub(super) async fn release_idle_claims(&self) {
        let idle: Vec<(String, u64)> = {
            let groups = self.groups.lock();
            self.log
                .idle_claims()
                .into_iter()
                .filter(|(id, _)| !groups.contains_key(id))
                .collect()
        };
        if idle.is_empty() {
            return;
        }
        let claims = idle.len();
        match self.log.release(idle).await {
            Ok(()) => tracing::info!(claims, "released idle group claims"),
            Err(e) => tracing::warn!(claims, error = %e, "releasing idle group claims failed"),
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
///
/// Each due group is ticked in a task of its own, and expiry runs in one task at a time, so a
/// group whose write is slow (a raft proposal waiting for a quorum) delays no other group's
/// session or rebalance timeouts.
pub(super) async fn run_timer(inner: Weak<Inner>, wake: Arc<Notify>, shutdown: CancellationToken) {
    let mut next_expiry: Option<u64> = None;
    let mut expiry: Option<tokio::task::JoinHandle<()>> = None;
    loop {
        let notified = wake.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let Some(strong) = inner.upgrade() else { return };
        let now = strong.clock.now_ms();
        let due = strong.schedule.lock().pop_due(now);
        for id in due {
            let inner = strong.clone();
            tokio::spawn(async move {
                if let Ok(Some(slot)) = inner.slot(&id, false).await {
                    if let Err(e) = inner.apply(&id, &slot, |s, now| s.state.tick(now)).await {
                        tracing::warn!(group = %id, error = %e, "group timeout handling failed to persist");
                    }
                }
            });
        }
        let interval = strong.config.offsets_retention_check_interval_ms;
        let expiry_at = next_expiry.get_or_insert(now + interval);
        if *expiry_at <= now && expiry.as_ref().is_none_or(|t| t.is_finished()) {
            let inner = strong.clone();
            expiry = Some(tokio::spawn(async move {
                inner.expire_offsets().await;
                inner.release_idle_claims().await;
            }));
            *expiry_at = now + interval;
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
