//! `[journal] archive`: the exact bytes of every message, by key, kept as part of the
//! promise. A message's file is written and made durable (the file and its folder
//! fsynced) before its DATA goes out, so that an archive never lacks a message a customer
//! may have received; a failure stops the run before that message is sent.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::private;

/// A message's file in the archive.
#[derive(Debug, Clone)]
pub struct Archived {
    /// Where.
    pub path: PathBuf,
    /// Whether this write created it (no earlier attempt had left it there).
    pub created: bool,
}

impl Archived {
    /// Takes the file back when its message certainly did not go out (refused before or
    /// at the end of the data): the archive keeps messages a customer may have received.
    /// A file an earlier attempt left (its outcome unknown) stays.
    pub fn not_delivered(&self) {
        if self.created {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Writes `bytes` as `dir/name` durably: the file's data and its folder entry are on disk
/// when this returns.
pub fn write(dir: &Path, name: &str, bytes: &[u8]) -> Result<Archived> {
    private::create_dir(dir).context("[journal] archive")?;
    let path = dir.join(name);
    let created = !path.exists();
    // create_file names the path and what is wrong with it.
    let mut file = private::create_file(&path).context("[journal] archive")?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write archive file {}", path.display()))?;
    sync_dir(dir)?;
    Ok(Archived { path, created })
}

/// Makes a folder's entries durable (a new file's name survives a crash).
fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("cannot sync the archive folder {}", dir.display()))
}

/// Whether the archive folder can take files, as `send` will write them: a probe file
/// written durably and removed. For `check`.
pub fn check_writable(dir: &Path) -> Result<()> {
    let probe = format!(".utskick-check-{}", std::process::id());
    let path = write(dir, &probe, b"probe\r\n")?.path;
    std::fs::remove_file(&path)
        .with_context(|| format!("cannot remove the probe file {}", path.display()))
}

/// `check`'s line for the archive: whether it is writable, and what to say.
pub fn check(dir: &Path) -> (bool, String) {
    match check_writable(dir) {
        Ok(()) => (true, format!("{} (writable)", dir.display())),
        Err(e) => (false, format!("{e:#}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn writes_the_bytes_private_and_reports_a_folder_in_the_way() {
        let t = tempfile::tempdir().expect("tempdir");
        let dir = t.path().join("sent");
        let archived = write(&dir, "1001.eml", b"Subject: x\r\n\r\nhej\r\n").expect("write");
        assert!(archived.created);
        let path = archived.path;
        assert_eq!(
            std::fs::read(&path).expect("read"),
            b"Subject: x\r\n\r\nhej\r\n"
        );
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        check_writable(&dir).expect("writable");
        assert_eq!(
            std::fs::read_dir(&dir).expect("list").count(),
            1,
            "probe removed"
        );
        // Written again (an unknown outcome resent): not created, so never taken back.
        let again = write(&dir, "1001.eml", b"x").expect("again");
        assert!(!again.created);
        again.not_delivered();
        assert!(path.exists());
        let fresh = write(&dir, "1002.eml", b"x").expect("fresh");
        fresh.not_delivered();
        assert!(!fresh.path.exists());
        // A file where the folder should be: an error naming the path.
        let blocked = t.path().join("blocked");
        std::fs::write(&blocked, b"").expect("file");
        let e = format!(
            "{:#}",
            write(&blocked, "1.eml", b"x").expect_err("not a folder")
        );
        assert!(e.contains(&blocked.display().to_string()), "{e}");
        assert!(check_writable(&blocked).is_err());
    }
}
