//! The journal's one writer: it holds the lock, cuts a torn tail (a crash mid-write)
//! before it appends, and commits in groups on its own thread. An attempt is durable
//! (written and `fdatasync`ed) before the message's DATA goes out, and an outcome is durable
//! before the run counts it; once a write fails every later one fails too, so that no
//! message goes out without a durable attempt.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result, anyhow};

use super::event::Event;
use super::lock::{self, lock_path};
use crate::{Fail, ResultExt, private};

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
}

impl Writer {
    /// Locks and opens the journal for appending, cutting a torn tail. Returns the warning
    /// to show when a tail was cut. Neither the journal nor the pid note beside it is
    /// opened through a symbolic link.
    pub fn open(path: &Path) -> Result<(Writer, Option<String>), Fail> {
        let note = lock_path(path);
        // Links first, so that a link in the way leaves no new file behind.
        private::refuse_link(path).fatal()?;
        private::refuse_link(&note).fatal()?;
        if path.is_dir() {
            return Err(Fail::Input(anyhow!(
                "journal {} is a folder: [journal] path must name a file",
                path.display()
            )));
        }
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty())
            && !parent.exists()
        {
            private::create_dir(parent).fatal()?;
        }
        let existed = path.exists();
        let mut file = private::open_no_follow(
            OpenOptions::new()
                .read(true)
                .append(true)
                .create(true)
                .mode(0o600),
            path,
        )
        .with_context(|| format!("cannot open journal {} for writing", path.display()))
        .fatal()?;
        lock::hold_writer(&file, path)?;
        // Locked, the name must still be the file locked: a journal renamed or replaced
        // between the open and the lock would leave this run writing a file no one reads.
        if !names(path, &file) {
            return Err(Fail::Fatal(anyhow!(
                "journal {} was replaced while it was being opened: start again",
                path.display()
            )));
        }
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
        // The note for people (and for the holder's pid where /proc/locks is not there).
        private::write_file(&note, format!("{}\n", std::process::id()).as_bytes()).fatal()?;
        let warning = cut_torn_tail(&mut file, path).fatal()?;
        let broken = Arc::new(AtomicBool::new(false));
        let (tx, rx) = std::sync::mpsc::channel::<Msg>();
        let thread_broken = broken.clone();
        let thread_path = path.to_path_buf();
        let thread = std::thread::Builder::new()
            .name("journal".into())
            .spawn(move || commit_loop(file, &thread_path, rx, thread_broken))
            .with_context(|| "cannot start the journal writer".to_string())
            .fatal()?;
        Ok((
            Writer {
                tx,
                thread: Some(thread),
                broken,
                path: path.to_path_buf(),
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
    // Readers map the file under the map's shared lock: wait for them before shrinking it.
    let locked = lock::map_lock(file, true).is_ok();
    let cut = file
        .set_len(keep)
        .with_context(|| format!("cannot cut the torn tail of journal {}", path.display()));
    if locked {
        let _ = lock::map_unlock(file);
    }
    cut?;
    file.sync_data()?;
    Ok(Some(format!(
        "journal {}: cut {} bytes after the last complete line (a crash in mid-write)",
        path.display(),
        len - keep
    )))
}

/// Whether `path` names `file` (the same device and inode, the name not a link).
fn names(path: &Path, file: &File) -> bool {
    match (std::fs::symlink_metadata(path), file.metadata()) {
        (Ok(named), Ok(open)) => named.dev() == open.dev() && named.ino() == open.ino(),
        _ => false,
    }
}

fn commit_loop(
    mut file: File,
    path: &Path,
    rx: std::sync::mpsc::Receiver<Msg>,
    broken: Arc<AtomicBool>,
) {
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
                    .map_err(|e| e.to_string())
                    .and_then(|()| {
                        // Lines durable in a file that no longer has the journal's name are
                        // lost to every reader: stop rather than go on sending.
                        if names(path, &file) {
                            Ok(())
                        } else {
                            Err(format!(
                                "the journal {} was deleted or replaced while this run wrote it; the lines since are in the old file only",
                                path.display()
                            ))
                        }
                    }),
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

#[cfg(test)]
mod tests {
    use super::super::sample::*;
    use super::*;
    use crate::journal::{Journal, State};

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
        lock::map_lock(&reader, false).expect("shared lock");
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
        lock::map_unlock(&reader).expect("unlock");
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
