//! Sniffing the recipient file before any row is read: its SHA-256 (the journal records
//! which file a run used), its encoding, whether it is text at all, and the delimiter.
//!
//! Windows-1252 decoding never fails, so the encoding is decided by strict UTF-8 validation
//! of the whole file, in the same streaming pass that hashes it.

use std::fmt;
use std::fs::File;
use std::io::Read;
use std::path::Path;

use sha2::{Digest, Sha256};

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
    /// UTF-16 with a byte-order mark (Excel's "Unicode text").
    Utf16 {
        /// FE FF rather than FF FE.
        big_endian: bool,
    },
    /// Not text: a workbook's cells.
    Workbook,
}

impl Encoding {
    /// Whether the text is UTF-16.
    pub fn is_utf16(self) -> bool {
        matches!(self, Encoding::Utf16 { .. })
    }
}

impl fmt::Display for Encoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Encoding::Utf8 { bom: true } => write!(f, "UTF-8 with BOM"),
            Encoding::Utf8 { bom: false } => write!(f, "UTF-8"),
            Encoding::Windows1252 => write!(f, "Windows-1252"),
            Encoding::Utf16 { big_endian: false } => write!(f, "UTF-16 LE"),
            Encoding::Utf16 { big_endian: true } => write!(f, "UTF-16 BE"),
            Encoding::Workbook => write!(f, "workbook"),
        }
    }
}

/// One pass over the bytes: SHA-256, strict UTF-8 validity, the first bytes, NUL bytes.
pub(super) fn hash_and_sniff(mut file: File) -> std::io::Result<(String, bool, Vec<u8>, bool)> {
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
    Ok((
        crate::text::hex(&hasher.finalize()),
        utf8_ok,
        first,
        has_nul,
    ))
}

fn memchr_nul(bytes: &[u8]) -> bool {
    bytes.contains(&0)
}

/// ASCII text in UTF-16 without a BOM: every other byte of the first four is NUL.
pub(super) fn looks_like_utf16(first: &[u8]) -> bool {
    matches!(first, [a, 0, b, 0, ..] | [0, a, 0, b, ..] if *a != 0 && *b != 0)
}

/// The line (1-based) of the first NUL byte, read again only when there is one.
pub(super) fn line_of_first_nul(path: &Path) -> Option<u64> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delimiter_detection() {
        assert_eq!(detect_delimiter("a;b;c\n"), b';');
        assert_eq!(detect_delimiter("a,b,c\n"), b',');
        assert_eq!(detect_delimiter("a\tb\tc\n"), b'\t');
        assert_eq!(detect_delimiter("\"a;x\",b,c\n"), b',');
        assert_eq!(detect_delimiter("email\n"), b',');
    }
}
