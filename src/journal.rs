//! The delivery journal: the system of record of who was told.
//!
//! JSON Lines, append-only, one event a line, mode 0600. A recipient's state is its latest
//! event. The writer holds a lock so one journal has one writer, cuts a torn tail (a crash
//! mid-write) before it appends, and commits in groups on its own thread: an attempt is
//! durable (written and `fdatasync`ed) before the message's DATA goes out, and an outcome is
//! durable before the run counts it. If the journal cannot be written, sending stops at
//! once: no message may go out without a durable attempt.
//!
//! Beyond the contract's events this journal has `unknown` (the connection was lost after
//! DATA: the outcome cannot be known), `deferred` (the relay, not the recipient, refused:
//! back to pending), `withdrawn` (an attempt journaled ahead whose message never went out:
//! back to the state before that attempt) and `end` (how a run ended).

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

use anyhow::{Context, Result, anyhow, bail};
use serde::{Deserialize, Serialize};

use crate::{Fail, ResultExt};

/// A recipient's state, from its latest event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    /// No event yet.
    Pending,
    /// The relay accepted the message.
    Sent,
    /// A transient failure (4xx, connection lost before DATA).
    FailedTransient,
    /// A permanent failure (5xx).
    FailedPermanent,
    /// An attempt with no outcome: the process died, or the connection was lost after DATA.
    Unknown,
    /// A permanent delivery report came back after the relay accepted it.
    Bounced,
}

impl State {
    /// The contract's name.
    pub fn name(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Sent => "sent",
            State::FailedTransient => "failed-transient",
            State::FailedPermanent => "failed-permanent",
            State::Unknown => "unknown",
            State::Bounced => "bounced",
        }
    }

    /// Every state, in display order.
    pub const ALL: [State; 6] = [
        State::Sent,
        State::FailedPermanent,
        State::Bounced,
        State::FailedTransient,
        State::Unknown,
        State::Pending,
    ];
}

/// The timestamp format of the journal: RFC 3339, UTC, milliseconds (sorts as text).
pub fn timestamp(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// Now, as a journal timestamp.
pub fn now() -> String {
    timestamp(SystemTime::now())
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// A new run id: time and process, unique enough for one journal.
pub fn new_run_id() -> String {
    let t = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    format!("{}-{}", t.as_millis(), std::process::id())
}

/// How a failure is classed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Class {
    /// Worth retrying.
    Transient,
    /// Will not get better by retrying.
    Permanent,
}

/// An event as written. Field order follows the contract's examples.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "lowercase")]
pub enum Event {
    /// A run began.
    Run {
        /// When.
        ts: String,
        /// Run id.
        run: String,
        /// Campaign.
        campaign: String,
        /// `send` or `retry`.
        command: String,
        /// SHA-256 of the CSV.
        recipients_sha256: String,
        /// SHA-256 of the templates.
        templates_sha256: String,
        /// `host:port`.
        relay: String,
        /// A `--test-to` run.
        #[serde(skip_serializing_if = "is_false")]
        test: bool,
    },
    /// A delivery is about to start (durable before DATA).
    Attempt {
        /// When.
        ts: String,
        /// Run id.
        run: String,
        /// Recipient key.
        key: String,
        /// Recipient address (or the test address).
        email: String,
        /// Message-ID.
        message_id: String,
        /// Attempt number within the run.
        attempt: u32,
        /// A test delivery.
        #[serde(skip_serializing_if = "is_false")]
        test: bool,
    },
    /// The relay accepted the message.
    Sent {
        /// When.
        ts: String,
        /// Run id.
        run: String,
        /// Recipient key.
        key: String,
        /// Address.
        email: String,
        /// Message-ID.
        message_id: String,
        /// Reply code.
        code: u16,
        /// Reply text.
        reply: String,
        /// A test delivery.
        #[serde(skip_serializing_if = "is_false")]
        test: bool,
    },
    /// The relay refused the message for this recipient.
    Failed {
        /// When.
        ts: String,
        /// Run id.
        run: String,
        /// Recipient key.
        key: String,
        /// Address.
        email: String,
        /// Message-ID.
        message_id: String,
        /// Reply code (none when the connection was lost).
        #[serde(skip_serializing_if = "Option::is_none")]
        code: Option<u16>,
        /// Enhanced status code.
        #[serde(skip_serializing_if = "Option::is_none")]
        enhanced: Option<String>,
        /// Reply text or what went wrong.
        reply: String,
        /// Transient or permanent.
        class: Class,
        /// A test delivery.
        #[serde(skip_serializing_if = "is_false")]
        test: bool,
    },
    /// The connection was lost or timed out after DATA: the outcome cannot be known.
    Unknown(Unsent),
    /// The relay refused for a reason of its own (rate, quota): back to pending.
    Deferred {
        /// When.
        ts: String,
        /// Run id.
        run: String,
        /// Recipient key.
        key: String,
        /// Address.
        email: String,
        /// Message-ID.
        message_id: String,
        /// Reply code.
        #[serde(skip_serializing_if = "Option::is_none")]
        code: Option<u16>,
        /// Reply text.
        reply: String,
        /// A test delivery.
        #[serde(skip_serializing_if = "is_false")]
        test: bool,
    },
    /// An attempt was journaled ahead of its message, and the run stopped (or found no
    /// connection) before the message's first byte went out: back to the state before.
    Withdrawn(Unsent),
    /// A delivery report came back.
    Bounced {
        /// When it was booked.
        ts: String,
        /// Recipient key.
        key: String,
        /// Address.
        email: String,
        /// Message-ID of our message.
        message_id: String,
        /// Enhanced status, e.g. 5.1.1.
        status: String,
        /// The remote server's diagnostic.
        diagnostic: String,
        /// Which report (its id), so that the same one is booked once.
        source: String,
        /// Permanent (state `bounced`) or transient (a delay: no state change).
        class: Class,
    },
    /// How a run ended.
    End {
        /// When.
        ts: String,
        /// Run id.
        run: String,
        /// `complete`, `interrupted`, `stopped: ...`.
        outcome: String,
    },
}

/// A message whose outcome is not a reply: `unknown` (it may have gone out) or `withdrawn`
/// (it did not).
#[derive(Debug, Clone, Serialize)]
pub struct Unsent {
    /// When.
    pub ts: String,
    /// Run id.
    pub run: String,
    /// Recipient key.
    pub key: String,
    /// Address.
    pub email: String,
    /// Message-ID.
    pub message_id: String,
    /// What happened.
    pub reason: String,
    /// A test delivery.
    #[serde(skip_serializing_if = "is_false")]
    pub test: bool,
}

impl Event {
    fn key(&self) -> Option<&str> {
        match self {
            Event::Attempt { key, .. }
            | Event::Sent { key, .. }
            | Event::Failed { key, .. }
            | Event::Unknown(Unsent { key, .. })
            | Event::Deferred { key, .. }
            | Event::Withdrawn(Unsent { key, .. })
            | Event::Bounced { key, .. } => Some(key),
            _ => None,
        }
    }
}

/// One line as read: every field optional, strings borrowed where possible. The fields of
/// the events that make up almost all of a journal (attempts and outcomes) are here; those
/// of the few others (`run`, `end`, `bounced`, ...) are in `rest`, so that the lines of a
/// large journal stay small while they wait to be booked.
#[derive(Debug, Deserialize)]
struct Line<'a> {
    #[serde(borrow)]
    event: Cow<'a, str>,
    #[serde(borrow, default)]
    ts: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    run: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    key: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    email: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    message_id: Option<Cow<'a, str>>,
    #[serde(default)]
    code: Option<u16>,
    #[serde(borrow, default)]
    reply: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    reason: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    class: Option<Cow<'a, str>>,
    #[serde(default)]
    test: bool,
    /// The other events' fields (read in a second pass over their line).
    #[serde(skip)]
    rest: Option<Box<Rest<'a>>>,
}

