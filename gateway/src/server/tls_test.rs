//! TLS unit tests over in-memory streams: files re-read after a rotation (and kept when the
//! new ones are broken), and the mTLS principal.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rustls_pki_types::ServerName;
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;

use super::*;

struct Ca(CertifiedIssuer<'static, KeyPair>);

impl Ca {
    fn new() -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, "test CA");
        Self(CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap())
    }

    /// (certificate PEM, key PEM) for `cn`, valid for `localhost`.
    fn leaf(&self, cn: &str) -> (String, String) {
        let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        let key = KeyPair::generate().unwrap();
        (
            params.signed_by(&key, &self.0).unwrap().pem(),
            key.serialize_pem(),
        )
    }

    fn roots(&self) -> RootCertStore {
        let mut roots = RootCertStore::empty();
        roots.add(self.0.der().clone()).unwrap();
        roots
    }
}

/// Replaces `path` the way the kubelet updates a mounted Secret: a new file renamed over it.
fn replace(path: &Path, text: &str) {
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn client_config(ca: &Ca, client_cert: Option<(String, String)>) -> ClientConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(ca.roots());
    match client_cert {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => builder
            .with_client_auth_cert(
                CertificateDer::pem_slice_iter(cert.as_bytes())
                    .collect::<Result<_, _>>()
                    .unwrap(),
                PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
            )
            .unwrap(),
    }
}

/// One handshake over an in-memory stream: (CN of the server certificate, the server side's
/// principal).
async fn handshake(reloader: &TlsReloader, client: ClientConfig) -> (String, Option<String>) {
    let (a, b) = tokio::io::duplex(64 * 1024);
    let connector = TlsConnector::from(Arc::new(client));
    let name = ServerName::try_from("localhost").unwrap();
    let (server, client) = tokio::join!(reloader.acceptor().accept(a), connector.connect(name, b));
    let (server, client) = (
        server.expect("server handshake"),
        client.expect("client handshake"),
    );
    let leaf = client.get_ref().1.peer_certificates().unwrap()[0].clone();
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref()).unwrap();
    let cn = cert
        .subject()
        .iter_common_name()
        .next()
        .unwrap()
        .as_str()
        .unwrap()
        .to_owned();
    (cn, principal(server.get_ref().1))
}

#[tokio::test]
async fn rotated_files_are_used_by_new_connections_and_broken_ones_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new();
    let (cert, key) = ca.leaf("first");
    let settings = TlsSettings {
        cert_file: dir.path().join("tls.crt"),
        key_file: dir.path().join("tls.key"),
        client_ca_file: None,
        client_auth: ClientAuth::None,
    };
    std::fs::write(&settings.cert_file, cert).unwrap();
    std::fs::write(&settings.key_file, key).unwrap();
    let reloader = TlsReloader::new(settings.clone()).unwrap();
    assert_eq!(
        handshake(&reloader, client_config(&ca, None)).await,
        ("first".into(), None)
    );

    let (cert, key) = ca.leaf("second");
    replace(&settings.cert_file, &cert);
    replace(&settings.key_file, &key);
    tokio::time::sleep(RELOAD_CHECK_INTERVAL + Duration::from_millis(100)).await;
    assert_eq!(handshake(&reloader, client_config(&ca, None)).await.0, "second");

    // A key that does not load keeps the certificate in use.
    replace(&settings.key_file, "not a key");
    tokio::time::sleep(RELOAD_CHECK_INTERVAL + Duration::from_millis(100)).await;
    assert_eq!(handshake(&reloader, client_config(&ca, None)).await.0, "second");
    assert!(matches!(TlsReloader::new(settings), Err(TlsError::Pem { .. })));
}

#[tokio::test]
async fn the_client_certificate_cn_is_the_principal() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new();
    let (cert, key) = ca.leaf("localhost");
    let settings = TlsSettings {
        cert_file: dir.path().join("tls.crt"),
        key_file: dir.path().join("tls.key"),
        client_ca_file: Some(dir.path().join("ca.crt")),
        client_auth: ClientAuth::Requested,
    };
    std::fs::write(&settings.cert_file, cert).unwrap();
    std::fs::write(&settings.key_file, key).unwrap();
    std::fs::write(settings.client_ca_file.as_ref().unwrap(), ca.0.pem()).unwrap();
    let reloader = TlsReloader::new(settings).unwrap();
    let with_cert = client_config(&ca, Some(ca.leaf("alice")));
    assert_eq!(
        handshake(&reloader, with_cert).await.1.as_deref(),
        Some("User:alice")
    );
    // Requested, not required: a client without a certificate gets in without a principal.
    assert_eq!(handshake(&reloader, client_config(&ca, None)).await.1, None);
}
