//! `status`: where the mailing stands, from the journal against the CSV.
//!
//! Counts per state, a table of everyone not sent, the runs; `--failed-csv` writes the
//! recipients not delivered with all their columns for notification by letter (GDPR art.
//! 34(3)(c)); `--report` writes a Markdown record for the incident file with counts only.
//! It never sends and never writes the journal: exit 0 whatever the states, 2 on a broken
//! journal.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write;
use std::path::Path;

use anyhow::{Result, anyhow};
use serde::Serialize;

use crate::cli::StatusArgs;
use crate::config::Config;
use crate::exit_codes::ExitCode;
use crate::journal::{Journal, Run, State};
use crate::output::Output;
use crate::recipients::{CsvSource, Encoding};
use crate::render::Templates;
use crate::{Fail, ResultExt, private};

/// One recipient not sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NotSent {
    /// Key.
    pub key: String,
    /// Address.
    pub email: String,
    /// State (`invalid` for a row that cannot be sent at all).
    pub state: String,
    /// Latest reply code.
    pub code: Option<u16>,
    /// Latest reply or reason.
    pub reason: String,
    /// CSV line.
    pub line: u64,
}

/// The whole picture.
#[derive(Debug, Serialize)]
pub struct Status {
    /// Campaign.
    pub campaign: String,
    /// Journal path.
    pub journal: String,
    /// Per state (plus `invalid`), over the CSV's recipients.
    pub counts: BTreeMap<String, u64>,
    /// Recipients in the CSV.
    pub total: u64,
    /// Everyone not sent, in CSV order.
    pub not_sent: Vec<NotSent>,
    /// Keys the journal knows that the CSV no longer has.
    pub not_in_csv: Vec<String>,
    /// The runs.
    pub runs: Vec<Run>,
    /// Test deliveries accepted.
    pub test_sent: u64,
    /// Delay reports booked.
    pub delays: u64,
    /// Whether the journal ends in a torn line (a crash mid-write).
    pub torn_tail: bool,
    /// With `[recipients] language_column`: per language the rows get, the counts per
    /// state (empty without one).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub by_language: BTreeMap<String, BTreeMap<String, u64>>,
}

/// Reads the journal and the CSV into a `Status`.
pub fn gather(config: &Config) -> Result<(Status, CsvSource, Journal), Fail> {
    // The journal is read on its own thread while this one reads the CSV: on a large
    // mailing they take about as long as each other.
    let (journal, scanned) = std::thread::scope(|scope| {
        let reading = scope.spawn(|| Journal::read(&config.journal.path));
        let scanned = CsvSource::open(&config.recipients).and_then(|csv| {
            let mut rows = Vec::new();
            let mut languages = Vec::new();
            let scan = match languages_of_rows(config) {
                // The language a row gets needs its cells and the templates there are.
                Some(templates) => csv.scan(|r| {
                    languages.push(templates.language_of(&r));
                    rows.push((r.key, r.email, r.line));
                    Ok(())
                })?,
                None => csv.scan_keys(|r| {
                    rows.push((r.key, r.email, r.line));
                    Ok(())
                })?,
            };
            Ok((csv, rows, languages, scan))
        });
        let journal = reading
            .join()
            .unwrap_or_else(|_| Err(Fail::Fatal(anyhow::anyhow!("the journal reader stopped"))));
        (journal, scanned)
    });
    let journal = journal?;
    let (csv, rows, languages, scan) = scanned.input()?;
    let invalid: Vec<(u64, String)> = scan
        .errors
        .iter()
        .map(|d| (d.line, d.to_string()))
        .collect();
    let tally = tally(rows, &languages, scan.invalid, invalid, &journal);
    let status = Status {
        campaign: config.campaign.clone(),
        journal: config.journal.path.display().to_string(),
        counts: tally.counts,
        total: tally.total,
        not_sent: tally.not_sent,
        not_in_csv: tally.not_in_csv,
        runs: journal.runs.clone(),
        test_sent: journal.test_sent,
        delays: journal.delays,
        torn_tail: journal.torn_tail,
        by_language: tally.by_language,
    };
    Ok((status, csv, journal))
}

