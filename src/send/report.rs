//! What a run did: the counts, why it stopped, the summary and the exit code.

use crate::exit_codes::ExitCode;

/// Why a run stopped before taking on everyone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Stop {
    Interrupted,
    Quota(String),
    DailyLimit(u64),
    RelayKeepsRefusing(String),
    /// Outcomes in a row unknown: the relay stopped answering after DATA.
    RelaySilent {
        /// How many in a row.
        in_a_row: u32,
        /// The last one's reason.
        last: String,
    },
    Fatal(String),
}

/// What a run did.
#[derive(Debug, Default)]
pub(super) struct Report {
    pub(super) sent: u64,
    pub(super) failed_permanent: u64,
    pub(super) failed_transient: u64,
    pub(super) unknown: u64,
    pub(super) stop: Option<Stop>,
    pub(super) attempts: u64,
    /// Keys whose attempt may be in the journal without an outcome (it failed to write).
    pub(super) unbooked: Vec<String>,
}

impl Report {
    pub(super) fn outcome_text(&self) -> String {
        match &self.stop {
            None => "complete".into(),
            Some(Stop::Interrupted) => "interrupted".into(),
            Some(Stop::Quota(r)) => format!("stopped: the relay's quota: {r}"),
            Some(Stop::DailyLimit(n)) => format!("stopped: daily_limit {n} reached"),
            Some(Stop::RelayKeepsRefusing(r)) => format!("stopped: the relay keeps refusing: {r}"),
            Some(Stop::Fatal(r)) => format!("stopped: {r}"),
            Some(Stop::RelaySilent { in_a_row, last }) => format!(
                "stopped: the relay stopped answering after DATA ({in_a_row} messages in a row have an unknown outcome; last: {last}); the rest are left pending for a later `utskick send`"
            ),
        }
    }

    pub(super) fn summary(&self, taken: u64, journal: &std::path::Path) -> String {
        let left = taken.saturating_sub(
            self.sent + self.failed_permanent + self.failed_transient + self.unknown,
        );
        let mut s = format!(
            "sent {}, failed-permanent {}, failed-transient {}, unknown {}, not attempted {} (of {taken})",
            self.sent, self.failed_permanent, self.failed_transient, self.unknown, left
        );
        if self.stop.is_some() {
            s.push_str(&format!("\n{}", self.outcome_text()));
        }
        s.push_str(&format!("\njournal: {}", journal.display()));
        if self.failed_transient + self.unknown > 0 || left > 0 {
            s.push_str("\nnext: `utskick status` to see who is left, `utskick retry` or `utskick send` to go on");
        }
        s
    }

    pub(super) fn exit_code(&self, taken: u64) -> ExitCode {
        match &self.stop {
            Some(Stop::Interrupted) => ExitCode::Interrupted,
            Some(Stop::Fatal(_) | Stop::RelaySilent { .. }) => ExitCode::Fatal,
            _ if self.sent == taken => ExitCode::Success,
            _ => ExitCode::Incomplete,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_of_a_run() {
        let mut r = Report {
            sent: 5,
            ..Report::default()
        };
        assert_eq!(r.exit_code(5), ExitCode::Success);
        assert_eq!(r.exit_code(6), ExitCode::Incomplete);
        r.stop = Some(Stop::Quota("550 5.4.5".into()));
        assert_eq!(r.exit_code(6), ExitCode::Incomplete);
        r.stop = Some(Stop::Interrupted);
        assert_eq!(r.exit_code(6), ExitCode::Interrupted);
        r.stop = Some(Stop::Fatal("disk full".into()));
        assert_eq!(r.exit_code(6), ExitCode::Fatal);
        assert!(
            r.summary(6, std::path::Path::new("j"))
                .contains("not attempted 1 (of 6)")
        );
    }

    #[test]
    fn a_failed_or_unknown_recipient_makes_the_run_incomplete() {
        let r = Report {
            sent: 4,
            failed_transient: 1,
            ..Report::default()
        };
        assert_eq!(r.exit_code(5), ExitCode::Incomplete);
        let r = Report {
            sent: 4,
            unknown: 1,
            ..Report::default()
        };
        assert_eq!(r.exit_code(5), ExitCode::Incomplete);
        // A daily limit or a relay that keeps refusing ends the run normally: exit 3.
        for stop in [
            Stop::DailyLimit(100),
            Stop::RelayKeepsRefusing("421 busy".into()),
        ] {
            let r = Report {
                sent: 2,
                stop: Some(stop),
                ..Report::default()
            };
            assert_eq!(r.exit_code(5), ExitCode::Incomplete);
        }
        // A stop after everyone was sent still says why; a fatal one is still fatal.
        let r = Report {
            sent: 5,
            stop: Some(Stop::Fatal("journal".into())),
            ..Report::default()
        };
        assert_eq!(r.exit_code(5), ExitCode::Fatal);
    }

    #[test]
    fn the_end_line_says_how_the_run_ended() {
        let mut r = Report::default();
        assert_eq!(r.outcome_text(), "complete");
        r.stop = Some(Stop::DailyLimit(300));
        assert_eq!(r.outcome_text(), "stopped: daily_limit 300 reached");
        r.stop = Some(Stop::Quota("554 quota".into()));
        assert_eq!(r.outcome_text(), "stopped: the relay's quota: 554 quota");
        r.stop = Some(Stop::Interrupted);
        assert_eq!(r.outcome_text(), "interrupted");
    }

    #[test]
    fn the_summary_counts_and_says_what_next() {
        let r = Report {
            sent: 3,
            failed_permanent: 1,
            ..Report::default()
        };
        let s = r.summary(4, std::path::Path::new("delivery-log.jsonl"));
        assert!(
            s.starts_with(
                "sent 3, failed-permanent 1, failed-transient 0, unknown 0, not attempted 0 (of 4)"
            ),
            "{s}"
        );
        assert!(s.contains("journal: delivery-log.jsonl"));
        assert!(!s.contains("next:"), "nothing to retry: {s}");
        let r = Report {
            sent: 3,
            unknown: 1,
            ..Report::default()
        };
        assert!(
            r.summary(4, std::path::Path::new("j"))
                .contains("next: `utskick status`")
        );
    }
}
