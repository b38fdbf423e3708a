//! Helpers for the group handler tests: run a request through [`dispatch`] and encode the reply
//! at the request's version, and build common requests.

use bytes::Bytes;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::{ApiKey, GroupId, JoinGroupRequest, RequestHeader, RequestKind, ResponseKind};
use kafka_protocol::protocol::StrBytes;

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
    let reply = dispatch(ctx, &header(key, version), &client(), body)
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
