//! Membership changes and the rebalance cycle: Kafka's `prepareRebalance`, join barrier
//! completion (`onCompleteJoin`) and leader election among rejoined members.

use bytes::Bytes;
use kafka_protocol::ResponseError;

use super::member::Member;
use super::state::{GroupPhase, GroupState, InitialDelay, Token};
use super::types::{JoinResponse, SyncResponse};

impl GroupState {
    /// Adds a member (the first one sets the protocol type and leads).
    pub(crate) fn add_member(&mut self, member: Member, protocol_type: &str) {
        if self.members.is_empty() {
            self.protocol_type = Some(protocol_type.to_owned());
        }
        if self.leader.is_none() {
            self.leader = Some(member.member_id.clone());
        }
        if let Some(instance) = &member.instance_id {
            self.static_members
                .insert(instance.clone(), member.member_id.clone());
        }
        self.members.insert(member.member_id.clone(), member);
    }

    /// Removes a member, answering its pending calls with UNKNOWN_MEMBER_ID, and moves the
    /// leadership if it led.
    pub(crate) fn remove_member(&mut self, member_id: &str) -> Option<Member> {
        let member = self.members.remove(member_id)?;
        self.complete_join(
            member.awaiting_join,
            JoinResponse::error("", ResponseError::UnknownMemberId),
        );
        self.complete_sync(
            member.awaiting_sync,
            SyncResponse::error(ResponseError::UnknownMemberId),
        );
        if let Some(instance) = &member.instance_id {
            if self.static_members.get(instance).map(String::as_str) == Some(member_id) {
                self.static_members.remove(instance);
            }
        }
        self.pending_sync.remove(member_id);
        if self.is_leader(member_id) {
            let next = self
                .members
                .values()
                .find(|m| m.awaiting_join.is_some())
                .or_else(|| self.members.values().next());
            self.leader = next.map(|m| m.member_id.clone());
        }
        Some(member)
    }

    /// Kafka's `removeMemberAndUpdateGroup`.
    pub(crate) fn remove_member_and_update(&mut self, member_id: &str, reason: &str, now_ms: u64) {
        if self.remove_member(member_id).is_none() {
            return;
        }
        match self.phase {
            GroupPhase::Stable | GroupPhase::CompletingRebalance => self.prepare_rebalance(reason, now_ms),
            GroupPhase::PreparingRebalance => self.try_complete_join(now_ms),
            GroupPhase::Empty | GroupPhase::Dead => {}
        }
    }

    /// Starts a rebalance if the phase allows one (Kafka's `maybePrepareRebalance`).
    pub(crate) fn maybe_prepare_rebalance(&mut self, reason: &str, now_ms: u64) {
        if matches!(
            self.phase,
            GroupPhase::Stable | GroupPhase::CompletingRebalance | GroupPhase::Empty
        ) {
            self.prepare_rebalance(reason, now_ms);
        }
    }

    /// Enters PreparingRebalance and arms the join barrier.
    pub(crate) fn prepare_rebalance(&mut self, reason: &str, now_ms: u64) {
        if self.phase == GroupPhase::CompletingRebalance {
            for m in self.members.values_mut() {
                m.assignment = Bytes::new();
            }
            // Kafka's `propagateAssignment`: only members answered here (those waiting for
            // their assignment) start a new session; a member that never synced, such as a
            // static member kept without rejoining, keeps its deadline.
            let waiting: Vec<Option<Token>> = self
                .members
                .values_mut()
                .map(|m| {
                    let token = m.awaiting_sync.take();
                    if token.is_some() {
                        m.last_heartbeat_ms = now_ms;
                    }
                    token
                })
                .collect();
            for token in waiting {
                self.complete_sync(token, SyncResponse::error(ResponseError::RebalanceInProgress));
            }
        }
        self.pending_sync.clear();
        self.sync_deadline_ms = None;
        let timeout = self.rebalance_timeout_ms();
        if self.phase == GroupPhase::Empty && self.config.initial_rebalance_delay_ms > 0 {
            let delay = self.config.initial_rebalance_delay_ms.min(timeout);
            self.initial_delay = Some(InitialDelay {
                remaining_ms: timeout.saturating_sub(delay),
                new_member_added: false,
            });
            self.join_deadline_ms = Some(now_ms.saturating_add(delay));
        } else {
            self.initial_delay = None;
            self.join_deadline_ms = Some(now_ms.saturating_add(timeout));
        }
        self.rebalance_started_ms.get_or_insert(now_ms);
        tracing::info!(group = %self.group_id, generation = self.generation, reason, "preparing rebalance");
        self.transition(GroupPhase::PreparingRebalance, now_ms);
        self.try_complete_join(now_ms);
    }

