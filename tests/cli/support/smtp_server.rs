//! A small scriptable SMTP server over real TCP on 127.0.0.1 for integration tests.
//!
//! It runs a tokio runtime on its own thread and exposes a synchronous API, so ordinary
//! `#[test]` functions can start it, run the `utskick` binary against it and inspect what
//! arrived. Faults are scripted with a hook `Fn(&Event, &Ctx) -> Action` that is asked
//! before the server answers anything; the helpers at the bottom ([`fail_rcpt`],
//! [`fail_rcpt_times`], [`drop_after_data`], ...) make the common scripts one-liners.
//!
//! Reply semantics: when the hook answers with [`Action::Reply`] (or raw bytes), the
//! command takes effect exactly when the reply code is 2xx (3xx for DATA, 220 for
//! STARTTLS): a `Reply("250 ok")` to RCPT adds the recipient, a `Reply("451 ...")` does
//! not. A 421 reply, and any reply to QUIT, closes the connection after it is written.
#![allow(dead_code)]

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::rustls::ServerConfig;

/// What the client just did; the hook sees one of these before the server answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A client connected (after the handshake, with implicit TLS); the server owes a greeting.
    Greeting,
    /// `EHLO domain` (also raised for `HELO`).
    Ehlo {
        domain: String,
    },
    /// `STARTTLS`.
    StartTls,
    /// `AUTH MECHANISM ...` (before any credentials are read).
    Auth {
        mechanism: String,
    },
    /// `MAIL FROM:<from> params...` (`from` without the angle brackets).
    Mail {
        from: String,
        params: Vec<String>,
    },
    /// `RCPT TO:<to>` (`to` without the angle brackets).
    Rcpt {
        to: String,
    },
    /// `DATA` (the server owes 354).
    Data,
    /// The terminating `.` was read; `data` is the dot-unstuffed message, CRLF preserved.
    EndOfData {
        data: Vec<u8>,
    },
    Rset,
    Noop,
    Quit,
    /// Any other command line (VRFY, garbage, ...).
    Other {
        line: String,
    },
}

impl Event {
    /// The counter key of this event: `GREETING`, `EHLO`, `STARTTLS`, `AUTH`,
    /// `MAIL:<from lower-case>`, `RCPT:<to lower-case>`, `DATA`, `EOD` , `RSET`, `NOOP`,
    /// `QUIT`, `OTHER`.
    pub fn key(&self) -> String {
        match self {
            Event::Greeting => "GREETING".into(),
            Event::Ehlo { .. } => "EHLO".into(),
            Event::StartTls => "STARTTLS".into(),
            Event::Auth { .. } => "AUTH".into(),
            Event::Mail { from, .. } => format!("MAIL:{}", from.to_lowercase()),
            Event::Rcpt { to } => format!("RCPT:{}", to.to_lowercase()),
            Event::Data => "DATA".into(),
            Event::EndOfData { .. } => "EOD".into(),
            Event::Rset => "RSET".into(),
            Event::Noop => "NOOP".into(),
            Event::Quit => "QUIT".into(),
            Event::Other { .. } => "OTHER".into(),
        }
    }

    /// The kind of this event, for per-kind counters: `MAIL`, `RCPT`, ... (key without address).
    pub fn kind(&self) -> &'static str {
        match self {
            Event::Greeting => "GREETING",
            Event::Ehlo { .. } => "EHLO",
            Event::StartTls => "STARTTLS",
            Event::Auth { .. } => "AUTH",
            Event::Mail { .. } => "MAIL",
            Event::Rcpt { .. } => "RCPT",
            Event::Data => "DATA",
            Event::EndOfData { .. } => "EOD",
            Event::Rset => "RSET",
            Event::Noop => "NOOP",
            Event::Quit => "QUIT",
            Event::Other { .. } => "OTHER",
        }
    }

    /// True for `RCPT TO:<addr>` (case-insensitive).
    pub fn is_rcpt(&self, addr: &str) -> bool {
        matches!(self, Event::Rcpt { to } if to.eq_ignore_ascii_case(addr))
    }
}

/// How the server answers an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// The normal reply (and effect) of a well-behaved server.
    Default,
    /// Any reply line(s), e.g. `"550 5.1.1 <x>: Recipient address rejected"`; `\n` or
    /// `\r\n` separate lines, CRLF is added at the end.
    Reply(String),
    /// Close the TCP connection without replying (no TLS close_notify either).
    Drop,
    /// Wait, then do the inner action.
    Delay(Duration, Box<Action>),
    /// Never reply; keep the socket open until the server is dropped.
    Hang,
    /// Write exactly these bytes (no CRLF added): a 100 KB line, garbage without a code...
    RawBytes(Vec<u8>),
    /// Write these bytes `chunk` bytes at a time, flushing and sleeping `pause` in between.
    Trickle {
        bytes: Vec<u8>,
        chunk: usize,
        pause: Duration,
    },
    /// Answer STARTTLS with `454 4.7.0 TLS not available due to local problem`.
    StartTlsRefuse,
}

impl Action {
    pub fn reply(text: impl Into<String>) -> Action {
        Action::Reply(text.into())
    }

    pub fn delay(by: Duration, then: Action) -> Action {
        Action::Delay(by, Box::new(then))
    }

    /// The reply code this action will write, if it writes one that starts with 3 digits.
    fn code(&self) -> Option<u16> {
        match self {
            Action::Default | Action::Drop | Action::Hang => None,
            Action::Reply(text) => parse_code(text.as_bytes()),
            Action::Delay(_, inner) => inner.code(),
            Action::RawBytes(bytes) | Action::Trickle { bytes, .. } => parse_code(bytes),
            Action::StartTlsRefuse => Some(454),
        }
    }
}

fn parse_code(bytes: &[u8]) -> Option<u16> {
    let digits = bytes.get(..3)?;
    if digits.iter().all(u8::is_ascii_digit) {
        std::str::from_utf8(digits).ok()?.parse().ok()
    } else {
        None
    }
}

/// What the hook knows when it decides.
pub struct Ctx<'a> {
    /// 1-based number of this connection on this server.
    pub connection: usize,
    /// Connections accepted so far by this server (including this one).
    pub connections_total: usize,
    /// This connection is TLS-protected (implicit or after STARTTLS).
    pub tls: bool,
    /// The user this connection authenticated as.
    pub auth_user: Option<&'a str>,
    /// The current transaction's sender, once MAIL was accepted.
    pub mail_from: Option<&'a str>,
    /// Recipients accepted so far in the current transaction.
    pub rcpt_to: &'a [String],
    /// Messages accepted (2xx after DATA) on this connection before this event.
    pub messages_on_connection: usize,
    /// Messages accepted by this server before this event.
    pub messages_total: usize,
    times_seen: usize,
    counters: &'a HashMap<String, usize>,
}

