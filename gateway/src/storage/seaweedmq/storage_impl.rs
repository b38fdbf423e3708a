//! [`Storage`] for [`SeaweedStorage`].

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::watch;
use tracing::{debug, error, warn};

use super::batch_codec::decode_batch;
use super::envelope::BatchFields;
use super::meta::{smq_retention, GatewayMeta};
use super::partition::{message_of, rebuild_producers, REBUILD_WINDOW};
use super::publish::Publisher;
use super::{client, Inner, SeaweedStorage, TopicInfo, MAX_PARTITIONS};
use crate::records::BatchHeader;
use crate::storage::producer_state::SequenceCheck;
use crate::storage::validate_topic_name;
use crate::storage::{
    AppendOutcome, Durability, Offset, OffsetAndTimestamp, OffsetSpec, ReadOutcome, Result, Storage,
    StorageError, TimestampType, TopicConfig, TopicMeta, TopicPartition,
};

/// How long an acks=all append waits for the broker to flush and checkpoint it (the usual wait
/// is bounded by the longer of `-logFlushInterval`, 5 s by default, and the ~2 s checkpoint
/// period; see `durability`).
const DURABLE_DEADLINE: std::time::Duration = std::time::Duration::from_secs(25);

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn io(e: impl std::fmt::Display) -> StorageError {
    StorageError::Io(std::io::Error::other(e.to_string()))
}

impl Inner {
    /// Earliest (gateway log start applied) and high watermark of a partition.
    pub(super) async fn range(&self, tp: &TopicPartition, info: &TopicInfo) -> Result<(Offset, Offset)> {
        let ri = self
            .client
            .range_info(&tp.topic, tp.partition)
            .await
            .map_err(|e| e.into_storage(&tp.to_string()))?;
        self.partition_state(tp).advance(ri.high_watermark);
        Ok((
            ri.earliest
                .max(info.doc.log_start(tp.partition))
                .min(ri.high_watermark),
            ri.high_watermark,
        ))
    }

