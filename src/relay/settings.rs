//! What it takes to open a connection to the relay: address, security, the login and its
//! secret (read once, from the environment, a command or a prompt).

use anyhow::{Context, anyhow};
use lettre::Address;
use lettre::transport::smtp::client::{Certificate, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use secrecy::SecretString;
use std::time::Duration;

use super::ConnectError;
use crate::config::{AuthMethod, Config, Security};
use crate::{Fail, ResultExt, secrets};

/// What it takes to open a connection.
#[derive(Clone)]
pub struct Settings {
    pub(super) host: String,
    pub(super) port: u16,
    pub(super) security: Security,
    pub(super) auth: AuthMethod,
    pub(super) username: String,
    pub(super) secret: Option<SecretString>,
    /// Long mailings: the OAuth2 token, fetched again when old or refused (instead of
    /// `secret`).
    pub(super) token: Option<std::sync::Arc<secrets::TokenCache>>,
    /// Timeout for each step.
    pub timeout: Duration,
    pub(super) tls: Option<TlsParameters>,
    pub(super) implicit: Option<std::sync::Arc<tokio_rustls::rustls::ClientConfig>>,
    pub(super) helo: ClientId,
    /// The envelope sender (bounces come back here).
    pub from: Address,
}

impl Settings {
    /// From the config and the secret read for it. Reading `ca_file` may fail (bad input).
    pub fn new(config: &Config, secret: Option<SecretString>) -> anyhow::Result<Settings> {
        let smtp = &config.smtp;
        let tls = match smtp.security {
            Security::None | Security::Tls => None,
            Security::StartTls => {
                let mut builder = TlsParameters::builder(smtp.host.clone());
                if let Some(ca) = &smtp.ca_file {
                    let pem = std::fs::read(ca)
                        .with_context(|| format!("cannot read [smtp] ca_file {}", ca.display()))?;
                    let cert = Certificate::from_pem(&pem).map_err(|e| {
                        anyhow::anyhow!(
                            "[smtp] ca_file {} is not a PEM certificate: {e}",
                            ca.display()
                        )
                    })?;
                    builder = builder.add_root_certificate(cert);
                }
                Some(
                    builder
                        .build_rustls()
                        .map_err(|e| anyhow::anyhow!("cannot set up TLS: {e}"))?,
                )
            }
        };
        let helo = match &smtp.helo_name {
            Some(h) => ClientId::Domain(h.clone()),
            None => local_client_id(),
        };
        let implicit = match smtp.security {
            Security::Tls => Some(crate::tls::client_config(
                smtp.ca_file.as_deref(),
                "[smtp] ca_file",
            )?),
            _ => None,
        };
        Ok(Settings {
            implicit,
            host: smtp.host.clone(),
            port: smtp.port,
            security: smtp.security,
            auth: smtp.auth,
            username: smtp.username.clone().unwrap_or_default(),
            secret,
            token: None,
            timeout: smtp.timeout,
            tls,
            helo,
            from: config.sender.from.email.clone(),
        })
    }

    /// `host:port`.
    pub fn relay(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// The name we greet the relay with: this machine's host name (uname's nodename) where it
/// is a usable domain, else `[127.0.0.1]`.
fn local_client_id() -> ClientId {
    let uname = rustix::system::uname();
    match uname.nodename().to_str() {
        Ok(name) if usable_helo(name) => ClientId::Domain(name.to_string()),
        _ => ClientId::Ipv4(std::net::Ipv4Addr::LOCALHOST),
    }
}

/// A host name that may stand in EHLO as it is.
fn usable_helo(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
}

/// Reads the relay's secret, as the config says.
pub fn relay_settings(config: &Config) -> Result<Settings, Fail> {
    let what = if config.smtp.auth == AuthMethod::Xoauth2 {
        "OAuth2 access token"
    } else {
        "SMTP password"
    };
    // Long mailings: the token is fetched again when old (secrets::TokenCache).
    let (secret, token) = secrets::smtp_secret(config, what).input()?;
    let mut settings = Settings::new(config, secret).input()?;
    settings.token = token;
    Ok(settings)
}

/// Maps a failed first connection to the exit code the contract gives it.
pub fn connect_failure(e: ConnectError) -> Fail {
    Fail::Fatal(anyhow!("{e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_plain_host_name_is_used_in_ehlo() {
        assert!(usable_helo("kontor-pc.example.se"));
        assert!(!usable_helo(""));
        assert!(!usable_helo("kontor pc"));
        assert!(!usable_helo("kontor\r\nRCPT"));
        // Whatever this machine is called, the greeting is one a relay accepts.
        match local_client_id() {
            ClientId::Domain(d) => assert!(usable_helo(&d)),
            other => assert_eq!(other.to_string(), "[127.0.0.1]"),
        }
    }
}
