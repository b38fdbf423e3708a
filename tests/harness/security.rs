//! Test credentials generated at run time (nothing secret is committed): a CA, a server
//! certificate for `localhost` and `127.0.0.1`, a client certificate with CN `alice-cert`, a
//! client certificate from another (untrusted) CA, and a SASL users file; plus the
//! gateway options of a gateway with every kind of listener.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};

use anyhow::{Context, Result};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose};
use tempfile::TempDir;

use super::gateway::GatewayOptions;

/// The SASL users of [`Credentials`]: (name, password).
pub const USERS: [(&str, &str); 2] = [("alice", "alice-secret:with colon"), ("bob", "b0b-secret")];
/// The CN of the trusted client certificate.
pub const CLIENT_CN: &str = "alice-cert";

/// PEM files in a temporary directory.
#[derive(Debug)]
pub struct Credentials {
    dir: TempDir,
}

fn ca(cn: &str) -> Result<CertifiedIssuer<'static, KeyPair>> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, cn);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    Ok(CertifiedIssuer::self_signed(params, KeyPair::generate()?)?)
}

/// A certificate for `sans` with `cn` signed by `issuer`: (cert PEM, key PEM).
fn leaf(issuer: &CertifiedIssuer<'static, KeyPair>, cn: &str, sans: &[&str]) -> Result<(String, String)> {
    let mut params = CertificateParams::new(sans.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())?;
    params.distinguished_name.push(DnType::CommonName, cn);
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, issuer)?;
    Ok((cert.pem(), key.serialize_pem()))
}

impl Credentials {
    /// Generates every file.
    ///
    /// # Errors
    /// Key generation or a write failed.
    pub fn generate() -> Result<Self> {
        let dir = tempfile::Builder::new().prefix("kgw-creds-").tempdir()?;
        let trusted = ca("kgw test CA")?;
        let rogue = ca("kgw rogue CA")?;
        // The addresses of single gateways and of cluster nodes (127.0.0.(id+1)).
        let (server, server_key) = leaf(
            &trusted,
            "localhost",
            &[
                "localhost",
                "127.0.0.1",
                "127.0.0.2",
                "127.0.0.3",
                "127.0.0.4",
                "127.0.0.5",
            ],
        )?;
        let (client, client_key) = leaf(&trusted, CLIENT_CN, &[])?;
        let (untrusted, untrusted_key) = leaf(&rogue, "mallory", &[])?;
        let users: String = USERS.iter().map(|(u, p)| format!("{u}:{p}\n")).collect();
        for (name, text) in [
            ("ca.pem", trusted.pem()),
            ("server.pem", server),
            ("server.key", server_key),
            ("client.pem", client),
            ("client.key", client_key),
            ("untrusted.pem", untrusted),
            ("untrusted.key", untrusted_key),
            ("users", users),
        ] {
            std::fs::write(dir.path().join(name), text).with_context(|| format!("write {name}"))?;
        }
        Ok(Self { dir })
    }

    /// The path of one of the files (`ca.pem`, `server.pem`, `client.key`, ...).
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The directory holding the files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The TLS and users-file arguments of [`Self::gateway_options`], for cluster nodes.
    pub fn args(&self) -> Vec<(String, String)> {
        let p = |n: &str| self.path(n).display().to_string();
        vec![
            ("--tls-cert-file".into(), p("server.pem")),
            ("--tls-key-file".into(), p("server.key")),
            ("--sasl-users-file".into(), p("users")),
        ]
    }

    /// Options of a gateway with SSL, SASL_PLAINTEXT and SASL_SSL listeners next to the
    /// PLAINTEXT one, using these files.
    pub fn gateway_options(&self) -> GatewayOptions {
        let p = |n: &str| self.path(n).display().to_string();
        GatewayOptions::default()
            .listener("SSL", "SSL")
            .listener("SASL_PLAINTEXT", "SASL_PLAINTEXT")
            .listener("SASL_SSL", "SASL_SSL")
            .arg("--tls-cert-file", &p("server.pem"))
            .arg("--tls-key-file", &p("server.key"))
            .arg("--sasl-users-file", &p("users"))
    }
}

/// An OAuth issuer of the test: an EC key signing JWTs, its public key in a JWKS file.
#[derive(Debug)]
pub struct OAuthIssuer {
    key_der: Vec<u8>,
    jwks: PathBuf,
}

/// The issuer (`iss`) the test tokens name.
pub const ISSUER: &str = "https://idp.kgw.test";
/// The audience (`aud`) the test tokens name.
pub const AUDIENCE: &str = "kafka";

impl OAuthIssuer {
    /// A fresh key; the JWKS is written into `dir`.
    ///
    /// # Errors
    /// Key generation or the write failed.
    pub fn generate(dir: &Path) -> Result<Self> {
        let pair = KeyPair::generate()?;
        let raw = pair.public_key_raw();
        anyhow::ensure!(raw.len() == 65, "not an uncompressed P-256 point");
        let jwks = serde_json::json!({ "keys": [{
            "kty": "EC", "crv": "P-256", "kid": "test-key", "alg": "ES256", "use": "sig",
            "x": B64URL.encode(&raw[1..33]), "y": B64URL.encode(&raw[33..]),
        }]});
        let path = dir.join("jwks.json");
        std::fs::write(&path, jwks.to_string()).context("write the JWKS")?;
        Ok(Self {
            key_der: pair.serialize_der(),
            jwks: path,
        })
    }

    /// The JWKS file.
    pub fn jwks_path(&self) -> &Path {
        &self.jwks
    }

    /// A token for `sub` from `iss`, expiring `expires_in_seconds` from now (negative: past).
    ///
    /// # Errors
    /// Signing failed.
    pub fn token(&self, sub: &str, iss: &str, expires_in_seconds: i64) -> Result<String> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs() as i64;
        let claims =
            serde_json::json!({ "sub": sub, "iss": iss, "aud": AUDIENCE, "exp": now + expires_in_seconds });
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some("test-key".into());
        Ok(jsonwebtoken::encode(
            &header,
            &claims,
            &EncodingKey::from_ec_der(&self.key_der),
        )?)
    }
}
