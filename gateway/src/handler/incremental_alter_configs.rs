//! IncrementalAlterConfigs: SET, DELETE, APPEND and SUBTRACT on one topic config at a time.
//!
//! The new config is computed from the stored one and written whole; two concurrent alters of
//! the same topic may therefore lose one of the updates (Kafka's controller serialises them; the
//! storage contract has no compare-and-set).

use kafka_protocol::messages::incremental_alter_configs_request::AlterConfigsResource;
use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse};
use kafka_protocol::ResponseError;

use super::alter_configs::{apply, check_resource_type, duplicate_resource, outcome, Failure};
use super::Context;
use crate::storage::TopicConfig;

/// `AlterConfigOp.OpType` codes.
const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;
const OP_APPEND: i8 = 2;
const OP_SUBTRACT: i8 = 3;

/// Kafka `ConfigType.LIST`: the only type APPEND and SUBTRACT apply to.
const TYPE_LIST: i8 = 7;

pub(super) async fn handle(
    ctx: &Context,
    _version: i16,
    req: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
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
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}

async fn alter_one(
    ctx: &Context,
    resource: &AlterConfigsResource,
    validate_only: bool,
) -> Result<(), Failure> {
    check_resource_type(resource.resource_type)?;
    let topic = resource.resource_name.as_str();
    // As Kafka's controller: the changes are validated first (against the defaults when the
    // topic is missing), then the topic's existence is checked.
    let (mut config, exists) = match ctx.storage.describe_topic(topic).await {
        Ok(Some(meta)) => (meta.config, true),
        Ok(None) => (TopicConfig::default(), false),
        Err(e) => return Err((e.response_error(), e.to_string())),
    };
    let mut seen = std::collections::HashSet::with_capacity(resource.configs.len());
    for c in &resource.configs {
        let key = c.name.as_str();
        if !seen.insert(key) {
            return Err((
                ResponseError::InvalidRequest,
                format!("config {key} is listed more than once"),
            ));
        }
        apply_op(
            &mut config,
            key,
            c.config_operation,
            c.value.as_ref().map(|v| v.as_str()),
        )?;
    }
    config
        .validate()
        .map_err(|e| (ResponseError::InvalidConfig, e.to_string()))?;
    if !exists {
        return Err((
            ResponseError::UnknownTopicOrPartition,
            format!("The topic '{topic}' does not exist."),
        ));
    }
    apply(ctx, topic, config, validate_only).await
}

/// Applies one operation to `config`.
fn apply_op(config: &mut TopicConfig, key: &str, op: i8, value: Option<&str>) -> Result<(), Failure> {
    let invalid = |e: crate::storage::StorageError| (ResponseError::InvalidConfig, e.to_string());
    match op {
        OP_SET => {
            let Some(value) = value else {
                return Err((
                    ResponseError::InvalidRequest,
                    format!("null value not supported for SET of {key}"),
                ));
            };
            config.set(key, Some(value)).map_err(invalid)
        }
        OP_DELETE => config.set(key, None).map_err(invalid),
        OP_APPEND | OP_SUBTRACT => {
            let current = config.entries().into_iter().find(|e| e.name == key);
            let Some(current) = current.filter(|e| e.config_type == TYPE_LIST) else {
                return Err((
                    ResponseError::InvalidConfig,
                    format!(
                        "Can't {} to key {key} because its type is not LIST.",
                        if op == OP_APPEND { "APPEND" } else { "SUBTRACT" }
                    ),
                ));
            };
            let mut items: Vec<&str> = split_list(&current.value).collect();
            for item in split_list(value.unwrap_or("")) {
                if op == OP_APPEND && !items.contains(&item) {
                    items.push(item);
                } else if op == OP_SUBTRACT {
                    items.retain(|i| *i != item);
                }
            }
            config.set(key, Some(&items.join(","))).map_err(invalid)
        }
        other => Err((
            ResponseError::InvalidRequest,
            format!("unknown config operation {other} for {key}"),
        )),
    }
}

fn split_list(value: &str) -> impl Iterator<Item = &str> {
    value.split(',').map(str::trim).filter(|s| !s.is_empty())
}

#[cfg(test)]
#[path = "incremental_alter_configs_test.rs"]
mod tests;
