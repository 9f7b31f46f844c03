//! Exim and the servers that write its layout: an intro line ("The following address(es)
//! failed:", Gmail's older "Delivery to the following recipient failed permanently:",
//! "The following recipient(s) cannot be reached:"), then each address indented with its
//! diagnostic indented further; and Zoho's one-line form under Exim's wording,
//! `addr Invalid Address, ERROR_CODE :550, ERROR_CODE :5.1.1 ...`.

use super::*;

/// Intro lines, by how they end; the addresses follow.
const INTROS: &[&str] = &[
    "address(es) failed:",
    "addresses failed:",
    "address failed:",
    "have not yet been delivered:",
    "has not yet been delivered:",
    "not yet been delivered is:",
    "not yet been delivered are:",
    "failed permanently:",
    "has been delayed:",
    "have been delayed:",
    "cannot be reached:",
    "could not be delivered to the following",
];

pub(crate) fn recipients(text: &Text<'_>) -> Vec<BounceRecipient> {
    first_found(text, &[zoho_lines, indented_under_intro])
}

fn indented_under_intro(text: &Text<'_>) -> Vec<BounceRecipient> {
    let lines = &text.lines;
    let shared = paragraph_after(
        text,
        &[
            "the error that the other server returned was:",
            "technical details of permanent failure:",
            "technical details of temporary failure:",
        ],
    );
    let intros = text.lower.iter().enumerate().filter_map(|(i, line)| {
        INTROS
            .iter()
            .any(|p| line.trim_end().ends_with(p))
            .then_some(i)
    });
    let mut found = Vec::new();
    // A bounce has one or two such sections; a bound keeps a hostile text linear.
    for i in intros.take(8) {
        for (email, diagnostic) in indented_blocks(&lines[i + 1..]) {
            let diagnostic = if diagnostic.trim().is_empty() {
                shared.clone().unwrap_or_default()
            } else {
                diagnostic
            };
            found.extend(text.recipient(email, &diagnostic));
        }
    }
    found
}

/// Zoho: `addr Invalid Address, ERROR_CODE :550, ERROR_CODE :5.1.1 <addr>... User Unknown`
/// (the address first, then the reply), or `[Status: Error, Address: <addr>,
/// ResponseCode 421, , Host not reachable.]`.
fn zoho_lines(text: &Text<'_>) -> Vec<BounceRecipient> {
    if !text.mentions("error_code :") && !text.mentions("[status: ") {
        return Vec::new();
    }
    let mut found = Vec::new();
    for (line, l) in text.lines.iter().zip(&text.lower).take(2000) {
        let trimmed = line.trim();
        if l.contains("error_code :") {
            let Some((first, rest)) = trimmed.split_once(char::is_whitespace) else {
                continue;
            };
            if let Some(email) = extract_email(first) {
                // "ERROR_CODE :550, ERROR_CODE :5.1.1 <a@b>... text" → "550 5.1.1 <a@b>... text"
                let reply = rest
                    .split_once("ERROR_CODE :")
                    .map_or(rest, |(_, r)| r)
                    .replacen(", ERROR_CODE :", " ", 1);
                found.extend(text.recipient(email, &reply));
            }
        } else if l.trim_start().starts_with("[status: ") && l.contains("address:") {
            let email = trimmed
                .split([' ', ','])
                .find_map(|t| t.contains('@').then(|| extract_email(t)).flatten());
            if let Some(email) = email {
                let reply = trimmed
                    .split_once("ResponseCode ")
                    .map_or(trimmed, |(_, r)| r)
                    .replace(", ,", "")
                    .trim_end_matches(']')
                    .to_string();
                found.extend(text.recipient(email, &reply));
            }
        }
    }
    found
}
