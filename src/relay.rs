//! The company's SMTP relay: connecting (TLS, login), one delivery at a time on a
//! connection, and what a reply means.
//!
//! We drive lettre's `AsyncSmtpConnection` command by command instead of its pooled
//! transport, for three reasons: every step gets its own timeout (lettre's covers only
//! connecting); after a timeout or I/O error the connection is dropped, never reused with a
//! half-finished transaction; and we know whether DATA had gone out when a connection
//! broke, which decides between `failed-transient` (retry) and `unknown` (do not).
//!
//! Where the relay offers PIPELINING (RFC 2920), MAIL, RCPT and DATA go out in one write
//! and their three replies are read in order: one round trip a message instead of three.

use std::time::Duration;

use anyhow::{Context, Result};
use lettre::Address;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{
    AsyncSmtpConnection, AsyncTokioStream, Certificate, TlsParameters,
};
use lettre::transport::smtp::commands::{Data, Ehlo, Mail, Rcpt, Rset};
use lettre::transport::smtp::extension::ClientId;
use secrecy::{ExposeSecret, SecretString};
use tokio::net::TcpStream;
use tokio::time::timeout;

use crate::config::{AuthMethod, Config, Security};

/// What it takes to open a connection.
#[derive(Clone)]
pub struct Settings {
    host: String,
    port: u16,
    security: Security,
    auth: AuthMethod,
    username: String,
    secret: Option<SecretString>,
    /// Long mailings: the OAuth2 token, fetched again when old or refused (instead of
    /// `secret`).
    pub token: Option<std::sync::Arc<crate::secrets::TokenCache>>,
    /// Timeout for each step.
    pub timeout: Duration,
    tls: Option<TlsParameters>,
    implicit: Option<std::sync::Arc<tokio_rustls::rustls::ClientConfig>>,
    helo: ClientId,
    /// The envelope sender (bounces come back here).
    pub from: Address,
}

impl Settings {
    /// From the config and the secret read for it. Reading `ca_file` may fail (bad input).
    pub fn new(config: &Config, secret: Option<SecretString>) -> Result<Settings> {
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

fn local_client_id() -> ClientId {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates on success.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc == 0 {
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        if let Ok(name) = std::str::from_utf8(&buf[..end])
            && !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        {
            return ClientId::Domain(name.to_string());
        }
    }
    ClientId::Ipv4(std::net::Ipv4Addr::LOCALHOST)
}

/// What a negative reply means for the mailing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The recipient's failure, worth retrying (4xx).
    Transient,
    /// The recipient's failure, final (5xx).
    Permanent,
    /// The relay asks us to slow down (421, rate, too many): pause and resume.
    RelayBusy,
    /// The relay will not take more today (daily quota): stop cleanly.
    RelayQuota,
    /// Authentication refused: stop.
    Auth,
    /// The relay refuses our envelope sender (a negative reply to MAIL FROM): it speaks of
    /// the configuration, never of a recipient, so the run stops before anyone is booked.
    Sender,
}

/// A reply from the relay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The three-digit code.
    pub code: u16,
    /// The enhanced status code (`5.1.1`), where the reply has one.
    pub enhanced: Option<String>,
    /// The text, lines joined by spaces.
    pub text: String,
}

impl std::fmt::Display for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.code, self.text)
    }
}

impl Reply {
    fn from_response(r: &lettre::transport::smtp::response::Response) -> Reply {
        let text = clean(&r.message().collect::<Vec<_>>().join(" "));
        Reply {
            code: r.code().to_string().parse().unwrap_or(0),
            enhanced: enhanced_code(&text),
            text,
        }
    }

    fn from_error(e: &lettre::transport::smtp::Error) -> Option<Reply> {
        let code = e.status()?;
        let text = std::error::Error::source(e)
            .map(|s| clean(&s.to_string()))
            .unwrap_or_default();
        Some(Reply {
            code: code.to_string().parse().unwrap_or(0),
            enhanced: enhanced_code(&text),
            text,
        })
    }

    /// What this negative reply means.
    pub fn verdict(&self) -> Verdict {
        classify(self.code, self.enhanced.as_deref(), &self.text)
    }
}

/// One line, printable, bounded: replies go to the journal and the terminal.
fn clean(text: &str) -> String {
    let mut out: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(500)
        .collect();
    if text.chars().count() > 500 {
        out.push('…');
    }
    out.trim().to_string()
}

