//! The connection window over a real socket: a Produce waiting for its answer no longer holds
//! its request bytes, so the next request is read and handed to storage meanwhile.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, ProduceResponse, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use super::ServerOptions;
use crate::handler::gated_storage::{gated_context, produce_to_p};
use crate::records::testing::batch;

const VERSION: i16 = 9;

/// A Produce v9 request frame body (without the length prefix), acks=all.
fn produce(correlation_id: i32, records: Bytes) -> Bytes {
    let mut buf = BytesMut::new();
    RequestHeader::default()
        .with_request_api_key(ApiKey::Produce as i16)
        .with_request_api_version(VERSION)
        .with_correlation_id(correlation_id)
        .encode(&mut buf, ApiKey::Produce.request_header_version(VERSION))
        .expect("header encodes");
    produce_to_p(-1, records)
        .encode(&mut buf, VERSION)
        .expect("body encodes");
    buf.freeze()
}

async fn read_response(socket: &mut TcpStream) -> (i32, ProduceResponse) {
    let len = socket.read_u32().await.expect("length") as usize;
    let mut body = vec![0u8; len];
    socket.read_exact(&mut body).await.expect("body");
    let mut body = Bytes::from(body);
    let header = ResponseHeader::decode(&mut body, ApiKey::Produce.response_header_version(VERSION))
        .expect("response header");
    let response = ProduceResponse::decode(&mut body, VERSION).expect("response body");
    assert!(!body.has_remaining(), "nothing after the response");
    (header.correlation_id, response)
}

#[tokio::test]
async fn a_produce_awaiting_its_answer_leaves_the_window_to_the_next_request() {
    let (t, gated) = gated_context().await;
    let first = produce(1, batch(&[b"a", b"b"], 1, -1, -1, -1).freeze());
    let second = produce(2, batch(&[b"c"], 2, -1, -1, -1).freeze());
    // The first request alone fills the window: while it holds its bytes, nothing else is read.
    let opts = Arc::new(ServerOptions {
        max_connections: 4,
        max_frame_bytes: 1 << 20,
        max_in_flight: 16,
        max_in_flight_bytes: first.len(),
        max_queued_request_bytes: 1 << 20,
        idle_timeout: Duration::from_secs(60),
        shutdown_grace: Duration::from_secs(1),
        tls_handshake_timeout: Duration::from_secs(10),
    });
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
    let addr = listener.local_addr().expect("address");
    let ctx = Arc::new(t.ctx);
    let shutdown = CancellationToken::new();
    let server = tokio::spawn({
        let shutdown = shutdown.clone();
        async move {
            let (stream, _) = listener.accept().await.expect("accept");
            let budget = super::budget::MemoryBudget::new(
                opts.max_queued_request_bytes,
                ctx.metrics.queued_request_bytes.clone(),
                ctx.metrics.queued_request_waiters.clone(),
            );
            super::session::run(
                stream,
                crate::handler::Client::new("127.0.0.1"),
                ctx,
                opts,
                budget,
                shutdown,
            )
            .await;
        }
    });
    let mut socket = TcpStream::connect(addr).await.expect("connect");
    let mut frames = BytesMut::new();
    for body in [&first, &second] {
        frames.put_u32(u32::try_from(body.len()).expect("small frame"));
        frames.put_slice(body);
    }
    socket.write_all(&frames).await.expect("send both requests");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while gated.started.load(Ordering::SeqCst) < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the second Produce was not handed to storage while the first awaited its answer ({} started)",
            gated.started.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    gated.gate.add_permits(2);
    let answers = tokio::time::timeout(Duration::from_secs(10), async {
        (read_response(&mut socket).await, read_response(&mut socket).await)
    })
    .await
    .expect("both answered once accepted");
    let offset = |(id, r): (i32, ProduceResponse)| {
        let p = &r.responses[0].partition_responses[0];
        assert_eq!(p.error_code, 0, "request {id}");
        (id, p.base_offset)
    };
    assert_eq!((offset(answers.0), offset(answers.1)), ((1, 0), (2, 2)));
    drop(socket);
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("session ends")
        .expect("session task");
}

