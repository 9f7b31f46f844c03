//! Test PKI generated at test time with rcgen: one CA, a server certificate for
//! `localhost` + 127.0.0.1 signed by it, a certificate for another host
//! (`wrong.example`) signed by the same CA, an expired `localhost` certificate signed
//! by the same CA, and a self-signed `localhost` certificate.
//!
//! Everything is generated once per test process ([`pki`]); rustls configurations use
//! the ring provider explicitly.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// Which server certificate a TLS endpoint presents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerCert {
    /// `localhost` + IP 127.0.0.1, signed by the test CA: verifies with [`TestPki::ca_pem`].
    Valid,
    /// `wrong.example`, signed by the test CA: a name mismatch for `localhost`.
    WrongHost,
    /// `localhost` + 127.0.0.1, signed by the test CA, but expired (valid 2000-2001).
    Expired,
    /// `localhost` + 127.0.0.1, self-signed (not chained to the test CA).
    SelfSigned,
}

/// A certificate with its private key, both as PEM, plus the DER forms for rustls.
pub struct CertAndKey {
    pub cert_pem: String,
    pub key_pem: String,
    cert_der: CertificateDer<'static>,
    key_der: Vec<u8>,
}

impl CertAndKey {
    fn certified_key(&self) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        (
            vec![self.cert_der.clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone())),
        )
    }

    /// Writes `cert.pem` and `key.pem` (mode 0600) into `dir`; returns (cert path, key path).
    pub fn write_to(&self, dir: &Path, stem: &str) -> (PathBuf, PathBuf) {
        std::fs::create_dir_all(dir)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        let cert = dir.join(format!("{stem}.crt"));
        let key = dir.join(format!("{stem}.key"));
        write_file(&cert, &self.cert_pem, 0o644);
        write_file(&key, &self.key_pem, 0o600);
        (cert, key)
    }
}

/// The whole test PKI. Obtain the process-wide instance with [`pki`].
pub struct TestPki {
    pub ca_cert_pem: String,
    pub server: CertAndKey,
    pub wrong_host: CertAndKey,
    pub expired: CertAndKey,
    pub self_signed: CertAndKey,
    ca_der: CertificateDer<'static>,
}

/// The process-wide test PKI (generated on first use, ~ms).
pub fn pki() -> &'static TestPki {
    static PKI: OnceLock<TestPki> = OnceLock::new();
    PKI.get_or_init(TestPki::generate)
}

/// Writes the test CA certificate (PEM) to `path`; it is what `[smtp] ca_file` points to.
pub fn write_ca_pem(path: &Path) {
    write_file(path, &pki().ca_cert_pem, 0o644);
}

/// A rustls `ServerConfig` presenting the chosen certificate (ring provider).
pub fn server_config(which: ServerCert) -> Arc<rustls::ServerConfig> {
    pki().server_config(which)
}

/// A rustls `ClientConfig` trusting only the test CA (ring provider), for test clients.
pub fn client_config() -> Arc<rustls::ClientConfig> {
    pki().client_config()
}

fn ring() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn write_file(path: &Path, contents: &str, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, contents)
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("cannot chmod {}: {e}", path.display()));
}

fn leaf_params(names: &[&str], cn: &str) -> CertificateParams {
    let mut params =
        CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .expect("valid subject alt names");
    params.distinguished_name.push(DnType::CommonName, cn);
    params.is_ca = IsCa::ExplicitNoCa;
    params.use_authority_key_identifier_extension = true;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params
}

fn cert_and_key(cert: rcgen::Certificate, key: &KeyPair) -> CertAndKey {
    CertAndKey {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        cert_der: cert.der().clone(),
        key_der: key.serialize_der(),
    }
}

impl TestPki {
    /// Generates a fresh PKI (EC P-256 keys).
    pub fn generate() -> TestPki {
        let ca_key = KeyPair::generate().expect("generate CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "utskick test CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
        ];
        let ca_cert = ca_params.self_signed(&ca_key).expect("self-sign CA");
        let ca_cert_pem = ca_cert.pem();
        let ca_der = ca_cert.der().clone();
        let issuer = Issuer::new(ca_params, ca_key);

        let signed = |params: CertificateParams| {
            let key = KeyPair::generate().expect("generate leaf key");
            let cert = params.signed_by(&key, &issuer).expect("sign leaf");
            cert_and_key(cert, &key)
        };

        let server = signed(leaf_params(&["localhost", "127.0.0.1"], "localhost"));
        let wrong_host = signed(leaf_params(&["wrong.example"], "wrong.example"));
        let mut expired_params = leaf_params(&["localhost", "127.0.0.1"], "localhost");
        expired_params.not_before = rcgen::date_time_ymd(2000, 1, 1);
        expired_params.not_after = rcgen::date_time_ymd(2001, 1, 1);
        let expired = signed(expired_params);

        let self_signed = {
            let key = KeyPair::generate().expect("generate self-signed key");
            let mut params = leaf_params(&["localhost", "127.0.0.1"], "localhost");
            params.use_authority_key_identifier_extension = false;
            let cert = params.self_signed(&key).expect("self-sign leaf");
            cert_and_key(cert, &key)
        };

        TestPki {
            ca_cert_pem,
            server,
            wrong_host,
            expired,
            self_signed,
            ca_der,
        }
    }

    /// The CA certificate as PEM.
    pub fn ca_pem(&self) -> &str {
        &self.ca_cert_pem
    }

    /// Writes the CA certificate (PEM) to `path`.
    pub fn write_ca_pem(&self, path: &Path) {
        write_file(path, &self.ca_cert_pem, 0o644);
    }

    pub fn cert(&self, which: ServerCert) -> &CertAndKey {
        match which {
            ServerCert::Valid => &self.server,
            ServerCert::WrongHost => &self.wrong_host,
            ServerCert::Expired => &self.expired,
            ServerCert::SelfSigned => &self.self_signed,
        }
    }

    /// A rustls `ServerConfig` presenting `which` (TLS 1.2 and 1.3, ring provider).
    pub fn server_config(&self, which: ServerCert) -> Arc<rustls::ServerConfig> {
        let (chain, key) = self.cert(which).certified_key();
        let config = rustls::ServerConfig::builder_with_provider(ring())
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions")
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .expect("test certificate and key match");
        Arc::new(config)
    }

    /// A rustls `ClientConfig` trusting only the test CA.
    pub fn client_config(&self) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(self.ca_der.clone())
            .expect("test CA is a valid trust anchor");
        let config = rustls::ClientConfig::builder_with_provider(ring())
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        Arc::new(config)
    }
}
