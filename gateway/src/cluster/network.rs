//! Outbound peer RPCs: openraft's `RaftNetworkFactory` over tonic.
//!
//! One lazily connecting [`Channel`] per peer address is cached and shared by every client of
//! that peer (tonic reconnects a channel by itself). A peer that refuses connections (or this
//! node's cluster token) is reported as `Unreachable`, so openraft retries it on
//! [`PeerClient::backoff`]'s schedule instead of in a tight loop. Messages are bounded by [`NetworkOptions::max_message_bytes`] both ways. Every call
//! presents the cluster token ([`NetworkOptions::token`]). The time of the last answer from each
//! peer is recorded; the leader's liveness view is built from it.

use std::collections::HashMap;
use std::error::Error as StdError;
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::{Backoff, RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use parking_lot::Mutex;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::transport::{Channel, Endpoint};

use super::command::{ForwardError, ForwardRequest, ForwardResponse};
use super::error::ClusterError;
use super::pb::v1::raft_service_client::RaftServiceClient;
use super::pb::v1::{RaftReply, RaftRequest};
use super::pb::Wire;
use super::{ClusterNode, NodeId, TypeConfig};
use crate::auth::Token;

/// Limits and timeouts of peer connections.
#[derive(Debug, Clone)]
pub struct NetworkOptions {
    /// Largest peer message sent or accepted, bytes.
    pub max_message_bytes: usize,
    /// Timeout of establishing a connection to a peer.
    pub connect_timeout: Duration,
    /// Timeout of a forwarded request (it waits for a commit on the leader).
    pub forward_timeout: Duration,
    /// Largest snapshot received from a peer, bytes (the receiver holds it in memory).
    pub max_snapshot_bytes: u64,
    /// The shared secret every peer call presents and every peer requires. Required to serve
    /// peers; a node without it (standalone) sends no peer calls.
    pub token: Option<Token>,
}

impl Default for NetworkOptions {
    fn default() -> Self {
        Self {
            max_message_bytes: 64 * 1024 * 1024,
            connect_timeout: Duration::from_secs(2),
            forward_timeout: Duration::from_secs(10),
            max_snapshot_bytes: 1 << 30,
            token: None,
        }
    }
}

/// Outbound side of the peer protocol, shared by openraft's replication and the forwarding of
/// writes to the leader. Clones share the channel cache.
#[derive(Debug, Clone)]
pub struct Network {
    options: NetworkOptions,
    channels: Arc<Mutex<HashMap<String, Channel>>>,
    last_contact: Arc<Mutex<HashMap<NodeId, Instant>>>,
}

#[derive(Debug, Clone, Copy)]
enum Method {
    Vote,
    Append,
    Snapshot,
    Forward,
}

impl Network {
    /// A network with no cached connections.
    pub fn new(options: NetworkOptions) -> Self {
        Self {
            options,
            channels: Arc::default(),
            last_contact: Arc::default(),
        }
    }

    /// The options in force.
    pub fn options(&self) -> &NetworkOptions {
        &self.options
    }

    /// When a peer last answered an RPC of this node, if it ever did.
    pub fn last_contact(&self, node_id: NodeId) -> Option<Instant> {
        self.last_contact.lock().get(&node_id).copied()
    }

    fn client(&self, addr: &str) -> Result<RaftServiceClient<Channel>, ClusterError> {
        Ok(RaftServiceClient::new(self.channel(addr)?)
            .max_decoding_message_size(self.options.max_message_bytes)
            .max_encoding_message_size(self.options.max_message_bytes))
    }

    /// The cached channel to the peer at `addr` (also used by the services next to raft on
    /// the cluster port).
    pub(crate) fn channel(&self, addr: &str) -> Result<Channel, ClusterError> {
        let channel = {
            let mut channels = self.channels.lock();
            match channels.get(addr) {
                Some(c) => c.clone(),
                None => {
                    let endpoint = Endpoint::from_shared(format!("http://{addr}"))
                        .map_err(|e| ClusterError::Config(format!("peer address {addr}: {e}")))?
                        .connect_timeout(self.options.connect_timeout)
                        .tcp_nodelay(true);
                    let channel = endpoint.connect_lazy();
                    channels.insert(addr.to_owned(), channel.clone());
                    channel
                }
            }
        };
        Ok(channel)
    }

    async fn call(
        &self,
        addr: &str,
        method: Method,
        request: RaftRequest,
        timeout: Duration,
    ) -> Result<RaftReply, tonic::Status> {
        let mut client = self
            .client(addr)
            .map_err(|e| tonic::Status::invalid_argument(e.to_string()))?;
        let mut request = tonic::Request::new(request);
        request.set_timeout(timeout);
        if let Some(token) = &self.options.token {
            let value = token
                .bearer()
                .parse()
                .map_err(|_| tonic::Status::internal("the cluster token is not a valid header value"))?;
            request.metadata_mut().insert("authorization", value);
        }
        let reply = match method {
            Method::Vote => client.vote(request).await,
            Method::Append => client.append(request).await,
            Method::Snapshot => client.snapshot(request).await,
            Method::Forward => client.forward(request).await,
        };
        reply.map(tonic::Response::into_inner)
    }

    /// Sends `request` to the node at `addr` (the leader) and returns its answer.
    ///
    /// # Errors
    /// [`ClusterError::Rpc`] when the leader cannot be reached or answers garbage, and
    /// [`ClusterError::Codec`] when the request does not serialize.
    pub async fn forward(
        &self,
        addr: &str,
        request: &ForwardRequest,
    ) -> Result<Result<ForwardResponse, ForwardError>, ClusterError> {
        let request = RaftRequest::try_from(&Wire(request)).map_err(ClusterError::Codec)?;
        let reply = self
            .call(addr, Method::Forward, request, self.options.forward_timeout)
            .await
            .map_err(|s| ClusterError::Rpc(format!("forward to {addr}: {}", s.message())))?;
        reply
            .decode()
            .map_err(|e| ClusterError::Rpc(format!("forward reply from {addr}: {e}")))
    }
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &ClusterNode) -> PeerClient {
        PeerClient {
            target,
            node: node.clone(),
            network: self.clone(),
        }
    }
}

