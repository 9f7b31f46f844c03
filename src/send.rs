//! `send` and `retry`: preflight, confirmation, then delivery under the rate limit with
//! every attempt and outcome in the journal.
//!
//! `retry` is a choice of recipients, not a second sender: both go through `deliver`.
//! One dispatcher awaits the rate limiter (governor's waiters are not served in order) and
//! hands each message to an idle connection; at most `concurrency` connections exist. The
//! dispatcher journals the attempts of the next few messages (those the rate lets start
//! within 10 ms, at most twice `concurrency`) before a connection is free, so that their
//! fsync overlaps earlier deliveries; a worker sends the message only once its attempt is
//! durable, and journals the outcome durably before the dispatcher counts it. An attempt
//! whose message never went out (the run stopped, no connection) is `withdrawn`. Replies
//! about the relay rather than the recipient pause the whole run, or stop it cleanly; one
//! recipient's failure never stops the batch.

use std::collections::{BinaryHeap, VecDeque};
use std::io::{BufRead, IsTerminal, Write};
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{Result, anyhow};
use governor::{Quota, RateLimiter};
use lettre::Address;
use tokio::sync::mpsc;

use crate::cli::{RetryArgs, SendArgs};
use crate::config::{AuthMethod, Config};
use crate::exit_codes::ExitCode;
use crate::journal::{self, Class, Event, Journal, State, Unsent, Writer};
use crate::mailing::{Mailing, Priority};
use crate::message;
use crate::output::Output;
use crate::progress::Progress;
use crate::recipients::file_stem;
use crate::relay::{self, ConnectError, Connection, Delivery, Settings, Verdict};
use crate::{Fail, ResultExt, private, secrets};

/// Relay refusals in a row (with no delivery in between) before the run gives up.
const MAX_RELAY_PUSHBACKS: u32 = 8;
/// The longest pause the relay can impose on the run.
const MAX_PAUSE: Duration = Duration::from_secs(300);

/// Which recipients a run takes on.
#[derive(Debug, Clone)]
pub enum Selection {
    /// `send`: pending, unknown, failed-transient.
    Send,
    /// `retry`: failed-transient and unknown (with `permanent`: also failed-permanent and bounced).
    Retry {
        /// `--permanent`.
        permanent: bool,
    },
    /// `send --test-to`: the first N recipients' messages, to one address.
    Test {
        /// The test address.
        to: String,
    },
}

impl Selection {
    /// Whether the run takes on a recipient in `state`; `corrected`: the CSV now holds
    /// another address than the one the journal last used for it. `retry --permanent` is
    /// for corrected addresses: resending to an address that bounced helps no one.
    fn takes(&self, state: State, corrected: bool) -> bool {
        match self {
            Selection::Send => matches!(
                state,
                State::Pending | State::Unknown | State::FailedTransient
            ),
            Selection::Retry { permanent } => {
                matches!(state, State::FailedTransient | State::Unknown)
                    || (*permanent
                        && corrected
                        && matches!(state, State::FailedPermanent | State::Bounced))
            }
            Selection::Test { .. } => true,
        }
    }

    fn command(&self) -> &'static str {
        match self {
            Selection::Retry { .. } => "retry",
            _ => "send",
        }
    }

    fn is_test(&self) -> bool {
        matches!(self, Selection::Test { .. })
    }
}

/// A run's choices.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Who.
    pub selection: Selection,
    /// At most this many.
    pub limit: Option<u64>,
    /// No question asked.
    pub yes: bool,
    /// Leave invalid rows out.
    pub skip_invalid: bool,
    /// Allow templates that differ from earlier runs'.
    pub allow_changed_templates: bool,
}

/// Runs `send`.
pub fn run_send(config: Config, args: &SendArgs, out: &Output) -> Result<ExitCode, Fail> {
    let selection = match &args.test_to {
        Some(to) => {
            let to = crate::recipients::normalize_email(to)
                .map_err(|e| Fail::Input(anyhow!("--test-to: {e}")))?;
            Selection::Test { to }
        }
        None => Selection::Send,
    };
    let limit = match selection {
        Selection::Test { .. } => Some(args.limit.unwrap_or(1)),
        _ => args.limit,
    };
    deliver(
        config,
        Plan {
            selection,
            limit,
            yes: args.yes,
            skip_invalid: args.skip_invalid,
            allow_changed_templates: args.allow_changed_templates,
        },
        out,
    )
}

/// Runs `retry`.
pub fn run_retry(config: Config, args: &RetryArgs, out: &Output) -> Result<ExitCode, Fail> {
    deliver(
        config,
        Plan {
            selection: Selection::Retry {
                permanent: args.permanent,
            },
            limit: None,
            yes: args.yes,
            skip_invalid: true,
            allow_changed_templates: args.allow_changed_templates,
        },
        out,
    )
}

