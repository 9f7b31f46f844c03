//! Layouts that put the failed address inside a sentence:
//! - HCL (Lotus) Domino: "Your message ... was not delivered to:" with the address indented
//!   below, its reason under "because:".
//! - Progress IMail: `Unknown user: addr` or `undeliverable to addr`, the remote answer
//!   under "Body of message generated response:".
//! - Reports such as `From: MAILER-DAEMON <>` with "There was an error delivering your
//!   mail to `<addr>`." and Amazon SES's "An error occurred while trying to deliver the mail
//!   to the following recipients:" with the addresses below.

use super::*;

pub(crate) fn recipients(text: &Text<'_>) -> Vec<BounceRecipient> {
    first_found(text, &[domino, imail, sentences])
}

fn domino(text: &Text<'_>) -> Vec<BounceRecipient> {
    let Some(start) = text.find("was not delivered to:") else {
        return Vec::new();
    };
    let lines = &text.lines;
    let because = text.find("because:").filter(|&b| b > start);
    let end = because.unwrap_or(lines.len());
    let reason = because
        .map(|b| next_paragraph(lines, b))
        .unwrap_or_default();
    lines[start + 1..end]
        .iter()
        .filter_map(|l| l.split_whitespace().next().and_then(extract_email))
        .filter_map(|email| text.recipient(email, &reason))
        .collect()
}

fn imail(text: &Text<'_>) -> Vec<BounceRecipient> {
    const LINES: &[&str] = &["unknown user:", "undeliverable to ", "unknown host:"];
    if !LINES.iter().any(|p| text.mentions(p)) {
        return Vec::new();
    }
    let response = paragraph_after(text, &["body of message generated response:"]);
    let mut found = Vec::new();
    for (line, l) in text.lines.iter().zip(&text.lower) {
        let t = l.trim_start();
        if !LINES.iter().any(|p| t.starts_with(p)) {
            continue;
        }
        let Some(email) = line.split_whitespace().find_map(extract_email) else {
            continue;
        };
        let diagnostic = match &response {
            Some(r) => format!("{r} {}", line.trim()),
            None => line.trim().to_string(),
        };
        found.extend(text.recipient(email, &diagnostic));
    }
    found
}

fn sentences(text: &Text<'_>) -> Vec<BounceRecipient> {
    const INLINE: &[&str] = &[
        "there was an error delivering your mail to ",
        "could not deliver your message to ",
        "delivery to the following recipient failed: ",
    ];
    const ABOVE_LIST: &[&str] =
        &["an error occurred while trying to deliver the mail to the following recipients:"];
    if !INLINE.iter().chain(ABOVE_LIST).any(|p| text.mentions(p)) {
        return Vec::new();
    }
    let lines = &text.lines;
    let mut found = Vec::new();
    for (i, (line, l)) in lines.iter().zip(&text.lower).enumerate() {
        if let Some((pos, p)) = INLINE.iter().find_map(|p| l.find(p).map(|pos| (pos, p))) {
            let rest = line.get(pos + p.len()..).unwrap_or("");
            if let Some(email) = rest.split_whitespace().next().and_then(extract_email) {
                let diagnostic = next_paragraph(lines, i);
                let diagnostic = if diagnostic.is_empty() {
                    line.trim().to_string()
                } else {
                    diagnostic
                };
                found.extend(text.recipient(email, &diagnostic));
            }
        } else if ABOVE_LIST.iter().any(|p| l.contains(p)) {
            let listed = lines[i + 1..]
                .iter()
                .skip_while(|l| l.trim().is_empty())
                .take_while(|l| !l.trim().is_empty())
                .filter_map(|l| l.split_whitespace().next().and_then(extract_email));
            for email in listed.take(1000) {
                found.extend(text.recipient(email, ""));
            }
        }
    }
    found
}