/// openraft's connection to one peer.
#[derive(Debug)]
pub struct PeerClient {
    target: NodeId,
    node: ClusterNode,
    network: Network,
}

impl PeerClient {
    async fn rpc<Req, Resp, E>(
        &self,
        method: Method,
        request: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<NodeId, ClusterNode, E>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: StdError + DeserializeOwned,
    {
        let request =
            RaftRequest::try_from(&Wire(request)).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let reply = self
            .network
            .call(&self.node.cluster_addr, method, request, option.hard_ttl())
            .await
            .map_err(|status| match status.code() {
                // A peer refusing our token (a member configured with another one) is retried
                // on the backoff schedule like one refusing connections, not on every heartbeat.
                tonic::Code::Unavailable | tonic::Code::Unauthenticated => {
                    RPCError::Unreachable(Unreachable::new(&status))
                }
                _ => RPCError::Network(NetworkError::new(&status)),
            })?;
        self.network
            .last_contact
            .lock()
            .insert(self.target, Instant::now());
        match reply.decode::<Resp, E>() {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(remote)) => Err(RPCError::RemoteError(RemoteError::new_with_node(
                self.target,
                self.node.clone(),
                remote,
            ))),
            Err(e) => Err(RPCError::Network(NetworkError::new(&e))),
        }
    }
}

type RpcResult<T, E = RaftError<NodeId>> = Result<T, RPCError<NodeId, ClusterNode, E>>;

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>> {
        self.rpc(Method::Append, &rpc, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>> {
        self.rpc(Method::Snapshot, &rpc, &option).await
    }

    async fn vote(&mut self, rpc: VoteRequest<NodeId>, option: RPCOption) -> RpcResult<VoteResponse<NodeId>> {
        self.rpc(Method::Vote, &rpc, &option).await
    }

    /// Exponential from 100 ms, capped at 2 s: a restarting peer is found again quickly, a dead
    /// one costs little.
    fn backoff(&self) -> Backoff {
        Backoff::new(
            (0..).map(|i: u32| Duration::from_millis(100u64.saturating_mul(1 << i.min(5)).min(2000))),
        )
    }
}
