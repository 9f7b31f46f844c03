//! The journal as a file: journals written by an earlier utskick read back to the same
//! states; one writer per journal whatever is deleted beside it; nothing written through a
//! symbolic link; `status` and its `--report` as the record of a mailing.

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use crate::support::smtp_server::{self, ServerOptions, SmtpServer};
use crate::support::testenv::TestEnv;

/// The fixture written by the utskick of commit 2837caa (tests/journal/make-fixture.sh).
const OLD_JOURNAL: &str = "tests/journal/written-by-2837caa.jsonl";
/// What that utskick's `status --json` said about it, right after.
const OLD_STATUS: &str = "tests/journal/written-by-2837caa.status.json";

fn fixture(rel: &str) -> String {
    let path = crate::support::testenv::repo().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn status_json(env: &TestEnv) -> serde_json::Value {
    let run = env.run(&["status", "--json"]);
    run.expect_code(0);
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {}", run.stdout))
}

#[test]
fn old_journal_reads_back_to_the_states_the_old_utskick_saw() {
    let env = TestEnv::example();
    let journal = fixture(OLD_JOURNAL);
    env.write("delivery-log.jsonl", &journal);
    let old: serde_json::Value = serde_json::from_str(&fixture(OLD_STATUS)).expect("old status");
    let new = status_json(&env);

    // Every kind of event is in the fixture, and every line was read.
    let kinds: std::collections::BTreeSet<String> = journal
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("line")["event"].to_string())
        .collect();
    assert_eq!(kinds.len(), 9, "{kinds:?}");

    // The same states, counts and reasons as the old reader gave.
    assert_eq!(new["counts"], old["counts"]);
    assert_eq!(new["not_sent"], old["not_sent"]);
    assert_eq!(new["not_in_csv"], old["not_in_csv"]);
    assert_eq!(new["total"], old["total"]);
    assert_eq!(new["test_sent"], old["test_sent"]);
    assert_eq!(new["delays"], old["delays"]);
    assert_eq!(new["torn_tail"], false);
    // Spelled out, so that a fixture regenerated wrongly cannot pass unnoticed.
    let counts = &new["counts"];
    assert_eq!(
        (
            counts["sent"].as_u64(),
            counts["bounced"].as_u64(),
            counts["failed-permanent"].as_u64(),
            counts["pending"].as_u64()
        ),
        (Some(6), Some(1), Some(1), Some(4)),
        "{counts}"
    );

    // The runs alike, but for the one change: a test run counts its test deliveries.
    let (old_runs, new_runs) = (
        old["runs"].as_array().expect("runs"),
        new["runs"].as_array().expect("runs"),
    );
    assert_eq!(old_runs.len(), 4);
    assert_eq!(new_runs.len(), 4);
    for (o, n) in old_runs.iter().zip(new_runs) {
        if o["test"] == true {
            assert_eq!((o["sent"].as_u64(), n["sent"].as_u64()), (Some(0), Some(1)));
            let (mut o, mut n) = (o.clone(), n.clone());
            o["sent"] = 1.into();
            assert_eq!(o, std::mem::take(&mut n));
        } else {
            assert_eq!(o, n);
        }
    }
}

// ----- one writer per journal -----------------------------------------------------------

/// A running `utskick`, killed (by its pid) if the test ends before it does.
struct Running(Option<std::process::Child>);

impl Running {
    fn start(mut cmd: std::process::Command, log: &std::path::Path) -> Running {
        let out = std::fs::File::create(log.join("first.out")).expect("log");
        let err = std::fs::File::create(log.join("first.err")).expect("log");
        Running(Some(
            cmd.stdout(out).stderr(err).spawn().expect("spawn utskick"),
        ))
    }

    fn pid(&self) -> u32 {
        self.0.as_ref().expect("child").id()
    }

