//! The MIME parts of a report: RFC 3464 `message/delivery-status` parts with their
//! per-recipient fields, the returned original (or its headers) that names our Message-ID,
//! and the human-readable text the text layouts read.

use super::*;

/// What the parts of a message hold, in the order they come.
#[derive(Default)]
pub(crate) struct Parts {
    /// Contents of `message/delivery-status` parts.
    pub(crate) status: Vec<String>,
    /// Message-IDs of attached originals (`message/rfc822`, `text/rfc822-headers`).
    pub(crate) original_ids: Vec<String>,
    /// `X-Original-Message-ID` of delivery-status parts.
    pub(crate) reported_ids: Vec<String>,
    /// A `message/disposition-notification` part was seen (a read receipt).
    pub(crate) disposition: bool,
    /// A `message/feedback-report` part was seen (an ARF abuse report, RFC 5965).
    pub(crate) feedback: bool,
    pub(crate) plain: Vec<String>,
    pub(crate) html: Vec<String>,
}

impl Parts {
    pub(crate) fn collect(message: &Message<'_>) -> Parts {
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
            ("message", "feedback-report") => self.feedback = true,
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
    pub(crate) fn body_text(&self) -> String {
        if self.plain.iter().any(|t| !t.trim().is_empty()) {
            self.plain.join("\n")
        } else {
            self.html.join("\n")
        }
    }
}

/// The ids in a header field of a header block.
pub(crate) fn field_ids(block: &str, name: &str) -> Vec<String> {
    header_fields(block)
        .into_iter()
        .filter(|(n, _)| n == name)
        .flat_map(|(_, v)| ids_in(&v))
        .collect()
}

/// A `Message-ID:` (else `In-Reply-To:`, else the last of `References:`) line quoted in a
/// bounce's text, as qmail and Exim quote the original headers inline.
pub(crate) fn body_reference(text: &str) -> Option<String> {
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

/// The recipients of the per-recipient blocks of a `message/delivery-status` body, and
/// whether any per-recipient block was there at all (even one for a delivered recipient).
pub(crate) fn status_fields_recipients(text: &str) -> (Vec<BounceRecipient>, bool) {
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
            .map(|d| one_line_within(&d, MAX_DIAGNOSTIC_CHARS))
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
        let class = verdict(&action, &status, Words::of(&diagnostic.to_lowercase()));
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

/// `smtp; 550 ...` → `550 ...`.
pub(crate) fn strip_type(value: &str) -> &str {
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
