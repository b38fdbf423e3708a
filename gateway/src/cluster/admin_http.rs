//! Cluster admin endpoints for the admin HTTP port, to be merged into the admin router:
//! - `GET /cluster`: this node's view (members, leader, term, commit and applied index);
//! - `POST /cluster/members`: add a member (JSON body [`AddMember`]); learner, then voter;
//! - `DELETE /cluster/members/{id}`: remove a member.
//!
//! Membership changes are forwarded to the leader, so any member can be asked. They are guarded
//! by [`crate::admin::require_admin`] (admin token, or loopback when none is configured); the
//! status is open.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::Router;
use serde::Deserialize;

use super::{ClusterError, ClusterNode, Coordinator, NodeId};
use crate::admin::{require_admin, AdminAuth};

/// Body of `POST /cluster/members`.
#[derive(Debug, Clone, Deserialize)]
pub struct AddMember {
    /// Id of the new member.
    pub node_id: NodeId,
    /// Its addresses and rack.
    #[serde(flatten)]
    pub node: ClusterNode,
}

/// The cluster admin routes over `coordinator`; the mutating ones admit callers per `auth`.
pub fn router(coordinator: Coordinator, auth: AdminAuth) -> Router {
    let mutating = Router::new()
        .route("/cluster/members", post(add_member))
        .route("/cluster/members/{id}", delete(remove_member))
        .route_layer(axum::middleware::from_fn_with_state(auth, require_admin));
    Router::new()
        .route("/cluster", get(status))
        .merge(mutating)
        .with_state(coordinator)
}

fn json(status: StatusCode, value: &impl serde::Serialize) -> Response {
    match serde_json::to_vec_pretty(value) {
        Ok(body) => (status, [(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

fn error(e: &ClusterError) -> Response {
    let status = match e {
        ClusterError::NoLeader | ClusterError::NotLeader { .. } | ClusterError::Rpc(_) => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        ClusterError::Membership(_) | ClusterError::Rejected(_) | ClusterError::Config(_) => {
            StatusCode::CONFLICT
        }
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    json(
        status,
        &serde_json::json!({ "error": e.to_string(), "kind": e.kind() }),
    )
}

async fn status(State(c): State<Coordinator>) -> Response {
    json(StatusCode::OK, &c.status())
}

async fn add_member(State(c): State<Coordinator>, body: Bytes) -> Response {
    let req: AddMember = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("invalid member: {e}\n")).into_response(),
    };
    match c.add_member(req.node_id, req.node).await {
        Ok(()) => json(StatusCode::OK, &c.status()),
        Err(e) => error(&e),
    }
}

async fn remove_member(State(c): State<Coordinator>, Path(id): Path<NodeId>) -> Response {
    match c.remove_member(id).await {
        Ok(()) => json(StatusCode::OK, &c.status()),
        Err(e) => error(&e),
    }
}
