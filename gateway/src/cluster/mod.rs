//! The gateway cluster: replicas agree through openraft on members, consumer-group ownership
//! (with fencing epochs), committed offsets and group metadata, and producer-id blocks.
//!
//! # Layout
//! Following openraft's layering:
//! - this file: [`TypeConfig`], the node type [`ClusterNode`] and the [`Coordinator`] handle, the
//!   only cluster API the rest of the gateway calls.
//! - [`command`]: what the log carries; [`state`]: the pure, deterministic state and its apply.
//! - [`state_machine`]: openraft's `RaftStateMachine` over [`state::ClusterState`], snapshots.
//! - [`log_store`]: the durable raft log and vote on local disk.
//! - [`network`]: outbound peer RPCs (tonic, cached channels, backoff, size limits).
//! - [`service`]: the inbound peer gRPC service on the cluster port (cluster token required);
//!   [`snapshot_gate`]: the bounds on inbound snapshot chunks.
//! - [`management`]: init, add/remove members, status; [`admin_http`]: the same over HTTP.
//! - [`scram`]: SASL SCRAM credentials in the replicated state.
//! - [`solo`]: whether this node is the only member (storage shortcuts safe only alone).
//! - [`wal_peers`]: the peers of SeaweedMQ write-ahead-log replication.
//! - [`pb`]: the generated peer protocol and its message conversions.

pub mod admin_http;
pub mod bootstrap;
pub mod command;
pub mod error;
mod group_writer;
pub mod groups;
pub mod log_store;
pub mod management;
pub mod metrics;
pub mod network;
pub mod pb;
pub mod scram;
pub mod service;
pub mod snapshot_gate;
pub mod solo;
pub mod state;
pub mod state_machine;
pub mod view;
pub mod wal_peers;

mod coordinator;
pub(crate) mod log_file;

use std::collections::BTreeMap;
use std::fmt;
use std::io::Cursor;

use serde::{Deserialize, Serialize};

pub use command::{Command, CommandResponse};
pub use coordinator::{ClusterOptions, Coordinator};
pub use error::ClusterError;
pub use groups::ClusterGroupLog;
pub use metrics::ClusterMetrics;
pub use view::Broker;

/// Raft node id: from configuration, or the StatefulSet ordinal on Kubernetes.
pub type NodeId = u64;

openraft::declare_raft_types!(
    /// openraft's type configuration for the gateway cluster.
    pub TypeConfig:
        D = Command,
        R = CommandResponse,
        NodeId = NodeId,
        Node = ClusterNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// The raft handle of this gateway.
pub type Raft = openraft::Raft<TypeConfig>;

/// What the cluster knows about one member: where peers, Kafka clients and operators reach it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterNode {
    /// Raft peer gRPC address (`host:port`), reachable from the other members only.
    pub cluster_addr: String,
    /// Advertised Kafka `host:port` of the first listener: put in Metadata and FindCoordinator
    /// answers to clients of any listener when `listeners` is empty (a member started before
    /// listeners were shared).
    pub kafka_addr: String,
    /// Advertised Kafka `host:port` per listener name: a client is answered with the
    /// addresses of the listener it connected to, and members without that listener are left
    /// out (as Kafka does).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub listeners: BTreeMap<String, String>,
    /// Admin HTTP `host:port` (metrics, health, cluster admin).
    pub admin_addr: String,
    /// Rack reported to Kafka clients, if configured.
    pub rack: Option<String>,
}

impl fmt::Display for ClusterNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{{cluster: {}, kafka: {}}}",
            self.cluster_addr, self.kafka_addr
        )
    }
}

#[cfg(test)]
pub(crate) mod test_support;

#[cfg(test)]
mod groups_test;

#[cfg(test)]
#[path = "cluster_test.rs"]
mod cluster_test;

#[cfg(test)]
mod auth_test;
