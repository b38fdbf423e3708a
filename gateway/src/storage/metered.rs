//! [`Metered`]: wraps any [`Storage`] with per-method metrics and a tracing span.
//!
//! Series (registered on the `Registry` given to [`Metered::new`], never a global one):
//! - `kafka_gateway_storage_requests_total{backend, method}`
//! - `kafka_gateway_storage_errors_total{backend, method, error}` (`error` from
//!   [`StorageError::metric_label`])
//! - `kafka_gateway_storage_duration_seconds{backend, method}` (histogram)
//! - `kafka_gateway_partition_high_watermark{topic, partition}` and
//!   `kafka_gateway_partition_log_start_offset{topic, partition}`, for at most
//!   `max_partition_series` partitions (later ones are not exported, keeping cardinality bounded).

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use bytes::Bytes;
use parking_lot::Mutex;
use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};
use tokio::sync::watch;
use tracing::Instrument;

use super::{
    AppendOutcome, Durability, Offset, OffsetAndTimestamp, OffsetSpec, PendingAppend, ReadOutcome, Result,
    Storage, StorageError, TopicConfig, TopicMeta, TopicPartition,
};
use crate::records::BatchHeader;

/// Default cap on exported per-partition series.
pub const DEFAULT_MAX_PARTITION_SERIES: usize = 1000;

const METHODS: [&str; 14] = [
    "create_topic",
    "delete_topic",
    "list_topics",
    "describe_topic",
    "lookup_topic",
    "lookup_topic_id",
    "create_partitions",
    "alter_topic_config",
    "append",
    "read",
    "list_offset",
    "delete_records",
    "flush",
    "wait_durable",
];

#[derive(Debug, Clone, Copy)]
enum Method {
    CreateTopic,
    DeleteTopic,
    ListTopics,
    DescribeTopic,
    LookupTopic,
    LookupTopicId,
    CreatePartitions,
    AlterTopicConfig,
    Append,
    Read,
    ListOffset,
    DeleteRecords,
    Flush,
    WaitDurable,
}

#[derive(Debug)]
struct Metrics {
    backend: &'static str,
    /// Per-method children, indexed by `Method as usize` (resolved once, not per call).
    calls: Vec<(IntCounter, Histogram)>,
    errors: IntCounterVec,
    high_watermark: IntGaugeVec,
    log_start: IntGaugeVec,
    partitions: Mutex<HashMap<TopicPartition, (IntGauge, IntGauge)>>,
    max_partition_series: usize,
}

impl Metrics {
    fn partition(&self, tp: &TopicPartition) -> Option<(IntGauge, IntGauge)> {
        let mut map = self.partitions.lock();
        if let Some(g) = map.get(tp) {
            return Some(g.clone());
        }
        if map.len() >= self.max_partition_series {
            return None;
        }
        let p = tp.partition.to_string();
        let labels = [tp.topic.as_ref(), p.as_str()];
        let g = (
            self.high_watermark.with_label_values(&labels),
            self.log_start.with_label_values(&labels),
        );
        map.insert(tp.clone(), g.clone());
        Some(g)
    }

    fn set_offsets(&self, tp: &TopicPartition, high_watermark: Option<Offset>, log_start: Offset) {
        if let Some((hw, ls)) = self.partition(tp) {
            if let Some(v) = high_watermark {
                if v > hw.get() {
                    hw.set(v);
                }
            }
            ls.set(log_start);
        }
    }

    /// Counts a call of `method`; returns its start time for [`Metrics::end`].
    fn begin(&self, method: Method) -> Instant {
        self.calls[method as usize].0.inc();
        Instant::now()
    }

    /// Records the duration of a call begun at `start`, and its error if it failed.
    fn end(&self, method: Method, start: Instant, error: Option<&StorageError>) {
        self.calls[method as usize].1.observe(start.elapsed().as_secs_f64());
        if let Some(e) = error {
            self.errors
                .with_label_values(&[self.backend, METHODS[method as usize], e.metric_label()])
                .inc();
        }
    }

    fn forget_topic(&self, topic: &str) {
        self.partitions.lock().retain(|tp, _| {
            let keep = tp.topic.as_ref() != topic;
            if !keep {
                let p = tp.partition.to_string();
                let _ = self.high_watermark.remove_label_values(&[topic, p.as_str()]);
                let _ = self.log_start.remove_label_values(&[topic, p.as_str()]);
            }
            keep
        });
    }
}

/// A [`Storage`] that records metrics for every call of the wrapped backend.
#[derive(Debug)]
pub struct Metered<S> {
    inner: S,
    /// Shared with the completions of started appends, which outlive the call.
    metrics: Arc<Metrics>,
}

impl<S: Storage> Metered<S> {
    /// Wraps `inner`, registering its metrics on `registry` with the default partition series cap.
    ///
    /// # Errors
    /// A [`prometheus::Error`] when the metrics are already registered on `registry`.
    pub fn new(inner: S, registry: &Registry) -> Result<Self, prometheus::Error> {
        Self::with_partition_series_limit(inner, registry, DEFAULT_MAX_PARTITION_SERIES)
    }