impl Ctx<'_> {
    /// How many times an event with this event's [`Event::key`] was seen by this server,
    /// including this one (1 the first time). For RCPT the key includes the address.
    pub fn times_seen(&self) -> usize {
        self.times_seen
    }

    /// How many times the event key (see [`Event::key`]) or kind (`"RCPT"`, `"MAIL"`, ...)
    /// was seen by this server so far, including the current event.
    pub fn seen(&self, key: &str) -> usize {
        self.counters.get(key).copied().unwrap_or(0)
    }

    /// How many times `RCPT TO:<addr>` was seen so far (case-insensitive), including now.
    pub fn rcpt_seen(&self, addr: &str) -> usize {
        self.seen(&format!("RCPT:{}", addr.to_lowercase()))
    }

    /// The current transaction includes `addr` among its accepted recipients.
    pub fn has_rcpt(&self, addr: &str) -> bool {
        self.rcpt_to.iter().any(|r| r.eq_ignore_ascii_case(addr))
    }
}

/// The scripting hook.
pub type Hook = Arc<dyn Fn(&Event, &Ctx) -> Action + Send + Sync>;

/// Wraps a closure as a [`Hook`].
pub fn hook(f: impl Fn(&Event, &Ctx) -> Action + Send + Sync + 'static) -> Hook {
    Arc::new(f)
}

/// TLS mode of the server.
#[derive(Clone)]
pub enum TlsMode {
    /// Plain SMTP, STARTTLS not offered.
    None,
    /// Offer STARTTLS; with `require`, MAIL and AUTH before it get `530 5.7.0` and AUTH
    /// is only advertised after it.
    StartTls {
        config: Arc<ServerConfig>,
        require: bool,
    },
    /// TLS from the first byte (port-465 style).
    Implicit(Arc<ServerConfig>),
}

/// SASL mechanisms the server can offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    Plain,
    Login,
    /// `user=U\x01auth=Bearer TOKEN\x01\x01`; the configured password is the token.
    XOAuth2,
}

impl Mechanism {
    fn name(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::Login => "LOGIN",
            Mechanism::XOAuth2 => "XOAUTH2",
        }
    }
}

/// Credentials the server accepts.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    pub user: String,
    pub password: String,
    pub mechanisms: Vec<Mechanism>,
}

/// Server options; build with the chained methods on `ServerOptions::default()`.
#[derive(Clone)]
pub struct ServerOptions {
    /// Host name in the greeting and EHLO reply.
    pub hostname: String,
    pub tls: TlsMode,
    pub auth: Option<AuthConfig>,
    /// MAIL before a successful AUTH gets `530 5.7.0 Authentication required`.
    pub require_auth: bool,
    pub eightbitmime: bool,
    pub smtputf8: bool,
    pub pipelining: bool,
    pub enhanced_status_codes: bool,
    /// Advertise `SIZE n` and enforce it (MAIL SIZE= and the message itself: 552 5.3.4).
    pub size: Option<usize>,
    /// More EHLO keywords, advertised verbatim.
    pub extra_extensions: Vec<String>,
    /// Longest accepted command line, CRLF included (longer: `500 5.5.2`).
    pub max_command_line: usize,
    /// Longest accepted DATA line, CRLF included (longer: the message is refused with 500).
    pub max_data_line: usize,
    pub hook: Hook,
    /// Decides whether an XOAUTH2 bearer token is good (instead of comparing it with the
    /// configured password): a relay whose tokens expire. See [`ServerOptions::xoauth2_tokens`].
    pub token_check: Option<TokenCheck>,
}

/// Whether a bearer token is accepted now.
pub type TokenCheck = Arc<dyn Fn(&str) -> bool + Send + Sync>;

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            hostname: "mx.test.invalid".into(),
            tls: TlsMode::None,
            auth: None,
            require_auth: false,
            eightbitmime: false,
            smtputf8: false,
            pipelining: false,
            enhanced_status_codes: true,
            token_check: None,
            size: None,
            extra_extensions: Vec::new(),
            max_command_line: 2048,
            max_data_line: 1 << 20,
            hook: hook(|_, _| Action::Default),
        }
    }
}

impl ServerOptions {
    /// Offer STARTTLS (optional) with this certificate.
    pub fn starttls(mut self, config: Arc<ServerConfig>) -> Self {
        self.tls = TlsMode::StartTls {
            config,
            require: false,
        };
        self
    }

    /// Offer STARTTLS and require it before AUTH and MAIL.
    pub fn starttls_required(mut self, config: Arc<ServerConfig>) -> Self {
        self.tls = TlsMode::StartTls {
            config,
            require: true,
        };
        self
    }

    /// Implicit TLS (TLS from the first byte).
    pub fn implicit_tls(mut self, config: Arc<ServerConfig>) -> Self {
        self.tls = TlsMode::Implicit(config);
        self
    }

    /// Offer AUTH PLAIN and LOGIN accepting only `user`/`password` (not required).
    pub fn auth(mut self, user: &str, password: &str) -> Self {
        self.auth = Some(AuthConfig {
            user: user.into(),
            password: password.into(),
            mechanisms: vec![Mechanism::Plain, Mechanism::Login],
        });
        self
    }

    /// Offer exactly these mechanisms (call after [`ServerOptions::auth`]).
    pub fn mechanisms(mut self, mechanisms: &[Mechanism]) -> Self {
        let auth = self
            .auth
            .as_mut()
            .expect("ServerOptions::mechanisms needs auth(user, password) first");
        auth.mechanisms = mechanisms.to_vec();
        self
    }

    /// XOAUTH2 accepts the user of [`ServerOptions::auth`] with any token `check` accepts
    /// (e.g. one issued less than a few seconds ago, as a real token endpoint's expire).
    pub fn xoauth2_tokens(mut self, check: impl Fn(&str) -> bool + Send + Sync + 'static) -> Self {
        self.token_check = Some(Arc::new(check));
        self
    }

    /// Require a successful AUTH before MAIL.
    pub fn require_auth(mut self) -> Self {
        self.require_auth = true;
        self
    }

