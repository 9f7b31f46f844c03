//! Reading delivery status notifications (bounces) and auto-replies.
//!
//! The relay accepting a notice is not the end of its journey: the recipient's own server
//! may still refuse it hours later and mail a bounce back to our sender address. Until such
//! a bounce is booked in the journal, the recipient counts as `sent` although they were never
//! told about the breach. This module turns one raw message from the bounce mailbox into a
//! [`Report`]: whether it is a bounce at all (RFC 3464 reports as well as the text layouts
//! of the common servers), which addresses failed with which status and diagnostic, whether
//! that failure is final (the report's own words first, then the status digit), and the
//! Message-ID of our original notice, which our deterministic IDs let the caller match
//! exactly. Auto-replies and feedback reports are recognized so they can be counted and set
//! aside. Parsing is best-effort and total: any bytes give a report, never a panic.
//!
//! The parts, as the old single file's sections were: `headers` (header fields and
//! Message-IDs), `mime` (the MIME parts and RFC 3464's per-recipient fields), `status`
//! (status codes and the verdict), `layouts` (text layouts, one file per server family),
//! `auto_reply`, `address`.

mod address;
mod auto_reply;
mod headers;
mod layouts;
mod mime;
mod status;

use mail_parser::decoders::html::html_to_text;
use mail_parser::{Header, HeaderValue, Message, MessageParser, MessagePart, PartType};
use sha2::{Digest, Sha256};

use crate::journal::Class;
use crate::text::{hex, one_line_within};
use address::*;
use auto_reply::*;
use headers::*;
use layouts::*;
use mime::*;
use status::*;

/// What kind of message a [`Report`] was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReportKind {
    /// A delivery status notification: a bounce or a delay notice.
    Dsn,
    /// An automatic answer (out of office, vacation, read receipt): not a bounce.
    AutoReply,
    /// Anything else.
    Other,
}

impl ReportKind {
    /// `dsn`, `auto-reply` or `other`.
    pub fn as_str(self) -> &'static str {
        match self {
            ReportKind::Dsn => "dsn",
            ReportKind::AutoReply => "auto-reply",
            ReportKind::Other => "other",
        }
    }
}

/// One recipient a report says was not delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BounceRecipient {
    /// Lower-cased bare address (`Original-Recipient` where present, else `Final-Recipient`).
    pub email: String,
    /// Enhanced status code such as `5.1.1`, derived from the diagnostic's SMTP code where
    /// the report gives none.
    pub status: String,
    /// `failed`, `delayed`, ... as the report says (`failed` or `delayed` for text bounces).
    pub action: String,
    /// The server's answer on one line, without CR or LF, at most 500 characters.
    pub diagnostic: String,
    pub class: Class,
}

/// What one message from the bounce mailbox says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub kind: ReportKind,
    /// A stable id of this report: its own Message-ID (with angle brackets), else
    /// `sha256:<hex of the raw bytes>`.
    pub id: String,
    /// The Message-ID of our message it answers, with angle brackets.
    pub original_message_id: Option<String>,
    /// The recipients that failed or were delayed; empty unless `kind` is `Dsn`. Recipients
    /// a report lists as delivered, relayed or expanded are left out.
    pub recipients: Vec<BounceRecipient>,
    /// The report's own subject, decoded, on one line.
    pub subject: String,
}

/// Longest diagnostic kept, in characters.
pub(crate) const MAX_DIAGNOSTIC_CHARS: usize = 500;
/// Longest subject kept, in characters.
pub(crate) const MAX_SUBJECT_CHARS: usize = 500;
/// Longest Message-ID accepted (a header line's limit).
pub(crate) const MAX_ID_LEN: usize = 998;
/// More `message/rfc822` (or `message/global`, `multipart/digest`) markers than this and
/// only the headers are parsed: mail-parser nests such parts without a depth limit, and a
/// message nested some ten thousand levels deep overflows the stack (an abort, not a
/// panic). Real bounces hold one or two.
pub(crate) const MAX_NESTED_MESSAGES: usize = 64;

