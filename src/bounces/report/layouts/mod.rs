//! Reports without a machine-readable part: the signs that tell such a text from ordinary
//! mail, and the text layouts of the servers that write them, one file per family:
//! [`paragraphs`] (an address line, then its paragraph: qmail, Postfix, Yahoo and AOL, GMX,
//! OpenSMTPD), [`exim`] (indented address blocks under an intro: Exim, Gmail's older text,
//! Zoho), [`google`] (Gmail and Google Workspace), [`microsoft`] (Exchange 2003 to 2019,
//! Microsoft 365 and Outlook.com), [`sendmail`] (old and new Sendmail), [`phrases`] (the
//! address inside a sentence: Domino, IMail, "There was an error delivering your mail to").

mod exim;
mod google;
mod microsoft;
mod paragraphs;
mod phrases;
mod sendmail;

use super::*;

/// Phrases of a bounce's own text that no ordinary message uses.
pub(crate) const BOUNCE_BODY_SIGNS: &[&str] = &[
    "this is the qmail-send program",
    "this message was created automatically by mail delivery software",
    "delivery to the following recipient failed permanently",
    "delivery to the following recipients failed permanently",
    "delivery to the following recipient has been delayed",
    "delivery to the following recipients has been delayed",
    "your message wasn't delivered to",
    "there was a problem delivering your message to",
    "** address not found **",
    "** message not delivered **",
    "the following recipient(s) cannot be reached",
    "delivery has failed to these recipients or groups",
    "did not reach the following recipient(s)",
    "your message couldn't be delivered",
    "couldn't be delivered.",
    "i'm sorry to have to inform you that your message could not",
    "this is the mail system at host",
    "the original message was received at",
    "the following addresses had permanent fatal errors",
    "the following addresses had transient non-fatal errors",
    "----- transcript of session follows -----",
    "sorry, we were unable to deliver your message to the following address",
    "this is the mailer-daemon, please do not reply",
    "an error has occurred while attempting to deliver a message",
    "there was an error delivering your mail to",
    "could not be delivered to one or more of its recipients",
    "an error occurred while trying to deliver the mail to the following recipients",
    "body of message generated response:",
];

/// Words of a bounce's subject.
pub(crate) const BOUNCE_SUBJECT_SIGNS: &[&str] = &[
    "undeliver",
    "delivery status notification",
    "mail delivery failed",
    "returned mail",
    "returning message to sender",
    "delivery failure",
    "failure notice",
    "delivery has failed",
    "could not be delivered",
    "not delivered",
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
pub(crate) const QUOTE_MARKERS: &[&str] = &[
    "--- below this line is a copy of the message",
    "--- enclosed are the original headers of the message",
    "------ this is a copy of the message",
    "------ this is a copy of your message",
    "----- original message -----",
    "----- the header of the original message is following",
    "--- the header of the original message is following",
    "original message headers:",
    "below is a copy of the original message",
    "original message follows.",
    "----- unsent message follows -----",
    "----- no message was collected -----",
    "----- original message follows -----",
    "------ original message ------",
];

/// The text of a bounce up to where it quotes the original, read once for every layout.
pub(crate) struct Text<'a> {
    /// Its lines, before the quoted original.
    pub(crate) lines: Vec<&'a str>,
    /// The same, lower-cased (for the phrases; positions are looked up in `lines` with
    /// `get`, since lower-casing may change lengths).
    pub(crate) lower: Vec<String>,
    /// The lower-cased lines joined by LF, searched once per phrase rather than line by line.
    all: String,
    /// Where each line starts in `all`.
    starts: Vec<usize>,
    /// What the text (and the subject) says: given up, or still trying.
    pub(crate) words: Words,
}

