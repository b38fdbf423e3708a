use bytes::BytesMut;
use kafka_protocol::protocol::Encodable;

use super::*;
use crate::handler::test_support;

#[tokio::test]
async fn describes_this_broker_at_every_version() {
    let t = test_support::context().await;
    let ctx = &t.ctx;
    for v in 0..=2 {
        let req = DescribeClusterRequest::default().with_include_fenced_brokers(v >= 2);
        let resp = handle(ctx, "PLAINTEXT", v, req);
        assert_eq!((resp.error_code, resp.error_message.as_ref()), (0, None));
        assert_eq!(resp.cluster_id.as_str(), ctx.broker.cluster_id);
        assert_eq!(resp.controller_id.0, ctx.broker.node_id);
        assert_eq!(resp.endpoint_type, ENDPOINT_BROKER);
        assert_eq!(resp.cluster_authorized_operations, authorized_ops::OMITTED);
        assert_eq!(resp.brokers.len(), 1);
        let b = &resp.brokers[0];
        assert_eq!(
            (b.broker_id.0, b.host.as_str(), b.port),
            (ctx.broker.node_id, ctx.broker.host.as_str(), ctx.broker.port)
        );
        assert!(!b.is_fenced);
        resp.encode(&mut BytesMut::new(), v)
            .unwrap_or_else(|e| panic!("v{v}: {e}"));
    }
}

#[tokio::test]
async fn authorized_operations_and_endpoint_types() {
    let t = test_support::context().await;
    let ctx = &t.ctx;
    let resp = handle(
        ctx,
        "PLAINTEXT",
        2,
        DescribeClusterRequest::default().with_include_cluster_authorized_operations(true),
    );
    let describe_bit = 1 << 8;
    assert_ne!(resp.cluster_authorized_operations & describe_bit, 0);
    assert_eq!(
        resp.cluster_authorized_operations & 1,
        0,
        "UNKNOWN is never an operation"
    );

    let resp = handle(
        ctx,
        "PLAINTEXT",
        1,
        DescribeClusterRequest::default().with_endpoint_type(ENDPOINT_CONTROLLER),
    );
    assert_eq!(resp.error_code, ResponseError::MismatchedEndpointType.code());
    assert!(resp.brokers.is_empty());
    resp.encode(&mut BytesMut::new(), 1).unwrap();
    let resp = handle(
        ctx,
        "PLAINTEXT",
        1,
        DescribeClusterRequest::default().with_endpoint_type(9),
    );
    assert_eq!(resp.error_code, ResponseError::UnsupportedEndpointType.code());
}
