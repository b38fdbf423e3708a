//! The replicated cluster state and its deterministic apply function.
//!
//! Invariants:
//! - `members` mirrors the last applied raft membership (voters and learners), each with a
//!   liveness flag set by [`Command::SetLive`]; a member new to the membership starts live.
//! - Every group in `groups` has an owner chosen by rendezvous hashing of the group id over the
//!   live voters; whenever membership or liveness changes, each group whose preferred owner
//!   changed moves and its `epoch` increases by one. Epochs never decrease.
//! - A [`Command::GroupWrite`] applies only if `(owner, epoch)` equals the group's current
//!   ownership, which fences any writer that lost the group.
//! - A group leaves `groups` when it is deleted (a [`GroupRecord::GroupDelete`], written by
//!   DeleteGroups and by offset expiry of an empty group) or when its owner releases a claim
//!   that never got durable state ([`Command::ReleaseGroups`]). `retired_epoch` keeps the
//!   highest epoch of any removed group and new claims start above it, so an epoch is never
//!   granted twice for a group id and a writer of the removed group stays fenced.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::command::{Command, CommandResponse};
use super::{ClusterNode, NodeId};
use crate::group::record::{GroupMetadataRecord, GroupRecord, OffsetCommitRecord};
use crate::sasl::ScramCredential;

/// One member of the raft membership as the state machine sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberState {
    /// Addresses and placement of the node.
    pub node: ClusterNode,
    /// Voters own groups; learners are catching up and do not.
    pub voter: bool,
    /// False while the leader cannot reach the member.
    pub live: bool,
}

/// Owner, fencing epoch and durable data of one consumer group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupState {
    /// Node acting as the group's coordinator.
    pub owner: NodeId,
    /// Increases every time `owner` changes.
    pub epoch: u64,
    /// Last group metadata written by the owner.
    pub metadata: Option<GroupMetadataRecord>,
    /// Committed offsets by topic, then partition.
    pub offsets: BTreeMap<String, BTreeMap<i32, OffsetCommitRecord>>,
}

impl GroupState {
    /// Applies one record of this group.
    fn apply(&mut self, record: &GroupRecord) {
        let g = self;
        match record {
            GroupRecord::Metadata(m) => g.metadata = Some(m.clone()),
            GroupRecord::OffsetCommit(o) => {
                g.offsets
                    .entry(o.topic.clone())
                    .or_default()
                    .insert(o.partition, o.clone());
            }
            GroupRecord::OffsetDelete { topic, partition, .. } => {
                if let Some(parts) = g.offsets.get_mut(topic) {
                    parts.remove(partition);
                    if parts.is_empty() {
                        g.offsets.remove(topic);
                    }
                }
            }
            // The caller removes the group; `retired_epoch` keeps fencing its old writers.
            GroupRecord::GroupDelete { .. } => {
                g.metadata = None;
                g.offsets.clear();
            }
        }
    }
}

/// Everything the raft log replicates, as of the last applied entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterState {
    /// Members by node id.
    pub members: BTreeMap<NodeId, MemberState>,
    /// Consumer groups by group id.
    pub groups: BTreeMap<String, GroupState>,
    /// First producer id not yet handed to any node.
    pub next_producer_id: i64,
    /// Last producer-id block handed to each node: `(start, count)`.
    pub producer_blocks: BTreeMap<NodeId, (i64, u64)>,
    /// Cluster id reported to Kafka clients; empty until the first member sets it.
    #[serde(default)]
    pub cluster_id: String,
    /// Highest ownership epoch of any group removed from `groups`; claims start above it.
    #[serde(default)]
    pub retired_epoch: u64,
    /// SASL SCRAM credentials by user, then mechanism name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub scram: BTreeMap<String, BTreeMap<String, ScramCredential>>,
    /// Users of `--sasl-users-file` already seeded (see [`Command::SeedScramUser`]).
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub scram_seeded: BTreeSet<String>,
}