/// The fields of `run`, `end` and `bounced` events.
#[derive(Debug, Default, Deserialize)]
struct Rest<'a> {
    #[serde(borrow, default)]
    campaign: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    command: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    recipients_sha256: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    templates_sha256: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    relay: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    status: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    diagnostic: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    source: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    outcome: Option<Cow<'a, str>>,
}

impl<'a> Line<'a> {
    /// Parses one line; the rare events' own fields in a second pass.
    fn parse(raw: &'a str) -> serde_json::Result<Line<'a>> {
        let mut line: Line = serde_json::from_str(raw)?;
        if !matches!(
            line.event.as_ref(),
            "attempt" | "sent" | "failed" | "unknown" | "deferred" | "withdrawn"
        ) {
            line.rest = Some(Box::new(serde_json::from_str(raw)?));
        }
        Ok(line)
    }

    /// The rare events' fields (all absent for the others).
    fn rest(&self) -> &Rest<'a> {
        static NONE: Rest<'static> = Rest {
            campaign: None,
            command: None,
            recipients_sha256: None,
            templates_sha256: None,
            relay: None,
            status: None,
            diagnostic: None,
            source: None,
            outcome: None,
        };
        self.rest.as_deref().unwrap_or(&NONE)
    }
}

/// What the journal says about one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient {
    /// The state.
    pub state: State,
    /// The address last used.
    pub email: String,
    /// The Message-ID last used.
    pub message_id: String,
    /// The latest reply code, for failures.
    pub code: Option<u16>,
    /// The latest reply or reason, for anything but `sent`.
    pub reason: Option<String>,
    /// Attempts over all runs.
    pub attempts: u32,
    /// What the latest attempt replaced, for a `withdrawn` event to put back.
    pub(crate) before_attempt: (State, Option<u16>, Option<String>),
}

impl Recipient {
    /// The latest reply or reason, in words (an attempt without outcome says so).
    pub fn why(&self) -> String {
        match (&self.reason, self.state) {
            (Some(r), _) => r.clone(),
            (None, State::Unknown) => {
                "attempt without outcome: the process stopped during delivery".into()
            }
            (None, _) => String::new(),
        }
    }
}

/// Replaces a string's text, reusing its buffer.
fn set(target: &mut String, text: &str) {
    if target != text {
        target.clear();
        target.push_str(text);
    }
}

/// One run, as the journal tells it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Run {
    /// Run id.
    pub run: String,
    /// `send` or `retry`.
    pub command: String,
    /// Campaign.
    pub campaign: String,
    /// Relay.
    pub relay: String,
    /// CSV hash.
    pub recipients_sha256: String,
    /// Templates hash.
    pub templates_sha256: String,
    /// A `--test-to` run.
    pub test: bool,
    /// First event.
    pub started: String,
    /// Last event.
    pub ended: String,
    /// Messages the relay accepted in this run.
    pub sent: u64,
    /// Failures booked in this run.
    pub failed: u64,
    /// How it ended, when it said so.
    pub outcome: Option<String>,
}

