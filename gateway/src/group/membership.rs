//! SyncGroup, Heartbeat, LeaveGroup, and the deadlines driven by [`GroupState::tick`].

use kafka_protocol::ResponseError;

use super::state::{GroupPhase, GroupState, Reply};
use super::types::{LeaveResult, LeavingMember, SyncRequest, SyncResponse};

impl GroupState {
    /// Checks shared by SyncGroup and Heartbeat: liveness, fencing, membership, generation.
    fn check_member(
        &self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
    ) -> Result<(), ResponseError> {
        if self.phase == GroupPhase::Dead {
            Err(ResponseError::CoordinatorNotAvailable)
        } else if self.is_fenced(instance_id, member_id) {
            Err(ResponseError::FencedInstanceId)
        } else if !self.members.contains_key(member_id) {
            Err(ResponseError::UnknownMemberId)
        } else if generation != self.generation {
            Err(ResponseError::IllegalGeneration)
        } else {
            Ok(())
        }
    }

    /// Handles a SyncGroup request. Followers wait (pending) until the leader's assignment
    /// arrives; the leader's call completes every waiting member and makes the group Stable.
    pub fn sync_group(&mut self, req: SyncRequest, now_ms: u64) -> Reply<SyncResponse> {
        let fail = |e| Reply::Done(SyncResponse::error(e));
        if let Err(e) = self.check_member(&req.member_id, req.instance_id.as_deref(), req.generation_id) {
            return fail(e);
        }
        let type_mismatch = req
            .protocol_type
            .as_ref()
            .is_some_and(|t| Some(t) != self.protocol_type.as_ref());
        let name_mismatch = req
            .protocol_name
            .as_ref()
            .is_some_and(|n| Some(n) != self.protocol_name.as_ref());
        if type_mismatch || name_mismatch {
            return fail(ResponseError::InconsistentGroupProtocol);
        }
        match self.phase {
            GroupPhase::Empty | GroupPhase::Dead => fail(ResponseError::UnknownMemberId),
            GroupPhase::PreparingRebalance => fail(ResponseError::RebalanceInProgress),
            GroupPhase::CompletingRebalance => {
                let token = self.next_token();
                self.pending_sync.remove(&req.member_id);
                let previous = self
                    .members
                    .get_mut(&req.member_id)
                    .and_then(|m| m.awaiting_sync.replace(token));
                self.complete_sync(previous, SyncResponse::error(ResponseError::RebalanceInProgress));
                if self.is_leader(&req.member_id) {
                    self.apply_assignment(req.assignments, now_ms);
                }
                Reply::Pending(token)
            }
            GroupPhase::Stable => {
                self.pending_sync.remove(&req.member_id);
                let Some(member) = self.members.get_mut(&req.member_id) else {
                    return fail(ResponseError::UnknownMemberId);
                };
                member.last_heartbeat_ms = now_ms;
                Reply::Done(SyncResponse {
                    error: None,
                    protocol_type: self.protocol_type.clone(),
                    protocol_name: self.protocol_name.clone(),
                    assignment: member.assignment.clone(),
                })
            }
        }
    }

    /// Stores the leader's assignment (members it left out get an empty one), persists the
    /// generation, answers every waiting member and enters Stable.
    fn apply_assignment(&mut self, assignments: Vec<(String, bytes::Bytes)>, now_ms: u64) {
        for m in self.members.values_mut() {
            m.assignment = bytes::Bytes::new();
        }
        for (member_id, assignment) in assignments {
            if let Some(m) = self.members.get_mut(&member_id) {
                m.assignment = assignment;
            }
        }
        self.transition(GroupPhase::Stable, now_ms);
        self.finish_rebalance(now_ms);
        self.persist_metadata();
        let mut done = Vec::new();
        for m in self.members.values_mut() {
            if let Some(token) = m.awaiting_sync.take() {
                m.last_heartbeat_ms = now_ms;
                done.push((token, m.assignment.clone()));
            }
        }
        for (token, assignment) in done {
            let response = SyncResponse {
                error: None,
                protocol_type: self.protocol_type.clone(),
                protocol_name: self.protocol_name.clone(),
                assignment,
            };
            self.complete_sync(Some(token), response);
        }
        tracing::info!(group = %self.group_id, generation = self.generation, "group stable");
    }

    /// Handles a Heartbeat request.
    ///
    /// # Errors
    /// The Kafka error to answer with; REBALANCE_IN_PROGRESS tells the member to rejoin.
    pub fn heartbeat(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        now_ms: u64,
    ) -> Result<(), ResponseError> {
        self.check_member(member_id, instance_id, generation)?;
        if self.phase == GroupPhase::Empty {
            return Err(ResponseError::UnknownMemberId);
        }
        if let Some(m) = self.members.get_mut(member_id) {
            m.last_heartbeat_ms = now_ms;
        }
        match self.phase {
            GroupPhase::PreparingRebalance => Err(ResponseError::RebalanceInProgress),
            _ => Ok(()),
        }
    }

