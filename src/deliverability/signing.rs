//! DKIM signing with the company's own key (`[dkim] domain, selector, key_file`), for a
//! relay that does not sign (a company Postfix often does not). Every message is signed
//! as it is built, so that preview, archive and relay see the same bytes.
//!
//! The key is a PEM file as `openssl genpkey` writes it (PKCS#8, RSA or Ed25519) or the
//! older `BEGIN RSA PRIVATE KEY` (PKCS#1); it must be readable by its owner alone (mode
//! 0600), like any secret. Signing itself is mail-auth's.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{Result, anyhow, bail};
use base64::Engine;
use mail_auth::common::crypto::{DkimKey, Ed25519Key, RsaKey, Sha256};
use mail_auth::common::headers::HeaderWriter;
use mail_auth::dkim::{Canonicalization, DkimSigner, Done};
use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::pem::PemObject;

/// The headers signed: every header utskick writes that a reader sees or a filter reads.
/// From is listed twice so that a From header added later breaks the signature
/// (RFC 6376 8.15, "oversigning").
const SIGNED_HEADERS: &[&str] = &[
    "From",
    "From",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "Reply-To",
    "MIME-Version",
    "Content-Type",
    "Content-Transfer-Encoding",
    "Content-Language",
    "Auto-Submitted",
];

/// The public half, as DKIM publishes it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Public {
    /// RSA: the SubjectPublicKeyInfo DER, as `openssl pkey -pubout -outform DER` writes it.
    Rsa(Vec<u8>),
    /// Ed25519: the 32 raw bytes (RFC 8463).
    Ed25519(Vec<u8>),
}

/// A loaded key with its domain and selector.
pub struct Signer {
    /// The signing domain (d=).
    pub domain: String,
    /// The selector (s=).
    pub selector: String,
    /// Where the key was read from.
    pub key_file: PathBuf,
    public: Public,
    signer: DkimSigner<DkimKey, Done>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("domain", &self.domain)
            .field("selector", &self.selector)
            .field("key_file", &self.key_file)
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// Reads the key file (mode 0600 required) and prepares signing as d=`domain`,
    /// s=`selector`.
    pub fn load(domain: &str, selector: &str, key_file: &Path) -> Result<Signer> {
        let shown = key_file.display();
        let meta = std::fs::metadata(key_file)
            .map_err(|e| anyhow!("[dkim] key_file {shown}: cannot read it: {e}"))?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            bail!(
                "[dkim] key_file {shown} is mode {mode:03o}: a private key must be readable by its owner alone (chmod 600 {shown})"
            );
        }
        let pem = std::fs::read(key_file)
            .map_err(|e| anyhow!("[dkim] key_file {shown}: cannot read it: {e}"))?;
        let (key, public) = parse_key(&pem).map_err(|e| anyhow!("[dkim] key_file {shown}: {e}"))?;
        if domain.is_empty() || selector.is_empty() {
            bail!("[dkim] needs a domain and a selector to sign with key_file {shown}");
        }
        let signer = DkimSigner::from_key(key)
            .domain(domain)
            .selector(selector)
            .headers(SIGNED_HEADERS.iter().copied())
            .header_canonicalization(Canonicalization::Relaxed)
            .body_canonicalization(Canonicalization::Relaxed);
        Ok(Signer {
            domain: domain.to_string(),
            selector: selector.to_string(),
            key_file: key_file.to_path_buf(),
            public,
            signer,
        })
    }

    /// The message with a DKIM-Signature header in front.
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>> {
        let signature = self
            .signer
            .sign(message)
            .map_err(|e| anyhow!("cannot DKIM-sign the message: {e}"))?;
        let header = signature.to_header();
        let mut out = Vec::with_capacity(header.len() + message.len());
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(message);
        Ok(out)
    }

    /// Where the public key must be published: `SELECTOR._domainkey.DOMAIN`.
    pub fn dns_name(&self) -> String {
        format!("{}._domainkey.{}", self.selector, self.domain)
    }

    /// The TXT record to publish there.
    pub fn dns_record(&self) -> String {
        let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
        match &self.public {
            Public::Rsa(spki) => format!("v=DKIM1; k=rsa; p={}", b64(spki)),
            Public::Ed25519(raw) => format!("v=DKIM1; k=ed25519; p={}", b64(raw)),
        }
    }

    /// "RSA" or "Ed25519".
    pub fn algorithm(&self) -> &'static str {
        match self.public {
            Public::Rsa(_) => "RSA",
            Public::Ed25519(_) => "Ed25519",
        }
    }
}

/// The signer `[dkim]` asks for (None without key_file), loaded once per process and key:
/// building a message must not re-read and re-parse the key each time.
pub fn for_config(config: &crate::config::Config) -> Result<Option<Arc<Signer>>> {
    let Some(key_file) = &config.dkim.key_file else {
        return Ok(None);
    };
    let domain = config
        .dkim
        .domain
        .clone()
        .unwrap_or_else(|| config.sender.domain.clone());
    let selector = config.dkim.selector.clone().unwrap_or_default();
    static LOADED: Mutex<Vec<Arc<Signer>>> = Mutex::new(Vec::new());
    let mut loaded = LOADED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(s) = loaded
        .iter()
        .find(|s| s.domain == domain && s.selector == selector && &s.key_file == key_file)
    {
        return Ok(Some(s.clone()));
    }
    let signer = Arc::new(Signer::load(&domain, &selector, key_file)?);
    loaded.push(signer.clone());
    Ok(Some(signer))
}

/// The message as it goes out: DKIM-signed where `[dkim] key_file` is set, else as it is.
pub fn sign_message(config: &crate::config::Config, message: Vec<u8>) -> Result<Vec<u8>> {
    match for_config(config)? {
        Some(signer) => signer.sign(&message),
        None => Ok(message),
    }
}

