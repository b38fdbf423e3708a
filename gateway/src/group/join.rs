//! JoinGroup: Kafka's classic join handling for new, pending, known and static members.

use bytes::Bytes;
use kafka_protocol::ResponseError;

use super::member::Member;
use super::state::{GroupPhase, GroupState, Reply};
use super::types::{JoinRequest, JoinResponse};

impl GroupState {
    /// Handles a JoinGroup request at `now_ms`.
    ///
    /// Answers at once with an error, MEMBER_ID_REQUIRED or (for a rejoin that changes nothing)
    /// the current generation; otherwise the member waits at the join barrier and the response
    /// arrives as a [`super::Completion::Join`] when the barrier completes.
    pub fn join_group(&mut self, req: JoinRequest, now_ms: u64) -> Reply<JoinResponse> {
        let fail = |member_id: &str, e| Reply::Done(JoinResponse::error(member_id, e));
        if self.phase == GroupPhase::Dead {
            return fail(&req.member_id, ResponseError::CoordinatorNotAvailable);
        }
        let session = u64::try_from(req.session_timeout_ms).unwrap_or(0);
        if session < self.config.min_session_timeout_ms || session > self.config.max_session_timeout_ms {
            return fail(&req.member_id, ResponseError::InvalidSessionTimeout);
        }
        if !self.supports_protocols(&req.protocol_type, &req.protocols) {
            return fail(&req.member_id, ResponseError::InconsistentGroupProtocol);
        }
        if req.member_id.is_empty() {
            self.join_new_member(req, now_ms)
        } else {
            self.join_known_member(req, now_ms)
        }
    }

    fn accepts_new_member(&self) -> bool {
        let size = match self.phase {
            GroupPhase::PreparingRebalance => self
                .members
                .values()
                .filter(|m| m.awaiting_join.is_some())
                .count(),
            _ => self.members.len(),
        };
        size < self.config.max_size
    }

    fn join_new_member(&mut self, req: JoinRequest, now_ms: u64) -> Reply<JoinResponse> {
        let member_id = format!("{}-{}", req.client_id, uuid::Uuid::new_v4());
        if let Some(instance) = req.instance_id.clone() {
            if let Some(old_id) = self.static_members.get(&instance).cloned() {
                return self.replace_static_member(req, &instance, &old_id, member_id, now_ms);
            }
        }
        if !self.accepts_new_member() {
            return Reply::Done(JoinResponse::error(member_id, ResponseError::GroupMaxSizeReached));
        }
        if req.instance_id.is_none() && req.api_version >= 4 {
            let expiry = now_ms.saturating_add(u64::try_from(req.session_timeout_ms).unwrap_or(0));
            self.pending_members.insert(member_id.clone(), expiry);
            tracing::debug!(group = %self.group_id, member = %member_id, "member id required");
            return Reply::Done(JoinResponse::error(member_id, ResponseError::MemberIdRequired));
        }
        self.add_member_and_rebalance(req, member_id, now_ms)
    }

    fn join_known_member(&mut self, req: JoinRequest, now_ms: u64) -> Reply<JoinResponse> {
        let member_id = req.member_id.clone();
        if self.pending_members.contains_key(&member_id) {
            if !self.accepts_new_member() {
                self.pending_members.remove(&member_id);
                return Reply::Done(JoinResponse::error(member_id, ResponseError::GroupMaxSizeReached));
            }
            self.pending_members.remove(&member_id);
            return self.add_member_and_rebalance(req, member_id, now_ms);
        }
        if self.is_fenced(req.instance_id.as_deref(), &member_id) {
            return Reply::Done(JoinResponse::error(member_id, ResponseError::FencedInstanceId));
        }
        let Some(member) = self.members.get(&member_id) else {
            return Reply::Done(JoinResponse::error(member_id, ResponseError::UnknownMemberId));
        };
        let unchanged = member.matches(&req.protocols);
        match self.phase {
            GroupPhase::PreparingRebalance => self.update_member_and_rebalance(req, now_ms),
            GroupPhase::CompletingRebalance if unchanged => {
                let leader = self.leader.clone().unwrap_or_default();
                Reply::Done(self.join_response(&member_id, leader, false))
            }
            GroupPhase::Stable if unchanged && !self.is_leader(&member_id) => {
                let leader = self.leader.clone().unwrap_or_default();
                Reply::Done(self.join_response(&member_id, leader, false))
            }
            GroupPhase::CompletingRebalance | GroupPhase::Stable => {
                self.update_member_and_rebalance(req, now_ms)
            }
            GroupPhase::Empty | GroupPhase::Dead => {
                Reply::Done(JoinResponse::error(member_id, ResponseError::UnknownMemberId))
            }
        }
    }

