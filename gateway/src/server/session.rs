//! One client connection: decode, dispatch with bounded pipelining, answer in request order.
//!
//! A reader task turns the socket into a bounded channel of frames (so reading is never
//! cancelled mid-frame); the session loop decodes each frame, runs up to `max_in_flight`
//! requests holding at most `max_in_flight_bytes` of request frames (always at least one)
//! concurrently in a `FuturesOrdered`, and writes responses in request order. The request count
//! is wide because an acks=all Produce can wait seconds for its storage to become durable while
//! the client keeps pipelining (librdkafka sends up to a million requests per connection): a
//! narrow window would cap such a connection at window/durability-latency requests per second.
//! For the same reason a Produce's bytes leave the byte window once its batches are with storage
//! ([`handler::window`]). Every frame's bytes are also reserved in the gateway-wide
//! [`MemoryBudget`] by the reader, after the size prefix and before the body is allocated, and
//! stay reserved through the read-ahead queue until the request lets go of them; while the
//! budget is exhausted the reader waits and the connection is not read (backpressure). Protocol
//! errors (bad frames, unknown APIs, malformed bodies) are logged once and close only this
//! connection. On shutdown the loop stops taking requests, finishes those in flight, flushes
//! and closes.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures::stream::{FuturesOrdered, StreamExt};
use futures::FutureExt;
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseKind};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, info_span, warn, Instrument};

use super::budget::{MemoryBudget, Reservation};
use super::connection::{FrameError, FrameReader, FrameWriter};
use super::transport::Transport;
use super::ServerOptions;
use crate::handler::window::{Held, Window};
use crate::handler::{self, Client, Context};
use crate::protocol::{self, CodecError, Decoded};
use crate::sasl::audit::Failure;
use crate::sasl::session::Refusal;

