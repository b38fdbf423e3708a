//! SASL authentication of Kafka connections on SASL_PLAINTEXT and SASL_SSL listeners:
//! mechanisms PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512, re-authentication (KIP-368), and the audit
//! of failures.
//!
//! - [`credentials`]: users from `--sasl-users-file`, kept as salted SCRAM credentials.
//! - [`scram`]: the server side of a SCRAM exchange.
//! - [`session`]: one connection's authentication state, which requests it admits, and the
//!   exchange driven by the SaslHandshake and SaslAuthenticate handlers.
//! - [`audit`]: failure and success counters, rate-limited failure logs with the principal.

use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::ResponseError;

pub mod audit;
pub mod credentials;
pub mod oauth;
pub mod scram;
pub mod session;

pub use audit::Audit;
pub use credentials::{CredentialStore, ScramCredential, ScramHash, ScramLookup};
pub use session::AuthSession;

/// Why an authentication failed. Every one of them closes the connection after the answer.
#[derive(Debug, thiserror::Error)]
pub enum SaslError {
    /// The users file could not be used.
    #[error("{0}")]
    UsersFile(String),
    /// The client asked for a mechanism the gateway does not offer.
    #[error("unsupported SASL mechanism {0:?} (see the mechanisms of the SaslHandshake answer)")]
    UnsupportedMechanism(String),
    /// A request out of the exchange's order (SaslAuthenticate before SaslHandshake, a second
    /// SaslHandshake inside an exchange, SASL on a listener without SASL).
    #[error("{0}")]
    IllegalState(&'static str),
    /// The client's message is not one of the mechanism's.
    #[error("{0}")]
    Malformed(String),
    /// An OAUTHBEARER token that does not validate.
    #[error("authentication failed: invalid token ({0})")]
    InvalidToken(String),
    /// Unknown user or wrong password.
    #[error("authentication failed: invalid user name or password")]
    InvalidCredentials {
        /// The user the client named.
        user: String,
        /// What did not match, for the log (never sent to the client).
        reason: &'static str,
    },
}

impl SaslError {
    /// A bounded label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::UsersFile(_) => "users_file",
            Self::UnsupportedMechanism(_) => "unsupported_mechanism",
            Self::IllegalState(_) => "illegal_state",
            Self::Malformed(_) => "malformed",
            Self::InvalidCredentials { .. } => "invalid_credentials",
            Self::InvalidToken(_) => "invalid_token",
        }
    }

    /// The Kafka error code answered.
    pub fn response_error(&self) -> ResponseError {
        match self {
            Self::UnsupportedMechanism(_) => ResponseError::UnsupportedSaslMechanism,
            Self::IllegalState(_) => ResponseError::IllegalSaslState,
            Self::UsersFile(_)
            | Self::Malformed(_)
            | Self::InvalidCredentials { .. }
            | Self::InvalidToken(_) => ResponseError::SaslAuthenticationFailed,
        }
    }
}

/// A SASL mechanism the gateway offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    /// RFC 4616.
    Plain,
    /// RFC 5802 / 7677 with SHA-256 or SHA-512.
    Scram(ScramHash),
    /// RFC 7628 with JWTs (KIP-255).
    OAuthBearer,
}

impl Mechanism {
    /// Every mechanism offered, in SaslHandshake's answer order.
    pub const ALL: [Mechanism; 4] = [
        Self::Scram(ScramHash::Sha512),
        Self::Scram(ScramHash::Sha256),
        Self::Plain,
        Self::OAuthBearer,
    ];

    /// The mechanism's SASL name (also its metric label).
    pub fn name(self) -> &'static str {
        match self {
            Self::Plain => "PLAIN",
            Self::Scram(ScramHash::Sha256) => "SCRAM-SHA-256",
            Self::Scram(ScramHash::Sha512) => "SCRAM-SHA-512",
            Self::OAuthBearer => "OAUTHBEARER",
        }
    }

    /// The mechanism named `name` (case-sensitive, as Kafka).
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.name() == name)
    }
}

/// What the SASL handlers use, shared by all connections.
#[derive(Debug)]
pub struct Authenticator {
    /// Users' credentials; `None` when no listener uses SASL.
    pub users: Option<Arc<dyn ScramLookup>>,
    /// KIP-368 session lifetime; `None`: sessions do not expire.
    pub session_lifetime: Option<Duration>,
    /// OAUTHBEARER token validation; `None`: OAUTHBEARER is not offered.
    pub oauth: Option<Arc<oauth::OAuthValidator>>,
    /// Counters and rate-limited logs of authentications.
    pub audit: Audit,
}

impl Authenticator {
    /// The mechanisms offered: PLAIN and SCRAM with users, OAUTHBEARER with a JWKS.
    pub fn enabled(&self) -> Vec<Mechanism> {
        Mechanism::ALL
            .into_iter()
            .filter(|m| match m {
                Mechanism::OAuthBearer => self.oauth.is_some(),
                _ => self.users.is_some(),
            })
            .collect()
    }
}
