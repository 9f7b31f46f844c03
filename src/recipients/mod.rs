//! The recipient file: a CSV (UTF-8, Windows-1252 or UTF-16; `,`, `;` or tab) or a
//! workbook (`.xlsx`, `.ods`), and the checks every row must pass before anyone is sent
//! anything.
//!
//! `sniff` hashes the file and decides its encoding and delimiter; `quotes` refuses a file
//! where a stray quote swallows rows, before any row is used; `header` finds the columns;
//! `rows` reads and checks every row in one streaming pass, with `lines` giving physical
//! line numbers, `address` the address rules and `values` the allowed values; `sheet` reads
//! workbooks; `diagnostics` is what a finding is. Memory does not grow with the row count
//! beyond one small hash per key. Every problem is reported as `FILE:LINE: column NAME:
//! what is wrong` (`FILE: sheet S, row N: ...` for a workbook), all of them in one run.

mod address;
mod diagnostics;
mod file_name;
mod header;
mod lines;
mod quotes;
mod rows;
mod sheet;
mod sniff;
mod values;

use std::cell::RefCell;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::rc::Rc;

use anyhow::{Context, Result, bail};
use serde::Serialize;
use serde::ser::SerializeMap;

/// Kept under its old name for the modules that import it from here.
pub use crate::text::one_line;
pub use address::{normalize_email, to_header};
pub use diagnostics::{Diagnostic, MAX_KEPT_DIAGNOSTICS, Severity};
pub use file_name::slug;
pub use rows::Scan;
pub use sniff::{Encoding, detect_delimiter};

use crate::config::{self, CsvEncoding};
use lines::{Counted, LineIndex};
use rows::csv_error_text;
use sniff::{hash_and_sniff, line_of_first_nul, looks_like_utf16};
use values::Allowed;

/// The longest field accepted: anything longer is not a customer record.
pub const MAX_FIELD_BYTES: usize = 64 * 1024;

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
    /// The physical line where the record starts (header = 1), or the sheet's row.
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

/// An opened recipient file: hashed, its encoding and delimiter decided, its quotes and
/// header checked. (Named for the CSV it first was; it reads workbooks too.)
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
    /// The delimiter byte (for a workbook, `;`: what `--failed-csv` writes for Excel).
    pub delimiter: u8,
    /// Header names, trimmed, without empty trailing columns; a column the config names is
    /// spelled as the config spells it.
    pub headers: Vec<String>,
    /// The workbook's sheet, for a workbook.
    sheet: Option<String>,
    /// The line (or sheet row) of the header.
    header_line: u64,
    /// What the header check found worth a warning; every scan reports it.
    header_warnings: Vec<Diagnostic>,
    email_idx: usize,
    key_idx: Option<usize>,
    name_idx: Option<usize>,
    list_seps: Vec<Option<String>>,
    allowed: Vec<Option<Allowed>>,
}