/// Reads the relay's secret, as the config says.
pub fn relay_settings(config: &Config) -> Result<Settings, Fail> {
    let secret = match &config.smtp.secret {
        None => None,
        Some(source) => {
            let what = if config.smtp.auth == AuthMethod::Xoauth2 {
                "OAuth2 access token"
            } else {
                "SMTP password"
            };
            Some(secrets::read(source, what).input()?)
        }
    };
    Settings::new(config, secret).input()
}

/// Maps a failed first connection to the exit code the contract gives it.
pub fn connect_failure(e: ConnectError) -> Fail {
    Fail::Fatal(anyhow!("{e}"))
}

/// The connection and login before the question. A relay that answers "busy" (421, a
/// rate reply) is waited for, as during the run; anything else ends here (exit 1).
async fn first_connection(
    settings: &Settings,
    sending: &crate::config::Sending,
    out: &Output,
) -> Result<Connection, ConnectError> {
    let mut pushbacks = 0u32;
    loop {
        match relay::connect(settings).await {
            Err(ConnectError::Busy { relay, reply }) if pushbacks < MAX_RELAY_PUSHBACKS => {
                pushbacks += 1;
                let pause = pause_for(sending, pushbacks);
                out.info(&format!(
                    "the relay {relay} is busy ({reply}); trying again in {:.1} s",
                    pause.as_secs_f32()
                ));
                tokio::time::sleep(pause).await;
            }
            other => return other,
        }
    }
}

/// How long the run pauses after the relay's `n`-th pushback in a row.
fn pause_for(sending: &crate::config::Sending, n: u32) -> Duration {
    let base = sending.retry_delay.max(Duration::from_millis(200));
    (base * 2u32.saturating_pow(n.saturating_sub(1))).min(MAX_PAUSE)
}

/// Whether the CSV holds another address for this recipient than the journal last used.
fn corrected(journal: &Journal, recipient: &crate::recipients::Recipient) -> bool {
    journal
        .recipients
        .get(&recipient.key)
        .is_some_and(|r| !r.email.eq_ignore_ascii_case(&recipient.email))
}

/// What preflight chose.
struct Chosen {
    count: u64,
    already_sent: u64,
}

