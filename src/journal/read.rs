//! Reading a journal: mapped into memory, its lines parsed in chunks on several cores
//! against the one event schema, and folded in journal order on the calling thread.
//!
//! A torn tail (bytes after the last newline: a crash mid-write) is ignored; any other line
//! that is not an event stops the read with its line number (exit 2).

use std::borrow::Cow;
use std::fs::File;
use std::path::Path;

use anyhow::{Result, anyhow, bail};
use serde::Deserialize;

use super::event::{Event, NAMES, Text};
use super::fold::{Fold, Journal};
use crate::{Fail, ResultExt};

/// Bytes of journal parsed together.
const PARSE_CHUNK: usize = 1 << 20;

impl Journal {
    /// Reads the journal; a missing file is an empty journal. A torn tail is ignored; any
    /// other malformed line is an error naming its line (exit 2).
    pub fn read(path: &Path) -> Result<Journal, Fail> {
        let file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Journal::default()),
            Err(e) => {
                return Err(Fail::Input(anyhow!(
                    "cannot read journal {}: {e}",
                    path.display()
                )));
            }
        };
        if file.metadata().map(|m| m.is_dir()).unwrap_or(false) {
            return Err(Fail::Input(anyhow!(
                "journal {} is a folder: [journal] path must name a file",
                path.display()
            )));
        }
        let shown = path.display().to_string();
        // Mapped rather than read: a journal of a million events (over 200 MB) is then parsed
        // straight from the page cache, without the kernel clearing and filling a copy.
        // Writers only append, which a map of the length seen at open is not affected by;
        // the one writer that shrinks the file, cutting a torn tail after a crash, takes an
        // exclusive lock on it first, and the map's shared lock held here for the parse keeps it
        // waiting until the map is gone. Where the file cannot be locked it is read the
        // ordinary way.
        if super::lock::map_lock(&file, false).is_ok() {
            // SAFETY: read-only, lives only for this parse, and no one shrinks the file while
            // the shared lock is held (see above).
            if let Ok(map) = unsafe { memmap2::Mmap::map(&file) } {
                return Journal::parse(&map, &shown).input();
            }
        }
        drop(file);
        let bytes = std::fs::read(path)
            .map_err(|e| Fail::Input(anyhow!("cannot read journal {}: {e}", path.display())))?;
        Journal::parse(&bytes, &shown).input()
    }

    /// Parses journal bytes (`shown` names the file in errors).
    pub fn parse(bytes: &[u8], shown: &str) -> Result<Journal> {
        let complete = match bytes.iter().rposition(|&b| b == b'\n') {
            Some(i) => &bytes[..=i],
            None => &bytes[..0],
        };
        let mut fold = Fold::new();
        let j = fold.journal_mut();
        j.torn_tail = complete.len() < bytes.len();
        // An attempt and its outcome take about 450 bytes: sizing the map for that spares
        // it growing (and copying itself) twenty times over a large journal.
        j.recipients.reserve(complete.len() / 500);
        // Parsing JSON is most of the work: the cores parse chunks of the journal (cut at
        // line ends), and this thread folds the chunks' events in order.
        let chunks = complete.len().div_ceil(PARSE_CHUNK).max(1);
        let workers = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .clamp(1, 4);
        let next_chunk = std::sync::atomic::AtomicUsize::new(0);
        // The events' vectors go back to the workers once folded: fresh memory for every
        // chunk would have the kernel clear a page for every 20 lines or so.
        let (free_tx, free_rx) = std::sync::mpsc::channel::<Vec<Event<Text>>>();
        let free_rx = std::sync::Mutex::new(free_rx);
        std::thread::scope(|scope| -> Result<()> {
            let (tx, rx) = std::sync::mpsc::sync_channel::<(usize, Parsed)>(workers * 2);
            for _ in 0..workers {
                let tx = tx.clone();
                let next_chunk = &next_chunk;
                let free_rx = &free_rx;
                scope.spawn(move || {
                    loop {
                        let k = next_chunk.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        if k >= chunks {
                            return;
                        }
                        let events = free_rx
                            .lock()
                            .ok()
                            .and_then(|rx| rx.try_recv().ok())
                            .unwrap_or_default();
                        let parsed = parse_chunk(chunk_text(complete, k), events);
                        let failed = parsed.error.is_some();
                        if tx.send((k, parsed)).is_err() || failed {
                            return;
                        }
                    }
                });
            }
            drop(tx);
            let mut waiting: std::collections::BTreeMap<usize, Parsed> = Default::default();
            let (mut next, mut line_base) = (0usize, 0usize);
            for (k, parsed) in rx {
                waiting.insert(k, parsed);
                while let Some(mut parsed) = waiting.remove(&next) {
                    next += 1;
                    for event in parsed.events.drain(..) {
                        fold.book(event);
                    }
                    if let Some((i, e)) = parsed.error {
                        let n = line_base + i + 1;
                        match e {
                            LineError::UnknownEvent(name) => bail!(
                                "{shown}:{n}: unknown event type {name:?}: this journal was written by a newer utskick or edited by hand"
                            ),
                            LineError::Malformed(e) if n == 1 => {
                                bail!("{shown}:1: this is not an utskick journal ({e})")
                            }
                            LineError::Malformed(e) => {
                                bail!("{shown}:{n}: malformed journal line: {e}")
                            }
                        }
                    }
                    line_base += parsed.count;
                    let _ = free_tx.send(parsed.events);
                }
            }
            Ok(())
        })?;
        Ok(fold.finish())
    }
}

