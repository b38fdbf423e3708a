//! The admin HTTP server: `/metrics`, `/healthz`, `/readyz` on a port separate from Kafka, and
//! [`require_admin`], the guard of every mutating admin route.
//!
//! Read-only routes are open (probes and scrapers need them). A mutating route needs
//! `authorization: Bearer <admin token>` when `--admin-token-file` is set (401 otherwise);
//! without a configured token only loopback callers may mutate (403 otherwise): a laptop gateway
//! stays usable with `curl localhost:9644/...`, and nothing beyond the host can change it.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use prometheus::{Encoder, Registry, TextEncoder};

use crate::auth::Token;

/// Shared state of the admin endpoints.
#[derive(Debug, Clone)]
pub struct AdminState {
    /// Metrics of every layer.
    pub registry: Registry,
    /// True once storage is open and the Kafka listener is bound; false again at shutdown.
    pub ready: Arc<AtomicBool>,
}

/// Builds the admin router.
pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(state)
}

/// Who may call the mutating admin routes.
#[derive(Debug, Clone)]
pub struct AdminAuth {
    /// The admin token; `None`: loopback callers only.
    token: Option<Token>,
}

impl AdminAuth {
    /// Mutations need `token`, or come from loopback when there is none.
    pub fn new(token: Option<Token>) -> Self {
        Self { token }
    }
}

/// Middleware admitting a mutating admin call per [`AdminAuth`] (see the module docs). The
/// caller's address comes from `ConnectInfo<SocketAddr>`; a server without it admits no
/// tokenless call.
pub async fn require_admin(State(auth): State<AdminAuth>, request: Request, next: Next) -> Response {
    match &auth.token {
        Some(token) => {
            let header = request.headers().get(header::AUTHORIZATION).map(|v| v.as_bytes());
            if token.verify_bearer(header) {
                return next.run(request).await;
            }
            tracing::warn!(
                method = %request.method(),
                path = request.uri().path(),
                presented = header.is_some(),
                "admin call refused: missing or wrong admin token"
            );
            (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                "this admin endpoint needs `Authorization: Bearer <admin token>` (--admin-token-file)\n",
            )
                .into_response()
        }
        None => {
            let peer = request.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0);
            if peer.is_some_and(|p| p.ip().is_loopback()) {
                return next.run(request).await;
            }
            tracing::warn!(
                method = %request.method(),
                path = request.uri().path(),
                peer = ?peer,
                "admin call refused: no admin token configured and the caller is not on loopback"
            );
            (
                StatusCode::FORBIDDEN,
                "no --admin-token-file is configured: mutating admin endpoints accept loopback callers only\n",
            )
                .into_response()
        }
    }
}

async fn metrics(State(state): State<AdminState>) -> impl IntoResponse {
    let encoder = TextEncoder::new();
    let mut buf = Vec::new();
    match encoder.encode(&state.registry.gather(), &mut buf) {
        Ok(()) => (StatusCode::OK, [(header::CONTENT_TYPE, encoder.format_type().to_owned())], buf).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

async fn readyz(State(state): State<AdminState>) -> impl IntoResponse {
    if state.ready.load(Ordering::Acquire) {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn endpoints_answer() {
        let ready = Arc::new(AtomicBool::new(false));
        let registry = Registry::new();
        let c = prometheus::IntCounter::new("kafka_gateway_test_total", "t").unwrap();
        registry.register(Box::new(c.clone())).unwrap();
        c.inc();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = router(AdminState { registry, ready: Arc::clone(&ready) });
        tokio::spawn(async move { axum::serve(listener, app).await });
        let get = move |path: &'static str| async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes()).await.unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).await.unwrap();
            out
        };
        assert!(get("/readyz").await.starts_with("HTTP/1.1 503"));
        ready.store(true, Ordering::Release);
        assert!(get("/readyz").await.starts_with("HTTP/1.1 200"));
        assert!(get("/healthz").await.starts_with("HTTP/1.1 200"));
        assert!(get("/metrics").await.contains("kafka_gateway_test_total 1"));
    }
}
