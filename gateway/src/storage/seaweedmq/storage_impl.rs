//! [`Storage`] for [`SeaweedStorage`].

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::watch;
use tracing::warn;

use super::meta::{smq_retention, GatewayMeta};

/// Longest a graceful shutdown waits for SeaweedMQ to flush what the write-ahead log holds:
/// three of the broker's default 5 s flush intervals.
const WAL_DRAIN_AT_SHUTDOWN: std::time::Duration = std::time::Duration::from_secs(15);
use super::{Inner, SeaweedStorage, TopicInfo, MAX_PARTITIONS};
use crate::storage::validate_topic_name;
use crate::storage::{
    AppendOutcome, Durability, Offset, OffsetAndTimestamp, OffsetSpec, PendingAppend, ReadOutcome, Result,
    Storage, StorageError, TopicConfig, TopicMeta, TopicPartition,
};

impl Inner {
    /// Earliest (gateway log start applied) and high watermark of a partition as clients see
    /// them: a proven hole at the partition's end is not counted ([`super::holes`]).
    pub(super) async fn range(&self, tp: &TopicPartition, info: &TopicInfo) -> Result<(Offset, Offset)> {
        let (start, hw) = self.broker_range(tp, info).await?;
        let hw = self.partition_state(tp).holes.reported(hw);
        Ok((start.min(hw), hw))
    }

    /// Earliest (gateway log start applied) and the broker's own high watermark of a partition.
    pub(super) async fn broker_range(
        &self,
        tp: &TopicPartition,
        info: &TopicInfo,
    ) -> Result<(Offset, Offset)> {
        self.recover_before_read(tp, info).await?;
        let ri = self
            .client
            .range_info(&tp.topic, tp.partition)
            .await
            .map_err(|e| e.into_storage(&tp.to_string()))?;
        let state = self.partition_state(tp);
        state.advance(ri.high_watermark);
        state.holes.observe(ri.high_watermark);
        Ok((
            ri.earliest
                .max(info.doc.log_start(tp.partition))
                .min(ri.high_watermark),
            ri.high_watermark,
        ))
    }
}

