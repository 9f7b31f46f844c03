//! `init [DIR]`: a ready folder from the binary alone: the shipped config.toml, templates and
//! example CSV, embedded at build time. It never overwrites anything.

use std::path::Path;

use anyhow::{Context, Result, anyhow};

use crate::exit_codes::ExitCode;
use crate::output::Output;
use crate::{Fail, ResultExt};

/// The files `init` writes, with their shipped contents.
pub const FILES: [(&str, &str); 8] = [
    ("config.toml", include_str!("../config.toml")),
    (
        "recipients.example.csv",
        include_str!("../recipients.example.csv"),
    ),
    (
        "templates/subject.txt",
        include_str!("../templates/subject.txt"),
    ),
    ("templates/body.txt", include_str!("../templates/body.txt")),
    (
        "templates/body.html",
        include_str!("../templates/body.html"),
    ),
    (
        "templates/en/subject.txt",
        include_str!("../templates/en/subject.txt"),
    ),
    (
        "templates/en/body.txt",
        include_str!("../templates/en/body.txt"),
    ),
    (
        "templates/en/body.html",
        include_str!("../templates/en/body.html"),
    ),
];

/// Runs `init`.
pub fn run(dir: &Path, out: &Output) -> Result<ExitCode, Fail> {
    if dir.exists() {
        let empty = dir.is_dir()
            && std::fs::read_dir(dir)
                .map(|mut d| d.next().is_none())
                .unwrap_or(false);
        if !empty {
            return Err(Fail::Input(anyhow!(
                "{} already exists and is not an empty folder: nothing was written; choose a new folder",
                dir.display()
            )));
        }
    }
    write_all(dir).fatal()?;
    out.summary(&format!(
        "wrote config.toml, templates/ and recipients.example.csv to {}\n\nnext:\n  cd {}\n  utskick preview        # read every message in preview/index.html\n  utskick check          # after setting [smtp] and the CSV in config.toml\n  utskick send --test-to you@example.se",
        dir.display(),
        dir.display()
    ));
    Ok(ExitCode::Success)
}

fn write_all(dir: &Path) -> Result<()> {
    crate::private::create_dir(&dir.join("templates"))?;
    crate::private::create_dir(&dir.join("templates/en"))?;
    std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .with_context(|| format!("cannot set the permissions of {}", dir.display()))?;
    for (name, text) in FILES {
        let path = dir.join(name);
        let mode = if name.ends_with(".csv") { 0o600 } else { 0o644 };
        let mut f = std::fs::OpenOptions::new();
        f.write(true).create_new(true);
        std::os::unix::fs::OpenOptionsExt::mode(&mut f, mode);
        let mut file = f
            .open(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        std::io::Write::write_all(&mut file, text.as_bytes())
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_files_are_the_shipped_ones_and_never_overwritten() {
        for (name, text) in FILES {
            let shipped = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(name))
                .expect("shipped file");
            assert_eq!(shipped, text, "{name}");
        }
        let t = tempfile::tempdir().expect("tmp");
        let dir = t.path().join("new");
        write_all(&dir).expect("writes");
        assert!(dir.join("templates/body.html").exists());
        assert!(dir.join("templates/en/body.html").exists());
        assert!(
            write_all(&dir).is_err(),
            "a second write must not overwrite"
        );
    }
}
