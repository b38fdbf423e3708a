//! Heartbeat (v0-4): keeps a member's session alive; REBALANCE_IN_PROGRESS asks it to rejoin.

use kafka_protocol::messages::{HeartbeatRequest, HeartbeatResponse};
use tracing::trace;

use super::Context;

pub(super) async fn handle(ctx: &Context, version: i16, req: HeartbeatRequest) -> HeartbeatResponse {
    let group_id = req.group_id.0.as_str();
    let instance_id = if version >= 3 {
        req.group_instance_id.as_deref()
    } else {
        None
    };
    let result = ctx
        .groups
        .heartbeat(group_id, &req.member_id, instance_id, req.generation_id)
        .await;
    trace!(group = %group_id, member = %req.member_id, result = ?result, "heartbeat");
    HeartbeatResponse::default().with_error_code(result.err().map_or(0, |e| e.code()))
}
