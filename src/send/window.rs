//! Waiting out a daily limit instead of stopping: a mailing of 20,000 through a mailbox
//! that may send 10,000 a day takes two days, and the operator should not have to start it
//! again at the right minute.
//!
//! `daily_limit` counts a rolling 24 hours from the journal's `sent` events (as Microsoft
//! 365 and SES count theirs): the window reopens, one message at a time, 24 hours after
//! each of the oldest ones. A relay's own daily-quota reply says nothing of when it
//! reopens, so the run asks again every `quota_retry_mins`. Every wait compares wall-clock
//! time, in short steps, so that a workstation that slept through the wait goes on as soon
//! as it wakes instead of sleeping the slept hours again.

use std::collections::VecDeque;
use std::time::{Duration, SystemTime};

/// The length of the rolling window.
pub const DAY: Duration = Duration::from_secs(24 * 3600);

/// The longest single sleep of a wait: the wall clock is looked at again after it.
const STEP: Duration = Duration::from_secs(5);

/// Test-only: in debug builds, `UTSKICK_TEST_DAILY_WINDOW_SECS` shortens the rolling window
/// (the integration tests cannot wait a day). Release builds ignore it.
pub fn window_length() -> Duration {
    if cfg!(debug_assertions)
        && let Some(secs) = std::env::var("UTSKICK_TEST_DAILY_WINDOW_SECS")
            .ok()
            .and_then(|v| v.parse::<f64>().ok())
            .filter(|s| *s > 0.0)
    {
        return Duration::from_secs_f64(secs).min(DAY);
    }
    DAY
}

/// The `sent` times inside the rolling window, oldest first, and the limit on them.
#[derive(Debug, Clone)]
pub struct DailyWindow {
    limit: u64,
    span: Duration,
    sent: VecDeque<SystemTime>,
}

impl DailyWindow {
    /// `limit` messages per `span`; `past`: the times of earlier `sent` events (any order).
    pub fn new(limit: u64, span: Duration, past: impl IntoIterator<Item = SystemTime>) -> Self {
        let mut sent: Vec<SystemTime> = past.into_iter().collect();
        sent.sort();
        DailyWindow {
            limit,
            span,
            sent: sent.into(),
        }
    }

    /// The limit.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    fn forget_before(&mut self, now: SystemTime) {
        while let Some(&first) = self.sent.front() {
            if first + self.span <= now {
                self.sent.pop_front();
            } else {
                break;
            }
        }
    }

    /// Messages sent within the window ending `now`.
    pub fn used(&mut self, now: SystemTime) -> u64 {
        self.forget_before(now);
        self.sent.len() as u64
    }

    /// How many more may start at `now`, with `in_flight` started and not yet counted.
    pub fn room(&mut self, now: SystemTime, in_flight: u64) -> u64 {
        self.limit
            .saturating_sub(self.used(now).saturating_add(in_flight))
    }

    /// A message was sent at `at`.
    pub fn record(&mut self, at: SystemTime) {
        // Times come in order from one run; a clock set back is inserted in place.
        match self.sent.back() {
            Some(&last) if last > at => {
                let i = self.sent.partition_point(|&t| t <= at);
                self.sent.insert(i, at);
            }
            _ => self.sent.push_back(at),
        }
    }

    /// When one more message may start, given `in_flight` uncounted ones: `now` when there
    /// is room, else the moment enough of the oldest leave the window.
    pub fn reopens(&mut self, now: SystemTime, in_flight: u64) -> SystemTime {
        if self.room(now, in_flight) > 0 {
            return now;
        }
        // used + in_flight >= limit: the (used + in_flight - limit)-th oldest must leave.
        let used = self.sent.len() as u64;
        let must_leave = (used + in_flight + 1).saturating_sub(self.limit);
        match usize::try_from(must_leave)
            .ok()
            .and_then(|n| n.checked_sub(1))
        {
            Some(i) if i < self.sent.len() => self.sent[i] + self.span,
            // More in flight than the window holds: they are counted once they end.
            _ => self.sent.back().map_or(now, |&t| t + self.span),
        }
    }
}

/// What a run does when a limit is reached: `[sending] when_limited` and `quota_retry_mins`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// `wait` (true) or `stop`.
    pub wait: bool,
    /// How long after a relay's daily-quota reply the run asks again.
    pub quota_retry: Duration,
}

