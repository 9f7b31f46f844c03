//! The fold of the journal's events, in order, into where each recipient stands (its
//! state: the latest event that changes one), the runs, and the counts `send`, `status`
//! and `bounces` decide by. A pure function of the events: no file, no clock but the one
//! that draws the line for the last 24 hours.

use std::collections::{HashMap, HashSet};
use std::time::SystemTime;

use serde::Serialize;

use super::event::{Class, Event, Text, timestamp};

/// A recipient's state, from its latest event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    /// No event yet.
    Pending,
    /// The relay accepted the message.
    Sent,
    /// A transient failure (4xx, connection lost before DATA).
    FailedTransient,
    /// A permanent failure (5xx).
    FailedPermanent,
    /// An attempt with no outcome: the process died, or the connection was lost after DATA.
    Unknown,
    /// A permanent delivery report came back after the relay accepted it.
    Bounced,
}

impl State {
    /// The contract's name.
    pub fn name(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Sent => "sent",
            State::FailedTransient => "failed-transient",
            State::FailedPermanent => "failed-permanent",
            State::Unknown => "unknown",
            State::Bounced => "bounced",
        }
    }

    /// Every state, in display order.
    pub const ALL: [State; 6] = [
        State::Sent,
        State::FailedPermanent,
        State::Bounced,
        State::FailedTransient,
        State::Unknown,
        State::Pending,
    ];
}

/// Where one recipient stands, as the journal tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Standing {
    /// The state.
    pub state: State,
    /// The address last used.
    pub email: String,
    /// The Message-ID last used.
    pub message_id: String,
    /// The latest reply code, for failures.
    pub code: Option<u16>,
    /// The latest reply or reason, for anything but `sent`.
    pub reason: Option<String>,
    /// Attempts over all runs.
    pub attempts: u32,
    /// What the latest attempt replaced, for a `withdrawn` event to put back.
    pub(crate) before_attempt: (State, Option<u16>, Option<String>),
}

impl Standing {
    fn new() -> Standing {
        Standing {
            state: State::Pending,
            email: String::new(),
            message_id: String::new(),
            code: None,
            reason: None,
            attempts: 0,
            before_attempt: (State::Pending, None, None),
        }
    }

    /// The latest reply or reason, in words (an attempt without outcome says so).
    pub fn why(&self) -> String {
        match (&self.reason, self.state) {
            (Some(r), _) => r.clone(),
            (None, State::Unknown) => {
                "attempt without outcome: the process stopped during delivery".into()
            }
            (None, _) => String::new(),
        }
    }
}

/// One run, as the journal tells it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Run {
    /// Run id.
    pub run: String,
    /// `send` or `retry`.
    pub command: String,
    /// Campaign.
    pub campaign: String,
    /// Relay.
    pub relay: String,
    /// CSV hash.
    pub recipients_sha256: String,
    /// Templates hash.
    pub templates_sha256: String,
    /// A `--test-to` run.
    pub test: bool,
    /// First event.
    pub started: String,
    /// Last event.
    pub ended: String,
    /// Messages the relay accepted in this run (in a test run: its test deliveries).
    pub sent: u64,
    /// Failures booked in this run (in a test run: its test deliveries').
    pub failed: u64,
    /// How it ended, when it said so.
    pub outcome: Option<String>,
}

/// The whole journal, folded.
#[derive(Debug, Default)]
pub struct Journal {
    /// Per key, where the recipient stands.
    pub recipients: HashMap<String, Standing, ahash::RandomState>,
    /// The runs in order.
    pub runs: Vec<Run>,
    /// Events read.
    pub events: u64,
    /// Test deliveries accepted by the relay.
    pub test_sent: u64,
    /// Whether bytes after the last newline were ignored.
    pub torn_tail: bool,
    /// Bounce reports already booked: `source` + key.
    pub bounces_booked: HashSet<String>,
    /// Delay reports booked.
    pub delays: u64,
    /// Timestamps of non-test `sent` events in the last 24 hours, counted.
    pub sent_last_24h: u64,
    /// Their times, for the rolling daily window (`send::window`); one that does not parse
    /// counts as now, which errs on the side of sending less.
    pub sent_times_last_24h: Vec<SystemTime>,
}

