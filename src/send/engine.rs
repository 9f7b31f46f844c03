//! The dispatcher: one loop awaits the rate limiter (governor's waiters are not served in
//! order) and hands each message to an idle connection; at most `concurrency` connections
//! exist. It journals the attempts of the next few messages (those the rate lets start
//! within 10 ms, at most twice `concurrency`) before a connection is free, so that their
//! fsync overlaps earlier deliveries; a worker sends the message only once its attempt is
//! durable, and journals the outcome durably before the dispatcher counts it. An attempt
//! whose message never went out (the run stopped, no connection) is `withdrawn`.

use std::collections::VecDeque;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{Result, anyhow};
use governor::{Quota, RateLimiter};
use lettre::Address;
use tokio::sync::mpsc;

use super::queue::{Queue, Streak, pause_for};
use super::report::{Report, Stop};
use super::{Plan, Selection, corrected};
use crate::exit_codes::ExitCode;
use crate::journal::{self, Class, Event, Journal, Unsent, Writer};
use crate::mailing::{Mailing, Priority};
use crate::message;
use crate::progress::Progress;
use crate::relay::{self, ConnectError, Connection, Delivery, Settings, Stage, Verdict};

/// One message to deliver.
#[derive(Debug, Clone)]
pub(super) struct Job {
    pub(super) key: String,
    pub(super) email: String,
    pub(super) rcpt: Address,
    pub(super) message_id: String,
    pub(super) bytes: Arc<Vec<u8>>,
    /// The same, ready for DATA.
    pub(super) wire: Arc<relay::Wire>,
    pub(super) archive_name: String,
    /// Attempts made in this run.
    pub(super) attempts: u32,
    /// Attempts in earlier runs (for the attempt number).
    pub(super) earlier: u32,
    /// This run's attempts that ended in the recipient's own failure.
    pub(super) failures: u32,
}

/// Where a delivery task's connection slot went.
pub(super) enum Slot {
    /// Already handed back to the dispatcher.
    Returned,
    /// To hand back after the outcome (None: the connection was closed).
    Later(Option<Box<Connection>>),
}

