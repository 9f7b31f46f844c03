//! A reply from the relay and what it means for the mailing.

/// What a negative reply means for the mailing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The recipient's failure, worth retrying (4xx): that recipient's own backoff.
    Transient,
    /// The recipient's failure, final (5xx).
    Permanent,
    /// The relay (or the sender's account) asks us to slow down: the run pauses, with a
    /// backoff that starts small and is bounded.
    RelayBusy,
    /// The relay closes this connection (421): that connection pauses and reconnects; the
    /// whole run pauses only when every connection says so.
    Closing,
    /// The relay will not take more today (daily quota): stop cleanly.
    RelayQuota,
    /// Authentication refused or required: stop.
    Auth,
    /// The relay refuses our envelope sender (5xx to MAIL FROM, or a refusal that names
    /// the sender): it speaks of the configuration, never of a recipient, so the run stops
    /// before anyone is booked.
    Sender,
    /// The relay refuses to talk to us at all (5xx to the greeting or EHLO): stop.
    Refuses,
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

    /// What this negative reply means, where it came.
    pub fn verdict(&self, stage: Stage) -> Verdict {
        classify(stage, self.code, self.enhanced.as_deref(), &self.text)
    }

    /// The refusal without what names one recipient (addresses, queue ids, numbers), so
    /// that the same refusal to different recipients compares equal.
    pub fn signature(&self) -> String {
        let words: Vec<&str> = self
            .text
            .split_whitespace()
            .filter(|w| !w.contains('@') && !w.chars().any(|c| c.is_ascii_digit()))
            .collect();
        format!("{} {}", self.code, words.join(" "))
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

/// Where in the dialogue a reply came: what it speaks for depends on it first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// The greeting (220 or not).
    Greeting,
    /// EHLO.
    Ehlo,
    /// STARTTLS.
    StartTls,
    /// AUTH.
    Auth,
    /// MAIL FROM.
    MailFrom,
    /// RCPT TO.
    RcptTo,
    /// The DATA command (before the message).
    Data,
    /// The reply to the final dot.
    EndOfData,
}

/// Whose a reply is, by where it comes (SPEC Additions, "Whose failure a reply is").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Speaks {
    /// The relay itself.
    Relay,
    /// The login.
    Login,
    /// The envelope sender.
    Sender,
    /// The recipient, unless the reply says otherwise.
    Recipient,
}

/// The contract's table, in code: one row per stage.
const WHOSE: [(Stage, Speaks); 8] = [
    (Stage::Greeting, Speaks::Relay),
    (Stage::Ehlo, Speaks::Relay),
    (Stage::StartTls, Speaks::Relay),
    (Stage::Auth, Speaks::Login),
    (Stage::MailFrom, Speaks::Sender),
    (Stage::RcptTo, Speaks::Recipient),
    (Stage::Data, Speaks::Recipient),
    (Stage::EndOfData, Speaks::Recipient),
];

fn speaks(stage: Stage) -> Speaks {
    WHOSE
        .iter()
        .find(|(s, _)| *s == stage)
        .map_or(Speaks::Recipient, |(_, w)| *w)
}

/// Words that name the sender's daily or account quota (never a mailbox's).
const QUOTA: &[&str] = &[
    "daily user sending",
    "sending limit exceeded",
    "daily message quota",
    "sending quota",
    "submissionquotaexceeded",
    "daily smtp relay limit",
    "daily limit",
    "daily message limit",
    "daily send limit",
    "recipient rate limit",
];
/// Words that name a rate or throttling of the sender, the client or the relay.
const RATE: &[&str] = &[
    "rate limit",
    "ratelimit",
    "rate-limit",
    "sending rate",
    "message rate",
    "rate overlimit",
    "rate exceeded",
    "unusual rate",
    "throttl",
    "sender thread limit",
    "smtp relay limit",
    "concurrent connections limit",
    "too many messages",
    "too many connections",
    "too many concurrent",
    "too many recipients",
    "too many login",
    "too much mail",
    "slow down",
    "server busy",
];
/// Words that say the refusal is about the envelope sender, not the recipient.
const SENDER: &[&str] = &[
    "sender address rejected",
    "sender verify failed",
    "could not complete sender verify",
    "send as this sender",
    "sending suspended",
    "sending paused",
    "submission.exception",
    "not owned by user",
    "mail relay denied",
    "invalid credentials for relay",
];
/// Words that say a login is missing.
/// cPanel's Exim ("Please turn on SMTP Authentication in your mail client ... is not
/// permitted to relay through this server without authentication") says it at RCPT.
const LOGIN: &[&str] = &[
    "authentication required",
    "not authenticated",
    "turn on smtp authentication",
    "without authentication",
];
/// Weaker words, read only when no recipient-specific status code spoke first, and
/// never when the text is about a mailbox or a recipient.
const WEAK: &[&str] = &["rate", "quota", "too many", "limit exceeded"];
const ABOUT_A_MAILBOX: &[&str] = &["mailbox", "recipient", "account that you tried", "user is"];