impl Journal {
    /// The standing of a key, new (pending) if the journal had none yet.
    fn entry(&mut self, key: &str) -> &mut Standing {
        // Looked up first: a key seen before (most events) costs no allocation.
        if !self.recipients.contains_key(key) {
            self.recipients.insert(key.to_string(), Standing::new());
        }
        self.recipients
            .get_mut(key)
            .unwrap_or_else(|| unreachable!("the entry was inserted above"))
    }

    /// The state of a key (`pending` when the journal has no event for it).
    pub fn state(&self, key: &str) -> State {
        self.recipients.get(key).map_or(State::Pending, |r| r.state)
    }

    /// The campaigns named by the runs.
    pub fn campaigns(&self) -> Vec<&str> {
        let mut c: Vec<&str> = self.runs.iter().map(|r| r.campaign.as_str()).collect();
        c.sort_unstable();
        c.dedup();
        c
    }

    /// Template hashes of earlier real (not test) runs that differ from `current`.
    pub fn other_templates(&self, current: &str) -> Vec<&Run> {
        self.runs
            .iter()
            .filter(|r| !r.test && !r.templates_sha256.is_empty() && r.templates_sha256 != current)
            .collect()
    }
}

/// What a delivery event does to its recipient's standing.
enum Step<'e> {
    Attempt,
    Sent,
    Failed {
        class: Class,
        code: Option<u16>,
        reply: &'e str,
    },
    Unknown {
        reason: &'e str,
    },
    Deferred {
        code: Option<u16>,
        reply: &'e str,
    },
    Withdrawn,
}

/// The recipient a delivery event is about.
struct Delivery<'e> {
    key: &'e str,
    email: &'e str,
    message_id: &'e str,
    test: bool,
}

/// Text that says nothing is no reason.
fn said(text: &str) -> Option<String> {
    (!text.is_empty()).then(|| text.to_string())
}

/// Replaces a string's text, reusing its buffer.
fn set(target: &mut String, text: &str) {
    if target != text {
        target.clear();
        target.push_str(text);
    }
}

/// Books events into a `Journal`, in journal order.
pub(super) struct Fold<'a> {
    j: Journal,
    /// `sent` events at or after this count for the daily limit.
    cutoff: String,
    run_index: HashMap<String, usize, ahash::RandomState>,
    /// The latest timestamp of each run, borrowed until the end.
    run_ended: Vec<Text<'a>>,
}

