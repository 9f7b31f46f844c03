//! Dates as the notice writes them: `svensk_datum` ("fredagen den 6 oktober 2023") and
//! `english_date` ("Friday 6 October 2023"), the Tera filters over them, and the calendar
//! arithmetic they need.
//!
//! The incident's dates are ISO strings in config.toml; the templates format them, so the
//! operator writes each date once and every language writes it its own way.

use std::sync::Mutex;

use tera::{Kwargs, State};

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

const WEEKDAYS_EN: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];
const MONTHS_EN: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

/// A calendar date read from `2023-10-06` (or the date of a date-time).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Date {
    y: i64,
    m: u32,
    d: u32,
}

impl Date {
    /// Reads `YYYY-MM-DD`, or the date part of `YYYY-MM-DDT…`; None for anything else.
    fn parse(iso: &str) -> Option<Date> {
        let trimmed = iso.trim();
        let date = trimmed.get(..10).unwrap_or(trimmed).as_bytes();
        let digits = |range: std::ops::Range<usize>| -> Option<u32> {
            date.get(range)?.iter().try_fold(0u32, |n, b| {
                b.is_ascii_digit().then(|| n * 10 + u32::from(b - b'0'))
            })
        };
        let (y, m, d) = (digits(0..4)?, digits(5..7)?, digits(8..10)?);
        if date.len() != 10 || date[4] != b'-' || date[7] != b'-' {
            return None;
        }
        let y = i64::from(y);
        if !(1..=12).contains(&m) || d == 0 || d > days_in_month(y, m) {
            return None;
        }
        Some(Date { y, m, d })
    }

    /// 0 for Monday … 6 for Sunday.
    fn weekday_monday0(self) -> usize {
        // 1970-01-01 was a Thursday (index 3 from Monday).
        (days_from_civil(self.y, self.m, self.d) + 3).rem_euclid(7) as usize
    }
}

/// `2023-10-06` → `fredagen den 6 oktober 2023`; without the weekday: `6 oktober 2023`;
/// without month and year (`manad=false`, for "natten mellan fredagen den 6 och lördagen
/// den 7 oktober 2023"): `fredagen den 6`. Accepts a date-time too, using its date.
pub fn svensk_datum(iso: &str, weekday: bool, month: bool) -> std::result::Result<String, String> {
    let date = Date::parse(iso)
        .ok_or_else(|| format!("svensk_datum: {iso:?} is not a date like 2023-10-06"))?;
    let mut out = String::with_capacity(32);
    if weekday {
        out.push_str(WEEKDAYS[date.weekday_monday0()]);
        out.push_str(" den ");
    }
    push_number(&mut out, i64::from(date.d));
    if month {
        out.push(' ');
        out.push_str(MONTHS[(date.m - 1) as usize]);
        out.push(' ');
        push_number(&mut out, date.y);
    }
    Ok(out)
}

/// `2023-10-06` → `Friday 6 October 2023` (British order, no comma, no ordinal, as the
/// GOV.UK style guide writes dates); without the weekday: `6 October 2023`; without month
/// and year (`month=false`, for "the night between Friday 6 and Saturday 7 October 2023"):
/// `Friday 6`. Accepts a date-time too, using its date.
pub fn english_date(iso: &str, weekday: bool, month: bool) -> std::result::Result<String, String> {
    let date = Date::parse(iso)
        .ok_or_else(|| format!("english_date: {iso:?} is not a date like 2023-10-06"))?;
    let mut out = String::with_capacity(32);
    if weekday {
        out.push_str(WEEKDAYS_EN[date.weekday_monday0()]);
        out.push(' ');
    }
    push_number(&mut out, i64::from(date.d));
    if month {
        out.push(' ');
        out.push_str(MONTHS_EN[(date.m - 1) as usize]);
        out.push(' ');
        push_number(&mut out, date.y);
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

/// At most this many dates are remembered per copy of the templates (a template may also
/// format a date column of each recipient, and those need not be kept).
const KEPT: usize = 32;

/// The dates one compiled copy of the templates has written. A notice names the same few
/// incident dates in every message, so each is formatted once per copy, not once per
/// recipient and mention (BENCHMARKS.md, "render/": about 4 % of preview's CPU). Each render
/// thread has its own copy (`threads`), so the lock is never contended.
#[derive(Default)]
pub(super) struct Written {
    kept: Mutex<Vec<(String, bool, bool, tera::Value)>>,
}

impl Written {
    /// The date written by `write`, from memory when this copy wrote it before.
    fn get(
        &self,
        value: &str,
        weekday: bool,
        month: bool,
        write: impl FnOnce() -> Result<String, String>,
    ) -> tera::TeraResult<tera::Value> {
        let mut kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, _, _, written)) = kept
            .iter()
            .find(|(iso, w, m, _)| iso == value && *w == weekday && *m == month)
        {
            return Ok(written.clone());
        }
        let written = tera::Value::from(write().map_err(tera::Error::message)?);
        if kept.len() < KEPT {
            kept.push((value.to_string(), weekday, month, written.clone()));
        }
        Ok(written)
    }
}