/// The whole journal, read.
#[derive(Debug, Default)]
pub struct Journal {
    /// Per key, the latest state.
    pub recipients: HashMap<String, Recipient, ahash::RandomState>,
    /// The runs in order.
    pub runs: Vec<Run>,
    /// Events read.
    pub events: u64,
    /// Test deliveries accepted by the relay.
    pub test_sent: u64,
    /// Whether bytes after the last newline were ignored.
    pub torn_tail: bool,
    /// Bounce reports already booked: `source` + key.
    pub bounces_booked: HashSet<String>,
    /// Delay reports booked.
    pub delays: u64,
    /// Timestamps of non-test `sent` events in the last 24 hours, counted.
    pub sent_last_24h: u64,
    /// Their timestamps, for the rolling daily window (`limit_window`).
    pub sent_ts_last_24h: Vec<String>,
}

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
        // exclusive lock on it first, and the shared lock held here for the parse keeps it
        // waiting until the map is gone. Where the file cannot be locked it is read the
        // ordinary way.
        if file.lock_shared().is_ok() {
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
        let mut reader = Reader::new(shown);
        reader.j.torn_tail = complete.len() < bytes.len();
        // An attempt and its outcome take about 450 bytes: sizing the map for that spares
        // it growing (and copying itself) twenty times over a large journal.
        reader.j.recipients.reserve(complete.len() / 500);
        // Parsing JSON is most of the work: the cores parse chunks of the journal (cut at
        // line ends), and this thread books the chunks' lines in order.
        let chunks = complete.len().div_ceil(PARSE_CHUNK).max(1);
        let workers = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .clamp(1, 4);
        let next_chunk = std::sync::atomic::AtomicUsize::new(0);
        // The lines' vectors go back to the workers once booked: fresh memory for every
        // chunk would have the kernel clear a page for every 20 lines or so.
        let (free_tx, free_rx) = std::sync::mpsc::channel::<Vec<(usize, Line)>>();
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
                        let lines = free_rx
                            .lock()
                            .ok()
                            .and_then(|rx| rx.try_recv().ok())
                            .unwrap_or_default();
                        let parsed = parse_chunk(chunk_text(complete, k), lines);
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
                    for (i, line) in parsed.lines.drain(..) {
                        reader.book(line_base + i + 1, line)?;
                    }
                    if let Some((i, e)) = parsed.error {
                        let n = line_base + i + 1;
                        if n == 1 {
                            bail!("{shown}:1: this is not an utskick journal ({e})");
                        }
                        bail!("{shown}:{n}: malformed journal line: {e}");
                    }
                    line_base += parsed.count;
                    let _ = free_tx.send(parsed.lines);
                }
            }
            Ok(())
        })?;
        Ok(reader.finish())
    }

    /// The entry of a key, new (pending) if the journal had none yet.
    fn entry(&mut self, key: &str) -> &mut Recipient {
        if !self.recipients.contains_key(key) {
            self.recipients.insert(
                key.to_string(),
                Recipient {
                    state: State::Pending,
                    email: String::new(),
                    message_id: String::new(),
                    code: None,
                    reason: None,
                    attempts: 0,
                    before_attempt: (State::Pending, None, None),
                },
            );
        }
        // Just inserted if it was missing.
        self.recipients
            .get_mut(key)
            .unwrap_or_else(|| unreachable!("the entry was inserted above"))
    }

    /// The state of a key (`pending` when the journal has no event for it).
    pub fn state(&self, key: &str) -> State {
        self.recipients.get(key).map_or(State::Pending, |r| r.state)
    }

    /// The campaigns named by the runs.
    pub fn campaigns(&self) -> Vec<&str> {
        let mut c: Vec<&str> = self.runs.iter().map(|r| r.campaign.as_str()).collect();
        c.sort_unstable();
        c.dedup();
        c
    }

    /// Template hashes of earlier real (not test) runs that differ from `current`.
    pub fn other_templates(&self, current: &str) -> Vec<&Run> {
        self.runs
            .iter()
            .filter(|r| !r.test && !r.templates_sha256.is_empty() && r.templates_sha256 != current)
            .collect()
    }
}

/// The lines of one chunk, numbered from 0 within it; the first error stops it.
struct Parsed<'a> {
    lines: Vec<(usize, Line<'a>)>,
    /// Lines in the chunk (parsed or blank).
    count: usize,
    error: Option<(usize, String)>,
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
fn parse_chunk<'a>(bytes: &'a [u8], mut lines: Vec<(usize, Line<'a>)>) -> Parsed<'a> {
    let text = match std::str::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => {
            // The valid lines before the bad one still count; the bad one is named.
            let good = &bytes[..e.valid_up_to()];
            let cut = good.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
            let mut parsed = parse_chunk(&bytes[..cut], lines);
            parsed
                .error
                .get_or_insert_with(|| (parsed.count, "not UTF-8".to_string()));
            return parsed;
        }
    };
    lines.clear();
    lines.reserve(text.len() / 160 + 1);
    let mut parsed = Parsed {
        lines,
        count: 0,
        error: None,
    };
    for raw in text.split_terminator('\n') {
        let i = parsed.count;
        parsed.count += 1;
        if raw.trim().is_empty() {
            continue;
        }
        match Line::parse(raw) {
            Ok(line) => parsed.lines.push((i, line)),
            Err(e) => {
                parsed.error = Some((i, e.to_string()));
                break;
            }
        }
    }
    parsed
}

/// Bytes of journal parsed together.
const PARSE_CHUNK: usize = 1 << 20;

/// Books parsed journal lines into a `Journal`, in order.
struct Reader<'a> {
    j: Journal,
    shown: &'a str,
    cutoff: String,
    run_index: HashMap<String, usize, ahash::RandomState>,
    /// The latest timestamp of each run, borrowed until the end.
    run_ended: Vec<Cow<'a, str>>,
}

