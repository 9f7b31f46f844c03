//! Progress of a run: on a terminal an indicatif bar with sent, failed, remaining, rate and
//! ETA; without one, a plain line every few seconds (for logs and CI); `-v` adds a line
//! per recipient (key and address only: nothing else personal goes to stderr).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::output::Output;

/// How often the plain line is printed without a terminal.
const PLAIN_EVERY: Duration = Duration::from_secs(5);

struct Inner {
    sent: u64,
    failed: u64,
    last_plain: Instant,
}

/// The progress display of one run.
pub struct Progress {
    bar: Option<ProgressBar>,
    total: u64,
    start: Instant,
    inner: Mutex<Inner>,
    out: Output,
    /// The period the rate was configured per (`30/min`: a minute), to show the measured
    /// rate in the operator's unit.
    rate_per: Duration,
}

impl Progress {
    /// For a run taking on `total` recipients.
    pub fn new(total: u64, out: &Output) -> Progress {
        let bar = (out.terminal && !out.quiet).then(|| {
            let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
            let style =
                ProgressStyle::with_template("{bar:30.cyan/blue} {pos}/{len} {msg} ETA {eta}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar());
            bar.set_style(style);
            bar
        });
        Progress {
            bar,
            total,
            start: Instant::now(),
            inner: Mutex::new(Inner {
                sent: 0,
                failed: 0,
                last_plain: Instant::now(),
            }),
            out: *out,
            rate_per: Duration::from_secs(1),
        }
    }

    /// Shows the measured rate per `per` (the configured rate's period).
    pub fn with_rate_per(mut self, per: Duration) -> Progress {
        self.rate_per = per;
        self
    }

    /// The measured rate, in the configured unit.
    fn rate(&self, done: u64) -> String {
        let secs = self.start.elapsed().as_secs_f64().max(0.001);
        shown_rate(done as f64 / secs, self.rate_per)
    }

    fn update(&self, f: impl FnOnce(&mut Inner)) {
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        f(&mut inner);
        let done = inner.sent + inner.failed;
        let remaining = self.total.saturating_sub(done);
        if let Some(bar) = &self.bar {
            bar.set_position(done);
            bar.set_message(format!(
                "sent {} failed {} remaining {remaining} {}",
                inner.sent,
                inner.failed,
                self.rate(done)
            ));
        } else if !self.out.quiet && inner.last_plain.elapsed() >= PLAIN_EVERY {
            inner.last_plain = Instant::now();
            eprintln!(
                "progress: sent {}, failed {}, remaining {remaining}, {}",
                inner.sent,
                inner.failed,
                self.rate(done)
            );
        }
    }

    /// A recipient was sent.
    pub fn sent(&self, key: &str, email: &str) {
        self.line(&format!("sent {key} <{email}>"));
        self.update(|i| i.sent += 1);
    }

    /// A recipient failed for good in this run.
    pub fn failed(&self, key: &str, email: &str, reason: &str) {
        self.note(&format!("failed {key} <{email}>: {reason}"));
        self.update(|i| i.failed += 1);
    }

    /// A line shown unless -q (above the bar on a terminal).
    pub fn note(&self, message: &str) {
        if self.out.quiet {
            return;
        }
        match &self.bar {
            Some(bar) => bar.println(message),
            None => eprintln!("{message}"),
        }
    }

    fn line(&self, message: &str) {
        if self.out.verbose > 0 {
            self.note(message);
        }
    }

    /// Clears the bar.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// A rate of `per_second` shown per `per` (the unit the operator configured: `31/min`, not
/// `0.5295/s`), whole where it is at least 10, else with one decimal.
fn shown_rate(per_second: f64, per: Duration) -> String {
    let unit = match per.as_secs() {
        60 => "min",
        3600 => "h",
        _ => "s",
    };
    let n = match unit {
        "min" => per_second * 60.0,
        "h" => per_second * 3600.0,
        _ => per_second,
    };
    if n >= 10.0 {
        format!("{n:.0}/{unit}")
    } else {
        format!("{n:.1}/{unit}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_is_shown_in_the_configured_unit() {
        let min = Duration::from_secs(60);
        assert_eq!(shown_rate(0.5295, min), "32/min");
        assert_eq!(shown_rate(0.5, min), "30/min");
        assert_eq!(shown_rate(0.1, min), "6.0/min");
        assert_eq!(shown_rate(0.0277, Duration::from_secs(3600)), "100/h");
        assert_eq!(shown_rate(412.7, Duration::from_secs(1)), "413/s");
        assert_eq!(shown_rate(2.25, Duration::from_secs(1)), "2.2/s");
    }
}