    /// Wraps `inner`, exporting offset gauges for at most `max_partition_series` partitions.
    ///
    /// # Errors
    /// A [`prometheus::Error`] when the metrics are already registered on `registry`.
    pub fn with_partition_series_limit(
        inner: S,
        registry: &Registry,
        max_partition_series: usize,
    ) -> Result<Self, prometheus::Error> {
        let requests = IntCounterVec::new(
            Opts::new(
                "kafka_gateway_storage_requests_total",
                "Storage calls by backend and method",
            ),
            &["backend", "method"],
        )?;
        let errors = IntCounterVec::new(
            Opts::new(
                "kafka_gateway_storage_errors_total",
                "Failed storage calls by backend, method and error",
            ),
            &["backend", "method", "error"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new("kafka_gateway_storage_duration_seconds", "Storage call duration")
                .buckets(prometheus::exponential_buckets(0.000_05, 2.5, 14)?),
            &["backend", "method"],
        )?;
        let high_watermark = IntGaugeVec::new(
            Opts::new(
                "kafka_gateway_partition_high_watermark",
                "High watermark of a partition",
            ),
            &["topic", "partition"],
        )?;
        let log_start = IntGaugeVec::new(
            Opts::new(
                "kafka_gateway_partition_log_start_offset",
                "Log start offset of a partition",
            ),
            &["topic", "partition"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(errors.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(high_watermark.clone()))?;
        registry.register(Box::new(log_start.clone()))?;
        let backend = inner.backend();
        let calls = METHODS
            .iter()
            .map(|m| {
                (
                    requests.with_label_values(&[backend, m]),
                    duration.with_label_values(&[backend, m]),
                )
            })
            .collect();
        let metrics = Arc::new(Metrics {
            backend,
            calls,
            errors,
            high_watermark,
            log_start,
            partitions: Mutex::new(HashMap::new()),
            max_partition_series,
        });
        Ok(Self { inner, metrics })
    }

    /// The wrapped backend.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    async fn observe<T>(&self, method: Method, fut: impl Future<Output = Result<T>>) -> Result<T> {
        let name = METHODS[method as usize];
        let start = self.metrics.begin(method);
        let span = tracing::debug_span!("storage", backend = self.metrics.backend, method = name);
        let result = fut.instrument(span).await;
        self.metrics.end(method, start, result.as_ref().err());
        result
    }
}

#[async_trait]
impl<S: Storage> Storage for Metered<S> {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }

    async fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        config: TopicConfig,
        validate_only: bool,
    ) -> Result<TopicMeta> {
        self.observe(
            Method::CreateTopic,
            self.inner.create_topic(name, partitions, config, validate_only),
        )
        .await
    }

    async fn delete_topic(&self, name: &str) -> Result<TopicMeta> {
        let r = self
            .observe(Method::DeleteTopic, self.inner.delete_topic(name))
            .await;
        if r.is_ok() {
            self.metrics.forget_topic(name);
        }
        r
    }

    async fn list_topics(&self) -> Result<Vec<TopicMeta>> {
        self.observe(Method::ListTopics, self.inner.list_topics()).await
    }

    async fn describe_topic(&self, name: &str) -> Result<Option<TopicMeta>> {
        self.observe(Method::DescribeTopic, self.inner.describe_topic(name))
            .await
    }

    async fn lookup_topic(&self, name: &str) -> Result<Option<TopicMeta>> {
        self.observe(Method::LookupTopic, self.inner.lookup_topic(name))
            .await
    }

    async fn lookup_topic_id(&self, id: uuid::Uuid) -> Result<Option<TopicMeta>> {
        self.observe(Method::LookupTopicId, self.inner.lookup_topic_id(id))
            .await
    }

    async fn create_partitions(&self, name: &str, total: i32, validate_only: bool) -> Result<TopicMeta> {
        self.observe(
            Method::CreatePartitions,
            self.inner.create_partitions(name, total, validate_only),
        )
        .await
    }

    async fn alter_topic_config(&self, name: &str, config: TopicConfig, validate_only: bool) -> Result<()> {
        self.observe(
            Method::AlterTopicConfig,
            self.inner.alter_topic_config(name, config, validate_only),
        )
        .await
    }

    async fn append(
        &self,
        tp: &TopicPartition,
        batch: Bytes,
        durability: Durability,
    ) -> Result<AppendOutcome> {
        let count = BatchHeader::parse(&batch).map(|h| h.offset_count()).unwrap_or(0);
        let r = self
            .observe(Method::Append, self.inner.append(tp, batch, durability))
            .await;
        if let Ok(o) = &r {
            self.metrics
                .set_offsets(tp, Some(o.base_offset + count), o.log_start_offset);
        }
        r
    }

