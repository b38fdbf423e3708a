//! The SeaweedMQ ceiling: the gateway crate's own SMQ client used directly, with no Kafka
//! protocol in between. Produce streams raw payloads on one pipelined `PublishMessage` stream
//! per partition ([`Publisher`], the same code the gateway's produce path uses); consume reads
//! every partition back with `FetchMessage` ([`SmqClient::fetch`]).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_gateway::storage::seaweedmq::client::smq_topic;
use kafka_gateway::storage::seaweedmq::pb::messaging_pb::DataMessage;
use kafka_gateway::storage::seaweedmq::publish::Publisher;
use kafka_gateway::storage::seaweedmq::{Seeds, SmqClient, SmqError};
use tokio::sync::oneshot;

use crate::produce::payload;

/// Why a direct SMQ phase failed.
#[derive(Debug, thiserror::Error)]
pub enum SmqBenchError {
    /// The SMQ client reported an error.
    #[error("{what}: {source}")]
    Smq {
        /// The step that failed.
        what: String,
        /// The client's error.
        #[source]
        source: SmqError,
    },
    /// A publish stream ended before acknowledging a batch.
    #[error("publish stream of partition {0} dropped a batch")]
    Dropped(i32),
    /// The topic's layout lacks a partition.
    #[error("topic {topic} has no partition {partition}")]
    MissingPartition {
        /// The topic.
        topic: String,
        /// The partition asked for.
        partition: i32,
    },
    /// A consume made no progress for too long.
    #[error("partition {partition} stalled at offset {offset} of {target}")]
    Stalled {
        /// The partition.
        partition: i32,
        /// Next offset to read.
        offset: i64,
        /// Offset it had to reach.
        target: i64,
    },
    /// A partition task panicked or was cancelled.
    #[error("partition task failed: {0}")]
    Task(String),
}

type Result<T> = std::result::Result<T, SmqBenchError>;

fn smq(what: impl Into<String>) -> impl FnOnce(SmqError) -> SmqBenchError {
    let what = what.into();
    move |source| SmqBenchError::Smq { what, source }
}

/// A client for the cluster behind `masters` (`host:httpPort`, gRPC = +10000).
pub fn client(masters: &[String]) -> Arc<SmqClient> {
    Arc::new(SmqClient::new(Seeds {
        masters: masters.to_vec(),
        brokers: Vec::new(),
        filer: None,
    }))
}

/// Creates SMQ topic `kafka/<topic>` with `partitions` partitions (idempotent for the same count),
/// which makes it a Kafka topic for both gateways.
pub async fn create_topic(client: &SmqClient, topic: &str, partitions: i32) -> Result<()> {
    client
        .configure_topic(topic, partitions, None)
        .await
        .map_err(smq(format!("configure topic {topic}")))?;
    Ok(())
}

/// Settings of a direct produce.
#[derive(Debug, Clone)]
pub struct PublishSpec {
    /// Payload bytes per message (no key).
    pub message_size: usize,
    /// Messages in total, spread evenly over the partitions.
    pub messages: u64,
    /// Messages per submitted batch.
    pub batch: usize,
    /// Batches submitted and not yet acknowledged, per partition.
    pub in_flight: usize,
}

/// Outcome of a direct produce.
#[derive(Debug, Clone)]
pub struct PublishStats {
    /// Messages acknowledged.
    pub messages: u64,
    /// Payload bytes acknowledged.
    pub bytes: u64,
    /// From the first submit to the last acknowledgement.
    pub elapsed: Duration,
    /// Submit-to-ack latency of each batch, microseconds, sorted ascending.
    pub batch_latencies_us: Vec<u32>,
}

/// One open publish stream per partition of a topic, in Kafka partition order. Keeping them open
/// keeps the broker's partitions loaded: the broker unloads a partition without publishers or
/// subscribers, and FetchMessage on a reloaded partition can miss data (reference §5.6). The
/// gateway keeps its streams open the same way.
pub async fn open_publishers(client: &SmqClient, topic: &str) -> Result<Vec<Arc<Publisher>>> {
    let layout = client
        .layout(topic, true)
        .await
        .map_err(smq(format!("look up {topic}")))?;
    let mut publishers = Vec::with_capacity(layout.partitions.len());
    for index in 0..layout.partitions.len() {
        let index = i32::try_from(index).unwrap_or(i32::MAX);
        let (partition, leader) = layout.get(index).ok_or_else(|| SmqBenchError::MissingPartition {
            topic: topic.to_string(),
            partition: index,
        })?;
        let publisher = Publisher::open(
            client.discovery().channels(),
            leader,
            smq_topic(topic),
            partition.clone(),
        )
        .await
        .map_err(smq(format!("open publish stream of partition {index}")))?;
        publishers.push(Arc::new(publisher));
    }
    Ok(publishers)
}

/// Publishes per `spec` on every partition at once and waits for every acknowledgement.
pub async fn publish(publishers: &[Arc<Publisher>], spec: &PublishSpec) -> Result<PublishStats> {
    let partitions = publishers.len();
    let value = Bytes::from(payload(spec.message_size));
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(partitions);
    let per_partition = spec.messages / partitions.max(1) as u64;
    let extra = spec.messages % partitions.max(1) as u64;
    for (index, publisher) in publishers.iter().enumerate() {
        let publisher = Arc::clone(publisher);
        let count = per_partition + u64::from((index as u64) < extra);
        let index = i32::try_from(index).unwrap_or(i32::MAX);
        let value = value.clone();
        let (batch, in_flight) = (spec.batch.max(1), spec.in_flight.max(1));
        tasks.push(tokio::spawn(async move {
            publish_partition(index, publisher, value, count, batch, in_flight, start).await
        }));
    }
    let mut latencies = Vec::new();
    let mut messages = 0;
    for task in tasks {
        let (sent, lat) = task.await.map_err(|e| SmqBenchError::Task(e.to_string()))??;
        messages += sent;
        latencies.extend(lat);
    }
    let elapsed = start.elapsed();
    latencies.sort_unstable();
    Ok(PublishStats {
        messages,
        bytes: messages * spec.message_size as u64,
        elapsed,
        batch_latencies_us: latencies,
    })
}

