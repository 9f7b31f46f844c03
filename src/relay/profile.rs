//! What the big providers let one mailing send, and how long a mailing will take under it.
//!
//! The numbers are the providers' published defaults (README, "Relay profiles", says where
//! each comes from and when it was checked); `[sending] rate` and `daily_limit` override
//! them. The estimate is shown before the question and by `check`, so that the operator
//! learns before the first message that 20,000 customers through one Microsoft 365 mailbox
//! take two days, or that the mailing would use up the company's allowance of outgoing
//! mail for the day.

use std::time::{Duration, SystemTime};

use crate::config::Rate;
use crate::send::window::{self, DailyWindow};

use serde::Deserialize;

/// The kind of relay, for its usual limits (`[smtp] profile`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Profile {
    /// Microsoft 365 / Exchange Online (smtp.office365.com).
    Microsoft365,
    /// Google Workspace or Gmail, a user's mailbox (smtp.gmail.com).
    Google,
    /// Google Workspace's SMTP relay service (smtp-relay.gmail.com).
    GoogleRelay,
    /// Amazon SES (email-smtp.REGION.amazonaws.com).
    Ses,
    /// Azure Communication Services (smtp.azurecomm.net).
    Acs,
    /// A relay with no known limits (a company Postfix).
    None,
}

impl Profile {
    /// The profile a relay host name suggests.
    pub fn guess(host: &str) -> Profile {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        if host == "smtp.office365.com" || host.ends_with(".mail.protection.outlook.com") {
            Profile::Microsoft365
        } else if host == "smtp-relay.gmail.com" {
            Profile::GoogleRelay
        } else if host == "smtp.gmail.com" || host == "smtp.googlemail.com" {
            Profile::Google
        } else if host.starts_with("email-smtp.") && host.ends_with(".amazonaws.com") {
            Profile::Ses
        } else if host == "smtp.azurecomm.net" {
            Profile::Acs
        } else {
            Profile::None
        }
    }

    /// The rate and the daily limit this kind of relay allows one sender by default, filled
    /// in where the config sets none (README's "Relay profiles" says where they come from).
    pub fn limits(self) -> (Option<Rate>, Option<u64>) {
        let per_min = |count| Rate {
            count,
            per: Duration::from_secs(60),
        };
        match self {
            Profile::Microsoft365 => (Some(per_min(30)), Some(10_000)),
            Profile::Google => (None, Some(2_000)),
            Profile::GoogleRelay => (None, Some(10_000)),
            Profile::Ses => (
                Some(Rate {
                    count: 1,
                    per: Duration::from_secs(1),
                }),
                None,
            ),
            Profile::Acs => (
                Some(Rate {
                    count: 100,
                    per: Duration::from_secs(3600),
                }),
                None,
            ),
            Profile::None => (None, None),
        }
    }

    /// The name used in config.toml.
    pub fn name(self) -> &'static str {
        match self {
            Profile::Microsoft365 => "microsoft365",
            Profile::Google => "google",
            Profile::GoogleRelay => "google-relay",
            Profile::Ses => "ses",
            Profile::Acs => "acs",
            Profile::None => "none",
        }
    }
}

/// What a provider allows one sending identity beyond `rate` and `daily_limit` (whose
/// numbers are `config::Profile::limits`, filled into `[sending]` where unset).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allowance {
    /// What the operator knows it as.
    pub provider: &'static str,
    /// Messages (recipients) a day by default, rolling 24 h; None where it is set per
    /// account.
    pub daily_limit: Option<u64>,
    /// What else limits a long mailing, for the warning.
    pub note: &'static str,
}

