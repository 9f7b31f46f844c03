//! Auto-replies: out-of-office and vacation answers are counted and set aside, never booked.

use super::*;

pub(crate) const AUTO_REPLY_SUBJECT_PREFIXES: &[&str] = &[
    "out of office",
    "out of the office",
    "automatic reply",
    "automatiskt svar",
    "autosvar",
    "frånvaro",
    "autoreply",
    "auto-reply",
    "auto reply",
    "auto response",
    "autoresponse",
    "abwesenheitsnotiz",
    "automatische antwort",
    "réponse automatique",
    "fravær",
    "poissa",
];

pub(crate) fn is_auto_reply(top: &[Header<'_>], subject: &str) -> bool {
    let value = |name: &str| header_text(top, name).map(|v| v.trim().to_ascii_lowercase());
    if value("Auto-Submitted").is_some_and(|v| v.starts_with("auto-replied")) {
        return true;
    }
    if value("X-Autoreply").is_some_and(|v| v != "no")
        || value("X-Autorespond").is_some()
        || value("X-Autoresponder").is_some()
    {
        return true;
    }
    if value("Precedence").is_some_and(|v| v == "auto_reply") {
        return true;
    }
    let mut s = subject.trim().to_lowercase();
    // Some responders answer "Re: <subject>" with the auto-reply word after it.
    for _ in 0..3 {
        let stripped = ["re:", "sv:", "aw:", "vs:"]
            .iter()
            .find_map(|p| s.strip_prefix(p).map(|r| r.trim_start().to_string()));
        match stripped {
            Some(rest) => s = rest,
            None => break,
        }
    }
    AUTO_REPLY_SUBJECT_PREFIXES.iter().any(|p| s.starts_with(p))
        || s.contains("out of office")
        || s.contains("(autoreply)")
}