/// The text up to the first line break (LF, CR or CRLF), read no further: a CR-only file
/// is one "line" to `read_line`.
fn first_line(reader: &mut dyn BufRead) -> std::io::Result<String> {
    let mut bytes = Vec::new();
    loop {
        let buf = reader.fill_buf()?;
        if buf.is_empty() {
            break;
        }
        if let Some(i) = memchr::memchr2(b'\n', b'\r', buf) {
            bytes.extend_from_slice(&buf[..i]);
            break;
        }
        bytes.extend_from_slice(buf);
        let n = buf.len();
        reader.consume(n);
        if bytes.len() > MAX_FIELD_BYTES * 16 {
            break;
        }
    }
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// A CSV reader of the decoded text, with the line index it counts into.
type TextReader = csv::Reader<Counted<Box<dyn BufRead>>>;

impl CsvSource {
    /// Opens, hashes and checks the configured file. A file-level problem (missing, empty,
    /// binary, UTF-16 without BOM, a stray quote, a missing column) is an error naming the
    /// file, all of them at once where they are of one kind.
    pub fn open(cfg: &config::Recipients) -> Result<CsvSource> {
        // `./recipients.csv` reads better as `recipients.csv`.
        let shown = cfg
            .path
            .strip_prefix(".")
            .unwrap_or(&cfg.path)
            .display()
            .to_string();
        let file = File::open(&cfg.path)
            .with_context(|| format!("{shown}: cannot open the recipient file"))?;
        let (sha256, utf8_ok, first_bytes, has_nul) =
            hash_and_sniff(file).with_context(|| format!("{shown}: cannot read"))?;
        let mut source = CsvSource {
            path: cfg.path.clone(),
            shown,
            sha256,
            encoding: Encoding::Utf8 { bom: false },
            delimiter: b',',
            headers: Vec::new(),
            sheet: None,
            header_line: 1,
            header_warnings: Vec::new(),
            email_idx: 0,
            key_idx: None,
            name_idx: None,
            list_seps: Vec::new(),
            allowed: Vec::new(),
        };
        if sheet::is_workbook(&cfg.path) {
            source.encoding = Encoding::Workbook;
            source.delimiter = b';';
            let header = source.sheet_header(cfg.sheet.as_deref())?;
            source.check_header(header, cfg)?;
            return Ok(source);
        }
        let shown = source.shown.clone();
        if first_bytes.is_empty() {
            bail!(
                "{shown}:1: the file is empty: expected a header row with an {:?} column",
                cfg.email_column
            );
        }
        let bom = first_bytes.starts_with(&[0xEF, 0xBB, 0xBF]);
        source.encoding = if first_bytes.starts_with(&[0xFF, 0xFE]) {
            Encoding::Utf16 { big_endian: false }
        } else if first_bytes.starts_with(&[0xFE, 0xFF]) {
            Encoding::Utf16 { big_endian: true }
        } else {
            if has_nul {
                if looks_like_utf16(&first_bytes) {
                    bail!(
                        "{shown}:1: the file looks like UTF-16 without a byte-order mark: save it as \"CSV UTF-8\" or \"CSV (semikolonavgränsad)\""
                    );
                }
                let line = line_of_first_nul(&cfg.path).unwrap_or(1);
                bail!("{shown}:{line}: the file holds NUL bytes: it is not a CSV text file");
            }
            match cfg.encoding {
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
            }
        };
        // Decide the delimiter from the decoded header line.
        let header_line = first_line(source.decoded_reader()?.as_mut())
            .with_context(|| format!("{shown}: cannot read"))?;
        if let Some(c) = header_line
            .chars()
            .find(|c| c.is_control() && !matches!(c, '\t' | '\r' | '\n'))
        {
            bail!(
                "{shown}:1: the header row holds the control character {c:?}: this is not a CSV text file (save the sheet as CSV)"
            );
        }
        if source.encoding.is_utf16() && header_line.contains('\0') {
            bail!("{shown}:1: the file holds NUL bytes: it is not a CSV text file");
        }
        source.delimiter = match cfg.delimiter {
            Some(d) => d,
            None => detect_delimiter(&header_line),
        };
        let header = source.text_header()?;
        source.check_header(header, cfg)?;
        source.check_quotes()?;
        Ok(source)
    }

    /// Where a line is, for a message: `FILE:LINE` or `FILE: sheet S, row N`.
    pub fn at(&self, line: u64) -> String {
        match &self.sheet {
            Some(s) => format!("{}: sheet {s}, row {line}", self.shown),
            None => format!("{}:{line}", self.shown),
        }
    }

    /// A reader of the file's text as UTF-8, without BOM.
    fn decoded_reader(&self) -> Result<Box<dyn BufRead>> {
        let file = File::open(&self.path)
            .with_context(|| format!("{}: cannot open the recipient file", self.shown))?;
        let decoding = |encoding: &'static encoding_rs::Encoding, file: File| -> Box<dyn BufRead> {
            Box::new(BufReader::with_capacity(
                256 * 1024,
                encoding_rs_io::DecodeReaderBytesBuilder::new()
                    .encoding(Some(encoding))
                    .build(file),
            ))
        };
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
            Encoding::Windows1252 => decoding(encoding_rs::WINDOWS_1252, file),
            // The byte-order mark is taken off by the decoder.
            Encoding::Utf16 { big_endian: false } => decoding(encoding_rs::UTF_16LE, file),
            Encoding::Utf16 { big_endian: true } => decoding(encoding_rs::UTF_16BE, file),
            Encoding::Workbook => bail!("{}: a workbook has no text to read", self.shown),
        })
    }

    /// A CSV reader of the text (header included as a record), counting physical lines;
    /// `end_mark` adds the mark that tells a quote still open at the end (see `lines`).
    fn text_reader(&self, end_mark: bool) -> Result<(TextReader, Rc<RefCell<LineIndex>>)> {
        let index = Rc::new(RefCell::new(LineIndex::default()));
        let reader = csv::ReaderBuilder::new()
            .delimiter(self.delimiter)
            .flexible(true)
            .has_headers(false)
            .buffer_capacity(256 * 1024)
            .from_reader(Counted::new(
                self.decoded_reader()?,
                index.clone(),
                end_mark,
            ));
        Ok((reader, index))
    }

    /// The header row of a CSV, its names as written.
    fn text_header(&mut self) -> Result<Vec<String>> {
        let (mut reader, index) = self.text_reader(false)?;
        let mut record = csv::StringRecord::new();
        match reader.read_record(&mut record) {
            Ok(_) => {
                let byte = record.position().map_or(0, |p| p.byte());
                self.header_line = index.borrow_mut().line_of(byte);
                Ok(record.iter().map(str::to_string).collect())
            }
            Err(e) => bail!(
                "{}: cannot read the header row: {}",
                self.at(1),
                csv_error_text(&e)
            ),
        }
    }

    /// The first row of the sheet that has a cell (rows above it are empty), as written.
    fn sheet_header(&mut self, wanted: Option<&str>) -> Result<Vec<String>> {
        let mut header = None;
        let name = sheet::read(&self.path, wanted, &self.shown, |row| {
            header = Some((row.number, row.cells.to_vec()));
            Ok(false)
        })?;
        self.sheet = Some(name);
        match header {
            Some((n, cells)) => {
                self.header_line = n;
                Ok(cells)
            }
            None => bail!("{}: the sheet is empty: expected a header row", self.at(1)),
        }
    }

    /// A finding about this file at `line`.
    pub fn diagnostic(
        &self,
        line: u64,
        column: Option<&str>,
        message: String,
        severity: Severity,
    ) -> Diagnostic {
        Diagnostic {
            file: self.shown.clone(),
            sheet: self.sheet.clone(),
            line,
            column: column.map(str::to_string),
            message,
            severity,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::path::Path;

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
        // UTF-16 with a BOM is read: here a header of one column, "id".
        let f = write(b"\xff\xfei\x00d\x00");
        let msg = format!("{:#}", CsvSource::open(&cfg(f.path())).unwrap_err());
        assert!(
            msg.contains(":1: column email: missing from the header (found: id;"),
            "{msg}"
        );
        let f = write(b"i\x00d\x00,\x00e\x00");
        let msg = format!("{:#}", CsvSource::open(&cfg(f.path())).unwrap_err());
        assert!(msg.contains("UTF-16 without a byte-order mark"), "{msg}");
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

    /// `text` as UTF-16 with its byte-order mark.
    fn utf16(text: &str, big_endian: bool) -> Vec<u8> {
        let mut out = if big_endian {
            vec![0xFE, 0xFF]
        } else {
            vec![0xFF, 0xFE]
        };
        for u in text.encode_utf16() {
            out.extend(if big_endian {
                u.to_be_bytes()
            } else {
                u.to_le_bytes()
            });
        }
        out
    }

    #[test]
    fn utf16_both_byte_orders_tab_separated() {
        for big_endian in [false, true] {
            let text = "id\tname\temail\taffected\r\n1\tÅsa Öberg\tasa@example.se\tnamn\r\n2\tBo\tbo@@example.se\tnamn\r\n";
            let (rows, scan) = scan_all(&utf16(text, big_endian));
            assert_eq!(rows.len(), 1, "{:?}", scan.errors);
            assert_eq!(rows[0].name, "Åsa Öberg");
            assert_eq!(
                rows[0].fields[0].0, "id",
                "the BOM is not part of the header"
            );
            assert_eq!(scan.errors.len(), 1);
            assert!(
                scan.errors[0].to_string().contains(":3: column email:"),
                "{:?}",
                scan.errors
            );
        }
    }

    #[test]
    fn lines_are_physical_whatever_the_line_ends() {
        for (what, text) in [
            (
                "LF",
                &b"id,name,email,affected\n1,A,a@example.se,x\n2,B,bad,x\n"[..],
            ),
            (
                "CRLF",
                b"id,name,email,affected\r\n1,A,a@example.se,x\r\n2,B,bad,x\r\n",
            ),
            (
                "CR",
                b"id,name,email,affected\r1,A,a@example.se,x\r2,B,bad,x\r",
            ),
        ] {
            let (rows, scan) = scan_all(text);
            assert_eq!(rows[0].line, 2, "{what}");
            assert!(
                scan.errors[0].to_string().contains(":3: column email:"),
                "{what}: {:?}",
                scan.errors
            );
        }
        let (rows, scan) = scan_all(
            b"id,name,email,affected\r\n\r\n1,A,a@example.se,x\r\n\r\n\r\n2,B,bad,x\r\n3,\"C\r\nD\",c@example.se,x\r\n4,E,bad,x\r\n",
        );
        assert_eq!(rows[0].line, 3);
        assert_eq!(rows[1].line, 7, "the line where a two-line record starts");
        let lines: Vec<u64> = scan.errors.iter().map(|d| d.line).collect();
        assert_eq!(lines, vec![6, 9]);
    }

    #[test]
    fn a_quote_open_at_the_end_is_refused_naming_its_line() {
        let f = write(b"id,name,email,affected\n1,A,a@example.se,x\n2,B,b@example.se,\"x\n3,C,c@example.se,x\n4,D,d@example.se,x\n");
        let msg = format!("{:#}", CsvSource::open(&cfg(f.path())).unwrap_err());
        assert!(
            msg.contains(":3: column affected: a quote opens a field on this line and is never closed: the rest of the file (3 lines) would be one field"),
            "{msg}"
        );
    }

    #[test]
    fn a_quote_that_swallows_rows_is_refused_a_multi_line_address_is_not() {
        let f = write(b"id,name,email,affected,address\r\n1,\"A,a@example.se,x,y\r\n2,B,b@example.se,x,y\r\n3,C,c@example.se,x,\"Storgatan 1\r\n123 45 Storstad\"\r\n");
        let msg = format!("{:#}", CsvSource::open(&cfg(f.path())).unwrap_err());
        assert!(
            msg.contains(":2: column name: a quote opens a field on this line that runs on over 2 line(s) that read as whole rows (the first on line 3)"),
            "{msg}"
        );
        let (rows, scan) = scan_all(b"id,name,email,affected,address\r\n3,C,c@example.se,x,\"Storgatan 1\r\n123 45 Storstad\"\r\n4,D,d@example.se,x,\"c/o E\n1,X,x@example.se,y\"\n");
        assert!(scan.errors.is_empty(), "{:?}", scan.errors);
        assert_eq!(rows.len(), 2);
        let _ = rows;
    }

    #[test]
    fn headers_match_ignoring_case_and_spaces_trailing_empty_columns_ignored() {
        let (rows, scan) = scan_all(b"ID; Name ;EMAIL;Affected;;\r\n1;A;a@example.se;x;;\r\n2;B;b@example.se;y;;\r\n;;;;;\r\n");
        assert!(scan.errors.is_empty(), "{:?}", scan.errors);
        assert_eq!(rows.len(), 2);
        let names: Vec<&str> = rows[0].fields.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, vec!["id", "name", "email", "affected"]);
        assert_eq!(rows[0].name, "A");
        let (_, scan) = scan_all(b"id;name;email;affected;;\n1;A;a@example.se;x;;oops\n");
        assert!(
            scan.errors[0]
                .to_string()
                .contains(":2: has 6 fields but the header has 4"),
            "{:?}",
            scan.errors
        );
        let f = write(b"id,name,email,Email,affected\n");
        let msg = format!("{:#}", CsvSource::open(&cfg(f.path())).unwrap_err());
        assert!(
            msg.contains(":1: column Email: appears twice in the header (as email: names match ignoring case and spaces)"),
            "{msg}"
        );
    }

    #[test]
    fn allowed_values_per_cell_and_per_list_item() {
        let f = write(b"id,name,email,affected,confirmed\n1,A,a@example.se,Namn|personumer,JA\n2,B,b@example.se,namn,jo\n3,C,c@example.se,bank| Epost ,\n");
        let mut c = cfg(f.path());
        c.values.insert(
            "affected".into(),
            ["namn", "adress", "personnummer", "bank", "epost", "telefon"]
                .map(String::from)
                .to_vec(),
        );
        c.values.insert(
            "confirmed".into(),
            ["ja", "nej", ""].map(String::from).to_vec(),
        );
        let src = CsvSource::open(&c).expect("opens");
        let mut rows = Vec::new();
        let scan = src
            .scan(|r| {
                rows.push(r);
                Ok(())
            })
            .expect("scans");
        let errors: Vec<String> = scan.errors.iter().map(|d| d.to_string()).collect();
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors[0].contains(":2: column affected: \"personumer\" is not an allowed value; the nearest allowed is \"personnummer\""), "{errors:?}");
        assert!(errors[1].contains(":3: column confirmed: \"jo\" is not an allowed value; the nearest allowed is \"ja\""), "{errors:?}");
        assert_eq!(rows.len(), 1);
        assert_eq!(
            rows[0].field("affected"),
            Some(&FieldValue::List(vec!["bank".into(), "epost".into()]))
        );
        assert_eq!(
            rows[0].field("confirmed"),
            Some(&FieldValue::Text("".into()))
        );
        let mut c = cfg(f.path());
        c.values.insert("kategori".into(), vec!["x".into()]);
        let scan = CsvSource::open(&c)
            .expect("opens")
            .scan(|_| Ok(()))
            .expect("scans");
        assert_eq!(
            scan.warnings[0].to_string(),
            format!(
                "warning: {}:1: column kategori: named in [recipients.values] but not in the header: its allowed values check nothing",
                f.path().display()
            )
        );
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
    use std::path::Path;

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
