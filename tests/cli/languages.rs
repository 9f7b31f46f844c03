//! The notice in the customer's language, and what the operator hears about the
//! templates: a mixed CSV gets each row's notice in its language (subject, text and HTML
//! decoded from the delivered bytes, `Content-Language`); a language without templates
//! warns and falls back; the English templates count in the changed-templates guard; a
//! template error names what is wrong and never suggests skipping everyone.

use std::collections::BTreeMap;

use mail_parser::{Message, MessageParser, MimeHeaders};

use crate::support::flowed;
use crate::support::smtp_server::SmtpServer;
use crate::support::testenv::TestEnv;

const HEADER: &str = "customer_id,name,email,personnummer,address,affected,confirmed,language";

/// The example with its CSV replaced by `rows` (after the header), relaying to `server`.
fn mailing(server: &SmtpServer, rows: &[&str]) -> TestEnv {
    let env = TestEnv::example();
    env.relay(server.port());
    let mut csv = format!("{HEADER}\n");
    for r in rows {
        csv.push_str(r);
        csv.push('\n');
    }
    env.write("recipients.example.csv", csv);
    env
}

/// What a reader sees of one message: Content-Language, subject, the text part as a
/// format=flowed client shows it, the HTML part.
struct Seen {
    language: String,
    subject: String,
    text: String,
    html: String,
}

fn seen(bytes: &[u8]) -> Seen {
    let m: Message = MessageParser::default()
        .parse(bytes)
        .expect("parses as MIME");
    let text_part = m.text_part(0).expect("a text part");
    let content_type = text_part.content_type().expect("text part's Content-Type");
    assert_eq!(
        content_type.attribute("format"),
        Some("flowed"),
        "the text part is format=flowed"
    );
    assert_eq!(content_type.attribute("delsp"), None, "no word is broken");
    let raw_text = m.body_text(0).expect("text").replace("\r\n", "\n");
    for line in raw_text.lines() {
        assert!(
            line.trim_end().chars().count() <= 73 || !line.trim().contains(' '),
            "a line longer than 72 columns: {line:?}"
        );
    }
    Seen {
        language: m
            .header_raw("Content-Language")
            .map(str::trim)
            .unwrap_or("")
            .to_string(),
        subject: m.subject().unwrap_or("").to_string(),
        text: flowed::decode(&raw_text, false),
        html: m.body_html(0).expect("html").to_string(),
    }
}

/// The delivered messages by the key in their To address's local part (`k1001@…`).
fn delivered(server: &SmtpServer) -> BTreeMap<String, Seen> {
    server
        .received()
        .iter()
        .map(|r| {
            let key = r.rcpt_to[0]
                .trim_start_matches('k')
                .split('@')
                .next()
                .unwrap_or("")
                .to_string();
            (key, seen(&r.data))
        })
        .collect()
}

