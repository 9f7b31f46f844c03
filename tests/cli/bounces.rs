//! `bounces`: the corpus of real-world reports booked against a journal of a real send, the
//! matching rules (households, test deliveries, failed recipients, corrected addresses),
//! the exit codes, Postfix's own DSNs end to end, and a real Dovecot over IMAP (TLS,
//! STARTTLS, plain loopback, `--move-to`, a wrong password).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::time::Duration;

use crate::support::dovecot::{self, Dovecot};
use crate::support::postfix::Postfix;
use crate::support::smtp_server::{Action, SmtpServer};
use crate::support::testenv::{Run, TestEnv, repo};

const IMAP_VAR: &str = "UTSKICK_IMAP_PASSWORD";
const SMTP_VAR: &str = "UTSKICK_SMTP_PASSWORD";

// ----- helpers -----------------------------------------------------------------------

/// One line of tests/bounces/expected.tsv.
#[derive(Debug, Clone)]
struct Expected {
    file: String,
    kind: String,
    /// (email, status, class)
    recipients: Vec<(String, String, String)>,
    original: Option<String>,
}

fn corpus_dir() -> PathBuf {
    repo().join("tests/bounces")
}

/// A table of tests/bounces: file, the layout's name (only in `layouts/layouts.tsv`), kind,
/// one column per recipient, the original Message-ID.
fn read_table(path: &str, with_layout: bool) -> Vec<Expected> {
    let text = std::fs::read_to_string(corpus_dir().join(path)).expect("table");
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|line| {
            let mut cols: Vec<&str> = line.split('\t').collect();
            if with_layout {
                cols.remove(1);
            }
            let last = cols[cols.len() - 1];
            let recipients = cols[2..cols.len() - 1]
                .iter()
                .map(|c| {
                    let parts: Vec<&str> = c.split(' ').collect();
                    (
                        parts[0].to_string(),
                        parts[1].to_string(),
                        parts[2].to_string(),
                    )
                })
                .collect();
            Expected {
                file: cols[0].to_string(),
                kind: cols[1].to_string(),
                recipients,
                original: (last != "-").then(|| last.to_string()),
            }
        })
        .collect()
}

fn expected() -> Vec<Expected> {
    read_table("expected.tsv", false)
}

/// One (key, email) row per address a table names, keys counted up from `first`.
fn rows_for(table: &[Expected], first: usize) -> Vec<(String, String)> {
    let mut rows: Vec<(String, String)> = Vec::new();
    for e in table {
        for (email, _, _) in &e.recipients {
            if !rows.iter().any(|(_, m)| m == email) {
                rows.push((format!("{}", first + rows.len()), email.clone()));
            }
        }
    }
    rows
}

/// Sends to these (key, email) rows through a plain test relay; returns the env, the
/// relay (kept alive) and each key's (email, Message-ID).
fn sent_rows(
    rows: &[(String, String)],
) -> (TestEnv, SmtpServer, HashMap<String, (String, String)>) {
    let server = SmtpServer::plain();
    let env = TestEnv::example();
    env.relay(server.port());
    write_csv(&env, rows);
    env.run(&["send", "--yes"]).expect_code(0);
    let ids = sent_ids(&env);
    assert_eq!(ids.len(), rows.len());
    (env, server, ids)
}

/// The key of the row with this address.
fn key_of(rows: &[(String, String)], email: &str) -> String {
    rows.iter()
        .find(|(_, m)| m == email)
        .map(|(k, _)| k.clone())
        .expect("a row for this address")
}

/// Every non-test `sent` event's key → (email, Message-ID), the latest winning.
fn sent_ids(env: &TestEnv) -> HashMap<String, (String, String)> {
    env.events("sent")
        .into_iter()
        .filter(|e| e["test"] != true)
        .map(|e| {
            (
                e["key"].as_str().expect("key").to_string(),
                (
                    e["email"].as_str().expect("email").to_string(),
                    e["message_id"].as_str().expect("message_id").to_string(),
                ),
            )
        })
        .collect()
}

/// The journal's `bounced` events as (key, class, status, source).
fn bounced(env: &TestEnv) -> BTreeSet<(String, String, String, String)> {
    env.events("bounced")
        .into_iter()
        .map(|e| {
            let s = |f: &str| e[f].as_str().unwrap_or_default().to_string();
            (s("key"), s("class"), s("status"), s("source"))
        })
        .collect()
}

/// Keys with a bounce of this class (`permanent`, `transient`) booked.
fn keys_booked(env: &TestEnv, class: &str) -> BTreeSet<String> {
    bounced(env)
        .into_iter()
        .filter(|b| b.1 == class)
        .map(|b| b.0)
        .collect()
}

/// Keys with a permanent bounce booked.
fn bounced_keys(env: &TestEnv) -> BTreeSet<String> {
    keys_booked(env, "permanent")
}

