//! Resource caps: how many topics, and how many partitions across topics, the gateway holds.
//!
//! Every partition costs descriptors, memory and background work in the backend (segment files
//! and indexes in the embedded log, brokers' assignments in SeaweedMQ), so an unbounded client
//! can exhaust the node by creating them. CreateTopics, CreatePartitions and Metadata
//! auto-creation check the caps before creating, and refuse as Redpanda and Confluent do: the
//! partition cap with `INVALID_PARTITIONS` (Redpanda's answer when a create would exceed its
//! partition limits) and the topic cap with `POLICY_VIOLATION` (a create refused by broker
//! policy); the message names the limit and its flag.
//!
//! Creations are serialized through [`ResourceCaps`] so concurrent requests cannot together pass
//! the caps. Usage comes from [`Storage::list_topics`](crate::storage::Storage::list_topics),
//! cached for [`USAGE_TTL`] and updated by each creation here (deletions drop the cache), so a
//! burst of creations does not list the backend each time. With several gateways on one
//! SeaweedMQ each node checks its own view: another node's creations within the TTL can make the
//! total overshoot by what they created.

use std::time::{Duration, Instant};

use kafka_protocol::ResponseError;
use tokio::sync::{Mutex, MutexGuard};

use super::Context;

/// A refusal: the Kafka error and its message.
pub(super) type Failure = (ResponseError, String);

/// How long a listed usage is trusted (creations through this node keep it current).
pub const USAGE_TTL: Duration = Duration::from_secs(5);

/// The configured caps and the serialization point of topic and partition creation.
#[derive(Debug)]
pub struct ResourceCaps {
    max_topics: usize,
    max_partitions: usize,
    usage: Mutex<Option<(Instant, Usage)>>,
}

/// Topics and partitions held.
#[derive(Debug, Clone, Copy)]
struct Usage {
    topics: usize,
    partitions: usize,
}

impl ResourceCaps {
    /// Caps of `max_topics` topics and `max_partitions` partitions across topics.
    pub fn new(max_topics: usize, max_partitions: usize) -> Self {
        Self {
            max_topics,
            max_partitions,
            usage: Mutex::new(None),
        }
    }

    /// Forgets the cached usage (after topics were deleted).
    pub async fn forget(&self) {
        *self.usage.lock().await = None;
    }

    /// Takes the creation lock and the current usage. Hold the returned guard across the check
    /// and the creation.
    pub(super) async fn begin(&self, ctx: &Context) -> Result<Creation<'_>, Failure> {
        let mut guard = self.usage.lock().await;
        let fresh = matches!(&*guard, Some((at, _)) if at.elapsed() < USAGE_TTL);
        if !fresh {
            let topics = ctx
                .storage
                .list_topics()
                .await
                .map_err(|e| (e.response_error(), e.to_string()))?;
            let usage = Usage {
                topics: topics.len(),
                partitions: topics
                    .iter()
                    .map(|t| usize::try_from(t.partitions).unwrap_or(0))
                    .sum(),
            };
            *guard = Some((Instant::now(), usage));
        }
        Ok(Creation { caps: self, guard })
    }
}

/// Creation under the lock of [`ResourceCaps`].
pub(super) struct Creation<'a> {
    caps: &'a ResourceCaps,
    guard: MutexGuard<'a, Option<(Instant, Usage)>>,
}

