//! One connection to the relay: opening it (TCP, TLS or STARTTLS, EHLO, login) and one
//! transaction at a time on it, each step under the timeout.

use std::future::Future;
use std::time::Duration;

use lettre::Address;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, AsyncTokioStream};
use lettre::transport::smtp::commands::{Data, Ehlo, Mail, Rcpt, Rset};
use lettre::transport::smtp::extension::ClientId;
use secrecy::{ExposeSecret, SecretString};
use tokio::net::TcpStream;
use tokio::time::timeout;

use super::greeting;
use super::reply::clean;
use super::{Reply, Settings, Stage, Verdict, Wire};
use crate::config::{AuthMethod, Security};

/// Why a connection could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The relay refused the login.
    #[error(
        "the relay {relay} refused the login: {reply} (check [smtp] username, and the password or token it was given)"
    )]
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
    /// The relay refuses to talk to us (5xx to the greeting or EHLO): no retry helps.
    #[error("the relay {relay} refuses the connection: {reply}")]
    Refused {
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
    /// The relay does not offer the configured login method (or none at all): no retry
    /// helps, and nothing was refused.
    #[error("no login to the relay {relay}: {reason}")]
    NoLogin {
        /// `host:port`.
        relay: String,
        /// What it offers and what to set.
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
    /// Refused with a reply (at RCPT, DATA or after the message), and where.
    Refused(Stage, Reply),
    /// MAIL FROM refused: the reply is about the sender or the relay, not the recipient.
    SenderRefused(Reply),
    /// The connection broke or timed out before DATA went out: nothing was delivered.
    LostBeforeData(String),
    /// The connection broke or timed out after DATA went out: the outcome is unknown.
    LostAfterData(String),
    /// The journal could not record the attempt: the message was not sent.
    NotSent(String),
    /// The relay broke the protocol (a reply its command does not allow, a reply before
    /// the end of the message, more replies than commands): the connection is dropped.
    /// `after_data`: the message may have gone out, so the outcome is unknown.
    Violation {
        /// Whether the message had been written.
        after_data: bool,
        /// What the relay did.
        reason: String,
    },
}

/// An open, logged-in connection.
pub struct Connection {
    inner: AsyncSmtpConnection,
    timeout: Duration,
    broken: bool,
    last_used: std::time::Instant,
    /// The relay offers PIPELINING: MAIL, RCPT and DATA go out together.
    pipelining: bool,
    /// Who answered, for `check`.
    met: Met,
}

/// Who answered a connection: what `check` shows so that the operator can tell the
/// company's relay from whatever else listens on that port.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Met {
    /// The greeting's first line without its code, one short line.
    pub greeting: String,
    /// The name the relay gives in its EHLO reply.
    pub ehlo_name: String,
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
    let tcp = crate::reach::tcp(host, s.port, "[smtp]", "relay")
        .await
        .map_err(unreachable)?;
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

/// A step that got no answer in time, with the likely causes.
fn no_answer(what: &str, secs: u64) -> String {
    match what {
        "connecting" => crate::reach::no_answer_connecting(secs),
        "waiting for the greeting" => format!(
            "connected, but no greeting within {secs} s: is it an SMTP server on that port? (port 465 wants security = \"tls\")"
        ),
        _ => format!("no answer within {secs} s to {what} ([smtp] timeout_secs)"),
    }
}

/// A TLS failure with what the operator can do about it.
pub(super) fn certificate_hint(reason: &str) -> String {
    let hint = if reason.contains("InvalidContentType") || reason.contains("corrupt message") {
        "the relay does not speak TLS from the first byte on that port: ports 587 and 25 want security = \"starttls\""
    } else if reason.contains("UnknownIssuer") || reason.contains("unknown issuer") {
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
    let step = |what: &str| no_answer(what, t.as_secs());
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
    let (stream, recorded) = greeting::Recorded::new(stream);
    let greeting = timeout(
        t,
        AsyncSmtpConnection::connect_with_transport(Box::new(stream), &s.helo),
    )
    .await;
    let mut inner = match greeting {
        Err(_) => {
            return Err(ConnectError::Unreachable {
                relay,
                reason: if recorded.lock().is_ok_and(|b| b.is_empty()) {
                    step("waiting for the greeting")
                } else {
                    step("EHLO")
                },
            });
        }
        Ok(Err(e)) => {
            if let Some(reply) = Reply::from_error(&e) {
                return Err(match reply.verdict(Stage::Greeting) {
                    Verdict::Auth => ConnectError::Auth {
                        relay,
                        reply: reply.to_string(),
                    },
                    Verdict::Refuses => ConnectError::Refused { relay, reply },
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
            let local = if crate::config::is_loopback(&s.host) {
                "; a local test sink on loopback takes security = \"none\""
            } else {
                ""
            };
            return Err(ConnectError::Tls {
                relay,
                reason: format!(
                    "the relay does not offer STARTTLS; personal data must not go unencrypted (security = \"tls\" for port 465{local})"
                ),
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
    let met = Met {
        greeting: recorded
            .lock()
            .map(|bytes| greeting::shown(&bytes))
            .unwrap_or_default(),
        ehlo_name: greeting::short(inner.server_info().name()),
    };
    // lettre's own list knows only the mechanisms it speaks; from this EHLO we know all.
    let known_offer = {
        let offer: Vec<String> = [Mechanism::Plain, Mechanism::Login, Mechanism::Xoauth2]
            .into_iter()
            .filter(|m| inner.server_info().supports_auth_mechanism(*m))
            .map(|m| m.to_string().to_ascii_uppercase())
            .collect();
        (!offer.is_empty()).then_some(offer)
    };
    let (pipelining, auth_offer) = match timeout(
        t,
        inner.command(Ehlo::new(ClientId::Domain(s.helo.to_string()))),
    )
    .await
    {
        Ok(Ok(reply)) => (
            reply.message().skip(1).any(|line| {
                line.split_whitespace()
                    .next()
                    .is_some_and(|k| k.eq_ignore_ascii_case("PIPELINING"))
            }),
            greeting::offered(reply.message().skip(1)),
        ),
        // A relay that refuses a second EHLO keeps the first: one command at a time then.
        Ok(Err(e)) if Reply::from_error(&e).is_some() => (false, known_offer),
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
        if let Some(reason) = greeting::login_mismatch(s.auth, s.security, auth_offer.as_deref()) {
            inner.abort().await;
            return Err(ConnectError::NoLogin { relay, reason });
        }
        // lettre reads only `AUTH MECH ...` lines; a relay that offers the mechanism only
        // in the pre-RFC 4954 form `AUTH=MECH` would get lettre's "no compatible mechanism".
        if !inner.server_info().supports_auth_mechanism(mechanism) {
            inner.abort().await;
            let name = greeting::sasl_name(s.auth);
            return Err(ConnectError::NoLogin {
                relay,
                reason: format!(
                    "it offers AUTH {name} only in the old form AUTH={name}, which utskick's SMTP library does not read: ask the relay's admin to advertise AUTH {name}"
                ),
            });
        }
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
                    // A rate or quota reply to AUTH is pushback, not a refused login: the
                    // run pauses (and stops cleanly if it goes on), nobody is booked.
                    Some(r)
                        if matches!(
                            r.verdict(Stage::Auth),
                            Verdict::RelayBusy | Verdict::Closing | Verdict::RelayQuota
                        ) =>
                    {
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
        met,
    })
}

impl std::fmt::Display for Met {
    /// `greeting: "...", EHLO name`: one short line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "greeting: \"{}\", EHLO {}",
            self.greeting, self.ehlo_name
        )
    }
}

impl Connection {
    /// Who answered: the relay's greeting and EHLO name.
    pub fn met(&self) -> &Met {
        &self.met
    }

    /// Whether the connection may carry another message.
    pub fn usable(&self) -> bool {
        !self.broken && !self.inner.has_broken()
    }

    /// Whether the connection still answers; checked with NOOP only after a long idle. A
    /// connection on which the relay said something unasked (a late reply to an earlier
    /// transaction) is never used again: nothing read on it could be matched to a command.
    pub async fn alive(&mut self) -> bool {
        if !self.usable() {
            return false;
        }
        if let Some(extra) = self.unsolicited().await {
            tracing::debug!("<< {extra} (unasked: the connection is dropped)");
            self.broken = true;
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

    /// What the relay has sent that no command asked for, without waiting: a reply (or
    /// garbage) already read or already on the socket. A closed connection is not a reply:
    /// it only marks the connection broken.
    ///
    /// The reply is polled once, by hand: a zero timeout would cost a timer tick (about a
    /// millisecond) per check, and that halved the throughput of a fast relay.
    async fn unsolicited(&mut self) -> Option<String> {
        let polled = {
            let read = std::pin::pin!(self.inner.read_response());
            let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
            match read.poll(&mut cx) {
                std::task::Poll::Ready(r) => Some(r),
                std::task::Poll::Pending => None,
            }
        };
        match polled? {
            Ok(r) => Some(Reply::from_response(&r).to_string()),
            Err(e) => match Reply::from_error(&e) {
                Some(reply) => Some(reply.to_string()),
                None if describe(&e).contains("incomplete response") => {
                    self.broken = true;
                    None
                }
                None => Some(describe(&e)),
            },
        }
    }

    /// The relay broke the protocol: the connection is never used again.
    fn violation(&mut self, after_data: bool, reason: String) -> Delivery {
        self.broken = true;
        tracing::debug!(after_data, "protocol violation: {reason}");
        Delivery::Violation { after_data, reason }
    }

    /// One transaction: MAIL, RCPT, DATA, the message. Never retries by itself.
    ///
    /// `durable` resolves once the journal (and the archive) hold what they must; it is
    /// awaited after the relay said 354 and before the message itself goes out, so the
    /// journal's fsync overlaps the first three round trips. If it fails, the message is
    /// not sent and the connection is dropped (the relay is waiting for data).
    ///
    /// Only a 2xx reply to the final dot is `Sent`; each reply must be one its command
    /// allows (RFC 5321 4.3.2) and the relay must say nothing unasked, or the transaction
    /// is a protocol violation.
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
                            return refusal(what, reply);
                        }
                        None => {
                            self.broken = true;
                            return Delivery::LostBeforeData(format!("{what}: {}", describe(&e)));
                        }
                    },
                    Ok(Ok(r)) => {
                        let reply = Reply::from_response(&r);
                        tracing::debug!("<< {reply}");
                        if !allowed(what, &reply) {
                            return self.violation(false, format!("{reply} in answer to {what}"));
                        }
                    }
                }
            }
        }
        if let Some(extra) = self.unsolicited().await {
            return self.violation(false, format!("{extra} before the message was sent"));
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
        let delivery = match sent {
            Err(_) => {
                self.broken = true;
                Delivery::LostAfterData(timed_out("the end of the message"))
            }
            Ok(Err(e)) => match Reply::from_error(&e) {
                Some(reply) => Delivery::Refused(Stage::EndOfData, reply),
                None => {
                    self.broken = true;
                    Delivery::LostAfterData(describe(&e))
                }
            },
            Ok(Ok(r)) => {
                let reply = Reply::from_response(&r);
                tracing::debug!("<< {reply}");
                if !allowed("the end of the message", &reply) {
                    return self
                        .violation(true, format!("{reply} in answer to the end of the message"));
                }
                Delivery::Sent(reply)
            }
        };
        if matches!(delivery, Delivery::Sent(_) | Delivery::Refused(..))
            && let Some(extra) = self.unsolicited().await
        {
            let was = match &delivery {
                Delivery::Sent(r) | Delivery::Refused(_, r) => r.to_string(),
                _ => String::new(),
            };
            return self.violation(
                true,
                format!("{extra} after {was}: more replies than commands"),
            );
        }
        delivery
    }

    /// MAIL, RCPT and DATA in one write (RFC 2920), then their replies in order. None when
    /// the relay said 354; otherwise how the transaction ended. Every reply is read even
    /// after a refusal, so that the next transaction's replies are not shifted; a refusal
    /// counts for the first command refused. A reply its command does not allow is a
    /// protocol violation (nothing of the message went out yet).
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
                    let reply = Reply::from_response(&r);
                    tracing::debug!("<< {reply}");
                    if !allowed(what, &reply) {
                        return Some(
                            self.violation(
                                false,
                                format!("{reply} in answer to {what} (pipelined)"),
                            ),
                        );
                    }
                    data_accepted = i == 2;
                }
            }
        }
        let Some((first, reply)) = refused else {
            if let Some(extra) = self.unsolicited().await {
                return Some(self.violation(
                    false,
                    format!("{extra} before the message was sent (pipelined)"),
                ));
            }
            return None;
        };
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

/// Whether a positive reply is one its command allows (RFC 5321 4.3.2): 354 to DATA, 2xx
/// to the rest. lettre hands every 2xx and 3xx over as success; negative ones are refusals.
fn allowed(what: &str, reply: &Reply) -> bool {
    if what == "DATA" {
        reply.code == 354
    } else {
        (200..300).contains(&reply.code)
    }
}

/// A refusal in a transaction: the sender's (MAIL FROM) speaks for the relay.
fn refusal(what: &str, reply: Reply) -> Delivery {
    match what {
        "MAIL FROM" => Delivery::SenderRefused(reply),
        "RCPT TO" => Delivery::Refused(Stage::RcptTo, reply),
        _ => Delivery::Refused(Stage::Data, reply),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificate_failures_say_what_to_do() {
        assert!(certificate_hint("invalid peer certificate: UnknownIssuer").contains("ca_file"));
        assert!(
            certificate_hint("invalid peer certificate: NotValidForName").contains("host name")
        );
        assert_eq!(certificate_hint("handshake eof"), "handshake eof");
    }
}
