//! One mailing: the checked config, the opened CSV and the compiled templates, and the
//! preflight that `preview`, `send`, `retry` and `check` all share up to the transport.
//!
//! Preflight reads every row and renders every message before anything is written or sent,
//! so an invalid row or a template that does not fit the CSV stops the run with exit 2 and
//! the full list of problems, never half-way through a mailing.

use std::collections::BTreeMap;
use std::time::SystemTime;

use anyhow::Result;

use crate::config::Config;
use crate::message::{self, Built};
use crate::recipients::{CsvSource, Diagnostic, Recipient, Scan};
use crate::render::{Rendered, Templates};
use crate::{Fail, ResultExt};

/// Recipients rendered together, split over the cores.
const BATCH: usize = 1024;

/// What rendering one recipient in preflight kept.
enum Checked {
    /// The whole notice.
    Full(Rendered),
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
        if self.scan.invalid > shown_errors && shown_errors >= 10_000 {
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
            }),
            (Err(a), Err(b)) => Err(Fail::Input(anyhow::anyhow!("{a}\n{b}"))),
            (Err(e), _) | (_, Err(e)) => Err(e),
        }
    }

    /// Renders and builds one recipient's message.
    pub fn prepare(&self, recipient: &Recipient, date: SystemTime) -> Result<(Rendered, Built)> {
        let rendered = self.templates.render(recipient)?;
        let id = message::message_id(
            &self.config.campaign,
            &recipient.key,
            &self.config.sender.domain,
        );
        let built = message::build(&self.config, recipient, &rendered, &id, None, date)?;
        Ok((rendered, built))
    }

    /// Renders one recipient's notice and checks that its address can go on the envelope;
    /// the MIME message is built only for what is written or sent.
    pub fn render_checked(&self, recipient: &Recipient) -> Result<Rendered> {
        recipient
            .email
            .parse::<lettre::Address>()
            .map_err(|e| anyhow::anyhow!("{:?} is not an address the mail library accepts ({e})", recipient.email))?;
        self.templates.render(recipient)
    }

    /// Reads every row and renders every message, on all cores; `each` sees every
    /// recipient whose message rendered, in CSV order, with its text for the first `full`
    /// of them (the rest are rendered to check them, and their text dropped).
    pub fn preflight(
        &self,
        full: u64,
        mut each: impl FnMut(&Recipient, Option<&Rendered>) -> Result<()>,
    ) -> Result<Preflight, Fail> {
        let mut pre = Preflight::default();
        let mut batch: Vec<Recipient> = Vec::with_capacity(BATCH);
        let mut index = 0u64;
        let scan = self
            .csv
            .scan(|recipient| {
                batch.push(recipient);
                if batch.len() == BATCH {
                    self.flush(&mut batch, &mut index, full, &mut pre, &mut each)?;
                }
                Ok(())
            })
            .fatal()?;
        self.flush(&mut batch, &mut index, full, &mut pre, &mut each)
            .fatal()?;
        pre.scan = scan;
        Ok(pre)
    }

    fn flush(
        &self,
        batch: &mut Vec<Recipient>,
        index: &mut u64,
        full: u64,
        pre: &mut Preflight,
        each: &mut impl FnMut(&Recipient, Option<&Rendered>) -> Result<()>,
    ) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let start = *index;
        let work = |offset: usize, part: &[Recipient]| -> Vec<Result<Checked>> {
            part.iter()
                .enumerate()
                .map(|(i, r)| {
                    if start + ((offset + i) as u64) < full {
                        self.render_checked(r).map(Checked::Full)
                    } else {
                        r.email
                            .parse::<lettre::Address>()
                            .map_err(|e| anyhow::anyhow!("{:?} is not an address the mail library accepts ({e})", r.email))?;
                        self.templates.check(r).map(Checked::Subject)
                    }
                })
                .collect()
        };
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(8);
        let results: Vec<Result<Checked>> = if threads < 2 || batch.len() < 64 {
            work(0, batch)
        } else {
            let chunk = batch.len().div_ceil(threads);
            std::thread::scope(|s| {
                let handles: Vec<_> = batch
                    .chunks(chunk)
                    .enumerate()
                    .map(|(n, part)| s.spawn(move || work(n * chunk, part)))
                    .collect();
                handles
                    .into_iter()
                    .flat_map(|h| {
                        h.join()
                            .unwrap_or_else(|_| vec![Err(anyhow::anyhow!("a render thread panicked"))])
                    })
                    .collect()
            })
        };
        for (recipient, result) in batch.iter().zip(results) {
            *index += 1;
            match result {
                Ok(checked) => {
                    pre.rendered += 1;
                    let (subject, rendered) = match &checked {
                        Checked::Full(r) => (&r.subject, Some(r)),
                        Checked::Subject(s) => (s, None),
                    };
                    if pre.first_subject.is_none() {
                        pre.first_subject = Some(subject.clone());
                    }
                    each(recipient, rendered)?;
                }
                Err(e) => {
                    let entry = pre
                        .render_errors
                        .entry(format!("{e:#}"))
                        .or_insert((recipient.line, 0));
                    entry.1 += 1;
                }
            }
        }
        batch.clear();
        Ok(())
    }

    /// Calls `f` with every recipient that preflight accepted, in CSV order, without
    /// rendering (the caller renders the ones it needs).
    pub fn recipients(&self, mut f: impl FnMut(Recipient) -> Result<()>) -> Result<()> {
        self.csv.scan(&mut f).map(|_| ())
    }
}
