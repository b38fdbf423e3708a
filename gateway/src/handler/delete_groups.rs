//! DeleteGroups (v0-2): deletes Empty groups and their committed offsets.

use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::{DeleteGroupsRequest, DeleteGroupsResponse, GroupId};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use tracing::debug;

use super::Context;

pub(super) async fn handle(ctx: &Context, _version: i16, req: DeleteGroupsRequest) -> DeleteGroupsResponse {
    let names: Vec<String> = req.groups_names.iter().map(|g| g.0.to_string()).collect();
    // An empty group id never names a group; Kafka answers INVALID_GROUP_ID for it.
    let valid: Vec<String> = names.iter().filter(|n| !n.is_empty()).cloned().collect();
    let mut outcome = ctx.groups.delete_groups(&valid).await.into_iter();
    let results = names
        .into_iter()
        .map(|name| {
            let error = if name.is_empty() {
                Some(ResponseError::InvalidGroupId)
            } else {
                outcome.next().and_then(|(_, e)| e)
            };
            if error.is_none() {
                debug!(group = %name, "group deleted by request");
            }
            DeletableGroupResult::default()
                .with_group_id(GroupId(StrBytes::from_string(name)))
                .with_error_code(error.map_or(0, |e| e.code()))
        })
        .collect();
    DeleteGroupsResponse::default().with_results(results)
}