/// The provider behind a profile; None for `none`.
pub fn allowance(profile: Profile) -> Option<Allowance> {
    let (provider, note) = match profile {
        Profile::Microsoft365 => (
            "Microsoft 365 (Exchange Online)",
            "a mailbox may send to 10,000 recipients a day, and since 2025 the whole tenant to about 500 × licences^0.7 + 9,500 external recipients a day (about 17,000 for 50 licences), shared with everyone's ordinary mail; a mailbox that looks like it is spamming is blocked (550 5.1.8)",
        ),
        Profile::Google => (
            "Google Workspace (smtp.gmail.com)",
            "a Workspace user may send 2,000 messages a day (500 during a trial); Google's SMTP relay (smtp-relay.gmail.com) takes 10,000 recipients a day per user",
        ),
        Profile::GoogleRelay => (
            "Google Workspace SMTP relay (smtp-relay.gmail.com)",
            "the SMTP relay service takes 10,000 recipients a day per user",
        ),
        Profile::Ses => (
            "Amazon SES",
            "the sending quota is set per account and region (a new account is in the sandbox: 200 a day, 1 a second, only to verified addresses); set [sending] rate and daily_limit to the quota on the SES console's Account dashboard",
        ),
        Profile::Acs => (
            "Azure Communication Services Email",
            "by default 30 messages a minute and 100 an hour, raised on request to Azure support before the mailing",
        ),
        Profile::None => return None,
    };
    Some(Allowance {
        provider,
        daily_limit: profile.limits().1,
        note,
    })
}

/// How long a mailing takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Estimate {
    /// Messages to send.
    pub messages: u64,
    /// At this rate.
    pub rate: Rate,
    /// Under this daily limit (rolling 24 h).
    pub daily_limit: Option<u64>,
    /// Sent within the last 24 hours already (from the journal).
    pub used_today: u64,
    /// From now until the last message starts.
    pub duration: Duration,
    /// When the last message starts.
    pub finish: SystemTime,
    /// The times it waits for the window to reopen (0: it fits in what is left of
    /// today's); messages held one after another by the window count as one wait.
    pub waits: u64,
}

/// How long `messages` take at `rate` under `daily` (already holding the journal's sent
/// times), starting at `now`: each message starts one rate interval after the one before,
/// or when the rolling window has room again, whichever is later.
pub fn estimate(
    messages: u64,
    rate: Rate,
    daily: Option<DailyWindow>,
    now: SystemTime,
) -> Estimate {
    let interval = rate.per / rate.count.max(1);
    let mut window = daily;
    let daily_limit = window.as_ref().map(DailyWindow::limit);
    let used_today = window.as_mut().map_or(0, |w| w.used(now));
    let mut t = now;
    let mut last = now;
    let mut waits = 0;
    let mut held_before = false;
    for i in 0..messages {
        if i > 0 {
            t += interval;
        }
        if let Some(w) = window.as_mut() {
            let open = w.reopens(t, 0);
            let held = open > t;
            if held {
                waits += u64::from(!held_before);
                t = open;
            }
            held_before = held;
            w.record(t);
        }
        last = t;
    }
    Estimate {
        messages,
        rate,
        daily_limit,
        used_today,
        duration: last.duration_since(now).unwrap_or_default(),
        finish: last,
        waits,
    }
}

/// `2 h 47 min`, `1 day 11 h`, `40 s`.
pub fn human_duration(d: Duration) -> String {
    let s = d.as_secs();
    let (days, hours, mins) = (s / 86_400, s % 86_400 / 3600, s % 3600 / 60);
    match (days, hours, mins) {
        (0, 0, 0) => format!("{s} s"),
        (0, 0, m) => format!("{m} min"),
        (0, h, m) => format!("{h} h {m} min"),
        (1, h, _) => format!("1 day {h} h"),
        (d, h, _) => format!("{d} days {h} h"),
    }
}

/// Thousands with a comma: 10,000.
fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

impl Estimate {
    /// The line shown in the confirmation and by `check`.
    pub fn line(&self) -> String {
        let limit = match self.daily_limit {
            Some(l) => format!(
                "daily limit {} (rolling 24 h, {} used)",
                count(l),
                count(self.used_today)
            ),
            None => "no daily limit".to_string(),
        };
        let what = format!(
            "{} messages at {}, {limit}",
            count(self.messages),
            self.rate
        );
        let windows = if self.waits > 0 {
            format!(
                ", waiting {} time(s) for the daily window to reopen",
                self.waits
            )
        } else {
            String::new()
        };
        format!(
            "{what}: takes about {}{windows}; the last message goes out about {} (local time)",
            human_duration(self.duration),
            window::local_time(self.finish)
        )
    }

