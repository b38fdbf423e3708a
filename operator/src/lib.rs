//! kafka-gateway-operator: the Kubernetes controller of the `KafkaGateway` resource.
//!
//! # Layout
//! - [`crd`]: the resource (spec, status, schema rules); `crdgen` prints it.
//! - [`resources`]: pure builders from a `KafkaGateway` to its child objects.
//! - [`topics`]: topic reconciliation through the gateway crate's storage API over SeaweedMQ.
//! - [`members`]: raft member removal through the gateway admin API before a scale-down.
//! - [`status`]: conditions computed from observed children and topic results.
//! - [`validate`]: checks of specs Kubernetes would refuse in the children.
//! - [`controller`]: the reconcile loop (finalizer, events, backoff); `apply`: its apply path
//!   (validation, scale-down, server-side apply of the children, topics, status).
//! - [`leader`]: leader election on a `coordination.k8s.io` Lease.
//! - [`metrics`] and [`admin`]: operator metrics and the admin HTTP server.
//! - [`telemetry`]: the log subscriber and its default filter.
//! - [`uninstall`]: the chart's pre-delete hook (delete the release's gateway while the operator runs).

pub mod admin;
mod apply;
pub mod controller;
pub mod crd;
pub mod leader;
pub mod members;
pub mod metrics;
pub mod resources;
pub mod status;
pub mod telemetry;
pub mod topics;
pub mod uninstall;
pub mod validate;

#[cfg(test)]
mod fixtures;

pub use controller::{run, Context, FIELD_MANAGER, FINALIZER};
pub use crd::{KafkaGateway, KafkaGatewaySpec, KafkaGatewayStatus};

/// Errors of a reconcile.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Kubernetes API call failed.
    #[error("kubernetes api: {0}")]
    Kube(#[source] kube::Error),
    /// The API server refused a child object built from the spec (400/422): reported in the
    /// status, not retried until the spec changes.
    #[error("the api server refused the {child}: {message}")]
    ChildRejected {
        /// Which child.
        child: &'static str,
        /// The API server's message (it names the field).
        message: String,
    },
    /// The object lacks a field every stored object has (name, namespace).
    #[error("object has no {0}")]
    MissingObjectKey(&'static str),
    /// A departing raft member could not be removed; the StatefulSet is not shrunk.
    #[error("removing raft member {node_id}: {source}")]
    MemberRemoval {
        /// Node id (pod ordinal) of the member.
        node_id: i32,
        /// Why.
        #[source]
        source: members::MemberError,
    },
    /// Some topics could not be reconciled (details are in the status).
    #[error("{failed} topic(s) failed to reconcile")]
    Topics {
        /// How many.
        failed: usize,
    },
    /// A KafkaGateway was not gone within the wait (its finalizer needs a running operator).
    #[error("kafkagateway {name} still exists after {waited:?}: is the operator running? (its finalizer deletes the topics under topicDeletionPolicy Delete)")]
    StillPresent {
        /// The gateway.
        name: String,
        /// How long was waited.
        waited: std::time::Duration,
    },
    /// SeaweedMQ failed during cleanup.
    #[error("seaweedmq: {0}")]
    Storage(#[source] kafka_gateway::storage::StorageError),
    /// The tokens Secret is missing (a user-named one) or holds tokens the gateway would refuse:
    /// reported in the status, no child is changed.
    #[error("tokens secret {name}: {reason}")]
    TokensSecret {
        /// The Secret.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl Error {
    /// A bounded label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::Kube(_) => "kube",
            Self::ChildRejected { .. } => "child_rejected",
            Self::StillPresent { .. } => "still_present",
            Self::MissingObjectKey(_) => "missing_object_key",
            Self::MemberRemoval { .. } => "member_removal",
            Self::Topics { .. } => "topics",
            Self::Storage(_) => "storage",
            Self::TokensSecret { .. } => "tokens_secret",
        }
    }
}

/// Result alias of the operator.
pub type Result<T, E = Error> = std::result::Result<T, E>;
