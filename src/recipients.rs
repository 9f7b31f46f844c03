//! The recipient CSV: encoding and delimiter detection, streaming rows, and the checks
//! every row must pass before anyone is sent anything.
//!
//! Excel on Swedish Windows writes `;`-separated Windows-1252; other tools write UTF-8 with
//! or without BOM. The file is read twice, streaming: a first pass hashes it (the journal
//! records which CSV a run used) and decides the encoding by strict UTF-8 validation, since
//! Windows-1252 decoding never fails; a second pass parses rows. Memory does not grow with
//! the row count beyond one small hash per key. Every problem is reported as
//! `FILE:LINE: column NAME: what is wrong`, all of them in one run.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::fs::File;
use std::hash::{BuildHasher, Hasher};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Serialize;
use serde::ser::SerializeMap;
use sha2::{Digest, Sha256};

use crate::config::{self, CsvEncoding};

/// The longest field accepted: anything longer is not a customer record.
pub const MAX_FIELD_BYTES: usize = 64 * 1024;

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// The row cannot be sent.
    Error,
    /// Worth the operator's eye; the row is sent.
    Warning,
}

/// One finding about the CSV, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file as the operator named it.
    pub file: String,
    /// The physical line where the record starts (header = 1).
    pub line: u64,
    /// The column, where one is to blame.
    pub column: Option<String>,
    /// What is wrong.
    pub message: String,
    /// Error or warning.
    pub severity: Severity,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.severity == Severity::Warning {
            write!(f, "warning: ")?;
        }
        write!(f, "{}:{}: ", self.file, self.line)?;
        if let Some(c) = &self.column {
            write!(f, "column {c}: ")?;
        }
        write!(f, "{}", self.message)
    }
}

/// A cell as the templates see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum FieldValue {
    /// A plain cell.
    Text(String),
    /// A cell of a list column, split.
    List(Vec<String>),
}

/// One valid recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient {
    /// The line where the record starts.
    pub line: u64,
    /// What identifies the recipient in the journal.
    pub key: String,
    /// The address, normalized (domain lower-case ASCII).
    pub email: String,
    /// The display name, on one line (may be empty).
    pub name: String,
    /// Every column, in header order.
    pub fields: Vec<(String, FieldValue)>,
}

impl Recipient {
    /// A column's text, if the CSV has it.
    pub fn field(&self, name: &str) -> Option<&FieldValue> {
        self.fields.iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }
}

/// `recipient.<header>` for the templates.
impl Serialize for Recipient {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.fields.len()))?;
        for (k, v) in &self.fields {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

/// The encoding found in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// UTF-8 (`bom`: with a byte-order mark).
    Utf8 {
        /// Whether the file starts with EF BB BF.
        bom: bool,
    },
    /// Windows-1252.
    Windows1252,
}

impl fmt::Display for Encoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Encoding::Utf8 { bom: true } => write!(f, "UTF-8 with BOM"),
            Encoding::Utf8 { bom: false } => write!(f, "UTF-8"),
            Encoding::Windows1252 => write!(f, "Windows-1252"),
        }
    }
}

/// An opened CSV: hashed, its encoding and delimiter decided, its header checked.
#[derive(Debug, Clone)]
pub struct CsvSource {
    /// The file.
    pub path: PathBuf,
    /// The name shown in diagnostics.
    pub shown: String,
    /// SHA-256 of the bytes, hex.
    pub sha256: String,
    /// The encoding.
    pub encoding: Encoding,
    /// The delimiter byte.
    pub delimiter: u8,
    /// Header names, trimmed.
    pub headers: Vec<String>,
    email_idx: usize,
    key_idx: Option<usize>,
    name_idx: Option<usize>,
    list_seps: Vec<Option<String>>,
}

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

/// Errors above this many are counted, not kept (a million bad rows must not fill memory).
const MAX_KEPT_DIAGNOSTICS: usize = 10_000;

impl Scan {
    fn push(&mut self, d: Diagnostic) {
        let list = match d.severity {
            Severity::Error => &mut self.errors,
            Severity::Warning => &mut self.warnings,
        };
        if list.len() < MAX_KEPT_DIAGNOSTICS {
            list.push(d);
        }
    }
}

