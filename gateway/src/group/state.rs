//! One group's state machine: phases, the join and sync barriers, and deadlines.
//!
//! Invariants:
//! - `leader` is a member id of `members` whenever `members` is non-empty, else `None`;
//! - `static_members` maps each static member's instance id to its current member id;
//! - a member has `awaiting_join` only in PreparingRebalance and `awaiting_sync` only in
//!   CompletingRebalance; every token handed out is completed exactly once (through
//!   [`Effects::completions`]) unless the group dies with it pending;
//! - `generation` only increases.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::member::Member;
use super::record::GroupRecord;
use super::types::{CommittedOffset, JoinResponse, JoinedMember, SyncResponse};
use super::GroupConfig;
use crate::storage::TopicPartition;

/// Kafka's classic group states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GroupPhase {
    /// No members (offsets may still be committed).
    Empty,
    /// Waiting at the join barrier for members to (re)join.
    PreparingRebalance,
    /// Generation formed; waiting for the leader's assignment.
    CompletingRebalance,
    /// Every member has its assignment.
    Stable,
    /// Removed; every call is refused.
    Dead,
}

impl GroupPhase {
    /// Kafka's name of the state, as DescribeGroups and ListGroups report it.
    pub fn as_str(self) -> &'static str {
        match self {
            GroupPhase::Empty => "Empty",
            GroupPhase::PreparingRebalance => "PreparingRebalance",
            GroupPhase::CompletingRebalance => "CompletingRebalance",
            GroupPhase::Stable => "Stable",
            GroupPhase::Dead => "Dead",
        }
    }

    /// All phases, for metrics.
    pub const ALL: [GroupPhase; 5] = [
        GroupPhase::Empty,
        GroupPhase::PreparingRebalance,
        GroupPhase::CompletingRebalance,
        GroupPhase::Stable,
        GroupPhase::Dead,
    ];
}

/// Identifies a pending JoinGroup or SyncGroup response within one group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Token(pub u64);

/// The answer to a call: now, or later through a [`Completion`] carrying the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply<T> {
    /// The response.
    Done(T),
    /// The response will be a [`Completion`] with this token.
    Pending(Token),
}

/// A response to a pending call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Completion {
    /// JoinGroup response.
    Join(Token, JoinResponse),
    /// SyncGroup response.
    Sync(Token, SyncResponse),
}

/// Side effects accumulated by calls, drained with [`GroupState::take_effects`].
///
/// The caller must make `records` durable before delivering `completions` and any immediate
/// response of the same call.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Effects {
    /// Records to persist, in order.
    pub records: Vec<GroupRecord>,
    /// Responses to pending calls.
    pub completions: Vec<Completion>,
    /// Durations (ms) of rebalances that finished (reached Stable or Empty).
    pub rebalances_ms: Vec<u64>,
}

impl Effects {
    /// Whether nothing happened.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty() && self.completions.is_empty() && self.rebalances_ms.is_empty()
    }
}

/// State of the first rebalance of an empty group (Kafka's `InitialDelayedJoin`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct InitialDelay {
    /// Rebalance time left after the current delay.
    pub(crate) remaining_ms: u64,
    /// A new member joined during the current delay.
    pub(crate) new_member_added: bool,
}

/// One classic group and its committed offsets.
#[derive(Debug)]
pub struct GroupState {
    pub(crate) group_id: String,
    pub(crate) config: GroupConfig,
    pub(crate) phase: GroupPhase,
    pub(crate) protocol_type: Option<String>,
    pub(crate) protocol_name: Option<String>,
    pub(crate) generation: i32,
    pub(crate) leader: Option<String>,
    pub(crate) members: BTreeMap<String, Member>,
    pub(crate) static_members: HashMap<String, String>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, with their expiry.
    pub(crate) pending_members: BTreeMap<String, u64>,
    /// Members of the generation that have not sent SyncGroup yet.
    pub(crate) pending_sync: BTreeSet<String>,
    pub(crate) join_deadline_ms: Option<u64>,
    pub(crate) initial_delay: Option<InitialDelay>,
    pub(crate) sync_deadline_ms: Option<u64>,
    pub(crate) rebalance_started_ms: Option<u64>,
    pub(crate) state_timestamp_ms: u64,
    pub(crate) offsets: BTreeMap<TopicPartition, CommittedOffset>,
    next_token: u64,
    pub(crate) effects: Effects,
}

impl GroupState {
    /// A new Empty group.
    pub fn new(group_id: impl Into<String>, config: GroupConfig, now_ms: u64) -> Self {
        Self {
            group_id: group_id.into(),
            config,
            phase: GroupPhase::Empty,
            protocol_type: None,
            protocol_name: None,
            generation: 0,
            leader: None,
            members: BTreeMap::new(),
            static_members: HashMap::new(),
            pending_members: BTreeMap::new(),
            pending_sync: BTreeSet::new(),
            join_deadline_ms: None,
            initial_delay: None,
            sync_deadline_ms: None,
            rebalance_started_ms: None,
            state_timestamp_ms: now_ms,
            offsets: BTreeMap::new(),
            next_token: 0,
            effects: Effects::default(),
        }
    }

    /// Group id.
    pub fn group_id(&self) -> &str {
        &self.group_id
    }