fn deliver(config: Config, plan: Plan, out: &Output) -> Result<ExitCode, Fail> {
    let mailing = Mailing::open(config)?;
    let journal_path = mailing.config.journal.path.clone();
    let (writer, torn) = Writer::open(&journal_path)?;
    if let Some(w) = torn {
        out.warn(&w);
    }
    let journal = Journal::read(&journal_path)?;
    check_journal(&mailing, &journal, &plan, out)?;

    // Preflight: every row valid, every message built; count who this run takes on.
    let mut chosen = Chosen {
        count: 0,
        already_sent: 0,
    };
    let limit = plan.limit.unwrap_or(u64::MAX);
    let pre = mailing.preflight(0, |recipient, _| {
        let state = journal.state(&recipient.key);
        if state == State::Sent && !plan.selection.is_test() {
            chosen.already_sent += 1;
        }
        if chosen.count < limit && plan.selection.takes(state, corrected(&journal, recipient)) {
            chosen.count += 1;
        }
        Ok(())
    })?;
    for w in &pre.scan.warnings {
        out.warn(&w.to_string());
    }
    let errors = pre.error_lines();
    for e in &errors {
        out.error_line(e);
    }
    let invalid = pre.invalid();
    if invalid > 0 && !plan.skip_invalid {
        return Err(Fail::Input(anyhow!(
            "{invalid} of {} rows cannot be sent; nothing was sent: correct them, or leave them out with --skip-invalid",
            pre.scan.rows
        )));
    }
    if pre.rendered == 0 {
        return Err(Fail::Input(anyhow!(
            "no recipient can be sent; nothing was sent"
        )));
    }
    if invalid > 0 {
        out.warn(&format!(
            "{invalid} invalid rows are left out (listed above)"
        ));
    }
    if chosen.count == 0 {
        out.summary(&format!(
            "nothing to do: {} of {} recipients are already sent; see `utskick status`",
            chosen.already_sent, pre.rendered
        ));
        let _ = writer.close();
        return Ok(ExitCode::Success);
    }

    // The relay: secret, then a connection and login before the question.
    let settings = relay_settings(&mailing.config)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Fail::Fatal(anyhow!("cannot start the async runtime: {e}")))?;
    let first = runtime
        .block_on(first_connection(&settings, &mailing.config.sending, out))
        .map_err(connect_failure)?;
    out.info(&format!(
        "connected to {}{}",
        settings.relay(),
        if mailing.config.smtp.auth == AuthMethod::None {
            ""
        } else {
            " and logged in"
        }
    ));

    let what = match &plan.selection {
        Selection::Test { to } => format!(
            "{} test messages to {to} (no customer gets anything)",
            chosen.count
        ),
        Selection::Send => format!("{} messages to {} recipients", chosen.count, chosen.count),
        Selection::Retry { .. } => format!(
            "{} messages again, to recipients whose delivery failed or is unknown",
            chosen.count
        ),
    };
    let question = format!(
        "About to send {what}\n  relay:    {}\n  from:     {}\n  subject:  {}\n  campaign: {}\n  already sent by earlier runs: {}\n  journal:  {}",
        settings.relay(),
        mailing.config.sender.from,
        pre.first_subject.as_deref().unwrap_or(""),
        mailing.config.campaign,
        chosen.already_sent,
        journal_path.display()
    );
    if !plan.yes && !confirm(&question, out)? {
        runtime.block_on(first.quit());
        let _ = writer.close();
        return Err(Fail::Input(anyhow!("not confirmed: nothing was sent")));
    }

    let run = journal::new_run_id();
    writer
        .append_blocking(&Event::Run {
            ts: journal::now(),
            run: run.clone(),
            campaign: mailing.config.campaign.clone(),
            command: plan.selection.command().into(),
            recipients_sha256: mailing.csv.sha256.clone(),
            templates_sha256: mailing.templates.sha256.clone(),
            relay: settings.relay(),
            test: plan.selection.is_test(),
        })
        .fatal()?;

    let writer = Arc::new(writer);
    let mailing = Arc::new(mailing);
    let journal = Arc::new(journal);
    let progress = Progress::new(chosen.count, out);
    let engine = Engine {
        date: SystemTime::now(),
        mailing: mailing.clone(),
        writer: writer.clone(),
        settings,
        run: run.clone(),
        plan: plan.clone(),
        journal: journal.clone(),
        archive: mailing.config.journal.archive.clone(),
    };
    let mut report = runtime.block_on(engine.run(first, chosen.count, &progress));
    progress.finish();
    let outcome_text = report.outcome_text();
    let _ = writer.append_blocking(&Event::End {
        ts: journal::now(),
        run,
        outcome: outcome_text.clone(),
    });
    drop(runtime);
    let close = match Arc::try_unwrap(writer) {
        Ok(w) => w.close(),
        Err(_) => Ok(()),
    };
    if !report.unbooked.is_empty() {
        // What the journal now says of them: `unknown` where the attempt line got to disk.
        report.unknown += match Journal::read(&journal_path) {
            Ok(j) => report
                .unbooked
                .iter()
                .filter(|k| j.state(k) == State::Unknown)
                .count() as u64,
            Err(_) => report.unbooked.len() as u64,
        };
    }
    out.summary(&report.summary(chosen.count, &journal_path));
    if let Some(Stop::Fatal(reason)) = &report.stop {
        out.error(reason);
    }
    if let Err(e) = close {
        return Err(Fail::Fatal(e));
    }
    Ok(report.exit_code(chosen.count))
}

fn check_journal(
    mailing: &Mailing,
    journal: &Journal,
    plan: &Plan,
    out: &Output,
) -> Result<(), Fail> {
    let campaign = &mailing.config.campaign;
    let others: Vec<&str> = journal
        .campaigns()
        .into_iter()
        .filter(|c| c != campaign)
        .collect();
    if !others.is_empty() {
        return Err(Fail::Input(anyhow!(
            "journal {} belongs to campaign {:?}, not {campaign:?}: use another [journal] path for a new mailing",
            mailing.config.journal.path.display(),
            others.join(", ")
        )));
    }
    if !plan.selection.is_test() {
        let changed = journal.other_templates(&mailing.templates.sha256);
        if let Some(run) = changed.first() {
            if !plan.allow_changed_templates {
                return Err(Fail::Input(anyhow!(
                    "the templates differ from those of the run started {} ({} recipients were sent that text): half the customers would get one text and half another. Restore the templates, or pass --allow-changed-templates if the change is intended",
                    run.started,
                    journal
                        .runs
                        .iter()
                        .filter(|r| r.templates_sha256 == run.templates_sha256)
                        .map(|r| r.sent)
                        .sum::<u64>()
                )));
            }
            out.warn("the templates differ from those of earlier runs (--allow-changed-templates)");
        }
    }
    if let Some(run) = journal
        .runs
        .iter()
        .rev()
        .find(|r| !r.test && !r.recipients_sha256.is_empty())
        && run.recipients_sha256 != mailing.csv.sha256
    {
        out.info(&format!(
            "note: the CSV has changed since the run started {} (corrected addresses?); recipients already sent are still skipped",
            run.started
        ));
    }
    Ok(())
}

