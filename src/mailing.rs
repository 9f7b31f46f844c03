//! One mailing: the checked config, the opened CSV and the compiled templates, and the
//! preflight that `preview`, `send`, `retry` and `check` all share up to the transport.
//!
//! Preflight reads every row and renders every message before anything is written or sent,
//! so an invalid row or a template that does not fit the CSV stops the run with exit 2 and
//! the full list of problems, never half-way through a mailing.

use std::collections::BTreeMap;

use anyhow::Result;

use crate::config::Config;

use crate::message::{Delivery, Prepared};
use crate::recipients::{CsvSource, Diagnostic, Recipient, Scan};
use crate::render::Templates;
use crate::{Fail, ResultExt};

/// Recipients rendered together, split over the cores.
const BATCH: usize = 256;

/// What rendering one recipient in preflight kept.
enum Checked {
    /// The whole message.
    Full(Box<Prepared>),
    /// Only the subject (the bodies were rendered and dropped).
    Subject(String),
}

/// The inputs of a mailing, loaded and checked.
pub struct Mailing {
    /// The config.
    pub config: Config,
    /// The recipient CSV.
    pub csv: CsvSource,
    /// The templates.
    pub templates: Templates,
    /// The Date of every message this run prepares.
    pub date: std::time::SystemTime,
}

/// What preflight found.
#[derive(Debug, Default)]
pub struct Preflight {
    /// The CSV scan (rows, valid, invalid, diagnostics).
    pub scan: Scan,
    /// Rows whose messages rendered and built.
    pub rendered: u64,
    /// Template problems: message → (first CSV line, rows affected).
    pub render_errors: BTreeMap<String, (u64, u64)>,
    /// The first recipient's subject.
    pub first_subject: Option<String>,
}

impl Preflight {
    /// Rows that cannot be sent (invalid CSV rows and rows whose message failed).
    pub fn invalid(&self) -> u64 {
        self.scan.invalid + self.render_errors.values().map(|(_, n)| n).sum::<u64>()
    }

    /// Every error line, CSV first, then templates.
    pub fn error_lines(&self) -> Vec<String> {
        let mut lines: Vec<String> = self.scan.errors.iter().map(Diagnostic::to_string).collect();
        let shown_errors = self.scan.errors.len() as u64;
        if self.scan.invalid > shown_errors
            && shown_errors >= crate::recipients::MAX_KEPT_DIAGNOSTICS as u64
        {
            lines.push(format!(
                "... and {} more invalid rows",
                self.scan.invalid - shown_errors
            ));
        }
        for (msg, (line, rows)) in &self.render_errors {
            if *rows > 1 {
                lines.push(format!("{msg} (first on CSV line {line}; {rows} rows)"));
            } else {
                lines.push(format!("{msg} (CSV line {line})"));
            }
        }
        lines
    }
}

impl Mailing {
    /// Opens the CSV and compiles the templates; any problem is bad input (exit 2).
    pub fn open(config: Config) -> Result<Mailing, Fail> {
        let csv = CsvSource::open(&config.recipients).input();
        let templates = Templates::load(&config).input();
        match (csv, templates) {
            (Ok(csv), Ok(templates)) => Ok(Mailing {
                config,
                csv,
                templates,
                date: std::time::SystemTime::now(),
            }),
            (Err(a), Err(b)) => Err(Fail::Input(anyhow::anyhow!("{a}\n{b}"))),
            (Err(e), _) | (_, Err(e)) => Err(e),
        }
    }

    /// Prepares one recipient's message: the path every row takes up to the transport,
    /// in preview, send and test sends alike. The address is parsed here, once, and held
    /// typed from then on.
    pub fn prepare(
        &self,
        recipient: &Recipient,
        delivery: Delivery<'_>,
        date: std::time::SystemTime,
    ) -> Result<Prepared> {
        let address = crate::message::address(recipient)?;
        let rendered = self.templates.render(recipient)?;
        crate::message::prepare(&self.config, recipient, address, rendered, delivery, date)
    }

    /// Reads every row and renders every message, on all cores; `each` sees every
    /// recipient whose message rendered, in CSV order, with its prepared message (dated
    /// `self.date`) for the first `full` of them (the rest are rendered to check them, and
    /// their text dropped).
    ///
    /// A pipeline: this thread reads and checks the CSV and hands batches of rows to one
    /// render worker per core; finished batches come back and are taken in CSV order.
    pub fn preflight(
        &self,
        full: u64,
        mut each: impl FnMut(&Recipient, Option<&Prepared>) -> Result<()>,
    ) -> Result<Preflight, Fail> {
        let mut pre = Preflight::default();
        let scan = self
            .pipeline(
                |index, r| self.check_one(r, index < full),
                |recipient, result| take(&recipient, result, &mut pre, &mut each),
            )
            .fatal()?;
        pre.scan = scan;
        for name in &self.templates.named_columns {
            if !self.csv.headers.iter().any(|h| h == name) {
                pre.scan.warnings.push(self.csv.diagnostic(
                    1,
                    Some(name),
                    format!("the templates read recipient.{name}, but the file has no such column"),
                    crate::recipients::Severity::Warning,
                ));
            }
        }
        Ok(pre)
    }

    /// Reads every valid row and runs `work` on each (numbered from 0) on all cores, then
    /// `take` on each row and its result, in CSV order. This thread reads and checks the
    /// CSV and hands batches of rows to one worker per core; finished batches come back and
    /// are taken in order. An error from `take` stops the reading.
    pub fn pipeline<T: Send>(
        &self,
        work: impl Fn(u64, &Recipient) -> T + Sync,
        take: impl FnMut(Recipient, T) -> Result<()>,
    ) -> Result<Scan> {
        self.pipeline_at(Priority::Normal, work, take)
    }

