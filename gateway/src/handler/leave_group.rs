//! LeaveGroup: one member by id (v0-2) or a batch of members with per-member errors (v3+,
//! KIP-345), each with a reason (v5+).

use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::{LeaveGroupRequest, LeaveGroupResponse};
use kafka_protocol::protocol::StrBytes;
use tracing::{debug, info};

use super::Context;
use crate::group::LeavingMember;

pub(super) async fn handle(ctx: &Context, version: i16, req: LeaveGroupRequest) -> LeaveGroupResponse {
    let group_id = req.group_id.0.to_string();
    let members: Vec<LeavingMember> = if version >= 3 {
        req.members
            .into_iter()
            .map(|m| {
                if let Some(reason) = m.reason.filter(|_| version >= 5) {
                    info!(group = %group_id, member = %m.member_id, reason = %reason, "member leaving");
                }
                LeavingMember {
                    member_id: m.member_id.to_string(),
                    instance_id: m.group_instance_id.map(|i| i.to_string()),
                }
            })
            .collect()
    } else {
        vec![LeavingMember {
            member_id: req.member_id.to_string(),
            instance_id: None,
        }]
    };
    let results = ctx.groups.leave_group(&group_id, members).await;
    debug!(group = %group_id, results = ?results, "leave group");
    let (top, results) = match results {
        Ok(results) => (None, results),
        Err(e) => (Some(e), Vec::new()),
    };
    if version < 3 {
        // One member: its error is the response's (Kafka's `LeaveGroupResponse` does the same).
        let error = top.or_else(|| results.iter().find_map(|r| r.error));
        return LeaveGroupResponse::default().with_error_code(error.map_or(0, |e| e.code()));
    }
    let members = results
        .into_iter()
        .map(|r| {
            MemberResponse::default()
                .with_member_id(StrBytes::from_string(r.member.member_id))
                .with_group_instance_id(r.member.instance_id.map(StrBytes::from_string))
                .with_error_code(r.error.map_or(0, |e| e.code()))
        })
        .collect();
    LeaveGroupResponse::default()
        .with_error_code(top.map_or(0, |e| e.code()))
        .with_members(members)
}
