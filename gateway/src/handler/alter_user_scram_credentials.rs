//! AlterUserScramCredentials: upserts (the client sends the salt, the iteration count and
//! `Hi(password, salt, i)`; the gateway keeps only the derived StoredKey and ServerKey) and
//! deletions of SCRAM credentials in the replicated state. Checked as Kafka checks them, per
//! user: an empty name or a salt, salted password or iteration count out of bounds is
//! UNACCEPTABLE_CREDENTIAL, an unknown mechanism UNSUPPORTED_SASL_MECHANISM, a user and
//! mechanism altered twice DUPLICATE_RESOURCE, the deletion of a credential that does not exist
//! RESOURCE_NOT_FOUND; a user with any such error has none of its alterations applied.
//!
//! There is no authorizer yet: any client that may send requests may alter credentials
//! (docs/security.md).

use kafka_protocol::messages::alter_user_scram_credentials_response::AlterUserScramCredentialsResult;
use kafka_protocol::messages::{AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use tracing::info;

use super::Context;
use crate::cluster::Command;
use crate::sasl::{ScramCredential, ScramHash};

/// Kafka's bounds on SCRAM iterations.
const MIN_ITERATIONS: i32 = 4096;
const MAX_ITERATIONS: i32 = 16384;

enum Change {
    Delete,
    Upsert(ScramCredential),
}

type Refusal = (ResponseError, String);

/// One alteration, checked on its own.
type Checked = Result<(ScramHash, Change), Refusal>;

/// One alteration checked on its own: the hash and the change.
fn check(mechanism: i8, upsert: Option<(i32, &[u8], &[u8])>) -> Checked {
    let hash = ScramHash::from_kafka_type(mechanism).ok_or_else(|| {
        (
            ResponseError::UnsupportedSaslMechanism,
            format!("unknown SCRAM mechanism type {mechanism}"),
        )
    })?;
    let Some((iterations, salt, salted)) = upsert else {
        return Ok((hash, Change::Delete));
    };
    let unacceptable = |m: String| (ResponseError::UnacceptableCredential, m);
    if iterations < MIN_ITERATIONS {
        return Err(unacceptable(format!(
            "too few iterations: {iterations} (at least {MIN_ITERATIONS})"
        )));
    }
    if iterations > MAX_ITERATIONS {
        return Err(unacceptable(format!(
            "too many iterations: {iterations} (at most {MAX_ITERATIONS})"
        )));
    }
    if salt.is_empty() || salted.is_empty() || salt.len() > 1024 || salted.len() > 1024 {
        return Err(unacceptable(
            "salt and salted password must be 1 to 1024 bytes".into(),
        ));
    }
    let credential = ScramCredential::from_salted_password(hash, salted, salt.to_vec(), iterations as u32);
    Ok((hash, Change::Upsert(credential)))
}

pub(super) async fn handle(
    ctx: &Context,
    _version: i16,
    req: AlterUserScramCredentialsRequest,
) -> AlterUserScramCredentialsResponse {
    // Alterations by user, in the order users first appear.
    let mut users: Vec<(String, Vec<Checked>)> = Vec::new();
    let mut add = |name: String, change| match users.iter_mut().find(|(u, _)| *u == name) {
        Some((_, changes)) => changes.push(change),
        None => users.push((name, vec![change])),
    };
    for d in &req.deletions {
        add(d.name.to_string(), check(d.mechanism, None));
    }
    for u in &req.upsertions {
        add(
            u.name.to_string(),
            check(u.mechanism, Some((u.iterations, &u.salt, &u.salted_password))),
        );
    }
    let mut results = Vec::with_capacity(users.len());
    for (user, changes) in users {
        let outcome = alter(ctx, &user, changes).await;
        let result = AlterUserScramCredentialsResult::default()
            .with_user(StrBytes::from_string(user))
            .with_error_message(None);
        results.push(match outcome {
            Ok(()) => result,
            Err((error, message)) => result
                .with_error_code(error.code())
                .with_error_message(Some(StrBytes::from_string(message))),
        });
    }
    AlterUserScramCredentialsResponse::default().with_results(results)
}

async fn alter(
    ctx: &Context,
    user: &str,
    changes: Vec<Checked>,
) -> Result<(), Refusal> {
    if user.is_empty() {
        return Err((
            ResponseError::UnacceptableCredential,
            "user name must not be empty".into(),
        ));
    }
    let mut checked: Vec<(ScramHash, Change)> = Vec::with_capacity(changes.len());
    for change in changes {
        let (hash, change) = change?;
        if checked.iter().any(|(h, _)| *h == hash) {
            return Err((
                ResponseError::DuplicateResource,
                format!(
                    "a user credential cannot be altered twice in the same request: {user} {}",
                    hash.mechanism()
                ),
            ));
        }
        if matches!(change, Change::Delete) && ctx.cluster.scram_credential(user, hash).is_none() {
            return Err((
                ResponseError::ResourceNotFound,
                format!(
                    "attempt to delete a user credential that does not exist: {user} {}",
                    hash.mechanism()
                ),
            ));
        }
        checked.push((hash, change));
    }
    for (hash, change) in checked {
        let (name, mechanism) = (user.to_owned(), hash.mechanism().to_owned());
        let command = match change {
            Change::Delete => Command::DeleteScram {
                user: name,
                mechanism,
            },
            Change::Upsert(credential) => Command::UpsertScram {
                user: name,
                mechanism,
                credential,
            },
        };
        let kind = command.kind();
        ctx.cluster.write(command).await.map_err(|e| {
            (
                e.response_error(),
                format!("the cluster could not store the change: {e}"),
            )
        })?;
        info!(
            user,
            mechanism = hash.mechanism(),
            change = kind,
            "SCRAM credential altered"
        );
    }
    Ok(())
}
