//! DescribeConfigs: topic configs (overrides and defaults) and this broker's read-only settings.

use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::config_docs;
use super::Context;
use crate::storage::TopicConfig;

/// Kafka `ConfigResource.Type` of a topic.
pub(super) const RESOURCE_TOPIC: i8 = 2;
/// Kafka `ConfigResource.Type` of a broker.
pub(super) const RESOURCE_BROKER: i8 = 4;

/// `ConfigSource.DYNAMIC_TOPIC_CONFIG`: a topic override.
pub(super) const SOURCE_DYNAMIC_TOPIC: i8 = 1;
/// `ConfigSource.STATIC_BROKER_CONFIG`: set in the broker's configuration.
const SOURCE_STATIC_BROKER: i8 = 4;
/// `ConfigSource.DEFAULT_CONFIG`: the built-in default.
pub(super) const SOURCE_DEFAULT: i8 = 5;

/// Kafka `ConfigType` codes used by the broker resource.
const TYPE_BOOLEAN: i8 = 1;
const TYPE_STRING: i8 = 2;
const TYPE_INT: i8 = 3;
const TYPE_SHORT: i8 = 4;
const TYPE_LONG: i8 = 5;
const TYPE_LIST: i8 = 7;

/// One config as described, before it is shaped into the response.
struct Described {
    name: &'static str,
    value: String,
    read_only: bool,
    source: i8,
    config_type: i8,
    /// (value, source) of the synonyms, most specific first.
    synonyms: Vec<(String, i8)>,
}

/// What the request asked to include besides names and values.
#[derive(Clone, Copy)]
struct Include {
    synonyms: bool,
    documentation: bool,
}

pub(super) async fn handle(
    ctx: &Context,
    _version: i16,
    req: DescribeConfigsRequest,
) -> DescribeConfigsResponse {
    let include = Include {
        synonyms: req.include_synonyms,
        documentation: req.include_documentation,
    };
    let mut results = Vec::with_capacity(req.resources.len());
    for resource in req.resources {
        let base = DescribeConfigsResult::default()
            .with_resource_type(resource.resource_type)
            .with_resource_name(resource.resource_name.clone())
            .with_error_message(None);
        let described = match resource.resource_type {
            RESOURCE_TOPIC => topic_configs(ctx, resource.resource_name.as_str()).await,
            RESOURCE_BROKER => broker_configs(ctx, resource.resource_name.as_str()),
            other => Err((
                ResponseError::InvalidRequest,
                format!("resource type {other} is not supported"),
            )),
        };
        results.push(match described {
            Ok(configs) => base.with_configs(shape(configs, &resource, include)),
            Err((error, message)) => base
                .with_error_code(error.code())
                .with_error_message(Some(StrBytes::from_string(message))),
        });
    }
    DescribeConfigsResponse::default().with_results(results)
}

async fn topic_configs(ctx: &Context, name: &str) -> Result<Vec<Described>, (ResponseError, String)> {
    let meta = match ctx.storage.describe_topic(name).await {
        Ok(Some(meta)) => meta,
        Ok(None) => {
            return Err((
                ResponseError::UnknownTopicOrPartition,
                format!("topic {name} does not exist"),
            ))
        }
        Err(e) => return Err((e.response_error(), e.to_string())),
    };
    let defaults = TopicConfig::default().entries();
    Ok(meta
        .config
        .entries()
        .into_iter()
        .map(|e| {
            let default_value = defaults
                .iter()
                .find(|d| d.name == e.name)
                .map(|d| d.value.clone());
            let mut synonyms = Vec::with_capacity(2);
            if !e.is_default {
                synonyms.push((e.value.clone(), SOURCE_DYNAMIC_TOPIC));
            }
            synonyms.push((default_value.unwrap_or_else(|| e.value.clone()), SOURCE_DEFAULT));
            Described {
                name: e.name,
                value: e.value,
                read_only: e.read_only,
                source: if e.is_default {
                    SOURCE_DEFAULT
                } else {
                    SOURCE_DYNAMIC_TOPIC
                },
                config_type: e.config_type,
                synonyms,
            }
        })
        .collect())
}

