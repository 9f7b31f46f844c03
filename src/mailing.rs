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

    /// Reads every row and renders every message; `each` sees every recipient whose message
    /// built, in CSV order, with its message.
    pub fn preflight(
        &self,
        mut each: impl FnMut(&Recipient, &Rendered, &Built) -> Result<()>,
    ) -> Result<Preflight, Fail> {
        let mut pre = Preflight::default();
        let date = SystemTime::now();
        let scan = self
            .csv
            .scan(|recipient| {
                match self.prepare(&recipient, date) {
                    Ok((rendered, built)) => {
                        pre.rendered += 1;
                        if pre.first_subject.is_none() {
                            pre.first_subject = Some(rendered.subject.clone());
                        }
                        each(&recipient, &rendered, &built)?;
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
            })
            .fatal()?;
        pre.scan = scan;
        Ok(pre)
    }

    /// Calls `f` with every recipient that preflight accepted, in CSV order, without
    /// rendering (the caller renders the ones it needs).
    pub fn recipients(&self, mut f: impl FnMut(Recipient) -> Result<()>) -> Result<()> {
        self.csv.scan(|r| f(r)).map(|_| ())
    }
}
