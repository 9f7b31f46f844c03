//! Files that hold personal data or the record of who was told (journal, its lock, the
//! preview marker, archives, `--failed-csv`, `--report`): created 0600 in folders created
//! 0700, whatever the umask, and never written through a symbolic link. A link where one
//! of these files goes could send a customer's letter, or the journal, into whatever file
//! it points at; the link is refused, naming it, and its target is not touched.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use anyhow::{Context, Result, bail};

/// The error for a symbolic link where utskick writes.
fn link_in_the_way(path: &Path) -> anyhow::Error {
    anyhow::anyhow!(
        "{} is a symbolic link: utskick writes no journal, lock, marker or personal-data file through a link; remove the link or choose another path",
        path.display()
    )
}

/// Whether `path` itself (not what it points at) is a symbolic link.
fn is_link(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink())
}

/// Opens `options` on `path` refusing a symbolic link as the last component (`O_NOFOLLOW`):
/// the open itself refuses, so no link put there between a check and the open is followed.
pub fn open_no_follow(options: &mut OpenOptions, path: &Path) -> Result<File> {
    match options.custom_flags(libc::O_NOFOLLOW).open(path) {
        Ok(f) => Ok(f),
        // ELOOP is what O_NOFOLLOW answers for a link; an `O_EXCL` create answers EEXIST.
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) || is_link(path) => {
            Err(link_in_the_way(path))
        }
        Err(e) => Err(e).with_context(|| format!("cannot open {}", path.display())),
    }
}

/// Creates a folder (and its parents) with mode 0700. A link where the folder goes is
/// refused: its permissions would be set on the link's target.
pub fn create_dir(dir: &Path) -> Result<()> {
    if is_link(dir) {
        return Err(link_in_the_way(dir));
    }
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create folder {}", dir.display()))?;
    restrict_dir(dir)
}

/// Sets an existing folder to 0700 (a link there is refused).
pub fn restrict_dir(dir: &Path) -> Result<()> {
    if is_link(dir) {
        return Err(link_in_the_way(dir));
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("cannot set the permissions of {}", dir.display()))
}

/// Creates (truncating) a file with mode 0600, never through a link.
pub fn create_file(path: &Path) -> Result<File> {
    let file = open_no_follow(
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600),
        path,
    )
    .with_context(|| format!("cannot write {}", path.display()))?;
    // The mode of a file that was there already, set on the open file (not the path).
    file.set_permissions(std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("cannot set the permissions of {}", path.display()))?;
    Ok(file)
}

/// Creates a file that must be new (`O_EXCL`: neither a file nor a link may be there).
pub fn create_new(path: &Path) -> Result<File> {
    let file = open_no_follow(
        OpenOptions::new().write(true).create_new(true).mode(0o600),
        path,
    )
    .with_context(|| format!("cannot create {}", path.display()))?;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("cannot set the permissions of {}", path.display()))?;
    Ok(file)
}

/// Writes a whole file with mode 0600, never through a link.
pub fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = create_file(path)?;
    f.write_all(bytes)
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Checks that `path` is not a symbolic link, for a file opened by other means.
pub fn refuse_link(path: &Path) -> Result<()> {
    if is_link(path) {
        bail!(link_in_the_way(path));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).expect("meta").permissions().mode() & 0o777
    }

    #[test]
    fn modes() {
        let t = tempfile::tempdir().expect("tempdir");
        let d = t.path().join("a/b");
        create_dir(&d).expect("dir");
        write_file(&d.join("f"), b"x").expect("file");
        assert_eq!(mode(&d), 0o700);
        assert_eq!(mode(&d.join("f")), 0o600);
        // An existing file is made 0600 as it is rewritten.
        std::fs::set_permissions(d.join("f"), std::fs::Permissions::from_mode(0o666))
            .expect("chmod");
        write_file(&d.join("f"), b"y").expect("file");
        assert_eq!(mode(&d.join("f")), 0o600);
    }

    #[test]
    fn links_are_refused_naming_them_and_their_targets_stay_as_they_were() {
        let t = tempfile::tempdir().expect("tempdir");
        let target = t.path().join("target.txt");
        std::fs::write(&target, b"someone else's file\n").expect("target");
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let link = t.path().join("link.eml");
        std::os::unix::fs::symlink(&target, &link).expect("symlink");
        let dir_link = t.path().join("dir-link");
        std::os::unix::fs::symlink(t.path(), &dir_link).expect("symlink");
        std::fs::set_permissions(t.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let folder_mode = mode(t.path());

        let errors = [
            format!(
                "{:#}",
                write_file(&link, b"letter").expect_err("write_file")
            ),
            format!("{:#}", create_file(&link).expect_err("create_file")),
            format!("{:#}", create_new(&link).expect_err("create_new")),
            format!("{:#}", refuse_link(&link).expect_err("refuse_link")),
        ];
        for e in &errors {
            assert!(
                e.contains(&format!("{} is a symbolic link", link.display())),
                "{e}"
            );
        }
        for e in [
            format!("{:#}", create_dir(&dir_link).expect_err("create_dir")),
            format!("{:#}", restrict_dir(&dir_link).expect_err("restrict_dir")),
        ] {
            assert!(e.contains("dir-link is a symbolic link"), "{e}");
        }
        assert_eq!(
            std::fs::read(&target).expect("target"),
            b"someone else's file\n"
        );
        assert_eq!(mode(&target), 0o644);
        // The folder a folder link points at keeps its mode.
        assert_eq!(mode(t.path()), folder_mode);
        // A dangling link is refused too (O_CREAT would otherwise create its target).
        let dangling = t.path().join("dangling");
        std::os::unix::fs::symlink(t.path().join("nowhere"), &dangling).expect("symlink");
        assert!(write_file(&dangling, b"x").is_err());
        assert!(!t.path().join("nowhere").exists());
    }
}