impl CsvSource {
    /// Opens, hashes and checks the header of the configured CSV. A file-level problem
    /// (missing, empty, binary, UTF-16, missing column) is an error naming the file.
    pub fn open(cfg: &config::Recipients) -> Result<CsvSource> {
        // `./recipients.csv` reads better as `recipients.csv`.
        let shown = cfg
            .path
            .strip_prefix(".")
            .unwrap_or(&cfg.path)
            .display()
            .to_string();
        let file = File::open(&cfg.path)
            .with_context(|| format!("{shown}: cannot open the recipient CSV"))?;
        let (sha256, utf8_ok, first_bytes, has_nul) =
            hash_and_sniff(file).with_context(|| format!("{shown}: cannot read"))?;
        if first_bytes.is_empty() {
            bail!(
                "{shown}:1: the file is empty: expected a header row with an {:?} column",
                cfg.email_column
            );
        }
        if first_bytes.starts_with(&[0xFF, 0xFE]) || first_bytes.starts_with(&[0xFE, 0xFF]) {
            bail!(
                "{shown}:1: the file is UTF-16 (Excel's \"Unicode text\"): save it as \"CSV UTF-8\" or \"CSV (semikolonavgränsad)\""
            );
        }
        if has_nul {
            if looks_like_utf16(&first_bytes) {
                bail!(
                    "{shown}:1: the file looks like UTF-16 without a byte-order mark: save it as \"CSV UTF-8\" or \"CSV (semikolonavgränsad)\""
                );
            }
            let line = line_of_first_nul(&cfg.path).unwrap_or(1);
            bail!("{shown}:{line}: the file holds NUL bytes: it is not a CSV text file");
        }
        let bom = first_bytes.starts_with(&[0xEF, 0xBB, 0xBF]);
        let encoding = match cfg.encoding {
            CsvEncoding::Utf8 => {
                if !utf8_ok {
                    bail!(
                        "{shown}: encoding = \"utf-8\" is set but the file is not valid UTF-8 (Excel on Windows writes windows-1252)"
                    );
                }
                Encoding::Utf8 { bom }
            }
            CsvEncoding::Windows1252 => Encoding::Windows1252,
            CsvEncoding::Auto if utf8_ok => Encoding::Utf8 { bom },
            CsvEncoding::Auto => Encoding::Windows1252,
        };
        let mut source = CsvSource {
            path: cfg.path.clone(),
            shown,
            sha256,
            encoding,
            delimiter: b',',
            headers: Vec::new(),
            email_idx: 0,
            key_idx: None,
            name_idx: None,
            list_seps: Vec::new(),
        };
        // Decide the delimiter from the decoded header line.
        let mut header_line = String::new();
        source
            .decoded_reader()?
            .read_line(&mut header_line)
            .with_context(|| format!("{}: cannot read", source.shown))?;
        if let Some(c) = header_line
            .chars()
            .find(|c| c.is_control() && !matches!(c, '\t' | '\r' | '\n'))
        {
            bail!(
                "{}:1: the header row holds the control character {:?}: this is not a CSV text file (save the sheet as CSV)",
                source.shown,
                c
            );
        }
        source.delimiter = match cfg.delimiter {
            Some(d) => d,
            None => detect_delimiter(&header_line),
        };
        source.check_header(cfg)?;
        Ok(source)
    }

    /// A reader of the file's text as UTF-8, without BOM.
    fn decoded_reader(&self) -> Result<Box<dyn BufRead>> {
        let file = File::open(&self.path)
            .with_context(|| format!("{}: cannot open the recipient CSV", self.shown))?;
        Ok(match self.encoding {
            Encoding::Utf8 { bom } => {
                let mut r = BufReader::with_capacity(256 * 1024, file);
                if bom {
                    let mut skip = [0u8; 3];
                    r.read_exact(&mut skip)
                        .with_context(|| format!("{}: cannot read", self.shown))?;
                }
                Box::new(r)
            }
            Encoding::Windows1252 => Box::new(BufReader::with_capacity(
                256 * 1024,
                encoding_rs_io::DecodeReaderBytesBuilder::new()
                    .encoding(Some(encoding_rs::WINDOWS_1252))
                    .build(file),
            )),
        })
    }

    fn csv_reader(&self) -> Result<csv::Reader<Box<dyn BufRead>>> {
        Ok(csv::ReaderBuilder::new()
            .delimiter(self.delimiter)
            .flexible(true)
            .has_headers(true)
            .buffer_capacity(256 * 1024)
            .from_reader(self.decoded_reader()?))
    }