/// Keys with a delay booked.
fn delayed_keys(env: &TestEnv) -> BTreeSet<String> {
    keys_booked(env, "transient")
}

/// `status --json`'s counts.
fn counts(env: &TestEnv) -> BTreeMap<String, u64> {
    let run = env.run(&["status", "--json"]);
    run.expect_code(0);
    let v: serde_json::Value = serde_json::from_str(&run.stdout).expect("status --json");
    v["counts"]
        .as_object()
        .expect("counts")
        .iter()
        .map(|(k, n)| (k.clone(), n.as_u64().expect("count")))
        .collect()
}

/// The summary's first line (`bounces: ...`).
fn summary(run: &Run) -> String {
    run.stdout
        .lines()
        .find(|l| l.starts_with("bounces:"))
        .unwrap_or_else(|| panic!("no summary line in\n{}", run.all()))
        .to_string()
}

/// The summary's `prefix` line (`not booked: `, `by status: `), if any.
fn summary_part(run: &Run, prefix: &str) -> Option<String> {
    run.stdout
        .lines()
        .find_map(|l| l.strip_prefix(prefix))
        .map(str::to_string)
}

/// A CSV with these (key, email) rows, in the columns the shipped templates use.
fn write_csv(env: &TestEnv, rows: &[(String, String)]) {
    let mut text = String::from("customer_id,name,email,affected,confirmed\n");
    for (key, email) in rows {
        text.push_str(&format!("{key},Kund {key},{email},namn|epost,ja\n"));
    }
    env.write("recipients.example.csv", text);
}

/// An RFC 3464 report about `rcpt`, naming `original` (our Message-ID) in attached headers.
fn dsn(report_id: &str, rcpt: &str, status: &str, original: Option<&str>) -> String {
    let (action, code) = if status.starts_with('4') {
        ("delayed", "451")
    } else {
        ("failed", "550")
    };
    let headers = match original {
        Some(id) => format!(
            "--B\r\nContent-Type: text/rfc822-headers\r\n\r\n\
             From: NEKTAB <dataskydd@example.se>\r\nTo: <{rcpt}>\r\n\
             Subject: Viktig information\r\nMessage-ID: {id}\r\n\r\n"
        ),
        None => String::new(),
    };
    format!(
        "From: Mail Delivery System <MAILER-DAEMON@mx.example.net>\r\n\
         To: dataskydd@example.se\r\n\
         Subject: Undelivered Mail Returned to Sender\r\n\
         Message-ID: {report_id}\r\n\
         Auto-Submitted: auto-replied\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=delivery-status; boundary=\"B\"\r\n\
         \r\n\
         --B\r\nContent-Type: text/plain\r\n\r\n\
         This is the mail system at host mx.example.net.\r\n\r\n\
         --B\r\nContent-Type: message/delivery-status\r\n\r\n\
         Reporting-MTA: dns; mx.example.net\r\n\r\n\
         Final-Recipient: rfc822; {rcpt}\r\n\
         Action: {action}\r\n\
         Status: {status}\r\n\
         Diagnostic-Code: smtp; {code} {status} test diagnostic\r\n\r\n\
         {headers}--B--\r\n"
    )
}

/// qmail's text bounce (no Message-ID of its own, LF line ends) quoting our notice.
fn qmail_bounce(rcpt: &str, original: &str) -> String {
    format!(
        "From: MAILER-DAEMON@mail.example.org\nTo: dataskydd@example.se\n\
         Subject: failure notice\n\n\
         Hi. This is the qmail-send program at mail.example.org.\n\
         I'm afraid I wasn't able to deliver your message to the following addresses.\n\
         This is a permanent error; I've given up. Sorry it didn't work out.\n\n\
         <{rcpt}>:\nSorry, no mailbox here by that name. (#5.1.1)\n\n\
         --- Below this line is a copy of the message.\n\n\
         Message-ID: {original}\nSubject: Viktig information\n\nHej!\n"
    )
}

/// An out-of-office answer to our notice `original`.
fn auto_reply(id: &str, original: &str) -> String {
    format!(
        "From: Kund <kund@example.org>\r\nTo: dataskydd@example.se\r\n\
         Subject: Autosvar: Viktig information\r\nMessage-ID: {id}\r\n\
         In-Reply-To: {original}\r\nAuto-Submitted: auto-replied\r\n\r\n\
         Jag är ledig till måndag.\r\n"
    )
}

/// An ordinary mail that is nobody's report.
fn unrelated(id: &str) -> String {
    format!(
        "From: Pia <pia@example.se>\r\nTo: dataskydd@example.se\r\n\
         Subject: Fika på fredag?\r\nMessage-ID: {id}\r\n\r\nKommer du?\r\n"
    )
}

/// `<inner>` → `inner`.
fn inner(id: &str) -> &str {
    id.trim_start_matches('<').trim_end_matches('>')
}