impl<'a> Fold<'a> {
    /// An empty fold; the last 24 hours end now.
    pub(super) fn new() -> Fold<'a> {
        Fold {
            j: Journal::default(),
            cutoff: timestamp(SystemTime::now() - std::time::Duration::from_secs(24 * 3600)),
            run_index: HashMap::default(),
            run_ended: Vec::new(),
        }
    }

    /// The journal being folded (for the reader's own counts).
    pub(super) fn journal_mut(&mut self) -> &mut Journal {
        &mut self.j
    }

    /// The journal, with every run's last event.
    pub(super) fn finish(mut self) -> Journal {
        for (run, ended) in self.j.runs.iter_mut().zip(self.run_ended) {
            run.ended = ended.0.into_owned();
        }
        self.j
    }

    /// Books the next event.
    pub(super) fn book(&mut self, event: Event<Text<'a>>) {
        self.j.events += 1;
        let run = event.run().and_then(|r| self.run_index.get(r)).copied();
        if let Some(r) = run
            && event.ts() > self.run_ended[r].as_ref()
        {
            self.run_ended[r] = event.stamp().clone();
        }
        match &event {
            Event::Run {
                ts,
                run: id,
                campaign,
                command,
                recipients_sha256,
                templates_sha256,
                relay,
                test,
            } => {
                self.run_index
                    .insert(id.as_ref().to_string(), self.j.runs.len());
                self.run_ended.push(ts.clone());
                self.j.runs.push(Run {
                    run: id.as_ref().to_string(),
                    command: command.as_ref().to_string(),
                    campaign: campaign.as_ref().to_string(),
                    relay: relay.as_ref().to_string(),
                    recipients_sha256: recipients_sha256.as_ref().to_string(),
                    templates_sha256: templates_sha256.as_ref().to_string(),
                    test: *test,
                    started: ts.as_ref().to_string(),
                    ended: String::new(),
                    sent: 0,
                    failed: 0,
                    outcome: None,
                });
            }
            Event::End { outcome, .. } => {
                if let Some(r) = run {
                    self.j.runs[r].outcome = said(outcome.as_ref());
                }
            }
            Event::Attempt {
                key,
                email,
                message_id,
                test,
                ..
            } => self.deliver(
                run,
                event.ts(),
                delivery(key, email, message_id, *test),
                Step::Attempt,
            ),
            Event::Sent {
                key,
                email,
                message_id,
                test,
                ..
            } => self.deliver(
                run,
                event.ts(),
                delivery(key, email, message_id, *test),
                Step::Sent,
            ),
            Event::Failed {
                key,
                email,
                message_id,
                code,
                reply,
                class,
                test,
                ..
            } => self.deliver(
                run,
                event.ts(),
                delivery(key, email, message_id, *test),
                Step::Failed {
                    class: *class,
                    code: *code,
                    reply: reply.as_ref(),
                },
            ),
            Event::Unknown(u) => self.deliver(
                run,
                event.ts(),
                delivery(&u.key, &u.email, &u.message_id, u.test),
                Step::Unknown {
                    reason: u.reason.as_ref(),
                },
            ),
            Event::Deferred {
                key,
                email,
                message_id,
                code,
                reply,
                test,
                ..
            } => self.deliver(
                run,
                event.ts(),
                delivery(key, email, message_id, *test),
                Step::Deferred {
                    code: *code,
                    reply: reply.as_ref(),
                },
            ),
            Event::Withdrawn(u) => self.deliver(
                run,
                event.ts(),
                delivery(&u.key, &u.email, &u.message_id, u.test),
                Step::Withdrawn,
            ),
            Event::Bounced {
                key,
                email,
                status,
                diagnostic,
                source,
                class,
                ..
            } => {
                let j = &mut self.j;
                j.bounces_booked
                    .insert(format!("{}\u{0}{}", source.as_ref(), key.as_ref()));
                match class {
                    Class::Permanent => {
                        let entry = j.entry(key.as_ref());
                        entry.state = State::Bounced;
                        set(&mut entry.email, email.as_ref());
                        entry.code = None;
                        entry.reason = Some(format!("{} {}", status.as_ref(), diagnostic.as_ref()));
                    }
                    // A delay notice changes no state.
                    Class::Transient => j.delays += 1,
                }
            }
        }
    }

    /// Books a delivery event of run `run` (its index, when the journal has that run).
    fn deliver(&mut self, run: Option<usize>, ts: &str, who: Delivery, step: Step) {
        let j = &mut self.j;
        if who.test {
            // A test delivery changes no one's state; it counts for its run and the total.
            match step {
                Step::Sent => {
                    j.test_sent += 1;
                    if let Some(r) = run {
                        j.runs[r].sent += 1;
                    }
                }
                Step::Failed { .. } => {
                    if let Some(r) = run {
                        j.runs[r].failed += 1;
                    }
                }
                _ => {}
            }
            return;
        }
        let state = match step {
            Step::Attempt | Step::Unknown { .. } => State::Unknown,
            Step::Sent => {
                if let Some(r) = run {
                    j.runs[r].sent += 1;
                }
                if ts >= self.cutoff.as_str() {
                    j.sent_last_24h += 1;
                    j.sent_times_last_24h
                        .push(humantime::parse_rfc3339(ts).unwrap_or_else(|_| SystemTime::now()));
                }
                State::Sent
            }
            Step::Failed { class, .. } => {
                if let Some(r) = run {
                    j.runs[r].failed += 1;
                }
                match class {
                    Class::Transient => State::FailedTransient,
                    Class::Permanent => State::FailedPermanent,
                }
            }
            Step::Deferred { .. } | Step::Withdrawn => State::Pending,
        };
        let entry = j.entry(who.key);
        match step {
            Step::Withdrawn => {
                // The attempt never became a delivery: what it replaced comes back.
                let (state, code, reason) =
                    std::mem::replace(&mut entry.before_attempt, (State::Pending, None, None));
                entry.attempts = entry.attempts.saturating_sub(1);
                entry.state = state;
                entry.code = code;
                entry.reason = reason;
                return;
            }
            Step::Attempt => {
                entry.attempts += 1;
                entry.before_attempt = (entry.state, entry.code.take(), entry.reason.take());
            }
            _ => {}
        }
        entry.state = state;
        set(&mut entry.email, who.email);
        set(&mut entry.message_id, who.message_id);
        (entry.code, entry.reason) = match step {
            Step::Attempt | Step::Sent | Step::Withdrawn => (None, None),
            Step::Failed { code, reply, .. } | Step::Deferred { code, reply } => {
                (code, said(reply))
            }
            Step::Unknown { reason } => (None, said(reason)),
        };
    }
}

