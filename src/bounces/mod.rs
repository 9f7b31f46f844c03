//! `bounces`: book the delivery reports that came back after the relay accepted a notice.
//!
//! A notice the relay accepted is `sent` in the journal, yet the recipient's own server may
//! still refuse it and mail a report back. Until that report is booked, the customer counts
//! as told although they never were, and they would get no letter by post. This command
//! reads the reports from files (mbox, Maildir, `.eml` folder) or the `[bounces]` IMAP
//! mailbox, matches each to the recipient it is about (by our deterministic Message-ID,
//! else by address), and appends `bounced` events: permanent ones make the state `bounced`,
//! delays change nothing but are kept. The same report read twice is booked once, so the
//! operator can run it as often as they like; reports about test deliveries, about an
//! address corrected since, or about a recipient not `sent` are counted but not booked.
//! With `--move-to`, the IMAP reports it matched move to another folder once the journal
//! holds them; anything else stays for a person to read.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;

use anyhow::anyhow;

use crate::cli::BouncesArgs;
use crate::config::Config;
use crate::exit_codes::ExitCode;
use crate::journal::{self, Class, Event, Journal, State, Writer};
use crate::output::Output;
use crate::{Fail, ResultExt, secrets};

pub mod imap;
pub mod mailbox;
pub mod report;

use report::{BounceRecipient, Report, ReportKind};

/// What the run found, for the summary.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Tally {
    /// Messages read.
    pub messages: u64,
    /// Of them, delivery status notifications.
    pub dsns: u64,
    /// Of them, auto-replies (counted, never booked).
    pub auto_replies: u64,
    /// Of them, anything else.
    pub other: u64,
    /// Permanent bounces booked now.
    pub booked: u64,
    /// Delays booked now.
    pub delays: u64,
    /// Already in the journal (this report, this key).
    pub already: u64,
    /// No recipient of this mailing matched.
    pub unmatched: u64,
    /// About a `--test-to` delivery.
    pub test: u64,
    /// About an address the recipient no longer has in the journal.
    pub earlier_address: u64,
    /// Matched, but the recipient's state is not `sent` or `unknown`: by state.
    pub not_booked: BTreeMap<String, u64>,
    /// Reports that name no failed or delayed recipient.
    pub without_recipient: u64,
    /// Every failed or delayed recipient read, by status.
    pub statuses: BTreeMap<String, u64>,
}

impl Tally {
    /// The summary the operator reads on stdout.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "bounces: {} messages read, {} DSNs, {} matched ({} booked, {} {}), {} already booked, {} unmatched, {} auto-replies, {} other mail",
            self.messages,
            self.dsns,
            self.booked + self.delays,
            self.booked,
            self.delays,
            if self.delays == 1 { "delay" } else { "delays" },
            self.already,
            self.unmatched,
            self.auto_replies,
            self.other
        );
        let mut skipped = Vec::new();
        if self.test > 0 {
            skipped.push(format!("{} about test deliveries", self.test));
        }
        if self.earlier_address > 0 {
            skipped.push(format!("{} about an earlier address", self.earlier_address));
        }
        for (state, n) in &self.not_booked {
            skipped.push(format!("{n} for recipients {state}"));
        }
        if self.without_recipient > 0 {
            skipped.push(format!(
                "{} reports naming no failed recipient",
                self.without_recipient
            ));
        }
        if !skipped.is_empty() {
            let _ = write!(s, "\nnot booked: {}", skipped.join(", "));
        }
        if !self.statuses.is_empty() {
            let statuses: Vec<String> = self
                .statuses
                .iter()
                .map(|(status, n)| format!("{status}: {n}"))
                .collect();
            let _ = write!(s, "\nby status: {}", statuses.join(", "));
        }
        s
    }
}

