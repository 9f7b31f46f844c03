//! The recipient file: encoding and delimiter detection (`sniff`), the header (`header`),
//! streaming rows (`rows`), the address rules (`address`) and the findings (`diagnostics`),
//! the checks every row must pass before anyone is sent anything.
//!
//! Excel on Swedish Windows writes `;`-separated Windows-1252; other tools write UTF-8 with
//! or without BOM. The file is read twice, streaming: a first pass hashes it (the journal
//! records which CSV a run used) and decides the encoding by strict UTF-8 validation, since
//! Windows-1252 decoding never fails; a second pass parses rows. Memory does not grow with
//! the row count beyond one small hash per key. Every problem is reported as
//! `FILE:LINE: column NAME: what is wrong`, all of them in one run.

mod address;
mod diagnostics;
mod file_name;
mod header;
mod rows;
mod sniff;

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use serde::Serialize;
use serde::ser::SerializeMap;

/// Kept under its old name for the modules that import it from here.
pub use crate::text::one_line;
pub use address::normalize_email;
pub use diagnostics::{Diagnostic, MAX_KEPT_DIAGNOSTICS, Severity};
pub use file_name::{file_stem, slug};
pub use rows::Scan;
pub use sniff::{Encoding, detect_delimiter};

use crate::config::{self, CsvEncoding};
use rows::csv_error_text;
use sniff::{hash_and_sniff, line_of_first_nul, looks_like_utf16};

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