/// The recipient of a delivery event.
fn delivery<'e>(key: &'e Text, email: &'e Text, message_id: &'e Text, test: bool) -> Delivery<'e> {
    Delivery {
        key: key.as_ref(),
        email: email.as_ref(),
        message_id: message_id.as_ref(),
        test,
    }
}

#[cfg(test)]
mod tests {
    use super::super::sample::*;
    use super::*;
    use crate::journal::{Class, Event, now};

    #[test]
    fn states_from_latest_event() {
        let mut events = vec![run_event("R", "t", false)];
        events.push(attempt("a", "R"));
        events.push(sent("a", "R"));
        events.push(attempt("b", "R"));
        events.push(attempt("c", "R"));
        events.push(Event::Failed {
            ts: now(),
            run: "R".into(),
            key: "c".into(),
            email: "c@example.se".into(),
            message_id: "<c>".into(),
            code: Some(550),
            enhanced: Some("5.1.1".into()),
            reply: "no such user".into(),
            class: Class::Permanent,
            test: false,
        });
        events.push(attempt("d", "R"));
        events.push(Event::Deferred {
            ts: now(),
            run: "R".into(),
            key: "d".into(),
            email: "d@example.se".into(),
            message_id: "<d>".into(),
            code: Some(421),
            reply: "slow down".into(),
            test: false,
        });
        let j = Journal::parse(&text(&events), "j").expect("parses");
        assert_eq!(j.state("a"), State::Sent);
        assert_eq!(j.state("b"), State::Unknown);
        assert_eq!(j.state("c"), State::FailedPermanent);
        assert_eq!(j.state("d"), State::Pending);
        assert_eq!(j.state("zzz"), State::Pending);
        assert_eq!(j.recipients["c"].code, Some(550));
        assert_eq!(j.runs[0].sent, 1);
        assert_eq!(j.runs[0].failed, 1);
        assert_eq!(j.sent_last_24h, 1);
        // Its time, for the rolling daily window: just now.
        let age = SystemTime::now()
            .duration_since(j.sent_times_last_24h[0])
            .unwrap_or_default();
        assert!(age < std::time::Duration::from_secs(60), "{age:?}");
    }

    #[test]
    fn withdrawn_puts_back_the_state_before_the_attempt() {
        let transient = Event::Failed {
            ts: now(),
            run: "R".into(),
            key: "t".into(),
            email: "t@example.se".into(),
            message_id: "<c.t@example.se>".into(),
            code: Some(451),
            enhanced: Some("4.3.0".into()),
            reply: "try later".into(),
            class: Class::Transient,
            test: false,
        };
        let events = [
            run_event("R", "t", false),
            attempt("p", "R"),
            withdrawn("p", "R"),
            attempt("t", "R"),
            transient,
            run_event("S", "t", false),
            attempt("t", "S"),
            withdrawn("t", "S"),
            attempt("u", "R"),
            run_event("V", "t", false),
            attempt("u", "V"),
            withdrawn("u", "V"),
        ];
        let j = Journal::parse(&text(&events), "j").expect("parses");
        assert_eq!(j.state("p"), State::Pending);
        assert_eq!(j.recipients["p"].attempts, 0);
        assert_eq!(j.state("t"), State::FailedTransient);
        assert_eq!(j.recipients["t"].code, Some(451));
        assert_eq!(j.recipients["t"].why(), "try later");
        assert_eq!(j.recipients["t"].attempts, 1);
        // An attempt with no outcome stays unknown under a later withdrawn attempt.
        assert_eq!(j.state("u"), State::Unknown);
        assert_eq!(j.recipients["u"].attempts, 1);
        let line = serde_json::to_string(&withdrawn("p", "R")).expect("json");
        assert!(
            line.starts_with("{\"event\":\"withdrawn\",\"ts\":"),
            "{line}"
        );
    }