/// Sends the example CSV (12 rows, a household 1004/1005) through a plain test relay;
/// returns the env and each key's (email, Message-ID).
fn sent_example() -> (TestEnv, SmtpServer, HashMap<String, (String, String)>) {
    let server = SmtpServer::plain();
    let env = TestEnv::example();
    env.relay(server.port());
    env.run(&["send", "--yes"]).expect_code(0);
    let ids = sent_ids(&env);
    assert_eq!(ids.len(), 12);
    (env, server, ids)
}

// ----- (a) the corpus against a real send's journal -----------------------------------

#[test]
fn corpus_books_permanent_bounces_once_and_counts_the_rest() {
    let expected = expected();
    // One recipient per address the corpus reports, plus one nobody reports.
    let mut rows = rows_for(&expected, 2001);
    rows.push(("2999".into(), "olof.ost@example.org".into()));
    let key_of = |email: &str| key_of(&rows, email);

    let (env, _server, ids) = sent_rows(&rows);

    // The corpus with its Message-IDs replaced by the journal's: a report names the notice
    // of its first recipient (an auto-reply: any notice).
    let mut replace: Vec<(String, String)> = Vec::new();
    for e in &expected {
        if let Some(original) = &e.original {
            let key = match e.recipients.first() {
                Some((email, _, _)) => key_of(email),
                None => rows[0].0.clone(),
            };
            replace.push((inner(original).to_string(), inner(&ids[&key].1).to_string()));
        }
    }
    let rewrite = |raw: Vec<u8>| -> Vec<u8> {
        let mut text = String::from_utf8(raw).expect("corpus is UTF-8");
        for (from, to) in &replace {
            text = text.replace(from.as_str(), to);
        }
        text.into_bytes()
    };
    for e in &expected {
        let raw = std::fs::read(corpus_dir().join(&e.file)).expect("corpus file");
        env.write(&format!("inkorg/{}", e.file), rewrite(raw));
    }
    let mbox = std::fs::read(corpus_dir().join("mixed.mbox")).expect("mixed.mbox");
    env.write("mixed.mbox", rewrite(mbox));

    // What the corpus says should happen.
    let dsns: Vec<&Expected> = expected.iter().filter(|e| e.kind == "dsn").collect();
    let mut permanent = BTreeSet::new();
    let mut delayed = BTreeSet::new();
    let mut other_address = 0;
    let mut statuses: BTreeMap<String, u64> = BTreeMap::new();
    for e in &dsns {
        let owner = &e.recipients[0].0;
        for (email, status, class) in &e.recipients {
            *statuses.entry(status.clone()).or_default() += 1;
            if email != owner {
                // Not the address this notice went to: not booked.
                other_address += 1;
            } else if class == "permanent" {
                permanent.insert(key_of(email));
            } else {
                delayed.insert(key_of(email));
            }
        }
    }
    assert_eq!(permanent.len(), 9, "{permanent:?}");
    assert_eq!(delayed.len(), 1);
    let autos = expected.iter().filter(|e| e.kind == "auto-reply").count();
    let others = expected.iter().filter(|e| e.kind == "other").count();

    let run = env.run(&["bounces", "inkorg"]);
    run.expect_code(0);
    assert_eq!(
        summary(&run),
        format!(
            "bounces: {} messages read, {} DSNs, 10 matched (9 booked, 1 delay), 0 already booked, 0 unmatched, {autos} auto-replies, {others} other mail",
            expected.len(),
            dsns.len()
        ),
        "{}",
        run.all()
    );
    assert_eq!(
        summary_part(&run, "not booked: ").as_deref(),
        Some(format!("{other_address} about an earlier address").as_str())
    );
    let by_status: Vec<String> = statuses.iter().map(|(s, n)| format!("{s}: {n}")).collect();
    assert_eq!(
        summary_part(&run, "by status: ").as_deref(),
        Some(by_status.join(", ").as_str())
    );
    assert_eq!(bounced_keys(&env), permanent);
    assert_eq!(delayed_keys(&env), delayed);
    // Every event names its report, our Message-ID and the status; the journal holds the
    // diagnostic on one line.
    for e in env.events("bounced") {
        let key = e["key"].as_str().expect("key");
        assert_eq!(e["message_id"], ids[key].1.as_str());
        assert_eq!(e["email"], ids[key].0.as_str());
        assert!(!e["source"].as_str().expect("source").is_empty());
        assert!(!e["diagnostic"].as_str().expect("diagnostic").contains('\n'));
    }
    let c = counts(&env);
    assert_eq!(c["bounced"], 9, "{c:?}");
    assert_eq!(c["sent"], rows.len() as u64 - 9, "{c:?}");
    // The delay changed nothing: that recipient is still sent.
    let states = env.latest();
    for key in &delayed {
        assert_eq!(states[key], "sent");
    }
    assert_eq!(states["2999"], "sent");

    // The same reports again: nothing new.
    let before = env.events("bounced").len();
    let run = env.run(&["bounces", "inkorg"]);
    run.expect_code(0);
    assert!(
        summary(&run).contains(", 0 matched (0 booked, 0 delays), 10 already booked, 0 unmatched"),
        "{}",
        run.all()
    );
    assert_eq!(env.events("bounced").len(), before);

    // The mbox holds some of the same reports: nothing new either.
    let run = env.run(&["bounces", "mixed.mbox"]);
    run.expect_code(0);
    assert!(
        summary(&run)
            .starts_with("bounces: 6 messages read, 4 DSNs, 0 matched (0 booked, 0 delays)"),
        "{}",
        run.all()
    );
    assert_eq!(env.events("bounced").len(), before);
    assert_eq!(counts(&env)["bounced"], 9);

    // The corpus as shipped names notices this journal never sent: nothing is booked.
    let run = env.run(&["bounces", corpus_dir().to_str().expect("utf-8 path")]);
    run.expect_code(0);
    let total: usize = dsns.iter().map(|e| e.recipients.len()).sum();
    assert!(
        summary(&run).contains(&format!(
            "0 matched (0 booked, 0 delays), 0 already booked, {total} unmatched"
        )),
        "{}",
        run.all()
    );
    assert_eq!(env.events("bounced").len(), before);
}

