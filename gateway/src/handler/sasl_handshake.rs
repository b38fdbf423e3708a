//! SaslHandshake: picks the mechanism of the exchange that SaslAuthenticate requests carry.
//! v0 is in the version table only because librdkafka enables SASL when it sees v0 there; a
//! v0 handshake (after which the client would send unframed SASL tokens) is answered
//! UNSUPPORTED_VERSION and the connection closed. The enabled mechanisms are always listed; an unsupported one, or a handshake outside a SASL listener or inside an
//! exchange, is answered with its error and the connection is closed.

use kafka_protocol::messages::{SaslHandshakeRequest, SaslHandshakeResponse};
use kafka_protocol::protocol::StrBytes;

use super::{Client, Context};
use crate::sasl::audit::Failure;
use crate::sasl::Mechanism;

pub(super) fn handle(
    ctx: &Context,
    client: &Client,
    version: i16,
    req: SaslHandshakeRequest,
) -> SaslHandshakeResponse {
    let enabled = ctx.auth.enabled();
    let resp = SaslHandshakeResponse::default().with_mechanisms(
        enabled
            .iter()
            .map(|m| StrBytes::from_static_str(m.name()))
            .collect(),
    );
    if version == 0 {
        client.auth.fail();
        ctx.auth.audit.failure(Failure {
            listener: &client.listener,
            peer: &client.host,
            mechanism: Mechanism::parse(&req.mechanism).map_or("none", Mechanism::name),
            principal: "",
            reason: "unsupported_version",
            detail: "SaslHandshake v0 (unframed SASL tokens) is not supported",
        });
        return resp.with_error_code(kafka_protocol::ResponseError::UnsupportedVersion.code());
    }
    match client.auth.handshake(&req.mechanism, &enabled) {
        Ok(_) => resp,
        Err(e) => {
            ctx.auth.audit.failure(Failure {
                listener: &client.listener,
                peer: &client.host,
                mechanism: Mechanism::parse(&req.mechanism).map_or("none", Mechanism::name),
                principal: "",
                reason: e.metric_label(),
                detail: &e.to_string(),
            });
            resp.with_error_code(e.response_error().code())
        }
    }
}
