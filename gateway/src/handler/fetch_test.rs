//! Fetch under hostile requests: duplicates answered once, reads bounded by the response limit
//! however many partitions are named, and `max_wait_ms` clamped.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{FetchRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use tokio::sync::watch;

use super::*;
use crate::handler::test_support::{context, TestContext};
use crate::records::testing::batch;
use crate::storage::{
    AppendOutcome, Durability, OffsetAndTimestamp, PendingAppend, Result, Storage, TopicConfig, TopicMeta,
};

/// A backend that counts the record bytes its reads return.
struct CountingReads {
    inner: Arc<dyn Storage>,
    bytes_read: AtomicUsize,
}

#[async_trait]
impl Storage for CountingReads {
    fn backend(&self) -> &'static str {
        "counting"
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
    async fn append(
        &self,
        tp: &TopicPartition,
        batch: Bytes,
        durability: Durability,
    ) -> Result<AppendOutcome> {
        self.inner.append(tp, batch, durability).await
    }
    async fn start_append(&self, tp: &TopicPartition, batch: Bytes) -> Result<PendingAppend> {
        self.inner.start_append(tp, batch).await
    }
    async fn wait_durable(&self, tp: &TopicPartition, end_offset: Offset) -> Result<()> {
        self.inner.wait_durable(tp, end_offset).await
    }
    async fn read(&self, tp: &TopicPartition, offset: Offset, max_bytes: usize) -> Result<ReadOutcome> {
        let outcome = self.inner.read(tp, offset, max_bytes).await?;
        self.bytes_read.fetch_add(outcome.records.len(), Ordering::SeqCst);
        Ok(outcome)
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

/// A context over a counting embedded log with topic `t` of `partitions` partitions, each
/// holding `batches` copies of one batch; returns the batch size too.
async fn counting_context(partitions: i32, batches: usize) -> (TestContext, Arc<CountingReads>, usize) {
    let mut t = context().await;
    let counting = Arc::new(CountingReads {
        inner: Arc::clone(&t.ctx.storage),
        bytes_read: AtomicUsize::new(0),
    });
    t.ctx.storage = counting.clone();
    t.ctx
        .storage
        .create_topic("t", partitions, TopicConfig::default(), false)
        .await
        .expect("topic t");
    let one = batch(&[&[7u8; 1000]], 1, -1, -1, -1).freeze();
    for p in 0..partitions {
        for _ in 0..batches {
            let tp = TopicPartition::new("t", p);
            t.ctx
                .storage
                .append(&tp, one.clone(), Durability::Accepted)
                .await
                .expect("append");
        }
    }
    (t, counting, one.len())
}

fn fetch(max_bytes: i32, partitions: impl IntoIterator<Item = (i32, i64)>) -> FetchRequest {
    FetchRequest::default()
        .with_max_wait_ms(0)
        .with_max_bytes(max_bytes)
        .with_topics(vec![FetchTopic::default()
            .with_topic(TopicName(StrBytes::from_static_str("t")))
            .with_partitions(
                partitions
                    .into_iter()
                    .map(|(p, offset)| {
                        FetchPartition::default()
                            .with_partition(p)
                            .with_fetch_offset(offset)
                            .with_partition_max_bytes(1 << 20)
                    })
                    .collect(),
            )])
}

/// (partition, record bytes, high watermark, error code) of every answered partition.
fn answered(r: &FetchResponse) -> Vec<(i32, usize, i64, i16)> {
    r.responses
        .iter()
        .flat_map(|t| t.partitions.iter())
        .map(|p| {
            (
                p.partition_index,
                p.records.as_ref().map_or(0, |b| b.len()),
                p.high_watermark,
                p.error_code,
            )
        })
        .collect()
}

#[tokio::test]
async fn a_partition_named_many_times_is_read_and_answered_once() {
    let (t, counting, size) = counting_context(1, 4).await;
    // Forty times partition 0: the last occurrence's offset (3) wins, as in Kafka's request map.
    let mut named: Vec<(i32, i64)> = vec![(0, 0); 39];
    named.push((0, 3));
    let r = handle(&t.ctx, 12, fetch(50 << 20, named)).await;
    assert_eq!(answered(&r), vec![(0, size, 4, 0)]);
    assert_eq!(
        counting.bytes_read.load(Ordering::SeqCst),
        size,
        "one read of the one batch after offset 3"
    );
    // The same partition in two topic entries: the second entry disappears.
    let mut req = fetch(50 << 20, [(0, 0)]);
    req.topics.push(req.topics[0].clone());
    let r = handle(&t.ctx, 12, req).await;
    assert_eq!(r.responses.len(), 1);
    assert_eq!(answered(&r), vec![(0, 4 * size, 4, 0)]);
}

#[tokio::test]
async fn many_partitions_read_no_more_than_the_response_limit() {
    let (t, counting, size) = counting_context(20, 3).await;
    let limit = 4 * size;
    let r = handle(&t.ctx, 12, fetch(limit as i32, (0..20).map(|p| (p, 0)))).await;
    let got = answered(&r);
    // Partition 0 fills three batches, partition 1 the last one; the rest are only located.
    assert_eq!(got[0], (0, 3 * size, 3, 0));
    assert_eq!(got[1], (1, size, 3, 0));
    assert!(
        got[2..]
            .iter()
            .all(|&(_, bytes, hw, code)| (bytes, hw, code) == (0, 3, 0)),
        "{got:?}"
    );
    assert_eq!(got.len(), 20);
    let read = counting.bytes_read.load(Ordering::SeqCst);
    assert!(
        read <= limit,
        "read {read} bytes for a {limit}-byte response (all data: {})",
        60 * size
    );
    // A located partition still refuses an offset outside its log.
    let r = handle(&t.ctx, 12, fetch(size as i32, [(0, 0), (1, 99)])).await;
    assert_eq!(answered(&r)[1].3, ResponseError::OffsetOutOfRange.code());
}

#[test]
fn max_wait_is_clamped() {
    assert_eq!(wait_limit(i32::MAX), MAX_WAIT);
    assert_eq!(wait_limit(500), Duration::from_millis(500));
    assert_eq!(wait_limit(-1), Duration::ZERO);
}
