//! Kafka API handlers: one file per API, typed request in, typed response out.
//!
//! Handlers never touch sockets or bytes on the wire; the session layer decodes, calls
//! [`dispatch`], and encodes. Per-partition and per-topic failures are written into responses as
//! Kafka error codes; only [`HandlerError`] (a request the dispatcher cannot route) closes the
//! connection.

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseKind};

use crate::cluster::Coordinator;
use crate::group::GroupCoordinator;
use crate::metrics::Metrics;
use crate::producer_ids::ProducerIdAllocator;
use crate::sasl::{AuthSession, Authenticator};
use crate::storage::Storage;

mod alter_configs;
mod alter_user_scram_credentials;
mod api_versions;
mod assignments;
mod authorized_ops;
pub mod caps;
mod config_docs;
mod create_partitions;
mod create_topics;
mod dedup;
mod delete_groups;
mod delete_records;
mod delete_topics;
mod describe_cluster;
mod describe_configs;
mod describe_groups;
mod describe_user_scram_credentials;
mod fetch;
mod find_coordinator;
mod heartbeat;
mod incremental_alter_configs;
mod init_producer_id;
mod join_group;
mod leave_group;
mod list_groups;
mod list_offsets;
mod metadata;
mod offset_commit;
mod offset_delete;
mod offset_fetch;
mod offset_for_leader_epoch;
mod produce;
pub mod produce_order;
mod sasl_authenticate;
mod sasl_handshake;
mod sync_group;
pub mod window;

/// Identity of this broker as advertised to clients.
#[derive(Debug, Clone)]
pub struct BrokerInfo {
    /// Node id in Metadata and DescribeCluster.
    pub node_id: i32,
    /// Advertised host of the first listener.
    pub host: String,
    /// Advertised port of the first listener.
    pub port: i32,
    /// Advertised `(host, port)` per listener name.
    pub listeners: BTreeMap<String, (String, i32)>,
    /// Rack, if configured.
    pub rack: Option<String>,
    /// This node's cluster id, proposed to the cluster at bootstrap (the replicated id wins).
    pub cluster_id: String,
}

/// Handler behaviour options taken from the config.
#[derive(Debug, Clone)]
pub struct HandlerOptions {
    /// Create unknown topics on Metadata when the client allows it.
    pub auto_create_topics: bool,
    /// Partitions of auto-created topics and of CreateTopics with `num_partitions = -1`.
    pub default_partitions: i32,
    /// Upper bound on one fetch response in bytes, whatever the client asks.
    pub fetch_max_bytes: usize,
}

/// Everything a handler may use. Shared by all connections.
#[derive(Debug)]
pub struct Context {
    /// The storage backend (wrapped in metrics).
    pub storage: Arc<dyn Storage>,
    /// This broker's identity.
    pub broker: BrokerInfo,
    /// Behaviour options.
    pub options: HandlerOptions,
    /// Topic and partition caps; creations go through it.
    pub caps: caps::ResourceCaps,
    /// Request-path metrics.
    pub metrics: Arc<Metrics>,
    /// Producer id source for InitProducerId.
    pub producer_ids: Arc<ProducerIdAllocator>,
    /// Consumer groups and committed offsets.
    pub groups: GroupCoordinator,
    /// The gateway cluster (a one-node cluster when standalone): members, controller, group
    /// ownership.
    pub cluster: Coordinator,
    /// SASL users, session lifetime and the audit of authentications.
    pub auth: Arc<Authenticator>,
}

impl Context {
    /// The brokers advertised to clients: the cluster's live members, or this node alone while
    /// it has not applied a membership yet.
    /// Addresses are the first listener's.
    pub fn brokers(&self) -> Vec<crate::cluster::Broker> {
        let brokers = self.cluster.brokers();
        if brokers.is_empty() {
            return vec![self.me(None)];
        }
        brokers
    }

    /// The brokers advertised to a client of `listener`: the live members' addresses on that
    /// listener, or this node alone while it has not applied a membership yet.
    pub fn brokers_on(&self, listener: &str) -> Vec<crate::cluster::Broker> {
        let brokers = self.cluster.brokers_on(listener);
        if brokers.is_empty() && self.cluster.brokers().is_empty() {
            return vec![self.me(Some(listener))];
        }
        brokers
    }

