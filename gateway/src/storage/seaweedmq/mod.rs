//! The SeaweedMQ backend: Kafka topics stored as SeaweedMQ topics.
//!
//! Mapping (the storage contract; `docs/seaweedmq-mapping.md` describes it for operators):
//! - Kafka topic `T` is SMQ topic `kafka/T`; Kafka partition `i` is the `i`-th assignment of
//!   `LookupTopicBrokers` sorted by `range_start`; Kafka offsets are SMQ's dense offsets.
//! - Each Kafka record is one SMQ message whose value is an [`envelope`] (key, value, headers,
//!   timestamp, null flags, producer id/epoch/sequence); SMQ's key holds the Kafka key.
//!   Values that are not envelopes (SMQ-native publishers, the seed gateway) read as raw values.
//! - Reads rebuild the produced batches, uncompressed, from the batch positions the envelopes
//!   carry ([`rebuild`]); messages without positions are grouped into derived batches.
//! - SMQ holds the layout and retention (`retention.ms` ↔ `TopicRetention`); the gateway keeps
//!   the topic id, the full config and DeleteRecords log starts in the filer ([`meta`]).
//!
//! Modules: [`client`] (admin and partition calls, layouts), [`discovery`] (masters, brokers,
//! balancer, filer, channels), [`publish`] (pipelined publish streams), [`fetch`] (FetchMessage
//! with the SubscribeMessage fallback), [`partition`] (per-partition state), `storage_impl`
//! (the [`Storage`](crate::storage::Storage) implementation).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::storage::{Result, StorageError, TopicMeta, TopicPartition};

mod append;
/// The Kafka batch codec lives in the record layer; re-exported for the SMQ modules.
pub use crate::records::batch_codec;
pub mod client;
pub mod discovery;
pub mod durability;
pub mod envelope;
pub mod error;
pub mod fetch;
pub mod holes;
pub mod log_files;
pub mod meta;
#[cfg(test)]
mod names_test;
pub mod partition;
pub mod pb;
pub mod publish;
mod read_ahead;
mod read_path;
pub mod rebuild;
mod storage_impl;
#[cfg(any(test, feature = "test-util"))]
pub mod testing;
#[cfg(test)]
mod tests;
pub mod wal_metrics;
mod wal_replay;
pub mod wal_replica;
pub mod wal_replicate;
#[cfg(test)]
mod wal_replication_tests;
mod wal_sync;
#[cfg(test)]
mod wal_tests;

pub use client::SmqClient;
pub use discovery::Seeds;
pub use error::{SmqError, SmqErrorKind};

use crate::storage::local::WriteAheadLog;
use meta::GatewayMeta;
use partition::PartitionState;

/// Largest partition count of an SMQ topic (the ring has 2520 slots).
pub const MAX_PARTITIONS: i32 = 2520;
/// How long a topic's description is reused before SMQ and the filer are asked again.
const TOPIC_TTL: Duration = Duration::from_secs(5);

/// Where the SeaweedMQ cluster is.
#[derive(Debug, Clone, Default)]
pub struct SeaweedOptions {
    /// Masters, `host:httpPort` (gRPC = port + 10000) or `host:httpPort.grpcPort`.
    pub masters: Vec<String>,
    /// Broker gRPC addresses (`host:port`), used when no masters are given.
    pub brokers: Vec<String>,
    /// Filer (`host:httpPort[.grpcPort]`); found through the masters when absent.
    pub filer: Option<String>,
    /// Directory of the write-ahead log that makes acks=all durable in milliseconds
    /// (docs/seaweedmq-mapping.md §3.3). `None`: acks=all waits for SMQ's own flush.
    pub wal_dir: Option<std::path::PathBuf>,
    /// Metrics of the write-ahead log.
    pub wal_metrics: Option<wal_metrics::WalMetrics>,
    /// When given, the write-ahead log takes new batches (and answers acks=all for them) only
    /// while this reads `true`: the gateway is the cluster's only member. `None`: always.
    pub wal_only_while: Option<tokio::sync::watch::Receiver<bool>>,
    /// Replicates the WAL to the other gateways of the cluster (§3.4): their service, and the
    /// directory where this node keeps their copies. `None`: the WAL is this node's only copy.
    pub wal_replication: Option<(Arc<dyn wal_replicate::WalPeers>, std::path::PathBuf)>,
    /// Partition leadership in a cluster, from the start (as
    /// [`SeaweedStorage::follow_leadership`]). `None`: this gateway leads every partition
    /// until told otherwise.
    pub leadership: Option<Leadership>,
}

