//! CreateTopics: partitions (or the broker default), or manual assignments naming each
//! partition's leader ([`super::assignments`]), replication factor 1, configs, validate_only, and
//! Kafka's per-topic errors with messages.

use std::collections::HashMap;

use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::create_topics_response::{CreatableTopicConfigs, CreatableTopicResult};
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use tracing::{debug, info};

use super::caps::Creation;
use super::describe_configs::{SOURCE_DEFAULT, SOURCE_DYNAMIC_TOPIC};
use super::Context;
use crate::storage::{TopicConfig, TopicMeta};

/// A per-topic failure: the Kafka error and its message.
type Failure = (ResponseError, String);

pub(super) async fn handle(ctx: &Context, version: i16, req: CreateTopicsRequest) -> CreateTopicsResponse {
    let mut seen: HashMap<String, usize> = HashMap::new();
    for t in &req.topics {
        *seen.entry(t.name.0.to_string()).or_default() += 1;
    }
    let mut results = Vec::with_capacity(req.topics.len());
    // Held for the whole request: the caps see every creation before the next check.
    let mut creation = if req.topics.is_empty() {
        None
    } else {
        Some(ctx.caps.begin(ctx).await)
    };
    for topic in req.topics {
        let name = topic.name.0.to_string();
        let result = if seen.get(&name).copied().unwrap_or(0) > 1 {
            Err((
                ResponseError::InvalidRequest,
                format!("topic {name} is listed more than once in the request"),
            ))
        } else {
            match creation.as_mut() {
                Some(Ok(creation)) => create_one(ctx, creation, &name, topic, req.validate_only).await,
                Some(Err(failure)) => Err(failure.clone()),
                None => unreachable!("a topic was listed"),
            }
        };
        let entry = CreatableTopicResult::default().with_name(TopicName(StrBytes::from_string(name.clone())));
        results.push(match result {
            Ok(meta) => success(entry, &meta, version),
            Err((error, message)) => {
                debug!(topic = %name, error = ?error, reason = %message, "create topic refused");
                entry
                    .with_error_code(error.code())
                    .with_error_message(Some(StrBytes::from_string(message)))
                    .with_configs(None)
            }
        });
    }
    CreateTopicsResponse::default().with_topics(results)
}

/// The partition count of a topic created with manual assignments: Kafka requires
/// num_partitions and replication_factor to be -1 and one assignment per partition
/// ([`super::assignments`]).
fn manual_partitions(ctx: &Context, name: &str, topic: &CreatableTopic) -> Result<i32, Failure> {
    for (field, value) in [
        ("numPartitions", topic.num_partitions),
        ("replicationFactor", topic.replication_factor.into()),
    ] {
        if value != -1 {
            return Err((
                ResponseError::InvalidRequest,
                format!("A manual partition assignment was specified, but {field} was not set to -1."),
            ));
        }
    }
    let count = i32::try_from(topic.assignments.len()).unwrap_or(i32::MAX);
    let entries = topic
        .assignments
        .iter()
        .map(|a| (a.partition_index, a.broker_ids.iter().map(|b| b.0).collect()));
    super::assignments::check(ctx, name, 0, count, entries)?;
    Ok(count)
}

async fn create_one(
    ctx: &Context,
    creation: &mut Creation<'_>,
    name: &str,
    topic: CreatableTopic,
    validate_only: bool,
) -> Result<TopicMeta, Failure> {
    crate::storage::validate_topic_name(name)
        .map_err(|e| (ResponseError::InvalidTopicException, e.to_string()))?;
    let partitions = if topic.assignments.is_empty() {
        match topic.num_partitions {
            -1 => ctx.options.default_partitions,
            n if n > 0 => n,
            n => {
                return Err((
                    ResponseError::InvalidPartitions,
                    format!("number of partitions must be larger than 0, or -1 to use the default; got {n}"),
                ))
            }
        }
    } else {
        manual_partitions(ctx, name, &topic)?
    };
    match topic.replication_factor {
        -1 | 1 => {}
        n if n > 1 => {
            return Err((
                ResponseError::InvalidReplicationFactor,
                format!(
                    "unable to replicate the partition {n} time(s): the target replication factor of {n} \
                     cannot be reached because only 1 broker(s) are registered"
                ),
            ))
        }
        n => {
            return Err((
                ResponseError::InvalidReplicationFactor,
                format!("replication factor must be larger than 0, or -1 to use the default; got {n}"),
            ))
        }
    }
    let config = topic_config(&topic)?;
    if let Err(refused) = creation.admit(1, usize::try_from(partitions).unwrap_or(usize::MAX)) {
        // An existing topic is reported as such, whatever the caps.
        if let Ok(Some(_)) = ctx.storage.describe_topic(name).await {
            return Err((
                ResponseError::TopicAlreadyExists,
                format!("topic {name} already exists"),
            ));
        }
        return Err(refused);
    }
    let meta = ctx
        .storage
        .create_topic(name, partitions, config, validate_only)
        .await
        .map_err(|e| (e.response_error(), e.to_string()))?;
    if !validate_only {
        creation.created(1, usize::try_from(meta.partitions).unwrap_or(0));
        info!(topic = name, partitions = meta.partitions, topic_id = %meta.id, "created topic");
    }
    Ok(meta)
}

/// Builds the topic's config from the request; null values and repeated keys are refused as
/// Kafka does.
fn topic_config(topic: &CreatableTopic) -> Result<TopicConfig, Failure> {
    let mut entries = Vec::with_capacity(topic.configs.len());
    let mut seen = std::collections::HashSet::with_capacity(topic.configs.len());
    for c in &topic.configs {
        let name = c.name.as_str();
        if !seen.insert(name) {
            return Err((
                ResponseError::InvalidConfig,
                format!("config {name} is listed more than once"),
            ));
        }
        let Some(value) = c.value.as_ref() else {
            return Err((
                ResponseError::InvalidConfig,
                format!("null value not supported for topic config {name}"),
            ));
        };
        entries.push((name, Some(value.as_str())));
    }
    TopicConfig::from_entries(entries).map_err(|e| (ResponseError::InvalidConfig, e.to_string()))
}

/// A successful result; v5+ also carries the partition count, replication factor and configs.
fn success(entry: CreatableTopicResult, meta: &TopicMeta, version: i16) -> CreatableTopicResult {
    let entry = entry
        .with_error_code(0)
        .with_error_message(None)
        .with_topic_id(meta.id);
    if version < 5 {
        return entry;
    }
    let configs = meta
        .config
        .entries()
        .into_iter()
        .map(|e| {
            CreatableTopicConfigs::default()
                .with_name(StrBytes::from_static_str(e.name))
                .with_value(Some(StrBytes::from_string(e.value)))
                .with_read_only(e.read_only)
                .with_config_source(if e.is_default {
                    SOURCE_DEFAULT
                } else {
                    SOURCE_DYNAMIC_TOPIC
                })
                .with_is_sensitive(false)
        })
        .collect();
    entry
        .with_num_partitions(meta.partitions)
        .with_replication_factor(1)
        .with_configs(Some(configs))
}

#[cfg(test)]
#[path = "create_topics_test.rs"]
mod tests;
