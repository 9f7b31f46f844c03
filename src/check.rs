//! `check`: everything `send` does before its first message, without sending: config, CSV,
//! templates, every message rendered, the journal readable and free, the secret, then a
//! connection and login to the relay. One line per step; exit 0 only if a send would start.

use anyhow::anyhow;

use crate::config::{AuthMethod, Config, Security};
use crate::exit_codes::ExitCode;
use crate::journal::{Journal, State};
use crate::mailing::Mailing;
use crate::output::Output;
use crate::{Fail, relay};

fn line(out: &Output, step: &str, ok: bool, text: &str) {
    let mark = if ok { "ok  " } else { "FAIL" };
    out.summary(&format!("{step:<10} {mark} {text}"));
}

/// Runs `check`.
pub fn run(config_path: &std::path::Path, out: &Output) -> Result<ExitCode, Fail> {
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
    let mut input_ok = invalid == 0;
    let journal_path = &mailing.config.journal.path;
    match Journal::read(journal_path) {
        Ok(j) => {
            let sent = j
                .recipients
                .values()
                .filter(|r| r.state == State::Sent)
                .count();
            let locked = std::fs::OpenOptions::new()
                .write(true)
                .open(crate::journal::lock_path(journal_path))
                .ok()
                .map(|f| f.try_lock().is_err())
                .unwrap_or(false);
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
        }
        Err(e) => {
            line(out, "journal", false, &e.to_string());
            input_ok = false;
        }
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
            runtime.block_on(conn.quit());
            let security = match smtp.security {
                Security::StartTls => "STARTTLS",
                Security::Tls => "TLS",
                Security::None => "unencrypted",
            };
            let login = match (&smtp.auth, &smtp.username) {
                (AuthMethod::None, _) => "no login".to_string(),
                (_, Some(u)) => format!("logged in as {u}"),
                _ => "logged in".to_string(),
            };
            line(
                out,
                "relay",
                true,
                &format!("{} ({security}, {login})", settings.relay()),
            );
        }
        Err(e) => {
            line(out, "relay", false, &e.to_string());
            return Err(Fail::Fatal(anyhow!("the relay is not usable")));
        }
    }
    if !input_ok {
        return Err(Fail::Input(anyhow!(
            "fix the problems above before sending"
        )));
    }
    out.info("a send would start");
    Ok(ExitCode::Success)
}