    fn add_member_and_rebalance(
        &mut self,
        req: JoinRequest,
        member_id: String,
        now_ms: u64,
    ) -> Reply<JoinResponse> {
        let token = self.next_token();
        let member = Member {
            member_id: member_id.clone(),
            instance_id: req.instance_id,
            client_id: req.client_id,
            client_host: req.client_host,
            rebalance_timeout_ms: u64::try_from(req.rebalance_timeout_ms).unwrap_or(0),
            session_timeout_ms: u64::try_from(req.session_timeout_ms).unwrap_or(0),
            protocols: req.protocols,
            assignment: Bytes::new(),
            awaiting_join: Some(token),
            awaiting_sync: None,
            is_new: true,
            last_heartbeat_ms: now_ms,
            joined_ms: now_ms,
        };
        self.add_member(member, &req.protocol_type);
        if self.phase == GroupPhase::PreparingRebalance {
            if let Some(delay) = self.initial_delay.as_mut() {
                delay.new_member_added = true;
            }
        }
        tracing::info!(group = %self.group_id, member = %member_id, reason = req.reason.as_deref().unwrap_or_default(), "member joining");
        self.rebalance_after_join("new member joined", now_ms);
        Reply::Pending(token)
    }

    fn update_member_and_rebalance(&mut self, req: JoinRequest, now_ms: u64) -> Reply<JoinResponse> {
        let token = self.next_token();
        let previous = self.members.get_mut(&req.member_id).map(|m| {
            m.protocols = req.protocols;
            m.rebalance_timeout_ms = u64::try_from(req.rebalance_timeout_ms).unwrap_or(0);
            m.session_timeout_ms = u64::try_from(req.session_timeout_ms).unwrap_or(0);
            m.awaiting_join.replace(token)
        });
        if let Some(old) = previous {
            // A retried JoinGroup supersedes the earlier one; the earlier caller is told to retry.
            self.complete_join(
                old,
                JoinResponse::error(&req.member_id, ResponseError::RebalanceInProgress),
            );
        }
        self.rebalance_after_join("member rejoined with new metadata", now_ms);
        Reply::Pending(token)
    }

    fn rebalance_after_join(&mut self, reason: &str, now_ms: u64) {
        if self.phase == GroupPhase::PreparingRebalance {
            self.try_complete_join(now_ms);
        } else {
            self.maybe_prepare_rebalance(reason, now_ms);
        }
    }

    /// A static member rejoined without its member id: the new id replaces the old one, whose
    /// pending calls are fenced (Kafka's `updateStaticMemberAndRebalance`).
    fn replace_static_member(
        &mut self,
        req: JoinRequest,
        instance: &str,
        old_id: &str,
        new_id: String,
        now_ms: u64,
    ) -> Reply<JoinResponse> {
        let previous_leader = self.leader.clone().unwrap_or_default();
        let Some(mut member) = self.members.remove(old_id) else {
            // The static mapping always names a member; a stale one is dropped and the join
            // proceeds as a fresh static member.
            self.static_members.remove(instance);
            return self.add_member_and_rebalance(req, new_id, now_ms);
        };
        self.complete_join(
            member.awaiting_join.take(),
            JoinResponse::error(old_id, ResponseError::FencedInstanceId),
        );
        self.complete_sync(
            member.awaiting_sync.take(),
            super::SyncResponse::error(ResponseError::FencedInstanceId),
        );
        tracing::info!(group = %self.group_id, instance, old_member = %old_id, member = %new_id, "static member replaced");
        member.member_id = new_id.clone();
        member.protocols = req.protocols;
        member.rebalance_timeout_ms = u64::try_from(req.rebalance_timeout_ms).unwrap_or(0);
        member.session_timeout_ms = u64::try_from(req.session_timeout_ms).unwrap_or(0);
        member.client_id = req.client_id;
        member.client_host = req.client_host;
        member.last_heartbeat_ms = now_ms;
        let token = self.next_token();
        member.awaiting_join = Some(token);
        self.members.insert(new_id.clone(), member);
        self.static_members.insert(instance.to_owned(), new_id.clone());
        if self.is_leader(old_id) {
            self.leader = Some(new_id.clone());
        }
        if self.pending_sync.remove(old_id) {
            self.pending_sync.insert(new_id.clone());
        }
        match self.phase {
            GroupPhase::Stable if self.select_protocol() == self.protocol_name => {
                // Same protocol: no rebalance; persist the new member id and answer with the
                // current generation. A rejoining leader skips computing an assignment.
                let is_leader = self.is_leader(&new_id);
                let mut response = self.join_response(&new_id, previous_leader, is_leader);
                response.skip_assignment = is_leader;
                if let Some(m) = self.members.get_mut(&new_id) {
                    m.awaiting_join = None;
                }
                self.persist_metadata();
                self.complete_join(Some(token), response);
            }
            GroupPhase::Stable => {
                self.prepare_rebalance("static member rejoined with a new protocol", now_ms)
            }
            GroupPhase::CompletingRebalance => self.prepare_rebalance("static member replaced", now_ms),
            GroupPhase::PreparingRebalance => self.try_complete_join(now_ms),
            GroupPhase::Empty | GroupPhase::Dead => {}
        }
        Reply::Pending(token)
    }
}