    /// Completes the join barrier early once every known member has rejoined and no
    /// MEMBER_ID_REQUIRED member is outstanding (never during the initial delay).
    pub(crate) fn try_complete_join(&mut self, now_ms: u64) {
        if self.phase != GroupPhase::PreparingRebalance || self.initial_delay.is_some() {
            return;
        }
        let all_joined = self.members.values().all(|m| m.awaiting_join.is_some());
        if all_joined && self.pending_members.is_empty() {
            self.finish_join(now_ms);
        }
    }

    /// Kafka's `onCompleteJoin`: drops dynamic members that did not rejoin, elects a leader
    /// among those that did, and starts the next generation.
    pub(crate) fn finish_join(&mut self, now_ms: u64) {
        let gone: Vec<String> = self
            .members
            .values()
            .filter(|m| m.awaiting_join.is_none() && m.instance_id.is_none())
            .map(|m| m.member_id.clone())
            .collect();
        for id in gone {
            tracing::info!(group = %self.group_id, member = %id, "member did not rejoin before rebalance timeout");
            self.remove_member(&id);
        }
        if !self.members.is_empty() && !self.elect_joined_leader() {
            // Only static members that have not rejoined remain: wait another rebalance timeout
            // for them to rejoin or for their sessions to expire.
            self.join_deadline_ms = Some(now_ms.saturating_add(self.rebalance_timeout_ms()));
            self.initial_delay = None;
            return;
        }
        self.join_deadline_ms = None;
        self.initial_delay = None;
        self.generation += 1;
        if self.members.is_empty() {
            self.protocol_name = None;
            self.transition(GroupPhase::Empty, now_ms);
            self.finish_rebalance(now_ms);
            tracing::info!(group = %self.group_id, generation = self.generation, "group is empty");
            self.persist_metadata();
            return;
        }
        self.protocol_name = self.select_protocol();
        self.transition(GroupPhase::CompletingRebalance, now_ms);
        let leader = self.leader.clone().unwrap_or_default();
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for id in &ids {
            let response = self.join_response(id, leader.clone(), false);
            if let Some(m) = self.members.get_mut(id) {
                let token = m.awaiting_join.take();
                m.is_new = false;
                m.last_heartbeat_ms = now_ms;
                self.complete_join(token, response);
            }
        }
        self.pending_sync = ids.into_iter().collect();
        self.sync_deadline_ms = Some(now_ms.saturating_add(self.rebalance_timeout_ms()));
        tracing::info!(
            group = %self.group_id, generation = self.generation, leader = %leader,
            protocol = self.protocol_name.as_deref().unwrap_or_default(), members = self.members.len(),
            "join barrier completed"
        );
    }

    /// Makes sure the leader is a member that rejoined; false if none did.
    fn elect_joined_leader(&mut self) -> bool {
        let leader_joined = self
            .leader
            .as_ref()
            .and_then(|l| self.members.get(l))
            .is_some_and(|m| m.awaiting_join.is_some());
        if leader_joined {
            return true;
        }
        match self.members.values().find(|m| m.awaiting_join.is_some()) {
            Some(m) => {
                self.leader = Some(m.member_id.clone());
                true
            }
            None => false,
        }
    }

    pub(crate) fn finish_rebalance(&mut self, now_ms: u64) {
        if let Some(start) = self.rebalance_started_ms.take() {
            self.effects.rebalances_ms.push(now_ms.saturating_sub(start));
        }
    }
}
