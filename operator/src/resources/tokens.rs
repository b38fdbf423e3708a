//! The control-plane tokens of a gateway cluster, kept in a Secret mounted into every pod: the
//! cluster token (raft peer calls) and the admin token (mutating admin endpoints, which the
//! operator calls on scale-down).
//!
//! The Secret is the user's (`spec.security.tokensSecret`) or generated once as `<name>-tokens`
//! (owned by the gateway, so it goes with it). A generated Secret is created, never applied: an
//! apply would have to send the values again, and regenerating them would split the cluster.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::ByteString;
use kafka_gateway::auth::Token;

use super::{child_meta, Names};
use crate::crd::KafkaGateway;
use crate::Result;

/// Key of the cluster token in the Secret (and its file name in the pod).
pub const CLUSTER_TOKEN_KEY: &str = "cluster-token";
/// Key of the admin token in the Secret (and its file name in the pod).
pub const ADMIN_TOKEN_KEY: &str = "admin-token";
/// Where the Secret is mounted in the gateway pods.
pub const TOKENS_DIR: &str = "/etc/kafka-gateway-tokens";
/// Name of the Secret volume.
pub const TOKENS_VOLUME: &str = "tokens";

/// The Secret holding `kgw`'s tokens: the user's, or `<name>-tokens`.
pub fn secret_name(kgw: &KafkaGateway, names: &Names) -> String {
    kgw.spec
        .security
        .tokens_secret
        .clone()
        .unwrap_or_else(|| format!("{}-tokens", names.name))
}

/// True when the operator generates (and owns) the tokens Secret.
pub fn generated(kgw: &KafkaGateway) -> bool {
    kgw.spec.security.tokens_secret.is_none()
}

/// 256 random bits (rand's thread generator: ChaCha seeded from the OS) as 64 hex characters.
fn random_token() -> String {
    let bytes: [u8; 32] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A new Secret with fresh random tokens for `kgw` (created once, see the module docs).
///
/// # Errors
/// [`crate::Error::MissingObjectKey`] when `kgw` lacks a name, namespace or uid.
pub fn generate(kgw: &KafkaGateway, names: &Names) -> Result<Secret> {
    Ok(Secret {
        metadata: child_meta(kgw, names, secret_name(kgw, names))?,
        type_: Some("Opaque".into()),
        data: Some(BTreeMap::from([
            (
                CLUSTER_TOKEN_KEY.to_string(),
                ByteString(random_token().into_bytes()),
            ),
            (
                ADMIN_TOKEN_KEY.to_string(),
                ByteString(random_token().into_bytes()),
            ),
        ])),
        ..Secret::default()
    })
}

/// Checks that `secret` holds both tokens as the gateway will accept them, and returns the admin
/// token.
///
/// # Errors
/// Why the gateway would refuse to start with it (a missing key, a short or malformed token).
pub fn admin_token(secret: &Secret) -> std::result::Result<String, String> {
    let value = |key: &str| -> std::result::Result<String, String> {
        let bytes = secret
            .data
            .as_ref()
            .and_then(|d| d.get(key))
            .map(|b| b.0.clone())
            .or_else(|| {
                secret
                    .string_data
                    .as_ref()
                    .and_then(|d| d.get(key))
                    .map(|s| s.clone().into_bytes())
            })
            .ok_or_else(|| format!("it has no key {key:?}"))?;
        let text = String::from_utf8(bytes).map_err(|_| format!("{key} is not UTF-8"))?;
        Token::new(&text).map_err(|e| format!("{key}: {e}"))?;
        Ok(text.trim().to_owned())
    };
    value(CLUSTER_TOKEN_KEY)?;
    value(ADMIN_TOKEN_KEY)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::KafkaGatewayExt;

    #[test]
    fn generated_secrets_hold_two_distinct_valid_tokens_and_are_owned() {
        let kgw = KafkaGateway::test();
        let names = Names::of(&kgw).unwrap();
        assert!(generated(&kgw));
        let secret = generate(&kgw, &names).unwrap();
        assert_eq!(secret.metadata.name.as_deref(), Some("kgw-tokens"));
        assert_eq!(secret.metadata.owner_references.as_ref().unwrap()[0].name, "kgw");
        let data = secret.data.as_ref().unwrap();
        let (cluster, admin) = (&data[CLUSTER_TOKEN_KEY].0, &data[ADMIN_TOKEN_KEY].0);
        assert_eq!((cluster.len(), admin.len()), (64, 64));
        assert_ne!(cluster, admin);
        assert_eq!(admin_token(&secret).unwrap().as_bytes(), admin.as_slice());
        let again = generate(&kgw, &names).unwrap();
        assert_ne!(
            again.data.unwrap()[CLUSTER_TOKEN_KEY].0,
            *cluster,
            "fresh randomness"
        );
    }

    #[test]
    fn a_user_secret_is_named_and_checked() {
        let mut kgw = KafkaGateway::test();
        kgw.spec.security.tokens_secret = Some("my-tokens".into());
        let names = Names::of(&kgw).unwrap();
        assert_eq!(secret_name(&kgw, &names), "my-tokens");
        assert!(!generated(&kgw));
        let secret = |cluster: &str, admin: Option<&str>| Secret {
            data: Some(
                [(CLUSTER_TOKEN_KEY, Some(cluster)), (ADMIN_TOKEN_KEY, admin)]
                    .into_iter()
                    .filter_map(|(k, v)| Some((k.to_string(), ByteString(v?.as_bytes().to_vec()))))
                    .collect(),
            ),
            ..Secret::default()
        };
        let good = "0123456789abcdef0123";
        assert_eq!(
            admin_token(&secret(good, Some(&format!("{good}\n")))).unwrap(),
            good
        );
        let e = admin_token(&secret(good, None)).unwrap_err();
        assert!(e.contains("admin-token"), "{e}");
        let e = admin_token(&secret("short", Some(good))).unwrap_err();
        assert!(e.contains("cluster-token") && e.contains("minimum"), "{e}");
    }
}
