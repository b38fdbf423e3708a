//! One connection's authentication: the principal (from SASL, else the TLS client certificate,
//! else `User:ANONYMOUS`), which requests the connection may send now, and the SASL exchange.
//!
//! On a SASL listener only ApiVersions, SaslHandshake and SaslAuthenticate are admitted until
//! the client authenticated, and again once its session expired (KIP-368); any other request
//! closes the connection, as Kafka does. A failed exchange is answered, then the connection is
//! closed.

use std::sync::Arc;
use std::time::Instant;

use kafka_protocol::messages::ApiKey;
use parking_lot::Mutex;

use super::credentials::{verify_plain, ScramLookup};
use super::oauth;
use super::scram::{self, ScramPending};
use super::{Authenticator, Mechanism, SaslError};

/// The principal of connections that did not authenticate.
pub const ANONYMOUS: &str = "User:ANONYMOUS";

/// Why a request is not admitted on this connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The client has not authenticated yet.
    #[error("request before SASL authentication")]
    Unauthenticated,
    /// The client's session expired and it did not re-authenticate.
    #[error("SASL session expired without re-authentication")]
    Expired,
}

impl Refusal {
    /// A bounded label for metrics.
    pub fn metric_label(self) -> &'static str {
        match self {
            Self::Unauthenticated => "unauthenticated_request",
            Self::Expired => "session_expired",
        }
    }
}

#[derive(Debug, Default)]
enum Exchange {
    #[default]
    Idle,
    Handshaken(Mechanism),
    ScramSent(Mechanism, Box<ScramPending>),
}

#[derive(Debug, Default)]
struct State {
    principal: Option<String>,
    expires: Option<Instant>,
    exchange: Exchange,
    failed: bool,
}

/// The result of one SaslAuthenticate.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// The exchange goes on: send these bytes.
    Continue(Vec<u8>),
    /// Authenticated: send these bytes and the session lifetime (0: unlimited).
    Done {
        /// Final server message (empty for PLAIN).
        reply: Vec<u8>,
        /// The authenticated principal.
        principal: String,
        /// KIP-368 session lifetime in milliseconds.
        session_lifetime_ms: i64,
    },
}

/// Authentication state of one connection.
#[derive(Debug)]
pub struct AuthSession {
    sasl: bool,
    tls_principal: Option<String>,
    state: Mutex<State>,
}

impl Default for AuthSession {
    fn default() -> Self {
        Self::new(false, None)
    }
}

impl AuthSession {
    /// A connection of a listener that requires SASL (`sasl`) or not, with the principal of its
    /// client certificate, if any.
    pub fn new(sasl: bool, tls_principal: Option<String>) -> Self {
        Self {
            sasl,
            tls_principal,
            state: Mutex::new(State::default()),
        }
    }

    /// The connection's principal.
    pub fn principal(&self) -> String {
        if let Some(p) = &self.state.lock().principal {
            return p.clone();
        }
        self.tls_principal.clone().unwrap_or_else(|| ANONYMOUS.to_owned())
    }

    /// True when the listener requires SASL.
    pub fn sasl_required(&self) -> bool {
        self.sasl
    }

    /// When the authenticated session ends (KIP-368), if it does.
    pub fn expires(&self) -> Option<Instant> {
        let s = self.state.lock();
        s.principal.as_ref().and(s.expires)
    }

    /// True once an exchange failed: the connection closes after the answer.
    pub fn failed(&self) -> bool {
        self.state.lock().failed
    }

    /// Whether the connection may send `api` now.
    ///
    /// # Errors
    /// [`Refusal`] when it must authenticate (again) first.
    pub fn admits(&self, api: ApiKey, now: Instant) -> Result<(), Refusal> {
        if !self.sasl
            || matches!(
                api,
                ApiKey::ApiVersions | ApiKey::SaslHandshake | ApiKey::SaslAuthenticate
            )
        {
            return Ok(());
        }
        let s = self.state.lock();
        match (&s.principal, s.expires) {
            (None, _) => Err(Refusal::Unauthenticated),
            (Some(_), Some(t)) if now >= t => Err(Refusal::Expired),
            (Some(_), _) => Ok(()),
        }
    }

    /// Ends the connection's exchange as failed: the connection closes after the answer.
    pub fn fail(&self) {
        let mut s = self.state.lock();
        s.failed = true;
        s.exchange = Exchange::Idle;
    }

    /// SaslHandshake: starts an exchange with `mechanism`.
    ///
    /// # Errors
    /// [`SaslError::IllegalState`] outside a SASL listener or inside an exchange,
    /// [`SaslError::UnsupportedMechanism`] for a mechanism not offered.
    pub fn handshake(&self, mechanism: &str, enabled: &[Mechanism]) -> Result<Mechanism, SaslError> {
        let mut s = self.state.lock();
        let result = if !self.sasl {
            Err(SaslError::IllegalState("SASL is not enabled on this listener"))
        } else if !matches!(s.exchange, Exchange::Idle) {
            Err(SaslError::IllegalState(
                "SaslHandshake inside an unfinished SASL exchange",
            ))
        } else {
            Mechanism::parse(mechanism)
                .filter(|m| enabled.contains(m))
                .ok_or_else(|| SaslError::UnsupportedMechanism(mechanism.to_owned()))
        };
        match result {
            Ok(m) => s.exchange = Exchange::Handshaken(m),
            Err(_) => s.failed = true,
        }
        result
    }