/// Registers the date filters on one copy of the templates, each with its own memory.
pub(super) fn register(tera: &mut tera::Tera) {
    let swedish = Written::default();
    tera.register_filter(
        "svensk_datum",
        move |value: &str, kwargs: Kwargs, _: &State| {
            let weekday = kwargs.get::<bool>("veckodag")?.unwrap_or(true);
            let month = kwargs.get::<bool>("manad")?.unwrap_or(true);
            swedish.get(value, weekday, month, || {
                svensk_datum(value, weekday, month)
            })
        },
    );
    let english = Written::default();
    tera.register_filter(
        "english_date",
        move |value: &str, kwargs: Kwargs, _: &State| {
            let weekday = kwargs.get::<bool>("weekday")?.unwrap_or(true);
            let month = kwargs.get::<bool>("month")?.unwrap_or(true);
            english.get(value, weekday, month, || {
                english_date(value, weekday, month)
            })
        },
    );
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
    fn english_dates() {
        for (iso, written) in [
            ("2023-10-02", "Monday 2 October 2023"),
            ("2023-10-03", "Tuesday 3 October 2023"),
            ("2023-10-06", "Friday 6 October 2023"),
            ("2023-10-07", "Saturday 7 October 2023"),
            ("2023-10-08", "Sunday 8 October 2023"),
            ("2024-02-29", "Thursday 29 February 2024"),
            ("2000-01-01", "Saturday 1 January 2000"),
            ("2026-12-31T23:59:59Z", "Thursday 31 December 2026"),
        ] {
            assert_eq!(
                english_date(iso, true, true).as_deref(),
                Ok(written),
                "{iso}"
            );
        }
        assert_eq!(
            english_date("2023-10-06", false, true).as_deref(),
            Ok("6 October 2023")
        );
        assert_eq!(
            english_date("2023-10-06", true, false).as_deref(),
            Ok("Friday 6")
        );
        for bad in [
            "2023-02-29",
            "2023-13-01",
            "6 Oct",
            "",
            "2023-1-6",
            "2023-10-32",
        ] {
            let err = english_date(bad, true, true).expect_err(bad);
            assert!(err.starts_with("english_date: "), "{err}");
        }
        let mut tera = tera::Tera::new();
        register(&mut tera);
        tera.add_raw_template(
            "t",
            "the night between {{ a | english_date(month=false) }} and {{ b | english_date }}; \
             {{ a | english_date(weekday=false) }}",
        )
        .expect("compiles");
        let mut ctx = tera::Context::new();
        ctx.insert("a", "2023-10-06");
        ctx.insert("b", "2023-10-07");
        for _ in 0..2 {
            assert_eq!(
                tera.render("t", &ctx).expect("renders"),
                "the night between Friday 6 and Saturday 7 October 2023; 6 October 2023"
            );
        }
        ctx.insert("a", "6/10/2023");
        let err = tera.render("t", &ctx).expect_err("not a date");
        assert!(
            format!("{err:?}").contains("is not a date like 2023-10-06"),
            "{err:?}"
        );
    }

    #[test]
    fn filter_in_a_template() {
        let mut tera = tera::Tera::new();
        register(&mut tera);
        tera.add_raw_template(
            "t",
            "{{ d | svensk_datum }} / {{ d | svensk_datum(veckodag=false) }} / \
             {{ d | svensk_datum(manad=false) }} / {{ d | svensk_datum }}",
        )
        .expect("compiles");
        let mut ctx = tera::Context::new();
        // Every date a second time, when this copy has it already, and dates beyond
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
