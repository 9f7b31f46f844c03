//! The notice's text: loading the Tera templates, the context every template sees, and the
//! Swedish date filter.
//!
//! Tera 2 reports an undefined variable with template, line and column, so rendering every
//! row in preflight proves the templates fit the CSV before a single message goes out.
//! `body.html` is autoescaped (Tera escapes names ending in `.html`); the text templates are
//! not, which is right for text. The SHA-256 of the templates goes into every journal run so
//! that half the customers never get one text and half another by accident.

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
    tera: Tera,
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
        let mut tera = Tera::new();
        tera.autoescape_on([".html"]);
        tera.register_filter("svensk_datum", svensk_datum_filter);
        let mut hasher = Sha256::new();
        let mut problems = Vec::new();
        let mut has_html = false;
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
            if let Err(e) = tera.add_raw_template(name, &text) {
                problems.push(tera_error_line(&e, dir));
            }
            if name == BODY_HTML {
                has_html = true;
            }
        }
        if !problems.is_empty() {
            bail!("{}", problems.join("\n"));
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
        Ok(Templates {
            tera,
            has_html,
            sha256: hex(&hasher.finalize()),
            dir: dir.clone(),
        })
    }

    /// Whether the notice has an HTML part.
    pub fn has_html(&self) -> bool {
        self.has_html
    }

    /// Renders the three templates for one recipient. The error is one line naming the
    /// template file, line and column.
    pub fn render(&self, recipient: &Recipient) -> Result<Rendered> {
        let mut ctx = tera::Context::new();
        ctx.insert("recipient", recipient);
        let run = |name: &str| {
            self.tera
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
        let mut ctx = tera::Context::new();
        ctx.insert("recipient", recipient);
        let subject = one_line(
            &self
                .tera
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
            self.tera
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

fn svensk_datum_filter(value: &str, kwargs: Kwargs, _: &State) -> tera::TeraResult<String> {
    let weekday = kwargs.get::<bool>("veckodag")?.unwrap_or(true);
    let month = kwargs.get::<bool>("manad")?.unwrap_or(true);
    svensk_datum(value, weekday, month).map_err(tera::Error::message)
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn filter_in_a_template() {
        let mut tera = Tera::new();
        tera.register_filter("svensk_datum", svensk_datum_filter);
        tera.add_raw_template(
            "t",
            "{{ d | svensk_datum }} / {{ d | svensk_datum(veckodag=false) }}",
        )
        .expect("compiles");
        let mut ctx = tera::Context::new();
        ctx.insert("d", "2023-10-03");
        assert_eq!(
            tera.render("t", &ctx).expect("renders"),
            "tisdagen den 3 oktober 2023 / 3 oktober 2023"
        );
        ctx.insert("d", "nonsense");
        assert!(tera.render("t", &ctx).is_err());
    }

    #[test]
    fn civil_days() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
    }
}