/// Sends an ApiVersions v0 request and returns the correlation id and api count of its answer.
async fn api_versions(socket: &mut TcpStream, correlation_id: i32) -> (i32, usize) {
    use kafka_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse};
    let mut body = BytesMut::new();
    RequestHeader::default()
        .with_request_api_key(ApiKey::ApiVersions as i16)
        .with_request_api_version(0)
        .with_correlation_id(correlation_id)
        .encode(&mut body, ApiKey::ApiVersions.request_header_version(0))
        .expect("header encodes");
    ApiVersionsRequest::default()
        .encode(&mut body, 0)
        .expect("body encodes");
    let mut frame = BytesMut::new();
    frame.put_u32(u32::try_from(body.len()).expect("small frame"));
    frame.put_slice(&body);
    socket.write_all(&frame).await.expect("send ApiVersions");
    let len = socket.read_u32().await.expect("length") as usize;
    let mut answer = vec![0u8; len];
    socket.read_exact(&mut answer).await.expect("body");
    let mut answer = Bytes::from(answer);
    let header = ResponseHeader::decode(&mut answer, 0).expect("response header");
    let response = ApiVersionsResponse::decode(&mut answer, 0).expect("response body");
    (header.correlation_id, response.api_keys.len())
}

/// Awaits `fut`, failing the test if it takes more than ten seconds.
async fn timely<T>(what: &str, fut: impl std::future::Future<Output = T>) -> T {
    match tokio::time::timeout(Duration::from_secs(10), fut).await {
        Ok(v) => v,
        Err(_) => panic!("{what} did not happen within 10 s"),
    }
}

#[tokio::test]
async fn a_hostile_frame_closes_only_its_connection() {
    let t = crate::handler::test_support::context().await;
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
    let addr = listener.local_addr().expect("address");
    let opts = ServerOptions {
        max_connections: 4,
        max_frame_bytes: 1 << 20,
        max_in_flight: 16,
        max_in_flight_bytes: 1 << 20,
        max_queued_request_bytes: 1 << 20,
        idle_timeout: Duration::from_secs(60),
        shutdown_grace: Duration::from_secs(1),
        tls_handshake_timeout: Duration::from_secs(10),
    };
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(super::run(vec![plaintext(listener)], Arc::new(t.ctx), opts, {
        let s = shutdown.clone();
        async move { s.cancelled().await }
    }));
    let mut bystander = TcpStream::connect(addr).await.expect("connect bystander");
    assert_eq!(timely("first answer", api_versions(&mut bystander, 1)).await.0, 1);

    // Metadata v0 whose topic array claims 2^31-1 entries: 14 bytes that used to abort the process.
    let mut attacker = TcpStream::connect(addr).await.expect("connect attacker");
    let mut hostile = BytesMut::new();
    hostile.put_u32(14);
    hostile.put_i16(ApiKey::Metadata as i16);
    hostile.put_i16(0);
    hostile.put_i32(9);
    hostile.put_i16(-1);
    hostile.put_i32(i32::MAX);
    attacker.write_all(&hostile).await.expect("send hostile frame");
    let mut rest = Vec::new();
    let read = timely(
        "the attacker's connection closing",
        attacker.read_to_end(&mut rest),
    )
    .await;
    let closed = match read {
        Ok(n) => n == 0,
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
    };
    assert!(
        closed && rest.is_empty(),
        "closed without an answer, got {rest:?}"
    );

    // The open connection and a new one are both still served.
    let answer = timely("an answer after the attack", api_versions(&mut bystander, 2)).await;
    assert_eq!(answer, (2, crate::protocol::versions::SUPPORTED.len()));
    let mut newcomer = TcpStream::connect(addr).await.expect("connect after the attack");
    assert_eq!(
        timely("the newcomer's answer", api_versions(&mut newcomer, 3))
            .await
            .0,
        3
    );

    shutdown.cancel();
    timely("server shutdown", server).await.expect("server task");
}

