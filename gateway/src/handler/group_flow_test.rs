//! The group APIs through [`dispatch`], every response encoded at its version: a two-member
//! join/sync round, commits and fetches, describe/list/delete, leave, and offsets of deleted
//! topics.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_delete_request::{
    OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::*;
use kafka_protocol::ResponseError;

use super::group_test_support::{join_request, run, s};
use super::test_support::context;
use super::Context;
use crate::storage::TopicConfig;

const WAIT: Duration = Duration::from_secs(10);

async fn join(ctx: &Context, v: i16, group: &str, member: &str) -> JoinGroupResponse {
    let req = RequestKind::JoinGroup(join_request(group, member, v));
    let ResponseKind::JoinGroup(r) = run(ctx, ApiKey::JoinGroup, v, req).await else {
        panic!()
    };
    r
}

/// A first join: MEMBER_ID_REQUIRED from v4, then the join with the given id, left pending.
async fn new_member(ctx: &Arc<Context>, v: i16, group: &str) -> tokio::task::JoinHandle<JoinGroupResponse> {
    let mut member = String::new();
    if v >= 4 {
        let r = join(ctx, v, group, "").await;
        assert_eq!(r.error_code, ResponseError::MemberIdRequired.code(), "v{v}");
        member = r.member_id.to_string();
    }
    let (ctx, group) = (Arc::clone(ctx), group.to_owned());
    tokio::spawn(async move { join(&ctx, v, &group, &member).await })
}

fn sync_request(group: &str, member: &str, generation: i32, assignments: &[(&str, &[u8])]) -> RequestKind {
    RequestKind::SyncGroup(
        SyncGroupRequest::default()
            .with_group_id(GroupId(s(group)))
            .with_member_id(s(member))
            .with_generation_id(generation)
            .with_assignments(
                assignments
                    .iter()
                    .map(|(m, a)| {
                        SyncGroupRequestAssignment::default()
                            .with_member_id(s(m))
                            .with_assignment(Bytes::copy_from_slice(a))
                    })
                    .collect(),
            ),
    )
}

async fn heartbeat(ctx: &Context, v: i16, group: &str, member: &str, generation: i32) -> i16 {
    let req = HeartbeatRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_member_id(s(member))
        .with_generation_id(generation);
    let ResponseKind::Heartbeat(r) = run(ctx, ApiKey::Heartbeat, v, RequestKind::Heartbeat(req)).await else {
        panic!()
    };
    r.error_code
}

fn commit(group: &str, member: &str, generation: i32, topic: &str, partitions: &[(i32, i64)]) -> RequestKind {
    let parts = partitions
        .iter()
        .map(|(p, o)| {
            OffsetCommitRequestPartition::default()
                .with_partition_index(*p)
                .with_committed_offset(*o)
                .with_committed_leader_epoch(3)
                .with_committed_metadata(Some(s("meta")))
        })
        .collect();
    RequestKind::OffsetCommit(
        OffsetCommitRequest::default()
            .with_group_id(GroupId(s(group)))
            .with_member_id(s(member))
            .with_generation_id_or_member_epoch(generation)
            .with_topics(vec![OffsetCommitRequestTopic::default()
                .with_name(TopicName(s(topic)))
                .with_partitions(parts)]),
    )
}

async fn commit_codes(ctx: &Context, v: i16, req: RequestKind) -> Vec<(String, i32, i16)> {
    let ResponseKind::OffsetCommit(r) = run(ctx, ApiKey::OffsetCommit, v, req).await else {
        panic!()
    };
    r.topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(|p| (t.name.0.to_string(), p.partition_index, p.error_code))
        })
        .collect()
}

async fn describe(ctx: &Context, v: i16, group: &str) -> describe_groups_response::DescribedGroup {
    let req = DescribeGroupsRequest::default()
        .with_groups(vec![GroupId(s(group))])
        .with_include_authorized_operations(true);
    let ResponseKind::DescribeGroups(mut r) =
        run(ctx, ApiKey::DescribeGroups, v, RequestKind::DescribeGroups(req)).await
    else {
        panic!()
    };
    r.groups.remove(0)
}