/// The message with LF line ends and no trailing blank lines. The same report reads as
/// CRLF over IMAP and as LF from a Maildir or an mbox; a report without a Message-ID of its
/// own is known by the SHA-256 of these bytes, so that it is the same report both ways.
fn lf_line_ends(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'\r' && raw.get(i + 1) == Some(&b'\n') {
            i += 1;
            continue;
        }
        out.push(raw[i]);
        i += 1;
    }
    while out.ends_with(b"\n\n") {
        out.pop();
    }
    out
}

/// Reads one raw message (as found in an mbox, a Maildir or an IMAP mailbox).
pub fn parse(raw: &[u8]) -> Report {
    let sha_id = || format!("sha256:{}", hex(&Sha256::digest(lf_line_ends(raw))));
    let Some(message) = parse_mime(raw) else {
        return Report {
            kind: ReportKind::Other,
            id: sha_id(),
            original_message_id: None,
            recipients: Vec::new(),
            subject: String::new(),
        };
    };
    let top = top_headers(&message);
    let id = header_ids(top, "Message-ID")
        .into_iter()
        .next()
        .unwrap_or_else(sha_id);
    let subject = one_line_within(header_text(top, "Subject").unwrap_or(""), MAX_SUBJECT_CHARS);

    let parts = Parts::collect(&message);
    let body = parts.body_text();
    let header_reference = header_ids(top, "In-Reply-To")
        .into_iter()
        .next()
        .or_else(|| header_ids(top, "References").into_iter().last());
    let report_type = match content_type(top) {
        Some((ctype, subtype)) if ctype == "multipart" && subtype == "report" => {
            report_type(top).unwrap_or_default().to_ascii_lowercase()
        }
        _ => String::new(),
    };

    // A feedback report (a complaint) quotes our message but says nothing about delivery.
    let feedback = parts.feedback || report_type == "feedback-report";
    let (kind, recipients) = if feedback {
        (ReportKind::Other, Vec::new())
    } else if !parts.status.is_empty() || report_type == "delivery-status" {
        let mut recipients = Vec::new();
        let mut saw_block = false;
        for block in &parts.status {
            let (found, saw) = status_fields_recipients(block);
            saw_block |= saw;
            recipients.extend(found);
        }
        if !saw_block {
            recipients = text_bounce_recipients(top, &body, &subject);
        }
        (ReportKind::Dsn, recipients)
    } else if let Some(recipients) = text_bounce(top, &subject, &body) {
        (ReportKind::Dsn, recipients)
    } else if parts.disposition
        || report_type == "disposition-notification"
        || is_auto_reply(top, &subject)
    {
        (ReportKind::AutoReply, Vec::new())
    } else {
        (ReportKind::Other, Vec::new())
    };

    let original_message_id = if kind == ReportKind::Dsn {
        parts
            .original_ids
            .first()
            .or(parts.reported_ids.first())
            .cloned()
            .or_else(|| body_reference(&body))
            .or(header_reference)
    } else {
        header_reference
    };
    let mut report = Report {
        kind,
        id,
        original_message_id,
        recipients,
        subject,
    };
    dedup_recipients(&mut report.recipients);
    report
}

/// Runs mail-parser, unless the message nests so many messages that its tree would be a
/// danger to the stack; then only the headers are read.
///
/// mail-parser 0.11 has `debug_assert!(false, ...)` on some malformed multiparts (found by
/// fuzzing: "Invalid part ID, could not find multipart."), so in a build with debug
/// assertions it panics where a release build recovers. Such a panic is caught here and
/// the headers alone are read instead. (Setting `debug-assertions = false` for the
/// mail-parser package in the dev profile keeps its message off stderr.)
fn parse_mime(raw: &[u8]) -> Option<Message<'_>> {
    let parser = MessageParser::new();
    let lower = raw.to_ascii_lowercase();
    let nesting: usize = [
        &b"message/rfc822"[..],
        b"message/global",
        b"multipart/digest",
    ]
    .iter()
    .map(|needle| memchr::memmem::find_iter(&lower, needle).count())
    .sum();
    let full = nesting <= MAX_NESTED_MESSAGES;
    if full && let Ok(parsed) = std::panic::catch_unwind(|| parser.parse(raw)) {
        return parsed;
    }
    std::panic::catch_unwind(|| parser.parse_headers(raw))
        .ok()
        .flatten()
}