    pub fn eightbitmime(mut self) -> Self {
        self.eightbitmime = true;
        self
    }

    pub fn smtputf8(mut self) -> Self {
        self.smtputf8 = true;
        self
    }

    pub fn pipelining(mut self) -> Self {
        self.pipelining = true;
        self
    }

    pub fn size(mut self, limit: usize) -> Self {
        self.size = Some(limit);
        self
    }

    pub fn hostname(mut self, name: &str) -> Self {
        self.hostname = name.into();
        self
    }

    pub fn extension(mut self, keyword: &str) -> Self {
        self.extra_extensions.push(keyword.into());
        self
    }

    /// Script the server with a hook (see [`hook`] and the helpers in this module).
    pub fn hook(mut self, hook: Hook) -> Self {
        self.hook = hook;
        self
    }

    /// Script the server with a closure.
    pub fn on(self, f: impl Fn(&Event, &Ctx) -> Action + Send + Sync + 'static) -> Self {
        self.hook(hook(f))
    }
}

/// A message the server accepted (2xx after DATA).
#[derive(Debug, Clone)]
pub struct Received {
    /// 1-based connection number it arrived on.
    pub connection: usize,
    pub mail_from: String,
    pub mail_params: Vec<String>,
    pub rcpt_to: Vec<String>,
    /// Dot-unstuffed message, line endings exactly as sent (CRLF preserved).
    pub data: Vec<u8>,
    /// The id in the `250 2.0.0 Ok: queued as ID` reply.
    pub queue_id: String,
    pub tls: bool,
    pub auth_user: Option<String>,
    pub at: Instant,
}

impl Received {
    /// The message as text (lossy UTF-8).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.data).into_owned()
    }

    /// The first header with this name (case-insensitive), unfolded, raw (not decoded).
    pub fn header(&self, name: &str) -> Option<String> {
        let text = self.text();
        let head = text
            .split("\r\n\r\n")
            .next()
            .unwrap_or_default()
            .replace("\r\n ", " ")
            .replace("\r\n\t", " ");
        head.split("\r\n").find_map(|line| {
            let (field, value) = line.split_once(':')?;
            field
                .eq_ignore_ascii_case(name)
                .then(|| value.trim().to_string())
        })
    }
}

#[derive(Default)]
struct State {
    received: Vec<Received>,
    transcript: Vec<(usize, String)>,
    dialogue: Vec<String>,
    tls_failures: Vec<String>,
    counters: HashMap<String, usize>,
    connections: usize,
    open: usize,
    peak_open: usize,
    messages: usize,
}

struct Shared {
    options: ServerOptions,
    state: Mutex<State>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panicking hook poisons the mutex; the data is still fine for inspection.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A running scriptable SMTP server; dropping it stops it and closes every connection.
pub struct SmtpServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<watch::Sender<bool>>,
    thread: Option<JoinHandle<()>>,
}

