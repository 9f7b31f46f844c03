//! Finishing a mailing from the journal: `status`, `retry`, `retry --permanent`, the
//! follow-up list and the report (issue 4), through real SMTP servers on loopback, and
//! hand-made journals for the edge cases.

use std::os::unix::fs::PermissionsExt;

use crate::support::smtp_server::{self, SmtpServer};
use crate::support::testenv::TestEnv;

fn status_json(env: &TestEnv) -> serde_json::Value {
    let run = env.run(&["status", "--json"]);
    run.expect_code(0);
    serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("status --json: {e}\n{}", run.stdout))
}

fn count(status: &serde_json::Value, state: &str) -> u64 {
    status["counts"][state].as_u64().unwrap_or(0)
}

#[test]
fn first_send_then_status_retry_and_retry_permanent() {
    let env = TestEnv::example();
    // 1002 gets 550 (a typo in the address), 1003 a 451 every time in this run, 1004 a
    // connection dropped after DATA.
    let first = SmtpServer::start(smtp_server::ServerOptions::default().hook(smtp_server::first_of(vec![
        smtp_server::fail_rcpt("per-erik.lindqvist@example.com", "550 5.1.1 <per-erik.lindqvist@example.com>: Recipient address rejected: User unknown"),
        smtp_server::fail_rcpt("marta.sjostrom@example.org", "451 4.3.0 Temporary lookup failure"),
        smtp_server::drop_after_data("familjen.holm@example.org"),
    ])));
    env.relay(first.port());
    let addresses = env.example_addresses();
    assert!(
        addresses.contains(&"per-erik.lindqvist@example.com".to_string()),
        "{addresses:?}"
    );
    let run = env.run(&["send", "--yes"]);
    run.expect_code(3);
    let states = env.latest();
    assert_eq!(states["1002"], "failed-permanent");
    assert_eq!(states["1003"], "failed-transient");
    // 1004 and 1005 share the household address: the drop hits the first message for it;
    // the other one goes over a new connection and is dropped too.
    assert_eq!(states["1004"], "unknown");
    let status = status_json(&env);
    assert_eq!(count(&status, "failed-permanent"), 1);
    assert_eq!(count(&status, "failed-transient"), 1);
    assert!(count(&status, "unknown") >= 1);
    let not_sent = status["not_sent"].as_array().expect("not_sent");
    let p = not_sent
        .iter()
        .find(|n| n["key"] == "1002")
        .expect("1002 listed");
    assert_eq!(p["code"], 550);
    assert!(
        p["reason"]
            .as_str()
            .expect("reason")
            .contains("User unknown")
    );
    let text = env.run(&["status"]);
    text.expect_code(0);
    assert!(
        text.stdout.contains("1002") && text.stdout.contains("failed-permanent"),
        "{}",
        text.stdout
    );
    let received_first: Vec<String> = first
        .received()
        .iter()
        .flat_map(|r| r.rcpt_to.clone())
        .collect();
    drop(first);

    // The relay has recovered: retry takes the transient and unknown ones, not the 550.
    let second = SmtpServer::plain();
    env.relay(second.port());
    let run = env.run(&["retry", "--yes"]);
    run.expect_code(0);
    let got: Vec<String> = second
        .received()
        .iter()
        .flat_map(|r| r.rcpt_to.clone())
        .collect();
    assert!(
        got.contains(&"marta.sjostrom@example.org".to_string()),
        "{got:?}"
    );
    assert!(
        got.contains(&"familjen.holm@example.org".to_string()),
        "{got:?}"
    );
    assert!(
        !got.contains(&"per-erik.lindqvist@example.com".to_string()),
        "{got:?}"
    );
    // Nobody already sent got a second message.
    for addr in &got {
        assert!(
            !received_first.contains(addr) || addr == "familjen.holm@example.org",
            "{addr} was received in the first run and again in the retry"
        );
    }
    let states = env.latest();
    assert_eq!(states["1003"], "sent");
    assert_eq!(states["1004"], "sent");
    assert_eq!(states["1002"], "failed-permanent");
    // The unknown one went out again with the same Message-ID.
    let ids: Vec<String> = env
        .journal()
        .iter()
        .filter(|e| e["key"] == "1004" && e["event"] == "attempt")
        .map(|e| e["message_id"].as_str().expect("id").to_string())
        .collect();
    assert!(
        ids.len() >= 2 && ids.iter().all(|i| *i == ids[0]),
        "{ids:?}"
    );

    // The follow-up list holds exactly the undelivered row, every column, BOM, 0600.
    let run = env.run(&["status", "--failed-csv", "brev/uppfoljning.csv"]);
    run.expect_code(0);
    let bytes = std::fs::read(env.path("brev/uppfoljning.csv")).expect("failed csv");
    assert!(bytes.starts_with(b"\xEF\xBB\xBF"));
    let text = String::from_utf8(bytes[3..].to_vec()).expect("utf-8");
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let header: Vec<String> = reader
        .headers()
        .expect("header")
        .iter()
        .map(str::to_string)
        .collect();
    assert_eq!(
        header,
        [
            "customer_id",
            "name",
            "email",
            "personnummer",
            "address",
            "affected",
            "confirmed",
            "state",
            "reason"
        ]
    );
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.expect("row")).collect();
    assert_eq!(rows.len(), 1, "{text}");
    assert_eq!(&rows[0][0], "1002");
    assert_eq!(&rows[0][7], "failed-permanent");
    let mode = std::fs::metadata(env.path("brev/uppfoljning.csv"))
        .expect("meta")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);

    // The address is corrected in the CSV: retry --permanent delivers it.
    let csv_text = env.read("recipients.example.csv").replace(
        "per-erik.lindqvist@example.com",
        "per-erik.lindqvist@example.se",
    );
    env.write("recipients.example.csv", csv_text);
    let third = SmtpServer::plain();
    env.relay(third.port());
    let run = env.run(&["retry", "--yes"]);
    run.expect_code(0);
    assert!(run.stdout.contains("nothing to do"), "{}", run.all());
    assert!(third.received().is_empty());
    let run = env.run(&["retry", "--yes", "--permanent"]);
    run.expect_code(0);
    assert!(run.stderr.contains("the CSV has changed"), "{}", run.stderr);
    let got: Vec<String> = third
        .received()
        .iter()
        .flat_map(|r| r.rcpt_to.clone())
        .collect();
    assert_eq!(got, vec!["per-erik.lindqvist@example.se".to_string()]);
    let status = status_json(&env);
    assert_eq!(count(&status, "sent"), 12);

    // The report: counts, subject, hashes, no personal data.
    let run = env.run(&["status", "--report", "rapport.md"]);
    run.expect_code(0);
    let report = env.read("rapport.md");
    assert!(
        report
            .contains("Underrättade via e-post (mottaget av e-postservern, ingen studs sedan): 12"),
        "{report}"
    );
    assert!(
        report.contains("Viktig information om dina personuppgifter"),
        "{report}"
    );
    let mut reader = csv::Reader::from_path(env.path("recipients.example.csv")).expect("csv");
    for r in reader.records() {
        let r = r.expect("row");
        for (i, field) in r.iter().enumerate() {
            if i == 5 || i == 6 {
                continue; // affected / confirmed: category codes and ja/nej, not personal
            }
            for part in field.split(['\n', ' ']) {
                if part.len() > 3 {
                    assert!(!report.contains(part), "report holds {part:?} (column {i})");
                }
            }
        }
    }
}