/// Waits (with a deadline) until DescribeGroups shows `group` in `state`.
async fn wait_for_state(ctx: &Context, group: &str, state: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while describe(ctx, 5, group).await.group_state.as_str() != state {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{group} never reached {state}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

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

#[tokio::test]
async fn describe_list_delete_and_offset_delete() {
    let t = context().await;
    let ctx = &t.ctx;
    ctx.storage
        .create_topic("t", 1, TopicConfig::default(), false)
        .await
        .unwrap();
    commit_codes(ctx, 8, commit("idle", "", -1, "t", &[(0, 4)])).await;
    for v in 0..=6i16 {
        let d = describe(ctx, v, "idle").await;
        assert_eq!((d.error_code, d.group_state.as_str()), (0, "Empty"), "v{v}");
        let expect_ops = if v >= 3 {
            (1 << 3) | (1 << 6) | (1 << 8)
        } else {
            i32::MIN
        };
        assert_eq!(d.authorized_operations, expect_ops, "v{v}");
        let d = describe(ctx, v, "ghost").await;
        assert_eq!(d.group_state.as_str(), "Dead", "v{v}");
        let code = if v >= 6 {
            ResponseError::GroupIdNotFound.code()
        } else {
            0
        };
        assert_eq!(d.error_code, code, "v{v}");
    }
    for v in 0..=5i16 {
        let req = ListGroupsRequest::default().with_states_filter(vec![s("stable")]);
        let ResponseKind::ListGroups(r) = run(ctx, ApiKey::ListGroups, v, RequestKind::ListGroups(req)).await
        else {
            panic!()
        };
        // The state filter exists from v4; below it every group is listed.
        assert_eq!(r.groups.len(), usize::from(v < 4), "v{v}");
        let ResponseKind::ListGroups(r) = run(
            ctx,
            ApiKey::ListGroups,
            v,
            RequestKind::ListGroups(ListGroupsRequest::default()),
        )
        .await
        else {
            panic!()
        };
        assert_eq!(r.groups[0].group_id.as_str(), "idle");
        assert_eq!(
            r.groups[0].group_state.as_str(),
            if v >= 4 { "Empty" } else { "" },
            "v{v}"
        );
        assert_eq!(
            r.groups[0].group_type.as_str(),
            if v >= 5 { "classic" } else { "" },
            "v{v}"
        );
    }
    let req = OffsetDeleteRequest::default()
        .with_group_id(GroupId(s("idle")))
        .with_topics(vec![
            OffsetDeleteRequestTopic::default()
                .with_name(TopicName(s("t")))
                .with_partitions(vec![OffsetDeleteRequestPartition::default()]),
            OffsetDeleteRequestTopic::default()
                .with_name(TopicName(s("nope")))
                .with_partitions(vec![OffsetDeleteRequestPartition::default()]),
        ]);
    let ResponseKind::OffsetDelete(r) = run(
        ctx,
        ApiKey::OffsetDelete,
        0,
        RequestKind::OffsetDelete(req.clone()),
    )
    .await
    else {
        panic!()
    };
    let codes: Vec<i16> = r.topics.iter().map(|t| t.partitions[0].error_code).collect();
    assert_eq!(
        (r.error_code, codes),
        (0, vec![0, ResponseError::UnknownTopicOrPartition.code()])
    );
    assert!(ctx.groups.fetch_offsets("idle", None).is_empty());
    let ghost = req.with_group_id(GroupId(s("ghost")));
    let ResponseKind::OffsetDelete(r) =
        run(ctx, ApiKey::OffsetDelete, 0, RequestKind::OffsetDelete(ghost)).await
    else {
        panic!()
    };
    assert_eq!(r.error_code, ResponseError::GroupIdNotFound.code());
    for v in 0..=2i16 {
        let group = format!("del-{v}");
        commit_codes(ctx, 8, commit(&group, "", -1, "t", &[(0, 1)])).await;
        let req = DeleteGroupsRequest::default().with_groups_names(vec![
            GroupId(s(&group)),
            GroupId(s(&group)),
            GroupId(s("")),
        ]);
        let ResponseKind::DeleteGroups(r) =
            run(ctx, ApiKey::DeleteGroups, v, RequestKind::DeleteGroups(req)).await
        else {
            panic!()
        };
        let codes: Vec<i16> = r.results.iter().map(|g| g.error_code).collect();
        let (not_found, invalid) = (
            ResponseError::GroupIdNotFound.code(),
            ResponseError::InvalidGroupId.code(),
        );
        assert_eq!(codes, vec![0, not_found, invalid], "v{v}");
    }
}

#[tokio::test]
async fn unknown_members_and_groups_are_refused_at_every_version() {
    let t = context().await;
    let ctx = &t.ctx;
    let unknown = ResponseError::UnknownMemberId.code();
    for v in 0..=4 {
        assert_eq!(
            heartbeat(ctx, v, "nobody", "m", 1).await,
            unknown,
            "heartbeat v{v}"
        );
        assert_eq!(
            heartbeat(ctx, v, "", "m", 1).await,
            ResponseError::InvalidGroupId.code(),
            "heartbeat v{v}"
        );
    }
    for v in 0..=5 {
        let ResponseKind::SyncGroup(r) =
            run(ctx, ApiKey::SyncGroup, v, sync_request("nobody", "m", 1, &[])).await
        else {
            panic!()
        };
        assert_eq!(r.error_code, unknown, "sync v{v}");
        let req = if v >= 3 {
            LeaveGroupRequest::default()
                .with_group_id(GroupId(s("nobody")))
                .with_members(vec![MemberIdentity::default().with_member_id(s("m"))])
        } else {
            LeaveGroupRequest::default()
                .with_group_id(GroupId(s("nobody")))
                .with_member_id(s("m"))
        };
        let ResponseKind::LeaveGroup(r) = run(ctx, ApiKey::LeaveGroup, v, RequestKind::LeaveGroup(req)).await
        else {
            panic!()
        };
        let code = if v >= 3 {
            r.members[0].error_code
        } else {
            r.error_code
        };
        assert_eq!(code, unknown, "leave v{v}");
    }
}

#[tokio::test]
async fn deleting_a_topic_removes_its_committed_offsets() {
    let t = context().await;
    let ctx = &t.ctx;
    ctx.storage
        .create_topic("gone", 1, TopicConfig::default(), false)
        .await
        .unwrap();
    ctx.storage
        .create_topic("kept", 1, TopicConfig::default(), false)
        .await
        .unwrap();
    commit_codes(ctx, 8, commit("g", "", -1, "gone", &[(0, 7)])).await;
    commit_codes(ctx, 8, commit("g", "", -1, "kept", &[(0, 8)])).await;
    let req = DeleteTopicsRequest::default().with_topic_names(vec![TopicName(s("gone"))]);
    let ResponseKind::DeleteTopics(r) =
        run(ctx, ApiKey::DeleteTopics, 5, RequestKind::DeleteTopics(req)).await
    else {
        panic!()
    };
    assert_eq!(r.responses[0].error_code, 0);
    let left: Vec<String> = ctx
        .groups
        .fetch_offsets("g", None)
        .into_iter()
        .map(|(tp, _)| tp.topic.to_string())
        .collect();
    assert_eq!(left, vec!["kept".to_string()]);
}
