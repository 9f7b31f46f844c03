//! The two locks on a journal, both on the journal file itself so that nothing an operator
//! deletes beside it can release them:
//!
//! - the one writer's: `flock` exclusive, taken without waiting by `Writer::open` and held
//!   until the writer closes. A second `send`, `retry` or `bounces` finds it held and stops
//!   (exit 1) naming the holder's pid. (A lock *file* beside the journal could be deleted
//!   while a run holds it, and the next run would lock a new file of the same name.)
//! - the map's: an open-file-description (`F_OFD_SETLKW`) record lock, shared by readers
//!   while they map the journal and exclusive for the writer that shrinks it, cutting a
//!   torn tail, so that a map never loses its pages (SIGBUS). It is independent of the
//!   writer's `flock`, so a reader (`status`, or `send` reading its own journal) never
//!   waits for a running writer.
//!
//! The pid of the writer goes into `JOURNAL.lock` beside the journal as a note for people;
//! the lock is not there, and the kernel's lock table names the holder when the note is
//! gone.

use std::fs::File;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::anyhow;

use crate::Fail;

/// The note beside the journal naming the writer's pid.
pub fn lock_path(path: &Path) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".lock");
    path.with_file_name(name)
}

/// Takes the one writer's lock on the open journal, or says who holds it.
pub(super) fn hold_writer(journal: &File, path: &Path) -> Result<(), Fail> {
    match journal.try_lock() {
        Ok(()) => Ok(()),
        Err(std::fs::TryLockError::WouldBlock) => {
            let pid =
                holder(journal, path).map_or_else(|| "unknown".to_string(), |p| p.to_string());
            Err(Fail::Fatal(anyhow!(
                "journal {} is locked by another utskick (pid {pid}): let it finish or stop it; do not delete the journal or any file beside it (that does not unlock it)",
                path.display()
            )))
        }
        Err(std::fs::TryLockError::Error(e)) => Err(Fail::Fatal(anyhow!(
            "cannot lock journal {}: {e}",
            path.display()
        ))),
    }
}

/// Whether a writer holds the journal at `path` (for `check`; a missing journal has none).
pub fn is_locked(path: &Path) -> bool {
    let Ok(file) = File::open(path) else {
        return false;
    };
    // Readers take no `flock`: a shared one is refused only while a writer holds it.
    matches!(
        file.try_lock_shared(),
        Err(std::fs::TryLockError::WouldBlock)
    )
}

/// The pid holding the writer's lock: from the kernel's lock table, else from the note.
fn holder(journal: &File, path: &Path) -> Option<u32> {
    flock_holder(journal).or_else(|| {
        let mut note = String::new();
        crate::private::open_no_follow(std::fs::OpenOptions::new().read(true), &lock_path(path))
            .ok()?
            .read_to_string(&mut note)
            .ok()?;
        note.trim().parse().ok()
    })
}

/// The pid of the `flock` write lock on `file`'s inode in `/proc/locks` (Linux), whose
/// lines read `N: FLOCK ADVISORY WRITE PID MAJOR:MINOR:INODE START END`.
fn flock_holder(file: &File) -> Option<u32> {
    let meta = file.metadata().ok()?;
    let inode = format!(
        "{:02x}:{:02x}:{}",
        libc::major(meta.dev()),
        libc::minor(meta.dev()),
        meta.ino()
    );
    let table = std::fs::read_to_string("/proc/locks").ok()?;
    holder_in(&table, &inode)
}

/// The pid of the FLOCK WRITE entry for `inode` in a `/proc/locks` text.
fn holder_in(table: &str, inode: &str) -> Option<u32> {
    table.lines().find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        match f.as_slice() {
            [_, "FLOCK", _, "WRITE", pid, at, ..] if *at == inode => pid.parse().ok(),
            _ => None,
        }
    })
}

/// Takes the map's lock on `file`, shared (`exclusive` false) or exclusive, waiting for it.
pub(super) fn map_lock(file: &File, exclusive: bool) -> std::io::Result<()> {
    set_record_lock(
        file,
        if exclusive {
            libc::F_WRLCK
        } else {
            libc::F_RDLCK
        },
        libc::F_OFD_SETLKW,
    )
}

/// Releases the map's lock.
pub(super) fn map_unlock(file: &File) -> std::io::Result<()> {
    set_record_lock(file, libc::F_UNLCK, libc::F_OFD_SETLK)
}

/// An open-file-description record lock over the whole file.
fn set_record_lock(file: &File, kind: i32, command: i32) -> std::io::Result<()> {
    // SAFETY: `flock` is plain old data; all zero is a valid value (whole file from offset
    // 0, l_pid 0 as OFD locks require).
    let mut lock: libc::flock = unsafe { std::mem::zeroed() };
    lock.l_type = kind as libc::c_short;
    lock.l_whence = libc::SEEK_SET as libc::c_short;
    loop {
        // SAFETY: a valid open fd, and a pointer to a live, initialized `flock`.
        let r = unsafe { libc::fcntl(file.as_raw_fd(), command, &lock) };
        if r == 0 {
            return Ok(());
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_holder_is_read_from_the_lock_table() {
        let table = "1: POSIX  ADVISORY  WRITE 77 fd:01:99 0 EOF\n\
                     2: FLOCK  ADVISORY  READ 88 fd:01:42 0 EOF\n\
                     3: FLOCK  ADVISORY  WRITE 4242 fd:01:42 0 EOF\n\
                     4: OFDLCK ADVISORY  READ -1 fd:01:42 0 EOF\n";
        assert_eq!(holder_in(table, "fd:01:42"), Some(4242));
        assert_eq!(
            holder_in(table, "fd:01:99"),
            None,
            "a POSIX lock is not ours"
        );
        assert_eq!(holder_in(table, "fd:01:7"), None);
    }

    #[test]
    fn a_held_journal_names_this_process_even_without_the_note() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("j.jsonl");
        std::fs::write(&path, b"").expect("journal");
        let first = File::open(&path).expect("open");
        hold_writer(&first, &path).expect("first");
        assert!(is_locked(&path));
        let second = File::open(&path).expect("open");
        let Err(Fail::Fatal(e)) = hold_writer(&second, &path) else {
            panic!("the second writer must be refused");
        };
        assert!(
            e.to_string().contains(&format!(
                "locked by another utskick (pid {})",
                std::process::id()
            )),
            "{e}"
        );
        assert!(e.to_string().contains("do not delete"), "{e}");
        // The map's lock is independent of the writer's.
        map_lock(&second, false).expect("a reader maps while a writer writes");
        map_unlock(&second).expect("unlock");
        drop(first);
        assert!(!is_locked(&path));
    }
}
