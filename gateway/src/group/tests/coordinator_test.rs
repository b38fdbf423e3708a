//! The async coordinator over a real store directory, in real time with short timeouts.

use std::time::Duration;

use prometheus::Registry;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::storage::TopicPartition;

fn fast_cfg() -> GroupConfig {
    GroupConfig {
        min_session_timeout_ms: 10,
        initial_rebalance_delay_ms: 0,
        ..GroupConfig::default()
    }
}

async fn open(dir: &std::path::Path) -> (GroupCoordinator, GroupMetrics) {
    let metrics = GroupMetrics::new(&Registry::new(), 100).unwrap();
    let coord = GroupCoordinator::open(dir, fast_cfg(), metrics.clone(), CancellationToken::new())
        .await
        .unwrap();
    (coord, metrics)
}

async fn join_new(coord: &GroupCoordinator, req: JoinRequest) -> String {
    let first = coord.join_group("g", req).await;
    assert_eq!(first.error, Some(ResponseError::MemberIdRequired));
    first.member_id
}

fn sync_req(member_id: &str, generation: i32, assignments: Vec<(String, Bytes)>) -> SyncRequest {
    SyncRequest {
        member_id: member_id.to_owned(),
        instance_id: None,
        generation_id: generation,
        protocol_type: Some("consumer".into()),
        protocol_name: Some("range".into()),
        assignments,
    }
}

/// Polls `check` until it holds or 10 s pass.
/// Polls DescribeGroups until the group reaches `state` (10 s deadline).
async fn eventually_state(coord: &GroupCoordinator, group: &str, state: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while coord
        .describe_group(group)
        .await
        .unwrap()
        .is_none_or(|d| d.state != state)
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not reached in time"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn barrier_sync_commit_and_restart_restore() {
    let dir = tempfile::tempdir().unwrap();
    let (coord, _) = open(dir.path()).await;
    let protos = protocols(&[("range", b"\x00sub")]);

    let a = join_new(&coord, join_req("", protos.clone())).await;
    let first = coord.join_group("g", join_req(&a, protos.clone())).await;
    assert_eq!((first.error, first.generation_id), (None, 1));

    // B joins: the barrier holds B until A rejoins.
    let b = join_new(&coord, join_req("", protos.clone())).await;
    let b_join = tokio::spawn({
        let (coord, req) = (coord.clone(), join_req(&b, protos.clone()));
        async move { coord.join_group("g", req).await }
    });
    eventually_state(&coord, "g", "PreparingRebalance").await;
    assert_eq!(
        coord.heartbeat("g", &a, None, 1).await,
        Err(ResponseError::RebalanceInProgress)
    );
    let a_resp = coord.join_group("g", join_req(&a, protos.clone())).await;
    let b_resp = b_join.await.unwrap();
    assert_eq!((a_resp.generation_id, b_resp.generation_id), (2, 2));
    assert_eq!(a_resp.leader, b_resp.leader);
    let (leader, follower) = if a_resp.leader == a {
        (a_resp, b_resp)
    } else {
        (b_resp, a_resp)
    };
    assert_eq!(leader.members.len(), 2);
    assert!(leader
        .members
        .iter()
        .all(|m| m.metadata == Bytes::from_static(b"\x00sub")));

    // The follower's sync waits for the leader's assignment.
    let follower_sync = tokio::spawn({
        let (coord, req) = (coord.clone(), sync_req(&follower.member_id, 2, vec![]));
        async move { coord.sync_group("g", req).await }
    });
    let assignments = vec![
        (leader.member_id.clone(), Bytes::from_static(b"L")),
        (follower.member_id.clone(), Bytes::from_static(b"F")),
    ];
    let leader_sync = coord
        .sync_group("g", sync_req(&leader.member_id, 2, assignments))
        .await;
    assert_eq!(leader_sync.assignment, Bytes::from_static(b"L"));
    assert_eq!(follower_sync.await.unwrap().assignment, Bytes::from_static(b"F"));

    let tp = TopicPartition::new("t", 3);
    let commit = CommitRequest {
        member_id: follower.member_id.clone(),
        instance_id: None,
        generation_id: 2,
        retention_ms: None,
        offsets: vec![OffsetCommit {
            tp: tp.clone(),
            offset: 17,
            leader_epoch: Some(2),
            metadata: "m".into(),
        }],
    };
    assert_eq!(
        coord.commit_offsets("g", commit).await,
        Ok(vec![(tp.clone(), None)])
    );
    assert_eq!(coord.list_groups(&["stable".into()], &[]).await.len(), 1);
    let before = coord.describe_group("g").await.unwrap().unwrap();
    drop(coord);

    let (coord, metrics) = open(dir.path()).await;
    let after = coord.describe_group("g").await.unwrap().unwrap();
    assert_eq!(after, before);
    assert_eq!(metrics.groups_in(GroupPhase::Stable), 1);
    let fetched = coord
        .fetch_offsets("g", Some(std::slice::from_ref(&tp)))
        .await
        .unwrap();
    let committed = fetched[0].1.clone().unwrap();
    assert_eq!(
        (
            committed.offset,
            committed.leader_epoch,
            committed.metadata.as_str()
        ),
        (17, Some(2), "m")
    );
    // Members keep their ids and generation across the restart.
    assert_eq!(coord.heartbeat("g", &leader.member_id, None, 2).await, Ok(()));
}

