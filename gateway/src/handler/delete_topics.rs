//! DeleteTopics: by name (v1-5) or by name or topic id (v6).

use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use tracing::{debug, info};

use super::Context;

/// A topic to delete, as the request names it.
enum Target {
    Name(String),
    Id(uuid::Uuid),
    /// v6 with both a name and an id, which Kafka refuses.
    Both(String, uuid::Uuid),
}

pub(super) async fn handle(ctx: &Context, version: i16, req: DeleteTopicsRequest) -> DeleteTopicsResponse {
    let targets: Vec<Target> = if version >= 6 {
        req.topics
            .into_iter()
            .map(|t| match t.name {
                Some(name) if !t.topic_id.is_nil() => Target::Both(name.0.to_string(), t.topic_id),
                Some(name) => Target::Name(name.0.to_string()),
                None => Target::Id(t.topic_id),
            })
            .collect()
    } else {
        req.topic_names
            .into_iter()
            .map(|n| Target::Name(n.0.to_string()))
            .collect()
    };
    let mut responses = Vec::with_capacity(targets.len());
    for target in targets {
        responses.push(delete_one(ctx, target).await);
    }
    DeleteTopicsResponse::default().with_responses(responses)
}

async fn delete_one(ctx: &Context, target: Target) -> DeletableTopicResult {
    let topic_name = |n: &str| Some(TopicName(StrBytes::from_string(n.to_owned())));
    let failure = |name: Option<TopicName>, id: uuid::Uuid, error: ResponseError, message: String| {
        debug!(error = ?error, reason = %message, "delete topic refused");
        DeletableTopicResult::default()
            .with_name(name)
            .with_topic_id(id)
            .with_error_code(error.code())
            .with_error_message(Some(StrBytes::from_string(message)))
    };
    let name = match target {
        Target::Both(name, id) => {
            return failure(
                topic_name(&name),
                id,
                ResponseError::InvalidRequest,
                "specify either a topic name or a topic id, not both".into(),
            )
        }
        Target::Name(name) => name,
        Target::Id(id) => match super::topic_by_id(ctx, id).await {
            Some(meta) => meta.name.to_string(),
            None => {
                return failure(
                    None,
                    id,
                    ResponseError::UnknownTopicId,
                    format!("topic id {id} does not exist"),
                )
            }
        },
    };
    match ctx.storage.delete_topic(&name).await {
        Ok(meta) => {
            info!(topic = %name, topic_id = %meta.id, "deleted topic");
            // Committed offsets of a deleted topic must not resurface if it is created again.
            ctx.groups.remove_topics(std::slice::from_ref(&name)).await;
            // The caps' cached usage still counts it.
            ctx.caps.forget().await;
            DeletableTopicResult::default()
                .with_name(topic_name(&name))
                .with_topic_id(meta.id)
        }
        Err(e) => failure(
            topic_name(&name),
            uuid::Uuid::nil(),
            e.response_error(),
            e.to_string(),
        ),
    }
}

#[cfg(test)]
#[path = "delete_topics_test.rs"]
mod tests;
