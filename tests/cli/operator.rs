//! The operator's side of the tool: `init`, `check`, the archive of delivered messages,
//! help that teaches, completions and the man page, colour only on a terminal, `-q`, and
//! errors that fit on one line.

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Stdio;

use crate::support::smtp_server::{ServerOptions, SmtpServer};
use crate::support::testenv::{Run, TestEnv};

pub(crate) const PASSWORD_VAR: &str = "UTSKICK_SMTP_PASSWORD";
const EXAMPLE_ROWS: usize = 12;

/// The commands in the order an operator uses them (and `utskick --help` lists them).
const OPERATOR_ORDER: [&str; 7] = [
    "init", "preview", "check", "send", "status", "bounces", "retry",
];

// ----- helpers -----------------------------------------------------------------------

/// Runs the binary with `dir` as its working folder (the environment of `env.cmd`).
fn run_in(env: &TestEnv, dir: &Path, args: &[&str]) -> Run {
    let out = env
        .cmd(args)
        .current_dir(dir)
        .output()
        .expect("runs utskick");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

fn eml_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".eml"))
        .collect();
    names.sort();
    names
}

/// The `check` line of `step`: `STEP  ok|FAIL  text`, as (ok, text).
fn check_line(run: &Run, step: &str) -> Option<(bool, String)> {
    run.stdout.lines().find_map(|line| {
        let mut words = line.split_whitespace();
        if words.next() != Some(step) {
            return None;
        }
        let ok = match words.next() {
            Some("ok") => true,
            Some("FAIL") => false,
            _ => return None,
        };
        Some((ok, words.collect::<Vec<_>>().join(" ")))
    })
}

#[track_caller]
pub(crate) fn assert_check_ok(run: &Run, step: &str) -> String {
    match check_line(run, step) {
        Some((true, text)) => text,
        other => panic!(
            "expected `{step} ok ...`, got {other:?}\n--- stdout\n{}\n--- stderr\n{}",
            run.stdout, run.stderr
        ),
    }
}

#[track_caller]
pub(crate) fn assert_check_fail(run: &Run, step: &str) -> String {
    match check_line(run, step) {
        Some((false, text)) => text,
        other => panic!(
            "expected `{step} FAIL ...`, got {other:?}\n--- stdout\n{}\n--- stderr\n{}",
            run.stdout, run.stderr
        ),
    }
}

/// The example set up for a login at `server` as `utskick@example.se` with AUTH PLAIN.
pub(crate) fn with_login(server: &SmtpServer) -> TestEnv {
    let env = TestEnv::example();
    env.relay(server.port());
    env.set("smtp", "auth", "\"plain\"");
    env.set("smtp", "username", "\"utskick@example.se\"");
    env.set("smtp", "password_env", &format!("{PASSWORD_VAR:?}"));
    env
}

/// A loopback port nobody listens on: bound, then closed.
pub(crate) fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    port
}

fn has_ansi(text: &str) -> bool {
    text.contains('\x1b')
}

/// Runs the binary with stdout and stderr on a pseudo-terminal (stdin null) and returns
/// everything it wrote there, with its exit code.
fn run_on_terminal(env: &TestEnv, args: &[&str], vars: &[(&str, &str)]) -> (i32, String) {
    let (mut master, mut slave) = (-1, -1);
    // SAFETY: openpty writes two fresh descriptors; name, termios and winsize may be null.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: both descriptors were just opened by openpty and are owned by nobody else.
    let (master, slave) = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
    let mut cmd = env.cmd(args);
    cmd.env_remove("NO_COLOR")
        .env("TERM", "xterm-256color")
        .stdout(Stdio::from(slave.try_clone().expect("dup")))
        .stderr(Stdio::from(slave));
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("runs utskick");
    // The Command holds the slave's descriptors: without it, reading ends at the child's exit.
    drop(cmd);
    let mut master = File::from(master);
    let mut bytes = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match master.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => bytes.extend_from_slice(&buf[..n]),
            // Linux reports EIO on the master once every slave descriptor is closed.
            Err(e) if e.raw_os_error() == Some(libc::EIO) => break,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => panic!("reading the terminal: {e}"),
        }
    }
    let status = child.wait().expect("wait");
    (
        status.code().unwrap_or(-1),
        String::from_utf8_lossy(&bytes).into_owned(),
    )
}

