//! A started one-node cluster for unit tests of the layers above (handlers, groups).

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::{ClusterNode, ClusterOptions, Coordinator};

/// Starts node 0 with its raft data in `dir`, advertising `kafka_addr`, and waits until it is
/// the leader of its one-node cluster with cluster id `cluster_id`.
pub(crate) async fn single_node(dir: &std::path::Path, kafka_addr: &str, cluster_id: &str) -> Coordinator {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind cluster listener");
    let addr = listener.local_addr().expect("cluster listener address");
    let node = ClusterNode {
        cluster_addr: addr.to_string(),
        kafka_addr: kafka_addr.to_owned(),
        admin_addr: "127.0.0.1:9644".into(),
        rack: None,
    };
    let mut options = ClusterOptions::new(0, node, dir.to_owned());
    options.heartbeat_interval = Duration::from_millis(50);
    options.election_timeout = Duration::from_millis(150);
    let coordinator = Coordinator::start(options, listener).await.expect("start raft");
    tokio::time::timeout(
        Duration::from_secs(20),
        coordinator.bootstrap(&BTreeMap::new(), cluster_id, &CancellationToken::new()),
    )
    .await
    .expect("one-node cluster within 20 s")
    .expect("bootstrap");
    coordinator
}
