//! A write-ahead log built from the embedded log's partitions, for backends whose own
//! durability is slow (SeaweedMQ acknowledges from memory and flushes every few seconds).
//!
//! Each partition of the backend has a WAL partition here holding its batches **at the
//! backend's offsets** ([`Partition::append_at`](super::partition::Partition)): segments,
//! recovery of a torn tail, and group-committed `fdatasync` are the embedded log's own. Entries
//! are trimmed (log start moved, whole segments deleted) once the backend reports them durable.
//! A WAL topic carries the backend topic's id, so a topic deleted and created again under the
//! same name starts with an empty WAL.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::RwLock;
use tokio_util::sync::CancellationToken;

use super::partition::{delete_segment_files, execute_read, Partition};
use super::retention::now_ms;
use super::{meta, recovery, FsyncMode, LocalOptions, LocalStorage, TopicState};
use crate::storage::{Offset, Result, Storage, StorageError, TopicConfig, TopicMeta, TopicPartition};

/// Segment size of WAL partitions: small, so trimmed segments are deleted soon.
const WAL_SEGMENT_BYTES: i64 = 64 << 20;
/// A WAL segment rolls after this long, so a slow partition's flushed entries are deleted too.
const WAL_SEGMENT_MS: i64 = 60_000;

/// The write-ahead log. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct WriteAheadLog {
    log: LocalStorage,
    config: TopicConfig,
}

fn io(e: impl std::fmt::Display) -> StorageError {
    StorageError::Io(std::io::Error::other(e.to_string()))
}

impl WriteAheadLog {
    /// Opens (creating) the WAL under `dir` and recovers every partition in it.
    ///
    /// # Errors
    /// [`StorageError::Io`] when the directory cannot be read or written.
    pub async fn open(dir: impl Into<PathBuf>, cancel: &CancellationToken) -> Result<Self> {
        let options = LocalOptions {
            data_dir: dir.into(),
            fsync: FsyncMode::Always,
            // Nothing expires by time: entries leave only by trimming.
            retention_check_interval: Duration::from_secs(3600),
        };
        let log = LocalStorage::open_with_cancel(options, cancel).await?;
        let config = TopicConfig {
            retention_ms: -1,
            retention_bytes: -1,
            segment_bytes: WAL_SEGMENT_BYTES,
            segment_ms: WAL_SEGMENT_MS,
            max_message_bytes: i32::MAX,
            ..TopicConfig::default()
        };
        Ok(Self { log, config })
    }

    /// Topics with WAL partitions (recovered or created since).
    pub fn topics(&self) -> Vec<TopicMeta> {
        self.log
            .inner
            .topics
            .read()
            .values()
            .map(|t| t.meta.read().clone())
            .collect()
    }

    /// The WAL partition of `tp` when its topic is known with this `id`.
    fn partition(&self, tp: &TopicPartition, id: uuid::Uuid) -> Option<Arc<Partition>> {
        let (topic, partition) = self.log.inner.partition(tp).ok()?;
        let same = topic.meta.read().id == id;
        same.then_some(partition)
    }

    /// The WAL partition of `tp`, creating the WAL topic (with the backend topic's `id` and
    /// partition count) when it is missing or belongs to an older topic of that name.
    ///
    /// # Errors
    /// [`StorageError::Io`] when the files cannot be created.
    pub async fn ensure(&self, tp: &TopicPartition, id: uuid::Uuid, partitions: i32) -> Result<()> {
        if self.partition(tp, id).is_some() {
            return Ok(());
        }
        let _admin = self.log.inner.admin.lock().await;
        let existing = self.log.inner.topics.read().get(tp.topic.as_ref()).cloned();
        if let Some(t) = existing {
            let meta = t.meta.read().clone();
            if meta.id == id && meta.partitions > tp.partition {
                return Ok(());
            }
            drop(_admin);
            tracing::info!(topic = %tp.topic, old = %meta.id, new = %id, "write-ahead log belongs to an older topic of this name; replacing it");
            self.remove_topic(&tp.topic).await?;
            return Box::pin(self.ensure(tp, id, partitions)).await;
        }
        let meta = TopicMeta {
            name: Arc::clone(&tp.topic),
            id,
            partitions: partitions.max(tp.partition + 1),
            config: self.config.clone(),
        };
        let inner = Arc::clone(&self.log.inner);
        let m = meta.clone();
        let opened = tokio::task::spawn_blocking(move || -> std::io::Result<Vec<Arc<Partition>>> {
            let partitions = (0..m.partitions)
                .map(|i| inner.open_partition(&m, i).map(Arc::new))
                .collect::<std::io::Result<Vec<_>>>()?;
            meta::fsync_dir(&meta::topic_dir(&inner.options.data_dir, m.id))?;
            meta::fsync_dir(&meta::logs_dir(&inner.options.data_dir))?;
            meta::save_topic(&inner.options.data_dir, &m)?;
            Ok(partitions)
        })
        .await
        .map_err(io)?
        .map_err(StorageError::Io)?;
        let state = TopicState {
            meta: RwLock::new(meta.clone()),
            partitions: RwLock::new(opened),
        };
        self.log
            .inner
            .topics
            .write()
            .insert(Arc::clone(&meta.name), Arc::new(state));
        Ok(())
    }