// ----- init --------------------------------------------------------------------------

#[test]
fn init_writes_a_folder_that_previews_as_it_is() {
    let env = TestEnv::empty();
    let run = env.run(&["init", "incident-2026"]);
    run.expect_code(0);
    let dir = env.path("incident-2026");
    for file in [
        "config.toml",
        "recipients.example.csv",
        "templates/subject.txt",
        "templates/body.txt",
        "templates/body.html",
    ] {
        let path = dir.join(file);
        assert!(path.is_file(), "init did not write {file}");
        let shipped = std::fs::read(crate::support::testenv::repo().join(file)).expect("shipped");
        assert_eq!(
            std::fs::read(&path).expect("written"),
            shipped,
            "{file} differs from the shipped one"
        );
    }
    assert_eq!(
        mode(&dir.join("recipients.example.csv")),
        0o600,
        "the CSV holds personal data"
    );
    assert_eq!(mode(&dir), 0o700);
    // It tells the operator what to do next.
    assert!(run.stdout.contains("incident-2026"), "{}", run.stdout);
    assert!(run.stdout.contains("utskick preview"), "{}", run.stdout);
    assert!(run.stdout.contains("utskick check"), "{}", run.stdout);

    let preview = run_in(&env, &dir, &["preview"]);
    preview.expect_code(0);
    let out = dir.join("preview");
    assert_eq!(eml_files(&out).len(), EXAMPLE_ROWS, "{}", preview.all());
    assert!(out.join("index.html").is_file());
}

#[test]
fn init_into_an_empty_existing_folder_is_fine() {
    let env = TestEnv::empty();
    std::fs::create_dir(env.path("tom")).expect("mkdir");
    env.run(&["init", "tom"]).expect_code(0);
    assert!(env.path("tom/config.toml").is_file());
}

#[test]
fn init_never_overwrites() {
    let env = TestEnv::empty();
    env.write("mine/config.toml", "campaign = \"mitt eget\"\n");
    env.write("mine/notes.txt", "anteckningar\n");
    let run = env.run(&["init", "mine"]);
    run.expect_code(2);
    assert_eq!(env.read("mine/config.toml"), "campaign = \"mitt eget\"\n");
    assert_eq!(env.read("mine/notes.txt"), "anteckningar\n");
    assert!(
        !env.path("mine/templates").exists(),
        "init wrote templates/"
    );
    assert!(!env.path("mine/recipients.example.csv").exists());
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one error line: {:?}", run.stderr);
    assert!(lines[0].starts_with("error: "), "{}", lines[0]);
    assert!(lines[0].contains("mine"), "{}", lines[0]);

    // A file where the folder should be is refused the same way.
    env.write("a-file", "x");
    env.run(&["init", "a-file"]).expect_code(2);
    assert_eq!(env.read("a-file"), "x");
}

// ----- check -------------------------------------------------------------------------

