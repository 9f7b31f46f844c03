//! Proves the test support works: raw SMTP dialogues against the scriptable server, TLS
//! with the test PKI, and the real Postfix instance / smtp-sink (skipped without them).

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use tokio::io::{
    AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader as AsyncBufReader,
};
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::ServerName;

use crate::support::postfix::{Postfix, SmtpSink};
use crate::support::smtp_server::{self, Action, Event, ServerOptions, SmtpServer, base64_encode};
use crate::support::tls::{self, ServerCert};

/// A blocking SMTP client over a raw TcpStream.
struct Client {
    reader: BufReader<TcpStream>,
}

impl Client {
    fn connect(port: u16) -> Client {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to the test server");
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("set read timeout");
        Client {
            reader: BufReader::new(stream),
        }
    }

    /// Reads one (possibly multi-line) reply; lines joined with `\n`, CRLF removed.
    fn reply(&mut self) -> std::io::Result<String> {
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            if self.reader.read_line(&mut line)? == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("connection closed after {lines:?}"),
                ));
            }
            let line = line.trim_end_matches(['\r', '\n']).to_string();
            let last = line.as_bytes().get(3) != Some(&b'-');
            lines.push(line);
            if last {
                return Ok(lines.join("\n"));
            }
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.reader
            .get_mut()
            .write_all(bytes)
            .expect("write to the test server");
    }

    fn cmd(&mut self, line: &str) -> String {
        self.send(format!("{line}\r\n").as_bytes());
        self.reply().expect("a reply")
    }
}

fn expect_code(reply: &str, code: &str) {
    assert!(reply.starts_with(code), "expected {code}, got {reply:?}");
}

#[test]
fn selftest_normal_delivery_is_recorded() {
    let server = SmtpServer::plain();
    let mut c = Client::connect(server.port());
    expect_code(&c.reply().expect("greeting"), "220");
    let ehlo = c.cmd("EHLO client.test");
    assert!(
        ehlo.starts_with("250-") && ehlo.contains("\n250 "),
        "{ehlo}"
    );
    assert!(
        !ehlo.contains("STARTTLS") && !ehlo.contains("SMTPUTF8") && !ehlo.contains("PIPELINING")
    );
    expect_code(&c.cmd("NOOP"), "250");
    expect_code(&c.cmd("MAIL FROM:<dataskydd@example.se>"), "250");
    expect_code(&c.cmd("RCPT TO:<anna@example.se>"), "250");
    expect_code(&c.cmd("RSET"), "250");
    expect_code(&c.cmd("RCPT TO:<anna@example.se>"), "503");
    expect_code(&c.cmd("MAIL FROM:<dataskydd@example.se>"), "250");
    expect_code(&c.cmd("MAIL FROM:<again@example.se>"), "503");
    expect_code(&c.cmd("RCPT TO:<anna@example.se>"), "250");
    expect_code(&c.cmd("RCPT TO:<bo@example.se>"), "250");
    expect_code(&c.cmd("DATA"), "354");
    c.send(b"Subject: hej\r\n\r\n..en rad med punkt\r\nslut\r\n.\r\n");
    let queued = c.reply().expect("reply after data");
    expect_code(&queued, "250 2.0.0 Ok: queued as UT00001");
    expect_code(&c.cmd("QUIT"), "221");

    let received = server.received();
    assert_eq!(received.len(), 1);
    let r = &received[0];
    assert_eq!(r.mail_from, "dataskydd@example.se");
    assert_eq!(r.rcpt_to, ["anna@example.se", "bo@example.se"]);
    assert_eq!(r.data, b"Subject: hej\r\n\r\n.en rad med punkt\r\nslut\r\n");
    assert_eq!(r.header("subject").as_deref(), Some("hej"));
    assert_eq!((r.connection, r.tls, r.auth_user.clone()), (1, false, None));
    assert_eq!(server.connections(), 1);
    let transcript = server.transcript();
    assert_eq!(
        transcript.first().map(String::as_str),
        Some("EHLO client.test")
    );
    assert_eq!(transcript.last().map(String::as_str), Some("QUIT"));
    assert_eq!(server.seen("RCPT:anna@example.se"), 3);
}