/// One report per server layout, against a real send's journal, read from an mbox: every
/// permanent failure is booked `bounced` (4.x.x with "Action: failed" or "given up"
/// included), every delay is kept as a delay, and auto-replies, a feedback report and
/// delivery confirmations book nothing.
#[test]
fn layout_fixtures_book_every_permanent_failure_and_nothing_else() {
    let layouts = read_table("layouts/layouts.tsv", true);
    let mut rows = rows_for(&layouts, 3001);
    // The negatives' own recipients: sent, and they must stay sent.
    for email in [
        "oskar.olsson@example.org",
        "pia.palm@example.com",
        "siv.strand@example.com",
        "tage.torn@example.com",
        "ulf.udd@example.net",
    ] {
        rows.push((format!("{}", 3001 + rows.len()), email.to_string()));
    }
    let key_of = |email: &str| key_of(&rows, email);
    let (env, _server, ids) = sent_rows(&rows);

    // Each fixture names the notice of its recipient (a negative: the first row's); the
    // Amazon SES one names SES's own id and is matched by address.
    let mut mbox = Vec::new();
    for e in &layouts {
        let mut text =
            std::fs::read_to_string(corpus_dir().join("layouts").join(&e.file)).expect("fixture");
        if let Some(original) = e
            .original
            .as_deref()
            .filter(|o| o.contains("nektab-2023-10."))
        {
            let key = match e.recipients.first() {
                Some((email, _, _)) => key_of(email),
                None => rows[0].0.clone(),
            };
            text = text.replace(inner(original), inner(&ids[&key].1));
        }
        mbox.extend_from_slice(b"From MAILER-DAEMON Thu Oct 12 10:15:00 2023\n");
        for line in text.split_inclusive('\n') {
            if line.trim_start_matches('>').starts_with("From ") {
                mbox.push(b'>');
            }
            mbox.extend_from_slice(line.as_bytes());
        }
        mbox.push(b'\n');
    }
    env.write("layouts.mbox", mbox);

    let mut permanent = BTreeSet::new();
    let mut delayed = BTreeSet::new();
    for e in &layouts {
        for (email, _, class) in &e.recipients {
            if class == "permanent" {
                permanent.insert(key_of(email));
            } else {
                delayed.insert(key_of(email));
            }
        }
    }
    assert_eq!(permanent.len(), 22);
    assert_eq!(delayed.len(), 4);

    let run = env.run(&["bounces", "layouts.mbox"]);
    run.expect_code(0);
    let autos = layouts.iter().filter(|e| e.kind == "auto-reply").count();
    assert!(
        summary(&run).starts_with(&format!(
            "bounces: {} messages read, {} DSNs, 26 matched (22 booked, 4 delays), 0 already booked, 0 unmatched, {autos} auto-replies, 1 other mail",
            layouts.len(),
            layouts.iter().filter(|e| e.kind == "dsn").count(),
        )),
        "{}",
        run.all()
    );
    assert_eq!(bounced_keys(&env), permanent, "{}", run.all());
    assert_eq!(delayed_keys(&env), delayed);
    let states = env.latest();
    for (key, email) in &rows {
        let expected = if permanent.contains(key) {
            "bounced"
        } else {
            "sent"
        };
        assert_eq!(states[key], expected, "{email}");
    }
    assert_eq!(counts(&env)["bounced"], 22);
}