    /// Counted as an `append`; its duration runs until the started append completes.
    async fn start_append(&self, tp: &TopicPartition, batch: Bytes) -> Result<PendingAppend> {
        let count = BatchHeader::parse(&batch).map(|h| h.offset_count()).unwrap_or(0);
        let start = self.metrics.begin(Method::Append);
        let span = tracing::debug_span!("storage", backend = self.metrics.backend, method = "append");
        let pending = match self.inner.start_append(tp, batch).instrument(span).await {
            Ok(p) => p,
            Err(e) => {
                self.metrics.end(Method::Append, start, Some(&e));
                return Err(e);
            }
        };
        let metrics = Arc::clone(&self.metrics);
        let tp = tp.clone();
        Ok(Box::pin(async move {
            let result = pending.await;
            metrics.end(Method::Append, start, result.as_ref().err());
            if let Ok(o) = &result {
                metrics.set_offsets(&tp, Some(o.base_offset + count), o.log_start_offset);
            }
            result
        }))
    }

    async fn wait_durable(&self, tp: &TopicPartition, end_offset: Offset) -> Result<()> {
        self.observe(Method::WaitDurable, self.inner.wait_durable(tp, end_offset))
            .await
    }

    async fn read(&self, tp: &TopicPartition, offset: Offset, max_bytes: usize) -> Result<ReadOutcome> {
        let r = self
            .observe(Method::Read, self.inner.read(tp, offset, max_bytes))
            .await;
        if let Ok(o) = &r {
            self.metrics
                .set_offsets(tp, Some(o.high_watermark), o.log_start_offset);
        }
        r
    }

    async fn list_offset(&self, tp: &TopicPartition, spec: OffsetSpec) -> Result<Option<OffsetAndTimestamp>> {
        self.observe(Method::ListOffset, self.inner.list_offset(tp, spec))
            .await
    }

    async fn delete_records(&self, tp: &TopicPartition, offset: Offset) -> Result<Offset> {
        let r = self
            .observe(Method::DeleteRecords, self.inner.delete_records(tp, offset))
            .await;
        if let Ok(log_start) = &r {
            self.metrics.set_offsets(tp, None, *log_start);
        }
        r
    }

    fn watch_high_watermark(&self, tp: &TopicPartition) -> Result<watch::Receiver<Offset>> {
        self.inner.watch_high_watermark(tp)
    }

    async fn flush(&self) -> Result<()> {
        self.observe(Method::Flush, self.inner.flush()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::testing::batch;
    use crate::storage::local::{LocalOptions, LocalStorage};

    fn value(registry: &Registry, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        registry
            .gather()
            .into_iter()
            .filter(|f| f.name() == name)
            .flat_map(|f| f.get_metric().to_vec())
            .find_map(|m| {
                let all = labels
                    .iter()
                    .all(|(k, v)| m.get_label().iter().any(|l| l.name() == *k && l.value() == *v));
                all.then(|| {
                    // Exactly one of the two is set for a counter or gauge family.
                    m.get_counter().get_value() + m.get_gauge().get_value()
                })
            })
    }

    #[tokio::test]
    async fn counts_calls_errors_and_offsets() {
        let dir = tempfile::tempdir().unwrap();
        let local = LocalStorage::open(LocalOptions::new(dir.path())).await.unwrap();
        let registry = Registry::new();
        let s = Metered::with_partition_series_limit(local, &registry, 1).unwrap();
        s.create_topic("m", 2, TopicConfig::default(), false)
            .await
            .unwrap();
        let tp0 = TopicPartition::new("m", 0);
        s.append(
            &tp0,
            batch(&[b"a", b"b"], 1, -1, -1, -1).freeze(),
            Durability::Durable,
        )
        .await
        .unwrap();
        s.append(
            &TopicPartition::new("m", 1),
            batch(&[b"a"], 1, -1, -1, -1).freeze(),
            Durability::Durable,
        )
        .await
        .unwrap();
        let err = s.read(&TopicPartition::new("nope", 0), 0, 10).await;
        assert!(err.is_err());
        let calls = [("backend", "local"), ("method", "append")];
        assert_eq!(
            value(&registry, "kafka_gateway_storage_requests_total", &calls),
            Some(2.0)
        );
        let errs = [("method", "read"), ("error", "unknown_topic_or_partition")];
        assert_eq!(
            value(&registry, "kafka_gateway_storage_errors_total", &errs),
            Some(1.0)
        );
        let hw = [("topic", "m"), ("partition", "0")];
        assert_eq!(
            value(&registry, "kafka_gateway_partition_high_watermark", &hw),
            Some(2.0)
        );
        let capped = [("topic", "m"), ("partition", "1")];
        assert_eq!(
            value(&registry, "kafka_gateway_partition_high_watermark", &capped),
            None,
            "series cap"
        );
        s.delete_topic("m").await.unwrap();
        assert_eq!(
            value(&registry, "kafka_gateway_partition_high_watermark", &hw),
            None
        );
    }
}