#[test]
fn selftest_scripted_550_at_rcpt_and_451_once() {
    let server = SmtpServer::start(ServerOptions::default().hook(smtp_server::first_of(vec![
        smtp_server::fail_rcpt(
            "bad@example.se",
            "550 5.1.1 <bad@example.se>: Recipient address rejected",
        ),
        smtp_server::fail_rcpt_times("bo@example.se", 1, "451 4.3.0 try again later"),
    ])));
    let mut c = Client::connect(server.port());
    c.reply().expect("greeting");
    c.cmd("EHLO client.test");
    expect_code(&c.cmd("MAIL FROM:<s@example.se>"), "250");
    expect_code(&c.cmd("RCPT TO:<anna@example.se>"), "250");
    let rejected = c.cmd("RCPT TO:<BAD@example.se>");
    assert_eq!(
        rejected,
        "550 5.1.1 <bad@example.se>: Recipient address rejected"
    );
    expect_code(&c.cmd("RCPT TO:<bo@example.se>"), "451 4.3.0");
    expect_code(&c.cmd("DATA"), "354");
    c.send(b"x\r\n.\r\n");
    expect_code(&c.reply().expect("queued"), "250");
    // A second connection: bo is accepted now.
    let mut c2 = Client::connect(server.port());
    c2.reply().expect("greeting");
    c2.cmd("EHLO client.test");
    c2.cmd("MAIL FROM:<s@example.se>");
    expect_code(&c2.cmd("RCPT TO:<bo@example.se>"), "250");
    expect_code(&c2.cmd("DATA"), "354");
    c2.send(b"y\r\n.\r\n");
    expect_code(&c2.reply().expect("queued"), "250");

    let received = server.received();
    assert_eq!(received.len(), 2);
    assert_eq!(received[0].rcpt_to, ["anna@example.se"]);
    assert_eq!(
        (received[1].rcpt_to.clone(), received[1].connection),
        (vec!["bo@example.se".to_string()], 2)
    );
    assert_eq!(server.connections(), 2);
}

#[test]
fn selftest_drop_after_data_and_421_closes() {
    let server = SmtpServer::start(ServerOptions::default().hook(smtp_server::first_of(vec![
        smtp_server::drop_after_data("lost@example.se"),
        smtp_server::per_connection_limit(1, "421 4.7.0 too many messages"),
    ])));
    let mut c = Client::connect(server.port());
    c.reply().expect("greeting");
    c.cmd("EHLO client.test");
    c.cmd("MAIL FROM:<s@example.se>");
    c.cmd("RCPT TO:<lost@example.se>");
    expect_code(&c.cmd("DATA"), "354");
    c.send(b"Subject: x\r\n\r\nbody\r\n.\r\n");
    let err = c
        .reply()
        .expect_err("the server drops the connection after DATA");
    assert_eq!(err.kind(), std::io::ErrorKind::UnexpectedEof, "{err}");
    assert!(server.received().is_empty());

    // 421 after one message on a connection, then the server closes it.
    let mut c = Client::connect(server.port());
    c.reply().expect("greeting");
    c.cmd("EHLO client.test");
    c.cmd("MAIL FROM:<s@example.se>");
    c.cmd("RCPT TO:<ok@example.se>");
    c.cmd("DATA");
    c.send(b"body\r\n.\r\n");
    expect_code(&c.reply().expect("queued"), "250");
    expect_code(&c.cmd("MAIL FROM:<s@example.se>"), "421 4.7.0");
    assert!(c.reply().is_err(), "closed after 421");
    assert_eq!(server.received().len(), 1);
}

