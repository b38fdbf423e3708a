//! [`Storage`] for [`LocalStorage`]: topic administration persists metadata under the admin
//! lock; the data path goes straight to the partition.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use parking_lot::RwLock;
use tokio::sync::watch;
use tracing::{info, warn};

use super::partition::{delete_segment_files, execute_read};
use super::retention::now_ms;
use super::timestamp::{execute_max_timestamp_lookup, execute_timestamp_lookup};
use super::{meta, recovery, FsyncMode, Inner, LocalStorage, TopicState, MAX_PARTITIONS};
use crate::storage::{
    AppendOutcome, Durability, Offset, OffsetAndTimestamp, OffsetSpec, ReadOutcome, Result, Storage,
    StorageError, TopicConfig, TopicMeta, TopicPartition,
};

/// Runs blocking file work off the async workers.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> std::io::Result<T> + Send + 'static) -> Result<T> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(StorageError::Io),
        Err(e) => Err(StorageError::Io(std::io::Error::other(e))),
    }
}

fn unknown_topic(name: &str) -> StorageError {
    StorageError::UnknownTopicOrPartition(name.to_string())
}

fn check_partition_count(n: i32) -> Result<()> {
    if n <= 0 {
        return Err(StorageError::InvalidPartitions(format!(
            "number of partitions must be positive, got {n}"
        )));
    }
    if n > MAX_PARTITIONS {
        return Err(StorageError::InvalidPartitions(format!(
            "number of partitions {n} exceeds the limit of {MAX_PARTITIONS}"
        )));
    }
    Ok(())
}

impl LocalStorage {
    fn topic(&self, name: &str) -> Result<Arc<TopicState>> {
        self.inner
            .topics
            .read()
            .get(name)
            .cloned()
            .ok_or_else(|| unknown_topic(name))
    }
}

/// Opens partitions `from..meta.partitions` and persists `meta` (blocking).
fn open_and_persist(
    inner: &Inner,
    meta: &TopicMeta,
    from: i32,
) -> std::io::Result<Vec<Arc<super::Partition>>> {
    let partitions = (from..meta.partitions)
        .map(|i| inner.open_partition(meta, i).map(Arc::new))
        .collect::<std::io::Result<Vec<_>>>()?;
    let topic_dir = meta::topic_dir(&inner.options.data_dir, meta.id);
    meta::fsync_dir(&topic_dir)?;
    meta::fsync_dir(&meta::logs_dir(&inner.options.data_dir))?;
    meta::save_topic(&inner.options.data_dir, meta)?;
    Ok(partitions)
}