/// Keeps the first report of each address.
pub(crate) fn dedup_recipients(recipients: &mut Vec<BounceRecipient>) {
    let mut seen = std::collections::HashSet::new();
    recipients.retain(|r| seen.insert(r.email.clone()));
}

#[cfg(test)]
mod tests {
    use super::*;

    const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/bounces");

    fn corpus(name: &str) -> Vec<u8> {
        std::fs::read(format!("{CORPUS}/{name}")).expect("corpus file")
    }

    /// A DSN around one set of per-recipient fields.
    fn dsn_with(fields: &str) -> Vec<u8> {
        format!(
            "From: MAILER-DAEMON@mx.example.com\r\n\
             Subject: Undelivered Mail Returned to Sender\r\n\
             Message-ID: <bounce.1@mx.example.com>\r\n\
             MIME-Version: 1.0\r\n\
             Content-Type: multipart/report; report-type=delivery-status; boundary=\"b\"\r\n\
             \r\n\
             --b\r\n\
             Content-Type: text/plain\r\n\
             \r\n\
             It did not work.\r\n\
             --b\r\n\
             Content-Type: message/delivery-status\r\n\
             \r\n\
             Reporting-MTA: dns; mx.example.com\r\n\
             \r\n\
             {fields}\r\n\
             --b\r\n\
             Content-Type: text/rfc822-headers\r\n\
             \r\n\
             Message-ID: <nektab-2023-10.00ff@example.se>\r\n\
             \r\n\
             --b--\r\n"
        )
        .into_bytes()
    }