/// The templates that tell each row's language, where the config names a language column
/// (templates that do not load leave status without the per-language counts: status must
/// still show where the mailing stands).
fn languages_of_rows(config: &Config) -> Option<Templates> {
    config.recipients.language_column.as_ref()?;
    Templates::load(config).ok()
}

/// The CSV's recipients counted by their journal state.
#[derive(Debug, PartialEq, Eq)]
struct Tally {
    counts: BTreeMap<String, u64>,
    by_language: BTreeMap<String, BTreeMap<String, u64>>,
    total: u64,
    not_sent: Vec<NotSent>,
    not_in_csv: Vec<String>,
}

/// Counts the CSV's rows (key, email, line; in CSV order) by their state in the journal:
/// every state counted, even at 0; rows the scan refused (`invalid` of them, `errors` as
/// line and message) counted as `invalid` and listed among the not sent, in line order;
/// the keys the journal knows but the CSV no longer has, sorted. `languages`, where not
/// empty, holds each row's language, in the same order: the counts per language too.
fn tally(
    rows: Vec<(String, String, u64)>,
    languages: &[&str],
    invalid: u64,
    errors: Vec<(u64, String)>,
    journal: &Journal,
) -> Tally {
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    for s in State::ALL {
        counts.insert(s.name().to_string(), 0);
    }
    let mut not_sent = Vec::new();
    let mut seen: HashSet<String, ahash::RandomState> = HashSet::default();
    seen.reserve(rows.len());
    let mut total = 0u64;
    let mut by_language: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    for (i, (key, email, line)) in rows.into_iter().enumerate() {
        total += 1;
        let entry = journal.recipients.get(&key);
        let state = entry.map_or(State::Pending, |j| j.state);
        if let Some(n) = counts.get_mut(state.name()) {
            *n += 1;
        }
        if let Some(language) = languages.get(i) {
            *by_language
                .entry((*language).to_string())
                .or_default()
                .entry(state.name().to_string())
                .or_default() += 1;
        }
        if state != State::Sent {
            not_sent.push(NotSent {
                key: key.clone(),
                email,
                state: state.name().to_string(),
                code: entry.and_then(|j| j.code),
                reason: entry.map(|j| j.why()).unwrap_or_default(),
                line,
            });
        }
        seen.insert(key);
    }
    if invalid > 0 {
        counts.insert("invalid".into(), invalid);
        total += invalid;
        for (line, reason) in errors {
            not_sent.push(NotSent {
                key: String::new(),
                email: String::new(),
                state: "invalid".into(),
                code: None,
                reason,
                line,
            });
        }
        not_sent.sort_by_key(|n| n.line);
    }
    let mut not_in_csv: Vec<String> = journal
        .recipients
        .keys()
        .filter(|k| !seen.contains(*k))
        .cloned()
        .collect();
    not_in_csv.sort();
    Tally {
        counts,
        by_language,
        total,
        not_sent,
        not_in_csv,
    }
}

/// Runs `status`.
pub fn run(config: Config, args: &StatusArgs, out: &Output) -> Result<ExitCode, Fail> {
    let (status, csv, journal) = gather(&config)?;
    if let Some(path) = &args.failed_csv {
        let n = write_failed_csv(path, &csv, &journal).fatal()?;
        out.info(&format!(
            "wrote {n} recipients not delivered to {}",
            path.display()
        ));
    }
    if let Some(path) = &args.report {
        let md = report(&config, &status);
        if let Some(parent) = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty() && !p.exists())
        {
            private::create_dir(parent).fatal()?;
        }
        // The record of the mailing: 0600 whatever the umask, never through a link.
        private::write_file(path, md.as_bytes()).fatal()?;
        out.info(&format!("wrote the mailing's record to {}", path.display()));
    }
    if args.json {
        let text = serde_json::to_string_pretty(&status)
            .map_err(|e| Fail::Fatal(anyhow!("cannot encode status: {e}")))?;
        out.summary(&text);
    } else {
        out.summary(&table(&status));
    }
    // A large journal is half a million small allocations: the process is about to end,
    // and freeing them one by one would take longer than reading them did.
    std::mem::forget(journal);
    std::mem::forget(status);
    Ok(ExitCode::Success)
}

