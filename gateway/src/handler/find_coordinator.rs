//! FindCoordinator: one key (v0-3) or a batch of keys (v4+).
//!
//! A group key resolves to the group's owner in the cluster (claimed through the raft log on
//! first lookup); any member answers, and group requests sent to a non-owner are answered
//! NOT_COORDINATOR, so clients come back here. Transactions are not supported: transaction keys are refused with
//! TRANSACTIONAL_ID_AUTHORIZATION_FAILED, the refusal Kafka gives a client not allowed to use a
//! transactional id. Clients treat it as fatal and report it to the application at once, where a
//! COORDINATOR_* code would make them retry until their transaction timeout; InitProducerId and
//! Produce refuse transactional producers with the same code.

use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use tracing::debug;

use super::Context;
use crate::cluster::Broker;

/// `CoordinatorType.GROUP`.
const KEY_TYPE_GROUP: i8 = 0;
/// `CoordinatorType.TRANSACTION`.
const KEY_TYPE_TRANSACTION: i8 = 1;
/// `CoordinatorType.SHARE` (v6+, share groups of KIP-932).
const KEY_TYPE_SHARE: i8 = 2;

/// Where a key's coordinator is, or why there is none.
type Lookup = Result<Broker, (ResponseError, String)>;

async fn lookup(ctx: &Context, listener: &str, key_type: i8, key: &str) -> Lookup {
    match key_type {
        KEY_TYPE_GROUP if key.is_empty() => Err((
            ResponseError::InvalidGroupId,
            "the group id must not be empty".into(),
        )),
        KEY_TYPE_GROUP => {
            let unavailable = |why: &str| (ResponseError::CoordinatorNotAvailable, why.to_owned());
            // A node cut off from the quorum cannot know the current owner: it points the client
            // at the member that will own the group once this node is declared dead.
            if !ctx.cluster.in_quorum() {
                return ctx
                    .cluster
                    .owner_without_me(key)
                    .and_then(|id| ctx.cluster.broker_on(id, listener))
                    .ok_or_else(|| unavailable("this gateway is not in contact with the cluster quorum"));
            }
            let (owner, _) = ctx
                .cluster
                .group_owner(key)
                .await
                .map_err(|_| unavailable("the cluster cannot decide the coordinator now"))?;
            ctx.cluster
                .broker_on(owner, listener)
                .ok_or_else(|| unavailable("the coordinator has no advertised address"))
        }
        KEY_TYPE_TRANSACTION => Err((
            ResponseError::TransactionalIdAuthorizationFailed,
            "transactions are not supported by this gateway".into(),
        )),
        KEY_TYPE_SHARE => Err((
            ResponseError::InvalidRequest,
            "share groups are not supported by this gateway".into(),
        )),
        other => Err((
            ResponseError::InvalidRequest,
            format!("unknown coordinator key type {other}"),
        )),
    }
}

