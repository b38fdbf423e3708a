//! The group APIs through [`dispatch`](super::dispatch), every response encoded at its
//! version: a two-member join/sync round at every JoinGroup version, and commits and fetches.

use std::sync::Arc;

use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::*;
use kafka_protocol::ResponseError;

use super::group_test_support::*;
use super::test_support::context;
use super::Context;
use crate::storage::TopicConfig;

async fn two_member_round(ctx: &Arc<Context>, v: i16) {
    let group = format!("round-v{v}");
    let first = tokio::time::timeout(WAIT, new_member(ctx, v, &group).await)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((first.error_code, first.generation_id), (0, 1), "v{v}");
    let a = first.member_id.to_string();
    let ResponseKind::SyncGroup(r) = run(
        ctx,
        ApiKey::SyncGroup,
        v.min(5),
        sync_request(&group, &a, 1, &[(&a, b"all")]),
    )
    .await
    else {
        panic!()
    };
    assert_eq!((r.error_code, &r.assignment[..]), (0, &b"all"[..]), "v{v}");
    // A second member arrives: the first learns of the rebalance by heartbeat and rejoins.
    let second = new_member(ctx, v, &group).await;
    wait_for_state(ctx, &group, "PreparingRebalance").await;
    assert_eq!(
        heartbeat(ctx, v.min(4), &group, &a, 1).await,
        ResponseError::RebalanceInProgress.code(),
        "v{v}"
    );
    let first = tokio::time::timeout(WAIT, join(ctx, v, &group, &a))
        .await
        .unwrap();
    let second = tokio::time::timeout(WAIT, second).await.unwrap().unwrap();
    assert_eq!((first.error_code, second.error_code), (0, 0), "v{v}");
    assert_eq!((first.generation_id, second.generation_id), (2, 2), "v{v}");
    assert_eq!(first.leader.as_str(), a, "the first member stays leader (v{v})");
    assert_eq!(
        (first.members.len(), second.members.len()),
        (2, 0),
        "only the leader sees members (v{v})"
    );
    let b = second.member_id.to_string();
    // The follower's sync waits for the leader's assignment.
    let follower = {
        let (ctx, group, b) = (Arc::clone(ctx), group.clone(), b.clone());
        tokio::spawn(async move {
            run(
                &ctx,
                ApiKey::SyncGroup,
                v.min(5),
                sync_request(&group, &b, 2, &[]),
            )
            .await
        })
    };
    let leader_sync = sync_request(&group, &a, 2, &[(&a, b"p0"), (&b, b"p1")]);
    let ResponseKind::SyncGroup(r) = run(ctx, ApiKey::SyncGroup, v.min(5), leader_sync).await else {
        panic!()
    };
    assert_eq!(&r.assignment[..], b"p0", "v{v}");
    let ResponseKind::SyncGroup(r) = tokio::time::timeout(WAIT, follower).await.unwrap().unwrap() else {
        panic!()
    };
    assert_eq!((r.error_code, &r.assignment[..]), (0, &b"p1"[..]), "v{v}");
    assert_eq!(heartbeat(ctx, v.min(4), &group, &b, 2).await, 0, "v{v}");
    // Commits are checked against the generation and topic existence.
    let committed = commit_codes(ctx, 7, commit(&group, &a, 2, "flow", &[(0, 5), (9, 1)])).await;
    let unknown = ResponseError::UnknownTopicOrPartition.code();
    assert_eq!(
        committed,
        vec![("flow".into(), 0, 0), ("flow".into(), 9, unknown)],
        "v{v}"
    );
    let stale = commit_codes(ctx, 7, commit(&group, &a, 1, "flow", &[(0, 6)])).await;
    assert_eq!(stale[0].2, ResponseError::IllegalGeneration.code(), "v{v}");
    let d = describe(ctx, 5, &group).await;
    assert_eq!(
        (d.group_state.as_str(), d.protocol_data.as_str(), d.members.len()),
        ("Stable", "range", 2),
        "v{v}"
    );
    assert_eq!(
        d.members
            .iter()
            .find(|m| m.member_id.as_str() == b)
            .map(|m| &m.member_assignment[..]),
        Some(&b"p1"[..])
    );
    // Both leave in one batch (or one at a time before v3); the group is then Empty.
    let leave = if v >= 3 {
        let members = [&a, &b].map(|m| {
            MemberIdentity::default()
                .with_member_id(s(m))
                .with_reason(Some(s("done")))
        });
        vec![LeaveGroupRequest::default()
            .with_group_id(GroupId(s(&group)))
            .with_members(members.to_vec())]
    } else {
        [&a, &b]
            .map(|m| {
                LeaveGroupRequest::default()
                    .with_group_id(GroupId(s(&group)))
                    .with_member_id(s(m))
            })
            .to_vec()
    };
    for req in leave {
        let lv = if v >= 3 { v.min(5) } else { v.min(2) };
        let ResponseKind::LeaveGroup(r) =
            run(ctx, ApiKey::LeaveGroup, lv, RequestKind::LeaveGroup(req)).await
        else {
            panic!()
        };
        assert_eq!(r.error_code, 0, "v{v}");
        assert!(r.members.iter().all(|m| m.error_code == 0), "v{v}");
    }
    assert_eq!(
        describe(ctx, 5, &group).await.group_state.as_str(),
        "Empty",
        "v{v}"
    );
}