/// Runs `bounces`.
pub fn run(config: Config, args: &BouncesArgs, out: &Output) -> Result<ExitCode, Fail> {
    let imap_settings = if args.imap {
        let Some(section) = &config.bounces else {
            return Err(Fail::Input(anyhow!(
                "--imap reads the mailbox of the [bounces] section, and {} has none: add [bounces] with host, username, password_env (or password_command) and folder",
                config.path.display()
            )));
        };
        let password = secrets::read(&section.secret, "IMAP password").input()?;
        Some(imap::Settings::new(section, password, config.smtp.timeout)?)
    } else {
        None
    };

    // Local sources are opened and listed first: one that cannot be is bad input, before
    // anything is locked. Their messages are read one at a time below.
    let mut sources = Vec::new();
    for source in &args.sources {
        sources.push(mailbox::open(source).input()?);
    }

    let journal_path = config.journal.path.clone();
    let (writer, torn) = Writer::open(&journal_path)?;
    if let Some(w) = torn {
        out.warn(&w);
    }
    let journal = Journal::read(&journal_path)?;
    let others: Vec<&str> = journal
        .campaigns()
        .into_iter()
        .filter(|c| *c != config.campaign)
        .collect();
    if !others.is_empty() {
        let _ = writer.close();
        return Err(Fail::Input(anyhow!(
            "journal {} belongs to campaign {:?}, not {:?}",
            journal_path.display(),
            others.join(", "),
            config.campaign
        )));
    }

    // The IMAP folder is opened (and logged in to) before anything is booked; its
    // messages are fetched batch by batch after the local sources, each booked as it comes.
    let mut imap = None;
    if let Some(settings) = imap_settings {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Fail::Fatal(anyhow!("cannot start the async runtime: {e}")))?;
        let writable = args.move_to.is_some();
        match runtime.block_on(imap::Mailbox::open(settings, writable)) {
            Ok(session) => imap = Some((runtime, session, writable)),
            Err(e) => {
                let _ = writer.close();
                return Err(e);
            }
        }
    }

    let mut booker = Booker::new(&config, &journal);
    let mut tickets = Vec::new();
    let mut processed_uids = Vec::new();
    let mut unreadable = Vec::new();
    let mut book = |label: &str, raw: &[u8], uid: Option<u32>| {
        let report = report::parse(raw);
        let (events, processed) = booker.read(&report, label, out);
        for event in events {
            tickets.push(writer.append(&event));
        }
        if processed && let Some(uid) = uid {
            processed_uids.push(uid);
        }
    };
    for source in sources {
        let path = source.path().display().to_string();
        let mut count = 0u64;
        for message in source.messages() {
            match message {
                Ok(m) => {
                    count += 1;
                    book(&m.label, &m.raw, None);
                }
                // One unreadable message does not stop the others; the run ends with
                // every such error listed.
                Err(e) => unreadable.push(format!("{e:#}")),
            }
        }
        out.detail(&format!("{path}: {count} messages"));
    }
    let mut fetched = Ok(());
    if let Some((runtime, session, writable)) = imap.as_mut() {
        let folder = session.settings().folder().to_string();
        let server = session.settings().server();
        let each = |label: String, f: imap::Fetched| book(&label, &f.raw, Some(f.uid));
        match runtime.block_on(session.fetch_each(each)) {
            Ok(n) => out.info(&format!(
                "IMAP {server}: {n} messages in {folder:?} ({})",
                if *writable { "read-write" } else { "read-only" }
            )),
            Err(e) => fetched = Err(e),
        }
    }
    // Everything booked is durable before any report moves.
    let mut write_error = None;
    for ticket in tickets {
        match ticket.blocking_recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                write_error.get_or_insert(e);
            }
            Err(_) => {
                write_error.get_or_insert_with(|| "the journal writer stopped".into());
            }
        }
    }
    let closed = writer.close();
    if let Some(e) = write_error {
        return Err(Fail::Fatal(anyhow!(
            "cannot write journal {}: {e}; reports not booked are booked by the next run",
            journal_path.display()
        )));
    }
    closed.fatal()?;
    fetched.map_err(|e| match e {
        Fail::Fatal(e) => Fail::Fatal(e.context("the reports read before this are booked")),
        other => other,
    })?;

    let mut move_result = Ok(());
    if let Some((runtime, mut session, _)) = imap {
        if let Some(folder) = &args.move_to {
            move_result = runtime.block_on(session.move_to(&processed_uids, folder));
            if move_result.is_ok() {
                out.info(&format!(
                    "moved {} processed reports to {folder:?}",
                    processed_uids.len()
                ));
            }
        }
        runtime.block_on(session.logout());
    }

    out.summary(&booker.tally.summary());
    if !unreadable.is_empty() {
        return Err(Fail::Input(anyhow!(
            "{} messages could not be read (the others are booked):\n{}",
            unreadable.len(),
            unreadable.join("\n")
        )));
    }
    move_result.map_err(|e| match e {
        Fail::Fatal(e) => Fail::Fatal(e.context("the reports are booked, but not moved")),
        other => other,
    })?;
    Ok(ExitCode::Success)
}