impl ClusterState {
    /// Applies one command and returns its answer. Deterministic: it reads nothing but `self`
    /// and `command`.
    pub fn apply(&mut self, command: &Command) -> CommandResponse {
        match command {
            Command::ClaimGroup { group_id } => self.claim(group_id),
            Command::GroupWrite { owner, epoch, record } => {
                self.group_write(*owner, *epoch, record.group_id(), std::slice::from_ref(record))
            }
            Command::GroupWrites {
                owner,
                epoch,
                group_id,
                records,
            } => {
                if records.iter().any(|r| r.group_id() != group_id) {
                    return CommandResponse::Rejected {
                        reason: "a group write batch mixes groups".into(),
                    };
                }
                self.group_write(*owner, *epoch, group_id, records)
            }
            Command::RenewGroup {
                owner,
                epoch,
                group_id,
            } => self.renew(*owner, *epoch, group_id),
            Command::ReleaseGroups { owner, claims } => {
                for (group_id, epoch) in claims {
                    let idle = self.groups.get(group_id).is_some_and(|g| {
                        g.owner == *owner && g.epoch == *epoch && g.metadata.is_none() && g.offsets.is_empty()
                    });
                    if idle {
                        self.remove_group(group_id);
                    }
                }
                CommandResponse::Applied
            }
            Command::SetClusterId { cluster_id } => {
                if self.cluster_id.is_empty() {
                    self.cluster_id = cluster_id.clone();
                }
                CommandResponse::Applied
            }
            Command::AllocateProducerIds { node_id, count } => self.allocate_producer_ids(*node_id, *count),
            Command::SeedScramUser { user, credentials } => {
                // A user created through AlterUserScramCredentials first keeps its credentials.
                if self.scram_seeded.insert(user.clone())
                    && !self.scram.contains_key(user)
                    && !credentials.is_empty()
                {
                    self.scram.insert(user.clone(), credentials.clone());
                }
                CommandResponse::Applied
            }
            Command::UpsertScram {
                user,
                mechanism,
                credential,
            } => {
                self.scram
                    .entry(user.clone())
                    .or_default()
                    .insert(mechanism.clone(), credential.clone());
                CommandResponse::Applied
            }
            Command::DeleteScram { user, mechanism } => {
                if let Some(creds) = self.scram.get_mut(user) {
                    creds.remove(mechanism);
                    if creds.is_empty() {
                        self.scram.remove(user);
                    }
                }
                CommandResponse::Applied
            }
            Command::SetLive { live } => {
                for (id, m) in self.members.iter_mut() {
                    m.live = live.contains(id);
                }
                self.rebalance();
                CommandResponse::Applied
            }
        }
    }

    /// Replaces the member list with a newly applied membership: `nodes` are all members,
    /// `voters` the subset that votes. Known members keep their liveness.
    pub fn set_membership(&mut self, nodes: BTreeMap<NodeId, ClusterNode>, voters: &BTreeSet<NodeId>) {
        let mut members = BTreeMap::new();
        for (id, node) in nodes {
            let live = self.members.get(&id).is_none_or(|m| m.live);
            members.insert(
                id,
                MemberState {
                    node,
                    voter: voters.contains(&id),
                    live,
                },
            );
        }
        self.members = members;
        self.rebalance();
    }

    /// Live voters: the nodes groups are spread over.
    pub fn owner_candidates(&self) -> Vec<NodeId> {
        self.members
            .iter()
            .filter(|(_, m)| m.voter && m.live)
            .map(|(id, _)| *id)
            .collect()
    }

    /// The preferred owner of `group_id` among the live voters, if there is any.
    pub fn preferred_owner(&self, group_id: &str) -> Option<NodeId> {
        rendezvous(group_id, &self.owner_candidates())
    }

