//! The DNS resolver `check` asks: the system's (/etc/resolv.conf) or the one server named
//! by `[check] dns_server`, with short timeouts so that a machine without DNS still gets
//! its answer from `check` within seconds.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Result, anyhow};
use mail_auth::MessageAuthenticator;
use mail_auth::hickory_resolver::config::{NameServerConfig, ResolverConfig, ResolverOpts};
use mail_auth::hickory_resolver::proto::rr::{Name, RData};

/// How long one query may take, and how often it is tried.
const TIMEOUT: Duration = Duration::from_secs(3);
const ATTEMPTS: usize = 2;

/// The resolver: `server` alone when given, else the system's configuration.
pub fn authenticator(server: Option<SocketAddr>) -> Result<MessageAuthenticator> {
    let (config, mut opts) = match server {
        Some(addr) => {
            let mut ns = NameServerConfig::udp_and_tcp(addr.ip());
            for c in &mut ns.connections {
                c.port = addr.port();
            }
            (
                ResolverConfig::from_name_servers(vec![ns]),
                ResolverOpts::default(),
            )
        }
        None => mail_auth::hickory_resolver::system_conf::read_system_conf()
            .map_err(|e| anyhow!("cannot read the system's DNS configuration: {e}"))?,
    };
    opts.timeout = TIMEOUT;
    opts.attempts = ATTEMPTS;
    // A record the operator just added must be seen at once, not after a cached miss.
    opts.cache_size = 0;
    MessageAuthenticator::new(config, opts).map_err(|e| anyhow!("cannot set up DNS: {e}"))
}

/// What a TXT lookup found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Txt {
    /// The TXT records at the name, each one's strings joined.
    Records(Vec<String>),
    /// The name does not exist (NXDOMAIN) or has no TXT record.
    Missing,
    /// The lookup itself failed (timeout, SERVFAIL, refused).
    Failed(String),
}

/// Looks up the TXT records at `name`.
pub async fn txt(auth: &MessageAuthenticator, name: &str) -> Txt {
    let fqdn = if name.ends_with('.') {
        name.to_string()
    } else {
        format!("{name}.")
    };
    let Ok(name) = Name::from_str_relaxed(fqdn.as_str()) else {
        return Txt::Failed(format!("{name} is not a DNS name"));
    };
    match auth.resolver().txt_lookup(name).await {
        Ok(lookup) => {
            let records: Vec<String> = lookup
                .answers()
                .iter()
                .filter_map(|r| match &r.data {
                    RData::TXT(txt) => Some(
                        txt.txt_data
                            .iter()
                            .map(|part| String::from_utf8_lossy(part))
                            .collect::<String>(),
                    ),
                    _ => None,
                })
                .collect();
            if records.is_empty() {
                Txt::Missing
            } else {
                Txt::Records(records)
            }
        }
        Err(e) if e.is_no_records_found() || e.is_nx_domain() => Txt::Missing,
        Err(e) => Txt::Failed(e.to_string()),
    }
}

/// The addresses of `host` (itself when it is an IP address).
pub async fn addresses(
    auth: &MessageAuthenticator,
    host: &str,
) -> Result<Vec<std::net::IpAddr>, String> {
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return Ok(vec![ip]);
    }
    match auth.resolver().lookup_ip(host).await {
        Ok(ips) => Ok(ips.iter().collect()),
        Err(e) => Err(e.to_string()),
    }
}
