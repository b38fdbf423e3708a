//! Control-plane credentials: the shared secret tokens that authenticate gateway-to-gateway raft
//! traffic (`--cluster-token-file`) and mutating admin HTTP calls (`--admin-token-file`).
//!
//! A [`Token`] is read once in `main` (through the config) and passed down. Both ports carry it
//! as `authorization: Bearer <token>`; [`Token::verify_bearer`] compares in constant time (the
//! SHA-256 digests of the expected and presented values are compared with `subtle`, so neither
//! the token's content nor its length leaks through timing). A token never appears in `Debug`
//! output or logs.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Shortest token accepted, in bytes: 16 random characters are far beyond guessing over a
/// network, and shorter values are likely placeholders (`changeme`).
pub const MIN_TOKEN_BYTES: usize = 16;
/// Longest token accepted, in bytes (it travels in a header on every raft RPC).
pub const MAX_TOKEN_BYTES: usize = 4096;

/// Why a token could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The token file could not be read.
    #[error("cannot read {path}: {reason}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        reason: String,
    },
    /// The token is too short, too long, or holds characters a header cannot carry.
    #[error("{0}")]
    Invalid(String),
}

/// A shared secret token; cheap to clone, redacted in `Debug`.
#[derive(Clone)]
pub struct Token {
    value: Arc<str>,
    digest: [u8; 32],
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

impl Token {
    /// A token from its text; surrounding whitespace (a trailing newline of a file or a
    /// Kubernetes Secret) is ignored.
    ///
    /// # Errors
    /// [`TokenError::Invalid`] when it is shorter than [`MIN_TOKEN_BYTES`], longer than
    /// [`MAX_TOKEN_BYTES`], or holds anything but visible ASCII (it must fit an HTTP header).
    pub fn new(text: &str) -> Result<Self, TokenError> {
        let value = text.trim();
        if value.len() < MIN_TOKEN_BYTES {
            return Err(TokenError::Invalid(format!(
                "the token has {} bytes, fewer than the minimum of {MIN_TOKEN_BYTES} (generate one with \
                 `openssl rand -hex 32`)",
                value.len()
            )));
        }
        if value.len() > MAX_TOKEN_BYTES {
            return Err(TokenError::Invalid(format!(
                "the token has {} bytes, more than the maximum of {MAX_TOKEN_BYTES}",
                value.len()
            )));
        }
        if !value.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(TokenError::Invalid(
                "the token may hold only visible ASCII characters (no spaces or control characters)".into(),
            ));
        }
        Ok(Self {
            value: Arc::from(value),
            digest: Sha256::digest(value.as_bytes()).into(),
        })
    }

    /// Reads a token from `path` (the whole file, whitespace trimmed).
    ///
    /// # Errors
    /// [`TokenError::Read`] when the file cannot be read, else as [`Token::new`].
    pub fn read_file(path: &Path) -> Result<Self, TokenError> {
        let text = std::fs::read_to_string(path).map_err(|e| TokenError::Read {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        Self::new(&text)
    }

    /// The `authorization` header value presenting this token: `Bearer <token>`.
    pub fn bearer(&self) -> String {
        format!("Bearer {}", self.value)
    }

    /// True when `presented` (the raw token) equals this token, compared in constant time.
    pub fn verify(&self, presented: &[u8]) -> bool {
        let digest: [u8; 32] = Sha256::digest(presented).into();
        bool::from(self.digest.ct_eq(&digest))
    }

    /// True when `header` (an `authorization` header value, if any) is `Bearer <this token>`.
    /// The scheme is matched case-insensitively, as HTTP requires.
    pub fn verify_bearer(&self, header: Option<&[u8]>) -> bool {
        let Some(header) = header else { return false };
        match header.split_at_checked(7) {
            Some((scheme, token)) if scheme.eq_ignore_ascii_case(b"bearer ") => self.verify(token),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "0123456789abcdef0123";

    #[test]
    fn tokens_are_validated_and_trimmed() {
        let t = Token::new(&format!("  {GOOD}\n")).unwrap();
        assert!(t.verify(GOOD.as_bytes()));
        assert_eq!(t.bearer(), format!("Bearer {GOOD}"));
        for bad in [
            "",
            "short",
            "0123456789abcde",
            "0123456789 abcdef0",
            "0123456789abcdef\u{7f}",
        ] {
            assert!(Token::new(bad).is_err(), "{bad:?}");
        }
        assert!(Token::new(&"x".repeat(MAX_TOKEN_BYTES + 1)).is_err());
        assert!(Token::new(&"x".repeat(MAX_TOKEN_BYTES)).is_ok());
    }

    #[test]
    fn only_the_exact_token_verifies() {
        let t = Token::new(GOOD).unwrap();
        assert!(t.verify(GOOD.as_bytes()));
        assert!(!t.verify(b""));
        assert!(!t.verify(&GOOD.as_bytes()[..GOOD.len() - 1]));
        assert!(!t.verify(format!("{GOOD}4").as_bytes()));
        assert!(!t.verify(GOOD.to_uppercase().as_bytes()));
    }

    #[test]
    fn bearer_headers_are_checked() {
        let t = Token::new(GOOD).unwrap();
        assert!(t.verify_bearer(Some(format!("Bearer {GOOD}").as_bytes())));
        assert!(t.verify_bearer(Some(format!("bearer {GOOD}").as_bytes())));
        assert!(!t.verify_bearer(None));
        assert!(!t.verify_bearer(Some(GOOD.as_bytes())));
        assert!(!t.verify_bearer(Some(format!("Basic {GOOD}").as_bytes())));
        assert!(!t.verify_bearer(Some(format!("Bearer  {GOOD}").as_bytes())));
        assert!(!t.verify_bearer(Some(b"Bearer wrong-token-of-enough-length")));
        assert!(!t.verify_bearer(Some(b"Bear")));
    }

    #[test]
    fn debug_output_hides_the_token() {
        let t = Token::new(GOOD).unwrap();
        assert!(!format!("{t:?}").contains(GOOD));
    }

    #[test]
    fn files_are_read_and_missing_files_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, format!("{GOOD}\n")).unwrap();
        assert!(Token::read_file(&path).unwrap().verify(GOOD.as_bytes()));
        let e = Token::read_file(&dir.path().join("absent"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("absent"), "{e}");
    }
}