/// A run as shown in the table and the report.
fn run_cells(r: &Run) -> [String; 9] {
    [
        r.started.clone(),
        r.ended.clone(),
        format!("{}{}", r.command, if r.test { " (test)" } else { "" }),
        r.relay.clone(),
        r.sent.to_string(),
        r.failed.to_string(),
        short(&r.templates_sha256).to_string(),
        short(&r.recipients_sha256).to_string(),
        r.outcome
            .clone()
            .unwrap_or_else(|| "no end recorded (killed?)".into()),
    ]
}

fn short(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}

/// The text shown without `--json`.
pub fn table(s: &Status) -> String {
    let mut t = String::new();
    t.push_str(&format!(
        "campaign {}  journal {}\n\n",
        s.campaign, s.journal
    ));
    let mut order: Vec<String> = State::ALL.iter().map(|s| s.name().to_string()).collect();
    if s.counts.contains_key("invalid") {
        order.push("invalid".into());
    }
    for name in &order {
        t.push_str(&format!(
            "  {:<17} {:>8}\n",
            name,
            s.counts.get(name).copied().unwrap_or(0)
        ));
    }
    t.push_str(&format!("  {:<17} {:>8}\n", "total", s.total));
    for (language, counts) in &s.by_language {
        t.push_str(&format!("  language {language:<8} {}\n", per_state(counts)));
    }
    if s.torn_tail {
        t.push_str("\nnote: the journal ends in a torn line (a crash in mid-write); the next send cuts it\n");
    }
    if !s.not_sent.is_empty() {
        t.push_str(&format!("\nnot sent ({}):\n", s.not_sent.len()));
        t.push_str(&format!(
            "  {:<12} {:<32} {:<17} {:>4}  {}\n",
            "key", "email", "state", "code", "reply"
        ));
        for n in &s.not_sent {
            let code = n.code.map(|c| c.to_string()).unwrap_or_default();
            let reason: String = n.reason.chars().take(90).collect();
            t.push_str(&format!(
                "  {:<12} {:<32} {:<17} {:>4}  {}\n",
                n.key, n.email, n.state, code, reason
            ));
        }
    }
    if !s.not_in_csv.is_empty() {
        t.push_str(&format!(
            "\nin the journal but no longer in the CSV ({}): {}\n",
            s.not_in_csv.len(),
            s.not_in_csv.join(", ")
        ));
    }
    if !s.runs.is_empty() {
        t.push_str("\nruns:\n");
        for r in &s.runs {
            let [
                started,
                ended,
                command,
                relay,
                sent,
                failed,
                templates,
                csv,
                outcome,
            ] = run_cells(r);
            t.push_str(&format!(
                "  {started} .. {ended}  {command}  relay {relay}  sent {sent}  failed {failed}  templates {templates}  csv {csv}  {outcome}\n"
            ));
        }
    }
    if s.test_sent > 0 {
        t.push_str(&format!("\ntest deliveries: {}\n", s.test_sent));
    }
    t
}

/// One language's counts on a line: `sent 9, pending 1` (states with none left out).
fn per_state(counts: &BTreeMap<String, u64>) -> String {
    let mut parts = Vec::new();
    for state in State::ALL {
        if let Some(n) = counts.get(state.name()).filter(|n| **n > 0) {
            parts.push(format!("{} {n}", state.name()));
        }
    }
    parts.join(", ")
}

