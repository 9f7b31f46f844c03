//! `send`: the shipped example through a real Postfix, the relay's faults from the scriptable
//! server ending in the contract's journal states, resume and guards, concurrency and rate,
//! and crash safety under SIGKILL and Ctrl-C.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::os::unix::fs::PermissionsExt;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use mail_parser::MessageParser;

use crate::support::postfix::Postfix;
use crate::support::smtp_server::{self, Action, Event, Received, ServerOptions, SmtpServer};
use crate::support::testenv::{Run, TestEnv};
use crate::support::tls::{self, ServerCert};

// ----- helpers -----------------------------------------------------------------------

/// Key 1003 of the example CSV; its address is nobody else's.
pub(crate) const MARTA_KEY: &str = "1003";
pub(crate) const MARTA: &str = "marta.sjostrom@example.org";
/// The example CSV's size.
pub(crate) const EXAMPLE_ROWS: usize = 12;
const PASSWORD_VAR: &str = "UTSKICK_SMTP_PASSWORD";

/// The shipped example pointed at `server` (fast: no retry delay, 5 s timeouts).
pub(crate) fn example(server: &SmtpServer) -> TestEnv {
    let env = TestEnv::example();
    env.relay(server.port());
    env
}

/// `utskick send --yes` plus `extra`.
pub(crate) fn send(env: &TestEnv, extra: &[&str]) -> Run {
    let mut args = vec!["send", "--yes"];
    args.extend_from_slice(extra);
    env.run(&args)
}

/// Every key's state from the journal: the latest event, with `deferred` (the relay
/// refused for itself: back to pending) shown as `pending`.
pub(crate) fn states(env: &TestEnv) -> BTreeMap<String, String> {
    env.latest()
        .into_iter()
        .map(|(k, s)| {
            let s = if s == "deferred" {
                "pending".to_string()
            } else {
                s
            };
            (k, s)
        })
        .collect()
}

/// One key's state (`pending` without events).
pub(crate) fn state(env: &TestEnv, key: &str) -> String {
    states(env)
        .get(key)
        .cloned()
        .unwrap_or_else(|| "pending".into())
}

/// The events of one kind for one key.
pub(crate) fn events_for(env: &TestEnv, kind: &str, key: &str) -> Vec<serde_json::Value> {
    env.events(kind)
        .into_iter()
        .filter(|e| e["key"] == key)
        .collect()
}

/// The example CSV's (key, email) pairs in order.
fn rows(env: &TestEnv) -> Vec<(String, String)> {
    let mut r = csv::Reader::from_path(env.path("recipients.example.csv")).expect("csv");
    let h = r.headers().expect("headers").clone();
    let k = h
        .iter()
        .position(|c| c == "customer_id")
        .expect("key column");
    let e = h.iter().position(|c| c == "email").expect("email column");
    r.records()
        .map(|x| {
            let x = x.expect("record");
            (x[k].to_string(), x[e].to_string())
        })
        .collect()
}

/// Writes a CSV of `n` generated recipients (what the shipped templates use) in place of the
/// example's; returns (key, email) in order.
pub(crate) fn write_generated_csv(env: &TestEnv, n: usize) -> Vec<(String, String)> {
    let mut text = String::from("customer_id,name,email,affected,confirmed\n");
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let key = format!("{}", 100_000 + i);
        let email = format!("kund{i}@example.se");
        let confirmed = if i % 2 == 0 { "ja" } else { "nej" };
        let affected = if i % 3 == 0 {
            "namn|adress|personnummer"
        } else {
            "namn|epost"
        };
        text.push_str(&format!(
            "{key},Kund Åström {i},{email},{affected},{confirmed}\n"
        ));
        out.push((key, email));
    }
    env.write("recipients.example.csv", text);
    out
}

/// The single envelope recipient of each received message, lower-cased.
fn rcpts(received: &[Received]) -> Vec<String> {
    received
        .iter()
        .map(|r| {
            assert_eq!(r.rcpt_to.len(), 1, "one recipient per message");
            r.rcpt_to[0].to_lowercase()
        })
        .collect()
}

/// How many times each address was received.
pub(crate) fn counts(received: &[Received]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for r in rcpts(received) {
        *m.entry(r).or_insert(0) += 1;
    }
    m
}

/// The Message-ID header of a received message.
fn message_id(r: &Received) -> String {
    r.header("message-id").expect("a Message-ID header")
}

/// No `failed` event at all in the journal.
#[track_caller]
fn assert_no_failures(env: &TestEnv) {
    let failed = env.events("failed");
    assert!(
        failed.is_empty(),
        "no recipient may be booked failed: {failed:#?}"
    );
}

/// Within each run, every attempt is followed by an outcome for the same key.
#[track_caller]
pub(crate) fn assert_every_attempt_has_an_outcome(events: &[serde_json::Value]) {
    let mut open: BTreeMap<(String, String), usize> = BTreeMap::new();
    for (i, e) in events.iter().enumerate() {
        let (Some(run), Some(key)) = (e["run"].as_str(), e["key"].as_str()) else {
            continue;
        };
        let id = (run.to_string(), key.to_string());
        match e["event"].as_str() {
            Some("attempt") => {
                assert!(
                    open.insert(id.clone(), i).is_none(),
                    "two attempts without an outcome in between: {id:?}"
                );
            }
            Some("sent" | "failed" | "unknown" | "deferred" | "withdrawn") => {
                assert!(
                    open.remove(&id).is_some(),
                    "an outcome without an attempt: {e}"
                );
            }
            _ => {}
        }
    }
    assert!(open.is_empty(), "attempts without an outcome: {open:?}");
}

/// The journal's complete lines, parsed; a torn tail (a crash mid-write) is left out.
fn journal_tolerant(env: &TestEnv) -> Vec<serde_json::Value> {
    let Ok(bytes) = std::fs::read(env.path("delivery-log.jsonl")) else {
        return Vec::new();
    };
    let complete = match bytes.iter().rposition(|&b| b == b'\n') {
        Some(i) => &bytes[..=i],
        None => &bytes[..0],
    };
    complete
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| {
            serde_json::from_slice(l).unwrap_or_else(|e| {
                panic!(
                    "malformed journal line {:?}: {e}",
                    String::from_utf8_lossy(l)
                )
            })
        })
        .collect()
}

/// Each key's state from raw events (`unknown` for an attempt without outcome).
fn states_of(events: &[serde_json::Value]) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    let mut before: BTreeMap<String, Option<String>> = BTreeMap::new();
    for e in events {
        if e["test"] == true {
            continue;
        }
        let Some(k) = e["key"].as_str() else { continue };
        let s = match (e["event"].as_str().unwrap_or(""), e["class"].as_str()) {
            ("attempt", _) => {
                before.insert(k.to_string(), m.get(k).cloned());
                "unknown".to_string()
            }
            ("unknown", _) => "unknown".to_string(),
            ("failed", Some(c)) => format!("failed-{c}"),
            ("deferred", _) => "pending".to_string(),
            ("withdrawn", _) => match before.remove(k).flatten() {
                Some(s) => s,
                None => {
                    m.remove(k);
                    continue;
                }
            },
            (other, _) => other.to_string(),
        };
        m.insert(k.to_string(), s);
    }
    m
}

/// The `error:` lines of a run's stderr.
fn error_lines(run: &Run) -> Vec<String> {
    run.stderr
        .lines()
        .filter(|l| l.starts_with("error:"))
        .map(str::to_string)
        .collect()
}

/// A journal timestamp as an instant.
fn ts(e: &serde_json::Value) -> std::time::SystemTime {
    humantime::parse_rfc3339(e["ts"].as_str().expect("ts")).expect("RFC 3339 timestamp")
}

/// A child `utskick`, killed and reaped when dropped (a failing test leaves nothing behind).
struct Spawned {
    child: Option<Child>,
    log: tempfile::TempDir,
}

impl Spawned {
    fn start(mut cmd: Command) -> Spawned {
        let log = tempfile::tempdir().expect("tempdir");
        let out = std::fs::File::create(log.path().join("stdout")).expect("stdout file");
        let err = std::fs::File::create(log.path().join("stderr")).expect("stderr file");
        let child = cmd
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .expect("spawn utskick");
        Spawned {
            child: Some(child),
            log,
        }
    }

    fn id(&self) -> u32 {
        self.child.as_ref().expect("child").id()
    }

    /// The exit code if it has ended.
    fn try_wait(&mut self) -> Option<i32> {
        self.child
            .as_mut()
            .expect("child")
            .try_wait()
            .expect("try_wait")
            .map(|s| s.code().unwrap_or(-1))
    }

