//! The SeaweedMQ client: topic administration on the balancer, partition reads on each
//! partition's leader, and the filer for deletion and the gateway's key-value metadata.
//!
//! Every Kafka topic `T` is the SMQ topic `kafka/T`. A topic's layout is its
//! `LookupTopicBrokers` assignments sorted by `range_start`: Kafka partition `i` is entry `i`.
//! Layouts are cached and refreshed when a call reports a leader or generation change.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use tracing::{debug, warn};

use super::discovery::{Discovery, Seeds};
use super::error::{filer_not_found, SmqError, SmqErrorKind, SmqResult};
use super::pb::filer_pb::{DeleteEntryRequest, KvGetRequest, KvPutRequest, LookupDirectoryEntryRequest};
use super::pb::messaging_pb::{
    BrokerPartitionAssignment, ConfigureTopicRequest, GetPartitionRangeInfoRequest,
    GetTopicConfigurationRequest, GetTopicConfigurationResponse, ListTopicsRequest,
    LookupTopicBrokersRequest, TopicRetention,
};
use super::pb::schema_pb::{Partition, Topic};

/// The SMQ namespace holding Kafka topics.
pub const NAMESPACE: &str = "kafka";
/// Filer directory holding the SMQ namespace's topic directories.
pub const TOPICS_DIR: &str = "/topics/kafka";
/// Attempts of a call that failed with a re-lookup-worthy error (backoff totals about 9 s, time
/// for a restarted broker to take its partitions back).
const ATTEMPTS: u32 = 7;

/// The SMQ topic of a Kafka topic name.
pub fn smq_topic(name: &str) -> Topic {
    Topic {
        namespace: NAMESPACE.to_string(),
        name: name.to_string(),
    }
}

/// A topic's partitions in Kafka order.
#[derive(Debug, Clone)]
pub struct Layout {
    /// Assignments sorted by `range_start`; index `i` is Kafka partition `i`.
    pub partitions: Vec<BrokerPartitionAssignment>,
}

impl Layout {
    fn from_assignments(mut a: Vec<BrokerPartitionAssignment>) -> Self {
        a.sort_by_key(|a| a.partition.as_ref().map_or(i32::MAX, |p| p.range_start));
        Self { partitions: a }
    }

    /// The exact SMQ partition and leader of Kafka partition `index`.
    pub fn get(&self, index: i32) -> Option<(&Partition, &str)> {
        let a = self.partitions.get(usize::try_from(index).ok()?)?;
        Some((a.partition.as_ref()?, a.leader_broker.as_str()))
    }
}

/// Earliest offset and high watermark of a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RangeInfo {
    /// First offset still stored.
    pub earliest: i64,
    /// Offset the next message will get.
    pub high_watermark: i64,
}

/// Backoff before attempt `n` (1-based) of a retried call.
pub fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(100 * 2u64.pow(attempt.min(5)))
}

/// A SeaweedMQ cluster client (cheap to share behind an `Arc`).
#[derive(Debug)]
pub struct SmqClient {
    discovery: Discovery,
    layouts: Mutex<HashMap<String, Arc<Layout>>>,
    /// Reads flushed log files from the volume servers.
    pub(super) log_files: super::log_files::LogFiles,
}

impl SmqClient {
    /// A client for the cluster reachable from `seeds`; connects lazily.
    pub fn new(seeds: Seeds) -> Self {
        Self {
            discovery: Discovery::new(seeds),
            layouts: Mutex::new(HashMap::new()),
            log_files: super::log_files::LogFiles::default(),
        }
    }

    /// Server discovery and channels.
    pub fn discovery(&self) -> &Discovery {
        &self.discovery
    }