impl Policy {
    /// From the config. Test-only: in debug builds `UTSKICK_TEST_QUOTA_RETRY_SECS` shortens
    /// the quota retry (the tests cannot wait half an hour).
    pub fn of(config: &crate::config::Config) -> Policy {
        let mut quota_retry = config.sending.quota_retry;
        if cfg!(debug_assertions)
            && let Some(secs) = std::env::var("UTSKICK_TEST_QUOTA_RETRY_SECS")
                .ok()
                .and_then(|v| v.parse::<f64>().ok())
                .filter(|s| *s > 0.0)
        {
            quota_retry = Duration::from_secs_f64(secs);
        }
        Policy {
            wait: config.sending.when_limited == crate::config::WhenLimited::Wait,
            quota_retry,
        }
    }
}

/// A run's limits: the rolling daily window of `daily_limit` and the wait it is in.
#[derive(Debug)]
pub struct Limits {
    window: Option<DailyWindow>,
    policy: Policy,
    waiting: Option<SystemTime>,
    /// Waits shorter than this pass without a word: once a full window reopens, its slots
    /// free one by one at the pace they were used, which is about the rate's own pace.
    quiet_below: Duration,
    /// The current wait was announced.
    announced: bool,
}

/// A wait the run enters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wait {
    /// Until when.
    pub until: SystemTime,
    /// Long enough to say so, close the connections and take back what was journaled ahead.
    pub long: bool,
}

impl Limits {
    /// For a run of `config`, with the journal's sends of the last 24 hours.
    pub fn new(config: &crate::config::Config, journal: &crate::journal::Journal) -> Limits {
        Limits {
            window: config.sending.daily_limit.map(|limit| {
                DailyWindow::new(
                    limit,
                    window_length(),
                    journal.sent_times_last_24h.iter().copied(),
                )
            }),
            policy: Policy::of(config),
            waiting: None,
            quiet_below: quiet_below(config.sending.rate.per / config.sending.rate.count.max(1)),
            announced: false,
        }
    }

    /// Whether another message may start (be journaled or sent) with `uncounted` started
    /// and not yet sent: there is room in the window and the run is not waiting.
    pub fn may_start(&mut self, uncounted: u64) -> bool {
        self.waiting.is_none()
            && self
                .window
                .as_mut()
                .is_none_or(|w| w.room(SystemTime::now(), uncounted) > 0)
    }

    /// The daily limit is reached with nothing under way.
    pub fn full(&mut self) -> bool {
        self.waiting.is_none()
            && self
                .window
                .as_mut()
                .is_some_and(|w| w.room(SystemTime::now(), 0) == 0)
    }

    /// The daily limit, for messages.
    pub fn daily_limit(&self) -> Option<u64> {
        self.window.as_ref().map(DailyWindow::limit)
    }

    /// A message was sent just now.
    pub fn sent(&mut self) {
        if let Some(w) = self.window.as_mut() {
            w.record(SystemTime::now());
        }
    }

    /// The window is full: with `wait`, the wait the run now enters.
    pub fn wait_for_window(&mut self) -> Option<Wait> {
        if !self.policy.wait {
            return None;
        }
        let now = SystemTime::now();
        let until = self.window.as_mut()?.reopens(now, 0);
        let long = until.duration_since(now).unwrap_or_default() >= self.quiet_below;
        self.waiting = Some(until);
        self.announced = long;
        Some(Wait { until, long })
    }

    /// The relay gave a daily-quota reply: with `wait`, the wait the run now enters
    /// (always long: the relay said nothing of when).
    pub fn wait_for_quota(&mut self) -> Option<Wait> {
        if !self.policy.wait {
            return None;
        }
        let until = SystemTime::now() + self.policy.quota_retry;
        let until = self.waiting.map_or(until, |w| w.max(until));
        self.waiting = Some(until);
        self.announced = true;
        Some(Wait { until, long: true })
    }

    /// Until when the run waits.
    pub fn waiting(&self) -> Option<SystemTime> {
        self.waiting
    }

    /// The wait is over; true when it had been announced.
    pub fn done_waiting(&mut self) -> bool {
        self.waiting = None;
        std::mem::take(&mut self.announced)
    }
}

/// The shortest wait worth announcing, for messages `interval` apart: twice the interval,
/// at least a second.
fn quiet_below(interval: Duration) -> Duration {
    (interval * 2).max(Duration::from_secs(1))
}

/// Sleeps until the wall clock says `at`, in steps of a few seconds, so that time the
/// machine spent suspended counts (a monotonic sleep alone would add it again).
pub async fn sleep_until(at: SystemTime) {
    loop {
        let left = match at.duration_since(SystemTime::now()) {
            Ok(d) if !d.is_zero() => d,
            _ => return,
        };
        tokio::time::sleep(left.min(STEP)).await;
    }
}

unsafe extern "C" {
    /// POSIX; not in the libc crate. Reads TZ so that localtime_r uses the operator's zone.
    fn tzset();
}