    fn check_header(&mut self, cfg: &config::Recipients) -> Result<()> {
        let mut reader = self.csv_reader()?;
        let headers = reader
            .headers()
            .map_err(|e| {
                anyhow::anyhow!(
                    "{}:1: cannot read the header row: {}",
                    self.shown,
                    csv_error_text(&e)
                )
            })?
            .clone();
        self.headers = headers.iter().map(|h| h.trim().to_string()).collect();
        let mut problems = Vec::new();
        let mut seen = HashSet::new();
        for (i, h) in self.headers.iter().enumerate() {
            if h.is_empty() {
                problems.push(format!(
                    "{}:1: column {}: the header has no name",
                    self.shown,
                    i + 1
                ));
            } else if h.len() > 256 {
                problems.push(format!(
                    "{}:1: column {}: a header name of {} bytes is not a column name ({})",
                    self.shown,
                    i + 1,
                    h.len(),
                    bounded(h, 40)
                ));
            } else if !seen.insert(h.as_str()) {
                problems.push(format!(
                    "{}:1: column {}: appears twice in the header",
                    self.shown,
                    bounded(h, 60)
                ));
            }
        }
        let find = |name: &str| self.headers.iter().position(|h| h == name);
        let delim = match self.delimiter {
            b'\t' => "tab".to_string(),
            d => format!("{:?}", d as char),
        };
        let found = shown_headers(&self.headers);
        let mixed = [',', ';', '\t']
            .iter()
            .filter(|&&c| c != self.delimiter as char)
            .any(|&c| self.headers.iter().any(|h| h.contains(c)));
        let hint = if mixed {
            "; the header mixes delimiters: use one of , ; or tab throughout, or set [recipients] delimiter"
        } else {
            ""
        };
        match find(&cfg.email_column) {
            Some(i) => self.email_idx = i,
            None => problems.push(format!(
                "{}:1: column {}: missing from the header (found: {found}; delimiter {delim}){hint}",
                self.shown, cfg.email_column,
            )),
        }
        if let Some(k) = &cfg.key_column {
            match find(k) {
                Some(i) => self.key_idx = Some(i),
                None => problems.push(format!(
                    "{}:1: column {k}: key_column is missing from the header (found: {found})",
                    self.shown,
                )),
            }
        }
        self.name_idx = find(&cfg.name_column);
        self.list_seps = vec![None; self.headers.len()];
        for (col, sep) in &cfg.list_columns {
            match find(col) {
                Some(i) => self.list_seps[i] = Some(sep.clone()),
                None => problems.push(format!(
                    "{}:1: column {col}: named in list_columns but missing from the header",
                    self.shown
                )),
            }
        }
        if !problems.is_empty() {
            bail!("{}", problems.join("\n"));
        }
        Ok(())
    }

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
                            quoted_bounded(k)
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