    /// Current phase.
    pub fn phase(&self) -> GroupPhase {
        self.phase
    }

    /// Current generation.
    pub fn generation(&self) -> i32 {
        self.generation
    }

    /// Leader member id.
    pub fn leader(&self) -> Option<&str> {
        self.leader.as_deref()
    }

    /// Protocol type.
    pub fn protocol_type(&self) -> Option<&str> {
        self.protocol_type.as_deref()
    }

    /// Selected protocol of the current generation.
    pub fn protocol_name(&self) -> Option<&str> {
        self.protocol_name.as_deref()
    }

    /// Members by id.
    pub fn members(&self) -> impl Iterator<Item = &Member> {
        self.members.values()
    }

    /// Committed offsets.
    pub fn offsets(&self) -> &BTreeMap<TopicPartition, CommittedOffset> {
        &self.offsets
    }

    /// Drains the effects accumulated since the last call.
    pub fn take_effects(&mut self) -> Effects {
        std::mem::take(&mut self.effects)
    }

    pub(crate) fn next_token(&mut self) -> Token {
        self.next_token += 1;
        Token(self.next_token)
    }

    pub(crate) fn is_leader(&self, member_id: &str) -> bool {
        self.leader.as_deref() == Some(member_id)
    }

    /// Static member fencing: `instance_id` is registered under another member id.
    pub(crate) fn is_fenced(&self, instance_id: Option<&str>, member_id: &str) -> bool {
        instance_id
            .and_then(|id| self.static_members.get(id))
            .is_some_and(|current| current != member_id)
    }

    /// The largest rebalance timeout among members: how long the join barrier waits.
    pub(crate) fn rebalance_timeout_ms(&self) -> u64 {
        self.members
            .values()
            .map(|m| m.rebalance_timeout_ms)
            .max()
            .unwrap_or(0)
    }

    /// Protocols every member supports.
    pub(crate) fn candidate_protocols(&self) -> BTreeSet<&str> {
        let mut members = self.members.values();
        let Some(first) = members.next() else {
            return BTreeSet::new();
        };
        let mut candidates: BTreeSet<&str> = first.protocols.iter().map(|p| p.name.as_str()).collect();
        for m in members {
            candidates.retain(|name| m.supports(name));
        }
        candidates
    }

    /// Kafka's protocol selection: each member votes for its most preferred candidate; the most
    /// votes wins (ties go to the leader's preference order, then name order).
    pub(crate) fn select_protocol(&self) -> Option<String> {
        let candidates = self.candidate_protocols();
        let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
        for m in self.members.values() {
            if let Some(v) = m.vote(&candidates) {
                *votes.entry(v).or_default() += 1;
            }
        }
        let most = votes.values().copied().max()?;
        let leader_order = self.leader.as_ref().and_then(|l| self.members.get(l));
        let tied: Vec<&str> = votes
            .iter()
            .filter(|(_, n)| **n == most)
            .map(|(p, _)| *p)
            .collect();
        leader_order
            .and_then(|l| {
                l.protocols
                    .iter()
                    .map(|p| p.name.as_str())
                    .find(|p| tied.contains(p))
            })
            .or_else(|| tied.first().copied())
            .map(str::to_owned)
    }

    /// Kafka's `supportsProtocols`: a first member needs a type and protocols; later ones the
    /// group's type and a protocol in common with every member.
    pub(crate) fn supports_protocols(&self, protocol_type: &str, protocols: &[super::Protocol]) -> bool {
        if protocol_type.is_empty() || protocols.is_empty() {
            return false;
        }
        if self.members.is_empty() {
            return true;
        }
        let candidates = self.candidate_protocols();
        self.protocol_type.as_deref() == Some(protocol_type)
            && protocols.iter().any(|p| candidates.contains(p.name.as_str()))
    }

    pub(crate) fn transition(&mut self, phase: GroupPhase, now_ms: u64) {
        tracing::debug!(group = %self.group_id, from = self.phase.as_str(), to = phase.as_str(), "group state change");
        self.phase = phase;
        self.state_timestamp_ms = now_ms;
    }

    /// The JoinGroup response for `member_id` in the current generation.
    pub(crate) fn join_response(
        &self,
        member_id: &str,
        leader: String,
        skip_assignment: bool,
    ) -> JoinResponse {
        let members = if self.is_leader(member_id) {
            self.joined_members()
        } else {
            Vec::new()
        };
        JoinResponse {
            error: None,
            generation_id: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
            leader,
            skip_assignment,
            member_id: member_id.to_owned(),
            members,
        }
    }

    fn joined_members(&self) -> Vec<JoinedMember> {
        let protocol = self.protocol_name.as_deref().unwrap_or_default();
        self.members
            .values()
            .map(|m| JoinedMember {
                member_id: m.member_id.clone(),
                instance_id: m.instance_id.clone(),
                metadata: m.metadata(protocol).cloned().unwrap_or_default(),
            })
            .collect()
    }

    pub(crate) fn complete_join(&mut self, token: Option<Token>, response: JoinResponse) {
        if let Some(t) = token {
            self.effects.completions.push(Completion::Join(t, response));
        }
    }

    pub(crate) fn complete_sync(&mut self, token: Option<Token>, response: SyncResponse) {
        if let Some(t) = token {
            self.effects.completions.push(Completion::Sync(t, response));
        }
    }
}
