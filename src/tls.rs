//! TLS client settings shared by the SMTP relay (implicit TLS) and the IMAP mailbox: the
//! system's trusted roots plus an optional `ca_file` for an internal CA, rustls with ring.
//! Certificates are always verified; there is no switch to turn that off.

use std::io::BufReader;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, anyhow};
use tokio_rustls::rustls;

/// Native roots plus the optional `ca_file` (`what` names its config key in errors).
pub fn client_config(
    ca_file: Option<&Path>,
    what: &str,
) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(native.certs);
    if let Some(path) = ca_file {
        let file = std::fs::File::open(path)
            .with_context(|| format!("cannot read {what} {}", path.display()))?;
        let certs: Vec<_> = rustls_pemfile::certs(&mut BufReader::new(file))
            .collect::<Result<_, _>>()
            .with_context(|| format!("cannot read {what} {}", path.display()))?;
        if certs.is_empty() {
            return Err(anyhow!(
                "{what} {} holds no PEM certificate",
                path.display()
            ));
        }
        for cert in certs {
            roots.add(cert).map_err(|e| {
                anyhow!(
                    "{what} {} is not a usable CA certificate: {e}",
                    path.display()
                )
            })?;
        }
    }
    if roots.is_empty() {
        return Err(anyhow!(
            "no trusted root certificates: the system has none and {what} is not set"
        ));
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| anyhow!("cannot set up TLS: {e}"))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_file_that_is_not_pem_is_named() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, "not a certificate").expect("write");
        let e = client_config(Some(&path), "[smtp] ca_file").unwrap_err();
        assert!(format!("{e:#}").contains("[smtp] ca_file"), "{e:#}");
        assert!(client_config(Some(&dir.path().join("missing.pem")), "[smtp] ca_file").is_err());
    }
}
