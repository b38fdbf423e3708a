//! Tests of one connection's authentication state.

use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::sasl::{Audit, CredentialStore};

const ALL: [Mechanism; 4] = Mechanism::ALL;

fn auth(lifetime: Option<Duration>) -> Authenticator {
    Authenticator {
        users: Some(Arc::new(
            CredentialStore::parse("alice:wonderland\nbob:builder\n").unwrap(),
        )),
        session_lifetime: lifetime,
        oauth: None,
        audit: Audit::new(&prometheus::Registry::new()).unwrap(),
    }
}

#[tokio::test]
async fn only_auth_apis_before_authentication_then_everything() {
    let a = auth(None);
    let s = AuthSession::new(true, None);
    let now = Instant::now();
    for api in [
        ApiKey::ApiVersions,
        ApiKey::SaslHandshake,
        ApiKey::SaslAuthenticate,
    ] {
        assert_eq!(s.admits(api, now), Ok(()));
    }
    assert_eq!(s.admits(ApiKey::Metadata, now), Err(Refusal::Unauthenticated));
    assert_eq!(s.principal(), ANONYMOUS);
    assert_eq!(s.handshake("PLAIN", &ALL).unwrap(), Mechanism::Plain);
    let step = s.authenticate(&a, b"\0alice\0wonderland", now).await.unwrap();
    assert!(matches!(
        step,
        Step::Done {
            session_lifetime_ms: 0,
            ..
        }
    ));
    assert_eq!(s.admits(ApiKey::Produce, now), Ok(()));
    assert_eq!(s.principal(), "User:alice");
    assert!(!s.failed());
}

#[tokio::test]
async fn wrong_password_fails_and_closes() {
    let a = auth(None);
    let s = AuthSession::new(true, None);
    s.handshake("PLAIN", &ALL).unwrap();
    let e = s
        .authenticate(&a, b"alice\0alice\0nope", Instant::now())
        .await
        .unwrap_err();
    assert!(matches!(e, SaslError::InvalidCredentials { .. }), "{e}");
    assert_eq!(
        e.response_error(),
        kafka_protocol::ResponseError::SaslAuthenticationFailed
    );
    assert!(s.failed());
    assert_eq!(
        s.admits(ApiKey::Metadata, Instant::now()),
        Err(Refusal::Unauthenticated)
    );
    let s = AuthSession::new(true, None);
    s.handshake("PLAIN", &ALL).unwrap();
    assert!(matches!(
        s.authenticate(&a, b"carol\0alice\0wonderland", Instant::now())
            .await,
        Err(SaslError::InvalidCredentials { .. })
    ));
    for bad in [
        &b""[..],
        b"alice",
        b"\0alice",
        b"\0\0x",
        b"\0alice\0",
        b"\0a\0b\0c",
    ] {
        let s = AuthSession::new(true, None);
        s.handshake("PLAIN", &ALL).unwrap();
        assert!(
            matches!(
                s.authenticate(&a, bad, Instant::now()).await,
                Err(SaslError::Malformed(_))
            ),
            "{bad:?}"
        );
    }
}

#[tokio::test]
async fn exchange_order_and_listener_are_enforced() {
    let a = auth(None);
    let s = AuthSession::new(true, None);
    assert!(matches!(
        s.authenticate(&a, b"x", Instant::now()).await,
        Err(SaslError::IllegalState(_))
    ));
    let s = AuthSession::new(true, None);
    assert!(matches!(
        s.handshake("GSSAPI", &ALL),
        Err(SaslError::UnsupportedMechanism(_))
    ));
    assert!(s.failed());
    let s = AuthSession::new(true, None);
    s.handshake("SCRAM-SHA-256", &ALL).unwrap();
    assert!(matches!(
        s.handshake("PLAIN", &ALL),
        Err(SaslError::IllegalState(_))
    ));
    let plain = AuthSession::new(false, Some("User:cn".into()));
    assert!(matches!(
        plain.handshake("PLAIN", &ALL),
        Err(SaslError::IllegalState(_))
    ));
    assert_eq!(plain.admits(ApiKey::Produce, Instant::now()), Ok(()));
    assert_eq!(plain.principal(), "User:cn");
}

#[tokio::test]
async fn sessions_expire_and_reauthenticate_as_the_same_user_only() {
    let a = auth(Some(Duration::from_secs(60)));
    let s = AuthSession::new(true, None);
    let t0 = Instant::now();
    s.handshake("PLAIN", &ALL).unwrap();
    match s.authenticate(&a, b"\0alice\0wonderland", t0).await.unwrap() {
        Step::Done {
            session_lifetime_ms, ..
        } => assert_eq!(session_lifetime_ms, 60_000),
        other => panic!("{other:?}"),
    }
    let later = t0 + Duration::from_secs(61);
    assert_eq!(s.admits(ApiKey::Fetch, later), Err(Refusal::Expired));
    s.handshake("PLAIN", &ALL).unwrap();
    s.authenticate(&a, b"\0alice\0wonderland", later).await.unwrap();
    assert_eq!(s.admits(ApiKey::Fetch, later), Ok(()));
    s.handshake("PLAIN", &ALL).unwrap();
    assert!(s.authenticate(&a, b"\0bob\0builder", later).await.is_err());
}