    /// A warning when the mailing needs more than a day's allowance of the profile.
    pub fn warning(&self, allowance: Option<&Allowance>) -> Option<String> {
        let exceeds = self.waits > 0
            || allowance
                .and_then(|a| a.daily_limit)
                .is_some_and(|l| self.messages > l);
        if !exceeds {
            return None;
        }
        let mut text = format!(
            "this mailing is more than the relay allows in a day ({} messages",
            count(self.messages)
        );
        if let Some(l) = self.daily_limit.or(allowance.and_then(|a| a.daily_limit)) {
            text.push_str(&format!(", {} a day", count(l)));
        }
        text.push_str(&format!("): it takes {}", human_duration(self.duration)));
        if let Some(a) = allowance {
            text.push_str(&format!("; {}: {}", a.provider, a.note));
        }
        text.push_str(". For a mailing this size use a bulk relay arranged ahead (Amazon SES with its quota raised, Azure Communication Services with its limits raised, or the company's own Postfix), or accept the days it takes");
        Some(text)
    }
}

/// The estimate of a run of `messages` under `config`, with the journal's sends of the
/// last 24 hours, starting now: the line to show and the warning, if any.
pub fn for_run(
    config: &crate::config::Config,
    journal: &crate::journal::Journal,
    messages: u64,
) -> (String, Option<String>) {
    let now = SystemTime::now();
    let window = config.sending.daily_limit.map(|limit| {
        DailyWindow::new(
            limit,
            window::DAY,
            journal.sent_times_last_24h.iter().copied(),
        )
    });
    let e = estimate(messages, config.sending.rate, window, now);
    (e.line(), e.warning(allowance(config.smtp.profile).as_ref()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn now() -> SystemTime {
        humantime::parse_rfc3339("2026-12-01T08:00:00Z").expect("time")
    }

    /// A config for `host` with the profile guessed from it, as the operator would write it.
    fn config(host: &str) -> Config {
        let text = format!(
            "campaign = \"c\"\n[sender]\nfrom = \"A <a@example.se>\"\n[smtp]\nhost = \"{host}\"\nport = 587\nauth = \"none\"\n[recipients]\npath = \"r.csv\"\n"
        );
        Config::parse(&text, std::path::Path::new("/x/config.toml")).expect("config")
    }

    /// The estimate of `messages` through `host`'s profile, `used` sent in the window.
    fn run(host: &str, messages: u64, used: &[SystemTime]) -> (Estimate, Option<Allowance>) {
        let c = config(host);
        let window = c
            .sending
            .daily_limit
            .map(|l| DailyWindow::new(l, window::DAY, used.iter().copied()));
        (
            estimate(messages, c.sending.rate, window, now()),
            allowance(c.smtp.profile),
        )
    }

    const M365: &str = "smtp.office365.com";

    #[test]
    fn microsoft365_ten_thousand_fit_a_day_twenty_thousand_take_two() {
        // 10,000 at 30/min: 9,999 intervals of 2 s.
        let (e, a) = run(M365, 10_000, &[]);
        assert_eq!(e.duration, Duration::from_secs(9_999 * 2));
        assert_eq!(e.waits, 0);
        assert_eq!(human_duration(e.duration), "5 h 33 min");
        assert!(e.warning(a.as_ref()).is_none());
        // 20,000: the 10,001st waits until 24 h after the first, then 9,999 more at 2 s.
        let (e, a) = run(M365, 20_000, &[]);
        assert_eq!(e.waits, 1);
        assert_eq!(e.duration, window::DAY + Duration::from_secs(9_999 * 2));
        assert_eq!(human_duration(e.duration), "1 day 5 h");
        let w = e.warning(a.as_ref()).expect("warning");
        assert!(
            w.contains("10,000 a day") && w.contains("Amazon SES"),
            "{w}"
        );
        assert!(w.contains("500 × licences^0.7 + 9,500"), "{w}");
    }

    #[test]
    fn microsoft365_with_sends_earlier_today() {
        // 9,000 sent in the last 24 h, the oldest 20 hours ago: 1,000 fit now, the rest
        // wait until those leave the window.
        let first = now() - Duration::from_secs(20 * 3600);
        let used: Vec<SystemTime> = (0..9_000u64)
            .map(|i| first + Duration::from_secs(i * 2))
            .collect();
        let (e, _) = run(M365, 2_000, &used);
        assert_eq!(e.used_today, 9_000);
        assert_eq!(e.waits, 1);
        // Message 1,001 starts when the oldest leaves (4 h from now); each later one is
        // held both by the rate and by the window, which frees one every 2 s.
        assert_eq!(
            e.duration,
            Duration::from_secs(4 * 3600) + Duration::from_secs(999 * 2)
        );
    }

    #[test]
    fn messages_held_one_after_another_are_one_wait() {
        // 2,000 sent in the last 24 h at 30/min, the oldest 23 h ago; the config now says
        // 1000/s: after the first wait the window, not the rate, paces every message.
        let first = now() - Duration::from_secs(23 * 3600);
        let used: Vec<SystemTime> = (0..2_000u64)
            .map(|i| first + Duration::from_secs(i * 2))
            .collect();
        let c = config("smtp.gmail.com");
        let window = DailyWindow::new(2_000, window::DAY, used);
        let fast = Rate {
            count: 1000,
            per: Duration::from_secs(1),
        };
        let e = estimate(100, fast, Some(window), now());
        assert_eq!(e.waits, 1);
        // The 100th starts when the 100th oldest leaves: 1 h + 99 × 2 s from now.
        assert_eq!(
            e.duration,
            Duration::from_secs(3600) + Duration::from_secs(99 * 2)
        );
        assert_eq!(c.sending.daily_limit, Some(2_000));
    }

    #[test]
    fn google_two_thousand_a_day_its_relay_ten_thousand() {
        // No published rate: the default 30/min, 2 s apart.
        let (e, a) = run("smtp.gmail.com", 5_000, &[]);
        // Two waits of a day; 999 intervals after the last opening.
        assert_eq!(e.waits, 2);
        assert_eq!(e.duration, 2 * window::DAY + Duration::from_secs(999 * 2));
        assert!(e.warning(a.as_ref()).is_some());
        let (relay, a) = run("smtp-relay.gmail.com", 5_000, &[]);
        assert_eq!(relay.waits, 0);
        assert_eq!(relay.duration, Duration::from_secs(4_999 * 2));
        assert!(relay.warning(a.as_ref()).is_none());
    }

    #[test]
    fn ses_has_no_daily_default_and_acs_goes_by_the_hour() {
        let (e, a) = run("email-smtp.eu-north-1.amazonaws.com", 3_600, &[]);
        assert_eq!(e.daily_limit, None);
        assert_eq!(e.duration, Duration::from_secs(3_599));
        assert!(e.warning(a.as_ref()).is_none());
        let (acs, _) = run("smtp.azurecomm.net", 1_000, &[]);
        assert_eq!(acs.duration, Duration::from_secs(999 * 36));
        assert_eq!(human_duration(acs.duration), "9 h 59 min");
        // A company Postfix: no profile, no warning, the default rate.
        let (own, a) = run("smtp.example.se", 100, &[]);
        assert!(a.is_none() && own.daily_limit.is_none());
        assert_eq!(own.duration, Duration::from_secs(99 * 2));
    }

    #[test]
    fn the_line_says_messages_rate_limit_duration_and_end() {
        let line = run(M365, 20_000, &[]).0.line();
        assert!(
            line.starts_with("20,000 messages at 30/min, daily limit 10,000 (rolling 24 h, 0 used): takes about 1 day 5 h, waiting 1 time(s)"),
            "{line}"
        );
        assert!(line.ends_with("(local time)"), "{line}");
    }

    #[test]
    fn every_profile_but_none_names_its_provider() {
        use Profile::*;
        for p in [Microsoft365, Google, GoogleRelay, Ses, Acs] {
            let a = allowance(p).expect("provider");
            assert_eq!(a.daily_limit, p.limits().1);
            assert!(!a.note.is_empty());
        }
        assert!(allowance(Profile::None).is_none());
    }

    #[test]
    fn numbers_read_well() {
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(10_000), "10,000");
        assert_eq!(count(1_234_567), "1,234,567");
        assert_eq!(human_duration(Duration::from_secs(40)), "40 s");
        assert_eq!(
            human_duration(Duration::from_secs(3 * 86_400 + 7200)),
            "3 days 2 h"
        );
    }
}
