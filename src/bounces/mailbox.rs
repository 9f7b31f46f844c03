//! Reading the messages of a local mail source for `utskick bounces`.
//!
//! Bounces pile up in whatever the operator's mail setup keeps: an mbox file exported from
//! a mail client, a Maildir on the server, or a folder of `.eml` files saved one by one.
//! This module turns any of them into raw messages, each with a label that tells the
//! operator where to find it again, for [`crate::bounces::report::parse`] to read. (IMAP mailboxes are
//! fetched elsewhere.)

use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use mail_parser::mailbox::mbox;

/// Read-ahead of an mbox file; a message is handed on as soon as its last line is read.
const MBOX_BUFFER: usize = 256 * 1024;

/// One raw message and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailItem {
    /// Enough to find the message again: `bounces.mbox#3` (the third message, from 1),
    /// `Maildir/new/1697098503.M1P2.host`, `saved/bounce.eml`.
    pub label: String,
    /// The message as stored (an mbox's `From ` line left out and `>From ` un-escaped).
    pub raw: Vec<u8>,
}

/// A local source, opened and listed but not read yet: the messages come one at a time
/// from [`Source::messages`], so that memory holds one message, not the mailbox.
pub struct Source {
    path: PathBuf,
    kind: SourceKind,
}

enum SourceKind {
    /// An mbox file, positioned at its start.
    Mbox(BufReader<File>),
    /// Files each holding one message, in reading order.
    Files(Vec<PathBuf>),
    /// One file given on its own that is no mbox: one message, none when it is empty.
    Single(PathBuf),
}

/// Opens a source: a Maildir (a folder with `cur/` or `new/`, or one of those two alone),
/// a folder of `.eml` files, an mbox file (one that starts with `From `), or any other
/// file as one message. Messages come in a stable order: Maildir `new/` then `cur/`, each
/// sorted by file name; `.eml` files sorted by name; an mbox in file order. A source that
/// cannot be opened or listed is an error naming it.
///
/// mail-parser's own Maildir iterator is not used: it needs both `cur/` and `new/`, yields
/// files in the folder's arbitrary order (cur/ first), and skips names that are not UTF-8;
/// here the order is stable from run to run, so labels and booking order are too. Each
/// file is read only when its turn comes.
pub fn open(path: &Path) -> Result<Source> {
    let meta = fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
    let kind = if meta.is_dir() {
        let files = if path.join("cur").is_dir() || path.join("new").is_dir() {
            maildir_files(path)?
        } else if is_maildir_subfolder(path) {
            // `Maildir/new` given on its own: every file in it is a message.
            sorted_files(path, |_| true)?
        } else {
            let is_eml = |p: &Path| p.extension().is_some_and(|e| e.eq_ignore_ascii_case("eml"));
            sorted_files(path, is_eml)?
        };
        SourceKind::Files(files)
    } else {
        let file = File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
        let mut reader = BufReader::with_capacity(MBOX_BUFFER, file);
        let head = reader
            .fill_buf()
            .with_context(|| format!("cannot read {}", path.display()))?;
        if head.starts_with(b"From ") {
            SourceKind::Mbox(reader)
        } else {
            SourceKind::Single(path.to_path_buf())
        }
    };
    Ok(Source {
        path: path.to_path_buf(),
        kind,
    })
}

impl Source {
    /// The path given.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The messages, one at a time. A message that cannot be read is an error naming its
    /// file; an mbox ends at its first read error.
    pub fn messages(self) -> Box<dyn Iterator<Item = Result<MailItem>>> {
        match self.kind {
            SourceKind::Mbox(reader) => Box::new(MboxMessages {
                label: self.path.display().to_string(),
                inner: mbox::MessageIterator::new(UnquotedFromLines::new(reader)),
                count: 0,
                failed: false,
            }),
            SourceKind::Files(files) => Box::new(files.into_iter().map(|file| read_item(&file))),
            SourceKind::Single(file) => Box::new(
                std::iter::once(read_item(&file))
                    .filter(|item| item.as_ref().map_or(true, |i| !i.raw.is_empty())),
            ),
        }
    }
}

/// Every message of a source at once (for tests and small sources).
#[cfg(test)]
pub fn read_source(path: &Path) -> Result<Vec<MailItem>> {
    open(path)?.messages().collect()
}

