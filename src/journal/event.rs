//! The journal's events: the one schema the writer serializes and the reader parses, so
//! that what is written and what is read cannot drift apart.
//!
//! Text fields are generic: the writer builds events of owned `String`s, the reader parses
//! `Event<Text>`, whose text borrows from the journal's bytes wherever JSON lets it (no
//! escapes), so that a journal of a million events is not a few million small copies.
//! Fields the writer always writes but the reader can do without are `#[serde(default)]`:
//! every journal the earlier reader accepted is still read.

use std::borrow::Cow;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

/// The timestamp format of the journal: RFC 3339, UTC, milliseconds (sorts as text).
pub fn timestamp(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// Now, as a journal timestamp.
pub fn now() -> String {
    timestamp(SystemTime::now())
}

/// A new run id: time and process, unique enough for one journal.
pub fn new_run_id() -> String {
    let t = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    format!("{}-{}", t.as_millis(), std::process::id())
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// Text read from a journal: borrowed from its bytes unless JSON escapes forced a copy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Text<'a>(#[serde(borrow)] pub Cow<'a, str>);

impl AsRef<str> for Text<'_> {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// How a failure is classed: by the relay's reply for a delivery, by a delivery status
/// notification for a bounce. The one class shared by the journal and `bounces`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Class {
    /// Worth retrying.
    Transient,
    /// Will not get better by retrying.
    Permanent,
}

/// One journal line. Field order follows the contract's examples (it is the order on disk).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "lowercase")]
pub enum Event<S = String> {
    /// A run began.
    Run {
        /// When.
        #[serde(default)]
        ts: S,
        /// Run id.
        run: S,
        /// Campaign.
        campaign: S,
        /// `send` or `retry`.
        #[serde(default)]
        command: S,
        /// SHA-256 of the CSV.
        #[serde(default)]
        recipients_sha256: S,
        /// SHA-256 of the templates.
        #[serde(default)]
        templates_sha256: S,
        /// `host:port`.
        #[serde(default)]
        relay: S,
        /// A `--test-to` run.
        #[serde(default, skip_serializing_if = "is_false")]
        test: bool,
    },
    /// A delivery is about to start (durable before DATA).
    Attempt {
        /// When.
        #[serde(default)]
        ts: S,
        /// Run id.
        #[serde(default)]
        run: S,
        /// Recipient key.
        key: S,
        /// Recipient address (or the test address).
        email: S,
        /// Message-ID.
        message_id: S,
        /// Attempt number within the run.
        #[serde(default)]
        attempt: u32,
        /// A test delivery.
        #[serde(default, skip_serializing_if = "is_false")]
        test: bool,
    },
    /// The relay accepted the message.
    Sent {
        /// When.
        #[serde(default)]
        ts: S,
        /// Run id.
        #[serde(default)]
        run: S,
        /// Recipient key.
        key: S,
        /// Address.
        email: S,
        /// Message-ID.
        message_id: S,
        /// Reply code.
        #[serde(default)]
        code: u16,
        /// Reply text.
        #[serde(default)]
        reply: S,
        /// A test delivery.
        #[serde(default, skip_serializing_if = "is_false")]
        test: bool,
    },
    /// The relay refused the message for this recipient.
    Failed {
        /// When.
        #[serde(default)]
        ts: S,
        /// Run id.
        #[serde(default)]
        run: S,
        /// Recipient key.
        key: S,
        /// Address.
        email: S,
        /// Message-ID.
        message_id: S,
        /// Reply code (none when the connection was lost).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        code: Option<u16>,
        /// Enhanced status code.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        enhanced: Option<S>,
        /// Reply text or what went wrong.
        #[serde(default)]
        reply: S,
        /// Transient or permanent.
        class: Class,
        /// A test delivery.
        #[serde(default, skip_serializing_if = "is_false")]
        test: bool,
    },
    /// The connection was lost or timed out after DATA: the outcome cannot be known.
    Unknown(Unsent<S>),
    /// The relay refused for a reason of its own (rate, quota): back to pending.
    Deferred {
        /// When.
        #[serde(default)]
        ts: S,
        /// Run id.
        #[serde(default)]
        run: S,
        /// Recipient key.
        key: S,
        /// Address.
        email: S,
        /// Message-ID.
        message_id: S,
        /// Reply code.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        code: Option<u16>,
        /// Reply text.
        #[serde(default)]
        reply: S,
        /// A test delivery.
        #[serde(default, skip_serializing_if = "is_false")]
        test: bool,
    },
    /// An attempt was journaled ahead of its message, and the run stopped (or found no
    /// connection) before the message's first byte went out: back to the state before.
    Withdrawn(Unsent<S>),
    /// A delivery report came back.
    Bounced {
        /// When it was booked.
        #[serde(default)]
        ts: S,
        /// Recipient key.
        key: S,
        /// Address.
        email: S,
        /// Message-ID of our message.
        #[serde(default)]
        message_id: S,
        /// Enhanced status, e.g. 5.1.1.
        #[serde(default)]
        status: S,
        /// The remote server's diagnostic.
        #[serde(default)]
        diagnostic: S,
        /// Which report (its id), so that the same one is booked once.
        source: S,
        /// Permanent (state `bounced`) or transient (a delay: no state change).
        class: Class,
    },
    /// How a run ended.
    End {
        /// When.
        #[serde(default)]
        ts: S,
        /// Run id.
        #[serde(default)]
        run: S,
        /// `complete`, `interrupted`, `stopped: ...`.
        #[serde(default)]
        outcome: S,
    },
}

/// A message whose outcome is not a reply: `unknown` (it may have gone out) or `withdrawn`
/// (it did not).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unsent<S = String> {
    /// When.
    #[serde(default)]
    pub ts: S,
    /// Run id.
    #[serde(default)]
    pub run: S,
    /// Recipient key.
    pub key: S,
    /// Address.
    pub email: S,
    /// Message-ID.
    pub message_id: S,
    /// What happened.
    #[serde(default)]
    pub reason: S,
    /// A test delivery.
    #[serde(default, skip_serializing_if = "is_false")]
    pub test: bool,
}

