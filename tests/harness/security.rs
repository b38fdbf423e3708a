//! Test credentials generated at run time (nothing secret is committed): a CA, a server
//! certificate for `localhost` and `127.0.0.1`, a client certificate with CN `alice-cert`, a
//! client certificate from another (untrusted) CA, and a SASL users file; plus the
//! gateway options of a gateway with every kind of listener.

use std::path::{Path, PathBuf};

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