#[test]
fn a_mixed_csv_gets_each_row_in_its_language() {
    let server = SmtpServer::plain();
    let env = mailing(
        &server,
        &[
            "1001,Åsa Öberg,k1001@example.se,19800101-0000,Storgatan 1,namn|adress|personnummer|bank,ja,sv",
            "1002,Emily Carter,k1002@example.se,19900101-0000,High Street 1,namn|epost,nej,en",
            "1003,Ben Smith,k1003@example.se,19900101-0001,Main Road 2,namn|adress|personnummer,ja,EN",
            "1004,Oskar Berg,k1004@example.se,19900101-0002,Gatan 3,namn|telefon,ja,",
            "1005,Grace Lee,k1005@example.se,19900101-0003,Elm Street 4,namn|bank,nej, en-GB ",
        ],
    );
    let run = env.run(&["send", "--yes"]);
    run.expect_code(0);
    assert!(!run.stderr.contains("has no templates"), "{}", run.all());
    let got = delivered(&server);
    assert_eq!(got.len(), 5);

    for (key, name) in [("1001", "Åsa Öberg"), ("1004", "Oskar Berg")] {
        let m = &got[key];
        assert_eq!(m.language, "sv", "{key}");
        assert_eq!(
            m.subject,
            "Viktig information om dina personuppgifter efter ett dataintrång hos NEKTAB"
        );
        assert!(m.text.starts_with(&format!("Hej {name},\n")), "{}", m.text);
        assert!(m.html.contains("<html lang=\"sv\">"));
        assert!(
            m.text
                .contains("fredagen den 6 och lördagen den 7 oktober 2023")
        );
    }
    for (key, name) in [
        ("1002", "Emily Carter"),
        ("1003", "Ben Smith"),
        ("1005", "Grace Lee"),
    ] {
        let m = &got[key];
        assert_eq!(m.language, "en", "{key}");
        assert_eq!(
            m.subject,
            "Important information about your personal data after a data breach at NEKTAB"
        );
        assert!(m.text.starts_with(&format!("Dear {name},\n")), "{}", m.text);
        assert!(m.html.contains("<html lang=\"en\">"));
        assert!(m.html.contains(&format!("Dear {name},")));
        assert!(
            m.text.contains(
                "In the night between Friday 6 and Saturday 7 October 2023 we discovered"
            ),
            "{}",
            m.text
        );
        assert!(!m.text.contains("Vad har hänt"), "{key} has no Swedish");
    }
    // A paragraph reads back whole, though it went out on several lines.
    assert!(got["1002"].text.contains(
        "We regret to tell you that NEKTAB has suffered a data breach, and that information about you may be among what the attackers obtained. We are truly sorry.\n"
    ));
    // The advice as ranked for each one's data.
    let first_advice = |m: &Seen, heading: &str| -> String {
        let section = m.text.split(heading).nth(1).expect("advice");
        section
            .lines()
            .find(|l| l.starts_with("1. "))
            .expect("first advice")
            .to_string()
    };
    let en = "What you can do – the most important first";
    let sv = "Det här kan du göra – det viktigaste först";
    assert!(first_advice(&got["1002"], en).starts_with("1. Be on your guard"));
    assert!(first_advice(&got["1003"], en).starts_with("1. Keep an eye on your bank account"));
    assert!(got["1003"].text.contains("fraud alert (bedrägerispärr)"));
    assert!(!got["1002"].text.contains("fraud alert"));
    assert!(first_advice(&got["1005"], en).starts_with("1. Keep an eye on your bank account"));
    assert!(first_advice(&got["1001"], sv).starts_with("1. Håll koll på ditt bankkonto"));
    assert!(first_advice(&got["1004"], sv).starts_with("1. Var på din vakt mot mejl"));
    for m in got.values() {
        assert!(!m.text.contains("19800101") && !m.text.contains("19900101"));
        assert!(!m.html.contains("19800101") && !m.html.contains("19900101"));
    }
}

#[test]
fn a_language_without_templates_warns_naming_the_rows_and_gets_the_default() {
    let server = SmtpServer::plain();
    let env = mailing(
        &server,
        &[
            "1001,Åsa Öberg,k1001@example.se,1,Gatan 1,namn,ja,sv",
            "1002,Hans Müller,k1002@example.se,1,Gatan 2,namn,ja,de",
            "1003,Emily Carter,k1003@example.se,1,Gatan 3,namn,ja,en",
            "1004,Greta Schmidt,k1004@example.se,1,Gatan 4,namn,ja,DE",
            "1005,Lena Fischer,k1005@example.se,1,Gatan 5,namn,ja,fr",
        ],
    );
    let run = env.run(&["preview"]);
    run.expect_code(0);
    run.expect_stderr(
        "warning: recipients.example.csv:3: column language: language \"de\" has no templates (templates/de is missing) on 2 row(s), lines 3, 5: they get the default language, sv; add the folder, or correct the column",
    );
    run.expect_stderr(
        "warning: recipients.example.csv:6: column language: language \"fr\" has no templates (templates/fr is missing) on 1 row(s), line 6: it gets the default language, sv",
    );
    assert!(run.all().contains("warnings 2,"), "{}", run.all());
    let run = env.run(&["send", "--yes"]);
    run.expect_code(0);
    run.expect_stderr("language \"de\" has no templates");
    let got = delivered(&server);
    for key in ["1001", "1002", "1004", "1005"] {
        assert_eq!(got[key].language, "sv", "{key}");
        assert!(got[key].subject.starts_with("Viktig information"), "{key}");
        assert!(got[key].text.starts_with("Hej "), "{key}");
    }
    assert_eq!(got["1003"].language, "en");
}

#[test]
fn a_config_naming_a_language_column_the_csv_lacks_warns() {
    let env = TestEnv::example();
    let csv = env.read("recipients.example.csv");
    env.write(
        "recipients.example.csv",
        csv.replace(",language\n", ",sprak\n"),
    );
    let run = env.run(&["preview"]);
    run.expect_code(0);
    run.expect_stderr(
        "warning: recipients.example.csv:1: column language: [recipients] language_column names \"language\", but the file has no such column: every row gets the default language, sv",
    );
}