#[async_trait]
impl Storage for SeaweedStorage {
    fn backend(&self) -> &'static str {
        "seaweedmq"
    }

    async fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        config: TopicConfig,
        validate_only: bool,
    ) -> Result<TopicMeta> {
        validate_topic_name(name)?;
        if !(1..=MAX_PARTITIONS).contains(&partitions) {
            return Err(StorageError::InvalidPartitions(format!(
                "partition count must be between 1 and {MAX_PARTITIONS} on SeaweedMQ, got {partitions}"
            )));
        }
        let inner = &self.inner;
        if inner.topic(name, true).await?.is_some() {
            return Err(StorageError::TopicAlreadyExists(name.to_string()));
        }
        let doc = GatewayMeta {
            id: uuid::Uuid::new_v4(),
            config: config.clone(),
            log_start: Default::default(),
        };
        let meta = TopicMeta {
            name: name.into(),
            id: doc.id,
            partitions,
            config,
        };
        if validate_only {
            return Ok(meta);
        }
        inner.store_doc(name, &doc).await?;
        let retention = smq_retention(meta.config.retention_ms);
        let layout = inner
            .client
            .configure_topic(name, partitions, Some(retention))
            .await
            .map_err(|e| e.into_storage(name))?;
        if layout.partitions.len() != partitions as usize {
            warn!(
                topic = name,
                requested = partitions,
                got = layout.partitions.len(),
                "SMQ allocated a different partition count"
            );
        }
        inner.forget_topic(name);
        inner.cache_topic(TopicInfo {
            meta: meta.clone(),
            doc,
            stored: true,
        });
        Ok(meta)
    }

    async fn delete_topic(&self, name: &str) -> Result<TopicMeta> {
        let inner = &self.inner;
        let info = inner
            .topic(name, true)
            .await?
            .ok_or_else(|| StorageError::UnknownTopicOrPartition(name.to_string()))?;
        inner.forget_topic(name);
        inner
            .client
            .delete_topic_dir(name)
            .await
            .map_err(|e| e.into_storage(name))?;
        if info.stored {
            inner
                .client
                .kv_put(&super::meta::kv_key(name), Bytes::new())
                .await
                .map_err(|e| e.into_storage(name))?;
        }
        inner.forget_topic(name);
        if let Some(wal) = &inner.wal {
            wal.remove_topic(name).await?;
        }
        Ok(info.meta.clone())
    }

    async fn list_topics(&self) -> Result<Vec<TopicMeta>> {
        let names = self
            .inner
            .client
            .list_topics()
            .await
            .map_err(|e| e.into_storage("topics"))?;
        let mut out = Vec::with_capacity(names.len());
        for name in names {
            // SMQ-native clients may name topics that Kafka cannot: they are not Kafka topics.
            if validate_topic_name(&name).is_err() {
                tracing::debug!(topic = %name, "skipping an SMQ topic whose name is not a valid Kafka topic name");
                continue;
            }
            if let Some(info) = self.inner.topic(&name, false).await? {
                out.push(info.meta.clone());
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    async fn describe_topic(&self, name: &str) -> Result<Option<TopicMeta>> {
        Ok(self.inner.topic(name, true).await?.map(|i| i.meta.clone()))
    }

    /// From the topic cache (at most `TOPIC_TTL` old): a fresh description costs two round
    /// trips (topic configuration and the gateway's metadata document), too many per Produce.
    async fn lookup_topic(&self, name: &str) -> Result<Option<TopicMeta>> {
        Ok(self.inner.topic(name, false).await?.map(|i| i.meta.clone()))
    }

    async fn lookup_topic_id(&self, id: uuid::Uuid) -> Result<Option<TopicMeta>> {
        if let Some(meta) = self.inner.cached_topic_id(id) {
            return Ok(Some(meta));
        }
        Ok(self.list_topics().await?.into_iter().find(|t| t.id == id))
    }

    async fn create_partitions(&self, name: &str, total: i32, _validate_only: bool) -> Result<TopicMeta> {
        let info = self
            .inner
            .topic(name, true)
            .await?
            .ok_or_else(|| StorageError::UnknownTopicOrPartition(name.to_string()))?;
        if total <= info.meta.partitions {
            return Err(StorageError::InvalidPartitions(format!(
                "topic {name} has {} partitions; it can only grow",
                info.meta.partitions
            )));
        }
        Err(StorageError::Unsupported(format!(
            "adding partitions to {name} is not supported on SeaweedMQ: SMQ re-allocates every partition in a new generation that starts empty at offset 0, which would lose the topic's data and offsets"
        )))
    }

    async fn alter_topic_config(&self, name: &str, config: TopicConfig, validate_only: bool) -> Result<()> {
        let inner = &self.inner;
        let info = inner
            .topic(name, true)
            .await?
            .ok_or_else(|| StorageError::UnknownTopicOrPartition(name.to_string()))?;
        if validate_only {
            return Ok(());
        }
        let mut doc = info.doc.clone();
        let retention_changed = doc.config.retention_ms != config.retention_ms;
        doc.config = config;
        inner.store_doc(name, &doc).await?;
        if retention_changed {
            let retention = smq_retention(doc.config.retention_ms);
            inner
                .client
                .configure_topic(name, info.meta.partitions, Some(retention))
                .await
                .map_err(|e| e.into_storage(name))?;
        }
        inner.forget_topic(name);
        Ok(())
    }

    async fn append(
        &self,
        tp: &TopicPartition,
        batch: Bytes,
        durability: Durability,
    ) -> Result<AppendOutcome> {
        self.inner.append_batch(tp, batch, durability).await
    }

    async fn start_append(&self, tp: &TopicPartition, batch: Bytes) -> Result<PendingAppend> {
        let acks = self.inner.start_append(tp, batch).await?;
        Ok(Box::pin(async move { acks.await.map(|a| a.outcome) }))
    }

    async fn wait_durable(&self, tp: &TopicPartition, end_offset: Offset) -> Result<()> {
        self.inner.wait_acked_durable(tp, end_offset).await
    }

    async fn read(&self, tp: &TopicPartition, offset: Offset, max_bytes: usize) -> Result<ReadOutcome> {
        self.inner.read_batches(tp, offset, max_bytes).await
    }

    async fn list_offset(&self, tp: &TopicPartition, spec: OffsetSpec) -> Result<Option<OffsetAndTimestamp>> {
        let info = self.inner.partition_of(tp).await?;
        match spec {
            OffsetSpec::Earliest => {
                let (start, _) = self.inner.range(tp, &info).await?;
                Ok(Some(OffsetAndTimestamp {
                    offset: start,
                    timestamp: -1,
                }))
            }
            OffsetSpec::Latest => {
                let (_, hw) = self.inner.range(tp, &info).await?;
                Ok(Some(OffsetAndTimestamp {
                    offset: hw,
                    timestamp: -1,
                }))
            }
            OffsetSpec::Timestamp(t) => self.inner.scan_timestamps(tp, &info, Some(t)).await,
            OffsetSpec::MaxTimestamp => self.inner.scan_timestamps(tp, &info, None).await,
        }
    }

    async fn delete_records(&self, tp: &TopicPartition, offset: Offset) -> Result<Offset> {
        let info = self.inner.partition_of(tp).await?;
        let (start, hw) = self.inner.range(tp, &info).await?;
        let target = if offset == -1 { hw } else { offset };
        if target < 0 || target > hw {
            return Err(StorageError::OffsetOutOfRange {
                offset,
                log_start: start,
                high_watermark: hw,
            });
        }
        if target <= start {
            return Ok(start);
        }
        let mut doc = info.doc.clone();
        doc.log_start.insert(tp.partition, target);
        self.inner.store_doc(&tp.topic, &doc).await?;
        Ok(target)
    }

    fn watch_high_watermark(&self, tp: &TopicPartition) -> Result<watch::Receiver<Offset>> {
        validate_topic_name(&tp.topic)?;
        if let Some((_, info)) = self.inner.topics.lock().get(tp.topic.as_ref()) {
            if tp.partition < 0 || tp.partition >= info.meta.partitions {
                return Err(StorageError::UnknownTopicOrPartition(tp.to_string()));
            }
        }
        let state = self.inner.partition_state(tp);
        let rx = state.hw.subscribe();
        state.ensure_poller(Arc::clone(&self.inner.client), tp.clone());
        Ok(rx)
    }

    async fn flush(&self) -> Result<()> {
        self.inner.drain_wal(WAL_DRAIN_AT_SHUTDOWN).await.map(|_| ())
    }
}
