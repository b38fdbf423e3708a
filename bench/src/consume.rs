//! The consume phase: read every stored message of a topic from offset 0 with `assign` (no group).

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use crate::error::{BenchError, Result};

/// Settings of one consume phase.
#[derive(Debug, Clone)]
pub struct ConsumeSpec {
    /// Bootstrap address.
    pub bootstrap: String,
    /// Topic to read.
    pub topic: String,
    /// Number of partitions to assign (0..partitions).
    pub partitions: usize,
    /// Messages to read; `None` reads up to the high watermarks taken before reading starts.
    /// Set it after a produce phase: some brokers (Tansu 0.6.0) report a high watermark below
    /// the offsets they have acknowledged.
    pub expected: Option<u64>,
    /// Give up when no message arrives for this long.
    pub stall_timeout: Duration,
    /// Extra librdkafka properties (`key=value`) applied last.
    pub extra: Vec<(String, String)>,
}

/// Outcome of a consume phase.
#[derive(Debug, Clone, Copy)]
pub struct ConsumeStats {
    /// Messages read.
    pub messages: u64,
    /// Payload bytes read.
    pub bytes: u64,
    /// From `assign` to the last message.
    pub elapsed: Duration,
}

fn consumer_config(spec: &ConsumeSpec) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &spec.bootstrap)
        // librdkafka's assign() needs a group handle; the group is never joined nor committed to.
        .set("group.id", format!("kafka-bench-{}", std::process::id()))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false")
        .set("fetch.wait.max.ms", "100")
        .set("fetch.max.bytes", "52428800")
        .set("max.partition.fetch.bytes", "8388608")
        .set("receive.message.max.bytes", "104857600")
        .set("queued.max.messages.kbytes", "1048576")
        .set("queued.min.messages", "1000000")
        .set("socket.receive.buffer.bytes", "4194304")
        .set("check.crcs", "false");
    for (key, value) in &spec.extra {
        config.set(key, value);
    }
    config
}

/// Reads `spec.expected` messages, or all below each partition's high watermark.
pub fn run(spec: &ConsumeSpec) -> Result<ConsumeStats> {
    let consumer: BaseConsumer = consumer_config(spec).create().map_err(BenchError::Client)?;
    let mut below_watermarks: u64 = 0;
    let mut assignment = TopicPartitionList::new();
    for partition in 0..spec.partitions as i32 {
        let (low, high) = consumer
            .fetch_watermarks(&spec.topic, partition, Duration::from_secs(10))
            .map_err(|e| BenchError::Consume(format!("watermarks of {}/{partition}: {e}", spec.topic)))?;
        below_watermarks += u64::try_from(high - low).unwrap_or(0);
        assignment
            .add_partition_offset(&spec.topic, partition, Offset::Beginning)
            .map_err(BenchError::Client)?;
    }
    let expected = spec.expected.unwrap_or(below_watermarks);
    let start = Instant::now();
    consumer.assign(&assignment).map_err(BenchError::Client)?;
    let mut messages: u64 = 0;
    let mut bytes: u64 = 0;
    let mut last_progress = Instant::now();
    while messages < expected {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(message)) => {
                messages += 1;
                bytes += message.payload_len() as u64;
                last_progress = Instant::now();
            }
            Some(Err(KafkaError::PartitionEOF(_))) => {}
            Some(Err(error)) => return Err(BenchError::Consume(error.to_string())),
            None if last_progress.elapsed() > spec.stall_timeout => {
                return Err(BenchError::Consume(format!(
                    "stalled: {messages} of {expected} messages after {:?} without progress",
                    spec.stall_timeout
                )))
            }
            None => {}
        }
    }
    Ok(ConsumeStats {
        messages,
        bytes,
        elapsed: start.elapsed(),
    })
}
