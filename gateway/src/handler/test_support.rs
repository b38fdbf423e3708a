//! A handler [`Context`] over a real embedded log in a temp dir, for handler unit tests.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{BrokerInfo, Client, Context, HandlerOptions};
use crate::cluster::ClusterGroupLog;
use crate::group::{GroupConfig, GroupCoordinator, GroupMetrics};
use crate::metrics::Metrics;
use crate::producer_ids::ProducerIdAllocator;
use crate::storage::local::{FsyncMode, LocalOptions, LocalStorage};

/// A context plus the temp dir that must outlive it.
#[derive(Debug)]
pub(crate) struct TestContext {
    /// The handler context.
    pub(crate) ctx: Context,
    /// Keeps the data dir alive.
    pub(crate) _dir: tempfile::TempDir,
}

/// Builds a context with auto-creation on and one default partition.
pub(crate) async fn context() -> TestContext {
    let dir = tempfile::tempdir().expect("temp dir");
    let storage = LocalStorage::open(LocalOptions {
        data_dir: dir.path().join("log"),
        fsync: FsyncMode::Always,
        retention_check_interval: Duration::from_secs(3600),
    })
    .await
    .expect("open local storage");
    let registry = prometheus::Registry::new();
    let group_config = GroupConfig {
        initial_rebalance_delay_ms: 0,
        ..GroupConfig::default()
    };
    let cluster =
        crate::cluster::test_support::single_node(&dir.path().join("raft"), "127.0.0.1:9092", "test-cluster")
            .await;
    let groups = GroupCoordinator::with_log(
        Arc::new(ClusterGroupLog::new(cluster.clone())),
        group_config,
        GroupMetrics::new(&registry, 100).expect("group metrics"),
        CancellationToken::new(),
    );
    let ctx = Context {
        storage: Arc::new(storage),
        broker: BrokerInfo {
            node_id: 0,
            host: "127.0.0.1".into(),
            port: 9092,
            listeners: BTreeMap::new(),
            rack: None,
            cluster_id: "test-cluster".into(),
        },
        options: HandlerOptions {
            auto_create_topics: true,
            default_partitions: 1,
            fetch_max_bytes: 50 << 20,
        },
        caps: super::caps::ResourceCaps::new(10_000, 100_000),
        metrics: Arc::new(Metrics::new(&registry, 100).expect("metrics")),
        producer_ids: Arc::new(ProducerIdAllocator::new(cluster.clone())),
        groups,
        cluster,
        auth: Arc::new(crate::sasl::Authenticator {
            users: None,
            session_lifetime: None,
            oauth: None,
            audit: crate::sasl::Audit::new(&registry).expect("audit metrics"),
        }),
    };
    TestContext { ctx, _dir: dir }
}

/// The client identity tests send requests as.
pub(crate) fn client() -> Client {
    Client::new("127.0.0.1")
}