impl<'a> Reader<'a> {
    fn new(shown: &'a str) -> Reader<'a> {
        Reader {
            j: Journal::default(),
            shown,
            cutoff: timestamp(SystemTime::now() - std::time::Duration::from_secs(24 * 3600)),
            run_index: HashMap::default(),
            run_ended: Vec::new(),
        }
    }

    fn finish(mut self) -> Journal {
        for (run, ended) in self.j.runs.iter_mut().zip(self.run_ended) {
            run.ended = ended.into_owned();
        }
        self.j
    }

    fn book(&mut self, line_no: usize, line: Line<'a>) -> Result<()> {
        let shown = self.shown;
        let j = &mut self.j;
        j.events += 1;
        let rest = line.rest();
        let need = |v: &Option<Cow<str>>, field: &str| -> Result<String> {
            v.as_deref()
                .map(str::to_string)
                .ok_or_else(|| anyhow!("{shown}:{line_no}: {} event without {field}", line.event))
        };
        let ts: &str = line.ts.as_deref().unwrap_or("");
        let run = line
            .run
            .as_deref()
            .and_then(|r| self.run_index.get(r))
            .copied();
        if let Some(r) = run
            && ts > self.run_ended[r].as_ref()
        {
            self.run_ended[r] = line.ts.clone().unwrap_or_default();
        }
        match line.event.as_ref() {
            "run" => {
                let id = need(&line.run, "run")?;
                self.run_index.insert(id.clone(), j.runs.len());
                self.run_ended.push(line.ts.clone().unwrap_or_default());
                j.runs.push(Run {
                    run: id,
                    command: rest.command.as_deref().unwrap_or("").to_string(),
                    campaign: need(&rest.campaign, "campaign")?,
                    relay: rest.relay.as_deref().unwrap_or("").to_string(),
                    recipients_sha256: rest.recipients_sha256.as_deref().unwrap_or("").into(),
                    templates_sha256: rest.templates_sha256.as_deref().unwrap_or("").into(),
                    test: line.test,
                    started: ts.to_string(),
                    ended: String::new(),
                    sent: 0,
                    failed: 0,
                    outcome: None,
                });
            }
            "end" => {
                if let Some(r) = run {
                    j.runs[r].outcome = rest.outcome.as_deref().map(str::to_string);
                }
            }
            event @ ("attempt" | "sent" | "failed" | "unknown" | "deferred" | "withdrawn") => {
                let missing =
                    |field: &str| anyhow!("{shown}:{line_no}: {event} event without {field}");
                let key = line.key.as_deref().ok_or_else(|| missing("key"))?;
                let email = line.email.as_deref().ok_or_else(|| missing("email"))?;
                let message_id = line
                    .message_id
                    .as_deref()
                    .ok_or_else(|| missing("message_id"))?;
                if line.test {
                    if event == "sent" {
                        j.test_sent += 1;
                    }
                    return Ok(());
                }
                let state = match event {
                    "attempt" => State::Unknown,
                    "sent" => {
                        if let Some(r) = run {
                            j.runs[r].sent += 1;
                        }
                        if ts >= self.cutoff.as_str() {
                            j.sent_last_24h += 1;
                            j.sent_ts_last_24h.push(ts.to_string());
                        }
                        State::Sent
                    }
                    "failed" => {
                        if let Some(r) = run {
                            j.runs[r].failed += 1;
                        }
                        match line.class.as_deref() {
                            Some("transient") => State::FailedTransient,
                            Some("permanent") => State::FailedPermanent,
                            other => bail!(
                                "{shown}:{line_no}: failed event with class {other:?}: expected transient or permanent"
                            ),
                        }
                    }
                    "unknown" => State::Unknown,
                    _ => State::Pending,
                };
                let update = |entry: &mut Recipient| {
                    if event == "withdrawn" {
                        // The attempt never became a delivery: what it replaced comes back.
                        let (state, code, reason) = std::mem::replace(
                            &mut entry.before_attempt,
                            (State::Pending, None, None),
                        );
                        entry.attempts = entry.attempts.saturating_sub(1);
                        entry.state = state;
                        entry.code = code;
                        entry.reason = reason;
                        return;
                    }
                    if event == "attempt" {
                        entry.attempts += 1;
                        entry.before_attempt =
                            (entry.state, entry.code.take(), entry.reason.take());
                    }
                    entry.state = state;
                    set(&mut entry.email, email);
                    set(&mut entry.message_id, message_id);
                    if event == "attempt" || state == State::Sent {
                        entry.code = None;
                        entry.reason = None;
                    } else {
                        entry.code = line.code;
                        entry.reason = line
                            .reply
                            .as_deref()
                            .or(line.reason.as_deref())
                            .map(str::to_string);
                    }
                };
                // One hash lookup for a key seen before (most events).
                match j.recipients.get_mut(key) {
                    Some(entry) => update(entry),
                    None => update(j.entry(key)),
                }
            }
            "bounced" => {
                let key = need(&line.key, "key")?;
                let source = need(&rest.source, "source")?;
                j.bounces_booked.insert(format!("{source}\u{0}{key}"));
                match line.class.as_deref() {
                    Some("permanent") => {
                        let email = need(&line.email, "email")?;
                        let entry = j.entry(&key);
                        entry.state = State::Bounced;
                        entry.email = email;
                        entry.code = None;
                        entry.reason = Some(format!(
                            "{} {}",
                            rest.status.as_deref().unwrap_or(""),
                            rest.diagnostic.as_deref().unwrap_or("")
                        ));
                    }
                    Some("transient") => j.delays += 1,
                    other => bail!(
                        "{shown}:{line_no}: bounced event with class {other:?}: expected transient or permanent"
                    ),
                }
            }
            other => bail!(
                "{shown}:{line_no}: unknown event type {other:?}: this journal was written by a newer utskick or edited by hand"
            ),
        }
        Ok(())
    }
}

/// Resolves when an appended line is durable (or could not be written).
pub type Ticket = tokio::sync::oneshot::Receiver<Result<(), String>>;

enum Msg {
    Line(
        Vec<u8>,
        Option<tokio::sync::oneshot::Sender<Result<(), String>>>,
    ),
    Close(std::sync::mpsc::Sender<Result<(), String>>),
}

/// The single writer of a journal: holds the lock, appends with group commit.
pub struct Writer {
    tx: std::sync::mpsc::Sender<Msg>,
    thread: Option<std::thread::JoinHandle<()>>,
    broken: Arc<AtomicBool>,
    path: PathBuf,
    _lock: File,
}

/// The lock file beside the journal.
pub fn lock_path(path: &Path) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".lock");
    path.with_file_name(name)
}

