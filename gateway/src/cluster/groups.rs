//! Consumer groups over raft: [`ClusterGroupLog`] is the [`GroupLog`] of a clustered gateway.
//!
//! Invariants:
//! - A group is coordinated by the node the applied state names as its owner, under that
//!   state's epoch, and only while the node is in quorum ([`Coordinator::in_quorum`]);
//!   otherwise group requests are answered NOT_COORDINATOR so clients re-discover.
//! - An unowned group is claimed through the log (FindCoordinator or the first group request),
//!   so every member agrees on its owner.
//! - Records are written as one [`Command::GroupWrites`] per submission under the writer's
//!   epoch; the state machine rejects (fences) the batch when the epoch is stale. Submissions of
//!   one group are committed in submission order, groups independently of each other
//!   ([`super::group_writer`]).
//! - After a failed write the coordinator retires its epoch with [`Command::RenewGroup`],
//!   queued behind the group's earlier submissions, and reloads the group once the applied
//!   state shows the new epoch (by then every earlier write of the group is applied here too).
//! - Claims that never got durable state are released with [`Command::ReleaseGroups`].

use kafka_protocol::ResponseError;
use tokio::sync::{mpsc, oneshot};

use super::command::{Command, CommandResponse};
use super::group_writer::{self, Submission, Work};
use super::{ClusterError, Coordinator, NodeId};
use crate::group::record::GroupRecord;
use crate::group::store::{ImageGroup, StoreError};
use crate::group::{GroupLog, LogFuture, OwnershipFuture};

/// Most idle claims released by one log entry.
const RELEASE_CHUNK: usize = 1000;

/// The raft-backed group log of one node.
#[derive(Debug, Clone)]
pub struct ClusterGroupLog {
    coordinator: Coordinator,
    tx: mpsc::UnboundedSender<Submission>,
}

impl ClusterGroupLog {
    /// A group log writing through `coordinator`; its writer task ends when the log is dropped.
    pub fn new(coordinator: Coordinator) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let committer = coordinator.clone();
        let commit = move |group_id: String, epoch: u64, work: Work| {
            let coordinator = committer.clone();
            async move { commit(&coordinator, group_id, epoch, work).await }
        };
        tokio::spawn(group_writer::run(commit, rx));
        Self { coordinator, tx }
    }

    fn queue(&self, group_id: &str, epoch: u64, work: Work) -> oneshot::Receiver<Result<(), StoreError>> {
        let (ack, rx) = oneshot::channel();
        let submission = Submission {
            group_id: group_id.to_owned(),
            epoch,
            work,
            ack,
        };
        if let Err(mpsc::error::SendError(s)) = self.tx.send(submission) {
            let _ = s.ack.send(Err(StoreError::Closed));
        }
        rx
    }
}

impl Coordinator {
    /// The owner of `group_id`, claiming the group through the log when it has none.
    ///
    /// # Errors
    /// COORDINATOR_NOT_AVAILABLE when the claim cannot be committed now.
    pub async fn group_owner(&self, group_id: &str) -> Result<(NodeId, u64), ResponseError> {
        self.claim_group(group_id).await.map_err(|e| {
            tracing::warn!(group = group_id, error = %e, "cannot decide the group coordinator");
            ResponseError::CoordinatorNotAvailable
        })
    }
}

impl GroupLog for ClusterGroupLog {
    fn ownership<'a>(&'a self, group_id: &'a str) -> OwnershipFuture<'a> {
        Box::pin(async move {
            if !self.coordinator.in_quorum() {
                return Err(ResponseError::NotCoordinator);
            }
            let (owner, epoch) = self.coordinator.group_owner(group_id).await?;
            if owner == self.coordinator.node_id() {
                Ok(epoch)
            } else {
                Err(ResponseError::NotCoordinator)
            }
        })
    }

    fn load(&self, group_id: &str) -> Option<ImageGroup> {
        let g = self.coordinator.group(group_id)?;
        if g.metadata.is_none() && g.offsets.is_empty() {
            return None;
        }
        let offsets = g
            .offsets
            .into_iter()
            .flat_map(|(topic, parts)| parts.into_iter().map(move |(p, o)| ((topic.clone(), p), o)))
            .collect();
        Some(ImageGroup {
            metadata: g.metadata,
            offsets,
        })
    }

    fn owned_groups(&self) -> Vec<String> {
        let me = self.coordinator.node_id();
        self.coordinator.with_applied(|a| {
            a.state
                .groups
                .iter()
                .filter(|(_, g)| g.owner == me && (g.metadata.is_some() || !g.offsets.is_empty()))
                .map(|(id, _)| id.clone())
                .collect()
        })
    }

    fn submit(
        &self,
        group_id: &str,
        epoch: u64,
        records: Vec<GroupRecord>,
    ) -> oneshot::Receiver<Result<(), StoreError>> {
        self.queue(group_id, epoch, Work::Records(records))
    }

    fn renew<'a>(&'a self, group_id: &'a str, epoch: u64) -> LogFuture<'a> {
        let answer = self.queue(group_id, epoch, Work::Renew);
        Box::pin(async move { answer.await.unwrap_or(Err(StoreError::Closed)) })
    }

    fn idle_claims(&self) -> Vec<(String, u64)> {
        let me = self.coordinator.node_id();
        self.coordinator.with_applied(|a| {
            a.state
                .groups
                .iter()
                .filter(|(_, g)| g.owner == me && g.metadata.is_none() && g.offsets.is_empty())
                .map(|(id, g)| (id.clone(), g.epoch))
                .collect()
        })
    }

    fn release(&self, claims: Vec<(String, u64)>) -> LogFuture<'_> {
        Box::pin(async move {
            for chunk in claims.chunks(RELEASE_CHUNK) {
                let command = Command::ReleaseGroups {
                    owner: self.coordinator.node_id(),
                    claims: chunk.to_vec(),
                };
                self.coordinator
                    .write(command)
                    .await
                    .map_err(|e| StoreError::Cluster(e.to_string()))?;
            }
            Ok(())
        })
    }
}

/// Commits one submission: its records under `epoch`, or the retirement of `epoch`.
async fn commit(
    coordinator: &Coordinator,
    group_id: String,
    epoch: u64,
    work: Work,
) -> Result<(), StoreError> {
    let owner = coordinator.node_id();
    let renewal = work == Work::Renew;
    let command = match work {
        Work::Records(records) => Command::GroupWrites {
            owner,
            epoch,
            group_id: group_id.clone(),
            records,
        },
        Work::Renew => Command::RenewGroup {
            owner,
            epoch,
            group_id: group_id.clone(),
        },
    };
    match coordinator.write(command).await {
        Ok(CommandResponse::Written) => Ok(()),
        // A renewal is done whether it moved the epoch on or found it already moved.
        Ok(CommandResponse::Owner { .. }) => Ok(()),
        Ok(CommandResponse::Fenced { .. }) if renewal => Ok(()),
        Ok(CommandResponse::Fenced { owner, epoch }) => {
            tracing::info!(group = %group_id, owner = ?owner, epoch, "group write fenced: ownership moved");
            Err(StoreError::Fenced)
        }
        Ok(other) => Err(StoreError::Cluster(format!("unexpected answer {other:?}"))),
        Err(e @ ClusterError::Fenced { .. }) => {
            tracing::info!(group = %group_id, error = %e, "group write fenced");
            Err(StoreError::Fenced)
        }
        Err(e) => Err(StoreError::Cluster(e.to_string())),
    }
}
