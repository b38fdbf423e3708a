//! The embedded durable log: Kafka-style segment files on the local file system.
//!
//! Each partition is a directory of segments (raw v2 batches, named by 20-digit base offset)
//! with sparse offset and time indexes (`segment`, `index`); appends take a short
//! per-partition lock and never hold it across an fsync (`partition`); acks=all appends share
//! fsyncs by group commit (`flush`); opening a partition validates the active segment and
//! truncates a torn tail (`recovery`); timestamp lookups resolve to a record inside the
//! matching batch (`timestamp`); a background task deletes old segments
//! (`retention`); topic metadata persists as JSON files (`meta`).
//!
//! Start it with [`LocalStorage::open`]; it implements [`Storage`](crate::storage::Storage).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use tokio_util::sync::{CancellationToken, DropGuard};
use tracing::info;

use super::{Offset, Result, StorageError, TopicConfig, TopicMeta, TopicPartition};

mod flush;
mod index;
mod meta;
mod partition;
mod recovery;
mod retention;
mod segment;
mod storage_impl;
mod timestamp;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod fault_tests;
pub mod wal;

pub use crate::storage::{validate_topic_name, MAX_TOPIC_NAME_LEN};
use partition::Partition;
pub use wal::WriteAheadLog;

/// Largest partition count accepted for one topic (each partition is a directory and open
/// files; this bounds what one request can make the gateway create).
pub const MAX_PARTITIONS: i32 = 10_000;

/// When appended data is forced to stable storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncMode {
    /// acks=all appends return only after an `fdatasync` covering them (shared by concurrent
    /// appends: group commit). Other appends are synced by a background flush every second.
    Always,
    /// Everything is synced by a background flush at this interval; acks=all appends return
    /// after the write, like Kafka's default (durability from replication, not fsync).
    Interval(Duration),
}

/// Options of [`LocalStorage::open`].
#[derive(Debug, Clone)]
pub struct LocalOptions {
    /// Root directory of topic metadata (`topics/`) and partition data (`logs/`).
    pub data_dir: PathBuf,
    /// When data is fsynced.
    pub fsync: FsyncMode,
    /// How often the retention task runs.
    pub retention_check_interval: Duration,
}

/// Bytes of batches between two offset index entries (Kafka's `index.interval.bytes`).
pub const INDEX_INTERVAL_BYTES: u64 = 4096;

/// Background flush period under [`FsyncMode::Always`] (for acks<all writes).
const ALWAYS_BACKGROUND_FLUSH: Duration = Duration::from_secs(1);

impl LocalOptions {
    /// Defaults for `data_dir`: fsync always, retention checked every 5 minutes (Kafka's
    /// `log.retention.check.interval.ms`).
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            fsync: FsyncMode::Always,
            retention_check_interval: Duration::from_secs(300),
        }
    }
}

/// One topic in memory.
#[derive(Debug)]
pub(crate) struct TopicState {
    /// Metadata as persisted.
    pub(crate) meta: RwLock<TopicMeta>,
    /// Partitions by index.
    pub(crate) partitions: RwLock<Vec<Arc<Partition>>>,
}

/// State shared by the storage handle and its background tasks (which hold it weakly).
#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) options: LocalOptions,
    pub(crate) topics: RwLock<BTreeMap<Arc<str>, Arc<TopicState>>>,
    /// Serializes topic creation, deletion and changes (each persists a metadata file).
    pub(crate) admin: tokio::sync::Mutex<()>,
}

impl Inner {
    /// Every partition of every topic.
    pub(crate) fn all_partitions(&self) -> Vec<Arc<Partition>> {
        let topics = self.topics.read();
        topics
            .values()
            .flat_map(|t| t.partitions.read().clone())
            .collect()
    }

    /// Every topic's config with its partitions.
    pub(crate) fn partitions_with_config(&self) -> Vec<(TopicConfig, Vec<Arc<Partition>>)> {
        let topics = self.topics.read();
        topics
            .values()
            .map(|t| (t.meta.read().config.clone(), t.partitions.read().clone()))
            .collect()
    }

    /// The topic and partition for `tp`.
    pub(crate) fn partition(&self, tp: &TopicPartition) -> Result<(Arc<TopicState>, Arc<Partition>)> {
        let unknown = || StorageError::UnknownTopicOrPartition(tp.to_string());
        let topic = self.topics.read().get(&tp.topic).cloned().ok_or_else(unknown)?;
        let partition = usize::try_from(tp.partition)
            .ok()
            .and_then(|i| topic.partitions.read().get(i).cloned())
            .ok_or_else(unknown)?;
        Ok((topic, partition))
    }