    fn diag(
        &self,
        line: u64,
        column: Option<&str>,
        message: String,
        severity: Severity,
    ) -> Diagnostic {
        Diagnostic {
            file: self.shown.clone(),
            line,
            column: column.map(str::to_string),
            message,
            severity,
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

fn csv_error_text(e: &csv::Error) -> String {
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

/// One pass over the bytes: SHA-256, strict UTF-8 validity, the first bytes, NUL bytes.
fn hash_and_sniff(mut file: File) -> std::io::Result<(String, bool, Vec<u8>, bool)> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut carry: Vec<u8> = Vec::new();
    let mut utf8_ok = true;
    let mut first = Vec::new();
    let mut has_nul = false;
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let chunk = &buf[..n];
        hasher.update(chunk);
        if first.len() < 4 {
            first.extend_from_slice(&chunk[..chunk.len().min(4 - first.len())]);
        }
        if !has_nul && memchr_nul(chunk) {
            has_nul = true;
        }
        if utf8_ok {
            carry.extend_from_slice(chunk);
            match std::str::from_utf8(&carry) {
                Ok(_) => carry.clear(),
                Err(e) if e.error_len().is_none() => {
                    let keep = carry.split_off(e.valid_up_to());
                    carry = keep;
                }
                Err(_) => utf8_ok = false,
            }
        }
    }
    if !carry.is_empty() {
        utf8_ok = false;
    }
    // UTF-16 text is full of NULs; report it as UTF-16, not as binary.
    if first.starts_with(&[0xFF, 0xFE]) || first.starts_with(&[0xFE, 0xFF]) {
        has_nul = false;
    }
    let hex = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok((hex, utf8_ok, first, has_nul))
}

fn memchr_nul(bytes: &[u8]) -> bool {
    bytes.contains(&0)
}

/// ASCII text in UTF-16 without a BOM: every other byte of the first four is NUL.
fn looks_like_utf16(first: &[u8]) -> bool {
    matches!(first, [a, 0, b, 0, ..] | [0, a, 0, b, ..] if *a != 0 && *b != 0)
}

/// The line (1-based) of the first NUL byte, read again only when there is one.
fn line_of_first_nul(path: &Path) -> Option<u64> {
    let mut file = File::open(path).ok()?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut line = 1u64;
    loop {
        let n = file.read(&mut buf).ok()?;
        if n == 0 {
            return None;
        }
        let chunk = &buf[..n];
        match chunk.iter().position(|&b| b == 0) {
            Some(i) => {
                return Some(line + chunk[..i].iter().filter(|&&b| b == b'\n').count() as u64);
            }
            None => line += chunk.iter().filter(|&&b| b == b'\n').count() as u64,
        }
    }
}

/// At most `max` characters of `text`, control characters escaped, for error messages:
/// a CSV cell may be megabytes long or hold terminal escapes.
fn bounded(text: &str, max: usize) -> String {
    let mut out = String::new();
    for (i, c) in text.chars().enumerate() {
        if i == max {
            out.push_str(&format!("… ({} bytes)", text.len()));
            break;
        }
        if c.is_control() {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
    out
}

/// A cell quoted for an error message (`"anna.@example"`), shortened when long.
fn quoted_bounded(text: &str) -> String {
    const MAX: usize = 100;
    if text.chars().count() <= MAX {
        return format!("{text:?}");
    }
    let head: String = text.chars().take(MAX).collect();
    format!("{head:?}… ({} bytes)", text.len())
}

/// The header names for an error message: each bounded, at most 20 of them.
fn shown_headers(headers: &[String]) -> String {
    let mut shown: Vec<String> = headers.iter().take(20).map(|h| bounded(h, 40)).collect();
    if headers.len() > 20 {
        shown.push(format!("and {} more", headers.len() - 20));
    }
    shown.join(", ")
}

/// The delimiter the header line uses most (outside quotes); `,` when it uses none.
pub fn detect_delimiter(header: &str) -> u8 {
    let mut counts = [0usize; 3];
    let mut quoted = false;
    for c in header.chars() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => counts[0] += 1,
            ';' if !quoted => counts[1] += 1,
            '\t' if !quoted => counts[2] += 1,
            _ => {}
        }
    }
    let delims = [b',', b';', b'\t'];
    let mut best = 0;
    for i in 1..3 {
        if counts[i] > counts[best] {
            best = i;
        }
    }
    delims[best]
}

/// The text on one line: control characters (CR, LF, tab, ...) become spaces, runs of
/// spaces fold, ends trimmed. Everything that may reach a header goes through this.
pub fn one_line(text: &str) -> String {
    if already_one_line(text) {
        return text.to_string();
    }
    fold_to_one_line(text)
}

/// Whether `one_line` would give `text` back as it is: single spaces only between words,
/// nothing else that is white space or a control character. Most names and subjects are
/// like that, and checking is cheaper than rebuilding them character by character.
fn already_one_line(text: &str) -> bool {
    let mut after_space = true;
    for c in text.chars() {
        if c == ' ' {
            if after_space {
                return false;
            }
            after_space = true;
        } else if c.is_control() || c.is_whitespace() || c == '\u{2028}' || c == '\u{2029}' {
            return false;
        } else {
            after_space = false;
        }
    }
    !after_space || text.is_empty()
}

fn fold_to_one_line(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut space = false;
    for c in text.chars() {
        if c.is_control() || c.is_whitespace() || c == '\u{2028}' || c == '\u{2029}' {
            space = true;
        } else {
            if space && !out.is_empty() {
                out.push(' ');
            }
            space = false;
            out.push(c);
        }
    }
    out
}

/// Checks an address and returns it with the domain in lower-case ASCII (IDN to punycode).
/// The error says, in words an operator understands, what is wrong.
pub fn normalize_email(raw: &str) -> std::result::Result<String, String> {
    let text = raw.trim_matches(|c: char| c == ' ' || c == '\u{a0}');
    if text.is_empty() {
        return Err("the address is empty".into());
    }
    let shown = || quoted_bounded(text);
    if text.contains(['\r', '\n']) {
        return Err(format!("{} contains a line break", shown()));
    }
    if text.contains('<') || text.contains('>') || text.contains('(') {
        return Err(format!(
            "{} is not a bare address: put only the address (name@example.se) in this column, the name in its own",
            shown()
        ));
    }
    if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "{} is not a valid address: it contains a space",
            shown()
        ));
    }
    if text.contains(',') || text.contains(';') {
        return Err(format!(
            "{} holds more than one address; one per row",
            shown()
        ));
    }
    let Some((local, domain)) = text.rsplit_once('@') else {
        return Err(format!("{} is not a valid address: no @", shown()));
    };
    if local.is_empty() {
        return Err(format!(
            "{} is not a valid address: nothing before @",
            shown()
        ));
    }
    if domain.is_empty() {
        return Err(format!(
            "{} is not a valid address: no domain after @",
            shown()
        ));
    }
    if local.contains('@') || local.contains('"') {
        return Err(format!(
            "{} is not a valid address: quoted or several @ are not accepted",
            shown()
        ));
    }
    if !local.is_ascii() {
        return Err(format!(
            "{}: letters like å, ä, ö before @ are not supported by most relays; check the address with the customer",
            shown()
        ));
    }
    if local.len() > 64 {
        return Err(format!(
            "{} is not a valid address: more than 64 characters before @",
            shown()
        ));
    }
    if local.starts_with('.') || local.ends_with('.') || local.contains("..") {
        return Err(format!(
            "{} is not a valid address: a dot at the start or end of the name, or two dots",
            shown()
        ));
    }
    // RFC 5322 atext, and the dot.
    let atext = |c: char| {
        c.is_ascii_alphanumeric()
            || matches!(
                c,
                '!' | '#'
                    | '$'
                    | '%'
                    | '&'
                    | '\''
                    | '*'
                    | '+'
                    | '-'
                    | '/'
                    | '='
                    | '?'
                    | '^'
                    | '_'
                    | '`'
                    | '{'
                    | '|'
                    | '}'
                    | '~'
                    | '.'
            )
    };
    if let Some(bad) = local.chars().find(|c| !atext(*c)) {
        return Err(format!(
            "{} is not a valid address: {bad:?} is not allowed before @",
            shown()
        ));
    }
    if domain.ends_with('.') {
        return Err(format!(
            "{} is not a valid address: the domain ends with a dot",
            shown()
        ));
    }
    let ascii = if domain.is_ascii() {
        domain.to_ascii_lowercase()
    } else {
        match idna::domain_to_ascii_strict(domain) {
            Ok(d) => d,
            Err(_) => {
                return Err(format!(
                    "{}: the domain {domain:?} is not a valid internationalized domain name",
                    shown()
                ));
            }
        }
    };
    if ascii.len() > 253 {
        return Err(format!(
            "{} is not a valid address: the domain is too long",
            shown()
        ));
    }
    let labels: Vec<&str> = ascii.split('.').collect();
    if labels.len() < 2 {
        return Err(format!(
            "{} is not a valid address: the domain {domain:?} has no dot (example.se)",
            shown()
        ));
    }
    for label in &labels {
        if label.is_empty() {
            return Err(format!(
                "{} is not a valid address: the domain has an empty part (two dots)",
                shown()
            ));
        }
        if label.len() > 63
            || label.starts_with('-')
            || label.ends_with('-')
            || !label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            return Err(format!(
                "{} is not a valid address: {label:?} is not a valid part of a domain",
                shown()
            ));
        }
    }
    if labels
        .last()
        .is_some_and(|tld| tld.chars().all(|c| c.is_ascii_digit()))
    {
        return Err(format!(
            "{} is not a valid address: the domain ends in a number",
            shown()
        ));
    }
    let mut address = String::with_capacity(local.len() + 1 + ascii.len());
    address.push_str(local);
    address.push('@');
    address.push_str(&ascii);
    Ok(address)
}