impl SmtpServer {
    /// Starts a server on 127.0.0.1 with an OS-chosen port; it listens when this returns.
    pub fn start(options: ServerOptions) -> SmtpServer {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        listener
            .set_nonblocking(true)
            .expect("set listener non-blocking");
        let addr = listener.local_addr().expect("listener address");
        let shared = Arc::new(Shared {
            options,
            state: Mutex::new(State::default()),
        });
        let (stop_tx, stop_rx) = watch::channel(false);
        let thread_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name(format!("smtp-server-{}", addr.port()))
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("build the SMTP server's tokio runtime");
                runtime.block_on(accept_loop(listener, thread_shared, stop_rx));
                // Dropping the runtime cancels every connection task, closing its socket.
                drop(runtime);
            })
            .expect("spawn the SMTP server thread");
        SmtpServer {
            addr,
            shared,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    /// A plain server with default options.
    pub fn plain() -> SmtpServer {
        SmtpServer::start(ServerOptions::default())
    }

    /// A plain server scripted with `f`.
    pub fn scripted(f: impl Fn(&Event, &Ctx) -> Action + Send + Sync + 'static) -> SmtpServer {
        SmtpServer::start(ServerOptions::default().on(f))
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Messages accepted so far, in order of acceptance.
    pub fn received(&self) -> Vec<Received> {
        self.shared.lock().received.clone()
    }

    /// Waits until at least `n` messages were accepted; panics with the dialogue on timeout.
    pub fn wait_for_received(&self, n: usize, timeout: Duration) -> Vec<Received> {
        let deadline = Instant::now() + timeout;
        loop {
            let received = self.received();
            if received.len() >= n {
                return received;
            }
            if Instant::now() >= deadline {
                panic!(
                    "SMTP server got {} message(s), expected {n} within {timeout:?}; dialogue:\n{}",
                    received.len(),
                    self.dialogue().join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.shared.lock().connections
    }

    /// The most connections that were open at the same time.
    pub fn peak_connections(&self) -> usize {
        self.shared.lock().peak_open
    }

    /// Every command line seen, in order, without CRLF; AUTH payloads are `<redacted>`.
    pub fn transcript(&self) -> Vec<String> {
        self.shared
            .lock()
            .transcript
            .iter()
            .map(|(_, line)| line.clone())
            .collect()
    }

    /// Like [`SmtpServer::transcript`], with the connection number of each command.
    pub fn transcript_by_connection(&self) -> Vec<(usize, String)> {
        self.shared.lock().transcript.clone()
    }

    /// Both directions, for failure messages: `3> MAIL FROM:<..>` / `3< 250 2.1.0 Ok`
    /// (server lines longer than 200 bytes are shortened; `3! ...` are server-side notes).
    pub fn dialogue(&self) -> Vec<String> {
        self.shared.lock().dialogue.clone()
    }

    /// TLS handshakes that failed on the server side (e.g. the client rejected the cert).
    pub fn tls_failures(&self) -> Vec<String> {
        self.shared.lock().tls_failures.clone()
    }

    /// How many times the event key (see [`Event::key`]) or kind was seen.
    pub fn seen(&self, key: &str) -> usize {
        self.shared.lock().counters.get(key).copied().unwrap_or(0)
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(true);
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn accept_loop(
    listener: std::net::TcpListener,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    let listener = TcpListener::from_std(listener).expect("register the listener with tokio");
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            accepted = listener.accept() => {
                let Ok((tcp, _peer)) = accepted else { continue };
                let number = {
                    let mut state = shared.lock();
                    state.connections += 1;
                    state.open += 1;
                    state.peak_open = state.peak_open.max(state.open);
                    state.connections
                };
                let shared = Arc::clone(&shared);
                tokio::spawn(async move {
                    let _open = OpenGuard(Arc::clone(&shared));
                    let _ = serve(tcp, number, shared).await;
                });
            }
        }
    }
}

/// Counts a connection as closed even when its task is cancelled at shutdown.
struct OpenGuard(Arc<Shared>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.lock().open -= 1;
    }
}

enum Conn {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_flush(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

enum Line {
    Text(Vec<u8>),
    TooLong,
    Eof,
}

/// Why a connection ended early (the task just returns).
enum Stop {
    Closed,
    Io,
}

impl From<io::Error> for Stop {
    fn from(_: io::Error) -> Self {
        Stop::Io
    }
}

type Flow<T = ()> = Result<T, Stop>;

/// How an event was answered.
enum Answer {
    /// The hook left it to the default behaviour.
    Default,
    /// The hook wrote a reply; its code decides whether the command takes effect.
    Replied(Option<u16>),
}

impl Answer {
    fn positive(&self, class: u16) -> bool {
        matches!(self, Answer::Replied(Some(code)) if code / 100 == class)
    }
}

struct Session {
    conn: Option<Conn>,
    buf: Vec<u8>,
    shared: Arc<Shared>,
    number: usize,
    tls: bool,
    greeted: bool,
    auth_user: Option<String>,
    mail_from: Option<String>,
    mail_params: Vec<String>,
    rcpt_to: Vec<String>,
    messages: usize,
}

async fn serve(tcp: TcpStream, number: usize, shared: Arc<Shared>) -> Flow {
    let _ = tcp.set_nodelay(true);
    let mut session = Session {
        conn: Some(Conn::Plain(tcp)),
        buf: Vec::new(),
        shared,
        number,
        tls: false,
        greeted: false,
        auth_user: None,
        mail_from: None,
        mail_params: Vec::new(),
        rcpt_to: Vec::new(),
        messages: 0,
    };
    if let TlsMode::Implicit(config) = session.shared.options.tls.clone() {
        session.handshake(config).await?;
    }
    session.run().await
}

impl Session {
    fn options(&self) -> &ServerOptions {
        &self.shared.options
    }

    fn conn(&mut self) -> &mut Conn {
        self.conn
            .as_mut()
            .expect("connection present outside STARTTLS")
    }

    fn note(&self, text: String) {
        let mut state = self.shared.lock();
        state.dialogue.push(format!("{}! {text}", self.number));
    }

    fn reset_transaction(&mut self) {
        self.mail_from = None;
        self.mail_params.clear();
        self.rcpt_to.clear();
    }

    async fn handshake(&mut self, config: Arc<ServerConfig>) -> Flow {
        let Some(Conn::Plain(tcp)) = self.conn.take() else {
            return Err(Stop::Closed);
        };
        if !self.buf.is_empty() {
            self.note(format!(
                "discarded {} plaintext byte(s) sent after STARTTLS",
                self.buf.len()
            ));
            self.buf.clear();
        }
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        match acceptor.accept(tcp).await {
            Ok(stream) => {
                self.conn = Some(Conn::Tls(Box::new(stream)));
                self.tls = true;
                self.note("TLS established".into());
                Ok(())
            }
            Err(e) => {
                let mut state = self.shared.lock();
                state.tls_failures.push(e.to_string());
                state
                    .dialogue
                    .push(format!("{}! TLS handshake failed: {e}", self.number));
                Err(Stop::Closed)
            }
        }
    }

    async fn read_line(&mut self, limit: usize) -> Flow<Line> {
        let mut discarding = false;
        loop {
            if let Some(pos) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=pos).collect();
                if discarding || line.len() > limit {
                    return Ok(Line::TooLong);
                }
                return Ok(Line::Text(line));
            }
            if self.buf.len() > limit {
                discarding = true;
                self.buf.clear();
            }
            let mut chunk = [0u8; 8192];
            let n = self.conn().read(&mut chunk).await?;
            if n == 0 {
                return Ok(Line::Eof);
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    async fn write(&mut self, bytes: &[u8]) -> Flow {
        {
            let text = String::from_utf8_lossy(bytes);
            let mut state = self.shared.lock();
            for line in text.trim_end_matches(['\r', '\n']).split('\n') {
                let line = line.trim_end_matches('\r');
                let shown = if line.len() > 200 {
                    let mut end = 200;
                    while !line.is_char_boundary(end) {
                        end -= 1;
                    }
                    format!("{}... ({} bytes)", &line[..end], line.len())
                } else {
                    line.to_string()
                };
                state.dialogue.push(format!("{}< {shown}", self.number));
            }
        }
        let conn = self.conn();
        conn.write_all(bytes).await?;
        conn.flush().await?;
        Ok(())
    }

    async fn reply(&mut self, text: &str) -> Flow {
        let mut out = String::new();
        for line in text.trim_end_matches(['\r', '\n']).split('\n') {
            out.push_str(line.trim_end_matches('\r'));
            out.push_str("\r\n");
        }
        self.write(out.as_bytes()).await
    }

    /// Counts the event, asks the hook, and performs a non-default action.
    async fn ask(&mut self, event: &Event) -> Flow<Answer> {
        let action = {
            let mut state = self.shared.lock();
            let key = event.key();
            let times_seen = {
                let count = state.counters.entry(key.clone()).or_insert(0);
                *count += 1;
                *count
            };
            if key != event.kind() {
                *state.counters.entry(event.kind().to_string()).or_insert(0) += 1;
            }
            let ctx = Ctx {
                connection: self.number,
                connections_total: state.connections,
                tls: self.tls,
                auth_user: self.auth_user.as_deref(),
                mail_from: self.mail_from.as_deref(),
                rcpt_to: &self.rcpt_to,
                messages_on_connection: self.messages,
                messages_total: state.messages,
                times_seen,
                counters: &state.counters,
            };
            (self.shared.options.hook)(event, &ctx)
        };
        if let Event::EndOfData { data } = event
            && action.code().is_some_and(|code| code / 100 == 2)
        {
            // Record before the client can see the 2xx.
            self.record(data.clone());
        }
        self.perform(action).await
    }

    fn perform(
        &mut self,
        action: Action,
    ) -> Pin<Box<dyn Future<Output = Flow<Answer>> + Send + '_>> {
        Box::pin(async move {
            let code = action.code();
            match action {
                Action::Default => return Ok(Answer::Default),
                Action::Reply(text) => self.reply(&text).await?,
                Action::Drop => {
                    self.note("dropped the connection (scripted)".into());
                    return Err(Stop::Closed);
                }
                Action::Delay(by, inner) => {
                    tokio::time::sleep(by).await;
                    return self.perform(*inner).await;
                }
                Action::Hang => {
                    self.note("hanging (scripted)".into());
                    std::future::pending::<()>().await;
                }
                Action::RawBytes(bytes) => self.write(&bytes).await?,
                Action::Trickle {
                    bytes,
                    chunk,
                    pause,
                } => {
                    for (i, piece) in bytes.chunks(chunk.max(1)).enumerate() {
                        if i > 0 {
                            tokio::time::sleep(pause).await;
                        }
                        let conn = self.conn();
                        conn.write_all(piece).await?;
                        conn.flush().await?;
                    }
                    self.note(format!("trickled {} byte(s)", bytes.len()));
                }
                Action::StartTlsRefuse => {
                    self.reply("454 4.7.0 TLS not available due to local problem")
                        .await?
                }
            }
            if code == Some(421) {
                self.note("closing after 421".into());
                return Err(Stop::Closed);
            }
            Ok(Answer::Replied(code))
        })
    }

    /// Books an accepted message; returns its queue id.
    fn record(&mut self, data: Vec<u8>) -> String {
        let mut state = self.shared.lock();
        state.messages += 1;
        let queue_id = format!("UT{:05}", state.messages);
        state.received.push(Received {
            connection: self.number,
            mail_from: self.mail_from.clone().unwrap_or_default(),
            mail_params: self.mail_params.clone(),
            rcpt_to: self.rcpt_to.clone(),
            data,
            queue_id: queue_id.clone(),
            tls: self.tls,
            auth_user: self.auth_user.clone(),
            at: Instant::now(),
        });
        drop(state);
        self.messages += 1;
        queue_id
    }

    fn log_command(&self, line: &str) {
        let mut state = self.shared.lock();
        state.transcript.push((self.number, line.to_string()));
        state.dialogue.push(format!("{}> {line}", self.number));
    }

    async fn run(&mut self) -> Flow {
        let greeting = format!("220 {} ESMTP utskick test server", self.options().hostname);
        if let Answer::Default = self.ask(&Event::Greeting).await? {
            self.reply(&greeting).await?;
        }
        loop {
            let limit = self.options().max_command_line;
            let raw = match self.read_line(limit).await? {
                Line::Eof => return Ok(()),
                Line::TooLong => {
                    self.log_command("<line too long>");
                    self.reply("500 5.5.2 Error: line too long").await?;
                    continue;
                }
                Line::Text(raw) => raw,
            };
            let line = String::from_utf8_lossy(&raw)
                .trim_end_matches(['\r', '\n'])
                .to_string();
            let (verb, arg) = match line.split_once(' ') {
                Some((verb, arg)) => (verb.to_ascii_uppercase(), arg.trim().to_string()),
                None => (line.to_ascii_uppercase(), String::new()),
            };
            if verb == "AUTH" {
                let mechanism = arg.split(' ').next().unwrap_or_default().to_string();
                let shown = if arg.contains(' ') {
                    format!("AUTH {mechanism} <redacted>")
                } else {
                    format!("AUTH {mechanism}")
                };
                self.log_command(&shown);
            } else {
                self.log_command(&line);
            }
            match verb.as_str() {
                "EHLO" | "HELO" => self.ehlo(verb == "EHLO", arg).await?,
                "STARTTLS" => self.starttls().await?,
                "AUTH" => self.auth(&arg).await?,
                "MAIL" => self.mail(&arg).await?,
                "RCPT" => self.rcpt(&arg).await?,
                "DATA" => self.data(&arg).await?,
                "RSET" => {
                    let answer = self.ask(&Event::Rset).await?;
                    if !matches!(answer, Answer::Replied(Some(code)) if code / 100 != 2) {
                        self.reset_transaction();
                    }
                    if let Answer::Default = answer {
                        self.reply("250 2.0.0 Ok").await?;
                    }
                }
                "NOOP" => {
                    if let Answer::Default = self.ask(&Event::Noop).await? {
                        self.reply("250 2.0.0 Ok").await?;
                    }
                }
                "QUIT" => {
                    if let Answer::Default = self.ask(&Event::Quit).await? {
                        self.reply("221 2.0.0 Bye").await?;
                    }
                    return Ok(());
                }
                _ => {
                    if let Answer::Default = self.ask(&Event::Other { line: line.clone() }).await? {
                        if verb == "VRFY" {
                            self.reply("252 2.0.0 Cannot VRFY user").await?;
                        } else {
                            self.reply("502 5.5.2 Error: command not recognized")
                                .await?;
                        }
                    }
                }
            }
        }
    }

    fn auth_advertised(&self) -> bool {
        let tls_ok = match &self.options().tls {
            TlsMode::StartTls { require: true, .. } => self.tls,
            _ => true,
        };
        self.options().auth.is_some() && tls_ok
    }

    fn tls_required_but_missing(&self) -> bool {
        matches!(&self.options().tls, TlsMode::StartTls { require: true, .. }) && !self.tls
    }

    async fn ehlo(&mut self, extended: bool, domain: String) -> Flow {
        let answer = self.ask(&Event::Ehlo { domain }).await?;
        match answer {
            Answer::Default => {
                self.greeted = true;
                self.reset_transaction();
                let options = self.options();
                if !extended {
                    let reply = format!("250 {}", options.hostname);
                    return self.reply(&reply).await;
                }
                let mut lines = vec![options.hostname.clone()];
                if options.pipelining {
                    lines.push("PIPELINING".into());
                }
                if let Some(size) = options.size {
                    lines.push(format!("SIZE {size}"));
                }
                if matches!(options.tls, TlsMode::StartTls { .. }) && !self.tls {
                    lines.push("STARTTLS".into());
                }
                if self.auth_advertised()
                    && let Some(auth) = &options.auth
                {
                    let names: Vec<&str> = auth.mechanisms.iter().map(|m| m.name()).collect();
                    lines.push(format!("AUTH {}", names.join(" ")));
                }
                if options.enhanced_status_codes {
                    lines.push("ENHANCEDSTATUSCODES".into());
                }
                if options.eightbitmime {
                    lines.push("8BITMIME".into());
                }
                if options.smtputf8 {
                    lines.push("SMTPUTF8".into());
                }
                lines.extend(options.extra_extensions.iter().cloned());
                let last = lines.len() - 1;
                let mut reply = String::new();
                for (i, line) in lines.iter().enumerate() {
                    let sep = if i == last { ' ' } else { '-' };
                    reply.push_str(&format!("250{sep}{line}\r\n"));
                }
                self.write(reply.as_bytes()).await
            }
            answer => {
                if answer.positive(2) {
                    self.greeted = true;
                    self.reset_transaction();
                }
                Ok(())
            }
        }
    }

    async fn starttls(&mut self) -> Flow {
        let answer = self.ask(&Event::StartTls).await?;
        let config = match &self.options().tls {
            TlsMode::StartTls { config, .. } if !self.tls => Some(Arc::clone(config)),
            _ => None,
        };
        let go = match answer {
            Answer::Default => match config {
                Some(_) => {
                    self.reply("220 2.0.0 Ready to start TLS").await?;
                    true
                }
                None if self.tls => {
                    self.reply("554 5.5.1 Error: TLS already active").await?;
                    false
                }
                None => {
                    self.reply("502 5.5.1 Error: command not implemented")
                        .await?;
                    false
                }
            },
            answer => answer.positive(2),
        };
        if go {
            let Some(config) = config else {
                self.note("STARTTLS accepted by the hook but no TLS config: closing".into());
                return Err(Stop::Closed);
            };
            self.handshake(config).await?;
            self.greeted = false;
            self.auth_user = None;
            self.reset_transaction();
        }
        Ok(())
    }

    async fn read_auth_line(&mut self) -> Flow<Option<String>> {
        let limit = self.options().max_command_line;
        match self.read_line(limit).await? {
            Line::Eof => Err(Stop::Closed),
            Line::TooLong => {
                self.log_command("<redacted: line too long>");
                Ok(None)
            }
            Line::Text(raw) => {
                self.log_command("<redacted>");
                let text = String::from_utf8_lossy(&raw)
                    .trim_end_matches(['\r', '\n'])
                    .to_string();
                Ok(Some(text))
            }
        }
    }

    async fn auth(&mut self, arg: &str) -> Flow {
        let mut parts = arg.split_whitespace();
        let mechanism = parts.next().unwrap_or_default().to_ascii_uppercase();
        let initial = parts.next().map(str::to_string);
        let answer = self
            .ask(&Event::Auth {
                mechanism: mechanism.clone(),
            })
            .await?;
        if let Answer::Replied(code) = answer {
            if code == Some(235) {
                self.auth_user = Some("<scripted>".into());
            }
            return Ok(());
        }
        let Some(config) = self.options().auth.clone() else {
            return self
                .reply("503 5.5.1 Error: authentication not enabled")
                .await;
        };
        if self.tls_required_but_missing() {
            return self
                .reply("530 5.7.0 Must issue a STARTTLS command first")
                .await;
        }
        if !self.greeted {
            return self.reply("503 5.5.1 Error: send HELO/EHLO first").await;
        }
        if self.auth_user.is_some() {
            return self.reply("503 5.5.1 Error: already authenticated").await;
        }
        if self.mail_from.is_some() {
            return self
                .reply("503 5.5.1 Error: MAIL transaction in progress")
                .await;
        }
        let Some(mech) = config
            .mechanisms
            .iter()
            .copied()
            .find(|m| m.name() == mechanism)
        else {
            return self
                .reply("504 5.5.4 Unrecognized authentication type")
                .await;
        };
        const ABORTED: &str = "501 5.7.0 Authentication aborted";
        const BAD_B64: &str = "501 5.5.2 Cannot decode response";
        let accepted = match mech {
            Mechanism::Plain => {
                let payload = match initial {
                    Some(p) => p,
                    None => {
                        self.reply("334 ").await?;
                        match self.read_auth_line().await? {
                            Some(p) => p,
                            None => return self.reply(BAD_B64).await,
                        }
                    }
                };
                if payload == "*" {
                    return self.reply(ABORTED).await;
                }
                let Some(decoded) = base64_decode(&payload) else {
                    return self.reply(BAD_B64).await;
                };
                let fields: Vec<&[u8]> = decoded.split(|&b| b == 0).collect();
                match fields.as_slice() {
                    [_authz, user, pass] => (*user == config.user.as_bytes()
                        && *pass == config.password.as_bytes())
                    .then(|| config.user.clone()),
                    _ => None,
                }
            }
            Mechanism::Login => {
                let user_b64 = match initial {
                    Some(p) => p,
                    None => {
                        self.reply("334 VXNlcm5hbWU6").await?;
                        match self.read_auth_line().await? {
                            Some(p) => p,
                            None => return self.reply(BAD_B64).await,
                        }
                    }
                };
                if user_b64 == "*" {
                    return self.reply(ABORTED).await;
                }
                self.reply("334 UGFzc3dvcmQ6").await?;
                let Some(pass_b64) = self.read_auth_line().await? else {
                    return self.reply(BAD_B64).await;
                };
                if pass_b64 == "*" {
                    return self.reply(ABORTED).await;
                }
                match (base64_decode(&user_b64), base64_decode(&pass_b64)) {
                    (Some(user), Some(pass)) => (user == config.user.as_bytes()
                        && pass == config.password.as_bytes())
                    .then(|| config.user.clone()),
                    _ => return self.reply(BAD_B64).await,
                }
            }
            Mechanism::XOAuth2 => {
                let payload = match initial {
                    Some(p) => p,
                    None => {
                        self.reply("334 ").await?;
                        match self.read_auth_line().await? {
                            Some(p) => p,
                            None => return self.reply(BAD_B64).await,
                        }
                    }
                };
                let Some(decoded) = base64_decode(&payload) else {
                    return self.reply(BAD_B64).await;
                };
                let text = String::from_utf8_lossy(&decoded).into_owned();
                let expected = format!(
                    "user={}\x01auth=Bearer {}\x01\x01",
                    config.user, config.password
                );
                let good = match &self.options().token_check {
                    None => text == expected,
                    Some(check) => text
                        .strip_prefix(&format!("user={}\x01auth=Bearer ", config.user))
                        .and_then(|rest| rest.strip_suffix("\x01\x01"))
                        .is_some_and(|token| check(token)),
                };
                if good {
                    Some(config.user.clone())
                } else {
                    // Like Gmail: a 334 with a JSON error, the client answers with an empty line.
                    self.reply("334 eyJzdGF0dXMiOiI0MDEiLCJzY2hlbWVzIjoiQmVhcmVyIn0=")
                        .await?;
                    self.read_auth_line().await?;
                    None
                }
            }
        };
        match accepted {
            Some(user) => {
                self.auth_user = Some(user);
                self.reply("235 2.7.0 Authentication successful").await
            }
            None => {
                self.reply("535 5.7.8 Error: authentication failed: authentication failure")
                    .await
            }
        }
    }

    async fn mail(&mut self, arg: &str) -> Flow {
        let parsed = parse_path(arg, "FROM:");
        let (from, params) = match &parsed {
            Some((from, params)) => (from.clone(), params.clone()),
            None => (String::new(), Vec::new()),
        };
        let answer = self
            .ask(&Event::Mail {
                from: from.clone(),
                params: params.clone(),
            })
            .await?;
        if let Answer::Replied(_) = answer {
            if answer.positive(2) {
                self.mail_from = Some(from);
                self.mail_params = params;
                self.rcpt_to.clear();
            }
            return Ok(());
        }
        let options = self.options().clone();
        let error = if !self.greeted {
            Some("503 5.5.1 Error: send HELO/EHLO first".to_string())
        } else if self.tls_required_but_missing() {
            Some("530 5.7.0 Must issue a STARTTLS command first".into())
        } else if options.require_auth && self.auth_user.is_none() {
            Some("530 5.7.0 Authentication required".into())
        } else if self.mail_from.is_some() {
            Some("503 5.5.1 Error: nested MAIL command".into())
        } else if parsed.is_none() {
            Some("501 5.5.4 Syntax: MAIL FROM:<address>".into())
        } else {
            let mut error = None;
            let smtputf8 = params.iter().any(|p| p.eq_ignore_ascii_case("SMTPUTF8"));
            for param in &params {
                let (name, value) = param.split_once('=').unwrap_or((param, ""));
                let name = name.to_ascii_uppercase();
                let known = match name.as_str() {
                    "BODY" => {
                        value.eq_ignore_ascii_case("7BIT")
                            || (options.eightbitmime && value.eq_ignore_ascii_case("8BITMIME"))
                    }
                    "SMTPUTF8" => options.smtputf8,
                    "SIZE" => options.size.is_some(),
                    _ => false,
                };
                if !known {
                    error = Some(format!("555 5.5.4 Unsupported option: {param}"));
                    break;
                }
                if name == "SIZE"
                    && let (Some(limit), Ok(declared)) = (options.size, value.parse::<usize>())
                    && declared > limit
                {
                    error = Some("552 5.3.4 Message size exceeds fixed limit".into());
                    break;
                }
            }
            if error.is_none() && !from.is_ascii() && !smtputf8 {
                error = Some(format!(
                    "553 5.6.7 <{from}>: non-ASCII sender address without SMTPUTF8"
                ));
            }
            error
        };
        match error {
            Some(error) => self.reply(&error).await,
            None => {
                self.mail_from = Some(from);
                self.mail_params = params;
                self.rcpt_to.clear();
                self.reply("250 2.1.0 Ok").await
            }
        }
    }

    async fn rcpt(&mut self, arg: &str) -> Flow {
        let parsed = parse_path(arg, "TO:");
        let to = parsed
            .as_ref()
            .map(|(to, _)| to.clone())
            .unwrap_or_default();
        let answer = self.ask(&Event::Rcpt { to: to.clone() }).await?;
        if let Answer::Replied(_) = answer {
            if answer.positive(2) {
                self.rcpt_to.push(to);
            }
            return Ok(());
        }
        let smtputf8 = self
            .mail_params
            .iter()
            .any(|p| p.eq_ignore_ascii_case("SMTPUTF8"));
        let error = if self.mail_from.is_none() {
            Some("503 5.5.1 Error: need MAIL command".to_string())
        } else if parsed.is_none() || to.is_empty() {
            Some("501 5.5.4 Syntax: RCPT TO:<address>".into())
        } else if !to.is_ascii() && !smtputf8 {
            Some(format!(
                "553 5.6.7 <{to}>: non-ASCII recipient address without SMTPUTF8"
            ))
        } else {
            None
        };
        match error {
            Some(error) => self.reply(&error).await,
            None => {
                self.rcpt_to.push(to);
                self.reply("250 2.1.5 Ok").await
            }
        }
    }

    async fn data(&mut self, arg: &str) -> Flow {
        let answer = self.ask(&Event::Data).await?;
        let go = match answer {
            Answer::Default => {
                let error = if self.mail_from.is_none() {
                    Some("503 5.5.1 Error: need MAIL command")
                } else if self.rcpt_to.is_empty() {
                    Some("554 5.5.1 Error: no valid recipients")
                } else if !arg.is_empty() {
                    Some("501 5.5.4 Syntax: DATA")
                } else {
                    None
                };
                match error {
                    Some(error) => {
                        self.reply(error).await?;
                        false
                    }
                    None => {
                        self.reply("354 End data with <CR><LF>.<CR><LF>").await?;
                        true
                    }
                }
            }
            answer => answer.positive(3),
        };
        if !go {
            return Ok(());
        }
        let limit = self.options().max_data_line;
        let mut data = Vec::new();
        let mut too_long = false;
        loop {
            match self.read_line(limit).await? {
                Line::Eof => {
                    self.note("connection closed during DATA".into());
                    return Err(Stop::Closed);
                }
                Line::TooLong => too_long = true,
                Line::Text(line) => {
                    if line == b".\r\n" || line == b".\n" {
                        break;
                    }
                    let body = line.strip_prefix(b".").unwrap_or(&line);
                    data.extend_from_slice(body);
                }
            }
        }
        self.note(format!("end of data: {} byte(s)", data.len()));
        let event = Event::EndOfData { data };
        let answer = self.ask(&event).await?;
        let Event::EndOfData { data } = event else {
            unreachable!("constructed above")
        };
        if let Answer::Default = answer {
            let too_big = self.options().size.is_some_and(|limit| data.len() > limit);
            if too_long {
                self.reply("500 5.5.2 Error: message contains a line that is too long")
                    .await?;
            } else if too_big {
                self.reply("552 5.3.4 Message size exceeds fixed limit")
                    .await?;
            } else {
                let queue_id = self.record(data);
                let reply = format!("250 2.0.0 Ok: queued as {queue_id}");
                self.reply(&reply).await?;
            }
        }
        self.reset_transaction();
        Ok(())
    }
}

/// Parses `FROM:<addr> PARAM PARAM` (keyword case-insensitive, spaces after the colon allowed).
fn parse_path(arg: &str, keyword: &str) -> Option<(String, Vec<String>)> {
    let head = arg.get(..keyword.len())?;
    if !head.eq_ignore_ascii_case(keyword) {
        return None;
    }
    let rest = arg[keyword.len()..].trim_start();
    let rest = rest.strip_prefix('<')?;
    let end = rest.find('>')?;
    let addr = rest[..end].to_string();
    let params = rest[end + 1..]
        .split_whitespace()
        .map(str::to_string)
        .collect();
    Some((addr, params))
}

/// Standard base64 as SASL uses it (RFC 4648; the crate utskick uses for DKIM): padded when
/// encoding, padding optional when decoding, as clients differ.
const B64: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    base64::engine::general_purpose::PAD
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
);

/// Standard base64 with padding.
pub fn base64_encode(input: &[u8]) -> String {
    use base64::Engine;
    B64.encode(input)
}

/// Standard base64 (padding optional); `None` on anything else.
pub fn base64_decode(input: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    B64.decode(input.trim()).ok()
}

// ----- one-liner scripts -------------------------------------------------------------

/// Performs `action` whenever `pred` holds; otherwise the default behaviour.
pub fn when(pred: impl Fn(&Event, &Ctx) -> bool + Send + Sync + 'static, action: Action) -> Hook {
    hook(move |event, ctx| {
        if pred(event, ctx) {
            action.clone()
        } else {
            Action::Default
        }
    })
}

/// Combines hooks: the first one that does not answer `Default` wins.
pub fn first_of(hooks: Vec<Hook>) -> Hook {
    hook(move |event, ctx| {
        hooks
            .iter()
            .map(|h| h(event, ctx))
            .find(|a| *a != Action::Default)
            .unwrap_or(Action::Default)
    })
}

/// `RCPT TO:<addr>` always gets `reply` (e.g. `"550 5.1.1 <x>: Recipient address rejected"`).
pub fn fail_rcpt(addr: &str, reply: &str) -> Hook {
    let addr = addr.to_string();
    when(move |e, _| e.is_rcpt(&addr), Action::reply(reply))
}

/// `RCPT TO:<addr>` gets `reply` the first `n` times it is seen, then is accepted.
pub fn fail_rcpt_times(addr: &str, n: usize, reply: &str) -> Hook {
    let addr = addr.to_string();
    when(
        move |e, ctx| e.is_rcpt(&addr) && ctx.times_seen() <= n,
        Action::reply(reply),
    )
}

/// The connection is closed without reply at `RCPT TO:<addr>` (the first `n` times).
pub fn drop_at_rcpt_times(addr: &str, n: usize) -> Hook {
    let addr = addr.to_string();
    when(
        move |e, ctx| e.is_rcpt(&addr) && ctx.times_seen() <= n,
        Action::Drop,
    )
}

/// Every MAIL FROM gets `reply` (e.g. a relay refusing the sender).
pub fn fail_mail(reply: &str) -> Hook {
    when(|e, _| matches!(e, Event::Mail { .. }), Action::reply(reply))
}

/// The first `n` MAIL FROM commands (server-wide) get `reply`, later ones are accepted.
pub fn fail_mail_times(n: usize, reply: &str) -> Hook {
    when(
        move |e, ctx| matches!(e, Event::Mail { .. }) && ctx.seen("MAIL") <= n,
        Action::reply(reply),
    )
}

/// Once `n` messages were accepted by the server, every MAIL gets `reply`
/// (a daily quota: `"550 5.4.5 Daily user sending quota exceeded"`).
pub fn quota_after(n: usize, reply: &str) -> Hook {
    when(
        move |e, ctx| matches!(e, Event::Mail { .. }) && ctx.messages_total >= n,
        Action::reply(reply),
    )
}

/// Once `n` messages were accepted on a connection, its next MAIL gets `reply`
/// (e.g. `"421 4.7.0 Too many messages for this session"`, which also closes it).
pub fn per_connection_limit(n: usize, reply: &str) -> Hook {
    when(
        move |e, ctx| matches!(e, Event::Mail { .. }) && ctx.messages_on_connection >= n,
        Action::reply(reply),
    )
}

/// After the message for `addr` is fully received, close the connection without reply.
pub fn drop_after_data(addr: &str) -> Hook {
    let addr = addr.to_string();
    when(
        move |e, ctx| matches!(e, Event::EndOfData { .. }) && ctx.has_rcpt(&addr),
        Action::Drop,
    )
}

/// Like [`drop_after_data`], only the first `n` times a message for `addr` ends.
pub fn drop_after_data_times(addr: &str, n: usize) -> Hook {
    let addr = addr.to_string();
    let seen = Arc::new(Mutex::new(0usize));
    hook(move |e, ctx| {
        if matches!(e, Event::EndOfData { .. }) && ctx.has_rcpt(&addr) {
            let mut seen = seen.lock().unwrap_or_else(|p| p.into_inner());
            *seen += 1;
            if *seen <= n {
                return Action::Drop;
            }
        }
        Action::Default
    })
}

/// After the message for `addr` is fully received, never answer (a client timeout).
pub fn hang_after_data(addr: &str) -> Hook {
    let addr = addr.to_string();
    when(
        move |e, ctx| matches!(e, Event::EndOfData { .. }) && ctx.has_rcpt(&addr),
        Action::Hang,
    )
}

/// The message for `addr` is refused after DATA with `reply` (e.g. `"554 5.7.1 spam"`).
pub fn fail_data_for(addr: &str, reply: &str) -> Hook {
    let addr = addr.to_string();
    when(
        move |e, ctx| matches!(e, Event::EndOfData { .. }) && ctx.has_rcpt(&addr),
        Action::reply(reply),
    )
}

/// The greeting is `reply` instead of 220 (e.g. `"554 5.3.2 no service"`; 421 closes).
pub fn greeting(reply: &str) -> Hook {
    when(|e, _| *e == Event::Greeting, Action::reply(reply))
}

/// Every event of this kind (`"RCPT"`, `"EOD"`, see [`Event::kind`]) is delayed by `by`.
pub fn delay(kind: &'static str, by: Duration) -> Hook {
    when(
        move |e, _| e.kind() == kind,
        Action::delay(by, Action::Default),
    )
}