#[test]
fn changing_the_english_template_trips_the_changed_templates_guard() {
    let server = SmtpServer::plain();
    let env = mailing(
        &server,
        &[
            "1001,Åsa Öberg,k1001@example.se,1,Gatan 1,namn,ja,sv",
            "1002,Emily Carter,k1002@example.se,1,Gatan 2,namn,ja,en",
            "1003,Ben Smith,k1003@example.se,1,Gatan 3,namn,ja,en",
        ],
    );
    env.run(&["send", "--yes", "--limit", "2"]).expect_code(0);
    assert_eq!(server.received().len(), 2);
    let first_hash = env.events("run")[0]["templates_sha256"]
        .as_str()
        .expect("hash")
        .to_string();

    let mut body = env.read("templates/en/body.txt");
    body.push_str("\nPS. A correction after the first mailing.\n");
    env.write("templates/en/body.txt", body);
    let run = env.run(&["send", "--yes"]);
    run.expect_code(2);
    assert!(
        run.stderr.contains("--allow-changed-templates"),
        "{}",
        run.all()
    );
    assert_eq!(server.received().len(), 2, "nothing sent");

    let run = env.run(&["send", "--yes", "--allow-changed-templates"]);
    run.expect_code(0);
    let runs = env.events("run");
    let last_hash = runs.last().expect("run")["templates_sha256"]
        .as_str()
        .expect("hash");
    assert_ne!(last_hash, first_hash, "the English template is in the hash");
    let got = delivered(&server);
    assert!(
        got["1003"]
            .text
            .contains("PS. A correction after the first mailing.")
    );
    assert!(!got["1002"].text.contains("PS. A correction"));
}

#[test]
fn an_unknown_tag_is_named() {
    let env = TestEnv::example();
    let body = env.read("templates/body.txt");
    env.write(
        "templates/body.txt",
        body.replacen("{% endfor %}", "{% endfr %}", 1),
    );
    let run = env.run(&["preview"]);
    run.expect_code(2);
    let line = run
        .stderr
        .lines()
        .find(|l| l.contains("templates/body.txt:"))
        .unwrap_or_else(|| panic!("no line names the template:\n{}", run.stderr));
    assert!(
        line.contains(
            "unknown tag \"endfr\" in {% endfr %}: the tags are if, elif, else, endif, for, endfor"
        ),
        "{line}"
    );
    assert!(line.ends_with("(check the spelling)"), "{line}");
}

#[test]
fn a_template_error_on_every_row_does_not_suggest_skipping_everyone() {
    let server = SmtpServer::plain();
    let env = TestEnv::example();
    env.relay(server.port());
    for subject in ["templates/subject.txt", "templates/en/subject.txt"] {
        env.write(subject, "{{ recipient.kundnummer }}");
    }
    for args in [&["preview"][..], &["send", "--yes"][..]] {
        let run = env.run(args);
        run.expect_code(2);
        let last = run.stderr.lines().last().unwrap_or("");
        assert!(
            last.contains("12 of 12 rows cannot be sent")
                && last.ends_with(
                    "correct the templates as the lines above say (--skip-invalid would leave out everyone)"
                ),
            "{args:?}: {last}"
        );
        assert!(!last.contains("leave them out with"), "{last}");
    }
    assert!(server.received().is_empty());
    // With one good row, skipping the others is advice worth giving.
    env.write("templates/subject.txt", "Information");
    let run = env.run(&["preview"]);
    run.expect_code(2);
    run.expect_stderr(
        "3 of 12 rows cannot be sent: correct them, or leave them out with --skip-invalid",
    );
}

#[test]
fn status_and_the_report_count_each_language() {
    let env = TestEnv::example();
    let status = env.run(&["status", "--report", "rapport.md"]);
    status.expect_code(0);
    assert!(
        status.stdout.contains("  language en       pending 3\n"),
        "{}",
        status.stdout
    );
    assert!(
        status.stdout.contains("  language sv       pending 9\n"),
        "{}",
        status.stdout
    );
    let report = env.read("rapport.md");
    assert!(report.contains("  - på språket en: 0 av 3\n"), "{report}");
    assert!(report.contains("  - på språket sv: 0 av 9\n"), "{report}");
    let json = env.run(&["status", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&json.stdout).expect("json");
    assert_eq!(v["by_language"]["en"]["pending"], 3);
}