#[test]
fn matching_households_tests_failed_recipients_and_corrected_addresses() {
    const MARTA: &str = "marta.sjostrom@example.org";
    let server = SmtpServer::scripted(|e, _| {
        if e.is_rcpt(MARTA) {
            Action::reply("550 5.1.1 <marta.sjostrom@example.org>: Recipient address rejected")
        } else {
            Action::Default
        }
    });
    let env = TestEnv::example();
    env.relay(server.port());
    env.run(&["send", "--yes"]).expect_code(3);
    env.run(&["send", "--yes", "--test-to", "granskare@example.se"])
        .expect_code(0);
    let ids = sent_ids(&env);
    let test_id = env
        .events("sent")
        .into_iter()
        .find(|e| e["test"] == true)
        .and_then(|e| e["message_id"].as_str().map(str::to_string))
        .expect("a test delivery");
    assert!(test_id.contains(".test."), "{test_id}");
    let marta_id = env
        .events("failed")
        .into_iter()
        .find(|e| e["key"] == "1003")
        .and_then(|e| e["message_id"].as_str().map(str::to_string))
        .expect("1003 failed");
    let states = env.latest();
    assert_eq!(states["1003"], "failed-permanent");

    // The household's report has no Message-ID of ours: matched by address, both booked.
    env.write(
        "r1/1-household.eml",
        dsn(
            "<r1@mx.example.net>",
            "Familjen.Holm@example.org",
            "5.1.1",
            None,
        ),
    );
    env.write(
        "r1/2-failed.eml",
        dsn("<r2@mx.example.net>", MARTA, "5.1.1", Some(&marta_id)),
    );
    env.write(
        "r1/3-test.eml",
        dsn(
            "<r3@mx.example.net>",
            "granskare@example.se",
            "5.1.1",
            Some(&test_id),
        ),
    );
    env.write(
        "r1/4-jons.eml",
        dsn(
            "<r4@mx.example.net>",
            "jons.akesson@example.se",
            "5.1.1",
            Some(&ids["1006"].1),
        ),
    );
    env.write(
        "r1/5-delay.eml",
        dsn(
            "<r5@mx.example.net>",
            "anna-lena.ek@example.com",
            "4.4.7",
            Some(&ids["1007"].1),
        ),
    );
    env.write(
        "r1/6-stranger.eml",
        dsn("<r6@mx.example.net>", "okand@example.net", "5.1.1", None),
    );
    env.write(
        "r1/7-auto.eml",
        auto_reply("<a7@example.org>", &ids["1008"].1),
    );
    let run = env.run(&["bounces", "r1"]);
    run.expect_code(0);
    assert_eq!(
        summary(&run),
        "bounces: 7 messages read, 6 DSNs, 4 matched (3 booked, 1 delay), 0 already booked, 1 unmatched, 1 auto-replies, 0 other mail",
        "{}",
        run.all()
    );
    assert_eq!(
        summary_part(&run, "not booked: ").as_deref(),
        Some("1 about test deliveries, 1 for recipients failed-permanent")
    );
    let states = env.latest();
    assert_eq!(states["1004"], "bounced");
    assert_eq!(states["1005"], "bounced");
    assert_eq!(states["1006"], "bounced");
    assert_eq!(states["1003"], "failed-permanent");
    assert_eq!(states["1007"], "sent");
    let c = counts(&env);
    assert_eq!(c["bounced"], 3, "{c:?}");
    assert_eq!(c["failed-permanent"], 1, "{c:?}");

    // 1006's address is corrected and the notice sent again (same Message-ID).
    let csv = env
        .read("recipients.example.csv")
        .replace("jons.akesson@example.se", "jons.ny@example.se");
    env.write("recipients.example.csv", csv);
    // `retry --permanent` resends only corrected addresses: not the household that
    // bounced, nor 1003 whose address is unchanged.
    let before = server.received().len();
    env.run(&["retry", "--yes", "--permanent"]).expect_code(0);
    let resent: Vec<String> = server.received()[before..]
        .iter()
        .flat_map(|r| r.rcpt_to.clone())
        .collect();
    assert_eq!(resent, vec!["jons.ny@example.se".to_string()]);
    let states = env.latest();
    assert_eq!(states["1006"], "sent");
    assert_eq!(states["1004"], "bounced");
    assert_eq!(states["1003"], "failed-permanent");

    // A late report about the old address names the same Message-ID: not booked. The
    // household's report read again: already booked.
    env.write(
        "r2/1-household.eml",
        dsn(
            "<r1@mx.example.net>",
            "familjen.holm@example.org",
            "5.1.1",
            None,
        ),
    );
    env.write(
        "r2/8-jons-late.eml",
        dsn(
            "<r8@mx.example.net>",
            "jons.akesson@example.se",
            "5.1.1",
            Some(&ids["1006"].1),
        ),
    );
    let before = env.events("bounced").len();
    let run = env.run(&["bounces", "r2"]);
    run.expect_code(0);
    assert_eq!(
        summary(&run),
        "bounces: 2 messages read, 2 DSNs, 0 matched (0 booked, 0 delays), 2 already booked, 0 unmatched, 0 auto-replies, 0 other mail",
        "{}",
        run.all()
    );
    assert_eq!(
        summary_part(&run, "not booked: ").as_deref(),
        Some("1 about an earlier address")
    );
    assert!(run.stderr.contains("jons.ny@example.se"), "{}", run.all());
    assert_eq!(env.events("bounced").len(), before);
    assert_eq!(env.latest()["1006"], "sent");
}

