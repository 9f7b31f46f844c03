//! What comes next after each outcome: a recipient's transient failure waits for its
//! next attempt; a reply that speaks for the relay pauses the run, longer each time.

use std::collections::{BinaryHeap, VecDeque};
use std::time::Duration;

use super::engine::{Job, Outcome};
use super::report::{Report, Stop};
use crate::journal::Class;
use crate::progress::Progress;
use crate::relay::{ConnectError, Verdict};

/// Relay refusals in a row (with no delivery in between) before the run gives up.
pub(super) const MAX_RELAY_PUSHBACKS: u32 = 8;
/// Unknown outcomes in a row (a relay that stops answering after DATA) that stop the run:
/// at 30 s a timeout, 10,000 such recipients would take days, each left `unknown`.
pub(super) const UNKNOWN_BREAKER: u32 = 3;
/// Different recipients in a row refused alike before the refusal counts as the relay's.
pub(super) const SAME_REFUSAL: usize = 3;
/// The longest pause the relay can impose on the run.
pub(super) const MAX_PAUSE: Duration = Duration::from_secs(120);

/// How long the run pauses after the relay's `n`-th pushback in a row: from
/// `retry_delay`, but never more than a second at first (pushback starts small), doubling,
/// at most `MAX_PAUSE`.
pub(super) fn pause_for(sending: &crate::config::Sending, n: u32) -> Duration {
    let base = sending
        .retry_delay
        .clamp(Duration::from_millis(200), Duration::from_secs(1));
    (base * 2u32.saturating_pow(n.saturating_sub(1))).min(MAX_PAUSE)
}

/// A job waiting to be tried again, ordered by when.
pub(super) struct Delayed {
    pub(super) at: tokio::time::Instant,
    pub(super) seq: u64,
    pub(super) job: Job,
}

impl PartialEq for Delayed {
    fn eq(&self, o: &Self) -> bool {
        self.at == o.at && self.seq == o.seq
    }
}
impl Eq for Delayed {}
impl PartialOrd for Delayed {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Delayed {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        // Earliest first in a max-heap.
        o.at.cmp(&self.at).then(o.seq.cmp(&self.seq))
    }
}

/// The same refusal to different recipients in a row, with no delivery in between:
/// evidence that the refusal is the relay's, whatever its words.
#[derive(Debug, Default)]
pub(super) struct Streak {
    signature: String,
    keys: Vec<String>,
}

impl Streak {
    /// Counts a refusal; true once `SAME_REFUSAL` different recipients got it in a row.
    pub(super) fn refused(&mut self, key: &str, signature: String) -> bool {
        if signature != self.signature {
            self.signature = signature;
            self.keys.clear();
        }
        if !self.keys.iter().any(|k| k == key) {
            self.keys.push(key.to_string());
        }
        self.keys.len() >= SAME_REFUSAL
    }

    /// A delivery: whatever came before was not the relay's.
    pub(super) fn delivered(&mut self) {
        self.keys.clear();
    }
}

/// The dispatcher's queues and the relay's pushback state.
pub(super) struct Queue {
    /// Transient failures waiting for their next attempt.
    pub(super) retries: BinaryHeap<Delayed>,
    /// Jobs the relay pushed back: next in line once the pause is over.
    pub(super) front: VecDeque<Job>,
    /// Tie-breaker for retries due at the same instant.
    pub(super) seq: u64,
    /// No message starts before this.
    pub(super) paused_until: Option<tokio::time::Instant>,
    /// Relay pushbacks in a row, without a delivery in between.
    pub(super) pushbacks: u32,
    /// Outcomes in a row that are unknown (lost or broken after DATA).
    pub(super) unknowns: u32,
    /// Connections closed on us in a row (421), without a delivery in between.
    pub(super) closings: u32,
}

impl Queue {
    pub(super) fn new() -> Queue {
        Queue {
            retries: BinaryHeap::new(),
            front: VecDeque::new(),
            seq: 0,
            paused_until: None,
            pushbacks: 0,
            unknowns: 0,
            closings: 0,
        }
    }

