//! Cluster management: bootstrap, membership changes and status.
//!
//! Membership changes and writes run on the leader; [`execute_local`] is what the leader does
//! with a (possibly forwarded) [`ForwardRequest`]. A new member joins as a learner, is caught up,
//! and only then becomes a voter, so adding a node never leaves the cluster without a quorum
//! of up-to-date voters.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use openraft::error::{ClientWriteError, InitializeError, RaftError};
use openraft::{ChangeMembers, ServerState};
use serde::Serialize;

use super::command::{ForwardError, ForwardRequest, ForwardResponse};
use super::error::ClusterError;
use super::solo::SoloGate;
use super::state_machine::Applied;
use super::{ClusterNode, NodeId, Raft};

/// Initializes a pristine cluster with `members` as its voters. Idempotent: a node that is
/// already initialized (by this call before, or by joining) answers `Ok`.
///
/// # Errors
/// [`ClusterError::Membership`] when the member list is unusable (e.g. missing this node), and
/// [`ClusterError::Fatal`] when raft stopped.
pub async fn initialize(raft: &Raft, members: BTreeMap<NodeId, ClusterNode>) -> Result<(), ClusterError> {
    match raft.initialize(members).await {
        Ok(()) => Ok(()),
        Err(RaftError::APIError(InitializeError::NotAllowed(_))) => Ok(()),
        Err(RaftError::APIError(e)) => Err(ClusterError::Membership(e.to_string())),
        Err(RaftError::Fatal(e)) => Err(ClusterError::Fatal(e.to_string())),
    }
}

/// Carries out `request` on this node, which must be the leader. A member addition first
/// passes `gate` ([`SoloGate::before_grow`]: storage that relied on this node being alone
/// drains).
///
/// # Errors
/// [`ForwardError::NotLeader`] when this node is not the leader; membership and fatal errors
/// otherwise.
pub async fn execute_local(
    raft: &Raft,
    gate: &Arc<SoloGate>,
    request: ForwardRequest,
) -> Result<ForwardResponse, ForwardError> {
    match request {
        ForwardRequest::Status => {
            let m = raft.metrics().borrow().clone();
            let initialized = m.membership_config.membership().voter_ids().next().is_some();
            Ok(ForwardResponse::Status {
                initialized,
                leader: m.current_leader,
            })
        }
        ForwardRequest::Write(cmd) => {
            let kind = cmd.kind();
            let resp = raft.client_write(cmd).await.map_err(write_error)?;
            tracing::debug!(command = kind, log_index = resp.log_id.index, "command committed");
            Ok(ForwardResponse::Written(resp.data))
        }
        ForwardRequest::AddMember { node_id, node } => {
            let me = raft.metrics().borrow().id;
            let _growing = if node_id == me {
                None
            } else {
                Some(gate.before_grow().await.map_err(|e| {
                    tracing::warn!(node_id, error = %e, "member addition refused until this node's storage drained");
                    ForwardError::Membership(format!("cannot add member {node_id} yet: {e}"))
                })?)
            };
            tracing::info!(node_id, node = %node, "adding cluster member as learner");
            raft.add_learner(node_id, node, true).await.map_err(write_error)?;
            tracing::info!(node_id, "promoting caught-up learner to voter");
            raft.change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([node_id])), false)
                .await
                .map_err(write_error)?;
            Ok(ForwardResponse::MembershipChanged)
        }
        ForwardRequest::RemoveMember { node_id } => {
            let (is_member, is_voter) = {
                let m = raft.metrics().borrow().clone();
                let membership = m.membership_config.membership();
                (
                    membership.get_node(&node_id).is_some(),
                    membership.voter_ids().any(|v| v == node_id),
                )
            };
            if !is_member {
                // Removal is idempotent: the operator retries it until it sees a 2xx.
                if raft.metrics().borrow().state != ServerState::Leader {
                    return Err(ForwardError::NotLeader {
                        leader: raft.metrics().borrow().current_leader,
                    });
                }
                tracing::info!(node_id, "remove member: not a member, nothing to do");
                return Ok(ForwardResponse::MembershipChanged);
            }
            let change = if is_voter {
                ChangeMembers::RemoveVoters(BTreeSet::from([node_id]))
            } else {
                ChangeMembers::RemoveNodes(BTreeSet::from([node_id]))
            };
            tracing::info!(node_id, is_voter, "removing cluster member");
            raft.change_membership(change, false).await.map_err(write_error)?;
            Ok(ForwardResponse::MembershipChanged)
        }
    }
}