/// Writes every recipient not `sent` with all CSV columns plus `state` and `reason`; UTF-8
/// with BOM and the input's delimiter, 0600. Returns how many.
pub fn write_failed_csv(path: &Path, csv: &CsvSource, journal: &Journal) -> Result<u64> {
    if let Some(parent) = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty() && !p.exists())
    {
        private::create_dir(parent)?;
    }
    let mut file = private::create_file(path)?;
    file.write_all(b"\xEF\xBB\xBF")?;
    let mut w = csv::WriterBuilder::new()
        .delimiter(csv.delimiter)
        .from_writer(file);
    let mut header = csv.headers.clone();
    header.push("state".into());
    header.push("reason".into());
    w.write_record(&header)?;
    // Rows that scan rejects get state `invalid`; the rest their journal state.
    let mut invalid: HashMap<u64, String> = HashMap::new();
    csv.scan(|_| Ok(()))?.errors.into_iter().for_each(|d| {
        invalid.entry(d.line).or_insert(d.message);
    });
    let mut n = 0u64;
    csv.raw_rows(|line, record| {
        let (state, reason) = if let Some(msg) = invalid.get(&line) {
            ("invalid".to_string(), msg.clone())
        } else {
            let key = csv.raw_key(record).unwrap_or_default();
            let state = journal.state(&key);
            if state == State::Sent {
                return Ok(());
            }
            let reason = journal
                .recipients
                .get(&key)
                .map(|r| r.why())
                .unwrap_or_else(|| "never attempted".into());
            (state.name().to_string(), reason)
        };
        let mut row: Vec<String> = record.iter().map(str::to_string).collect();
        row.resize(csv.headers.len(), String::new());
        row.push(state);
        row.push(reason);
        w.write_record(&row)?;
        n += 1;
        Ok(())
    })?;
    w.flush()?;
    let _ = csv.encoding == Encoding::Windows1252;
    Ok(n)
}

/// What the record of a mailing says beyond the counts: taken from the config and the
/// templates by `report`, given directly by the tests.
struct Facts {
    campaign: String,
    subject: String,
    templates_sha256: String,
    sender: String,
}

/// The Markdown record of the mailing, in Swedish (it goes in the incident file), with
/// counts only: no address, name or key.
pub fn report(config: &Config, s: &Status) -> String {
    let templates_sha256 = s
        .runs
        .iter()
        .rfind(|r| !r.test)
        .map(|r| r.templates_sha256.clone())
        .or_else(|| Templates::load(config).ok().map(|t| t.sha256))
        .unwrap_or_default();
    let facts = Facts {
        campaign: s.campaign.clone(),
        subject: subject_without_personal_data(config),
        templates_sha256,
        sender: config.sender.from.email.to_string(),
    };
    record(&facts, s)
}

/// A state in the record's words (the contract's name after it, as `status` shows it).
fn state_in_swedish(state: &str) -> (&'static str, &'static str) {
    match state {
        "sent" => ("underrättad", ""),
        "failed-permanent" => (
            "varaktigt fel",
            "e-postservern avvisade adressen för gott (t.ex. okänd mottagare): underrätta per brev",
        ),
        "bounced" => (
            "studsat",
            "togs emot av e-postservern, men en leveransrapport meddelade sedan att det inte gick fram: underrätta per brev",
        ),
        "failed-transient" => (
            "tillfälligt fel",
            "ett tillfälligt fel: `utskick retry` försöker igen",
        ),
        "unknown" => (
            "okänt utfall",
            "förbindelsen bröts efter att meddelandet lämnats över: `utskick retry` skickar det igen",
        ),
        "pending" => (
            "ej påbörjad",
            "inte försökt ännu (en kvot eller gräns stoppade körningen): `utskick send` fortsätter",
        ),
        "invalid" => (
            "ogiltig rad",
            "raden i listan går inte att använda (t.ex. en felaktig adress): rätta den, eller underrätta per brev",
        ),
        _ => ("", ""),
    }
}

