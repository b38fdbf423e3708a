//! JoinGroup (v0-9): maps the request onto the group coordinator and shapes its answer for the
//! request's version.

use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::{JoinGroupRequest, JoinGroupResponse, RequestHeader};
use kafka_protocol::protocol::StrBytes;
use tracing::debug;

use super::{Client, Context};
use crate::group::{JoinRequest, JoinResponse, Protocol};

pub(super) async fn handle(
    ctx: &Context,
    header: &RequestHeader,
    client: &Client,
    req: JoinGroupRequest,
) -> JoinGroupResponse {
    let version = header.request_api_version;
    let group_id = req.group_id.0.to_string();
    let join = JoinRequest {
        member_id: req.member_id.to_string(),
        instance_id: (version >= 5)
            .then(|| req.group_instance_id.map(|i| i.to_string()))
            .flatten(),
        client_id: header
            .client_id
            .as_ref()
            .map(|c| c.to_string())
            .unwrap_or_default(),
        client_host: client.host.clone(),
        session_timeout_ms: req.session_timeout_ms,
        // v0 has no rebalance timeout: Kafka uses the session timeout.
        rebalance_timeout_ms: if version >= 1 {
            req.rebalance_timeout_ms
        } else {
            req.session_timeout_ms
        },
        protocol_type: req.protocol_type.to_string(),
        protocols: req
            .protocols
            .into_iter()
            .map(|p| Protocol {
                name: p.name.to_string(),
                metadata: p.metadata,
            })
            .collect(),
        api_version: version,
        reason: (version >= 8)
            .then(|| req.reason.map(|r| r.to_string()))
            .flatten(),
    };
    debug!(group = %group_id, member = %join.member_id, reason = ?join.reason, "join group");
    let resp = ctx.groups.join_group(&group_id, join).await;
    debug!(group = %group_id, member = %resp.member_id, error = ?resp.error, generation = resp.generation_id, "joined group");
    to_wire(version, resp)
}

fn to_wire(version: i16, resp: JoinResponse) -> JoinGroupResponse {
    let text = |s: String| StrBytes::from_string(s);
    let members = resp
        .members
        .into_iter()
        .map(|m| {
            JoinGroupResponseMember::default()
                .with_member_id(text(m.member_id))
                // A static member can only have joined with v5+, but a v0-4 leader may share its
                // group: the field does not exist below v5.
                .with_group_instance_id(if version >= 5 {
                    m.instance_id.map(text)
                } else {
                    None
                })
                .with_metadata(m.metadata)
        })
        .collect();
    // The protocol name is non-nullable below v7 (Kafka sends "" there when there is none).
    let protocol_name = match resp.protocol_name {
        None if version < 7 => Some(String::new()),
        name => name,
    };
    JoinGroupResponse::default()
        .with_error_code(resp.error.map_or(0, |e| e.code()))
        .with_generation_id(resp.generation_id)
        .with_protocol_type(if version >= 7 {
            resp.protocol_type.map(text)
        } else {
            None
        })
        .with_protocol_name(protocol_name.map(text))
        .with_leader(text(resp.leader))
        .with_skip_assignment(version >= 9 && resp.skip_assignment)
        .with_member_id(text(resp.member_id))
        .with_members(members)
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
    use kafka_protocol::messages::{ApiKey, RequestKind, ResponseKind};
    use kafka_protocol::ResponseError;

    use crate::handler::group_test_support::{join_request, run};
    use crate::handler::test_support::context;

    #[tokio::test]
    async fn a_lone_member_joins_at_every_version() {
        let t = context().await;
        for v in 0..=9i16 {
            let group = format!("g{v}");
            let mut req = join_request(&group, "", v);
            if v >= 4 {
                let ResponseKind::JoinGroup(r) =
                    run(&t.ctx, ApiKey::JoinGroup, v, RequestKind::JoinGroup(req.clone())).await
                else {
                    panic!()
                };
                assert_eq!(r.error_code, ResponseError::MemberIdRequired.code(), "v{v}");
                assert!(r.member_id.starts_with("client-"), "v{v}: {}", r.member_id);
                req.member_id = r.member_id;
            }
            let ResponseKind::JoinGroup(r) =
                run(&t.ctx, ApiKey::JoinGroup, v, RequestKind::JoinGroup(req)).await
            else {
                panic!()
            };
            assert_eq!((r.error_code, r.generation_id), (0, 1), "v{v}");
            assert_eq!(r.leader, r.member_id, "v{v}");
            assert_eq!(r.protocol_name.as_deref(), Some("range"), "v{v}");
            assert_eq!(r.protocol_type.as_deref(), (v >= 7).then_some("consumer"), "v{v}");
            assert_eq!(r.members.len(), 1, "v{v}");
            assert_eq!(r.members[0].metadata, Bytes::from_static(b"meta"), "v{v}");
        }
    }

    #[tokio::test]
    async fn errors_carry_an_empty_protocol_name_before_v7() {
        let t = context().await;
        for v in 0..=9i16 {
            // A session timeout below group.min.session.timeout.ms.
            let req = join_request("g", "", v).with_session_timeout_ms(10);
            let ResponseKind::JoinGroup(r) =
                run(&t.ctx, ApiKey::JoinGroup, v, RequestKind::JoinGroup(req)).await
            else {
                panic!()
            };
            assert_eq!(r.error_code, ResponseError::InvalidSessionTimeout.code(), "v{v}");
            assert_eq!(r.protocol_name.is_none(), v >= 7, "v{v}");
        }
        let no_protocols = join_request("g", "", 5).with_protocols(Vec::<JoinGroupRequestProtocol>::new());
        let ResponseKind::JoinGroup(r) =
            run(&t.ctx, ApiKey::JoinGroup, 5, RequestKind::JoinGroup(no_protocols)).await
        else {
            panic!()
        };
        assert_eq!(r.error_code, ResponseError::InconsistentGroupProtocol.code());
        let empty_group = join_request("", "", 5);
        let ResponseKind::JoinGroup(r) =
            run(&t.ctx, ApiKey::JoinGroup, 5, RequestKind::JoinGroup(empty_group)).await
        else {
            panic!()
        };
        assert_eq!(r.error_code, ResponseError::InvalidGroupId.code());
    }
}