/// This broker's settings, all read-only. The name must be this broker's id, or empty for the
/// cluster-wide defaults (which are the same settings on a single broker).
fn broker_configs(ctx: &Context, name: &str) -> Result<Vec<Described>, (ResponseError, String)> {
    let id = ctx.broker.node_id;
    if !name.is_empty() && name != id.to_string() {
        return Err((
            ResponseError::InvalidRequest,
            format!("unexpected broker id {name:?}: this is broker {id}"),
        ));
    }
    let d = TopicConfig::default();
    let timestamp_type = match d.message_timestamp_type {
        crate::storage::TimestampType::CreateTime => "CreateTime",
        crate::storage::TimestampType::LogAppendTime => "LogAppendTime",
    };
    let b = &ctx.broker;
    let o = &ctx.options;
    let mut list: Vec<(&'static str, String, i8, i8)> = vec![
        ("node.id", id.to_string(), TYPE_INT, SOURCE_STATIC_BROKER),
        ("broker.id", id.to_string(), TYPE_INT, SOURCE_STATIC_BROKER),
        (
            "advertised.listeners",
            format!("PLAINTEXT://{}:{}", b.host, b.port),
            TYPE_LIST,
            SOURCE_STATIC_BROKER,
        ),
        (
            "num.partitions",
            o.default_partitions.to_string(),
            TYPE_INT,
            SOURCE_STATIC_BROKER,
        ),
        (
            "auto.create.topics.enable",
            o.auto_create_topics.to_string(),
            TYPE_BOOLEAN,
            SOURCE_STATIC_BROKER,
        ),
        (
            "fetch.max.bytes",
            o.fetch_max_bytes.to_string(),
            TYPE_INT,
            SOURCE_STATIC_BROKER,
        ),
        ("default.replication.factor", "1".into(), TYPE_INT, SOURCE_DEFAULT),
        ("min.insync.replicas", "1".into(), TYPE_INT, SOURCE_DEFAULT),
        (
            "offsets.topic.replication.factor",
            "1".into(),
            TYPE_SHORT,
            SOURCE_DEFAULT,
        ),
        ("delete.topic.enable", "true".into(), TYPE_BOOLEAN, SOURCE_DEFAULT),
        ("compression.type", "producer".into(), TYPE_STRING, SOURCE_DEFAULT),
        (
            "log.retention.ms",
            d.retention_ms.to_string(),
            TYPE_LONG,
            SOURCE_DEFAULT,
        ),
        (
            "log.retention.bytes",
            d.retention_bytes.to_string(),
            TYPE_LONG,
            SOURCE_DEFAULT,
        ),
        (
            "log.segment.bytes",
            d.segment_bytes.to_string(),
            TYPE_INT,
            SOURCE_DEFAULT,
        ),
        ("log.roll.ms", d.segment_ms.to_string(), TYPE_LONG, SOURCE_DEFAULT),
        ("log.cleanup.policy", "delete".into(), TYPE_LIST, SOURCE_DEFAULT),
        (
            "message.max.bytes",
            d.max_message_bytes.to_string(),
            TYPE_INT,
            SOURCE_DEFAULT,
        ),
        (
            "log.message.timestamp.type",
            timestamp_type.into(),
            TYPE_STRING,
            SOURCE_DEFAULT,
        ),
        (
            "log.message.timestamp.before.max.ms",
            d.message_timestamp_before_max_ms.to_string(),
            TYPE_LONG,
            SOURCE_DEFAULT,
        ),
        (
            "log.message.timestamp.after.max.ms",
            d.message_timestamp_after_max_ms.to_string(),
            TYPE_LONG,
            SOURCE_DEFAULT,
        ),
    ];
    if let Some(rack) = &b.rack {
        list.push(("broker.rack", rack.clone(), TYPE_STRING, SOURCE_STATIC_BROKER));
    }
    Ok(list
        .into_iter()
        .map(|(name, value, config_type, source)| Described {
            name,
            synonyms: vec![(value.clone(), source)],
            value,
            read_only: true,
            source,
            config_type,
        })
        .collect())
}

/// Applies the `configuration_keys` filter and the include flags.
fn shape(
    configs: Vec<Described>,
    resource: &DescribeConfigsResource,
    include: Include,
) -> Vec<DescribeConfigsResourceResult> {
    configs
        .into_iter()
        .filter(|c| match &resource.configuration_keys {
            None => true,
            Some(keys) => keys.iter().any(|k| k.as_str() == c.name),
        })
        .map(|c| {
            let synonyms = if include.synonyms {
                c.synonyms
                    .into_iter()
                    .map(|(value, source)| {
                        DescribeConfigsSynonym::default()
                            .with_name(StrBytes::from_static_str(c.name))
                            .with_value(Some(StrBytes::from_string(value)))
                            .with_source(source)
                    })
                    .collect()
            } else {
                Vec::new()
            };
            let documentation = include
                .documentation
                .then(|| config_docs::doc(c.name))
                .flatten()
                .map(StrBytes::from_static_str);
            DescribeConfigsResourceResult::default()
                .with_name(StrBytes::from_static_str(c.name))
                .with_value(Some(StrBytes::from_string(c.value)))
                .with_read_only(c.read_only)
                .with_config_source(c.source)
                // v0's flag for what v1+ report as a source.
                .with_is_default(c.source == SOURCE_DEFAULT)
                .with_is_sensitive(false)
                .with_synonyms(synonyms)
                .with_config_type(c.config_type)
                .with_documentation(documentation)
        })
        .collect()
}

#[cfg(test)]
#[path = "describe_configs_test.rs"]
mod tests;
