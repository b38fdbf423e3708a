//! DescribeCluster: the live members (the same list as Metadata), the cluster id, and a live
//! listed member as the controller (this node when listed, as in Metadata).
//!
//! Members that stopped answering are dropped from the list rather than reported fenced, so
//! `include_fenced_brokers` (v2) changes nothing.

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::{authorized_ops, Context};

/// `EndpointType.BROKER`: the endpoints this server answers for.
const ENDPOINT_BROKER: i8 = 1;
/// `EndpointType.CONTROLLER`.
const ENDPOINT_CONTROLLER: i8 = 2;

/// Answers with the brokers' addresses on `listener`, the one the client connected to.
pub(super) fn handle(
    ctx: &Context,
    listener: &str,
    version: i16,
    req: DescribeClusterRequest,
) -> DescribeClusterResponse {
    let resp = DescribeClusterResponse::default()
        .with_error_message(None)
        .with_endpoint_type(ENDPOINT_BROKER);
    // v0 has no endpoint type: the request defaults to brokers.
    if version >= 1 && req.endpoint_type != ENDPOINT_BROKER {
        let (error, message) = if req.endpoint_type == ENDPOINT_CONTROLLER {
            (
                ResponseError::MismatchedEndpointType,
                "this is a broker endpoint; the gateway has no separate controller endpoints".to_string(),
            )
        } else {
            (
                ResponseError::UnsupportedEndpointType,
                format!("unknown endpoint type {}", req.endpoint_type),
            )
        };
        return resp
            .with_error_code(error.code())
            .with_error_message(Some(StrBytes::from_string(message)));
    }
    let ops = authorized_ops::cluster(req.include_cluster_authorized_operations);
    let members = ctx.brokers_on(listener);
    let controller = ctx.controller_id(&members);
    let brokers = members
        .into_iter()
        .map(|b| {
            DescribeClusterBroker::default()
                .with_broker_id(BrokerId(b.node_id))
                .with_host(StrBytes::from_string(b.host))
                .with_port(b.port)
                .with_rack(b.rack.map(StrBytes::from_string))
        })
        .collect();
    resp.with_cluster_id(StrBytes::from_string(ctx.cluster_id()))
        .with_controller_id(BrokerId(controller))
        .with_cluster_authorized_operations(ops)
        .with_brokers(brokers)
}

#[cfg(test)]
#[path = "describe_cluster_test.rs"]
mod tests;