impl Writer {
    /// Locks and opens the journal for appending, cutting a torn tail. Returns the warning
    /// to show when a tail was cut.
    pub fn open(path: &Path) -> Result<(Writer, Option<String>), Fail> {
        if path.is_dir() {
            return Err(Fail::Input(anyhow!(
                "journal {} is a folder: [journal] path must name a file",
                path.display()
            )));
        }
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty())
            && !parent.exists()
        {
            crate::private::create_dir(parent).fatal()?;
        }
        let lock_file = lock_path(path);
        let mut lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&lock_file)
            .with_context(|| {
                format!(
                    "cannot open the journal's lock file {}",
                    lock_file.display()
                )
            })
            .fatal()?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut pid = String::new();
                let _ = lock.read_to_string(&mut pid);
                let pid = pid.trim();
                return Err(Fail::Fatal(anyhow!(
                    "journal {} is locked by another utskick (pid {})",
                    path.display(),
                    if pid.is_empty() { "unknown" } else { pid }
                )));
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(Fail::Fatal(anyhow!(
                    "cannot lock journal {}: {e}",
                    path.display()
                )));
            }
        }
        let _ = lock.set_len(0);
        let _ = lock.write_all(format!("{}\n", std::process::id()).as_bytes());

        let existed = path.exists();
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(0o600)
            .open(path)
            .with_context(|| format!("cannot open journal {} for writing", path.display()))
            .fatal()?;
        let _ = file.set_permissions(std::fs::Permissions::from_mode(0o600));
        if !existed {
            // The new file's name must be durable too, not only its lines.
            let parent = match path.parent() {
                Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
                _ => PathBuf::from("."),
            };
            if let Ok(dir) = File::open(&parent) {
                let _ = dir.sync_all();
            }
        }
        let warning = cut_torn_tail(&mut file, path).fatal()?;
        let broken = Arc::new(AtomicBool::new(false));
        let (tx, rx) = std::sync::mpsc::channel::<Msg>();
        let thread_broken = broken.clone();
        let thread = std::thread::Builder::new()
            .name("journal".into())
            .spawn(move || commit_loop(file, rx, thread_broken))
            .with_context(|| "cannot start the journal writer".to_string())
            .fatal()?;
        Ok((
            Writer {
                tx,
                thread: Some(thread),
                broken,
                path: path.to_path_buf(),
                _lock: lock,
            },
            warning,
        ))
    }

    /// Queues an event; the ticket resolves once it is durable.
    pub fn append(&self, event: &Event) -> Ticket {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let mut line = match serde_json::to_vec(event) {
            Ok(l) => l,
            Err(e) => {
                let _ = tx.send(Err(format!("cannot encode a journal event: {e}")));
                return rx;
            }
        };
        line.push(b'\n');
        if let Err(std::sync::mpsc::SendError(Msg::Line(_, Some(tx)))) =
            self.tx.send(Msg::Line(line, Some(tx)))
        {
            let _ = tx.send(Err("the journal writer has stopped".into()));
        }
        rx
    }

    /// Appends and waits until the event is durable.
    pub async fn append_durable(&self, event: &Event) -> Result<()> {
        let ticket = self.append(event);
        match ticket.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(anyhow!("cannot write journal {}: {e}", self.path.display())),
            Err(_) => Err(anyhow!(
                "cannot write journal {}: writer stopped",
                self.path.display()
            )),
        }
    }

    /// Appends and waits, from synchronous code.
    pub fn append_blocking(&self, event: &Event) -> Result<()> {
        match self.append(event).blocking_recv() {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(anyhow!("cannot write journal {}: {e}", self.path.display())),
            Err(_) => Err(anyhow!(
                "cannot write journal {}: writer stopped",
                self.path.display()
            )),
        }
    }

    /// Whether a write has failed (no further delivery may start).
    pub fn is_broken(&self) -> bool {
        self.broken.load(Ordering::SeqCst)
    }

    /// Flushes everything queued and stops the writer.
    pub fn close(mut self) -> Result<()> {
        let (tx, rx) = std::sync::mpsc::channel();
        let sent = self.tx.send(Msg::Close(tx)).is_ok();
        let result = if sent {
            rx.recv().unwrap_or_else(|_| Err("writer stopped".into()))
        } else {
            Err("writer stopped".into())
        };
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        result.map_err(|e| anyhow!("cannot write journal {}: {e}", self.path.display()))
    }

    /// The journal's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn cut_torn_tail(file: &mut File, path: &Path) -> Result<Option<String>> {
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok(None);
    }
    // Find the last newline, reading backwards in blocks.
    let mut end = len;
    let mut buf = vec![0u8; 64 * 1024];
    let mut keep = 0u64;
    while end > 0 {
        let start = end.saturating_sub(buf.len() as u64);
        let n = (end - start) as usize;
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut buf[..n])?;
        if let Some(i) = buf[..n].iter().rposition(|&b| b == b'\n') {
            keep = start + i as u64 + 1;
            break;
        }
        end = start;
    }
    if keep == len {
        return Ok(None);
    }
    // Readers map the file under a shared lock: wait for them before shrinking it.
    let locked = file.lock().is_ok();
    let cut = file
        .set_len(keep)
        .with_context(|| format!("cannot cut the torn tail of journal {}", path.display()));
    if locked {
        let _ = file.unlock();
    }
    cut?;
    file.sync_data()?;
    Ok(Some(format!(
        "journal {}: cut {} bytes after the last complete line (a crash in mid-write)",
        path.display(),
        len - keep
    )))
}

fn commit_loop(mut file: File, rx: std::sync::mpsc::Receiver<Msg>, broken: Arc<AtomicBool>) {
    let mut failure: Option<String> = None;
    let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
    let mut waiters = Vec::new();
    while let Ok(first) = rx.recv() {
        let mut close = None;
        let mut next = Some(first);
        while let Some(msg) = next {
            match msg {
                Msg::Line(line, tx) => {
                    buf.extend_from_slice(&line);
                    if let Some(tx) = tx {
                        waiters.push(tx);
                    }
                }
                Msg::Close(tx) => {
                    close = Some(tx);
                    break;
                }
            }
            if buf.len() > 1 << 20 {
                break;
            }
            next = rx.try_recv().ok();
        }
        if !buf.is_empty() {
            let result = match &failure {
                Some(f) => Err(f.clone()),
                None => file
                    .write_all(&buf)
                    .and_then(|()| file.sync_data())
                    .map_err(|e| e.to_string()),
            };
            if let Err(e) = &result {
                failure.get_or_insert_with(|| e.clone());
                broken.store(true, Ordering::SeqCst);
            }
            buf.clear();
            for w in waiters.drain(..) {
                let _ = w.send(result.clone());
            }
        }
        if let Some(tx) = close {
            let _ = tx.send(match &failure {
                Some(f) => Err(f.clone()),
                None => Ok(()),
            });
            return;
        }
    }
}