/// The enhanced status code at the start of a reply text (`5.1.1 <x>: ...`).
pub fn enhanced_code(text: &str) -> Option<String> {
    let first = text.split_whitespace().next()?;
    let parts: Vec<&str> = first.split('.').collect();
    let ok = parts.len() == 3
        && matches!(parts[0], "2" | "4" | "5")
        && parts[1..]
            .iter()
            .all(|p| !p.is_empty() && p.len() <= 3 && p.chars().all(|c| c.is_ascii_digit()));
    ok.then(|| first.to_string())
}

/// Classifies a negative reply by code, enhanced code and text (the contract's rules).
pub fn classify(code: u16, enhanced: Option<&str>, text: &str) -> Verdict {
    let t = text.to_ascii_lowercase();
    let says_rate = [
        "rate limit",
        "ratelimit",
        "rate-limit",
        "rate exceeded",
        "sending rate",
        "message rate",
        "too many",
        "throttl",
        "slow down",
        "try again later",
        "limit exceeded",
    ]
    .iter()
    .any(|w| t.contains(w));
    let says_quota = ["quota", "daily limit", "sending limit", "limit reached"]
        .iter()
        .any(|w| t.contains(w));
    let (class, subject) = match enhanced.map(|e| e.split('.').collect::<Vec<_>>()) {
        Some(p) if p.len() == 3 => (p[0].to_string(), format!("{}.{}", p[1], p[2])),
        _ => (String::new(), String::new()),
    };
    // Authentication.
    if code == 535
        || code == 534
        || code == 530
        || subject == "7.8"
        || subject == "7.139"
        || subject == "7.57"
    {
        return Verdict::Auth;
    }
    // Mailbox full / unknown user: the recipient, whatever the words.
    if subject.starts_with("1.") || subject.starts_with("2.") {
        return if code >= 500 {
            Verdict::Permanent
        } else {
            Verdict::Transient
        };
    }
    if code == 421 || code == 454 {
        return Verdict::RelayBusy;
    }
    if subject == "4.5" {
        return if code >= 500 || class == "5" {
            Verdict::RelayQuota
        } else {
            Verdict::RelayBusy
        };
    }
    if code < 500 {
        if class == "4" && subject.starts_with("7.") || says_rate || says_quota {
            return Verdict::RelayBusy;
        }
        return Verdict::Transient;
    }
    if says_quota || says_rate {
        return Verdict::RelayQuota;
    }
    Verdict::Permanent
}

/// Why a connection could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The relay refused the login.
    #[error("the relay {relay} refused the login: {reply}")]
    Auth {
        /// `host:port`.
        relay: String,
        /// The reply.
        reply: String,
    },
    /// The relay answered but is busy or limiting (421 at the greeting, ...).
    #[error("the relay {relay} is busy: {reply}")]
    Busy {
        /// `host:port`.
        relay: String,
        /// The reply.
        reply: Reply,
    },
    /// TLS could not be set up (certificate, STARTTLS missing or refused): no retry helps.
    #[error("no secure connection to {relay}: {reason}")]
    Tls {
        /// `host:port`.
        relay: String,
        /// What went wrong.
        reason: String,
    },
    /// The secret for the login could not be had (token_command failed or timed out).
    #[error("no login to {relay}: {reason}")]
    Secret {
        /// `host:port`.
        relay: String,
        /// What went wrong.
        reason: String,
    },
    /// No connection (refused, unreachable, timed out).
    #[error("cannot connect to {relay}: {reason}")]
    Unreachable {
        /// `host:port`.
        relay: String,
        /// What went wrong.
        reason: String,
    },
}

/// How one delivery on a connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// Accepted.
    Sent(Reply),
    /// Refused with a reply (at RCPT, DATA or after the message).
    Refused(Reply),
    /// MAIL FROM refused: the reply is about the sender or the relay, not the recipient.
    SenderRefused(Reply),
    /// The connection broke or timed out before DATA went out: nothing was delivered.
    LostBeforeData(String),
    /// The connection broke or timed out after DATA went out: the outcome is unknown.
    LostAfterData(String),
    /// The journal could not record the attempt: the message was not sent.
    NotSent(String),
}

