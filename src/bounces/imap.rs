//! The IMAP mailbox where delivery reports arrive, for `utskick bounces --imap`.
//!
//! Bounces land in the sender's mailbox on the company's mail server, which operators read
//! over IMAP, not as files. This module logs in (implicit TLS, STARTTLS, or plain text on
//! loopback), opens the configured folder read-only with EXAMINE, fetches every message
//! without touching its flags (`BODY.PEEK[]`), and, only when asked, opens it read-write to
//! move the reports `bounces` has booked into another folder. Every network step has the
//! timeout of the `[smtp]` section; the password is held as a secret and never shown, not
//! even inside a server's error text.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use anyhow::anyhow;
use async_imap::imap_proto::{AttributeValue, Response, Status};
use async_imap::{Client, Session};
use secrecy::{ExposeSecret, SecretString};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::ServerName;

use crate::Fail;
use crate::config::{Bounces, Security};

/// Messages fetched per `UID FETCH` command.
const FETCH_BATCH: usize = 100;
/// Messages moved per `UID MOVE` command (keeps command lines short).
const MOVE_BATCH: usize = 200;

/// What it takes to open the mailbox: the `[bounces]` section, its password, a timeout.
pub struct Settings {
    host: String,
    port: u16,
    security: Security,
    username: String,
    password: SecretString,
    folder: String,
    tls: Option<Arc<rustls::ClientConfig>>,
    timeout: Duration,
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("server", &self.server())
            .field("security", &self.security)
            .field("username", &self.username)
            .field("folder", &self.folder)
            .finish_non_exhaustive()
    }
}

impl Settings {
    /// From the checked section and the password read for it. An unreadable `ca_file` is
    /// bad input (exit 2).
    pub fn new(
        bounces: &Bounces,
        password: SecretString,
        step_timeout: Duration,
    ) -> Result<Settings, Fail> {
        let tls = match bounces.security {
            Security::None => None,
            Security::Tls | Security::StartTls => Some(
                crate::tls::client_config(bounces.ca_file.as_deref(), "[bounces] ca_file")
                    .map_err(Fail::Input)?,
            ),
        };
        Ok(Settings {
            host: bounces.host.clone(),
            port: bounces.port,
            security: bounces.security,
            username: bounces.username.clone(),
            password,
            folder: bounces.folder.clone(),
            tls,
            timeout: step_timeout,
        })
    }