    /// Books a durable outcome into the run's report and queues what comes next.
    pub(super) fn handle(
        &mut self,
        report: &mut Report,
        progress: &Progress,
        sending: &crate::config::Sending,
        job: Job,
        outcome: Outcome,
    ) {
        match outcome {
            Outcome::Sent => {
                report.attempts += 1;
                report.sent += 1;
                self.pushbacks = 0;
                self.unknowns = 0;
                self.closings = 0;
                progress.sent(&job.key, &job.email);
            }
            Outcome::Failed { class, reason } => {
                let mut job = job;
                job.failures += 1;
                report.attempts += 1;
                self.pushbacks = 0;
                self.unknowns = 0;
                self.closings = 0;
                if class == Class::Transient && job.attempts < sending.max_attempts {
                    let delay = sending.retry_delay * 2u32.saturating_pow(job.attempts - 1);
                    progress.note(&format!(
                        "{} <{}>: {reason}; trying again in {} s",
                        job.key,
                        job.email,
                        delay.as_secs()
                    ));
                    self.seq += 1;
                    self.retries.push(Delayed {
                        at: tokio::time::Instant::now() + delay,
                        seq: self.seq,
                        job,
                    });
                } else {
                    if class == Class::Transient {
                        report.failed_transient += 1;
                    } else {
                        report.failed_permanent += 1;
                    }
                    progress.failed(&job.key, &job.email, &reason);
                }
            }
            Outcome::Unknown { reason } => {
                report.attempts += 1;
                report.unknown += 1;
                self.unknowns += 1;
                progress.failed(
                    &job.key,
                    &job.email,
                    &format!("{reason}: outcome unknown (a rerun sends it again with the same Message-ID)"),
                );
                if self.unknowns >= UNKNOWN_BREAKER {
                    report.stop.get_or_insert(Stop::RelaySilent {
                        in_a_row: self.unknowns,
                        last: reason,
                    });
                }
            }
            Outcome::Relay { verdict, reason } => match verdict {
                Verdict::RelayQuota => {
                    // The relay's daily quota: the long-mailing rules decide between stopping
                    // here and waiting (`[sending] when_limited`); the job stays deferred.
                    report.stop.get_or_insert(Stop::Quota(reason));
                }
                Verdict::Auth => {
                    report.stop.get_or_insert(Stop::Fatal(format!(
                        "the relay refused the login: {reason}"
                    )));
                }
                Verdict::Sender => {
                    report.stop.get_or_insert(Stop::Fatal(format!(
                        "the relay refuses the sender: {reason}; check [sender] from, and that the login may send as that address"
                    )));
                }
                Verdict::Refuses => {
                    report.stop.get_or_insert(Stop::Fatal(format!(
                        "the relay refuses recipient after recipient alike ({reason}): that speaks of the relay or the sender, not of the recipients"
                    )));
                }
                Verdict::Closing => self.closing(report, progress, sending, job, reason),
                _ => self.pushback(report, progress, sending, job, reason, false),
            },
            Outcome::NoConnection(e) => match e {
                ConnectError::Auth { .. }
                | ConnectError::Tls { .. }
                | ConnectError::Refused { .. } => {
                    report.stop.get_or_insert(Stop::Fatal(e.to_string()));
                }
                ConnectError::Busy { .. } => {
                    self.closing(report, progress, sending, job, e.to_string());
                }
                // Long mailings: a token endpoint that fails for a moment in a run of hours
                // is waited for like a relay out of reach; if it keeps failing, the run
                // stops (exit 1).
                ConnectError::Unreachable { .. } | ConnectError::Secret { .. } => {
                    self.pushback(report, progress, sending, job, e.to_string(), true);
                }
            },
            Outcome::JournalFailed {
                reason: e,
                booked_unknown,
            } => {
                if booked_unknown {
                    // The journal may or may not hold its attempt: it is read back at the
                    // end, so that the summary says what the journal says.
                    report.unbooked.push(job.key);
                }
                report.stop = Some(Stop::Fatal(format!("{e}; sending stopped at once")));
            }
        }
    }

