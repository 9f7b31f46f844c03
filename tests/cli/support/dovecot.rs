//! A real, private Dovecot IMAP server for the `bounces --imap` tests.
//!
//! Follows /work/shared/notes/mail-servers-on-loopback.md: everything lives under
//! `/tmp/utskick-dc-<pid>-<n>` (a 755 path, so Dovecot's processes and uid 5000 can traverse
//! it); nothing is read from /etc/dovecot. Dovecot listens on 127.0.0.1 only: IMAP with
//! STARTTLS on one free port, implicit TLS (imaps) on another, both with the test CA's
//! `localhost` certificate from [`super::tls`]. Users come from a passwd-file: a pool
//! `imap1@example.test` ... handed out by [`Dovecot::fresh_user`], all with [`PASSWORD`],
//! Maildirs owned by uid 5000. Failed logins cost nothing (no auth delay, anvil's penalty
//! socket disabled), so a wrong-password test cannot slow the others down.
//!
//! [`Dovecot::shared`] starts one instance per test process; a detached watchdog stops it
//! and deletes its folder when the test process exits. Without `dovecot` or root the tests
//! using it are skipped with a printed `skipped: ...`, unless `CI` is set: then they fail.
#![allow(dead_code)]

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::daemon::{find_program, is_root, mkdir, run, spawn_watchdog, tail, unavailable, write};
use super::postfix::free_port;
use super::tls::{self, ServerCert};

/// The mail domain of the users.
pub const DOMAIN: &str = "example.test";
/// Every pooled user's password.
pub const PASSWORD: &str = "imap-hemlis-4711";
/// Size of the user pool behind [`Dovecot::fresh_user`].
pub const POOL: usize = 40;
/// Owner of the Maildirs (no passwd entry needed).
const MAIL_UID: &str = "5000";

