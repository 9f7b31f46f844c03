//! Reports without a machine-readable part: the text layouts of the servers that write
//! them, and the signs that tell such a text from ordinary mail.

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
    "original message headers:",
];

/// A text bounce's recipients, when the message is a text bounce.
pub(crate) fn text_bounce(
    top: &[Header<'_>],
    subject: &str,
    body: &str,
) -> Option<Vec<BounceRecipient>> {
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
pub(crate) fn from_daemon(top: &[Header<'_>]) -> bool {
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
pub(crate) fn text_bounce_recipients(body: &str, subject: &str) -> Vec<BounceRecipient> {
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

/// qmail's `<addr>:` paragraphs.
pub(crate) fn qmail_recipients(lines: &[&str]) -> Vec<BounceRecipient> {
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
pub(crate) fn paragraph_after(lines: &[&str], intros: &[&str]) -> Option<String> {
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
