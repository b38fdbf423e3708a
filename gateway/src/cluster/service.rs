//! Inbound peer RPCs: the tonic `RaftService` on the cluster port.
//!
//! The cluster port is for trusted peers only (it accepts membership changes); decoding is
//! bounded by the configured message size. openraft errors travel back inside the reply so the
//! caller sees them as remote errors; only envelope problems become gRPC statuses.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;

use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};

use super::command::ForwardRequest;
use super::management::execute_local;
use super::solo::SoloGate;
use super::pb::v1::raft_service_server::{RaftService, RaftServiceServer};
use super::pb::v1::{RaftReply, RaftRequest};
use super::{NodeId, Raft, TypeConfig};

/// The inbound peer service of one node.
#[derive(Clone)]
pub struct PeerService {
    raft: Raft,
    leader_contact: Arc<Mutex<Option<Instant>>>,
    gate: Arc<SoloGate>,
}

impl std::fmt::Debug for PeerService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerService").finish_non_exhaustive()
    }
}

impl PeerService {
    /// Serves `raft` to its peers, recording in `leader_contact` when a leader's AppendEntries
    /// (replication or heartbeat) was last accepted; forwarded member additions pass `gate`.
    pub fn new(raft: Raft, leader_contact: Arc<Mutex<Option<Instant>>>, gate: Arc<SoloGate>) -> Self {
        Self {
            raft,
            leader_contact,
            gate,
        }
    }
}

fn decode<T: serde::de::DeserializeOwned>(request: &Request<RaftRequest>) -> Result<T, Status> {
    request
        .get_ref()
        .decode()
        .map_err(|e| Status::invalid_argument(e.to_string()))
}

fn reply<T: serde::Serialize, E: serde::Serialize>(
    result: &Result<T, E>,
) -> Result<Response<RaftReply>, Status> {
    RaftReply::encode(result)
        .map(Response::new)
        .map_err(|e| Status::internal(e.to_string()))
}

#[tonic::async_trait]
impl RaftService for PeerService {
    async fn vote(&self, request: Request<RaftRequest>) -> Result<Response<RaftReply>, Status> {
        let rpc: VoteRequest<NodeId> = decode(&request)?;
        reply(&self.raft.vote(rpc).await)
    }

    async fn append(&self, request: Request<RaftRequest>) -> Result<Response<RaftReply>, Status> {
        let rpc: AppendEntriesRequest<TypeConfig> = decode(&request)?;
        let result = self.raft.append_entries(rpc).await;
        if result.as_ref().is_ok_and(|r| r.is_success()) {
            *self.leader_contact.lock() = Some(Instant::now());
        }
        reply(&result)
    }

    async fn snapshot(&self, request: Request<RaftRequest>) -> Result<Response<RaftReply>, Status> {
        let rpc: InstallSnapshotRequest<TypeConfig> = decode(&request)?;
        reply(&self.raft.install_snapshot(rpc).await)
    }

    async fn forward(&self, request: Request<RaftRequest>) -> Result<Response<RaftReply>, Status> {
        let req: ForwardRequest = decode(&request)?;
        reply(&execute_local(&self.raft, &self.gate, req).await)
    }
}

/// Serves the peer protocol on `listener`, with the `extra` services next to it, until
/// `shutdown` completes.
///
/// # Errors
/// Transport errors of the gRPC server.
pub async fn serve(
    listener: TcpListener,
    service: PeerService,
    max_message_bytes: usize,
    extra: Option<tonic::service::Routes>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    let svc = RaftServiceServer::new(service)
        .max_decoding_message_size(max_message_bytes)
        .max_encoding_message_size(max_message_bytes);
    let routes = match extra {
        Some(routes) => routes.add_service(svc),
        None => tonic::service::Routes::new(svc),
    };
    tonic::transport::Server::builder()
        .add_routes(routes)
        .serve_with_incoming_shutdown(TcpIncoming::from(listener).with_nodelay(Some(true)), shutdown)
        .await
}