    fn me(&self, listener: Option<&str>) -> crate::cluster::Broker {
        let b = &self.broker;
        let (host, port) = listener
            .and_then(|l| b.listeners.get(l))
            .cloned()
            .unwrap_or_else(|| (b.host.clone(), b.port));
        crate::cluster::Broker {
            node_id: b.node_id,
            host,
            port,
            rack: b.rack.clone(),
        }
    }

    /// The controller id reported to clients along with `brokers` (the list in the same
    /// answer): a live broker from that list, this node whenever it is listed (see
    /// [`crate::cluster::view::controller_for`] for why not the raft leader).
    pub fn controller_id(&self, brokers: &[crate::cluster::Broker]) -> i32 {
        let ids: Vec<i32> = brokers.iter().map(|b| b.node_id).collect();
        let leader = self.cluster.leader().and_then(|id| i32::try_from(id).ok());
        crate::cluster::view::controller_for(self.broker.node_id, leader, &ids).unwrap_or(self.broker.node_id)
    }

    /// The cluster id reported to clients: the replicated one, else this node's.
    pub fn cluster_id(&self) -> String {
        self.cluster
            .cluster_id()
            .unwrap_or_else(|| self.broker.cluster_id.clone())
    }
}

/// The listener name of clients built by [`Client::new`].
pub const DEFAULT_LISTENER: &str = "PLAINTEXT";

/// Who sent a request, beyond its header: one per connection.
#[derive(Debug)]
pub struct Client {
    /// The peer's IP address (DescribeGroups shows it as the member's host).
    pub host: String,
    /// The listener the client connected to: Metadata, FindCoordinator and DescribeCluster
    /// answer with the addresses of this listener.
    pub listener: Arc<str>,
    /// The connection's principal and SASL exchange.
    pub auth: AuthSession,
    /// Keeps this connection's Produce requests appending in request order.
    pub produce_order: produce_order::ProduceOrder,
}

impl Client {
    /// The client of a new connection from `host` on a PLAINTEXT listener.
    pub fn new(host: impl Into<String>) -> Self {
        Self::on_listener(host, Arc::from(DEFAULT_LISTENER), AuthSession::default())
    }

    /// The client of a new connection from `host` on `listener`.
    pub fn on_listener(host: impl Into<String>, listener: Arc<str>, auth: AuthSession) -> Self {
        Self {
            host: host.into(),
            listener,
            auth,
            produce_order: produce_order::ProduceOrder::default(),
        }
    }
}

impl std::fmt::Debug for dyn Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Storage({})", self.backend())
    }
}

/// A request the dispatcher cannot route. Closes the connection.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// The API is in the version table but has no handler (a bug caught by a unit test).
    #[error("no handler for api {0:?}")]
    NotDispatched(ApiKey),
}

/// The response to one request: `None` when Kafka sends none (Produce with acks=0).
pub type Reply = Option<ResponseKind>;

