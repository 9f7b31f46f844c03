//! Who answered: the relay's greeting (220 line) and what its EHLO offers. `check` logs in
//! to whatever listens on host and port; showing the greeting and EHLO name lets the operator
//! see that it is the company's relay and not a local sink or another server. lettre reads
//! the greeting and drops it, so the first bytes of the connection are recorded on the way in.

use std::sync::{Arc, Mutex};

use lettre::transport::smtp::client::AsyncTokioStream;

use super::reply::clean;
use crate::config::{AuthMethod, Security};

/// Longest greeting text shown: one short line.
const SHOWN: usize = 72;
/// Bytes recorded at most: a greeting longer than this is cut (a relay controls it).
const RECORDED: usize = 2048;

/// A stream that records what it reads until the greeting is complete.
#[derive(Debug)]
pub(super) struct Recorded {
    inner: Box<dyn AsyncTokioStream>,
    seen: Arc<Mutex<Vec<u8>>>,
    /// The greeting is whole (or the cap reached): later reads, every reply of the
    /// connection's life, pass through untouched.
    done: bool,
}

impl Recorded {
    /// Wraps `inner`; the greeting can be read from the returned handle once lettre has
    /// read it.
    pub(super) fn new(inner: Box<dyn AsyncTokioStream>) -> (Recorded, Arc<Mutex<Vec<u8>>>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        (
            Recorded {
                inner,
                seen: seen.clone(),
                done: false,
            },
            seen,
        )
    }
}

/// Whether `bytes` hold a whole reply: a line whose fourth byte is a space (or which is
/// only the code), ended by LF.
fn complete(bytes: &[u8]) -> bool {
    bytes
        .split_inclusive(|&b| b == b'\n')
        .any(|line| line.ends_with(b"\n") && (line.len() < 5 || line[3] != b'-'))
}

impl tokio::io::AsyncRead for Recorded {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = std::pin::Pin::new(&mut this.inner).poll_read(cx, buf);
        if !this.done {
            match this.seen.lock() {
                Ok(mut seen) => {
                    let new = &buf.filled()[before..];
                    let room = RECORDED - seen.len();
                    seen.extend_from_slice(&new[..new.len().min(room)]);
                    this.done = seen.len() >= RECORDED || complete(&seen);
                }
                Err(_) => this.done = true,
            }
        }
        polled
    }
}

impl tokio::io::AsyncWrite for Recorded {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }
    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }
    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

impl AsyncTokioStream for Recorded {
    fn peer_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.inner.peer_addr()
    }
}

/// The greeting's first line without its code, as one short printable line.
pub(super) fn shown(recorded: &[u8]) -> String {
    let text = String::from_utf8_lossy(recorded);
    let first = text.lines().next().unwrap_or("");
    short(first.get(4..).unwrap_or(""))
}

/// Text a relay sent, as one short printable line.
pub(super) fn short(text: &str) -> String {
    let words = clean(text);
    if words.chars().count() > SHOWN {
        let mut cut: String = words.chars().take(SHOWN).collect();
        cut.push('…');
        cut
    } else {
        words
    }
}

/// The SASL mechanisms an EHLO reply's `AUTH` lines offer (upper case, as offered), or
/// `None` when it has no AUTH line. `lines` are the reply's lines after the first.
pub(super) fn offered<'a>(lines: impl IntoIterator<Item = &'a str>) -> Option<Vec<String>> {
    let mut found: Option<Vec<String>> = None;
    for line in lines {
        let mut words = line.split_whitespace();
        // `AUTH=LOGIN PLAIN` is how some old relays wrote it.
        let head = words.next().unwrap_or("");
        let rest = if head.eq_ignore_ascii_case("AUTH") {
            None
        } else if head.len() > 5 && head[..5].eq_ignore_ascii_case("AUTH=") {
            Some(&head[5..])
        } else {
            continue;
        };
        let list = found.get_or_insert_with(Vec::new);
        for m in rest.into_iter().chain(words) {
            let m = m.to_ascii_uppercase();
            if !list.contains(&m) {
                list.push(m);
            }
        }
    }
    found
}

/// The SASL name of a configured login method.
pub(super) fn sasl_name(auth: AuthMethod) -> &'static str {
    match auth {
        AuthMethod::Login => "LOGIN",
        AuthMethod::Xoauth2 => "XOAUTH2",
        _ => "PLAIN",
    }
}