/// Answers with the coordinator's address on `listener`, the one the client connected to.
pub(super) async fn handle(
    ctx: &Context,
    listener: &str,
    version: i16,
    req: FindCoordinatorRequest,
) -> FindCoordinatorResponse {
    // v0 has no key type: every key is a group.
    let key_type = if version >= 1 {
        req.key_type
    } else {
        KEY_TYPE_GROUP
    };
    if version >= 4 {
        let mut coordinators = Vec::with_capacity(req.coordinator_keys.len());
        for key in req.coordinator_keys {
            let found = lookup(ctx, listener, key_type, &key).await;
            let c = Coordinator::default().with_key(key);
            coordinators.push(match found {
                Ok(b) => c
                    .with_node_id(BrokerId(b.node_id))
                    .with_host(StrBytes::from_string(b.host))
                    .with_port(b.port),
                Err((error, message)) => {
                    debug!(key = %c.key, key_type, error = ?error, "no coordinator for key");
                    c.with_node_id(BrokerId(-1))
                        .with_port(-1)
                        .with_error_code(error.code())
                        .with_error_message(Some(StrBytes::from_string(message)))
                }
            });
        }
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    match lookup(ctx, listener, key_type, &req.key).await {
        Ok(b) => FindCoordinatorResponse::default()
            .with_node_id(BrokerId(b.node_id))
            .with_host(StrBytes::from_string(b.host))
            .with_port(b.port)
            // v1-3 carry a nullable message; "NONE" is what Kafka sends on success.
            .with_error_message((version >= 1).then(|| StrBytes::from_static_str("NONE"))),
        Err((error, message)) => {
            debug!(key = %req.key, key_type, error = ?error, "no coordinator for key");
            FindCoordinatorResponse::default()
                .with_error_code(error.code())
                .with_node_id(BrokerId(-1))
                .with_port(-1)
                .with_error_message((version >= 1).then(|| StrBytes::from_string(message)))
        }
    }
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::{ApiKey, RequestKind, ResponseKind};

    use super::*;
    use crate::handler::group_test_support::run;
    use crate::handler::test_support::context;

    fn single(version: i16, key: &str, key_type: i8) -> RequestKind {
        let mut req = FindCoordinatorRequest::default().with_key(StrBytes::from_string(key.into()));
        if version >= 1 {
            req.key_type = key_type;
        }
        RequestKind::FindCoordinator(req)
    }

    #[tokio::test]
    async fn single_key_versions_find_this_broker_or_refuse() {
        let t = context().await;
        for v in 0..=3 {
            let ResponseKind::FindCoordinator(r) =
                run(&t.ctx, ApiKey::FindCoordinator, v, single(v, "g", 0)).await
            else {
                panic!()
            };
            assert_eq!((r.error_code, r.node_id.0, r.port), (0, 0, 9092), "v{v}");
            assert_eq!(r.host.as_str(), "127.0.0.1");
            let ResponseKind::FindCoordinator(r) =
                run(&t.ctx, ApiKey::FindCoordinator, v, single(v, "", 0)).await
            else {
                panic!()
            };
            assert_eq!(r.error_code, ResponseError::InvalidGroupId.code(), "v{v}");
        }
        for v in 1..=3 {
            let ResponseKind::FindCoordinator(r) =
                run(&t.ctx, ApiKey::FindCoordinator, v, single(v, "tx", 1)).await
            else {
                panic!()
            };
            assert_eq!(
                r.error_code,
                ResponseError::TransactionalIdAuthorizationFailed.code(),
                "v{v}"
            );
            assert!(r.error_message.is_some());
            let ResponseKind::FindCoordinator(r) =
                run(&t.ctx, ApiKey::FindCoordinator, v, single(v, "x", 7)).await
            else {
                panic!()
            };
            assert_eq!(r.error_code, ResponseError::InvalidRequest.code(), "v{v}");
        }
    }

    #[tokio::test]
    async fn batched_keys_answer_each_key() {
        let t = context().await;
        for v in 4..=6 {
            let keys = ["a", "", "b"].map(|k| StrBytes::from_string(k.into())).to_vec();
            let req = FindCoordinatorRequest::default()
                .with_key_type(0)
                .with_coordinator_keys(keys.clone());
            let ResponseKind::FindCoordinator(r) = run(
                &t.ctx,
                ApiKey::FindCoordinator,
                v,
                RequestKind::FindCoordinator(req),
            )
            .await
            else {
                panic!()
            };
            let codes: Vec<(&str, i16, i32)> = r
                .coordinators
                .iter()
                .map(|c| (c.key.as_str(), c.error_code, c.node_id.0))
                .collect();
            assert_eq!(
                codes,
                vec![
                    ("a", 0, 0),
                    ("", ResponseError::InvalidGroupId.code(), -1),
                    ("b", 0, 0)
                ],
                "v{v}"
            );
            let req = FindCoordinatorRequest::default()
                .with_key_type(1)
                .with_coordinator_keys(keys);
            let ResponseKind::FindCoordinator(r) = run(
                &t.ctx,
                ApiKey::FindCoordinator,
                v,
                RequestKind::FindCoordinator(req),
            )
            .await
            else {
                panic!()
            };
            assert!(r
                .coordinators
                .iter()
                .all(|c| c.error_code == ResponseError::TransactionalIdAuthorizationFailed.code()));
        }
    }
}
