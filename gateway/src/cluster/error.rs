//! Errors of the cluster layer, as seen by its callers (handlers, admin API, main).

use kafka_protocol::ResponseError;

use super::NodeId;

/// Why a cluster operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// No leader is known, or the leader could not be reached in time; retry after rediscovery.
    #[error("no reachable raft leader")]
    NoLeader,
    /// This node is not the leader and forwarding was not possible.
    #[error("not the raft leader (leader: {leader:?})")]
    NotLeader {
        /// The leader as far as this node knows.
        leader: Option<NodeId>,
    },
    /// The writer no longer owns the group at the epoch it wrote with.
    #[error("group ownership is fenced (owner {owner:?}, epoch {epoch})")]
    Fenced {
        /// Current owner.
        owner: Option<NodeId>,
        /// Current epoch.
        epoch: u64,
    },
    /// The state machine refused a well-formed command.
    #[error("command rejected: {0}")]
    Rejected(String),
    /// A membership change was refused by raft (e.g. one already in progress).
    #[error("membership change refused: {0}")]
    Membership(String),
    /// A peer RPC failed.
    #[error("peer rpc failed: {0}")]
    Rpc(String),
    /// Encoding or decoding a peer message failed.
    #[error("peer message codec")]
    Codec(#[source] serde_json::Error),
    /// The local raft node stopped or its storage failed.
    #[error("raft node failed: {0}")]
    Fatal(String),
    /// Local raft storage could not be opened.
    #[error("raft storage")]
    Storage(#[source] std::io::Error),
    /// Invalid configuration (peer list, addresses).
    #[error("invalid cluster configuration: {0}")]
    Config(String),
}

impl ClusterError {
    /// A bounded label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            ClusterError::NoLeader => "no_leader",
            ClusterError::NotLeader { .. } => "not_leader",
            ClusterError::Fenced { .. } => "fenced",
            ClusterError::Rejected(_) => "rejected",
            ClusterError::Membership(_) => "membership",
            ClusterError::Rpc(_) => "rpc",
            ClusterError::Codec(_) => "codec",
            ClusterError::Fatal(_) => "fatal",
            ClusterError::Storage(_) => "storage",
            ClusterError::Config(_) => "config",
        }
    }

    /// The Kafka error a coordinator request answers with when this happens: clients
    /// rediscover the coordinator on `NOT_COORDINATOR` and retry on
    /// `COORDINATOR_NOT_AVAILABLE`.
    pub fn response_error(&self) -> ResponseError {
        match self {
            ClusterError::NotLeader { .. } | ClusterError::Fenced { .. } => ResponseError::NotCoordinator,
            ClusterError::NoLeader | ClusterError::Rpc(_) | ClusterError::Rejected(_) => {
                ResponseError::CoordinatorNotAvailable
            }
            ClusterError::Membership(_)
            | ClusterError::Codec(_)
            | ClusterError::Fatal(_)
            | ClusterError::Storage(_)
            | ClusterError::Config(_) => ResponseError::UnknownServerError,
        }
    }
}

/// Result alias of the cluster layer.
pub type Result<T, E = ClusterError> = std::result::Result<T, E>;