/// Which message of ours a report's original Message-ID names.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Origin {
    /// A recipient's notice, by key.
    Key(String),
    /// A `--test-to` delivery of this campaign.
    Test,
    /// An utskick Message-ID this journal never used (another campaign or journal).
    NotInJournal,
    /// No id, or one that is not ours (a relay may rewrite Message-IDs): match by address.
    Unknown,
}

/// Matches reports to recipients and decides what to book.
struct Booker<'a> {
    campaign_prefix: String,
    journal: &'a Journal,
    /// Lower-cased Message-ID → key.
    by_id: HashMap<String, String>,
    /// Lower-cased address → keys of this campaign, sorted.
    by_email: HashMap<String, Vec<String>>,
    /// `source\0key` booked now or before.
    booked: HashSet<String>,
    /// States changed by this run.
    now_bounced: HashSet<String>,
    tally: Tally,
}

impl<'a> Booker<'a> {
    fn new(config: &Config, journal: &'a Journal) -> Booker<'a> {
        let campaign_prefix = format!("<{}.", config.campaign.to_lowercase());
        let mut by_id = HashMap::new();
        let mut by_email: HashMap<String, Vec<String>> = HashMap::new();
        for (key, r) in &journal.recipients {
            let id = r.message_id.to_lowercase();
            if !id.is_empty() {
                by_id.insert(id.clone(), key.clone());
            }
            if (id.is_empty() || id.starts_with(&campaign_prefix)) && !r.email.is_empty() {
                by_email
                    .entry(r.email.to_lowercase())
                    .or_default()
                    .push(key.clone());
            }
        }
        for keys in by_email.values_mut() {
            keys.sort();
        }
        Booker {
            campaign_prefix,
            journal,
            by_id,
            by_email,
            booked: journal.bounces_booked.clone(),
            now_bounced: HashSet::new(),
            tally: Tally::default(),
        }
    }

    fn origin(&self, id: Option<&str>) -> Origin {
        let Some(id) = id else {
            return Origin::Unknown;
        };
        let id = id.to_lowercase();
        if let Some(key) = self.by_id.get(&id) {
            return Origin::Key(key.clone());
        }
        let local = id
            .strip_prefix('<')
            .and_then(|i| i.split_once('@'))
            .map_or("", |(local, _)| local);
        let ours = format!("{}test.", self.campaign_prefix);
        if format!("<{local}").starts_with(&ours) {
            return Origin::Test;
        }
        if looks_like_ours(local) {
            return Origin::NotInJournal;
        }
        Origin::Unknown
    }

    fn state(&self, key: &str) -> State {
        if self.now_bounced.contains(key) {
            State::Bounced
        } else {
            self.journal.state(key)
        }
    }

    /// Reads one report: the events to append, and whether it was about this mailing
    /// (then `--move-to` moves it).
    fn read(&mut self, report: &Report, label: &str, out: &Output) -> (Vec<Event>, bool) {
        self.tally.messages += 1;
        match report.kind {
            ReportKind::AutoReply => {
                self.tally.auto_replies += 1;
                out.detail(&format!("{label}: auto-reply, not booked"));
                return (Vec::new(), false);
            }
            ReportKind::Other => {
                self.tally.other += 1;
                out.detail(&format!("{label}: not a delivery report"));
                return (Vec::new(), false);
            }
            ReportKind::Dsn => self.tally.dsns += 1,
        }
        if report.recipients.is_empty() {
            self.tally.without_recipient += 1;
            out.info(&format!(
                "{label}: a delivery report that names no failed recipient, not booked"
            ));
            return (Vec::new(), false);
        }
        let origin = self.origin(report.original_message_id.as_deref());
        let mut events = Vec::new();
        let mut processed = false;
        for rcpt in &report.recipients {
            *self.tally.statuses.entry(rcpt.status.clone()).or_default() += 1;
            let what = format!("{label}: {} {}", rcpt.email, rcpt.status);
            let keys: Vec<String> = match &origin {
                Origin::Test => {
                    self.tally.test += 1;
                    processed = true;
                    out.info(&format!("{what}: about a test delivery, not booked"));
                    continue;
                }
                Origin::NotInJournal => {
                    self.tally.unmatched += 1;
                    out.info(&format!(
                        "{what}: unmatched (about {}, a message this journal never sent)",
                        report.original_message_id.as_deref().unwrap_or("?")
                    ));
                    continue;
                }
                Origin::Key(key) => {
                    let current = self
                        .journal
                        .recipients
                        .get(key)
                        .map(|r| r.email.to_lowercase())
                        .unwrap_or_default();
                    if current != rcpt.email {
                        self.tally.earlier_address += 1;
                        processed = true;
                        out.info(&format!(
                            "{what}: about key {key}'s earlier address (now {current}), not booked"
                        ));
                        continue;
                    }
                    vec![key.clone()]
                }
                Origin::Unknown => match self.by_email.get(&rcpt.email) {
                    Some(keys) => keys.clone(),
                    None => {
                        self.tally.unmatched += 1;
                        out.info(&format!(
                            "{what}: unmatched (no recipient has this address)"
                        ));
                        continue;
                    }
                },
            };
            processed = true;
            for key in keys {
                if let Some(event) = self.book(report, rcpt, &key, &what, out) {
                    events.push(event);
                }
            }
        }
        (events, processed)
    }

    /// The event for one matched recipient, if it is to be booked.
    fn book(
        &mut self,
        report: &Report,
        rcpt: &BounceRecipient,
        key: &str,
        what: &str,
        out: &Output,
    ) -> Option<Event> {
        let seen = format!("{}\u{0}{key}", report.id);
        if self.booked.contains(&seen) {
            self.tally.already += 1;
            out.detail(&format!("{what}: key {key}, already booked"));
            return None;
        }
        let state = self.state(key);
        if !matches!(state, State::Sent | State::Unknown) {
            *self
                .tally
                .not_booked
                .entry(state.name().to_string())
                .or_default() += 1;
            out.info(&format!(
                "{what}: key {key} is {}, not booked",
                state.name()
            ));
            return None;
        }
        let message_id = self
            .journal
            .recipients
            .get(key)
            .map(|r| r.message_id.clone())
            .unwrap_or_default();
        let class = rcpt.class;
        match class {
            Class::Permanent => {
                self.tally.booked += 1;
                self.now_bounced.insert(key.to_string());
                out.detail(&format!("{what}: key {key} bounced"));
            }
            Class::Transient => {
                self.tally.delays += 1;
                out.detail(&format!("{what}: key {key} delayed (no state change)"));
            }
        }
        self.booked.insert(seen);
        Some(Event::Bounced {
            ts: journal::now(),
            key: key.to_string(),
            email: rcpt.email.clone(),
            message_id,
            status: rcpt.status.clone(),
            diagnostic: rcpt.diagnostic.clone(),
            source: report.id.clone(),
            class,
        })
    }
}

/// `anything.<32 hex digits>`: the local part of an utskick Message-ID.
fn looks_like_ours(local: &str) -> bool {
    local.rsplit_once('.').is_some_and(|(campaign, hash)| {
        !campaign.is_empty() && hash.len() == 32 && hash.bytes().all(|b| b.is_ascii_hexdigit())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::Standing as Recipient;

    fn recipient(email: &str, id: &str, state: State) -> Recipient {
        Recipient {
            state,
            email: email.into(),
            message_id: id.into(),
            code: None,
            reason: None,
            attempts: 1,
            before_attempt: (State::Pending, None, None),
        }
    }

    fn booker_for(journal: &Journal) -> Booker<'_> {
        let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config.toml"))
            .expect("example config");
        let config = Config::parse(
            &text,
            std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/config.toml")),
        )
        .expect("example config parses");
        Booker::new(&config, journal)
    }

    fn report(id: &str, original: Option<&str>, rcpts: &[(&str, &str)]) -> Report {
        Report {
            kind: ReportKind::Dsn,
            id: id.into(),
            original_message_id: original.map(str::to_string),
            recipients: rcpts
                .iter()
                .map(|(email, status)| BounceRecipient {
                    email: email.to_string(),
                    status: status.to_string(),
                    action: "failed".into(),
                    diagnostic: "550 no".into(),
                    class: if status.starts_with('4') {
                        Class::Transient
                    } else {
                        Class::Permanent
                    },
                })
                .collect(),
            subject: String::new(),
        }
    }

    const A: &str = "<nektab-2023-10.0123456789abcdef0123456789abcdef@example.se>";
    const B: &str = "<nektab-2023-10.1123456789abcdef0123456789abcdef@example.se>";
    const H1: &str = "<nektab-2023-10.2123456789abcdef0123456789abcdef@example.se>";
    const H2: &str = "<nektab-2023-10.3123456789abcdef0123456789abcdef@example.se>";
    const F: &str = "<nektab-2023-10.4123456789abcdef0123456789abcdef@example.se>";
    const D: &str = "<nektab-2023-10.5123456789abcdef0123456789abcdef@example.se>";

    fn journal() -> Journal {
        let mut j = Journal::default();
        j.recipients
            .insert("a".into(), recipient("a@example.se", A, State::Sent));
        j.recipients
            .insert("b".into(), recipient("b.new@example.se", B, State::Sent));
        j.recipients
            .insert("h1".into(), recipient("hem@example.se", H1, State::Sent));
        j.recipients.insert(
            "h2".into(),
            recipient("hem@example.se", H2, State::FailedPermanent),
        );
        j.recipients
            .insert("d".into(), recipient("d@example.se", D, State::Unknown));
        j.recipients.insert(
            "f".into(),
            recipient("f@example.se", F, State::FailedPermanent),
        );
        j
    }

    fn quiet() -> Output {
        Output {
            quiet: true,
            verbose: 0,
            color: false,
            terminal: false,
        }
    }

    #[test]
    fn matches_by_id_then_address_and_books_once() {
        let j = journal();
        let mut b = booker_for(&j);
        let out = quiet();
        let (events, processed) = b.read(
            &report("<r1@x>", Some(A), &[("a@example.se", "5.1.1")]),
            "1",
            &out,
        );
        assert!(processed);
        assert_eq!(events.len(), 1);
        // The same report again: booked once.
        let (events, _) = b.read(
            &report("<r1@x>", Some(A), &[("a@example.se", "5.1.1")]),
            "1",
            &out,
        );
        assert!(events.is_empty());
        assert_eq!(b.tally.already, 1);
        // Another report for a key bounced in this run: its state is bounced now.
        let (events, _) = b.read(
            &report("<r2@x>", Some(A), &[("a@example.se", "5.1.1")]),
            "2",
            &out,
        );
        assert!(events.is_empty());
        assert_eq!(b.tally.not_booked.get("bounced"), Some(&1));
        // An address corrected since: not booked.
        let (events, processed) = b.read(
            &report("<r3@x>", Some(B), &[("b@example.se", "5.1.1")]),
            "3",
            &out,
        );
        assert!(events.is_empty() && processed);
        assert_eq!(b.tally.earlier_address, 1);
        // No id: by address, a household books each key that is sent.
        let (events, _) = b.read(
            &report("<r4@x>", None, &[("hem@example.se", "5.1.1")]),
            "4",
            &out,
        );
        let keys: Vec<_> = events.iter().filter_map(journal::event_key).collect();
        assert_eq!(keys, ["h1"]);
        assert_eq!(b.tally.not_booked.get("failed-permanent"), Some(&1));
        // A test delivery's id, another campaign's id, an unknown id of ours.
        let (events, processed) = b.read(
            &report(
                "<r5@x>",
                Some("<nektab-2023-10.test.0123456789abcdef0123456789abcdef@example.se>"),
                &[("me@example.se", "5.1.1")],
            ),
            "5",
            &out,
        );
        assert!(events.is_empty() && processed);
        assert_eq!(b.tally.test, 1);
        let (events, processed) = b.read(
            &report(
                "<r6@x>",
                Some("<other-2022.0123456789abcdef0123456789abcdef@example.se>"),
                &[("a@example.se", "5.1.1")],
            ),
            "6",
            &out,
        );
        assert!(events.is_empty() && !processed);
        assert_eq!(b.tally.unmatched, 1);
        // A foreign id (a relay rewrote it): by address.
        let (events, _) = b.read(
            &report(
                "<r7@x>",
                Some("<0100018b@amazonses.com>"),
                &[("f@example.se", "5.1.1")],
            ),
            "7",
            &out,
        );
        assert!(events.is_empty());
        assert_eq!(b.tally.not_booked.get("failed-permanent"), Some(&2));
        // A delay is booked as transient and changes no state.
        let (events, _) = b.read(
            &report("<r8@x>", None, &[("d@example.se", "4.4.1")]),
            "8",
            &out,
        );
        assert_eq!(events.len(), 1);
        assert!(matches!(
            &events[0],
            Event::Bounced { class: Class::Transient, key, .. } if key == "d"
        ));
        assert_eq!(b.tally.delays, 1);
        assert_eq!(b.state("d"), State::Unknown);
        assert_eq!(b.state("h1"), State::Bounced);
        let s = b.tally.summary();
        assert!(s.starts_with("bounces: 9 messages read, 9 DSNs, 3 matched (2 booked, 1 delay), 1 already booked, 1 unmatched, 0 auto-replies, 0 other mail"), "{s}");
        assert!(s.contains("by status: 4.4.1: 1, 5.1.1: 8"), "{s}");
    }

    #[test]
    fn already_booked_in_journal_is_not_booked_again() {
        let mut j = journal();
        j.bounces_booked.insert("<r1@x>\u{0}a".into());
        let mut b = booker_for(&j);
        let (events, processed) = b.read(
            &report(
                "<r1@x>",
                Some(&A.to_uppercase()),
                &[("a@example.se", "5.1.1")],
            ),
            "1",
            &quiet(),
        );
        assert!(events.is_empty() && processed);
        assert_eq!(b.tally.already, 1);
    }

    #[test]
    fn our_id_shape() {
        assert!(looks_like_ours("c.0123456789abcdef0123456789abcdef"));
        assert!(!looks_like_ours("0123456789abcdef0123456789abcdef"));
        assert!(!looks_like_ours("cafe.1234"));
    }
}
