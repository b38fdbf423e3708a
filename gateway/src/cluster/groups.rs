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
//!   one group are committed in submission order (one writer task; batches of different groups
//!   are committed concurrently).

use std::collections::HashMap;

use kafka_protocol::ResponseError;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;

use super::command::{Command, CommandResponse};
use super::{ClusterError, Coordinator, NodeId};
use crate::group::record::GroupRecord;
use crate::group::store::{ImageGroup, StoreError};
use crate::group::{GroupLog, OwnershipFuture};

type Ack = oneshot::Sender<Result<(), StoreError>>;

struct Submission {
    group_id: String,
    epoch: u64,
    records: Vec<GroupRecord>,
    ack: Ack,
}

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
        tokio::spawn(writer(coordinator.clone(), rx));
        Self { coordinator, tx }
    }
}

impl std::fmt::Debug for Submission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Submission")
            .field("group_id", &self.group_id)
            .field("epoch", &self.epoch)
            .finish_non_exhaustive()
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
        let (ack, rx) = oneshot::channel();
        let submission = Submission {
            group_id: group_id.to_owned(),
            epoch,
            records,
            ack,
        };
        if let Err(mpsc::error::SendError(s)) = self.tx.send(submission) {
            let _ = s.ack.send(Err(StoreError::Closed));
        }
        rx
    }
}

/// Drains queued submissions, commits each group's submissions in order, groups concurrently.
async fn writer(coordinator: Coordinator, mut rx: mpsc::UnboundedReceiver<Submission>) {
    while let Some(first) = rx.recv().await {
        let mut by_group: HashMap<String, Vec<Submission>> = HashMap::new();
        by_group.entry(first.group_id.clone()).or_default().push(first);
        while let Ok(next) = rx.try_recv() {
            by_group.entry(next.group_id.clone()).or_default().push(next);
        }
        let mut tasks = JoinSet::new();
        for (_, submissions) in by_group {
            let coordinator = coordinator.clone();
            tasks.spawn(async move {
                for s in submissions {
                    let result = commit(&coordinator, &s).await;
                    let _ = s.ack.send(result);
                }
            });
        }
        while tasks.join_next().await.is_some() {}
    }
}

async fn commit(coordinator: &Coordinator, s: &Submission) -> Result<(), StoreError> {
    let command = Command::GroupWrites {
        owner: coordinator.node_id(),
        epoch: s.epoch,
        group_id: s.group_id.clone(),
        records: s.records.clone(),
    };
    match coordinator.write(command).await {
        Ok(CommandResponse::Written) => Ok(()),
        Ok(CommandResponse::Fenced { owner, epoch }) => {
            tracing::info!(group = %s.group_id, owner = ?owner, epoch, "group write fenced: ownership moved");
            Err(StoreError::Fenced)
        }
        Ok(other) => Err(StoreError::Cluster(format!("unexpected answer {other:?}"))),
        Err(e @ ClusterError::Fenced { .. }) => {
            tracing::info!(group = %s.group_id, error = %e, "group write fenced");
            Err(StoreError::Fenced)
        }
        Err(e) => Err(StoreError::Cluster(e.to_string())),
    }
}
