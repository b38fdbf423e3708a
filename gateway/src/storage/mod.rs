//! The storage contract: one Kafka-shaped async trait every backend implements.
//!
//! Handlers only ever see [`Storage`]; no file-system, tonic or SeaweedMQ type appears in a
//! signature here. Domain types ([`TopicPartition`], [`Offset`], [`TopicConfig`], ...) are defined
//! once in this module. Each backend lives in its own submodule and passes the one conformance
//! suite in [`conformance`].
//!
//! Record batches cross this boundary as raw `Bytes` in Kafka's v2 batch format: produce stores
//! them as received (with the header rewritten by the backend under its partition lock) and fetch
//! returns stored bytes, so nothing is re-encoded on the data path.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use kafka_protocol::ResponseError;
use tokio::sync::watch;

pub mod config;
pub(crate) mod config_keys;
#[cfg(any(test, feature = "test-util"))]
pub mod conformance;
pub mod local;
pub mod metered;
pub mod producer_state;
pub mod seaweedmq;

pub use config::{CleanupPolicy, CompressionType, TimestampType, TopicConfig, ValueFormat};

/// A Kafka offset: the position of a record in a partition.
pub type Offset = i64;

/// A topic name plus a partition index.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    /// Topic name (validated by Kafka's naming rules before it reaches storage).
    pub topic: Arc<str>,
    /// Zero-based partition index.
    pub partition: i32,
}

impl TopicPartition {
    /// Builds a topic-partition.
    pub fn new(topic: impl Into<Arc<str>>, partition: i32) -> Self {
        Self { topic: topic.into(), partition }
    }
}

impl std::fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}

/// Everything the gateway knows about a topic.
#[derive(Debug, Clone, PartialEq)]
pub struct TopicMeta {
    /// Topic name.
    pub name: Arc<str>,
    /// Stable topic id (KIP-516), generated at creation and persisted.
    pub id: uuid::Uuid,
    /// Number of partitions.
    pub partitions: i32,
    /// Topic-level configuration overrides merged over defaults.
    pub config: TopicConfig,
}

/// How durable an append must be before it returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Return once the backend accepted the bytes (acks=0 and acks=1).
    Accepted,
    /// Return only once the bytes are durable by the backend's rule (acks=all).
    Durable,
}

/// A started append ([`Storage::start_append`]): resolves once the backend accepted the batch.
pub type PendingAppend = std::pin::Pin<Box<dyn std::future::Future<Output = Result<AppendOutcome>> + Send>>;

/// The result of appending one record batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendOutcome {
    /// Offset assigned to the first record of the batch. For a duplicate idempotent batch this is
    /// the offset the original append received.
    pub base_offset: Offset,
    /// Broker timestamp in ms when the topic uses LogAppendTime, otherwise -1.
    pub log_append_time_ms: i64,
    /// First offset still readable in the partition after the append.
    pub log_start_offset: Offset,
    /// True when this batch was recognised as a retry of an already stored batch.
    pub duplicate: bool,
}

/// Stored record batches returned by a read.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReadOutcome {
    /// Whole v2 record batches, concatenated, exactly as stored. Empty when there is nothing at or
    /// after the requested offset. At least one whole batch is returned if one exists, even when
    /// it is larger than the requested byte limit (KIP-74).
    pub records: Bytes,
    /// Offset the next appended record will get (the high watermark: everything below is
    /// readable).
    pub high_watermark: Offset,
    /// First offset still readable.
    pub log_start_offset: Offset,
}

/// Which offset `list_offset` looks up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetSpec {
    /// The log start offset.
    Earliest,
    /// The high watermark.
    Latest,
    /// The first record whose timestamp is at or after this time (ms).
    Timestamp(i64),
    /// The offset and time of the first record holding the largest timestamp.
    MaxTimestamp,
}

/// An offset plus the timestamp it was found for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OffsetAndTimestamp {
    /// The offset found.
    pub offset: Offset,
    /// The timestamp found, or -1 where the lookup is not by time.
    pub timestamp: i64,
}