    /// Runs an admin call on the balancer, re-discovering it when unreachable.
    async fn on_balancer<T, F, Fut>(&self, op: &'static str, f: F) -> SmqResult<T>
    where
        F: Fn(
            super::pb::messaging_pb::seaweed_messaging_client::SeaweedMessagingClient<
                tonic::transport::Channel,
            >,
        ) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = match self.discovery.balancer().await {
                Ok(addr) => {
                    let client = self.discovery.channels().broker(&addr)?;
                    f(client)
                        .await
                        .map(tonic::Response::into_inner)
                        .map_err(|s| SmqError::rpc(op, &addr, s))
                }
                Err(e) => Err(e),
            };
            match result {
                Err(e) if e.kind() == SmqErrorKind::Unavailable && attempt < ATTEMPTS => {
                    warn!(op, attempt, error = %e, "balancer call failed; rediscovering");
                    self.discovery.invalidate();
                    tokio::time::sleep(backoff(attempt)).await;
                }
                r => return r,
            }
        }
    }

    /// Names of the Kafka topics (SMQ topics in namespace `kafka`).
    ///
    /// # Errors
    /// [`SmqError`] from the balancer.
    pub async fn list_topics(&self) -> SmqResult<Vec<String>> {
        let r = self
            .on_balancer("ListTopics", |mut c| async move {
                c.list_topics(ListTopicsRequest {}).await
            })
            .await?;
        Ok(r.topics
            .into_iter()
            .filter(|t| t.namespace == NAMESPACE)
            .map(|t| t.name)
            .collect())
    }

    /// Creates a topic or updates its retention (`partition_count` must then be unchanged).
    ///
    /// # Errors
    /// [`SmqError`] from the balancer.
    pub async fn configure_topic(
        &self,
        name: &str,
        partitions: i32,
        retention: Option<TopicRetention>,
    ) -> SmqResult<Layout> {
        let request = ConfigureTopicRequest {
            topic: Some(smq_topic(name)),
            partition_count: partitions,
            retention,
        };
        let r = self
            .on_balancer("ConfigureTopic", |mut c| {
                let request = request.clone();
                async move { c.configure_topic(request).await }
            })
            .await?;
        let layout = Arc::new(Layout::from_assignments(r.broker_partition_assignments));
        self.layouts.lock().insert(name.to_string(), Arc::clone(&layout));
        Ok((*layout).clone())
    }

    /// The topic's configuration, or `None` when it does not exist.
    ///
    /// # Errors
    /// [`SmqError`] from the balancer, other than "not found".
    pub async fn topic_configuration(&self, name: &str) -> SmqResult<Option<GetTopicConfigurationResponse>> {
        let request = GetTopicConfigurationRequest {
            topic: Some(smq_topic(name)),
        };
        let r = self
            .on_balancer("GetTopicConfiguration", |mut c| {
                let request = request.clone();
                async move { c.get_topic_configuration(request).await }
            })
            .await;
        match r {
            Ok(conf) => Ok(Some(conf)),
            Err(e) if e.kind() == SmqErrorKind::TopicNotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The topic's layout, from the cache unless `refresh`.
    ///
    /// # Errors
    /// [`SmqErrorKind::TopicNotFound`] for a missing topic, or [`SmqError`] from the balancer.
    pub async fn layout(&self, name: &str, refresh: bool) -> SmqResult<Arc<Layout>> {
        if !refresh {
            if let Some(l) = self.layouts.lock().get(name) {
                return Ok(Arc::clone(l));
            }
        }
        let request = LookupTopicBrokersRequest {
            topic: Some(smq_topic(name)),
        };
        let r = self
            .on_balancer("LookupTopicBrokers", |mut c| {
                let request = request.clone();
                async move { c.lookup_topic_brokers(request).await }
            })
            .await?;
        if r.broker_partition_assignments.is_empty() {
            return Err(SmqError::Server {
                op: "LookupTopicBrokers",
                code: 0,
                message: format!("topic {NAMESPACE}/{name} not found"),
                kind: SmqErrorKind::TopicNotFound,
            });
        }
        let layout = Arc::new(Layout::from_assignments(r.broker_partition_assignments));
        debug!(
            topic = name,
            partitions = layout.partitions.len(),
            "looked up topic layout"
        );
        self.layouts.lock().insert(name.to_string(), Arc::clone(&layout));
        Ok(layout)
    }

    /// The broker that leads Kafka partition `index` in the cached layout (`None` when the
    /// layout is not cached or names no leader). Never asks the balancer.
    pub fn cached_leader(&self, name: &str, index: i32) -> Option<String> {
        let layouts = self.layouts.lock();
        let (_, leader) = layouts.get(name)?.get(index)?;
        (!leader.is_empty()).then(|| leader.to_owned())
    }

    /// Whether the broker at `addr` refuses connections (or answers `Unavailable`), asked
    /// with a call that touches no partition: SeaweedMQ creates a partition's offset counter
    /// from its checkpoint on the first call that names the partition (GetPartitionRangeInfo
    /// included), and keeps it for its lifetime, so a probe must not name one before a
    /// checkpoint is corrected. A slow or erroring broker is reachable.
    pub async fn broker_unreachable(&self, addr: &str) -> bool {
        let Ok(mut c) = self.discovery.channels().broker(addr) else {
            return false;
        };
        match tokio::time::timeout(Duration::from_secs(2), c.list_topics(ListTopicsRequest {})).await {
            Ok(Err(status)) => status.code() == tonic::Code::Unavailable,
            Ok(Ok(_)) | Err(_) => false,
        }
    }

    /// Drops the cached layout of a topic.
    pub fn forget_layout(&self, name: &str) {
        self.layouts.lock().remove(name);
    }

    /// Runs `f` against the leader of Kafka partition `index`, re-looking up the layout and
    /// retrying when the leader or generation changed.
    ///
    /// # Errors
    /// [`SmqErrorKind::PartitionNotFound`] when the topic has no such partition, or the last
    /// failure of `f`.
    pub async fn on_leader<T, F, Fut>(&self, name: &str, index: i32, f: F) -> SmqResult<T>
    where
        F: Fn(String, Partition) -> Fut,
        Fut: std::future::Future<Output = SmqResult<T>>,
    {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let layout = self.layout(name, attempt > 1).await?;
            let Some((partition, leader)) = layout.get(index) else {
                return Err(SmqError::Server {
                    op: "LookupTopicBrokers",
                    code: 0,
                    message: format!("topic {name} has no partition {index}"),
                    kind: SmqErrorKind::TopicNotFound,
                });
            };
            let result = if leader.is_empty() {
                // The balancer has not (re)assigned the partition yet, e.g. after a restart.
                Err(SmqError::Server {
                    op: "LookupTopicBrokers",
                    code: 0,
                    message: format!("partition {index} of {name} has no leader yet"),
                    kind: SmqErrorKind::PartitionNotFound,
                })
            } else {
                f(leader.to_string(), *partition).await
            };
            match result {
                Err(e) if e.kind().needs_relookup() && attempt < ATTEMPTS => {
                    warn!(topic = name, partition = index, attempt, error = %e, "partition call failed; looking up the leader again");
                    if e.kind() == SmqErrorKind::Unavailable {
                        self.discovery.invalidate();
                    }
                    tokio::time::sleep(backoff(attempt)).await;
                }
                r => return r,
            }
        }
    }

    /// Earliest offset and high watermark of Kafka partition `index`.
    ///
    /// # Errors
    /// [`SmqError`] from the leader.
    pub async fn range_info(&self, name: &str, index: i32) -> SmqResult<RangeInfo> {
        self.on_leader(name, index, |leader, partition| async move {
            let mut c = self.discovery.channels().broker(&leader)?;
            let request = GetPartitionRangeInfoRequest {
                topic: Some(smq_topic(name)),
                partition: Some(partition),
            };
            let r = c
                .get_partition_range_info(request)
                .await
                .map_err(|s| SmqError::rpc("GetPartitionRangeInfo", &leader, s))?
                .into_inner();
            if !r.error.is_empty() {
                let lower = r.error.to_ascii_lowercase();
                let kind = if lower.contains("not found") {
                    SmqErrorKind::PartitionNotFound
                } else {
                    SmqErrorKind::Other
                };
                return Err(SmqError::Server {
                    op: "GetPartitionRangeInfo",
                    code: 0,
                    message: r.error,
                    kind,
                });
            }
            let range = r.offset_range.unwrap_or_default();
            Ok(RangeInfo {
                earliest: range.earliest_offset.max(0),
                high_watermark: range.high_water_mark.max(0),
            })
        })
        .await
    }

    /// Reads a value from the filer's key-value store (`None` when absent).
    ///
    /// # Errors
    /// [`SmqError`] when the filer is unknown or fails.
    pub async fn kv_get(&self, key: &str) -> SmqResult<Option<Bytes>> {
        let addr = self.discovery.filer().await?;
        let mut c = self.discovery.channels().filer(&addr)?;
        let r = c
            .kv_get(KvGetRequest {
                key: Bytes::copy_from_slice(key.as_bytes()),
            })
            .await
            .map_err(|s| SmqError::rpc("KvGet", &addr, s))?
            .into_inner();
        if !r.error.is_empty() {
            return Err(SmqError::Server {
                op: "KvGet",
                code: 0,
                message: r.error,
                kind: SmqErrorKind::Other,
            });
        }
        Ok((!r.value.is_empty()).then_some(r.value))
    }

    /// Writes a value to the filer's key-value store; an empty value deletes the key.
    ///
    /// # Errors
    /// [`SmqError`] when the filer is unknown or fails.
    pub async fn kv_put(&self, key: &str, value: Bytes) -> SmqResult<()> {
        let addr = self.discovery.filer().await?;
        let mut c = self.discovery.channels().filer(&addr)?;
        let r = c
            .kv_put(KvPutRequest {
                key: Bytes::copy_from_slice(key.as_bytes()),
                value,
            })
            .await
            .map_err(|s| SmqError::rpc("KvPut", &addr, s))?
            .into_inner();
        if !r.error.is_empty() {
            return Err(SmqError::Server {
                op: "KvPut",
                code: 0,
                message: r.error,
                kind: SmqErrorKind::Other,
            });
        }
        Ok(())
    }

    /// True when the topic's directory exists in the filer.
    ///
    /// # Errors
    /// [`SmqError`] when the filer is unknown or fails.
    pub async fn topic_dir_exists(&self, name: &str) -> SmqResult<bool> {
        let addr = self.discovery.filer().await?;
        let mut c = self.discovery.channels().filer(&addr)?;
        let request = LookupDirectoryEntryRequest {
            directory: TOPICS_DIR.to_string(),
            name: name.to_string(),
        };
        match c.lookup_directory_entry(request).await {
            Ok(r) => Ok(r.into_inner().entry.is_some()),
            Err(s) if filer_not_found(&s) => Ok(false),
            Err(s) => Err(SmqError::rpc("LookupDirectoryEntry", &addr, s)),
        }
    }

    /// Deletes the topic's directory (`/topics/kafka/<name>`: config and all data) in the filer.
    /// The brokers' topic caches may still answer for it for a short while.
    ///
    /// # Errors
    /// [`SmqError`] when the filer is unknown or refuses.
    pub async fn delete_topic_dir(&self, name: &str) -> SmqResult<()> {
        let addr = self.discovery.filer().await?;
        let mut c = self.discovery.channels().filer(&addr)?;
        let request = DeleteEntryRequest {
            directory: TOPICS_DIR.to_string(),
            name: name.to_string(),
            is_delete_data: true,
            is_recursive: true,
            ignore_recursive_error: false,
        };
        let r = c
            .delete_entry(request)
            .await
            .map_err(|s| SmqError::rpc("DeleteEntry", &addr, s))?
            .into_inner();
        self.forget_layout(name);
        if !r.error.is_empty() {
            return Err(SmqError::Server {
                op: "DeleteEntry",
                code: 0,
                message: r.error,
                kind: SmqErrorKind::Other,
            });
        }
        Ok(())
    }
}
