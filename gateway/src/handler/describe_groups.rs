//! DescribeGroups (v0-6): state, protocol and members (with metadata and assignment) per group.
//!
//! An unknown group is described as `Dead` with no error below v6 and with GROUP_ID_NOT_FOUND
//! and a message from v6, as Kafka 4 does.

use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::{DescribeGroupsRequest, DescribeGroupsResponse, GroupId};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::{authorized_ops, Context};
use crate::group::GroupDescription;

pub(super) async fn handle(
    ctx: &Context,
    version: i16,
    req: DescribeGroupsRequest,
) -> DescribeGroupsResponse {
    let ops = authorized_ops::group(version >= 3 && req.include_authorized_operations);
    let mut groups = Vec::with_capacity(req.groups.len());
    for id in req.groups {
        groups.push(match ctx.groups.describe_group(&id.0).await {
            Ok(Some(d)) => described(version, d).with_authorized_operations(ops),
            Ok(None) => unknown(version, id),
            Err(e) => DescribedGroup::default()
                .with_group_id(id)
                .with_error_code(e.code())
                .with_authorized_operations(authorized_ops::OMITTED),
        });
    }
    DescribeGroupsResponse::default().with_groups(groups)
}

fn unknown(version: i16, id: GroupId) -> DescribedGroup {
    let group = DescribedGroup::default()
        .with_group_state(StrBytes::from_static_str("Dead"))
        .with_authorized_operations(authorized_ops::OMITTED);
    let group = if version >= 6 {
        let message = format!("Group {} not found.", &*id.0);
        group
            .with_error_code(ResponseError::GroupIdNotFound.code())
            .with_error_message(Some(StrBytes::from_string(message)))
    } else {
        group
    };
    group.with_group_id(id)
}

fn described(version: i16, d: GroupDescription) -> DescribedGroup {
    let text = StrBytes::from_string;
    let members = d
        .members
        .into_iter()
        .map(|m| {
            DescribedGroupMember::default()
                .with_member_id(text(m.member_id))
                // The field exists from v4.
                .with_group_instance_id(m.instance_id.filter(|_| version >= 4).map(text))
                .with_client_id(text(m.client_id))
                .with_client_host(text(m.client_host))
                .with_member_metadata(m.metadata)
                .with_member_assignment(m.assignment)
        })
        .collect();
    DescribedGroup::default()
        .with_group_id(GroupId(text(d.group_id)))
        .with_group_state(StrBytes::from_static_str(d.state))
        .with_protocol_type(text(d.protocol_type))
        .with_protocol_data(text(d.protocol))
        .with_members(members)
}
