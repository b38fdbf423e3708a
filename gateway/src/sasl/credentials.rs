//! SASL users and their salted credentials (RFC 5802 §3): for each user and each SCRAM hash, a
//! random salt, the iteration count, `StoredKey = H(HMAC(SaltedPassword, "Client Key"))` and
//! `ServerKey = HMAC(SaltedPassword, "Server Key")`. Passwords are dropped once derived; PLAIN
//! verifies a password by deriving the SCRAM-SHA-512 `StoredKey` again and comparing in constant
//! time.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use hmac::{Hmac, Mac};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256, Sha512};
use subtle::ConstantTimeEq;

use super::SaslError;

/// PBKDF2 iterations of the credentials derived from `--sasl-users-file` (Kafka's default
/// and minimum for SCRAM).
pub const SCRAM_ITERATIONS: u32 = 4096;
/// Salt length in bytes.
const SALT_BYTES: usize = 32;
/// Longest user name or password accepted in the users file.
const MAX_FIELD_BYTES: usize = 1024;

/// The two SCRAM hash functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScramHash {
    /// SCRAM-SHA-256 (RFC 7677).
    Sha256,
    /// SCRAM-SHA-512.
    Sha512,
}

impl ScramHash {
    /// Both hashes.
    pub const ALL: [ScramHash; 2] = [Self::Sha256, Self::Sha512];

    /// The SASL mechanism name (`SCRAM-SHA-256`, `SCRAM-SHA-512`).
    pub fn mechanism(self) -> &'static str {
        match self {
            Self::Sha256 => "SCRAM-SHA-256",
            Self::Sha512 => "SCRAM-SHA-512",
        }
    }

    /// The hash of a mechanism name.
    pub fn from_mechanism(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|h| h.mechanism() == name)
    }

    /// Kafka's `ScramMechanism` type id (1 = SCRAM-SHA-256, 2 = SCRAM-SHA-512).
    pub fn kafka_type(self) -> i8 {
        match self {
            Self::Sha256 => 1,
            Self::Sha512 => 2,
        }
    }

    /// The hash of a Kafka `ScramMechanism` type id.
    pub fn from_kafka_type(t: i8) -> Option<Self> {
        Self::ALL.into_iter().find(|h| h.kafka_type() == t)
    }

    /// `H(data)`.
    pub fn hash(self, data: &[u8]) -> Vec<u8> {
        match self {
            Self::Sha256 => Sha256::digest(data).to_vec(),
            Self::Sha512 => Sha512::digest(data).to_vec(),
        }
    }

    /// `HMAC(key, data)`.
    pub fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        // HMAC accepts keys of any length: `new_from_slice` cannot fail.
        match self {
            Self::Sha256 => {
                let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("hmac takes any key length");
                m.update(data);
                m.finalize().into_bytes().to_vec()
            }
            Self::Sha512 => {
                let mut m = <Hmac<Sha512> as Mac>::new_from_slice(key).expect("hmac takes any key length");
                m.update(data);
                m.finalize().into_bytes().to_vec()
            }
        }
    }

    /// `Hi(password, salt, iterations)`: PBKDF2 with this hash's HMAC.
    pub fn salted_password(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        match self {
            Self::Sha256 => {
                let mut out = vec![0u8; 32];
                pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, iterations, &mut out);
                out
            }
            Self::Sha512 => {
                let mut out = vec![0u8; 64];
                pbkdf2::pbkdf2_hmac::<Sha512>(password, salt, iterations, &mut out);
                out
            }
        }
    }
}

/// One user's credential for one SCRAM hash (replicated in the cluster state as is: it holds
/// no password).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScramCredential {
    /// Random salt.
    pub salt: Vec<u8>,
    /// PBKDF2 iterations.
    pub iterations: u32,
    /// `H(ClientKey)`.
    pub stored_key: Vec<u8>,
    /// `HMAC(SaltedPassword, "Server Key")`.
    pub server_key: Vec<u8>,
}

impl fmt::Debug for ScramCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScramCredential")
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

impl ScramCredential {
    /// Derives the credential of `password` with `salt`.
    pub fn derive(hash: ScramHash, password: &[u8], salt: Vec<u8>, iterations: u32) -> Self {
        let salted = hash.salted_password(password, &salt, iterations);
        Self::from_salted_password(hash, &salted, salt, iterations)
    }

    /// The credential of a salted password (`Hi(password, salt, iterations)`), as
    /// AlterUserScramCredentials sends it.
    pub fn from_salted_password(hash: ScramHash, salted: &[u8], salt: Vec<u8>, iterations: u32) -> Self {
        let client_key = hash.hmac(salted, b"Client Key");
        Self {
            stored_key: hash.hash(&client_key),
            server_key: hash.hmac(salted, b"Server Key"),
            salt,
            iterations,
        }
    }

    /// Derives the credential of `password` with a fresh random salt.
    pub fn generate(hash: ScramHash, password: &[u8], iterations: u32) -> Self {
        let mut salt = vec![0u8; SALT_BYTES];
        rand::rng().fill_bytes(&mut salt);
        Self::derive(hash, password, salt, iterations)
    }

    /// True when `password` derives this credential (constant-time comparison).
    pub fn matches(&self, hash: ScramHash, password: &[u8]) -> bool {
        let salted = hash.salted_password(password, &self.salt, self.iterations);
        let stored = hash.hash(&hash.hmac(&salted, b"Client Key"));
        bool::from(stored.ct_eq(&self.stored_key))
    }
}

#[derive(Clone)]
struct UserCredentials {
    sha256: ScramCredential,
    sha512: ScramCredential,
}

/// Where SASL finds a user's SCRAM credentials.
pub trait ScramLookup: Send + Sync + fmt::Debug {
    /// The user's credential for `hash`, if any.
    fn scram(&self, user: &str, hash: ScramHash) -> Option<ScramCredential>;
}