    fn wait(mut self, timeout: Duration) -> i32 {
        let mut child = self.0.take().expect("child");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                return status.code().unwrap_or(-1);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("utskick did not finish within {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn wait_until(timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A relay that answers every RCPT after `by`.
fn slow_rcpt(by: Duration) -> SmtpServer {
    SmtpServer::start(ServerOptions::default().hook(smtp_server::delay("RCPT", by)))
}

/// What the example needs to run: the rest beside the journal is utskick's own.
const THE_MAILING: [&str; 4] = [
    "config.toml",
    "recipients.example.csv",
    "templates",
    "delivery-log.jsonl",
];

#[test]
fn deleting_the_lock_file_beside_the_journal_lets_no_second_send_write_it() {
    // Every RCPT waits a second: the first send holds the journal for a few seconds.
    let server = slow_rcpt(Duration::from_secs(1));
    let env = TestEnv::example();
    env.relay(server.port());
    let logs = tempfile::tempdir().expect("logs");
    let first = Running::start(env.cmd(&["send", "--yes"]), logs.path());
    let pid = first.pid();
    wait_until(Duration::from_secs(30), "the first RCPT", || {
        server.seen("RCPT") >= 1
    });
    // The operator deletes everything beside the journal that is not the mailing itself.
    let mut deleted = Vec::new();
    for entry in std::fs::read_dir(env.root()).expect("ls") {
        let entry = entry.expect("entry");
        let name = entry.file_name().to_string_lossy().into_owned();
        if !THE_MAILING.contains(&name.as_str()) {
            if entry.path().is_dir() {
                std::fs::remove_dir_all(entry.path()).expect("rm -r");
            } else {
                std::fs::remove_file(entry.path()).expect("rm");
            }
            deleted.push(name);
        }
    }
    assert!(
        deleted.contains(&"delivery-log.jsonl.lock".to_string()),
        "the lock file was there to delete: {deleted:?}"
    );

    let second = env.run(&["send", "--yes"]);
    second.expect_code(1);
    second.expect_stderr(&format!(
        "journal delivery-log.jsonl is locked by another utskick (pid {pid})"
    ));
    second.expect_stderr("do not delete");
    // `check` sees it too.
    let check = env.run(&["check"]);
    assert!(check.all().contains("LOCKED"), "{}", check.all());

    assert_eq!(first.wait(Duration::from_secs(60)), 0);
    // Each of the 12 recipients reached the server once: one RCPT and one message each.
    let received = server.received();
    assert_eq!(received.len(), 12);
    let ids: BTreeSet<String> = received
        .iter()
        .map(|r| r.header("message-id").expect("Message-ID"))
        .collect();
    assert_eq!(ids.len(), 12, "a recipient received the notice twice");
    assert_eq!(server.seen("RCPT"), 12);
    assert_eq!(env.events("run").len(), 1, "the second send wrote no run");
    assert_eq!(env.events("attempt").len(), 12);
}

#[test]
fn a_journal_deleted_under_a_running_send_stops_it() {
    // Slow replies; the operator deletes the journal itself once the first message is in.
    let server = slow_rcpt(Duration::from_millis(300));
    let env = TestEnv::example();
    env.relay(server.port());
    env.set("sending", "concurrency", "1");
    let logs = tempfile::tempdir().expect("logs");
    let first = Running::start(env.cmd(&["send", "--yes"]), logs.path());
    wait_until(Duration::from_secs(30), "the first message", || {
        !server.received().is_empty()
    });
    std::fs::remove_file(env.path("delivery-log.jsonl")).expect("rm journal");
    let code = first.wait(Duration::from_secs(60));
    let stderr = std::fs::read_to_string(logs.path().join("first.err")).expect("stderr");
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("was deleted or replaced while this run wrote it"),
        "{stderr}"
    );
    assert!(
        server.received().len() < 12,
        "the run went on without a journal"
    );
}

// ----- no file written through a symbolic link ------------------------------------------

/// A file of someone else's that a link points at, and what it holds.
fn precious(env: &TestEnv) -> (std::path::PathBuf, Vec<u8>) {
    let target = env.path("elsewhere/precious.txt");
    let bytes = b"someone else's file: must stay as it is\n".to_vec();
    env.write("elsewhere/precious.txt", &bytes);
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    (target, bytes)
}

#[track_caller]
fn untouched(target: &std::path::Path, bytes: &[u8]) {
    assert_eq!(std::fs::read(target).expect("target"), bytes);
    let mode = std::fs::metadata(target)
        .expect("meta")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o644, "the target's mode");
}

#[test]
fn a_link_at_the_journal_or_its_lock_is_refused_and_nothing_is_sent() {
    for link in ["delivery-log.jsonl", "delivery-log.jsonl.lock"] {
        let server = SmtpServer::plain();
        let env = TestEnv::example();
        env.relay(server.port());
        let (target, bytes) = precious(&env);
        // A journal link points at an (empty) journal elsewhere, so that reading it is fine.
        let target = if link == "delivery-log.jsonl" {
            let journal = env.path("elsewhere/journal.jsonl");
            std::fs::write(&journal, b"").expect("journal");
            std::fs::set_permissions(&journal, std::fs::Permissions::from_mode(0o644))
                .expect("chmod");
            journal
        } else {
            target
        };
        let bytes = if link == "delivery-log.jsonl" {
            Vec::new()
        } else {
            bytes
        };
        std::os::unix::fs::symlink(&target, env.path(link)).expect("symlink");
        let run = env.run(&["send", "--yes"]);
        run.expect_code(1);
        run.expect_stderr(&format!("{link} is a symbolic link"));
        untouched(&target, &bytes);
        assert!(server.received().is_empty(), "{link}: something was sent");
        assert!(
            std::fs::symlink_metadata(env.path(link))
                .expect("link")
                .file_type()
                .is_symlink()
        );
        if link.ends_with(".lock") {
            assert!(
                !env.path("delivery-log.jsonl").exists(),
                "a journal was created beside a refused lock link"
            );
        }
    }
}

#[test]
fn a_link_at_the_preview_marker_is_refused() {
    let env = TestEnv::example();
    let (target, bytes) = precious(&env);
    std::fs::create_dir(env.path("preview")).expect("mkdir");
    std::os::unix::fs::symlink(&target, env.path("preview/.utskick-preview")).expect("symlink");
    let run = env.run(&["preview"]);
    assert_ne!(run.code, 0, "{}", run.all());
    run.expect_stderr("preview/.utskick-preview is a symbolic link");
    untouched(&target, &bytes);
}

#[test]
fn a_link_at_an_archive_file_leaves_its_target_untouched() {
    // The archive's file name for the first recipient, from a run of its own.
    let server = SmtpServer::plain();
    let names = TestEnv::example();
    names.relay(server.port());
    names.set("journal", "archive", "\"sent\"");
    names.run(&["send", "--yes", "--limit", "1"]).expect_code(0);
    let name = std::fs::read_dir(names.path("sent"))
        .expect("archive")
        .next()
        .expect("one archive file")
        .expect("entry")
        .file_name();

    let env = TestEnv::example();
    env.relay(server.port());
    env.set("journal", "archive", "\"sent\"");
    let (target, bytes) = precious(&env);
    std::fs::create_dir(env.path("sent")).expect("mkdir");
    std::fs::set_permissions(env.path("sent"), std::fs::Permissions::from_mode(0o700))
        .expect("chmod");
    std::os::unix::fs::symlink(&target, env.path("sent").join(&name)).expect("symlink");
    let run = env.run(&["send", "--yes", "--limit", "1"]);
    // The customer's letter went nowhere but the relay: the link's target is as it was.
    // (Whether the run then stops naming the link is the archive's own promise, SPEC
    // "Files": the message is not sent when its archive file cannot be written.)
    untouched(&target, &bytes);
    assert!(
        std::fs::symlink_metadata(env.path("sent").join(&name))
            .expect("link")
            .file_type()
            .is_symlink(),
        "{}",
        run.all()
    );
}

#[test]
fn a_link_at_the_failed_csv_or_the_report_is_refused() {
    let env = TestEnv::example();
    let (target, bytes) = precious(&env);
    for (flag, link) in [("--failed-csv", "brev.csv"), ("--report", "rapport.md")] {
        std::os::unix::fs::symlink(&target, env.path(link)).expect("symlink");
        let run = env.run(&["status", flag, link]);
        run.expect_code(1);
        run.expect_stderr(&format!("{link} is a symbolic link"));
        untouched(&target, &bytes);
    }
}

// ----- status and its record -----------------------------------------------------------

/// `utskick ARGS` under umask 000 (through sh, as an operator's shell would have it).
fn run_with_umask_000(env: &TestEnv, args: &[&str]) -> std::process::Output {
    let mut cmd = std::process::Command::new("sh");
    cmd.arg("-c")
        .arg("umask 000 && exec \"$0\" \"$@\"")
        .arg(crate::support::testenv::bin())
        .args(args)
        .current_dir(env.root())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", env.root());
    cmd.output().expect("sh")
}

#[test]
fn the_report_is_0600_even_under_umask_000_and_in_swedish() {
    let server = SmtpServer::plain();
    let env = TestEnv::example();
    env.relay(server.port());
    env.run(&["send", "--yes", "--limit", "3"]).expect_code(0);
    // Under umask 000 a file created 0666 would be world-writable: the report is not.
    let out = run_with_umask_000(
        &env,
        &[
            "status",
            "--report",
            "rapport.md",
            "--failed-csv",
            "brev.csv",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mode = |p: &str| {
        std::fs::metadata(env.path(p))
            .expect("meta")
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode("rapport.md"), 0o600);
    assert_eq!(mode("brev.csv"), 0o600);
    // One there already, world-readable: rewritten 0600.
    std::fs::set_permissions(
        env.path("rapport.md"),
        std::fs::Permissions::from_mode(0o666),
    )
    .expect("chmod");
    let out = run_with_umask_000(&env, &["status", "--report", "rapport.md"]);
    assert!(out.status.success());
    assert_eq!(mode("rapport.md"), 0o600);

    let report = env.read("rapport.md");
    assert!(
        report.starts_with("# Underrättelse via e-post: nektab-2023-10\n"),
        "{report}"
    );
    for swedish in [
        "- Mottagare i listan: 12\n",
        "- Underrättade via e-post (mottaget av e-postservern, ingen studs sedan): 3\n",
        "- Inte underrättade via e-post: 9\n",
        "## Varför övriga inte underrättades via e-post",
        "| ej påbörjad (`pending`) | 9 |",
        "## Körningar",
        "| slutförd |",
    ] {
        assert!(report.contains(swedish), "{swedish:?} in {report}");
    }
    for english in [
        "Notified",
        "Recipients in the list",
        "## Runs",
        "complete |",
    ] {
        assert!(!report.contains(english), "{english:?} in {report}");
    }
    // No personal data: no address, name or key of the list.
    for personal in [
        "asa.oberg@",
        "per-erik.lindqvist@",
        "marta.sjostrom@",
        "Åsa",
        "Öberg",
        "1001",
        "19800101",
    ] {
        assert!(!report.contains(personal), "{personal:?} in {report}");
    }
}

#[test]
fn status_and_the_report_count_a_test_runs_deliveries() {
    let server = SmtpServer::plain();
    let env = TestEnv::example();
    env.relay(server.port());
    env.run(&[
        "send",
        "--yes",
        "--test-to",
        "operator@example.se",
        "--limit",
        "2",
    ])
    .expect_code(0);
    assert_eq!(server.received().len(), 2);

    let status = status_json(&env);
    assert_eq!(status["test_sent"], 2);
    let runs = status["runs"].as_array().expect("runs");
    assert_eq!(runs.len(), 1);
    assert_eq!(
        (
            runs[0]["test"].as_bool(),
            runs[0]["sent"].as_u64(),
            runs[0]["failed"].as_u64()
        ),
        (Some(true), Some(2), Some(0))
    );
    assert_eq!(status["counts"]["sent"], 0, "a test is nobody's delivery");
    assert_eq!(status["counts"]["pending"], 12);

    let text = env.run(&["status"]);
    text.expect_code(0);
    let line = text
        .stdout
        .lines()
        .find(|l| l.contains("send (test)"))
        .unwrap_or_else(|| panic!("no test run in {}", text.stdout));
    assert!(line.contains("sent 2  failed 0"), "{line}");

    env.run(&["status", "--report", "rapport.md"])
        .expect_code(0);
    let report = env.read("rapport.md");
    let row = report
        .lines()
        .find(|l| l.contains("| send (testutskick) |"))
        .unwrap_or_else(|| panic!("no test run in {report}"));
    assert!(row.contains(" | 2 | 0 | "), "{row}");
    assert!(
        report.contains(
            "Testutskick (till operatören, inte medräknade ovan): 2 levererade i 1 körningar"
        ),
        "{report}"
    );
    assert!(!report.contains("operator@example.se"), "{report}");
}
