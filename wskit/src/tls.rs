//! A private PKI made at run time (rcgen) and the rustls configurations built on it: the TLS
//! echo backend's acceptor, httpd's own certificate files, and clients that trust only our CA.

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A certificate and its key, as PEM files and as rustls values.
#[derive(Clone)]
pub struct Identity {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    cert: CertificateDer<'static>,
    key: Vec<u8>,
}

impl Identity {
    /// A rustls server configuration presenting this identity (ALPN `http/1.1`).
    pub fn server_config(&self) -> Arc<rustls::ServerConfig> {
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key.clone()));
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![self.cert.clone()], key)
            .unwrap();
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(cfg)
    }
}

/// A CA and the certificates the tests need, written under `dir`.
#[derive(Clone)]
pub struct Pki {
    pub ca_file: PathBuf,
    ca: CertificateDer<'static>,
    /// Signed by the CA for `localhost` and `127.0.0.1`.
    pub server: Identity,
    /// Signed by the CA for `other.example` only: fails peer-name checks on 127.0.0.1.
    pub wrong_name: Identity,
    /// Self-signed for `localhost` and `127.0.0.1`: fails chain verification.
    pub rogue: Identity,
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn leaf(names: &[&str]) -> CertificateParams {
    let mut p =
        CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    p.distinguished_name.push(DnType::CommonName, names[0]);
    p
}

fn write(
    dir: &Path,
    name: &str,
    cert_pem: &str,
    key: &KeyPair,
    cert_der: CertificateDer<'static>,
) -> Identity {
    let cert_file = dir.join(format!("{name}.crt"));
    let key_file = dir.join(format!("{name}.key"));
    std::fs::write(&cert_file, cert_pem).unwrap();
    std::fs::write(&key_file, key.serialize_pem()).unwrap();
    Identity { cert_file, key_file, cert: cert_der, key: key.serialize_der() }
}

impl Pki {
    pub fn generate(dir: &Path) -> Pki {
        std::fs::create_dir_all(dir).unwrap();
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.distinguished_name.push(DnType::CommonName, "wstunnel test CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let ca_file = dir.join("ca.crt");
        std::fs::write(&ca_file, ca_cert.pem()).unwrap();
        let issuer = Issuer::new(ca_params, &ca_key);

        let signed = |name: &str, names: &[&str]| {
            let key = KeyPair::generate().unwrap();
            let cert = leaf(names).signed_by(&key, &issuer).unwrap();
            write(dir, name, &cert.pem(), &key, cert.der().clone())
        };
        let server = signed("server", &["localhost", "127.0.0.1"]);
        let wrong_name = signed("wrong-name", &["other.example"]);
        let rogue_key = KeyPair::generate().unwrap();
        let rogue_cert = leaf(&["localhost", "127.0.0.1"]).self_signed(&rogue_key).unwrap();
        let rogue = write(dir, "rogue", &rogue_cert.pem(), &rogue_key, rogue_cert.der().clone());
        Pki { ca_file, ca: ca_cert.der().clone(), server, wrong_name, rogue }
    }

    /// A client configuration that trusts only this CA (ALPN as given, e.g. `h2`).
    pub fn client_config(&self, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca.clone()).unwrap();
        let mut cfg = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(cfg)
    }
}