#[test]
fn check_passes_against_a_plain_relay_and_sends_nothing() {
    let server = SmtpServer::plain();
    let env = TestEnv::example();
    env.relay(server.port());
    let run = env.run(&["check"]);
    run.expect_code(0);
    for step in ["config", "templates", "csv", "messages", "journal", "relay"] {
        assert_check_ok(&run, step);
    }
    assert!(!run.stdout.contains("FAIL"), "{}", run.stdout);
    let csv = assert_check_ok(&run, "csv");
    assert!(csv.contains(&format!("{EXAMPLE_ROWS} rows")), "{csv}");
    let messages = assert_check_ok(&run, "messages");
    assert!(
        messages.contains(&format!("{EXAMPLE_ROWS} rendered")),
        "{messages}"
    );
    let relay = assert_check_ok(&run, "relay");
    assert!(
        relay.contains(&format!("127.0.0.1:{}", server.port())),
        "{relay}"
    );
    // Each step on its own line, in the order they run (the record to add under a
    // deliverability warning is indented); the From domain's records come last, or one
    // `dns` line where the machine's resolver does not answer.
    let order: Vec<&str> = run
        .stdout
        .lines()
        .filter(|l| !l.starts_with(' '))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    let records: &[&str] = if order.contains(&"dns") {
        &["dns"]
    } else {
        &["spf", "dkim", "dmarc", "inbox"]
    };
    let steps = [
        "config",
        "templates",
        "csv",
        "messages",
        "links",
        "journal",
        "estimate",
        "relay",
    ];
    assert_eq!(order, [&steps[..], records].concat(), "{}", run.stdout);
    assert!(server.connections() >= 1, "check did not connect");
    assert!(server.received().is_empty(), "check sent a message");
    assert!(
        env.journal().is_empty(),
        "check wrote to the journal: {:?}",
        env.journal()
    );
}

#[test]
fn check_logs_in_with_the_right_password() {
    let server =
        SmtpServer::start(ServerOptions::default().auth("utskick@example.se", "rätt-lösenord"));
    let env = with_login(&server);
    let run = env.run_env(&["check"], &[(PASSWORD_VAR, "rätt-lösenord")]);
    run.expect_code(0);
    assert_check_ok(&run, "secret");
    let relay = assert_check_ok(&run, "relay");
    assert!(relay.contains("utskick@example.se"), "{relay}");
    assert!(!run.all().contains("rätt-lösenord"), "{}", run.all());
    assert!(server.received().is_empty());
}

#[test]
fn check_names_a_refused_login_and_never_prints_the_password() {
    let password = "fel-lösenord-7Qz";
    let server =
        SmtpServer::start(ServerOptions::default().auth("utskick@example.se", "rätt-lösenord"));
    let env = with_login(&server);
    // -vv shows the SMTP dialogue: the secret must be redacted there too.
    let run = env.run_env(&["-vv", "check"], &[(PASSWORD_VAR, password)]);
    run.expect_code(1);
    let relay = assert_check_fail(&run, "relay");
    assert!(relay.contains("refused the login"), "{relay}");
    assert!(relay.contains("535"), "the relay's reply is shown: {relay}");
    let all = run.all();
    assert!(!all.contains(password), "password printed:\n{all}");
    let plain = crate::support::smtp_server::base64_encode(
        format!("\0utskick@example.se\0{password}").as_bytes(),
    );
    assert!(!all.contains(&plain), "AUTH PLAIN payload printed:\n{all}");
    let login = crate::support::smtp_server::base64_encode(password.as_bytes());
    assert!(!all.contains(&login), "AUTH LOGIN payload printed:\n{all}");
    assert!(server.received().is_empty());
    let errors: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.starts_with("error:"))
        .collect();
    assert_eq!(errors.len(), 1, "{}", run.stderr);
}

#[test]
fn check_without_the_secret_says_where_it_looked() {
    let server =
        SmtpServer::start(ServerOptions::default().auth("utskick@example.se", "rätt-lösenord"));
    let env = with_login(&server);
    let run = env.run(&["check"]);
    assert_ne!(run.code, 0, "{}", run.all());
    let secret = assert_check_fail(&run, "secret");
    assert!(secret.contains(PASSWORD_VAR), "{secret}");
    assert_eq!(server.connections(), 0, "check connected without a secret");
}

