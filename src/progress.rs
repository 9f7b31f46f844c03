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
}

impl Progress {
    /// For a run taking on `total` recipients.
    pub fn new(total: u64, out: &Output) -> Progress {
        let bar = (out.terminal && !out.quiet).then(|| {
            let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
            let style = ProgressStyle::with_template(
                "{bar:30.cyan/blue} {pos}/{len} {msg} {per_sec} ETA {eta}",
            )
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
        }
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
                "sent {} failed {} remaining {remaining}",
                inner.sent, inner.failed
            ));
        } else if !self.out.quiet && inner.last_plain.elapsed() >= PLAIN_EVERY {
            inner.last_plain = Instant::now();
            let secs = self.start.elapsed().as_secs_f64().max(0.001);
            eprintln!(
                "progress: sent {}, failed {}, remaining {remaining}, {:.1}/s",
                inner.sent,
                inner.failed,
                done as f64 / secs
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
