//! Metrics of the SeaweedMQ write-ahead log (registered on the process registry, per
//! partition): how much it holds, how long its oldest entry has waited for SeaweedMQ's flush,
//! and how many records it published again after the broker lost them.

use std::time::Duration;

use prometheus::{GaugeVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

use crate::storage::TopicPartition;

/// Cheap to clone (the series are shared).
#[derive(Debug, Clone)]
pub struct WalMetrics {
    bytes: IntGaugeVec,
    oldest: GaugeVec,
    replayed: IntCounterVec,
    taking: IntGauge,
}

impl WalMetrics {
    /// Registers the series on `registry`.
    ///
    /// # Errors
    /// When a series of that name is already registered.
    pub fn new(registry: &Registry) -> prometheus::Result<Self> {
        let labels = &["topic", "partition"];
        let bytes = IntGaugeVec::new(
            Opts::new(
                "kafka_gateway_smq_wal_bytes",
                "Bytes the SeaweedMQ write-ahead log holds for a partition (entries not yet flushed by the broker, plus the rest of their segments)",
            ),
            labels,
        )?;
        let oldest = GaugeVec::new(
            Opts::new(
                "kafka_gateway_smq_wal_oldest_unflushed_seconds",
                "How long the partition's oldest write-ahead log entry has waited for the broker's flush (0 when none waits)",
            ),
            labels,
        )?;
        let replayed = IntCounterVec::new(
            Opts::new(
                "kafka_gateway_smq_wal_replayed_records_total",
                "Records published to SeaweedMQ again from the write-ahead log after the broker lost them",
            ),
            labels,
        )?;
        let taking = IntGauge::new(
            "kafka_gateway_smq_wal_answering",
            "1 while new batches go to the SeaweedMQ write-ahead log and acks=all is answered from it (with --seaweedmq-wal auto: while this gateway is its cluster's only member), else 0",
        )?;
        registry.register(Box::new(taking.clone()))?;
        registry.register(Box::new(bytes.clone()))?;
        registry.register(Box::new(oldest.clone()))?;
        registry.register(Box::new(replayed.clone()))?;
        Ok(Self {
            bytes,
            oldest,
            replayed,
            taking,
        })
    }

    pub(super) fn answering(&self, on: bool) {
        self.taking.set(i64::from(on));
    }

    pub(super) fn observe(&self, tp: &TopicPartition, bytes: u64, oldest: Duration) {
        let p = tp.partition.to_string();
        let labels = [tp.topic.as_ref(), p.as_str()];
        self.bytes
            .with_label_values(&labels)
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
        self.oldest.with_label_values(&labels).set(oldest.as_secs_f64());
    }

    pub(super) fn replayed(&self, tp: &TopicPartition, records: u64) {
        let p = tp.partition.to_string();
        self.replayed
            .with_label_values(&[tp.topic.as_ref(), p.as_str()])
            .inc_by(records);
    }
}
