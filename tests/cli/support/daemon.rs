//! What the private Postfix and Dovecot instances of the tests share: skipping (or, under
//! CI, failing) when a server cannot be had, running setup commands, and a watchdog that
//! stops the server and removes its folder when the test process exits.
#![allow(dead_code)]

use std::fs;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// True when running under CI (`CI` set, not empty, not `false`/`0`): missing mail servers
/// are then a failure, not a skip.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// Skips (prints the reason, returns `None`) or, under CI, panics with the reason.
pub fn unavailable<T>(reason: &str) -> Option<T> {
    if in_ci() {
        panic!("CI is set, so this test may not be skipped: {reason}");
    }
    // Written past the test harness's capture (which `eprintln!` goes through), so that the
    // skip shows in `cargo test`'s output although the test passes.
    use std::io::Write;
    let test = std::thread::current().name().unwrap_or("?").to_string();
    let _ = writeln!(std::io::stderr(), "skipped: {test}: {reason}");
    None
}

/// Finds a program on PATH (or in /usr/sbin, /sbin, where Debian puts the daemons).
pub fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|dir| dir.join(name))
        .find(|candidate| {
            candidate
                .metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// Whether the tests run as root (the daemons need it).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Runs a setup command; its output, or an error with the output.
pub fn run(cmd: &mut Command) -> Result<String, String> {
    let shown = format!("{cmd:?}");
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {shown}: {e}"))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        Ok(text)
    } else {
        Err(format!("{shown} failed ({}): {text}", out.status))
    }
}

/// A folder, 0755 (the daemons' users must traverse it).
pub fn mkdir(path: &Path) -> Result<(), String> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(path)
        .and_then(|()| fs::set_permissions(path, fs::Permissions::from_mode(0o755)))
        .map_err(|e| format!("cannot create {}: {e}", path.display()))
}

/// Writes a config file.
pub fn write(path: &Path, contents: &str) -> Result<(), String> {
    fs::write(path, contents).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// The tail (last `n` lines) of a text file, or a note why it cannot be read.
pub fn tail(path: &Path, n: usize) -> String {
    match fs::read_to_string(path) {
        Ok(text) => {
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(n)..].join("\n")
        }
        Err(e) => format!("({} unreadable: {e})", path.display()),
    }
}

/// Starts a detached watchdog that runs `stop` (a shell command) and removes `dir` once
/// this test process has exited: a static server is never dropped, and none may outlive
/// the tests.
pub fn spawn_watchdog(name: &str, stop: &str, dir: &Path) -> Result<(), String> {
    let script = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 0.5; done; {stop} >/dev/null 2>&1; sleep 1; rm -rf '{dir}'",
        pid = std::process::id(),
        dir = dir.display(),
    );
    let mut cmd = match find_program("setsid") {
        Some(setsid) => {
            let mut cmd = Command::new(setsid);
            cmd.args(["-f", "sh", "-c", &script]);
            cmd
        }
        None => {
            use std::os::unix::process::CommandExt;
            let mut cmd = Command::new("sh");
            cmd.args(["-c", &format!("({script}) &")]).process_group(0);
            cmd
        }
    };
    let status = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(|e| format!("cannot start the {name} watchdog: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("the {name} watchdog failed to start: {status}"))
    }
}
