//! `send` and `retry`: preflight, confirmation, then delivery under the rate limit with
//! every attempt and outcome in the journal.
//!
//! `retry` is a choice of recipients, not a second sender: both go through `deliver`.
//! This file is the command (who the run takes on, preflight, the question, the run's
//! journal lines); `engine` delivers, `queue` decides what comes next after each outcome
//! (retries, relay pushback), `report` says what the run did and its exit code.

mod engine;
mod queue;
mod report;
pub mod window;

use std::io::{BufRead, IsTerminal, Write};
use std::sync::Arc;
use std::time::SystemTime;

use anyhow::anyhow;

use crate::cli::{RetryArgs, SendArgs};
use crate::config::{AuthMethod, Config};
use crate::exit_codes::ExitCode;
use crate::journal::{self, Event, Journal, State, Writer};
use crate::mailing::Mailing;
use crate::output::Output;
use crate::progress::Progress;
use crate::relay::{self, ConnectError, Connection, Settings, connect_failure, relay_settings};
use crate::{Fail, ResultExt};
use engine::Engine;
use queue::{MAX_RELAY_PUSHBACKS, pause_for};
use report::Stop;

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
        /// The test address, checked and parsed once for the run.
        to: lettre::Address,
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
            let to = to.parse::<lettre::Address>().map_err(|e| {
                Fail::Input(anyhow!("--test-to: {to:?} is not a valid address ({e})"))
            })?;
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

/// Whether the CSV holds another address for this recipient than the journal last used.
fn corrected(journal: &Journal, recipient: &crate::recipients::Recipient) -> bool {
    journal
        .recipients
        .get(&recipient.key)
        .is_some_and(|r| !r.email.eq_ignore_ascii_case(&recipient.email))
}

/// What preflight chose.
#[derive(Debug, Default)]
struct Chosen {
    count: u64,
    already_sent: u64,
    /// Left out: never tried (`retry` does not start them).
    pending: u64,
    /// Left out: failed permanently or bounced, address not corrected.
    permanent: u64,
}

/// What a run that takes on nobody says: why nobody, and which command would.
fn nothing_to_do(selection: &Selection, chosen: &Chosen, rendered: u64) -> String {
    if chosen.already_sent == rendered {
        return format!(
            "nothing to do: all {rendered} recipients are already sent; see `utskick status`"
        );
    }
    let mut left = Vec::new();
    if chosen.pending > 0 {
        left.push(format!(
            "{} pending (never tried: `utskick send` sends them)",
            chosen.pending
        ));
    }
    if chosen.permanent > 0 {
        left.push(format!(
            "{} failed permanently or bounced (correct their addresses in the CSV, then `utskick retry --permanent`)",
            chosen.permanent
        ));
    }
    let what = match selection {
        Selection::Retry { .. } => {
            "nothing to do (retry takes only failed-transient and unknown recipients)"
        }
        _ => "nothing to do",
    };
    format!(
        "{what}: {} of {rendered} sent{}{}; see `utskick status`",
        chosen.already_sent,
        if left.is_empty() { "" } else { ", " },
        left.join(", ")
    )
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
    let mut chosen = Chosen::default();
    let limit = plan.limit.unwrap_or(u64::MAX);
    let pre = mailing.preflight(0, |recipient, _| {
        let state = journal.state(&recipient.key);
        if state == State::Sent && !plan.selection.is_test() {
            chosen.already_sent += 1;
        }
        if plan.selection.takes(state, corrected(&journal, recipient)) {
            if chosen.count < limit {
                chosen.count += 1;
            }
        } else if !plan.selection.is_test() {
            match state {
                State::Pending => chosen.pending += 1,
                State::FailedPermanent | State::Bounced => chosen.permanent += 1,
                _ => {}
            }
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
            "{invalid} of {} rows cannot be sent; nothing was sent: {}",
            pre.scan.rows,
            pre.what_to_do()
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
        out.summary(&nothing_to_do(&plan.selection, &chosen, pre.rendered));
        let _ = writer.close();
        return Ok(ExitCode::Success);
    }

    crate::deliverability::signing::for_config(&mailing.config).input()?;
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
        "connected to {} ({}){}",
        settings.relay(),
        first.met(),
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
    // Long mailings: how long it takes and when it ends (relay::profile).
    let (estimate, too_much) = if plan.selection.is_test() {
        (None, None)
    } else {
        let (line, warning) =
            crate::relay::profile::for_run(&mailing.config, &journal, chosen.count);
        (Some(line), warning)
    };
    let question = match &estimate {
        Some(e) => format!("{question}\n  estimate: {e}"),
        None => question,
    };
    if let Some(w) = &too_much {
        out.warn(w);
    }
    if plan.yes
        && let Some(e) = &estimate
    {
        out.info(&format!("estimate: {e}"));
    }
    if !plan.yes
        && !confirm(
            &crate::deliverability::confirmation(&question, &mailing.config),
            out,
        )?
    {
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
    let progress = Progress::new(chosen.count, out).with_rate_per(mailing.config.sending.rate.per);
    let engine = Engine {
        date: SystemTime::now(),
        mailing: mailing.clone(),
        writer: writer.clone(),
        settings,
        run: run.clone(),
        plan: plan.clone(),
        journal: journal.clone(),
        archive: mailing.config.journal.archive.clone(),
        streak: Default::default(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_to_do_says_which_command_would() {
        let retry = Selection::Retry { permanent: false };
        let all_sent = Chosen {
            already_sent: 12,
            ..Chosen::default()
        };
        assert_eq!(
            nothing_to_do(&retry, &all_sent, 12),
            "nothing to do: all 12 recipients are already sent; see `utskick status`"
        );
        let fresh = Chosen {
            pending: 12,
            ..Chosen::default()
        };
        let line = nothing_to_do(&retry, &fresh, 12);
        assert!(
            line.contains("retry takes only failed-transient and unknown"),
            "{line}"
        );
        assert!(
            line.contains("12 pending (never tried: `utskick send` sends them)"),
            "{line}"
        );
        let bounced = Chosen {
            already_sent: 11,
            permanent: 1,
            ..Chosen::default()
        };
        let line = nothing_to_do(&Selection::Send, &bounced, 12);
        assert!(
            line.starts_with("nothing to do: 11 of 12 sent, 1 failed"),
            "{line}"
        );
        assert!(line.contains("`utskick retry --permanent`"), "{line}");
    }

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
}