/// How a run ended, in the record's words.
fn outcome_in_swedish(outcome: Option<&str>) -> String {
    match outcome {
        None => "inget slut registrerat (avbruten med våld?)".into(),
        Some("complete") => "slutförd".into(),
        Some("interrupted") => "avbruten (Ctrl-C)".into(),
        Some(other) => match other.strip_prefix("stopped: ") {
            Some(why) => format!("stoppad: {why}"),
            None => other.to_string(),
        },
    }
}

/// The record, from its facts and the status.
fn record(facts: &Facts, s: &Status) -> String {
    let real: Vec<&Run> = s.runs.iter().filter(|r| !r.test).collect();
    let tests: Vec<&Run> = s.runs.iter().filter(|r| r.test).collect();
    let began = real
        .first()
        .map(|r| r.started.as_str())
        .unwrap_or("ännu inte");
    let ended = real
        .iter()
        .map(|r| r.ended.as_str())
        .max()
        .unwrap_or("ännu inte");
    let sent = s.counts.get("sent").copied().unwrap_or(0);
    let mut md = String::new();
    md.push_str(&format!(
        "# Underrättelse via e-post: {}\n\n",
        facts.campaign
    ));
    md.push_str("Redogörelse för hur de registrerade som berörs av personuppgiftsincidenten underrättades (artikel 34 i dataskyddsförordningen). Framtagen av utskick ur dess leveranslogg; den innehåller endast antal, inga personuppgifter.\n\n");
    md.push_str(&format!("- Meddelandets ämnesrad: {}\n", facts.subject));
    md.push_str(&format!(
        "- Mallarnas SHA-256: `{}`\n",
        facts.templates_sha256
    ));
    md.push_str(&format!("- Avsändare: {}\n", facts.sender));
    md.push_str(&format!(
        "- Utskicket påbörjades: {began}\n- Senaste aktivitet: {ended}\n"
    ));
    md.push_str(&format!("- Mottagare i listan: {}\n", s.total));
    md.push_str(&format!(
        "- Underrättade via e-post (mottaget av e-postservern, ingen studs sedan): {sent}\n"
    ));
    for (language, counts) in &s.by_language {
        let rows: u64 = counts.values().sum();
        let sent = counts.get("sent").copied().unwrap_or(0);
        md.push_str(&format!("  - på språket {language}: {sent} av {rows}\n"));
    }
    md.push_str(&format!(
        "- Inte underrättade via e-post: {}\n\n",
        s.total.saturating_sub(sent)
    ));
    md.push_str("## Varför övriga inte underrättades via e-post\n\n| tillstånd | antal | innebörd |\n|---|---:|---|\n");
    for (state, n) in &s.counts {
        if state != "sent" && *n > 0 {
            let (name, meaning) = state_in_swedish(state);
            md.push_str(&format!("| {name} (`{state}`) | {n} | {meaning} |\n"));
        }
    }
    let mut codes: BTreeMap<String, u64> = BTreeMap::new();
    for n in &s.not_sent {
        if let Some(c) = n.code {
            let (name, _) = state_in_swedish(&n.state);
            *codes.entry(format!("{c} ({name})")).or_default() += 1;
        }
    }
    if !codes.is_empty() {
        md.push_str("\nSvarskoder från e-postservern bland dem:\n\n");
        for (c, n) in codes {
            md.push_str(&format!("- {c}: {n}\n"));
        }
    }
    md.push_str("\n## Körningar\n\n| start | senaste händelse | kommando | e-postserver | skickade | misslyckade | mallar | lista (CSV) | avslut |\n|---|---|---|---|---:|---:|---|---|---|\n");
    for r in &s.runs {
        let command = format!(
            "{}{}",
            r.command,
            if r.test { " (testutskick)" } else { "" }
        );
        md.push_str(&format!(
            "| {} | {} | {command} | {} | {} | {} | `{}` | `{}` | {} |\n",
            r.started,
            r.ended,
            r.relay,
            r.sent,
            r.failed,
            short(&r.templates_sha256),
            short(&r.recipients_sha256),
            outcome_in_swedish(r.outcome.as_deref()),
        ));
    }
    md.push_str(&format!(
        "\nLeveransrapporter om fördröjning: {}. Testutskick (till operatören, inte medräknade ovan): {} levererade i {} körningar; i tabellen ovan räknas en testkörnings testmeddelanden som dess skickade och misslyckade.\n",
        s.delays,
        s.test_sent,
        tests.len()
    ));
    md
}