#[test]
fn selftest_delay_hang_raw_bytes_and_trickle() {
    let long_line = format!("250 {}\r\n", "x".repeat(100_000));
    let long = long_line.clone();
    let server = SmtpServer::scripted(move |event, ctx| match event {
        Event::Noop if ctx.times_seen() == 1 => {
            Action::delay(Duration::from_millis(300), Action::reply("250 late"))
        }
        Event::Noop if ctx.times_seen() == 2 => {
            Action::RawBytes(b"garbage without a code\r\n".to_vec())
        }
        Event::Noop if ctx.times_seen() == 3 => Action::RawBytes(long.clone().into_bytes()),
        Event::Noop if ctx.times_seen() == 4 => Action::Trickle {
            bytes: b"250-first\r\n250 second\r\n".to_vec(),
            chunk: 1,
            pause: Duration::from_millis(2),
        },
        Event::Rset => Action::Hang,
        _ => Action::Default,
    });
    let mut c = Client::connect(server.port());
    c.reply().expect("greeting");
    let t = Instant::now();
    assert_eq!(c.cmd("NOOP"), "250 late");
    assert!(t.elapsed() >= Duration::from_millis(300));
    assert_eq!(c.cmd("NOOP"), "garbage without a code");
    assert_eq!(c.cmd("NOOP").len(), long_line.len() - 2);
    assert_eq!(c.cmd("NOOP"), "250-first\n250 second");
    c.reader
        .get_ref()
        .set_read_timeout(Some(Duration::from_millis(300)))
        .expect("shorter timeout");
    c.send(b"RSET\r\n");
    let err = c.reply().expect_err("the server hangs");
    assert!(
        matches!(
            err.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
        "{err}"
    );
    // Dropping the server closes the hanging connection.
    drop(server);
    c.reader
        .get_ref()
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("longer timeout");
    let err = c.reply().expect_err("closed by the server's drop");
    assert_eq!(err.kind(), std::io::ErrorKind::UnexpectedEof, "{err}");
}

// ----- TLS -------------------------------------------------------------------------

async fn read_reply<R: AsyncRead + Unpin>(r: &mut AsyncBufReader<R>) -> String {
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        let n = tokio::time::timeout(Duration::from_secs(10), r.read_line(&mut line))
            .await
            .expect("reply within 10 s")
            .expect("read a reply");
        assert!(n > 0, "connection closed after {lines:?}");
        let line = line.trim_end_matches(['\r', '\n']).to_string();
        let last = line.as_bytes().get(3) != Some(&b'-');
        lines.push(line);
        if last {
            return lines.join("\n");
        }
    }
}

async fn command<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut AsyncBufReader<S>,
    line: &str,
) -> String {
    s.get_mut()
        .write_all(format!("{line}\r\n").as_bytes())
        .await
        .expect("write a command");
    read_reply(s).await
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime for the test client")
}

/// Plain connect, EHLO, STARTTLS, TLS handshake trusting the test CA; returns the TLS
/// stream (before the second EHLO) and the first EHLO reply.
async fn starttls(
    port: u16,
    host: &str,
) -> (
    AsyncBufReader<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>,
    String,
) {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let mut plain = AsyncBufReader::new(tcp);
    let greeting = read_reply(&mut plain).await;
    assert!(greeting.starts_with("220"), "{greeting}");
    let ehlo = command(&mut plain, "EHLO client.test").await;
    let go = command(&mut plain, "STARTTLS").await;
    assert!(go.starts_with("220"), "{go}");
    let connector = TlsConnector::from(tls::client_config());
    let name = ServerName::try_from(host.to_string()).expect("valid server name");
    let stream = connector
        .connect(name, plain.into_inner())
        .await
        .expect("TLS handshake with a certificate from the test CA");
    (AsyncBufReader::new(stream), ehlo)
}

