//! A real, private Postfix instance for end-to-end tests, and Postfix's `smtp-sink`.
//!
//! Follows /work/shared/notes/mail-servers-on-loopback.md: everything lives under
//! `/tmp/utskick-pf-<pid>-<n>` (a 755 path, so the `postfix` user and uid 5000 can traverse
//! it); Postfix listens on 127.0.0.1:<free port>, requires STARTTLS (certificate from
//! [`super::tls`]), authenticates `alice`/`secret` (Cyrus SASL, sasldb, realm
//! `example.test`), delivers `*@example.test` mailboxes listed in [`MAILBOXES`] (plus a pool
//! handed out by [`Postfix::fresh_mailbox`]) to Maildirs, bounces every other recipient with
//! a real DSN to the sender's mailbox, and sends nothing off the box.
//!
//! [`Postfix::shared`] starts one instance per test process. A detached watchdog stops it
//! and deletes its folder when the test process exits. Without `postfix` or root the
//! tests using it are skipped, unless `CI` is set: then they fail with the reason.
#![allow(dead_code)]

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub use super::daemon::find_program;
use super::daemon::{is_root, mkdir, run, spawn_watchdog, tail, unavailable, write};
use super::tls;

/// The mail domain of the instance.
pub const DOMAIN: &str = "example.test";
/// SASL user (log in as `alice` or `alice@example.test`) and password.
pub const USER: &str = "alice";
pub const PASSWORD: &str = "secret";
/// Named mailboxes (local parts) that exist; any other local part bounces (5.1.1).
pub const MAILBOXES: &[&str] = &[
    "alice",
    "bob",
    "carol",
    "dave",
    "erin",
    "postmaster",
    "dataskydd",
];
/// Size of the pool of extra mailboxes `box1` ... `boxN` behind [`Postfix::fresh_mailbox`].
pub const POOL: usize = 300;

/// An OS-chosen free port on 127.0.0.1 (free when this returns; tiny race after).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0 to find a free port")
}

