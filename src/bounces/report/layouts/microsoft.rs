//! Microsoft's non-delivery reports in their human-readable part, for those that come
//! without a machine-readable one (or with one that names nobody):
//! - Exchange 2007 to 2019 and Outlook.com: "Delivery has failed to these recipients or
//!   groups:" (or "Delivery is delayed to ..."), each recipient as `Name (addr)`,
//!   `addr<mailto:addr>` or `addr`, with a sentence for people; under "Diagnostic
//!   information for administrators:" each address again with the server's answer
//!   (`#550 5.1.1 RESOLVER.ADR.RecipNotFound; not found ##`, `Remote Server returned '...'`).
//! - Microsoft 365's newer report: "Your message to addr couldn't be delivered.", the
//!   answer under "Reported error:" (else "Status code:").
//! - Exchange 2003: "did not reach the following recipient(s):", then `addr on DATE` with
//!   the reason indented below it (`<server #5.1.1>`, `MSEXCH:IMS:... (000C05A6) Unknown
//!   Recipient`).

use super::*;

const LIST_INTROS: &[&str] = &[
    "delivery has failed to these recipients or groups:",
    "delivery is delayed to these recipients or groups:",
];
const ADMIN_SECTION: &str = "diagnostic information for administrators:";

pub(crate) fn recipients(text: &Text<'_>) -> Vec<BounceRecipient> {
    first_found(text, &[exchange_2007, microsoft_365, exchange_2003])
}

/// The first address in a line written the ways Exchange writes them.
fn first_address(line: &str) -> Option<String> {
    line.split([' ', '\t', '<', '>', '(', ')', ',', ';', '=', '\'', '"'])
        .find_map(|t| t.contains('@').then(|| extract_email(t)).flatten())
}

fn exchange_2007(text: &Text<'_>) -> Vec<BounceRecipient> {
    let Some(start) = LIST_INTROS.iter().find_map(|p| text.find(p)) else {
        return Vec::new();
    };
    let lines = &text.lines;
    let admin = text.find(ADMIN_SECTION).filter(|&a| a > start);
    let end = admin.unwrap_or(lines.len());
    // The list for people: address lines, each with the sentences below it.
    let mut listed: Vec<(String, String)> = Vec::new();
    for line in &lines[start + 1..end] {
        let trimmed = line.trim();
        if trimmed.is_empty() {
            continue;
        }
        match first_address(trimmed) {
            Some(email) if !listed.iter().any(|(e, _)| *e == email) => {
                listed.push((email, String::new()));
            }
            Some(_) => {}
            None => {
                if let Some((_, sentence)) = listed.last_mut()
                    && sentence.len() < MAX_DIAGNOSTIC_CHARS
                {
                    if !sentence.is_empty() {
                        sentence.push(' ');
                    }
                    sentence.push_str(trimmed);
                }
            }
        }
    }
    // The answers for administrators, by address.
    let mut answers: Vec<(String, String)> = Vec::new();
    if let Some(admin) = admin {
        let section = &lines[admin + 1..];
        for (i, line) in section.iter().enumerate() {
            let trimmed = line.trim();
            let Some(email) = extract_email(trimmed) else {
                continue;
            };
            let answer: Vec<&str> = section[i + 1..]
                .iter()
                .take_while(|l| !l.trim().is_empty())
                .map(|l| l.trim())
                .collect();
            let answer = answer
                .join(" ")
                .trim_start_matches('#')
                .trim_end_matches('#')
                .trim()
                .to_string();
            let answer = match answer.split_once("Remote Server returned '") {
                Some((_, r)) => r.trim_end_matches('\'').to_string(),
                None => answer,
            };
            answers.push((email, answer));
        }
    }
    listed
        .into_iter()
        .filter_map(|(email, sentence)| {
            let answer = answers
                .iter()
                .find(|(e, a)| *e == email && !a.is_empty())
                .map(|(_, a)| a.clone());
            let diagnostic = answer.unwrap_or(sentence);
            text.recipient(email, &diagnostic)
        })
        .collect()
}

fn microsoft_365(text: &Text<'_>) -> Vec<BounceRecipient> {
    const SENTENCE: &str = "your message to ";
    if !text.mentions(SENTENCE) {
        return Vec::new();
    }
    let mut found = Vec::new();
    for (line, l) in text.lines.iter().zip(&text.lower) {
        let Some(pos) = l.find(SENTENCE) else {
            continue;
        };
        if !l.contains("couldn't be delivered") && !l.contains("could not be delivered") {
            continue;
        }
        let rest = line.get(pos + SENTENCE.len()..).unwrap_or("");
        let Some(email) = rest.split_whitespace().next().and_then(extract_email) else {
            continue;
        };
        let diagnostic = ["reported error:", "status code:"]
            .iter()
            .find_map(|label| {
                let i = text.find(label)?;
                let at = text.lower[i].find(label)? + label.len();
                Some(text.lines[i].get(at..).unwrap_or("").trim().to_string())
            })
            .unwrap_or_else(|| line.trim().to_string());
        found.extend(text.recipient(email, &diagnostic));
    }
    found
}

fn exchange_2003(text: &Text<'_>) -> Vec<BounceRecipient> {
    let Some(start) = text.find("did not reach the following recipient(s):") else {
        return Vec::new();
    };
    let lines = &text.lines;
    let mut found = Vec::new();
    let mut i = start + 1;
    while i < lines.len() && found.len() < 1000 {
        let line = lines[i];
        i += 1;
        let lower = line.to_lowercase();
        let Some(on) = lower.find(" on ") else {
            continue;
        };
        let Some(email) = line.get(..on).and_then(first_address) else {
            continue;
        };
        let indent = line.len() - line.trim_start().len();
        let mut diagnostic = Vec::new();
        while i < lines.len() {
            let next = lines[i];
            let deeper = next.len() - next.trim_start().len() > indent;
            if next.trim().is_empty() || !deeper && !next.trim_start().starts_with(';') {
                break;
            }
            diagnostic.push(next.trim());
            i += 1;
        }
        found.extend(text.recipient(email, &diagnostic.join(" ")));
    }
    found
}
