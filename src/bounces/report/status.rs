//! Status codes: enhanced codes (`5.1.1`) and SMTP reply codes (`550`) in a diagnostic,
//! and multi-line SMTP replies folded onto one line.

use super::*;

/// The first enhanced status code (`5.1.1`, `4.4.7`, `5.1.10`) in a text.
pub(crate) fn find_enhanced_status(text: &str) -> Option<String> {
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
pub(crate) fn find_smtp_code(text: &str) -> Option<u16> {
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

pub(crate) fn mentions_mailbox_full(text: &str) -> bool {
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
pub(crate) fn derive_status(diagnostic: &str) -> Option<String> {
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
pub(crate) fn text_recipient(
    email: String,
    diagnostic: &str,
    permanent: bool,
) -> Option<BounceRecipient> {
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
        Class::Transient
    } else {
        Class::Permanent
    };
    Some(BounceRecipient {
        email,
        status,
        action: default_action(class).to_string(),
        diagnostic,
        class,
    })
}

/// A multi-line SMTP reply on one line: `550-5.1.1 a 550-5.1.1 b 550 5.1.1 c` becomes
/// `550 5.1.1 a b c`.
pub(crate) fn collapse_reply(text: &str) -> String {
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

pub(crate) fn default_action(class: Class) -> &'static str {
    match class {
        Class::Permanent => "failed",
        Class::Transient => "delayed",
    }
}