#[tokio::test]
async fn two_members_join_and_sync_at_every_join_version() {
    let t = context().await;
    let ctx = Arc::new(t.ctx);
    ctx.storage
        .create_topic("flow", 2, TopicConfig::default(), false)
        .await
        .unwrap();
    for v in 0..=9 {
        two_member_round(&ctx, v).await;
    }
}

#[tokio::test]
async fn commit_and_fetch_round_trip_at_every_version() {
    let t = context().await;
    let ctx = &t.ctx;
    ctx.storage
        .create_topic("t", 2, TopicConfig::default(), false)
        .await
        .unwrap();
    for v in 2..=9i16 {
        let group = format!("manual-{v}");
        let codes = commit_codes(
            ctx,
            v,
            commit(&group, "", -1, "t", &[(0, 10 + i64::from(v)), (1, 20)]),
        )
        .await;
        assert!(codes.iter().all(|c| c.2 == 0), "commit v{v}: {codes:?}");
        let missing = commit_codes(ctx, v, commit(&group, "", -1, "nope", &[(0, 1)])).await;
        assert_eq!(
            missing[0].2,
            ResponseError::UnknownTopicOrPartition.code(),
            "v{v}"
        );
        let empty_group = commit_codes(ctx, v, commit("", "", -1, "t", &[(0, 1)])).await;
        assert_eq!(empty_group[0].2, ResponseError::InvalidGroupId.code(), "v{v}");
        // Metadata longer than offset.metadata.max.bytes is refused for its partition only.
        let RequestKind::OffsetCommit(mut big) = commit("big", "", -1, "t", &[(0, 1), (1, 2)]) else {
            panic!()
        };
        big.topics[0].partitions[1].committed_metadata = Some(s(&"m".repeat(5000)));
        let codes = commit_codes(ctx, v, RequestKind::OffsetCommit(big)).await;
        let too_large = ResponseError::OffsetMetadataTooLarge.code();
        assert_eq!((codes[0].2, codes[1].2), (0, too_large), "v{v}");
    }
    for v in 1..=7i16 {
        let topics = vec![OffsetFetchRequestTopic::default()
            .with_name(TopicName(s("t")))
            .with_partition_indexes(vec![0, 1, 5])];
        let req = OffsetFetchRequest::default()
            .with_group_id(GroupId(s("manual-6")))
            .with_topics(Some(topics));
        let ResponseKind::OffsetFetch(r) =
            run(ctx, ApiKey::OffsetFetch, v, RequestKind::OffsetFetch(req)).await
        else {
            panic!()
        };
        let got: Vec<(i32, i64, i32, &str)> = r.topics[0]
            .partitions
            .iter()
            .map(|p| {
                (
                    p.partition_index,
                    p.committed_offset,
                    p.committed_leader_epoch,
                    p.metadata.as_deref().unwrap(),
                )
            })
            .collect();
        let epoch = if v >= 5 { 3 } else { -1 };
        assert_eq!(
            got,
            vec![(0, 16, epoch, "meta"), (1, 20, epoch, "meta"), (5, -1, -1, "")],
            "fetch v{v}"
        );
        if v >= 2 {
            // Null topics: every committed partition.
            let req = OffsetFetchRequest::default()
                .with_group_id(GroupId(s("manual-2")))
                .with_topics(None);
            let ResponseKind::OffsetFetch(r) =
                run(ctx, ApiKey::OffsetFetch, v, RequestKind::OffsetFetch(req)).await
            else {
                panic!()
            };
            let all: Vec<(i32, i64)> = r.topics[0]
                .partitions
                .iter()
                .map(|p| (p.partition_index, p.committed_offset))
                .collect();
            assert_eq!(all, vec![(0, 12), (1, 20)], "fetch all v{v}");
        }
    }
    for v in 8..=9i16 {
        let topics = vec![OffsetFetchRequestTopics::default()
            .with_name(TopicName(s("t")))
            .with_partition_indexes(vec![0])];
        let groups = vec![
            OffsetFetchRequestGroup::default()
                .with_group_id(GroupId(s("manual-9")))
                .with_topics(Some(topics.clone())),
            OffsetFetchRequestGroup::default()
                .with_group_id(GroupId(s("manual-3")))
                .with_topics(None),
            OffsetFetchRequestGroup::default()
                .with_group_id(GroupId(s("unknown")))
                .with_topics(Some(topics)),
            OffsetFetchRequestGroup::default()
                .with_group_id(GroupId(s("")))
                .with_topics(None),
        ];
        let req = OffsetFetchRequest::default().with_groups(groups);
        let ResponseKind::OffsetFetch(r) =
            run(ctx, ApiKey::OffsetFetch, v, RequestKind::OffsetFetch(req)).await
        else {
            panic!()
        };
        let offsets: Vec<Vec<i64>> = r
            .groups
            .iter()
            .map(|g| {
                g.topics
                    .iter()
                    .flat_map(|t| t.partitions.iter().map(|p| p.committed_offset))
                    .collect()
            })
            .collect();
        assert_eq!(
            offsets,
            vec![vec![19], vec![13, 20], vec![-1], vec![]],
            "fetch v{v}"
        );
        let errors: Vec<i16> = r.groups.iter().map(|g| g.error_code).collect();
        assert_eq!(
            errors,
            vec![0, 0, 0, ResponseError::InvalidGroupId.code()],
            "fetch v{v}"
        );
    }
}
