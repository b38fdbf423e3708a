//! CreatePartitions: grows a topic (never shrinks), with validate_only and manual assignments
//! checked as CreateTopics checks them.

use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use tracing::{debug, info};

use super::caps::Creation;
use super::Context;

/// A per-topic failure: the Kafka error and its message.
type Failure = (ResponseError, String);

pub(super) async fn handle(
    ctx: &Context,
    _version: i16,
    req: CreatePartitionsRequest,
) -> CreatePartitionsResponse {
    let repeated = super::dedup::repeated(req.topics.iter().map(|t| t.name.0.as_str()));
    let mut results = Vec::with_capacity(req.topics.len());
    // Held for the whole request: the caps see every growth before the next check.
    let mut creation = if req.topics.is_empty() {
        None
    } else {
        Some(ctx.caps.begin(ctx).await)
    };
    for topic in &req.topics {
        let name = topic.name.0.as_str();
        let result = if repeated.contains(name) {
            Err((
                ResponseError::InvalidRequest,
                format!("topic {name} is listed more than once"),
            ))
        } else {
            match creation.as_mut() {
                Some(Ok(creation)) => grow(ctx, creation, name, topic, req.validate_only).await,
                Some(Err(failure)) => Err(failure.clone()),
                None => unreachable!("a topic was listed"),
            }
        };
        let entry = CreatePartitionsTopicResult::default().with_name(topic.name.clone());
        results.push(match result {
            Ok(()) => entry.with_error_code(0).with_error_message(None),
            Err((error, message)) => {
                debug!(topic = name, error = ?error, reason = %message, "create partitions refused");
                entry
                    .with_error_code(error.code())
                    .with_error_message(Some(StrBytes::from_string(message)))
            }
        });
    }
    CreatePartitionsResponse::default().with_results(results)
}

async fn grow(
    ctx: &Context,
    creation: &mut Creation<'_>,
    name: &str,
    topic: &CreatePartitionsTopic,
    validate_only: bool,
) -> Result<(), Failure> {
    let current = match ctx.storage.describe_topic(name).await {
        Ok(Some(meta)) => meta.partitions,
        Ok(None) => {
            return Err((
                ResponseError::UnknownTopicOrPartition,
                format!("topic {name} does not exist"),
            ))
        }
        Err(e) => return Err((e.response_error(), e.to_string())),
    };
    let count = topic.count;
    if count < current {
        return Err((
            ResponseError::InvalidPartitions,
            format!("topic currently has {current} partitions, which is higher than the requested {count}"),
        ));
    }
    if count == current {
        return Err((
            ResponseError::InvalidPartitions,
            format!("topic already has {current} partitions"),
        ));
    }
    check_assignments(ctx, name, topic, current)?;
    let added = usize::try_from(count - current).unwrap_or(0);
    creation.admit(0, added)?;
    ctx.storage
        .create_partitions(name, count, validate_only)
        .await
        .map_err(|e| (e.response_error(), e.to_string()))?;
    if !validate_only {
        creation.created(0, added);
        info!(topic = name, from = current, to = count, "added partitions");
    }
    Ok(())
}

/// Explicit assignments of the new partitions, checked as CreateTopics checks them
/// ([`super::assignments`]).
fn check_assignments(
    ctx: &Context,
    name: &str,
    topic: &CreatePartitionsTopic,
    current: i32,
) -> Result<(), Failure> {
    let Some(assignments) = &topic.assignments else {
        return Ok(());
    };
    let added = topic.count - current;
    if usize::try_from(added).ok() != Some(assignments.len()) {
        return Err((
            ResponseError::InvalidReplicaAssignment,
            format!(
                "increasing the number of partitions by {added} but {} assignments provided",
                assignments.len()
            ),
        ));
    }
    let entries = assignments
        .iter()
        .zip(current..)
        .map(|(a, partition)| (partition, a.broker_ids.iter().map(|b| b.0).collect()));
    super::assignments::check(ctx, name, current, added, entries)
}

#[cfg(test)]
#[path = "create_partitions_test.rs"]
mod tests;
