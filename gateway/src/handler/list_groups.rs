//! ListGroups (v0-5): every live group, filtered by state (v4+) and by type (v5+).

use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{GroupId, ListGroupsRequest, ListGroupsResponse};
use kafka_protocol::protocol::StrBytes;

use super::Context;

/// The only group type this gateway runs (KIP-848 groups are `consumer`).
const CLASSIC: &str = "classic";

pub(super) async fn handle(ctx: &Context, version: i16, req: ListGroupsRequest) -> ListGroupsResponse {
    let strings = |v: Vec<StrBytes>| v.into_iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let states = if version >= 4 {
        strings(req.states_filter)
    } else {
        Vec::new()
    };
    let types = if version >= 5 {
        strings(req.types_filter)
    } else {
        Vec::new()
    };
    let groups = ctx
        .groups
        .list_groups(&states, &types)
        .await
        .into_iter()
        .map(|g| {
            let listed = ListedGroup::default()
                .with_group_id(GroupId(StrBytes::from_string(g.group_id)))
                .with_protocol_type(StrBytes::from_string(g.protocol_type));
            let listed = if version >= 4 {
                listed.with_group_state(StrBytes::from_static_str(g.state))
            } else {
                listed
            };
            if version >= 5 {
                listed.with_group_type(StrBytes::from_static_str(CLASSIC))
            } else {
                listed
            }
        })
        .collect();
    ListGroupsResponse::default().with_groups(groups)
}