#[test]
fn selftest_starttls_required_and_auth() {
    let server = SmtpServer::start(
        ServerOptions::default()
            .starttls_required(tls::server_config(ServerCert::Valid))
            .auth("utskick@example.se", "hemligt")
            .require_auth()
            .smtputf8()
            .eightbitmime(),
    );
    // Without TLS: STARTTLS offered, AUTH not, MAIL refused.
    let mut c = Client::connect(server.port());
    c.reply().expect("greeting");
    let ehlo = c.cmd("EHLO client.test");
    assert!(
        ehlo.contains("250-STARTTLS") && !ehlo.contains("AUTH"),
        "{ehlo}"
    );
    expect_code(&c.cmd("MAIL FROM:<s@example.se>"), "530 5.7.0");
    drop(c);

    runtime().block_on(async {
        let (mut s, _) = starttls(server.port(), "localhost").await;
        let ehlo = command(&mut s, "EHLO client.test").await;
        assert!(
            ehlo.contains("AUTH PLAIN LOGIN") && !ehlo.contains("STARTTLS"),
            "{ehlo}"
        );
        assert!(
            command(&mut s, "MAIL FROM:<s@example.se>")
                .await
                .starts_with("530 5.7.0")
        );
        let wrong = base64_encode(b"\0utskick@example.se\0fel");
        let reply = command(&mut s, &format!("AUTH PLAIN {wrong}")).await;
        assert!(reply.starts_with("535 5.7.8"), "{reply}");
        assert!(command(&mut s, "AUTH LOGIN").await.starts_with("334"));
        assert!(
            command(&mut s, &base64_encode(b"utskick@example.se"))
                .await
                .starts_with("334")
        );
        let ok = command(&mut s, &base64_encode(b"hemligt")).await;
        assert!(ok.starts_with("235"), "{ok}");
        let mail = command(&mut s, "MAIL FROM:<s@example.se> BODY=8BITMIME SMTPUTF8").await;
        assert!(mail.starts_with("250"), "{mail}");
        assert!(
            command(&mut s, "RCPT TO:<åsa@exempel.se>")
                .await
                .starts_with("250")
        );
        assert!(command(&mut s, "DATA").await.starts_with("354"));
        let reply = command(&mut s, "Subject: Räksmörgås\r\n\r\nHej Åsa\r\n.").await;
        assert!(reply.starts_with("250"), "{reply}");
        assert!(command(&mut s, "QUIT").await.starts_with("221"));
    });
    let received = server.received();
    assert_eq!(received.len(), 1);
    assert!(received[0].tls);
    assert_eq!(received[0].auth_user.as_deref(), Some("utskick@example.se"));
    assert_eq!(received[0].rcpt_to, ["åsa@exempel.se"]);
    assert_eq!(received[0].mail_params, ["BODY=8BITMIME", "SMTPUTF8"]);
    assert_eq!(received[0].text(), "Subject: Räksmörgås\r\n\r\nHej Åsa\r\n");
    let transcript = server.transcript().join("\n");
    assert!(transcript.contains("AUTH PLAIN <redacted>"), "{transcript}");
    assert!(
        !transcript.contains(&base64_encode(b"hemligt")),
        "{transcript}"
    );
    assert!(
        !transcript.contains(&base64_encode(b"utskick@example.se")),
        "{transcript}"
    );
    assert!(server.tls_failures().is_empty());
}

#[test]
fn selftest_tls_certificates_verify_as_intended() {
    let rt = runtime();
    let try_implicit = |cert: ServerCert, host: &str| {
        let server =
            SmtpServer::start(ServerOptions::default().implicit_tls(tls::server_config(cert)));
        let host = host.to_string();
        let result = rt.block_on(async {
            let tcp = tokio::net::TcpStream::connect(("127.0.0.1", server.port()))
                .await
                .expect("connect");
            let connector = TlsConnector::from(tls::client_config());
            let name = ServerName::try_from(host).expect("valid server name");
            match connector.connect(name, tcp).await {
                Ok(stream) => {
                    let mut s = AsyncBufReader::new(stream);
                    Ok(read_reply(&mut s).await)
                }
                Err(e) => Err(e.to_string()),
            }
        });
        (result, server)
    };
    let (ok, _server) = try_implicit(ServerCert::Valid, "localhost");
    assert!(ok.expect("valid cert for localhost").starts_with("220"));
    let (ok, _server) = try_implicit(ServerCert::Valid, "127.0.0.1");
    assert!(ok.expect("valid cert for 127.0.0.1").starts_with("220"));
    for (cert, why) in [
        (ServerCert::WrongHost, "not valid for name"),
        (ServerCert::SelfSigned, "unknownissuer"),
        (ServerCert::Expired, "expired"),
    ] {
        let (result, server) = try_implicit(cert, "localhost");
        let err = result.expect_err("the test client must reject this certificate");
        assert!(err.to_lowercase().contains(why), "{cert:?}: {err}");
        // The server saw the failed handshake (the client's alert) before its drop.
        let deadline = Instant::now() + Duration::from_secs(5);
        while server.tls_failures().is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(server.tls_failures().len(), 1, "{cert:?}");
    }
    // The CA PEM written to a file parses as one certificate.
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("ca.pem");
    tls::write_ca_pem(&path);
    let pem = std::fs::read(&path).expect("read ca.pem");
    let certs: Vec<_> = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<_, _>>()
        .expect("PEM parses");
    assert_eq!(certs.len(), 1);
}