/// The private key in a PEM file, and its public half.
fn parse_key(pem: &[u8]) -> Result<(DkimKey, Public)> {
    let der = PrivateKeyDer::from_pem_slice(pem).map_err(|e| {
        anyhow!("not a PEM private key ({e}); write one with `openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048` or `openssl genpkey -algorithm ed25519`")
    })?;
    match der {
        PrivateKeyDer::Pkcs1(_) => rsa(der),
        PrivateKeyDer::Pkcs8(ref pkcs8) => {
            // PKCS#8 says which algorithm inside; trying both is what tells them apart here.
            if let Ok(ed) = Ed25519Key::from_pkcs8_maybe_unchecked_der(pkcs8.secret_pkcs8_der()) {
                let public = Public::Ed25519(ed.public_key());
                return Ok((DkimKey::Ed25519(ed), public));
            }
            rsa(der)
        }
        _ => bail!("an EC (SEC1) key: DKIM signs with RSA or Ed25519 only"),
    }
}

fn rsa(der: PrivateKeyDer<'_>) -> Result<(DkimKey, Public)> {
    let key = RsaKey::<Sha256>::from_key_der(der).map_err(|e| {
        anyhow!("not a usable RSA or Ed25519 key ({e}); RSA keys need 2048 bits or more")
    })?;
    let public = Public::Rsa(rsa_spki(&key.public_key()));
    Ok((DkimKey::Rsa(key), public))
}

/// Wraps a PKCS#1 RSAPublicKey in the SubjectPublicKeyInfo that DKIM's p= carries
/// (RFC 6376 3.6.1): SEQUENCE { AlgorithmIdentifier rsaEncryption NULL, BIT STRING key }.
fn rsa_spki(pkcs1: &[u8]) -> Vec<u8> {
    const RSA_ALGORITHM: [u8; 15] = [
        0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
    ];
    let mut bits = vec![0x03];
    bits.extend(der_len(pkcs1.len() + 1));
    bits.push(0);
    bits.extend_from_slice(pkcs1);
    let mut out = vec![0x30];
    out.extend(der_len(RSA_ALGORITHM.len() + bits.len()));
    out.extend_from_slice(&RSA_ALGORITHM);
    out.extend(bits);
    out
}

/// A DER length: short form below 128, else 0x80 | count and the big-endian bytes.
fn der_len(n: usize) -> Vec<u8> {
    if n < 0x80 {
        return vec![n as u8];
    }
    let bytes: Vec<u8> = n
        .to_be_bytes()
        .into_iter()
        .skip_while(|&b| b == 0)
        .collect();
    let mut out = vec![0x80 | bytes.len() as u8];
    out.extend(bytes);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use mail_auth::common::parse::TxtRecordParser;
    use mail_auth::common::verify::DomainKey;

    // Keys for the tests only, generated with `openssl genpkey` for this file.
    const ED25519_PEM: &str = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIGATxbKe0OC40qvnwRl4GVcUt3QesXdfRCPWEKrPnZ4f\n-----END PRIVATE KEY-----\n";

    fn write_key(pem: &str, mode: u32) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("dkim.pem");
        std::fs::write(&path, pem).expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
        (dir, path)
    }

    #[test]
    fn der_lengths() {
        assert_eq!(der_len(5), [5]);
        assert_eq!(der_len(127), [127]);
        assert_eq!(der_len(128), [0x81, 128]);
        assert_eq!(der_len(270), [0x82, 1, 14]);
    }

    #[test]
    fn ed25519_key_signs_and_publishes_its_raw_public_key() {
        let (_dir, path) = write_key(ED25519_PEM, 0o600);
        let s = Signer::load("example.se", "ed1", &path).expect("loads");
        assert_eq!(s.algorithm(), "Ed25519");
        assert_eq!(s.dns_name(), "ed1._domainkey.example.se");
        let record = s.dns_record();
        // The public half as `openssl pkey -pubout` gives it (its last 32 bytes).
        assert_eq!(
            record,
            "v=DKIM1; k=ed25519; p=VvDrt2xGnBSDuVUT2nf59NDoebB5WuB/ESZJ9FS5GM8="
        );
        // mail-auth reads the record back as a key.
        DomainKey::parse(record.as_bytes()).expect("mail-auth parses the record");
        let signed = s
            .sign(b"From: a@example.se\r\nTo: b@example.se\r\nSubject: x\r\n\r\nHej\r\n")
            .expect("signs");
        let text = String::from_utf8(signed).expect("utf-8");
        assert!(
            text.starts_with("DKIM-Signature: v=1; a=ed25519-sha256;"),
            "{text}"
        );
        assert!(
            text.contains("d=example.se") && text.contains("s=ed1"),
            "{text}"
        );
        assert!(text.ends_with("Subject: x\r\n\r\nHej\r\n"), "{text}");
    }

    #[test]
    fn a_key_others_can_read_is_refused() {
        let (_dir, path) = write_key(ED25519_PEM, 0o644);
        let e = Signer::load("example.se", "ed1", &path).expect_err("refused");
        let e = format!("{e:#}");
        assert!(e.contains("mode 644") && e.contains("chmod 600"), "{e}");
    }

    #[test]
    fn not_a_key_is_named() {
        let (_dir, path) = write_key("hello\n", 0o600);
        let e = format!(
            "{:#}",
            Signer::load("example.se", "s", &path).expect_err("refused")
        );
        assert!(
            e.contains("key_file") && e.contains("not a PEM private key"),
            "{e}"
        );
    }
}