fn confirm(question: &str, out: &Output) -> Result<bool, Fail> {
    if !std::io::stdin().is_terminal() {
        return Err(Fail::Input(anyhow!(
            "refusing to send without confirmation: there is no terminal to ask on; pass --yes to send unattended"
        )));
    }
    let _ = out;
    eprintln!("{question}");
    eprint!("Type yes to send: ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .map_err(|e| Fail::Fatal(anyhow!("cannot read the answer: {e}")))?;
    Ok(matches!(
        answer.trim().to_lowercase().as_str(),
        "yes" | "y" | "ja" | "j"
    ))
}

/// One message to deliver.
#[derive(Debug, Clone)]
struct Job {
    key: String,
    email: String,
    rcpt: Address,
    message_id: String,
    bytes: Arc<Vec<u8>>,
    /// The same, ready for DATA.
    wire: Arc<relay::Wire>,
    archive_name: String,
    /// Attempts made in this run.
    attempts: u32,
    /// Attempts in earlier runs (for the attempt number).
    earlier: u32,
}

/// Where a delivery task's connection slot went.
enum Slot {
    /// Already handed back to the dispatcher.
    Returned,
    /// To hand back after the outcome (None: the connection was closed).
    Later(Option<Box<Connection>>),
}

/// How a delivery task ended, for the dispatcher.
enum Outcome {
    Sent,
    /// The recipient's failure, booked.
    Failed {
        class: Class,
        reason: String,
    },
    /// Lost after DATA: booked unknown, not retried in this run.
    Unknown,
    /// The relay refused for itself; the job goes back in the queue.
    Relay {
        verdict: Verdict,
        reason: String,
    },
    /// No connection could be made; the job goes back in the queue.
    NoConnection(ConnectError),
    /// The journal could not be written: stop at once. `booked_unknown`: the attempt
    /// line may be in the journal with no outcome after it (the message went out, or the
    /// failed write got the attempt line onto the disk), so the journal says `unknown`.
    JournalFailed {
        /// What went wrong.
        reason: String,
        /// Whether the journal may hold this attempt without an outcome.
        booked_unknown: bool,
    },
}

/// Why a run stopped before taking on everyone.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Stop {
    Interrupted,
    Quota(String),
    DailyLimit(u64),
    RelayKeepsRefusing(String),
    Fatal(String),
}

/// What a run did.
#[derive(Debug, Default)]
struct Report {
    sent: u64,
    failed_permanent: u64,
    failed_transient: u64,
    unknown: u64,
    stop: Option<Stop>,
    attempts: u64,
    /// Keys whose attempt may be in the journal without an outcome (it failed to write).
    unbooked: Vec<String>,
}

impl Report {
    fn outcome_text(&self) -> String {
        match &self.stop {
            None => "complete".into(),
            Some(Stop::Interrupted) => "interrupted".into(),
            Some(Stop::Quota(r)) => format!("stopped: the relay's quota: {r}"),
            Some(Stop::DailyLimit(n)) => format!("stopped: daily_limit {n} reached"),
            Some(Stop::RelayKeepsRefusing(r)) => format!("stopped: the relay keeps refusing: {r}"),
            Some(Stop::Fatal(r)) => format!("stopped: {r}"),
        }
    }