#[test]
fn selftest_starttls_refused() {
    let server = SmtpServer::start(
        ServerOptions::default()
            .starttls(tls::server_config(ServerCert::Valid))
            .hook(smtp_server::when(
                |e, _| *e == Event::StartTls,
                Action::StartTlsRefuse,
            )),
    );
    let mut c = Client::connect(server.port());
    c.reply().expect("greeting");
    assert!(c.cmd("EHLO client.test").contains("STARTTLS"));
    expect_code(&c.cmd("STARTTLS"), "454 4.7.0");
    // Still usable in plaintext (STARTTLS is optional here).
    expect_code(&c.cmd("MAIL FROM:<s@example.se>"), "250");
}

// ----- real Postfix and smtp-sink ----------------------------------------------------

#[test]
fn selftest_postfix_auth_plain_after_starttls_delivers_to_maildir() {
    let Some(postfix) = Postfix::shared() else {
        return;
    };
    let sender = postfix.fresh_mailbox();
    let rcpt = postfix.fresh_mailbox();
    let unknown = postfix.unknown_address("selftest");
    // Plaintext: MAIL refused, STARTTLS offered, AUTH not offered before TLS.
    let mut c = Client::connect(postfix.port());
    c.reply().expect("greeting");
    let ehlo = c.cmd("EHLO client.test");
    assert!(
        ehlo.contains("STARTTLS") && !ehlo.contains("AUTH"),
        "{ehlo}"
    );
    expect_code(&c.cmd(&format!("MAIL FROM:<{sender}>")), "530 5.7.0");
    drop(c);

    runtime().block_on(async {
        let (mut s, _) = starttls(postfix.port(), postfix.host()).await;
        let ehlo = command(&mut s, "EHLO client.test").await;
        assert!(ehlo.contains("AUTH PLAIN LOGIN"), "{ehlo}");
        let wrong = base64_encode(b"\0alice\0wrong");
        let reply = command(&mut s, &format!("AUTH PLAIN {wrong}")).await;
        assert!(reply.starts_with("535 5.7.8"), "{reply}");
        let creds = base64_encode(format!("\0{}\0{}", postfix.user(), postfix.password()).as_bytes());
        let reply = command(&mut s, &format!("AUTH PLAIN {creds}")).await;
        assert!(reply.starts_with("235"), "{reply}");
        assert!(command(&mut s, &format!("MAIL FROM:<{sender}>")).await.starts_with("250"));
        assert!(command(&mut s, &format!("RCPT TO:<{rcpt}>")).await.starts_with("250"));
        assert!(command(&mut s, &format!("RCPT TO:<{unknown}>")).await.starts_with("250"));
        assert!(command(&mut s, "DATA").await.starts_with("354"));
        let body = format!(
            "From: <{sender}>\r\nTo: <{rcpt}>\r\nSubject: selftest\r\nMessage-ID: <selftest.1@example.test>\r\n\r\nHej!\r\n."
        );
        let reply = command(&mut s, &body).await;
        assert!(reply.starts_with("250 2.0.0 Ok: queued as"), "{reply}");
        assert!(command(&mut s, "QUIT").await.starts_with("221"));
    });

    let messages = postfix.wait_for_messages(&rcpt, 1, Duration::from_secs(20));
    let text = String::from_utf8_lossy(&messages[0]);
    assert!(
        text.contains("Subject: selftest") && text.contains("Hej!"),
        "{text}"
    );
    // The unknown recipient bounced with a real DSN to the sender's mailbox.
    let dsns = postfix.wait_for_messages(&sender, 1, Duration::from_secs(20));
    let dsn = String::from_utf8_lossy(&dsns[0]);
    assert!(dsn.contains("report-type=delivery-status"), "{dsn}");
    assert!(dsn.contains("Status: 5.1.1"), "{dsn}");
    assert!(
        dsn.contains(&format!("Final-Recipient: rfc822; {unknown}")),
        "{dsn}"
    );
    assert!(
        postfix.wait_queue_empty(Duration::from_secs(10)),
        "{}",
        postfix.log_tail(30)
    );
}

#[test]
fn selftest_smtp_sink_soft_rcpt_failure() {
    let Some(sink) = SmtpSink::start(&["-r", "RCPT"]) else {
        return;
    };
    let mut c = Client::connect(sink.port());
    expect_code(&c.reply().expect("greeting"), "220");
    c.cmd("EHLO client.test");
    expect_code(&c.cmd("MAIL FROM:<s@example.se>"), "250");
    expect_code(&c.cmd("RCPT TO:<anna@example.se>"), "450");
}
