//! Long mailings (issue 15): OAuth2 tokens that expire during the run, a relay that refuses
//! them, secret commands that hang, and daily limits that are waited out, against the
//! in-process SMTP server over real TCP.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
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
/// `token-runs` and prints a token endpoint's JSON answer with `expires_in` (or, with None,
/// the bare token). The token is `tok-<run number>-<issued, unix ms>`, so that the server
/// can tell its age, as a real relay tells a JWT's.
fn token_command(env: &TestEnv, expires_in: Option<u64>) {
    let runs = env.path("token-runs");
    let print = match expires_in {
        Some(n) => format!(
            "printf '{{\"token_type\":\"Bearer\",\"expires_in\":{n},\"access_token\":\"tok-%s-%s\"}}\\n' \"$n\" \"$ms\""
        ),
        None => "printf 'tok-%s-%s\\n' \"$n\" \"$ms\"".to_string(),
    };
    env.write(
        "token.sh",
        format!(
            "#!/bin/sh\necho run >> '{runs}'\nn=$(wc -l < '{runs}' | tr -d ' ')\nms=$(date +%s%N | cut -c1-13)\n{print}\n",
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

/// Twelve messages at 2/s through a relay that takes a token for 4 s after its issue,
/// with tokens living 2 s (`configure` says how the run learns that): the run must fetch
/// new ones ahead of their end, and the relay never has to refuse one.
fn tokens_renewed_ahead(configure: impl FnOnce(&TestEnv)) -> Run {
    let server = token_relay(|t| token_parts(t).is_some_and(|(_, ms)| now_ms() - ms <= 4000));
    let env = example(&server);
    configure(&env);
    env.set("sending", "rate", "\"2/s\"");
    let started = Instant::now();
    let run = env.run(&["send", "--yes"]);
    assert_all_sent(&env, &server, &run);
    // Longer than a token's life, several times.
    assert!(started.elapsed() >= Duration::from_secs(5));
    let runs = token_runs(&env);
    assert!(runs >= 3, "the token command ran {runs} times");
    assert_eq!(refusals(&server), 0, "{:#?}", server.dialogue());
    assert!(server.seen("AUTH") >= EXAMPLE_ROWS / 2);
    assert_no_token_shown(&run);
    run
}

#[test]
fn a_run_longer_than_a_tokens_life_fetches_new_tokens_and_sends_everyone() {
    // The JSON's expires_in says 2 s.
    let run = tokens_renewed_ahead(|env| token_command(env, Some(2)));
    assert!(!run.stderr.contains("token failed"), "{}", run.stderr);
}

#[test]
fn a_bare_token_lives_token_lifetime_secs() {
    // The command prints the token alone; `token_lifetime_secs` says how long it lives.
    tokens_renewed_ahead(|env| {
        token_command(env, None);
        env.set("smtp", "token_lifetime_secs", "2");
    });
}

#[test]
fn a_token_command_failing_once_mid_run_is_waited_for() {
    // The token endpoint is down for the second fetch (a network blip); the third works.
    let run = tokens_renewed_ahead(|env| {
        token_command(env, Some(2));
        let script = env.read("token.sh");
        let script = script.replacen(
            "ms=",
            "if [ \"$n\" = 2 ]; then echo 'curl: (6) Could not resolve host' >&2; exit 6; fi\nms=",
            1,
        );
        env.write("token.sh", script);
    });
    // The failure was seen, waited for, and its output (stderr of curl) not shown.
    assert!(
        run.stderr
            .contains("the command for the OAuth2 access token failed (exit status: 6)"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("Could not resolve"), "{}", run.stderr);
}

#[test]
fn a_token_the_relay_refuses_is_fetched_again_once_and_the_run_goes_on() {
    // The command says an hour, but the relay takes a token for 1.5 s only (revoked early,
    // as when an admin rotates the app's secret): every later login is refused first.
    let server = token_relay(|t| token_parts(t).is_some_and(|(_, ms)| now_ms() - ms <= 1500));
    let env = example(&server);
    token_command(&env, Some(3600));
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
    token_command(&env, Some(3600));
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
    token_command(&env, Some(3600));
    let run = env.run(&["send", "--yes"]);
    run.expect_code(1);
    // The first token was never used before: its refusal is final, no second fetch.
    assert_eq!(token_runs(&env), 1);
    assert!(env.journal().is_empty(), "{:?}", env.journal());
    assert_no_token_shown(&run);
}

#[test]
fn a_secret_command_that_hangs_is_stopped_after_its_timeout() {
    for (key, auth) in [("token_command", "xoauth2"), ("password_command", "plain")] {
        let server = SmtpServer::plain();
        let env = example(&server);
        env.set("smtp", "auth", &format!("{auth:?}"));
        env.set("smtp", "username", &format!("{USER:?}"));
        env.set("smtp", key, "\"sleep 60\"");
        env.set("smtp", "secret_command_timeout_secs", "1");
        for args in [&["send", "--yes"][..], &["check"][..]] {
            let started = Instant::now();
            let run = env.run(args);
            assert!(
                started.elapsed() < Duration::from_secs(15),
                "{key} {args:?} took {:?}",
                started.elapsed()
            );
            run.expect_code(2);
            assert!(
                run.all()
                    .contains("(\"sleep 60\") did not finish within 1 s and was stopped"),
                "{key} {args:?}: {}",
                run.all()
            );
        }
        assert!(server.received().is_empty());
        assert!(env.journal().is_empty());
    }
}

/// Starts `send --yes` with its stderr in a file, and `vars` in its environment.
fn spawn_send(env: &TestEnv, vars: &[(&str, &str)]) -> (Child, PathBuf) {
    let err = env.path("send.stderr");
    let mut c = env.cmd(&["send", "--yes"]);
    for (k, v) in vars {
        c.env(k, v);
    }
    let child = c
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&err).expect("stderr file"))
        .spawn()
        .expect("starts utskick");
    (child, err)
}

/// Waits until the file holds `text` (or `within` is over); returns what it holds.
fn wait_for(path: &Path, text: &str, within: Duration) -> String {
    let started = Instant::now();
    loop {
        let seen = std::fs::read_to_string(path).unwrap_or_default();
        if seen.contains(text) || started.elapsed() > within {
            return seen;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The `sent` events' times, in journal order.
fn sent_times(env: &TestEnv) -> Vec<SystemTime> {
    env.events("sent")
        .iter()
        .map(|e| humantime::parse_rfc3339(e["ts"].as_str().expect("ts")).expect("an RFC 3339 time"))
        .collect()
}

/// Every attempt has an outcome (`sent`, `failed`, `deferred`, `withdrawn`, `unknown`):
/// the journal says what happened to everyone.
fn assert_every_attempt_has_an_outcome(env: &TestEnv) {
    let mut open: BTreeMap<String, usize> = BTreeMap::new();
    for e in env.journal() {
        let (Some(kind), Some(key)) = (e["event"].as_str(), e["key"].as_str()) else {
            continue;
        };
        let n = open.entry(key.to_string()).or_default();
        match kind {
            "attempt" => *n += 1,
            _ => *n = n.saturating_sub(1),
        }
    }
    assert!(
        open.values().all(|n| *n == 0),
        "attempts without outcome: {open:?}"
    );
}

#[test]
fn daily_limit_with_wait_pauses_until_the_window_reopens_and_goes_on() {
    let server = SmtpServer::plain();
    let env = example(&server);
    env.set("sending", "daily_limit", "4");
    // when_limited = "wait" is the default. Test-only: a rolling window of 2 s.
    let started = Instant::now();
    let run = env.run_env(
        &["send", "--yes"],
        &[("UTSKICK_TEST_DAILY_WINDOW_SECS", "2")],
    );
    assert_all_sent(&env, &server, &run);
    // Twelve at four a window: it waited twice, and said until when.
    assert!(
        started.elapsed() >= Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    let waits = run
        .stderr
        .matches("daily_limit 4 reached (rolling 24 h): waiting until ")
        .count();
    assert_eq!(waits, 2, "{}", run.stderr);
    assert!(run.stderr.contains("(local time)"), "{}", run.stderr);
    assert_eq!(run.stderr.matches("the wait is over: going on").count(), 2);
    // No four sends within any 2 s: the fifth is 2 s after the first, the ninth after the
    // fifth.
    let t = sent_times(&env);
    for i in 4..t.len() {
        let gap = t[i].duration_since(t[i - 4]).expect("in order");
        assert!(
            gap >= Duration::from_millis(1990),
            "send {i}: {gap:?} after send {}",
            i - 4
        );
    }
    assert_every_attempt_has_an_outcome(&env);
}

#[test]
fn a_daily_quota_reply_with_wait_is_tried_again_and_the_run_goes_on() {
    // The relay's quota is used up for the first 2 s after its fifth message.
    let full_until = std::sync::Arc::new(std::sync::Mutex::new(None::<Instant>));
    let f = full_until.clone();
    let server = SmtpServer::scripted(move |e, ctx| {
        if !matches!(e, smtp_server::Event::Mail { .. }) || ctx.messages_total < 5 {
            return smtp_server::Action::Default;
        }
        let mut f = f.lock().unwrap_or_else(|p| p.into_inner());
        let until = *f.get_or_insert_with(|| Instant::now() + Duration::from_secs(2));
        if Instant::now() < until {
            smtp_server::Action::reply("550 5.4.5 Daily user sending quota exceeded")
        } else {
            smtp_server::Action::Default
        }
    });
    let env = example(&server);
    let run = env.run_env(
        &["send", "--yes"],
        &[("UTSKICK_TEST_QUOTA_RETRY_SECS", "1")],
    );
    assert_all_sent(&env, &server, &run);
    let deferred = env.events("deferred").len();
    assert!((1..=3).contains(&deferred), "{deferred} deferred");
    assert!(
        run.stderr.contains("the relay's daily quota is used up (550 5.4.5 Daily user sending quota exceeded): trying again at "),
        "{}",
        run.stderr
    );
    assert_every_attempt_has_an_outcome(&env);
}

#[test]
fn ctrl_c_while_waiting_for_the_daily_window_exits_130_with_the_journal_consistent() {
    let server = SmtpServer::plain();
    let env = example(&server);
    env.set("sending", "daily_limit", "3");
    let (mut child, err) = spawn_send(&env, &[("UTSKICK_TEST_DAILY_WINDOW_SECS", "600")]);
    let seen = wait_for(&err, "waiting until", Duration::from_secs(30));
    assert!(seen.contains("daily_limit 3 reached"), "{seen}");
    let pid = i32::try_from(child.id()).expect("pid");
    // SAFETY: plain kill(2) on the child we spawned (still running: it was not reaped).
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
    let started = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("waits") {
            break s;
        }
        if started.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            panic!("still waiting 10 s after Ctrl-C");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(
        status.code(),
        Some(130),
        "{}",
        std::fs::read_to_string(&err).unwrap_or_default()
    );
    assert_eq!(server.received().len(), 3);
    let st = states(&env);
    assert_eq!(st.len(), 3, "only the three sent have a state: {st:?}");
    assert!(st.values().all(|s| s == "sent"), "{st:?}");
    assert_every_attempt_has_an_outcome(&env);
    assert!(
        env.events("end")
            .last()
            .and_then(|e| e["outcome"].as_str().map(str::to_string))
            .is_some_and(|o| o == "interrupted"),
        "{:?}",
        env.events("end")
    );
    // The next send (the window still closed) waits again rather than sending a fourth.
    let (mut again, err) = spawn_send(&env, &[("UTSKICK_TEST_DAILY_WINDOW_SECS", "600")]);
    let seen = wait_for(&err, "waiting until", Duration::from_secs(30));
    let _ = again.kill();
    let _ = again.wait();
    assert!(seen.contains("daily_limit 3 reached"), "{seen}");
    assert_eq!(server.received().len(), 3);
}

/// A token endpoint on loopback answering as the Microsoft identity platform does
/// (`POST /{tenant}/oauth2/v2.0/token`, a form body, a JSON answer); it keeps each
/// request's form fields.
struct TokenEndpoint {
    port: u16,
    requests: std::sync::Arc<std::sync::Mutex<Vec<BTreeMap<String, String>>>>,
}

impl TokenEndpoint {
    fn start(tenant: &'static str, token: &'static str) -> TokenEndpoint {
        use std::io::{BufRead, BufReader, Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binds");
        let port = listener.local_addr().expect("addr").port();
        let requests = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = requests.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let mut reader = BufReader::new(stream.try_clone().expect("clone"));
                let mut request_line = String::new();
                let _ = reader.read_line(&mut request_line);
                let mut length = 0usize;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some((name, value)) = line.split_once(':')
                        && name.eq_ignore_ascii_case("content-length")
                    {
                        length = value.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0u8; length];
                let _ = reader.read_exact(&mut body);
                let form: BTreeMap<String, String> = form_urlencoded::parse(&body)
                    .map(|(k, v)| (k.into_owned(), v.into_owned()))
                    .collect();
                let good = request_line.starts_with(&format!("POST /{tenant}/oauth2/v2.0/token "))
                    && form.get("grant_type").map(String::as_str) == Some("client_credentials");
                seen.lock().unwrap_or_else(|p| p.into_inner()).push(form);
                let (status, body) = if good {
                    (
                        "200 OK",
                        format!(
                            "{{\"token_type\":\"Bearer\",\"expires_in\":3599,\"ext_expires_in\":3599,\"access_token\":\"{token}\"}}"
                        ),
                    )
                } else {
                    (
                        "400 Bad Request",
                        "{\"error\":\"invalid_request\",\"error_description\":\"AADSTS900144\"}"
                            .to_string(),
                    )
                };
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        TokenEndpoint { port, requests }
    }
}

#[test]
fn the_readme_token_script_gets_a_token_that_the_relay_takes() {
    const TENANT: &str = "11111111-2222-3333-4444-555555555555";
    const TOKEN: &str = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.test.sig";
    // A secret as Entra makes them, with characters a form must encode.
    const SECRET: &str = "Ab8Q~x.y_z-1+2&3=4%";
    let endpoint = TokenEndpoint::start(TENANT, TOKEN);
    let server = SmtpServer::start(
        ServerOptions::default()
            .auth(USER, "unused")
            .mechanisms(&[Mechanism::XOAuth2])
            .require_auth()
            .xoauth2_tokens(|t| t == TOKEN),
    );
    let env = example(&server);
    env.set("smtp", "auth", "\"xoauth2\"");
    env.set("smtp", "username", &format!("{USER:?}"));
    // As the README says: the script copied beside config.toml, named relative to it.
    std::fs::copy(
        crate::support::testenv::repo().join("docs/m365-token.sh"),
        env.path("m365-token.sh"),
    )
    .expect("copies the script");
    env.set("smtp", "token_command", "\"sh m365-token.sh\"");
    env.write("client-secret", SECRET);
    let url = format!(
        "http://127.0.0.1:{}/{TENANT}/oauth2/v2.0/token",
        endpoint.port
    );
    let secret_file = env.path("client-secret").display().to_string();
    // From another folder, with --config: the command still runs in the config's folder.
    let config = env.path("config.toml").display().to_string();
    let mut send = env.cmd(&["--config", &config, "send", "--yes"]);
    send.current_dir("/")
        .env("M365_TENANT_ID", TENANT)
        .env("M365_CLIENT_ID", "66666666-7777-8888-9999-000000000000")
        .env("M365_CLIENT_SECRET_FILE", &secret_file)
        .env("M365_TOKEN_URL", &url);
    let out = send.output().expect("runs utskick");
    let run = Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    assert_all_sent(&env, &server, &run);
    assert!(!run.all().contains(TOKEN) && !run.all().contains(SECRET));
    let requests = endpoint
        .requests
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    assert_eq!(
        requests.len(),
        1,
        "one token for the whole run: {requests:?}"
    );
    let form = &requests[0];
    assert_eq!(form["client_secret"], SECRET);
    assert_eq!(form["scope"], "https://outlook.office365.com/.default");
    assert_eq!(form["client_id"], "66666666-7777-8888-9999-000000000000");

    // Without the tenant the script fails, and utskick says so without its output.
    let run = env.run_env(&["check"], &[("M365_TOKEN_URL", &url)]);
    run.expect_code(2);
    assert!(
        run.all()
            .contains("the command for the OAuth2 access token failed"),
        "{}",
        run.all()
    );
}

#[test]
fn check_and_the_confirmation_estimate_the_mailing_and_warn_beyond_a_day() {
    let server = SmtpServer::plain();
    let env = example(&server);
    // A Microsoft 365 mailbox whose limit was set lower (as an admin may with a policy).
    env.set("smtp", "profile", "\"microsoft365\"");
    env.set("sending", "daily_limit", "5");
    env.set("sending", "rate", "\"30/min\"");
    let run = env.run(&["check"]);
    run.expect_code(0);
    let line = run
        .stdout
        .lines()
        .find(|l| l.starts_with("estimate"))
        .unwrap_or_else(|| panic!("no estimate line:\n{}", run.stdout));
    // Five now, five a day later, two the day after.
    assert!(
        line.contains("12 messages at 30/min, daily limit 5 (rolling 24 h, 0 used): takes about 2 days 0 h, waiting 2 time(s) for the daily window to reopen; the last message goes out about "),
        "{line}"
    );
    assert!(line.ends_with("(local time)"), "{line}");
    for words in [
        "more than the relay allows in a day (12 messages, 5 a day)",
        "Microsoft 365 (Exchange Online)",
        "500 × licences^0.7 + 9,500",
        "Amazon SES",
        "Azure Communication Services",
    ] {
        assert!(
            run.stderr.contains(words),
            "{words:?} not in\n{}",
            run.stderr
        );
    }
    // The send says the same before it starts; stopping at the limit keeps today's way.
    env.set("sending", "when_limited", "\"stop\"");
    env.set("sending", "rate", "\"1000/s\"");
    let run = env.run(&["send", "--yes"]);
    run.expect_code(3);
    run.expect_stderr("estimate: 12 messages at 1000/s, daily limit 5 (rolling 24 h, 0 used)");
    run.expect_stderr("more than the relay allows in a day");
    assert_eq!(server.received().len(), 5);
    // The next check counts the five sent in the window.
    let run = env.run(&["check"]);
    assert!(
        run.stdout
            .contains("7 messages at 1000/s, daily limit 5 (rolling 24 h, 5 used)"),
        "{}",
        run.stdout
    );
}