    fn summary(&self, taken: u64, journal: &std::path::Path) -> String {
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

    fn exit_code(&self, taken: u64) -> ExitCode {
        match &self.stop {
            Some(Stop::Interrupted) => ExitCode::Interrupted,
            Some(Stop::Fatal(_)) => ExitCode::Fatal,
            _ if self.sent == taken => ExitCode::Success,
            _ => ExitCode::Incomplete,
        }
    }
}

struct Engine {
    /// The Date header of every message of the run.
    date: SystemTime,
    mailing: Arc<Mailing>,
    writer: Arc<Writer>,
    settings: Settings,
    run: String,
    plan: Plan,
    journal: Arc<Journal>,
    archive: Option<PathBuf>,
}

/// A job waiting to be tried again, ordered by when.
struct Delayed {
    at: tokio::time::Instant,
    seq: u64,
    job: Job,
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

impl Engine {
    async fn run(self, first: Connection, taken: u64, progress: &Progress) -> Report {
        let this = Arc::new(self);
        let mut report = Report::default();
        let concurrency = this.mailing.config.sending.concurrency;
        let sending = this.mailing.config.sending.clone();

        // The producer: reads the CSV again, chooses, renders and builds, in CSV order.
        let (job_tx, mut job_rx) = mpsc::channel::<Job>(concurrency * 4 + 8);
        let producer = {
            let this = this.clone();
            std::thread::spawn(move || this.produce(job_tx))
        };

        let per = sending.rate.per / sending.rate.count;
        let quota = Quota::with_period(per.max(Duration::from_nanos(1)))
            .map(|q| q.allow_burst(NonZeroU32::new(sending.burst).unwrap_or(NonZeroU32::MIN)));
        let limiter = quota.map(RateLimiter::direct);
        let daily_budget = sending
            .daily_limit
            .map(|d| d.saturating_sub(this.journal.sent_last_24h));

        // Idle workers; `pop` takes from the end, so the connection already open goes first.
        let mut idle: Vec<Option<Connection>> = (1..concurrency).map(|_| None).collect();
        idle.push(Some(first));
        let (res_tx, mut res_rx) = mpsc::channel::<(Job, Outcome)>(concurrency * 2 + 1);
        let (conn_tx, mut conn_rx) = mpsc::unbounded_channel::<Option<Connection>>();
        let mut in_flight = 0usize;
        let mut queue = Queue::new();
        let mut producer_done = false;
        let mut next: Option<Job> = None;
        // Jobs whose attempt is journaled ahead, so that its fsync runs while the
        // connections are busy with earlier messages instead of in front of this one: as
        // many as the rate lets start within 10 ms (one at least, twice `concurrency` at
        // most), so that a slow mailing journals an attempt no earlier than it must.
        let window = usize::try_from(Duration::from_millis(10).as_nanos() / per.as_nanos().max(1))
            .unwrap_or(usize::MAX)
            .clamp(1, concurrency * 2);
        let mut staged: VecDeque<(Job, journal::Ticket)> = VecDeque::new();
        let mut dispatched_budget = 0u64;
        let mut interrupts = 0u32;
        let ctrl_c = tokio::signal::ctrl_c();
        tokio::pin!(ctrl_c);

        loop {
            let stopping = report.stop.is_some();
            if !stopping
                && staged.len() < window
                && daily_budget.is_none_or(|b| dispatched_budget + (staged.len() as u64) < b)
                && let Some(job) = next.take()
            {
                staged.push_back(this.stage(job));
            }
            if stopping && in_flight == 0 {
                break;
            }
            if !stopping
                && producer_done
                && next.is_none()
                && staged.is_empty()
                && queue.front.is_empty()
                && queue.retries.is_empty()
                && in_flight == 0
            {
                break;
            }
            if let Some(budget) = daily_budget
                && !stopping
                && dispatched_budget >= budget
                && next.is_some()
                && in_flight == 0
            {
                report.stop = Some(Stop::DailyLimit(sending.daily_limit.unwrap_or(0)));
                continue;
            }
            let paused = queue
                .paused_until
                .is_some_and(|p| p > tokio::time::Instant::now());
            let want_job = next.is_none() && !stopping && staged.len() < window;
            let can_dispatch = !staged.is_empty()
                && !stopping
                && !paused
                && !idle.is_empty()
                && daily_budget.is_none_or(|b| dispatched_budget < b);
            let earliest_retry = queue.retries.peek().map(|d| d.at);
            tokio::select! {
                biased;
                r = &mut ctrl_c, if interrupts == 0 => {
                    let _ = r;
                    interrupts += 1;
                    report.stop.get_or_insert(Stop::Interrupted);
                    progress.note("interrupted: no new messages; waiting for those under way (Ctrl-C again to leave at once)");
                    let writer = this.writer.clone();
                    tokio::spawn(async move {
                        if tokio::signal::ctrl_c().await.is_ok() {
                            // Every journal line is written whole or not at all and a torn
                            // tail is cut by the next writer: leaving now keeps it true.
                            drop(writer);
                            eprintln!("interrupted again: leaving at once; the journal is consistent");
                            std::process::exit(ExitCode::Interrupted.code());
                        }
                    });
                }
                Some(conn) = conn_rx.recv() => {
                    idle.push(conn);
                }
                Some((job, outcome)) = res_rx.recv(), if in_flight > 0 => {
                    in_flight -= 1;
                    queue.handle(&mut report, progress, &sending, job, outcome);
                }
                _ = async { if let Some(p) = queue.paused_until { tokio::time::sleep_until(p).await } }, if paused && (next.is_some() || !staged.is_empty()) => {
                    queue.paused_until = None;
                }
                job = async {
                    if let Some(j) = queue.front.pop_front() {
                        return Some(j);
                    }
                    match earliest_retry {
                        Some(at) if at <= tokio::time::Instant::now() => queue.retries.pop().map(|d| d.job),
                        Some(at) if producer_done => {
                            tokio::time::sleep_until(at).await;
                            queue.retries.pop().map(|d| d.job)
                        }
                        Some(at) => tokio::select! {
                            j = job_rx.recv() => j,
                            _ = tokio::time::sleep_until(at) => queue.retries.pop().map(|d| d.job),
                        },
                        None if producer_done => std::future::pending().await,
                        None => job_rx.recv().await,
                    }
                }, if want_job => {
                    // None only ever means the producer has finished (the retry heap is
                    // not empty when its branch fires).
                    match job {
                        Some(j) => next = Some(j),
                        None => producer_done = true,
                    }
                }
                _ = async {
                    if let Some(l) = &limiter { l.until_ready().await }
                }, if can_dispatch => {
                    if let (Some((job, ticket)), Some(conn)) = (staged.pop_front(), idle.pop()) {
                        in_flight += 1;
                        dispatched_budget += 1;
                        let this = this.clone();
                        let tx = res_tx.clone();
                        let give_back = conn_tx.clone();
                        tokio::spawn(async move {
                            let (job, outcome, slot) = this.attempt(conn, job, ticket, &give_back).await;
                            let _ = tx.send((job, outcome)).await;
                            // Sent after the outcome: the dispatcher takes the outcome first.
                            if let Slot::Later(conn) = slot {
                                let _ = give_back.send(conn.map(|c| *c));
                            }
                        });
                    }
                }
            }
        }
        // Whatever is still queued was not attempted; attempts journaled ahead are
        // withdrawn; connections are closed politely.
        for (mut job, ticket) in staged {
            let _ = ticket.await;
            if this
                .withdraw(&mut job, "the run stopped before this message went out")
                .await
                .is_err()
            {
                report.unbooked.push(job.key);
            }
        }
        drop(job_rx);
        while let Ok(c) = conn_rx.try_recv() {
            idle.push(c);
        }
        for c in idle.into_iter().flatten() {
            c.quit().await;
        }
        let _ = producer.join();
        let _ = taken;
        report
    }