#[tokio::test]
async fn timer_expires_silent_member_and_group_becomes_empty() {
    let dir = tempfile::tempdir().unwrap();
    let (coord, metrics) = open(dir.path()).await;
    let mut req = join_req("", protocols(&[("range", b"")]));
    req.session_timeout_ms = 100;
    req.rebalance_timeout_ms = 100;
    let id = join_new(&coord, req.clone()).await;
    req.member_id = id.clone();
    let joined = coord.join_group("g", req).await;
    assert_eq!(joined.error, None);
    let synced = coord
        .sync_group(
            "g",
            sync_req(
                &id,
                joined.generation_id,
                vec![(id.clone(), Bytes::from_static(b"x"))],
            ),
        )
        .await;
    assert_eq!(synced.error, None);
    eventually_state(&coord, "g", "Empty").await;
    assert_eq!(
        coord.heartbeat("g", &id, None, joined.generation_id).await,
        Err(ResponseError::UnknownMemberId)
    );
    assert!(metrics.rebalances_total() >= 2);
    assert_eq!(metrics.groups_in(GroupPhase::Empty), 1);

    assert_eq!(
        coord.delete_groups(&["g".into(), "nope".into()]).await,
        vec![
            ("g".into(), None),
            ("nope".into(), Some(ResponseError::GroupIdNotFound))
        ]
    );
    assert!(coord.describe_group("g").await.unwrap().is_none());
    assert_eq!(metrics.groups_in(GroupPhase::Empty), 0);
}

#[tokio::test]
async fn lag_series_follow_committed_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::new();
    let metrics = GroupMetrics::new(&registry, 1).unwrap();
    let coord = GroupCoordinator::open(dir.path(), fast_cfg(), metrics, CancellationToken::new())
        .await
        .unwrap();
    for (p, offset) in [(0, 5), (1, 8)] {
        let commit = CommitRequest {
            member_id: String::new(),
            instance_id: None,
            generation_id: -1,
            retention_ms: None,
            offsets: vec![OffsetCommit {
                tp: TopicPartition::new("t", p),
                offset,
                leader_epoch: None,
                metadata: String::new(),
            }],
        };
        coord.commit_offsets("manual", commit).await.unwrap();
    }
    coord.update_lag(|_| Some(10));
    let text = prometheus::TextEncoder::new()
        .encode_to_string(&registry.gather())
        .unwrap();
    assert!(
        text.contains(r#"kafka_gateway_consumer_group_lag{group="manual",partition="0",topic="t"} 5"#),
        "{text}"
    );
    assert!(
        text.contains("kafka_gateway_consumer_group_lag_series_dropped 1"),
        "{text}"
    );
}
