//! A reply from the relay and what it means for the mailing.

/// What a negative reply means for the mailing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The recipient's failure, worth retrying (4xx).
    Transient,
    /// The recipient's failure, final (5xx).
    Permanent,
    /// The relay asks us to slow down (421, rate, too many): pause and resume.
    RelayBusy,
    /// The relay will not take more today (daily quota): stop cleanly.
    RelayQuota,
    /// Authentication refused: stop.
    Auth,
    /// The relay refuses our envelope sender (a negative reply to MAIL FROM): it speaks of
    /// the configuration, never of a recipient, so the run stops before anyone is booked.
    Sender,
}

/// A reply from the relay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The three-digit code.
    pub code: u16,
    /// The enhanced status code (`5.1.1`), where the reply has one.
    pub enhanced: Option<String>,
    /// The text, lines joined by spaces.
    pub text: String,
}

impl std::fmt::Display for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.code, self.text)
    }
}

impl Reply {
    pub(super) fn from_response(r: &lettre::transport::smtp::response::Response) -> Reply {
        let text = clean(&r.message().collect::<Vec<_>>().join(" "));
        Reply {
            code: u16::from(r.code()),
            enhanced: enhanced_code(&text),
            text,
        }
    }

    pub(super) fn from_error(e: &lettre::transport::smtp::Error) -> Option<Reply> {
        let code = e.status()?;
        let text = std::error::Error::source(e)
            .map(|s| clean(&s.to_string()))
            .unwrap_or_default();
        Some(Reply {
            code: u16::from(code),
            enhanced: enhanced_code(&text),
            text,
        })
    }

    /// What this negative reply means.
    pub fn verdict(&self) -> Verdict {
        classify(self.code, self.enhanced.as_deref(), &self.text)
    }
}

/// One line, printable, bounded: replies go to the journal and the terminal.
pub(super) fn clean(text: &str) -> String {
    let mut out: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(500)
        .collect();
    if text.chars().count() > 500 {
        out.push('…');
    }
    out.trim().to_string()
}

/// The enhanced status code at the start of a reply text (`5.1.1 <x>: ...`).
pub fn enhanced_code(text: &str) -> Option<String> {
    let first = text.split_whitespace().next()?;
    let parts: Vec<&str> = first.split('.').collect();
    let ok = parts.len() == 3
        && matches!(parts[0], "2" | "4" | "5")
        && parts[1..]
            .iter()
            .all(|p| !p.is_empty() && p.len() <= 3 && p.chars().all(|c| c.is_ascii_digit()));
    ok.then(|| first.to_string())
}

/// Classifies a negative reply by code, enhanced code and text (the contract's rules).
pub fn classify(code: u16, enhanced: Option<&str>, text: &str) -> Verdict {
    let t = text.to_ascii_lowercase();
    let says_rate = [
        "rate limit",
        "ratelimit",
        "rate-limit",
        "rate exceeded",
        "sending rate",
        "message rate",
        "too many",
        "throttl",
        "slow down",
        "try again later",
        "limit exceeded",
    ]
    .iter()
    .any(|w| t.contains(w));
    let says_quota = ["quota", "daily limit", "sending limit", "limit reached"]
        .iter()
        .any(|w| t.contains(w));
    let (class, subject) = match enhanced.map(|e| e.split('.').collect::<Vec<_>>()) {
        Some(p) if p.len() == 3 => (p[0].to_string(), format!("{}.{}", p[1], p[2])),
        _ => (String::new(), String::new()),
    };
    // Authentication.
    if code == 535
        || code == 534
        || code == 530
        || subject == "7.8"
        || subject == "7.139"
        || subject == "7.57"
    {
        return Verdict::Auth;
    }
    // Mailbox full / unknown user: the recipient, whatever the words.
    if subject.starts_with("1.") || subject.starts_with("2.") {
        return if code >= 500 {
            Verdict::Permanent
        } else {
            Verdict::Transient
        };
    }
    if code == 421 || code == 454 {
        return Verdict::RelayBusy;
    }
    if subject == "4.5" {
        return if code >= 500 || class == "5" {
            Verdict::RelayQuota
        } else {
            Verdict::RelayBusy
        };
    }
    if code < 500 {
        if class == "4" && subject.starts_with("7.") || says_rate || says_quota {
            return Verdict::RelayBusy;
        }
        return Verdict::Transient;
    }
    if says_quota || says_rate {
        return Verdict::RelayQuota;
    }
    Verdict::Permanent
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(code: u16, text: &str) -> Verdict {
        classify(code, enhanced_code(text).as_deref(), text)
    }

    #[test]
    fn classification_of_the_contract() {
        assert_eq!(
            v(
                550,
                "5.1.1 <bo@example.se>: Recipient address rejected: User unknown"
            ),
            Verdict::Permanent
        );
        assert_eq!(v(451, "4.3.0 Temporary lookup failure"), Verdict::Transient);
        assert_eq!(v(450, "4.2.2 Mailbox full, over quota"), Verdict::Transient);
        assert_eq!(v(552, "5.2.2 Mailbox full"), Verdict::Permanent);
        assert_eq!(v(421, "4.7.0 Too many connections"), Verdict::RelayBusy);
        assert_eq!(v(451, "4.7.1 Rate limit exceeded"), Verdict::RelayBusy);
        assert_eq!(
            v(452, "4.4.5 Insufficient system storage"),
            Verdict::RelayBusy
        );
        assert_eq!(
            v(454, "4.7.0 TLS not available due to local problem"),
            Verdict::RelayBusy
        );
        assert_eq!(
            v(550, "5.4.5 Daily user sending quota exceeded"),
            Verdict::RelayQuota
        );
        assert_eq!(
            v(554, "Message rejected: Sending quota exceeded"),
            Verdict::RelayQuota
        );
        assert_eq!(v(535, "5.7.8 Error: authentication failed"), Verdict::Auth);
        assert_eq!(
            v(
                535,
                "5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled"
            ),
            Verdict::Auth
        );
        assert_eq!(v(450, "Too many messages, slow down"), Verdict::RelayBusy);
        assert_eq!(v(554, "5.7.1 Relay access denied"), Verdict::Permanent);
    }

    #[test]
    fn enhanced_codes() {
        assert_eq!(enhanced_code("5.1.1 <x>: nope").as_deref(), Some("5.1.1"));
        assert_eq!(enhanced_code("4.7.139 x").as_deref(), Some("4.7.139"));
        assert_eq!(enhanced_code("Ok"), None);
        assert_eq!(enhanced_code("1.2.3 x"), None);
        assert_eq!(enhanced_code(""), None);
    }

    #[test]
    fn replies_are_one_bounded_line() {
        let long = "x".repeat(2000);
        assert!(clean(&long).chars().count() <= 501);
        assert_eq!(clean("a\r\nb"), "a  b");
    }
}