    fn claim(&mut self, group_id: &str) -> CommandResponse {
        if let Some(g) = self.groups.get(group_id) {
            return CommandResponse::Owner {
                owner: g.owner,
                epoch: g.epoch,
            };
        }
        let Some(owner) = self.preferred_owner(group_id) else {
            return CommandResponse::Rejected {
                reason: "no live voter can own the group".into(),
            };
        };
        let epoch = self.retired_epoch + 1;
        let state = GroupState {
            owner,
            epoch,
            metadata: None,
            offsets: BTreeMap::new(),
        };
        self.groups.insert(group_id.to_owned(), state);
        CommandResponse::Owner { owner, epoch }
    }

    /// Retires `epoch` of a group after its owner failed a write: the owner reloads the group
    /// under the next epoch, and writes still queued under `epoch` are fenced.
    fn renew(&mut self, owner: NodeId, epoch: u64, group_id: &str) -> CommandResponse {
        match self.groups.get_mut(group_id) {
            Some(g) if g.owner == owner && g.epoch == epoch => {
                g.epoch += 1;
                CommandResponse::Owner {
                    owner,
                    epoch: g.epoch,
                }
            }
            Some(g) => CommandResponse::Fenced {
                owner: Some(g.owner),
                epoch: g.epoch,
            },
            None => CommandResponse::Fenced {
                owner: None,
                epoch: 0,
            },
        }
    }

    fn remove_group(&mut self, group_id: &str) {
        if let Some(g) = self.groups.remove(group_id) {
            self.retired_epoch = self.retired_epoch.max(g.epoch);
        }
    }

    fn group_write(
        &mut self,
        owner: NodeId,
        epoch: u64,
        group_id: &str,
        records: &[GroupRecord],
    ) -> CommandResponse {
        let Some(g) = self.groups.get_mut(group_id) else {
            return CommandResponse::Fenced {
                owner: None,
                epoch: 0,
            };
        };
        if g.owner != owner || g.epoch != epoch {
            return CommandResponse::Fenced {
                owner: Some(g.owner),
                epoch: g.epoch,
            };
        }
        for record in records {
            g.apply(record);
        }
        let deleted = records
            .iter()
            .any(|r| matches!(r, GroupRecord::GroupDelete { .. }));
        if deleted && g.metadata.is_none() && g.offsets.is_empty() {
            self.remove_group(group_id);
        }
        CommandResponse::Written
    }

    fn allocate_producer_ids(&mut self, node_id: NodeId, count: u64) -> CommandResponse {
        let Ok(n) = i64::try_from(count) else {
            return CommandResponse::Rejected {
                reason: "producer id block too large".into(),
            };
        };
        if n == 0 {
            return CommandResponse::Rejected {
                reason: "producer id block must not be empty".into(),
            };
        }
        let Some(end) = self.next_producer_id.checked_add(n) else {
            return CommandResponse::Rejected {
                reason: "producer id space exhausted".into(),
            };
        };
        let start = self.next_producer_id;
        self.next_producer_id = end;
        self.producer_blocks.insert(node_id, (start, count));
        CommandResponse::ProducerIds { start, count }
    }

    /// Moves every group whose preferred owner changed, bumping its epoch. With no live voter
    /// groups stay where they are: there is nowhere better to put them.
    fn rebalance(&mut self) {
        let candidates = self.owner_candidates();
        if candidates.is_empty() {
            return;
        }
        for (group_id, g) in self.groups.iter_mut() {
            if let Some(owner) = rendezvous(group_id, &candidates) {
                if owner != g.owner {
                    g.owner = owner;
                    g.epoch += 1;
                }
            }
        }
    }
}

/// Highest-random-weight choice of a node for `key`: stable (only keys of a departed node or
/// keys won by a new node move) and even in expectation.
pub fn rendezvous(key: &str, nodes: &[NodeId]) -> Option<NodeId> {
    nodes.iter().copied().max_by_key(|n| (weight(key, *n), *n))
}

/// FNV-1a of the key and node id, finished with the splitmix64 mixer. Fixed forever: changing it
/// would move every group on upgrade.
fn weight(key: &str, node: NodeId) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.as_bytes().iter().chain(node.to_be_bytes().iter()) {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

#[cfg(test)]
#[path = "state_test.rs"]
mod tests;