/// Why a line is not an event.
enum LineError {
    /// An event name this utskick does not know.
    UnknownEvent(String),
    /// Not JSON, not UTF-8, or not the shape of its event.
    Malformed(String),
}

/// The events of one chunk; the first error stops it (its line numbered from 0 within
/// the chunk).
struct Parsed<'a> {
    events: Vec<Event<Text<'a>>>,
    /// Lines in the chunk (parsed or blank).
    count: usize,
    error: Option<(usize, LineError)>,
}

/// Chunk `k` of the journal: the lines that start in bytes `k*PARSE_CHUNK ..
/// (k+1)*PARSE_CHUNK` (the text ends with a line end).
fn chunk_text(bytes: &[u8], k: usize) -> &[u8] {
    let line_start = |at: usize| -> usize {
        if at == 0 {
            return 0;
        }
        if at >= bytes.len() {
            return bytes.len();
        }
        bytes[at - 1..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(bytes.len(), |p| at + p)
    };
    let start = line_start(k * PARSE_CHUNK);
    let end = line_start((k + 1) * PARSE_CHUNK).max(start);
    &bytes[start..end]
}

/// Parses the lines of one chunk. Each chunk is checked for UTF-8 on its own (a line end
/// never splits a character), on the parsing threads.
fn parse_chunk<'a>(bytes: &'a [u8], mut events: Vec<Event<Text<'a>>>) -> Parsed<'a> {
    let text = match std::str::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => {
            // The valid lines before the bad one still count; the bad one is named.
            let good = &bytes[..e.valid_up_to()];
            let cut = good.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
            let mut parsed = parse_chunk(&bytes[..cut], events);
            parsed.error.get_or_insert_with(|| {
                (parsed.count, LineError::Malformed("not UTF-8".to_string()))
            });
            return parsed;
        }
    };
    events.clear();
    events.reserve(text.len() / 160 + 1);
    let mut parsed = Parsed {
        events,
        count: 0,
        error: None,
    };
    for raw in text.split_terminator('\n') {
        let i = parsed.count;
        parsed.count += 1;
        if raw.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Event<Text>>(raw) {
            Ok(event) => parsed.events.push(event),
            Err(e) => {
                parsed.error = Some((i, line_error(raw, e)));
                break;
            }
        }
    }
    parsed
}

/// Names what is wrong with a line that did not parse: an event this utskick does not
/// know is said so (a newer version, or a hand edit), anything else is serde's word.
fn line_error(raw: &str, e: serde_json::Error) -> LineError {
    #[derive(Deserialize)]
    struct Tag<'a> {
        #[serde(borrow)]
        event: Cow<'a, str>,
    }
    match serde_json::from_str::<Tag>(raw) {
        Ok(tag) if !NAMES.contains(&tag.event.as_ref()) => {
            LineError::UnknownEvent(tag.event.into_owned())
        }
        _ => LineError::Malformed(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::super::sample::*;
    use super::*;
    use crate::journal::State;

    #[test]
    fn a_line_that_is_not_utf8_is_named() {
        let mut bytes = text(&[run_event("R", "t", false), attempt("a", "R")]);
        bytes.extend_from_slice(b"{\"event\":\"sent\",\"key\":\"\xff\"}\n");
        bytes.extend(text(&[sent("a", "R")]));
        let msg = format!("{:#}", Journal::parse(&bytes, "j.jsonl").unwrap_err());
        assert_eq!(msg, "j.jsonl:3: malformed journal line: not UTF-8");
    }

    #[test]
    fn torn_tail_ignored_other_garbage_named() {
        let mut bytes = text(&[
            run_event("R", "t", false),
            attempt("a", "R"),
            sent("a", "R"),
        ]);
        bytes.extend_from_slice(b"{\"event\":\"sent\",\"ts\":\"2026");
        let j = Journal::parse(&bytes, "j.jsonl").expect("parses");
        assert!(j.torn_tail);
        assert_eq!(j.state("a"), State::Sent);

        let mut bad = text(&[run_event("R", "t", false)]);
        bad.extend_from_slice(b"not json\n");
        let msg = format!("{:#}", Journal::parse(&bad, "j.jsonl").unwrap_err());
        assert!(
            msg.starts_with("j.jsonl:2: malformed journal line"),
            "{msg}"
        );

        let mut unknown = text(&[run_event("R", "t", false)]);
        unknown.extend_from_slice(b"{\"event\":\"teleported\",\"ts\":\"x\"}\n");
        let msg = format!("{:#}", Journal::parse(&unknown, "j.jsonl").unwrap_err());
        assert!(
            msg.contains("j.jsonl:2: unknown event type \"teleported\""),
            "{msg}"
        );

        let msg = format!(
            "{:#}",
            Journal::parse(b"hello,world\n", "j.jsonl").unwrap_err()
        );
        assert!(msg.contains("not an utskick journal"), "{msg}");
    }
}