    /// Writes `batch` at the backend's offset `base`; returns the offset after it. Not yet
    /// durable: see [`WriteAheadLog::wait_durable`].
    ///
    /// # Errors
    /// [`StorageError::Io`] for an unknown partition (call [`WriteAheadLog::ensure`] first),
    /// `base` below the WAL's end, or a failed write.
    pub fn append(&self, tp: &TopicPartition, id: uuid::Uuid, batch: &[u8], base: Offset) -> Result<Offset> {
        let partition = self
            .partition(tp, id)
            .ok_or_else(|| io(format!("{tp} has no write-ahead log")))?;
        partition.append_at(batch, base, &self.config, now_ms())
    }

    /// Waits until every WAL entry of `tp` below `end` is on stable storage (group commit).
    ///
    /// # Errors
    /// [`StorageError::Io`] when the fsync failed.
    pub async fn wait_durable(&self, tp: &TopicPartition, end: Offset) -> Result<()> {
        let (_, partition) = self.log.inner.partition(tp)?;
        partition.wait_durable(end).await
    }

    /// `(first kept offset, end)` of `tp`'s entries, or `None` without a WAL partition.
    pub fn offsets(&self, tp: &TopicPartition) -> Option<(Offset, Offset)> {
        self.log.inner.partition(tp).ok().map(|(_, p)| p.offsets())
    }

    /// Bytes of segment data `tp` holds.
    pub fn size_bytes(&self, tp: &TopicPartition) -> u64 {
        self.log
            .inner
            .partition(tp)
            .map_or(0, |(_, p)| p.size_bytes())
    }

    /// Whole batches from the one holding `offset`, up to `max_bytes` (at least one).
    ///
    /// # Errors
    /// [`StorageError::OffsetOutOfRange`] outside the kept entries; I/O errors.
    pub async fn read(&self, tp: &TopicPartition, offset: Offset, max_bytes: usize) -> Result<Bytes> {
        let (_, partition) = self.log.inner.partition(tp)?;
        let plan = partition.plan_read(offset)?;
        if plan.source.is_none() {
            return Ok(Bytes::new());
        }
        tokio::task::spawn_blocking(move || execute_read(&plan, max_bytes))
            .await
            .map_err(io)?
            .map_err(StorageError::Io)
    }

    /// Drops the entries of `tp` below `offset` (clamped to the WAL's end): whole segments
    /// below it are deleted, and the kept start is persisted.
    ///
    /// # Errors
    /// I/O errors persisting the start.
    pub async fn trim(&self, tp: &TopicPartition, offset: Offset) -> Result<()> {
        let Ok((_, partition)) = self.log.inner.partition(tp) else {
            return Ok(());
        };
        let (start, end) = partition.offsets();
        let target = offset.min(end);
        if target <= start {
            return Ok(());
        }
        let (_, moved, doomed) = partition.move_log_start(target)?;
        if moved {
            let _persist = partition.log_start_file.lock().await;
            let p = Arc::clone(&partition);
            tokio::task::spawn_blocking(move || -> std::io::Result<()> {
                let current = p.offsets().0;
                recovery::write_log_start(&p.dir, current)?;
                delete_segment_files(&p.dir, &doomed);
                Ok(())
            })
            .await
            .map_err(io)?
            .map_err(StorageError::Io)?;
        }
        Ok(())
    }

    /// Removes a topic's WAL (the backend topic was deleted).
    ///
    /// # Errors
    /// I/O errors removing its files.
    pub async fn remove_topic(&self, name: &str) -> Result<()> {
        match self.log.delete_topic(name).await {
            Ok(_) | Err(StorageError::UnknownTopicOrPartition(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }
}
