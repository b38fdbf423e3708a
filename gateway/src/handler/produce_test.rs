//! Produce pipelining: a connection's next request is handed to storage while the previous
//! one still waits for the backend to accept its batch, and the answers keep request order.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ProduceRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use tokio::sync::{watch, Semaphore};

use super::test_support::{client, context};
use crate::records::testing::batch;
use crate::storage::{
    AppendOutcome, Durability, Offset, OffsetAndTimestamp, OffsetSpec, PendingAppend, ReadOutcome, Result,
    Storage, TopicConfig, TopicMeta, TopicPartition,
};

/// A backend whose acceptance of each append waits for a permit of `gate`, like a remote
/// backend's round trip. `started` counts appends handed to it.
struct Gated {
    inner: Arc<dyn Storage>,
    gate: Arc<Semaphore>,
    started: AtomicUsize,
}

#[async_trait]
impl Storage for Gated {
    fn backend(&self) -> &'static str {
        "gated"
    }
    async fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        config: TopicConfig,
        v: bool,
    ) -> Result<TopicMeta> {
        self.inner.create_topic(name, partitions, config, v).await
    }
    async fn delete_topic(&self, name: &str) -> Result<TopicMeta> {
        self.inner.delete_topic(name).await
    }
    async fn list_topics(&self) -> Result<Vec<TopicMeta>> {
        self.inner.list_topics().await
    }
    async fn describe_topic(&self, name: &str) -> Result<Option<TopicMeta>> {
        self.inner.describe_topic(name).await
    }
    async fn create_partitions(&self, name: &str, total: i32, v: bool) -> Result<TopicMeta> {
        self.inner.create_partitions(name, total, v).await
    }
    async fn alter_topic_config(&self, name: &str, config: TopicConfig, v: bool) -> Result<()> {
        self.inner.alter_topic_config(name, config, v).await
    }
    /// The whole append waits for the gate (a backend without a separate hand-off).
    async fn append(
        &self,
        tp: &TopicPartition,
        batch: Bytes,
        durability: Durability,
    ) -> Result<AppendOutcome> {
        self.started.fetch_add(1, Ordering::SeqCst);
        let _permit = self.gate.acquire().await.expect("gate open");
        self.inner.append(tp, batch, durability).await
    }
    /// The order is fixed at once; the answer waits for the gate.
    async fn start_append(&self, tp: &TopicPartition, batch: Bytes) -> Result<PendingAppend> {
        self.started.fetch_add(1, Ordering::SeqCst);
        let outcome = self.inner.append(tp, batch, Durability::Accepted).await;
        let gate = Arc::clone(&self.gate);
        Ok(Box::pin(async move {
            let _permit = gate.acquire().await.expect("gate open");
            outcome
        }))
    }
    async fn wait_durable(&self, tp: &TopicPartition, end_offset: Offset) -> Result<()> {
        self.inner.wait_durable(tp, end_offset).await
    }
    async fn read(&self, tp: &TopicPartition, offset: Offset, max_bytes: usize) -> Result<ReadOutcome> {
        self.inner.read(tp, offset, max_bytes).await
    }
    async fn list_offset(&self, tp: &TopicPartition, spec: OffsetSpec) -> Result<Option<OffsetAndTimestamp>> {
        self.inner.list_offset(tp, spec).await
    }
    async fn delete_records(&self, tp: &TopicPartition, offset: Offset) -> Result<Offset> {
        self.inner.delete_records(tp, offset).await
    }
    fn watch_high_watermark(&self, tp: &TopicPartition) -> Result<watch::Receiver<Offset>> {
        self.inner.watch_high_watermark(tp)
    }
    async fn flush(&self) -> Result<()> {
        self.inner.flush().await
    }
}

fn request(records: Bytes) -> ProduceRequest {
    ProduceRequest::default()
        .with_acks(1)
        .with_timeout_ms(1000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_static_str("p")))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(records))])])
}

#[tokio::test]
async fn a_connection_hands_off_its_next_produce_before_the_previous_is_accepted() {
    let mut t = context().await;
    let gated = Arc::new(Gated {
        inner: Arc::clone(&t.ctx.storage),
        gate: Arc::new(Semaphore::new(0)),
        started: AtomicUsize::new(0),
    });
    t.ctx.storage = gated.clone();
    t.ctx
        .storage
        .create_topic("p", 1, TopicConfig::default(), false)
        .await
        .unwrap();
    let ctx = Arc::new(t.ctx);
    let conn = Arc::new(client());
    // A handler takes its connection ticket when first polled. The session polls each request
    // future once before it starts the next (`server::session`), so the test polls them the same
    // way: `first`, then `second`, each once, before anything else.
    let mut first = Box::pin(super::produce::handle(
        &ctx,
        &conn,
        9,
        request(batch(&[b"a", b"b"], 1, -1, -1, -1).freeze()),
    ));
    let mut second = Box::pin(super::produce::handle(
        &ctx,
        &conn,
        9,
        request(batch(&[b"c"], 2, -1, -1, -1).freeze()),
    ));
    assert!(futures::poll!(&mut first).is_pending(), "the first Produce waits for acceptance");
    assert!(futures::poll!(&mut second).is_pending(), "the second Produce waits for acceptance");
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
