//! Produce pipelining: a connection's next request is handed to storage while the previous
//! one still waits for the backend to accept its batch, and the answers keep request order.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::gated_storage::{gated_context, produce_to_p};
use super::test_support::client;
use super::window::Held;
use crate::records::testing::batch;

#[tokio::test]
async fn a_connection_hands_off_its_next_produce_before_the_previous_is_accepted() {
    let (t, gated) = gated_context().await;
    let ctx = Arc::new(t.ctx);
    let conn = Arc::new(client());
    // A handler takes its connection ticket when first polled. The session polls each request
    // future once before it starts the next (`server::session`), so the test polls them the same
    // way: `first`, then `second`, each once, before anything else.
    let held = Held::untracked();
    let mut first = Box::pin(super::produce::handle(
        &ctx,
        &conn,
        &held,
        9,
        produce_to_p(1, batch(&[b"a", b"b"], 1, -1, -1, -1).freeze()),
    ));
    let mut second = Box::pin(super::produce::handle(
        &ctx,
        &conn,
        &held,
        9,
        produce_to_p(1, batch(&[b"c"], 2, -1, -1, -1).freeze()),
    ));
    assert!(
        futures::poll!(&mut first).is_pending(),
        "the first Produce waits for acceptance"
    );
    assert!(
        futures::poll!(&mut second).is_pending(),
        "the second Produce waits for acceptance"
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while gated.started.load(Ordering::SeqCst) < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the second Produce was not handed to storage while the first waited for acceptance ({} started)",
            gated.started.load(Ordering::SeqCst)
        );
        tokio::select! {
            _ = &mut first => panic!("the first Produce was answered before its append was accepted"),
            _ = &mut second => panic!("the second Produce was answered before its append was accepted"),
            () = tokio::time::sleep(Duration::from_millis(10)) => {}
        }
    }
    gated.gate.add_permits(2);
    let (a, b) = tokio::time::timeout(Duration::from_secs(10), futures::future::join(first, second))
        .await
        .expect("answered once accepted");
    let offset = |r: Option<kafka_protocol::messages::ProduceResponse>| {
        let p = &r.expect("acks=1 answers").responses[0].partition_responses[0];
        assert_eq!(p.error_code, 0);
        p.base_offset
    };
    assert_eq!((offset(a), offset(b)), (0, 2), "request order is offset order");
}