/// Why a session ended abnormally.
#[derive(Debug, thiserror::Error)]
enum SessionError {
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error(transparent)]
    Codec(#[from] CodecError),
    #[error(transparent)]
    Handler(#[from] handler::HandlerError),
    #[error("socket write failed: {0}")]
    Write(#[from] std::io::Error),
    #[error("{api:?} refused: {refusal}")]
    Refused { api: ApiKey, refusal: Refusal },
}

impl SessionError {
    fn metric_label(&self) -> &'static str {
        match self {
            Self::Frame(e) => e.metric_label(),
            Self::Codec(e) => e.metric_label(),
            Self::Handler(_) => "not_dispatched",
            Self::Write(_) => "write",
            Self::Refused { refusal, .. } => refusal.metric_label(),
        }
    }
}

/// Serves one connection of `client` until the peer closes, an error, idleness, a failed
/// authentication, or shutdown.
pub(super) async fn run<S: Transport>(
    stream: S,
    client: Client,
    ctx: Arc<Context>,
    opts: Arc<ServerOptions>,
    budget: Arc<MemoryBudget>,
    shutdown: CancellationToken,
) {
    let client = Arc::new(client);
    let (read_half, write_half) = stream.into_halves();
    let (tx, mut rx) = mpsc::channel::<Result<Frame, FrameError>>(READ_AHEAD);
    let reader_stop = shutdown.child_token();
    let reader = {
        let stop = reader_stop.clone();
        let max = opts.max_frame_bytes;
        tokio::spawn(
            async move {
                let mut frames = FrameReader::new(read_half, max);
                loop {
                    let next = tokio::select! {
                        _ = stop.cancelled() => break,
                        next = read_reserved(&mut frames, &budget) => next,
                    };
                    let end = !matches!(next, Ok(Some(_)));
                    let item = match next {
                        Ok(Some(f)) => Ok(f),
                        Ok(None) => break,
                        Err(e) => Err(e),
                    };
                    if tx.send(item).await.is_err() || end {
                        break;
                    }
                }
            }
            .in_current_span(),
        )
    };
    let mut writer = FrameWriter::new(write_half);
    let result = serve(&mut rx, &mut writer, &ctx, &client, &opts, &shutdown).await;
    reader_stop.cancel();
    let _ = reader.await;
    if let Err(e) = result {
        ctx.metrics
            .connection_errors
            .with_label_values(&[e.metric_label()])
            .inc();
        match &e {
            SessionError::Frame(FrameError::Io(_) | FrameError::Truncated) | SessionError::Write(_) => {
                debug!(error = %e, "connection closed")
            }
            // Counted and logged (rate-limited) by the authentication audit.
            SessionError::Refused { .. } => debug!(error = %e, "closing unauthenticated connection"),
            _ => warn!(error = %e, "closing connection on protocol error"),
        }
    }
}

/// Frames read ahead of the in-flight window (their bytes are not counted against it, but are
/// reserved in the global budget).
const READ_AHEAD: usize = 8;

/// A request frame and its bytes' reservation in the global budget.
type Frame = (Bytes, Reservation);

/// Reads the next frame, reserving its size in `budget` before its body is allocated or read.
async fn read_reserved<R: tokio::io::AsyncRead + Unpin>(
    frames: &mut FrameReader<R>,
    budget: &Arc<MemoryBudget>,
) -> Result<Option<Frame>, FrameError> {
    let Some(size) = frames.read_size().await? else {
        return Ok(None);
    };
    let reservation = budget.reserve(size).await.ok_or(FrameError::OverBudget {
        size,
        budget: budget.limit(),
    })?;
    let body = frames.read_body(size).await?;
    Ok(Some((body, reservation)))
}

type Pending =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<Option<BytesMut>, SessionError>> + Send>>;

/// True while another request may start: under both bounds, and always when nothing runs.
fn window_open(requests: usize, bytes: usize, opts: &ServerOptions) -> bool {
    requests == 0 || (requests < opts.max_in_flight && bytes < opts.max_in_flight_bytes)
}

async fn serve<W: tokio::io::AsyncWrite + Unpin>(
    rx: &mut mpsc::Receiver<Result<Frame, FrameError>>,
    writer: &mut FrameWriter<W>,
    ctx: &Arc<Context>,
    client: &Arc<Client>,
    opts: &ServerOptions,
    shutdown: &CancellationToken,
) -> Result<(), SessionError> {
    let mut in_flight: FuturesOrdered<Pending> = FuturesOrdered::new();
    let window = Window::new();
    let mut reading = true;
    let mut last_activity = Instant::now();
    loop {
        if !reading && in_flight.is_empty() {
            writer.flush().await?;
            return Ok(());
        }
        let idle_deadline = last_activity + opts.idle_timeout;
        // KIP-368: a session not renewed in time ends with its connection.
        let expiry = client.auth.expires().map(Instant::from_std);
        tokio::select! {
            biased;
            Some(done) = in_flight.next(), if !in_flight.is_empty() => {
                if let Some(frame) = done? {
                    writer.write_frame(&frame).await?;
                }
                // Answers already complete share the write; then everything written goes out,
                // so a pipelining client never waits on an answer held behind a slower request
                // (an acks=all Produce or a long-polling Fetch).
                while let Some(Some(done)) = in_flight.next().now_or_never() {
                    if let Some(frame) = done? {
                        writer.write_frame(&frame).await?;
                    }
                }
                writer.flush().await?;
                last_activity = Instant::now();
                // A failed authentication is answered, then the connection closes (as Kafka).
                if client.auth.failed() {
                    debug!("closing the connection after a failed authentication");
                    return Ok(());
                }
            }
            _ = shutdown.cancelled(), if reading => {
                debug!("shutdown: finishing in-flight requests");
                reading = false;
            }
            // A Produce awaiting its answer may release its bytes before it completes.
            () = window.released(), if reading && !window_open(in_flight.len(), window.held(), opts) => {}
            frame = rx.recv(), if reading && window_open(in_flight.len(), window.held(), opts) => {
                match frame {
                    None => reading = false,
                    Some(frame) => {
                        last_activity = Instant::now();
                        let (frame, reservation) = frame?;
                        let held = window.hold(frame.len(), reservation);
                        let request = start_request(frame, Arc::clone(ctx), Arc::clone(client), held)?;
                        // Polled (biased, first branch) before the next frame is read, so each
                        // Produce takes its connection ticket in request order.
                        in_flight.push_back(request);
                    }
                }
            }
            _ = tokio::time::sleep_until(expiry.unwrap_or(idle_deadline)), if reading && in_flight.is_empty() && expiry.is_some() => {
                info!(principal = client.auth.principal(), "closing connection: SASL session expired without re-authentication");
                reading = false;
            }
            _ = tokio::time::sleep_until(idle_deadline), if reading && in_flight.is_empty() => {
                info!(idle_ms = opts.idle_timeout.as_millis() as u64, "closing idle connection");
                reading = false;
            }
        }
    }
}

/// Decodes a frame and returns the future producing its encoded response frame. The future
/// owns `held`, the frame's bytes in the connection's window, so they are released at the
/// latest when it completes.
fn start_request(
    frame: Bytes,
    ctx: Arc<Context>,
    client: Arc<Client>,
    held: Held,
) -> Result<Pending, SessionError> {
    let started = Instant::now();
    match protocol::decode_request(frame)? {
        Decoded::ApiVersionsUnsupported { correlation_id } => {
            debug!(
                correlation_id,
                "api versions at unsupported version: answering v0"
            );
            let frame = protocol::encode_api_versions_unsupported(correlation_id)?;
            drop(held);
            Ok(Box::pin(async move { Ok(Some(frame)) }))
        }
        Decoded::Request { header, api, body } => {
            if let Err(refusal) = client.auth.admits(api, started.into_std()) {
                ctx.auth.audit.failure(Failure {
                    listener: &client.listener,
                    peer: &client.host,
                    mechanism: "none",
                    principal: &client.auth.principal(),
                    reason: refusal.metric_label(),
                    detail: &format!("{api:?} sent before SASL authentication completed"),
                });
                return Err(SessionError::Refused { api, refusal });
            }
            let span = info_span!(
                "request",
                api = ?api,
                version = header.request_api_version,
                correlation_id = header.correlation_id,
                client_id = header.client_id.as_deref().unwrap_or(""),
            );
            Ok(Box::pin(
                async move {
                    let reply = handler::dispatch(&ctx, &header, &client, &held, body).await?;
                    drop(held);
                    record(&ctx, api, &header, reply.as_ref(), started);
                    match reply {
                        None => Ok(None),
                        Some(body) => Ok(Some(protocol::encode_response(
                            api,
                            header.request_api_version,
                            header.correlation_id,
                            &body,
                        )?)),
                    }
                }
                .instrument(span),
            ))
        }
    }
}

fn record(ctx: &Context, api: ApiKey, header: &RequestHeader, body: Option<&ResponseKind>, started: Instant) {
    let name = api_name(api);
    ctx.metrics
        .request_duration
        .with_label_values(&[name])
        .observe(started.elapsed().as_secs_f64());
    let version = header.request_api_version.to_string();
    let code = body.map_or(0, protocol::first_error_code).to_string();
    ctx.metrics
        .requests
        .with_label_values(&[name, version.as_str(), code.as_str()])
        .inc();
}

/// A stable snake_case-free label for an API (its Rust variant name).
fn api_name(api: ApiKey) -> &'static str {
    crate::protocol::versions::SUPPORTED
        .iter()
        .find(|a| a.key == api)
        .map_or("unknown", |a| a.name)
}