#[test]
fn retry_never_starts_a_pending_recipient() {
    let env = TestEnv::example();
    let server = SmtpServer::plain();
    env.relay(server.port());
    let run = env.run(&["retry", "--yes"]);
    run.expect_code(0);
    assert!(run.stdout.contains("nothing to do"), "{}", run.all());
    assert!(server.received().is_empty());
    env.run(&["send", "--yes", "--limit", "3"]).expect_code(0);
    let run = env.run(&["retry", "--yes"]);
    run.expect_code(0);
    assert_eq!(server.received().len(), 3);
    assert_eq!(count(&status_json(&env), "pending"), 9);
}

fn line(v: serde_json::Value) -> String {
    format!("{v}\n")
}

fn ev(kind: &str, run: &str, key: &str, extra: serde_json::Value) -> String {
    let mut v = serde_json::json!({
        "event": kind, "ts": "2026-11-26T10:00:00.000Z", "run": run, "key": key,
        "email": format!("k{key}@example.se"), "message_id": format!("<c.{key}@example.se>"),
    });
    if let (Some(m), Some(x)) = (v.as_object_mut(), extra.as_object()) {
        for (k, val) in x {
            m.insert(k.clone(), val.clone());
        }
    }
    line(v)
}

fn run_line(run: &str, test: bool) -> String {
    line(serde_json::json!({
        "event": "run", "ts": "2026-11-26T10:00:00.000Z", "run": run, "campaign": "nektab-2023-10",
        "command": "send", "recipients_sha256": "x", "templates_sha256": "y", "relay": "127.0.0.1:25", "test": test,
    }))
}