    async fn append_batch(
        &self,
        tp: &TopicPartition,
        batch: Bytes,
        durability: Durability,
    ) -> Result<AppendOutcome> {
        let name = tp.to_string();
        let info = self.partition_of(tp).await?;
        let max = usize::try_from(info.meta.config.max_message_bytes).unwrap_or(0);
        if batch.len() > max {
            return Err(StorageError::BatchTooLarge {
                size: batch.len(),
                max,
            });
        }
        let header = BatchHeader::parse(&batch).map_err(|e| StorageError::CorruptBatch(e.to_string()))?;
        let decoded = decode_batch(&batch).map_err(|e| StorageError::CorruptBatch(e.to_string()))?;
        drop(batch);
        let log_append = info.meta.config.message_timestamp_type == TimestampType::LogAppendTime;
        let append_time = now_ms();
        let fields = BatchFields {
            attributes: if log_append {
                header.attributes | 0x08
            } else {
                header.attributes
            } & !0x07,
            base_timestamp: if log_append {
                append_time
            } else {
                header.base_timestamp
            },
            max_timestamp: if log_append {
                append_time
            } else {
                header.max_timestamp
            },
            partition_leader_epoch: decoded.partition_leader_epoch,
        };
        let messages: Vec<_> = decoded
            .records
            .iter()
            .map(|r| {
                let ts = if log_append { append_time } else { r.timestamp_ms };
                message_of(r, ts, &header, fields)
            })
            .collect();
        if messages.is_empty() {
            return Err(StorageError::CorruptBatch("record batch without records".into()));
        }
        let state = self.partition_state(tp);
        let mut guard = state.append.lock().await;
        let idempotent = header.is_idempotent();
        if idempotent && guard.producers.is_none() {
            let (start, hw) = self.range(tp, &info).await?;
            let from = start.max(hw - REBUILD_WINDOW);
            let table = rebuild_producers(&self.client, tp, from, hw)
                .await
                .map_err(|e| e.into_storage(&name))?;
            debug!(partition = %name, producers = table.len(), from, to = hw, "rebuilt producer state from envelopes");
            guard.producers = Some(table);
        }
        let check = guard.producers.as_ref().map(|t| t.check(&header)).transpose()?;
        if let Some(SequenceCheck::Duplicate { base_offset }) = check {
            drop(guard);
            if durability == Durability::Durable {
                // The original may have been answered with an error before it was flushed.
                let end = base_offset + i64::from(header.record_count);
                state
                    .wait_durable(&self.client, tp, end, DURABLE_DEADLINE)
                    .await
                    .map_err(|e| e.into_storage(&name))?;
            }
            return Ok(AppendOutcome {
                base_offset,
                log_append_time_ms: if log_append { append_time } else { -1 },
                log_start_offset: info.doc.log_start(tp.partition),
                duplicate: true,
            });
        }
        if guard.publisher.as_ref().is_none_or(Publisher::is_closed) {
            guard.publisher = None;
            // A restarted broker continues offsets after its last flush checkpoint: anything
            // acknowledged after that is gone, and its offsets would be handed out again.
            let broker_hw = self
                .client
                .range_info(&tp.topic, tp.partition)
                .await
                .map_err(|e| e.into_storage(&name))?
                .high_watermark;
            let known = *state.hw.borrow();
            if broker_hw < known {
                error!(partition = %name, broker_high_watermark = broker_hw, acknowledged_high_watermark = known, "the broker lost acknowledged messages (not flushed before it restarted); refusing appends that would reuse their offsets");
                return Err(io(format!(
                    "{name}: the broker's high watermark {broker_hw} is below the acknowledged {known}; appending would reuse offsets"
                )));
            }
            guard.floor = broker_hw;
            let channels = self.client.discovery().channels();
            let publisher = self
                .client
                .on_leader(&tp.topic, tp.partition, |leader, partition| async move {
                    Publisher::open(channels, &leader, client::smq_topic(&tp.topic), partition).await
                })
                .await
                .map_err(|e| e.into_storage(&name))?;
            guard.publisher = Some(publisher);
        }
        let Some(publisher) = guard.publisher.as_ref() else {
            return Err(io("publish stream unavailable"));
        };
        let floor = guard.floor;
        let pending = publisher
            .submit(messages)
            .await
            .map_err(|e| e.into_storage(&name))?;
        // Idempotent batches wait under the lock so the producer table stays exact; others
        // release it and let the next batch pipeline behind this one.
        let acked = if idempotent {
            let acked = pending
                .await
                .map_err(|_| io("publish stream dropped"))?
                .map_err(|e| e.into_storage(&name))?;
            if acked.base_offset >= floor {
                if let Some(table) = guard.producers.as_mut() {
                    table.record(&header, acked.base_offset);
                }
            }
            drop(guard);
            acked
        } else {
            drop(guard);
            pending
                .await
                .map_err(|_| io("publish stream dropped"))?
                .map_err(|e| e.into_storage(&name))?
        };
        if acked.base_offset < floor {
            // The broker's offset counter went backwards while this stream was open: the
            // messages now sit at offsets that belong to earlier records. Never acknowledge them.
            state.append.lock().await.publisher = None;
            error!(partition = %name, base = acked.base_offset, expected_at_least = floor, "the broker assigned offsets below its high watermark; the batch is not acknowledged");
            return Err(io(format!(
                "{name}: the broker assigned offset {} below its high watermark {floor}",
                acked.base_offset
            )));
        }
        state.advance(acked.last_offset + 1);
        if durability == Durability::Durable {
            state
                .wait_durable(&self.client, tp, acked.last_offset + 1, DURABLE_DEADLINE)
                .await
                .map_err(|e| e.into_storage(&name))?;
        }
        if !acked.contiguous {
            warn!(partition = %name, base = acked.base_offset, last = acked.last_offset, "another publisher interleaved with this batch; its offsets are not contiguous");
        }
        Ok(AppendOutcome {
            base_offset: acked.base_offset,
            log_append_time_ms: if log_append { append_time } else { -1 },
            log_start_offset: info.doc.log_start(tp.partition),
            duplicate: false,
        })
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

    async fn wait_durable(&self, tp: &TopicPartition, end_offset: Offset) -> Result<()> {
        self.inner
            .partition_state(tp)
            .wait_durable(&self.inner.client, tp, end_offset, DURABLE_DEADLINE)
            .await
            .map_err(|e| e.into_storage(&tp.to_string()))
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
        Ok(())
    }
}
