//! Files that hold personal data: created 0600 in folders created 0700, whatever the umask.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use anyhow::{Context, Result};

/// Creates a folder (and its parents) with mode 0700.
pub fn create_dir(dir: &Path) -> Result<()> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create folder {}", dir.display()))?;
    restrict_dir(dir)
}

/// Sets an existing folder to 0700.
pub fn restrict_dir(dir: &Path) -> Result<()> {
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("cannot set the permissions of {}", dir.display()))
}

/// Creates (truncating) a file with mode 0600.
pub fn create_file(path: &Path) -> Result<File> {
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("cannot set the permissions of {}", path.display()))?;
    Ok(file)
}

/// Writes a whole file with mode 0600.
pub fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = create_file(path)?;
    f.write_all(bytes)
        .with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes() {
        let t = tempfile::tempdir().expect("tempdir");
        let d = t.path().join("a/b");
        create_dir(&d).expect("dir");
        write_file(&d.join("f"), b"x").expect("file");
        let mode = |p: &Path| std::fs::metadata(p).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode(&d), 0o700);
        assert_eq!(mode(&d.join("f")), 0o600);
    }
}