/// Routes a decoded request to its handler.
///
/// # Errors
/// [`HandlerError::NotDispatched`] when no handler serves the request's API.
pub async fn dispatch(
    ctx: &Context,
    header: &RequestHeader,
    client: &Client,
    held: &window::Held,
    body: RequestKind,
) -> Result<Reply, HandlerError> {
    let v = header.request_api_version;
    let reply = match body {
        RequestKind::ApiVersions(r) => ResponseKind::ApiVersions(api_versions::handle(ctx, v, r)),
        RequestKind::Metadata(r) => {
            ResponseKind::Metadata(metadata::handle(ctx, &client.listener, v, r).await)
        }
        RequestKind::DescribeUserScramCredentials(r) => {
            ResponseKind::DescribeUserScramCredentials(describe_user_scram_credentials::handle(ctx, v, r))
        }
        RequestKind::AlterUserScramCredentials(r) => {
            ResponseKind::AlterUserScramCredentials(alter_user_scram_credentials::handle(ctx, v, r).await)
        }
        RequestKind::SaslHandshake(r) => {
            ResponseKind::SaslHandshake(sasl_handshake::handle(ctx, client, v, r))
        }
        RequestKind::SaslAuthenticate(r) => {
            ResponseKind::SaslAuthenticate(sasl_authenticate::handle(ctx, client, v, r).await)
        }
        RequestKind::Produce(r) => {
            return Ok(produce::handle(ctx, client, held, v, r)
                .await
                .map(ResponseKind::Produce))
        }
        RequestKind::Fetch(r) => ResponseKind::Fetch(fetch::handle(ctx, v, r).await),
        RequestKind::ListOffsets(r) => ResponseKind::ListOffsets(list_offsets::handle(ctx, v, r).await),
        RequestKind::CreateTopics(r) => ResponseKind::CreateTopics(create_topics::handle(ctx, v, r).await),
        RequestKind::DeleteTopics(r) => ResponseKind::DeleteTopics(delete_topics::handle(ctx, v, r).await),
        RequestKind::CreatePartitions(r) => {
            ResponseKind::CreatePartitions(create_partitions::handle(ctx, v, r).await)
        }
        RequestKind::DescribeConfigs(r) => {
            ResponseKind::DescribeConfigs(describe_configs::handle(ctx, v, r).await)
        }
        RequestKind::AlterConfigs(r) => ResponseKind::AlterConfigs(alter_configs::handle(ctx, v, r).await),
        RequestKind::IncrementalAlterConfigs(r) => {
            ResponseKind::IncrementalAlterConfigs(incremental_alter_configs::handle(ctx, v, r).await)
        }
        RequestKind::DeleteRecords(r) => ResponseKind::DeleteRecords(delete_records::handle(ctx, v, r).await),
        RequestKind::DescribeCluster(r) => {
            ResponseKind::DescribeCluster(describe_cluster::handle(ctx, &client.listener, v, r))
        }
        RequestKind::InitProducerId(r) => {
            ResponseKind::InitProducerId(init_producer_id::handle(ctx, v, r).await)
        }
        RequestKind::OffsetForLeaderEpoch(r) => {
            ResponseKind::OffsetForLeaderEpoch(offset_for_leader_epoch::handle(ctx, v, r).await)
        }
        RequestKind::FindCoordinator(r) => {
            ResponseKind::FindCoordinator(find_coordinator::handle(ctx, &client.listener, v, r).await)
        }
        RequestKind::JoinGroup(r) => {
            ResponseKind::JoinGroup(join_group::handle(ctx, header, client, r).await)
        }
        RequestKind::SyncGroup(r) => ResponseKind::SyncGroup(sync_group::handle(ctx, v, r).await),
        RequestKind::Heartbeat(r) => ResponseKind::Heartbeat(heartbeat::handle(ctx, v, r).await),
        RequestKind::LeaveGroup(r) => ResponseKind::LeaveGroup(leave_group::handle(ctx, v, r).await),
        RequestKind::OffsetCommit(r) => ResponseKind::OffsetCommit(offset_commit::handle(ctx, v, r).await),
        RequestKind::OffsetFetch(r) => ResponseKind::OffsetFetch(offset_fetch::handle(ctx, v, r).await),
        RequestKind::OffsetDelete(r) => ResponseKind::OffsetDelete(offset_delete::handle(ctx, v, r).await),
        RequestKind::DescribeGroups(r) => {
            ResponseKind::DescribeGroups(describe_groups::handle(ctx, v, r).await)
        }
        RequestKind::ListGroups(r) => ResponseKind::ListGroups(list_groups::handle(ctx, v, r).await),
        RequestKind::DeleteGroups(r) => ResponseKind::DeleteGroups(delete_groups::handle(ctx, v, r).await),
        other => return Err(HandlerError::NotDispatched(api_key_of(&other))),
    };
    Ok(Some(reply))
}

