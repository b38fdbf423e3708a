//! SASL OAUTHBEARER (RFC 7628, KIP-255): the client sends a JWT, the gateway checks its
//! signature against the keys of `--oauth-jwks-file` (asymmetric algorithms only: RS*, PS*,
//! ES*, EdDSA), its expiry (30 s of clock skew allowed, as Kafka's default), and, when
//! configured, its issuer and audience; the principal is `User:<claim>` of
//! `--oauth-principal-claim` (`sub` by default). A token expiring before the configured session
//! lifetime ends the session at its expiry (KIP-368). JWT decoding and signature checks use the
//! `jsonwebtoken` crate (ring underneath, like rustls here).

use std::path::{Path, PathBuf};

use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};

use super::SaslError;

/// Clock skew allowed on `exp` and `nbf`, in seconds.
const LEEWAY_SECONDS: u64 = 30;

/// The OAUTHBEARER options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthSettings {
    /// JWKS file holding the public keys tokens are signed with.
    pub jwks_file: PathBuf,
    /// Required `iss`, if any.
    pub issuer: Option<String>,
    /// Required `aud` (one of the token's), if any.
    pub audience: Option<String>,
    /// The claim naming the principal.
    pub principal_claim: String,
}

/// Validates OAUTHBEARER tokens.
pub struct OAuthValidator {
    keys: Vec<(Option<String>, DecodingKey)>,
    settings: OAuthSettings,
}

impl std::fmt::Debug for OAuthValidator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuthValidator")
            .field("keys", &self.keys.len())
            .field("settings", &self.settings)
            .finish()
    }
}

/// A valid token: the principal's name and the token's expiry (Unix seconds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidToken {
    /// The value of the principal claim.
    pub name: String,
    /// `exp`.
    pub expires_at: u64,
}

fn invalid(reason: &'static str) -> SaslError {
    SaslError::InvalidToken(reason.into())
}

impl OAuthValidator {
    /// Reads the JWKS file.
    ///
    /// # Errors
    /// [`SaslError::UsersFile`] when it cannot be read, is not a JWKS, or holds no usable key.
    pub fn load(settings: OAuthSettings) -> Result<Self, SaslError> {
        let text = std::fs::read_to_string(&settings.jwks_file).map_err(|e| {
            SaslError::UsersFile(format!("cannot read {}: {e}", settings.jwks_file.display()))
        })?;
        Self::from_jwks(&text, settings)
    }

    fn from_jwks(text: &str, settings: OAuthSettings) -> Result<Self, SaslError> {
        let file = |m: String| SaslError::UsersFile(format!("{}: {m}", Path::display(&settings.jwks_file)));
        let set: JwkSet = serde_json::from_str(text).map_err(|e| file(format!("not a JWKS: {e}")))?;
        let mut keys = Vec::new();
        for jwk in &set.keys {
            // Symmetric (`oct`) keys would let anyone holding the file mint tokens.
            if matches!(jwk.algorithm, AlgorithmParameters::OctetKey(_)) {
                continue;
            }
            let key = DecodingKey::from_jwk(jwk).map_err(|e| file(format!("unusable key: {e}")))?;
            keys.push((jwk.common.key_id.clone(), key));
        }
        if keys.is_empty() {
            return Err(file("no RSA, EC or OKP public key".into()));
        }
        Ok(Self { keys, settings })
    }

    /// Checks `token` now.
    ///
    /// # Errors
    /// [`SaslError::InvalidToken`] naming what failed.
    pub fn validate(&self, token: &str) -> Result<ValidToken, SaslError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| invalid("malformed token"))?;
        let asymmetric = [
            Algorithm::RS256,
            Algorithm::RS384,
            Algorithm::RS512,
            Algorithm::PS256,
            Algorithm::PS384,
            Algorithm::PS512,
            Algorithm::ES256,
            Algorithm::ES384,
            Algorithm::EdDSA,
        ];
        if !asymmetric.contains(&header.alg) {
            return Err(invalid("unsupported signature algorithm"));
        }
        let mut validation = Validation::new(header.alg);
        validation.leeway = LEEWAY_SECONDS;
        validation.validate_nbf = true;
        validation.required_spec_claims = ["exp".to_owned()].into_iter().collect();
        match &self.settings.issuer {
            Some(iss) => validation.set_issuer(&[iss]),
            None => validation.iss = None,
        }
        match &self.settings.audience {
            Some(aud) => validation.set_audience(&[aud]),
            None => validation.validate_aud = false,
        }
        let candidates = self
            .keys
            .iter()
            .filter(|(kid, _)| header.kid.is_none() || kid.is_none() || *kid == header.kid);
        let mut last = invalid("no key of the JWKS matches the token");
        for (_, key) in candidates {
            match jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(token, key, &validation)
            {
                Ok(data) => return self.principal(&data.claims),
                Err(e) => {
                    use jsonwebtoken::errors::ErrorKind;
                    last = invalid(match e.kind() {
                        ErrorKind::ExpiredSignature => "token expired",
                        ErrorKind::ImmatureSignature => "token not valid yet",
                        ErrorKind::InvalidIssuer => "wrong issuer",
                        ErrorKind::InvalidAudience => "wrong audience",
                        ErrorKind::MissingRequiredClaim(_) => "missing exp claim",
                        ErrorKind::InvalidSignature | ErrorKind::InvalidAlgorithm => "invalid signature",
                        _ => "invalid token",
                    });
                    if !matches!(
                        e.kind(),
                        ErrorKind::InvalidSignature | ErrorKind::InvalidAlgorithm
                    ) {
                        return Err(last);
                    }
                }
            }
        }
        Err(last)
    }

    fn principal(
        &self,
        claims: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<ValidToken, SaslError> {
        let name = claims
            .get(&self.settings.principal_claim)
            .and_then(serde_json::Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| invalid("no principal claim"))?;
        let expires_at = claims
            .get("exp")
            .and_then(serde_json::Value::as_u64)
            .ok_or_else(|| invalid("missing exp claim"))?;
        Ok(ValidToken {
            name: name.to_owned(),
            expires_at,
        })
    }
}

/// The token of an OAUTHBEARER client message: `gs2-header \x01 auth=Bearer <token> \x01
/// [key=value \x01]* \x01`.
///
/// # Errors
/// [`SaslError::Malformed`] for anything else.
pub fn client_token(bytes: &[u8]) -> Result<String, SaslError> {
    let bad = |m: &str| SaslError::Malformed(format!("invalid OAUTHBEARER message: {m}"));
    let text = std::str::from_utf8(bytes).map_err(|_| bad("not UTF-8"))?;
    let (gs2, rest) = text
        .split_once('\x01')
        .ok_or_else(|| bad("no key-value separator"))?;
    if !(gs2.starts_with("n,") || gs2.starts_with("y,")) {
        return Err(bad("bad GS2 header"));
    }
    let rest = rest
        .strip_suffix("\x01\x01")
        .ok_or_else(|| bad("not terminated"))?;
    let auth = rest
        .split('\x01')
        .find_map(|kv| kv.strip_prefix("auth="))
        .ok_or_else(|| bad("no auth"))?;
    let token = auth
        .strip_prefix("Bearer ")
        .or_else(|| auth.strip_prefix("bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| bad("auth is not a Bearer token"))?;
    Ok(token.to_owned())
}

#[cfg(test)]
#[path = "oauth_test.rs"]
mod tests;