    fn output(&self, code: i32) -> Run {
        Run {
            code,
            stdout: std::fs::read_to_string(self.log.path().join("stdout")).unwrap_or_default(),
            stderr: std::fs::read_to_string(self.log.path().join("stderr")).unwrap_or_default(),
        }
    }

    /// Waits for the end (panics, killing it, after `timeout`).
    fn wait(mut self, timeout: Duration) -> Run {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(code) = self.try_wait() {
                self.child = None;
                return self.output(code);
            }
            if Instant::now() > deadline {
                let _ = self.child.as_mut().map(Child::kill);
                panic!(
                    "utskick did not end within {timeout:?}\n{}",
                    self.output(-1).all()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGKILL and reap.
    fn kill(mut self) -> Run {
        let mut child = self.child.take().expect("child");
        let _ = child.kill();
        let status = child.wait().expect("reap");
        self.output(status.code().unwrap_or(-1))
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Waits until `cond` holds (panics after `timeout`).
#[track_caller]
fn wait_until(timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The text of a header as mail-parser decodes it (unstructured headers as text).
fn header_text(m: &mail_parser::Message, name: &str) -> Option<String> {
    m.header(name)
        .and_then(|v| v.as_text().map(str::to_string))
        .or_else(|| m.header_raw(name).map(|r| r.trim().to_string()))
}

fn first_addr(a: Option<&mail_parser::Address>) -> (Option<String>, Option<String>) {
    let a = a.and_then(|a| a.first());
    (
        a.and_then(|a| a.name()).map(str::to_string),
        a.and_then(|a| a.address()).map(str::to_lowercase),
    )
}

/// 421 at the greeting of connections `from..=to`.
fn greeting_421(from: usize, to: usize) -> SmtpServer {
    SmtpServer::start(ServerOptions::default().on(move |e, ctx| {
        if *e == Event::Greeting && (from..=to).contains(&ctx.connection) {
            Action::reply("421 4.7.0 mx.test.invalid Too many connections, try again later")
        } else {
            Action::Default
        }
    }))
}

/// The example against a STARTTLS server on `localhost`, trusting the test CA if `ca`.
fn starttls_env(server: &SmtpServer, ca: bool) -> TestEnv {
    let env = example(server);
    env.set("smtp", "host", "\"localhost\"");
    env.set("smtp", "security", "\"starttls\"");
    if ca {
        tls::write_ca_pem(&env.path("ca.pem"));
        env.set("smtp", "ca_file", "\"ca.pem\"");
    }
    env
}

/// Exit 1, one `error:` line saying `what`, nothing booked, nothing received.
#[track_caller]
fn assert_refused_before_sending(run: &Run, env: &TestEnv, server: &SmtpServer, what: &[&str]) {
    run.expect_code(1);
    let errors = error_lines(run);
    assert_eq!(errors.len(), 1, "one line: {}", run.all());
    let line = errors[0].to_lowercase();
    assert!(
        what.iter().any(|w| line.contains(w)),
        "{what:?} in {line:?}"
    );
    assert!(server.received().is_empty());
    assert_eq!(server.seen("MAIL"), 0);
    assert!(env.events("run").is_empty() && env.events("attempt").is_empty());
}

// ----- 1. the real Postfix -------------------------------------------------------------

#[test]
fn send_through_real_postfix_delivers_what_preview_shows() {
    let Some(postfix) = Postfix::shared() else {
        return;
    };
    let env = TestEnv::example();
    // Every recipient gets a mailbox of its own; every other column stays as shipped.
    let path = env.path("recipients.example.csv");
    let mut reader = csv::Reader::from_path(&path).expect("csv");
    let headers = reader.headers().expect("headers").clone();
    let email_i = headers.iter().position(|c| c == "email").expect("email");
    let key_i = headers
        .iter()
        .position(|c| c == "customer_id")
        .expect("key");
    let records: Vec<csv::StringRecord> = reader.records().map(|r| r.expect("record")).collect();
    drop(reader);
    let mut writer = csv::Writer::from_path(&path).expect("csv writer");
    writer.write_record(&headers).expect("header");
    let mut mailboxes: Vec<(String, String)> = Vec::new();
    for record in &records {
        let mailbox = postfix.fresh_mailbox();
        let fields: Vec<&str> = record
            .iter()
            .enumerate()
            .map(|(i, f)| if i == email_i { mailbox.as_str() } else { f })
            .collect();
        writer.write_record(&fields).expect("record");
        mailboxes.push((record[key_i].to_string(), mailbox.clone()));
    }
    writer.flush().expect("flush");
    drop(writer);
    assert_eq!(mailboxes.len(), EXAMPLE_ROWS);

    env.postfix_relay(postfix, PASSWORD_VAR);

    env.run(&["preview"]).expect_code(0);
    let run = env.run_env(&["send", "--yes"], &[(PASSWORD_VAR, postfix.password())]);
    run.expect_code(0);
    let st = states(&env);
    assert_eq!(st.len(), EXAMPLE_ROWS, "{st:?}");
    assert!(st.values().all(|s| s == "sent"), "{st:?}");

    // What preview wrote, by To address.
    let parser = MessageParser::default();
    let mut previews: HashMap<String, Vec<u8>> = HashMap::new();
    for entry in std::fs::read_dir(env.path("preview")).expect("preview dir") {
        let p = entry.expect("entry").path();
        if p.extension().is_some_and(|x| x == "eml") {
            let bytes = std::fs::read(&p).expect("read preview");
            let m = parser.parse(&bytes).expect("preview parses");
            let to = first_addr(m.to()).1.expect("To address");
            previews.insert(to, bytes);
        }
    }
    assert_eq!(previews.len(), EXAMPLE_ROWS);

    for (key, mailbox) in &mailboxes {
        let delivered = postfix.wait_for_messages(mailbox, 1, Duration::from_secs(30));
        assert_eq!(
            delivered.len(),
            1,
            "{key}: exactly one message in {mailbox}"
        );
        let d = parser.parse(&delivered[0]).expect("delivered parses");
        let p = parser
            .parse(previews.get(mailbox).expect("a preview for this recipient"))
            .expect("preview parses");
        let what = format!("{key} <{mailbox}>");
        assert_eq!(first_addr(d.from()), first_addr(p.from()), "{what}: From");
        assert_eq!(
            first_addr(d.from()).1.as_deref(),
            Some("dataskydd@example.se")
        );
        assert_eq!(first_addr(d.to()), first_addr(p.to()), "{what}: To");
        assert_eq!(
            first_addr(d.to()).1.as_deref(),
            Some(mailbox.as_str()),
            "{what}"
        );
        assert_eq!(d.subject(), p.subject(), "{what}: Subject");
        assert!(d.subject().is_some());
        assert_eq!(d.message_id(), p.message_id(), "{what}: Message-ID");
        assert!(
            d.message_id()
                .is_some_and(|id| id.starts_with("nektab-2023-10.")),
            "{what}: {:?}",
            d.message_id()
        );
        for h in ["Auto-Submitted", "Content-Language"] {
            assert_eq!(header_text(&d, h), header_text(&p, h), "{what}: {h}");
        }
        assert_eq!(
            header_text(&d, "Auto-Submitted").as_deref(),
            Some("auto-generated")
        );
        // The example's rows 1007, 1009 and 1012 are in English.
        let language = if ["1007", "1009", "1012"].contains(&key.as_str()) {
            "en"
        } else {
            "sv"
        };
        assert_eq!(
            header_text(&d, "Content-Language").as_deref(),
            Some(language),
            "{what}"
        );
        // Postfix stores Maildir files with LF line ends; compare decoded text by line.
        let lf = |t: Option<std::borrow::Cow<str>>| t.map(|t| t.replace("\r\n", "\n"));
        assert_eq!(lf(d.body_text(0)), lf(p.body_text(0)), "{what}: text body");
        assert_eq!(lf(d.body_html(0)), lf(p.body_html(0)), "{what}: HTML body");
        let breach = if language == "en" {
            "data breach"
        } else {
            "dataintrång"
        };
        assert!(d.body_text(0).is_some_and(|t| t.contains(breach)), "{what}");
        // The envelope sender, as Postfix recorded it.
        assert!(
            d.header_raw("Return-Path")
                .is_some_and(|r| r.contains("dataskydd@example.se")),
            "{what}: Return-Path {:?}",
            d.header_raw("Return-Path")
        );
        // The journal's Message-ID for this key is the delivered one.
        let sent = events_for(&env, "sent", key);
        assert_eq!(sent.len(), 1, "{what}");
        assert_eq!(
            sent[0]["message_id"].as_str(),
            d.message_id().map(|id| format!("<{id}>")).as_deref()
        );
    }

    // åäö intact, end to end.
    let (_, asa_box) = mailboxes.iter().find(|(k, _)| k == "1001").expect("1001");
    let asa = &postfix.messages(asa_box)[0];
    let m = parser.parse(asa).expect("parses");
    assert_eq!(first_addr(m.to()).0.as_deref(), Some("Åsa Öberg"));
    assert!(m.subject().is_some_and(|s| s.contains("dataintrång")));
    let text = m.body_text(0).expect("text");
    assert!(text.starts_with("Hej Åsa Öberg,"), "{text}");
    assert!(text.contains("Vad har hänt?") && text.contains("återställt"));
    let html = m.body_html(0).expect("html");
    assert!(html.contains("Åsa Öberg") && html.contains("Vad har hänt?"));
    assert!(
        !text.contains("19800101") && !html.contains("19800101"),
        "no personnummer in the message"
    );
}

// ----- 2. the relay's faults -----------------------------------------------------------

#[test]
fn rcpt_550_user_unknown_is_failed_permanent_and_not_retried() {
    let server = SmtpServer::start(ServerOptions::default().hook(smtp_server::fail_rcpt(
        MARTA,
        "550 5.1.1 <marta.sjostrom@example.org>: Recipient address rejected: User unknown",
    )));
    let env = example(&server);
    let run = send(&env, &[]);
    run.expect_code(3);
    let received = server.received();
    assert_eq!(received.len(), EXAMPLE_ROWS - 1);
    assert!(!rcpts(&received).contains(&MARTA.to_string()));
    assert_eq!(server.seen(&format!("RCPT:{MARTA}")), 1, "not retried");
    let st = states(&env);
    assert_eq!(st.len(), EXAMPLE_ROWS);
    for (key, s) in &st {
        let want = if key == MARTA_KEY {
            "failed-permanent"
        } else {
            "sent"
        };
        assert_eq!(s, want, "{key}");
    }
    let failed = events_for(&env, "failed", MARTA_KEY);
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["code"], 550);
    assert_eq!(failed[0]["enhanced"], "5.1.1");
    assert_eq!(failed[0]["class"], "permanent");
    assert_eq!(failed[0]["email"], MARTA);
    assert_eq!(events_for(&env, "attempt", MARTA_KEY).len(), 1);
    assert!(run.stdout.contains("failed-permanent 1"), "{}", run.all());
}

#[test]
fn pipelined_transactions_end_in_the_states_of_their_replies() {
    // The relay offers PIPELINING: MAIL, RCPT and DATA go out in one write, and each reply
    // still counts for its own command, even after an earlier one in the group was refused.
    let server = SmtpServer::start(ServerOptions::default().pipelining().hook(
        smtp_server::first_of(vec![
            smtp_server::fail_rcpt(
                MARTA,
                "550 5.1.1 <marta.sjostrom@example.org>: Recipient address rejected: User unknown",
            ),
            smtp_server::fail_rcpt_times(
                "asa.oberg@example.se",
                1,
                "451 4.3.0 <asa.oberg@example.se>: Temporary lookup failure",
            ),
            smtp_server::drop_at_rcpt_times("per-erik.lindqvist@example.com", 1),
            smtp_server::drop_after_data("jons.akesson@example.se"),
            smtp_server::fail_data_for("goran.arlig@example.se", "554 5.7.1 Message refused"),
        ]),
    ));
    let env = example(&server);
    let run = env.run(&["-vv", "send", "--yes"]);
    run.expect_code(3);
    assert!(run.stderr.contains("(pipelined)"), "{}", run.all());
    assert_every_attempt_has_an_outcome(&env.journal());
    let st = states(&env);
    assert_eq!(st.len(), EXAMPLE_ROWS, "{st:?}");
    for (key, s) in &st {
        let want = match key.as_str() {
            MARTA_KEY | "1008" => "failed-permanent",
            "1006" => "unknown",
            _ => "sent",
        };
        assert_eq!(s, want, "{key}: {st:?}");
    }
    // The 451 and the dropped connection were retried.
    assert_eq!(events_for(&env, "failed", "1001").len(), 1);
    assert_eq!(events_for(&env, "failed", "1002").len(), 1);
    let refused = events_for(&env, "failed", MARTA_KEY);
    assert_eq!(refused[0]["code"], 550);
    assert_eq!(events_for(&env, "failed", "1008")[0]["code"], 554);
    // Received: all but the two refused and the one whose connection dropped after DATA.
    let received = rcpts(&server.received());
    assert_eq!(received.len(), EXAMPLE_ROWS - 3, "{received:?}");
    for gone in [MARTA, "goran.arlig@example.se", "jons.akesson@example.se"] {
        assert!(!received.contains(&gone.to_string()), "{gone}");
    }
}

#[test]
fn a_relay_that_refuses_a_second_ehlo_gets_one_command_at_a_time() {
    // utskick asks for PIPELINING with an EHLO of its own; a relay that refuses a repeated
    // EHLO keeps the first one, and the mailing goes out without pipelining.
    let ehlos: Arc<std::sync::Mutex<HashMap<usize, usize>>> = Arc::default();
    let seen = ehlos.clone();
    let server = SmtpServer::start(ServerOptions::default().pipelining().on(move |e, ctx| {
        if matches!(e, Event::Ehlo { .. }) {
            let mut seen = seen.lock().unwrap_or_else(|p| p.into_inner());
            let n = seen.entry(ctx.connection).or_default();
            *n += 1;
            if *n > 1 {
                return Action::reply("503 5.5.1 Error: duplicate EHLO");
            }
        }
        Action::Default
    }));
    let env = example(&server);
    let run = env.run(&["-vv", "send", "--yes"]);
    run.expect_code(0);
    assert!(!run.stderr.contains("(pipelined)"), "{}", run.all());
    assert!(run.stderr.contains("pipelining=false"), "{}", run.all());
    let st = states(&env);
    assert_eq!(st.len(), EXAMPLE_ROWS);
    assert!(st.values().all(|s| s == "sent"), "{st:?}");
    assert!(
        ehlos
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .all(|&n| n == 2),
        "every connection said EHLO twice"
    );
}

#[test]
fn pipelined_mail_from_refused_pauses_and_books_no_recipient() {
    // A refused MAIL FROM in a pipelined group: the RCPT and DATA replies after it are
    // read (and are refusals too), the run pauses, and no recipient is booked as failed.
    let server = SmtpServer::start(
        ServerOptions::default()
            .pipelining()
            .hook(smtp_server::fail_mail_times(1, "451 4.3.0 Try again later")),
    );
    let env = example(&server);
    let run = env.run(&["-vv", "send", "--yes"]);
    run.expect_code(0);
    assert!(run.stderr.contains("(pipelined)"), "{}", run.all());
    assert_every_attempt_has_an_outcome(&env.journal());
    assert!(
        env.events("failed").is_empty(),
        "{:?}",
        env.events("failed")
    );
    assert_eq!(env.events("deferred").len(), 1);
    let st = states(&env);
    assert_eq!(st.len(), EXAMPLE_ROWS);
    assert!(st.values().all(|s| s == "sent"), "{st:?}");
    let ids: BTreeSet<String> = server.received().iter().map(message_id).collect();
    assert_eq!(ids.len(), EXAMPLE_ROWS, "each once");
}

#[test]
fn rcpt_451_twice_then_accepted_is_sent_after_three_attempts() {
    let server = SmtpServer::start(ServerOptions::default().hook(smtp_server::fail_rcpt_times(
        MARTA,
        2,
        "451 4.3.0 <marta.sjostrom@example.org>: Temporary lookup failure",
    )));
    let env = example(&server);
    env.set("sending", "max_attempts", "3");
    send(&env, &[]).expect_code(0);
    let received = server.received();
    assert_eq!(received.len(), EXAMPLE_ROWS);
    assert_eq!(counts(&received)[MARTA], 1);
    assert_eq!(server.seen(&format!("RCPT:{MARTA}")), 3);
    let attempts: Vec<u64> = events_for(&env, "attempt", MARTA_KEY)
        .iter()
        .map(|e| e["attempt"].as_u64().expect("attempt number"))
        .collect();
    assert_eq!(attempts, [1, 2, 3]);
    let failed = events_for(&env, "failed", MARTA_KEY);
    assert_eq!(failed.len(), 2);
    assert!(
        failed
            .iter()
            .all(|f| f["class"] == "transient" && f["code"] == 451)
    );
    let st = states(&env);
    assert_eq!(st.len(), EXAMPLE_ROWS);
    assert!(st.values().all(|s| s == "sent"), "{st:?}");
}

#[test]
fn rcpt_451_always_is_failed_transient_after_max_attempts() {
    let server = SmtpServer::start(ServerOptions::default().hook(smtp_server::fail_rcpt(
        MARTA,
        "451 4.3.0 <marta.sjostrom@example.org>: Temporary lookup failure",
    )));
    let env = example(&server);
    env.set("sending", "max_attempts", "3");
    send(&env, &[]).expect_code(3);
    assert_eq!(server.seen(&format!("RCPT:{MARTA}")), 3);
    assert_eq!(server.received().len(), EXAMPLE_ROWS - 1);
    assert_eq!(events_for(&env, "attempt", MARTA_KEY).len(), 3);
    assert_eq!(events_for(&env, "failed", MARTA_KEY).len(), 3);
    assert_eq!(state(&env, MARTA_KEY), "failed-transient");
    let st = states(&env);
    assert_eq!(
        st.values().filter(|s| *s == "sent").count(),
        EXAMPLE_ROWS - 1
    );
}

#[test]
fn greeting_421_during_the_run_pauses_then_everyone_is_sent() {
    // The first connection (preflight's) takes one message and is then closed with a 421;
    // the next two are turned away at the greeting.
    let server = SmtpServer::start(ServerOptions::default().on(|e, ctx| {
        let busy = Action::reply("421 4.7.0 mx.test.invalid Too many connections, try again later");
        match e {
            Event::Greeting if (2..=3).contains(&ctx.connection) => busy,
            Event::Mail { .. } if ctx.connection == 1 && ctx.messages_on_connection >= 1 => busy,
            _ => Action::Default,
        }
    }));
    let env = example(&server);
    let run = send(&env, &[]);
    run.expect_code(0);
    assert_no_failures(&env);
    let received = server.received();
    assert_eq!(received.len(), EXAMPLE_ROWS);
    assert_eq!(
        rcpts(&received).iter().collect::<BTreeSet<_>>().len(),
        EXAMPLE_ROWS - 1,
        "one message each (two keys share an address)"
    );
    assert!(server.connections() >= 4, "reconnected after the 421s");
    let st = states(&env);
    assert_eq!(st.len(), EXAMPLE_ROWS);
    assert!(st.values().all(|s| s == "sent"), "{st:?}");
    assert_every_attempt_has_an_outcome(&env.journal());
    // The messages that found no connection had their attempts journaled ahead: each
    // such attempt is withdrawn, with the relay's reason, and the message sent later.
    let withdrawn = env.events("withdrawn");
    assert!(!withdrawn.is_empty(), "no attempt was withdrawn");
    for w in &withdrawn {
        assert!(
            w["reason"].as_str().is_some_and(|r| r.contains("421")),
            "{w}"
        );
    }
}

#[test]
fn greeting_421_on_the_first_connections_pauses_then_everyone_is_sent() {
    let server = greeting_421(1, 2);
    let env = example(&server);
    let run = send(&env, &[]);
    run.expect_code(0);
    assert_no_failures(&env);
    assert_eq!(server.received().len(), EXAMPLE_ROWS);
    let st = states(&env);
    assert_eq!(st.len(), EXAMPLE_ROWS);
    assert!(st.values().all(|s| s == "sent"), "{st:?}");
}

#[test]
fn rcpt_452_4_4_5_for_a_while_defers_and_fails_no_one() {
    // The first four RCPTs (server-wide) are refused for lack of storage.
    let server = SmtpServer::scripted(|e, ctx| {
        if e.kind() == "RCPT" && ctx.seen("RCPT") <= 4 {
            Action::reply("452 4.4.5 Insufficient system storage")
        } else {
            Action::Default
        }
    });
    let env = example(&server);
    let start = Instant::now();
    let run = send(&env, &[]);
    run.expect_code(0);
    assert_no_failures(&env);
    assert!(
        !env.events("deferred").is_empty(),
        "the relay's refusals are journaled as deferred"
    );
    let received = server.received();
    assert_eq!(received.len(), EXAMPLE_ROWS);
    let st = states(&env);
    assert_eq!(st.len(), EXAMPLE_ROWS);
    assert!(st.values().all(|s| s == "sent"), "{st:?}");
    // It paused (at least the shortest pause) rather than hammering on.
    assert!(start.elapsed() >= Duration::from_millis(200));
    assert_every_attempt_has_an_outcome(&env.journal());
}

#[test]
fn daily_quota_stops_cleanly_and_the_next_send_resumes_without_duplicates() {
    let quota = Arc::new(AtomicBool::new(true));
    let q = quota.clone();
    let server = SmtpServer::scripted(move |e, ctx| {
        if matches!(e, Event::Mail { .. }) && q.load(Ordering::SeqCst) && ctx.messages_total >= 5 {
            Action::reply("550 5.4.5 Daily user sending quota exceeded")
        } else {
            Action::Default
        }
    });
    let env = example(&server);
    env.set("sending", "concurrency", "1");
    env.set("sending", "when_limited", "\"stop\"");
    let run = send(&env, &[]);
    run.expect_code(3);
    assert_eq!(server.received().len(), 5);
    assert_no_failures(&env);
    let all = env.journal();
    assert_every_attempt_has_an_outcome(&all);
    let st = states(&env);
    let keys: Vec<String> = rows(&env).into_iter().map(|(k, _)| k).collect();
    for (i, key) in keys.iter().enumerate() {
        let s = st.get(key).map_or("pending", String::as_str);
        assert_eq!(s, if i < 5 { "sent" } else { "pending" }, "{key}");
    }
    // The one the quota refused has an attempt and a `deferred`. Attempts journaled ahead
    // (at most two per connection) are withdrawn: an attempt and a `withdrawn` each, back
    // to pending. The rest have no event.
    let with_events: BTreeSet<&str> = all.iter().filter_map(|e| e["key"].as_str()).collect();
    let withdrawn: BTreeSet<String> = env
        .events("withdrawn")
        .iter()
        .filter_map(|e| e["key"].as_str().map(str::to_string))
        .collect();
    assert!(withdrawn.len() <= 2, "{withdrawn:?}");
    for key in &withdrawn {
        let kinds: Vec<&str> = all
            .iter()
            .filter(|e| e["key"] == key.as_str())
            .filter_map(|e| e["event"].as_str())
            .collect();
        assert_eq!(kinds, ["attempt", "withdrawn"], "{key}");
    }
    assert_eq!(with_events.len(), 6 + withdrawn.len(), "{with_events:?}");
    assert_eq!(env.events("deferred").len(), 1);
    let end = env.events("end");
    assert!(
        end.last().expect("end event")["outcome"]
            .as_str()
            .is_some_and(|o| o.contains("quota")),
        "{end:?}"
    );

    // The next day: the relay takes everything again.
    quota.store(false, Ordering::SeqCst);
    send(&env, &[]).expect_code(0);
    let received = server.received();
    assert_eq!(received.len(), EXAMPLE_ROWS);
    let ids: BTreeSet<String> = received.iter().map(message_id).collect();
    assert_eq!(ids.len(), EXAMPLE_ROWS, "nobody received twice");
    let st = states(&env);
    assert_eq!(st.len(), EXAMPLE_ROWS);
    assert!(st.values().all(|s| s == "sent"), "{st:?}");
}

#[test]
fn daily_limit_stops_cleanly_and_a_later_send_resumes() {
    let server = SmtpServer::plain();
    let env = example(&server);
    env.set("sending", "concurrency", "1");
    env.set("sending", "daily_limit", "5");
    env.set("sending", "when_limited", "\"stop\"");
    let run = send(&env, &[]);
    run.expect_code(3);
    assert_eq!(server.received().len(), 5);
    assert_no_failures(&env);
    assert_every_attempt_has_an_outcome(&env.journal());
    let st = states(&env);
    assert_eq!(st.len(), 5, "the rest have no event: {st:?}");
    assert!(st.values().all(|s| s == "sent"));
    assert!(
        env.events("end")[0]["outcome"]
            .as_str()
            .is_some_and(|o| o.contains("daily_limit")),
        "{:?}",
        env.events("end")
    );
    // The same day: the budget is spent, nothing goes out.
    send(&env, &[]).expect_code(3);
    assert_eq!(server.received().len(), 5);
    // A larger budget: the rest, nobody twice.
    env.set("sending", "daily_limit", "100");
    send(&env, &[]).expect_code(0);
    let ids: BTreeSet<String> = server.received().iter().map(message_id).collect();
    assert_eq!(
        (server.received().len(), ids.len()),
        (EXAMPLE_ROWS, EXAMPLE_ROWS)
    );
}

#[test]
fn auth_535_exits_1_before_anyone_is_booked() {
    let server = SmtpServer::start(
        ServerOptions::default()
            .auth("utskick@example.se", "rätt-lösenord")
            .require_auth(),
    );
    let env = example(&server);
    env.set("smtp", "auth", "\"plain\"");
    env.set("smtp", "username", "\"utskick@example.se\"");
    env.set("smtp", "password_env", &format!("{PASSWORD_VAR:?}"));
    let run = env.run_env(&["send", "--yes"], &[(PASSWORD_VAR, "fel-lösenord")]);
    run.expect_code(1);
    assert!(run.stderr.contains("535"), "{}", run.all());
    assert!(server.received().is_empty());
    assert_eq!(server.seen("MAIL"), 0);
    assert!(env.events("run").is_empty(), "{:?}", env.journal());
    assert!(env.events("attempt").is_empty());

    // The right password: everyone, as that user.
    let run = env.run_env(&["send", "--yes"], &[(PASSWORD_VAR, "rätt-lösenord")]);
    run.expect_code(0);
    let received = server.received();
    assert_eq!(received.len(), EXAMPLE_ROWS);
    assert!(
        received
            .iter()
            .all(|r| r.auth_user.as_deref() == Some("utskick@example.se"))
    );
}

#[test]
fn connection_dropped_after_data_is_unknown_and_a_rerun_resends_the_same_message() {
    let server = SmtpServer::start(
        ServerOptions::default().hook(smtp_server::drop_after_data_times(MARTA, 1)),
    );
    let env = example(&server);
    let run = send(&env, &[]);
    run.expect_code(3);
    assert_eq!(
        server.seen(&format!("RCPT:{MARTA}")),
        1,
        "not retried in the run"
    );
    assert_eq!(server.received().len(), EXAMPLE_ROWS - 1);
    assert_eq!(state(&env, MARTA_KEY), "unknown");
    let unknown = events_for(&env, "unknown", MARTA_KEY);
    assert_eq!(unknown.len(), 1);
    assert!(events_for(&env, "failed", MARTA_KEY).is_empty());
    let id = unknown[0]["message_id"]
        .as_str()
        .expect("message_id")
        .to_string();
    assert!(run.stdout.contains("unknown 1"), "{}", run.all());

    send(&env, &[]).expect_code(0);
    let received = server.received();
    assert_eq!(received.len(), EXAMPLE_ROWS, "only the unknown one again");
    let marta: Vec<&Received> = received
        .iter()
        .filter(|r| r.rcpt_to[0].eq_ignore_ascii_case(MARTA))
        .collect();
    assert_eq!(marta.len(), 1);
    assert_eq!(message_id(marta[0]), id, "the same Message-ID");
    assert_eq!(state(&env, MARTA_KEY), "sent");
    assert!(states(&env).values().all(|s| s == "sent"));
}

#[test]
fn connection_dropped_at_rcpt_is_failed_transient_and_retried() {
    let server =
        SmtpServer::start(ServerOptions::default().hook(smtp_server::drop_at_rcpt_times(MARTA, 1)));
    let env = example(&server);
    send(&env, &[]).expect_code(0);
    let failed = events_for(&env, "failed", MARTA_KEY);
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0]["class"], "transient");
    assert!(events_for(&env, "unknown", MARTA_KEY).is_empty());
    assert_eq!(state(&env, MARTA_KEY), "sent");
    assert_eq!(counts(&server.received())[MARTA], 1);
    assert_eq!(server.received().len(), EXAMPLE_ROWS);
}

#[test]
fn per_session_421_at_mail_reconnects_and_fails_no_one() {
    let server = SmtpServer::start(ServerOptions::default().hook(
        smtp_server::per_connection_limit(3, "421 4.7.0 Too many messages for this session"),
    ));
    let env = example(&server);
    let run = send(&env, &[]);
    run.expect_code(0);
    assert_no_failures(&env);
    let received = server.received();
    assert_eq!(received.len(), EXAMPLE_ROWS);
    let ids: BTreeSet<String> = received.iter().map(message_id).collect();
    assert_eq!(ids.len(), EXAMPLE_ROWS);
    assert!(server.connections() >= 4);
    assert!(states(&env).values().all(|s| s == "sent"));
    assert_every_attempt_has_an_outcome(&env.journal());
}

#[test]
fn rcpt_reply_slower_than_the_timeout_is_failed_transient_then_retried() {
    let server = SmtpServer::scripted(|e, ctx| {
        if e.is_rcpt(MARTA) && ctx.times_seen() == 1 {
            Action::delay(Duration::from_secs(3), Action::Default)
        } else {
            Action::Default
        }
    });
    let env = example(&server);
    env.set("smtp", "timeout_secs", "1");
    let run = send(&env, &[]);
    run.expect_code(0);
    let failed = events_for(&env, "failed", MARTA_KEY);
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0]["class"], "transient");
    assert_eq!(events_for(&env, "attempt", MARTA_KEY).len(), 2);
    assert_eq!(state(&env, MARTA_KEY), "sent");
    assert_eq!(counts(&server.received())[MARTA], 1);
    assert_eq!(server.received().len(), EXAMPLE_ROWS);
}

#[test]
fn hang_after_data_is_unknown_within_about_the_timeout() {
    let server =
        SmtpServer::start(ServerOptions::default().hook(smtp_server::hang_after_data(MARTA)));
    let env = example(&server);
    env.set("smtp", "timeout_secs", "1");
    let start = Instant::now();
    let run = send(&env, &[]);
    run.expect_code(3);
    assert!(
        start.elapsed() < Duration::from_secs(15),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(state(&env, MARTA_KEY), "unknown");
    assert_eq!(server.seen(&format!("RCPT:{MARTA}")), 1, "not retried");
    let attempt = events_for(&env, "attempt", MARTA_KEY);
    let unknown = events_for(&env, "unknown", MARTA_KEY);
    assert_eq!((attempt.len(), unknown.len()), (1, 1));
    let took = ts(&unknown[0])
        .duration_since(ts(&attempt[0]))
        .expect("outcome after attempt");
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(4),
        "unknown after {took:?}"
    );
    let st = states(&env);
    assert_eq!(
        st.values().filter(|s| *s == "sent").count(),
        EXAMPLE_ROWS - 1
    );
}

#[test]
fn starttls_with_the_test_ca_sends_encrypted() {
    let server = SmtpServer::start(
        ServerOptions::default().starttls_required(tls::server_config(ServerCert::Valid)),
    );
    let env = starttls_env(&server, true);
    send(&env, &[]).expect_code(0);
    let received = server.received();
    assert_eq!(received.len(), EXAMPLE_ROWS);
    assert!(received.iter().all(|r| r.tls));
}

#[test]
fn starttls_certificate_for_another_host_exits_1() {
    let server = SmtpServer::start(
        ServerOptions::default().starttls(tls::server_config(ServerCert::WrongHost)),
    );
    let env = starttls_env(&server, true);
    let run = send(&env, &[]);
    assert_refused_before_sending(&run, &env, &server, &["certificate", "tls", "secure"]);
}

#[test]
fn starttls_self_signed_certificate_without_ca_file_exits_1() {
    let server = SmtpServer::start(
        ServerOptions::default().starttls(tls::server_config(ServerCert::SelfSigned)),
    );
    let env = starttls_env(&server, false);
    let run = send(&env, &[]);
    assert_refused_before_sending(&run, &env, &server, &["certificate", "tls", "secure"]);
}

#[test]
fn starttls_refused_454_exits_1() {
    let server = SmtpServer::start(
        ServerOptions::default()
            .starttls(tls::server_config(ServerCert::Valid))
            .on(|e, _| {
                if *e == Event::StartTls {
                    Action::StartTlsRefuse
                } else {
                    Action::Default
                }
            }),
    );
    let env = starttls_env(&server, true);
    let run = send(&env, &[]);
    assert_refused_before_sending(&run, &env, &server, &["starttls", "454"]);
}

#[test]
fn starttls_required_but_not_offered_exits_1() {
    let server = SmtpServer::plain();
    let env = starttls_env(&server, true);
    let run = send(&env, &[]);
    assert_refused_before_sending(&run, &env, &server, &["starttls"]);
    assert_eq!(server.seen("STARTTLS"), 0);
}

// ----- 3. resume and guards ------------------------------------------------------------

#[test]
fn a_second_send_after_a_full_send_has_nothing_to_do() {
    let server = SmtpServer::plain();
    let env = example(&server);
    send(&env, &[]).expect_code(0);
    assert_eq!(server.received().len(), EXAMPLE_ROWS);
    let run = send(&env, &[]);
    run.expect_code(0);
    assert!(run.all().contains("nothing to do"), "{}", run.all());
    assert_eq!(server.received().len(), EXAMPLE_ROWS);
    assert_eq!(env.events("run").len(), 1, "no second run booked");
}

#[test]
fn changed_templates_stop_send_unless_allowed() {
    let server = SmtpServer::plain();
    let env = example(&server);
    send(&env, &["--limit", "2"]).expect_code(0);
    assert_eq!(server.received().len(), 2);
    let mut body = env.read("templates/body.txt");
    body.push_str("\nPS. Ett tillägg efter första utskicket.\n");
    env.write("templates/body.txt", body);

    let run = send(&env, &[]);
    run.expect_code(2);
    assert!(
        run.stderr.contains("--allow-changed-templates"),
        "{}",
        run.all()
    );
    assert_eq!(server.received().len(), 2, "nothing sent");
    assert_eq!(env.events("run").len(), 1);

    send(&env, &["--allow-changed-templates"]).expect_code(0);
    let received = server.received();
    assert_eq!(received.len(), EXAMPLE_ROWS);
    // The rest got the new text: the Swedish ones; the English template did not change.
    for r in &received[2..] {
        let text = r.text();
        let added = text.contains("Ett till=C3=A4gg") || text.contains("Ett tillägg");
        assert_eq!(
            added,
            text.contains("Content-Language: sv"),
            "only the Swedish text changed:\n{text}"
        );
    }
    assert!(states(&env).values().all(|s| s == "sent"));
}

#[test]
fn a_changed_csv_is_allowed_and_reported() {
    let server = SmtpServer::plain();
    let env = example(&server);
    send(&env, &["--limit", "5"]).expect_code(0);
    let csv = env.read("recipients.example.csv");
    assert!(csv.contains("goran.arlig@example.se"));
    env.write(
        "recipients.example.csv",
        csv.replace("goran.arlig@example.se", "goran.arlig@example.com"),
    );
    let run = send(&env, &[]);
    run.expect_code(0);
    assert!(
        run.all().to_lowercase().contains("csv has changed"),
        "{}",
        run.all()
    );
    let received = server.received();
    assert_eq!(received.len(), EXAMPLE_ROWS);
    let c = counts(&received);
    assert_eq!(c.get("goran.arlig@example.com"), Some(&1));
    assert_eq!(c.get("goran.arlig@example.se"), None);
    assert_eq!(
        events_for(&env, "sent", "1008")[0]["email"],
        "goran.arlig@example.com"
    );
    assert!(states(&env).values().all(|s| s == "sent"));
}

#[test]
fn send_without_yes_and_without_a_terminal_refuses() {
    let server = SmtpServer::plain();
    let env = example(&server);
    let run = env.run(&["send"]);
    run.expect_code(2);
    assert!(run.stderr.contains("--yes"), "{}", run.all());
    assert!(server.received().is_empty());
    assert_eq!(server.seen("MAIL"), 0);
    assert!(env.events("run").is_empty() && env.events("attempt").is_empty());
}

#[test]
fn test_to_sends_only_to_the_tester_and_changes_no_state() {
    let server = SmtpServer::plain();
    let env = example(&server);
    send(&env, &["--test-to", "me@example.se", "--limit", "3"]).expect_code(0);
    let received = server.received();
    assert_eq!(received.len(), 3);
    for r in &received {
        assert_eq!(r.rcpt_to, ["me@example.se"]);
        let to = r.header("to").expect("To");
        assert!(to.contains("me@example.se"), "{to}");
        assert!(message_id(r).contains(".test."), "{}", message_id(r));
    }
    let journal = env.journal();
    let tests: Vec<&serde_json::Value> = journal
        .iter()
        .filter(|e| matches!(e["event"].as_str(), Some("attempt" | "sent")))
        .collect();
    assert_eq!(tests.len(), 6);
    assert!(tests.iter().all(|e| e["test"] == true), "{tests:?}");
    assert!(env.events("run").iter().all(|e| e["test"] == true));
    assert!(states(&env).is_empty(), "{:?}", states(&env));

    // The real send still sends everyone.
    send(&env, &[]).expect_code(0);
    let received = server.received();
    assert_eq!(received.len(), 3 + EXAMPLE_ROWS);
    assert!(
        received[3..]
            .iter()
            .all(|r| r.rcpt_to[0] != "me@example.se" && !message_id(r).contains(".test."))
    );
    let st = states(&env);
    assert_eq!(st.len(), EXAMPLE_ROWS);
    assert!(st.values().all(|s| s == "sent"));
}

#[test]
fn a_second_send_while_the_first_holds_the_lock_exits_1() {
    // The first RCPT waits a few seconds: the first send holds the journal meanwhile.
    let server = SmtpServer::scripted(|e, ctx| {
        if e.kind() == "RCPT" && ctx.seen("RCPT") == 1 {
            Action::delay(Duration::from_secs(3), Action::Default)
        } else {
            Action::Default
        }
    });
    let env = example(&server);
    let first = Spawned::start(env.cmd(&["send", "--yes"]));
    let pid = first.id();
    wait_until(Duration::from_secs(20), "the first RCPT", || {
        server.seen("RCPT") >= 1
    });
    let second = send(&env, &[]);
    second.expect_code(1);
    let want = format!("is locked by another utskick (pid {pid})");
    assert!(
        second.stderr.contains(&want) && second.stderr.contains("journal "),
        "{want:?} in {}",
        second.all()
    );
    assert!(
        second.stderr.contains("delivery-log.jsonl"),
        "{}",
        second.stderr
    );
    let first = first.wait(Duration::from_secs(30));
    first.expect_code(0);
    let received = server.received();
    assert_eq!(received.len(), EXAMPLE_ROWS);
    let ids: BTreeSet<String> = received.iter().map(message_id).collect();
    assert_eq!(ids.len(), EXAMPLE_ROWS);
    assert_eq!(env.events("run").len(), 1);
}

#[test]
fn retry_redelivers_only_failed_transient_and_unknown() {
    let broken = Arc::new(AtomicBool::new(true));
    let b = broken.clone();
    let server = SmtpServer::scripted(move |e, ctx| {
        if !b.load(Ordering::SeqCst) {
            return Action::Default;
        }
        match e {
            Event::Rcpt { to } if to.eq_ignore_ascii_case(MARTA) => {
                Action::reply("451 4.3.0 Temporary lookup failure")
            }
            Event::Rcpt { to } if to.eq_ignore_ascii_case("asa.oberg@example.se") => {
                Action::reply("550 5.1.1 User unknown")
            }
            Event::EndOfData { .. } if ctx.has_rcpt("anna-lena.ek@example.com") => Action::Drop,
            _ => Action::Default,
        }
    });
    let env = example(&server);
    env.set("sending", "max_attempts", "1");
    send(&env, &["--limit", "8"]).expect_code(3);
    assert_eq!(state(&env, MARTA_KEY), "failed-transient");
    assert_eq!(state(&env, "1001"), "failed-permanent");
    assert_eq!(state(&env, "1007"), "unknown");
    assert_eq!(server.received().len(), 5);

    broken.store(false, Ordering::SeqCst);
    env.run(&["retry", "--yes"]).expect_code(0);
    let received = server.received();
    assert_eq!(received.len(), 7, "only 1003 and 1007 again");
    let again = rcpts(&received[5..]);
    assert!(again.contains(&MARTA.to_string()));
    assert!(again.contains(&"anna-lena.ek@example.com".to_string()));
    let st = states(&env);
    assert_eq!(st.get(MARTA_KEY).map(String::as_str), Some("sent"));
    assert_eq!(st.get("1007").map(String::as_str), Some("sent"));
    assert_eq!(st.get("1001").map(String::as_str), Some("failed-permanent"));
    assert_eq!(st.len(), 8, "retry never starts a pending one: {st:?}");
}

#[test]
fn a_journal_path_that_is_a_folder_is_bad_input() {
    let server = SmtpServer::plain();
    let env = example(&server);
    std::fs::create_dir(env.path("delivery-log.jsonl")).expect("mkdir");
    let run = send(&env, &[]);
    run.expect_code(2);
    assert!(run.stderr.contains("delivery-log.jsonl"), "{}", run.all());
    assert!(server.received().is_empty());
    assert_eq!(server.connections(), 0);
}

#[test]
fn a_malformed_middle_journal_line_is_bad_input_naming_its_line() {
    let server = SmtpServer::plain();
    let env = example(&server);
    send(&env, &["--limit", "2"]).expect_code(0);
    let text = env.read("delivery-log.jsonl");
    let mut lines: Vec<&str> = text.lines().collect();
    assert!(lines.len() >= 4);
    lines.insert(2, "{\"event\":\"sent\",\"ts\":");
    env.write("delivery-log.jsonl", lines.join("\n") + "\n");
    let run = send(&env, &[]);
    run.expect_code(2);
    assert!(
        run.stderr.contains("delivery-log.jsonl:3:"),
        "names line 3: {}",
        run.all()
    );
    assert_eq!(server.received().len(), 2, "nothing sent");
}

#[test]
fn a_torn_journal_tail_is_cut_with_a_warning_and_send_goes_on() {
    let server = SmtpServer::plain();
    let env = example(&server);
    send(&env, &["--limit", "2"]).expect_code(0);
    let mut bytes = std::fs::read(env.path("delivery-log.jsonl")).expect("journal");
    bytes.extend_from_slice(b"{\"event\":\"attempt\",\"ts\":\"2026-");
    env.write("delivery-log.jsonl", bytes);
    let run = send(&env, &[]);
    run.expect_code(0);
    assert!(run.stderr.contains("warning"), "{}", run.all());
    assert_eq!(server.received().len(), EXAMPLE_ROWS);
    // Every line is whole again.
    let st = states(&env);
    assert_eq!(st.len(), EXAMPLE_ROWS);
    assert!(st.values().all(|s| s == "sent"));
}

#[test]
fn archive_keeps_every_delivered_message_privately_and_exactly() {
    let server = SmtpServer::plain();
    let env = example(&server);
    env.set("journal", "archive", "\"sent\"");
    send(&env, &[]).expect_code(0);
    let received = server.received();
    assert_eq!(received.len(), EXAMPLE_ROWS);
    let dir = env.path("sent");
    let dir_mode = std::fs::metadata(&dir).expect("sent/").permissions().mode() & 0o777;
    assert_eq!(dir_mode, 0o700, "sent/ is private: {dir_mode:o}");
    let files: Vec<std::path::PathBuf> = std::fs::read_dir(&dir)
        .expect("read sent/")
        .map(|e| e.expect("entry").path())
        .collect();
    assert_eq!(files.len(), EXAMPLE_ROWS, "{files:?}");
    let by_id: HashMap<String, &Received> = received.iter().map(|r| (message_id(r), r)).collect();
    // Which key each Message-ID belongs to, from the journal.
    let key_of: HashMap<String, String> = env
        .events("sent")
        .iter()
        .map(|e| {
            (
                e["message_id"].as_str().expect("id").to_string(),
                e["key"].as_str().expect("key").to_string(),
            )
        })
        .collect();
    for f in &files {
        assert_eq!(f.extension().and_then(|x| x.to_str()), Some("eml"));
        let mode = std::fs::metadata(f).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}: {mode:o}", f.display());
        let archived = std::fs::read(f).expect("read archive");
        let text = String::from_utf8_lossy(&archived);
        let id = text
            .split("\r\n")
            .find_map(|l| l.strip_prefix("Message-ID: "))
            .expect("Message-ID in the archived message")
            .to_string();
        let got = &by_id.get(&id).expect("the server got this message").data;
        assert!(
            archived == *got,
            "{}: {} archived bytes, {} received; they end {:?} / {:?}",
            f.display(),
            archived.len(),
            got.len(),
            String::from_utf8_lossy(&archived[archived.len().saturating_sub(8)..]),
            String::from_utf8_lossy(&got[got.len().saturating_sub(8)..]),
        );
        let stem = f.file_stem().and_then(|s| s.to_str()).expect("stem");
        let key = key_of.get(&id).expect("a recipient's message");
        assert!(
            stem.starts_with(&format!("{key}-")),
            "{stem}: not named by key {key}"
        );
    }
}