/// The messages of an mbox file, read by mail-parser's mbox iterator (mboxrd: `>From `,
/// `>>From `, ... lose one `>`), with two rules of ours on top: a message starts only at a
/// `From ` line at the start of the file or after a blank line (see
/// [`UnquotedFromLines`]), and the blank line that separates a message from the next is not
/// part of it. Messages with nothing but white space are skipped.
struct MboxMessages<R: BufRead> {
    label: String,
    inner: mbox::MessageIterator<UnquotedFromLines<R>>,
    /// Messages handed on so far: the next one's number is `count + 1`.
    count: usize,
    failed: bool,
}

impl<R: BufRead> Iterator for MboxMessages<R> {
    type Item = Result<MailItem>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        loop {
            match self.inner.next()? {
                Err(e) => {
                    self.failed = true;
                    return Some(Err(e).with_context(|| {
                        format!("cannot read {} after message {}", self.label, self.count)
                    }));
                }
                Ok(message) => {
                    let mut raw = message.unwrap_contents();
                    drop_separator_line(&mut raw);
                    if raw.iter().all(u8::is_ascii_whitespace) {
                        continue;
                    }
                    self.count += 1;
                    return Some(Ok(MailItem {
                        label: format!("{}#{}", self.label, self.count),
                        raw,
                    }));
                }
            }
        }
    }
}

/// Drops the blank line that separates a message from the next.
fn drop_separator_line(message: &mut Vec<u8>) {
    if message.ends_with(b"\n\n") || message.ends_with(b"\n\r\n") {
        message.pop();
        if message.last() == Some(&b'\r') {
            message.pop();
        }
    }
}

/// Hands an mbox on line by line, quoting (`>From `) every `From ` line that does not
/// follow a blank line. mail-parser takes any `From ` line for the start of a message,
/// but writers that do not quote (mboxo, some exports) leave such lines in bodies, where
/// they follow text; quoted here, mail-parser un-quotes them back into the body. Only one
/// line is held at a time.
struct UnquotedFromLines<R> {
    inner: R,
    line: Vec<u8>,
    pos: usize,
    previous_blank: bool,
}

impl<R: BufRead> UnquotedFromLines<R> {
    fn new(inner: R) -> UnquotedFromLines<R> {
        UnquotedFromLines {
            inner,
            line: Vec::new(),
            pos: 0,
            previous_blank: true,
        }
    }
}

impl<R: BufRead> BufRead for UnquotedFromLines<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.pos >= self.line.len() {
            self.line.clear();
            self.pos = 0;
            if self.inner.read_until(b'\n', &mut self.line)? > 0 {
                if !self.previous_blank && self.line.starts_with(b"From ") {
                    self.line.insert(0, b'>');
                }
                self.previous_blank = matches!(self.line.as_slice(), b"\n" | b"\r\n");
            }
        }
        Ok(&self.line[self.pos..])
    }

    fn consume(&mut self, amt: usize) {
        self.pos = (self.pos + amt).min(self.line.len());
    }
}

impl<R: BufRead> Read for UnquotedFromLines<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let available = self.fill_buf()?;
        let n = available.len().min(buf.len());
        buf[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Ok(n)
    }
}

/// The messages of an mbox held in memory (for tests).
#[cfg(test)]
fn split_mbox(data: &[u8]) -> Vec<Vec<u8>> {
    let messages = MboxMessages {
        label: String::new(),
        inner: mbox::MessageIterator::new(UnquotedFromLines::new(data)),
        count: 0,
        failed: false,
    };
    messages
        .map(|m| m.map(|m| m.raw))
        .collect::<Result<_>>()
        .unwrap_or_default()
}

fn read_item(file: &Path) -> Result<MailItem> {
    let raw = fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    Ok(MailItem {
        label: file.display().to_string(),
        raw,
    })
}

/// `new/` then `cur/` (`tmp/` holds deliveries still being written), each sorted by name.
fn maildir_files(path: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for sub in ["new", "cur"] {
        let dir = path.join(sub);
        if dir.is_dir() {
            files.extend(sorted_files(&dir, |_| true)?);
        }
    }
    Ok(files)
}

/// `new/` or `cur/` of a Maildir.
fn is_maildir_subfolder(path: &Path) -> bool {
    let named = path.file_name().is_some_and(|n| n == "new" || n == "cur");
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
    named && parent.is_some_and(|p| p.join("cur").is_dir() && p.join("new").is_dir())
}

