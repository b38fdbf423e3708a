//! SyncGroup (v0-5): the leader hands in assignments, every member gets its own back.

use kafka_protocol::messages::{SyncGroupRequest, SyncGroupResponse};
use kafka_protocol::protocol::StrBytes;
use tracing::debug;

use super::Context;
use crate::group::SyncRequest;

pub(super) async fn handle(ctx: &Context, version: i16, req: SyncGroupRequest) -> SyncGroupResponse {
    let group_id = req.group_id.0.to_string();
    let sync = SyncRequest {
        member_id: req.member_id.to_string(),
        instance_id: (version >= 3)
            .then(|| req.group_instance_id.map(|i| i.to_string()))
            .flatten(),
        generation_id: req.generation_id,
        protocol_type: (version >= 5)
            .then(|| req.protocol_type.map(|p| p.to_string()))
            .flatten(),
        protocol_name: (version >= 5)
            .then(|| req.protocol_name.map(|p| p.to_string()))
            .flatten(),
        assignments: req
            .assignments
            .into_iter()
            .map(|a| (a.member_id.to_string(), a.assignment))
            .collect(),
    };
    let member = sync.member_id.clone();
    let resp = ctx.groups.sync_group(&group_id, sync).await;
    debug!(group = %group_id, member = %member, error = ?resp.error, "synced group");
    let resp_v5 = version >= 5;
    SyncGroupResponse::default()
        .with_error_code(resp.error.map_or(0, |e| e.code()))
        .with_protocol_type(resp.protocol_type.filter(|_| resp_v5).map(StrBytes::from_string))
        .with_protocol_name(resp.protocol_name.filter(|_| resp_v5).map(StrBytes::from_string))
        .with_assignment(resp.assignment)
}
