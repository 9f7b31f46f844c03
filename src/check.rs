//! `check`: everything `send` does before its first message, without sending: config, CSV,
//! templates, every message rendered, the links in them, the journal readable and free, the
//! secret, then a connection and login to the relay, and what Gmail and Outlook.com will
//! make of the From domain's SPF, DKIM and DMARC records. One line per step; exit 0 only
//! if a send would start (deliverability gaps are warnings: they do not stop a send).
//!
//! `check --verify FILE.eml` instead reports on a test message as it was received.

use anyhow::anyhow;

use crate::cli::CheckArgs;
use crate::config::{AuthMethod, Config, Security};
use crate::deliverability::{self, Finding, Level};
use crate::exit_codes::ExitCode;
use crate::journal::{Journal, State};
use crate::mailing::Mailing;
use crate::output::Output;
use crate::{Fail, relay};

fn line(out: &Output, step: &str, ok: bool, text: &str) {
    let mark = if ok { "ok  " } else { "FAIL" };
    out.summary(&format!("{step:<10} {mark} {text}"));
}

/// A warning: the step passes, but something should be mended.
fn warn_line(out: &Output, step: &str, text: &str) {
    out.summary(&format!("{step:<10} warn {text}"));
}

/// A deliverability finding, with the record to add on the next line.
fn finding(out: &Output, f: &Finding) {
    match f.level {
        Level::Ok => line(out, f.topic, true, &f.text),
        Level::Warn => warn_line(out, f.topic, &f.text),
    }
    if let Some(fix) = &f.fix {
        out.summary(&format!("{:<15} {fix}", ""));
    }
}

