//! DescribeUserScramCredentials: the users with replicated SCRAM credentials and, per user,
//! each mechanism's iteration count (never a salt or key). All users when the request names
//! none; a named user without credentials is RESOURCE_NOT_FOUND, a user named twice
//! DUPLICATE_RESOURCE, as Kafka answers.

use kafka_protocol::messages::describe_user_scram_credentials_response::{
    CredentialInfo, DescribeUserScramCredentialsResult,
};
use kafka_protocol::messages::{DescribeUserScramCredentialsRequest, DescribeUserScramCredentialsResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::Context;
use crate::sasl::ScramHash;

fn described(user: &str, creds: &[(ScramHash, u32)]) -> DescribeUserScramCredentialsResult {
    DescribeUserScramCredentialsResult::default()
        .with_user(StrBytes::from_string(user.to_owned()))
        .with_error_message(None)
        .with_credential_infos(
            creds
                .iter()
                .map(|(hash, iterations)| {
                    CredentialInfo::default()
                        .with_mechanism(hash.kafka_type())
                        .with_iterations(i32::try_from(*iterations).unwrap_or(i32::MAX))
                })
                .collect(),
        )
}

fn failed(user: &str, error: ResponseError, message: String) -> DescribeUserScramCredentialsResult {
    DescribeUserScramCredentialsResult::default()
        .with_user(StrBytes::from_string(user.to_owned()))
        .with_error_code(error.code())
        .with_error_message(Some(StrBytes::from_string(message)))
}

pub(super) fn handle(
    ctx: &Context,
    _version: i16,
    req: DescribeUserScramCredentialsRequest,
) -> DescribeUserScramCredentialsResponse {
    let users = ctx.cluster.scram_users();
    let names: Vec<String> = req
        .users
        .unwrap_or_default()
        .into_iter()
        .map(|u| u.name.to_string())
        .collect();
    let results = if names.is_empty() {
        users.iter().map(|(user, creds)| described(user, creds)).collect()
    } else {
        let mut results = Vec::new();
        for (i, name) in names.iter().enumerate() {
            if names[..i].contains(name) {
                continue;
            }
            results.push(if names[i + 1..].contains(name) {
                failed(
                    name,
                    ResponseError::DuplicateResource,
                    format!("cannot describe SCRAM credentials for the same user twice in a single request: {name}"),
                )
            } else if let Some(creds) = users.get(name) {
                described(name, creds)
            } else {
                failed(
                    name,
                    ResponseError::ResourceNotFound,
                    format!("attempt to describe a user credential that does not exist: {name}"),
                )
            });
        }
        results
    };
    DescribeUserScramCredentialsResponse::default()
        .with_error_message(None)
        .with_results(results)
}
