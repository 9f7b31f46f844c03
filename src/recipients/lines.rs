//! Physical line numbers of the text the CSV reader parses, whatever the line endings.
//!
//! The csv crate's own line count is one too low after a CRLF (it hands back a record when
//! it has read the CR, and counts the LF only when the next record starts) and after a blank
//! line (a record's position is taken before the blank lines it skips), and it counts no line
//! at all for CR-only files. So the text is counted here as it passes to the parser: where
//! every line starts (after LF, CRLF or a lone CR) and whether it is blank. A record's line
//! is then the first non-blank line starting at or after the byte the parser says the
//! record starts at. Only the lines between the record being read and the parser's
//! read-ahead are held.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::Read;
use std::rc::Rc;

/// Appended after the real text: a final line that no CSV file can hold (NUL bytes are
/// refused before parsing). When it comes back as a record of its own, every quote in the
/// file was closed; when it comes back inside a field, that field's quote was still open
/// at the end of the file.
pub(super) const END_MARK: &[u8] = b"\n\0utskick: end of file\0\n";

/// The end mark as the record of its own that it is when every quote was closed.
pub(super) const END_RECORD: &[u8] = b"\0utskick: end of file\0";

/// Where lines start, for the text read so far.
#[derive(Debug)]
pub(super) struct LineIndex {
    /// Offsets of line starts not yet passed, with whether the line is blank (None: its
    /// first byte is not read yet).
    starts: VecDeque<(u64, Option<bool>)>,
    /// The line number of `starts[0]`.
    first: u64,
    /// Bytes seen.
    offset: u64,
    /// The last byte seen was a CR: the next byte decides whether it ends a CRLF.
    pending_cr: bool,
}

impl Default for LineIndex {
    fn default() -> Self {
        LineIndex {
            starts: VecDeque::from([(0, None)]),
            first: 1,
            offset: 0,
            pending_cr: false,
        }
    }
}

impl LineIndex {
    /// Takes the next bytes of the text.
    pub(super) fn feed(&mut self, chunk: &[u8]) {
        if chunk.is_empty() {
            return;
        }
        let base = self.offset;
        let end = base + chunk.len() as u64;
        let mut i = 0usize;
        if self.pending_cr {
            self.pending_cr = false;
            if chunk[0] == b'\n' {
                i = 1;
            }
            self.starts.push_back((base + i as u64, None));
        }
        while let Some(j) = memchr::memchr2(b'\n', b'\r', &chunk[i..]).map(|j| i + j) {
            if chunk[j] == b'\n' {
                i = j + 1;
            } else if j + 1 == chunk.len() {
                self.pending_cr = true;
                break;
            } else if chunk[j + 1] == b'\n' {
                i = j + 2;
            } else {
                i = j + 1;
            }
            self.starts.push_back((base + i as u64, None));
        }
        // Lines whose first byte is in this chunk: blank or not.
        for (start, blank) in self.starts.iter_mut().rev() {
            if blank.is_some() {
                break;
            }
            if *start < end && *start >= base {
                let b = chunk[(*start - base) as usize];
                *blank = Some(b == b'\n' || b == b'\r');
            }
        }
        self.offset = end;
    }

    /// The text has ended.
    pub(super) fn finish(&mut self) {
        if self.pending_cr {
            self.pending_cr = false;
            self.starts.push_back((self.offset, Some(true)));
        }
        for (_, blank) in self.starts.iter_mut() {
            blank.get_or_insert(true);
        }
    }

    /// The physical line (header = 1) of a record the parser starts reading at `byte`.
    /// Calls must come with `byte` never decreasing.
    pub(super) fn line_of(&mut self, byte: u64) -> u64 {
        while self.starts.len() > 1 && self.starts[0].0 < byte {
            self.starts.pop_front();
            self.first += 1;
        }
        if self.starts.front().is_some_and(|s| s.0 < byte) {
            // Only the last line start seen, and it is before `byte`: the record starts on it.
            return self.first;
        }
        match self.starts.iter().position(|s| s.1 != Some(true)) {
            Some(i) => self.first + i as u64,
            None => self.first + self.starts.len().saturating_sub(1) as u64,
        }
    }
}

/// How many line breaks `text` holds (CRLF counts once, a lone CR or LF once each).
pub(super) fn breaks(text: &[u8]) -> u64 {
    let mut n = 0;
    let mut i = 0;
    while let Some(j) = memchr::memchr2(b'\n', b'\r', &text[i..]).map(|j| i + j) {
        n += 1;
        i = if text[j] == b'\r' && text.get(j + 1) == Some(&b'\n') {
            j + 2
        } else {
            j + 1
        };
    }
    n
}