/// Failures of the storage layer, named after failure classes.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The topic or partition does not exist.
    #[error("unknown topic or partition {0}")]
    UnknownTopicOrPartition(String),
    /// The topic already exists.
    #[error("topic {0} already exists")]
    TopicAlreadyExists(String),
    /// The topic name breaks Kafka's naming rules.
    #[error("{0}")]
    InvalidTopic(String),
    /// The requested offset lies outside `[log_start, high_watermark]`.
    #[error("offset {offset} out of range [{log_start}, {high_watermark}]")]
    OffsetOutOfRange {
        /// Requested offset.
        offset: Offset,
        /// Current log start.
        log_start: Offset,
        /// Current high watermark.
        high_watermark: Offset,
    },
    /// The batch failed validation (length, magic or CRC).
    #[error("corrupt record batch: {0}")]
    CorruptBatch(String),
    /// The batch exceeds the topic's `max.message.bytes`.
    #[error("record batch of {size} bytes exceeds max.message.bytes {max}")]
    BatchTooLarge {
        /// Size of the batch.
        size: usize,
        /// The configured limit.
        max: usize,
    },
    /// An invalid configuration value or request argument.
    #[error("{0}")]
    InvalidConfig(String),
    /// Invalid partition count for create or create-partitions.
    #[error("{0}")]
    InvalidPartitions(String),
    /// Idempotent producer: sequence gap.
    #[error("out of order sequence for producer {producer_id}: expected {expected}, got {got}")]
    OutOfOrderSequence {
        /// Producer id.
        producer_id: i64,
        /// Next expected sequence.
        expected: i32,
        /// Sequence received.
        got: i32,
    },
    /// Idempotent producer: the epoch is older than the one already seen.
    #[error("producer {producer_id} epoch {epoch} is fenced by epoch {current}")]
    ProducerFenced {
        /// Producer id.
        producer_id: i64,
        /// Epoch received.
        epoch: i16,
        /// Current epoch.
        current: i16,
    },
    /// The backend is unavailable or failed an I/O operation.
    #[error("storage i/o failed: {0}")]
    Io(#[from] std::io::Error),
    /// The backend refused an operation it cannot do safely.
    #[error("{0}")]
    Unsupported(String),
    /// This gateway does not lead the partition (in a cluster, one gateway writes each
    /// partition); the client refreshes its metadata and retries.
    #[error("{0}")]
    NotLeader(String),
}

impl StorageError {
    /// The Kafka error code this failure is reported with.
    pub fn response_error(&self) -> ResponseError {
        match self {
            Self::UnknownTopicOrPartition(_) => ResponseError::UnknownTopicOrPartition,
            Self::TopicAlreadyExists(_) => ResponseError::TopicAlreadyExists,
            Self::InvalidTopic(_) => ResponseError::InvalidTopicException,
            Self::OffsetOutOfRange { .. } => ResponseError::OffsetOutOfRange,
            Self::CorruptBatch(_) => ResponseError::CorruptMessage,
            Self::BatchTooLarge { .. } => ResponseError::MessageTooLarge,
            Self::InvalidConfig(_) => ResponseError::InvalidConfig,
            Self::InvalidPartitions(_) => ResponseError::InvalidPartitions,
            Self::OutOfOrderSequence { .. } => ResponseError::OutOfOrderSequenceNumber,
            Self::ProducerFenced { .. } => ResponseError::InvalidProducerEpoch,
            Self::Io(_) => ResponseError::KafkaStorageError,
            Self::Unsupported(_) => ResponseError::InvalidRequest,
            Self::NotLeader(_) => ResponseError::NotLeaderOrFollower,
        }
    }

    /// A bounded label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::UnknownTopicOrPartition(_) => "unknown_topic_or_partition",
            Self::TopicAlreadyExists(_) => "topic_already_exists",
            Self::InvalidTopic(_) => "invalid_topic",
            Self::OffsetOutOfRange { .. } => "offset_out_of_range",
            Self::CorruptBatch(_) => "corrupt_batch",
            Self::BatchTooLarge { .. } => "batch_too_large",
            Self::InvalidConfig(_) => "invalid_config",
            Self::InvalidPartitions(_) => "invalid_partitions",
            Self::OutOfOrderSequence { .. } => "out_of_order_sequence",
            Self::ProducerFenced { .. } => "producer_fenced",
            Self::Io(_) => "io",
            Self::Unsupported(_) => "unsupported",
            Self::NotLeader(_) => "not_leader",
        }
    }
}

/// Longest topic name Kafka accepts.
pub const MAX_TOPIC_NAME_LEN: usize = 249;

