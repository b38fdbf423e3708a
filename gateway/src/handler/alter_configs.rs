//! AlterConfigs (legacy): replaces the whole configuration of a topic; keys not in the request
//! return to their defaults. Broker configs are read-only.

use kafka_protocol::messages::alter_configs_request::AlterConfigsResource;
use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{AlterConfigsRequest, AlterConfigsResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use tracing::{debug, info};

use super::describe_configs::{RESOURCE_BROKER, RESOURCE_TOPIC};
use super::Context;
use crate::storage::TopicConfig;

/// A per-resource failure: the Kafka error and its message.
pub(super) type Failure = (ResponseError, String);

pub(super) async fn handle(ctx: &Context, _version: i16, req: AlterConfigsRequest) -> AlterConfigsResponse {
    let repeated = super::dedup::repeated(
        req.resources
            .iter()
            .map(|r| (r.resource_type, r.resource_name.as_str())),
    );
    let mut responses = Vec::with_capacity(req.resources.len());
    for resource in &req.resources {
        let name = resource.resource_name.as_str();
        let result = if repeated.contains(&(resource.resource_type, name)) {
            Err(duplicate_resource(name))
        } else {
            alter_one(ctx, resource, req.validate_only).await
        };
        let (code, message) = outcome(name, result);
        responses.push(
            AlterConfigsResourceResponse::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name.clone())
                .with_error_code(code)
                .with_error_message(message),
        );
    }
    AlterConfigsResponse::default().with_responses(responses)
}

async fn alter_one(
    ctx: &Context,
    resource: &AlterConfigsResource,
    validate_only: bool,
) -> Result<(), Failure> {
    let name = resource.resource_name.as_str();
    check_resource_type(resource.resource_type)?;
    let mut entries: Vec<(&str, Option<&str>)> = Vec::with_capacity(resource.configs.len());
    let mut seen = std::collections::HashSet::with_capacity(resource.configs.len());
    for c in &resource.configs {
        let key = c.name.as_str();
        if !seen.insert(key) {
            return Err((
                ResponseError::InvalidRequest,
                format!("config {key} is listed more than once"),
            ));
        }
        let Some(value) = c.value.as_ref() else {
            return Err((
                ResponseError::InvalidConfig,
                format!("null value not supported for topic config {key}"),
            ));
        };
        entries.push((key, Some(value.as_str())));
    }
    let config =
        TopicConfig::from_entries(entries).map_err(|e| (ResponseError::InvalidConfig, e.to_string()))?;
    apply(ctx, name, config, validate_only).await
}

/// Refuses every resource type but topics, with a message.
pub(super) fn check_resource_type(resource_type: i8) -> Result<(), Failure> {
    match resource_type {
        RESOURCE_TOPIC => Ok(()),
        RESOURCE_BROKER => Err((
            ResponseError::InvalidRequest,
            "broker configs are read-only on this gateway; set them in its configuration".into(),
        )),
        other => Err((
            ResponseError::InvalidRequest,
            format!("resource type {other} is not supported"),
        )),
    }
}

/// The failure of a resource listed more than once in one request.
pub(super) fn duplicate_resource(name: &str) -> Failure {
    (
        ResponseError::InvalidRequest,
        format!("resource {name} is listed more than once in the request"),
    )
}

/// Stores a topic's new config (or only validates it).
pub(super) async fn apply(
    ctx: &Context,
    topic: &str,
    config: TopicConfig,
    validate_only: bool,
) -> Result<(), Failure> {
    ctx.storage
        .alter_topic_config(topic, config, validate_only)
        .await
        .map_err(|e| (e.response_error(), e.to_string()))?;
    if !validate_only {
        info!(topic, "altered topic config");
    }
    Ok(())
}

/// The error code and message of one resource's outcome.
pub(super) fn outcome(resource: &str, result: Result<(), Failure>) -> (i16, Option<StrBytes>) {
    match result {
        Ok(()) => (0, None),
        Err((error, message)) => {
            debug!(resource, error = ?error, reason = %message, "alter configs refused");
            (error.code(), Some(StrBytes::from_string(message)))
        }
    }
}

#[cfg(test)]
#[path = "alter_configs_test.rs"]
mod tests;
