//! Long mailings (issue 15): OAuth2 tokens that expire during the run, a relay that refuses
//! them, secret commands that hang, and daily limits that are waited out, against the
//! in-process SMTP server over real TCP.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime};

use crate::support::smtp_server::{self, Mechanism, ServerOptions, SmtpServer};
use crate::support::testenv::{Run, TestEnv};

const USER: &str = "utskick@example.se";
/// The example CSV's size.
const EXAMPLE_ROWS: usize = 12;

/// The shipped example pointed at `server`, one connection, no retry delay.
fn example(server: &SmtpServer) -> TestEnv {
    let env = TestEnv::example();
    env.relay(server.port());
    env.set("sending", "concurrency", "1");
    env
}

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}

/// A token command like the README's curl script: each run appends a line to
/// `token-runs` and prints a token endpoint's JSON answer. The token is
/// `tok-<run number>-<issued, unix ms>`, so that the server can tell its age, as a real
/// relay tells a JWT's.
fn token_command(env: &TestEnv, expires_in: u64) {
    let runs = env.path("token-runs");
    env.write(
        "token.sh",
        format!(
            "#!/bin/sh\necho run >> '{runs}'\nn=$(wc -l < '{runs}' | tr -d ' ')\nms=$(date +%s%N | cut -c1-13)\nprintf '{{\"token_type\":\"Bearer\",\"expires_in\":{expires_in},\"access_token\":\"tok-%s-%s\"}}\\n' \"$n\" \"$ms\"\n",
            runs = runs.display()
        ),
    );
    env.set("smtp", "auth", "\"xoauth2\"");
    env.set("smtp", "username", &format!("{USER:?}"));
    env.set(
        "smtp",
        "token_command",
        &format!("{:?}", format!("sh '{}'", env.path("token.sh").display())),
    );
}

fn token_runs(env: &TestEnv) -> usize {
    std::fs::read_to_string(env.path("token-runs")).map_or(0, |s| s.lines().count())
}

/// `tok-N-MS` → (N, MS).
fn token_parts(token: &str) -> Option<(u64, u128)> {
    let rest = token.strip_prefix("tok-")?;
    let (n, ms) = rest.split_once('-')?;
    Some((n.parse().ok()?, ms.parse().ok()?))
}

/// XOAUTH2 only, login required, tokens judged by `check`; every connection closed (421)
/// after two messages, so that the run must log in again and again.
fn token_relay(check: impl Fn(&str) -> bool + Send + Sync + 'static) -> SmtpServer {
    SmtpServer::start(
        ServerOptions::default()
            .auth(USER, "no password: tokens only")
            .mechanisms(&[Mechanism::XOAuth2])
            .require_auth()
            .xoauth2_tokens(check)
            .hook(smtp_server::per_connection_limit(
                2,
                "421 4.7.0 Too many messages for this session",
            )),
    )
}

/// Every key's latest event, `deferred` and `withdrawn` shown as the state they leave.
fn states(env: &TestEnv) -> BTreeMap<String, String> {
    env.latest()
        .into_iter()
        .filter(|(_, s)| s != "deferred" && s != "withdrawn")
        .collect()
}

fn refusals(server: &SmtpServer) -> usize {
    server
        .dialogue()
        .iter()
        .filter(|l| l.contains("< 334 eyJ"))
        .count()
}

fn assert_all_sent(env: &TestEnv, server: &SmtpServer, run: &Run) {
    run.expect_code(0);
    let st = states(env);
    assert_eq!(st.len(), EXAMPLE_ROWS, "{st:?}");
    assert!(st.values().all(|s| s == "sent"), "{st:?}");
    assert_eq!(server.received().len(), EXAMPLE_ROWS);
    assert!(
        env.events("failed").is_empty(),
        "{:?}",
        env.events("failed")
    );
}

fn assert_no_token_shown(run: &Run) {
    assert!(
        !run.all().contains("tok-"),
        "a token was printed:\n{}",
        run.all()
    );
}

#[test]
fn a_run_longer_than_a_tokens_life_fetches_new_tokens_and_sends_everyone() {
    // Tokens live 2 s (the JSON says so); the relay takes one for 4 s after it was issued.
    let server = token_relay(|t| token_parts(t).is_some_and(|(_, ms)| now_ms() - ms <= 4000));
    let env = example(&server);
    token_command(&env, 2);
    env.set("sending", "rate", "\"2/s\"");
    let started = Instant::now();
    let run = env.run(&["send", "--yes"]);
    assert_all_sent(&env, &server, &run);
    // Twelve messages at 2/s: longer than a token's life, several times.
    assert!(started.elapsed() >= Duration::from_secs(5));
    let runs = token_runs(&env);
    assert!(runs >= 3, "the token command ran {runs} times");
    // Fetched ahead of its end: the relay never had to refuse one.
    assert_eq!(refusals(&server), 0, "{:#?}", server.dialogue());
    assert!(server.seen("AUTH") >= EXAMPLE_ROWS / 2);
    assert_no_token_shown(&run);
}

#[test]
fn a_token_the_relay_refuses_is_fetched_again_once_and_the_run_goes_on() {
    // The command says an hour, but the relay takes a token for 1 s only (revoked early,
    // as when an admin rotates the app's secret): every later login is refused first.
    let server = token_relay(|t| token_parts(t).is_some_and(|(_, ms)| now_ms() - ms <= 1000));
    let env = example(&server);
    token_command(&env, 3600);
    env.set("sending", "rate", "\"2/s\"");
    let run = env.run(&["send", "--yes"]);
    assert_all_sent(&env, &server, &run);
    let runs = token_runs(&env);
    assert!(runs >= 2, "the token command ran {runs} times");
    // Each refusal was followed by exactly one new token, which was taken.
    let refused = refusals(&server);
    assert!(refused >= 1, "{:#?}", server.dialogue());
    assert_eq!(runs, refused + 1, "{:#?}", server.dialogue());
    assert_no_token_shown(&run);
}

#[test]
fn a_relay_refusing_a_fresh_token_stops_the_run_with_nobody_booked() {
    // Only the first login is ever good: the app lost its SMTP.SendAsApp permission
    // during the run, and no new token helps.
    let logins = std::sync::atomic::AtomicUsize::new(0);
    let server = token_relay(move |t| {
        logins.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 && token_parts(t).is_some()
    });
    let env = example(&server);
    token_command(&env, 3600);
    let run = env.run(&["send", "--yes"]);
    run.expect_code(1);
    assert!(run.stderr.contains("refused the login"), "{}", run.stderr);
    // The first connection's two went out; the next login was refused with the old token,
    // a new one was fetched and refused too: the run stopped there.
    assert_eq!(server.received().len(), 2);
    assert_eq!(token_runs(&env), 2);
    assert_eq!(refusals(&server), 2, "{:#?}", server.dialogue());
    let st = states(&env);
    assert_eq!(st.values().filter(|s| *s == "sent").count(), 2, "{st:?}");
    assert!(
        st.values().all(|s| s == "sent"),
        "nobody else has a state: {st:?}"
    );
    assert!(env.events("failed").is_empty());
    assert_no_token_shown(&run);
}

#[test]
fn a_relay_refusing_every_token_stops_before_the_question() {
    let server = token_relay(|_| false);
    let env = example(&server);
    token_command(&env, 3600);
    let run = env.run(&["send", "--yes"]);
    run.expect_code(1);
    // The first token was never used before: its refusal is final, no second fetch.
    assert_eq!(token_runs(&env), 1);
    assert!(env.journal().is_empty(), "{:?}", env.journal());
    assert_no_token_shown(&run);
}