#[test]
fn check_reports_an_unreachable_relay() {
    let port = closed_port();
    let env = TestEnv::example();
    env.relay(port);
    let run = env.run(&["check"]);
    run.expect_code(1);
    for step in ["config", "templates", "csv", "messages", "journal"] {
        assert_check_ok(&run, step);
    }
    let relay = assert_check_fail(&run, "relay");
    assert!(relay.contains("cannot connect"), "{relay}");
    assert!(relay.contains(&format!("127.0.0.1:{port}")), "{relay}");
}

// ----- the archive -------------------------------------------------------------------

fn message_id(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let head = text.split("\r\n\r\n").next().unwrap_or_default();
    head.split("\r\n")
        .find_map(|line| {
            let (field, value) = line.split_once(':')?;
            field
                .eq_ignore_ascii_case("message-id")
                .then(|| value.trim().to_string())
        })
        .expect("a Message-ID header")
}

#[test]
fn archive_keeps_the_exact_bytes_of_every_delivered_message() {
    let server = SmtpServer::plain();
    let env = TestEnv::example();
    env.relay(server.port());
    env.set("journal", "archive", "\"sent\"");

    // A test delivery is nobody's delivery: nothing archived.
    env.run(&["send", "--yes", "--test-to", "granskare@example.se"])
        .expect_code(0);
    let tests = server.received().len();
    assert_eq!(tests, 1);
    let archive = env.path("sent");
    assert!(
        !archive.exists() || eml_files(&archive).is_empty(),
        "a test delivery was archived"
    );

    let run = env.run(&["send", "--yes"]);
    run.expect_code(0);
    let received =
        server.wait_for_received(tests + EXAMPLE_ROWS, std::time::Duration::from_secs(5));
    let by_id: HashMap<String, &[u8]> = received[tests..]
        .iter()
        .map(|r| {
            (
                r.header("Message-ID").expect("Message-ID"),
                r.data.as_slice(),
            )
        })
        .collect();
    assert_eq!(by_id.len(), EXAMPLE_ROWS, "one message per recipient");
    let key_of: HashMap<String, String> = env
        .events("sent")
        .iter()
        .filter(|e| e["test"] != true)
        .map(|e| {
            (
                e["message_id"].as_str().expect("message_id").to_string(),
                e["key"].as_str().expect("key").to_string(),
            )
        })
        .collect();
    assert_eq!(key_of.len(), EXAMPLE_ROWS);

    assert_eq!(mode(&archive), 0o700, "the archive folder");
    let files = eml_files(&archive);
    assert_eq!(files.len(), EXAMPLE_ROWS, "{files:?}");
    let all: Vec<String> = std::fs::read_dir(&archive)
        .expect("archive")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        all.len(),
        EXAMPLE_ROWS,
        "only messages in the archive: {all:?}"
    );
    for name in &files {
        let path = archive.join(name);
        assert_eq!(mode(&path), 0o600, "{name}");
        let bytes = std::fs::read(&path).expect("archived");
        let id = message_id(&bytes);
        let key = key_of
            .get(&id)
            .unwrap_or_else(|| panic!("{name}: {id} is no recipient's delivery"));
        // Named by key: its safe characters first, a hash of the whole key last.
        assert!(
            name.starts_with(&format!("{key}-")) && name.ends_with(".eml"),
            "{name}: not archived by key {key}"
        );
        let got = by_id
            .get(&id)
            .unwrap_or_else(|| panic!("{name}: the relay never got {id}"));
        assert!(
            bytes.as_slice() == *got,
            "{name}: the archive differs from what the relay received\n--- archived\n{}\n--- received\n{}",
            String::from_utf8_lossy(&bytes),
            String::from_utf8_lossy(got)
        );
    }
}

// ----- help, completions, man --------------------------------------------------------

