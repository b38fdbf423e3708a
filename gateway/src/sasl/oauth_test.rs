//! OAUTHBEARER tokens signed in the test with a fresh EC key, checked against a JWKS.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine as _;
use jsonwebtoken::{EncodingKey, Header};
use serde_json::json;

use super::*;

struct Signer {
    key: EncodingKey,
    jwk: serde_json::Value,
}

impl Signer {
    fn new(kid: &str) -> Self {
        let pair = rcgen::KeyPair::generate().unwrap();
        let raw = pair.public_key_raw();
        assert_eq!((raw.len(), raw[0]), (65, 4), "uncompressed P-256 point");
        Self {
            key: EncodingKey::from_ec_der(&pair.serialize_der()),
            jwk: json!({
                "kty": "EC", "crv": "P-256", "kid": kid, "use": "sig", "alg": "ES256",
                "x": B64URL.encode(&raw[1..33]), "y": B64URL.encode(&raw[33..]),
            }),
        }
    }

    fn sign(&self, kid: &str, claims: serde_json::Value) -> String {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(kid.to_owned());
        jsonwebtoken::encode(&header, &claims, &self.key).unwrap()
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn validator(
    jwks: serde_json::Value,
    issuer: Option<&str>,
    audience: Option<&str>,
) -> Result<OAuthValidator, SaslError> {
    OAuthValidator::from_jwks(
        &jwks.to_string(),
        OAuthSettings {
            jwks_file: "jwks.json".into(),
            issuer: issuer.map(Into::into),
            audience: audience.map(Into::into),
            principal_claim: "sub".into(),
        },
    )
}

#[test]
fn signed_tokens_are_checked_for_key_expiry_issuer_audience_and_principal() {
    let signer = Signer::new("k1");
    let rogue = Signer::new("k1");
    let v = validator(
        json!({ "keys": [signer.jwk] }),
        Some("https://idp"),
        Some("kafka"),
    )
    .unwrap();
    let good = json!({ "sub": "alice", "iss": "https://idp", "aud": "kafka", "exp": now() + 600 });
    let t = v.validate(&signer.sign("k1", good.clone())).unwrap();
    assert_eq!((t.name.as_str(), t.expires_at), ("alice", now() + 600));

    let reason = |token: String| match v.validate(&token) {
        Err(SaslError::InvalidToken(r)) => r,
        other => panic!("{other:?}"),
    };
    assert_eq!(reason(rogue.sign("k1", good.clone())), "invalid signature");
    let mut c = good.clone();
    c["exp"] = json!(now() - 120);
    assert_eq!(reason(signer.sign("k1", c)), "token expired");
    let mut c = good.clone();
    c["iss"] = json!("https://other");
    assert_eq!(reason(signer.sign("k1", c)), "wrong issuer");
    let mut c = good.clone();
    c["aud"] = json!("not-kafka");
    assert_eq!(reason(signer.sign("k1", c)), "wrong audience");
    let mut c = good.clone();
    c.as_object_mut().unwrap().remove("sub");
    assert_eq!(reason(signer.sign("k1", c)), "no principal claim");
    let mut c = good.clone();
    c.as_object_mut().unwrap().remove("exp");
    assert_eq!(reason(signer.sign("k1", c)), "missing exp claim");
    // Unsigned and HMAC tokens are refused whatever they claim.
    let unsigned = format!(
        "{}.{}.",
        B64URL.encode(br#"{"alg":"none","typ":"JWT"}"#),
        B64URL.encode(good.to_string())
    );
    assert!(v.validate(&unsigned).is_err());
    let hs = jsonwebtoken::encode(&Header::default(), &good, &EncodingKey::from_secret(b"s")).unwrap();
    assert_eq!(reason(hs), "unsupported signature algorithm");
    assert_eq!(reason("garbage".into()), "malformed token");
}

#[test]
fn jwks_without_public_keys_is_refused() {
    let oct = json!({ "keys": [{ "kty": "oct", "k": "c2VjcmV0" }] });
    assert!(matches!(validator(oct, None, None), Err(SaslError::UsersFile(_))));
    assert!(matches!(
        validator(json!({ "nope": 1 }), None, None),
        Err(SaslError::UsersFile(_))
    ));
}

#[test]
fn client_messages_carry_a_bearer_token() {
    assert_eq!(
        client_token(b"n,,\x01auth=Bearer abc.def.ghi\x01\x01").unwrap(),
        "abc.def.ghi"
    );
    assert_eq!(
        client_token(b"n,a=alice,\x01host=h\x01auth=Bearer t\x01port=1\x01\x01").unwrap(),
        "t"
    );
    for bad in [
        &b""[..],
        b"n,,",
        b"n,,\x01auth=Bearer t\x01",
        b"n,,\x01auth=Basic t\x01\x01",
        b"n,,\x01host=h\x01\x01",
        b"p=x,,\x01auth=Bearer t\x01\x01",
        b"n,,\x01auth=Bearer \x01\x01",
        b"\xff\x01\x01",
    ] {
        assert!(
            matches!(client_token(bad), Err(SaslError::Malformed(_))),
            "{bad:?}"
        );
    }
}

#[tokio::test]
async fn an_oauthbearer_session_ends_with_its_token() {
    use crate::sasl::session::{AuthSession, Step};
    use crate::sasl::{Audit, Authenticator, Mechanism};
    let signer = Signer::new("k1");
    let auth = Authenticator {
        users: None,
        session_lifetime: Some(std::time::Duration::from_secs(3600)),
        oauth: Some(std::sync::Arc::new(
            validator(json!({ "keys": [signer.jwk] }), None, None).unwrap(),
        )),
        audit: Audit::new(&prometheus::Registry::new()).unwrap(),
    };
    assert_eq!(auth.enabled(), [Mechanism::OAuthBearer]);
    let s = AuthSession::new(true, None);
    assert!(matches!(
        s.handshake("PLAIN", &auth.enabled()),
        Err(SaslError::UnsupportedMechanism(_))
    ));
    let s = AuthSession::new(true, None);
    s.handshake("OAUTHBEARER", &auth.enabled()).unwrap();
    let token = signer.sign("k1", json!({ "sub": "svc-orders", "exp": now() + 600 }));
    let msg = format!("n,,\x01auth=Bearer {token}\x01\x01");
    match s
        .authenticate(&auth, msg.as_bytes(), std::time::Instant::now())
        .await
        .unwrap()
    {
        Step::Done {
            principal,
            session_lifetime_ms,
            ..
        } => {
            assert_eq!(principal, "User:svc-orders");
            assert!(
                (590_000..=600_000).contains(&session_lifetime_ms),
                "{session_lifetime_ms}"
            );
        }
        other => panic!("{other:?}"),
    }
    let s = AuthSession::new(true, None);
    s.handshake("OAUTHBEARER", &auth.enabled()).unwrap();
    let expired = signer.sign("k1", json!({ "sub": "svc-orders", "exp": now() - 120 }));
    let msg = format!("n,,\x01auth=Bearer {expired}\x01\x01");
    assert!(matches!(
        s.authenticate(&auth, msg.as_bytes(), std::time::Instant::now())
            .await,
        Err(SaslError::InvalidToken(_))
    ));
    assert!(s.failed());
}
