//! What counts as sent (SPEC Additions, "What counts as sent"): relays that break the SMTP
//! protocol around DATA, on the one-command-at-a-time and the PIPELINING path; a relay that
//! goes silent after DATA; the archive written before DATA, or the run stopped.
//!
//! Every fault is the in-process server's real reply bytes over TCP.

use crate::send::{
    EXAMPLE_ROWS, MARTA, MARTA_KEY, assert_every_attempt_has_an_outcome, events_for, example, send,
    state, states,
};
use crate::support::smtp_server::{Action, Event, ServerOptions, SmtpServer};

/// Both paths a transaction can take: one command at a time, and PIPELINING.
fn both_paths() -> [(&'static str, ServerOptions); 2] {
    [
        ("one at a time", ServerOptions::default()),
        ("pipelined", ServerOptions::default().pipelining()),
    ]
}

/// Whether the current transaction is Marta's (her RCPT was accepted).
fn martas(ctx: &crate::support::smtp_server::Ctx) -> bool {
    ctx.has_rcpt(MARTA)
}

/// Everyone but Marta is `sent`, each received once.
fn others_sent(env: &crate::support::testenv::TestEnv, server: &SmtpServer, what: &str) {
    let st = states(env);
    for (key, s) in &st {
        if key != MARTA_KEY {
            assert_eq!(s, "sent", "{what}: {key}: {st:?}");
        }
    }
    let received = server.received();
    assert!(
        received
            .iter()
            .all(|r| !r.rcpt_to[0].eq_ignore_ascii_case(MARTA)),
        "{what}"
    );
    assert_eq!(received.len(), EXAMPLE_ROWS - 1, "{what}");
    // Nothing read on a broken connection was taken for a reply to a later command.
    assert!(
        env.events("deferred").is_empty(),
        "{what}: {:?}",
        env.events("deferred")
    );
    assert_every_attempt_has_an_outcome(&env.journal());
}

#[test]
fn a_354_answering_the_end_of_data_is_unknown_never_sent() {
    for (what, options) in both_paths() {
        let server = SmtpServer::start(options.on(|e, ctx| match e {
            Event::EndOfData { .. } if martas(ctx) => {
                Action::reply("354 End data with <CR><LF>.<CR><LF>")
            }
            _ => Action::Default,
        }));
        let env = example(&server);
        let run = send(&env, &[]);
        run.expect_code(3);
        assert_eq!(state(&env, MARTA_KEY), "unknown", "{what}: {}", run.all());
        let unknown = events_for(&env, "unknown", MARTA_KEY);
        assert!(
            unknown[0]["reason"]
                .as_str()
                .is_some_and(|r| r.contains("protocol violation") && r.contains("354")),
            "{what}: {unknown:?}"
        );
        assert!(events_for(&env, "sent", MARTA_KEY).is_empty(), "{what}");
        assert_eq!(
            server.seen(&format!("RCPT:{MARTA}")),
            1,
            "{what}: not retried in the run"
        );
        others_sent(&env, &server, what);
    }
}

#[test]
fn a_250_before_the_dot_then_554_after_it_books_no_one_and_blames_no_sender() {
    for (what, options) in both_paths() {
        let server = SmtpServer::start(options.on(|e, ctx| match e {
            Event::Data if martas(ctx) => {
                Action::RawBytes(b"354 go ahead\r\n250 2.0.0 Ok: queued as EARLY\r\n".to_vec())
            }
            Event::EndOfData { .. } if martas(ctx) => {
                Action::reply("554 5.7.1 Message rejected after all")
            }
            _ => Action::Default,
        }));
        let env = example(&server);
        let run = send(&env, &[]);
        run.expect_code(3);
        // The early 250 was read before the message went out: nothing was sent to her, and
        // her failure is transient, retried up to max_attempts on fresh connections.
        assert_eq!(
            state(&env, MARTA_KEY),
            "failed-transient",
            "{what}: {}",
            run.all()
        );
        let failed = events_for(&env, "failed", MARTA_KEY);
        assert_eq!(failed.len(), 3, "{what}: {failed:?}");
        assert!(
            failed.iter().all(|f| f["reply"]
                .as_str()
                .is_some_and(|r| r.contains("protocol violation") && r.contains("EARLY"))),
            "{what}: {failed:?}"
        );
        assert_eq!(
            server.seen("EOD"),
            EXAMPLE_ROWS - 1,
            "{what}: her message never went out"
        );
        assert!(
            !run.all().contains("refuses the sender"),
            "{what}: {}",
            run.all()
        );
        others_sent(&env, &server, what);
    }
}

#[test]
fn an_extra_reply_after_the_final_one_is_unknown_and_the_connection_dropped() {
    for (what, options) in both_paths() {
        let server = SmtpServer::start(options.on(|e, ctx| match e {
            Event::EndOfData { .. } if martas(ctx) => {
                Action::reply("250 2.0.0 Ok: queued as X1\n554 5.7.1 and also refused")
            }
            _ => Action::Default,
        }));
        let env = example(&server);
        let run = send(&env, &[]);
        run.expect_code(3);
        assert_eq!(state(&env, MARTA_KEY), "unknown", "{what}: {}", run.all());
        assert!(events_for(&env, "sent", MARTA_KEY).is_empty(), "{what}");
        assert!(
            !run.all().contains("refuses the sender"),
            "{what}: {}",
            run.all()
        );
        // The server did take her message (it said 250 first); the journal says unknown.
        let received = server.received();
        assert_eq!(received.len(), EXAMPLE_ROWS, "{what}");
        let st = states(&env);
        assert_eq!(
            st.values().filter(|s| *s == "sent").count(),
            EXAMPLE_ROWS - 1,
            "{what}: {st:?}"
        );
        assert!(env.events("deferred").is_empty(), "{what}");
    }
}

#[test]
fn pipelined_replies_that_do_not_match_their_commands_are_a_transient_failure() {
    // A 354 in answer to RCPT, then (on the next try) a 250 in answer to DATA.
    let server = SmtpServer::start(ServerOptions::default().pipelining().on(|e, ctx| match e {
        Event::Rcpt { to } if to.eq_ignore_ascii_case(MARTA) && ctx.times_seen() == 1 => {
            Action::reply("354 go ahead")
        }
        Event::Data if martas(ctx) && ctx.seen("RCPT") > 0 => Action::reply("250 2.0.0 Ok"),
        _ => Action::Default,
    }));
    let env = example(&server);
    let run = send(&env, &[]);
    run.expect_code(3);
    assert!(run.stderr.contains("(pipelined)"), "{}", run.all());
    assert_eq!(state(&env, MARTA_KEY), "failed-transient", "{}", run.all());
    let failed = events_for(&env, "failed", MARTA_KEY);
    assert_eq!(failed.len(), 3, "{failed:?}");
    assert!(
        failed[0]["reply"]
            .as_str()
            .is_some_and(|r| r.contains("protocol violation") && r.contains("RCPT")),
        "{failed:?}"
    );
    assert!(
        failed[1]["reply"]
            .as_str()
            .is_some_and(|r| r.contains("protocol violation") && r.contains("DATA")),
        "{failed:?}"
    );
    others_sent(&env, &server, "pipelined mismatch");
}

#[test]
fn a_relay_that_goes_silent_after_data_stops_the_run_with_the_rest_pending() {
    let server = SmtpServer::start(ServerOptions::default().on(|e, _| match e {
        Event::EndOfData { .. } => Action::Hang,
        _ => Action::Default,
    }));
    let env = example(&server);
    env.set("smtp", "timeout_secs", "1");
    env.set("sending", "concurrency", "1");
    let started = std::time::Instant::now();
    let run = send(&env, &[]);
    run.expect_code(1);
    assert!(
        run.all().contains("stopped answering after DATA"),
        "{}",
        run.all()
    );
    let st = states(&env);
    let unknown = st.values().filter(|s| *s == "unknown").count();
    assert_eq!(unknown, 3, "three in a row, then the breaker: {st:?}");
    assert!(
        st.values().all(|s| s == "unknown"),
        "the rest have no event: {st:?}"
    );
    assert_eq!(server.seen("EOD"), 3, "no fourth message went out");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "not one timeout per recipient: {:?}",
        started.elapsed()
    );
    assert_every_attempt_has_an_outcome(&env.journal());
    // `status` sees the rest as pending.
    let status = env.run(&["status", "--json"]);
    status.expect_code(0);
    assert!(status.stdout.contains("pending"), "{}", status.all());
}

