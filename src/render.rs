//! The notice's text: loading the Tera templates, the context every template sees, and the
//! Swedish date filter.
//!
//! Tera 2 reports an undefined variable with template, line and column, so rendering every
//! row in preflight proves the templates fit the CSV before a single message goes out.
//! `body.html` is autoescaped (Tera escapes names ending in `.html`); the text templates are
//! not, which is right for text. The SHA-256 of the templates goes into every journal run so
//! that half the customers never get one text and half another by accident.

use std::cell::{Cell, RefCell};
use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use serde::Serialize;
use sha2::{Digest, Sha256};
use tera::{Kwargs, State, Tera};

use crate::config::Config;
use crate::recipients::{Recipient, one_line};

/// The template file names, in the order they are hashed.
pub const SUBJECT: &str = "subject.txt";
/// The plain-text body.
pub const BODY_TEXT: &str = "body.txt";
/// The optional HTML body.
pub const BODY_HTML: &str = "body.html";

/// At most this many threads render at once, each with its own compiled copy of the
/// templates.
pub const MAX_RENDER_THREADS: usize = 8;

/// How many threads render at once (`Mailing::pipeline`'s workers): one per core.
pub fn render_threads() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, MAX_RENDER_THREADS)
}

thread_local! {
    /// The copy of the templates this thread renders with: 0 for any thread, `1 + i` for
    /// pipeline worker `i` (`on_worker`).
    static COPY: Cell<usize> = const { Cell::new(0) };
}

/// Runs `f` with this thread rendering from copy `1 + worker` of the templates. Tera's
/// values are reference-counted: two threads rendering from one copy bump the same
/// counters (the globals, the incident's texts) for every variable they print, and every
/// bump pulls the counter's cache line away from the other core.
pub fn on_worker<R>(worker: usize, f: impl FnOnce() -> R) -> R {
    COPY.with(|c| c.set(1 + worker % MAX_RENDER_THREADS));
    let result = f();
    COPY.with(|c| c.set(0));
    result
}

/// `recipient` for one render: every column, or only those the templates name. A column
/// no template names cannot change what they render, and leaving it out keeps the map
/// small (Tera scans maps of up to six keys instead of hashing) and keeps what the
/// templates never print, such as the personnummer, out of the renderer altogether.
struct RecipientView<'a> {
    recipient: &'a Recipient,
    columns: Option<&'a [String]>,
}

impl Serialize for RecipientView<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let Some(columns) = self.columns else {
            return self.recipient.serialize(s);
        };
        let fields = &self.recipient.fields;
        let mut map = s.serialize_map(None)?;
        for (k, v) in fields.iter().filter(|(k, _)| columns.contains(k)) {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

/// The columns the templates read, when every `recipient` in their text is followed by
/// `.NAME` (or `?.NAME`); None (every column) when one is not, or when they dump the whole
/// context. The whole text is read, comments and strings too: what they name only adds
/// columns, or gives every column, which is harmless either way.
fn columns_read<'a>(texts: impl Iterator<Item = &'a str>) -> Option<Vec<String>> {
    let (columns, other_use) = columns_named(texts);
    (!other_use).then_some(columns)
}

/// Every `NAME` in `recipient.NAME` (or `recipient?.NAME`) in the texts, and whether
/// `recipient` is also used in any other way (or the whole context dumped).
fn columns_named<'a>(texts: impl Iterator<Item = &'a str>) -> (Vec<String>, bool) {
    const WORD: &str = "recipient";
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut columns: Vec<String> = Vec::new();
    let mut other_use = false;
    for text in texts {
        other_use |= text.contains("__tera_context");
        for (at, _) in text.match_indices(WORD) {
            let before = text[..at].chars().next_back();
            let rest = &text[at + WORD.len()..];
            if before.is_some_and(ident) || rest.starts_with(ident) {
                continue;
            }
            let rest = rest.trim_start();
            let Some(rest) = rest.strip_prefix("?.").or_else(|| rest.strip_prefix('.')) else {
                other_use = true;
                continue;
            };
            let rest = rest.trim_start();
            let end = rest.find(|c: char| !ident(c)).unwrap_or(rest.len());
            if end == 0 {
                other_use = true;
                continue;
            }
            let name = &rest[..end];
            if !columns.iter().any(|c| c == name) {
                columns.push(name.to_string());
            }
        }
    }
    (columns, other_use)
}

/// The text without its `{# … #}` comments (an unclosed one runs to the end).
fn without_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("{#") {
        out.push_str(&rest[..start]);
        rest = rest[start + 2..]
            .find("#}")
            .map_or("", |end| &rest[start + 2 + end + 2..]);
    }
    out.push_str(rest);
    out
}

