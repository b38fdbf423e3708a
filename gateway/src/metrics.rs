//! Request-path metrics, registered on an explicit registry built in `main`.
//!
//! Label sets are bounded: API names and versions come from the version table, error codes
//! from Kafka's finite set, and per-topic series are capped by `max_topic_labels` (topics past the
//! cap share the `_other` label) so a client creating many topics cannot explode cardinality.

use std::collections::HashSet;

use parking_lot::Mutex;
use prometheus::{HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry};

/// Label used for topics beyond the cap.
pub const OTHER_TOPIC: &str = "_other";

/// Metrics of the Kafka request path.
#[derive(Debug)]
pub struct Metrics {
    /// Requests by API, version and Kafka error code (0 = none, per response top level).
    pub requests: IntCounterVec,
    /// Request latency by API, from decode to encoded response.
    pub request_duration: HistogramVec,
    /// Bytes produced per topic.
    pub bytes_in: IntCounterVec,
    /// Bytes fetched per topic.
    pub bytes_out: IntCounterVec,
    /// Records (batches' record counts) produced per topic.
    pub produce_records: IntCounterVec,
    /// Records fetched (sum of returned batch record counts) per topic.
    pub fetch_records: IntCounterVec,
    /// Connections currently open.
    pub connections_active: IntGauge,
    /// Connections accepted since start.
    pub connections_total: IntCounter,
    /// Connections closed because of a protocol error, by reason.
    pub connection_errors: IntCounterVec,
    /// Request bytes held by queued and in-flight requests of all connections (bounded by
    /// `--max-queued-request-bytes`).
    pub queued_request_bytes: IntGauge,
    /// Connections whose reader waits for room in the request memory budget.
    pub queued_request_waiters: IntGauge,
    topics: Mutex<HashSet<String>>,
    max_topic_labels: usize,
}

impl Metrics {
    /// Creates and registers the metrics.
    ///
    /// # Errors
    /// A prometheus error if a metric of the same name is already registered.
    pub fn new(registry: &Registry, max_topic_labels: usize) -> prometheus::Result<Self> {
        let topic_counter = |name: &str, help: &str| IntCounterVec::new(Opts::new(name, help), &["topic"]);
        let m = Self {
            requests: IntCounterVec::new(
                Opts::new("kafka_gateway_requests_total", "Kafka requests by API, version and error code"),
                &["api", "version", "error_code"],
            )?,
            request_duration: HistogramVec::new(
                HistogramOpts::new("kafka_gateway_request_duration_seconds", "Kafka request latency by API")
                    .buckets(vec![0.0001, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0]),
                &["api"],
            )?,
            bytes_in: topic_counter("kafka_gateway_bytes_in_total", "Record batch bytes produced per topic")?,
            bytes_out: topic_counter("kafka_gateway_bytes_out_total", "Record batch bytes fetched per topic")?,
            produce_records: topic_counter("kafka_gateway_produce_records_total", "Records produced per topic")?,
            fetch_records: topic_counter("kafka_gateway_fetch_records_total", "Records fetched per topic")?,
            connections_active: IntGauge::new("kafka_gateway_connections_active", "Open Kafka connections")?,
            connections_total: IntCounter::new("kafka_gateway_connections_total", "Kafka connections accepted")?,
            connection_errors: IntCounterVec::new(
                Opts::new("kafka_gateway_connection_errors_total", "Connections closed on protocol errors"),
                &["reason"],
            )?,
            queued_request_bytes: IntGauge::new(
                "kafka_gateway_queued_request_bytes",
                "Request bytes held by read-ahead and in-flight requests of all connections",
            )?,
            queued_request_waiters: IntGauge::new(
                "kafka_gateway_queued_request_waiters",
                "Connections not read because the request memory budget is exhausted",
            )?,
            topics: Mutex::new(HashSet::new()),
            max_topic_labels,
        };
        registry.register(Box::new(m.requests.clone()))?;
        registry.register(Box::new(m.request_duration.clone()))?;
        registry.register(Box::new(m.bytes_in.clone()))?;
        registry.register(Box::new(m.bytes_out.clone()))?;
        registry.register(Box::new(m.produce_records.clone()))?;
        registry.register(Box::new(m.fetch_records.clone()))?;
        registry.register(Box::new(m.connections_active.clone()))?;
        registry.register(Box::new(m.connections_total.clone()))?;
        registry.register(Box::new(m.connection_errors.clone()))?;
        registry.register(Box::new(m.queued_request_bytes.clone()))?;
        registry.register(Box::new(m.queued_request_waiters.clone()))?;
        Ok(m)
    }

    /// The label to use for `topic`: the topic itself while under the cap, else [`OTHER_TOPIC`].
    pub fn topic_label<'a>(&self, topic: &'a str) -> &'a str {
        let mut topics = self.topics.lock();
        if topics.contains(topic) {
            return topic;
        }
        if topics.len() < self.max_topic_labels {
            topics.insert(topic.to_owned());
            return topic;
        }
        OTHER_TOPIC
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_labels_are_capped() {
        let m = Metrics::new(&Registry::new(), 2).unwrap();
        assert_eq!(m.topic_label("a"), "a");
        assert_eq!(m.topic_label("b"), "b");
        assert_eq!(m.topic_label("c"), OTHER_TOPIC);
        assert_eq!(m.topic_label("a"), "a");
    }
}