/// An open, logged-in connection.
pub struct Connection {
    inner: AsyncSmtpConnection,
    timeout: Duration,
    broken: bool,
    last_used: std::time::Instant,
    /// The relay offers PIPELINING: MAIL, RCPT and DATA go out together.
    pipelining: bool,
}

/// A connection idle this long is checked with NOOP before it carries a message, so that a
/// relay that closed it meanwhile does not cost a recipient a failed attempt.
const IDLE_CHECK: Duration = Duration::from_secs(15);

fn describe(e: &lettre::transport::smtp::Error) -> String {
    let mut msg = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let s_text = s.to_string();
        if !msg.contains(&s_text) {
            msg.push_str(": ");
            msg.push_str(&s_text);
        }
        source = s.source();
    }
    clean(&msg)
}

/// Implicit TLS over our own socket (lettre takes any `AsyncTokioStream`).
#[derive(Debug)]
struct TlsTcp(tokio_rustls::client::TlsStream<TcpStream>);

impl tokio::io::AsyncRead for TlsTcp {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for TlsTcp {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }
    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }
    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }
}

impl AsyncTokioStream for TlsTcp {
    fn peer_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.0.get_ref().0.peer_addr()
    }
}

/// TCP (with TCP_NODELAY: lettre writes the message and the final `.` separately, and
/// Nagle's algorithm against a delayed ACK would cost 40 ms a message), then implicit TLS
/// where configured.
async fn open_stream(s: &Settings) -> Result<Box<dyn AsyncTokioStream>, ConnectError> {
    let relay = s.relay();
    let host = s.host.trim_start_matches('[').trim_end_matches(']');
    let unreachable = |reason: String| ConnectError::Unreachable {
        relay: relay.clone(),
        reason,
    };
    let addrs = tokio::net::lookup_host((host, s.port))
        .await
        .map_err(|e| unreachable(format!("cannot resolve {host}: {e}")))?;
    let mut last = None;
    let mut tcp = None;
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(t) => {
                tcp = Some(t);
                break;
            }
            Err(e) => last = Some(e),
        }
    }
    let tcp = tcp.ok_or_else(|| {
        unreachable(match last {
            Some(e) => e.to_string(),
            None => format!("{host} resolves to no address"),
        })
    })?;
    let _ = tcp.set_nodelay(true);
    match &s.implicit {
        None => Ok(Box::new(tcp)),
        Some(config) => {
            let name = tokio_rustls::rustls::pki_types::ServerName::try_from(host.to_string())
                .map_err(|e| ConnectError::Tls {
                    relay: relay.clone(),
                    reason: format!(
                        "{host:?} is not a name a certificate can be checked against: {e}"
                    ),
                })?;
            let tls = tokio_rustls::TlsConnector::from(config.clone())
                .connect(name, tcp)
                .await
                .map_err(|e| ConnectError::Tls {
                    relay: relay.clone(),
                    reason: certificate_hint(&clean(&e.to_string())),
                })?;
            Ok(Box::new(TlsTcp(tls)))
        }
    }
}

/// A TLS failure with what the operator can do about it.
fn certificate_hint(reason: &str) -> String {
    let hint = if reason.contains("UnknownIssuer") || reason.contains("unknown issuer") {
        "the relay's certificate is not signed by a CA this machine trusts (self-signed or an internal CA): put that CA's certificate in [smtp] ca_file"
    } else if reason.contains("NotValidForName") || reason.contains("not valid for name") {
        "the relay's certificate is for another host name: use the name on the certificate as [smtp] host"
    } else if reason.contains("Expired") || reason.contains("expired") {
        "the relay's certificate has expired (or this machine's clock is wrong)"
    } else {
        return reason.to_string();
    };
    format!("{hint} ({reason})")
}

/// Opens a connection: TCP, TLS or STARTTLS, EHLO, login. Each step has the timeout.
///
/// Long mailings: with a token cache, the login takes the cache's token (fetched again
/// when old); a refused token that had served before is fetched again and tried once more,
/// and only a refused fresh one is the login's refusal.
pub async fn connect(s: &Settings) -> Result<Connection, ConnectError> {
    let Some(cache) = &s.token else {
        return connect_with(s, s.secret.as_ref()).await;
    };
    // Bounded: another connection may have fetched the next token in between.
    let mut tries_left = 2u32;
    loop {
        let lease = cache.lease().await.map_err(|e| ConnectError::Secret {
            relay: s.relay(),
            reason: format!("{e:#}"),
        })?;
        match connect_with(s, Some(&lease.secret)).await {
            Err(ConnectError::Auth { .. }) if !lease.fresh && tries_left > 0 => {
                tracing::debug!("token refused; fetching a new one");
                cache.refused(lease.generation).await;
                tries_left -= 1;
            }
            other => return other,
        }
    }
}