impl Creation<'_> {
    fn usage(&mut self) -> &mut Usage {
        &mut self.guard.as_mut().expect("usage is set by begin").1
    }

    /// Checks that `topics` more topics with `partitions` more partitions stay within the caps.
    pub(super) fn admit(&mut self, topics: usize, partitions: usize) -> Result<(), Failure> {
        let (max_topics, max_partitions) = (self.caps.max_topics, self.caps.max_partitions);
        let usage = *self.usage();
        if topics > 0 && usage.topics + topics > max_topics {
            return Err((
                ResponseError::PolicyViolation,
                format!(
                    "topic limit reached: the gateway holds {} topics and --max-topics is {max_topics}",
                    usage.topics
                ),
            ));
        }
        if usage.partitions + partitions > max_partitions {
            return Err((
                ResponseError::InvalidPartitions,
                format!(
                    "partition limit reached: {partitions} more partitions would bring the total to {}, \
                     above --max-partitions {max_partitions}",
                    usage.partitions + partitions
                ),
            ));
        }
        Ok(())
    }

    /// Counts a successful creation.
    pub(super) fn created(&mut self, topics: usize, partitions: usize) {
        let usage = self.usage();
        usage.topics += topics;
        usage.partitions += partitions;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::TopicConfig;

    #[tokio::test]
    async fn caps_count_existing_topics_and_creations_here() {
        let t = super::super::test_support::context().await;
        t.ctx
            .storage
            .create_topic("a", 3, TopicConfig::default(), false)
            .await
            .unwrap();
        let caps = ResourceCaps::new(2, 5);
        let mut c = caps.begin(&t.ctx).await.unwrap();
        c.admit(1, 2).expect("2 topics, 5 partitions: at both caps");
        let (e, msg) = c.admit(1, 3).unwrap_err();
        assert_eq!(e, ResponseError::InvalidPartitions);
        assert!(
            msg.contains("--max-partitions 5") && msg.contains("total to 6"),
            "{msg}"
        );
        c.created(1, 2);
        let (e, msg) = c.admit(1, 0).unwrap_err();
        assert_eq!(e, ResponseError::PolicyViolation);
        assert!(msg.contains("--max-topics is 2"), "{msg}");
        assert!(c.admit(0, 1).is_err(), "no partition left");
        c.admit(0, 0).expect("nothing more is fine");
        drop(c);
        caps.forget().await;
        let mut c = caps.begin(&t.ctx).await.unwrap();
        c.admit(1, 2)
            .expect("re-listed: topic b was never really created");
    }

    /// The caps through the handlers: CreateTopics, CreatePartitions and Metadata auto-creation
    /// are refused past them with the Kafka error and a message naming the flag, and succeed
    /// under them.
    #[tokio::test]
    async fn create_paths_refuse_past_the_caps_and_succeed_under_them() {
        use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
        use kafka_protocol::messages::create_topics_request::CreatableTopic;
        use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
        use kafka_protocol::messages::{
            CreatePartitionsRequest, CreateTopicsRequest, MetadataRequest, TopicName,
        };
        use kafka_protocol::protocol::StrBytes;

        let mut t = super::super::test_support::context().await;
        t.ctx.caps = ResourceCaps::new(2, 5);
        let ctx = &t.ctx;
        let name = |n: &str| TopicName(StrBytes::from_string(n.to_owned()));
        let create = |topics: &[(&str, i32)]| {
            CreateTopicsRequest::default().with_topics(
                topics
                    .iter()
                    .map(|(n, p)| {
                        CreatableTopic::default()
                            .with_name(name(n))
                            .with_num_partitions(*p)
                            .with_replication_factor(1)
                    })
                    .collect(),
            )
        };
        let codes = |r: &kafka_protocol::messages::CreateTopicsResponse| {
            r.topics.iter().map(|t| t.error_code).collect::<Vec<_>>()
        };

        let r = super::super::create_topics::handle(ctx, 7, create(&[("a", 3), ("b", 3)])).await;
        assert_eq!(
            codes(&r),
            vec![0, ResponseError::InvalidPartitions.code()],
            "{r:?}"
        );
        let msg = r.topics[1]
            .error_message
            .as_deref()
            .unwrap_or_default()
            .to_string();
        assert!(msg.contains("--max-partitions 5"), "{msg}");
        assert!(ctx.storage.describe_topic("b").await.unwrap().is_none());

        let r = super::super::create_topics::handle(ctx, 7, create(&[("b", 2), ("c", 1)])).await;
        assert_eq!(codes(&r), vec![0, ResponseError::PolicyViolation.code()], "{r:?}");
        let msg = r.topics[1]
            .error_message
            .as_deref()
            .unwrap_or_default()
            .to_string();
        assert!(msg.contains("--max-topics is 2"), "{msg}");
        let r = super::super::create_topics::handle(ctx, 7, create(&[("a", 1)])).await;
        assert_eq!(
            codes(&r),
            vec![ResponseError::TopicAlreadyExists.code()],
            "an existing topic stays so"
        );

        let grow = CreatePartitionsRequest::default().with_topics(vec![CreatePartitionsTopic::default()
            .with_name(name("a"))
            .with_count(4)
            .with_assignments(None)]);
        let r = super::super::create_partitions::handle(ctx, 3, grow.clone()).await;
        assert_eq!(
            r.results[0].error_code,
            ResponseError::InvalidPartitions.code(),
            "{r:?}"
        );

        let auto = MetadataRequest::default()
            .with_topics(Some(vec![
                MetadataRequestTopic::default().with_name(Some(name("auto")))
            ]))
            .with_allow_auto_topic_creation(true);
        let r = super::super::metadata::handle(ctx, "PLAINTEXT", 9, auto.clone()).await;
        assert_eq!(
            r.topics[0].error_code,
            ResponseError::PolicyViolation.code(),
            "{r:?}"
        );
        assert!(ctx.storage.describe_topic("auto").await.unwrap().is_none());

        // Under the caps again once a topic is gone.
        ctx.storage.delete_topic("b").await.unwrap();
        ctx.caps.forget().await;
        let r = super::super::create_partitions::handle(ctx, 3, grow).await;
        assert_eq!(r.results[0].error_code, 0, "{r:?}");
        assert_eq!(
            ctx.storage.describe_topic("a").await.unwrap().unwrap().partitions,
            4
        );
        let r = super::super::metadata::handle(ctx, "PLAINTEXT", 9, auto).await;
        assert_eq!(r.topics[0].error_code, 0, "{r:?}");
        assert!(ctx.storage.describe_topic("auto").await.unwrap().is_some());
    }
}
