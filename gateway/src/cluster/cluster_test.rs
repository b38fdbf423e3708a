//! Three-node in-process clusters on 127.0.0.1, 127.0.0.2 and 127.0.0.3 (ephemeral ports).
//! Every wait has a deadline and waits on raft metrics or applied state, never a fixed sleep.

use std::collections::BTreeMap;
use std::time::Duration;

use tempfile::TempDir;
use tokio::net::TcpListener;

use super::*;
use crate::group::record::{GroupRecord, OffsetCommitRecord};

const DEADLINE: Duration = Duration::from_secs(20);

struct TestNode {
    id: NodeId,
    node: ClusterNode,
    dir: TempDir,
    coord: Option<Coordinator>,
}

impl TestNode {
    fn coord(&self) -> &Coordinator {
        self.coord.as_ref().expect("node is running")
    }
}

fn options(id: NodeId, node: ClusterNode, dir: &TempDir) -> ClusterOptions {
    let mut o = ClusterOptions::new(id, node, dir.path().to_owned());
    o.heartbeat_interval = Duration::from_millis(100);
    o.election_timeout = Duration::from_millis(500);
    o.dead_after = Duration::from_millis(1500);
    o.snapshot_after_entries = 10;
    o.keep_entries_after_snapshot = 0;
    o.network.forward_timeout = Duration::from_secs(10);
    o.network.token = Some(test_support::test_token());
    o
}

async fn start(id: NodeId) -> TestNode {
    let listener = TcpListener::bind(format!("127.0.0.{id}:0")).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let node = ClusterNode {
        cluster_addr: addr.to_string(),
        kafka_addr: format!("127.0.0.{id}:9092"),
        admin_addr: format!("127.0.0.{id}:9644"),
        rack: None,
        listeners: [
            ("PLAINTEXT".to_owned(), format!("127.0.0.{id}:9092")),
            ("SSL".to_owned(), format!("gw-{id}.example.com:9093")),
        ]
        .into(),
    };
    let dir = tempfile::tempdir().unwrap();
    let coord = Coordinator::start(options(id, node.clone(), &dir), Some(listener))
        .await
        .unwrap();
    TestNode {
        id,
        node,
        dir,
        coord: Some(coord),
    }
}

async fn restart(n: &mut TestNode) {
    let listener = TcpListener::bind(&n.node.cluster_addr).await.unwrap();
    let coord = Coordinator::start(options(n.id, n.node.clone(), &n.dir), Some(listener))
        .await
        .unwrap();
    n.coord = Some(coord);
}

async fn cluster() -> Vec<TestNode> {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .try_init();
    tracing::info!("phase: start three nodes");
    let nodes = vec![start(1).await, start(2).await, start(3).await];
    let members: BTreeMap<NodeId, ClusterNode> = nodes.iter().map(|n| (n.id, n.node.clone())).collect();
    nodes[0].coord().initialize(members).await.unwrap();
    for n in &nodes {
        n.coord()
            .raft()
            .wait(Some(DEADLINE))
            .metrics(|m| m.current_leader.is_some(), "leader known")
            .await
            .unwrap();
    }
    nodes
}

fn leader_of(nodes: &[TestNode]) -> NodeId {
    let running = nodes.iter().find(|n| n.coord.is_some()).unwrap();
    running.coord().raft().metrics().borrow().current_leader.unwrap()
}

/// Waits until `cond` holds on `coord`'s applied state, re-checking whenever its metrics change.
async fn wait_state(coord: &Coordinator, what: &str, cond: impl Fn(&Coordinator) -> bool) {
    let mut rx = coord.raft().metrics();
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !cond(coord) {
        tokio::time::timeout_at(deadline, rx.changed())
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
            .unwrap();
    }
}

fn commit(group: &str, offset: i64) -> GroupRecord {
    GroupRecord::OffsetCommit(OffsetCommitRecord {
        group_id: group.into(),
        topic: "t".into(),
        partition: 0,
        offset,
        leader_epoch: None,
        metadata: String::new(),
        commit_timestamp_ms: 1,
        expire_timestamp_ms: None,
    })
}

