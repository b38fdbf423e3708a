//! TLS and SASL options of the Kafka listeners, checked against the listeners that use them.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::{invalid, ConfigError, Listener};
use crate::sasl::oauth::{OAuthSettings, OAuthValidator};
use crate::sasl::CredentialStore;

/// Whether TLS listeners ask clients for a certificate (Kafka's `ssl.client.auth`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum ClientAuth {
    /// No client certificate is asked for.
    #[default]
    None,
    /// A certificate is asked for; a client without one is `User:ANONYMOUS`, one with a
    /// certificate that does not chain to the client CA is refused.
    Requested,
    /// A certificate chaining to the client CA is required.
    Required,
}

/// The TLS files of the SSL and SASL_SSL listeners.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// PEM certificate chain, leaf first.
    pub cert_file: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// PEM CA certificates client certificates must chain to.
    pub client_ca_file: Option<PathBuf>,
    /// Client certificate policy.
    pub client_auth: ClientAuth,
}

#[derive(Debug, Default)]
pub(super) struct SecurityFlags {
    pub(super) cert: Option<PathBuf>,
    pub(super) key: Option<PathBuf>,
    pub(super) client_ca: Option<PathBuf>,
    pub(super) client_auth: Option<ClientAuth>,
    pub(super) sasl_users_file: Option<PathBuf>,
    pub(super) max_reauth_ms: Option<u64>,
    pub(super) oauth_jwks_file: Option<PathBuf>,
    pub(super) oauth_issuer: Option<String>,
    pub(super) oauth_audience: Option<String>,
    pub(super) oauth_principal_claim: Option<String>,
}

#[derive(Debug)]
pub(super) struct Security {
    pub(super) tls: Option<TlsSettings>,
    pub(super) sasl_users: Option<Arc<CredentialStore>>,
    pub(super) oauth: Option<Arc<OAuthValidator>>,
    pub(super) max_reauth: Option<Duration>,
}

pub(super) fn build(listeners: &[Listener], f: SecurityFlags) -> Result<Security, ConfigError> {
    let names = |pred: fn(&Listener) -> bool| {
        listeners
            .iter()
            .filter(|l| pred(l))
            .map(|l| l.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let tls_listeners = names(|l| l.protocol.tls());
    let sasl_listeners = names(|l| l.protocol.sasl());
    let client_auth = f.client_auth.unwrap_or_default();
    let tls = if tls_listeners.is_empty() {
        for (given, key) in [
            (f.cert.is_some(), "tls-cert-file"),
            (f.key.is_some(), "tls-key-file"),
            (f.client_ca.is_some(), "tls-client-ca-file"),
            (f.client_auth.is_some(), "tls-client-auth"),
        ] {
            if given {
                return Err(invalid(
                    key,
                    "no SSL or SASL_SSL listener would use it (see --listeners)".into(),
                ));
            }
        }
        None
    } else {
        let need = |v: Option<PathBuf>, key: &'static str| {
            v.ok_or_else(|| invalid(key, format!("the TLS listeners ({tls_listeners}) need it")))
        };
        let settings = TlsSettings {
            cert_file: need(f.cert, "tls-cert-file")?,
            key_file: need(f.key, "tls-key-file")?,
            client_ca_file: f.client_ca,
            client_auth,
        };
        if settings.client_auth != ClientAuth::None && settings.client_ca_file.is_none() {
            return Err(invalid(
                "tls-client-ca-file",
                "--tls-client-auth requested or required checks client certificates against it".into(),
            ));
        }
        Some(settings)
    };
    if sasl_listeners.is_empty() {
        for (given, key) in [
            (f.sasl_users_file.is_some(), "sasl-users-file"),
            (f.oauth_jwks_file.is_some(), "oauth-jwks-file"),
        ] {
            if given {
                return Err(invalid(
                    key,
                    "no SASL_PLAINTEXT or SASL_SSL listener would use it (see --listeners)".into(),
                ));
            }
        }
    } else if f.sasl_users_file.is_none() && f.oauth_jwks_file.is_none() {
        return Err(invalid(
            "sasl-users-file",
            format!(
                "the SASL listeners ({sasl_listeners}) need users (or --oauth-jwks-file for OAUTHBEARER)"
            ),
        ));
    }
    let sasl_users = match f.sasl_users_file {
        None => None,
        Some(path) => Some(Arc::new(
            CredentialStore::load_file(&path).map_err(|e| invalid("sasl-users-file", e.to_string()))?,
        )),
    };
    if f.oauth_jwks_file.is_none()
        && (f.oauth_issuer.is_some() || f.oauth_audience.is_some() || f.oauth_principal_claim.is_some())
    {
        return Err(invalid(
            "oauth-jwks-file",
            "the other --oauth-* options need it".into(),
        ));
    }
    let oauth = match f.oauth_jwks_file {
        None => None,
        Some(jwks_file) => Some(Arc::new(
            OAuthValidator::load(OAuthSettings {
                jwks_file,
                issuer: f.oauth_issuer,
                audience: f.oauth_audience,
                principal_claim: f.oauth_principal_claim.unwrap_or_else(|| "sub".into()),
            })
            .map_err(|e| invalid("oauth-jwks-file", e.to_string()))?,
        )),
    };
    let max_reauth = f.max_reauth_ms.filter(|ms| *ms > 0).map(Duration::from_millis);
    Ok(Security {
        tls,
        sasl_users,
        oauth,
        max_reauth,
    })
}
