//! The Kafka listeners: one accept loop per listener, a shared connection limit, TLS
//! handshakes (bounded in time) on SSL and SASL_SSL listeners, and graceful shutdown.
//!
//! A semaphore permit is taken *before* accepting, so past `max_connections` new clients wait in
//! the kernel backlog instead of being accepted and dropped. Connection tasks are tracked; on
//! shutdown the listener stops, every session finishes its in-flight requests, and whatever is
//! still running after `shutdown_grace` is aborted. All connections share one [`MemoryBudget`]
//! for the request bytes they hold. When `accept` fails for lack of file descriptors (EMFILE,
//! ENFILE) the loop logs an error naming the limit and backs off, doubling up to one second, so
//! it neither spins on the still-pending connection nor exits; open connections keep working.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, error, info, info_span, warn, Instrument};

use crate::handler::{Client, Context};
use crate::sasl::audit::Failure;
use crate::sasl::AuthSession;
use budget::MemoryBudget;

pub mod budget;
pub mod connection;
pub mod fd_limit;
mod session;
#[cfg(test)]
mod session_test;
pub mod tls;
pub mod transport;

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
    /// Longest TLS handshake of a new connection on a TLS listener.
    pub tls_handshake_timeout: Duration,
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

/// One bound Kafka listener and how its connections are secured.
#[derive(Debug)]
pub struct KafkaListener {
    /// The bound socket.
    pub tcp: TcpListener,
    /// The listener name (Metadata answers with this listener's addresses).
    pub name: Arc<str>,
    /// TLS acceptor of SSL and SASL_SSL listeners.
    pub tls: Option<Arc<tls::TlsReloader>>,
    /// Whether clients must authenticate with SASL first.
    pub sasl: bool,
}

/// What every accept loop and connection shares.
struct Shared {
    ctx: Arc<Context>,
    opts: Arc<ServerOptions>,
    budget: Arc<MemoryBudget>,
    limit: Arc<Semaphore>,
    tracker: TaskTracker,
    /// Cancelled when the listeners close: sessions finish their in-flight requests.
    connections: CancellationToken,
    conn_id: AtomicU64,
}

/// Serves Kafka connections on every listener until `shutdown` resolves, then drains.
pub async fn run(
    listeners: Vec<KafkaListener>,
    ctx: Arc<Context>,
    opts: ServerOptions,
    shutdown: impl Future<Output = ()>,
) {
    let budget = MemoryBudget::new(
        opts.max_queued_request_bytes,
        ctx.metrics.queued_request_bytes.clone(),
        ctx.metrics.queued_request_waiters.clone(),
    );
    let shared = Arc::new(Shared {
        limit: Arc::new(Semaphore::new(opts.max_connections)),
        opts: Arc::new(opts),
        ctx,
        budget,
        tracker: TaskTracker::new(),
        connections: CancellationToken::new(),
        conn_id: AtomicU64::new(0),
    });
    let stop = CancellationToken::new();
    let loops = futures::future::join_all(
        listeners
            .into_iter()
            .map(|l| accept_loop(l, Arc::clone(&shared), stop.clone())),
    );
    tokio::join!(
        async {
            shutdown.await;
            stop.cancel();
        },
        loops
    );
    let (tracker, opts) = (&shared.tracker, &shared.opts);
    info!(
        connections = tracker.len(),
        "listeners closed, draining connections"
    );
    shared.connections.cancel();
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

/// Accepts connections on one listener until `stop`.
async fn accept_loop(l: KafkaListener, shared: Arc<Shared>, stop: CancellationToken) {
    let mut accept_backoff = ACCEPT_BACKOFF_MIN;
    loop {
        let permit = tokio::select! {
            () = stop.cancelled() => break,
            p = Arc::clone(&shared.limit).acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let accepted = tokio::select! {
            () = stop.cancelled() => break,
            a = l.tcp.accept() => a,
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
                    () = stop.cancelled() => break,
                    () = tokio::time::sleep(accept_backoff) => {}
                }
                accept_backoff = (accept_backoff * 2).min(ACCEPT_BACKOFF_MAX);
                continue;
            }
        };
        let conn_id = shared.conn_id.fetch_add(1, Ordering::Relaxed) + 1;
        shared.ctx.metrics.connections_total.inc();
        let span = info_span!("connection", %peer, conn_id, listener = &*l.name);
        let (shared2, name, tls, sasl) = (Arc::clone(&shared), Arc::clone(&l.name), l.tls.clone(), l.sasl);
        shared.tracker.spawn(
            async move {
                let shared = shared2;
                shared.ctx.metrics.connections_active.inc();
                let _ = stream.set_nodelay(true);
                let host = peer.ip().to_string();
                match tls {
                    None => {
                        let client = Client::on_listener(host, name, AuthSession::new(sasl, None));
                        session::run(
                            stream,
                            client,
                            Arc::clone(&shared.ctx),
                            Arc::clone(&shared.opts),
                            Arc::clone(&shared.budget),
                            shared.connections.clone(),
                        )
                        .await;
                    }
                    Some(tls) => {
                        if let Some(stream) = handshake(&tls, stream, &name, &host, &shared).await {
                            let principal = tls::principal(stream.get_ref().1);
                            if let Some(p) = &principal {
                                debug!(principal = p.as_str(), "tls client certificate accepted");
                            }
                            let client = Client::on_listener(host, name, AuthSession::new(sasl, principal));
                            session::run(
                                stream,
                                client,
                                Arc::clone(&shared.ctx),
                                Arc::clone(&shared.opts),
                                Arc::clone(&shared.budget),
                                shared.connections.clone(),
                            )
                            .await;
                        }
                    }
                }
                shared.ctx.metrics.connections_active.dec();
                drop(permit);
            }
            .instrument(span),
        );
    }
}

/// The TLS handshake of a new connection, bounded by `tls_handshake_timeout` (a plaintext
/// client fails at its first bytes, a silent one at the timeout). `None` when it failed
/// (counted as an authentication failure) or shutdown came first.
async fn handshake(
    tls: &tls::TlsReloader,
    stream: tokio::net::TcpStream,
    listener: &str,
    peer: &str,
    shared: &Shared,
) -> Option<tokio_rustls::server::TlsStream<tokio::net::TcpStream>> {
    let accept = tokio::time::timeout(shared.opts.tls_handshake_timeout, tls.acceptor().accept(stream));
    let (reason, detail) = tokio::select! {
        () = shared.connections.cancelled() => return None,
        r = accept => match r {
            Ok(Ok(s)) => return Some(s),
            Ok(Err(e)) => ("tls_handshake", e.to_string()),
            Err(_) => ("tls_handshake_timeout", format!("no TLS handshake within {:?}", shared.opts.tls_handshake_timeout)),
        },
    };
    shared.ctx.auth.audit.failure(Failure {
        listener,
        peer,
        mechanism: "TLS",
        principal: "",
        reason,
        detail: &detail,
    });
    None
}
