//! Reading delivery status notifications (bounces) and auto-replies.
//!
//! The relay accepting a notice is not the end of its journey: the recipient's own server
//! may still refuse it hours later and mail a bounce back to our sender address. Until such
//! a bounce is booked in the journal, the recipient counts as `sent` although they were never
//! told about the breach. This module turns one raw message from the bounce mailbox into a
//! [`Report`]: whether it is a bounce at all (RFC 3464 reports as well as the common
//! non-standard texts of qmail, Exim, Gmail and Exchange), which addresses failed with which
//! status and diagnostic, whether that failure is permanent, and the Message-ID of our
//! original notice, which our deterministic IDs let the caller match exactly. Auto-replies
//! are recognized so they can be counted and set aside. Parsing is best-effort and total:
//! any bytes give a report, never a panic.

use mail_parser::decoders::html::html_to_text;
use mail_parser::{Header, HeaderValue, Message, MessageParser, MessagePart, PartType};
use sha2::{Digest, Sha256};

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

/// Whether a failure is final (5.x.x) or may still resolve itself (4.x.x, delayed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BounceClass {
    Permanent,
    Transient,
}

impl BounceClass {
    /// `permanent` or `transient`, as in the journal's `class` field.
    pub fn as_str(self) -> &'static str {
        match self {
            BounceClass::Permanent => "permanent",
            BounceClass::Transient => "transient",
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
    pub class: BounceClass,
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
const MAX_DIAGNOSTIC_CHARS: usize = 500;
/// Longest subject kept, in characters.
const MAX_SUBJECT_CHARS: usize = 500;
/// Longest Message-ID accepted (a header line's limit).
const MAX_ID_LEN: usize = 998;
/// More `message/rfc822` (or `message/global`, `multipart/digest`) markers than this and
/// only the headers are parsed: mail-parser nests such parts without a depth limit, and a
/// message nested some ten thousand levels deep overflows the stack (an abort, not a
/// panic). Real bounces hold one or two.
const MAX_NESTED_MESSAGES: usize = 64;

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
    let subject = one_line(header_text(top, "Subject").unwrap_or(""), MAX_SUBJECT_CHARS);

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

    let (kind, recipients) = if !parts.status.is_empty() || report_type == "delivery-status" {
        let mut recipients = Vec::new();
        let mut saw_block = false;
        for block in &parts.status {
            let (found, saw) = status_fields_recipients(block);
            saw_block |= saw;
            recipients.extend(found);
        }
        if !saw_block {
            recipients = text_bounce_recipients(&body, &subject);
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
    let nesting = count_ascii_ci(raw, b"message/rfc822")
        + count_ascii_ci(raw, b"message/global")
        + count_ascii_ci(raw, b"multipart/digest");
    let full = nesting <= MAX_NESTED_MESSAGES;
    if full && let Ok(parsed) = std::panic::catch_unwind(|| parser.parse(raw)) {
        return parsed;
    }
    std::panic::catch_unwind(|| parser.parse_headers(raw))
        .ok()
        .flatten()
}

fn count_ascii_ci(haystack: &[u8], needle: &[u8]) -> usize {
    if needle.is_empty() {
        return 0;
    }
    haystack
        .windows(needle.len())
        .filter(|w| w.eq_ignore_ascii_case(needle))
        .count()
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

// ---------------------------------------------------------------------------------------
// Headers

fn top_headers<'a, 'x>(message: &'a Message<'x>) -> &'a [Header<'x>] {
    message
        .parts
        .first()
        .map(|p| p.headers.as_slice())
        .unwrap_or_default()
}

fn header<'a, 'x>(headers: &'a [Header<'x>], name: &str) -> Option<&'a HeaderValue<'x>> {
    headers
        .iter()
        .find(|h| h.name.as_str().eq_ignore_ascii_case(name))
        .map(|h| &h.value)
}

fn header_text<'a>(headers: &'a [Header<'_>], name: &str) -> Option<&'a str> {
    match header(headers, name)? {
        HeaderValue::Text(t) => Some(t.as_ref()),
        HeaderValue::TextList(list) => list.first().map(|t| t.as_ref()),
        _ => None,
    }
}

/// The message ids of a header parsed by mail-parser (which drops the angle brackets),
/// normalized to `<id>`.
fn header_ids(headers: &[Header<'_>], name: &str) -> Vec<String> {
    let values: Vec<&str> = match header(headers, name) {
        Some(HeaderValue::Text(t)) => vec![t.as_ref()],
        Some(HeaderValue::TextList(list)) => list.iter().map(|t| t.as_ref()).collect(),
        _ => Vec::new(),
    };
    values.into_iter().filter_map(normalize_id).collect()
}

/// `<id>` from an id with or without angle brackets, if it looks like a Message-ID.
fn normalize_id(id: &str) -> Option<String> {
    let id = id.trim();
    let id = id.strip_prefix('<').unwrap_or(id);
    let id = id.strip_suffix('>').unwrap_or(id);
    let ok = !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id.contains('@')
        && !id
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '<' || c == '>');
    ok.then(|| format!("<{id}>"))
}

/// Every `<...@...>` in a header value, in order.
fn ids_in(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = value;
    while let Some(start) = rest.find('<') {
        let after = &rest[start + 1..];
        let Some(end) = after.find('>') else { break };
        if let Some(id) = normalize_id(&after[..end]) {
            out.push(id);
        }
        rest = &after[end + 1..];
    }
    out
}

/// (type, subtype), lower-cased.
fn content_type(headers: &[Header<'_>]) -> Option<(String, String)> {
    match header(headers, "Content-Type")? {
        HeaderValue::ContentType(ct) => Some((
            ct.ctype().to_ascii_lowercase(),
            ct.subtype().unwrap_or("").to_ascii_lowercase(),
        )),
        _ => None,
    }
}

fn report_type(headers: &[Header<'_>]) -> Option<String> {
    match header(headers, "Content-Type")? {
        HeaderValue::ContentType(ct) => ct.attribute("report-type").map(|s| s.trim().to_string()),
        _ => None,
    }
}

/// A header block as (lower-cased name, unfolded value) pairs, up to the first blank line.
fn header_fields(text: &str) -> Vec<(String, String)> {
    let mut fields: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        if line.trim().is_empty() {
            break;
        }
        if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = fields.last_mut() {
                value.push(' ');
                value.push_str(line.trim());
            }
            continue;
        }
        if let Some((name, value)) = line.split_once(':') {
            let name = name.trim();
            if !name.is_empty() && !name.contains(' ') {
                fields.push((name.to_ascii_lowercase(), value.trim().to_string()));
            }
        }
    }
    fields
}

// ---------------------------------------------------------------------------------------
// MIME parts

/// What the parts of a message hold, in the order they come.
#[derive(Default)]
struct Parts {
    /// Contents of `message/delivery-status` parts.
    status: Vec<String>,
    /// Message-IDs of attached originals (`message/rfc822`, `text/rfc822-headers`).
    original_ids: Vec<String>,
    /// `X-Original-Message-ID` of delivery-status parts.
    reported_ids: Vec<String>,
    /// A `message/disposition-notification` part was seen (a read receipt).
    disposition: bool,
    plain: Vec<String>,
    html: Vec<String>,
}

impl Parts {
    fn collect(message: &Message<'_>) -> Parts {
        let mut parts = Parts::default();
        for part in &message.parts {
            parts.add(part);
        }
        parts
    }

    fn add(&mut self, part: &MessagePart<'_>) {
        let ct = content_type(part.headers.as_slice());
        let (ctype, subtype) = ct
            .as_ref()
            .map(|(t, s)| (t.as_str(), s.as_str()))
            .unwrap_or(("text", "plain"));
        match (ctype, subtype) {
            ("message", "delivery-status" | "global-delivery-status")
            | ("text", "delivery-status") => {
                let text = String::from_utf8_lossy(part.contents()).into_owned();
                // Gmail names the original in the per-message fields.
                self.reported_ids
                    .extend(field_ids(&text, "x-original-message-id"));
                self.status.push(text);
            }
            ("message", "disposition-notification" | "global-disposition-notification") => {
                self.disposition = true;
            }
            ("message", "rfc822" | "global")
            | ("text", "rfc822-headers")
            | ("message", "global-headers") => {
                let ids = match &part.body {
                    PartType::Message(nested) => header_ids(top_headers(nested), "Message-ID"),
                    _ => field_ids(&String::from_utf8_lossy(part.contents()), "message-id"),
                };
                self.original_ids.extend(ids);
            }
            _ => match &part.body {
                PartType::Text(text) if ctype == "text" && subtype == "plain" => {
                    self.plain.push(text.to_string());
                }
                PartType::Html(html) => self.html.push(html_to_text(html)),
                _ => {}
            },
        }
    }

    /// The human-readable text: the plain parts, or the HTML parts as text if none.
    fn body_text(&self) -> String {
        if self.plain.iter().any(|t| !t.trim().is_empty()) {
            self.plain.join("\n")
        } else {
            self.html.join("\n")
        }
    }
}

/// The ids in a header field of a header block.
fn field_ids(block: &str, name: &str) -> Vec<String> {
    header_fields(block)
        .into_iter()
        .filter(|(n, _)| n == name)
        .flat_map(|(_, v)| ids_in(&v))
        .collect()
}

/// A `Message-ID:` (else `In-Reply-To:`, else the last of `References:`) line quoted in a
/// bounce's text, as qmail and Exim quote the original headers inline.
fn body_reference(text: &str) -> Option<String> {
    let lines: Vec<&str> = text.lines().collect();
    let find = |name: &str, last: bool| -> Option<String> {
        for (i, line) in lines.iter().enumerate() {
            let trimmed = line.trim_start();
            let Some((field, value)) = trimmed.split_once(':') else {
                continue;
            };
            if !field.trim().eq_ignore_ascii_case(name) {
                continue;
            }
            // The value may be folded onto the following lines.
            let mut value = value.to_string();
            for next in lines.iter().skip(i + 1).take(20) {
                if next.starts_with([' ', '\t']) && !next.trim().is_empty() {
                    value.push(' ');
                    value.push_str(next.trim());
                } else {
                    break;
                }
            }
            let ids = ids_in(&value);
            let id = if last {
                ids.into_iter().last()
            } else {
                ids.into_iter().next()
            };
            if id.is_some() {
                return id;
            }
        }
        None
    };
    find("message-id", false)
        .or_else(|| find("in-reply-to", false))
        .or_else(|| find("references", true))
}

// ---------------------------------------------------------------------------------------
// RFC 3464 delivery-status fields

/// The recipients of the per-recipient blocks of a `message/delivery-status` body, and
/// whether any per-recipient block was there at all (even one for a delivered recipient).
fn status_fields_recipients(text: &str) -> (Vec<BounceRecipient>, bool) {
    let mut recipients = Vec::new();
    let mut saw_block = false;
    let normalized = text.replace("\r\n", "\n");
    for paragraph in normalized.split("\n\n") {
        let fields = header_fields(paragraph.trim_start_matches('\n'));
        let get = |name: &str| {
            fields
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        };
        let final_rcpt = get("final-recipient").and_then(recipient_field_address);
        let original_rcpt = get("original-recipient").and_then(recipient_field_address);
        if get("final-recipient").is_none() && get("original-recipient").is_none() {
            continue;
        }
        saw_block = true;
        let Some(email) = original_rcpt.or(final_rcpt) else {
            continue;
        };
        let action = get("action")
            .and_then(|a| a.split_whitespace().next())
            .unwrap_or("")
            .to_ascii_lowercase();
        let diagnostic = get("diagnostic-code")
            .map(|d| collapse_reply(strip_type(d)))
            .map(|d| one_line(&d, MAX_DIAGNOSTIC_CHARS))
            .unwrap_or_default();
        let status = get("status")
            .and_then(find_enhanced_status)
            .or_else(|| derive_status(&diagnostic));
        if matches!(action.as_str(), "delivered" | "relayed" | "expanded")
            || status.as_deref().is_some_and(|s| s.starts_with('2'))
        {
            continue;
        }
        let status = match (status, action.as_str()) {
            (Some(s), _) => s,
            (None, "failed") => "5.0.0".to_string(),
            (None, "delayed") => "4.0.0".to_string(),
            (None, _) => continue,
        };
        let class = if action == "delayed" || status.starts_with('4') {
            BounceClass::Transient
        } else {
            BounceClass::Permanent
        };
        let action = if action.is_empty() {
            default_action(class).to_string()
        } else {
            action
        };
        recipients.push(BounceRecipient {
            email,
            status,
            action,
            diagnostic,
            class,
        });
    }
    (recipients, saw_block)
}

/// `rfc822; <Anna@Example.se>` → `anna@example.se`.
fn recipient_field_address(value: &str) -> Option<String> {
    let address = value.split_once(';').map_or(value, |(_, a)| a);
    extract_email(address)
}

/// `smtp; 550 ...` → `550 ...`.
fn strip_type(value: &str) -> &str {
    if let Some((kind, rest)) = value.split_once(';') {
        let kind = kind.trim();
        if !kind.is_empty()
            && kind
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return rest.trim();
        }
    }
    value.trim()
}

fn default_action(class: BounceClass) -> &'static str {
    match class {
        BounceClass::Permanent => "failed",
        BounceClass::Transient => "delayed",
    }
}

// ---------------------------------------------------------------------------------------
// Status codes

/// The first enhanced status code (`5.1.1`, `4.4.7`, `5.1.10`) in a text.
fn find_enhanced_status(text: &str) -> Option<String> {
    let b = text.as_bytes();
    let digits = |mut i: usize| {
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        (i - start, i)
    };
    for i in 0..b.len() {
        if !matches!(b[i], b'2' | b'4' | b'5') {
            continue;
        }
        if i > 0 && (b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'.') {
            continue;
        }
        if b.get(i + 1) != Some(&b'.') {
            continue;
        }
        // The subject is one digit in every registered code (0 to 7); that keeps version
        // numbers such as "4.96.1" out.
        let (n1, j) = digits(i + 2);
        if n1 != 1 || b.get(j) != Some(&b'.') {
            continue;
        }
        let (n2, k) = digits(j + 1);
        if !(1..=3).contains(&n2) {
            continue;
        }
        let followed_by_number =
            b.get(k) == Some(&b'.') && b.get(k + 1).is_some_and(u8::is_ascii_digit);
        if b.get(k).is_some_and(u8::is_ascii_alphanumeric) || followed_by_number {
            continue;
        }
        return Some(text[i..k].to_string());
    }
    None
}

/// The first SMTP reply code (`550`, `452`) in a text, standing as a word of its own.
fn find_smtp_code(text: &str) -> Option<u16> {
    let b = text.as_bytes();
    for i in 0..b.len().saturating_sub(2) {
        if !matches!(b[i], b'2' | b'4' | b'5')
            || !b[i + 1].is_ascii_digit()
            || !b[i + 2].is_ascii_digit()
        {
            continue;
        }
        let before_ok = i == 0
            || matches!(
                b[i - 1],
                b' ' | b'\t' | b':' | b'(' | b';' | b'"' | b'[' | b'#' | b'='
            );
        let after_ok = b
            .get(i + 3)
            .is_none_or(|c| matches!(c, b' ' | b'-' | b'\t' | b')' | b','));
        if before_ok && after_ok {
            return std::str::from_utf8(&b[i..i + 3]).ok()?.parse().ok();
        }
    }
    None
}

fn mentions_mailbox_full(text: &str) -> bool {
    let t = text.to_lowercase();
    [
        "mailbox full",
        "mailbox is full",
        "mailbox size limit",
        "over quota",
        "overquota",
        "quota exceeded",
        "exceeded storage",
        "insufficient storage",
        "mailbox has exceeded",
        "user is over",
        "mailbox is over",
        "exceeded its quota",
    ]
    .iter()
    .any(|p| t.contains(p))
}

/// An enhanced status from a diagnostic: its own enhanced code, else one from its SMTP
/// code (550 → 5.0.0, a full mailbox → 5.2.2, 4xx → 4.0.0). 2xx gives `2.0.0`.
fn derive_status(diagnostic: &str) -> Option<String> {
    if let Some(status) = find_enhanced_status(diagnostic) {
        return Some(status);
    }
    let code = find_smtp_code(diagnostic)?;
    let class = code / 100;
    let detail = if class != 2 && mentions_mailbox_full(diagnostic) {
        "2.2"
    } else {
        "0.0"
    };
    Some(format!("{class}.{detail}"))
}

/// A recipient of a text bounce, its status from the diagnostic or from what the bounce
/// says about all its recipients (`permanent`).
fn text_recipient(email: String, diagnostic: &str, permanent: bool) -> Option<BounceRecipient> {
    let diagnostic = one_line(&collapse_reply(diagnostic), MAX_DIAGNOSTIC_CHARS);
    let status = derive_status(&diagnostic).unwrap_or_else(|| {
        let class = if permanent { '5' } else { '4' };
        let detail = if mentions_mailbox_full(&diagnostic) {
            "2.2"
        } else {
            "0.0"
        };
        format!("{class}.{detail}")
    });
    if status.starts_with('2') {
        return None;
    }
    let class = if status.starts_with('4') || !permanent && !status.starts_with('5') {
        BounceClass::Transient
    } else {
        BounceClass::Permanent
    };
    Some(BounceRecipient {
        email,
        status,
        action: default_action(class).to_string(),
        diagnostic,
        class,
    })
}

// ---------------------------------------------------------------------------------------
// Non-standard (text) bounces

/// Phrases of a bounce's own text that no ordinary message uses.
const BOUNCE_BODY_SIGNS: &[&str] = &[
    "this is the qmail-send program",
    "this message was created automatically by mail delivery software",
    "delivery to the following recipient failed permanently",
    "delivery to the following recipients failed permanently",
    "delivery to the following recipient has been delayed",
    "delivery to the following recipients has been delayed",
    "your message wasn't delivered to",
    "** address not found **",
    "** message not delivered **",
    "the following recipient(s) cannot be reached",
    "delivery has failed to these recipients or groups",
    "your message couldn't be delivered",
    "i'm sorry to have to inform you that your message could not",
    "this is the mail system at host",
    "the original message was received at",
];

/// Words of a bounce's subject.
const BOUNCE_SUBJECT_SIGNS: &[&str] = &[
    "undeliver",
    "delivery status notification",
    "mail delivery failed",
    "returned mail",
    "returning message to sender",
    "delivery failure",
    "failure notice",
    "delivery has failed",
    "could not be delivered",
    "nondeliverable",
    "non-delivery",
    "delayed mail",
    "delivery delayed",
    "message delayed",
    "olevererbar",
    "kunde inte levereras",
    "ej levererbart",
    "unzustellbar",
];

/// Lines after which the bounce quotes the original message: the recipient lists end there.
const QUOTE_MARKERS: &[&str] = &[
    "--- below this line is a copy of the message",
    "--- enclosed are the original headers of the message",
    "------ this is a copy of the message",
    "------ this is a copy of your message",
    "----- original message -----",
    "----- the header of the original message is following",
    "original message headers:",
];

/// A text bounce's recipients, when the message is a text bounce.
fn text_bounce(top: &[Header<'_>], subject: &str, body: &str) -> Option<Vec<BounceRecipient>> {
    let body_lower = body.to_lowercase();
    let subject_lower = subject.to_lowercase();
    let body_sign = BOUNCE_BODY_SIGNS.iter().any(|s| body_lower.contains(s));
    let subject_sign = BOUNCE_SUBJECT_SIGNS
        .iter()
        .any(|s| subject_lower.contains(s));
    let daemon = from_daemon(top);
    let recipients = text_bounce_recipients(body, subject);
    let is_bounce = body_sign
        || (daemon && subject_sign)
        || ((daemon || subject_sign) && !recipients.is_empty());
    is_bounce.then_some(recipients)
}

/// From `MAILER-DAEMON@`, `postmaster@`, or with an empty Return-Path.
fn from_daemon(top: &[Header<'_>]) -> bool {
    let from_local = match header(top, "From") {
        Some(HeaderValue::Address(address)) => address
            .first()
            .and_then(|a| a.address())
            .and_then(|a| a.split('@').next())
            .map(|l| l.to_ascii_lowercase()),
        _ => None,
    };
    let daemon_from = from_local.as_deref().is_some_and(|l| {
        matches!(
            l,
            "mailer-daemon" | "mailerdaemon" | "mail-daemon" | "postmaster" | "mdaemon"
        )
    });
    let null_return_path = top
        .iter()
        .any(|h| h.name.as_str().eq_ignore_ascii_case("Return-Path"))
        && header_ids(top, "Return-Path").is_empty()
        && !matches!(header(top, "Return-Path"), Some(HeaderValue::Text(t)) if t.contains('@'));
    daemon_from || null_return_path
}

/// Recipients in the text of a bounce without a delivery-status part.
fn text_bounce_recipients(body: &str, subject: &str) -> Vec<BounceRecipient> {
    let body = body.replace("\r\n", "\n");
    let lines = cut_at_quote(&body);
    let lower: Vec<String> = lines.iter().map(|l| l.to_lowercase()).collect();
    let all_lower = lower.join("\n");
    let subject_lower = subject.to_lowercase();
    let delayed_text = [
        "has been delayed",
        "has not yet been delivered",
        "temporary failure",
        "will be retried",
        "still trying",
        "delivery delayed",
        "(delay)",
        "not delivered yet",
    ]
    .iter()
    .any(|p| all_lower.contains(p) || subject_lower.contains(p))
        || subject_lower.contains("delayed");

    // qmail: "<addr>:" lines, each followed by its diagnostic paragraph.
    if all_lower.contains("qmail-send program") {
        let found = qmail_recipients(&lines);
        if !found.is_empty() {
            return found;
        }
    }

    // Inline delivery-status fields (a forwarded or flattened report).
    let (found, _) = status_fields_recipients(&lines.join("\n"));
    if !found.is_empty() {
        return found;
    }

    // Gmail, modern text: "Your message wasn't delivered to X because ...".
    let mut found = Vec::new();
    let mut response: Option<Option<String>> = None;
    for (line, l) in lines.iter().zip(&lower) {
        let Some(pos) = l.find("wasn't delivered to ") else {
            continue;
        };
        let rest = line.get(pos + "wasn't delivered to ".len()..).unwrap_or("");
        if let Some(email) = rest.split_whitespace().next().and_then(extract_email) {
            let diagnostic = response
                .get_or_insert_with(|| {
                    paragraph_after(
                        &lines,
                        &[
                            "the response from the remote server was:",
                            "the response was:",
                        ],
                    )
                })
                .clone()
                .unwrap_or_else(|| line.to_string());
            found.extend(text_recipient(email, &diagnostic, !delayed_text));
        }
    }
    if !found.is_empty() {
        return found;
    }

    // Exim, Gmail's older text, Exchange's older text: an introducing line, then indented
    // addresses, each with its more indented diagnostic lines.
    const INTROS: &[(&str, bool)] = &[
        ("address(es) failed:", true),
        ("addresses failed:", true),
        ("have not yet been delivered:", false),
        ("has not yet been delivered:", false),
        ("not yet been delivered is:", false),
        ("not yet been delivered are:", false),
        ("failed permanently:", true),
        ("has been delayed:", false),
        ("have been delayed:", false),
        ("cannot be reached:", true),
        ("could not be delivered to the following", true),
    ];
    let shared = paragraph_after(
        &lines,
        &[
            "the error that the other server returned was:",
            "technical details of permanent failure:",
            "technical details of temporary failure:",
        ],
    );
    let intros = lower.iter().enumerate().filter_map(|(i, line)| {
        INTROS
            .iter()
            .find(|(p, _)| line.trim_end().ends_with(p))
            .map(|&(_, permanent)| (i, permanent))
    });
    // A bounce has one or two such sections; a bound keeps a hostile text linear.
    for (i, permanent) in intros.take(8) {
        for (email, diagnostic) in indented_blocks(&lines[i + 1..]) {
            let diagnostic = if diagnostic.trim().is_empty() {
                shared.clone().unwrap_or_default()
            } else {
                diagnostic
            };
            found.extend(text_recipient(email, &diagnostic, permanent));
        }
    }
    found
}

/// The lines of a bounce's text before it quotes the original message.
fn cut_at_quote(body: &str) -> Vec<&str> {
    let mut out = Vec::new();
    for line in body.lines() {
        let l = line.trim().to_lowercase();
        if QUOTE_MARKERS.iter().any(|m| l.starts_with(m)) {
            break;
        }
        out.push(line);
    }
    out
}

/// qmail's `<addr>:` paragraphs.
fn qmail_recipients(lines: &[&str]) -> Vec<BounceRecipient> {
    let text = lines.join("\n").to_lowercase();
    let permanent = !text.contains("i'm still trying") || text.contains("permanent error");
    let mut found = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i].trim();
        let address = line
            .strip_prefix('<')
            .and_then(|l| l.strip_suffix(">:"))
            .and_then(extract_email);
        i += 1;
        let Some(email) = address else { continue };
        let mut diagnostic = Vec::new();
        while i < lines.len() && !lines[i].trim().is_empty() {
            if lines[i].trim_start().starts_with('<') && lines[i].trim_end().ends_with(">:") {
                break;
            }
            diagnostic.push(lines[i].trim());
            i += 1;
        }
        found.extend(text_recipient(email, &diagnostic.join(" "), permanent));
    }
    found
}

/// The paragraph after the first line that holds one of `intros` (tried in order), or the
/// rest of that line when it goes on after the intro.
fn paragraph_after(lines: &[&str], intros: &[&str]) -> Option<String> {
    for intro in intros {
        for (i, line) in lines.iter().enumerate() {
            let lower = line.to_lowercase();
            let Some(pos) = lower.find(intro) else {
                continue;
            };
            // `pos` is in the lower-cased line; where lower-casing changed lengths the
            // slice is off or refused (`get`), never a panic.
            let rest = line.get(pos + intro.len()..).unwrap_or("").trim();
            if !rest.is_empty() {
                return Some(rest.to_string());
            }
            let paragraph: Vec<&str> = lines[i + 1..]
                .iter()
                .skip_while(|l| l.trim().is_empty())
                .take_while(|l| !l.trim().is_empty())
                .map(|l| l.trim())
                .collect();
            if !paragraph.is_empty() {
                return Some(paragraph.join(" "));
            }
        }
    }
    None
}

/// Blocks of an indented address line followed by more indented detail lines, ending at
/// the first line that is not indented.
fn indented_blocks(lines: &[&str]) -> Vec<(String, String)> {
    let mut blocks: Vec<(String, String, usize)> = Vec::new();
    for line in lines {
        if line.trim().is_empty() {
            continue;
        }
        let indent = line.len() - line.trim_start().len();
        if indent == 0 {
            break;
        }
        let starts_block = blocks.last().is_none_or(|b| indent <= b.2);
        if starts_block {
            let email = line.split_whitespace().find_map(extract_email);
            match email {
                Some(email) => blocks.push((email, String::new(), indent)),
                None => {
                    if blocks.is_empty() {
                        continue;
                    }
                    break;
                }
            }
        } else if let Some(block) = blocks.last_mut() {
            if !block.1.is_empty() {
                block.1.push(' ');
            }
            block.1.push_str(line.trim());
        }
    }
    blocks.into_iter().map(|(e, d, _)| (e, d)).collect()
}

// ---------------------------------------------------------------------------------------
// Auto-replies

const AUTO_REPLY_SUBJECT_PREFIXES: &[&str] = &[
    "out of office",
    "out of the office",
    "automatic reply",
    "automatiskt svar",
    "autosvar",
    "frånvaro",
    "autoreply",
    "auto-reply",
    "auto reply",
    "auto response",
    "autoresponse",
    "abwesenheitsnotiz",
    "automatische antwort",
    "réponse automatique",
    "fravær",
    "poissa",
];

fn is_auto_reply(top: &[Header<'_>], subject: &str) -> bool {
    let value = |name: &str| header_text(top, name).map(|v| v.trim().to_ascii_lowercase());
    if value("Auto-Submitted").is_some_and(|v| v.starts_with("auto-replied")) {
        return true;
    }
    if value("X-Autoreply").is_some_and(|v| v != "no")
        || value("X-Autorespond").is_some()
        || value("X-Autoresponder").is_some()
    {
        return true;
    }
    if value("Precedence").is_some_and(|v| v == "auto_reply") {
        return true;
    }
    let mut s = subject.trim().to_lowercase();
    // Some responders answer "Re: <subject>" with the auto-reply word after it.
    for _ in 0..3 {
        let stripped = ["re:", "sv:", "aw:", "vs:"]
            .iter()
            .find_map(|p| s.strip_prefix(p).map(|r| r.trim_start().to_string()));
        match stripped {
            Some(rest) => s = rest,
            None => break,
        }
    }
    AUTO_REPLY_SUBJECT_PREFIXES.iter().any(|p| s.starts_with(p))
        || s.contains("out of office")
        || s.contains("(autoreply)")
}

// ---------------------------------------------------------------------------------------
// Small helpers

/// A lower-cased bare address from a token such as `<Anna@Example.se>:` or `rfc822;a@b`.
fn extract_email(token: &str) -> Option<String> {
    let token = token.trim().trim_matches(|c: char| {
        matches!(
            c,
            '<' | '>' | '"' | '\'' | '(' | ')' | '[' | ']' | ',' | ';' | ':' | '.'
        )
    });
    let token = token.strip_prefix("mailto:").unwrap_or(token);
    let (local, domain) = token.rsplit_once('@')?;
    let local_ok = !local.is_empty()
        && local.len() <= 64
        && !local.chars().any(|c| {
            c.is_whitespace()
                || c.is_control()
                || matches!(c, '<' | '>' | '@' | ',' | ';' | '(' | ')' | '[' | ']')
        });
    let domain_ok = !domain.is_empty()
        && domain.len() <= 255
        && !domain.starts_with(['.', '-'])
        && domain
            .chars()
            .all(|c| c.is_alphanumeric() || c == '.' || c == '-');
    (local_ok && domain_ok).then(|| token.to_lowercase())
}

/// The text on one line: control characters and runs of white space become one space,
/// cut to `max` characters.
fn one_line(text: &str, max: usize) -> String {
    let mut out = String::new();
    let mut count = 0;
    let mut pending_space = false;
    for c in text.chars() {
        if c.is_whitespace() || c.is_control() {
            pending_space = !out.is_empty();
            continue;
        }
        if pending_space {
            if count + 1 >= max {
                break;
            }
            out.push(' ');
            count += 1;
            pending_space = false;
        }
        if count >= max {
            break;
        }
        out.push(c);
        count += 1;
    }
    out
}

/// A multi-line SMTP reply on one line: `550-5.1.1 a 550-5.1.1 b 550 5.1.1 c` becomes
/// `550 5.1.1 a b c`.
fn collapse_reply(text: &str) -> String {
    let tokens: Vec<&str> = text.split_whitespace().collect();
    let Some(code) = tokens
        .first()
        .and_then(|t| t.get(..3))
        .filter(|c| c.bytes().all(|b| b.is_ascii_digit()))
    else {
        return text.to_string();
    };
    let enhanced = find_enhanced_status(text);
    let hyphenated = |t: &str| t.strip_prefix(code).is_some_and(|r| r.starts_with('-'));
    let multiline = tokens.iter().any(|t| hyphenated(t));
    let mut out: Vec<&str> = Vec::with_capacity(tokens.len());
    let mut i = 0;
    while i < tokens.len() {
        let token = tokens[i];
        i += 1;
        let rest = match token.strip_prefix(code) {
            Some("") => "",
            Some(r) if r.starts_with('-') => &r[1..],
            _ => {
                out.push(token);
                continue;
            }
        };
        let followed_by_enhanced =
            enhanced.is_some() && tokens.get(i).copied() == enhanced.as_deref();
        if out.is_empty() {
            out.push(code);
        } else if rest.is_empty() {
            if !(multiline || followed_by_enhanced) {
                out.push(token);
                continue;
            }
            if followed_by_enhanced {
                i += 1;
            }
        }
        let repeated = out.len() > 1 && Some(rest) == enhanced.as_deref();
        if !rest.is_empty() && !repeated {
            out.push(rest);
        }
    }
    out.join(" ")
}

/// Keeps the first report of each address.
fn dedup_recipients(recipients: &mut Vec<BounceRecipient>) {
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

    fn summary(report: &Report) -> Vec<String> {
        let mut columns = vec![report.kind.as_str().to_string()];
        for r in &report.recipients {
            columns.push(format!("{} {} {}", r.email, r.status, r.class.as_str()));
        }
        columns.push(
            report
                .original_message_id
                .clone()
                .unwrap_or_else(|| "-".to_string()),
        );
        columns
    }

    #[test]
    fn corpus_matches_expected_tsv() {
        let expected = std::fs::read_to_string(format!("{CORPUS}/expected.tsv")).unwrap();
        let mut listed = Vec::new();
        let mut failures = Vec::new();
        for line in expected.lines() {
            if line.trim().is_empty() || line.starts_with('#') {
                continue;
            }
            let mut columns: Vec<&str> = line.split('\t').collect();
            let file = columns.remove(0);
            listed.push(file.to_string());
            let report = parse(&corpus(file));
            let got = summary(&report);
            if got != columns {
                failures.push(format!(
                    "{file}:\n  expected {columns:?}\n  got      {got:?}"
                ));
            }
        }
        let mut on_disk: Vec<String> = std::fs::read_dir(CORPUS)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".eml"))
            .collect();
        on_disk.sort();
        listed.sort();
        assert_eq!(
            on_disk, listed,
            "every .eml is in expected.tsv and no other"
        );
        assert!(failures.is_empty(), "{}", failures.join("\n"));
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
                class: BounceClass::Permanent,
            }]
        );
    }

    #[test]
    fn delayed_report_is_transient() {
        let report = parse(&corpus("postfix-delayed.eml"));
        let r = &report.recipients[0];
        assert_eq!(r.action, "delayed");
        assert_eq!(r.class, BounceClass::Transient);
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
        assert_eq!(report.recipients[0].class, BounceClass::Permanent);
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
        assert_eq!(report.recipients[0].class, BounceClass::Transient);
    }

    #[test]
    fn failed_with_4xx_status_is_transient() {
        let report = parse(&dsn_with(
            "Final-Recipient: rfc822; x@example.com\r\nAction: failed\r\nStatus: 4.4.7\r\n",
        ));
        assert_eq!(report.recipients[0].class, BounceClass::Transient);
        assert_eq!(report.recipients[0].action, "failed");
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
        assert_eq!(one_line("  a \r\n b\u{0}c  ", 500), "a b c");
        assert_eq!(one_line("abc def", 4), "abc");
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
        assert_eq!(
            (r.class, r.action.as_str()),
            (BounceClass::Transient, "delayed")
        );
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
}