/// Name of a file holding the given recipient (key, then a slug of the name).
pub fn file_stem(key: &str, name: &str) -> String {
    let mut out: String = key
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(60)
        .collect();
    let slug = slug(name);
    if !slug.is_empty() {
        out.push('-');
        out.push_str(&slug);
    }
    out
}

/// `Åsa Öberg-Ek` → `asa-oberg-ek`.
pub fn slug(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars().flat_map(char::to_lowercase) {
        let mapped = match c {
            'å' | 'ä' | 'á' | 'à' | 'â' => 'a',
            'ö' | 'ø' | 'ó' | 'ò' | 'ô' => 'o',
            'é' | 'è' | 'ê' | 'ë' => 'e',
            'ü' | 'ú' => 'u',
            'í' | 'ï' => 'i',
            c if c.is_ascii_alphanumeric() => c,
            _ => '-',
        };
        if mapped == '-' && (out.is_empty() || out.ends_with('-')) {
            continue;
        }
        out.push(mapped);
        if out.len() >= 40 {
            break;
        }
    }
    out.trim_end_matches('-').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn cfg(path: &Path) -> config::Recipients {
        config::Recipients {
            path: path.to_path_buf(),
            email_column: "email".into(),
            key_column: Some("id".into()),
            name_column: "name".into(),
            encoding: CsvEncoding::Auto,
            delimiter: None,
            list_columns: vec![("affected".into(), "|".into())],
            sheet: None,
            language_column: None,
            values: Default::default(),
        }
    }

    fn write(bytes: &[u8]) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().expect("temp");
        f.write_all(bytes).expect("write");
        f
    }

    fn scan_all(bytes: &[u8]) -> (Vec<Recipient>, Scan) {
        let f = write(bytes);
        let src = CsvSource::open(&cfg(f.path())).expect("opens");
        let mut out = Vec::new();
        let scan = src
            .scan(|r| {
                out.push(r);
                Ok(())
            })
            .expect("scans");
        (out, scan)
    }

    #[test]
    fn utf8_comma() {
        let (rows, scan) = scan_all(
            b"id,name,email,affected\n1,\xc3\x85sa \xc3\x96berg,asa@example.se,namn|adress\n",
        );
        assert_eq!(scan.errors, vec![]);
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].name, "Åsa Öberg");
        assert_eq!(rows[0].key, "1");
        assert_eq!(rows[0].line, 2);
        assert_eq!(
            rows[0].field("affected"),
            Some(&FieldValue::List(vec!["namn".into(), "adress".into()]))
        );
    }

    #[test]
    fn utf8_bom_semicolon_crlf() {
        let (rows, scan) =
            scan_all(b"\xef\xbb\xbfid;name;email;affected\r\n7;Per-Erik;pe@example.se;namn\r\n");
        assert!(scan.errors.is_empty(), "{:?}", scan.errors);
        assert_eq!(rows[0].key, "7");
        assert_eq!(rows[0].name, "Per-Erik");
        assert_eq!(
            rows[0].fields[0].0, "id",
            "BOM must not stick to the first header"
        );
    }

    #[test]
    fn windows_1252_detected() {
        // "Åsa Öberg" in Windows-1252: C5 73 61 20 D6 62 65 72 67
        let (rows, scan) =
            scan_all(b"id;name;email;affected\n1;\xc5sa \xd6berg;asa@example.se;namn\n");
        assert!(scan.errors.is_empty(), "{:?}", scan.errors);
        assert_eq!(rows[0].name, "Åsa Öberg");
        let f = write(b"id;name;email;affected\n1;\xc5sa;a@example.se;x\n");
        assert_eq!(
            CsvSource::open(&cfg(f.path())).expect("opens").encoding,
            Encoding::Windows1252
        );
    }

    #[test]
    fn forced_utf8_refuses_1252() {
        let f = write(b"id;name;email;affected\n1;\xc5sa;a@example.se;x\n");
        let mut c = cfg(f.path());
        c.encoding = CsvEncoding::Utf8;
        assert!(format!("{:#}", CsvSource::open(&c).unwrap_err()).contains("not valid UTF-8"));
    }

    #[test]
    fn quoted_fields_with_newlines_delimiters_and_quotes() {
        let (rows, scan) = scan_all(
            b"id,name,email,affected,address\n1,\"Lind, Bo\",bo@example.se,namn,\"Storgatan 1\n123 45 Storstad\"\n2,\"Sm\"\"ed\",s@example.se,namn,x\n",
        );
        assert!(scan.errors.is_empty(), "{:?}", scan.errors);
        assert_eq!(rows[0].name, "Lind, Bo");
        assert_eq!(
            rows[0].field("address"),
            Some(&FieldValue::Text("Storgatan 1\n123 45 Storstad".into()))
        );
        assert_eq!(
            rows[1].line, 4,
            "line where the record starts, after a 2-line record"
        );
        assert_eq!(rows[1].name, "Sm\"ed");
    }

    #[test]
    fn bad_address_reported_with_file_line_column_all_at_once() {
        let (rows, scan) = scan_all(
            b"id,name,email,affected\n1,A,anna.@example,x\n2,B,bo@example.se,x\n3,C,c d@example.se,x\n",
        );
        assert_eq!(rows.len(), 1);
        assert_eq!(scan.invalid, 2);
        let text: Vec<String> = scan.errors.iter().map(|d| d.to_string()).collect();
        assert!(text[0].ends_with(":2: column email: \"anna.@example\" is not valid address: a dot at the start or end of the name, or two dots".replace("not valid", "not a valid").as_str()), "{text:?}");
        assert!(text[1].contains(":4: column email:"), "{text:?}");
    }

    #[test]
    fn duplicate_key_is_error_shared_address_is_warning() {
        let (rows, scan) = scan_all(
            b"id,name,email,affected\n1,A,a@example.se,x\n1,B,b@example.se,x\n2,C,a@example.se,x\n",
        );
        assert_eq!(rows.len(), 2);
        assert_eq!(scan.errors.len(), 1);
        assert!(
            scan.errors[0]
                .to_string()
                .contains(":3: column id: key \"1\" appears again: first on line 2")
        );
        assert_eq!(scan.warnings.len(), 1);
        assert!(scan.warnings[0].to_string().contains(":4: column email:"));
    }

    #[test]
    fn missing_columns_named() {
        let f = write(b"id,namn,epost\n1,A,a@example.se\n");
        let msg = format!("{:#}", CsvSource::open(&cfg(f.path())).unwrap_err());
        assert!(
            msg.contains(":1: column email: missing from the header"),
            "{msg}"
        );
        assert!(msg.contains("column affected"), "{msg}");
    }

    #[test]
    fn field_count_mismatch() {
        let (_, scan) =
            scan_all(b"id,name,email,affected\n1,A,a@example.se\n2,B,b@example.se,x,extra\n");
        assert_eq!(scan.invalid, 2);
        assert!(
            scan.errors[0]
                .to_string()
                .contains(":2: has 3 fields but the header has 4")
        );
        assert!(scan.errors[1].to_string().contains(":3: has 5 fields"));
    }

    #[test]
    fn empty_header_only_binary_utf16() {
        let f = write(b"");
        assert!(format!("{:#}", CsvSource::open(&cfg(f.path())).unwrap_err()).contains("empty"));
        let (_, scan) = scan_all(b"id,name,email,affected\n");
        assert!(scan.errors[0].message.contains("no recipients"));
        let f = write(b"\x00\x01\x02binary\x00");
        assert!(format!("{:#}", CsvSource::open(&cfg(f.path())).unwrap_err()).contains("NUL"));
        let f = write(b"\xff\xfei\x00d\x00");
        assert!(format!("{:#}", CsvSource::open(&cfg(f.path())).unwrap_err()).contains("UTF-16"));
    }

    #[test]
    fn key_defaults_to_lowercased_address() {
        let f = write(b"name,email\nA,Anna@Example.SE\n");
        let mut c = cfg(f.path());
        c.key_column = None;
        c.list_columns.clear();
        let src = CsvSource::open(&c).expect("opens");
        let mut keys = Vec::new();
        src.scan(|r| {
            keys.push((r.key, r.email));
            Ok(())
        })
        .expect("scan");
        assert_eq!(
            keys,
            vec![("anna@example.se".into(), "Anna@example.se".into())]
        );
    }

    #[test]
    fn addresses() {
        assert_eq!(
            normalize_email(" a.b+c@Example.SE ").as_deref(),
            Ok("a.b+c@example.se")
        );
        assert_eq!(
            normalize_email("kund@räksmörgås.se").as_deref(),
            Ok("kund@xn--rksmrgs-5wao1o.se")
        );
        for bad in [
            "",
            "anna",
            "anna@",
            "@example.se",
            "a b@example.se",
            "a@example",
            "a@example.se.",
            "Anna <a@example.se>",
            "a@example.se (Anna)",
            ".a@example.se",
            "a..b@example.se",
            "a@-x.se",
            "åsa@example.se",
            "a@example.se\r\nBcc: x@y.se",
            "a@b@example.se",
            "a@example.123",
        ] {
            assert!(normalize_email(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn one_line_strips_header_breakers() {
        assert_eq!(
            one_line("Anna\r\nBcc: evil@example.com"),
            "Anna Bcc: evil@example.com"
        );
        assert_eq!(one_line("  a\t\tb \u{2028} c "), "a b c");
        for text in [
            "",
            " ",
            "a",
            "a b",
            "a  b",
            " a",
            "a ",
            "Åsa Öberg",
            "a\u{a0}b",
            "a\u{85}b",
        ] {
            assert_eq!(one_line(text), fold_to_one_line(text), "{text:?}");
        }
    }

    #[test]
    fn delimiter_detection() {
        assert_eq!(detect_delimiter("a;b;c\n"), b';');
        assert_eq!(detect_delimiter("a,b,c\n"), b',');
        assert_eq!(detect_delimiter("a\tb\tc\n"), b'\t');
        assert_eq!(detect_delimiter("\"a;x\",b,c\n"), b',');
        assert_eq!(detect_delimiter("email\n"), b',');
    }

    #[test]
    fn slugs() {
        assert_eq!(slug("Åsa Öberg-Ek"), "asa-oberg-ek");
        assert_eq!(file_stem("1042", "Bo Ek"), "1042-bo-ek");
        assert_eq!(file_stem("../x", ""), "___x");
    }

    #[test]
    fn huge_field_rejected() {
        let mut data = b"id,name,email,affected\n1,".to_vec();
        data.extend(std::iter::repeat_n(b'x', MAX_FIELD_BYTES + 1));
        data.extend(b",a@example.se,x\n");
        let (_, scan) = scan_all(&data);
        assert!(scan.errors[0].to_string().contains("column name: field is"));
    }
}

#[cfg(test)]
mod proptests {
    //! Arbitrary bytes through the CSV reader: it never panics, every problem is one
    //! printable line with a line number, the row counts add up, and every recipient it
    //! accepts has a normalized address and a one-line name.
    use super::*;
    use proptest::prelude::*;
    use std::io::Write;

    fn cfg(path: &Path, key: bool) -> config::Recipients {
        config::Recipients {
            path: path.to_path_buf(),
            email_column: "email".into(),
            key_column: key.then(|| "id".into()),
            name_column: "name".into(),
            encoding: CsvEncoding::Auto,
            delimiter: None,
            list_columns: vec![("affected".into(), "|".into())],
            sheet: None,
            language_column: None,
            values: Default::default(),
        }
    }

    /// Opens and scans `bytes`; checks what must hold whatever the input.
    fn check(bytes: &[u8], key: bool) -> Result<(), TestCaseError> {
        let mut f = tempfile::NamedTempFile::new().expect("temp");
        f.write_all(bytes).expect("write");
        let source = match CsvSource::open(&cfg(f.path(), key)) {
            Ok(s) => s,
            Err(e) => {
                let text = format!("{e:#}");
                prop_assert!(!text.is_empty());
                prop_assert!(
                    !text.chars().any(|c| c.is_control() && c != '\n'),
                    "control character in {text:?}"
                );
                return Ok(());
            }
        };
        let mut recipients = Vec::new();
        let scan = source
            .scan(|r| {
                recipients.push(r);
                Ok(())
            })
            .expect("scan fails only on I/O or the callback");
        prop_assert_eq!(scan.rows, scan.valid + scan.invalid);
        prop_assert_eq!(scan.valid, recipients.len() as u64);
        prop_assert!(scan.invalid == 0 || !scan.errors.is_empty());
        for d in scan.errors.iter().chain(&scan.warnings) {
            prop_assert!(d.line >= 1);
            let text = d.to_string();
            prop_assert!(
                !text.chars().any(char::is_control),
                "control character in {text:?}"
            );
        }
        let mut last_line = 0;
        for r in &recipients {
            prop_assert!(r.line > last_line, "recipients in file order");
            last_line = r.line;
            prop_assert_eq!(normalize_email(&r.email), Ok(r.email.clone()));
            prop_assert!(!r.name.chars().any(char::is_control), "{:?}", r.name);
            prop_assert!(!r.key.is_empty());
            prop_assert_eq!(r.fields.len(), source.headers.len());
        }
        Ok(())
    }

    /// Pieces that CSV, encodings and addresses trip over.
    fn piece() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            Just(b",".to_vec()),
            Just(b";".to_vec()),
            Just(b"\t".to_vec()),
            Just(b"\"".to_vec()),
            Just(b"\n".to_vec()),
            Just(b"\r\n".to_vec()),
            Just(b"\r".to_vec()),
            Just(b"@".to_vec()),
            Just(b".".to_vec()),
            Just(b"|".to_vec()),
            Just(b"a@example.se".to_vec()),
            Just(b"Anna <a@example.se>".to_vec()),
            Just("Åsa Öberg".as_bytes().to_vec()),
            Just(b"\xc5sa".to_vec()),
            Just(b"\xef\xbb\xbf".to_vec()),
            Just(b"\xff\xfe".to_vec()),
            Just(b"\0".to_vec()),
            Just(b"\x1b[31m".to_vec()),
            Just(b"1".to_vec()),
            Just(b"2".to_vec()),
            Just(b"xn--".to_vec()),
            Just("kund@räksmörgås.se".as_bytes().to_vec()),
            prop::collection::vec(any::<u8>(), 1..8),
        ]
    }

    fn csv_like() -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(piece(), 0..40).prop_map(|p| p.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]

        #[test]
        fn one_line_shortcut_agrees_with_folding(text in "[ a\\t\\r\\nÅ\\u{a0}\\u{85}\\u{2028}\\u{7f}-]{0,12}") {
            prop_assert_eq!(one_line(&text), fold_to_one_line(&text));
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..600), key in any::<bool>()) {
            check(&bytes, key)?;
        }

        #[test]
        fn csv_like_bytes_after_a_header_never_panic(
            header in prop_oneof![
                Just(&b"id,name,email,affected\n"[..]),
                Just(&b"id;name;email;affected\r\n"[..]),
                Just(&b"\xef\xbb\xbfid\tname\temail\taffected\n"[..]),
                Just(&b"\"id\",\"name\",\"email\",\"affected\"\n"[..]),
            ],
            body in csv_like(),
            key in any::<bool>(),
        ) {
            let mut bytes = header.to_vec();
            bytes.extend_from_slice(&body);
            check(&bytes, key)?;
        }

        #[test]
        fn csv_like_bytes_anywhere_never_panic(bytes in csv_like(), key in any::<bool>()) {
            check(&bytes, key)?;
        }

        #[test]
        fn addresses_are_checked_without_panic_and_idempotently(text in prop::collection::vec(piece(), 0..6)) {
            let text = String::from_utf8_lossy(&text.concat()).into_owned();
            if let Ok(email) = normalize_email(&text) {
                prop_assert_eq!(normalize_email(&email), Ok(email.clone()));
                prop_assert!(email.is_ascii(), "{:?}", email);
                prop_assert!(email.parse::<lettre::Address>().is_ok(), "lettre refuses {:?}", email);
            }
        }
    }
}