async fn connect_with(
    s: &Settings,
    secret: Option<&SecretString>,
) -> Result<Connection, ConnectError> {
    let relay = s.relay();
    let t = s.timeout;
    let step = |what: &str| format!("{what} timed out after {} s", t.as_secs());
    tracing::debug!(relay = %relay, "connecting");
    let stream = match timeout(t, open_stream(s)).await {
        Err(_) => {
            return Err(ConnectError::Unreachable {
                relay,
                reason: step("connecting"),
            });
        }
        Ok(Err(e)) => return Err(e),
        Ok(Ok(stream)) => stream,
    };
    let greeting = timeout(
        t,
        AsyncSmtpConnection::connect_with_transport(stream, &s.helo),
    )
    .await;
    let mut inner = match greeting {
        Err(_) => {
            return Err(ConnectError::Unreachable {
                relay,
                reason: step("waiting for the greeting and EHLO"),
            });
        }
        Ok(Err(e)) => {
            if let Some(reply) = Reply::from_error(&e) {
                return Err(match reply.verdict() {
                    Verdict::Auth => ConnectError::Auth {
                        relay,
                        reply: reply.to_string(),
                    },
                    _ => ConnectError::Busy { relay, reply },
                });
            }
            return Err(ConnectError::Unreachable {
                relay,
                reason: describe(&e),
            });
        }
        Ok(Ok(c)) => c,
    };
    if s.security == Security::StartTls {
        if !inner.can_starttls() {
            inner.abort().await;
            return Err(ConnectError::Tls {
                relay,
                reason: "the relay does not offer STARTTLS; personal data must not go unencrypted (security = \"tls\" for port 465)".into(),
            });
        }
        let Some(tls) = s.tls.clone() else {
            return Err(ConnectError::Tls {
                relay,
                reason: "TLS parameters missing".into(),
            });
        };
        match timeout(t, inner.starttls(tls, &s.helo)).await {
            Err(_) => {
                return Err(ConnectError::Unreachable {
                    relay,
                    reason: step("STARTTLS"),
                });
            }
            Ok(Err(e)) => {
                let reason = match Reply::from_error(&e) {
                    Some(r) => format!("STARTTLS refused: {r}"),
                    None => certificate_hint(&describe(&e)),
                };
                return Err(ConnectError::Tls { relay, reason });
            }
            Ok(Ok(())) => {}
        }
    }
    // lettre keeps only the EHLO keywords it uses itself; PIPELINING is asked for again,
    // before the login (a new EHLO may end an authenticated session on some relays).
    let pipelining = match timeout(
        t,
        inner.command(Ehlo::new(ClientId::Domain(s.helo.to_string()))),
    )
    .await
    {
        Ok(Ok(reply)) => reply.message().skip(1).any(|line| {
            line.split_whitespace()
                .next()
                .is_some_and(|k| k.eq_ignore_ascii_case("PIPELINING"))
        }),
        // A relay that refuses a second EHLO keeps the first: one command at a time then.
        Ok(Err(e)) if Reply::from_error(&e).is_some() => false,
        _ => {
            return Err(ConnectError::Unreachable {
                relay,
                reason: step("EHLO"),
            });
        }
    };
    tracing::debug!(pipelining, "relay features");
    if s.auth != AuthMethod::None {
        let mechanism = match s.auth {
            AuthMethod::Login => Mechanism::Login,
            AuthMethod::Xoauth2 => Mechanism::Xoauth2,
            _ => Mechanism::Plain,
        };
        let secret = secret
            .map(|x| x.expose_secret().to_string())
            .unwrap_or_default();
        let creds = Credentials::new(s.username.clone(), secret);
        tracing::debug!(mechanism = %mechanism, user = %s.username, "AUTH (credentials not shown)");
        match timeout(t, inner.auth(&[mechanism], &creds)).await {
            Err(_) => {
                return Err(ConnectError::Unreachable {
                    relay,
                    reason: step("login"),
                });
            }
            Ok(Err(e)) => {
                let reply = Reply::from_error(&e);
                return Err(match reply {
                    Some(r) if r.verdict() == Verdict::RelayBusy => {
                        ConnectError::Busy { relay, reply: r }
                    }
                    Some(r) => ConnectError::Auth {
                        relay,
                        reply: r.to_string(),
                    },
                    None => ConnectError::Auth {
                        relay,
                        reply: describe(&e),
                    },
                });
            }
            Ok(Ok(_)) => {}
        }
    }
    Ok(Connection {
        inner,
        timeout: t,
        broken: false,
        last_used: std::time::Instant::now(),
        pipelining,
    })
}