fn write_error(e: RaftError<NodeId, ClientWriteError<NodeId, ClusterNode>>) -> ForwardError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => {
            ForwardError::NotLeader { leader: f.leader_id }
        }
        RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => {
            ForwardError::Membership(e.to_string())
        }
        RaftError::Fatal(e) => ForwardError::Fatal(e.to_string()),
    }
}

impl From<ForwardError> for ClusterError {
    fn from(e: ForwardError) -> Self {
        match e {
            ForwardError::NotLeader { leader } => ClusterError::NotLeader { leader },
            ForwardError::Membership(m) => ClusterError::Membership(m),
            ForwardError::Fatal(m) => ClusterError::Fatal(m),
        }
    }
}

/// One member as shown by the admin API.
#[derive(Debug, Clone, Serialize)]
pub struct MemberStatus {
    /// Node id.
    pub node_id: NodeId,
    /// Addresses and rack.
    #[serde(flatten)]
    pub node: ClusterNode,
    /// Voter (owns groups) or learner.
    pub voter: bool,
    /// Reachable from the leader, as last replicated.
    pub live: bool,
    /// Consumer groups this member coordinates.
    pub groups_owned: usize,
}

/// A snapshot of the cluster as this node sees it.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterStatus {
    /// This node.
    pub node_id: NodeId,
    /// This node's raft role (`Leader`, `Follower`, `Candidate`, `Learner`).
    pub role: String,
    /// Current leader, if known.
    pub leader: Option<NodeId>,
    /// Current term.
    pub term: u64,
    /// Index of the last log entry this node holds.
    pub last_log_index: Option<u64>,
    /// Commit index; computed from replication progress on the leader, otherwise the highest
    /// applied index (never above the commit index).
    pub commit_index: Option<u64>,
    /// Index of the last applied entry.
    pub applied_index: Option<u64>,
    /// Members with their state.
    pub members: Vec<MemberStatus>,
}

/// Builds the status from raft metrics and the applied state.
pub fn status(raft: &Raft, applied: &Applied) -> ClusterStatus {
    let m = raft.metrics().borrow().clone();
    let applied_index = m.last_applied.map(|l| l.index);
    let voters: Vec<NodeId> = m.membership_config.membership().voter_ids().collect();
    let commit_index = match (&m.replication, m.state) {
        (Some(repl), ServerState::Leader) => {
            let mut matched: Vec<u64> = voters
                .iter()
                .map(|v| {
                    if *v == m.id {
                        m.last_log_index.unwrap_or(0)
                    } else {
                        repl.get(v).copied().flatten().map(|l| l.index).unwrap_or(0)
                    }
                })
                .collect();
            matched.sort_unstable_by(|a, b| b.cmp(a));
            matched.get(voters.len() / 2).copied().or(applied_index)
        }
        _ => applied_index,
    };
    let mut owned: BTreeMap<NodeId, usize> = BTreeMap::new();
    for g in applied.state.groups.values() {
        *owned.entry(g.owner).or_default() += 1;
    }
    let members = applied
        .state
        .members
        .iter()
        .map(|(id, s)| MemberStatus {
            node_id: *id,
            node: s.node.clone(),
            voter: s.voter,
            live: s.live,
            groups_owned: owned.get(id).copied().unwrap_or(0),
        })
        .collect();
    ClusterStatus {
        node_id: m.id,
        role: format!("{:?}", m.state),
        leader: m.current_leader,
        term: m.current_term,
        last_log_index: m.last_log_index,
        commit_index,
        applied_index,
        members,
    }
}
