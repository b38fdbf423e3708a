//! Group coordinators of three in-process members over one raft log: ownership, NOT_COORDINATOR
//! on non-owners, fencing and failover with committed offsets intact. Waits have deadlines and
//! re-check on raft metrics changes, never fixed sleeps.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::ResponseError;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::group::{CommitRequest, GroupConfig, GroupCoordinator, GroupMetrics, OffsetCommit};
use crate::storage::TopicPartition;

const DEADLINE: Duration = Duration::from_secs(20);

struct Member {
    id: NodeId,
    node: ClusterNode,
    cluster: Coordinator,
    groups: GroupCoordinator,
    _dir: tempfile::TempDir,
}

async fn member(id: NodeId) -> Member {
    let listener = TcpListener::bind(format!("127.0.0.{id}:0")).await.unwrap();
    let node = ClusterNode {
        cluster_addr: listener.local_addr().unwrap().to_string(),
        kafka_addr: format!("127.0.0.{id}:9092"),
        admin_addr: format!("127.0.0.{id}:9644"),
        rack: None,
        listeners: Default::default(),
    };
    let dir = tempfile::tempdir().unwrap();
    let mut o = ClusterOptions::new(id, node, dir.path().to_owned());
    o.heartbeat_interval = Duration::from_millis(100);
    o.election_timeout = Duration::from_millis(500);
    o.dead_after = Duration::from_millis(1500);
    o.network.token = Some(super::test_support::test_token());
    let cluster = Coordinator::start(o, Some(listener)).await.unwrap();
    let node = cluster.inner.node.clone();
    let groups = GroupCoordinator::with_log(
        Arc::new(ClusterGroupLog::new(cluster.clone())),
        GroupConfig::default(),
        GroupMetrics::new(&prometheus::Registry::new(), 10).unwrap(),
        CancellationToken::new(),
    );
    Member {
        id,
        node,
        cluster,
        groups,
        _dir: dir,
    }
}

fn commit(offset: i64) -> CommitRequest {
    CommitRequest {
        member_id: String::new(),
        instance_id: None,
        generation_id: -1,
        retention_ms: None,
        offsets: vec![OffsetCommit {
            tp: TopicPartition::new("t", 0),
            offset,
            leader_epoch: None,
            metadata: "m".into(),
        }],
    }
}

async fn committed(m: &Member, group: &str) -> Result<Option<i64>, ResponseError> {
    let tp = TopicPartition::new("t", 0);
    let found = m
        .groups
        .fetch_offsets(group, Some(std::slice::from_ref(&tp)))
        .await?;
    Ok(found[0].1.as_ref().map(|c| c.offset))
}

/// Polls `check` (each poll is a request, as a client would retry) until it holds.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_owner_per_group_and_offsets_survive_its_death() {
    let mut members = vec![member(1).await, member(2).await, member(3).await];
    let all: BTreeMap<NodeId, ClusterNode> = members.iter().map(|m| (m.id, m.node.clone())).collect();
    members[0].cluster.initialize(all).await.unwrap();
    for m in &members {
        let c = m.cluster.clone();
        eventually("member joined and in quorum", || {
            let c = c.clone();
            async move { c.joined() && c.in_quorum() }
        })
        .await;
    }

    // The owner commits; the others answer NOT_COORDINATOR for every group request.
    let group = "orders-consumers";
    let (owner, _) = members[1].cluster.group_owner(group).await.unwrap();
    let owner_ix = members.iter().position(|m| m.id == owner).unwrap();
    let results = members[owner_ix]
        .groups
        .commit_offsets(group, commit(42))
        .await
        .unwrap();
    assert_eq!(results[0].1, None);
    assert_eq!(committed(&members[owner_ix], group).await, Ok(Some(42)));
    for (i, m) in members.iter().enumerate().filter(|(i, _)| *i != owner_ix) {
        assert_eq!(
            committed(m, group).await,
            Err(ResponseError::NotCoordinator),
            "member {i}"
        );
        assert_eq!(
            m.groups.commit_offsets(group, commit(1)).await.unwrap_err(),
            ResponseError::NotCoordinator
        );
    }

    // Kill the owner: the group moves to a survivor, which serves the committed offset.
    let dead = members.remove(owner_ix);
    dead.cluster.shutdown().await;
    let survivor = members[0].cluster.clone();
    eventually("the group moved to a live member", || {
        let survivor = survivor.clone();
        async move { survivor.group_owner(group).await.is_ok_and(|(o, _)| o != owner) }
    })
    .await;
    let (new_owner, _) = survivor.group_owner(group).await.unwrap();
    let m = members.iter().find(|m| m.id == new_owner).unwrap();
    eventually("the new owner serves the committed offset", || async {
        committed(m, group).await == Ok(Some(42))
    })
    .await;
    let results = m.groups.commit_offsets(group, commit(43)).await.unwrap();
    assert_eq!(results[0].1, None);
    assert_eq!(committed(m, group).await, Ok(Some(43)));

    // The dead owner's epoch is fenced in the log.
    let stale = m
        .cluster
        .write(Command::GroupWrites {
            owner,
            epoch: 1,
            group_id: group.into(),
            records: Vec::new(),
        })
        .await
        .unwrap();
    assert!(matches!(stale, CommandResponse::Fenced { .. }), "{stale:?}");
    shutdown(&mut members).await;
}

async fn shutdown(members: &mut Vec<Member>) {
    for m in members.drain(..) {
        m.cluster.shutdown().await;
    }
}

#[tokio::test]
async fn claims_of_deleted_and_unused_groups_leave_the_replicated_state() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = test_support::single_node(dir.path(), "127.0.0.1:9092", "claims").await;
    let groups = GroupCoordinator::with_log(
        Arc::new(ClusterGroupLog::new(cluster.clone())),
        GroupConfig::default(),
        GroupMetrics::new(&prometheus::Registry::new(), 10).unwrap(),
        CancellationToken::new(),
    );
    let claimed = |id: &str| cluster.group(id).is_some();

    // FindCoordinator-style lookups claim groups that never get state.
    for i in 0..5 {
        cluster.group_owner(&format!("looked-up-{i}")).await.unwrap();
    }
    assert!(claimed("looked-up-0"));
    // A group with offsets, then deleted.
    assert!(groups.commit_offsets("deleted", commit(7)).await.is_ok());
    let (_, deleted_epoch) = cluster.group_owner("deleted").await.unwrap();
    assert_eq!(groups.delete_groups(&["deleted".into()]).await[0].1, None);
    assert!(!claimed("deleted"), "a deleted group keeps its claim");
    // A group in use keeps its claim.
    assert!(groups.commit_offsets("kept", commit(3)).await.is_ok());

    groups.expire_offsets().await;
    for i in 0..5 {
        assert!(!claimed(&format!("looked-up-{i}")), "idle claim {i} kept");
    }
    assert!(claimed("kept"));
    assert_eq!(committed_on(&groups, "kept").await, Ok(Some(3)));

    // A deleted group comes back empty under a new epoch.
    let (_, epoch) = cluster.group_owner("deleted").await.unwrap();
    assert!(epoch > deleted_epoch);
    assert_eq!(committed_on(&groups, "deleted").await, Ok(None));
    cluster.shutdown().await;
}

async fn committed_on(groups: &GroupCoordinator, group: &str) -> Result<Option<i64>, ResponseError> {
    let tp = TopicPartition::new("t", 0);
    let found = groups
        .fetch_offsets(group, Some(std::slice::from_ref(&tp)))
        .await?;
    Ok(found[0].1.as_ref().map(|c| c.offset))
}
