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

/// Phrases by which a report says its server has given up: final whatever the status digit
/// (Exim's "retry timeout exceeded" comes with the last 4xx reply it got, qmail's "I've
/// given up" with a 4.4.x).
pub(crate) const FINAL_WORDS: &[&str] = &[
    "permanent error",
    "permanent failure",
    "permanent fatal error",
    "failed permanently",
    "given up",
    "giving up",
    "retry timeout exceeded",
    "not going to try again",
    "envelope expired",
    "will not be retried",
];

/// Phrases of a delay notice: the server is still trying.
pub(crate) const DELAY_WORDS: &[&str] = &[
    "has been delayed",
    "have been delayed",
    "has not yet been delivered",
    "have not yet been delivered",
    "not delivered yet",
    "temporary failure",
    "transient non-fatal error",
    "will be retried",
    "will retry",
    "still trying",
    "delivery delayed",
    "(delay)",
    "delivery is delayed",
    "only a temporary failure report",
];

/// What a report's own words say about the failures it lists.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Words {
    /// It says it has given up.
    pub(crate) final_: bool,
    /// It says it is still trying.
    pub(crate) delay: bool,
}

impl Words {
    /// The words of a lower-cased text.
    pub(crate) fn of(lower: &str) -> Words {
        Words {
            final_: FINAL_WORDS.iter().any(|w| lower.contains(w)),
            delay: DELAY_WORDS.iter().any(|w| lower.contains(w)),
        }
    }

    /// Both texts' words.
    pub(crate) fn or(self, other: Words) -> Words {
        Words {
            final_: self.final_ || other.final_,
            delay: self.delay || other.delay,
        }
    }
}

/// Whether a failure is final: the report's `Action` first (`failed` is final whatever the
/// status digit, `delayed` is a delay), then its words ("permanent error", "given up",
/// "retry timeout exceeded" are final; "still trying" is a delay), and only then the status
/// digit (4.x.x a delay, anything else final).
pub(crate) fn verdict(action: &str, status: &str, words: Words) -> Class {
    match action {
        "failed" => Class::Permanent,
        "delayed" => Class::Transient,
        _ if words.final_ => Class::Permanent,
        _ if words.delay => Class::Transient,
        _ if status.starts_with('4') => Class::Transient,
        _ => Class::Permanent,
    }
}

/// A recipient of a text bounce: its status from its diagnostic (else from what the bounce
/// says: `5.0.0` for a failure, `4.0.0` for a delay), its class from the bounce's words and
/// its own diagnostic's ([`verdict`]). None for a 2.x.x (delivered).
pub(crate) fn text_recipient(
    email: String,
    diagnostic: &str,
    words: Words,
) -> Option<BounceRecipient> {
    let diagnostic = one_line_within(&collapse_reply(diagnostic), MAX_DIAGNOSTIC_CHARS);
    let words = words.or(Words::of(&diagnostic.to_lowercase()));
    let status = derive_status(&diagnostic).unwrap_or_else(|| {
        let class = if words.delay && !words.final_ {
            '4'
        } else {
            '5'
        };
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
    let class = verdict("", &status, words);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reports_words_come_before_the_digit() {
        let none = Words::default();
        let final_ = Words::of("this is a permanent error; i've given up.");
        let delay = Words::of("delivery to the following recipient has been delayed");
        assert!(final_.final_ && !final_.delay);
        assert!(delay.delay && !delay.final_);
        assert_eq!(verdict("failed", "4.4.7", delay), Class::Permanent);
        assert_eq!(verdict("delayed", "5.1.1", final_), Class::Transient);
        assert_eq!(verdict("", "4.4.1", final_), Class::Permanent);
        assert_eq!(verdict("", "5.1.1", delay), Class::Transient);
        assert_eq!(verdict("", "4.4.1", none), Class::Transient);
        assert_eq!(verdict("", "5.1.1", none), Class::Permanent);
        assert!(Words::of("451 retry timeout exceeded").final_);
    }

    #[test]
    fn text_recipient_status_and_class() {
        let r = text_recipient(
            "a@b.se".into(),
            "Giving up on 192.0.2.1. 451 4.4.1 busy",
            Words::default(),
        )
        .unwrap();
        assert_eq!((r.status.as_str(), r.class), ("4.4.1", Class::Permanent));
        let r = text_recipient("a@b.se".into(), "", Words::of("has been delayed")).unwrap();
        assert_eq!((r.status.as_str(), r.class), ("4.0.0", Class::Transient));
        let r = text_recipient("a@b.se".into(), "mailbox is full", Words::default()).unwrap();
        assert_eq!((r.status.as_str(), r.class), ("5.2.2", Class::Permanent));
        assert!(text_recipient("a@b.se".into(), "250 2.0.0 ok", Words::default()).is_none());
    }
}
