//! Topic reconciliation through the gateway crate's [`Storage`] API (the same code the gateway
//! uses for CreateTopics, CreatePartitions and AlterConfigs), over SeaweedMQ.
//!
//! Rules: missing topics are created; partitions only grow (a decrease is refused and reported);
//! configs are declarative (spec entries over Kafka defaults, so a removed key resets); topics
//! dropped from the spec are left alone unless the deletion policy is `Delete`.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use kafka_gateway::storage::seaweedmq::{SeaweedOptions, SeaweedStorage};
use kafka_gateway::storage::{Storage, StorageError, TopicConfig};
use tokio::sync::Mutex;

use crate::crd::{SeaweedMqSpec, TopicDeletionPolicy, TopicSpec, TopicState, TopicStatus};

/// Hands out a storage handle for a SeaweedMQ cluster.
#[async_trait]
pub trait TopicBackends: Send + Sync + 'static {
    /// A connected storage for the cluster at `endpoints`.
    async fn storage(&self, endpoints: &SeaweedMqSpec) -> Result<Arc<dyn Storage>, StorageError>;
}

/// [`TopicBackends`] over [`SeaweedStorage`], one cached connection per distinct endpoint set.
#[derive(Debug, Default)]
pub struct SeaweedBackends {
    cache: Mutex<HashMap<String, Arc<SeaweedStorage>>>,
}

#[async_trait]
impl TopicBackends for SeaweedBackends {
    async fn storage(&self, endpoints: &SeaweedMqSpec) -> Result<Arc<dyn Storage>, StorageError> {
        let key = endpoints.key();
        let mut cache = self.cache.lock().await;
        if let Some(storage) = cache.get(&key) {
            return Ok(Arc::clone(storage) as Arc<dyn Storage>);
        }
        let options = SeaweedOptions {
            masters: endpoints.masters.clone(),
            brokers: endpoints.brokers.clone(),
            // The operator only administers topics: no appends, so no write-ahead log.
            ..SeaweedOptions::default()
        };
        let storage = Arc::new(SeaweedStorage::connect(options).await?);
        cache.insert(key, Arc::clone(&storage));
        Ok(storage as Arc<dyn Storage>)
    }
}

/// Something notable a topic reconcile did (published as an Event).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicAction {
    /// Created with this many partitions.
    Created(String, i32),
    /// Grew from/to this many partitions.
    PartitionsIncreased(String, i32, i32),
    /// Config replaced.
    ConfigUpdated(String),
    /// A partition decrease was refused (current, requested).
    DecreaseRefused(String, i32, i32),
    /// The backend refused a partition increase (current, requested).
    IncreaseRefused(String, i32, i32),
    /// Deleted because the policy is `Delete`.
    Deleted(String),
}

impl TopicAction {
    /// The topic acted on.
    pub fn topic(&self) -> &str {
        match self {
            Self::Created(t, _)
            | Self::PartitionsIncreased(t, _, _)
            | Self::ConfigUpdated(t)
            | Self::DecreaseRefused(t, _, _)
            | Self::IncreaseRefused(t, _, _)
            | Self::Deleted(t) => t,
        }
    }
}

/// Result of reconciling all topics of one resource.
#[derive(Debug, Default)]
pub struct TopicsOutcome {
    /// Per-topic state, in spec order.
    pub statuses: Vec<TopicStatus>,
    /// What was changed or refused.
    pub actions: Vec<TopicAction>,
    /// Topics that failed with a retriable error.
    pub failed: usize,
}

fn status(name: &str, state: TopicState, partitions: Option<i32>, message: Option<String>) -> TopicStatus {
    TopicStatus {
        name: name.to_string(),
        state,
        partitions,
        message,
    }
}