    /// Reads the CSV again and feeds the chosen recipients' messages, in order.
    /// Rendering and building run on all cores (`Mailing::pipeline`); the jobs come out
    /// in CSV order.
    fn produce(&self, tx: mpsc::Sender<Job>) {
        let limit = self.plan.limit.unwrap_or(u64::MAX);
        let mut count = 0u64;
        let _ = self.mailing.pipeline_at(
            Priority::Background,
            |renderer, _, recipient| self.build_job(renderer, recipient),
            |_, job| {
                let Some(job) = job else {
                    return Ok(());
                };
                if count >= limit {
                    return Err(anyhow!("limit reached"));
                }
                count += 1;
                tx.blocking_send(job).map_err(|_| anyhow!("stopped"))
            },
        );
    }

    /// The job for a recipient this run takes on; None for the others (and for rows whose
    /// message does not build: preflight reported them, `--skip-invalid` leaves them out).
    fn build_job(
        &self,
        renderer: &crate::render::Renderer,
        recipient: &crate::recipients::Recipient,
    ) -> Option<Job> {
        let config = &self.mailing.config;
        let state = self.journal.state(&recipient.key);
        if !self
            .plan
            .selection
            .takes(state, corrected(&self.journal, recipient))
        {
            return None;
        }
        let rendered = renderer.render(recipient).ok()?;
        let (message_id, to) = match &self.plan.selection {
            Selection::Test { to } => (
                message::test_message_id(
                    &config.campaign,
                    &recipient.key,
                    &self.run,
                    &config.sender.domain,
                ),
                Some(to.as_str()),
            ),
            _ => (
                message::message_id(&config.campaign, &recipient.key, &config.sender.domain),
                None,
            ),
        };
        let built =
            message::build(config, recipient, &rendered, &message_id, to, self.date).ok()?;
        let rcpt = built.rcpt.parse::<Address>().ok()?;
        Some(Job {
            key: recipient.key.clone(),
            email: built.rcpt.clone(),
            rcpt,
            message_id: built.message_id,
            wire: Arc::new(relay::Wire::new(&built.bytes)),
            bytes: Arc::new(built.bytes),
            archive_name: format!("{}.eml", file_stem(&recipient.key, "")),
            attempts: 0,
            earlier: self
                .journal
                .recipients
                .get(&recipient.key)
                .map_or(0, |r| r.attempts),
        })
    }

    /// Journals the job's next attempt, ahead of its delivery; the ticket says when the
    /// line is durable.
    fn stage(&self, mut job: Job) -> (Job, journal::Ticket) {
        job.attempts += 1;
        let ticket = self.writer.append(&Event::Attempt {
            ts: journal::now(),
            run: self.run.clone(),
            key: job.key.clone(),
            email: job.email.clone(),
            message_id: job.message_id.clone(),
            attempt: job.earlier + job.attempts,
            test: self.plan.selection.is_test(),
        });
        (job, ticket)
    }

    /// Takes back an attempt journaled ahead whose message never went out, durably.
    async fn withdraw(&self, job: &mut Job, reason: &str) -> Result<()> {
        job.attempts = job.attempts.saturating_sub(1);
        self.writer
            .append_durable(&Event::Withdrawn(Unsent {
                ts: journal::now(),
                run: self.run.clone(),
                key: job.key.clone(),
                email: job.email.clone(),
                message_id: job.message_id.clone(),
                reason: reason.to_string(),
                test: self.plan.selection.is_test(),
            }))
            .await
    }

