//! Topic creation and metadata look-ups through the librdkafka admin client.

use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientConfig;

use crate::error::{BenchError, Result};

/// What happened when the topic was requested.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreateOutcome {
    /// The broker created the topic.
    Created,
    /// The topic was already there (its partition count is left as it is).
    AlreadyExisted,
}

/// Creates `topic` with `partitions` partitions (replication 1) and waits until metadata shows
/// every partition, or `timeout` passes.
pub fn create_topic(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    timeout: Duration,
) -> Result<CreateOutcome> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .map_err(BenchError::Client)?;
    let new_topic = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    let options = AdminOptions::new().operation_timeout(Some(timeout));
    let results = futures::executor::block_on(admin.create_topics([&new_topic], &options))
        .map_err(|e| BenchError::Admin(format!("create topic {topic}: {e}")))?;
    let mut outcome = CreateOutcome::Created;
    for result in results {
        match result {
            Ok(_) => {}
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => outcome = CreateOutcome::AlreadyExisted,
            Err((name, code)) => return Err(BenchError::Admin(format!("create topic {name}: {code}"))),
        }
    }
    let deadline = Instant::now() + timeout;
    loop {
        let seen = partition_count(bootstrap, topic, Duration::from_secs(5))?;
        if seen >= partitions as usize || outcome == CreateOutcome::AlreadyExisted && seen > 0 {
            return Ok(outcome);
        }
        if Instant::now() >= deadline {
            return Err(BenchError::Admin(format!(
                "topic {topic} shows {seen} of {partitions} partitions after {timeout:?}"
            )));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Number of partitions metadata reports for `topic` (0 if unknown).
pub fn partition_count(bootstrap: &str, topic: &str, timeout: Duration) -> Result<usize> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("allow.auto.create.topics", "false")
        .create()
        .map_err(BenchError::Client)?;
    let metadata = consumer
        .fetch_metadata(Some(topic), timeout)
        .map_err(|e| BenchError::Admin(format!("metadata for {topic}: {e}")))?;
    Ok(metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none())
        .map_or(0, |t| t.partitions().len()))
}