/// Convenience: the key of an event (for tests and archives).
pub fn event_key(e: &Event) -> Option<&str> {
    e.key()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attempt(key: &str, run: &str) -> Event {
        Event::Attempt {
            ts: now(),
            run: run.into(),
            key: key.into(),
            email: format!("{key}@example.se"),
            message_id: format!("<c.{key}@example.se>"),
            attempt: 1,
            test: false,
        }
    }

    fn sent(key: &str, run: &str) -> Event {
        Event::Sent {
            ts: now(),
            run: run.into(),
            key: key.into(),
            email: format!("{key}@example.se"),
            message_id: format!("<c.{key}@example.se>"),
            code: 250,
            reply: "2.0.0 Ok".into(),
            test: false,
        }
    }

    fn run_event(run: &str, templates: &str, test: bool) -> Event {
        Event::Run {
            ts: now(),
            run: run.into(),
            campaign: "c".into(),
            command: "send".into(),
            recipients_sha256: "r".into(),
            templates_sha256: templates.into(),
            relay: "127.0.0.1:25".into(),
            test,
        }
    }

    fn text(events: &[Event]) -> Vec<u8> {
        let mut out = Vec::new();
        for e in events {
            out.extend(serde_json::to_vec(e).expect("json"));
            out.push(b'\n');
        }
        out
    }

    #[test]
    fn contract_shape() {
        let line = serde_json::to_string(&sent("1042", "R")).expect("json");
        assert!(line.starts_with("{\"event\":\"sent\",\"ts\":"), "{line}");
        assert!(line.contains("\"code\":250"));
        assert!(!line.contains("test"));
    }

    #[test]
    fn states_from_latest_event() {
        let mut events = vec![run_event("R", "t", false)];
        events.push(attempt("a", "R"));
        events.push(sent("a", "R"));
        events.push(attempt("b", "R"));
        events.push(attempt("c", "R"));
        events.push(Event::Failed {
            ts: now(),
            run: "R".into(),
            key: "c".into(),
            email: "c@example.se".into(),
            message_id: "<c>".into(),
            code: Some(550),
            enhanced: Some("5.1.1".into()),
            reply: "no such user".into(),
            class: Class::Permanent,
            test: false,
        });
        events.push(attempt("d", "R"));
        events.push(Event::Deferred {
            ts: now(),
            run: "R".into(),
            key: "d".into(),
            email: "d@example.se".into(),
            message_id: "<d>".into(),
            code: Some(421),
            reply: "slow down".into(),
            test: false,
        });
        let j = Journal::parse(&text(&events), "j").expect("parses");
        assert_eq!(j.state("a"), State::Sent);
        assert_eq!(j.state("b"), State::Unknown);
        assert_eq!(j.state("c"), State::FailedPermanent);
        assert_eq!(j.state("d"), State::Pending);
        assert_eq!(j.state("zzz"), State::Pending);
        assert_eq!(j.recipients["c"].code, Some(550));
        assert_eq!(j.runs[0].sent, 1);
        assert_eq!(j.runs[0].failed, 1);
        assert_eq!(j.sent_last_24h, 1);
    }

    fn withdrawn(key: &str, run: &str) -> Event {
        Event::Withdrawn(Unsent {
            ts: now(),
            run: run.into(),
            key: key.into(),
            email: format!("{key}@example.se"),
            message_id: format!("<c.{key}@example.se>"),
            reason: "the run stopped before this message went out".into(),
            test: false,
        })
    }

    #[test]
    fn a_line_that_is_not_utf8_is_named() {
        let mut bytes = text(&[run_event("R", "t", false), attempt("a", "R")]);
        bytes.extend_from_slice(b"{\"event\":\"sent\",\"key\":\"\xff\"}\n");
        bytes.extend(text(&[sent("a", "R")]));
        let msg = format!("{:#}", Journal::parse(&bytes, "j.jsonl").unwrap_err());
        assert_eq!(msg, "j.jsonl:3: malformed journal line: not UTF-8");
    }

    #[test]
    fn withdrawn_puts_back_the_state_before_the_attempt() {
        let transient = Event::Failed {
            ts: now(),
            run: "R".into(),
            key: "t".into(),
            email: "t@example.se".into(),
            message_id: "<c.t@example.se>".into(),
            code: Some(451),
            enhanced: Some("4.3.0".into()),
            reply: "try later".into(),
            class: Class::Transient,
            test: false,
        };
        let events = [
            run_event("R", "t", false),
            attempt("p", "R"),
            withdrawn("p", "R"),
            attempt("t", "R"),
            transient,
            run_event("S", "t", false),
            attempt("t", "S"),
            withdrawn("t", "S"),
            attempt("u", "R"),
            run_event("V", "t", false),
            attempt("u", "V"),
            withdrawn("u", "V"),
        ];
        let j = Journal::parse(&text(&events), "j").expect("parses");
        assert_eq!(j.state("p"), State::Pending);
        assert_eq!(j.recipients["p"].attempts, 0);
        assert_eq!(j.state("t"), State::FailedTransient);
        assert_eq!(j.recipients["t"].code, Some(451));
        assert_eq!(j.recipients["t"].why(), "try later");
        assert_eq!(j.recipients["t"].attempts, 1);
        // An attempt with no outcome stays unknown under a later withdrawn attempt.
        assert_eq!(j.state("u"), State::Unknown);
        assert_eq!(j.recipients["u"].attempts, 1);
        let line = serde_json::to_string(&withdrawn("p", "R")).expect("json");
        assert!(
            line.starts_with("{\"event\":\"withdrawn\",\"ts\":"),
            "{line}"
        );
    }

    #[test]
    fn test_sends_change_no_state_and_do_not_count_for_templates() {
        let mut t = attempt("a", "T");
        if let Event::Attempt { test, .. } = &mut t {
            *test = true;
        }
        let mut s = sent("a", "T");
        if let Event::Sent { test, .. } = &mut s {
            *test = true;
        }
        let j = Journal::parse(&text(&[run_event("T", "old", true), t, s]), "j").expect("parses");
        assert_eq!(j.state("a"), State::Pending);
        assert_eq!(j.test_sent, 1);
        assert!(j.other_templates("new").is_empty());
        let j = Journal::parse(&text(&[run_event("R", "old", false)]), "j").expect("parses");
        assert_eq!(j.other_templates("new").len(), 1);
        assert!(j.other_templates("old").is_empty());
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

    #[test]
    fn bounces_booked_once_and_delays_change_nothing() {
        let bounce = |class| Event::Bounced {
            ts: now(),
            key: "a".into(),
            email: "a@example.se".into(),
            message_id: "<c.a@example.se>".into(),
            status: "5.1.1".into(),
            diagnostic: "unknown user".into(),
            source: "<dsn1@example.se>".into(),
            class,
        };
        let j = Journal::parse(
            &text(&[
                run_event("R", "t", false),
                attempt("a", "R"),
                sent("a", "R"),
                bounce(Class::Transient),
            ]),
            "j",
        )
        .expect("parses");
        assert_eq!(j.state("a"), State::Sent);
        assert_eq!(j.delays, 1);
        let j = Journal::parse(
            &text(&[
                run_event("R", "t", false),
                attempt("a", "R"),
                sent("a", "R"),
                bounce(Class::Permanent),
            ]),
            "j",
        )
        .expect("parses");
        assert_eq!(j.state("a"), State::Bounced);
        assert!(j.bounces_booked.contains("<dsn1@example.se>\u{0}a"));
    }

    /// A journal of one complete line (50 bytes) and a torn one (13 bytes), in a temp dir.
    fn torn_journal() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("j.jsonl");
        std::fs::write(
            &path,
            b"{\"event\":\"run\",\"ts\":\"x\",\"run\":\"R\",\"campaign\":\"c\"}\n{\"event\":\"att",
        )
        .expect("w");
        (dir, path)
    }

    #[test]
    fn cutting_a_torn_tail_waits_for_a_reader_that_maps_the_file() {
        // A reader maps the journal under a shared lock; a new writer that must shrink the
        // file (a torn tail) waits for it, so the map never loses its pages (no SIGBUS).
        let (_dir, path) = torn_journal();
        let reader = File::open(&path).expect("open");
        reader.lock_shared().expect("shared lock");
        let (tx, rx) = std::sync::mpsc::channel();
        let writer_path = path.clone();
        let writer = std::thread::spawn(move || {
            let opened = Writer::open(&writer_path).map(|(w, warning)| (w, warning.is_some()));
            let _ = tx.send(());
            opened
        });
        assert!(
            rx.recv_timeout(std::time::Duration::from_millis(300))
                .is_err(),
            "the writer cut the file under a reader"
        );
        assert_eq!(std::fs::metadata(&path).expect("meta").len(), 63);
        reader.unlock().expect("unlock");
        let (w, warned) = match writer.join().expect("writer thread") {
            Ok(opened) => opened,
            Err(_) => panic!("the writer opens once the reader is done"),
        };
        assert!(warned);
        w.close().expect("closes");
        assert_eq!(std::fs::metadata(&path).expect("meta").len(), 50);
    }

    #[test]
    fn writer_locks_appends_and_cuts_torn_tail() {
        let (_dir, path) = torn_journal();
        let (w, warning) = Writer::open(&path).expect("opens");
        assert!(warning.expect("warns").contains("cut 13 bytes"));
        let second = Writer::open(&path);
        let msg = match second {
            Err(Fail::Fatal(e)) => e.to_string(),
            _ => panic!("second writer must be refused"),
        };
        assert!(
            msg.contains(&format!(
                "is locked by another utskick (pid {})",
                std::process::id()
            )),
            "{msg}"
        );
        w.append_blocking(&attempt("a", "R")).expect("durable");
        w.append_blocking(&sent("a", "R")).expect("durable");
        w.close().expect("closes");
        let j = Journal::read(&path).expect("reads");
        assert!(!j.torn_tail);
        assert_eq!(j.state("a"), State::Sent);
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // The lock is released with the writer.
        let (w, _) = Writer::open(&path).expect("reopens");
        w.close().expect("closes");
    }
}