#[test]
fn bounces_exit_codes() {
    let (env, _server, ids) = sent_example();
    env.write(
        "r/1.eml",
        dsn(
            "<x1@mx.example.net>",
            "osten.blom@example.com",
            "5.1.1",
            Some(&ids["1010"].1),
        ),
    );

    // An unreadable source is bad input, and nothing is booked.
    let run = env.run(&["bounces", "r", "saknas.mbox"]);
    run.expect_code(2);
    assert!(run.stderr.contains("saknas.mbox"), "{}", run.all());
    assert!(env.events("bounced").is_empty());

    // --imap without a [bounces] section.
    let run = env.run(&["bounces", "--imap"]);
    run.expect_code(2);
    assert!(run.stderr.contains("[bounces]"), "{}", run.all());

    // --move-to is for --imap only.
    env.run(&["bounces", "r", "--move-to", "Klart"])
        .expect_code(2);

    // A journal locked by another utskick (its lock is on the journal itself): exit 1.
    let lock = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(env.path("delivery-log.jsonl"))
        .expect("journal");
    lock.try_lock().expect("the test takes the lock");
    let run = env.run(&["bounces", "r"]);
    run.expect_code(1);
    assert!(run.stderr.contains("locked"), "{}", run.all());
    drop(lock);
    assert!(env.events("bounced").is_empty());

    // It works once the lock is free.
    env.run(&["bounces", "r"]).expect_code(0);
    assert_eq!(bounced_keys(&env), BTreeSet::from(["1010".to_string()]));

    // A broken journal: exit 2.
    let mut text = env.read("delivery-log.jsonl");
    text.push_str("inte json\n");
    env.write("delivery-log.jsonl", text);
    let run = env.run(&["bounces", "r"]);
    run.expect_code(2);
    assert!(run.stderr.contains("delivery-log.jsonl"), "{}", run.all());
}

// ----- (b) Postfix's own DSNs, end to end -----------------------------------------------

#[test]
fn postfix_dsns_book_exactly_the_unknown_addresses() {
    let Some(postfix) = Postfix::shared() else {
        return;
    };
    let env = TestEnv::example();
    let sender = postfix.fresh_mailbox();
    let tag = sender.split('@').next().expect("local part").to_string();
    let rows: Vec<(String, String)> = vec![
        ("3001".into(), postfix.fresh_mailbox()),
        ("3002".into(), postfix.unknown_address(&format!("{tag}-a"))),
        ("3003".into(), postfix.fresh_mailbox()),
        ("3004".into(), postfix.unknown_address(&format!("{tag}-b"))),
        ("3005".into(), postfix.fresh_mailbox()),
    ];
    write_csv(&env, &rows);
    env.set("sender", "from", &format!("\"NEKTAB <{sender}>\""));
    env.set("sender", "reply_to", &format!("{sender:?}"));
    env.postfix_relay(postfix, SMTP_VAR);
    env.run_env(&["send", "--yes"], &[(SMTP_VAR, postfix.password())])
        .expect_code(0);
    assert!(env.latest().values().all(|s| s == "sent"));

    // Postfix accepted all five; the two unknown ones come back as DSNs to the sender.
    postfix.wait_for_messages(&sender, 2, Duration::from_secs(30));
    for (_, mailbox) in rows.iter().filter(|(k, _)| k == "3001" || k == "3003") {
        postfix.wait_for_messages(mailbox, 1, Duration::from_secs(30));
    }
    let maildir = postfix.maildir(&sender);
    let run = env.run(&["bounces", maildir.to_str().expect("utf-8 path")]);
    run.expect_code(0);
    assert_eq!(
        summary(&run),
        "bounces: 2 messages read, 2 DSNs, 2 matched (2 booked, 0 delays), 0 already booked, 0 unmatched, 0 auto-replies, 0 other mail",
        "{}",
        run.all()
    );
    assert_eq!(
        summary_part(&run, "by status: ").as_deref(),
        Some("5.1.1: 2")
    );
    assert_eq!(
        bounced_keys(&env),
        BTreeSet::from(["3002".to_string(), "3004".to_string()])
    );
    let c = counts(&env);
    assert_eq!((c["bounced"], c["sent"]), (2, 3), "{c:?}");
    // Read twice, booked once.
    env.run(&["bounces", maildir.to_str().expect("utf-8 path")])
        .expect_code(0);
    assert_eq!(env.events("bounced").len(), 2);
}

