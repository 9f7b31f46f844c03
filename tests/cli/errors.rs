//! Errors an operator meets when the relay is not what the config expects: each says what
//! is wrong and what to do, in one line, against real servers on loopback (the in-process
//! server, Postfix, a socket that never greets, a closed port, a name that cannot resolve).
//! And `check` shows who answered: the greeting and EHLO name.

use crate::operator::{PASSWORD_VAR, assert_check_fail, assert_check_ok, closed_port, with_login};
use crate::support::postfix::Postfix;
use crate::support::smtp_server::{Mechanism, ServerOptions, SmtpServer};
use crate::support::testenv::{Run, TestEnv};

/// The one `error:` line of a run that stopped, which must also be its only error line.
#[track_caller]
fn the_error(run: &Run) -> String {
    let errors: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.starts_with("error:"))
        .collect();
    assert_eq!(errors.len(), 1, "one error line:\n{}", run.all());
    errors[0].to_string()
}

/// `check` stops at the relay (exit 1): its `relay FAIL` text.
#[track_caller]
fn relay_fails(env: &TestEnv) -> String {
    relay_fails_with(env, &[])
}

/// Same, with these environment variables.
#[track_caller]
fn relay_fails_with(env: &TestEnv, vars: &[(&str, &str)]) -> String {
    let run = env.run_env(&["check"], vars);
    run.expect_code(1);
    assert_check_fail(&run, "relay")
}

/// Every one of `wants` is in `text`.
#[track_caller]
fn contains_all(text: &str, wants: &[impl AsRef<str>]) {
    for want in wants {
        let want = want.as_ref();
        assert!(text.contains(want), "{want:?} missing in {text:?}");
    }
}

/// `send --yes` stops with exit 1 before anything goes out, with `want` in its error line.
#[track_caller]
fn send_stops_with(env: &TestEnv, vars: &[(&str, &str)], want: &[&str]) {
    let run = env.run_env(&["send", "--yes"], vars);
    run.expect_code(1);
    contains_all(&the_error(&run), want);
    assert!(env.events("sent").is_empty(), "{:?}", env.journal());
}

#[test]
fn a_login_against_a_relay_without_auth_says_it_offers_none() {
    let server = SmtpServer::plain();
    let env = with_login(&server);
    let vars = [(PASSWORD_VAR, "hemligt")];
    let run = env.run_env(&["check"], &vars);
    run.expect_code(1);
    let relay = assert_check_fail(&run, "relay");
    let addr = format!("127.0.0.1:{}", server.port());
    contains_all(
        &relay,
        &[
            addr.as_str(),
            "offers no login methods",
            "its EHLO lists no AUTH",
            "security = \"starttls\"",
            "auth = \"none\"",
        ],
    );
    assert!(!relay.contains("refused"), "nothing was refused: {relay}");
    assert!(!relay.contains("internal client error"), "{relay}");
    assert_eq!(server.seen("AUTH"), 0, "no AUTH may be tried");
    send_stops_with(&env, &vars, &["offers no login methods", &addr]);
    assert!(server.received().is_empty());
}

#[test]
fn a_login_method_the_relay_does_not_offer_names_those_it_offers() {
    let server = SmtpServer::start(
        ServerOptions::default()
            .auth("utskick@example.se", "hemligt")
            .mechanisms(&[Mechanism::Login]),
    );
    let env = with_login(&server);
    let vars = [(PASSWORD_VAR, "hemligt")];
    let relay = assert_check_fail(&env.run_env(&["check"], &vars), "relay");
    contains_all(
        &relay,
        &[
            "does not offer AUTH PLAIN",
            "it offers LOGIN",
            "set auth = \"login\"",
        ],
    );
    // Following the advice works.
    env.set("smtp", "auth", "\"login\"");
    let run = env.run_env(&["check"], &vars);
    run.expect_code(0);
    assert_check_ok(&run, "relay");

    // Only mechanisms utskick does not speak.
    let server = SmtpServer::start(ServerOptions::default().extension("AUTH CRAM-MD5 GSSAPI"));
    let env = with_login(&server);
    let relay = assert_check_fail(&env.run_env(&["check"], &vars), "relay");
    assert!(relay.contains("it offers CRAM-MD5 GSSAPI"), "{relay}");
    assert!(relay.contains("none of which utskick speaks"), "{relay}");
}

#[test]
fn a_login_offered_only_as_old_auth_equals_says_so() {
    let server = SmtpServer::start(ServerOptions::default().extension("AUTH=PLAIN LOGIN"));
    let env = with_login(&server);
    let relay = relay_fails_with(&env, &[(PASSWORD_VAR, "hemligt")]);
    assert!(
        relay.contains("it offers AUTH PLAIN only in the old form AUTH=PLAIN"),
        "{relay}"
    );
    assert!(!relay.contains("internal client error"), "{relay}");
}