#[cfg(test)]
mod proptests {
    //! The journal reader against arbitrary bytes (never a panic; errors name a line), a
    //! model of the contract's states against generated event sequences, and torn tails.
    use super::*;
    use proptest::prelude::*;

    const KEYS: [&str; 4] = ["1001", "1002", "a\"b", "é\\n"];

    /// One generated event for key `k` (index into KEYS); `None` means no state change.
    fn event(kind: u8, k: usize, test: bool) -> (Event, Option<State>) {
        let ts = now();
        let run = "R".to_string();
        let key = KEYS[k].to_string();
        let email = format!("k{k}@example.se");
        let message_id = format!("<c.{k}@example.se>");
        let change = |s| if test { None } else { Some(s) };
        match kind % 8 {
            0 => (
                Event::Attempt {
                    ts,
                    run,
                    key,
                    email,
                    message_id,
                    attempt: 1,
                    test,
                },
                change(State::Unknown),
            ),
            1 => (
                Event::Sent {
                    ts,
                    run,
                    key,
                    email,
                    message_id,
                    code: 250,
                    reply: "ok".into(),
                    test,
                },
                change(State::Sent),
            ),
            2 | 3 => {
                let class = if kind % 8 == 2 {
                    Class::Transient
                } else {
                    Class::Permanent
                };
                let state = if class == Class::Transient {
                    State::FailedTransient
                } else {
                    State::FailedPermanent
                };
                (
                    Event::Failed {
                        ts,
                        run,
                        key,
                        email,
                        message_id,
                        code: Some(550),
                        enhanced: None,
                        reply: "no".into(),
                        class,
                        test,
                    },
                    change(state),
                )
            }
            4 => (
                Event::Unknown(Unsent {
                    ts,
                    run,
                    key,
                    email,
                    message_id,
                    reason: "lost".into(),
                    test,
                }),
                change(State::Unknown),
            ),
            5 => (
                Event::Deferred {
                    ts,
                    run,
                    key,
                    email,
                    message_id,
                    code: Some(421),
                    reply: "busy".into(),
                    test,
                },
                change(State::Pending),
            ),
            6 => {
                let class = if test {
                    Class::Transient
                } else {
                    Class::Permanent
                };
                (
                    Event::Bounced {
                        ts,
                        key,
                        email,
                        message_id,
                        status: "5.1.1".into(),
                        diagnostic: "x".into(),
                        source: format!("report-{kind}"),
                        class,
                    },
                    if class == Class::Permanent {
                        Some(State::Bounced)
                    } else {
                        None
                    },
                )
            }
            _ => (
                Event::End {
                    ts,
                    run,
                    outcome: "complete".into(),
                },
                None,
            ),
        }
    }

