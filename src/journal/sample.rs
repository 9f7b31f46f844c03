//! Events for the journal's unit tests, as `send` writes them.

use super::*;

/// An attempt for `key` in `run`.
pub(super) fn attempt(key: &str, run: &str) -> Event {
    Event::Attempt {
        ts: now(),
        run: run.into(),
        key: key.into(),
        email: format!("{key}@example.se"),
        message_id: format!("<c.{key}@example.se>"),
        attempt: 1,
        test: false,
    }
}

/// `key` sent in `run`.
pub(super) fn sent(key: &str, run: &str) -> Event {
    Event::Sent {
        ts: now(),
        run: run.into(),
        key: key.into(),
        email: format!("{key}@example.se"),
        message_id: format!("<c.{key}@example.se>"),
        code: 250,
        reply: "2.0.0 Ok".into(),
        test: false,
    }
}

/// A run with these templates.
pub(super) fn run_event(run: &str, templates: &str, test: bool) -> Event {
    Event::Run {
        ts: now(),
        run: run.into(),
        campaign: "c".into(),
        command: "send".into(),
        recipients_sha256: "r".into(),
        templates_sha256: templates.into(),
        relay: "127.0.0.1:25".into(),
        test,
    }
}

/// The events as journal bytes.
pub(super) fn text(events: &[Event]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in events {
        out.extend(serde_json::to_vec(e).expect("json"));
        out.push(b'\n');
    }
    out
}

/// `key`'s attempt in `run`, withdrawn.
pub(super) fn withdrawn(key: &str, run: &str) -> Event {
    Event::Withdrawn(Unsent {
        ts: now(),
        run: run.into(),
        key: key.into(),
        email: format!("{key}@example.se"),
        message_id: format!("<c.{key}@example.se>"),
        reason: "the run stopped before this message went out".into(),
        test: false,
    })
}