    /// `host:port`.
    pub fn server(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// The folder read.
    pub fn folder(&self) -> &str {
        &self.folder
    }

    /// Where a fetched message can be found again: `imap://user@host:port/INBOX;UID=7`.
    pub fn label(&self, uid: u32) -> String {
        format!(
            "imap://{}@{}/{};UID={uid}",
            self.username.replace('%', "%25").replace('@', "%40"),
            self.server(),
            self.folder
        )
    }
}

/// The connection under the IMAP client: plain TCP (loopback) or TLS.
#[derive(Debug)]
pub enum Stream {
    /// Plain text (`security = "none"`, loopback only).
    Plain(TcpStream),
    /// TLS, implicit or after STARTTLS.
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// One message of the folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    /// Its UID in the folder.
    pub uid: u32,
    /// The message as stored.
    pub raw: Vec<u8>,
}

/// A logged-in session with the folder opened.
pub struct Mailbox {
    session: Session<Stream>,
    settings: Settings,
    writable: bool,
}

/// A failure talking to the server: fatal (exit 1), with the password scrubbed.
fn fatal(settings: &Settings, what: &str, detail: impl fmt::Display) -> Fail {
    let detail = scrub(&detail.to_string(), settings.password.expose_secret());
    Fail::Fatal(anyhow!("IMAP {}: {what}: {detail}", settings.server()))
}

/// The text with every occurrence of the secret replaced (a server might echo it).
fn scrub(text: &str, secret: &str) -> String {
    if secret.is_empty() {
        text.to_string()
    } else {
        text.replace(secret, "***")
    }
}

/// An `async_imap` error as one readable line: for NO and BAD the server's own words.
fn describe(e: &async_imap::error::Error) -> String {
    use async_imap::error::Error;
    match e {
        Error::No(text) | Error::Bad(text) => {
            let kind = if matches!(e, Error::No(_)) {
                "NO"
            } else {
                "BAD"
            };
            // The crate formats it as `code: Some(..), info: Some("...")`.
            let info = text
                .split_once("info: Some(\"")
                .and_then(|(_, rest)| rest.rsplit_once("\")"))
                .map(|(info, _)| info.replace("\\\"", "\""));
            let code = text
                .split_once("code: Some(")
                .and_then(|(_, rest)| rest.split_once("),"))
                .map(|(code, _)| code.to_string());
            match (code, info) {
                (Some(code), Some(info)) => format!("{kind} [{code}] {info}"),
                (None, Some(info)) => format!("{kind} {info}"),
                _ => format!("{kind} {text}"),
            }
        }
        other => other.to_string(),
    }
}

/// Runs one network step under the timeout.
async fn step<T, E: fmt::Display>(
    settings: &Settings,
    what: &str,
    fut: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, Fail> {
    match timeout(settings.timeout, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(fatal(settings, what, e)),
        Err(_) => Err(fatal(
            settings,
            what,
            format!("no answer within {} s", settings.timeout.as_secs()),
        )),
    }
}

/// Same, for `async_imap` errors (described readably).
async fn imap_step<T>(
    settings: &Settings,
    what: &str,
    fut: impl std::future::Future<Output = async_imap::error::Result<T>>,
) -> Result<T, Fail> {
    step(settings, what, async {
        fut.await.map_err(|e| describe(&e))
    })
    .await
}

/// Reads the server's greeting: `* OK` or `* PREAUTH` (refused on `* BYE`).
async fn greeting(settings: &Settings, client: &mut Client<Stream>) -> Result<(), Fail> {
    let response = step(settings, "reading the greeting", client.read_response()).await?;
    let Some(response) = response else {
        return Err(fatal(
            settings,
            "reading the greeting",
            "the server closed the connection",
        ));
    };
    match response.parsed() {
        Response::Data {
            status: Status::Ok | Status::PreAuth,
            ..
        } => Ok(()),
        Response::Data {
            status,
            information,
            ..
        } => Err(fatal(
            settings,
            "the server refused the connection",
            format!("{status:?} {}", information.as_deref().unwrap_or("")),
        )),
        _ => Err(fatal(
            settings,
            "reading the greeting",
            "the server did not greet as an IMAP server",
        )),
    }
}

async fn tls_handshake(settings: &Settings, tcp: TcpStream) -> Result<Stream, Fail> {
    let Some(config) = settings.tls.clone() else {
        return Err(fatal(settings, "TLS", "no TLS configuration"));
    };
    let name = ServerName::try_from(settings.host.clone())
        .map_err(|e| fatal(settings, "TLS", format!("{:?}: {e}", settings.host)))?;
    let tls = step(
        settings,
        "TLS handshake",
        TlsConnector::from(config).connect(name, tcp),
    )
    .await?;
    Ok(Stream::Tls(Box::new(tls)))
}

impl Mailbox {
    /// Connects, secures the connection, logs in and opens the folder: read-only
    /// (EXAMINE) unless `writable` (SELECT, for moving messages).
    pub async fn open(settings: Settings, writable: bool) -> Result<Mailbox, Fail> {
        let s = &settings;
        let tcp = step(
            s,
            "cannot connect",
            TcpStream::connect((s.host.as_str(), s.port)),
        )
        .await?;
        let client = match s.security {
            Security::None => {
                let mut client = Client::new(Stream::Plain(tcp));
                greeting(s, &mut client).await?;
                client
            }
            Security::Tls => {
                let mut client = Client::new(tls_handshake(s, tcp).await?);
                greeting(s, &mut client).await?;
                client
            }
            Security::StartTls => {
                let mut client = Client::new(Stream::Plain(tcp));
                greeting(s, &mut client).await?;
                imap_step(
                    s,
                    "STARTTLS refused",
                    client.run_command_and_check_ok("STARTTLS", None),
                )
                .await?;
                // Anything the server sent before the handshake is dropped with the
                // plain-text client (no command injection across STARTTLS).
                let Stream::Plain(tcp) = client.into_inner() else {
                    return Err(fatal(s, "STARTTLS", "the connection is already TLS"));
                };
                Client::new(tls_handshake(s, tcp).await?)
            }
        };
        let login = timeout(
            s.timeout,
            client.login(&s.username, s.password.expose_secret()),
        )
        .await;
        let mut session = match login {
            Ok(Ok(session)) => session,
            Ok(Err((e, _client))) => {
                return Err(fatal(
                    s,
                    &format!("login as {} refused", s.username),
                    describe(&e),
                ));
            }
            Err(_) => {
                return Err(fatal(
                    s,
                    &format!("login as {}", s.username),
                    format!("no answer within {} s", s.timeout.as_secs()),
                ));
            }
        };
        let folder = mailbox_name(&s.folder).map_err(Fail::Input)?;
        let what = format!("cannot open folder {:?}", s.folder);
        let command = if writable { "SELECT" } else { "EXAMINE" };
        let id = step(s, &what, session.run_command(format!("{command} {folder}"))).await?;
        wait_done(s, &mut session, &id.0, &what).await?;
        Ok(Mailbox {
            session,
            settings,
            writable,
        })
    }

    /// The settings it was opened with.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Every message of the folder, in UID order, flags untouched, handed to `each` with
    /// its label batch by batch as it arrives (`FETCH_BATCH` at a time), so that memory
    /// holds one batch, not the folder. Returns how many there were.
    pub async fn fetch_each(
        &mut self,
        mut each: impl FnMut(String, Fetched),
    ) -> Result<usize, Fail> {
        let s = &self.settings;
        let mut uids: Vec<u32> = imap_step(
            s,
            "cannot list the messages",
            self.session.uid_search("ALL"),
        )
        .await?
        .into_iter()
        .collect();
        uids.sort_unstable();
        let mut count = 0;
        for chunk in uids.chunks(FETCH_BATCH) {
            let mut out = Vec::with_capacity(chunk.len());
            let set = uid_set(chunk);
            let what = "cannot fetch the messages";
            let id = step(
                s,
                what,
                self.session
                    .run_command(format!("UID FETCH {set} (UID BODY.PEEK[])")),
            )
            .await?;
            loop {
                let response = step(s, what, self.session.read_response()).await?;
                let Some(response) = response else {
                    return Err(fatal(s, what, "the server closed the connection"));
                };
                match response.parsed() {
                    Response::Fetch(_, attributes) => {
                        let mut uid = None;
                        let mut body = None;
                        for a in attributes {
                            match a {
                                AttributeValue::Uid(u) => uid = Some(*u),
                                AttributeValue::BodySection {
                                    section: None,
                                    data: Some(data),
                                    ..
                                }
                                | AttributeValue::Rfc822(Some(data)) => {
                                    body = Some(data.to_vec());
                                }
                                _ => {}
                            }
                        }
                        // Flag updates the server sends on its own carry no body.
                        if let (Some(uid), Some(raw)) = (uid, body)
                            && chunk.binary_search(&uid).is_ok()
                        {
                            out.push(Fetched { uid, raw });
                        }
                    }
                    Response::Done {
                        tag,
                        status,
                        information,
                        ..
                    } if *tag == id => {
                        if *status != Status::Ok {
                            return Err(fatal(
                                s,
                                what,
                                format!("{status:?} {}", information.as_deref().unwrap_or("")),
                            ));
                        }
                        break;
                    }
                    _ => {}
                }
            }
            out.sort_by_key(|f| f.uid);
            out.dedup_by_key(|f| f.uid);
            count += out.len();
            for f in out {
                each(self.settings.label(f.uid), f);
            }
        }
        Ok(count)
    }

    /// Moves the messages with these UIDs into `folder` (created when missing): MOVE where
    /// the server has it, else COPY, flag `\Deleted` and `UID EXPUNGE` of exactly these.
    pub async fn move_to(&mut self, uids: &[u32], folder: &str) -> Result<(), Fail> {
        if uids.is_empty() {
            return Ok(());
        }
        if !self.writable {
            return Err(Fail::Fatal(anyhow!(
                "the IMAP folder was opened read-only: nothing moved"
            )));
        }
        let s = &self.settings;
        let target = mailbox_name(folder).map_err(Fail::Input)?;
        let caps = imap_step(
            s,
            "cannot read the capabilities",
            self.session.capabilities(),
        )
        .await?;
        let has_move = caps.has_str("MOVE");
        if !has_move && !caps.has_str("UIDPLUS") {
            return Err(Fail::Fatal(anyhow!(
                "IMAP {}: the server has neither MOVE nor UIDPLUS, so the reports cannot be moved without touching other messages; nothing moved",
                s.server()
            )));
        }
        // A folder that exists already makes CREATE fail harmlessly; a real problem shows
        // in the move itself.
        let _ = timeout(
            s.timeout,
            self.session
                .run_command_and_check_ok(format!("CREATE {target}")),
        )
        .await;
        let mut sorted = uids.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        let what = format!("cannot move the reports to {folder:?}");
        for chunk in sorted.chunks(MOVE_BATCH) {
            let set = uid_set(chunk);
            if has_move {
                imap_step(
                    s,
                    &what,
                    self.session
                        .run_command_and_check_ok(format!("UID MOVE {set} {target}")),
                )
                .await?;
            } else {
                for command in [
                    format!("UID COPY {set} {target}"),
                    format!("UID STORE {set} +FLAGS.SILENT (\\Deleted)"),
                    format!("UID EXPUNGE {set}"),
                ] {
                    imap_step(s, &what, self.session.run_command_and_check_ok(command)).await?;
                }
            }
        }
        Ok(())
    }

    /// Logs out (best effort: the work is done by then).
    pub async fn logout(mut self) {
        let _ = timeout(self.settings.timeout, self.session.logout()).await;
    }
}

/// Reads responses until the tagged one for `tag`; an error unless it is OK.
async fn wait_done(
    s: &Settings,
    session: &mut Session<Stream>,
    tag: &str,
    what: &str,
) -> Result<(), Fail> {
    loop {
        let response = step(s, what, session.read_response()).await?;
        let Some(response) = response else {
            return Err(fatal(s, what, "the server closed the connection"));
        };
        if let Response::Done {
            tag: done,
            status,
            information,
            ..
        } = response.parsed()
            && done.0 == tag
        {
            return match status {
                Status::Ok => Ok(()),
                other => Err(fatal(
                    s,
                    what,
                    format!("{other:?} {}", information.as_deref().unwrap_or("")),
                )),
            };
        }
    }
}

/// `1,2,5:9` from sorted UIDs.
fn uid_set(uids: &[u32]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < uids.len() {
        let start = uids[i];
        let mut end = start;
        while i + 1 < uids.len() && uids[i + 1] == end.saturating_add(1) {
            i += 1;
            end = uids[i];
        }
        if !out.is_empty() {
            out.push(',');
        }
        if start == end {
            out.push_str(&start.to_string());
        } else {
            out.push_str(&format!("{start}:{end}"));
        }
        i += 1;
    }
    out
}

/// A folder name as an IMAP quoted string, non-ASCII in modified UTF-7 (RFC 3501 5.1.3).
fn mailbox_name(name: &str) -> anyhow::Result<String> {
    if name.is_empty() {
        return Err(anyhow!("an IMAP folder name cannot be empty"));
    }
    if name.chars().any(|c| c.is_control()) {
        return Err(anyhow!(
            "IMAP folder name {name:?} holds a control character"
        ));
    }
    let encoded = utf7_imap(name);
    let mut quoted = String::with_capacity(encoded.len() + 2);
    quoted.push('"');
    for c in encoded.chars() {
        if c == '"' || c == '\\' {
            quoted.push('\\');
        }
        quoted.push(c);
    }
    quoted.push('"');
    Ok(quoted)
}

/// Modified UTF-7 of IMAP: printable ASCII as is (`&` as `&-`), everything else as
/// `&` + base64 (with `,` for `/`, no padding) of UTF-16BE + `-`.
fn utf7_imap(name: &str) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";
    fn flush(out: &mut String, pending: &mut Vec<u8>) {
        if pending.is_empty() {
            return;
        }
        out.push('&');
        for chunk in pending.chunks(3) {
            let b = [
                chunk[0],
                chunk.get(1).copied().unwrap_or(0),
                chunk.get(2).copied().unwrap_or(0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            let chars = chunk.len() + 1;
            for i in 0..chars {
                let index = ((n >> (18 - 6 * i)) & 63) as usize;
                out.push(char::from(ALPHABET[index]));
            }
        }
        out.push('-');
        pending.clear();
    }
    let mut out = String::with_capacity(name.len());
    let mut pending: Vec<u8> = Vec::new();
    for c in name.chars() {
        if (' '..='~').contains(&c) {
            flush(&mut out, &mut pending);
            if c == '&' {
                out.push_str("&-");
            } else {
                out.push(c);
            }
        } else {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                pending.extend_from_slice(&unit.to_be_bytes());
            }
        }
    }
    flush(&mut out, &mut pending);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uid_sets_are_ranges() {
        assert_eq!(uid_set(&[1]), "1");
        assert_eq!(uid_set(&[1, 2, 3, 5, 7, 8]), "1:3,5,7:8");
        assert_eq!(uid_set(&[4, u32::MAX]), format!("4,{}", u32::MAX));
    }

    #[test]
    fn folder_names_in_modified_utf7() {
        // RFC 3501's example and Swedish folder names.
        assert_eq!(utf7_imap("INBOX"), "INBOX");
        assert_eq!(
            utf7_imap("~peter/mail/台北/日本語"),
            "~peter/mail/&U,BTFw-/&ZeVnLIqe-"
        );
        assert_eq!(utf7_imap("Återkomna"), "&AMU-terkomna");
        assert_eq!(utf7_imap("A&B"), "A&-B");
        assert_eq!(utf7_imap("Skräp"), "Skr&AOQ-p");
        assert_eq!(mailbox_name("a\"b\\c").expect("ok"), "\"a\\\"b\\\\c\"");
        assert!(mailbox_name("x\r\nA001 DELETE INBOX").is_err());
        assert!(mailbox_name("").is_err());
    }

    #[test]
    fn errors_are_readable_and_scrubbed() {
        let e = async_imap::error::Error::No(
            "code: Some(AuthenticationFailed), info: Some(\"Authentication failed.\")".into(),
        );
        assert_eq!(
            describe(&e),
            "NO [AuthenticationFailed] Authentication failed."
        );
        assert_eq!(scrub("bad pass hemligt!", "hemligt"), "bad pass ***!");
        assert_eq!(scrub("x", ""), "x");
    }
}