    /// Handles a (batch) LeaveGroup request.
    ///
    /// # Errors
    /// COORDINATOR_NOT_AVAILABLE for a dead group; per-member errors are in the results.
    pub fn leave_group(
        &mut self,
        leaving: Vec<LeavingMember>,
        now_ms: u64,
    ) -> Result<Vec<LeaveResult>, ResponseError> {
        if self.phase == GroupPhase::Dead {
            return Err(ResponseError::CoordinatorNotAvailable);
        }
        let mut results = Vec::with_capacity(leaving.len());
        for member in leaving {
            let error = self.leave_one(&member, now_ms).err();
            results.push(LeaveResult { member, error });
        }
        Ok(results)
    }

    fn leave_one(&mut self, leaving: &LeavingMember, now_ms: u64) -> Result<(), ResponseError> {
        let instance = leaving.instance_id.as_deref();
        if !leaving.member_id.is_empty() && self.pending_members.remove(&leaving.member_id).is_some() {
            self.try_complete_join(now_ms);
            return Ok(());
        }
        let member_id = if leaving.member_id.is_empty() {
            let static_id = instance.and_then(|i| self.static_members.get(i)).cloned();
            static_id.ok_or(ResponseError::UnknownMemberId)?
        } else if self.is_fenced(instance, &leaving.member_id) {
            return Err(ResponseError::FencedInstanceId);
        } else {
            leaving.member_id.clone()
        };
        if !self.members.contains_key(&member_id) {
            return Err(ResponseError::UnknownMemberId);
        }
        tracing::info!(group = %self.group_id, member = %member_id, "member leaving");
        self.remove_member_and_update(&member_id, "member left the group", now_ms);
        Ok(())
    }

    /// The earliest time at which [`GroupState::tick`] has something to do.
    pub fn next_deadline(&self) -> Option<u64> {
        let mut deadlines = Vec::new();
        if self.phase == GroupPhase::PreparingRebalance {
            deadlines.extend(self.join_deadline_ms);
        }
        if !self.pending_sync.is_empty()
            && matches!(self.phase, GroupPhase::CompletingRebalance | GroupPhase::Stable)
        {
            deadlines.extend(self.sync_deadline_ms);
        }
        let new_member_timeout = self.config.new_member_join_timeout_ms;
        deadlines.extend(
            self.members
                .values()
                .filter_map(|m| m.expiry_ms(new_member_timeout)),
        );
        deadlines.extend(self.pending_members.values().copied());
        deadlines.into_iter().min()
    }

    /// Fires every deadline due at `now_ms`: join barrier (initial delay steps, rebalance
    /// timeout), sync timeout, member session expiry, pending member expiry.
    pub fn tick(&mut self, now_ms: u64) {
        if self.phase == GroupPhase::Dead {
            return;
        }
        if self.phase == GroupPhase::PreparingRebalance && self.join_deadline_ms.is_some_and(|d| d <= now_ms)
        {
            self.join_deadline_expired(now_ms);
        }
        let sync_due = self.sync_deadline_ms.is_some_and(|d| d <= now_ms);
        if sync_due && matches!(self.phase, GroupPhase::CompletingRebalance | GroupPhase::Stable) {
            self.sync_deadline_ms = None;
            let missing: Vec<String> = std::mem::take(&mut self.pending_sync).into_iter().collect();
            if !missing.is_empty() {
                for id in &missing {
                    tracing::info!(group = %self.group_id, member = %id, "member did not sync before rebalance timeout");
                    self.remove_member(id);
                }
                self.maybe_prepare_rebalance("members failed to sync", now_ms);
            }
        }
        let new_member_timeout = self.config.new_member_join_timeout_ms;
        let expired: Vec<String> = self
            .members
            .values()
            .filter(|m| m.expiry_ms(new_member_timeout).is_some_and(|d| d <= now_ms))
            .map(|m| m.member_id.clone())
            .collect();
        for id in expired {
            tracing::info!(group = %self.group_id, member = %id, "member session expired");
            self.remove_member_and_update(&id, "member session expired", now_ms);
        }
        let before = self.pending_members.len();
        self.pending_members.retain(|_, expiry| *expiry > now_ms);
        if self.pending_members.len() != before {
            self.try_complete_join(now_ms);
        }
    }

    fn join_deadline_expired(&mut self, now_ms: u64) {
        if let Some(delay) = self.initial_delay {
            if delay.new_member_added && delay.remaining_ms > 0 {
                let step = self.config.initial_rebalance_delay_ms.min(delay.remaining_ms);
                self.initial_delay = Some(super::state::InitialDelay {
                    remaining_ms: delay.remaining_ms - step,
                    new_member_added: false,
                });
                self.join_deadline_ms = Some(now_ms.saturating_add(step));
                return;
            }
        }
        self.finish_join(now_ms);
    }
}
