//! The row scan: every record read once, checked (field count, size, address, key, the
//! same key twice, the same address under two keys, allowed values) and handed on in file
//! order, from a CSV or a workbook's sheet alike.
//!
//! Memory does not grow with the row count beyond one small hash per key.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};

use anyhow::{Result, bail};

use super::address::normalize_email;
use super::diagnostics::{self, Diagnostic, Severity};
use super::quotes::trimmed_width;
use super::{CsvSource, FieldValue, MAX_FIELD_BYTES, Recipient, sheet};
use crate::text::{one_line, quoted_excerpt};

/// What a scan of all rows found.
#[derive(Debug, Default)]
pub struct Scan {
    /// Data rows read.
    pub rows: u64,
    /// Rows that can be sent.
    pub valid: u64,
    /// Rows with at least one error.
    pub invalid: u64,
    /// Every error.
    pub errors: Vec<Diagnostic>,
    /// Every warning.
    pub warnings: Vec<Diagnostic>,
}

impl Scan {
    fn push(&mut self, d: Diagnostic) {
        let list = match d.severity {
            Severity::Error => &mut self.errors,
            Severity::Warning => &mut self.warnings,
        };
        diagnostics::keep(list, d);
    }
}

/// One data row as read.
enum Row<'a> {
    /// Its cells, and those of a sheet that could not be read as text (column, why).
    Read(&'a csv::StringRecord, &'a [(usize, String)]),
    /// The reader could not make a record of it.
    Unreadable(String),
}

impl CsvSource {
    /// Reads every row, checks it, and calls `f` with each valid recipient in file order.
    /// The checks include duplicate keys (an error on the later row) and addresses shared
    /// by several keys (a warning). `f` may fail, which stops the scan.
    pub fn scan(&self, f: impl FnMut(Recipient) -> Result<()>) -> Result<Scan> {
        self.scan_with(true, f)
    }

    /// `scan` with the same checks and diagnostics, handing out recipients without their
    /// columns (`fields` and `name` empty): for `status`, which needs only keys and
    /// addresses of a large file.
    pub fn scan_keys(&self, f: impl FnMut(Recipient) -> Result<()>) -> Result<Scan> {
        self.scan_with(false, f)
    }

    fn scan_with(
        &self,
        with_fields: bool,
        mut f: impl FnMut(Recipient) -> Result<()>,
    ) -> Result<Scan> {
        let mut checker = Checker::new(self, with_fields);
        self.each_row(|line, row| checker.row(line, row, &mut f))?;
        Ok(checker.finish())
    }

    /// Calls `f` with every data row (the header left out, blank rows skipped) and its line.
    /// A read error of the file itself is handed on as an unreadable row, and ends the rows.
    fn each_row(&self, mut f: impl FnMut(u64, Row<'_>) -> Result<()>) -> Result<()> {
        let mut record = csv::StringRecord::new();
        if let Some(name) = &self.sheet {
            let mut header = true;
            return sheet::read(&self.path, Some(name), &self.shown, |row| {
                if std::mem::take(&mut header) {
                    return Ok(true);
                }
                record.clear();
                for cell in row.cells {
                    record.push_field(cell);
                }
                // A sheet has no cells past the last one used in a row: they are empty.
                for _ in row.cells.len()..self.headers.len() {
                    record.push_field("");
                }
                if row.errors.is_empty() && is_blank(&record) {
                    return Ok(true);
                }
                f(row.number, Row::Read(&record, row.errors))?;
                Ok(true)
            })
            .map(drop);
        }
        let (mut reader, index) = self.text_reader(false)?;
        let mut header = true;
        let mut line = 1;
        loop {
            match reader.read_record(&mut record) {
                Ok(false) => break,
                Ok(true) => {
                    line = index
                        .borrow_mut()
                        .line_of(record.position().map_or(0, |p| p.byte()));
                    if std::mem::take(&mut header) || is_blank(&record) {
                        continue;
                    }
                    f(line, Row::Read(&record, &[]))?;
                }
                Err(e) => {
                    header = false;
                    if let Some(p) = e.position() {
                        line = index.borrow_mut().line_of(p.byte());
                    }
                    f(line, Row::Unreadable(csv_error_text(&e)))?;
                    if matches!(e.kind(), csv::ErrorKind::Io(_)) {
                        break;
                    }
                }
            }
        }
        Ok(())
    }

    /// Reads every row (valid or not) as the raw cells, with its line, for follow-up lists.
    pub fn raw_rows(&self, mut f: impl FnMut(u64, &csv::StringRecord) -> Result<()>) -> Result<()> {
        self.each_row(|line, row| match row {
            Row::Read(record, _) => f(line, record),
            Row::Unreadable(e) => bail!("{}: {e}", self.at(line)),
        })
    }

    /// The key a raw row would have (None when it has none), as `scan` computes it.
    pub fn raw_key(&self, record: &csv::StringRecord) -> Option<String> {
        match self.key_idx {
            Some(i) => Some(record.get(i)?.trim().to_string()).filter(|k| !k.is_empty()),
            None => normalize_email(record.get(self.email_idx)?)
                .ok()
                .map(|e| e.to_lowercase()),
        }
    }
}

/// A row with nothing in any cell (a blank line, or Excel's `;;;`).
fn is_blank(record: &csv::StringRecord) -> bool {
    record.iter().all(|f| f.trim().is_empty())
}

/// The checks of every row, with what they remember from row to row.
struct Checker<'a> {
    source: &'a CsvSource,
    with_fields: bool,
    scan: Scan,
    hasher: std::collections::hash_map::RandomState,
    // One small entry per row, so that a million rows stay within memory: a 128-bit hash
    // of the key (a false "duplicate" is out of reach) and 64 bits of the address (only a
    // warning rides on it), with the line as u32.
    keys: HashMap<[u64; 2], u32, ahash::RandomState>,
    emails: HashMap<u64, u32, ahash::RandomState>,
}