/// Compiles the templates into a fresh Tera with the globals (`incident`, `campaign`,
/// `sender`) serialized anew, so that no value is shared with another copy.
fn compile(sources: &[(&str, String)], config: &Config) -> std::result::Result<Tera, Vec<String>> {
    let dir = &config.templates_dir;
    let mut tera = Tera::new();
    tera.autoescape_on([".html"]);
    tera.register_filter("svensk_datum", svensk_datum_filter);
    let mut problems = Vec::new();
    for (name, text) in sources {
        if let Err(e) = tera.add_raw_template(name, text) {
            problems.push(tera_error_line(&e, dir));
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let from = &config.sender.from;
    let sender = SenderView {
        from: from.to_string(),
        name: from.name.clone().unwrap_or_default(),
        email: from.email.to_string(),
        reply_to: config.sender.reply_to.email.to_string(),
    };
    let globals = tera.global_context();
    globals.insert("incident", &config.incident);
    globals.insert("campaign", &config.campaign);
    globals.insert("sender", &sender);
    Ok(tera)
}

/// A rendered notice for one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// The subject, on one line.
    pub subject: String,
    /// The plain-text body.
    pub text: String,
    /// The HTML body, where `body.html` exists.
    pub html: Option<String>,
}

/// The loaded templates.
pub struct Templates {
    /// Copy 0 for any thread, then one per pipeline worker (`on_worker`).
    copies: Vec<Tera>,
    /// The columns the templates read as `recipient.NAME`; None when they use `recipient`
    /// in any other way, and then every column goes in (`columns_read`).
    columns: Option<Vec<String>>,
    /// The columns named as `recipient.NAME` outside comments, to tell the operator about a
    /// name the CSV lacks.
    pub named_columns: Vec<String>,
    has_html: bool,
    /// SHA-256 over the template files' names and bytes.
    pub sha256: String,
    /// Where they were read from.
    pub dir: PathBuf,
}

#[derive(Serialize)]
struct SenderView {
    from: String,
    name: String,
    email: String,
    reply_to: String,
}

impl Templates {
    /// Reads and compiles the templates in the config's folder.
    pub fn load(config: &Config) -> Result<Templates> {
        let dir = &config.templates_dir;
        let mut hasher = Sha256::new();
        let mut problems = Vec::new();
        let mut sources = Vec::new();
        for (name, required) in [(SUBJECT, true), (BODY_TEXT, true), (BODY_HTML, false)] {
            let path = dir.join(name);
            let text = match std::fs::read_to_string(&path) {
                Ok(t) => t,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => continue,
                Err(e) => {
                    problems.push(format!("{}: cannot read template: {e}", path.display()));
                    continue;
                }
            };
            hasher.update(name.as_bytes());
            hasher.update([0]);
            hasher.update((text.len() as u64).to_le_bytes());
            hasher.update(text.as_bytes());
            sources.push((name, text));
        }
        if !problems.is_empty() {
            bail!("{}", problems.join("\n"));
        }
        // Copy 0 for any thread, then one per render thread.
        let copies = (0..=render_threads())
            .map(|_| compile(&sources, config))
            .collect::<std::result::Result<Vec<Tera>, Vec<String>>>()
            .map_err(|problems| anyhow::anyhow!("{}", problems.join("\n")))?;
        let uncommented: Vec<String> = sources.iter().map(|(_, t)| without_comments(t)).collect();
        Ok(Templates {
            columns: columns_read(sources.iter().map(|(_, text)| text.as_str())),
            named_columns: columns_named(uncommented.iter().map(String::as_str)).0,
            copies,
            has_html: sources.iter().any(|(n, _)| *n == BODY_HTML),
            sha256: hex(&hasher.finalize()),
            dir: dir.clone(),
        })
    }

    /// What the templates see as `recipient`: the columns they name.
    fn view<'a>(&'a self, recipient: &'a Recipient, all: bool) -> RecipientView<'a> {
        RecipientView {
            recipient,
            columns: if all { None } else { self.columns.as_deref() },
        }
    }

    /// `attempt` with only the columns the templates name, and, should that fail, once more
    /// with every column: a row that fails is rare, and its error message (Tera lists the
    /// fields `recipient` has) then names every column of the CSV.
    fn with_columns<T>(&self, attempt: impl Fn(bool) -> Result<T>) -> Result<T> {
        match attempt(false) {
            Err(_) if self.columns.is_some() => attempt(true),
            done => done,
        }
    }

    /// This thread's copy.
    fn tera(&self) -> &Tera {
        let i = COPY.with(Cell::get);
        self.copies.get(i).unwrap_or(&self.copies[0])
    }

    /// Whether the notice has an HTML part.
    pub fn has_html(&self) -> bool {
        self.has_html
    }

    /// Renders the three templates for one recipient. The error is one line naming the
    /// template file, line and column.
    pub fn render(&self, recipient: &Recipient) -> Result<Rendered> {
        self.with_columns(|all| self.render_view(recipient, all))
    }

    fn render_view(&self, recipient: &Recipient, all: bool) -> Result<Rendered> {
        let mut ctx = tera::Context::new();
        ctx.insert("recipient", &self.view(recipient, all));
        let run = |name: &str| {
            self.tera()
                .render(name, &ctx)
                .map_err(|e| anyhow::anyhow!(tera_error_line(&e, &self.dir)))
        };
        let subject = one_line(&run(SUBJECT)?);
        if subject.is_empty() {
            bail!(
                "{}: the subject renders empty",
                self.dir.join(SUBJECT).display()
            );
        }
        let text = run(BODY_TEXT)?;
        if text.trim().is_empty() {
            bail!(
                "{}: the body renders empty",
                self.dir.join(BODY_TEXT).display()
            );
        }
        let html = if self.has_html {
            Some(run(BODY_HTML)?)
        } else {
            None
        };
        Ok(Rendered {
            subject,
            text,
            html,
        })
    }
}

/// Notes whether a body has anything but white space, without keeping it.
struct Counter(bool);

impl std::io::Write for Counter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if !self.0 {
            self.0 = buf.iter().any(|b| !b.is_ascii_whitespace());
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Templates {
    /// Renders the three templates for one recipient as `render` does, with the same
    /// errors, but keeps only the subject: the preflight of a large mailing needs to know
    /// that every message renders, not every message's text.
    pub fn check(&self, recipient: &Recipient) -> Result<String> {
        self.with_columns(|all| self.check_view(recipient, all))
    }

    fn check_view(&self, recipient: &Recipient, all: bool) -> Result<String> {
        let mut ctx = tera::Context::new();
        ctx.insert("recipient", &self.view(recipient, all));
        let subject = one_line(
            &self
                .tera()
                .render(SUBJECT, &ctx)
                .map_err(|e| anyhow::anyhow!(tera_error_line(&e, &self.dir)))?,
        );
        if subject.is_empty() {
            bail!(
                "{}: the subject renders empty",
                self.dir.join(SUBJECT).display()
            );
        }
        let mut names = vec![BODY_TEXT];
        if self.has_html {
            names.push(BODY_HTML);
        }
        for name in names {
            let mut counter = Counter(false);
            self.tera()
                .render_to(name, &ctx, &mut counter)
                .map_err(|e| anyhow::anyhow!(tera_error_line(&e, &self.dir)))?;
            if !counter.0 && name == BODY_TEXT {
                bail!(
                    "{}: the body renders empty",
                    self.dir.join(BODY_TEXT).display()
                );
            }
        }
        Ok(subject)
    }
}

/// A Tera error as one line: `templates/body.txt:12:5: message`.
fn tera_error_line(e: &tera::Error, dir: &Path) -> String {
    match e.kind() {
        tera::ErrorKind::SyntaxError(r) | tera::ErrorKind::RenderingError(r) => {
            let span = r.span();
            format!(
                "{}:{}:{}: {}",
                dir.join(r.filename()).display(),
                span.start_line,
                span.start_col + 1,
                one_line(r.message())
            )
        }
        _ => {
            let mut msg = one_line(&e.to_string());
            let mut source = std::error::Error::source(e);
            while let Some(s) = source {
                msg.push_str(": ");
                msg.push_str(&one_line(&s.to_string()));
                source = s.source();
            }
            format!("{}: {msg}", dir.display())
        }
    }
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

const WEEKDAYS: [&str; 7] = [
    "måndagen",
    "tisdagen",
    "onsdagen",
    "torsdagen",
    "fredagen",
    "lördagen",
    "söndagen",
];
const MONTHS: [&str; 12] = [
    "januari",
    "februari",
    "mars",
    "april",
    "maj",
    "juni",
    "juli",
    "augusti",
    "september",
    "oktober",
    "november",
    "december",
];

/// `2023-10-06` → `fredagen den 6 oktober 2023`; without the weekday: `6 oktober 2023`;
/// without month and year (`manad=false`, for "natten mellan fredagen den 6 och lördagen
/// den 7 oktober 2023"): `fredagen den 6`. Accepts a date-time too, using its date.
pub fn svensk_datum(iso: &str, weekday: bool, month: bool) -> std::result::Result<String, String> {
    let bad = || format!("svensk_datum: {iso:?} is not a date like 2023-10-06");
    let trimmed = iso.trim();
    let date = trimmed.get(..10).unwrap_or(trimmed).as_bytes();
    let digits = |range: std::ops::Range<usize>| -> Option<u32> {
        date.get(range)?.iter().try_fold(0u32, |n, b| {
            b.is_ascii_digit().then(|| n * 10 + u32::from(b - b'0'))
        })
    };
    let (Some(y), Some(m), Some(d)) = (digits(0..4), digits(5..7), digits(8..10)) else {
        return Err(bad());
    };
    if date.len() != 10 || date[4] != b'-' || date[7] != b'-' {
        return Err(bad());
    }
    let y = i64::from(y);
    if !(1..=12).contains(&m) || d == 0 || d > days_in_month(y, m) {
        return Err(bad());
    }
    let mut out = String::with_capacity(32);
    if weekday {
        out.push_str(WEEKDAYS[weekday_monday0(y, m, d)]);
        out.push_str(" den ");
    }
    push_number(&mut out, i64::from(d));
    if month {
        out.push(' ');
        out.push_str(MONTHS[(m - 1) as usize]);
        out.push(' ');
        push_number(&mut out, y);
    }
    Ok(out)
}

/// Appends a number in decimal without going through the formatting machinery.
fn push_number(out: &mut String, n: i64) {
    use std::fmt::Write;
    if (0..10).contains(&n) {
        out.push(char::from(b'0' + n as u8));
    } else {
        let _ = write!(out, "{n}");
    }
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if is_leap(y) => 29,
        _ => 28,
    }
}

/// Days since 1970-01-01 (Howard Hinnant's days_from_civil).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn weekday_monday0(y: i64, m: u32, d: u32) -> usize {
    // 1970-01-01 was a Thursday (index 3 from Monday).
    (days_from_civil(y, m, d) + 3).rem_euclid(7) as usize
}

thread_local! {
    /// The dates `svensk_datum` has written on this thread: a notice names the same few
    /// incident dates in every message, so each is formatted once per thread, not once per
    /// recipient and mention.
    static SVENSKA_DATUM: RefCell<Vec<(String, bool, bool, tera::Value)>> =
        const { RefCell::new(Vec::new()) };
}

/// At most this many dates are remembered per thread (a template may also format a date
/// column of each recipient, and those need not be kept).
const SVENSKA_DATUM_KEPT: usize = 32;

fn svensk_datum_filter(value: &str, kwargs: Kwargs, _: &State) -> tera::TeraResult<tera::Value> {
    let weekday = kwargs.get::<bool>("veckodag")?.unwrap_or(true);
    let month = kwargs.get::<bool>("manad")?.unwrap_or(true);
    SVENSKA_DATUM.with(|kept| {
        let mut kept = kept.borrow_mut();
        if let Some((_, _, _, written)) = kept
            .iter()
            .find(|(iso, w, m, _)| iso == value && *w == weekday && *m == month)
        {
            return Ok(written.clone());
        }
        let written =
            tera::Value::from(svensk_datum(value, weekday, month).map_err(tera::Error::message)?);
        if kept.len() < SVENSKA_DATUM_KEPT {
            kept.push((value.to_string(), weekday, month, written.clone()));
        }
        Ok(written)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recipients::FieldValue;

    #[test]
    fn swedish_dates() {
        assert_eq!(
            svensk_datum("2023-10-06", true, true).as_deref(),
            Ok("fredagen den 6 oktober 2023")
        );
        assert_eq!(
            svensk_datum("2023-10-07", true, true).as_deref(),
            Ok("lördagen den 7 oktober 2023")
        );
        assert_eq!(
            svensk_datum("2023-10-08", true, true).as_deref(),
            Ok("söndagen den 8 oktober 2023")
        );
        assert_eq!(
            svensk_datum("2023-10-02", true, true).as_deref(),
            Ok("måndagen den 2 oktober 2023")
        );
        assert_eq!(
            svensk_datum("2024-02-29", false, true).as_deref(),
            Ok("29 februari 2024")
        );
        assert_eq!(
            svensk_datum("2000-01-01", true, true).as_deref(),
            Ok("lördagen den 1 januari 2000")
        );
        assert_eq!(
            svensk_datum("2026-11-26T14:00:00Z", true, true).as_deref(),
            Ok("torsdagen den 26 november 2026")
        );
        for bad in [
            "2023-02-29",
            "2023-13-01",
            "6 okt",
            "",
            "2023-1-6",
            "2023-00-10",
        ] {
            assert!(svensk_datum(bad, true, true).is_err(), "{bad}");
        }
    }

    #[test]
    fn columns_the_templates_read() {
        let read = |texts: &[&str]| columns_read(texts.iter().copied());
        assert_eq!(
            read(&[
                "Hej {{ recipient.name }}{% if \"bank\" in recipient.affected %}",
                "{{ recipient?.customer_id }} {{ recipient . name }}",
            ]),
            Some(vec!["name".into(), "affected".into(), "customer_id".into()])
        );
        // No `recipient` at all: no column is needed.
        assert_eq!(read(&["Hej {{ incident.foretag }}"]), Some(vec![]));
        // A word that merely contains it is not it.
        assert_eq!(
            read(&["{{ my_recipient_list }} {{ recipients }} {{ recipient.email }}"]),
            Some(vec!["email".into()])
        );
        // Any other use of `recipient` may read any column: all of them go in.
        for text in [
            "{{ recipient }}",
            "{{ recipient[\"e-post\"] }}",
            "{{ recipient | json_encode }}",
            "{% set r = recipient %}{{ r.personnummer }}",
            "{{ __tera_context }}",
            "Dear recipient, {{ recipient.name }}",
            "{{ recipient.",
        ] {
            assert_eq!(read(&["{{ recipient.name }}", text]), None, "{text}");
        }
    }

    #[test]
    fn comments_name_no_column() {
        let text = "{#- recipient.COLUMN for each column -#}Hej {{ recipient.name }}{# x #}\
                    {{ recipient.affected }}{# unclosed recipient.nope";
        assert_eq!(
            without_comments(text),
            "Hej {{ recipient.name }}{{ recipient.affected }}"
        );
        assert_eq!(
            columns_named([without_comments(text).as_str()].into_iter()),
            (vec!["name".to_string(), "affected".to_string()], false)
        );
        assert_eq!(
            columns_named(["{{ recipient | json_encode }} {{ recipient.name }}"].into_iter()),
            (vec!["name".to_string()], true)
        );
    }

    #[test]
    fn a_column_no_template_names_stays_out() {
        let mut tera = Tera::new();
        let text = "{{ recipient.name }}|{{ recipient.personnummer is defined }}";
        tera.add_raw_template("t", text).expect("compiles");
        let recipient = Recipient {
            line: 2,
            key: "1".into(),
            email: "a@example.se".into(),
            name: "Åsa".into(),
            fields: vec![
                ("name".into(), FieldValue::Text("Åsa".into())),
                (
                    "personnummer".into(),
                    FieldValue::Text("19800101-0000".into()),
                ),
            ],
        };
        let columns = columns_read([text].into_iter());
        assert_eq!(
            columns,
            Some(vec!["name".to_string(), "personnummer".to_string()])
        );
        let render = |columns: Option<&[String]>| {
            let mut ctx = tera::Context::new();
            ctx.insert(
                "recipient",
                &RecipientView {
                    recipient: &recipient,
                    columns,
                },
            );
            tera.render("t", &ctx).expect("renders")
        };
        assert_eq!(render(columns.as_deref()), "Åsa|true");
        assert_eq!(render(Some(&["name".to_string()])), "Åsa|false");
        assert_eq!(render(None), "Åsa|true");
    }

    #[test]
    fn filter_in_a_template() {
        let mut tera = Tera::new();
        tera.register_filter("svensk_datum", svensk_datum_filter);
        tera.add_raw_template(
            "t",
            "{{ d | svensk_datum }} / {{ d | svensk_datum(veckodag=false) }} / \
             {{ d | svensk_datum(manad=false) }} / {{ d | svensk_datum }}",
        )
        .expect("compiles");
        let mut ctx = tera::Context::new();
        // Every date a second time, when this thread has it already, and dates beyond
        // the number kept.
        for round in 0..2 {
            for day in 1..=31 {
                ctx.insert("d", &format!("2023-10-{day:02}"));
                let weekday = WEEKDAYS[(day + 5) % 7];
                assert_eq!(
                    tera.render("t", &ctx).expect("renders"),
                    format!(
                        "{weekday} den {day} oktober 2023 / {day} oktober 2023 / \
                         {weekday} den {day} / {weekday} den {day} oktober 2023"
                    ),
                    "round {round}"
                );
            }
        }
        ctx.insert("d", "nonsense");
        assert!(tera.render("t", &ctx).is_err());
        assert!(tera.render("t", &ctx).is_err());
    }

    #[test]
    fn civil_days() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
    }
}