/// Checks a topic name against Kafka's rules: 1 to 249 characters of `[a-zA-Z0-9._-]`, and not
/// `.` or `..`. Every backend calls it before creating a topic.
///
/// # Errors
/// [`StorageError::InvalidTopic`] explaining which rule is broken.
pub fn validate_topic_name(name: &str) -> Result<()> {
    let invalid = |why: String| Err(StorageError::InvalidTopic(format!("invalid topic name {name:?}: {why}")));
    if name.is_empty() {
        return invalid("it is empty".into());
    }
    if name == "." || name == ".." {
        return invalid("\".\" and \"..\" are not allowed".into());
    }
    if name.len() > MAX_TOPIC_NAME_LEN {
        return invalid(format!("it is longer than {MAX_TOPIC_NAME_LEN} characters"));
    }
    if let Some(c) = name.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))) {
        return invalid(format!("it contains {c:?}; legal characters are ASCII alphanumerics, '.', '_' and '-'"));
    }
    Ok(())
}

/// Result alias of the storage layer.
pub type Result<T, E = StorageError> = std::result::Result<T, E>;

/// The Kafka-shaped storage contract.
///
/// Invariants every backend keeps:
/// - offsets in a partition are dense and increase by the record count of each appended batch;
/// - `append` is atomic per batch: its records get contiguous offsets, and an idempotent retry of
///   one of the last five batches of a producer returns the original offsets without storing
///   anything;
/// - once `append` returned, a `read` at or below the returned offsets sees the batch;
/// - `watch_high_watermark` receivers observe every high-watermark advance (coalesced).
#[async_trait]
pub trait Storage: Send + Sync + 'static {
    /// A short backend name for metrics and logs (`local`, `seaweedmq`).
    fn backend(&self) -> &'static str;

    /// Creates a topic. With `validate_only` nothing is created, but every check runs.
    async fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        config: TopicConfig,
        validate_only: bool,
    ) -> Result<TopicMeta>;

    /// Deletes a topic and all of its data.
    async fn delete_topic(&self, name: &str) -> Result<TopicMeta>;

    /// Lists all topics.
    async fn list_topics(&self) -> Result<Vec<TopicMeta>>;

    /// Describes one topic, or `None` if it does not exist.
    async fn describe_topic(&self, name: &str) -> Result<Option<TopicMeta>>;

    /// Describes a topic for the data path (Produce, Fetch, OffsetCommit). A backend whose
    /// lookups cost round trips may answer from a cache a few seconds old, so a topic created or
    /// deleted through another gateway shows up here with that delay; admin APIs use
    /// [`Storage::describe_topic`].
    async fn lookup_topic(&self, name: &str) -> Result<Option<TopicMeta>> {
        self.describe_topic(name).await
    }

    /// The topic with this id, for the data path (requests naming topics by id), with the same
    /// freshness as [`Storage::lookup_topic`]. Default: a search of [`Storage::list_topics`].
    async fn lookup_topic_id(&self, id: uuid::Uuid) -> Result<Option<TopicMeta>> {
        Ok(self.list_topics().await?.into_iter().find(|t| t.id == id))
    }

    /// Grows a topic to `total` partitions (never shrinks).
    async fn create_partitions(&self, name: &str, total: i32, validate_only: bool) -> Result<TopicMeta>;

    /// Replaces a topic's configuration (validated by the caller through [`TopicConfig`]).
    async fn alter_topic_config(&self, name: &str, config: TopicConfig, validate_only: bool) -> Result<()>;

    /// Appends one v2 record batch (already validated: length, magic, CRC). The backend stores
    /// it with the assigned base offset (and, for LogAppendTime topics, the timestamp and CRC)
    /// rewritten, applies idempotent-producer checks and returns the assigned offsets. The batch
    /// is a view of the received request; `records::stored_header` rewrites only its header, so
    /// the records are never copied.
    async fn append(&self, tp: &TopicPartition, batch: Bytes, durability: Durability) -> Result<AppendOutcome>;

    /// Starts an [`append`](Storage::append) with [`Durability::Accepted`] and returns once the
    /// batch's place in the partition is fixed: a batch started later on the same partition gets
    /// higher offsets. The returned future yields the outcome. Produce starts its appends while
    /// it holds its connection's turn and awaits them after, so a backend whose acceptance costs
    /// a round trip (SeaweedMQ's broker ack) pipelines a connection's requests instead of paying
    /// one round trip per request. Default: the whole append, then a ready future.
    async fn start_append(&self, tp: &TopicPartition, batch: Bytes) -> Result<PendingAppend> {
        let outcome = self.append(tp, batch, Durability::Accepted).await?;
        Ok(Box::pin(std::future::ready(Ok(outcome))))
    }

    /// Waits until every record of `tp` below `end_offset` is durable by the backend's rule
    /// (what [`Durability::Durable`] waits for). Produce starts its appends
    /// ([`Storage::start_append`]) while it holds its connection's turn (so appends keep request
    /// order), then waits here for acks=all outside the turn (so pipelined requests share one
    /// flush).
    async fn wait_durable(&self, tp: &TopicPartition, end_offset: Offset) -> Result<()>;

    /// Reads whole stored batches starting at the batch containing `offset`, up to `max_bytes`
    /// (at least one batch if any exists at or after `offset`).
    async fn read(&self, tp: &TopicPartition, offset: Offset, max_bytes: usize) -> Result<ReadOutcome>;

    /// Looks up an offset by spec. `None` when a timestamp lookup finds no record at or after it.
    async fn list_offset(&self, tp: &TopicPartition, spec: OffsetSpec) -> Result<Option<OffsetAndTimestamp>>;

    /// Deletes records before `offset` (`-1` = the high watermark); returns the new log start.
    async fn delete_records(&self, tp: &TopicPartition, offset: Offset) -> Result<Offset>;

    /// A receiver of the partition's high watermark, for long-poll fetches.
    fn watch_high_watermark(&self, tp: &TopicPartition) -> Result<watch::Receiver<Offset>>;

    /// Flushes everything to durable storage (graceful shutdown).
    async fn flush(&self) -> Result<()>;
}