#[test]
fn every_command_has_an_example_in_its_help() {
    let env = TestEnv::empty();
    let run = env.run(&["--help"]);
    run.expect_code(0);
    assert!(run.stdout.contains("Example"), "{}", run.stdout);
    for command in OPERATOR_ORDER.iter().chain(&["completions", "man"]) {
        let run = env.run(&[command, "--help"]);
        run.expect_code(0);
        assert!(
            run.stdout.contains("Example"),
            "`utskick {command} --help` has no example:\n{}",
            run.stdout
        );
        assert!(
            run.stdout.contains(&format!("utskick {command}")),
            "`utskick {command} --help`'s example does not show the command:\n{}",
            run.stdout
        );
    }
}

#[test]
fn help_lists_the_commands_in_the_order_an_operator_uses_them() {
    let env = TestEnv::empty();
    let run = env.run(&["--help"]);
    run.expect_code(0);
    let commands: Vec<&str> = run
        .stdout
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter(|l| l.starts_with("  ") && !l.starts_with("    "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    let ours: Vec<&str> = commands
        .iter()
        .copied()
        .filter(|c| OPERATOR_ORDER.contains(c))
        .collect();
    assert_eq!(ours, OPERATOR_ORDER, "{}", run.stdout);
    for extra in ["completions", "man"] {
        assert!(commands.contains(&extra), "{}", run.stdout);
    }
}

#[test]
fn completions_cover_the_commands() {
    let env = TestEnv::empty();
    for shell in ["bash", "zsh", "fish"] {
        let run = env.run(&["completions", shell]);
        run.expect_code(0);
        assert!(!run.stdout.trim().is_empty(), "{shell}: empty");
        for command in OPERATOR_ORDER {
            assert!(
                run.stdout.contains(command),
                "{shell} completions lack {command}"
            );
        }
        assert!(run.stdout.contains("skip-invalid"), "{shell}: no options");
        assert!(run.stderr.is_empty(), "{shell}: {}", run.stderr);
    }
    let run = env.run(&["completions", "tcsh"]);
    run.expect_code(2);
}

#[test]
fn man_page_is_roff() {
    let env = TestEnv::empty();
    let run = env.run(&["man"]);
    run.expect_code(0);
    assert!(
        run.stdout.lines().any(|l| l.starts_with(".TH ")),
        "no .TH:\n{}",
        run.stdout
    );
    assert!(run.stdout.contains(".SH"), "no sections");
    for command in ["preview", "send", "check", "retry"] {
        assert!(run.stdout.contains(command), "the man page lacks {command}");
    }
}

#[test]
fn man_dir_writes_every_page_the_main_page_refers_to() {
    let env = TestEnv::empty();
    let run = env.run(&["man", "--dir", "man1"]);
    run.expect_code(0);
    let main = env.read("man1/utskick.1");
    let mut referred: Vec<String> = main
        .split("utskick\\-")
        .skip(1)
        .filter_map(|rest| rest.split_once("(1)").map(|(name, _)| name.to_string()))
        .collect();
    referred.sort();
    referred.dedup();
    assert!(referred.len() >= 9, "{referred:?}\n{main}");
    for name in &referred {
        let page = env.read(&format!("man1/utskick-{name}.1"));
        assert!(
            page.starts_with(".ie") || page.contains(".TH utskick-"),
            "{name}: {page}"
        );
        assert!(page.contains(".SH NAME"), "{name}");
    }
    let written = std::fs::read_dir(env.path("man1")).expect("man1").count();
    assert_eq!(written, referred.len() + 1, "{referred:?}");
}

#[test]
fn global_options_show_only_where_they_mean_something() {
    let env = TestEnv::example();
    for command in ["init", "completions", "man"] {
        let run = env.run(&[command, "--help"]);
        run.expect_code(0);
        for option in ["--verbose", "--quiet", "--config"] {
            assert!(
                !run.stdout.contains(option),
                "`{command} --help` shows {option}:\n{}",
                run.stdout
            );
        }
    }
    for command in ["preview", "check", "send", "retry", "status", "bounces"] {
        let run = env.run(&[command, "--help"]);
        run.expect_code(0);
        for option in ["--verbose", "--quiet", "--config"] {
            assert!(
                run.stdout.contains(option),
                "`{command} --help` lacks {option}"
            );
        }
    }
    // Before the command, as the contract writes it, and after it, as operators type it.
    env.run(&["--config", "missing.toml", "preview"])
        .expect_code(2)
        .expect_stderr("config missing.toml not found");
    env.run(&["preview", "--config", "missing.toml"])
        .expect_code(2)
        .expect_stderr("config missing.toml not found");
    env.run(&["init", "-v", "x"]).expect_code(2);
    let quiet = env.run(&["preview", "-q"]);
    quiet.expect_code(0);
    assert!(!quiet.stderr.contains("warning"), "{}", quiet.stderr);
}

// ----- output ------------------------------------------------------------------------

#[test]
fn no_colour_off_a_terminal_or_with_no_color() {
    let env = TestEnv::example();
    // Not a terminal, NO_COLOR unset, a colour terminal type: still no escapes.
    for args in [
        &["--help"][..],
        &["preview"],
        &["-c", "missing.toml", "preview"],
        &["send", "--help"],
    ] {
        let out = env
            .cmd(args)
            .env_remove("NO_COLOR")
            .env("TERM", "xterm-256color")
            .output()
            .expect("runs");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!has_ansi(&text), "{args:?} off a terminal: {text:?}");
    }

    // On a terminal an error and a warning are coloured (so the check above means something) ...
    let (code, text) = run_on_terminal(&env, &["-c", "missing.toml", "preview"], &[]);
    assert_eq!(code, 2, "{text}");
    let coloured = text.clone();
    // ... unless NO_COLOR is set.
    for args in [
        &["-c", "missing.toml", "preview"][..],
        &["preview"],
        &["--help"],
    ] {
        let (_, text) = run_on_terminal(&env, args, &[("NO_COLOR", "1")]);
        assert!(!has_ansi(&text), "{args:?} with NO_COLOR: {text:?}");
        assert!(!text.trim().is_empty(), "{args:?}: no output");
    }
    assert!(
        has_ansi(&coloured),
        "no colour on a terminal without NO_COLOR: {coloured:?}"
    );
}

#[test]
fn quiet_preview_prints_only_the_summary() {
    let env = TestEnv::example();
    let run = env.run(&["-q", "preview"]);
    run.expect_code(0);
    assert_eq!(run.stderr, "", "stderr with -q");
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 1, "{:?}", run.stdout);
    assert!(
        lines[0].contains(&format!("rows {EXAMPLE_ROWS}")),
        "{}",
        lines[0]
    );
    // Without -q the example's warning (a shared household address) is shown.
    let run = env.run(&["preview"]);
    run.expect_code(0);
    assert!(run.stderr.contains("warning:"), "{}", run.stderr);
}

#[test]
fn verbose_and_quiet_do_not_go_together() {
    let env = TestEnv::example();
    env.run(&["-q", "-v", "preview"]).expect_code(2);
}

#[test]
fn a_missing_config_is_one_line_naming_the_file() {
    let env = TestEnv::empty();
    for (args, file) in [
        (&["preview"][..], "config.toml"),
        (
            &["-c", "incident/utskick.toml", "status"],
            "incident/utskick.toml",
        ),
        (&["send", "--yes"], "config.toml"),
    ] {
        let run = env.run(args);
        run.expect_code(2);
        let lines: Vec<&str> = run.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{args:?}: {:?}", run.stderr);
        assert!(lines[0].starts_with("error: "), "{args:?}: {}", lines[0]);
        assert!(lines[0].contains(file), "{args:?}: {}", lines[0]);
    }
    // `check` names the file on its `config` line, and ends with one error line.
    let run = env.run(&["check"]);
    run.expect_code(2);
    let config = assert_check_fail(&run, "config");
    assert!(config.contains("config.toml"), "{config}");
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{:?}", run.stderr);
    assert!(lines[0].starts_with("error: "), "{}", lines[0]);
}
