//! The Kafka listener: accept loop with a connection limit and graceful shutdown.
//!
//! A semaphore permit is taken *before* accepting, so past `max_connections` new clients wait in
//! the kernel backlog instead of being accepted and dropped. Connection tasks are tracked; on
//! shutdown the listener stops, every session finishes its in-flight requests, and whatever is
//! still running after `shutdown_grace` is aborted.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, info_span, warn, Instrument};

use crate::handler::Context;

pub mod connection;
mod session;
#[cfg(test)]
mod session_test;

/// Limits and timeouts of the listener.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Connections served at once.
    pub max_connections: usize,
    /// Largest request frame accepted (`socket.request.max.bytes`).
    pub max_frame_bytes: usize,
    /// Requests of one connection processed concurrently (responses stay in order).
    pub max_in_flight: usize,
    /// Request bytes one connection may hold in flight (one request always fits).
    pub max_in_flight_bytes: usize,
    /// Close connections without requests for this long (`connections.max.idle.ms`).
    pub idle_timeout: Duration,
    /// How long shutdown waits for in-flight requests.
    pub shutdown_grace: Duration,
}

/// Serves Kafka connections on `listener` until `shutdown` resolves, then drains.
pub async fn run(
    listener: TcpListener,
    ctx: Arc<Context>,
    opts: ServerOptions,
    shutdown: impl Future<Output = ()>,
) {
    let opts = Arc::new(opts);
    let limit = Arc::new(Semaphore::new(opts.max_connections));
    let tracker = TaskTracker::new();
    let token = CancellationToken::new();
    let mut conn_id: u64 = 0;
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            _ = &mut shutdown => break,
            p = Arc::clone(&limit).acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let accepted = tokio::select! {
            _ = &mut shutdown => break,
            a = listener.accept() => a,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Transient (EMFILE, ECONNABORTED): back off briefly instead of spinning.
                warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        conn_id += 1;
        ctx.metrics.connections_total.inc();
        let span = info_span!("connection", %peer, conn_id);
        let (ctx, opts, token) = (Arc::clone(&ctx), Arc::clone(&opts), token.clone());
        tracker.spawn(
            async move {
                ctx.metrics.connections_active.inc();
                session::run(stream, Arc::clone(&ctx), opts, token).await;
                ctx.metrics.connections_active.dec();
                drop(permit);
            }
            .instrument(span),
        );
    }
    drop(listener);
    info!(
        connections = tracker.len(),
        "listener closed, draining connections"
    );
    token.cancel();
    tracker.close();
    if tokio::time::timeout(opts.shutdown_grace, tracker.wait())
        .await
        .is_err()
    {
        warn!(
            remaining = tracker.len(),
            "shutdown grace period over, aborting connections"
        );
    }
}