// ----- 4. concurrency and rate ---------------------------------------------------------

#[test]
fn concurrency_4_never_opens_more_than_4_connections() {
    let server = SmtpServer::start(
        ServerOptions::default().hook(smtp_server::delay("EOD", Duration::from_millis(60))),
    );
    let env = example(&server);
    write_generated_csv(&env, 40);
    env.set("sending", "concurrency", "4");
    send(&env, &[]).expect_code(0);
    assert_eq!(server.received().len(), 40);
    let peak = server.peak_connections();
    assert!(peak <= 4, "peak {peak}");
    assert!(
        peak >= 2,
        "the connections were used in parallel (peak {peak})"
    );
}

#[test]
fn rate_20_per_second_spreads_20_messages_over_about_a_second() {
    let server = SmtpServer::plain();
    let env = example(&server);
    write_generated_csv(&env, 20);
    env.set("sending", "rate", "\"20/s\"");
    env.set("sending", "burst", "1");
    let run = send(&env, &[]);
    run.expect_code(0);
    let mut at: Vec<Instant> = server.received().iter().map(|r| r.at).collect();
    assert_eq!(at.len(), 20);
    at.sort();
    let span = at[19] - at[0];
    assert!(span >= Duration::from_millis(850), "20 at 20/s in {span:?}");
    let mut gaps: Vec<Duration> = at.windows(2).map(|w| w[1] - w[0]).collect();
    gaps.sort();
    assert!(
        gaps[gaps.len() / 2] >= Duration::from_millis(45),
        "median gap {:?} ({gaps:?})",
        gaps[gaps.len() / 2]
    );
}

