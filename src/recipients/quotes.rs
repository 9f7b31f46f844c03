//! Stray quotes: one quote left open merges every following row into one field, and the
//! CSV reader takes that without complaint (201 customers became one message, the other
//! 200 addresses in the first one's To name). So before any row is used the file's records
//! are checked once: a quoted field still open at the end of the file, or one that holds
//! lines that read as whole rows of this file, is an error naming the line where the quote
//! opened. A genuine multi-line field (an address over two lines) holds no such lines.

use anyhow::{Result, bail};

use super::address::normalize_email;
use super::lines::{END_MARK, END_RECORD, breaks};
use super::{CsvSource, csv_error_text};
use crate::recipients::diagnostics::MAX_KEPT_DIAGNOSTICS;

impl CsvSource {
    /// Reads every record once and refuses the file if a quote swallows rows.
    pub(super) fn check_quotes(&self) -> Result<()> {
        let (mut reader, index) = self.text_reader(true)?;
        let mut record = csv::ByteRecord::new();
        let mut problems = Vec::new();
        let mut header = true;
        loop {
            match reader.read_byte_record(&mut record) {
                Ok(false) => break,
                Ok(true) => {}
                // Read errors are the row scan's to report, with the row.
                Err(e) if !matches!(e.kind(), csv::ErrorKind::Io(_)) => continue,
                Err(e) => bail!("{}: {}", self.shown, csv_error_text(&e)),
            }
            let byte = record.position().map_or(0, |p| p.byte());
            let line = index.borrow_mut().line_of(byte);
            // The end mark as a record of its own: every quote was closed. (Not `break`: a
            // UTF-16 file could spell the mark out; then the rows after it are still read.)
            if record.len() == 1 && &record[0] == END_RECORD {
                continue;
            }
            let last = record.len().saturating_sub(1);
            let open_at_end = record.get(last).is_some_and(|f| f.ends_with(END_MARK));
            for (i, field) in record.iter().enumerate() {
                if !field.contains(&b'\n') && !field.contains(&b'\r') {
                    continue;
                }
                let opened = line + record.iter().take(i).map(breaks).sum::<u64>();
                let column = self.column_name(i, header);
                if i == last && open_at_end {
                    let rest = &field[..field.len() - END_MARK.len()];
                    let ends_a_line = rest.ends_with(b"\n") || rest.ends_with(b"\r");
                    let lines = breaks(rest) + u64::from(!ends_a_line);
                    problems.push(format!(
                        "{}: column {column}: a quote opens a field on this line and is never closed: the rest of the file ({lines} lines) would be one field; close the quote or remove it",
                        self.at(opened),
                    ));
                    continue;
                }
                if let Some((first, rows)) = self.swallowed_rows(field, opened) {
                    problems.push(format!(
                        "{}: column {column}: a quote opens a field on this line that runs on over {rows} line(s) that read as whole rows (the first on line {first}); close the quote or remove it",
                        self.at(opened)
                    ));
                }
            }
            header = false;
            if problems.len() >= MAX_KEPT_DIAGNOSTICS {
                break;
            }
        }
        if !problems.is_empty() {
            bail!("{}", problems.join("\n"));
        }
        Ok(())
    }

    /// The lines after the first of a multi-line field that read as rows of this file (as
    /// many fields as the header and a valid address in the address column): the line of
    /// the first such and how many, or None.
    fn swallowed_rows(&self, field: &[u8], opened: u64) -> Option<(u64, u64)> {
        let text = String::from_utf8_lossy(field)
            .replace("\r\n", "\n")
            .replace('\r', "\n");
        let mut first = None;
        let mut rows = 0u64;
        let mut line = opened;
        let mut parts = text.split('\n');
        // The first part is the rest of the line where the quote opened.
        parts.next();
        let mut record = csv::StringRecord::new();
        let delimiters_needed = self.headers.len().saturating_sub(1);
        for part in parts {
            line += 1;
            // A line with fewer delimiters than a row has is no row: most multi-line fields
            // (an address's second line) end here, without a parser.
            if part.is_empty()
                || memchr::memchr_iter(self.delimiter, part.as_bytes()).count() < delimiters_needed
            {
                continue;
            }
            let mut reader = csv::ReaderBuilder::new()
                .has_headers(false)
                .flexible(true)
                .delimiter(self.delimiter)
                .from_reader(part.as_bytes());
            if !matches!(reader.read_record(&mut record), Ok(true)) {
                continue;
            }
            if record.len() >= self.headers.len()
                && trimmed_width(&record) <= self.headers.len()
                && record
                    .get(self.email_idx)
                    .is_some_and(|e| normalize_email(e).is_ok())
            {
                rows += 1;
                first.get_or_insert(line);
            }
        }
        first.map(|f| (f, rows))
    }

    fn column_name(&self, i: usize, header: bool) -> String {
        if header {
            return format!("{}", i + 1);
        }
        self.headers
            .get(i)
            .cloned()
            .unwrap_or_else(|| format!("{}", i + 1))
    }
}

/// A record's width without the empty fields at its end (Excel's `;;`).
pub(super) fn trimmed_width(record: &csv::StringRecord) -> usize {
    (0..record.len())
        .rev()
        .find(|&i| record.get(i).is_some_and(|f| !f.trim().is_empty()))
        .map_or(0, |i| i + 1)
}