/// The event names this journal knows, as on disk.
pub(super) const NAMES: [&str; 9] = [
    "run",
    "attempt",
    "sent",
    "failed",
    "unknown",
    "deferred",
    "withdrawn",
    "bounced",
    "end",
];

impl<S: AsRef<str>> Event<S> {
    /// The recipient key the event is about (none for `run` and `end`).
    pub fn key(&self) -> Option<&str> {
        match self {
            Event::Attempt { key, .. }
            | Event::Sent { key, .. }
            | Event::Failed { key, .. }
            | Event::Unknown(Unsent { key, .. })
            | Event::Deferred { key, .. }
            | Event::Withdrawn(Unsent { key, .. })
            | Event::Bounced { key, .. } => Some(key.as_ref()),
            Event::Run { .. } | Event::End { .. } => None,
        }
    }

    /// The timestamp.
    pub fn ts(&self) -> &str {
        self.stamp().as_ref()
    }

    /// The timestamp, as its text.
    pub(super) fn stamp(&self) -> &S {
        match self {
            Event::Run { ts, .. }
            | Event::Attempt { ts, .. }
            | Event::Sent { ts, .. }
            | Event::Failed { ts, .. }
            | Event::Unknown(Unsent { ts, .. })
            | Event::Deferred { ts, .. }
            | Event::Withdrawn(Unsent { ts, .. })
            | Event::Bounced { ts, .. }
            | Event::End { ts, .. } => ts,
        }
    }

    /// The run the event belongs to (a bounce belongs to none).
    pub fn run(&self) -> Option<&str> {
        match self {
            Event::Run { run, .. }
            | Event::Attempt { run, .. }
            | Event::Sent { run, .. }
            | Event::Failed { run, .. }
            | Event::Unknown(Unsent { run, .. })
            | Event::Deferred { run, .. }
            | Event::Withdrawn(Unsent { run, .. })
            | Event::End { run, .. } => Some(run.as_ref()),
            Event::Bounced { .. } => None,
        }
    }
}