    /// A connection closed on us (421, or a busy greeting): the job goes back first in line
    /// for another connection, and that connection pauses before it reconnects (the
    /// engine holds its slot back). Only when every connection says so in a row does the
    /// whole run pause.
    fn closing(
        &mut self,
        report: &mut Report,
        progress: &Progress,
        sending: &crate::config::Sending,
        job: Job,
        reason: String,
    ) {
        self.closings += 1;
        if self.closings as usize >= sending.concurrency {
            self.closings = 0;
            self.pushback(report, progress, sending, job, reason, false);
        } else {
            progress.note(&format!(
                "a connection was closed ({reason}); it reconnects in {:.1} s",
                pause_for(sending, 1).as_secs_f32()
            ));
            self.front.push_front(job);
        }
    }

    /// The relay refused for itself: the job goes back first in line and the whole run
    /// pauses, longer each time; after too many in a row the run stops cleanly.
    fn pushback(
        &mut self,
        report: &mut Report,
        progress: &Progress,
        sending: &crate::config::Sending,
        job: Job,
        reason: String,
        unreachable: bool,
    ) {
        self.pushbacks += 1;
        self.front.push_front(job);
        if self.pushbacks > MAX_RELAY_PUSHBACKS {
            report.stop.get_or_insert(if unreachable {
                Stop::Fatal(reason)
            } else {
                Stop::RelayKeepsRefusing(reason)
            });
            return;
        }
        let pause = pause_for(sending, self.pushbacks);
        progress.note(&format!(
            "the relay pushes back ({reason}); pausing {} s",
            pause.as_secs_f32()
        ));
        let until = tokio::time::Instant::now() + pause;
        if self.paused_until.is_none_or(|p| p < until) {
            self.paused_until = Some(until);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::relay;
    use std::sync::Arc;

    #[test]
    fn retries_come_out_earliest_first() {
        let job = |k: &str| Job {
            key: k.into(),
            email: format!("{k}@example.se"),
            rcpt: format!("{k}@example.se").parse().expect("address"),
            message_id: String::new(),
            bytes: Arc::new(Vec::new()),
            wire: Arc::new(relay::Wire::new(b"")),
            archive_name: String::new(),
            attempts: 1,
            earlier: 0,
            failures: 0,
        };
        let now = tokio::time::Instant::now();
        let mut heap = BinaryHeap::new();
        heap.push(Delayed {
            at: now + Duration::from_secs(3),
            seq: 1,
            job: job("c"),
        });
        heap.push(Delayed {
            at: now + Duration::from_secs(1),
            seq: 2,
            job: job("a"),
        });
        heap.push(Delayed {
            at: now + Duration::from_secs(2),
            seq: 3,
            job: job("b"),
        });
        let order: Vec<String> = std::iter::from_fn(|| heap.pop().map(|d| d.job.key)).collect();
        assert_eq!(order, ["a", "b", "c"]);
    }

    fn job(key: &str, attempts: u32) -> Job {
        Job {
            key: key.into(),
            email: format!("{key}@example.se"),
            rcpt: format!("{key}@example.se").parse().expect("address"),
            message_id: String::new(),
            bytes: Arc::new(Vec::new()),
            wire: Arc::new(relay::Wire::new(b"")),
            archive_name: String::new(),
            attempts,
            earlier: 0,
            failures: 0,
        }
    }

    fn sending() -> crate::config::Sending {
        crate::config::Sending {
            rate: crate::config::Rate {
                count: 10,
                per: Duration::from_secs(1),
            },
            burst: 1,
            concurrency: 2,
            daily_limit: None,
            when_limited: crate::config::WhenLimited::Stop,
            quota_retry: Duration::from_secs(1800),
            max_attempts: 3,
            retry_delay: Duration::from_secs(5),
        }
    }

    fn quiet() -> Progress {
        Progress::new(10, &crate::output::Output::new(true, 0))
    }

    fn failed(class: Class) -> Outcome {
        Outcome::Failed {
            class,
            reason: "451 4.3.0 try again later".into(),
        }
    }

    #[test]
    fn a_transient_failure_waits_its_own_doubling_delay_and_pauses_no_one() {
        let (s, p) = (sending(), quiet());
        let mut q = Queue::new();
        let mut r = Report::default();
        let before = tokio::time::Instant::now();
        q.handle(&mut r, &p, &s, job("a", 1), failed(Class::Transient));
        q.handle(&mut r, &p, &s, job("b", 2), failed(Class::Transient));
        assert!(q.paused_until.is_none() && q.front.is_empty());
        assert_eq!((r.attempts, r.failed_transient), (2, 0));
        let due: Vec<(String, Duration)> = std::iter::from_fn(|| q.retries.pop())
            .map(|d| (d.job.key, d.at - before))
            .collect();
        assert_eq!(due[0].0, "a");
        assert!(due[0].1 >= Duration::from_secs(5) && due[0].1 < Duration::from_secs(6));
        assert_eq!(due[1].0, "b");
        assert!(due[1].1 >= Duration::from_secs(10) && due[1].1 < Duration::from_secs(11));
    }

    #[test]
    fn the_last_attempt_books_failed_transient_and_permanent_failures_are_not_retried() {
        let (s, p) = (sending(), quiet());
        let mut q = Queue::new();
        let mut r = Report::default();
        q.handle(&mut r, &p, &s, job("a", 3), failed(Class::Transient));
        q.handle(&mut r, &p, &s, job("b", 1), failed(Class::Permanent));
        assert!(q.retries.is_empty());
        assert_eq!((r.failed_transient, r.failed_permanent), (1, 1));
        assert!(r.stop.is_none());
    }

    #[test]
    fn relay_pushback_puts_the_job_first_and_pauses_longer_each_time_then_stops() {
        let (s, p) = (sending(), quiet());
        let mut q = Queue::new();
        let mut r = Report::default();
        let busy = || Outcome::Relay {
            verdict: Verdict::RelayBusy,
            reason: "421 4.7.0 too many connections".into(),
        };
        q.handle(&mut r, &p, &s, job("a", 1), busy());
        assert_eq!(q.front.front().map(|j| j.key.as_str()), Some("a"));
        let first = q.paused_until.expect("paused");
        q.handle(&mut r, &p, &s, job("b", 1), busy());
        assert!(q.paused_until.expect("paused") > first);
        assert_eq!(q.front.front().map(|j| j.key.as_str()), Some("b"));
        // A delivery in between: the next pushback starts small again.
        q.handle(&mut r, &p, &s, job("c", 1), Outcome::Sent);
        assert_eq!(q.pushbacks, 0);
        for _ in 0..=MAX_RELAY_PUSHBACKS {
            assert!(r.stop.is_none());
            q.handle(&mut r, &p, &s, job("d", 1), busy());
        }
        assert!(
            matches!(r.stop, Some(Stop::RelayKeepsRefusing(_))),
            "{:?}",
            r.stop
        );
        assert_eq!(r.sent, 1);
    }

    #[test]
    fn quota_sender_and_login_refusals_stop_the_run() {
        let (s, p) = (sending(), quiet());
        for (verdict, want) in [
            (Verdict::RelayQuota, "quota"),
            (Verdict::Sender, "refuses the sender"),
            (Verdict::Auth, "refused the login"),
        ] {
            let mut q = Queue::new();
            let mut r = Report::default();
            let reason = "550 5.4.5 Daily sending quota exceeded".to_string();
            q.handle(
                &mut r,
                &p,
                &s,
                job("a", 1),
                Outcome::Relay { verdict, reason },
            );
            let text = r.outcome_text();
            assert!(text.contains(want), "{verdict:?}: {text}");
            assert!(q.retries.is_empty());
        }
    }

    #[test]
    fn a_journal_failure_stops_at_once_and_reads_the_journal_back() {
        let (s, p) = (sending(), quiet());
        let mut q = Queue::new();
        let mut r = Report::default();
        let outcome = Outcome::JournalFailed {
            reason: "cannot write journal j: No space left on device".into(),
            booked_unknown: true,
        };
        q.handle(&mut r, &p, &s, job("a", 1), outcome);
        assert!(matches!(&r.stop, Some(Stop::Fatal(t)) if t.contains("No space")));
        assert_eq!(r.unbooked, ["a"]);
    }

    #[test]
    fn pauses_start_small_and_are_bounded() {
        let mut s = sending();
        s.retry_delay = Duration::from_millis(10);
        assert_eq!(pause_for(&s, 1), Duration::from_millis(200));
        assert_eq!(pause_for(&s, 2), Duration::from_millis(400));
        assert_eq!(pause_for(&s, 40), MAX_PAUSE);
    }

    #[test]
    fn the_same_refusal_to_three_different_recipients_in_a_row_is_the_relays() {
        let mut streak = Streak::default();
        let sig = || "451 Temporary failure".to_string();
        assert!(!streak.refused("a", sig()));
        // The same recipient again is no new evidence.
        assert!(!streak.refused("a", sig()));
        assert!(!streak.refused("b", sig()));
        assert!(streak.refused("c", sig()));
        // Another refusal starts over; so does a delivery.
        assert!(!streak.refused("d", "550 User unknown".into()));
        assert!(!streak.refused("e", sig()));
        assert!(!streak.refused("f", sig()));
        streak.delivered();
        assert!(!streak.refused("g", sig()));
    }

    #[test]
    fn a_closed_connection_pauses_only_itself_unless_every_connection_says_so() {
        let (s, p) = (sending(), quiet());
        let mut q = Queue::new();
        let mut r = Report::default();
        let closing = || Outcome::Relay {
            verdict: Verdict::Closing,
            reason: "421 4.7.0 Try again later, closing connection.".into(),
        };
        // concurrency 2: the first 421 leaves the run going, its job first in line.
        q.handle(&mut r, &p, &s, job("a", 1), closing());
        assert!(q.paused_until.is_none());
        assert_eq!(q.front.len(), 1);
        // A delivery in between: the next 421 is again one connection's.
        q.handle(&mut r, &p, &s, job("b", 1), Outcome::Sent);
        q.handle(&mut r, &p, &s, job("c", 1), closing());
        assert!(q.paused_until.is_none());
        // Both connections in a row: the whole run pauses.
        q.handle(&mut r, &p, &s, job("d", 1), closing());
        assert!(q.paused_until.is_some());
        assert_eq!(q.front.len(), 3);
        assert!(r.stop.is_none());
    }

    #[test]
    fn three_unknowns_in_a_row_stop_the_run_and_a_delivery_resets_the_count() {
        let (s, p) = (sending(), quiet());
        let mut q = Queue::new();
        let mut r = Report::default();
        let unknown = || Outcome::Unknown {
            reason: "no reply to the end of the message within 30 s".into(),
        };
        q.handle(&mut r, &p, &s, job("a", 1), unknown());
        q.handle(&mut r, &p, &s, job("b", 1), unknown());
        q.handle(&mut r, &p, &s, job("c", 1), Outcome::Sent);
        q.handle(&mut r, &p, &s, job("d", 1), unknown());
        q.handle(&mut r, &p, &s, job("e", 1), unknown());
        assert!(r.stop.is_none());
        q.handle(&mut r, &p, &s, job("f", 1), unknown());
        assert!(
            matches!(r.stop, Some(Stop::RelaySilent { in_a_row: 3, .. })),
            "{:?}",
            r.stop
        );
        assert_eq!(r.exit_code(10), crate::exit_codes::ExitCode::Fatal);
        assert!(r.outcome_text().contains("stopped answering after DATA"));
    }
}
