//! DescribeUserScramCredentials and AlterUserScramCredentials on a one-node cluster, and SASL
//! authenticating against what they store, with the users file seeded once.

use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::alter_user_scram_credentials_request::{
    ScramCredentialDeletion, ScramCredentialUpsertion,
};
use kafka_protocol::messages::describe_user_scram_credentials_request::UserName;
use kafka_protocol::messages::{AlterUserScramCredentialsRequest, DescribeUserScramCredentialsRequest};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::test_support;
use super::{alter_user_scram_credentials, describe_user_scram_credentials};
use crate::cluster::scram::ClusterCredentials;
use crate::sasl::credentials::verify_plain;
use crate::sasl::{CredentialStore, ScramHash, ScramLookup};

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_owned())
}

fn upsert(user: &str, hash: ScramHash, password: &str, iterations: i32) -> ScramCredentialUpsertion {
    let salt = b"0123456789abcdef".to_vec();
    let salted = hash.salted_password(password.as_bytes(), &salt, iterations.max(1) as u32);
    ScramCredentialUpsertion::default()
        .with_name(s(user))
        .with_mechanism(hash.kafka_type())
        .with_iterations(iterations)
        .with_salt(Bytes::from(salt))
        .with_salted_password(Bytes::from(salted))
}

fn delete(user: &str, mechanism: i8) -> ScramCredentialDeletion {
    ScramCredentialDeletion::default()
        .with_name(s(user))
        .with_mechanism(mechanism)
}

#[tokio::test]
async fn credentials_are_altered_described_and_used_by_sasl() {
    let t = test_support::context().await;
    let ctx = &t.ctx;
    let req = AlterUserScramCredentialsRequest::default()
        .with_upsertions(vec![
            upsert("alice", ScramHash::Sha256, "pw", 4096),
            upsert("bob", ScramHash::Sha512, "pw", 100),
            upsert("dup", ScramHash::Sha512, "pw", 4096),
            upsert("dup", ScramHash::Sha512, "pw2", 4096),
            upsert("", ScramHash::Sha512, "pw", 4096),
        ])
        .with_deletions(vec![delete("carol", 1), delete("eve", 9)]);
    let resp = alter_user_scram_credentials::handle(ctx, 0, req).await;
    let codes: Vec<(String, i16)> = resp
        .results
        .iter()
        .map(|r| (r.user.to_string(), r.error_code))
        .collect();
    assert_eq!(
        codes,
        [
            ("carol".into(), ResponseError::ResourceNotFound.code()),
            ("eve".into(), ResponseError::UnsupportedSaslMechanism.code()),
            ("alice".into(), 0),
            ("bob".into(), ResponseError::UnacceptableCredential.code()),
            ("dup".into(), ResponseError::DuplicateResource.code()),
            ("".into(), ResponseError::UnacceptableCredential.code()),
        ]
    );
    assert!(resp
        .results
        .iter()
        .all(|r| (r.error_code == 0) == r.error_message.is_none()));

    let all = describe_user_scram_credentials::handle(ctx, 0, DescribeUserScramCredentialsRequest::default());
    assert_eq!(all.results.len(), 1, "only alice was stored: {all:?}");
    let info = &all.results[0].credential_infos;
    assert_eq!((info[0].mechanism, info[0].iterations), (1, 4096));
    let named = DescribeUserScramCredentialsRequest::default().with_users(Some(vec![
        UserName::default().with_name(s("alice")),
        UserName::default().with_name(s("zed")),
        UserName::default().with_name(s("zed")),
    ]));
    let named = describe_user_scram_credentials::handle(ctx, 0, named);
    let codes: Vec<i16> = named.results.iter().map(|r| r.error_code).collect();
    assert_eq!(codes, [0, ResponseError::DuplicateResource.code()]);

    // SASL authenticates alice against the replicated credential.
    let creds = ClusterCredentials::new(ctx.cluster.clone(), None);
    assert!(verify_plain(&creds, "alice", b"pw"));
    assert!(!verify_plain(&creds, "alice", b"nope"));
    assert!(creds.scram("alice", ScramHash::Sha512).is_none());

    let gone = AlterUserScramCredentialsRequest::default().with_deletions(vec![delete("alice", 1)]);
    assert_eq!(
        alter_user_scram_credentials::handle(ctx, 0, gone).await.results[0].error_code,
        0
    );
    assert!(!verify_plain(&creds, "alice", b"pw"));
}

#[tokio::test]
async fn the_users_file_is_seeded_once_and_api_changes_survive_a_restart() {
    let t = test_support::context().await;
    let ctx = &t.ctx;
    let api = AlterUserScramCredentialsRequest::default().with_upsertions(vec![upsert(
        "alice",
        ScramHash::Sha512,
        "from-api",
        4096,
    )]);
    alter_user_scram_credentials::handle(ctx, 0, api).await;
    let file = Arc::new(CredentialStore::parse("alice:from-file\nfrank:f-pw\n").unwrap());
    let creds = ClusterCredentials::new(ctx.cluster.clone(), Some(Arc::clone(&file)));
    // Before seeding, the file answers for users the cluster does not know.
    assert!(verify_plain(&creds, "frank", b"f-pw"));
    creds.seed().await.unwrap();
    assert!(verify_plain(&creds, "frank", b"f-pw"));
    assert!(
        verify_plain(&creds, "alice", b"from-api"),
        "a user made through the API keeps its password"
    );
    assert!(!verify_plain(&creds, "alice", b"from-file"));

    let gone = AlterUserScramCredentialsRequest::default()
        .with_deletions(vec![delete("frank", 1), delete("frank", 2)]);
    assert_eq!(
        alter_user_scram_credentials::handle(ctx, 0, gone).await.results[0].error_code,
        0
    );
    // A restart seeds the file again: frank stays deleted, and the file no longer answers.
    let restarted = ClusterCredentials::new(ctx.cluster.clone(), Some(file));
    // Not even before this node seeded its file again.
    assert!(!verify_plain(&restarted, "frank", b"f-pw"));
    restarted.seed().await.unwrap();
    assert!(!verify_plain(&restarted, "frank", b"f-pw"));
}