/// Partition leadership in a cluster ([`SeaweedStorage::follow_leadership`]).
#[derive(Clone)]
pub struct Leadership {
    /// A fingerprint of the live members (leaders are a hash over them).
    pub fingerprint: Arc<dyn Fn() -> u64 + Send + Sync>,
    /// Whether this gateway leads a partition (topic, index).
    pub leads: Arc<LeadsFn>,
}

/// Whether this gateway leads partition `index` of `topic`.
pub type LeadsFn = dyn Fn(&str, i32) -> bool + Send + Sync;

impl std::fmt::Debug for Leadership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Leadership")
            .field("fingerprint", &(self.fingerprint)())
            .finish_non_exhaustive()
    }
}

impl Inner {
    /// Whether this gateway leads `tp` (always, outside a cluster).
    pub(crate) fn leads(&self, tp: &TopicPartition) -> bool {
        self.leadership
            .get()
            .is_none_or(|l| (l.leads)(&tp.topic, tp.partition))
    }
}

/// WAL replication's two halves.
type Replicated = (Arc<wal_replicate::Replication>, Arc<wal_replica::ReplicaStore>);

/// Opens the copies under `dir` (with their janitor) and the sender through `peers`.
async fn replication(
    client: &Arc<SmqClient>,
    wal: &Arc<WriteAheadLog>,
    peers: Arc<dyn wal_replicate::WalPeers>,
    dir: std::path::PathBuf,
    metrics: Option<wal_metrics::WalMetrics>,
) -> Result<Replicated> {
    let stop = tokio_util::sync::CancellationToken::new();
    let own = Some((peers.node_id(), Arc::clone(wal)));
    let store = wal_replica::ReplicaStore::open(dir, own, stop.clone()).await?;
    tokio::spawn(Arc::clone(&store).janitor(Arc::clone(client), metrics.clone()));
    Ok((wal_replicate::Replication::new(peers, stop, metrics), store))
}

/// A condition that always holds.
fn always() -> tokio::sync::watch::Receiver<bool> {
    tokio::sync::watch::channel(true).1
}

/// A described topic: the Kafka view plus the gateway's document.
#[derive(Debug, Clone)]
pub(crate) struct TopicInfo {
    pub(crate) meta: TopicMeta,
    pub(crate) doc: GatewayMeta,
    /// True when the document is stored in the filer (false: derived).
    pub(crate) stored: bool,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) client: Arc<SmqClient>,
    topics: Mutex<HashMap<String, (Instant, Arc<TopicInfo>)>>,
    partitions: Mutex<HashMap<TopicPartition, Arc<PartitionState>>>,
    /// Bytes held by all partitions' read-ahead slots.
    read_ahead_budget: read_ahead::Budget,
    /// The write-ahead log acks=all answers from, when enabled.
    pub(crate) wal: Option<Arc<WriteAheadLog>>,
    pub(crate) wal_metrics: Option<wal_metrics::WalMetrics>,
    /// Whether new batches go to the write-ahead log ([`SeaweedOptions::wal_only_while`]).
    pub(crate) wal_takes: tokio::sync::watch::Receiver<bool>,
    /// Identifies the current partition leadership (the cluster's live members); a change means
    /// another gateway may have written any partition ([`SeaweedStorage::follow_leadership`]).
    pub(crate) leadership: std::sync::OnceLock<Leadership>,
    /// Sending WAL entries to peers, when replicated.
    pub(crate) replication: Option<Arc<wal_replicate::Replication>>,
    /// Copies of other gateways' WAL entries, when replicated.
    pub(crate) replicas: Option<Arc<wal_replica::ReplicaStore>>,
    /// This value, for the background tasks it starts.
    me: std::sync::Weak<Inner>,
}

/// Kafka storage on SeaweedMQ. Cheap to clone.
#[derive(Debug, Clone)]
pub struct SeaweedStorage {
    pub(crate) inner: Arc<Inner>,
}

impl SeaweedStorage {
    /// Connects to the cluster and checks that a balancer answers.
    ///
    /// # Errors
    /// [`StorageError::InvalidConfig`] without masters and brokers; [`StorageError::Io`] when
    /// the cluster cannot be reached.
    pub async fn connect(options: SeaweedOptions) -> Result<Self> {
        if options.masters.is_empty() && options.brokers.is_empty() {
            return Err(StorageError::InvalidConfig(
                "seaweedmq needs masters or brokers".into(),
            ));
        }
        let seeds = Seeds {
            masters: options.masters,
            brokers: options.brokers,
            filer: options.filer,
        };
        let client = Arc::new(SmqClient::new(seeds));
        client
            .discovery()
            .balancer()
            .await
            .map_err(|e| e.into_storage("balancer"))?;
        let wal = match options.wal_dir {
            Some(dir) => {
                let cancel = tokio_util::sync::CancellationToken::new();
                Some(Arc::new(WriteAheadLog::open(dir, &cancel).await?))
            }
            None => None,
        };
        let takes = options.wal_only_while.unwrap_or_else(always);
        let repl = match (options.wal_replication, &wal) {
            (Some((peers, dir)), Some(wal)) => {
                Some(replication(&client, wal, peers, dir, options.wal_metrics.clone()).await?)
            }
            _ => None,
        };
        let storage = Self::build(client, wal, options.wal_metrics, takes, repl, options.leadership);
        Ok(storage)
    }