type AckReceiver = oneshot::Receiver<
    kafka_gateway::storage::seaweedmq::error::SmqResult<kafka_gateway::storage::seaweedmq::publish::Acked>,
>;

async fn publish_partition(
    index: i32,
    publisher: Arc<Publisher>,
    value: Bytes,
    count: u64,
    batch: usize,
    in_flight: usize,
    start: Instant,
) -> Result<(u64, Vec<u32>)> {
    let mut pending: VecDeque<(Duration, u64, AckReceiver)> = VecDeque::with_capacity(in_flight);
    let mut latencies = Vec::new();
    let (mut submitted, mut acked) = (0u64, 0u64);
    while submitted < count || !pending.is_empty() {
        if submitted < count && pending.len() < in_flight {
            let n = (count - submitted).min(batch as u64);
            let messages = (0..n)
                .map(|_| DataMessage {
                    key: Bytes::new(),
                    value: value.clone(),
                    ts_ns: 0,
                })
                .collect();
            let rx = publisher
                .submit(messages)
                .await
                .map_err(smq(format!("publish to partition {index}")))?;
            pending.push_back((start.elapsed(), n, rx));
            submitted += n;
            continue;
        }
        let Some((sent_at, n, rx)) = pending.pop_front() else {
            break;
        };
        rx.await
            .map_err(|_| SmqBenchError::Dropped(index))?
            .map_err(smq(format!("publish to partition {index}")))?;
        let micros = (start.elapsed() - sent_at).as_micros();
        latencies.push(u32::try_from(micros).unwrap_or(u32::MAX));
        acked += n;
    }
    Ok((acked, latencies))
}

/// Outcome of a direct consume.
#[derive(Debug, Clone, Copy)]
pub struct FetchStats {
    /// Messages read.
    pub messages: u64,
    /// Value bytes read.
    pub bytes: u64,
    /// From the first fetch to the last.
    pub elapsed: Duration,
    /// Reads that FetchMessage answered with nothing below the high watermark, so a
    /// SubscribeMessage read them instead.
    pub fallbacks: u64,
}

/// Reads every partition of `topic` from its start to its high watermark the way the gateway
/// does (`FetchMessage`, and a `SubscribeMessage` read where FetchMessage returns nothing below
/// the high watermark), all partitions at once. Gives up on a partition that returns nothing
/// for `stall_timeout`.
pub async fn fetch_all(
    client: Arc<SmqClient>,
    topic: &str,
    max_bytes: i32,
    stall_timeout: Duration,
) -> Result<FetchStats> {
    let layout = client
        .layout(topic, true)
        .await
        .map_err(smq(format!("look up {topic}")))?;
    let mut targets = Vec::new();
    for index in 0..layout.partitions.len() {
        let index = i32::try_from(index).unwrap_or(i32::MAX);
        let range = client
            .range_info(topic, index)
            .await
            .map_err(smq(format!("range of partition {index}")))?;
        targets.push((index, range.earliest, range.high_watermark));
    }
    let start = Instant::now();
    let mut tasks = Vec::new();
    for (index, from, to) in targets {
        let client = Arc::clone(&client);
        let topic = topic.to_string();
        tasks.push(tokio::spawn(async move {
            let (mut offset, mut messages, mut bytes, mut fallbacks) = (from, 0u64, 0u64, 0u64);
            let mut progress = Instant::now();
            while offset < to {
                let fetched = client
                    .fetch(&topic, index, offset, max_bytes, 10_000)
                    .await
                    .map_err(smq(format!("fetch partition {index} at {offset}")))?;
                let batch = if fetched.messages.is_empty() {
                    // The gateway's own fallback (reference §5.6): FetchMessage may return
                    // nothing below the high watermark; a short subscription reads it.
                    fallbacks += 1;
                    let want = usize::try_from((to - offset).min(1000)).unwrap_or(1000);
                    client
                        .subscribe_read(&topic, index, offset, want)
                        .await
                        .map_err(smq(format!("subscribe partition {index} at {offset}")))?
                } else {
                    fetched.messages
                };
                if batch.is_empty() {
                    if progress.elapsed() > stall_timeout {
                        return Err(SmqBenchError::Stalled {
                            partition: index,
                            offset,
                            target: to,
                        });
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
                progress = Instant::now();
                offset += batch.len() as i64;
                messages += batch.len() as u64;
                bytes += batch.iter().map(|m| m.value.len() as u64).sum::<u64>();
            }
            Ok::<_, SmqBenchError>((messages, bytes, fallbacks))
        }));
    }
    let (mut messages, mut bytes, mut fallbacks) = (0, 0, 0);
    for task in tasks {
        let (m, b, f) = task.await.map_err(|e| SmqBenchError::Task(e.to_string()))??;
        messages += m;
        bytes += b;
        fallbacks += f;
    }
    Ok(FetchStats {
        messages,
        bytes,
        elapsed: start.elapsed(),
        fallbacks,
    })
}