#[test]
fn postfix_offers_no_login_before_starttls() {
    let Some(postfix) = Postfix::shared() else {
        return;
    };
    let env = TestEnv::example();
    env.postfix_relay(postfix, PASSWORD_VAR);
    env.set("smtp", "security", "\"none\"");
    env.unset("smtp", "ca_file");
    let vars = [(PASSWORD_VAR, postfix.password())];
    let run = env.run_env(&["check"], &vars);
    run.expect_code(1);
    let relay = assert_check_fail(&run, "relay");
    assert!(relay.contains("offers no login methods"), "{relay}");
    assert!(relay.contains("security = \"starttls\""), "{relay}");
    // With STARTTLS, as the advice says, the login goes through and check shows who
    // answered: Postfix's own greeting and EHLO name.
    env.set("smtp", "security", "\"starttls\"");
    env.set(
        "smtp",
        "ca_file",
        &format!("{:?}", postfix.ca_pem_path().display().to_string()),
    );
    let run = env.run_env(&["check"], &vars);
    run.expect_code(0);
    let relay = assert_check_ok(&run, "relay");
    let name = format!("mail.{}", crate::support::postfix::DOMAIN);
    contains_all(
        &relay,
        &[
            format!("greeting: \"{name} ESMTP"),
            format!("EHLO {name}"),
            "STARTTLS".to_string(),
            format!("login as {}", postfix.user()),
        ],
    );
}

#[test]
fn check_shows_the_greeting_and_ehlo_name_of_whoever_answers() {
    let server = SmtpServer::start(ServerOptions::default().hostname("sink.local.test"));
    let env = TestEnv::example();
    env.relay(server.port());
    let run = env.run(&["check"]);
    run.expect_code(0);
    let relay = assert_check_ok(&run, "relay");
    assert_eq!(
        relay,
        format!(
            "127.0.0.1:{} (greeting: \"sink.local.test ESMTP utskick test server\", EHLO sink.local.test, unencrypted, no login)",
            server.port()
        )
    );
    // send says the same before its question (here answered by --yes).
    let run = env.run(&["send", "--yes", "--limit", "1"]);
    run.expect_code(0);
    let want = format!(
        "connected to 127.0.0.1:{} (greeting: \"sink.local.test ESMTP utskick test server\", EHLO sink.local.test)",
        server.port()
    );
    assert!(
        run.all().lines().any(|l| l == want),
        "{want:?} missing in\n{}",
        run.all()
    );
}

#[test]
fn a_hostile_greeting_is_shown_as_one_short_line() {
    let long = format!("220 evil.test \x1b[31m{}", "x".repeat(400));
    let server = SmtpServer::start(
        ServerOptions::default()
            .hostname(&format!("evil.{}.test", "y".repeat(300)))
            .hook(crate::support::smtp_server::greeting(&long)),
    );
    let env = TestEnv::example();
    env.relay(server.port());
    let run = env.run(&["check"]);
    run.expect_code(0);
    let relay = assert_check_ok(&run, "relay");
    assert!(!relay.contains('\x1b'), "{relay:?}");
    assert!(relay.contains("greeting: \"evil.test"), "{relay}");
    // Greeting and EHLO name are each cut to one short piece.
    assert!(relay.contains("xxx…\", EHLO evil.yyy"), "{relay}");
    assert!(relay.contains("yyy…, unencrypted"), "{relay}");
    assert!(relay.chars().count() < 250, "{relay}");
}

#[test]
fn nothing_listening_says_to_check_the_relay_host_and_port() {
    let port = closed_port();
    let env = TestEnv::example();
    env.relay(port);
    let relay = relay_fails(&env);
    contains_all(
        &relay,
        &[
            format!("127.0.0.1:{port}"),
            "nothing listens there".into(),
            "is the relay running".into(),
            "[smtp] host and port".into(),
        ],
    );
    send_stops_with(
        &env,
        &[],
        &["nothing listens there", "[smtp] host and port"],
    );
}

#[test]
fn a_host_name_that_does_not_resolve_is_named() {
    let env = TestEnv::example();
    env.relay(closed_port());
    env.set("smtp", "host", "\"nonexistent.invalid\"");
    env.set("smtp", "security", "\"starttls\"");
    let relay = relay_fails(&env);
    contains_all(
        &relay,
        &[
            "the host name nonexistent.invalid does not resolve",
            "[smtp] host spelled right",
        ],
    );
}

#[test]
fn a_port_that_never_greets_says_so_within_the_timeout() {
    // Bound and listening but never accepted: the kernel completes the handshake, and no
    // greeting ever comes (what a TLS-only port does to a client waiting for 220).
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let env = TestEnv::example();
    env.relay(port);
    env.set("smtp", "timeout_secs", "1");
    let relay = relay_fails(&env);
    contains_all(
        &relay,
        &[
            "no greeting within 1 s",
            "is it an SMTP server on that port",
            "security = \"tls\"",
        ],
    );
    drop(listener);
}

#[test]
fn implicit_tls_against_a_plain_port_says_which_security_to_set() {
    let server = SmtpServer::plain();
    let env = TestEnv::example();
    env.relay(server.port());
    env.set("smtp", "host", "\"localhost\"");
    env.set("smtp", "security", "\"tls\"");
    let relay = relay_fails(&env);
    contains_all(
        &relay,
        &[
            "does not speak TLS from the first byte",
            "security = \"starttls\"",
        ],
    );
}

