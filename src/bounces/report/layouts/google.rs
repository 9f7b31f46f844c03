//! Gmail and Google Workspace: "Your message wasn't delivered to X because ..." and "There
//! was a problem delivering your message to X", with the remote server's answer in a
//! paragraph after "The response from the remote server was:" / "The response was:".
//! (Gmail's older text, "Delivery to the following recipient failed permanently:" with
//! indented addresses, is read by [`super::exim`].)

use super::*;

const SENTENCES: &[&str] = &[
    "wasn't delivered to ",
    "there was a problem delivering your message to ",
];

pub(crate) fn recipients(text: &Text<'_>) -> Vec<BounceRecipient> {
    if !SENTENCES.iter().any(|s| text.mentions(s)) {
        return Vec::new();
    }
    let mut found = Vec::new();
    let mut response: Option<Option<String>> = None;
    for (line, l) in text.lines.iter().zip(&text.lower) {
        let Some((pos, sentence)) = SENTENCES.iter().find_map(|s| l.find(s).map(|pos| (pos, s)))
        else {
            continue;
        };
        let rest = line.get(pos + sentence.len()..).unwrap_or("");
        let Some(email) = rest.split_whitespace().next().and_then(extract_email) else {
            continue;
        };
        let diagnostic = response
            .get_or_insert_with(|| {
                paragraph_after(
                    text,
                    &[
                        "the response from the remote server was:",
                        "the response was:",
                    ],
                )
            })
            .clone()
            .unwrap_or_else(|| line.to_string());
        found.extend(text.recipient(email, &diagnostic));
    }
    found
}
