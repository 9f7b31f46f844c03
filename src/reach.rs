//! Reaching a server over TCP (the SMTP relay, the IMAP mailbox of `bounces`), and what the
//! operator can do when it fails: a name that does not resolve, nothing listening, no
//! route. One place, so that both servers' errors say the same thing in the same words.

use tokio::net::TcpStream;

/// Resolves `host` and connects to the first address that answers. The error is one line
/// naming what failed and what to check; `section` is the config section holding host and
/// port (`[smtp]`, `[bounces]`), `what` the server (`relay`, `IMAP server`).
pub async fn tcp(host: &str, port: u16, section: &str, what: &str) -> Result<TcpStream, String> {
    let addrs = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| unresolved(host, section, &e))?;
    let mut last = None;
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(t) => return Ok(t),
            Err(e) => last = Some(e),
        }
    }
    Err(match last {
        Some(e) => not_connected(&e, section, what),
        None => {
            format!("the host name {host} resolves to no address: is {section} host spelled right?")
        }
    })
}

/// A host name that does not resolve, with what to check.
fn unresolved(host: &str, section: &str, e: &std::io::Error) -> String {
    format!(
        "the host name {host} does not resolve ({}): is {section} host spelled right, and does this machine's DNS (or VPN) reach the company's names?",
        one_line(&e.to_string())
    )
}

/// A TCP connection that failed, with what to check.
fn not_connected(e: &std::io::Error, section: &str, what: &str) -> String {
    use std::io::ErrorKind;
    let text = one_line(&e.to_string());
    match e.kind() {
        ErrorKind::ConnectionRefused => format!(
            "nothing listens there ({text}): is the {what} running, and are {section} host and port right?"
        ),
        ErrorKind::NetworkUnreachable | ErrorKind::HostUnreachable => format!(
            "{text}: is this machine on a network that reaches the {what} (VPN?), and is {section} host right?"
        ),
        _ => text,
    }
}

/// No TCP connection within the timeout.
pub fn no_answer_connecting(secs: u64) -> String {
    format!(
        "no answer within {secs} s while connecting: a firewall dropping the packets, or the wrong host or port?"
    )
}

fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .trim()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Error, ErrorKind};

    #[test]
    fn a_refused_connection_says_what_to_check() {
        let e = Error::from(ErrorKind::ConnectionRefused);
        let line = not_connected(&e, "[smtp]", "relay");
        assert!(line.starts_with("nothing listens there ("), "{line}");
        assert!(line.ends_with("is the relay running, and are [smtp] host and port right?"));
        let line = not_connected(&e, "[bounces]", "IMAP server");
        assert!(line.contains("IMAP server running") && line.contains("[bounces] host"));
    }

    #[test]
    fn no_route_points_to_the_network() {
        let e = Error::from(ErrorKind::NetworkUnreachable);
        assert!(not_connected(&e, "[smtp]", "relay").contains("VPN?"));
        // Anything else is left as the system said it.
        let e = Error::other("odd\nfailure");
        assert_eq!(not_connected(&e, "[smtp]", "relay"), "odd failure");
    }

    #[test]
    fn an_unresolved_name_is_named() {
        let e = Error::other("Name or service not known");
        let line = unresolved("smtp.exmaple.se", "[smtp]", &e);
        assert!(
            line.starts_with(
                "the host name smtp.exmaple.se does not resolve (Name or service not known)"
            ),
            "{line}"
        );
        assert!(line.contains("[smtp] host spelled right"), "{line}");
    }
}