impl Connection {
    /// Whether the connection may carry another message.
    pub fn usable(&self) -> bool {
        !self.broken && !self.inner.has_broken()
    }

    /// Whether the connection still answers; checked with NOOP only after a long idle.
    pub async fn alive(&mut self) -> bool {
        if !self.usable() {
            return false;
        }
        if self.last_used.elapsed() < IDLE_CHECK {
            return true;
        }
        let ok = matches!(
            timeout(
                self.timeout,
                self.inner.command(lettre::transport::smtp::commands::Noop)
            )
            .await,
            Ok(Ok(_))
        );
        if !ok {
            self.broken = true;
        }
        self.last_used = std::time::Instant::now();
        ok
    }

    /// One transaction: MAIL, RCPT, DATA, the message. Never retries by itself.
    ///
    /// `durable` resolves once the journal holds the attempt; it is awaited after the relay
    /// said 354 and before the message itself goes out, so the journal's fsync overlaps the
    /// first three round trips. If it fails, the message is not sent and the connection is
    /// dropped (the relay is waiting for data).
    pub async fn deliver(
        &mut self,
        from: &Address,
        rcpt: &Address,
        message: &Wire,
        durable: impl std::future::Future<Output = Result<(), String>>,
    ) -> Delivery {
        self.last_used = std::time::Instant::now();
        let t = self.timeout;
        let timed_out = |what: &str| format!("no reply to {what} within {} s", t.as_secs());
        let commands = [
            (
                "MAIL FROM",
                Mail::new(Some(from.clone()), vec![]).to_string(),
            ),
            ("RCPT TO", Rcpt::new(rcpt.clone(), vec![]).to_string()),
            ("DATA", Data.to_string()),
        ];
        if self.pipelining {
            if let Some(refused) = self.pipelined(&commands).await {
                return refused;
            }
        } else {
            for (what, cmd) in commands {
                tracing::debug!(">> {}", cmd.trim_end());
                match timeout(t, self.inner.command(cmd)).await {
                    Err(_) => {
                        self.broken = true;
                        return Delivery::LostBeforeData(timed_out(what));
                    }
                    Ok(Err(e)) => match Reply::from_error(&e) {
                        Some(reply) => {
                            self.reset().await;
                            if what == "MAIL FROM" {
                                return Delivery::SenderRefused(reply);
                            }
                            return Delivery::Refused(reply);
                        }
                        None => {
                            self.broken = true;
                            return Delivery::LostBeforeData(format!("{what}: {}", describe(&e)));
                        }
                    },
                    Ok(Ok(r)) => tracing::debug!("<< {}", Reply::from_response(&r)),
                }
            }
        }
        if let Err(e) = durable.await {
            self.broken = true;
            return Delivery::NotSent(e);
        }
        tracing::debug!(">> (message, {} bytes)", message.len);
        let sent = match &message.stuffed {
            // Written as it is (lettre's `command` writes its text and reads one reply).
            Some(text) => timeout(t, self.inner.command(text.as_str())).await,
            None => timeout(t, self.inner.message(&message.body)).await,
        };
        match sent {
            Err(_) => {
                self.broken = true;
                Delivery::LostAfterData(timed_out("the end of the message"))
            }
            Ok(Err(e)) => match Reply::from_error(&e) {
                Some(reply) => Delivery::Refused(reply),
                None => {
                    self.broken = true;
                    Delivery::LostAfterData(describe(&e))
                }
            },
            Ok(Ok(r)) => {
                let reply = Reply::from_response(&r);
                tracing::debug!("<< {reply}");
                Delivery::Sent(reply)
            }
        }
    }

