//! Helpers for the group handler tests: run a request through [`dispatch`] and encode the reply
//! at the request's version, and build common requests.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::test_support::client;
use super::{dispatch, Context};
use crate::protocol::encode_response;

/// The header of a request from client id `client`.
pub(crate) fn header(key: ApiKey, version: i16) -> RequestHeader {
    RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_client_id(Some(StrBytes::from_static_str("client")))
}

/// Dispatches `body` and checks its reply encodes at `version`.
pub(crate) async fn run(ctx: &Context, key: ApiKey, version: i16, body: RequestKind) -> ResponseKind {
    let reply = dispatch(ctx, &header(key, version), &client(), &super::window::Held::untracked(), body)
        .await
        .unwrap_or_else(|e| panic!("{key:?} v{version}: {e}"))
        .unwrap_or_else(|| panic!("{key:?} v{version}: no reply"));
    encode_response(key, version, 1, &reply).unwrap_or_else(|e| panic!("{key:?} v{version}: {e}"));
    reply
}

/// A string field value.
pub(crate) fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_owned())
}

/// A consumer JoinGroup offering `range` with metadata `meta`, timeouts valid for the default
/// group config.
pub(crate) fn join_request(group: &str, member_id: &str, version: i16) -> JoinGroupRequest {
    JoinGroupRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_session_timeout_ms(10_000)
        .with_rebalance_timeout_ms(if version >= 1 { 10_000 } else { -1 })
        .with_member_id(s(member_id))
        .with_protocol_type(s("consumer"))
        .with_protocols(vec![JoinGroupRequestProtocol::default()
            .with_name(s("range"))
            .with_metadata(Bytes::from_static(b"meta"))])
}

/// How long a test waits for a pending response.
pub(crate) const WAIT: Duration = Duration::from_secs(10);

pub(crate) async fn join(ctx: &Context, v: i16, group: &str, member: &str) -> JoinGroupResponse {
    let req = RequestKind::JoinGroup(join_request(group, member, v));
    let ResponseKind::JoinGroup(r) = run(ctx, ApiKey::JoinGroup, v, req).await else {
        panic!()
    };
    r
}

/// A first join: MEMBER_ID_REQUIRED from v4, then the join with the given id, left pending.
pub(crate) async fn new_member(
    ctx: &Arc<Context>,
    v: i16,
    group: &str,
) -> tokio::task::JoinHandle<JoinGroupResponse> {
    let mut member = String::new();
    if v >= 4 {
        let r = join(ctx, v, group, "").await;
        assert_eq!(r.error_code, ResponseError::MemberIdRequired.code(), "v{v}");
        member = r.member_id.to_string();
    }
    let (ctx, group) = (Arc::clone(ctx), group.to_owned());
    tokio::spawn(async move { join(&ctx, v, &group, &member).await })
}

pub(crate) fn sync_request(
    group: &str,
    member: &str,
    generation: i32,
    assignments: &[(&str, &[u8])],
) -> RequestKind {
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

pub(crate) async fn heartbeat(ctx: &Context, v: i16, group: &str, member: &str, generation: i32) -> i16 {
    let req = HeartbeatRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_member_id(s(member))
        .with_generation_id(generation);
    let ResponseKind::Heartbeat(r) = run(ctx, ApiKey::Heartbeat, v, RequestKind::Heartbeat(req)).await else {
        panic!()
    };
    r.error_code
}

pub(crate) fn commit(
    group: &str,
    member: &str,
    generation: i32,
    topic: &str,
    partitions: &[(i32, i64)],
) -> RequestKind {
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

pub(crate) async fn commit_codes(ctx: &Context, v: i16, req: RequestKind) -> Vec<(String, i32, i16)> {
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

pub(crate) async fn describe(ctx: &Context, v: i16, group: &str) -> describe_groups_response::DescribedGroup {
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
pub(crate) async fn wait_for_state(ctx: &Context, group: &str, state: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while describe(ctx, 5, group).await.group_state.as_str() != state {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{group} never reached {state}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