/// Polls `cond` until it holds, failing the test after ten seconds.
async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what} did not happen within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn many_large_frames_hold_no_more_than_the_budget_and_others_are_served_after() {
    const FRAME: usize = 100_000;
    const BUDGET: usize = 350_000;
    const ATTACKERS: usize = 8;
    let t = crate::handler::test_support::context().await;
    let ctx = Arc::new(t.ctx);
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
    let addr = listener.local_addr().expect("address");
    let opts = ServerOptions {
        max_connections: 32,
        max_frame_bytes: 1 << 20,
        max_in_flight: 16,
        max_in_flight_bytes: 1 << 20,
        max_queued_request_bytes: BUDGET,
        idle_timeout: Duration::from_secs(60),
        shutdown_grace: Duration::from_secs(1),
        tls_handshake_timeout: Duration::from_secs(10),
    };
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(super::run(vec![plaintext(listener)], Arc::clone(&ctx), opts, {
        let s = shutdown.clone();
        async move { s.cancelled().await }
    }));
    let held = || ctx.metrics.queued_request_bytes.get();
    let waiters = || ctx.metrics.queued_request_waiters.get();
    let mut bystander = TcpStream::connect(addr).await.expect("connect bystander");
    assert_eq!(timely("first answer", api_versions(&mut bystander, 1)).await.0, 1);
    eventually("the answered request's bytes released", || held() == 0).await;

    // Each attacker declares a large frame and sends only its first bytes: its reservation is
    // taken before the body is read and kept while the body never completes.
    let mut attackers = Vec::new();
    for _ in 0..ATTACKERS {
        let mut s = TcpStream::connect(addr).await.expect("connect attacker");
        let mut start = BytesMut::new();
        start.put_u32(FRAME as u32);
        start.put_slice(&[0u8; 10]);
        s.write_all(&start).await.expect("send a frame's start");
        attackers.push(s);
    }
    let admitted = BUDGET / FRAME;
    eventually("the budget filling and the other attackers waiting", || {
        let (h, w) = (held(), waiters());
        assert!(h as usize <= BUDGET, "held {h} bytes over the budget of {BUDGET}");
        h as usize == admitted * FRAME && w as usize == ATTACKERS - admitted
    })
    .await;

    // A frame larger than the whole budget (but under the frame limit) is refused outright.
    let mut huge = TcpStream::connect(addr).await.expect("connect");
    huge.write_all(&((BUDGET + 1) as u32).to_be_bytes())
        .await
        .expect("send size");
    let mut rest = Vec::new();
    let read = timely("the over-budget connection closing", huge.read_to_end(&mut rest)).await;
    assert!(
        matches!(read, Ok(0)) || read.is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset),
        "closed without an answer"
    );
    assert_eq!(
        ctx.metrics
            .connection_errors
            .with_label_values(&["frame_over_budget"])
            .get(),
        1
    );

    // The bystander's next request queues behind the attackers' reservations; once they leave,
    // it is served, and everything is given back.
    let pending = tokio::spawn(async move {
        let answer = api_versions(&mut bystander, 2).await;
        (answer, bystander)
    });
    assert!(held() as usize <= BUDGET);
    drop(attackers);
    let (answer, mut bystander) = timely("the bystander's answer once the budget frees", pending)
        .await
        .expect("bystander task");
    assert_eq!(answer, (2, crate::protocol::versions::SUPPORTED.len()));
    assert_eq!(
        timely("a later answer", api_versions(&mut bystander, 3)).await.0,
        3
    );
    eventually("every reservation returned", || held() == 0 && waiters() == 0).await;

    shutdown.cancel();
    timely("server shutdown", server).await.expect("server task");
}

fn plaintext(tcp: TcpListener) -> super::KafkaListener {
    super::KafkaListener {
        tcp,
        name: "PLAINTEXT".into(),
        tls: None,
        sasl: false,
    }
}