/// Runs `check` (or, with `--verify`, the report on a received test message).
pub fn run(
    config_path: &std::path::Path,
    args: &CheckArgs,
    out: &Output,
) -> Result<ExitCode, Fail> {
    let config = match Config::load(config_path) {
        Ok(c) => c,
        Err(e) => {
            line(out, "config", false, &format!("{e:#}").replace('\n', "; "));
            return Err(Fail::Input(anyhow!(
                "the config is not usable; nothing else was checked"
            )));
        }
    };
    line(
        out,
        "config",
        true,
        &format!("{} (campaign {})", config_path.display(), config.campaign),
    );
    if let Some(file) = &args.verify {
        return verify(&config, file, out);
    }
    let dkim = match deliverability::Settings::from_config(&config) {
        Ok(s) => s,
        Err(e) => {
            line(out, "dkim", false, &format!("{e:#}"));
            return Err(Fail::Input(anyhow!(
                "the DKIM key is not usable: no message can be built"
            )));
        }
    };
    let mailing = match Mailing::open(config.clone()) {
        Ok(m) => m,
        Err(e) => {
            line(out, "inputs", false, &e.to_string().replace('\n', "; "));
            return Err(Fail::Input(anyhow!(
                "the CSV or the templates are not usable"
            )));
        }
    };
    line(
        out,
        "templates",
        true,
        &format!(
            "{} ({}, sha256 {})",
            mailing.templates.dir.display(),
            if mailing.templates.has_html() {
                "text and HTML"
            } else {
                "text only"
            },
            &mailing.templates.sha256[..12]
        ),
    );
    let pre = mailing.preflight(0, |_, _| Ok(()))?;
    let invalid = pre.invalid();
    line(
        out,
        "csv",
        invalid == 0,
        &format!(
            "{}: {} rows, {} valid, {} invalid, {} warning(s) ({}, delimiter {:?})",
            mailing.csv.shown,
            pre.scan.rows,
            pre.rendered,
            invalid,
            pre.scan.warnings.len(),
            mailing.csv.encoding,
            mailing.csv.delimiter as char
        ),
    );
    for e in pre.error_lines() {
        out.error_line(&format!("           {e}"));
    }
    line(
        out,
        "messages",
        pre.render_errors.is_empty(),
        &format!("{} rendered", pre.rendered),
    );
    let allowed = deliverability::links::allowed(&config.sender.domain, &config.check.link_domains);
    let links = deliverability::links::preflight_warnings(&config);
    if links.is_empty() {
        line(
            out,
            "links",
            true,
            &format!("every link goes to {}", allowed.join(", ")),
        );
    }
    for w in &links {
        warn_line(out, "links", w);
    }
    let mut input_ok = invalid == 0;
    let journal_path = &mailing.config.journal.path;
    match Journal::read(journal_path) {
        Ok(j) => {
            let sent = j
                .recipients
                .values()
                .filter(|r| r.state == State::Sent)
                .count();
            let locked = crate::journal::is_locked(journal_path);
            line(
                out,
                "journal",
                !locked,
                &if j.events == 0 {
                    format!("{} (new)", journal_path.display())
                } else {
                    format!(
                        "{}: {} events, {} runs, {sent} sent{}",
                        journal_path.display(),
                        j.events,
                        j.runs.len(),
                        if locked {
                            "; LOCKED by a running utskick"
                        } else {
                            ""
                        }
                    )
                },
            );
            if locked {
                input_ok = false;
            }
            // Long mailings: what a send of those not yet sent would take (relay::profile).
            let left = pre.rendered.saturating_sub(sent as u64);
            let (estimate, too_much) = crate::relay::profile::for_run(&mailing.config, &j, left);
            line(out, "estimate", true, &estimate);
            if let Some(w) = too_much {
                out.warn(&w);
            }
        }
        Err(e) => {
            line(out, "journal", false, &e.to_string());
            input_ok = false;
        }
    }
    if let Some(dir) = &mailing.config.journal.archive {
        let (ok, text) = crate::archive::check(dir);
        line(out, "archive", ok, &text);
        input_ok &= ok;
    }
    let settings = match relay::relay_settings(&mailing.config) {
        Ok(s) => {
            if mailing.config.smtp.auth != AuthMethod::None {
                line(out, "secret", true, "read (not shown)");
            }
            s
        }
        Err(e) => {
            line(out, "secret", false, &e.to_string());
            return Err(Fail::Input(anyhow!("no secret for the relay")));
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Fail::Fatal(anyhow!("cannot start the async runtime: {e}")))?;
    let smtp = &mailing.config.smtp;
    match runtime.block_on(relay::connect(&settings)) {
        Ok(conn) => {
            let met = conn.met().clone();
            runtime.block_on(conn.quit());
            let security = match smtp.security {
                Security::StartTls => "STARTTLS",
                Security::Tls => "TLS",
                Security::None => "unencrypted",
            };
            let login = match (&smtp.auth, &smtp.username) {
                (AuthMethod::None, _) => "no login".to_string(),
                (_, Some(u)) => format!("login as {u}"),
                _ => "logged in".to_string(),
            };
            // A login proves only that something answers on host and port: who it is, the
            // operator can tell from the greeting and EHLO name.
            line(
                out,
                "relay",
                true,
                &format!("{} ({met}, {security}, {login})", settings.relay()),
            );
        }
        Err(e) => {
            line(out, "relay", false, &e.to_string());
            return Err(Fail::Fatal(anyhow!("the relay is not usable")));
        }
    }
    for f in runtime.block_on(deliverability::assess(&mailing.config, &dkim)) {
        finding(out, &f);
    }
    if !input_ok {
        return Err(Fail::Input(anyhow!(
            "fix the problems above before sending"
        )));
    }
    out.info("a send would start");
    Ok(ExitCode::Success)
}

/// `check --verify FILE.eml`: exit 0 when the message's DKIM signatures verify and the
/// receiver reported no failure, 1 otherwise (the lines say which).
fn verify(config: &Config, file: &std::path::Path, out: &Output) -> Result<ExitCode, Fail> {
    let bytes = std::fs::read(file)
        .map_err(|e| Fail::Input(anyhow!("cannot read {}: {e}", file.display())))?;
    let auth = deliverability::dns::authenticator(config.check.dns_server).map_err(Fail::Fatal)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Fail::Fatal(anyhow!("cannot start the async runtime: {e}")))?;
    let findings = runtime
        .block_on(async {
            tokio::time::timeout(
                deliverability::DEADLINE,
                deliverability::verify::verify(&auth, &bytes),
            )
            .await
        })
        .map_err(|_| {
            Fail::Fatal(anyhow!(
                "the DNS look-ups for {} took too long",
                file.display()
            ))
        })?
        .map_err(|e| Fail::Input(anyhow!("{}: {e}", file.display())))?;
    for f in &findings {
        finding(out, f);
    }
    if findings.iter().any(|f| f.level == Level::Warn) {
        return Err(Fail::Fatal(anyhow!(
            "{} does not pass everything Gmail and Outlook.com require (see above)",
            file.display()
        )));
    }
    out.info(&format!(
        "{}: DKIM verifies, and the receiver reports no failure",
        file.display()
    ));
    Ok(ExitCode::Success)
}