/// How a delivery task ended, for the dispatcher.
pub(super) enum Outcome {
    Sent,
    /// The recipient's failure, booked.
    Failed {
        class: Class,
        reason: String,
    },
    /// Lost after DATA (or the relay broke the protocol after it): booked unknown, not
    /// retried in this run.
    Unknown {
        /// What happened.
        reason: String,
    },
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

pub(super) struct Engine {
    /// The Date header of every message of the run.
    pub(super) date: SystemTime,
    pub(super) mailing: Arc<Mailing>,
    pub(super) writer: Arc<Writer>,
    pub(super) settings: Settings,
    pub(super) run: String,
    pub(super) plan: Plan,
    pub(super) journal: Arc<Journal>,
    pub(super) archive: Option<PathBuf>,
    /// The same refusal to different recipients in a row.
    pub(super) streak: std::sync::Mutex<Streak>,
}

impl Engine {
    pub(super) async fn run(self, first: Connection, taken: u64, progress: &Progress) -> Report {
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
        // Long mailings: daily_limit as a rolling window, and the waits (send::window).
        let mut limits = crate::send::window::Limits::new(&this.mailing.config, &this.journal);

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
        let mut interrupts = 0u32;
        let ctrl_c = tokio::signal::ctrl_c();
        tokio::pin!(ctrl_c);

        loop {
            let stopping = report.stop.is_some();
            if !stopping
                && staged.len() < window
                && limits.may_start((in_flight + staged.len()) as u64)
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
            if !stopping && next.is_some() && in_flight == 0 && limits.full() {
                let limit = limits.daily_limit().unwrap_or(0);
                match limits.wait_for_window() {
                    None => report.stop = Some(Stop::DailyLimit(limit)),
                    Some(wait) if wait.long => {
                        progress.note(&format!(
                            "daily_limit {limit} reached (rolling 24 h): waiting until {} (local time); Ctrl-C stops, a later `utskick send` goes on",
                            crate::send::window::local_time(wait.until)
                        ));
                        this.idle_while_waiting(&mut staged, &mut queue, &mut idle, &mut report)
                            .await;
                    }
                    Some(_) => {}
                }
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
                && limits.may_start(in_flight as u64);
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
                    match outcome {
                        Outcome::Sent => limits.sent(),
                        // Long mailings: a daily quota is waited out (when_limited = "wait").
                        Outcome::Relay { verdict: Verdict::RelayQuota, ref reason } => {
                            if let Some(wait) = limits.wait_for_quota() {
                                progress.note(&format!(
                                    "the relay's daily quota is used up ({reason}): trying again at {} (local time); Ctrl-C stops, a later `utskick send` goes on",
                                    crate::send::window::local_time(wait.until)
                                ));
                                queue.front.push_front(job);
                                this.idle_while_waiting(&mut staged, &mut queue, &mut idle, &mut report).await;
                                continue;
                            }
                        }
                        _ => {}
                    }
                    queue.handle(&mut report, progress, &sending, job, outcome);
                }
                _ = crate::send::window::sleep_until(limits.waiting().unwrap_or(SystemTime::UNIX_EPOCH)), if !stopping && limits.waiting().is_some() => {
                    if limits.done_waiting() {
                        progress.note("the wait is over: going on");
                    }
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
                        let this = this.clone();
                        let tx = res_tx.clone();
                        let give_back = conn_tx.clone();
                        let cool_down = pause_for(&sending, 1);
                        tokio::spawn(async move {
                            let (job, outcome, slot) = this.attempt(conn, job, ticket, &give_back).await;
                            // A connection the relay closed (421, a busy greeting) pauses
                            // before it reconnects; the others go on.
                            let closed = matches!(
                                outcome,
                                Outcome::Relay { verdict: Verdict::Closing, .. }
                                    | Outcome::NoConnection(ConnectError::Busy { .. })
                            );
                            let _ = tx.send((job, outcome)).await;
                            // Sent after the outcome: the dispatcher takes the outcome first.
                            if let Slot::Later(conn) = slot {
                                if closed {
                                    tokio::time::sleep(cool_down).await;
                                }
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

    /// Long mailings: before a wait of hours, attempts journaled ahead are withdrawn (their
    /// jobs go back in line) and idle connections are closed; the next login after the
    /// wait fetches a new token where the old one has expired.
    async fn idle_while_waiting(
        &self,
        staged: &mut VecDeque<(Job, journal::Ticket)>,
        queue: &mut Queue,
        idle: &mut [Option<Connection>],
        report: &mut Report,
    ) {
        while let Some((mut job, ticket)) = staged.pop_front() {
            let _ = ticket.await;
            match self.withdraw(&mut job, "the run waits for a limit").await {
                Ok(()) => queue.front.push_back(job),
                Err(e) => {
                    report.unbooked.push(job.key);
                    report.stop = Some(Stop::Fatal(format!("{e:#}; sending stopped at once")));
                }
            }
        }
        for slot in idle.iter_mut() {
            if let Some(c) = slot.take() {
                c.quit().await;
            }
        }
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

    /// The job for a recipient this run takes on; None for the others, and for a row whose
    /// message does not build (said on stderr).
    fn build_job(
        &self,
        renderer: &crate::render::Renderer,
        recipient: &crate::recipients::Recipient,
    ) -> Option<Job> {
        let state = self.journal.state(&recipient.key);
        if !self
            .plan
            .selection
            .takes(state, corrected(&self.journal, recipient))
        {
            return None;
        }
        let delivery = match &self.plan.selection {
            Selection::Test { to } => message::Delivery::Test { to, run: &self.run },
            _ => message::Delivery::Notice,
        };
        let prepared = match self
            .mailing
            .prepare_on(renderer, recipient, delivery, self.date)
        {
            Ok(p) => p,
            // Preflight built this message; one that no longer builds (a key file changed
            // since, say) is not sent, and the operator is told which: the run then ends
            // with it not attempted (exit 3), never silently.
            Err(e) => {
                eprintln!(
                    "error: {}: its message could not be built, so it was not sent: {}",
                    recipient.key,
                    crate::text::one_line_within(&format!("{e:#}"), 200)
                );
                return None;
            }
        };
        Some(Job {
            key: recipient.key.clone(),
            email: prepared.rcpt.to_string(),
            rcpt: prepared.rcpt,
            message_id: prepared.message_id,
            wire: Arc::new(relay::Wire::new(&prepared.bytes)),
            bytes: Arc::new(prepared.bytes),
            archive_name: prepared.file_name,
            attempts: 0,
            failures: 0,
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
        // With an archive, the message's file is written and fsynced meanwhile, and is
        // durable before DATA too; a message that cannot be archived is not sent.
        let mut archiving = match &self.archive {
            Some(dir) if !test => {
                let (dir, name, bytes) = (dir.clone(), job.archive_name.clone(), job.bytes.clone());
                Some(tokio::task::spawn_blocking(move || {
                    crate::archive::write(&dir, &name, &bytes)
                }))
            }
            _ => None,
        };
        let archive_failed = std::sync::OnceLock::new();
        let archived = std::sync::OnceLock::new();
        let durable = async {
            let archiving = archiving.take();
            match ticket.await {
                Ok(Ok(())) if self.writer.is_broken() => {
                    return Err("the journal cannot be written".to_string());
                }
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(e),
                Err(_) => return Err("the journal writer stopped".to_string()),
            }
            let failed = match archiving {
                None => return Ok(()),
                Some(task) => match task.await {
                    Ok(Ok(file)) => {
                        let _ = archived.set(file);
                        return Ok(());
                    }
                    Ok(Err(e)) => format!("{e:#}"),
                    Err(e) => format!("the archive writer stopped: {e}"),
                },
            };
            let _ = archive_failed.set(failed.clone());
            Err(failed)
        };
        let delivery = conn
            .deliver(&self.settings.from, &job.rcpt, &job.wire, durable)
            .await;
        // Refused before DATA: the file was written all the same, and is taken back below.
        if let Some(task) = archiving.take()
            && let Ok(Ok(file)) = task.await
        {
            let _ = archived.set(file);
        }
        if let Delivery::NotSent(e) = delivery {
            conn.quit().await;
            if let Some(reason) = archive_failed.get() {
                // The journal works: the attempt whose message never went out is withdrawn.
                let reason = format!("{reason}; the message was not sent");
                let booked_unknown = self.withdraw(&mut job, &reason).await.is_err();
                let failed = Outcome::JournalFailed {
                    reason,
                    booked_unknown,
                };
                return (job, failed, Slot::Later(None));
            }
            let failed = Outcome::JournalFailed {
                reason: format!("cannot write journal {}: {e}", self.writer.path().display()),
                booked_unknown: true,
            };
            return (job, failed, Slot::Later(None));
        }
        let (event, outcome) = self.book(&job, delivery, test);
        if let Some(file) = archived.get()
            && !matches!(outcome, Outcome::Sent | Outcome::Unknown { .. })
        {
            file.not_delivered();
        }
        let slot = if matches!(outcome, Outcome::Relay { .. } | Outcome::Unknown { .. }) {
            // The relay spoke for itself (421 closes the connection), or left the outcome
            // unknown: start afresh, once the dispatcher has counted this outcome (a few
            // unknowns in a row stop the run before another message goes out).
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

    /// Whose a refusal at RCPT, DATA or the final dot is: the classifier's verdict, unless
    /// the same refusal has now hit several different recipients in a row (their first
    /// refusals in this run), which speaks for the relay: a 4xx then pauses the run, a
    /// 5xx stops it. Replies with a recipient-specific status (X.1.x, X.2.x) never count.
    fn judge(&self, job: &Job, stage: Stage, reply: &relay::Reply) -> Verdict {
        let verdict = reply.verdict(stage);
        let specific = reply
            .enhanced
            .as_deref()
            .is_some_and(|e| e[1..].starts_with(".1.") || e[1..].starts_with(".2."));
        if !matches!(verdict, Verdict::Transient | Verdict::Permanent)
            || specific
            || job.failures > 0
        {
            return verdict;
        }
        let Ok(mut streak) = self.streak.lock() else {
            return verdict;
        };
        match (streak.refused(&job.key, reply.signature()), verdict) {
            (false, v) => v,
            (true, Verdict::Transient) => Verdict::RelayBusy,
            (true, _) => Verdict::Refuses,
        }
    }

    /// A transient failure with no reply to book (nothing of the message went out).
    fn transient(&self, job: &Job, test: bool, reason: String) -> (Event, Outcome) {
        (
            Event::Failed {
                ts: journal::now(),
                run: self.run.clone(),
                key: job.key.clone(),
                email: job.email.clone(),
                message_id: job.message_id.clone(),
                code: None,
                enhanced: None,
                reply: reason.clone(),
                class: Class::Transient,
                test,
            },
            Outcome::Failed {
                class: Class::Transient,
                reason,
            },
        )
    }

    /// The message may have gone out and nobody knows whether the relay took it.
    fn unknown(&self, job: &Job, test: bool, reason: String) -> (Event, Outcome) {
        (
            Event::Unknown(Unsent {
                ts: journal::now(),
                run: self.run.clone(),
                key: job.key.clone(),
                email: job.email.clone(),
                message_id: job.message_id.clone(),
                reason: reason.clone(),
                test,
            }),
            Outcome::Unknown { reason },
        )
    }

    fn book(&self, job: &Job, delivery: Delivery, test: bool) -> (Event, Outcome) {
        let ts = journal::now();
        let run = self.run.clone();
        let key = job.key.clone();
        let email = job.email.clone();
        let message_id = job.message_id.clone();
        if let Delivery::Sent(_) = delivery
            && let Ok(mut streak) = self.streak.lock()
        {
            streak.delivered();
        }
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
            Delivery::Refused(stage, reply) => match self.judge(job, stage, &reply) {
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
                let verdict = reply.verdict(Stage::MailFrom);
                self.deferred(job, reply, verdict, test)
            }
            Delivery::LostBeforeData(reason) => {
                self.transient(job, test, format!("connection lost before DATA: {reason}"))
            }
            Delivery::Violation {
                after_data: false,
                reason,
            } => self.transient(job, test, format!("protocol violation: {reason}")),
            Delivery::Violation {
                after_data: true,
                reason,
            } => self.unknown(
                job,
                test,
                format!("protocol violation after DATA: {reason}"),
            ),
            // NotSent is handled before booking (nothing can be booked); as unknown, to be safe.
            Delivery::LostAfterData(reason) | Delivery::NotSent(reason) => {
                self.unknown(job, test, format!("connection lost after DATA: {reason}"))
            }
        }
    }
}