    /// One delivery: connection, durable attempt, transaction, durable outcome.
    ///
    /// After an ordinary outcome the connection is handed back (through `give_back`) as
    /// soon as the relay has answered, so that the next message can start on it while this
    /// outcome is made durable: both journal lines then share one `fdatasync`. The outcome
    /// is returned only once it is durable. After anything that may stop or pause the run
    /// (the relay speaking for itself, no connection, the journal failing) the connection
    /// is returned with the outcome instead (`Slot`), so the dispatcher sees the outcome
    /// before it can start another message.
    async fn attempt(
        &self,
        conn: Option<Connection>,
        mut job: Job,
        ticket: journal::Ticket,
        give_back: &mpsc::UnboundedSender<Option<Connection>>,
    ) -> (Job, Outcome, Slot) {
        let test = self.plan.selection.is_test();
        let conn = match conn {
            Some(mut c) => {
                if c.alive().await {
                    Some(c)
                } else {
                    c.quit().await;
                    None
                }
            }
            None => None,
        };
        let mut conn = match conn {
            Some(c) => c,
            None => match relay::connect(&self.settings).await {
                Ok(c) => c,
                Err(e) => {
                    // Nothing went out: the attempt journaled ahead is withdrawn.
                    let _ = ticket.await;
                    if let Err(w) = self.withdraw(&mut job, &e.to_string()).await {
                        let failed = Outcome::JournalFailed {
                            reason: format!("{w:#}"),
                            booked_unknown: true,
                        };
                        return (job, failed, Slot::Later(None));
                    }
                    return (job, Outcome::NoConnection(e), Slot::Later(None));
                }
            },
        };
        if self.writer.is_broken() {
            let failed = Outcome::JournalFailed {
                reason: "the journal cannot be written".into(),
                booked_unknown: true,
            };
            return (job, failed, Slot::Later(Some(Box::new(conn))));
        }
        // The attempt was journaled when the job was staged; it is durable before the
        // message's DATA goes out (awaited after the relay's 354).
        // An attempt journaled ahead may be durable while a later line (another message's
        // outcome) failed: no message goes out once the journal cannot be written.
        let durable = async {
            match ticket.await {
                Ok(Ok(())) if self.writer.is_broken() => {
                    Err("the journal cannot be written".to_string())
                }
                Ok(result) => result,
                Err(_) => Err("the journal writer stopped".to_string()),
            }
        };
        let delivery = conn
            .deliver(&self.settings.from, &job.rcpt, &job.wire, durable)
            .await;
        if let Delivery::NotSent(e) = delivery {
            conn.quit().await;
            let failed = Outcome::JournalFailed {
                reason: format!("cannot write journal {}: {e}", self.writer.path().display()),
                booked_unknown: true,
            };
            return (job, failed, Slot::Later(None));
        }
        let (event, outcome) = self.book(&job, delivery, test);
        let slot = if matches!(outcome, Outcome::Relay { .. }) {
            // The relay spoke for itself (421 closes the connection): start afresh, later.
            conn.quit().await;
            Slot::Later(None)
        } else if conn.usable() {
            let _ = give_back.send(Some(conn));
            Slot::Returned
        } else {
            conn.quit().await;
            let _ = give_back.send(None);
            Slot::Returned
        };
        if let Outcome::Sent = outcome
            && let Some(dir) = &self.archive
            && !test
        {
            let _ = private::create_dir(dir)
                .and_then(|()| private::write_file(&dir.join(&job.archive_name), &job.bytes));
        }
        if let Err(e) = self.writer.append_durable(&event).await {
            let failed = Outcome::JournalFailed {
                reason: format!("{e:#}"),
                booked_unknown: true,
            };
            return (job, failed, slot);
        }
        (job, outcome, slot)
    }

    /// A reply that speaks for the relay, not the recipient: `deferred`, never a failure.
    fn deferred(
        &self,
        job: &Job,
        reply: relay::Reply,
        verdict: Verdict,
        test: bool,
    ) -> (Event, Outcome) {
        let reason = reply.to_string();
        (
            Event::Deferred {
                ts: journal::now(),
                run: self.run.clone(),
                key: job.key.clone(),
                email: job.email.clone(),
                message_id: job.message_id.clone(),
                code: Some(reply.code),
                reply: reply.text,
                test,
            },
            Outcome::Relay { verdict, reason },
        )
    }