/// Why a login cannot even be tried, or `None` when the relay offers the configured
/// mechanism: what is wrong and what to do, in one line.
pub(super) fn login_mismatch(
    auth: AuthMethod,
    security: Security,
    offered: Option<&[String]>,
) -> Option<String> {
    let wanted = sasl_name(auth);
    let config = format!("auth = \"{}\"", wanted.to_ascii_lowercase());
    match offered {
        None | Some([]) => {
            let starttls = if security == Security::None {
                "it may offer them only after STARTTLS (set security = \"starttls\"), or "
            } else {
                ""
            };
            Some(format!(
                "it offers no login methods (its EHLO lists no AUTH), so {config} cannot log in: {starttls}it takes mail without a login (set auth = \"none\")"
            ))
        }
        Some(list) if list.iter().any(|m| m == wanted) => None,
        Some(list) => {
            let usable: Vec<String> = list
                .iter()
                .filter(|m| ["PLAIN", "LOGIN", "XOAUTH2"].contains(&m.as_str()))
                .map(|m| format!("auth = \"{}\"", m.to_ascii_lowercase()))
                .collect();
            let advice = if usable.is_empty() {
                "none of which utskick speaks (it speaks plain, login and xoauth2): ask the relay's admin for one of those".to_string()
            } else {
                format!("set {}", usable.join(" or "))
            };
            Some(format!(
                "it does not offer AUTH {wanted} ({config}); it offers {}: {advice}",
                list.join(" ")
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_greeting_is_its_first_line_without_the_code() {
        assert_eq!(
            shown(b"220 mail.example.se ESMTP Postfix (Debian/GNU)\r\n"),
            "mail.example.se ESMTP Postfix (Debian/GNU)"
        );
        assert_eq!(
            shown(b"220-mx.example.se ESMTP\r\n220-second line\r\n220 last\r\n"),
            "mx.example.se ESMTP"
        );
        assert_eq!(shown(b"220\r\n"), "");
        assert_eq!(shown(b""), "");
    }

    #[test]
    fn a_long_or_hostile_greeting_is_one_short_line() {
        let long = format!("220 {}\r\n", "x".repeat(300));
        let s = shown(long.as_bytes());
        assert_eq!(s.chars().count(), SHOWN + 1);
        assert!(s.ends_with('…'));
        let s = shown(b"220 evil\x1b[31m red\x07\r\n");
        assert!(!s.chars().any(char::is_control), "{s:?}");
    }

    #[test]
    fn a_greeting_is_complete_at_its_last_line() {
        assert!(!complete(b"220-first\r\n"));
        assert!(!complete(b"220 no end yet"));
        assert!(complete(b"220-first\r\n220 last\r\n"));
        assert!(complete(b"220\r\n"));
    }

    #[test]
    fn auth_lines_list_the_mechanisms() {
        assert_eq!(offered(["PIPELINING", "SIZE 10240000"]), None);
        assert_eq!(
            offered(["PIPELINING", "AUTH PLAIN LOGIN", "AUTH=PLAIN LOGIN"]),
            Some(vec!["PLAIN".to_string(), "LOGIN".to_string()])
        );
        assert_eq!(
            offered(["auth cram-md5"]),
            Some(vec!["CRAM-MD5".to_string()])
        );
        assert_eq!(offered(["AUTH"]), Some(vec![]));
    }

    #[test]
    fn no_auth_at_all_says_starttls_or_no_login() {
        let m = login_mismatch(AuthMethod::Plain, Security::None, None).unwrap();
        assert!(m.contains("no login methods"), "{m}");
        assert!(m.contains("security = \"starttls\""), "{m}");
        assert!(m.contains("auth = \"none\""), "{m}");
        // Already encrypted: STARTTLS is no advice.
        let m = login_mismatch(AuthMethod::Login, Security::StartTls, Some(&[])).unwrap();
        assert!(!m.contains("STARTTLS"), "{m}");
        assert!(m.contains("auth = \"login\""), "{m}");
    }

    #[test]
    fn another_mechanism_names_what_is_offered() {
        let offer = vec!["LOGIN".to_string(), "CRAM-MD5".to_string()];
        let m = login_mismatch(AuthMethod::Plain, Security::StartTls, Some(&offer)).unwrap();
        assert!(m.contains("does not offer AUTH PLAIN"), "{m}");
        assert!(m.contains("LOGIN CRAM-MD5"), "{m}");
        assert!(m.ends_with("set auth = \"login\""), "{m}");
        let offer = vec!["CRAM-MD5".to_string(), "GSSAPI".to_string()];
        let m = login_mismatch(AuthMethod::Xoauth2, Security::Tls, Some(&offer)).unwrap();
        assert!(m.contains("none of which utskick speaks"), "{m}");
        let offer = vec!["PLAIN".to_string()];
        assert_eq!(
            login_mismatch(AuthMethod::Plain, Security::None, Some(&offer)),
            None
        );
    }
}