    fn run_line() -> Event {
        Event::Run {
            ts: now(),
            run: "R".into(),
            campaign: "c".into(),
            command: "send".into(),
            recipients_sha256: "r".into(),
            templates_sha256: "t".into(),
            relay: "127.0.0.1:25".into(),
            test: false,
        }
    }

    fn encode(events: &[Event]) -> Vec<u8> {
        let mut out = Vec::new();
        for e in events {
            out.extend(serde_json::to_vec(e).expect("json"));
            out.push(b'\n');
        }
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
            if let Err(e) = Journal::parse(&bytes, "j") {
                let msg = format!("{e:#}");
                prop_assert!(msg.starts_with("j:"), "{msg}");
            }
        }

        #[test]
        fn json_like_lines_never_panic(
            lines in prop::collection::vec(
                prop_oneof![
                    Just("{\"event\":\"sent\"}".to_string()),
                    Just("{\"event\":\"run\",\"run\":\"R\",\"campaign\":\"c\"}".to_string()),
                    Just("{\"event\":\"failed\",\"key\":\"k\",\"email\":\"e\",\"message_id\":\"m\",\"class\":\"x\"}".to_string()),
                    Just("{\"event\":\"bounced\",\"key\":\"k\",\"source\":\"s\",\"class\":\"permanent\"}".to_string()),
                    Just("{\"event\":\"attempt\",\"key\":\"k\",\"email\":\"e\",\"message_id\":\"m\",\"code\":70000}".to_string()),
                    Just("{\"event\":\"end\",\"run\":\"nope\"}".to_string()),
                    Just("{\"event\":1}".to_string()),
                    Just("[]".to_string()),
                    Just("null".to_string()),
                    Just("".to_string()),
                    Just("   ".to_string()),
                    "\\{[\"a-z:,0-9{}\\[\\] ]{0,40}\\}",
                ],
                0..8,
            ),
            tail in "[^\n]{0,20}",
        ) {
            let text = format!("{}\n{tail}", lines.join("\n"));
            match Journal::parse(text.as_bytes(), "j") {
                Ok(j) => prop_assert_eq!(j.torn_tail, !tail.is_empty()),
                Err(e) => {
                    let msg = format!("{e:#}");
                    let line: usize = msg
                        .strip_prefix("j:")
                        .and_then(|m| m.split(':').next())
                        .and_then(|n| n.parse().ok())
                        .unwrap_or(0);
                    prop_assert!(line >= 1 && line <= lines.len(), "{msg}");
                }
            }
        }

        /// The state of every key is its latest state-changing event, as the contract says.
        #[test]
        fn state_is_the_latest_event(
            ops in prop::collection::vec((0u8..8, 0usize..KEYS.len(), prop::bool::weighted(0.15)), 0..40),
        ) {
            let mut events = vec![run_line()];
            let mut model: HashMap<&str, State> = HashMap::new();
            for (kind, k, test) in ops {
                let (e, change) = event(kind, k, test);
                if let Some(s) = change {
                    model.insert(KEYS[k], s);
                }
                events.push(e);
            }
            let j = Journal::parse(&encode(&events), "j").expect("a journal we wrote parses");
            for k in KEYS {
                prop_assert_eq!(j.state(k), model.get(k).copied().unwrap_or(State::Pending), "key {}", k);
            }
            prop_assert_eq!(j.events, events.len() as u64);
        }

        /// Bytes after the last newline (a crash mid-write) never change what is read.
        #[test]
        fn a_torn_tail_changes_nothing(
            ops in prop::collection::vec((0u8..8, 0usize..KEYS.len()), 1..20),
            cut in any::<prop::sample::Index>(),
        ) {
            let mut events = vec![run_line()];
            for (kind, k) in &ops {
                events.push(event(*kind, *k, false).0);
            }
            let whole = encode(&events);
            let last = encode(&events[events.len() - 1..]);
            let prefix = &whole[..whole.len() - last.len()];
            let torn_len = cut.index(last.len() - 1);
            let mut torn = prefix.to_vec();
            torn.extend_from_slice(&last[..torn_len]);
            let a = Journal::parse(prefix, "j").expect("prefix parses");
            let b = Journal::parse(&torn, "j").expect("torn parses");
            prop_assert_eq!(b.torn_tail, torn_len > 0);
            prop_assert_eq!(a.events, b.events);
            for k in KEYS {
                prop_assert_eq!(a.state(k), b.state(k));
            }
        }
    }
}