#[test]
fn each_archived_message_is_on_disk_before_its_data_goes_out() {
    let root = std::sync::Arc::new(std::sync::Mutex::new(std::path::PathBuf::new()));
    let dir = root.clone();
    let server = SmtpServer::start(ServerOptions::default().on(move |e, _| match e {
        Event::EndOfData { data } => {
            let dir = dir.lock().map(|d| d.clone()).unwrap_or_default();
            let archived = std::fs::read_dir(&dir)
                .into_iter()
                .flatten()
                .flatten()
                .any(|f| std::fs::read(f.path()).is_ok_and(|b| &b == data));
            if archived {
                Action::Default
            } else {
                Action::reply("554 5.0.0 test: this message is not in the archive yet")
            }
        }
        _ => Action::Default,
    }));
    let env = example(&server);
    env.set("journal", "archive", "\"sent\"");
    *root.lock().expect("lock") = env.path("sent");
    send(&env, &[]).expect_code(0);
    assert!(states(&env).values().all(|s| s == "sent"));
    assert_eq!(server.received().len(), EXAMPLE_ROWS);
    assert_eq!(
        std::fs::read_dir(env.path("sent"))
            .expect("archive")
            .count(),
        EXAMPLE_ROWS
    );
}

#[test]
fn an_archive_that_cannot_be_written_stops_the_run_before_any_data() {
    let server = SmtpServer::plain();
    let env = example(&server);
    env.set("journal", "archive", "\"sent\"");
    // A file where the archive folder should be.
    env.write("sent", "not a folder");
    let check = env.run(&["check"]);
    assert_ne!(check.code, 0, "{}", check.all());
    assert!(check.all().contains("archive"), "{}", check.all());
    assert!(check.all().contains("folder sent"), "{}", check.all());

    let run = send(&env, &[]);
    run.expect_code(1);
    assert!(
        run.all().contains("folder sent") && run.all().contains("archive"),
        "the path is named: {}",
        run.all()
    );
    assert!(server.received().is_empty());
    assert_eq!(server.seen("EOD"), 0, "no message went out");
    // Nobody is unknown or sent: the attempts whose message never went out are withdrawn.
    let st = states(&env);
    assert!(st.values().all(|s| s != "sent" && s != "unknown"), "{st:?}");
    assert_every_attempt_has_an_outcome(&env.journal());
}