/// The key of an event (for tests and archives).
pub fn event_key<S: AsRef<str>>(e: &Event<S>) -> Option<&str> {
    e.key()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::sample::sent;

    #[test]
    fn contract_shape() {
        let line = serde_json::to_string(&sent("1042", "R")).expect("json");
        assert!(line.starts_with("{\"event\":\"sent\",\"ts\":"), "{line}");
        assert!(line.contains("\"code\":250"));
        assert!(!line.contains("test"));
    }

    /// What the writer wrote before the schema was shared, byte for byte (one line per
    /// event kind, as main's `utskick` writes them).
    const OLD_LINES: &str = concat!(
        r#"{"event":"run","ts":"2026-12-01T08:00:00.000Z","run":"R","campaign":"c","command":"send","recipients_sha256":"a","templates_sha256":"b","relay":"127.0.0.1:25"}"#,
        "\n",
        r#"{"event":"run","ts":"2026-12-01T08:00:00.000Z","run":"T","campaign":"c","command":"send","recipients_sha256":"a","templates_sha256":"b","relay":"127.0.0.1:25","test":true}"#,
        "\n",
        r#"{"event":"attempt","ts":"t","run":"R","key":"1","email":"a@example.se","message_id":"<c.1@example.se>","attempt":1}"#,
        "\n",
        r#"{"event":"sent","ts":"t","run":"R","key":"1","email":"a@example.se","message_id":"<c.1@example.se>","code":250,"reply":"2.0.0 Ok: queued as 4Xy"}"#,
        "\n",
        r#"{"event":"failed","ts":"t","run":"R","key":"2","email":"b@example.se","message_id":"<m>","code":550,"enhanced":"5.1.1","reply":"no \"such\" user","class":"permanent"}"#,
        "\n",
        r#"{"event":"failed","ts":"t","run":"R","key":"2","email":"b@example.se","message_id":"<m>","reply":"connection lost before DATA","class":"transient","test":true}"#,
        "\n",
        r#"{"event":"unknown","ts":"t","run":"R","key":"3","email":"c@example.se","message_id":"<m>","reason":"connection lost after DATA"}"#,
        "\n",
        r#"{"event":"deferred","ts":"t","run":"R","key":"4","email":"d@example.se","message_id":"<m>","code":421,"reply":"busy"}"#,
        "\n",
        r#"{"event":"withdrawn","ts":"t","run":"R","key":"5","email":"e@example.se","message_id":"<m>","reason":"stopped"}"#,
        "\n",
        r#"{"event":"bounced","ts":"t","key":"1","email":"a@example.se","message_id":"<m>","status":"5.1.1","diagnostic":"gone","source":"<dsn@x>","class":"permanent"}"#,
        "\n",
        r#"{"event":"end","ts":"t","run":"R","outcome":"complete"}"#,
        "\n",
    );

    #[test]
    fn every_kind_reads_and_writes_back_to_the_same_bytes() {
        for line in OLD_LINES.lines() {
            let read: Event<Text> = serde_json::from_str(line).expect(line);
            assert_eq!(serde_json::to_string(&read).expect("json"), line);
            let owned: Event = serde_json::from_str(line).expect(line);
            assert_eq!(serde_json::to_string(&owned).expect("json"), line);
        }
    }

    #[test]
    fn a_journal_written_by_2837caa_writes_back_byte_for_byte() {
        let journal = include_str!("../../tests/journal/written-by-2837caa.jsonl");
        let mut kinds = std::collections::BTreeSet::new();
        for line in journal.lines() {
            let event: Event = serde_json::from_str(line).expect(line);
            assert_eq!(serde_json::to_string(&event).expect("json"), line);
            kinds.insert(line.split('"').nth(3).unwrap_or_default().to_string());
        }
        assert_eq!(kinds.len(), NAMES.len(), "{kinds:?}");
    }

    #[test]
    fn text_borrows_unless_escaped() {
        let line = r#"{"event":"end","ts":"t","run":"R\"1","outcome":"complete"}"#;
        let Event::End { ts, run, .. } = serde_json::from_str::<Event<Text>>(line).expect("json")
        else {
            panic!("an end event");
        };
        assert!(matches!(ts.0, Cow::Borrowed("t")));
        assert!(matches!(run.0, Cow::Owned(ref s) if s == "R\"1"));
    }

    #[test]
    fn names_are_the_variants() {
        for name in NAMES {
            let line = format!(r#"{{"event":"{name}"}}"#);
            // Known names fail only for want of a field (an `end` needs none).
            if let Err(e) = serde_json::from_str::<Event<Text>>(&line) {
                assert!(e.to_string().contains("missing field"), "{name}: {e}");
            }
        }
        let e = serde_json::from_str::<Event<Text>>(r#"{"event":"teleported"}"#)
            .expect_err("not an event");
        assert!(e.to_string().contains("unknown variant"), "{e}");
    }
}
