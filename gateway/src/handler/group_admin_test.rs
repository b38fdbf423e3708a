//! The group admin APIs through [`dispatch`](super::dispatch), every response encoded at its
//! version: describe, list, delete groups and offsets, refusals of unknown members, and offsets
//! of deleted topics.

use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::offset_delete_request::{
    OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
};
use kafka_protocol::messages::*;
use kafka_protocol::ResponseError;

use super::group_test_support::*;
use super::test_support::context;
use crate::storage::TopicConfig;

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
    assert!(ctx.groups.fetch_offsets("idle", None).await.unwrap().is_empty());
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
        .await
        .unwrap()
        .into_iter()
        .map(|(tp, _)| tp.topic.to_string())
        .collect();
    assert_eq!(left, vec!["kept".to_string()]);
}