// ----- (c) IMAP against a real Dovecot -------------------------------------------------

/// Points `[bounces]` at the Dovecot user over `security` on `port`.
fn imap_config(env: &TestEnv, dovecot: &Dovecot, user: &str, security: &str, port: u16) {
    env.set("bounces", "host", &format!("{:?}", dovecot.host()));
    env.set("bounces", "port", &port.to_string());
    env.set("bounces", "security", &format!("{security:?}"));
    env.set("bounces", "username", &format!("{user:?}"));
    env.set("bounces", "password_env", &format!("{IMAP_VAR:?}"));
    env.set("bounces", "folder", "\"INBOX\"");
    env.set(
        "bounces",
        "ca_file",
        &format!("{:?}", dovecot.ca_pem_path().display().to_string()),
    );
}

fn message_ids(messages: &[Vec<u8>]) -> BTreeSet<String> {
    messages
        .iter()
        .filter_map(|m| {
            String::from_utf8_lossy(m).lines().find_map(|l| {
                l.strip_prefix("Message-ID: ")
                    .map(|id| id.trim().to_string())
            })
        })
        .collect()
}

#[test]
fn imap_books_as_files_do_and_moves_only_processed_reports() {
    let Some(dovecot) = Dovecot::shared() else {
        return;
    };
    let (env, _server, ids) = sent_example();
    let user = dovecot.fresh_user();
    let reports = [
        (
            "1",
            dsn(
                "<i1@mx.example.net>",
                "jons.akesson@example.se",
                "5.1.1",
                Some(&ids["1006"].1),
            ),
        ),
        (
            "2",
            dsn(
                "<i2@mx.example.net>",
                "goran.arlig@example.se",
                "5.2.2",
                Some(&ids["1008"].1),
            ),
        ),
        (
            "3",
            dsn(
                "<i3@mx.example.net>",
                "anna-lena.ek@example.com",
                "4.4.7",
                Some(&ids["1007"].1),
            ),
        ),
        (
            "4",
            dsn(
                "<i4@mx.example.net>",
                "familjen.holm@example.org",
                "5.1.1",
                None,
            ),
        ),
        (
            "5",
            dsn("<i5@mx.example.net>", "okand@example.net", "5.1.1", None),
        ),
        ("6", auto_reply("<i6@example.org>", &ids["1009"].1)),
        ("7", unrelated("<i7@example.se>")),
        // No Message-ID of its own and LF line ends: known by its bytes' SHA-256, which
        // must be the same from the Maildir file and over IMAP (CRLF).
        ("8", qmail_bounce("osten.blom@example.com", &ids["1010"].1)),
    ];
    for (n, raw) in &reports {
        dovecot.deliver(&user, &format!("100000000{n}.M1P1.test"), raw.as_bytes());
    }
    let expected_summary = "bounces: 8 messages read, 6 DSNs, 6 matched (5 booked, 1 delay), 0 already booked, 1 unmatched, 1 auto-replies, 1 other mail";

    // From the Maildir as files first, on a copy of the journal.
    let journal = std::fs::read(env.path("delivery-log.jsonl")).expect("journal");
    let maildir = dovecot.maildir(&user);
    let run = env.run(&["bounces", maildir.to_str().expect("utf-8 path")]);
    run.expect_code(0);
    assert_eq!(summary(&run), expected_summary, "{}", run.all());
    let from_files = bounced(&env);
    assert_eq!(from_files.len(), 6);
    std::fs::write(env.path("delivery-log.jsonl"), &journal).expect("restore journal");
    assert!(bounced(&env).is_empty());

    // The same over IMAP with implicit TLS, read-only: the same events, nothing moved.
    imap_config(&env, dovecot, &user, "tls", dovecot.imaps_port());
    let imap = |args: &[&str]| -> Run {
        let mut all = vec!["bounces", "--imap"];
        all.extend_from_slice(args);
        env.run_env(&all, &[(IMAP_VAR, dovecot::PASSWORD)])
    };
    let run = imap(&[]);
    run.expect_code(0);
    assert_eq!(summary(&run), expected_summary, "{}", run.all());
    assert_eq!(bounced(&env), from_files);
    let states = env.latest();
    for key in ["1004", "1005", "1006", "1008", "1010"] {
        assert_eq!(states[key], "bounced", "{key}");
    }
    assert_eq!(states["1007"], "sent");
    assert_eq!(dovecot.messages(&user, None).len(), 8);
    assert!(!dovecot.maildir(&user).join(".Processed").exists());

    // STARTTLS and plain loopback read the same folder; everything is booked already.
    for (security, port) in [
        ("starttls", dovecot.imap_port()),
        ("none", dovecot.imap_port()),
    ] {
        imap_config(&env, dovecot, &user, security, port);
        let run = imap(&[]);
        run.expect_code(0);
        assert!(
            summary(&run).contains("0 matched (0 booked, 0 delays), 6 already booked, 1 unmatched"),
            "{security}: {}",
            run.all()
        );
    }
    assert_eq!(bounced(&env), from_files);

    // --move-to moves the reports it matched; the unmatched report, the auto-reply and the
    // unrelated mail stay in INBOX for a person.
    imap_config(&env, dovecot, &user, "tls", dovecot.imaps_port());
    let run = imap(&["--move-to", "Processed"]);
    run.expect_code(0);
    assert!(
        run.stderr.contains("moved 5 processed reports"),
        "{}",
        run.all()
    );
    let inbox = message_ids(&dovecot.messages(&user, None));
    let processed = message_ids(&dovecot.messages(&user, Some("Processed")));
    let set = |ids: &[&str]| ids.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
    assert_eq!(
        inbox,
        set(&["<i5@mx.example.net>", "<i6@example.org>", "<i7@example.se>"]),
        "{}",
        dovecot.log_tail(20)
    );
    assert_eq!(
        processed,
        set(&[
            "<i1@mx.example.net>",
            "<i2@mx.example.net>",
            "<i3@mx.example.net>",
            "<i4@mx.example.net>",
            ids["1010"].1.as_str(),
        ])
    );
    assert_eq!(bounced(&env), from_files);

    // A second IMAP run sees only what was left.
    let run = imap(&[]);
    run.expect_code(0);
    assert!(
        summary(&run).starts_with("bounces: 3 messages read, 1 DSNs, 0 matched"),
        "{}",
        run.all()
    );

    // A wrong password: exit 1, one line, the password nowhere.
    let wrong = "fel-losen-9876";
    let run = env.run_env(&["bounces", "--imap"], &[(IMAP_VAR, wrong)]);
    run.expect_code(1);
    assert!(!run.all().contains(wrong), "{}", run.all());
    let lines: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert_eq!(lines.len(), 1, "{}", run.all());
    assert!(lines[0].starts_with("error: "), "{}", run.all());
    assert!(lines[0].contains("login"), "{}", run.all());
    assert_eq!(bounced(&env), from_files);

    // The right password but an untrusted server certificate: exit 1 as well.
    env.unset("bounces", "ca_file");
    let run = imap(&[]);
    run.expect_code(1);
    assert!(
        run.stderr.to_lowercase().contains("certificate"),
        "{}",
        run.all()
    );
}

