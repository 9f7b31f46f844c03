//! The row scan: every record read once, checked (field count, size, address, key, the
//! same key twice, the same address under two keys) and handed on in file order.
//!
//! Memory does not grow with the row count beyond one small hash per key.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};

use anyhow::{Result, bail};

use super::address::normalize_email;
use super::diagnostics::{self, Diagnostic, Severity};
use super::{CsvSource, FieldValue, MAX_FIELD_BYTES, Recipient};
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

impl CsvSource {
    /// Reads every row, checks it, and calls `f` with each valid recipient in CSV order.
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
        let mut reader = self.csv_reader()?;
        let mut scan = Scan::default();
        let hasher = std::collections::hash_map::RandomState::new();
        // One small entry per row, so that a million rows stay within memory: a 128-bit
        // hash of the key (a false "duplicate" is out of reach) and 64 bits of the address
        // (only a warning rides on it), with the line as u32.
        let mut keys: HashMap<[u64; 2], u32, ahash::RandomState> = HashMap::default();
        let mut emails: HashMap<u64, u32, ahash::RandomState> = HashMap::default();
        // Sized up front for the rows the file's size suggests: a table that doubles while
        // it fills holds its old and new copies at once, and that was the peak of a
        // million-row preview's memory (157 MiB; 114 MiB sized). 100 bytes a row errs on
        // the short side of a customer row (name, address, data categories): guessing too
        // many rows would double the table for nothing, too few costs one doubling.
        let rows_estimate = std::fs::metadata(&self.path)
            .map_or(0, |m| usize::try_from(m.len() / 100).unwrap_or(usize::MAX))
            .min(1 << 24);
        keys.reserve(rows_estimate);
        if self.key_idx.is_some() {
            emails.reserve(rows_estimate);
        }
        let mut record = csv::StringRecord::new();
        loop {
            let line = reader.position().line();
            match reader.read_record(&mut record) {
                Ok(false) => break,
                Ok(true) => {}
                Err(e) => {
                    scan.rows += 1;
                    scan.invalid += 1;
                    let line = e.position().map(|p| p.line()).unwrap_or(line);
                    scan.push(self.diag(line, None, csv_error_text(&e), Severity::Error));
                    if matches!(e.kind(), csv::ErrorKind::Io(_)) {
                        break;
                    }
                    continue;
                }
            }
            let line = record.position().map(|p| p.line()).unwrap_or(line);
            if record.len() == 1 && record.get(0).is_some_and(|f| f.trim().is_empty()) {
                continue; // a blank line
            }
            scan.rows += 1;
            let mut row_errors = 0usize;
            let mut err = |scan: &mut Scan, col: Option<&str>, msg: String| {
                row_errors += 1;
                scan.push(self.diag(line, col, msg, Severity::Error));
            };
            if record.len() != self.headers.len() {
                err(
                    &mut scan,
                    None,
                    format!(
                        "has {} fields but the header has {} (a stray delimiter or quote?)",
                        record.len(),
                        self.headers.len()
                    ),
                );
            }
            for (i, field) in record.iter().enumerate() {
                if field.len() > MAX_FIELD_BYTES {
                    let col = self.headers.get(i).map(String::as_str);
                    err(
                        &mut scan,
                        col,
                        format!(
                            "field is {} bytes long; at most {MAX_FIELD_BYTES} are accepted",
                            field.len()
                        ),
                    );
                }
            }
            let raw_email = record.get(self.email_idx).unwrap_or("");
            let email = match normalize_email(raw_email) {
                Ok(e) => Some(e),
                Err(msg) => {
                    let col = self.headers[self.email_idx].clone();
                    err(&mut scan, Some(&col), msg);
                    None
                }
            };
            let key = match self.key_idx {
                Some(i) => {
                    let k = record.get(i).unwrap_or("").trim();
                    if k.is_empty() {
                        let col = self.headers[i].clone();
                        err(&mut scan, Some(&col), "the key is empty".to_string());
                        None
                    } else if k.chars().any(char::is_control) {
                        let col = self.headers[i].clone();
                        err(
                            &mut scan,
                            Some(&col),
                            "the key holds a control character".to_string(),
                        );
                        None
                    } else {
                        Some(k.to_string())
                    }
                }
                None => email.as_ref().map(|e| e.to_lowercase()),
            };
            if let Some(k) = &key {
                let h = hash128(&hasher, k);
                if let Some(first) = keys.get(&h).copied() {
                    let col = match self.key_idx {
                        Some(i) => self.headers[i].clone(),
                        None => self.headers[self.email_idx].clone(),
                    };
                    err(
                        &mut scan,
                        Some(&col),
                        format!(
                            "key {} appears again: first on line {first}",
                            quoted_excerpt(k)
                        ),
                    );
                } else if row_errors == 0 {
                    keys.insert(h, line32(line));
                }
            }
            if row_errors > 0 {
                scan.invalid += 1;
                continue;
            }
            let (Some(key), Some(email)) = (key, email) else {
                scan.invalid += 1;
                continue;
            };
            if self.key_idx.is_some() {
                let h = hash128(&hasher, &email.to_lowercase())[0];
                if let Some(first) = emails.get(&h).copied() {
                    scan.push(self.diag(
                        line,
                        Some(&self.headers[self.email_idx]),
                        format!("{email} is also the address of the row on line {first} (a shared household address?); each gets its own notice"),
                        Severity::Warning,
                    ));
                } else {
                    emails.insert(h, line32(line));
                }
            }
            if !with_fields {
                scan.valid += 1;
                f(Recipient {
                    line,
                    key,
                    email,
                    name: String::new(),
                    fields: Vec::new(),
                })?;
                continue;
            }
            let name = self
                .name_idx
                .and_then(|i| record.get(i))
                .map(one_line)
                .unwrap_or_default();
            let fields = self
                .headers
                .iter()
                .enumerate()
                .map(|(i, h)| {
                    let cell = record.get(i).unwrap_or("").trim();
                    let value = match &self.list_seps[i] {
                        Some(sep) => FieldValue::List(
                            cell.split(sep.as_str())
                                .map(str::trim)
                                .filter(|s| !s.is_empty())
                                .map(str::to_string)
                                .collect(),
                        ),
                        None => FieldValue::Text(cell.to_string()),
                    };
                    (h.clone(), value)
                })
                .collect();
            scan.valid += 1;
            f(Recipient {
                line,
                key,
                email,
                name,
                fields,
            })?;
        }
        if scan.rows == 0 {
            scan.push(self.diag(
                1,
                None,
                "the file has a header but no recipients".to_string(),
                Severity::Error,
            ));
        }
        Ok(scan)
    }

    /// Reads every row (valid or not) as the raw cells, with its line, for follow-up lists.
    pub fn raw_rows(&self, mut f: impl FnMut(u64, &csv::StringRecord) -> Result<()>) -> Result<()> {
        let mut reader = self.csv_reader()?;
        let mut record = csv::StringRecord::new();
        loop {
            match reader.read_record(&mut record) {
                Ok(false) => break,
                Ok(true) => {
                    let line = record.position().map(|p| p.line()).unwrap_or(0);
                    f(line, &record)?;
                }
                Err(e) => bail!("{}: {}", self.shown, csv_error_text(&e)),
            }
        }
        Ok(())
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