// ----- 5. crash safety -----------------------------------------------------------------

#[test]
fn sigkill_at_any_moment_loses_nothing_and_resends_only_unknowns() {
    enum KillAt {
        After(Duration),
        /// Once the server got this many more messages in this run.
        AfterReceived(usize),
    }
    let server = SmtpServer::plain();
    let env = example(&server);
    let rows = write_generated_csv(&env, 2000);
    env.set("sending", "rate", "\"100000/s\"");
    // More connections: more messages under way at each kill, and a shorter test.
    env.set("sending", "concurrency", "16");
    env.set("smtp", "timeout_secs", "10");

    let plan = [
        KillAt::After(Duration::from_millis(50)),
        KillAt::After(Duration::from_millis(300)),
        KillAt::AfterReceived(30),
        KillAt::After(Duration::from_millis(800)),
        KillAt::AfterReceived(400),
    ];
    // After each kill: how many messages the server had, and the journal's states.
    let mut snapshots: Vec<(usize, BTreeMap<String, String>)> = Vec::new();
    // Kills that hit a run while messages were going out.
    let mut mid_sending = 0;
    let mut finished = false;
    for kill in plan {
        let before = server.seen("EOD");
        let mut child = Spawned::start(env.cmd(&["send", "--yes"]));
        let start = Instant::now();
        let mut exited = None;
        loop {
            if let Some(code) = child.try_wait() {
                exited = Some(code);
                break;
            }
            let due = match kill {
                KillAt::After(d) => start.elapsed() >= d,
                KillAt::AfterReceived(n) => server.seen("EOD") >= before + n,
            };
            if due {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "the run made no progress"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        if let Some(code) = exited {
            let run = child.wait(Duration::from_secs(1));
            assert_eq!(code, 0, "{}", run.all());
            finished = true;
            break;
        }
        let run = child.kill();
        assert_eq!(run.code, -1, "killed by SIGKILL: {}", run.all());
        // Let the server finish reading what the client wrote before it died.
        std::thread::sleep(Duration::from_millis(150));
        let after = server.received().len();
        if server.seen("EOD") > before {
            mid_sending += 1;
        }
        snapshots.push((after, states_of(&journal_tolerant(&env))));
    }
    for (i, (n, st)) in snapshots.iter().enumerate() {
        eprintln!(
            "kill {i}: {n} received, journal: {} sent, {} unknown",
            st.values().filter(|s| *s == "sent").count(),
            st.values().filter(|s| *s == "unknown").count()
        );
    }
    let mut reruns = 0;
    while !finished {
        reruns += 1;
        assert!(reruns <= 5, "send did not finish after {reruns} reruns");
        let run = Spawned::start(env.cmd(&["send", "--yes"])).wait(Duration::from_secs(120));
        assert!(
            run.code == 0 || run.code == 3,
            "unexpected exit {}",
            run.all()
        );
        finished = run.code == 0;
    }
    assert!(
        mid_sending >= 2,
        "at least two kills hit a run while messages were going out ({mid_sending})"
    );

    let received = server.received();
    let emails: Vec<String> = rcpts(&received);
    let mut times: HashMap<&str, usize> = HashMap::new();
    for e in &emails {
        *times.entry(e.as_str()).or_insert(0) += 1;
    }
    let final_states = states_of(&journal_tolerant(&env));
    // A recipient received more than once got the very same message each time.
    let mut ids: HashMap<&str, BTreeSet<String>> = HashMap::new();
    for r in &received {
        ids.entry(r.rcpt_to[0].as_str())
            .or_default()
            .insert(message_id(r));
    }
    assert!(
        ids.values().all(|s| s.len() == 1),
        "one Message-ID per recipient"
    );
    for (key, email) in &rows {
        let n = times.get(email.as_str()).copied().unwrap_or(0);
        assert!(n >= 1, "{key} <{email}> was never received");
        // A second reception only for a recipient the journal left `unknown` at a kill.
        let unknown_at_kills = snapshots
            .iter()
            .filter(|(_, s)| s.get(key).map(String::as_str) == Some("unknown"))
            .count();
        assert!(
            n <= 1 + unknown_at_kills,
            "{key} received {n} times but unknown at only {unknown_at_kills} kill(s)"
        );
        assert_eq!(
            final_states.get(key).map(String::as_str),
            Some("sent"),
            "{key}"
        );
    }
    // Nobody the journal said `sent` at a kill was received again after it.
    for (i, (len, st)) in snapshots.iter().enumerate() {
        let after: BTreeSet<&str> = emails[*len..].iter().map(String::as_str).collect();
        for (key, email) in &rows {
            if st.get(key).map(String::as_str) == Some("sent") {
                assert!(
                    !after.contains(email.as_str()),
                    "{key} was sent before kill {i} and received again after it"
                );
            }
        }
    }
    // The journal is whole again (any torn tail was cut), and in the run that finished
    // every attempt has its outcome.
    let journal = env.journal();
    let last_run = env.events("run").last().expect("a run")["run"].clone();
    let last: Vec<serde_json::Value> = journal
        .into_iter()
        .filter(|e| e["run"] == last_run)
        .collect();
    assert_every_attempt_has_an_outcome(&last);
    assert_eq!(
        last.last().map(|e| e["event"].clone()),
        Some(serde_json::json!("end"))
    );
}

#[test]
fn ctrl_c_finishes_what_is_under_way_and_exits_130() {
    let server = SmtpServer::start(
        ServerOptions::default().hook(smtp_server::delay("EOD", Duration::from_millis(250))),
    );
    let env = example(&server);
    env.set("sending", "concurrency", "2");
    let child = Spawned::start(env.cmd(&["send", "--yes"]));
    wait_until(Duration::from_secs(20), "two messages", || {
        server.received().len() >= 2
    });
    let pid = i32::try_from(child.id()).expect("pid");
    // SAFETY: plain kill(2) on the child we spawned (still running: it was not reaped).
    let rc = unsafe { libc::kill(pid, libc::SIGINT) };
    assert_eq!(rc, 0, "kill -INT");
    let run = child.wait(Duration::from_secs(20));
    run.expect_code(130);
    assert!(run.all().contains("interrupted"), "{}", run.all());
    assert!(run.stdout.contains("sent "), "summary: {}", run.all());
    assert!(run.stdout.contains("(of 12)"), "summary: {}", run.all());
    let after_interrupt = server.received().len();
    assert!(after_interrupt < EXAMPLE_ROWS, "it stopped early");
    let journal = env.journal();
    let end = env.events("end");
    assert_eq!(end.len(), 1);
    assert_eq!(end[0]["outcome"], "interrupted");
    // Every attempt has its outcome (the run waited for those under way), or the
    // recipient is resent by the next send.
    let st = states(&env);
    let unknown: BTreeSet<String> = st
        .iter()
        .filter(|(_, s)| *s == "unknown")
        .map(|(k, _)| k.clone())
        .collect();
    if unknown.is_empty() {
        assert_every_attempt_has_an_outcome(&journal);
    }
    let sent_before: BTreeSet<String> = st
        .iter()
        .filter(|(_, s)| *s == "sent")
        .map(|(k, _)| k.clone())
        .collect();
    assert_eq!(sent_before.len(), after_interrupt);
    // Attempts journaled ahead for messages that never went out are withdrawn: those
    // recipients are pending again, for the journal's reader (`status`) too, and the
    // server never saw their messages.
    let received_ids: BTreeSet<String> = server.received().iter().map(message_id).collect();
    let withdrawn = env.events("withdrawn");
    assert!(!withdrawn.is_empty(), "attempts were journaled ahead");
    for w in &withdrawn {
        let key = w["key"].as_str().expect("key");
        assert_eq!(
            st.get(key).map_or("pending", String::as_str),
            "pending",
            "{key}"
        );
        let id = w["message_id"].as_str().expect("message_id");
        assert!(
            !received_ids.contains(id),
            "{id} was withdrawn but went out"
        );
    }
    let status = env.run(&["status", "--json"]);
    status.expect_code(0);
    let status: serde_json::Value = serde_json::from_str(&status.stdout).expect("status JSON");
    let count = |state: &str| status["counts"][state].as_u64().unwrap_or(0) as usize;
    assert_eq!(count("sent"), after_interrupt, "{status}");
    assert_eq!(count("unknown"), unknown.len(), "{status}");
    assert_eq!(
        count("pending"),
        EXAMPLE_ROWS - after_interrupt - unknown.len(),
        "{status}"
    );

    send(&env, &[]).expect_code(0);
    let received = server.received();
    let ids: Vec<String> = received.iter().map(message_id).collect();
    let distinct: BTreeSet<&String> = ids.iter().collect();
    assert_eq!(distinct.len(), EXAMPLE_ROWS, "everyone, in the end");
    assert!(
        ids.len() - distinct.len() <= unknown.len(),
        "nobody twice except one left unknown by the interrupt"
    );
    assert!(states(&env).values().all(|s| s == "sent"));
}

#[test]
fn ctrl_c_while_waiting_for_the_rate_limit_exits_130_at_once() {
    let server = SmtpServer::plain();
    let env = example(&server);
    env.set("sending", "rate", "\"1/min\"");
    let child = Spawned::start(env.cmd(&["send", "--yes"]));
    wait_until(Duration::from_secs(20), "the first message", || {
        !server.received().is_empty()
    });
    // Let the journal get the outcome, then interrupt the 60 s wait for the next one.
    wait_until(Duration::from_secs(5), "the first outcome", || {
        journal_tolerant(&env).iter().any(|e| e["event"] == "sent")
    });
    let pid = i32::try_from(child.id()).expect("pid");
    let start = Instant::now();
    // SAFETY: plain kill(2) on the child we spawned (still running: it was not reaped).
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
    let run = child.wait(Duration::from_secs(20));
    run.expect_code(130);
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "left at once: {:?}",
        start.elapsed()
    );
    assert_eq!(server.received().len(), 1);
    let st = states(&env);
    assert_eq!(st.len(), 1, "the rest have no event: {st:?}");
    assert_every_attempt_has_an_outcome(&env.journal());
    assert_eq!(env.events("end")[0]["outcome"], "interrupted");
}

#[test]
fn an_unreachable_relay_exits_1_before_anyone_is_booked() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let env = TestEnv::example();
    env.relay(port);
    let run = send(&env, &[]);
    run.expect_code(1);
    assert_eq!(error_lines(&run).len(), 1, "{}", run.all());
    assert!(env.events("run").is_empty() && env.events("attempt").is_empty());
}