impl<'a> Text<'a> {
    fn new(body: &'a str, subject: &str) -> Text<'a> {
        let lines = cut_at_quote(body);
        let lower: Vec<String> = lines.iter().map(|l| l.to_lowercase()).collect();
        let subject_lower = subject.to_lowercase();
        let all = lower.join("\n");
        let mut starts = Vec::with_capacity(lower.len());
        let mut at = 0;
        for l in &lower {
            starts.push(at);
            at += l.len() + 1;
        }
        let mut words = Words::of(&all).or(Words::of(&subject_lower));
        words.delay |= subject_lower.contains("delayed");
        Text {
            lines,
            lower,
            all,
            starts,
            words,
        }
    }

    /// Whether the text holds `phrase` (lower-case) anywhere.
    pub(crate) fn mentions(&self, phrase: &str) -> bool {
        memchr::memmem::find(self.all.as_bytes(), phrase.as_bytes()).is_some()
    }

    /// The indexes of the lines that hold `phrase` (lower-case), in order, each once.
    pub(crate) fn lines_with<'t>(&'t self, phrase: &'t str) -> impl Iterator<Item = usize> + 't {
        let mut last = None;
        memchr::memmem::find_iter(self.all.as_bytes(), phrase.as_bytes()).filter_map(move |at| {
            let line = self.starts.partition_point(|&s| s <= at).saturating_sub(1);
            (last != Some(line)).then(|| {
                last = Some(line);
                line
            })
        })
    }

    /// The index of the first line that holds `phrase` (lower-case).
    pub(crate) fn find(&self, phrase: &str) -> Option<usize> {
        self.lines_with(phrase).next()
    }

    /// A recipient with the text's words.
    pub(crate) fn recipient(&self, email: String, diagnostic: &str) -> Option<BounceRecipient> {
        text_recipient(email, diagnostic, self.words)
    }
}

/// A text bounce's recipients, when the message is a text bounce: one with a bounce's own
/// phrases, or from a mail daemon with a bounce's subject, or naming failed recipients in
/// `X-Failed-Recipients`, or from a daemon or with a bounce's subject and a layout that
/// names recipients. Checked before any auto-reply sign: Exim and others mark their
/// bounces `Auto-Submitted: auto-replied`.
pub(crate) fn text_bounce(
    top: &[Header<'_>],
    subject: &str,
    body: &str,
) -> Option<Vec<BounceRecipient>> {
    let body = body.replace("\r\n", "\n");
    let body_lower = body.to_lowercase();
    let subject_lower = subject.to_lowercase();
    let body_sign = BOUNCE_BODY_SIGNS.iter().any(|s| body_lower.contains(s));
    let subject_sign = BOUNCE_SUBJECT_SIGNS
        .iter()
        .any(|s| subject_lower.contains(s));
    let daemon = from_daemon(top);
    let failed_header = failed_recipients_header(top);
    let recipients = text_bounce_recipients(top, &body, subject);
    let is_bounce = body_sign
        || (daemon && subject_sign)
        || !failed_header.is_empty()
        || ((daemon || subject_sign) && !recipients.is_empty());
    is_bounce.then_some(recipients)
}

/// From `MAILER-DAEMON@`, `postmaster@`, `MAILER-DAEMON <>`, or with an empty Return-Path.
pub(crate) fn from_daemon(top: &[Header<'_>]) -> bool {
    /// Local parts of a mail daemon's address.
    const DAEMONS: &[&str] = &[
        "mailer-daemon",
        "mailerdaemon",
        "mail-daemon",
        "postmaster",
        "mdaemon",
    ];
    /// Names a daemon signs with when it gives no address (`MAILER-DAEMON <>`).
    const DAEMON_NAMES: &[&str] = &[
        "mailer-daemon",
        "mailerdaemon",
        "mail-daemon",
        "postmaster",
        "mail delivery system",
        "mail delivery subsystem",
    ];
    let (from_local, from_name) = match header(top, "From") {
        Some(HeaderValue::Address(address)) => {
            let first = address.first();
            (
                first
                    .and_then(|a| a.address())
                    .and_then(|a| a.split('@').next())
                    .map(|l| l.to_ascii_lowercase()),
                first
                    .and_then(|a| a.name())
                    .map(|n| n.trim().to_ascii_lowercase()),
            )
        }
        _ => (None, None),
    };
    let daemon_from = from_local.as_deref().is_some_and(|l| DAEMONS.contains(&l));
    // `From: MAILER-DAEMON <>` has a name and no address.
    let daemon_name = from_local.as_deref().is_none_or(str::is_empty)
        && from_name
            .as_deref()
            .is_some_and(|n| DAEMON_NAMES.contains(&n));
    let null_return_path = top
        .iter()
        .any(|h| h.name.as_str().eq_ignore_ascii_case("Return-Path"))
        && header_ids(top, "Return-Path").is_empty()
        && !matches!(header(top, "Return-Path"), Some(HeaderValue::Text(t)) if t.contains('@'));
    daemon_from || daemon_name || null_return_path
}

/// The addresses of `X-Failed-Recipients` (Exim, Gmail), lower-cased.
pub(crate) fn failed_recipients_header(top: &[Header<'_>]) -> Vec<String> {
    let mut out = Vec::new();
    for h in top {
        if !h.name.as_str().eq_ignore_ascii_case("X-Failed-Recipients") {
            continue;
        }
        let text = match &h.value {
            HeaderValue::Text(t) => t.to_string(),
            HeaderValue::TextList(list) => list.join(","),
            HeaderValue::Address(a) => a
                .iter()
                .filter_map(|a| a.address())
                .collect::<Vec<_>>()
                .join(","),
            _ => String::new(),
        };
        out.extend(
            text.split([',', ' ', '\t'])
                .filter_map(extract_email)
                .take(1000),
        );
    }
    out
}

/// Recipients in the text of a bounce without a delivery-status part: the first layout
/// that finds any, else the `X-Failed-Recipients` header with the text's first SMTP reply.
pub(crate) fn text_bounce_recipients(
    top: &[Header<'_>],
    body: &str,
    subject: &str,
) -> Vec<BounceRecipient> {
    let body = body.replace("\r\n", "\n");
    let text = Text::new(&body, subject);
    let found = first_found(&text, LAYOUTS);
    if !found.is_empty() {
        return found;
    }
    let diagnostic = text
        .lines
        .iter()
        .find(|l| find_smtp_code(l).is_some())
        .map(|l| l.trim())
        .unwrap_or("");
    failed_recipients_header(top)
        .into_iter()
        .filter_map(|email| text.recipient(email, diagnostic))
        .collect()
}

/// The layouts in the order they are tried: the most specific first, qmail's loose
/// "address line, then paragraph" last.
const LAYOUTS: &[fn(&Text<'_>) -> Vec<BounceRecipient>] = &[
    inline_status_fields,
    google::recipients,
    microsoft::recipients,
    sendmail::recipients,
    phrases::recipients,
    exim::recipients,
    paragraphs::recipients,
];

/// The recipients of the first of `layouts` that finds any.
pub(crate) fn first_found(
    text: &Text<'_>,
    layouts: &[fn(&Text<'_>) -> Vec<BounceRecipient>],
) -> Vec<BounceRecipient> {
    layouts
        .iter()
        .map(|layout| layout(text))
        .find(|found| !found.is_empty())
        .unwrap_or_default()
}

/// Every layout run on one text (for the property test: each must be total), the number
/// of recipients they found together.
#[cfg(test)]
pub(crate) fn every_layout(body: &str, subject: &str) -> usize {
    let text = Text::new(body, subject);
    LAYOUTS.iter().map(|layout| layout(&text).len()).sum()
}

/// Delivery-status fields inside the text (a forwarded or flattened report).
fn inline_status_fields(text: &Text<'_>) -> Vec<BounceRecipient> {
    status_fields_recipients(&text.lines.join("\n")).0
}

/// The lines of a bounce's text before it quotes the original message.
pub(crate) fn cut_at_quote(body: &str) -> Vec<&str> {
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

/// The paragraph after the first line that holds one of `intros` (tried in order), or the
/// rest of that line when it goes on after the intro.
pub(crate) fn paragraph_after(text: &Text<'_>, intros: &[&str]) -> Option<String> {
    for intro in intros {
        for i in text.lines_with(intro) {
            let line = text.lines[i];
            let Some(pos) = text.lower[i].find(intro) else {
                continue;
            };
            // `pos` is in the lower-cased line; where lower-casing changed lengths the
            // slice is off or refused (`get`), never a panic.
            let rest = line.get(pos + intro.len()..).unwrap_or("").trim();
            if !rest.is_empty() {
                return Some(rest.to_string());
            }
            let paragraph = next_paragraph(&text.lines, i);
            if !paragraph.is_empty() {
                return Some(paragraph);
            }
        }
    }
    None
}

/// Blocks of an indented address line followed by more indented detail lines, ending at
/// the first line that is not indented.
pub(crate) fn indented_blocks(lines: &[&str]) -> Vec<(String, String)> {
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

/// The paragraph that starts after `lines[i]`, blank lines before it skipped, its lines
/// trimmed and joined.
pub(crate) fn next_paragraph(lines: &[&str], i: usize) -> String {
    lines
        .get(i + 1..)
        .unwrap_or_default()
        .iter()
        .skip_while(|l| l.trim().is_empty())
        .take_while(|l| !l.trim().is_empty())
        .map(|l| l.trim())
        .collect::<Vec<_>>()
        .join(" ")
}