    /// Opens (creating when missing) partition `index` of a topic. Blocking.
    pub(crate) fn open_partition(&self, meta: &TopicMeta, index: i32) -> std::io::Result<Partition> {
        let dir = meta::partition_dir(&self.options.data_dir, meta.id, index);
        let interval = INDEX_INTERVAL_BYTES;
        let recovered = recovery::open_partition(&dir, interval)?;
        Ok(Partition::new(
            TopicPartition::new(Arc::clone(&meta.name), index),
            dir,
            recovered,
            interval,
        ))
    }
}

/// The embedded durable log backend. Dropping it stops its background tasks.
#[derive(Debug)]
pub struct LocalStorage {
    inner: Arc<Inner>,
    _stop: DropGuard,
}

impl LocalStorage {
    /// Opens the log under `options.data_dir` (created if missing): loads topic metadata,
    /// recovers every partition (truncating torn tails, rebuilding indexes, replaying producer
    /// state), then starts the periodic flush and retention tasks on the current tokio runtime.
    ///
    /// # Errors
    /// [`StorageError::Io`] when the directory cannot be read or written or metadata is
    /// corrupt; [`StorageError::InvalidConfig`] for a zero interval.
    pub async fn open(options: LocalOptions) -> Result<Self> {
        Self::open_with_cancel(options, &CancellationToken::new()).await
    }

    /// Like [`LocalStorage::open`]; the background tasks also stop when `cancel` fires.
    ///
    /// # Errors
    /// As [`LocalStorage::open`].
    pub async fn open_with_cancel(options: LocalOptions, cancel: &CancellationToken) -> Result<Self> {
        if options.retention_check_interval.is_zero()
            || matches!(options.fsync, FsyncMode::Interval(d) if d.is_zero())
        {
            return Err(StorageError::InvalidConfig(
                "local storage intervals must be positive".into(),
            ));
        }
        let cancel = cancel.child_token();
        let inner = Arc::new(Inner {
            options,
            topics: RwLock::new(BTreeMap::new()),
            admin: tokio::sync::Mutex::new(()),
        });
        let loader = Arc::clone(&inner);
        let topics = tokio::task::spawn_blocking(move || -> std::io::Result<usize> {
            let metas = meta::load_topics(&loader.options.data_dir)?;
            let n = metas.len();
            for m in metas {
                let partitions = (0..m.partitions)
                    .map(|i| loader.open_partition(&m, i).map(Arc::new))
                    .collect::<std::io::Result<Vec<_>>>()?;
                let state = TopicState {
                    meta: RwLock::new(m.clone()),
                    partitions: RwLock::new(partitions),
                };
                loader.topics.write().insert(Arc::clone(&m.name), Arc::new(state));
            }
            Ok(n)
        })
        .await
        .map_err(|e| StorageError::Io(std::io::Error::other(e)))??;
        let period = match inner.options.fsync {
            FsyncMode::Always => ALWAYS_BACKGROUND_FLUSH,
            FsyncMode::Interval(d) => d,
        };
        tokio::spawn(flush::run_periodic_flush(
            Arc::downgrade(&inner),
            period,
            cancel.clone(),
        ));
        let retention = inner.options.retention_check_interval;
        tokio::spawn(retention::run_retention(
            Arc::downgrade(&inner),
            retention,
            cancel.clone(),
        ));
        info!(data_dir = %inner.options.data_dir.display(), topics, "local storage opened");
        Ok(Self {
            inner,
            _stop: cancel.drop_guard(),
        })
    }

    /// Runs one retention pass now (the background task does this periodically); returns the
    /// number of segments deleted.
    pub async fn enforce_retention(&self) -> Result<usize> {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || retention::retention_pass(&inner))
            .await
            .map_err(|e| StorageError::Io(std::io::Error::other(e)))
    }

    /// Current `(log start, high watermark)` of a partition.
    ///
    /// # Errors
    /// [`StorageError::UnknownTopicOrPartition`].
    pub fn offsets(&self, tp: &TopicPartition) -> Result<(Offset, Offset)> {
        Ok(self.inner.partition(tp)?.1.offsets())
    }
}