    /// Makes `leadership` (a fingerprint of the cluster's live members, which partition leaders
    /// are a hash over) part of every append: when it changed since a partition's last append,
    /// another gateway may have written the partition meanwhile, so its publish stream and
    /// idempotent-producer table are rebuilt (from the broker's offsets, the write-ahead-log
    /// copies and the stored envelopes) first. Set once.
    pub fn follow_leadership(&self, leadership: Leadership) {
        let _ = self.inner.leadership.set(leadership);
    }

    /// The peer service storing other gateways' WAL copies, when the WAL is replicated.
    pub fn replica_service(&self) -> Option<wal_replica::ReplicaService> {
        self.inner.replicas.clone().map(wal_replica::ReplicaService::new)
    }

    /// [`SeaweedStorage::with_wal`], replicated through `peers` with copies under `dir`.
    ///
    /// # Errors
    /// I/O errors opening the copies.
    pub async fn with_replicated_wal(
        client: Arc<SmqClient>,
        wal: Arc<WriteAheadLog>,
        peers: Arc<dyn wal_replicate::WalPeers>,
        dir: std::path::PathBuf,
    ) -> Result<Self> {
        let repl = replication(&client, &wal, peers, dir, None).await?;
        Ok(Self::build(client, Some(wal), None, always(), Some(repl), None))
    }

    /// Waits (at most `deadline`) until SeaweedMQ has flushed and checkpointed everything the
    /// write-ahead log holds. Run before another gateway may take partitions over while this
    /// one answered acks=all from its own copy.
    ///
    /// # Errors
    /// [`StorageError::Io`] naming how many partitions were not flushed in time.
    pub async fn drain_write_ahead_log(&self, deadline: Duration) -> Result<()> {
        match self.inner.drain_wal(deadline).await? {
            0 => Ok(()),
            left => Err(StorageError::Io(std::io::Error::other(format!(
                "SeaweedMQ has not flushed {left} partitions' acknowledged records yet; retry in a few seconds"
            )))),
        }
    }

    /// A backend over an existing client (nothing is contacted), without a write-ahead log.
    pub fn with_client(client: Arc<SmqClient>) -> Self {
        Self::build(client, None, None, always(), None, None)
    }

    /// A backend over an existing client answering acks=all from `wal`; keepers start for the
    /// WAL's partitions that hold entries (recovery after a gateway restart).
    pub fn with_wal(
        client: Arc<SmqClient>,
        wal: Arc<WriteAheadLog>,
        metrics: Option<wal_metrics::WalMetrics>,
    ) -> Self {
        Self::build(client, Some(wal), metrics, always(), None, None)
    }

    /// [`SeaweedStorage::with_wal`] taking new batches into the WAL only while `takes` reads
    /// `true` ([`SeaweedOptions::wal_only_while`]).
    pub fn with_wal_while(
        client: Arc<SmqClient>,
        wal: Arc<WriteAheadLog>,
        takes: tokio::sync::watch::Receiver<bool>,
    ) -> Self {
        Self::build(client, Some(wal), None, takes, None, None)
    }

    fn build(
        client: Arc<SmqClient>,
        wal: Option<Arc<WriteAheadLog>>,
        wal_metrics: Option<wal_metrics::WalMetrics>,
        wal_takes: tokio::sync::watch::Receiver<bool>,
        repl: Option<Replicated>,
        leadership: Option<Leadership>,
    ) -> Self {
        let (replication, replicas) = repl.unzip();
        let inner = Arc::new_cyclic(|me| Inner {
            client,
            topics: Mutex::new(HashMap::new()),
            partitions: Mutex::new(HashMap::new()),
            read_ahead_budget: read_ahead::Budget::default(),
            wal,
            wal_metrics,
            wal_takes,
            leadership: leadership.map(std::sync::OnceLock::from).unwrap_or_default(),
            replication,
            replicas,
            me: me.clone(),
        });
        if tokio::runtime::Handle::try_current().is_ok() {
            wal_sync::keep_recovered(&inner);
            if let (Some(_), Some(metrics)) = (&inner.wal, inner.wal_metrics.clone()) {
                let mut takes = inner.wal_takes.clone();
                tokio::spawn(async move {
                    loop {
                        metrics.answering(*takes.borrow_and_update());
                        if takes.changed().await.is_err() {
                            return;
                        }
                    }
                });
            }
        }
        Self { inner }
    }

