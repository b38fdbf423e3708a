//! Inbound peer RPCs: the tonic `RaftService` on the cluster port.
//!
//! The cluster port is for peers only (it accepts membership changes and state-machine writes):
//! every call must carry the cluster token (`authorization: Bearer <token>`), checked in constant
//! time by an interceptor before the body is decoded; a call without it is answered
//! `UNAUTHENTICATED` and reaches no handler. Decoding is bounded by the configured message size,
//! and snapshot chunks by the [`SnapshotGate`]. openraft errors travel back inside the reply so
//! the caller sees them as remote errors; only envelope problems become gRPC statuses.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use openraft::error::{InstallSnapshotError, RaftError, SnapshotMismatch};
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest};
use openraft::SnapshotSegmentId;
use parking_lot::Mutex;
use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};

use super::command::ForwardRequest;
use super::management::execute_local;
use super::solo::SoloGate;
use super::pb::v1::raft_service_server::{RaftService, RaftServiceServer};
use super::pb::v1::{RaftReply, RaftRequest};
use super::snapshot_gate::{ChunkError, SnapshotGate};
use super::{NodeId, Raft, TypeConfig};
use crate::auth::Token;

/// The inbound peer service of one node.
#[derive(Clone)]
pub struct PeerService {
    raft: Raft,
    leader_contact: Arc<Mutex<Option<Instant>>>,
    gate: Arc<SoloGate>,
    snapshots: Arc<SnapshotGate>,
}

impl std::fmt::Debug for PeerService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerService").finish_non_exhaustive()
    }
}

impl PeerService {
    /// Serves `raft` to its peers, recording in `leader_contact` when a leader's AppendEntries
    /// (replication or heartbeat) was last accepted, admitting snapshots of at most
    /// `max_snapshot_bytes`; forwarded member additions pass `gate`.
    pub fn new(
        raft: Raft,
        leader_contact: Arc<Mutex<Option<Instant>>>,
        max_snapshot_bytes: u64,
        gate: Arc<SoloGate>,
    ) -> Self {
        Self {
            raft,
            leader_contact,
            snapshots: Arc::new(SnapshotGate::new(max_snapshot_bytes)),
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
        let id = &rpc.meta.snapshot_id;
        if let Err(e) = self
            .snapshots
            .admit(id, rpc.offset, rpc.data.len() as u64, rpc.done)
        {
            tracing::warn!(error = %e, "snapshot chunk refused");
            // A chunk out of sequence gets openraft's own answer, on which a sender starts the
            // snapshot again from offset 0; a snapshot over the cap cannot succeed by retrying.
            let expect = match e {
                ChunkError::NotAtStart { .. } => 0,
                ChunkError::Gap { received, .. } => received,
                ChunkError::TooLarge { .. } => return Err(Status::resource_exhausted(e.to_string())),
            };
            let segment = |offset| SnapshotSegmentId {
                id: id.clone(),
                offset,
            };
            let mismatch = InstallSnapshotError::SnapshotMismatch(SnapshotMismatch {
                expect: segment(expect),
                got: segment(rpc.offset),
            });
            return reply::<InstallSnapshotResponse<NodeId>, _>(&Err(RaftError::<NodeId, _>::APIError(
                mismatch,
            )));
        }
        reply(&self.raft.install_snapshot(rpc).await)
    }

    async fn forward(&self, request: Request<RaftRequest>) -> Result<Response<RaftReply>, Status> {
        let req: ForwardRequest = decode(&request)?;
        reply(&execute_local(&self.raft, &self.gate, req).await)
    }
}

/// The interceptor refusing calls that do not present `token`.
#[derive(Debug, Clone)]
pub struct RequireToken {
    token: Token,
    /// Unix second of the last refusal logged: at most one warning a second.
    last_warned: Arc<AtomicU64>,
}

impl RequireToken {
    /// Admits only calls carrying `authorization: Bearer <token>`.
    pub fn new(token: Token) -> Self {
        Self {
            token,
            last_warned: Arc::default(),
        }
    }
}

impl tonic::service::Interceptor for RequireToken {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        let header = request.metadata().get("authorization").map(|v| v.as_bytes());
        if self.token.verify_bearer(header) {
            return Ok(request);
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if self.last_warned.swap(now, Ordering::Relaxed) != now {
            tracing::warn!(
                peer = ?request.remote_addr(),
                presented = header.is_some(),
                "raft call refused: missing or wrong cluster token"
            );
        }
        Err(Status::unauthenticated("missing or wrong cluster token"))
    }
}

/// Serves the peer protocol on `listener`, with the `extra` services next to it, until
/// `shutdown` completes, to callers presenting `token` only.
///
/// # Errors
/// Transport errors of the gRPC server.
pub async fn serve(
    listener: TcpListener,
    service: PeerService,
    token: Token,
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
        .layer(tonic::service::InterceptorLayer::new(RequireToken::new(token)))
        .add_routes(routes)
        .serve_with_incoming_shutdown(TcpIncoming::from(listener).with_nodelay(Some(true)), shutdown)
        .await
}