#[async_trait]
impl<T: Storage + ?Sized> Storage for Arc<T> {
    fn backend(&self) -> &'static str {
        (**self).backend()
    }
    async fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        config: TopicConfig,
        validate_only: bool,
    ) -> Result<TopicMeta> {
        (**self).create_topic(name, partitions, config, validate_only).await
    }
    async fn delete_topic(&self, name: &str) -> Result<TopicMeta> {
        (**self).delete_topic(name).await
    }
    async fn list_topics(&self) -> Result<Vec<TopicMeta>> {
        (**self).list_topics().await
    }
    async fn describe_topic(&self, name: &str) -> Result<Option<TopicMeta>> {
        (**self).describe_topic(name).await
    }
    async fn lookup_topic(&self, name: &str) -> Result<Option<TopicMeta>> {
        (**self).lookup_topic(name).await
    }
    async fn lookup_topic_id(&self, id: uuid::Uuid) -> Result<Option<TopicMeta>> {
        (**self).lookup_topic_id(id).await
    }
    async fn create_partitions(&self, name: &str, total: i32, validate_only: bool) -> Result<TopicMeta> {
        (**self).create_partitions(name, total, validate_only).await
    }
    async fn alter_topic_config(&self, name: &str, config: TopicConfig, validate_only: bool) -> Result<()> {
        (**self).alter_topic_config(name, config, validate_only).await
    }
    async fn append(&self, tp: &TopicPartition, batch: Bytes, durability: Durability) -> Result<AppendOutcome> {
        (**self).append(tp, batch, durability).await
    }
    async fn start_append(&self, tp: &TopicPartition, batch: Bytes) -> Result<PendingAppend> {
        (**self).start_append(tp, batch).await
    }
    async fn wait_durable(&self, tp: &TopicPartition, end_offset: Offset) -> Result<()> {
        (**self).wait_durable(tp, end_offset).await
    }
    async fn read(&self, tp: &TopicPartition, offset: Offset, max_bytes: usize) -> Result<ReadOutcome> {
        (**self).read(tp, offset, max_bytes).await
    }
    async fn list_offset(&self, tp: &TopicPartition, spec: OffsetSpec) -> Result<Option<OffsetAndTimestamp>> {
        (**self).list_offset(tp, spec).await
    }
    async fn delete_records(&self, tp: &TopicPartition, offset: Offset) -> Result<Offset> {
        (**self).delete_records(tp, offset).await
    }
    fn watch_high_watermark(&self, tp: &TopicPartition) -> Result<watch::Receiver<Offset>> {
        (**self).watch_high_watermark(tp)
    }
    async fn flush(&self) -> Result<()> {
        (**self).flush().await
    }
}
