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

use super::queue::Queue;
use super::report::{Report, Stop};
use super::{Plan, Selection, corrected};
use crate::exit_codes::ExitCode;
use crate::journal::{self, Class, Event, Journal, Unsent, Writer};
use crate::mailing::{Mailing, Priority};
use crate::message;
use crate::private;
use crate::progress::Progress;
use crate::recipients::file_stem;
use crate::relay::{self, ConnectError, Connection, Delivery, Settings, Verdict};

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
            |_, recipient| self.build_job(recipient),
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
    fn build_job(&self, recipient: &crate::recipients::Recipient) -> Option<Job> {
        let config = &self.mailing.config;
        let state = self.journal.state(&recipient.key);
        if !self
            .plan
            .selection
            .takes(state, corrected(&self.journal, recipient))
        {
            return None;
        }
        let rendered = self.mailing.templates.render(recipient).ok()?;
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