/// A reader that passes the text on, counting its lines into a shared `LineIndex`, and
/// adds `END_MARK` after it when asked to.
pub(super) struct Counted<R> {
    inner: R,
    index: Rc<RefCell<LineIndex>>,
    tail: &'static [u8],
    ended: bool,
}

impl<R: Read> Counted<R> {
    /// Counts `inner`'s lines into `index`; `end_mark` adds `END_MARK` after the text.
    pub(super) fn new(inner: R, index: Rc<RefCell<LineIndex>>, end_mark: bool) -> Self {
        Counted {
            inner,
            index,
            tail: if end_mark { END_MARK } else { b"" },
            ended: false,
        }
    }
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if !self.ended {
            let n = self.inner.read(buf)?;
            if n > 0 || buf.is_empty() {
                self.index.borrow_mut().feed(&buf[..n]);
                return Ok(n);
            }
            self.ended = true;
            self.index.borrow_mut().finish();
        }
        let n = self.tail.len().min(buf.len());
        buf[..n].copy_from_slice(&self.tail[..n]);
        self.tail = &self.tail[n..];
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lines of every record start csv reports for `text`, through a `Counted` reader fed in
    /// chunks of `chunk` bytes.
    fn record_lines(text: &[u8], chunk: usize) -> Vec<(u64, String)> {
        struct Chunked<'a>(&'a [u8], usize);
        impl Read for Chunked<'_> {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                let n = self.0.len().min(self.1).min(buf.len());
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let index = Rc::new(RefCell::new(LineIndex::default()));
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .buffer_capacity(chunk.max(1))
            .from_reader(Counted::new(Chunked(text, chunk), index.clone(), false));
        let mut out = Vec::new();
        let mut record = csv::StringRecord::new();
        while reader.read_record(&mut record).expect("reads") {
            let byte = record.position().expect("position").byte();
            out.push((index.borrow_mut().line_of(byte), record[0].to_string()));
        }
        out
    }

    #[test]
    fn every_line_ending_and_blank_lines_give_physical_lines() {
        let want = |v: &[(u64, &str)]| -> Vec<(u64, String)> {
            v.iter().map(|(l, s)| (*l, s.to_string())).collect()
        };
        for chunk in [1, 2, 3, 7, 4096] {
            assert_eq!(
                record_lines(b"h\na\nb\n", chunk),
                want(&[(1, "h"), (2, "a"), (3, "b")])
            );
            assert_eq!(
                record_lines(b"h\r\na\r\nb\r\n", chunk),
                want(&[(1, "h"), (2, "a"), (3, "b")]),
                "CRLF, chunk {chunk}"
            );
            assert_eq!(
                record_lines(b"h\ra\rb", chunk),
                want(&[(1, "h"), (2, "a"), (3, "b")]),
                "CR, chunk {chunk}"
            );
            assert_eq!(
                record_lines(b"h\r\n\r\na\r\n\r\n\r\nb\r\n", chunk),
                want(&[(1, "h"), (3, "a"), (6, "b")]),
                "CRLF with blank lines, chunk {chunk}"
            );
            assert_eq!(
                record_lines(b"h\n\na\n\n\nb", chunk),
                want(&[(1, "h"), (3, "a"), (6, "b")]),
                "LF with blank lines, chunk {chunk}"
            );
            assert_eq!(
                record_lines(b"h\r\r\na\r\rb\r", chunk),
                want(&[(1, "h"), (3, "a"), (5, "b")]),
                "CR blank lines, chunk {chunk}"
            );
            assert_eq!(
                record_lines(b"h\r\n\"a\r\nb\"\r\nc\r\n", chunk),
                want(&[(1, "h"), (2, "a\r\nb"), (4, "c")]),
                "a quoted field over two lines, chunk {chunk}"
            );
        }
    }

    #[test]
    fn breaks_count_crlf_once() {
        assert_eq!(breaks(b""), 0);
        assert_eq!(breaks(b"a\nb"), 1);
        assert_eq!(breaks(b"a\r\nb\rc\n"), 3);
        assert_eq!(breaks(b"\r\r\n\n"), 3);
    }

    #[test]
    fn the_end_mark_follows_the_text() {
        let index = Rc::new(RefCell::new(LineIndex::default()));
        let mut out = Vec::new();
        Counted::new(&b"a\nb"[..], index, true)
            .read_to_end(&mut out)
            .expect("reads");
        let mut want = b"a\nb".to_vec();
        want.extend_from_slice(END_MARK);
        assert_eq!(out, want);
    }
}
