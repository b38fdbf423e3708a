use bytes::BytesMut;
use kafka_protocol::messages::TransactionalId;
use kafka_protocol::protocol::{Encodable, StrBytes};

use super::*;
use crate::handler::test_support;

fn idempotent() -> InitProducerIdRequest {
    InitProducerIdRequest::default()
        .with_transactional_id(None)
        .with_transaction_timeout_ms(60_000)
}

fn bump(producer_id: i64, epoch: i16) -> InitProducerIdRequest {
    idempotent()
        .with_producer_id(ProducerId(producer_id))
        .with_producer_epoch(epoch)
}

#[tokio::test]
async fn allocates_distinct_ids_at_epoch_zero() {
    let t = test_support::context().await;
    let ctx = &t.ctx;
    let mut ids = Vec::new();
    for v in 0..=5 {
        let resp = handle(ctx, v, idempotent()).await;
        assert_eq!((resp.error_code, resp.producer_epoch), (0, 0), "v{v}: {resp:?}");
        assert!(resp.producer_id.0 >= 0);
        ids.push(resp.producer_id.0);
        resp.encode(&mut BytesMut::new(), v)
            .unwrap_or_else(|e| panic!("v{v}: {e}"));
    }
    let mut unique = ids.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), ids.len(), "{ids:?}");
}

#[tokio::test]
async fn bumps_the_epoch_of_a_known_producer_and_rotates_when_exhausted() {
    let t = test_support::context().await;
    let ctx = &t.ctx;
    let first = handle(ctx, 4, idempotent()).await;
    let resp = handle(ctx, 4, bump(first.producer_id.0, 0)).await;
    assert_eq!(
        (resp.error_code, resp.producer_id, resp.producer_epoch),
        (0, first.producer_id, 1)
    );

    let resp = handle(ctx, 4, bump(first.producer_id.0, LAST_USABLE_EPOCH)).await;
    assert_eq!((resp.error_code, resp.producer_epoch), (0, 0));
    assert_ne!(resp.producer_id, first.producer_id);
}

#[tokio::test]
async fn refuses_transactions_and_malformed_requests() {
    let t = test_support::context().await;
    let ctx = &t.ctx;
    let transactional =
        idempotent().with_transactional_id(Some(TransactionalId(StrBytes::from_static_str("txn-1"))));
    let empty = idempotent().with_transactional_id(Some(TransactionalId(StrBytes::from_static_str(""))));
    let cases = [
        (transactional, ResponseError::TransactionalIdAuthorizationFailed),
        (empty, ResponseError::InvalidRequest),
        (bump(7, NO_EPOCH), ResponseError::InvalidRequest),
        (bump(NO_PRODUCER_ID, 3), ResponseError::InvalidRequest),
        (bump(-5, -5), ResponseError::InvalidRequest),
    ];
    for (req, error) in cases {
        let resp = handle(ctx, 5, req).await;
        assert_eq!(resp.error_code, error.code(), "{resp:?}");
        assert_eq!(
            (resp.producer_id.0, resp.producer_epoch),
            (NO_PRODUCER_ID, NO_EPOCH)
        );
        resp.encode(&mut BytesMut::new(), 5).unwrap();
    }
}