/// `at` in the operator's local time zone, to the minute (`2026-12-02 14:05 CET`); to the
/// second when it is within the hour, so that a short wait says something useful.
pub fn local_time(at: SystemTime) -> String {
    let secs = match at.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => d.as_secs(),
        Err(_) => 0,
    };
    let Ok(t) = libc::time_t::try_from(secs) else {
        return humantime::format_rfc3339_seconds(at).to_string();
    };
    // SAFETY: `tm` is plain data, written whole by localtime_r on success; tzset reads the
    // TZ variable and the zone files only.
    let tm = unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        tzset();
        if libc::localtime_r(&t, &mut tm).is_null() {
            return humantime::format_rfc3339_seconds(at).to_string();
        }
        tm
    };
    let zone = if tm.tm_zone.is_null() {
        String::new()
    } else {
        // SAFETY: localtime_r points tm_zone at a NUL-terminated static zone name.
        let name = unsafe { std::ffi::CStr::from_ptr(tm.tm_zone) };
        format!(" {}", name.to_string_lossy())
    };
    let soon = at
        .duration_since(SystemTime::now())
        .is_ok_and(|d| d < Duration::from_secs(3600));
    let seconds = if soon {
        format!(":{:02}", tm.tm_sec)
    } else {
        String::new()
    };
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}{seconds}{zone}",
        tm.tm_year + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + secs)
    }

    #[test]
    fn the_window_rolls() {
        let hour = Duration::from_secs(3600);
        // Limit 3 an hour; sent at 0, 10 and 20 minutes.
        let mut w = DailyWindow::new(3, hour, [at(1200), at(0), at(600)]);
        assert_eq!(w.used(at(1800)), 3);
        assert_eq!(w.room(at(1800), 0), 0);
        // The oldest leaves at 60 minutes, the next at 70.
        assert_eq!(w.reopens(at(1800), 0), at(3600));
        assert_eq!(w.room(at(3600), 0), 1);
        assert_eq!(w.reopens(at(3600), 0), at(3600));
        // With one in flight, the second-oldest must leave too.
        assert_eq!(w.reopens(at(3600), 1), at(4200));
        w.record(at(3601));
        assert_eq!(w.room(at(3700), 0), 0);
        assert_eq!(w.reopens(at(3700), 0), at(4200));
        assert_eq!(w.used(at(7300)), 0);
    }

    #[test]
    fn in_flight_counts_against_the_room() {
        let mut w = DailyWindow::new(5, DAY, [at(0), at(1)]);
        assert_eq!(w.room(at(2), 0), 3);
        assert_eq!(w.room(at(2), 3), 0);
        assert_eq!(w.room(at(2), 9), 0);
        // More in flight than the limit: wait for the last one's window.
        assert_eq!(w.reopens(at(2), 9), at(1) + DAY);
    }

    #[test]
    fn a_clock_set_back_keeps_the_times_in_order() {
        let mut w = DailyWindow::new(10, DAY, [at(100)]);
        w.record(at(200));
        w.record(at(50));
        assert_eq!(
            w.sent.iter().copied().collect::<Vec<_>>(),
            [at(50), at(100), at(200)]
        );
    }

    #[test]
    fn short_waits_pass_quietly() {
        // 30/min: slots freeing 2 s apart are the rate's own pace, not a wait to announce.
        assert_eq!(quiet_below(Duration::from_secs(2)), Duration::from_secs(4));
        assert_eq!(
            quiet_below(Duration::from_millis(1)),
            Duration::from_secs(1)
        );
    }

    #[test]
    fn a_wait_ends_by_the_wall_clock() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let started = std::time::Instant::now();
        rt.block_on(sleep_until(SystemTime::now() + Duration::from_millis(200)));
        assert!(started.elapsed() >= Duration::from_millis(190));
        // A time already past (the machine slept through it) does not wait at all.
        let started = std::time::Instant::now();
        rt.block_on(sleep_until(SystemTime::now() - Duration::from_secs(3600)));
        assert!(started.elapsed() < Duration::from_millis(50));
    }

    #[test]
    fn local_time_reads_like_a_clock() {
        let text = local_time(SystemTime::now() + Duration::from_secs(7200));
        // YYYY-MM-DD HH:MM, then the zone's name.
        let (date, rest) = text.split_once(' ').expect("date and time");
        assert_eq!(date.len(), 10, "{text}");
        assert_eq!(&rest[2..3], ":", "{text}");
        let soon = local_time(SystemTime::now() + Duration::from_secs(60));
        assert_eq!(soon.split(' ').nth(1).map(str::len), Some(8), "{soon}");
    }
}