#[test]
fn a_refused_sender_stops_the_run_and_books_no_recipient_as_failed() {
    // A relay that will not take our From address (a login that may not send as it) must
    // not turn every recipient into failed-permanent, which `send` would never redeliver.
    let refuse = Arc::new(AtomicBool::new(true));
    let r = refuse.clone();
    let server = SmtpServer::scripted(move |e, _| {
        if matches!(e, Event::Mail { .. }) && r.load(Ordering::SeqCst) {
            Action::reply(
                "553 5.7.1 <dataskydd@example.se>: Sender address rejected: not owned by user",
            )
        } else {
            Action::Default
        }
    });
    let env = example(&server);
    let run = send(&env, &[]);
    run.expect_code(1);
    assert!(run.all().contains("refuses the sender"), "{}", run.all());
    assert_no_failures(&env);
    assert!(server.received().is_empty());
    let deferred = env.events("deferred").len();
    assert!(
        (1..=4).contains(&deferred),
        "at most one try per connection before the stop: {deferred}"
    );

    // The sender is fixed on the relay's side: the next send delivers to everyone.
    refuse.store(false, Ordering::SeqCst);
    send(&env, &[]).expect_code(0);
    assert_eq!(server.received().len(), EXAMPLE_ROWS);
}

#[test]
fn a_row_whose_message_does_not_build_is_named_and_not_sent_with_skip_invalid() {
    let server = SmtpServer::plain();
    let env = example(&server);
    // A template error for one customer only: preflight lists it, --skip-invalid sends the
    // others, and the send names the one it left out instead of skipping it silently.
    let body = env.read("templates/body.txt");
    env.write(
        "templates/body.txt",
        format!(
            "{{% if recipient.customer_id == \"1003\" %}}{{{{ no_such_value }}}}{{% endif %}}{body}"
        ),
    );
    let run = env.run(&["send", "--yes", "--skip-invalid"]);
    // Everyone the run could take on is sent: the row preflight refused is not one of them.
    run.expect_code(0)
        .expect_stderr("error: 1003: its message could not be built, so it was not sent");
    assert_eq!(server.received().len(), 11, "{}", run.all());
    let latest = env.latest();
    assert_eq!(latest.get("1003"), None, "{latest:?}");
    assert_eq!(latest.values().filter(|s| *s == "sent").count(), 11);
}