/// True when `user` has a credential `password` derives (PLAIN): checked against the
/// SCRAM-SHA-512 credential, else the SCRAM-SHA-256 one. An unknown user costs a derivation too.
pub fn verify_plain(users: &dyn ScramLookup, user: &str, password: &[u8]) -> bool {
    for hash in [ScramHash::Sha512, ScramHash::Sha256] {
        if let Some(c) = users.scram(user, hash) {
            return c.matches(hash, password);
        }
    }
    let decoy = ScramHash::Sha512.salted_password(password, b"unknown-user-decoy", SCRAM_ITERATIONS);
    std::hint::black_box(decoy);
    false
}

/// The users SASL listeners accept; redacted in `Debug`.
#[derive(Default)]
pub struct CredentialStore {
    users: HashMap<String, UserCredentials>,
}

impl fmt::Debug for CredentialStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CredentialStore({} users)", self.users.len())
    }
}

impl CredentialStore {
    /// Reads a users file: one `name:password` per line (the password is everything after the
    /// first `:`); empty lines and lines starting with `#` are skipped.
    ///
    /// # Errors
    /// [`SaslError::UsersFile`] naming the file and line.
    pub fn load_file(path: &Path) -> Result<Self, SaslError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| SaslError::UsersFile(format!("cannot read {}: {e}", path.display())))?;
        Self::parse(&text).map_err(|e| SaslError::UsersFile(format!("{}: {e}", path.display())))
    }

    /// Parses the users file's text (see [`Self::load_file`]).
    ///
    /// # Errors
    /// A message naming the first bad line.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut store = Self::default();
        for (n, line) in text.lines().enumerate() {
            let line = line.strip_suffix('\r').unwrap_or(line);
            if line.trim().is_empty() || line.trim_start().starts_with('#') {
                continue;
            }
            let at = n + 1;
            let (name, password) = line
                .split_once(':')
                .ok_or_else(|| format!("line {at} is not name:password"))?;
            let name = name.trim();
            if name.is_empty() || password.is_empty() {
                return Err(format!("line {at}: empty user name or password"));
            }
            if name.len() > MAX_FIELD_BYTES || password.len() > MAX_FIELD_BYTES {
                return Err(format!(
                    "line {at}: user name or password longer than {MAX_FIELD_BYTES} bytes"
                ));
            }
            if name.chars().any(char::is_control) {
                return Err(format!("line {at}: control character in the user name"));
            }
            if store.users.contains_key(name) {
                return Err(format!("line {at}: user {name:?} is listed twice"));
            }
            store.add(name, password.as_bytes());
        }
        if store.users.is_empty() {
            return Err("no user".into());
        }
        Ok(store)
    }

    /// Adds (or replaces) `name` with SCRAM credentials of `password` for both hashes.
    pub fn add(&mut self, name: &str, password: &[u8]) {
        let creds = UserCredentials {
            sha256: ScramCredential::generate(ScramHash::Sha256, password, SCRAM_ITERATIONS),
            sha512: ScramCredential::generate(ScramHash::Sha512, password, SCRAM_ITERATIONS),
        };
        self.users.insert(name.to_owned(), creds);
    }

    /// Every user with its credentials by hash.
    pub fn users(&self) -> impl Iterator<Item = (&str, [(ScramHash, &ScramCredential); 2])> {
        self.users.iter().map(|(name, c)| {
            (
                name.as_str(),
                [(ScramHash::Sha256, &c.sha256), (ScramHash::Sha512, &c.sha512)],
            )
        })
    }

    /// The user's credential for `hash`.
    pub fn scram(&self, user: &str, hash: ScramHash) -> Option<&ScramCredential> {
        let u = self.users.get(user)?;
        Some(match hash {
            ScramHash::Sha256 => &u.sha256,
            ScramHash::Sha512 => &u.sha512,
        })
    }

    /// True when `user` exists and `password` is theirs (PLAIN), see [`verify_plain`].
    pub fn verify_plain(&self, user: &str, password: &[u8]) -> bool {
        verify_plain(self, user, password)
    }

    /// Number of users.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// True without users.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }
}

impl ScramLookup for CredentialStore {
    fn scram(&self, user: &str, hash: ScramHash) -> Option<ScramCredential> {
        CredentialStore::scram(self, user, hash).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_file_lines_and_errors() {
        let s = CredentialStore::parse("# users\nalice:s3cr:et\n\nbob:pw\r\n").unwrap();
        assert_eq!(s.len(), 2);
        assert!(s.verify_plain("alice", b"s3cr:et"));
        assert!(!s.verify_plain("alice", b"s3cr"));
        assert!(s.verify_plain("bob", b"pw"));
        assert!(!s.verify_plain("carol", b"pw"));
        assert_ne!(
            s.scram("alice", ScramHash::Sha256).unwrap().salt,
            s.scram("bob", ScramHash::Sha256).unwrap().salt
        );
        assert!(!format!("{s:?}").contains("s3cr"));
        for bad in ["alice", "alice:", ":pw", "a:1\na:2", "", "# only a comment\n"] {
            assert!(CredentialStore::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn rfc7677_test_vector() {
        // RFC 7677 §3: user "user", password "pencil", salt W22ZaJ0SNY7soEsUEjb6gQ==, i=4096.
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD;
        let salt = b64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let c = ScramCredential::derive(ScramHash::Sha256, b"pencil", salt, 4096);
        let auth_message = "n=user,r=rOprNGfwEbeRWgbNEkqO,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
        let server_signature = ScramHash::Sha256.hmac(&c.server_key, auth_message.as_bytes());
        assert_eq!(
            b64.encode(server_signature),
            "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
        );
    }
}
