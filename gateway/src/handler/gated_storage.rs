//! A storage wrapper whose appends are answered only when a test lets them: a remote backend's
//! round trip made controllable, for tests of what the layers above do meanwhile.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ProduceRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use tokio::sync::{watch, Semaphore};

use super::test_support::{context, TestContext};
use crate::storage::{
    AppendOutcome, Durability, Offset, OffsetAndTimestamp, OffsetSpec, PendingAppend, ReadOutcome, Result,
    Storage, TopicConfig, TopicMeta, TopicPartition,
};

/// A backend whose acceptance of each append waits for a permit of `gate`, like a remote
/// backend's round trip. `started` counts appends handed to it.
pub(crate) struct Gated {
    inner: Arc<dyn Storage>,
    /// One permit answers one append.
    pub(crate) gate: Arc<Semaphore>,
    /// Appends handed to this backend so far.
    pub(crate) started: AtomicUsize,
}

impl Gated {
    /// Wraps `inner` with a closed gate.
    pub(crate) fn around(inner: Arc<dyn Storage>) -> Arc<Self> {
        Arc::new(Self {
            inner,
            gate: Arc::new(Semaphore::new(0)),
            started: AtomicUsize::new(0),
        })
    }
}

/// A handler context over a gated embedded log with a one-partition topic `p`.
pub(crate) async fn gated_context() -> (TestContext, Arc<Gated>) {
    let mut t = context().await;
    let gated = Gated::around(Arc::clone(&t.ctx.storage));
    t.ctx.storage = gated.clone();
    t.ctx
        .storage
        .create_topic("p", 1, TopicConfig::default(), false)
        .await
        .expect("topic p");
    (t, gated)
}

/// A Produce of `records` to partition 0 of `p`.
pub(crate) fn produce_to_p(acks: i16, records: Bytes) -> ProduceRequest {
    ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(30_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_static_str("p")))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(records))])])
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