    /// MAIL, RCPT and DATA in one write (RFC 2920), then their replies in order. None when
    /// the relay said 354; otherwise how the transaction ended. Every reply is read even
    /// after a refusal, so that the next transaction's replies are not shifted; a refusal
    /// counts for the first command refused.
    async fn pipelined(&mut self, commands: &[(&str, String); 3]) -> Option<Delivery> {
        let t = self.timeout;
        let group: String = commands.iter().map(|(_, c)| c.as_str()).collect();
        tracing::debug!(">> {} (pipelined)", group.trim_end().replace("\r\n", " | "));
        let mut refused: Option<(&str, Reply)> = None;
        let mut data_accepted = false;
        for (i, (what, _)) in commands.iter().enumerate() {
            let reply = if i == 0 {
                timeout(t, self.inner.command(&group)).await
            } else {
                timeout(t, self.inner.read_response()).await
            };
            match reply {
                Err(_) => {
                    self.broken = true;
                    return Some(match refused {
                        Some((first, reply)) => refusal(first, reply),
                        None => Delivery::LostBeforeData(format!(
                            "no reply to {what} within {} s",
                            t.as_secs()
                        )),
                    });
                }
                Ok(Err(e)) => match Reply::from_error(&e) {
                    Some(reply) => {
                        tracing::debug!("<< {reply}");
                        refused.get_or_insert((what, reply));
                    }
                    None => {
                        self.broken = true;
                        return Some(match refused {
                            Some((first, reply)) => refusal(first, reply),
                            None => Delivery::LostBeforeData(format!("{what}: {}", describe(&e))),
                        });
                    }
                },
                Ok(Ok(r)) => {
                    tracing::debug!("<< {}", Reply::from_response(&r));
                    data_accepted = i == 2;
                }
            }
        }
        let (first, reply) = refused?;
        if data_accepted {
            // A relay that took DATA after refusing the recipient waits for a message:
            // an empty one ends that, to no one.
            match timeout(t, self.inner.message(b"")).await {
                Ok(Ok(_)) | Ok(Err(_)) if !self.inner.has_broken() => {}
                _ => self.broken = true,
            }
        }
        if !self.broken {
            self.reset().await;
        }
        Some(refusal(first, reply))
    }

    async fn reset(&mut self) {
        match timeout(self.timeout, self.inner.command(Rset)).await {
            Ok(Ok(_)) => {}
            _ => self.broken = true,
        }
    }

    /// Says goodbye (bounded by the timeout); errors do not matter any more.
    pub async fn quit(mut self) {
        if self.usable() {
            let _ = timeout(self.timeout, self.inner.quit()).await;
        }
    }
}

/// A message ready for DATA. Built once, on the cores that build messages, so that the
/// connection only writes it: lettre's codec would dot-stuff it byte by byte, and that was
/// a tenth of a fast send's CPU.
#[derive(Debug)]
pub struct Wire {
    /// The message's size as built.
    len: usize,
    /// Dot-stuffed and ended with CRLF.CRLF, when the message is text (it is 7-bit).
    stuffed: Option<String>,
    /// Otherwise the message, without its last CRLF, for lettre to dot-stuff and end.
    body: Vec<u8>,
}

impl Wire {
    /// Prepares `bytes` (a whole message ending in CRLF) for DATA; the relay receives
    /// exactly `bytes`.
    pub fn new(bytes: &[u8]) -> Wire {
        let body = bytes.strip_suffix(b"\r\n").unwrap_or(bytes);
        match std::str::from_utf8(body) {
            Ok(text) => {
                let mut out = String::with_capacity(text.len() + 64);
                let mut rest = text;
                if rest.starts_with('.') {
                    out.push('.');
                }
                while let Some(i) = memchr::memmem::find(rest.as_bytes(), b"\r\n.") {
                    out.push_str(&rest[..i + 2]);
                    out.push('.');
                    rest = &rest[i + 2..];
                }
                out.push_str(rest);
                out.push_str("\r\n.\r\n");
                Wire {
                    len: bytes.len(),
                    stuffed: Some(out),
                    body: Vec::new(),
                }
            }
            Err(_) => Wire {
                len: bytes.len(),
                stuffed: None,
                body: body.to_vec(),
            },
        }
    }
}

