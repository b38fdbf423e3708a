//! The Kafka listener: accept loop with a connection limit and graceful shutdown.
//!
//! A semaphore permit is taken *before* accepting, so past `max_connections` new clients wait in
//! the kernel backlog instead of being accepted and dropped. Connection tasks are tracked; on
//! shutdown the listener stops, every session finishes its in-flight requests, and whatever is
//! still running after `shutdown_grace` is aborted. All connections share one [`MemoryBudget`]
//! for the request bytes they hold. When `accept` fails for lack of file descriptors (EMFILE,
//! ENFILE) the loop logs an error naming the limit and backs off, doubling up to one second, so
//! it neither spins on the still-pending connection nor exits; open connections keep working.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, info_span, warn, Instrument};

use crate::handler::Context;
use budget::MemoryBudget;

pub mod budget;
pub mod connection;
pub mod fd_limit;
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
    /// Request bytes all connections together may hold, read ahead or in flight
    /// (`queued.max.request.bytes`).
    pub max_queued_request_bytes: usize,
    /// Close connections without requests for this long (`connections.max.idle.ms`).
    pub idle_timeout: Duration,
    /// How long shutdown waits for in-flight requests.
    pub shutdown_grace: Duration,
}

const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(50);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// True for accept errors caused by the process (EMFILE) or system (ENFILE) running out of file
/// descriptors.
fn is_fd_exhaustion(e: &std::io::Error) -> bool {
    let errno = e.raw_os_error();
    errno == Some(rustix::io::Errno::MFILE.raw_os_error())
        || errno == Some(rustix::io::Errno::NFILE.raw_os_error())
}

/// Serves Kafka connections on `listener` until `shutdown` resolves, then drains.
pub async fn run(
    listener: TcpListener,
    ctx: Arc<Context>,
    opts: ServerOptions,
    shutdown: impl Future<Output = ()>,
) {
    let opts = Arc::new(opts);
    let budget = MemoryBudget::new(
        opts.max_queued_request_bytes,
        ctx.metrics.queued_request_bytes.clone(),
        ctx.metrics.queued_request_waiters.clone(),
    );
    let limit = Arc::new(Semaphore::new(opts.max_connections));
    let mut accept_backoff = ACCEPT_BACKOFF_MIN;
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
            Ok(a) => {
                accept_backoff = ACCEPT_BACKOFF_MIN;
                a
            }
            Err(e) => {
                // The pending connection stays in the backlog, so retrying at once would spin.
                if is_fd_exhaustion(&e) {
                    error!(
                        error = %e,
                        retry_ms = accept_backoff.as_millis() as u64,
                        "cannot accept Kafka connections: out of file descriptors; raise the \
                         open-file limit (ulimit -n, LimitNOFILE, the container's nofile) or lower \
                         --max-connections"
                    );
                } else {
                    warn!(error = %e, retry_ms = accept_backoff.as_millis() as u64, "accept failed");
                }
                tokio::select! {
                    _ = &mut shutdown => break,
                    () = tokio::time::sleep(accept_backoff) => {}
                }
                accept_backoff = (accept_backoff * 2).min(ACCEPT_BACKOFF_MAX);
                continue;
            }
        };
        conn_id += 1;
        ctx.metrics.connections_total.inc();
        let span = info_span!("connection", %peer, conn_id);
        let (ctx, opts, token) = (Arc::clone(&ctx), Arc::clone(&opts), token.clone());
        let budget = Arc::clone(&budget);
        tracker.spawn(
            async move {
                ctx.metrics.connections_active.inc();
                session::run(stream, Arc::clone(&ctx), opts, budget, token).await;
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
