//! SaslAuthenticate: one step of the exchange SaslHandshake started. A completed exchange
//! answers with the session lifetime (KIP-368, v1+) after which the client must authenticate
//! again; a failure is answered with SASL_AUTHENTICATION_FAILED (or ILLEGAL_SASL_STATE) and a
//! message, counted and logged with the principal the client claimed, and the connection is
//! closed.

use bytes::Bytes;
use kafka_protocol::messages::{SaslAuthenticateRequest, SaslAuthenticateResponse};
use kafka_protocol::protocol::StrBytes;
use tokio::time::Instant;
use tracing::info;

use super::{Client, Context};
use crate::sasl::audit::Failure;
use crate::sasl::session::Step;
use crate::sasl::{Mechanism, SaslError};

pub(super) async fn handle(
    ctx: &Context,
    client: &Client,
    version: i16,
    req: SaslAuthenticateRequest,
) -> SaslAuthenticateResponse {
    let mechanism = client.auth.mechanism().map_or("none", Mechanism::name);
    let resp = SaslAuthenticateResponse::default();
    match client
        .auth
        .authenticate(&ctx.auth, &req.auth_bytes, Instant::now().into_std())
        .await
    {
        Ok(Step::Continue(bytes)) => resp.with_auth_bytes(Bytes::from(bytes)),
        Ok(Step::Done {
            reply,
            principal,
            session_lifetime_ms,
        }) => {
            ctx.auth.audit.success(mechanism);
            info!(
                listener = &*client.listener,
                mechanism, principal, session_lifetime_ms, "client authenticated"
            );
            let resp = resp.with_auth_bytes(Bytes::from(reply));
            if version >= 1 {
                resp.with_session_lifetime_ms(session_lifetime_ms)
            } else {
                resp
            }
        }
        Err(e) => {
            let principal = match &e {
                SaslError::InvalidCredentials { user, .. } => format!("User:{user}"),
                _ => String::new(),
            };
            let detail = match &e {
                SaslError::InvalidCredentials { reason, .. } => (*reason).to_owned(),
                other => other.to_string(),
            };
            ctx.auth.audit.failure(Failure {
                listener: &client.listener,
                peer: &client.host,
                mechanism,
                principal: &principal,
                reason: e.metric_label(),
                detail: &detail,
            });
            let message = match &e {
                SaslError::InvalidCredentials { .. } => format!(
                    "Authentication failed during authentication due to invalid credentials with SASL mechanism {mechanism}"
                ),
                SaslError::InvalidToken(reason) => format!("Authentication failed: invalid token ({reason})"),
                other => other.to_string(),
            };
            resp.with_error_code(e.response_error().code())
                .with_error_message(Some(StrBytes::from_string(message)))
        }
    }
}