fn api_key_of(body: &RequestKind) -> ApiKey {
    macro_rules! keys {
        ($($v:ident),*) => {
            match body {
                $(RequestKind::$v(_) => ApiKey::$v,)*
                _ => ApiKey::ApiVersions,
            }
        };
    }
    keys!(
        Produce,
        Fetch,
        ListOffsets,
        Metadata,
        CreateTopics,
        DeleteTopics,
        DeleteRecords,
        InitProducerId,
        OffsetForLeaderEpoch,
        DescribeConfigs,
        AlterConfigs,
        CreatePartitions,
        IncrementalAlterConfigs,
        DescribeCluster,
        OffsetCommit,
        OffsetFetch,
        FindCoordinator,
        JoinGroup,
        Heartbeat,
        LeaveGroup,
        SyncGroup,
        DescribeGroups,
        ListGroups,
        DeleteGroups,
        OffsetDelete,
        SaslHandshake,
        SaslAuthenticate,
        DescribeUserScramCredentials,
        AlterUserScramCredentials
    )
}

/// Finds a topic by its id (KIP-516). The nil id never matches.
pub(crate) async fn topic_by_id(ctx: &Context, id: uuid::Uuid) -> Option<crate::storage::TopicMeta> {
    if id.is_nil() {
        return None;
    }
    ctx.storage.lookup_topic_id(id).await.ok().flatten()
}

#[cfg(test)]
pub(crate) mod test_support;

#[cfg(test)]
pub(crate) mod group_test_support;

#[cfg(test)]
pub(crate) mod gated_storage;

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::*;

    use super::*;
    use crate::protocol::versions::SUPPORTED;

    fn default_request(key: ApiKey) -> RequestKind {
        macro_rules! req {
            ($($v:ident => $t:ty),*) => {
                match key {
                    $(ApiKey::$v => RequestKind::$v(<$t>::default()),)*
                    other => panic!("add {other:?} to the test"),
                }
            };
        }
        req!(
            Produce => ProduceRequest, Fetch => FetchRequest, ListOffsets => ListOffsetsRequest,
            Metadata => MetadataRequest, ApiVersions => ApiVersionsRequest,
            CreateTopics => CreateTopicsRequest, DeleteTopics => DeleteTopicsRequest,
            DeleteRecords => DeleteRecordsRequest, InitProducerId => InitProducerIdRequest,
            OffsetForLeaderEpoch => OffsetForLeaderEpochRequest, DescribeConfigs => DescribeConfigsRequest,
            AlterConfigs => AlterConfigsRequest, CreatePartitions => CreatePartitionsRequest,
            IncrementalAlterConfigs => IncrementalAlterConfigsRequest,
            DescribeCluster => DescribeClusterRequest, OffsetCommit => OffsetCommitRequest,
            OffsetFetch => OffsetFetchRequest, FindCoordinator => FindCoordinatorRequest,
            JoinGroup => JoinGroupRequest, Heartbeat => HeartbeatRequest, LeaveGroup => LeaveGroupRequest,
            SyncGroup => SyncGroupRequest, DescribeGroups => DescribeGroupsRequest,
            ListGroups => ListGroupsRequest, DeleteGroups => DeleteGroupsRequest,
            OffsetDelete => OffsetDeleteRequest, SaslHandshake => SaslHandshakeRequest,
            SaslAuthenticate => SaslAuthenticateRequest,
            DescribeUserScramCredentials => DescribeUserScramCredentialsRequest,
            AlterUserScramCredentials => AlterUserScramCredentialsRequest
        )
    }

    #[tokio::test]
    async fn every_api_in_the_version_table_is_dispatched() {
        let ctx = test_support::context().await;
        for api in SUPPORTED {
            let header = RequestHeader::default()
                .with_request_api_key(api.key as i16)
                .with_request_api_version(api.max);
            let mut body = default_request(api.key);
            if let RequestKind::Produce(p) = &mut body {
                p.acks = 1;
            }
            if let RequestKind::Fetch(f) = &mut body {
                f.max_wait_ms = 0;
            }
            let held = window::Held::untracked();
            let reply = dispatch(&ctx.ctx, &header, &test_support::client(), &held, body).await;
            assert!(matches!(reply, Ok(Some(_))), "{:?}: {reply:?}", api.key);
        }
    }
}

#[cfg(test)]
mod data_path_test;
#[cfg(test)]
mod duplicates_test;
#[cfg(test)]
mod produce_test;

#[cfg(test)]
mod group_flow_test;

#[cfg(test)]
mod group_admin_test;

#[cfg(test)]
mod scram_credentials_test;