/// The subject as the first recipient gets it, unless it holds something of theirs; then
/// the template's own text.
fn subject_without_personal_data(config: &Config) -> String {
    let Ok(templates) = Templates::load(config) else {
        return "(templates not readable)".into();
    };
    let Ok(csv) = CsvSource::open(&config.recipients) else {
        return "(list not readable)".into();
    };
    let mut subject = None;
    let _ = csv.scan(|r| {
        if subject.is_none()
            && let Ok(rendered) = templates.render(&r)
        {
            let personal = r.fields.iter().any(|(_, v)| match v {
                crate::recipients::FieldValue::Text(t) => {
                    t.len() > 2 && rendered.subject.contains(t.as_str())
                }
                crate::recipients::FieldValue::List(_) => false,
            });
            subject = Some(if personal {
                std::fs::read_to_string(config.templates_dir.join(crate::render::SUBJECT))
                    .unwrap_or_default()
                    .trim()
                    .to_string()
            } else {
                rendered.subject
            });
        }
        Ok(())
    });
    subject.unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::{Class, Event};

    /// A journal of these (event, key, extra fields) lines in run R (T for tests).
    fn journal(lines: &[(&str, &str, serde_json::Value)]) -> Journal {
        let mut text = String::from(
            "{\"event\":\"run\",\"ts\":\"2026-12-01T08:00:00.000Z\",\"run\":\"R\",\"campaign\":\"c\"}\n\
             {\"event\":\"run\",\"ts\":\"2026-12-01T08:00:00.000Z\",\"run\":\"T\",\"campaign\":\"c\",\"test\":true}\n",
        );
        for (event, key, extra) in lines {
            let mut v = serde_json::json!({
                "event": event, "ts": "2026-12-01T08:00:01.000Z", "run": "R", "key": key,
                "email": format!("{key}@example.se"), "message_id": format!("<c.{key}@example.se>"),
            });
            if let (Some(m), Some(x)) = (v.as_object_mut(), extra.as_object()) {
                m.extend(x.clone());
            }
            text.push_str(&format!("{v}\n"));
        }
        Journal::parse(text.as_bytes(), "j").expect("parses")
    }

    fn rows(keys: &[&str]) -> Vec<(String, String, u64)> {
        keys.iter()
            .enumerate()
            .map(|(i, k)| (k.to_string(), format!("{k}@example.se"), i as u64 + 2))
            .collect()
    }

    #[test]
    fn every_row_counted_by_its_latest_state_and_the_unsent_listed_in_csv_order() {
        let j = journal(&[
            ("attempt", "a", serde_json::json!({})),
            ("sent", "a", serde_json::json!({"code": 250, "reply": "ok"})),
            ("attempt", "b", serde_json::json!({})),
            (
                "failed",
                "b",
                serde_json::json!({"code": 550, "reply": "5.1.1 unknown", "class": "permanent"}),
            ),
            ("attempt", "c", serde_json::json!({})),
            ("attempt", "gone", serde_json::json!({})),
            ("sent", "gone", serde_json::json!({"code": 250})),
            ("attempt", "e", serde_json::json!({})),
            ("sent", "e", serde_json::json!({"code": 250})),
        ]);
        let t = tally(rows(&["e", "d", "c", "b", "a"]), &[], 0, Vec::new(), &j);
        let want: BTreeMap<String, u64> = [
            ("sent", 2),
            ("failed-permanent", 1),
            ("bounced", 0),
            ("failed-transient", 0),
            ("unknown", 1),
            ("pending", 1),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        assert_eq!(t.counts, want);
        assert_eq!(t.total, 5);
        let listed: Vec<(&str, &str, Option<u16>)> = t
            .not_sent
            .iter()
            .map(|n| (n.key.as_str(), n.state.as_str(), n.code))
            .collect();
        assert_eq!(
            listed,
            [
                ("d", "pending", None),
                ("c", "unknown", None),
                ("b", "failed-permanent", Some(550))
            ]
        );
        assert_eq!(t.not_sent[2].reason, "5.1.1 unknown");
        assert!(t.not_sent[1].reason.contains("attempt without outcome"));
        assert_eq!(t.not_in_csv, ["gone"]);
    }

    #[test]
    fn invalid_rows_are_counted_and_listed_in_line_order() {
        let j = journal(&[]);
        let t = tally(
            rows(&["a", "b"]),
            &[],
            2,
            vec![(5, "bad address".into()), (4, "bad key".into())],
            &j,
        );
        assert_eq!(t.counts.get("invalid"), Some(&2));
        assert_eq!(t.counts.get("pending"), Some(&2));
        assert_eq!(t.total, 4);
        let lines: Vec<(u64, &str)> = t
            .not_sent
            .iter()
            .map(|n| (n.line, n.state.as_str()))
            .collect();
        assert_eq!(
            lines,
            [
                (2, "pending"),
                (3, "pending"),
                (4, "invalid"),
                (5, "invalid")
            ]
        );
        // Without invalid rows there is no `invalid` count at all.
        let t = tally(rows(&["a"]), &[], 0, Vec::new(), &j);
        assert!(!t.counts.contains_key("invalid"));
    }

    #[test]
    fn rows_are_counted_per_language_they_get() {
        let j = journal(&[
            ("sent", "a", serde_json::json!({})),
            ("sent", "c", serde_json::json!({})),
        ]);
        let t = tally(
            rows(&["a", "b", "c", "d"]),
            &["sv", "sv", "en", "en"],
            0,
            Vec::new(),
            &j,
        );
        let sv = &t.by_language["sv"];
        let en = &t.by_language["en"];
        assert_eq!((sv["sent"], sv["pending"]), (1, 1));
        assert_eq!((en["sent"], en["pending"]), (1, 1));
        assert_eq!(per_state(sv), "sent 1, pending 1");
        // Without a language column, no per-language counts at all.
        let t = tally(rows(&["a", "b"]), &[], 0, Vec::new(), &j);
        assert!(t.by_language.is_empty());
    }

    #[test]
    fn test_deliveries_count_for_their_run_not_for_the_recipient() {
        let test = |event: Event| {
            let mut v = serde_json::to_value(event).expect("json");
            v["run"] = "T".into();
            v["test"] = true.into();
            format!("{v}\n")
        };
        let mut text = String::from(
            "{\"event\":\"run\",\"ts\":\"t\",\"run\":\"T\",\"campaign\":\"c\",\"command\":\"send\",\"test\":true}\n",
        );
        text += &test(Event::Sent {
            ts: "t".into(),
            run: "T".into(),
            key: "a".into(),
            email: "me@example.se".into(),
            message_id: "<c.test.a@example.se>".into(),
            code: 250,
            reply: "ok".into(),
            test: true,
        });
        text += &test(Event::Failed {
            ts: "t".into(),
            run: "T".into(),
            key: "b".into(),
            email: "me@example.se".into(),
            message_id: "<c.test.b@example.se>".into(),
            code: Some(550),
            enhanced: None,
            reply: "no".into(),
            class: Class::Permanent,
            test: true,
        });
        let j = Journal::parse(text.as_bytes(), "j").expect("parses");
        let t = tally(rows(&["a", "b"]), &[], 0, Vec::new(), &j);
        assert_eq!(t.counts.get("pending"), Some(&2), "a test changes no state");
        assert_eq!(j.test_sent, 1);
        assert_eq!((j.runs[0].sent, j.runs[0].failed), (1, 1));
    }

    #[test]
    fn the_record_is_in_swedish_and_counts_each_runs_test_deliveries() {
        let text = "{\"event\":\"run\",\"ts\":\"2026-12-01T08:00:00.000Z\",\"run\":\"T\",\"campaign\":\"c\",\"command\":\"send\",\"test\":true}\n\
             {\"event\":\"sent\",\"ts\":\"2026-12-01T08:00:01.000Z\",\"run\":\"T\",\"key\":\"a\",\"email\":\"me@example.se\",\"message_id\":\"<t>\",\"code\":250,\"reply\":\"ok\",\"test\":true}\n\
             {\"event\":\"end\",\"ts\":\"2026-12-01T08:00:02.000Z\",\"run\":\"T\",\"outcome\":\"complete\"}\n\
             {\"event\":\"run\",\"ts\":\"2026-12-01T09:00:00.000Z\",\"run\":\"R\",\"campaign\":\"c\",\"command\":\"send\"}\n\
             {\"event\":\"attempt\",\"ts\":\"2026-12-01T09:00:01.000Z\",\"run\":\"R\",\"key\":\"b\",\"email\":\"b@example.se\",\"message_id\":\"<b>\"}\n\
             {\"event\":\"failed\",\"ts\":\"2026-12-01T09:00:02.000Z\",\"run\":\"R\",\"key\":\"b\",\"email\":\"b@example.se\",\"message_id\":\"<b>\",\"code\":550,\"reply\":\"no\",\"class\":\"permanent\"}\n";
        let j = Journal::parse(text.as_bytes(), "j").expect("parses");
        let t = tally(rows(&["a", "b"]), &["sv", "en"], 0, Vec::new(), &j);
        let status = Status {
            campaign: "c".into(),
            journal: "j".into(),
            counts: t.counts,
            total: t.total,
            not_sent: t.not_sent,
            not_in_csv: t.not_in_csv,
            runs: j.runs.clone(),
            test_sent: j.test_sent,
            delays: j.delays,
            torn_tail: false,
            by_language: t.by_language,
        };
        let facts = Facts {
            campaign: "c".into(),
            subject: "Viktig information".into(),
            templates_sha256: "abc".into(),
            sender: "dataskydd@example.se".into(),
        };
        let md = record(&facts, &status);
        assert!(md.starts_with("# Underrättelse via e-post: c\n"), "{md}");
        assert!(md.contains("- Mottagare i listan: 2\n"), "{md}");
        assert!(
            md.contains(
                "- Underrättade via e-post (mottaget av e-postservern, ingen studs sedan): 0\n  - på språket en: 0 av 1\n  - på språket sv: 0 av 1\n"
            ),
            "{md}"
        );
        assert!(
            md.contains("| varaktigt fel (`failed-permanent`) | 1 |"),
            "{md}"
        );
        assert!(md.contains("| ej påbörjad (`pending`) | 1 |"), "{md}");
        assert!(md.contains("- 550 (varaktigt fel): 1\n"), "{md}");
        // The test run shows its one test delivery; the real run its failure.
        assert!(md.contains("| send (testutskick) |  | 1 | 0 |"), "{md}");
        assert!(md.contains("| send |  | 0 | 1 |"), "{md}");
        assert!(md.contains("| slutförd |"), "{md}");
        assert!(md.contains("inget slut registrerat"), "{md}");
        assert!(
            md.contains(
                "Testutskick (till operatören, inte medräknade ovan): 1 levererade i 1 körningar"
            ),
            "{md}"
        );
        // The real sending began with the real run, not the test.
        assert!(
            md.contains("- Utskicket påbörjades: 2026-12-01T09:00:00.000Z\n"),
            "{md}"
        );
        for english in ["Notified", "Runs", "Recipients", "Sender", "not yet"] {
            assert!(!md.contains(english), "{english:?} in {md}");
        }
        for personal in ["me@example.se", "b@example.se", "<b>"] {
            assert!(!md.contains(personal), "{personal:?} in {md}");
        }
    }
}
