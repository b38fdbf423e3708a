//! The operator's admin HTTP server: `/healthz` (alive) and `/metrics` (Prometheus text).

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use prometheus::{Encoder, Registry, TextEncoder};

/// Builds the admin router over `registry`.
pub fn router(registry: Registry) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics))
        .with_state(registry)
}

async fn metrics(State(registry): State<Registry>) -> impl IntoResponse {
    let mut body = Vec::new();
    match TextEncoder::new().encode(&registry.gather(), &mut body) {
        Ok(()) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)],
            body,
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    async fn get_text(app: Router, path: &str) -> (StatusCode, String) {
        let response = app
            .oneshot(
                axum::http::Request::get(path)
                    .body(axum::body::Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        let status = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn serves_health_and_metrics() {
        let registry = Registry::new();
        let metrics = Metrics::register(&registry).unwrap();
        drop(metrics.start_reconcile());
        assert_eq!(
            get_text(router(registry.clone()), "/healthz").await,
            (StatusCode::OK, "ok\n".into())
        );
        let (status, text) = get_text(router(registry), "/metrics").await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            text.contains("kafka_gateway_operator_reconciles_total 1"),
            "{text}"
        );
        assert!(
            text.contains("kafka_gateway_operator_reconcile_duration_seconds_count 1"),
            "{text}"
        );
    }
}
