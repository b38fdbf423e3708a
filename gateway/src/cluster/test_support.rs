//! A started one-node cluster for unit tests of the layers above (handlers, groups).

use std::collections::BTreeMap;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{ClusterNode, ClusterOptions, Coordinator};
use crate::auth::Token;

/// The cluster token of in-process test clusters.
pub(crate) fn test_token() -> Token {
    Token::new("test-cluster-token-0123456789").expect("valid token")
}

/// Starts node 0 standalone (no raft listener, like a gateway without peers) with its raft data
/// in `dir`, advertising `kafka_addr`, and waits until it is the leader of its one-node cluster
/// with cluster id `cluster_id`.
pub(crate) async fn single_node(dir: &std::path::Path, kafka_addr: &str, cluster_id: &str) -> Coordinator {
    let node = ClusterNode {
        cluster_addr: "127.0.0.1:9645".into(),
        kafka_addr: kafka_addr.to_owned(),
        admin_addr: "127.0.0.1:9644".into(),
        rack: None,
        listeners: Default::default(),
    };
    let mut options = ClusterOptions::new(0, node, dir.to_owned());
    options.heartbeat_interval = Duration::from_millis(50);
    options.election_timeout = Duration::from_millis(150);
    let coordinator = Coordinator::start(options, None).await.expect("start raft");
    tokio::time::timeout(
        Duration::from_secs(20),
        coordinator.bootstrap(&BTreeMap::new(), cluster_id, &CancellationToken::new()),
    )
    .await
    .expect("one-node cluster within 20 s")
    .expect("bootstrap");
    coordinator
}