async fn shutdown_all(nodes: &mut [TestNode]) {
    for n in nodes.iter_mut() {
        if let Some(c) = n.coord.take() {
            c.shutdown().await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_member_knows_every_member_s_address_on_each_listener() {
    let mut nodes = cluster().await;
    for n in &nodes {
        wait_state(n.coord(), "three brokers", |c| c.brokers().len() == 3).await;
        let on = |l: &str| -> Vec<String> {
            n.coord()
                .brokers_on(l)
                .iter()
                .map(|b| format!("{}:{}", b.host, b.port))
                .collect()
        };
        assert_eq!(
            on("SSL"),
            [
                "gw-1.example.com:9093",
                "gw-2.example.com:9093",
                "gw-3.example.com:9093"
            ]
        );
        assert_eq!(
            on("PLAINTEXT"),
            ["127.0.0.1:9092", "127.0.0.2:9092", "127.0.0.3:9092"]
        );
        assert!(on("SASL_SSL").is_empty(), "no member has that listener");
        let b = n.coord().broker_on(2, "SSL").unwrap();
        assert_eq!((b.host.as_str(), b.port), ("gw-2.example.com", 9093));
    }
    shutdown_all(&mut nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicated_writes_failover_and_fencing() {
    let mut nodes = cluster().await;
    let leader = leader_of(&nodes);
    tracing::info!(
        leader,
        "phase: writes through a follower are forwarded and replicated"
    );
    let follower = nodes.iter().find(|n| n.id != leader).unwrap().coord().clone();
    let mut owned_by_leader = None;
    for i in 0..30 {
        let g = format!("group-{i}");
        let (owner, epoch) = follower.claim_group(&g).await.unwrap();
        if owner == leader && owned_by_leader.is_none() {
            owned_by_leader = Some((g, epoch));
        }
    }
    let (group, epoch) = owned_by_leader.expect("some group is owned by the leader");
    let leader_coord = nodes.iter().find(|n| n.id == leader).unwrap().coord().clone();
    leader_coord
        .write_group_record(epoch, commit(&group, 7))
        .await
        .unwrap();
    let expected = leader_coord.group(&group).unwrap();
    assert_eq!(expected.offsets["t"][&0].offset, 7);
    for n in &nodes {
        wait_state(n.coord(), "commit replicated", |c| {
            c.group(&group).as_ref() == Some(&expected)
        })
        .await;
        assert_eq!(n.coord().status().members.len(), 3);
    }

    tracing::info!("phase: a non-owner's write is fenced");
    let err = follower
        .write_group_record(epoch, commit(&group, 8))
        .await
        .unwrap_err();
    assert!(
        matches!(err, ClusterError::Fenced { owner: Some(o), .. } if o == leader),
        "{err:?}"
    );

    tracing::info!("phase: kill the leader; a new one is elected and writes continue");
    let old = nodes.iter_mut().find(|n| n.id == leader).unwrap();
    old.coord.take().unwrap().shutdown().await;
    let survivor = nodes.iter().find(|n| n.coord.is_some()).unwrap().coord().clone();
    survivor
        .raft()
        .wait(Some(DEADLINE))
        .metrics(
            |m| m.current_leader.is_some() && m.current_leader != Some(leader),
            "new leader",
        )
        .await
        .unwrap();
    survivor.claim_group("after-failover").await.unwrap();

    tracing::info!("phase: the dead leader's groups move with a higher epoch; its old epoch is fenced");
    wait_state(&survivor, "group moved", |c| {
        c.group(&group).is_some_and(|g| g.owner != leader)
    })
    .await;
    let moved = survivor.group(&group).unwrap();
    assert_eq!(moved.epoch, epoch + 1);
    assert_eq!(
        moved.offsets["t"][&0].offset, 7,
        "committed offset survives the move"
    );
    let stale = survivor
        .write(Command::GroupWrite {
            owner: leader,
            epoch,
            record: commit(&group, 9),
        })
        .await
        .unwrap();
    assert_eq!(
        stale,
        CommandResponse::Fenced {
            owner: Some(moved.owner),
            epoch: moved.epoch
        }
    );
    let new_owner = nodes
        .iter()
        .find(|n| n.id == moved.owner)
        .unwrap()
        .coord()
        .clone();
    new_owner
        .write_group_record(moved.epoch, commit(&group, 10))
        .await
        .unwrap();

    tracing::info!("phase: the old leader restarts from disk and catches up");
    let old = nodes.iter_mut().find(|n| n.id == leader).unwrap();
    restart(old).await;
    let back = nodes.iter().find(|n| n.id == leader).unwrap().coord().clone();
    wait_state(&back, "offset replicated", |c| {
        c.group(&group)
            .and_then(|g| g.offsets.get("t")?.get(&0).map(|o| o.offset))
            == Some(10)
    })
    .await;
    shutdown_all(&mut nodes).await;
}

/// A write sent through a follower right after the leader died waits for the election and
/// succeeds; with no quorum left it fails within the forward bound with a retriable error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_right_after_the_leader_dies_wait_for_a_new_one_within_a_bound() {
    let mut nodes = cluster().await;
    let bound = options(0, ClusterNode::default(), &nodes[0].dir)
        .network
        .forward_timeout;
    let leader = leader_of(&nodes);
    tracing::info!(
        leader,
        "phase: kill the leader, then write through a follower at once"
    );
    let old = nodes.iter_mut().find(|n| n.id == leader).unwrap();
    old.coord.take().unwrap().shutdown().await;
    let follower = nodes.iter().find(|n| n.coord.is_some()).unwrap().coord().clone();
    let started = std::time::Instant::now();
    let (owner, _) = follower.claim_group("right-after-kill").await.unwrap();
    let took = started.elapsed();
    tracing::info!(?took, owner, "write committed by the new leader");
    assert_ne!(owner, leader, "a dead node never gets a new group");
    assert!(took < bound, "took {took:?}");
    assert_ne!(follower.leader(), Some(leader));

    tracing::info!("phase: a second node down leaves no quorum: a bounded, retriable failure");
    let second = nodes
        .iter_mut()
        .find(|n| {
            n.coord
                .as_ref()
                .is_some_and(|c| c.node_id() != follower.node_id())
        })
        .unwrap();
    second.coord.take().unwrap().shutdown().await;
    let started = std::time::Instant::now();
    let err = follower.claim_group("no-quorum").await.unwrap_err();
    let took = started.elapsed();
    assert!(matches!(err, ClusterError::NoLeader), "{err:?}");
    assert!(err.response_error().is_retriable(), "{err:?}");
    assert!(took < bound + Duration::from_secs(2), "took {took:?}");
    shutdown_all(&mut nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_member_catches_up_from_snapshot_and_can_be_removed() {
    let mut nodes = cluster().await;
    let leader = leader_of(&nodes);
    let coord = nodes[0].coord().clone();
    tracing::info!("phase: enough writes that the leader snapshots and purges its log");
    for i in 0..40 {
        coord.claim_group(&format!("g{i}")).await.unwrap();
    }
    let leader_coord = nodes.iter().find(|n| n.id == leader).unwrap().coord().clone();
    leader_coord
        .raft()
        .wait(Some(DEADLINE))
        .metrics(|m| m.purged.is_some_and(|p| p.index > 0), "leader purged")
        .await
        .unwrap();

    tracing::info!("phase: add node 4 through a follower; it must install a snapshot");
    let n4 = start(4).await;
    let follower = nodes.iter().find(|n| n.id != leader).unwrap().coord().clone();
    follower.add_member(4, n4.node.clone()).await.unwrap();
    let c4 = n4.coord().clone();
    nodes.push(n4);
    wait_state(&c4, "node 4 caught up", |c| {
        c.with_applied(|a| a.state.groups.len()) == 40
    })
    .await;
    assert!(
        c4.raft().metrics().borrow().snapshot.is_some(),
        "node 4 got a snapshot"
    );
    assert_eq!(c4.with_applied(|a| a.state.groups.len()), 40);
    assert!(c4.status().members.iter().any(|m| m.node_id == 4 && m.voter));
    let voters: Vec<NodeId> = leader_coord
        .raft()
        .metrics()
        .borrow()
        .membership_config
        .membership()
        .voter_ids()
        .collect();
    assert_eq!(voters, vec![1, 2, 3, 4]);

    tracing::info!("phase: remove node 4 again");
    coord.remove_member(4).await.unwrap();
    wait_state(&leader_coord, "node 4 removed", |c| {
        !c.status().members.iter().any(|m| m.node_id == 4)
    })
    .await;
    let status = leader_coord.status();
    assert_eq!(status.leader, Some(leader));
    assert!(status.commit_index >= status.applied_index);
    assert_eq!(status.members.iter().map(|m| m.groups_owned).sum::<usize>(), 40);
    shutdown_all(&mut nodes).await;
}

/// An HTTP/1.1 call with `headers` (each `Name: value\r\n`); the whole response.
pub(super) async fn http_with(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &str,
    body: &str,
) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{headers}Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

const ADMIN_TOKEN: &str = "admin-token-0123456789abcdef";

/// An admin call presenting [`ADMIN_TOKEN`].
async fn http(addr: std::net::SocketAddr, method: &str, path: &str, body: &str) -> String {
    let auth = format!("Authorization: Bearer {ADMIN_TOKEN}\r\n");
    http_with(addr, method, path, &auth, body).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_http_shows_adds_and_removes_members() {
    let mut nodes = vec![start(1).await];
    let c1 = nodes[0].coord().clone();
    c1.initialize(BTreeMap::from([(1, nodes[0].node.clone())]))
        .await
        .unwrap();
    c1.raft()
        .wait(Some(DEADLINE))
        .current_leader(1, "single-node leader")
        .await
        .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let auth = crate::admin::AdminAuth::new(Some(crate::auth::Token::new(ADMIN_TOKEN).unwrap()));
    tokio::spawn(async move { axum::serve(listener, admin_http::router(c1, auth)).await });

    // The status is open to anyone.
    let status = http_with(addr, "GET", "/cluster", "", "").await;
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    assert!(status.contains("\"leader\": 1"), "{status}");

    let n2 = start(2).await;
    let body = serde_json::json!({
        "node_id": 2,
        "cluster_addr": n2.node.cluster_addr,
        "kafka_addr": n2.node.kafka_addr,
        "admin_addr": n2.node.admin_addr,
        "rack": null,
    })
    .to_string();
    nodes.push(n2);
    let anonymous = http_with(addr, "POST", "/cluster/members", "", &body).await;
    assert!(anonymous.starts_with("HTTP/1.1 401"), "{anonymous}");
    let added = http(addr, "POST", "/cluster/members", &body).await;
    assert!(added.starts_with("HTTP/1.1 200"), "{added}");
    let voters: Vec<NodeId> = nodes[0]
        .coord()
        .raft()
        .metrics()
        .borrow()
        .membership_config
        .membership()
        .voter_ids()
        .collect();
    assert_eq!(voters, vec![1, 2]);

    let bad = http(addr, "POST", "/cluster/members", "{").await;
    assert!(bad.starts_with("HTTP/1.1 400"), "{bad}");

    let wrong = "Authorization: Bearer admin-token-0123456789abcdeX\r\n";
    let refused = http_with(addr, "DELETE", "/cluster/members/2", wrong, "").await;
    assert!(refused.starts_with("HTTP/1.1 401"), "{refused}");
    let voters = nodes[0]
        .coord()
        .raft()
        .metrics()
        .borrow()
        .membership_config
        .membership()
        .voter_ids()
        .count();
    assert_eq!(voters, 2, "a refused removal changes nothing");
    let removed = http(addr, "DELETE", "/cluster/members/2", "").await;
    assert!(removed.starts_with("HTTP/1.1 200"), "{removed}");
    let voters: Vec<NodeId> = nodes[0]
        .coord()
        .raft()
        .metrics()
        .borrow()
        .membership_config
        .membership()
        .voter_ids()
        .collect();
    assert_eq!(voters, vec![1]);
    shutdown_all(&mut nodes).await;
}
