//! TLS of the SSL and SASL_SSL listeners (rustls with the ring provider, TLS 1.2 and 1.3).
//!
//! The certificate, key and client CA files are re-read when they change, as a mounted
//! Kubernetes Secret rotates (the kubelet swaps a symlink, so the files' inode and mtime
//! change): a new connection checks the files' metadata at most once per
//! [`RELOAD_CHECK_INTERVAL`]; a change builds a new server configuration for the connections
//! that follow, and a set of files that does not load keeps the previous configuration (logged
//! once per change). Connections already open keep the configuration they started with.
//!
//! The principal of a client certificate is `User:<subject CN>`, read with `x509-parser`
//! (rustls's webpki verifies the chain but exposes no subject).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use parking_lot::Mutex;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{self, RootCertStore, ServerConfig};
use tokio_rustls::TlsAcceptor;
use tracing::{info, warn};

use crate::config::{ClientAuth, TlsSettings};

/// Shortest time between two checks of the files.
pub const RELOAD_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// Why the TLS files cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A file holds no usable PEM item of the expected kind.
    #[error("{path}: {what}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is missing or wrong.
        what: String,
    },
    /// rustls refused the certificate, key or CA.
    #[error("invalid TLS configuration: {0}")]
    Config(String),
}

/// Metadata of the files, compared to notice a change.
type Stamp = Vec<Option<(SystemTime, u64, u64)>>;

/// The acceptor of a listener's TLS connections, rebuilt when the files change.
#[derive(Debug)]
pub struct TlsReloader {
    settings: TlsSettings,
    state: Mutex<State>,
}

struct State {
    acceptor: TlsAcceptor,
    stamp: Stamp,
    checked: Instant,
}

impl TlsReloader {
    /// Loads the files once.
    ///
    /// # Errors
    /// [`TlsError`] when they cannot be read or do not form a valid configuration.
    pub fn new(settings: TlsSettings) -> Result<Self, TlsError> {
        let stamp = stamp(&settings);
        let acceptor = TlsAcceptor::from(Arc::new(server_config(&settings)?));
        Ok(Self {
            settings,
            state: Mutex::new(State {
                acceptor,
                stamp,
                checked: Instant::now(),
            }),
        })
    }

    /// The acceptor for a new connection, after reloading the files if they changed.
    pub fn acceptor(&self) -> TlsAcceptor {
        let now = Instant::now();
        let mut s = self.state.lock();
        if now.duration_since(s.checked) >= RELOAD_CHECK_INTERVAL {
            s.checked = now;
            let current = stamp(&self.settings);
            if current != s.stamp {
                s.stamp = current;
                match server_config(&self.settings) {
                    Ok(c) => {
                        s.acceptor = TlsAcceptor::from(Arc::new(c));
                        info!(cert = %self.settings.cert_file.display(), "TLS files changed: new connections use them");
                    }
                    Err(e) => {
                        warn!(error = %e, "TLS files changed but cannot be used; keeping the previous ones")
                    }
                }
            }
        }
        s.acceptor.clone()
    }
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State")
            .field("checked", &self.checked)
            .finish_non_exhaustive()
    }
}

fn stamp(s: &TlsSettings) -> Stamp {
    use std::os::unix::fs::MetadataExt as _;
    [Some(&s.cert_file), Some(&s.key_file), s.client_ca_file.as_ref()]
        .into_iter()
        .flatten()
        .map(|p| {
            std::fs::metadata(p)
                .ok()
                .map(|m| (m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len(), m.ino()))
        })
        .collect()
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            path: path.to_owned(),
            what: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            path: path.to_owned(),
            what: "no CERTIFICATE in PEM".into(),
        });
    }
    Ok(certs)
}

/// The server configuration of `s`.
///
/// # Errors
/// [`TlsError`] when a file cannot be read or rustls refuses its content.
pub fn server_config(s: &TlsSettings) -> Result<ServerConfig, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = certificates(&s.cert_file)?;
    let key = PrivateKeyDer::from_pem_slice(&read(&s.key_file)?).map_err(|e| TlsError::Pem {
        path: s.key_file.clone(),
        what: format!("no usable PRIVATE KEY in PEM: {e}"),
    })?;
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let builder = match (&s.client_ca_file, s.client_auth) {
        (_, ClientAuth::None) | (None, _) => builder.with_no_client_auth(),
        (Some(ca), auth) => {
            let mut roots = RootCertStore::empty();
            for c in certificates(ca)? {
                roots.add(c).map_err(|e| TlsError::Pem {
                    path: ca.clone(),
                    what: e.to_string(),
                })?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = if auth == ClientAuth::Requested {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            builder.with_client_cert_verifier(verifier.build().map_err(|e| TlsError::Config(e.to_string()))?)
        }
    };
    builder
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::Config(e.to_string()))
}

/// `User:<subject CN>` of the client's (verified) certificate, if it sent one with a CN.
pub fn principal(conn: &rustls::ServerConnection) -> Option<String> {
    let leaf = conn.peer_certificates()?.first()?;
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref()).ok()?;
    let cn = cert
        .subject()
        .iter_common_name()
        .next()?
        .as_str()
        .ok()?
        .to_owned();
    Some(format!("User:{cn}"))
}

#[cfg(test)]
#[path = "tls_test.rs"]
mod tests;