fn says(t: &str, words: &[&str]) -> bool {
    words.iter().any(|w| {
        // Single words match whole words only: "rate" is not in "separate".
        if w.contains(' ') || w.contains('.') || w.contains('-') {
            t.contains(w)
        } else {
            t.split(|c: char| !c.is_ascii_alphanumeric())
                .any(|tok| tok == *w || (w.len() > 5 && tok.starts_with(w)))
        }
    })
}

/// Classifies a negative reply by where it came, its code, enhanced code and text.
///
/// Order: a 421 closes the connection whatever it says; the stage says whose the reply is;
/// for the recipient's stages, words or codes that name the sender, its quota, a rate or
/// a login take the reply away from the recipient; then the recipient-specific status
/// classes (X.1.x addressing, X.2.x mailbox) keep it the recipient's whatever other words
/// it uses; weaker words come last. "Try again later" alone is no evidence of anything.
pub fn classify(stage: Stage, code: u16, enhanced: Option<&str>, text: &str) -> Verdict {
    let t = text.to_ascii_lowercase();
    let permanent = code >= 500;
    let (subject, detail) = match enhanced.map(|e| e.split('.').collect::<Vec<_>>()) {
        Some(p) if p.len() == 3 => (
            p[1].parse::<u16>().unwrap_or(u16::MAX),
            p[2].parse::<u16>().unwrap_or(u16::MAX),
        ),
        _ => (u16::MAX, u16::MAX),
    };
    let quota = says(&t, QUOTA) || (subject, detail) == (4, 5) && permanent;
    let rate = says(&t, RATE)
        || (subject, detail) == (4, 5)
        || (subject == 7 && !permanent && (detail == 28 || (500..700).contains(&detail)));
    let login = code == 530
        || code == 535
        || code == 534
        || (subject == 7 && matches!(detail, 8 | 57 | 139))
        || says(&t, LOGIN);
    let sender = says(&t, SENDER) || (subject == 1 && matches!(detail, 7 | 8));
    if code == 421 {
        return if quota {
            Verdict::RelayQuota
        } else {
            Verdict::Closing
        };
    }
    match speaks(stage) {
        Speaks::Relay if quota => Verdict::RelayQuota,
        Speaks::Relay if login => Verdict::Auth,
        Speaks::Relay if permanent => Verdict::Refuses,
        Speaks::Relay => Verdict::RelayBusy,
        // A refusal at AUTH that names a rate ("550 Too many messages. Try again in 92
        // seconds.") is the relay's pushback, not a wrong password.
        Speaks::Login if quota => Verdict::RelayQuota,
        Speaks::Login if rate => Verdict::RelayBusy,
        Speaks::Login if permanent => Verdict::Auth,
        Speaks::Login => Verdict::RelayBusy,
        Speaks::Sender if quota => Verdict::RelayQuota,
        Speaks::Sender if login => Verdict::Auth,
        Speaks::Sender if permanent && rate => Verdict::RelayQuota,
        Speaks::Sender if permanent => Verdict::Sender,
        Speaks::Sender => Verdict::RelayBusy,
        Speaks::Recipient => {
            if quota {
                Verdict::RelayQuota
            } else if login {
                Verdict::Auth
            } else if sender {
                if permanent {
                    Verdict::Sender
                } else {
                    Verdict::RelayBusy
                }
            } else if rate {
                if permanent {
                    Verdict::RelayQuota
                } else {
                    Verdict::RelayBusy
                }
            } else if subject == 1 || subject == 2 || says(&t, ABOUT_A_MAILBOX) {
                recipient(permanent)
            } else if says(&t, WEAK) {
                if permanent {
                    Verdict::RelayQuota
                } else {
                    Verdict::RelayBusy
                }
            } else {
                recipient(permanent)
            }
        }
    }
}

fn recipient(permanent: bool) -> Verdict {
    if permanent {
        Verdict::Permanent
    } else {
        Verdict::Transient
    }
}

#[cfg(test)]
#[path = "reply_corpus.rs"]
mod corpus;

#[cfg(test)]
mod tests {
    use super::*;
    use Stage::Auth as Login;
    use Stage::*;
    use Verdict::Auth;
    use Verdict::*;

    /// A reply as the relay writes it: code, then the text (enhanced code first).
    /// Lines after the first are joined as lettre hands them over (codes dropped).
    pub(super) fn v(stage: Stage, reply: &str) -> Verdict {
        let code: u16 = reply[..3].parse().expect("a code");
        let text: Vec<&str> = reply.lines().map(|l| l.get(4..).unwrap_or("")).collect();
        let text = text.join(" ");
        classify(stage, code, enhanced_code(&text).as_deref(), &text)
    }