/// A refusal in a transaction: the sender's (MAIL FROM) speaks for the relay.
fn refusal(what: &str, reply: Reply) -> Delivery {
    if what == "MAIL FROM" {
        Delivery::SenderRefused(reply)
    } else {
        Delivery::Refused(reply)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(code: u16, text: &str) -> Verdict {
        classify(code, enhanced_code(text).as_deref(), text)
    }

    #[test]
    fn classification_of_the_contract() {
        assert_eq!(
            v(
                550,
                "5.1.1 <bo@example.se>: Recipient address rejected: User unknown"
            ),
            Verdict::Permanent
        );
        assert_eq!(v(451, "4.3.0 Temporary lookup failure"), Verdict::Transient);
        assert_eq!(v(450, "4.2.2 Mailbox full, over quota"), Verdict::Transient);
        assert_eq!(v(552, "5.2.2 Mailbox full"), Verdict::Permanent);
        assert_eq!(v(421, "4.7.0 Too many connections"), Verdict::RelayBusy);
        assert_eq!(v(451, "4.7.1 Rate limit exceeded"), Verdict::RelayBusy);
        assert_eq!(
            v(452, "4.4.5 Insufficient system storage"),
            Verdict::RelayBusy
        );
        assert_eq!(
            v(454, "4.7.0 TLS not available due to local problem"),
            Verdict::RelayBusy
        );
        assert_eq!(
            v(550, "5.4.5 Daily user sending quota exceeded"),
            Verdict::RelayQuota
        );
        assert_eq!(
            v(554, "Message rejected: Sending quota exceeded"),
            Verdict::RelayQuota
        );
        assert_eq!(v(535, "5.7.8 Error: authentication failed"), Verdict::Auth);
        assert_eq!(
            v(
                535,
                "5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled"
            ),
            Verdict::Auth
        );
        assert_eq!(v(450, "Too many messages, slow down"), Verdict::RelayBusy);
        assert_eq!(v(554, "5.7.1 Relay access denied"), Verdict::Permanent);
    }

    #[test]
    fn certificate_failures_say_what_to_do() {
        assert!(certificate_hint("invalid peer certificate: UnknownIssuer").contains("ca_file"));
        assert!(
            certificate_hint("invalid peer certificate: NotValidForName").contains("host name")
        );
        assert_eq!(certificate_hint("handshake eof"), "handshake eof");
    }

    #[test]
    fn enhanced_codes() {
        assert_eq!(enhanced_code("5.1.1 <x>: nope").as_deref(), Some("5.1.1"));
        assert_eq!(enhanced_code("4.7.139 x").as_deref(), Some("4.7.139"));
        assert_eq!(enhanced_code("Ok"), None);
        assert_eq!(enhanced_code("1.2.3 x"), None);
        assert_eq!(enhanced_code(""), None);
    }

    #[test]
    fn replies_are_one_bounded_line() {
        let long = "x".repeat(2000);
        assert!(clean(&long).chars().count() <= 501);
        assert_eq!(clean("a\r\nb"), "a  b");
    }

    fn wire_text(bytes: &[u8]) -> String {
        Wire::new(bytes).stuffed.expect("a text message")
    }

    #[test]
    fn wire_dot_stuffs_like_the_smtp_codec_and_ends_the_data() {
        assert_eq!(wire_text(b"a\r\nb\r\n"), "a\r\nb\r\n.\r\n");
        assert_eq!(
            wire_text(b".start\r\nx\r\n.\r\n..two\r\nend.\r\n"),
            "..start\r\nx\r\n..\r\n...two\r\nend.\r\n.\r\n"
        );
        // A bare LF is no line end in SMTP: left as lettre leaves it.
        assert_eq!(wire_text(b"a\n.b\r\n"), "a\n.b\r\n.\r\n");
        // Without a final CRLF the relay still gets a line end before the dot.
        assert_eq!(wire_text(b"x"), "x\r\n.\r\n");
        assert_eq!(Wire::new(b"abc\r\n").len, 5);
        // Not UTF-8: lettre's codec does the work.
        let w = Wire::new(b"\xff.\r\n");
        assert!(w.stuffed.is_none());
        assert_eq!(w.body, b"\xff.");
    }
}