/// A folder larger than one fetch batch (100): the messages come and are booked batch by
/// batch, none lost or read twice at the batch edges, the UIDs of every batch moved.
#[test]
fn imap_reads_a_folder_larger_than_one_fetch_batch() {
    let Some(dovecot) = Dovecot::shared() else {
        return;
    };
    let (env, _server, ids) = sent_example();
    let user = dovecot.fresh_user();
    // Reports at the first message, on both sides of each batch edge, and the last.
    let reports: BTreeMap<usize, (&str, &str)> = [
        (1, ("1006", "jons.akesson@example.se")),
        (100, ("1008", "goran.arlig@example.se")),
        (101, ("1010", "osten.blom@example.com")),
        (200, ("1007", "anna-lena.ek@example.com")),
        (201, ("1009", "liselott.frojd@example.org")),
        (250, ("1011", "eva.strom-dahl@example.se")),
    ]
    .into_iter()
    .collect();
    for n in 1..=250usize {
        let raw = match reports.get(&n) {
            Some((key, email)) => {
                assert_eq!(ids[*key].0, *email, "the example CSV's address for {key}");
                dsn(
                    &format!("<b{n}@mx.example.net>"),
                    email,
                    "5.1.1",
                    Some(&ids[*key].1),
                )
            }
            None => unrelated(&format!("<u{n}@example.se>")),
        };
        dovecot.deliver(
            &user,
            &format!("{}.M{n}P1.test", 1_000_000_000 + n),
            raw.as_bytes(),
        );
    }
    imap_config(&env, dovecot, &user, "tls", dovecot.imaps_port());
    let run = env.run_env(
        &["bounces", "--imap", "--move-to", "Processed"],
        &[(IMAP_VAR, dovecot::PASSWORD)],
    );
    run.expect_code(0);
    assert!(
        summary(&run).starts_with(
            "bounces: 250 messages read, 6 DSNs, 6 matched (6 booked, 0 delays), 0 already booked, 0 unmatched, 0 auto-replies, 244 other mail"
        ),
        "{}",
        run.all()
    );
    let keys: BTreeSet<String> = reports.values().map(|(k, _)| k.to_string()).collect();
    assert_eq!(bounced_keys(&env), keys);
    assert_eq!(dovecot.messages(&user, Some("Processed")).len(), 6);
    assert_eq!(dovecot.messages(&user, None).len(), 244);
}
