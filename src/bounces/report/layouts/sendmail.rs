//! Sendmail's texts. The newer one (8.x) lists the addresses under "----- The following
//! addresses had permanent fatal errors -----" (or "transient non-fatal errors"), each with
//! `(reason: 550 ...)` below it; the older one (5.x, and 8.x where the list is missing)
//! only has the session under "----- Transcript of session follows -----":
//! `550 <addr>... User unknown`, or `>>> RCPT To:<addr>` answered by `<<< 550 ...`.

use super::*;

pub(crate) fn recipients(text: &Text<'_>) -> Vec<BounceRecipient> {
    let transcript = transcript(text);
    let found = address_list(text, &transcript);
    if !found.is_empty() {
        return found;
    }
    transcript
        .into_iter()
        .filter_map(|(email, reply)| text.recipient(email, &reply))
        .collect()
}

/// The "following addresses had ..." list, each address with its reason, else its reply in
/// the transcript.
fn address_list(text: &Text<'_>, transcript: &[(String, String)]) -> Vec<BounceRecipient> {
    let Some(start) = text.find("the following addresses had") else {
        return Vec::new();
    };
    let mut listed: Vec<(String, String)> = Vec::new();
    for line in &text.lines[start + 1..] {
        let t = line.trim();
        if t.starts_with("-----") {
            break;
        }
        if let Some(reason) = t.strip_prefix("(reason:") {
            if let Some((_, r)) = listed.last_mut() {
                *r = reason.trim_end_matches(')').trim().to_string();
            }
        } else if let Some(email) = t.split_whitespace().next().and_then(extract_email) {
            listed.push((email, String::new()));
        }
    }
    listed
        .into_iter()
        .filter_map(|(email, reason)| {
            let reason = if reason.is_empty() {
                transcript
                    .iter()
                    .find(|(e, _)| *e == email)
                    .map(|(_, r)| r.clone())
                    .unwrap_or_default()
            } else {
                reason
            };
            text.recipient(email, &reason)
        })
        .collect()
}

/// The failed addresses of the session transcript, with the reply each got.
fn transcript(text: &Text<'_>) -> Vec<(String, String)> {
    let Some(start) = text.find("transcript of session follows") else {
        return Vec::new();
    };
    let lines = &text.lines[start + 1..];
    let mut out: Vec<(String, String)> = Vec::new();
    let mut rcpt: Option<String> = None;
    for line in lines.iter().take(2000) {
        let t = line.trim();
        if let Some(command) = t.strip_prefix(">>> ") {
            rcpt = command
                .to_ascii_uppercase()
                .starts_with("RCPT TO:")
                .then(|| command.get(8..).and_then(extract_email))
                .flatten();
            continue;
        }
        let reply = t.strip_prefix("<<< ").unwrap_or(t);
        if find_smtp_code(reply).is_none_or(|c| c < 400) {
            continue;
        }
        // `550 5.1.1 <addr>... User unknown`: the address before the dots.
        let named = reply.find("...").and_then(|dots| {
            reply
                .get(..dots)?
                .split_whitespace()
                .last()
                .and_then(extract_email)
        });
        let Some(email) = named.or_else(|| rcpt.clone()) else {
            continue;
        };
        if !out.iter().any(|(e, _)| *e == email) {
            out.push((email, reply.to_string()));
        }
    }
    out
}
