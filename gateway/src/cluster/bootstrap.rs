//! Starting a node: initialize a new cluster or join a running one.
//!
//! Rules (the same on every node, so a set of pods started together converges):
//! - A node already holding a membership that includes itself is a member: nothing to do.
//! - A node with no peers but itself initializes a one-node cluster.
//! - Otherwise it asks the listed peers whether they belong to a cluster; if one does, it asks
//!   that cluster's leader to add it (learner first, voter once caught up).
//! - Only the lowest listed id initializes, and only when no peer reports a cluster; every other
//!   node waits until it can join. So pods started together form one cluster around the lowest
//!   id, and a pod added later (scale-up) joins the running cluster.
//!
//! Known limit: a lowest-id node that lost its data while every peer is unreachable initializes
//! a new cluster alone; the operator keeps raft data on a PersistentVolume to avoid this.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::command::{Command, ForwardError, ForwardRequest, ForwardResponse};
use super::{ClusterError, Coordinator, NodeId};

/// Backoff bounds between bootstrap attempts.
const RETRY_MIN: Duration = Duration::from_millis(200);
const RETRY_MAX: Duration = Duration::from_secs(2);

impl Coordinator {
    /// True when this node's raft has a membership (it initialized a cluster or joined one).
    pub fn is_initialized(&self) -> bool {
        let m = self.inner.raft.metrics().borrow().clone();
        let initialized = m.membership_config.membership().voter_ids().next().is_some();
        initialized
    }

    /// Makes this node a member of the cluster described by `peers` (node id → peer address,
    /// possibly including this node), then records `cluster_id` as the cluster's id unless one
    /// is already set. Retries with backoff until it succeeds or `stop` is cancelled.
    ///
    /// # Errors
    /// [`ClusterError::Fatal`] when raft stopped, or [`ClusterError::NoLeader`] when cancelled.
    pub async fn bootstrap(
        &self,
        peers: &BTreeMap<NodeId, String>,
        cluster_id: &str,
        stop: &CancellationToken,
    ) -> Result<(), ClusterError> {
        let me = self.node_id();
        let mut delay = RETRY_MIN;
        loop {
            if self.joined() {
                break;
            }
            match self.bootstrap_step(peers).await {
                Ok(()) => {}
                Err(e @ ClusterError::Fatal(_)) => return Err(e),
                Err(e) => tracing::info!(node_id = me, error = %e, "not a cluster member yet, retrying"),
            }
            if self.joined() {
                break;
            }
            tokio::select! {
                () = stop.cancelled() => return Err(ClusterError::NoLeader),
                () = tokio::time::sleep(delay) => {}
            }
            delay = (delay * 2).min(RETRY_MAX);
        }
        tracing::info!(node_id = me, "cluster member");
        if self.cluster_id().is_none() {
            self.write(Command::SetClusterId {
                cluster_id: cluster_id.to_owned(),
            })
            .await?;
        }
        Ok(())
    }

    async fn bootstrap_step(&self, peers: &BTreeMap<NodeId, String>) -> Result<(), ClusterError> {
        let me = self.node_id();
        let others: Vec<(NodeId, &String)> = peers
            .iter()
            .filter(|(id, _)| **id != me)
            .map(|(id, a)| (*id, a))
            .collect();
        if others.is_empty() {
            if !self.is_initialized() {
                tracing::info!(node_id = me, "initializing a one-node cluster");
                self.initialize(BTreeMap::from([(me, self.inner.node.clone())]))
                    .await?;
            }
            return Ok(());
        }
        let mut leaders = Vec::new();
        for (id, addr) in &others {
            match self.inner.network.forward(addr, &ForwardRequest::Status).await {
                Ok(Ok(ForwardResponse::Status {
                    initialized: true,
                    leader,
                })) => leaders.push((*id, leader)),
                Ok(_) => {}
                Err(e) => tracing::debug!(peer = id, error = %e, "peer not reachable"),
            }
        }
        if leaders.is_empty() {
            let lowest = peers.keys().next().copied();
            if lowest == Some(me) && !self.is_initialized() {
                tracing::info!(node_id = me, "no peer belongs to a cluster: initializing one");
                self.initialize(BTreeMap::from([(me, self.inner.node.clone())]))
                    .await?;
                return Ok(());
            }
            return Err(ClusterError::NoLeader);
        }
        // Ask the leader named by a member; fall back to the members themselves.
        let mut targets: Vec<NodeId> = leaders.iter().filter_map(|(_, l)| *l).collect();
        targets.extend(leaders.iter().map(|(id, _)| *id));
        targets.dedup();
        let request = ForwardRequest::AddMember {
            node_id: me,
            node: self.inner.node.clone(),
        };
        let mut last = ClusterError::NoLeader;
        for target in targets {
            let Some(addr) = peers.get(&target) else { continue };
            tracing::info!(node_id = me, via = target, "asking to join the cluster");
            match self.inner.network.forward(addr, &request).await {
                Ok(Ok(_)) => return Ok(()),
                Ok(Err(ForwardError::NotLeader { .. })) => last = ClusterError::NoLeader,
                Ok(Err(e)) => last = e.into(),
                Err(e) => last = e,
            }
        }
        Err(last)
    }
}