    /// The underlying SMQ client.
    pub fn client(&self) -> &Arc<SmqClient> {
        &self.inner.client
    }
}

impl Inner {
    /// The cached description (younger than [`TOPIC_TTL`]) of the topic with this id.
    pub(crate) fn cached_topic_id(&self, id: uuid::Uuid) -> Option<TopicMeta> {
        self.topics
            .lock()
            .values()
            .find(|(at, info)| info.meta.id == id && at.elapsed() < TOPIC_TTL)
            .map(|(_, info)| info.meta.clone())
    }

    /// The described topic, cached for [`TOPIC_TTL`]; `None` when it does not exist.
    pub(crate) async fn topic(&self, name: &str, fresh: bool) -> Result<Option<Arc<TopicInfo>>> {
        // Every data and admin path describes its topic here before building a filer path or an
        // SMQ topic from the name: "..", "/" and the like never reach the filer.
        crate::storage::validate_topic_name(name)?;
        if !fresh {
            if let Some((at, info)) = self.topics.lock().get(name) {
                if at.elapsed() < TOPIC_TTL {
                    return Ok(Some(Arc::clone(info)));
                }
            }
        }
        let Some(conf) = self
            .client
            .topic_configuration(name)
            .await
            .map_err(|e| e.into_storage(name))?
        else {
            self.topics.lock().remove(name);
            return Ok(None);
        };
        let partitions = if conf.partition_count > 0 {
            conf.partition_count
        } else {
            i32::try_from(conf.broker_partition_assignments.len()).unwrap_or(0)
        };
        let (doc, stored) = match self.client.kv_get(&meta::kv_key(name)).await {
            Ok(Some(bytes)) => match serde_json::from_slice::<GatewayMeta>(&bytes) {
                Ok(doc) => (doc, true),
                Err(e) => {
                    tracing::warn!(topic = name, error = %e, "unreadable gateway topic document; using defaults");
                    (
                        GatewayMeta::derived(name, conf.created_at_ns, conf.retention.as_ref()),
                        false,
                    )
                }
            },
            Ok(None) => (
                GatewayMeta::derived(name, conf.created_at_ns, conf.retention.as_ref()),
                false,
            ),
            Err(e) if e.kind() == SmqErrorKind::Unavailable && !self.client.discovery().has_masters() => (
                GatewayMeta::derived(name, conf.created_at_ns, conf.retention.as_ref()),
                false,
            ),
            Err(e) => return Err(e.into_storage(name)),
        };
        let meta = TopicMeta {
            name: name.into(),
            id: doc.id,
            partitions,
            config: doc.config.clone(),
        };
        let info = Arc::new(TopicInfo { meta, doc, stored });
        self.topics
            .lock()
            .insert(name.to_string(), (Instant::now(), Arc::clone(&info)));
        Ok(Some(info))
    }

    /// The described topic, or UNKNOWN_TOPIC_OR_PARTITION when it or the partition is missing.
    pub(crate) async fn partition_of(&self, tp: &TopicPartition) -> Result<Arc<TopicInfo>> {
        let info = self
            .topic(&tp.topic, false)
            .await?
            .ok_or_else(|| StorageError::UnknownTopicOrPartition(tp.to_string()))?;
        if tp.partition < 0 || tp.partition >= info.meta.partitions {
            return Err(StorageError::UnknownTopicOrPartition(tp.to_string()));
        }
        Ok(info)
    }

    /// Stores a topic's document and refreshes the cache.
    pub(crate) async fn store_doc(&self, name: &str, doc: &GatewayMeta) -> Result<()> {
        let json = serde_json::to_vec(doc).map_err(|e| StorageError::Io(std::io::Error::other(e)))?;
        self.client
            .kv_put(&meta::kv_key(name), json.into())
            .await
            .map_err(|e| e.into_storage(name))?;
        self.topics.lock().remove(name);
        Ok(())
    }

    pub(crate) fn forget_topic(&self, name: &str) {
        self.topics.lock().remove(name);
        self.partitions.lock().retain(|tp, state| {
            let keep = tp.topic.as_ref() != name;
            if !keep {
                state.read_ahead.clear(&self.read_ahead_budget);
            }
            keep
        });
        self.client.forget_layout(name);
    }

    pub(crate) fn cache_topic(&self, info: TopicInfo) {
        self.topics
            .lock()
            .insert(info.meta.name.to_string(), (Instant::now(), Arc::new(info)));
    }

    pub(crate) fn partition_state(&self, tp: &TopicPartition) -> Arc<PartitionState> {
        Arc::clone(self.partitions.lock().entry(tp.clone()).or_default())
    }
}