    #[test]
    fn test_sends_change_no_state_and_do_not_count_for_templates() {
        let mut t = attempt("a", "T");
        if let Event::Attempt { test, .. } = &mut t {
            *test = true;
        }
        let mut s = sent("a", "T");
        if let Event::Sent { test, .. } = &mut s {
            *test = true;
        }
        let j = Journal::parse(&text(&[run_event("T", "old", true), t, s]), "j").expect("parses");
        assert_eq!(j.state("a"), State::Pending);
        assert_eq!(j.test_sent, 1);
        assert!(j.other_templates("new").is_empty());
        let j = Journal::parse(&text(&[run_event("R", "old", false)]), "j").expect("parses");
        assert_eq!(j.other_templates("new").len(), 1);
        assert!(j.other_templates("old").is_empty());
    }

    #[test]
    fn bounces_booked_once_and_delays_change_nothing() {
        let bounce = |class| Event::Bounced {
            ts: now(),
            key: "a".into(),
            email: "a@example.se".into(),
            message_id: "<c.a@example.se>".into(),
            status: "5.1.1".into(),
            diagnostic: "unknown user".into(),
            source: "<dsn1@example.se>".into(),
            class,
        };
        let j = Journal::parse(
            &text(&[
                run_event("R", "t", false),
                attempt("a", "R"),
                sent("a", "R"),
                bounce(Class::Transient),
            ]),
            "j",
        )
        .expect("parses");
        assert_eq!(j.state("a"), State::Sent);
        assert_eq!(j.delays, 1);
        let j = Journal::parse(
            &text(&[
                run_event("R", "t", false),
                attempt("a", "R"),
                sent("a", "R"),
                bounce(Class::Permanent),
            ]),
            "j",
        )
        .expect("parses");
        assert_eq!(j.state("a"), State::Bounced);
        assert!(j.bounces_booked.contains("<dsn1@example.se>\u{0}a"));
    }
}

#[cfg(test)]
mod proptests {
    //! The journal reader against arbitrary bytes (never a panic; errors name a line), a
    //! model of the contract's states against generated event sequences, and torn tails.
    use super::*;
    use crate::journal::sample::text;
    use crate::journal::{Class, Event, Unsent, now};
    use proptest::prelude::*;

    const KEYS: [&str; 4] = ["1001", "1002", "a\"b", "é\\n"];

    /// One generated event for key `k` (index into KEYS); `None` means no state change.
    fn event(kind: u8, k: usize, test: bool) -> (Event, Option<State>) {
        let ts = now();
        let run = "R".to_string();
        let key = KEYS[k].to_string();
        let email = format!("k{k}@example.se");
        let message_id = format!("<c.{k}@example.se>");
        let change = |s| if test { None } else { Some(s) };
        match kind % 8 {
            0 => (
                Event::Attempt {
                    ts,
                    run,
                    key,
                    email,
                    message_id,
                    attempt: 1,
                    test,
                },
                change(State::Unknown),
            ),
            1 => (
                Event::Sent {
                    ts,
                    run,
                    key,
                    email,
                    message_id,
                    code: 250,
                    reply: "ok".into(),
                    test,
                },
                change(State::Sent),
            ),
            2 | 3 => {
                let class = if kind % 8 == 2 {
                    Class::Transient
                } else {
                    Class::Permanent
                };
                let state = if class == Class::Transient {
                    State::FailedTransient
                } else {
                    State::FailedPermanent
                };
                (
                    Event::Failed {
                        ts,
                        run,
                        key,
                        email,
                        message_id,
                        code: Some(550),
                        enhanced: None,
                        reply: "no".into(),
                        class,
                        test,
                    },
                    change(state),
                )
            }
            4 => (
                Event::Unknown(Unsent {
                    ts,
                    run,
                    key,
                    email,
                    message_id,
                    reason: "lost".into(),
                    test,
                }),
                change(State::Unknown),
            ),
            5 => (
                Event::Deferred {
                    ts,
                    run,
                    key,
                    email,
                    message_id,
                    code: Some(421),
                    reply: "busy".into(),
                    test,
                },
                change(State::Pending),
            ),
            6 => {
                let class = if test {
                    Class::Transient
                } else {
                    Class::Permanent
                };
                (
                    Event::Bounced {
                        ts,
                        key,
                        email,
                        message_id,
                        status: "5.1.1".into(),
                        diagnostic: "x".into(),
                        source: format!("report-{kind}"),
                        class,
                    },
                    if class == Class::Permanent {
                        Some(State::Bounced)
                    } else {
                        None
                    },
                )
            }
            _ => (
                Event::End {
                    ts,
                    run,
                    outcome: "complete".into(),
                },
                None,
            ),
        }
    }