    #[test]
    fn try_again_later_alone_is_no_evidence_about_the_relay() {
        for stage in [RcptTo, Data, EndOfData] {
            assert_eq!(
                v(stage, "451 4.3.0 Temporary failure, try again later"),
                Transient
            );
            assert_eq!(v(stage, "451 4.7.1 Please try again later"), Transient);
        }
        // The same reply to MAIL FROM speaks for the sender: the run pauses.
        assert_eq!(
            v(MailFrom, "451 4.3.0 Temporary failure, try again later"),
            RelayBusy
        );
        assert_eq!(v(MailFrom, "553 5.1.8 Sender address rejected"), Sender);
    }

    #[test]
    fn a_daily_limit_is_a_quota_whatever_the_code_and_stage() {
        // Emailit's MAIL FROM refusal and Polaris Mail's nonstandard 462 say "daily ...
        // limit" in words the quota table did not know: they paused the run again and
        // again (MAIL FROM) or failed recipient after recipient (RCPT) instead of going
        // to the long-mailing rules.
        assert_eq!(
            v(MailFrom, "452 4.5.3 Daily message limit exceeded"),
            RelayQuota
        );
        assert_eq!(
            v(
                RcptTo,
                "462 Daily send limit reached. Please try again tomorrow"
            ),
            RelayQuota
        );
        assert_eq!(
            v(EndOfData, "452 4.5.3 Daily message limit exceeded"),
            RelayQuota
        );
        // A mailbox's own limit stays the recipient's.
        assert_eq!(
            v(
                RcptTo,
                "452 4.2.2 The email account that you tried to reach is over quota."
            ),
            Transient
        );
    }

    #[test]
    fn a_rate_refusal_at_auth_is_pushback_not_a_refused_login() {
        // smtp.msndr.net answers AUTH with a 550 that names the rate: stopping the run as
        // "the relay refused the login" would send the operator to check a good password.
        assert_eq!(
            v(Login, "550 Too many messages. Try again in 92 seconds."),
            RelayBusy
        );
        assert_eq!(
            v(
                Login,
                "454 4.7.0 Too many login attempts, please try again later."
            ),
            RelayBusy
        );
        // A refusal of the credentials stays the login's.
        assert_eq!(v(Login, "535 Authentication failed"), Auth);
        assert_eq!(v(Login, "535 5.7.3 Authentication unsuccessful"), Auth);
    }

    #[test]
    fn a_relay_asking_for_a_login_at_rcpt_is_the_logins_not_the_recipients() {
        // cPanel's Exim refuses every recipient of a client that has not logged in, with a
        // bare 550 and no enhanced code: booking each of them failed-permanent would
        // write off the whole mailing for a configuration error.
        let cpanel = "550-Please turn on SMTP Authentication in your mail client, or login to the\n550-IMAP/POP3 server before sending your message. (utskick.example.se)\n550-[192.0.2.10]:42630 is not permitted to relay through this server without\n550 authentication.";
        assert_eq!(v(RcptTo, cpanel), Auth);
        // Relaying refused in words that name no login stays the recipient's (the streak
        // rule catches the same refusal to many).
        assert_eq!(v(RcptTo, "550 relay not permitted"), Permanent);
    }

    #[test]
    fn the_table_has_one_row_per_stage() {
        use std::collections::HashSet;
        let stages: HashSet<_> = WHOSE.iter().map(|(s, _)| format!("{s:?}")).collect();
        assert_eq!(stages.len(), WHOSE.len());
        assert_eq!(speaks(Greeting), Speaks::Relay);
        assert_eq!(speaks(Login), Speaks::Login);
        assert_eq!(speaks(MailFrom), Speaks::Sender);
        assert_eq!(speaks(EndOfData), Speaks::Recipient);
    }

    #[test]
    fn single_words_match_whole_words() {
        assert!(!says("please use a separate transaction", &["rate"]));
        assert!(says("rate exceeded", &["rate"]));
        assert!(says("sender throttled", &["throttl"]));
    }

    #[test]
    fn a_signature_leaves_out_what_names_one_recipient() {
        let r = |t: &str| Reply {
            code: 451,
            enhanced: enhanced_code(t),
            text: t.to_string(),
        };
        assert_eq!(
            r("4.3.0 <a@example.se>: Temporary failure").signature(),
            r("4.3.0 <b@example.org>: Temporary failure").signature()
        );
        assert_ne!(
            r("4.3.0 <a@example.se>: Temporary failure").signature(),
            r("4.3.0 <a@example.se>: Greylisted").signature()
        );
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