/// Connects to 127.0.0.1:port until an IMAP `* OK` greeting arrives; returns it.
fn wait_for_imap_greeting(port: u16, timeout: Duration) -> Result<String, String> {
    let deadline = Instant::now() + timeout;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut last_error = String::from("never tried");
    while Instant::now() < deadline {
        match TcpStream::connect_timeout(&addr, Duration::from_millis(500)) {
            Ok(stream) => {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                let mut line = String::new();
                match BufReader::new(&stream).read_line(&mut line) {
                    Ok(n) if n > 0 && line.starts_with("* OK") => {
                        let _ = (&stream).write_all(b"a LOGOUT\r\n");
                        return Ok(line.trim_end().to_string());
                    }
                    Ok(_) => last_error = format!("unexpected greeting {line:?}"),
                    Err(e) => last_error = format!("reading the greeting: {e}"),
                }
            }
            Err(e) => last_error = format!("connect: {e}"),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(format!(
        "no IMAP greeting on 127.0.0.1:{port} within {timeout:?} ({last_error})"
    ))
}

/// A running private Dovecot; see the module documentation.
pub struct Dovecot {
    dir: PathBuf,
    conf: PathBuf,
    imap_port: u16,
    imaps_port: u16,
    ca_pem: PathBuf,
    mail_base: PathBuf,
    log: PathBuf,
    dovecot: PathBuf,
    next_user: AtomicUsize,
}

enum Skip {
    Unavailable(String),
    Failed(String),
}

impl Dovecot {
    /// The instance of this test process, started on first use (well under a second).
    /// `None` (after printing `skipped: ...`) without dovecot or root; panics instead when
    /// `CI` is set, or when a start was attempted and failed.
    pub fn shared() -> Option<&'static Dovecot> {
        static SHARED: OnceLock<Result<Dovecot, Skip>> = OnceLock::new();
        match SHARED.get_or_init(Dovecot::start) {
            Ok(dovecot) => Some(dovecot),
            Err(Skip::Unavailable(reason)) => unavailable(reason),
            Err(Skip::Failed(reason)) => panic!("{reason}"),
        }
    }

    fn start() -> Result<Dovecot, Skip> {
        let Some(dovecot) = find_program("dovecot") else {
            return Err(Skip::Unavailable(
                "dovecot not installed (apt-get install dovecot-imapd)".into(),
            ));
        };
        if !is_root() {
            return Err(Skip::Unavailable(
                "dovecot tests need root (a private instance switches users)".into(),
            ));
        }
        static INSTANCE: AtomicUsize = AtomicUsize::new(0);
        let n = INSTANCE.fetch_add(1, Ordering::SeqCst);
        let dir = PathBuf::from(format!("/tmp/utskick-dc-{}-{n}", std::process::id()));
        let mut instance = Dovecot {
            conf: dir.join("etc/dovecot.conf"),
            imap_port: 0,
            imaps_port: 0,
            ca_pem: dir.join("tls/ca.pem"),
            mail_base: dir.join("mail"),
            log: dir.join("dovecot.log"),
            dir,
            dovecot,
            next_user: AtomicUsize::new(1),
        };
        instance
            .setup()
            .map_err(|e| Skip::Failed(format!("cannot set up Dovecot: {e}")))?;
        instance.spawn_watchdog().map_err(Skip::Failed)?;
        let mut errors = Vec::new();
        for _attempt in 0..3 {
            instance.imap_port = free_port();
            instance.imaps_port = free_port();
            if instance.imap_port == instance.imaps_port {
                continue;
            }
            match instance.try_start() {
                Ok(()) => return Ok(instance),
                Err(e) => {
                    errors.push(e);
                    let _ = instance.stop();
                }
            }
        }
        Err(Skip::Failed(format!(
            "Dovecot did not start in {}: {}\n--- {}:\n{}",
            instance.dir.display(),
            errors.join("; "),
            instance.log.display(),
            tail(&instance.log, 40)
        )))
    }

    fn setup(&self) -> Result<(), String> {
        if self.dir.exists() {
            // A leftover of an earlier process with the same pid.
            let _ = Command::new(&self.dovecot)
                .arg("-c")
                .arg(&self.conf)
                .arg("stop")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            fs::remove_dir_all(&self.dir)
                .map_err(|e| format!("cannot remove {}: {e}", self.dir.display()))?;
        }
        for sub in ["", "etc", "state", "mail", "tls"] {
            mkdir(&self.dir.join(sub))?;
        }
        run(Command::new("chown")
            .arg(format!("{MAIL_UID}:{MAIL_UID}"))
            .arg(&self.mail_base))?;
        let pki = tls::pki();
        pki.write_ca_pem(&self.ca_pem);
        pki.cert(ServerCert::Valid)
            .write_to(&self.dir.join("tls"), "server");

        let users_file = self.dir.join("etc/users");
        let mut users = String::new();
        for i in 1..=POOL {
            users.push_str(&format!(
                "imap{i}@{DOMAIN}:{{PLAIN}}{PASSWORD}:{MAIL_UID}:{MAIL_UID}::{}::\n",
                self.mail_base.join(format!("imap{i}")).display()
            ));
        }
        write(&users_file, &users)?;
        run(Command::new("chown").arg("root:dovecot").arg(&users_file))?;
        fs::set_permissions(&users_file, fs::Permissions::from_mode(0o640))
            .map_err(|e| format!("chmod {}: {e}", users_file.display()))?;
        Ok(())
    }

    fn write_conf(&self) -> Result<(), String> {
        let d = &self.dir;
        let conf = format!(
            "instance_name = {name}
base_dir = {d}/run
state_dir = {d}/state
protocols = imap
listen = 127.0.0.1
log_path = {log}
ssl = required
ssl_cert = <{d}/tls/server.crt
ssl_key = <{d}/tls/server.key
ssl_dh = </usr/share/dovecot/dh.pem
disable_plaintext_auth = yes
auth_mechanisms = plain login
auth_failure_delay = 0
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
service auth {{
  user = $default_internal_user
}}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {d}/etc/users
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {d}/etc/users
}}
mail_location = maildir:~
namespace inbox {{
  inbox = yes
  separator = /
}}
service imap-login {{
  inet_listener imap {{
    port = {imap}
  }}
  inet_listener imaps {{
    port = {imaps}
    ssl = yes
  }}
}}
",
            name = d
                .file_name()
                .map(|n| n.to_string_lossy())
                .unwrap_or_default(),
            d = d.display(),
            log = self.log.display(),
            imap = self.imap_port,
            imaps = self.imaps_port,
        );
        write(&self.conf, &conf)
    }

    fn try_start(&self) -> Result<(), String> {
        self.write_conf()?;
        // A stale anvil-auth-penalty socket would make every login wait 5 s.
        let run_dir = self.dir.join("run");
        if run_dir.exists() {
            fs::remove_dir_all(&run_dir)
                .map_err(|e| format!("cannot remove {}: {e}", run_dir.display()))?;
        }
        let out_path = self.dir.join("dovecot-start.out");
        let out = fs::File::create(&out_path)
            .map_err(|e| format!("cannot create {}: {e}", out_path.display()))?;
        let err = out
            .try_clone()
            .map_err(|e| format!("cannot clone a file handle: {e}"))?;
        let status = Command::new(&self.dovecot)
            .arg("-c")
            .arg(&self.conf)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .status()
            .map_err(|e| format!("cannot run dovecot: {e}"))?;
        if !status.success() {
            return Err(format!(
                "`dovecot -c {}` exited with {status}: {}",
                self.conf.display(),
                tail(&out_path, 20)
            ));
        }
        let greeting = wait_for_imap_greeting(self.imap_port, Duration::from_secs(15))?;
        if !greeting.contains("Dovecot") && !greeting.contains("ready") {
            return Err(format!(
                "port {} answered {greeting:?}, not our Dovecot",
                self.imap_port
            ));
        }
        let addr = SocketAddr::from(([127, 0, 0, 1], self.imaps_port));
        TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .map_err(|e| format!("imaps port {}: {e}", self.imaps_port))?;
        Ok(())
    }

    fn spawn_watchdog(&self) -> Result<(), String> {
        let stop = format!(
            "'{}' -c '{}' stop",
            self.dovecot.display(),
            self.conf.display()
        );
        spawn_watchdog("Dovecot", &stop, &self.dir)
    }

    fn stop(&self) -> Result<String, String> {
        run(Command::new(&self.dovecot)
            .arg("-c")
            .arg(&self.conf)
            .arg("stop"))
    }

    /// `localhost`: the certificate is valid for it and for 127.0.0.1.
    pub fn host(&self) -> &'static str {
        "localhost"
    }

    /// The implicit-TLS port (security `tls`).
    pub fn imaps_port(&self) -> u16 {
        self.imaps_port
    }

    /// The plain port with STARTTLS (security `starttls`, or `none` on loopback).
    pub fn imap_port(&self) -> u16 {
        self.imap_port
    }

    /// PEM of the CA that signed the server certificate (for `[bounces] ca_file`).
    pub fn ca_pem_path(&self) -> &Path {
        &self.ca_pem
    }

    /// A user no other test in this process gets, with an empty Maildir.
    pub fn fresh_user(&self) -> String {
        let n = self.next_user.fetch_add(1, Ordering::SeqCst);
        assert!(
            n <= POOL,
            "all {POOL} pooled IMAP users are used; raise POOL"
        );
        let user = format!("imap{n}@{DOMAIN}");
        let home = self.maildir(&user);
        for sub in ["", "cur", "new", "tmp"] {
            mkdir(&home.join(sub)).unwrap_or_else(|e| panic!("{e}"));
        }
        run(Command::new("chown")
            .arg("-R")
            .arg(format!("{MAIL_UID}:{MAIL_UID}"))
            .arg(&home))
        .unwrap_or_else(|e| panic!("{e}"));
        user
    }

    /// The user's Maildir (INBOX); folder `X` is `.X/` inside it.
    pub fn maildir(&self, user: &str) -> PathBuf {
        let local = user.split('@').next().unwrap_or(user);
        self.mail_base.join(local)
    }

    /// Puts a message into the user's INBOX the way an MDA does (tmp/, then new/).
    pub fn deliver(&self, user: &str, name: &str, raw: &[u8]) {
        let home = self.maildir(user);
        let tmp = home.join("tmp").join(name);
        fs::write(&tmp, raw).unwrap_or_else(|e| panic!("write {}: {e}", tmp.display()));
        run(Command::new("chown")
            .arg(format!("{MAIL_UID}:{MAIL_UID}"))
            .arg(&tmp))
        .unwrap_or_else(|e| panic!("{e}"));
        let target = home.join("new").join(name);
        fs::rename(&tmp, &target).unwrap_or_else(|e| panic!("rename to {}: {e}", target.display()));
    }

    /// The messages of a folder (`None`: INBOX), new/ and cur/, sorted by file name.
    pub fn messages(&self, user: &str, folder: Option<&str>) -> Vec<Vec<u8>> {
        let mut dir = self.maildir(user);
        if let Some(folder) = folder {
            dir = dir.join(format!(".{folder}"));
        }
        let mut files: Vec<PathBuf> = ["new", "cur"]
            .iter()
            .filter_map(|sub| fs::read_dir(dir.join(sub)).ok())
            .flatten()
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .collect();
        files.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
        files.iter().filter_map(|p| fs::read(p).ok()).collect()
    }

    /// The last lines of Dovecot's log, for failure messages.
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.log, lines)
    }
}