    /// The mechanism of the exchange in progress, if any.
    pub fn mechanism(&self) -> Option<Mechanism> {
        match self.state.lock().exchange {
            Exchange::Idle => None,
            Exchange::Handshaken(m) | Exchange::ScramSent(m, _) => Some(m),
        }
    }

    /// SaslAuthenticate: the next step of the exchange.
    ///
    /// # Errors
    /// [`SaslError`] when the exchange fails; the connection is then closed after the answer.
    pub async fn authenticate(
        &self,
        auth: &Authenticator,
        bytes: &[u8],
        now: Instant,
    ) -> Result<Step, SaslError> {
        let plain_users = {
            let s = self.state.lock();
            match (&s.exchange, &auth.users, self.sasl) {
                (Exchange::Handshaken(Mechanism::Plain), Some(users), true) => Some(Arc::clone(users)),
                _ => None,
            }
        };
        // PLAIN derives the password's key (PBKDF2, 4096 rounds) on the blocking pool, so a
        // burst of logins does not hold the runtime's workers.
        let plain_user = match plain_users {
            Some(users) => {
                let bytes = bytes.to_vec();
                Some(
                    tokio::task::spawn_blocking(move || plain(users.as_ref(), &bytes))
                        .await
                        .unwrap_or(Err(SaslError::IllegalState("PLAIN verification did not finish"))),
                )
            }
            None => None,
        };
        let mut s = self.state.lock();
        let result = step(&mut s, self.sasl, auth, bytes, now, plain_user);
        if result.is_err() {
            s.failed = true;
            s.exchange = Exchange::Idle;
        }
        result
    }
}

fn step(
    s: &mut State,
    sasl: bool,
    auth: &Authenticator,
    bytes: &[u8],
    now: Instant,
    plain_user: Option<Result<String, SaslError>>,
) -> Result<Step, SaslError> {
    if !sasl {
        return Err(SaslError::IllegalState("SASL is not enabled on this listener"));
    }
    let no_users = || SaslError::IllegalState("PLAIN and SCRAM are not enabled");
    let mut token_expiry = None;
    let (user, reply) = match std::mem::take(&mut s.exchange) {
        Exchange::Idle => return Err(SaslError::IllegalState("SaslAuthenticate before SaslHandshake")),
        Exchange::Handshaken(Mechanism::OAuthBearer) => {
            let validator = auth
                .oauth
                .as_ref()
                .ok_or(SaslError::IllegalState("OAUTHBEARER is not enabled"))?;
            let token = validator.validate(&oauth::client_token(bytes)?)?;
            token_expiry = Some(token.expires_at);
            (token.name, Vec::new())
        }
        Exchange::Handshaken(Mechanism::Plain) => {
            let users = auth.users.as_deref().ok_or_else(no_users)?;
            let user = plain_user.unwrap_or_else(|| plain(users, bytes))?;
            (user, Vec::new())
        }
        Exchange::Handshaken(m @ Mechanism::Scram(hash)) => {
            let users = auth.users.as_deref().ok_or_else(no_users)?;
            let (pending, reply) = scram::server_first(users, hash, bytes)?;
            s.exchange = Exchange::ScramSent(m, Box::new(pending));
            return Ok(Step::Continue(reply));
        }
        Exchange::ScramSent(_, pending) => {
            let user = pending.user().to_owned();
            (user, pending.server_final(bytes)?)
        }
    };
    let principal = format!("User:{user}");
    if let Some(previous) = &s.principal {
        if *previous != principal {
            return Err(SaslError::InvalidCredentials {
                user,
                reason: "re-authentication as another user",
            });
        }
    }
    // KIP-368: the session ends with the configured lifetime, or the token's expiry if sooner.
    let token_left = token_expiry.map(|exp| {
        let unix_now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        std::time::Duration::from_secs(exp).saturating_sub(unix_now)
    });
    let lifetime = match (auth.session_lifetime, token_left) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    s.principal = Some(principal.clone());
    s.expires = lifetime.map(|d| now + d);
    Ok(Step::Done {
        reply,
        principal,
        session_lifetime_ms: lifetime.map_or(0, |d| d.as_millis().clamp(1, i64::MAX as u128) as i64),
    })
}

/// PLAIN (RFC 4616): `[authzid] NUL authcid NUL passwd`; returns the user.
fn plain(users: &dyn ScramLookup, bytes: &[u8]) -> Result<String, SaslError> {
    let mut parts = bytes.split(|b| *b == 0);
    let (Some(authzid), Some(user), Some(password), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(SaslError::Malformed(
            "invalid PLAIN message: expected authzid NUL user NUL password".into(),
        ));
    };
    let user = std::str::from_utf8(user)
        .map_err(|_| SaslError::Malformed("invalid PLAIN message: user name is not UTF-8".into()))?
        .to_owned();
    if user.is_empty() || password.is_empty() {
        return Err(SaslError::Malformed(
            "invalid PLAIN message: empty user name or password".into(),
        ));
    }
    if !authzid.is_empty() && authzid != user.as_bytes() {
        return Err(SaslError::InvalidCredentials {
            user,
            reason: "the authorization id differs from the user name",
        });
    }
    if !verify_plain(users, &user, password) {
        return Err(SaslError::InvalidCredentials {
            user,
            reason: "unknown user or wrong password",
        });
    }
    Ok(user)
}

#[cfg(test)]
#[path = "session_test.rs"]
mod tests;