#[test]
fn retry_on_a_fresh_journal_says_send_starts_the_pending() {
    let server = SmtpServer::plain();
    let env = TestEnv::example();
    env.relay(server.port());
    let run = env.run(&["retry", "--yes"]);
    run.expect_code(0);
    contains_all(
        &run.stdout,
        &[
            "nothing to do (retry takes only failed-transient and unknown recipients)",
            "0 of 12 sent",
            "12 pending (never tried: `utskick send` sends them)",
        ],
    );
    assert!(!run.all().contains("already sent"), "{}", run.all());
    assert_eq!(server.connections(), 0);
}

#[test]
fn a_second_send_after_a_refusal_points_to_retry_permanent() {
    let server = SmtpServer::start(ServerOptions::default().hook(
        crate::support::smtp_server::fail_rcpt(
            "per-erik.lindqvist@example.com",
            "550 5.1.1 <per-erik.lindqvist@example.com>: Recipient address rejected: User unknown",
        ),
    ));
    let env = TestEnv::example();
    env.relay(server.port());
    env.run(&["send", "--yes"]).expect_code(3);
    let run = env.run(&["send", "--yes"]);
    run.expect_code(0);
    contains_all(
        &run.stdout,
        &[
            "nothing to do: 11 of 12 sent",
            "1 failed permanently or bounced (correct their addresses in the CSV, then `utskick retry --permanent`)",
        ],
    );
}

/// The example with `[bounces]` pointing at `host:port`, plain IMAP, password in `IMAP_PW`.
fn with_imap(host: &str, port: u16, security: &str) -> TestEnv {
    let env = TestEnv::example();
    env.set("bounces", "host", &format!("{host:?}"));
    env.set("bounces", "port", &port.to_string());
    env.set("bounces", "security", &format!("{security:?}"));
    env.set("bounces", "username", "\"dataskydd@example.se\"");
    env.set("bounces", "password_env", "\"IMAP_PW\"");
    env.set("bounces", "folder", "\"INBOX\"");
    env
}

#[test]
fn bounces_from_an_imap_port_where_nothing_listens_says_what_to_check() {
    let port = closed_port();
    let env = with_imap("127.0.0.1", port, "none");
    let run = env.run_env(&["bounces", "--imap"], &[("IMAP_PW", "hemligt-imap")]);
    run.expect_code(1);
    let line = the_error(&run);
    contains_all(
        &line,
        &[
            format!("IMAP 127.0.0.1:{port}: cannot connect"),
            "nothing listens there".into(),
            "is the IMAP server running, and are [bounces] host and port right?".into(),
        ],
    );
}

#[test]
fn bounces_from_an_imap_host_that_does_not_resolve_names_it() {
    let env = with_imap("nonexistent.invalid", 993, "tls");
    let run = env.run_env(&["bounces", "--imap"], &[("IMAP_PW", "hemligt-imap")]);
    run.expect_code(1);
    let line = the_error(&run);
    contains_all(
        &line,
        &[
            "the host name nonexistent.invalid does not resolve",
            "is [bounces] host spelled right",
        ],
    );
}

#[test]
fn a_refused_login_says_what_to_check() {
    let server =
        SmtpServer::start(ServerOptions::default().auth("utskick@example.se", "rätt-lösenord"));
    let env = with_login(&server);
    let vars = [(PASSWORD_VAR, "fel-lösenord")];
    let relay = assert_check_fail(&env.run_env(&["check"], &vars), "relay");
    assert!(relay.contains("refused the login: 535"), "{relay}");
    assert!(
        relay.ends_with("(check [smtp] username, and the password or token it was given)"),
        "{relay}"
    );
    send_stops_with(&env, &vars, &["refused the login", "check [smtp] username"]);
}

#[test]
fn starttls_against_a_local_sink_without_it_points_to_security_none() {
    let server = SmtpServer::plain();
    let env = TestEnv::example();
    env.relay(server.port());
    env.set("smtp", "security", "\"starttls\"");
    let relay = assert_check_fail(&env.run(&["check"]), "relay");
    contains_all(
        &relay,
        &[
            "the relay does not offer STARTTLS",
            "a local test sink on loopback takes security = \"none\"",
        ],
    );
}

#[test]
fn a_relay_that_greets_but_never_answers_ehlo_is_told_apart_from_no_greeting() {
    use crate::support::smtp_server::{Action, Event, when};
    let server = SmtpServer::start(
        ServerOptions::default().hook(when(|e, _| matches!(e, Event::Ehlo { .. }), Action::Hang)),
    );
    let env = TestEnv::example();
    env.relay(server.port());
    env.set("smtp", "timeout_secs", "1");
    let relay = assert_check_fail(&env.run(&["check"]), "relay");
    assert!(
        relay.contains("no answer within 1 s to EHLO ([smtp] timeout_secs)"),
        "{relay}"
    );
    assert!(!relay.contains("no greeting"), "{relay}");
}