    fn run_line() -> Event {
        Event::Run {
            ts: now(),
            run: "R".into(),
            campaign: "c".into(),
            command: "send".into(),
            recipients_sha256: "r".into(),
            templates_sha256: "t".into(),
            relay: "127.0.0.1:25".into(),
            test: false,
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
            if let Err(e) = Journal::parse(&bytes, "j") {
                let msg = format!("{e:#}");
                prop_assert!(msg.starts_with("j:"), "{msg}");
            }
        }

        #[test]
        fn json_like_lines_never_panic(
            lines in prop::collection::vec(
                prop_oneof![
                    Just("{\"event\":\"sent\"}".to_string()),
                    Just("{\"event\":\"run\",\"run\":\"R\",\"campaign\":\"c\"}".to_string()),
                    Just("{\"event\":\"failed\",\"key\":\"k\",\"email\":\"e\",\"message_id\":\"m\",\"class\":\"x\"}".to_string()),
                    Just("{\"event\":\"bounced\",\"key\":\"k\",\"source\":\"s\",\"class\":\"permanent\"}".to_string()),
                    Just("{\"event\":\"attempt\",\"key\":\"k\",\"email\":\"e\",\"message_id\":\"m\",\"code\":70000}".to_string()),
                    Just("{\"event\":\"end\",\"run\":\"nope\"}".to_string()),
                    Just("{\"event\":1}".to_string()),
                    Just("[]".to_string()),
                    Just("null".to_string()),
                    Just("".to_string()),
                    Just("   ".to_string()),
                    "\\{[\"a-z:,0-9{}\\[\\] ]{0,40}\\}",
                ],
                0..8,
            ),
            tail in "[^\n]{0,20}",
        ) {
            let text = format!("{}\n{tail}", lines.join("\n"));
            match Journal::parse(text.as_bytes(), "j") {
                Ok(j) => prop_assert_eq!(j.torn_tail, !tail.is_empty()),
                Err(e) => {
                    let msg = format!("{e:#}");
                    let line: usize = msg
                        .strip_prefix("j:")
                        .and_then(|m| m.split(':').next())
                        .and_then(|n| n.parse().ok())
                        .unwrap_or(0);
                    prop_assert!(line >= 1 && line <= lines.len(), "{msg}");
                }
            }
        }

        /// The state of every key is its latest state-changing event, as the contract says.
        #[test]
        fn state_is_the_latest_event(
            ops in prop::collection::vec((0u8..8, 0usize..KEYS.len(), prop::bool::weighted(0.15)), 0..40),
        ) {
            let mut events = vec![run_line()];
            let mut model: HashMap<&str, State> = HashMap::new();
            for (kind, k, test) in ops {
                let (e, change) = event(kind, k, test);
                if let Some(s) = change {
                    model.insert(KEYS[k], s);
                }
                events.push(e);
            }
            let j = Journal::parse(&text(&events), "j").expect("a journal we wrote parses");
            for k in KEYS {
                prop_assert_eq!(j.state(k), model.get(k).copied().unwrap_or(State::Pending), "key {}", k);
            }
            prop_assert_eq!(j.events, events.len() as u64);
        }

        /// Bytes after the last newline (a crash mid-write) never change what is read.
        #[test]
        fn a_torn_tail_changes_nothing(
            ops in prop::collection::vec((0u8..8, 0usize..KEYS.len()), 1..20),
            cut in any::<prop::sample::Index>(),
        ) {
            let mut events = vec![run_line()];
            for (kind, k) in &ops {
                events.push(event(*kind, *k, false).0);
            }
            let whole = text(&events);
            let last = text(&events[events.len() - 1..]);
            let prefix = &whole[..whole.len() - last.len()];
            let torn_len = cut.index(last.len() - 1);
            let mut torn = prefix.to_vec();
            torn.extend_from_slice(&last[..torn_len]);
            let a = Journal::parse(prefix, "j").expect("prefix parses");
            let b = Journal::parse(&torn, "j").expect("torn parses");
            prop_assert_eq!(b.torn_tail, torn_len > 0);
            prop_assert_eq!(a.events, b.events);
            for k in KEYS {
                prop_assert_eq!(a.state(k), b.state(k));
            }
        }
    }
}