    fn book(&self, job: &Job, delivery: Delivery, test: bool) -> (Event, Outcome) {
        let ts = journal::now();
        let run = self.run.clone();
        let key = job.key.clone();
        let email = job.email.clone();
        let message_id = job.message_id.clone();
        match delivery {
            Delivery::Sent(reply) => (
                Event::Sent {
                    ts,
                    run,
                    key,
                    email,
                    message_id,
                    code: reply.code,
                    reply: reply.text,
                    test,
                },
                Outcome::Sent,
            ),
            Delivery::Refused(reply) => match reply.verdict() {
                v @ (Verdict::Transient | Verdict::Permanent) => {
                    let class = if v == Verdict::Transient {
                        Class::Transient
                    } else {
                        Class::Permanent
                    };
                    let reason = reply.to_string();
                    (
                        Event::Failed {
                            ts,
                            run,
                            key,
                            email,
                            message_id,
                            code: Some(reply.code),
                            enhanced: reply.enhanced.clone(),
                            reply: reply.text,
                            class,
                            test,
                        },
                        Outcome::Failed { class, reason },
                    )
                }
                verdict => self.deferred(job, reply, verdict, test),
            },
            Delivery::SenderRefused(reply) => {
                // Never the recipient's failure: the relay pauses the run (4xx, rate,
                // quota) or the run stops (the sender refused, a login missing).
                let verdict = match reply.verdict() {
                    v @ (Verdict::RelayBusy | Verdict::RelayQuota | Verdict::Auth) => v,
                    Verdict::Transient => Verdict::RelayBusy,
                    Verdict::Permanent | Verdict::Sender => Verdict::Sender,
                };
                self.deferred(job, reply, verdict, test)
            }
            Delivery::LostBeforeData(reason) => (
                Event::Failed {
                    ts,
                    run,
                    key,
                    email,
                    message_id,
                    code: None,
                    enhanced: None,
                    reply: format!("connection lost before DATA: {reason}"),
                    class: Class::Transient,
                    test,
                },
                Outcome::Failed {
                    class: Class::Transient,
                    reason: format!("connection lost before DATA: {reason}"),
                },
            ),
            // Handled before booking (nothing can be booked); as unknown, to be safe.
            Delivery::LostAfterData(reason) | Delivery::NotSent(reason) => (
                Event::Unknown(Unsent {
                    ts,
                    run,
                    key,
                    email,
                    message_id,
                    reason: format!("connection lost after DATA: {reason}"),
                    test,
                }),
                Outcome::Unknown,
            ),
        }
    }
}

/// The dispatcher's queues and the relay's pushback state.
struct Queue {
    /// Transient failures waiting for their next attempt.
    retries: BinaryHeap<Delayed>,
    /// Jobs the relay pushed back: next in line once the pause is over.
    front: VecDeque<Job>,
    /// Tie-breaker for retries due at the same instant.
    seq: u64,
    /// No message starts before this.
    paused_until: Option<tokio::time::Instant>,
    /// Relay pushbacks in a row, without a delivery in between.
    pushbacks: u32,
}

impl Queue {
    fn new() -> Queue {
        Queue {
            retries: BinaryHeap::new(),
            front: VecDeque::new(),
            seq: 0,
            paused_until: None,
            pushbacks: 0,
        }
    }

    /// Books a durable outcome into the run's report and queues what comes next.
    fn handle(
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
                progress.sent(&job.key, &job.email);
            }
            Outcome::Failed { class, reason } => {
                report.attempts += 1;
                self.pushbacks = 0;
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
            Outcome::Unknown => {
                report.attempts += 1;
                report.unknown += 1;
                progress.failed(
                    &job.key,
                    &job.email,
                    "connection lost after DATA: outcome unknown (a rerun sends it again with the same Message-ID)",
                );
            }
            Outcome::Relay { verdict, reason } => match verdict {
                Verdict::RelayQuota => {
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
                _ => self.pushback(report, progress, sending, job, reason, false),
            },
            Outcome::NoConnection(e) => match e {
                ConnectError::Auth { .. } | ConnectError::Tls { .. } => {
                    report.stop.get_or_insert(Stop::Fatal(e.to_string()));
                }
                ConnectError::Busy { .. } => {
                    self.pushback(report, progress, sending, job, e.to_string(), false);
                }
                ConnectError::Unreachable { .. } => {
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

    #[test]
    fn selections_take_the_contract_states() {
        use State::*;
        let send = Selection::Send;
        for corrected in [false, true] {
            let takes = |s: &Selection, state| s.takes(state, corrected);
            assert!(
                takes(&send, Pending) && takes(&send, Unknown) && takes(&send, FailedTransient)
            );
            assert!(
                !takes(&send, Sent) && !takes(&send, FailedPermanent) && !takes(&send, Bounced)
            );
            let retry = Selection::Retry { permanent: false };
            assert!(takes(&retry, FailedTransient) && takes(&retry, Unknown));
            assert!(!takes(&retry, Pending) && !takes(&retry, Sent));
            assert!(!takes(&retry, FailedPermanent) && !takes(&retry, Bounced));
        }
        // --permanent: failed-permanent and bounced, once their address was corrected.
        let all = Selection::Retry { permanent: true };
        assert!(all.takes(FailedPermanent, true) && all.takes(Bounced, true));
        assert!(!all.takes(FailedPermanent, false) && !all.takes(Bounced, false));
        assert!(!all.takes(Pending, true) && !all.takes(Sent, true));
    }

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
}