/// The regular files of a folder whose path passes `keep`, hidden files left out, sorted
/// by name.
fn sorted_files(dir: &Path, keep: impl Fn(&Path) -> bool) -> Result<Vec<PathBuf>> {
    let entries =
        fs::read_dir(dir).with_context(|| format!("cannot list folder {}", dir.display()))?;
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot list folder {}", dir.display()))?;
        let path = entry.path();
        let hidden = entry.file_name().to_string_lossy().starts_with('.');
        if hidden || !path.is_file() || !keep(&path) {
            continue;
        }
        files.push(path);
    }
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/bounces");

    /// A fresh, empty folder under the system's temp folder, removed when dropped.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> TempDir {
            use std::sync::atomic::{AtomicUsize, Ordering};
            static COUNTER: AtomicUsize = AtomicUsize::new(0);
            let path = std::env::temp_dir().join(format!(
                "utskick-mailbox-{name}-{}-{}",
                std::process::id(),
                COUNTER.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = fs::remove_dir_all(&path);
            fs::create_dir_all(&path).unwrap();
            TempDir(path)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn labels(items: &[MailItem]) -> Vec<String> {
        items.iter().map(|i| i.label.clone()).collect()
    }

    #[test]
    fn mixed_mbox_splits_into_the_corpus_files() {
        let path = Path::new(CORPUS).join("mixed.mbox");
        let items = read_source(&path).unwrap();
        let expected = [
            "postfix-user-unknown.eml",
            "exim-failed.eml",
            "autoreply-franvaro.eml",
            "m365-recipient-not-found.eml",
            "qmail-plain.eml",
            "unrelated.eml",
        ];
        assert_eq!(items.len(), expected.len());
        for (i, (item, file)) in items.iter().zip(expected).enumerate() {
            assert_eq!(item.label, format!("{}#{}", path.display(), i + 1));
            let original = fs::read(Path::new(CORPUS).join(file)).unwrap();
            assert!(
                item.raw == original,
                "message {} differs from {file}:\n{}",
                i + 1,
                String::from_utf8_lossy(&item.raw)
            );
        }
    }

    #[test]
    fn mbox_splitting_rules() {
        let mbox = b"From a@example.com Thu Oct 12 10:00:00 2023\n\
            Subject: one\n\
            \n\
            body\n\
            From here a line that is no separator\n\
            >From quoted\n\
            >>From twice quoted\n\
            \n\
            From b@example.com Thu Oct 12 10:01:00 2023\r\n\
            Subject: two\r\n\
            \r\n\
            crlf body\r\n\
            \r\n\
            From c@example.com Thu Oct 12 10:02:00 2023\n\
            \n\
            From d@example.com Thu Oct 12 10:03:00 2023\n\
            Subject: last, no blank line after\n";
        let messages = split_mbox(mbox);
        let texts: Vec<String> = messages
            .iter()
            .map(|m| String::from_utf8_lossy(m).into_owned())
            .collect();
        assert_eq!(
            texts,
            [
                "Subject: one\n\nbody\nFrom here a line that is no separator\n\
                 From quoted\n>From twice quoted\n",
                "Subject: two\r\n\r\ncrlf body\r\n",
                "Subject: last, no blank line after\n",
            ]
        );
        assert!(split_mbox(b"").is_empty());
    }

    #[test]
    fn maildir_reads_new_then_cur_sorted() {
        let dir = TempDir::new("maildir");
        for sub in ["new", "cur", "tmp"] {
            fs::create_dir(dir.0.join(sub)).unwrap();
        }
        fs::write(dir.0.join("cur/200.host:2,S"), b"Subject: c2\n\nx\n").unwrap();
        fs::write(dir.0.join("cur/100.host:2,"), b"Subject: c1\n\nx\n").unwrap();
        fs::write(dir.0.join("new/300.host"), b"Subject: n1\n\nx\n").unwrap();
        fs::write(dir.0.join("new/.hidden"), b"x").unwrap();
        fs::write(dir.0.join("tmp/400.host"), b"Subject: t\n\nx\n").unwrap();
        let items = read_source(&dir.0).unwrap();
        let d = dir.0.display();
        assert_eq!(
            labels(&items),
            [
                format!("{d}/new/300.host"),
                format!("{d}/cur/100.host:2,"),
                format!("{d}/cur/200.host:2,S"),
            ]
        );
        assert_eq!(items[0].raw, b"Subject: n1\n\nx\n");
        // Its cur/ alone reads every file in it, .eml or not.
        let cur = read_source(&dir.0.join("cur")).unwrap();
        assert_eq!(labels(&cur), labels(&items[1..]));
        // A Maildir with only new/ is a Maildir too.
        let only_new = TempDir::new("maildir-new");
        fs::create_dir(only_new.0.join("new")).unwrap();
        fs::write(only_new.0.join("new/1.host"), b"Subject: n\n\nx\n").unwrap();
        assert_eq!(read_source(&only_new.0).unwrap().len(), 1);
    }

    #[test]
    fn eml_folder_reads_only_eml_files_sorted() {
        let dir = TempDir::new("eml");
        fs::write(dir.0.join("b.eml"), b"Subject: b\n\nx\n").unwrap();
        fs::write(dir.0.join("a.EML"), b"Subject: a\n\nx\n").unwrap();
        fs::write(dir.0.join("notes.txt"), b"not mail").unwrap();
        fs::create_dir(dir.0.join("sub.eml")).unwrap();
        let items = read_source(&dir.0).unwrap();
        let d = dir.0.display();
        assert_eq!(labels(&items), [format!("{d}/a.EML"), format!("{d}/b.eml")]);
        assert_eq!(items[1].raw, b"Subject: b\n\nx\n");
    }

    #[test]
    fn the_corpus_folder_is_an_eml_folder() {
        let items = read_source(Path::new(CORPUS)).unwrap();
        assert!(items.len() >= 10);
        assert!(items.iter().all(|i| i.label.ends_with(".eml")));
    }

    #[test]
    fn single_file_is_one_message() {
        let dir = TempDir::new("single");
        let file = dir.0.join("bounce.msg");
        fs::write(&file, b"Subject: one\n\nFrom the start\n").unwrap();
        let items = read_source(&file).unwrap();
        assert_eq!(
            items,
            [MailItem {
                label: file.display().to_string(),
                raw: b"Subject: one\n\nFrom the start\n".to_vec(),
            }]
        );
        let empty = dir.0.join("empty");
        fs::write(&empty, b"").unwrap();
        assert!(read_source(&empty).unwrap().is_empty());
    }

    #[test]
    fn errors_name_the_path() {
        let dir = TempDir::new("missing");
        let missing = dir.0.join("no-such-mbox");
        let err = read_source(&missing).unwrap_err();
        assert!(
            format!("{err:#}").contains(&missing.display().to_string()),
            "{err:#}"
        );
    }

    /// A reader that hands out `data` and then fails: what the mbox iterator has yielded by
    /// then it yielded without reading the whole file.
    struct FailsAfter {
        data: Vec<u8>,
        at: usize,
    }

    impl Read for FailsAfter {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.at >= self.data.len() {
                return Err(io::Error::other("disk went away"));
            }
            let n = buf.len().min(self.data.len() - self.at).min(7);
            buf[..n].copy_from_slice(&self.data[self.at..self.at + n]);
            self.at += n;
            Ok(n)
        }
    }

    #[test]
    fn mbox_messages_come_one_at_a_time() {
        let data = b"From a@example.com Thu Oct 12 10:00:00 2023\nSubject: one\n\nbody\n\n\
            From b@example.com Thu Oct 12 10:01:00 2023\nSubject: two\n"
            .to_vec();
        let reader = BufReader::with_capacity(16, FailsAfter { data, at: 0 });
        let mut messages = MboxMessages {
            label: "inkorg.mbox".into(),
            inner: mbox::MessageIterator::new(UnquotedFromLines::new(reader)),
            count: 0,
            failed: false,
        };
        let first = messages.next().expect("first").expect("read");
        assert_eq!(first.label, "inkorg.mbox#1");
        assert_eq!(first.raw, b"Subject: one\n\nbody\n");
        // The second message never ends: the read error names the file and where.
        let err = messages.next().expect("an error").unwrap_err();
        assert!(
            format!("{err:#}").contains("cannot read inkorg.mbox after message 1: disk went away"),
            "{err:#}"
        );
        assert!(messages.next().is_none());
    }
}
