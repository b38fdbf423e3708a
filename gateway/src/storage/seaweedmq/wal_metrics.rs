//! Metrics of the SeaweedMQ write-ahead log (registered on the process registry, per
//! partition): how much it holds, how long its oldest entry has waited for SeaweedMQ's flush,
//! and how many records it published again after the broker lost them; and of its replication
//! (§3.4): pushes to peers that failed, the copies this gateway holds for others, and the
//! checkpoints it set for them while the broker was down.

use std::time::Duration;

use prometheus::{GaugeVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

use crate::storage::TopicPartition;

/// Cheap to clone (the series are shared).
#[derive(Debug, Clone)]
pub struct WalMetrics {
    bytes: IntGaugeVec,
    oldest: GaugeVec,
    replayed: IntCounterVec,
    taking: IntGauge,
    push_failures: IntCounterVec,
    copies: IntGauge,
    holds: IntCounter,
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
        let push_failures = IntCounterVec::new(
            Opts::new(
                "kafka_gateway_smq_wal_push_failures_total",
                "Pushes of write-ahead-log entries to a peer gateway that failed (reason: error for an unanswered or failed call, conflict when the peer holds other records of this gateway at those offsets); while fewer than a majority hold an entry, acks=all waits for SeaweedMQ's flush",
            ),
            &["peer", "reason"],
        )?;
        let copies = IntGauge::new(
            "kafka_gateway_smq_wal_copies_bytes",
            "Bytes of other gateways' write-ahead-log entries this gateway holds until SeaweedMQ has flushed them",
        )?;
        let holds = IntCounter::new(
            "kafka_gateway_smq_wal_checkpoint_holds_total",
            "Times this gateway set a partition's SeaweedMQ checkpoint to the broker's flushed end while the broker was down, for copies of another gateway's records",
        )?;
        registry.register(Box::new(push_failures.clone()))?;
        registry.register(Box::new(copies.clone()))?;
        registry.register(Box::new(holds.clone()))?;
        registry.register(Box::new(taking.clone()))?;
        registry.register(Box::new(bytes.clone()))?;
        registry.register(Box::new(oldest.clone()))?;
        registry.register(Box::new(replayed.clone()))?;
        Ok(Self {
            bytes,
            oldest,
            replayed,
            taking,
            push_failures,
            copies,
            holds,
        })
    }

    pub(super) fn push_failed(&self, peer: u64, reason: &'static str) {
        self.push_failures
            .with_label_values(&[peer.to_string().as_str(), reason])
            .inc();
    }

    pub(super) fn copies_bytes(&self, bytes: u64) {
        self.copies.set(i64::try_from(bytes).unwrap_or(i64::MAX));
    }

    pub(super) fn checkpoint_held(&self) {
        self.holds.inc();
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