impl<'a> Checker<'a> {
    fn new(source: &'a CsvSource, with_fields: bool) -> Checker<'a> {
        let mut keys: HashMap<[u64; 2], u32, ahash::RandomState> = HashMap::default();
        let mut emails: HashMap<u64, u32, ahash::RandomState> = HashMap::default();
        // Sized up front for the rows the file's size suggests: a table that doubles while
        // it fills holds its old and new copies at once, and that was the peak of a
        // million-row preview's memory (157 MiB; 114 MiB sized). 100 bytes a row errs on
        // the short side of a customer row (name, address, data categories): guessing too
        // many rows would double the table for nothing, too few costs one doubling.
        let rows_estimate = std::fs::metadata(&source.path)
            .map_or(0, |m| usize::try_from(m.len() / 100).unwrap_or(usize::MAX))
            .min(1 << 24);
        keys.reserve(rows_estimate);
        if source.key_idx.is_some() {
            emails.reserve(rows_estimate);
        }
        let mut scan = Scan::default();
        for w in &source.header_warnings {
            scan.push(w.clone());
        }
        Checker {
            source,
            with_fields,
            scan,
            hasher: std::collections::hash_map::RandomState::new(),
            keys,
            emails,
        }
    }

    fn finish(mut self) -> Scan {
        if self.scan.rows == 0 {
            let d = self.source.diagnostic(
                self.source.header_line,
                None,
                "the file has a header but no recipients".to_string(),
                Severity::Error,
            );
            self.scan.push(d);
        }
        self.scan
    }

    /// Checks one row and hands it to `f` when it is valid.
    fn row(
        &mut self,
        line: u64,
        row: Row<'_>,
        f: &mut impl FnMut(Recipient) -> Result<()>,
    ) -> Result<()> {
        let src = self.source;
        let scan = &mut self.scan;
        scan.rows += 1;
        let record = match row {
            Row::Read(record, cell_errors) => {
                for (i, e) in cell_errors {
                    let col = src
                        .headers
                        .get(*i)
                        .cloned()
                        .unwrap_or_else(|| format!("{}", i + 1));
                    scan.push(src.diagnostic(line, Some(&col), e.clone(), Severity::Error));
                }
                if !cell_errors.is_empty() {
                    scan.invalid += 1;
                    return Ok(());
                }
                record
            }
            Row::Unreadable(e) => {
                scan.invalid += 1;
                scan.push(src.diagnostic(line, None, e, Severity::Error));
                return Ok(());
            }
        };
        let mut row_errors = 0usize;
        let mut err = |scan: &mut Scan, col: Option<&str>, msg: String| {
            row_errors += 1;
            scan.push(src.diagnostic(line, col, msg, Severity::Error));
        };
        let width = src.headers.len();
        // Empty fields past the header's last column are Excel's `;;`, not fields.
        let len = if record.len() > width && trimmed_width(record) <= width {
            width
        } else {
            record.len()
        };
        if len != width {
            err(
                scan,
                None,
                format!(
                    "has {len} fields but the header has {width} (a stray delimiter or quote?)"
                ),
            );
        }
        for (i, field) in record.iter().enumerate().take(len) {
            if field.len() > MAX_FIELD_BYTES {
                let col = src.headers.get(i).map(String::as_str);
                err(
                    scan,
                    col,
                    format!(
                        "field is {} bytes long; at most {MAX_FIELD_BYTES} are accepted",
                        field.len()
                    ),
                );
            }
        }
        let raw_email = record.get(src.email_idx).unwrap_or("");
        let email = match normalize_email(raw_email) {
            Ok(e) => Some(e),
            Err(msg) => {
                err(scan, Some(&src.headers[src.email_idx]), msg);
                None
            }
        };
        let key = match src.key_idx {
            Some(i) => {
                let k = record.get(i).unwrap_or("").trim();
                if k.is_empty() {
                    err(scan, Some(&src.headers[i]), "the key is empty".to_string());
                    None
                } else if k.chars().any(char::is_control) {
                    err(
                        scan,
                        Some(&src.headers[i]),
                        "the key holds a control character".to_string(),
                    );
                    None
                } else {
                    Some(k.to_string())
                }
            }
            None => email.as_ref().map(|e| e.to_lowercase()),
        };
        // Cells of columns with allowed values, in the config's spelling.
        let mut cells: Vec<Option<FieldValue>> = Vec::new();
        for (i, allowed) in src.allowed.iter().enumerate() {
            let Some(allowed) = allowed else { continue };
            cells.resize(width, None);
            let cell = record.get(i).unwrap_or("").trim();
            let col = &src.headers[i];
            cells[i] = Some(match &src.list_seps[i] {
                Some(sep) => {
                    let mut items = Vec::new();
                    for item in split_list(cell, sep) {
                        match allowed.check(item) {
                            Ok(v) => items.push(v),
                            Err(msg) => err(scan, Some(col), msg),
                        }
                    }
                    FieldValue::List(items)
                }
                None => match allowed.check(cell) {
                    Ok(v) => FieldValue::Text(v),
                    Err(msg) => {
                        err(scan, Some(col), msg);
                        FieldValue::Text(String::new())
                    }
                },
            });
        }
        if let Some(k) = &key {
            let h = hash128(&self.hasher, k);
            if let Some(first) = self.keys.get(&h).copied() {
                let col = &src.headers[src.key_idx.unwrap_or(src.email_idx)];
                err(
                    scan,
                    Some(col),
                    format!(
                        "key {} appears again: first on line {first}",
                        quoted_excerpt(k)
                    ),
                );
            } else if row_errors == 0 {
                self.keys.insert(h, line32(line));
            }
        }
        if row_errors > 0 {
            scan.invalid += 1;
            return Ok(());
        }
        let (Some(key), Some(email)) = (key, email) else {
            scan.invalid += 1;
            return Ok(());
        };
        if src.key_idx.is_some() {
            let h = hash128(&self.hasher, &email.to_lowercase())[0];
            if let Some(first) = self.emails.get(&h).copied() {
                scan.push(src.diagnostic(
                    line,
                    Some(&src.headers[src.email_idx]),
                    format!("{email} is also the address of the row on line {first} (a shared household address?); each gets its own notice"),
                    Severity::Warning,
                ));
            } else {
                self.emails.insert(h, line32(line));
            }
        }
        scan.valid += 1;
        if !self.with_fields {
            return f(Recipient {
                line,
                key,
                email,
                name: String::new(),
                fields: Vec::new(),
            });
        }
        let name = src
            .name_idx
            .and_then(|i| record.get(i))
            .map(one_line)
            .unwrap_or_default();
        let fields = src
            .headers
            .iter()
            .enumerate()
            .map(|(i, h)| {
                if let Some(v) = cells.get_mut(i).and_then(Option::take) {
                    return (h.clone(), v);
                }
                let cell = record.get(i).unwrap_or("").trim();
                let value = match &src.list_seps[i] {
                    Some(sep) => {
                        FieldValue::List(split_list(cell, sep).map(str::to_string).collect())
                    }
                    None => FieldValue::Text(cell.to_string()),
                };
                (h.clone(), value)
            })
            .collect();
        f(Recipient {
            line,
            key,
            email,
            name,
            fields,
        })
    }
}

/// The items of a list cell: split, trimmed, empty ones left out.
fn split_list<'t>(cell: &'t str, sep: &'t str) -> impl Iterator<Item = &'t str> {
    cell.split(sep).map(str::trim).filter(|s| !s.is_empty())
}

/// A line number kept in a u32 (files of more than four billion lines saturate).
fn line32(line: u64) -> u32 {
    u32::try_from(line).unwrap_or(u32::MAX)
}

fn hash128(hasher: &std::collections::hash_map::RandomState, s: &str) -> [u64; 2] {
    let mut a = hasher.build_hasher();
    a.write(s.as_bytes());
    let mut b = hasher.build_hasher();
    b.write_u8(0xA5);
    b.write(s.as_bytes());
    [a.finish(), b.finish()]
}

pub(super) fn csv_error_text(e: &csv::Error) -> String {
    match e.kind() {
        csv::ErrorKind::Utf8 { .. } => "the text is not valid UTF-8".to_string(),
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => {
            format!("has {len} fields but the header has {expected_len}")
        }
        csv::ErrorKind::Io(io) => format!("cannot read: {io}"),
        _ => e.to_string(),
    }
}