/// A CSV of keys 1..=n with addresses k<key>@example.se.
fn small_csv(env: &TestEnv, keys: &[&str]) {
    let mut csv = String::from("customer_id,name,email,personnummer,address,affected,confirmed\n");
    for k in keys {
        csv.push_str(&format!("{k},Namn {k},k{k}@example.se,1,x,namn,ja\n"));
    }
    env.write("recipients.example.csv", csv);
}

#[test]
fn hand_made_journals_read_back_to_the_right_states() {
    let env = TestEnv::example();
    small_csv(&env, &["1", "2", "3", "4", "5", "6"]);
    let mut j = String::new();
    j += &run_line("A", false);
    j += &run_line("T", true);
    j += &ev("attempt", "A", "1", serde_json::json!({"attempt": 1}));
    j += &ev(
        "attempt",
        "T",
        "2",
        serde_json::json!({"attempt": 1, "test": true, "email": "me@example.se"}),
    );
    j += &ev(
        "sent",
        "A",
        "1",
        serde_json::json!({"code": 250, "reply": "ok"}),
    );
    j += &ev(
        "sent",
        "T",
        "2",
        serde_json::json!({"code": 250, "reply": "ok", "test": true}),
    );
    j += &run_line("B", false);
    j += &ev("attempt", "B", "3", serde_json::json!({"attempt": 1}));
    j += &ev("attempt", "B", "4", serde_json::json!({"attempt": 1}));
    j += &ev(
        "failed",
        "B",
        "4",
        serde_json::json!({"code": 451, "reply": "later", "class": "transient"}),
    );
    j += &ev("attempt", "B", "99", serde_json::json!({"attempt": 1}));
    j += &ev(
        "sent",
        "B",
        "99",
        serde_json::json!({"code": 250, "reply": "ok"}),
    );
    j += &ev("attempt", "B", "5", serde_json::json!({"attempt": 1}));
    j += &ev(
        "failed",
        "B",
        "5",
        serde_json::json!({"code": 550, "reply": "no", "class": "permanent"}),
    );
    j += "{\"event\":\"sent\",\"ts\":\"2026-11-26T10:0"; // torn tail: a crash in mid-write
    env.write("delivery-log.jsonl", j);
    let status = status_json(&env);
    assert_eq!(count(&status, "sent"), 1, "{status}");
    assert_eq!(count(&status, "pending"), 2, "2 (test only) and 6");
    assert_eq!(count(&status, "unknown"), 1);
    assert_eq!(count(&status, "failed-transient"), 1);
    assert_eq!(count(&status, "failed-permanent"), 1);
    assert_eq!(status["not_in_csv"], serde_json::json!(["99"]));
    assert_eq!(status["test_sent"], 1);
    assert_eq!(status["torn_tail"], true);
    assert_eq!(status["runs"].as_array().expect("runs").len(), 3);
    let text = env.run(&["status"]);
    assert!(text.stdout.contains("torn line"), "{}", text.stdout);
    assert!(
        text.stdout.contains("no longer in the CSV (1): 99"),
        "{}",
        text.stdout
    );
}

#[test]
fn a_broken_journal_is_exit_2_naming_the_line() {
    let env = TestEnv::example();
    small_csv(&env, &["1"]);
    env.write(
        "delivery-log.jsonl",
        format!(
            "{}not json at all\n{}",
            run_line("A", false),
            ev(
                "sent",
                "A",
                "1",
                serde_json::json!({"code": 250, "reply": "ok"})
            )
        ),
    );
    let run = env.run(&["status"]);
    run.expect_code(2);
    assert!(
        run.stderr
            .contains("delivery-log.jsonl:2: malformed journal line"),
        "{}",
        run.stderr
    );

    env.write(
        "delivery-log.jsonl",
        format!(
            "{}{}",
            run_line("A", false),
            line(serde_json::json!({"event": "teleported", "ts": "x"}))
        ),
    );
    let run = env.run(&["status"]);
    run.expect_code(2);
    assert!(
        run.stderr
            .contains("delivery-log.jsonl:2: unknown event type \"teleported\""),
        "{}",
        run.stderr
    );

    env.write("delivery-log.jsonl", "customer_id,name\n1,Anna\n");
    let run = env.run(&["status"]);
    run.expect_code(2);
    assert!(
        run.stderr.contains("is not an utskick journal"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_journal_of_another_campaign_is_refused() {
    let env = TestEnv::example();
    let server = SmtpServer::plain();
    env.relay(server.port());
    env.run(&["send", "--yes", "--limit", "1"]).expect_code(0);
    env.set("", "campaign", "\"annan-2026\"");
    let run = env.run(&["send", "--yes"]);
    run.expect_code(2);
    assert!(run.stderr.contains("belongs to campaign"), "{}", run.stderr);
    assert_eq!(server.received().len(), 1);
}
