//! The cluster side of SeaweedMQ write-ahead-log replication: who the peers are (the applied
//! raft membership), how many copies an answer needs, and the RPCs to them over the cluster
//! port's cached channels (docs/seaweedmq-mapping.md §3.4).

use std::sync::{Arc, OnceLock};

use futures::future::BoxFuture;
use tonic::transport::Channel;

use super::{Coordinator, NodeId};
use crate::storage::seaweedmq::wal_replica::pb;
use crate::storage::seaweedmq::wal_replica::pb::wal_replica_service_client::WalReplicaServiceClient;
use crate::storage::seaweedmq::wal_replicate::WalPeers;

/// Bound to the [`Coordinator`] once it runs (storage is opened first); until then the
/// membership is unknown and acks=all falls back to SeaweedMQ's flush.
#[derive(Debug, Default)]
pub struct ClusterWalPeers {
    node_id: NodeId,
    coordinator: OnceLock<Coordinator>,
}

impl ClusterWalPeers {
    /// Peers of node `node_id`, unbound.
    pub fn new(node_id: NodeId) -> Arc<Self> {
        Arc::new(Self {
            node_id,
            coordinator: OnceLock::new(),
        })
    }

    /// Binds the running coordinator (once).
    pub fn bind(&self, coordinator: Coordinator) {
        let _ = self.coordinator.set(coordinator);
    }

    /// The request to `peer` with the cluster token, if one is configured.
    fn request<T>(&self, body: T) -> Result<tonic::Request<T>, String> {
        let mut request = tonic::Request::new(body);
        let token = self
            .coordinator
            .get()
            .and_then(|c| c.inner.network.options().token.clone());
        if let Some(token) = token {
            let value = token
                .bearer()
                .parse()
                .map_err(|_| "the cluster token is not a valid header value".to_owned())?;
            request.metadata_mut().insert("authorization", value);
        }
        Ok(request)
    }

    fn channel(&self, peer: NodeId) -> Result<(Channel, usize), String> {
        let coordinator = self.coordinator.get().ok_or("the cluster is not running yet")?;
        let addr = {
            let metrics = coordinator.raft().metrics();
            let m = metrics.borrow();
            m.membership_config
                .membership()
                .get_node(&peer)
                .map(|n| n.cluster_addr.clone())
                .ok_or_else(|| format!("node {peer} is not a member"))?
        };
        let network = &coordinator.inner.network;
        let channel = network.channel(&addr).map_err(|e| e.to_string())?;
        Ok((channel, network.options().max_message_bytes))
    }
}

/// How many copies besides the writer's make a majority of `voters` (`writer_votes`: whether
/// the writer is one of them).
fn copies_needed(voters: usize, writer_votes: bool) -> usize {
    (voters / 2 + 1).saturating_sub(usize::from(writer_votes))
}

impl WalPeers for ClusterWalPeers {
    fn node_id(&self) -> u64 {
        self.node_id
    }

    fn peers(&self) -> Option<(Vec<u64>, usize)> {
        let coordinator = self.coordinator.get()?;
        let metrics = coordinator.raft().metrics();
        let m = metrics.borrow();
        let membership = m.membership_config.membership();
        let voters: Vec<NodeId> = membership.voter_ids().collect();
        if voters.is_empty() {
            return None;
        }
        let others: Vec<u64> = membership
            .nodes()
            .map(|(id, _)| *id)
            .filter(|id| *id != self.node_id)
            .collect();
        Some((others, copies_needed(voters.len(), voters.contains(&self.node_id))))
    }

    fn push(&self, peer: u64, req: pb::PushRequest) -> BoxFuture<'static, Result<pb::PushReply, String>> {
        let target = self.channel(peer).and_then(|c| Ok((c, self.request(req)?)));
        Box::pin(async move {
            let ((channel, max), req) = target?;
            WalReplicaServiceClient::new(channel)
                .max_decoding_message_size(max)
                .max_encoding_message_size(max)
                .push(req)
                .await
                .map(tonic::Response::into_inner)
                .map_err(|s| s.message().to_owned())
        })
    }

    fn fetch(&self, peer: u64, req: pb::FetchRequest) -> BoxFuture<'static, Result<pb::FetchReply, String>> {
        let target = self.channel(peer).and_then(|c| Ok((c, self.request(req)?)));
        Box::pin(async move {
            let ((channel, max), req) = target?;
            WalReplicaServiceClient::new(channel)
                .max_decoding_message_size(max)
                .max_encoding_message_size(max)
                .fetch(req)
                .await
                .map(tonic::Response::into_inner)
                .map_err(|s| s.message().to_owned())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::copies_needed;

    #[test]
    fn a_majority_counts_the_writer() {
        assert_eq!(copies_needed(1, true), 0);
        assert_eq!(copies_needed(2, true), 1);
        assert_eq!(copies_needed(3, true), 1);
        assert_eq!(copies_needed(4, true), 2);
        assert_eq!(copies_needed(5, true), 2);
        assert_eq!(copies_needed(3, false), 2, "a learner's own copy does not count");
    }
}
