//! Failure classes of a benchmark run.

use rdkafka::error::KafkaError;

/// Why a benchmark step failed.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// librdkafka refused a configuration or a client could not be created.
    #[error("client setup failed: {0}")]
    Client(#[source] KafkaError),
    /// An admin request (create topic, metadata) failed.
    #[error("admin request failed: {0}")]
    Admin(String),
    /// Messages were not acknowledged by the broker.
    #[error("{failed} of {sent} messages failed delivery (first error: {first_error})")]
    Delivery {
        /// Messages handed to librdkafka.
        sent: u64,
        /// Messages whose delivery report carried an error.
        failed: u64,
        /// The first delivery error seen.
        first_error: String,
    },
    /// The producer could not finish (flush timed out or failed).
    #[error("produce failed: {0}")]
    Produce(String),
    /// The consumer stopped making progress or returned an error.
    #[error("consume failed: {0}")]
    Consume(String),
    /// The gateway process could not be sampled.
    #[error("cannot read cpu time of pid {pid}: {reason}")]
    ProcStat {
        /// Process id that was sampled.
        pid: u32,
        /// What went wrong.
        reason: String,
    },
    /// A results file could not be read or written.
    #[error("results file {path}: {reason}")]
    Results {
        /// The file.
        path: String,
        /// What went wrong.
        reason: String,
    },
}

/// Result alias for the bench tool.
pub type Result<T, E = BenchError> = std::result::Result<T, E>;
