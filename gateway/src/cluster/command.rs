//! The commands carried by the raft log and the state machine's answers to them.
//!
//! Every command is applied deterministically by [`super::state::ClusterState::apply`]; a
//! command that cannot take effect (a stale owner epoch) is not an error of the log, it is
//! answered with a [`CommandResponse`] variant saying why, so all replicas agree on the outcome.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::{ClusterNode, NodeId};
use crate::group::record::GroupRecord;
use crate::sasl::ScramCredential;

/// One replicated change to the cluster state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Command {
    /// Gives `group_id` an owner if it has none; answers the current owner and epoch.
    ClaimGroup {
        /// Consumer group id.
        group_id: String,
    },
    /// A group state change written by the group's owner under the epoch it was granted.
    GroupWrite {
        /// Node that believes it owns the group.
        owner: NodeId,
        /// Ownership epoch the owner was granted; a mismatch fences the write.
        epoch: u64,
        /// The change itself.
        record: GroupRecord,
    },
    /// Several records of one group written atomically by its owner under one epoch: all are
    /// applied, or (fenced) none.
    GroupWrites {
        /// Node that believes it owns the group.
        owner: NodeId,
        /// Ownership epoch the owner was granted; a mismatch fences the whole batch.
        epoch: u64,
        /// The group all records belong to.
        group_id: String,
        /// The changes, in order.
        records: Vec<GroupRecord>,
    },
    /// Retires the owner's epoch of a group after one of its writes failed (the owner then
    /// reloads the group from the applied state under the next epoch). Answers the new
    /// ownership, or `Fenced` when `(owner, epoch)` is no longer current.
    RenewGroup {
        /// Node that believes it owns the group.
        owner: NodeId,
        /// The epoch to retire.
        epoch: u64,
        /// The group.
        group_id: String,
    },
    /// Removes the owner's claims that never got durable state: each `(group_id, epoch)` whose
    /// group is still owned by `owner` under `epoch` and has no metadata and no offsets.
    ReleaseGroups {
        /// Node that holds the claims.
        owner: NodeId,
        /// Group ids with the epoch each was claimed under.
        claims: Vec<(String, u64)>,
    },
    /// Sets the cluster id reported to Kafka clients, once: ignored when one is already set.
    SetClusterId {
        /// The proposed id.
        cluster_id: String,
    },
    /// Reserves a block of `count` producer ids for `node_id`.
    AllocateProducerIds {
        /// Node the block is handed to.
        node_id: NodeId,
        /// Block size, at least 1.
        count: u64,
    },
    /// The leader's view of which members are alive; groups of dead members move.
    SetLive {
        /// Ids of the members currently reachable from the leader (the leader included).
        live: BTreeSet<NodeId>,
    },
    /// A user of `--sasl-users-file`: its credentials are stored the first time the cluster
    /// sees the user name (unless the user already has credentials), never again, so a later
    /// deletion or password change through AlterUserScramCredentials survives restarts.
    SeedScramUser {
        /// User name.
        user: String,
        /// Credentials by mechanism name (`SCRAM-SHA-256`, `SCRAM-SHA-512`).
        credentials: BTreeMap<String, ScramCredential>,
    },
    /// Creates or replaces a user's credential for one mechanism.
    UpsertScram {
        /// User name.
        user: String,
        /// Mechanism name.
        mechanism: String,
        /// The salted credential.
        credential: ScramCredential,
    },
    /// Deletes a user's credential for one mechanism (nothing when it has none).
    DeleteScram {
        /// User name.
        user: String,
        /// Mechanism name.
        mechanism: String,
    },
}

impl Command {
    /// A bounded label for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Command::ClaimGroup { .. } => "claim_group",
            Command::GroupWrite { .. } => "group_write",
            Command::GroupWrites { .. } => "group_writes",
            Command::RenewGroup { .. } => "renew_group",
            Command::ReleaseGroups { .. } => "release_groups",
            Command::SetClusterId { .. } => "set_cluster_id",
            Command::AllocateProducerIds { .. } => "allocate_producer_ids",
            Command::SetLive { .. } => "set_live",
            Command::SeedScramUser { .. } => "seed_scram_user",
            Command::UpsertScram { .. } => "upsert_scram",
            Command::DeleteScram { .. } => "delete_scram",
        }
    }
}

/// The state machine's answer to one applied log entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum CommandResponse {
    /// The entry carried no command (blank or membership entry), or the command needed no answer.
    #[default]
    Applied,
    /// Ownership of a group after a [`Command::ClaimGroup`].
    Owner {
        /// Owning node.
        owner: NodeId,
        /// Ownership epoch; increases every time the owner changes.
        epoch: u64,
    },
    /// The group write was applied.
    Written,
    /// The group write was rejected: the writer is not the current owner at that epoch.
    Fenced {
        /// Current owner, if the group has one.
        owner: Option<NodeId>,
        /// Current epoch (0 when the group has no owner).
        epoch: u64,
    },
    /// A reserved producer-id block `[start, start + count)`.
    ProducerIds {
        /// First id of the block.
        start: i64,
        /// Number of ids in the block.
        count: u64,
    },
    /// The command was well-formed but could not take effect.
    Rejected {
        /// Why, for logs and operators.
        reason: String,
    },
}

/// A request a follower forwards to the leader over the peer port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ForwardRequest {
    /// Propose a command.
    Write(Command),
    /// Add a node as learner, wait until it caught up, then make it a voter.
    AddMember {
        /// Id of the new member.
        node_id: NodeId,
        /// Its addresses.
        node: ClusterNode,
    },
    /// Remove a member (voter or learner) from the cluster.
    RemoveMember {
        /// Id of the member to remove.
        node_id: NodeId,
    },
    /// Whether the receiver belongs to an initialized cluster; answered by any node, leader or
    /// not, so a starting node can tell a fresh cluster from a running one.
    Status,
}

/// The leader's answer to a [`ForwardRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ForwardResponse {
    /// The command was committed and applied; the state machine's answer.
    Written(CommandResponse),
    /// The membership change was committed.
    MembershipChanged,
    /// Answer to [`ForwardRequest::Status`].
    Status {
        /// The receiver has a membership (it initialized a cluster or joined one).
        initialized: bool,
        /// The leader as far as the receiver knows.
        leader: Option<NodeId>,
    },
}

/// Why the leader could not carry out a [`ForwardRequest`].
///
/// Externally tagged on the wire: serde cannot write an internally tagged variant that wraps a
/// bare string.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(rename_all = "snake_case")]
pub enum ForwardError {
    /// The receiver is not (or no longer) the leader.
    #[error("not the leader (leader: {leader:?})")]
    NotLeader {
        /// The leader as far as the receiver knows.
        leader: Option<NodeId>,
    },
    /// A membership change was refused.
    #[error("membership change refused: {0}")]
    Membership(String),
    /// Raft failed on the receiver.
    #[error("raft failed: {0}")]
    Fatal(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forward_errors_and_answers_survive_the_wire_encoding() {
        for e in [
            ForwardError::NotLeader { leader: Some(2) },
            ForwardError::Membership("already undergoing a configuration change".into()),
            ForwardError::Fatal("stopped".into()),
        ] {
            let json = serde_json::to_vec(&e).expect("encode");
            assert_eq!(serde_json::from_slice::<ForwardError>(&json).expect("decode"), e);
        }
        let status = ForwardResponse::Status {
            initialized: true,
            leader: Some(0),
        };
        let json = serde_json::to_vec(&status).expect("encode");
        assert_eq!(
            serde_json::from_slice::<ForwardResponse>(&json).expect("decode"),
            status
        );
    }
}