/// Reconciles one topic; `Err` only for retriable storage failures.
async fn reconcile_one(
    storage: &dyn Storage,
    topic: &TopicSpec,
    actions: &mut Vec<TopicAction>,
) -> Result<TopicStatus, StorageError> {
    let name = topic.name.as_str();
    let config =
        match TopicConfig::from_entries(topic.config.iter().map(|(k, v)| (k.as_str(), Some(v.as_str())))) {
            Ok(config) => config,
            Err(e) => return Ok(status(name, TopicState::Refused, None, Some(e.to_string()))),
        };
    let Some(meta) = storage.describe_topic(name).await? else {
        return match storage.create_topic(name, topic.partitions, config, false).await {
            Ok(meta) => {
                actions.push(TopicAction::Created(name.into(), meta.partitions));
                Ok(status(name, TopicState::Ready, Some(meta.partitions), None))
            }
            Err(
                e @ (StorageError::InvalidTopic(_)
                | StorageError::InvalidConfig(_)
                | StorageError::InvalidPartitions(_)),
            ) => Ok(status(name, TopicState::Refused, None, Some(e.to_string()))),
            Err(e) => Err(e),
        };
    };
    if meta.config != config {
        storage.alter_topic_config(name, config, false).await?;
        actions.push(TopicAction::ConfigUpdated(name.into()));
    }
    if topic.partitions < meta.partitions {
        actions.push(TopicAction::DecreaseRefused(
            name.into(),
            meta.partitions,
            topic.partitions,
        ));
        let message = format!(
            "partition count cannot decrease (has {}, spec asks {}); the topic keeps {}",
            meta.partitions, topic.partitions, meta.partitions
        );
        return Ok(status(
            name,
            TopicState::Refused,
            Some(meta.partitions),
            Some(message),
        ));
    }
    if topic.partitions > meta.partitions {
        return match storage.create_partitions(name, topic.partitions, false).await {
            Ok(grown) => {
                actions.push(TopicAction::PartitionsIncreased(
                    name.into(),
                    meta.partitions,
                    grown.partitions,
                ));
                Ok(status(name, TopicState::Ready, Some(grown.partitions), None))
            }
            // The backend cannot grow this topic without losing data: refused, not retried.
            Err(e @ (StorageError::Unsupported(_) | StorageError::InvalidPartitions(_))) => {
                actions.push(TopicAction::IncreaseRefused(
                    name.into(),
                    meta.partitions,
                    topic.partitions,
                ));
                Ok(status(
                    name,
                    TopicState::Refused,
                    Some(meta.partitions),
                    Some(e.to_string()),
                ))
            }
            Err(e) => Err(e),
        };
    }
    Ok(status(name, TopicState::Ready, Some(meta.partitions), None))
}

/// Reconciles the declared topics against `storage`. `previous` (the last status) tells which
/// topics this resource managed before, for the `Delete` policy.
pub async fn reconcile(
    storage: &dyn Storage,
    topics: &[TopicSpec],
    policy: TopicDeletionPolicy,
    previous: &[TopicStatus],
) -> TopicsOutcome {
    let mut outcome = TopicsOutcome::default();
    for topic in topics {
        match reconcile_one(storage, topic, &mut outcome.actions).await {
            Ok(s) => outcome.statuses.push(s),
            Err(e) => {
                tracing::warn!(topic = %topic.name, error = %e, "topic reconcile failed");
                outcome.failed += 1;
                outcome
                    .statuses
                    .push(status(&topic.name, TopicState::Error, None, Some(e.to_string())));
            }
        }
    }
    if policy == TopicDeletionPolicy::Delete {
        for old in previous
            .iter()
            .filter(|old| !topics.iter().any(|t| t.name == old.name))
        {
            match storage.delete_topic(&old.name).await {
                Ok(_) | Err(StorageError::UnknownTopicOrPartition(_)) => {
                    outcome.actions.push(TopicAction::Deleted(old.name.clone()));
                }
                Err(e) => {
                    tracing::warn!(topic = %old.name, error = %e, "topic delete failed");
                    outcome.failed += 1;
                    outcome.statuses.push(status(
                        &old.name,
                        TopicState::Error,
                        old.partitions,
                        Some(format!("delete: {e}")),
                    ));
                }
            }
        }
    }
    outcome
}

/// Every declared topic marked failed because the storage could not be reached.
pub fn unreachable(topics: &[TopicSpec], error: &StorageError) -> TopicsOutcome {
    TopicsOutcome {
        statuses: topics
            .iter()
            .map(|t| {
                status(
                    &t.name,
                    TopicState::Error,
                    None,
                    Some(format!("seaweedmq unreachable: {error}")),
                )
            })
            .collect(),
        actions: Vec::new(),
        failed: topics.len(),
    }
}

/// Deletes the declared topics (cleanup of a resource whose policy is `Delete`).
///
/// # Errors
/// The first storage error other than "unknown topic".
pub async fn delete_all(storage: &dyn Storage, topics: &[TopicSpec]) -> Result<usize, StorageError> {
    let mut deleted = 0;
    for topic in topics {
        match storage.delete_topic(&topic.name).await {
            Ok(_) => deleted += 1,
            Err(StorageError::UnknownTopicOrPartition(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(deleted)
}

#[cfg(test)]
#[path = "topics_tests.rs"]
mod tests;