    /// `pipeline` on threads of the given priority.
    pub fn pipeline_at<T: Send>(
        &self,
        priority: Priority,
        work: impl Fn(u64, &Recipient) -> T + Sync,
        mut take: impl FnMut(Recipient, T) -> Result<()>,
    ) -> Result<Scan> {
        priority.apply();
        type Done<T> = (u64, Vec<Recipient>, Vec<T>);
        let workers = crate::render::render_threads();
        let (work_tx, work_rx) =
            std::sync::mpsc::sync_channel::<(u64, u64, Vec<Recipient>)>(workers * 2);
        let work_rx = std::sync::Mutex::new(work_rx);
        let (done_tx, done_rx) = std::sync::mpsc::channel::<Done<T>>();
        let work = &work;
        std::thread::scope(|scope| -> Result<Scan> {
            for w in 0..workers {
                let done_tx = done_tx.clone();
                let work_rx = &work_rx;
                scope.spawn(move || {
                    crate::render::on_worker(w, || {
                        priority.apply();
                        loop {
                            let next = match work_rx.lock() {
                                Ok(rx) => rx.recv(),
                                Err(_) => return,
                            };
                            let Ok((seq, first_index, batch)) = next else {
                                return;
                            };
                            let results = batch
                                .iter()
                                .enumerate()
                                .map(|(i, r)| work(first_index + i as u64, r))
                                .collect();
                            if done_tx.send((seq, batch, results)).is_err() {
                                return;
                            }
                        }
                    });
                });
            }
            drop(done_tx);
            let mut pending: BTreeMap<u64, (Vec<Recipient>, Vec<T>)> = BTreeMap::new();
            let (mut next_seq, mut sent_seq, mut index) = (0u64, 0u64, 0u64);
            let mut batch: Vec<Recipient> = Vec::with_capacity(BATCH);
            // Takes every finished batch that is next in CSV order.
            let mut drain = |pending: &mut BTreeMap<u64, (Vec<Recipient>, Vec<T>)>,
                             next_seq: &mut u64|
             -> Result<()> {
                while let Some((batch, results)) = pending.remove(next_seq) {
                    *next_seq += 1;
                    for (recipient, result) in batch.into_iter().zip(results) {
                        take(recipient, result)?;
                    }
                }
                Ok(())
            };
            let scan = self.csv.scan(|recipient| {
                batch.push(recipient);
                if batch.len() == BATCH {
                    let full_batch = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
                    let n = full_batch.len() as u64;
                    work_tx
                        .send((sent_seq, index, full_batch))
                        .map_err(|_| anyhow::anyhow!("the render workers stopped"))?;
                    sent_seq += 1;
                    index += n;
                    while let Ok((seq, b, r)) = done_rx.try_recv() {
                        pending.insert(seq, (b, r));
                    }
                    drain(&mut pending, &mut next_seq)?;
                }
                Ok(())
            });
            if scan.is_ok() && !batch.is_empty() {
                let _ = work_tx.send((sent_seq, index, std::mem::take(&mut batch)));
                sent_seq += 1;
            }
            drop(work_tx);
            let scan = scan?;
            while next_seq < sent_seq {
                match done_rx.recv() {
                    Ok((seq, b, r)) => {
                        pending.insert(seq, (b, r));
                        drain(&mut pending, &mut next_seq)?;
                    }
                    Err(_) => anyhow::bail!("a render worker stopped before finishing"),
                }
            }
            Ok(scan)
        })
    }

    /// Prepares one row in preflight: the whole message, or only checked.
    fn check_one(&self, r: &Recipient, full: bool) -> Result<Checked> {
        if full {
            return self
                .prepare(r, Delivery::Notice, self.date)
                .map(|p| Checked::Full(Box::new(p)));
        }
        crate::message::address(r)?;
        self.templates.check(r).map(Checked::Subject)
    }
}

/// Books one rendered row into the preflight.
fn take(
    recipient: &Recipient,
    result: Result<Checked>,
    pre: &mut Preflight,
    each: &mut impl FnMut(&Recipient, Option<&Prepared>) -> Result<()>,
) -> Result<()> {
    match result {
        Ok(checked) => {
            pre.rendered += 1;
            let (subject, prepared) = match &checked {
                Checked::Full(p) => (&p.rendered.subject, Some(&**p)),
                Checked::Subject(s) => (s, None),
            };
            if pre.first_subject.is_none() {
                pre.first_subject = Some(subject.clone());
            }
            each(recipient, prepared)?;
        }
        Err(e) => {
            let entry = pre
                .render_errors
                .entry(format!("{e:#}"))
                .or_insert((recipient.line, 0));
            entry.1 += 1;
        }
    }
    Ok(())
}

/// How urgently the pipeline's threads run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Priority {
    /// As the rest of the process.
    Normal,
    /// Behind the rest (nice 10): `send` builds messages ahead on these threads, and the
    /// threads that talk to the relay and write the journal must not wait for a core each
    /// time a reply comes in.
    Background,
}

impl Priority {
    /// Sets the calling thread's priority (on Linux a thread's nice value is its own).
    fn apply(self) {
        if self == Priority::Background {
            // SAFETY: gettid and setpriority take and return plain integers; a failure only
            // leaves the thread at its normal priority.
            unsafe {
                let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
                libc::setpriority(libc::PRIO_PROCESS, tid, 10);
            }
        }
    }
}