#[async_trait]
impl Storage for LocalStorage {
    fn backend(&self) -> &'static str {
        "local"
    }

    async fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        config: TopicConfig,
        validate_only: bool,
    ) -> Result<TopicMeta> {
        crate::storage::validate_topic_name(name)?;
        check_partition_count(partitions)?;
        let _admin = self.inner.admin.lock().await;
        if self.inner.topics.read().contains_key(name) {
            return Err(StorageError::TopicAlreadyExists(name.to_string()));
        }
        let meta = TopicMeta {
            name: Arc::from(name),
            id: uuid::Uuid::new_v4(),
            partitions,
            config,
        };
        if validate_only {
            return Ok(meta);
        }
        let inner = Arc::clone(&self.inner);
        let m = meta.clone();
        let opened = blocking(move || open_and_persist(&inner, &m, 0)).await?;
        let state = TopicState {
            meta: RwLock::new(meta.clone()),
            partitions: RwLock::new(opened),
        };
        self.inner
            .topics
            .write()
            .insert(Arc::clone(&meta.name), Arc::new(state));
        info!(topic = name, partitions, id = %meta.id, "topic created");
        Ok(meta)
    }

    async fn delete_topic(&self, name: &str) -> Result<TopicMeta> {
        let _admin = self.inner.admin.lock().await;
        let meta = self.topic(name)?.meta.read().clone();
        let data_dir = self.inner.options.data_dir.clone();
        let n = name.to_string();
        blocking(move || meta::remove_topic(&data_dir, &n)).await?;
        self.inner.topics.write().remove(name);
        let dir = meta::topic_dir(&self.inner.options.data_dir, meta.id);
        let removed = blocking(move || std::fs::remove_dir_all(&dir)).await;
        if let Err(e) = removed {
            warn!(topic = name, error = %e, "topic data not removed; it is removed on the next start");
        }
        info!(topic = name, id = %meta.id, "topic deleted");
        Ok(meta)
    }

    async fn list_topics(&self) -> Result<Vec<TopicMeta>> {
        Ok(self
            .inner
            .topics
            .read()
            .values()
            .map(|t| t.meta.read().clone())
            .collect())
    }

    async fn describe_topic(&self, name: &str) -> Result<Option<TopicMeta>> {
        Ok(self.inner.topics.read().get(name).map(|t| t.meta.read().clone()))
    }

    async fn create_partitions(&self, name: &str, total: i32, validate_only: bool) -> Result<TopicMeta> {
        let _admin = self.inner.admin.lock().await;
        let topic = self.topic(name)?;
        let mut meta = topic.meta.read().clone();
        if total <= meta.partitions {
            return Err(StorageError::InvalidPartitions(format!(
                "topic {name} has {} partitions; the new count must be larger, got {total}",
                meta.partitions
            )));
        }
        check_partition_count(total)?;
        let from = meta.partitions;
        meta.partitions = total;
        if validate_only {
            return Ok(meta);
        }
        let inner = Arc::clone(&self.inner);
        let m = meta.clone();
        let opened = blocking(move || open_and_persist(&inner, &m, from)).await?;
        topic.partitions.write().extend(opened);
        *topic.meta.write() = meta.clone();
        info!(topic = name, partitions = total, "partitions created");
        Ok(meta)
    }

    async fn alter_topic_config(&self, name: &str, config: TopicConfig, validate_only: bool) -> Result<()> {
        let _admin = self.inner.admin.lock().await;
        let topic = self.topic(name)?;
        if validate_only {
            return Ok(());
        }
        let mut meta = topic.meta.read().clone();
        meta.config = config;
        let data_dir = self.inner.options.data_dir.clone();
        let m = meta.clone();
        blocking(move || meta::save_topic(&data_dir, &m)).await?;
        *topic.meta.write() = meta;
        info!(topic = name, "topic config altered");
        Ok(())
    }

    async fn append(
        &self,
        tp: &TopicPartition,
        batch: Bytes,
        durability: Durability,
    ) -> Result<AppendOutcome> {
        let (topic, partition) = self.inner.partition(tp)?;
        let config = topic.meta.read().config.clone();
        let appended = partition.append(batch, &config, now_ms())?;
        if durability == Durability::Durable && self.inner.options.fsync == FsyncMode::Always {
            partition.wait_durable(appended.end_offset).await?;
        }
        Ok(appended.outcome)
    }

    async fn wait_durable(&self, tp: &TopicPartition, end_offset: Offset) -> Result<()> {
        if self.inner.options.fsync != FsyncMode::Always {
            return Ok(());
        }
        let (_, partition) = self.inner.partition(tp)?;
        partition.wait_durable(end_offset).await
    }

    async fn read(&self, tp: &TopicPartition, offset: Offset, max_bytes: usize) -> Result<ReadOutcome> {
        let (_, partition) = self.inner.partition(tp)?;
        let plan = partition.plan_read(offset)?;
        let (high_watermark, log_start_offset) = (plan.high_watermark, plan.log_start);
        if plan.source.is_none() {
            return Ok(ReadOutcome {
                records: bytes::Bytes::new(),
                high_watermark,
                log_start_offset,
            });
        }
        let records = blocking(move || execute_read(&plan, max_bytes)).await?;
        Ok(ReadOutcome {
            records,
            high_watermark,
            log_start_offset,
        })
    }

    async fn list_offset(&self, tp: &TopicPartition, spec: OffsetSpec) -> Result<Option<OffsetAndTimestamp>> {
        let (_, partition) = self.inner.partition(tp)?;
        let (log_start, high_watermark) = partition.offsets();
        match spec {
            OffsetSpec::Earliest => Ok(Some(OffsetAndTimestamp {
                offset: log_start,
                timestamp: -1,
            })),
            OffsetSpec::Latest => Ok(Some(OffsetAndTimestamp {
                offset: high_watermark,
                timestamp: -1,
            })),
            OffsetSpec::MaxTimestamp => match partition.max_timestamp() {
                Some(plan) => blocking(move || execute_max_timestamp_lookup(&plan).map(Some)).await,
                None => Ok(None),
            },
            OffsetSpec::Timestamp(ts) => {
                let (plans, log_start) = partition.plan_timestamp(ts);
                if plans.is_empty() {
                    return Ok(None);
                }
                blocking(move || execute_timestamp_lookup(&plans, log_start, ts)).await
            }
        }
    }

    async fn delete_records(&self, tp: &TopicPartition, offset: Offset) -> Result<Offset> {
        let (_, partition) = self.inner.partition(tp)?;
        let (log_start, moved, doomed) = partition.move_log_start(offset)?;
        if moved {
            let _persist = partition.log_start_file.lock().await;
            let p = Arc::clone(&partition);
            blocking(move || {
                // Written under `log_start_file` with the latest value, so concurrent moves
                // persist in order.
                let current = p.offsets().0;
                recovery::write_log_start(&p.dir, current)?;
                delete_segment_files(&p.dir, &doomed);
                Ok(())
            })
            .await?;
        }
        Ok(log_start)
    }

    fn watch_high_watermark(&self, tp: &TopicPartition) -> Result<watch::Receiver<Offset>> {
        Ok(self.inner.partition(tp)?.1.hw.subscribe())
    }

    async fn flush(&self) -> Result<()> {
        for p in self.inner.all_partitions() {
            if p.is_dirty() {
                let end = p.offsets().1;
                p.request_sync();
                p.wait_durable(end).await?;
            }
        }
        Ok(())
    }
}