/// Connects to 127.0.0.1:port until a `220` greeting arrives (then QUITs); returns it.
fn wait_for_greeting(port: u16, timeout: Duration) -> Result<String, String> {
    let deadline = Instant::now() + timeout;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut last_error = String::from("never tried");
    while Instant::now() < deadline {
        match TcpStream::connect_timeout(&addr, Duration::from_millis(500)) {
            Ok(stream) => {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                let mut reader = BufReader::new(&stream);
                let mut line = String::new();
                match reader.read_line(&mut line) {
                    Ok(n) if n > 0 && line.starts_with("220") => {
                        let _ = (&stream).write_all(b"QUIT\r\n");
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
        "nothing answered 220 on 127.0.0.1:{port} within {timeout:?} ({last_error})"
    ))
}

/// A running private Postfix instance; see the module documentation.
pub struct Postfix {
    dir: PathBuf,
    config_dir: PathBuf,
    port: u16,
    ca_pem: PathBuf,
    mail_base: PathBuf,
    log: PathBuf,
    postfix: PathBuf,
    next_box: AtomicUsize,
}

impl Postfix {
    /// The instance of this test process, started on first use (~0.5-3 s). `None` (after
    /// printing `skipped: ...`) when `postfix` is not installed or we are not root; panics
    /// instead when `CI` is set, or when a start was attempted and failed.
    pub fn shared() -> Option<&'static Postfix> {
        static SHARED: OnceLock<Result<Postfix, Skip>> = OnceLock::new();
        match SHARED.get_or_init(Postfix::start) {
            Ok(postfix) => Some(postfix),
            Err(Skip::Unavailable(reason)) => unavailable(reason),
            Err(Skip::Failed(reason)) => panic!("{reason}"),
        }
    }

    fn start() -> Result<Postfix, Skip> {
        let Some(postfix) = find_program("postfix") else {
            return Err(Skip::Unavailable(
                "postfix not installed (apt-get install postfix libsasl2-modules sasl2-bin)".into(),
            ));
        };
        if !is_root() {
            return Err(Skip::Unavailable(
                "postfix tests need root (a private instance runs as user postfix)".into(),
            ));
        }
        let Some(saslpasswd2) = find_program("saslpasswd2") else {
            return Err(Skip::Unavailable(
                "saslpasswd2 not installed (apt-get install sasl2-bin)".into(),
            ));
        };
        static INSTANCE: AtomicUsize = AtomicUsize::new(0);
        let n = INSTANCE.fetch_add(1, Ordering::SeqCst);
        let dir = PathBuf::from(format!("/tmp/utskick-pf-{}-{n}", std::process::id()));
        let mut instance = Postfix {
            config_dir: dir.join("etc"),
            port: 0,
            ca_pem: dir.join("tls/ca.pem"),
            mail_base: dir.join("mail"),
            log: dir.join("postfix.log"),
            dir,
            postfix,
            next_box: AtomicUsize::new(1),
        };
        instance
            .setup(&saslpasswd2)
            .map_err(|e| Skip::Failed(format!("cannot set up Postfix: {e}")))?;
        instance.spawn_watchdog().map_err(Skip::Failed)?;
        let mut errors = Vec::new();
        for _attempt in 0..3 {
            instance.port = free_port();
            match instance.try_start() {
                Ok(()) => return Ok(instance),
                Err((retry, e)) => {
                    errors.push(e);
                    let _ = instance.stop();
                    if !retry {
                        break;
                    }
                }
            }
        }
        Err(Skip::Failed(format!(
            "Postfix did not start in {}: {}\n{}",
            instance.dir.display(),
            errors.join("; "),
            instance.diagnostics()
        )))
    }

    fn setup(&self, saslpasswd2: &Path) -> Result<(), String> {
        if self.dir.exists() {
            // A leftover of an earlier process with the same pid.
            let _ = Command::new(&self.postfix)
                .arg("-c")
                .arg(&self.config_dir)
                .arg("stop")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            fs::remove_dir_all(&self.dir)
                .map_err(|e| format!("cannot remove {}: {e}", self.dir.display()))?;
        }
        let d = &self.dir;
        for sub in ["", "etc", "etc/sasl", "spool", "data", "mail", "tls"] {
            mkdir(&d.join(sub))?;
        }
        run(Command::new("chown")
            .arg("postfix:postfix")
            .arg(d.join("data")))?;
        run(Command::new("chown").arg("5000:5000").arg(&self.mail_base))?;
        let pki = tls::pki();
        let (cert, key) = pki.server.write_to(&d.join("tls"), "server");
        pki.write_ca_pem(&self.ca_pem);

        let mut vmailbox = String::new();
        for name in MAILBOXES {
            vmailbox.push_str(&format!("{name}@{DOMAIN} {name}/\n"));
        }
        for i in 1..=POOL {
            vmailbox.push_str(&format!("box{i}@{DOMAIN} box{i}/\n"));
        }
        let etc = &self.config_dir;
        write(&etc.join("vmailbox"), &vmailbox)?;
        let main_cf = format!(
            "compatibility_level = 3.6
queue_directory = {d}/spool
data_directory = {d}/data
maillog_file_prefixes = /var, /dev/stdout, /tmp
maillog_file = {log}
myhostname = mail.{DOMAIN}
mydomain = {DOMAIN}
myorigin = {DOMAIN}
mydestination =
local_recipient_maps =
alias_maps =
alias_database =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.1/32
relayhost =
default_transport = error:5.7.1 outbound mail disabled (test instance)
relay_transport = error:5.7.1 relaying disabled (test instance)
smtp_dns_support_level = disabled
biff = no
virtual_mailbox_domains = {DOMAIN}
virtual_mailbox_base = {mail}
virtual_mailbox_maps = texthash:{etc}/vmailbox
virtual_uid_maps = static:5000
virtual_gid_maps = static:5000
smtpd_reject_unlisted_recipient = no
smtpd_tls_cert_file = {cert}
smtpd_tls_key_file = {key}
smtpd_tls_security_level = encrypt
smtpd_tls_auth_only = yes
smtpd_sasl_auth_enable = yes
smtpd_sasl_type = cyrus
smtpd_sasl_path = smtpd
cyrus_sasl_config_path = {etc}/sasl
smtpd_sasl_local_domain = {DOMAIN}
broken_sasl_auth_clients = no
smtpd_client_restrictions = permit_sasl_authenticated, reject
smtpd_relay_restrictions = permit_sasl_authenticated, reject
smtpd_recipient_restrictions =
delay_warning_time = 0
",
            d = d.display(),
            log = self.log.display(),
            mail = self.mail_base.display(),
            etc = etc.display(),
            cert = cert.display(),
            key = key.display(),
        );
        write(&etc.join("main.cf"), &main_cf)?;
        write(
            &etc.join("sasl/smtpd.conf"),
            &format!(
                "pwcheck_method: auxprop\nauxprop_plugin: sasldb\nmech_list: PLAIN LOGIN\n\
                 sasldb_path: {}/sasldb2\n",
                etc.display()
            ),
        )?;
        let sasldb = etc.join("sasldb2");
        let mut child = Command::new(saslpasswd2)
            .arg("-f")
            .arg(&sasldb)
            .args(["-c", "-p", "-u", DOMAIN, USER])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run saslpasswd2: {e}"))?;
        child
            .stdin
            .take()
            .expect("piped stdin")
            .write_all(PASSWORD.as_bytes())
            .map_err(|e| format!("cannot write to saslpasswd2: {e}"))?;
        let out = child
            .wait_with_output()
            .map_err(|e| format!("saslpasswd2: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "saslpasswd2 failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        run(Command::new("chown").arg("root:postfix").arg(&sasldb))?;
        fs::set_permissions(&sasldb, fs::Permissions::from_mode(0o640))
            .map_err(|e| format!("chmod {}: {e}", sasldb.display()))?;
        Ok(())
    }

    fn write_master_cf(&self) -> Result<(), String> {
        let master_cf = format!(
            "127.0.0.1:{port} inet n - n - - smtpd
pickup    unix  n - n 60 1 pickup
cleanup   unix  n - n - 0 cleanup
qmgr      unix  n - n 300 1 qmgr
tlsmgr    unix  - - n 1000? 1 tlsmgr
rewrite   unix  - - n - - trivial-rewrite
bounce    unix  - - n - 0 bounce
defer     unix  - - n - 0 bounce
trace     unix  - - n - 0 bounce
verify    unix  - - n - 1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n - - proxymap
proxywrite unix - - n - 1 proxymap
showq     unix  n - n - - showq
error     unix  - - n - - error
retry     unix  - - n - - error
discard   unix  - - n - - discard
virtual   unix  - n n - - virtual
anvil     unix  - - n - 1 anvil
scache    unix  - - n - 1 scache
postlog   unix-dgram n - n - 1 postlogd
",
            port = self.port
        );
        write(&self.config_dir.join("master.cf"), &master_cf)?;
        // A config younger than ~2 s makes every Postfix program re-read it for seconds.
        run(Command::new("touch")
            .args(["-d", "-1 min"])
            .arg(self.config_dir.join("main.cf"))
            .arg(self.config_dir.join("master.cf")))?;
        Ok(())
    }

    /// Starts Postfix on `self.port`; the error says whether another port may help.
    fn try_start(&self) -> Result<(), (bool, String)> {
        self.write_master_cf().map_err(|e| (false, e))?;
        // Output to a file, never a pipe: the daemonized master could hold a pipe open.
        let out_path = self.dir.join("postfix-start.out");
        let out = fs::File::create(&out_path)
            .map_err(|e| (false, format!("cannot create {}: {e}", out_path.display())))?;
        let err = out
            .try_clone()
            .map_err(|e| (false, format!("cannot clone a file handle: {e}")))?;
        let status = Command::new(&self.postfix)
            .arg("-c")
            .arg(&self.config_dir)
            .arg("start")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .status()
            .map_err(|e| (false, format!("cannot run postfix: {e}")))?;
        if !status.success() {
            // The port `free_port` found can be taken by another test between its check and
            // Postfix's bind: that start is tried again on another port.
            let clash = fs::read_to_string(&self.log).is_ok_and(|log| {
                log.contains(&format!("port {}: Address already in use", self.port))
            });
            return Err((
                clash,
                format!(
                    "`postfix -c {} start` exited with {status}",
                    self.config_dir.display()
                ),
            ));
        }
        let greeting =
            wait_for_greeting(self.port, Duration::from_secs(15)).map_err(|e| (true, e))?;
        if greeting.contains(&format!("mail.{DOMAIN}")) {
            Ok(())
        } else {
            Err((
                true,
                format!("port {} answered {greeting:?}, not our Postfix", self.port),
            ))
        }
    }

    /// Everything that explains a failed start (Postfix prints nothing when stderr is
    /// not a tty): start output, `postfix check` under script(1), the maillog.
    fn diagnostics(&self) -> String {
        let check = find_program("script")
            .map(|script| {
                let cmd = format!(
                    "{} -c {} check",
                    self.postfix.display(),
                    self.config_dir.display()
                );
                match Command::new(script)
                    .args(["-qec", &cmd, "/dev/null"])
                    .stdin(Stdio::null())
                    .output()
                {
                    Ok(o) => String::from_utf8_lossy(&o.stdout).into_owned(),
                    Err(e) => format!("(cannot run script: {e})"),
                }
            })
            .unwrap_or_else(|| "(script(1) not installed)".into());
        format!(
            "--- postfix start output:\n{}\n--- postfix check:\n{check}\n--- {}:\n{}",
            tail(&self.dir.join("postfix-start.out"), 50),
            self.log.display(),
            tail(&self.log, 80)
        )
    }

    /// Starts a detached watchdog that stops Postfix and removes the folder when this test
    /// process is gone (a static is never dropped).
    fn spawn_watchdog(&self) -> Result<(), String> {
        let stop = format!(
            "'{}' -c '{}' stop",
            self.postfix.display(),
            self.config_dir.display()
        );
        spawn_watchdog("Postfix", &stop, &self.dir)
    }

    fn stop(&self) -> Result<String, String> {
        run(Command::new(&self.postfix)
            .arg("-c")
            .arg(&self.config_dir)
            .arg("stop"))
    }

    /// The SMTP port (STARTTLS required) on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The host name to connect to; the certificate is valid for it and for 127.0.0.1.
    pub fn host(&self) -> &'static str {
        "localhost"
    }

    /// PEM file of the CA that signed the server certificate (for `[smtp] ca_file`).
    pub fn ca_pem_path(&self) -> &Path {
        &self.ca_pem
    }

    /// SASL user name (`alice`; `alice@example.test` works too).
    pub fn user(&self) -> &'static str {
        USER
    }

    pub fn password(&self) -> &'static str {
        PASSWORD
    }

    /// `local@example.test`.
    pub fn address(&self, local: &str) -> String {
        format!("{local}@{DOMAIN}")
    }

    /// A mailbox address no other test in this process gets (`boxN@example.test`); use it
    /// as a recipient, or as the sender to collect its DSNs in isolation.
    pub fn fresh_mailbox(&self) -> String {
        let n = self.next_box.fetch_add(1, Ordering::SeqCst);
        assert!(
            n <= POOL,
            "all {POOL} pooled Postfix mailboxes are used; raise POOL"
        );
        self.address(&format!("box{n}"))
    }

    /// An address of this domain that has no mailbox: Postfix accepts it and bounces it
    /// with a 5.1.1 DSN to the envelope sender.
    pub fn unknown_address(&self, tag: &str) -> String {
        self.address(&format!("nosuchuser-{tag}"))
    }

    /// The Maildir of `user` (`bob` or `bob@example.test`); it exists once mail arrived.
    pub fn maildir(&self, user: &str) -> PathBuf {
        let local = user.split('@').next().unwrap_or(user).to_lowercase();
        self.mail_base.join(local)
    }

    /// Every message now in `user`'s Maildir (new/ and cur/), ordered by file name
    /// (Maildir names start with the delivery time).
    pub fn messages(&self, user: &str) -> Vec<Vec<u8>> {
        let dir = self.maildir(user);
        let mut files: Vec<PathBuf> = ["new", "cur"]
            .iter()
            .filter_map(|sub| fs::read_dir(dir.join(sub)).ok())
            .flatten()
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .collect();
        files.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
        files
            .iter()
            .filter_map(|path| fs::read(path).ok())
            .collect()
    }

    /// Waits until `user`'s Maildir holds at least `n` messages and returns them all;
    /// panics with the Postfix log on timeout.
    pub fn wait_for_messages(&self, user: &str, n: usize, timeout: Duration) -> Vec<Vec<u8>> {
        let deadline = Instant::now() + timeout;
        loop {
            let messages = self.messages(user);
            if messages.len() >= n {
                return messages;
            }
            if Instant::now() >= deadline {
                panic!(
                    "{} has {} message(s), expected {n} within {timeout:?}\n--- {}:\n{}",
                    self.maildir(user).display(),
                    messages.len(),
                    self.log.display(),
                    tail(&self.log, 40)
                );
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// True when Postfix's queue is empty (everything delivered or bounced).
    pub fn mailq_empty(&self) -> bool {
        let postqueue = find_program("postqueue").unwrap_or_else(|| "postqueue".into());
        run(Command::new(postqueue)
            .arg("-c")
            .arg(&self.config_dir)
            .arg("-p"))
        .is_ok_and(|out| out.contains("Mail queue is empty"))
    }

    /// Waits up to `timeout` for an empty queue; returns whether it emptied.
    pub fn wait_queue_empty(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.mailq_empty() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }

    /// The last `lines` lines of the Postfix log, for failure messages.
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.log, lines)
    }

    /// The instance's folder (config in `etc/`, Maildirs in `mail/`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

enum Skip {
    /// Not installed / not root: skip (or fail under CI).
    Unavailable(String),
    /// Installed but failed: always a failure.
    Failed(String),
}

/// Postfix's `smtp-sink` on 127.0.0.1:<free port> with fault flags (see `man smtp-sink`),
/// e.g. `["-r", "RCPT"]` (450 at RCPT), `["-q", "DATA"]` (disconnect at DATA),
/// `["-W", "RCPT:2"]` (2 s delay). Killed on drop.
pub struct SmtpSink {
    child: Child,
    port: u16,
    stderr: PathBuf,
    _dir: tempfile::TempDir,
}

impl SmtpSink {
    /// Starts smtp-sink (as `-u nobody` when root); `None` (skip) when not installed,
    /// a panic when `CI` is set.
    pub fn start(flags: &[&str]) -> Option<SmtpSink> {
        let Some(program) = find_program("smtp-sink") else {
            return unavailable("smtp-sink not installed (it comes with postfix)");
        };
        let dir = tempfile::tempdir().expect("temp dir for smtp-sink output");
        let stderr = dir.path().join("smtp-sink.err");
        let mut errors = Vec::new();
        for _attempt in 0..3 {
            let port = free_port();
            let mut cmd = Command::new(&program);
            if is_root() {
                cmd.args(["-u", "nobody"]);
            }
            cmd.args(flags)
                .arg(format!("127.0.0.1:{port}"))
                .arg("100")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(fs::File::create(&stderr).expect("create the smtp-sink stderr file"));
            let mut child = match cmd.spawn() {
                Ok(child) => child,
                Err(e) => panic!("cannot run {}: {e}", program.display()),
            };
            match wait_for_greeting(port, Duration::from_secs(5)) {
                Ok(_) => {
                    return Some(SmtpSink {
                        child,
                        port,
                        stderr,
                        _dir: dir,
                    });
                }
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    let mut err = String::new();
                    let _ = fs::File::open(&stderr).and_then(|mut f| f.read_to_string(&mut err));
                    errors.push(format!("{e}; stderr: {err}"));
                }
            }
        }
        panic!("smtp-sink {flags:?} did not start: {}", errors.join(" | "));
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// What smtp-sink wrote to stderr so far.
    pub fn stderr(&self) -> String {
        fs::read_to_string(&self.stderr).unwrap_or_default()
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