    fn class_name(class: Class) -> &'static str {
        match class {
            Class::Permanent => "permanent",
            Class::Transient => "transient",
        }
    }

    fn summary(report: &Report) -> Vec<String> {
        let mut columns = vec![report.kind.as_str().to_string()];
        for r in &report.recipients {
            columns.push(format!("{} {} {}", r.email, r.status, class_name(r.class)));
        }
        columns.push(
            report
                .original_message_id
                .clone()
                .unwrap_or_else(|| "-".to_string()),
        );
        columns
    }

    /// Checks every fixture of `dir` against its table `tsv` (file, [layout,] then the
    /// columns of [`summary`]): the table lists every `.eml` there and no other, and each
    /// parses to its row. Returns the number of rows.
    fn check_table(dir: &str, tsv: &str, with_layout: bool) -> usize {
        let table = std::fs::read_to_string(format!("{dir}/{tsv}")).unwrap();
        let mut listed = Vec::new();
        let mut failures = Vec::new();
        for line in table.lines() {
            if line.trim().is_empty() || line.starts_with('#') {
                continue;
            }
            let mut columns: Vec<&str> = line.split('\t').collect();
            let file = columns.remove(0);
            let layout = if with_layout { columns.remove(0) } else { "" };
            listed.push(file.to_string());
            let raw = std::fs::read(format!("{dir}/{file}")).unwrap();
            let got = summary(&parse(&raw));
            if got != columns {
                failures.push(format!(
                    "{file} {layout}:\n  expected {columns:?}\n  got      {got:?}"
                ));
            }
        }
        let mut on_disk: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".eml"))
            .collect();
        on_disk.sort();
        listed.sort();
        assert_eq!(on_disk, listed, "every .eml is in {tsv} and no other");
        assert!(failures.is_empty(), "{}", failures.join("\n"));
        listed.len()
    }

    #[test]
    fn corpus_matches_expected_tsv() {
        check_table(CORPUS, "expected.tsv", false);
    }

    /// The layouts table: one fixture per server family's layout, with what it must give
    /// (recipient, status, and the verdict: permanent is booked, transient is a delay).
    #[test]
    fn layouts_match_their_table() {
        let rows = check_table(&format!("{CORPUS}/layouts"), "layouts.tsv", true);
        assert!(rows >= 25);
    }

    #[test]
    fn postfix_report_in_detail() {
        let report = parse(&corpus("postfix-user-unknown.eml"));
        assert_eq!(report.id, "<20231012081503.4SAbc12xYz@mail.example.com>");
        assert_eq!(report.subject, "Undelivered Mail Returned to Sender");
        assert_eq!(
            report.recipients,
            vec![BounceRecipient {
                email: "anna.andersson@example.com".into(),
                status: "5.1.1".into(),
                action: "failed".into(),
                diagnostic: "550 5.1.1 <anna.andersson@example.com>: Recipient address \
                             rejected: User unknown in virtual mailbox table"
                    .into(),
                class: Class::Permanent,
            }]
        );
    }

    #[test]
    fn delayed_report_is_transient() {
        let report = parse(&corpus("postfix-delayed.eml"));
        let r = &report.recipients[0];
        assert_eq!(r.action, "delayed");
        assert_eq!(r.class, Class::Transient);
        assert_eq!(
            r.diagnostic,
            "connect to mx.example.com[192.0.2.26]:25: Connection timed out"
        );
    }

    #[test]
    fn text_bounces_keep_their_diagnostic() {
        let exim = parse(&corpus("exim-failed.eml"));
        assert_eq!(exim.recipients[0].action, "failed");
        assert!(
            exim.recipients[0]
                .diagnostic
                .ends_with("550 No such user here"),
            "{}",
            exim.recipients[0].diagnostic
        );
        let qmail = parse(&corpus("qmail-plain.eml"));
        assert_eq!(
            qmail.recipients[1].diagnostic,
            "Sorry, no mailbox here by that name. (#5.1.1)"
        );
        let gmail = parse(&corpus("gmail-legacy-text.eml"));
        assert!(
            gmail.recipients[0]
                .diagnostic
                .starts_with("550 5.1.1 <hanna.holm@")
        );
    }

    #[test]
    fn original_id_from_attachment_alone() {
        // The Microsoft 365 report without its In-Reply-To and References: the attached
        // headers-only message/rfc822 still names the original.
        let raw = String::from_utf8(corpus("m365-recipient-not-found.eml")).unwrap();
        let raw: String = raw
            .split_inclusive('\n')
            .filter(|l| !l.starts_with("In-Reply-To:") && !l.starts_with("References:"))
            .collect();
        assert!(!raw.contains("In-Reply-To"));
        let report = parse(raw.as_bytes());
        assert_eq!(
            report.original_message_id.as_deref(),
            Some("<nektab-2023-10.5e6f708192a3b4c5d6e7f8091a2b3c4d@example.se>")
        );
    }

    #[test]
    fn auto_reply_subject_is_decoded() {
        let report = parse(&corpus("autoreply-franvaro.eml"));
        assert_eq!(
            report.subject,
            "Frånvaro: Viktig information om en personuppgiftsincident hos NEKTAB"
        );
        assert!(report.recipients.is_empty());
    }

    #[test]
    fn status_derived_from_smtp_code() {
        assert_eq!(derive_status("550 No such user").as_deref(), Some("5.0.0"));
        assert_eq!(
            derive_status("552 Requested action aborted: mailbox full").as_deref(),
            Some("5.2.2")
        );
        assert_eq!(derive_status("452 Try later").as_deref(), Some("4.0.0"));
        assert_eq!(
            derive_status("said: 550-5.7.1 Blocked").as_deref(),
            Some("5.7.1")
        );
        assert_eq!(derive_status("(#5.1.1)").as_deref(), Some("5.1.1"));
        assert_eq!(
            derive_status("status 5.1.10 here").as_deref(),
            Some("5.1.10")
        );
        // Addresses, ports and versions are not codes.
        assert_eq!(derive_status("[203.0.113.45]:465: timed out"), None);
        assert_eq!(derive_status("Exim 4.96.1 said nothing"), None);
        assert_eq!(derive_status("host 10.5.5.5 refused"), None);
    }

    #[test]
    fn failed_without_status_is_permanent() {
        let report = parse(&dsn_with(
            "Final-Recipient: rfc822; x@example.com\r\nAction: failed\r\n",
        ));
        assert_eq!(report.kind, ReportKind::Dsn);
        assert_eq!(report.recipients[0].status, "5.0.0");
        assert_eq!(report.recipients[0].class, Class::Permanent);
        assert_eq!(
            report.original_message_id.as_deref(),
            Some("<nektab-2023-10.00ff@example.se>")
        );
    }

    #[test]
    fn status_from_diagnostic_when_missing() {
        let report = parse(&dsn_with(
            "Final-Recipient: rfc822; x@example.com\r\nAction: failed\r\n\
             Diagnostic-Code: smtp; 552 sorry, mailbox is full\r\n",
        ));
        assert_eq!(report.recipients[0].status, "5.2.2");
        let report = parse(&dsn_with(
            "Final-Recipient: rfc822; x@example.com\r\nAction: delayed\r\n",
        ));
        assert_eq!(report.recipients[0].status, "4.0.0");
        assert_eq!(report.recipients[0].class, Class::Transient);
    }

    #[test]
    fn failed_with_4xx_status_is_final() {
        // Issue 16: the report's Action speaks first; the server has given up.
        let report = parse(&dsn_with(
            "Final-Recipient: rfc822; x@example.com\r\nAction: failed\r\nStatus: 4.4.7\r\n",
        ));
        assert_eq!(report.recipients[0].class, Class::Permanent);
        assert_eq!(report.recipients[0].status, "4.4.7");
        assert_eq!(report.recipients[0].action, "failed");
        // Delayed with a 4.x.x is a delay; without an Action, final words decide.
        let report = parse(&dsn_with(
            "Final-Recipient: rfc822; x@example.com\r\nAction: delayed\r\nStatus: 4.4.7\r\n",
        ));
        assert_eq!(report.recipients[0].class, Class::Transient);
        let report = parse(&dsn_with(
            "Final-Recipient: rfc822; x@example.com\r\nStatus: 4.4.7\r\n\
             Diagnostic-Code: X-Postfix; retry timeout exceeded\r\n",
        ));
        assert_eq!(report.recipients[0].class, Class::Permanent);
        let report = parse(&dsn_with(
            "Final-Recipient: rfc822; x@example.com\r\nStatus: 4.4.7\r\n",
        ));
        assert_eq!(report.recipients[0].class, Class::Transient);
    }

    #[test]
    fn delivered_recipients_are_left_out() {
        let report = parse(&dsn_with(
            "Final-Recipient: rfc822; ok@example.com\r\nAction: delivered\r\nStatus: 2.0.0\r\n\
             \r\n\
             Final-Recipient: rfc822; bad@example.com\r\nAction: failed\r\nStatus: 5.1.1\r\n",
        ));
        assert_eq!(report.kind, ReportKind::Dsn);
        let emails: Vec<&str> = report.recipients.iter().map(|r| r.email.as_str()).collect();
        assert_eq!(emails, ["bad@example.com"]);
    }

    #[test]
    fn multi_line_replies_collapse() {
        assert_eq!(
            collapse_reply("550-5.1.1 The account 550-5.1.1 does not 550 5.1.1 exist - gsmtp"),
            "550 5.1.1 The account does not exist - gsmtp"
        );
        assert_eq!(collapse_reply("550 5.1.1 Unknown"), "550 5.1.1 Unknown");
        assert_eq!(collapse_reply("user unknown"), "user unknown");
        assert_eq!(
            collapse_reply("550 5.7.1 sent 550 times"),
            "550 5.7.1 sent 550 times"
        );
        assert_eq!(
            collapse_reply("452-Too many 452 recipients"),
            "452 Too many recipients"
        );
        let report = parse(&corpus("gmail-address-not-found.eml"));
        assert!(
            report.recipients[0].diagnostic.starts_with(
                "550 5.1.1 The email account that you tried to reach does not \
                              exist. Please try double-checking"
            ),
            "{}",
            report.recipients[0].diagnostic
        );
    }

    #[test]
    fn diagnostic_is_one_short_line() {
        let long = "x".repeat(2000);
        let report = parse(&dsn_with(&format!(
            "Final-Recipient: rfc822; x@example.com\r\nAction: failed\r\nStatus: 5.1.1\r\n\
             Diagnostic-Code: smtp; 550 first\r\n  second\r\n\tthird {long}\r\n"
        )));
        let d = &report.recipients[0].diagnostic;
        assert!(d.starts_with("550 first second third xxx"), "{d}");
        assert_eq!(d.chars().count(), MAX_DIAGNOSTIC_CHARS);
        assert!(!d.contains(['\r', '\n', '\t']));
        assert_eq!(one_line_within("  a \r\n b\u{0}c  ", 500), "a b c");
        assert_eq!(one_line_within("abc def", 4), "abc");
    }

    #[test]
    fn line_ends_do_not_change_a_report_id() {
        let lf = b"From: MAILER-DAEMON@x\nSubject: failure notice\n\nbody\n\n\n".to_vec();
        let crlf = b"From: MAILER-DAEMON@x\r\nSubject: failure notice\r\n\r\nbody\r\n".to_vec();
        assert_eq!(lf_line_ends(&lf), lf_line_ends(&crlf));
        assert_eq!(parse(&lf).id, parse(&crlf).id);
        assert_eq!(lf_line_ends(b"a\rb\r\n"), b"a\rb\n");
    }

    #[test]
    fn id_falls_back_to_sha256() {
        let raw = b"From: a@example.com\nSubject: hi\n\nbody\n";
        let report = parse(raw);
        assert_eq!(report.kind, ReportKind::Other);
        assert!(report.id.starts_with("sha256:"));
        assert_eq!(report.id.len(), "sha256:".len() + 64);
        assert_eq!(parse(raw).id, report.id);
        assert_ne!(parse(b"From: b@example.com\n\nx\n").id, report.id);
    }

    #[test]
    fn exim_delay_warning_is_transient() {
        let raw = "From: Mail Delivery System <Mailer-Daemon@relay.example.org>\n\
            Subject: Warning: message 1qqrSt-0004Ab-2x delayed 24 hours\n\
            Auto-Submitted: auto-replied\n\
            \n\
            This message was created automatically by mail delivery software.\n\
            A message that you sent has not yet been delivered to one or more of its\n\
            recipients after more than 24 hours on the queue on relay.example.org.\n\
            \n\
            The message identifier is:     1qqrSt-0004Ab-2x\n\
            \n\
            The address to which the message has not yet been delivered is:\n\
            \n\
            \x20 olof.ost@example.org\n\
            \x20   host mx.example.org [203.0.113.45]\n\
            \x20   Delay reason: SMTP error from remote mail server after RCPT TO:<olof.ost@example.org>:\n\
            \x20   451 4.7.1 Greylisted, try again later\n\
            \n\
            No action is required on your part.\n";
        let report = parse(raw.as_bytes());
        assert_eq!(report.kind, ReportKind::Dsn);
        assert_eq!(report.recipients.len(), 1);
        let r = &report.recipients[0];
        assert_eq!(
            (r.email.as_str(), r.status.as_str()),
            ("olof.ost@example.org", "4.7.1")
        );
        assert_eq!((r.class, r.action.as_str()), (Class::Transient, "delayed"));
    }

    #[test]
    fn auto_reply_headers() {
        for header in [
            "X-Autoreply: yes",
            "Precedence: auto_reply",
            "Auto-Submitted: auto-replied",
            "X-Autorespond: Out of office",
        ] {
            let raw = format!(
                "From: a@example.com\nSubject: Re: Viktig information\n{header}\n\
                 In-Reply-To: <nektab-2023-10.11@example.se>\n\nLedig.\n"
            );
            let report = parse(raw.as_bytes());
            assert_eq!(report.kind, ReportKind::AutoReply, "{header}");
            assert_eq!(
                report.original_message_id.as_deref(),
                Some("<nektab-2023-10.11@example.se>")
            );
        }
        for subject in [
            "Out of Office: x",
            "Automatic reply: x",
            "Autosvar: x",
            "SV: Frånvaro",
        ] {
            let raw = format!("From: a@example.com\nSubject: {subject}\n\nLedig.\n");
            assert_eq!(
                parse(raw.as_bytes()).kind,
                ReportKind::AutoReply,
                "{subject}"
            );
        }
        // Our own notices say auto-generated: that alone is no auto-reply.
        let raw = b"From: a@example.com\nSubject: Hej\nAuto-Submitted: auto-generated\n\nx\n";
        assert_eq!(parse(raw).kind, ReportKind::Other);
    }

    #[test]
    fn read_receipt_is_an_auto_reply() {
        let raw = b"From: a@example.com\nSubject: Read: Viktig information\n\
            MIME-Version: 1.0\n\
            Content-Type: multipart/report; report-type=disposition-notification; boundary=x\n\n\
            --x\nContent-Type: text/plain\n\nYour message was read.\n\
            --x\nContent-Type: message/disposition-notification\n\n\
            Final-Recipient: rfc822; a@example.com\nDisposition: manual-action/MDN-sent-manually; displayed\n\
            --x--\n";
        let report = parse(raw);
        assert_eq!(report.kind, ReportKind::AutoReply);
        assert!(report.recipients.is_empty());
    }

    #[test]
    fn human_reply_is_other_with_reference() {
        let raw = b"From: a@example.com\nSubject: Re: Viktig information\n\
            In-Reply-To: <nektab-2023-10.22@example.se>\n\nVarfor?\n";
        let report = parse(raw);
        assert_eq!(report.kind, ReportKind::Other);
        assert_eq!(
            report.original_message_id.as_deref(),
            Some("<nektab-2023-10.22@example.se>")
        );
    }

    #[test]
    fn garbage_never_panics() {
        for raw in [
            &b""[..],
            b"\n\n\n",
            b"\xff\xfe\x00\x01",
            b":::\n:\n",
            b"Content-Type: multipart/report; boundary=\n\n--\n--\n",
            b"Content-Type: message/rfc822\n\nContent-Type: message/rfc822\n\n",
            b"Content-Type: multipart/report; report-type=delivery-status; boundary=b\n\n\
              --b\nContent-Type: message/delivery-status\n\nFinal-Recipient: rfc822;\n\
              Status: 5.\nAction:\n--b",
        ] {
            let report = parse(raw);
            assert!(!report.id.is_empty());
        }
    }

    #[test]
    fn malformed_multipart_found_by_fuzzing() {
        // With debug assertions, mail-parser 0.11 asserts on this one; we still get a report.
        let raw = b"Message-ID: <m@example.com>\n\
            Content-Type: multipart/mixed; boundary=b\n\n\
            --bContent-Type: message/rfc822\n\n\
            Content-Type: message/rfc822\n\n\n\
            --b--";
        let report = parse(raw);
        assert_eq!(report.id, "<m@example.com>");
    }

    #[test]
    fn deep_nesting_does_not_overflow() {
        let mut raw = b"Subject: deep\n".to_vec();
        for _ in 0..50_000 {
            raw.extend_from_slice(b"Content-Type: message/rfc822\n\n");
        }
        raw.extend_from_slice(b"Subject: bottom\n\nhi\n");
        let report = parse(&raw);
        assert_eq!(report.subject, "deep");
        // Deep multiparts are parsed without a stack either.
        let mut raw = Vec::new();
        for i in 0..20_000 {
            raw.extend_from_slice(
                format!("Content-Type: multipart/mixed; boundary=b{i}\n\n--b{i}\n").as_bytes(),
            );
        }
        parse(&raw);
    }

    #[test]
    fn many_recipients_are_all_read() {
        let mut fields = String::new();
        for i in 0..200 {
            fields.push_str(&format!(
                "Final-Recipient: rfc822; r{i}@example.com\r\nOriginal-Recipient: rfc822; \
                 r{i}@example.com\r\nAction: failed\r\nStatus: 5.1.1\r\n\r\n"
            ));
        }
        assert_eq!(parse(&dsn_with(&fields)).recipients.len(), 200);
    }

    #[test]
    fn hostile_text_stays_linear() {
        let mut raw = b"From: MAILER-DAEMON@example.com\nSubject: Undeliverable\n\n".to_vec();
        for _ in 0..20_000 {
            raw.extend_from_slice(
                b"  failed permanently:\n  Your message wasn't delivered to a@b.c\n",
            );
        }
        let started = std::time::Instant::now();
        let report = parse(&raw);
        assert_eq!(report.kind, ReportKind::Dsn);
        assert!(started.elapsed() < std::time::Duration::from_secs(20));
    }

    #[test]
    fn mutated_corpus_never_panics() {
        // A small deterministic fuzz: flip, cut and splice bytes of every corpus file.
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut files: Vec<Vec<u8>> = std::fs::read_dir(CORPUS)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "eml"))
            .map(|p| std::fs::read(p).unwrap())
            .collect();
        files.sort();
        for round in 0..300 {
            let mut raw = files[round % files.len()].clone();
            for _ in 0..(next() % 8 + 1) {
                let len = raw.len().max(1) as u64;
                let at = (next() % len) as usize;
                match next() % 4 {
                    0 if at < raw.len() => raw[at] = next() as u8,
                    1 => raw.truncate(at),
                    2 => {
                        let chunk: Vec<u8> =
                            raw[at.min(raw.len())..].iter().take(40).copied().collect();
                        raw.splice(at.min(raw.len())..at.min(raw.len()), chunk);
                    }
                    _ => raw.insert(at.min(raw.len()), b"\n-:<>;.5"[(next() % 8) as usize]),
                }
            }
            let report = parse(&raw);
            for r in &report.recipients {
                assert!(r.diagnostic.chars().count() <= MAX_DIAGNOSTIC_CHARS);
                assert!(!r.diagnostic.contains(['\r', '\n']));
            }
        }
    }

    /// Every fixture of both tables.
    fn all_fixtures() -> Vec<Vec<u8>> {
        let mut files = Vec::new();
        for dir in [CORPUS.to_string(), format!("{CORPUS}/layouts")] {
            let mut paths: Vec<_> = std::fs::read_dir(&dir)
                .unwrap()
                .map(|e| e.unwrap().path())
                .filter(|p| p.extension().is_some_and(|e| e == "eml"))
                .collect();
            paths.sort();
            files.extend(paths.into_iter().map(|p| std::fs::read(p).unwrap()));
        }
        files
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config {
            cases: 200,
            failure_persistence: None,
            ..proptest::test_runner::Config::default()
        })]

        /// No report parser panics on a mutated fixture: bytes flipped, the message cut,
        /// pieces repeated, separators and line breaks put in. Each text layout is run on
        /// its own too, not only the first that finds something.
        #[test]
        fn no_report_parser_panics_on_mutated_fixtures(
            pick in proptest::prelude::any::<proptest::sample::Index>(),
            edits in proptest::collection::vec(
                (proptest::prelude::any::<proptest::sample::Index>(), 0u8..5, proptest::prelude::any::<u8>()),
                1..16,
            ),
        ) {
            let files = all_fixtures();
            let mut raw = files[pick.index(files.len())].clone();
            for (at, op, byte) in edits {
                let at = at.index(raw.len() + 1);
                match op {
                    0 if at < raw.len() => raw[at] = byte,
                    1 => raw.truncate(at),
                    2 => {
                        let chunk: Vec<u8> = raw[at..].iter().take(usize::from(byte)).copied().collect();
                        raw.splice(at..at, chunk);
                    }
                    3 => {
                        let piece: &[u8] = [&b"\n"[..], b"\r\n", b":", b"<", b">", b"@", b"\n\n", b"\xff", b" 550 ", b"(reason: "]
                            [usize::from(byte) % 10];
                        raw.splice(at..at, piece.iter().copied());
                    }
                    _ => {
                        let end = (at + usize::from(byte)).min(raw.len());
                        raw.drain(at..end);
                    }
                }
            }
            let report = parse(&raw);
            for r in &report.recipients {
                proptest::prop_assert!(r.diagnostic.chars().count() <= MAX_DIAGNOSTIC_CHARS);
                proptest::prop_assert!(!r.diagnostic.contains(['\r', '\n']));
                proptest::prop_assert!(!r.email.is_empty());
            }
            let text = String::from_utf8_lossy(&raw);
            layouts::every_layout(&text, &report.subject);
        }
    }
}
