//! Whose failure a reply is (SPEC Additions, "Whose failure a reply is"): a recipient's
//! temporary failure never slows the others; the relay's pushback pauses precisely (one
//! connection for a 421, the run for a busy relay), a quota stops cleanly. Replies from the
//! corpus in `src/relay/reply.rs` end to end through the in-process server.

use std::time::{Duration, Instant};

use crate::send::{
    EXAMPLE_ROWS, MARTA, MARTA_KEY, assert_every_attempt_has_an_outcome, events_for, example, send,
    state, states, write_generated_csv,
};
use crate::support::smtp_server::{Action, Event, ServerOptions, SmtpServer};

#[test]
fn two_percent_persistent_451_and_one_percent_550_end_by_themselves_everyone_else_sent() {
    const N: usize = 400;
    let server = SmtpServer::start(ServerOptions::default().pipelining().on(|e, _| match e {
        Event::Rcpt { to } => {
            let i: usize = to
                .trim_start_matches("kund")
                .split('@')
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or(usize::MAX);
            if i % 50 == 7 {
                Action::reply(format!(
                    "451 4.3.0 <{to}>: Temporary failure, try again later"
                ))
            } else if i % 100 == 3 {
                Action::reply(format!(
                    "550 5.1.1 <{to}>: Recipient address rejected: User unknown in virtual mailbox table"
                ))
            } else {
                Action::Default
            }
        }
        _ => Action::Default,
    }));
    let env = example(&server);
    let rows = write_generated_csv(&env, N);
    env.set("sending", "retry_delay_secs", "1");
    let started = Instant::now();
    let run = send(&env, &[]);
    let took = started.elapsed();
    run.expect_code(3);
    let st = states(&env);
    let (mut transient, mut permanent) = (0, 0);
    for (i, (key, _)) in rows.iter().enumerate() {
        let want = if i % 50 == 7 {
            transient += 1;
            "failed-transient"
        } else if i % 100 == 3 {
            permanent += 1;
            "failed-permanent"
        } else {
            "sent"
        };
        assert_eq!(st.get(key).map(String::as_str), Some(want), "{key}");
    }
    assert_eq!((transient, permanent), (8, 4));
    // Each 451 recipient tried max_attempts times on its own backoff (1 s, then 2 s); the
    // 550s once; nobody else paused: no `deferred`, and the run is the backoff long, not
    // one pause per failing recipient.
    for (i, (key, _)) in rows.iter().enumerate() {
        let attempts = events_for(&env, "attempt", key).len();
        let want = if i % 50 == 7 { 3 } else { 1 };
        assert_eq!(attempts, want, "{key}");
    }
    assert!(
        env.events("deferred").is_empty(),
        "{:?}",
        env.events("deferred")
    );
    assert!(!run.stderr.contains("pausing"), "{}", run.all());
    assert!(took < Duration::from_secs(20), "took {took:?}");
    assert_eq!(server.received().len(), N - 12);
    assert!(
        run.stdout
            .contains("failed-permanent 4, failed-transient 8"),
        "{}",
        run.all()
    );
    assert_every_attempt_has_an_outcome(&env.journal());
}

#[test]
fn a_421_at_the_greeting_pauses_that_connection_and_the_run_goes_on() {
    let server = SmtpServer::start(ServerOptions::default().on(|e, ctx| match e {
        Event::Greeting if (2..=4).contains(&ctx.connection) => {
            Action::reply("421 4.7.0 Try again later, closing connection.")
        }
        // Slow messages, so that the run needs more than one connection.
        Event::EndOfData { .. } => Action::delay(Duration::from_millis(100), Action::Default),
        _ => Action::Default,
    }));
    let env = example(&server);
    env.set("sending", "concurrency", "3");
    let run = send(&env, &[]);
    run.expect_code(0);
    assert!(
        states(&env).values().all(|s| s == "sent"),
        "{:?}",
        states(&env)
    );
    assert!(env.events("failed").is_empty());
    assert_eq!(server.received().len(), EXAMPLE_ROWS);
    assert!(server.connections() >= 3, "{}", server.connections());
    assert!(run.stderr.contains("reconnects in"), "{}", run.all());
    assert_every_attempt_has_an_outcome(&env.journal());
}

#[test]
fn the_same_busy_reply_to_many_recipients_pauses_the_run_instead_of_failing_them() {
    // The relay answers every RCPT alike for a while (its own trouble, in words that name
    // nothing): after three different recipients in a row it is the relay's, not theirs.
    let server = SmtpServer::start(ServerOptions::default().on(|e, ctx| match e {
        Event::Rcpt { to } if ctx.seen("RCPT") <= 5 => Action::reply(format!(
            "451 4.3.0 <{to}>: Temporary failure, try again later"
        )),
        _ => Action::Default,
    }));
    let env = example(&server);
    env.set("sending", "concurrency", "1");
    env.set("sending", "retry_delay_secs", "2");
    let run = send(&env, &[]);
    run.expect_code(0);
    assert!(
        states(&env).values().all(|s| s == "sent"),
        "{:?}",
        states(&env)
    );
    let failed = env.events("failed");
    assert_eq!(
        failed.len(),
        2,
        "only the first two were booked: {failed:?}"
    );
    assert!(!env.events("deferred").is_empty());
    assert!(run.stderr.contains("pausing"), "{}", run.all());
    assert_eq!(server.received().len(), EXAMPLE_ROWS);
}

#[test]
fn quota_replies_stop_cleanly_with_nobody_failed() {
    for (what, at_mail, reply) in [
        (
            "Gmail at RCPT",
            false,
            "550 5.4.5 Daily user sending limit exceeded.",
        ),
        (
            "SES at MAIL FROM",
            true,
            "454 Throttling failure: Daily message quota exceeded",
        ),
        (
            "Emailit at MAIL FROM",
            true,
            "452 4.5.3 Daily message limit exceeded",
        ),
        (
            "Exchange Online after the data",
            false,
            "554 5.2.0 STOREDRV.Submission.Exception:SubmissionQuotaExceededException; Failed to process message due to a permanent exception with message Cannot submit message.",
        ),
    ] {
        let server = SmtpServer::start(ServerOptions::default().on(move |e, ctx| {
            let hit = ctx.messages_total >= 4;
            match e {
                Event::Mail { .. } if at_mail && hit => Action::reply(reply),
                Event::Rcpt { .. } if !at_mail && hit && what.contains("RCPT") => {
                    Action::reply(reply)
                }
                Event::EndOfData { .. } if hit && what.contains("after the data") => {
                    Action::reply(reply)
                }
                _ => Action::Default,
            }
        }));
        let env = example(&server);
        env.set("sending", "concurrency", "1");
        // Stopping at a quota is `when_limited = "stop"`; the default waits it out.
        env.set("sending", "when_limited", "\"stop\"");
        let run = send(&env, &[]);
        run.expect_code(3);
        assert!(run.all().contains("quota"), "{what}: {}", run.all());
        assert!(
            env.events("failed").is_empty(),
            "{what}: {:?}",
            env.events("failed")
        );
        let st = states(&env);
        assert_eq!(
            st.values().filter(|s| *s == "sent").count(),
            4,
            "{what}: {st:?}"
        );
        assert!(
            st.values().all(|s| s == "sent" || s == "pending"),
            "{what}: {st:?}"
        );
        assert_eq!(server.received().len(), 4, "{what}");
    }
}

#[test]
fn published_replies_end_to_end() {
    // (provider, reply at Marta's RCPT or MAIL, times, state she ends in, deferred?)
    for (what, at, reply, times, want, deferred) in [
        (
            "Gmail: the recipient receives too fast",
            "RCPT",
            "450 4.2.1 The user you are trying to contact is receiving mail too quickly. Please resend your message at a later time.",
            usize::MAX,
            "failed-transient",
            false,
        ),
        (
            "Postfix greylisting",
            "RCPT",
            "450 4.2.0 <marta.sjostrom@example.org>: Recipient address rejected: Greylisted, see http://postgrey.schweikert.ch/help/example.org.html",
            1,
            "sent",
            false,
        ),
        (
            "Exim",
            "RCPT",
            "550 Unrouteable address",
            usize::MAX,
            "failed-permanent",
            false,
        ),
        (
            "Exchange Online busy",
            "RCPT",
            "451 4.7.500 Server busy. Please try again later from [192.0.2.10]. (AS761)",
            2,
            "sent",
            true,
        ),
        (
            "SES rate",
            "MAIL",
            "454 Throttling failure: Maximum sending rate exceeded",
            1,
            "sent",
            true,
        ),
    ] {
        let server = SmtpServer::start(ServerOptions::default().on(move |e, ctx| {
            let marta_next = ctx.messages_total == 2;
            match e {
                Event::Rcpt { to } if at == "RCPT" && to.eq_ignore_ascii_case(MARTA) => {
                    if ctx.times_seen() <= times {
                        Action::reply(reply)
                    } else {
                        Action::Default
                    }
                }
                Event::Mail { .. }
                    if at == "MAIL" && marta_next && ctx.seen("MAIL") <= 2 + times =>
                {
                    Action::reply(reply)
                }
                _ => Action::Default,
            }
        }));
        let env = example(&server);
        env.set("sending", "concurrency", "1");
        let run = send(&env, &[]);
        assert_eq!(state(&env, MARTA_KEY), want, "{what}: {}", run.all());
        let others_sent = states(&env)
            .iter()
            .filter(|(k, s)| *k != MARTA_KEY && *s == "sent")
            .count();
        assert_eq!(others_sent, EXAMPLE_ROWS - 1, "{what}: {:?}", states(&env));
        assert_eq!(
            !env.events("deferred").is_empty(),
            deferred,
            "{what}: {}",
            run.all()
        );
        run.expect_code(if want == "sent" { 0 } else { 3 });
    }
}

#[test]
fn a_421_at_auth_is_the_relays_not_a_refused_login() {
    // A 421, and smtp.msndr.net's published 550 at AUTH that names a rate (reply corpus):
    // the relay's pushback, not a refused password.
    // Also a daily-quota reply (Gmail's 5.4.5 wording) on two connections: pushback that
    // passes, not a refused login.
    for reply in [
        "421 4.7.0 Try again later, closing connection.",
        "550 Too many messages. Try again in 92 seconds.",
        "550 5.4.5 Daily user sending limit exceeded. For more information on Gmail sending limits go to https://support.google.com/a/answer/166852",
    ] {
        let server = SmtpServer::start(
            ServerOptions::default()
                .auth("utskick@example.se", "rätt-lösenord")
                .require_auth()
                .on(move |e, ctx| match e {
                    Event::Auth { .. } if (2..=3).contains(&ctx.connection) => Action::reply(reply),
                    Event::EndOfData { .. } => {
                        Action::delay(Duration::from_millis(100), Action::Default)
                    }
                    _ => Action::Default,
                }),
        );
        let env = example(&server);
        env.set("smtp", "auth", "\"plain\"");
        env.set("smtp", "username", "\"utskick@example.se\"");
        env.set("smtp", "password_env", "\"UTSKICK_SMTP_PASSWORD\"");
        env.set("sending", "concurrency", "3");
        let run = env.run_env(
            &["send", "--yes"],
            &[("UTSKICK_SMTP_PASSWORD", "rätt-lösenord")],
        );
        run.expect_code(0);
        assert!(
            !run.all().contains("refused the login"),
            "{reply}: {}",
            run.all()
        );
        assert!(
            server.connections() >= 3,
            "{reply}: {}",
            server.connections()
        );
        assert!(
            states(&env).values().all(|s| s == "sent"),
            "{reply}: {:?}",
            states(&env)
        );
        assert_eq!(server.received().len(), EXAMPLE_ROWS, "{reply}");
    }
}

#[test]
fn a_relay_asking_for_smtp_authentication_at_rcpt_stops_with_nobody_failed() {
    // cPanel's Exim refuses every recipient of a client that has not logged in, with a bare
    // 550 (reply corpus). That is the configuration's failure: the run stops (exit 1) and
    // no recipient is written off as failed-permanent.
    let reply = "550-Please turn on SMTP Authentication in your mail client, or login to the\r\n550-IMAP/POP3 server before sending your message. (utskick.example.se)\r\n550-[192.0.2.10]:42630 is not permitted to relay through this server without\r\n550 authentication.";
    let server = SmtpServer::start(ServerOptions::default().on(move |e, _ctx| match e {
        Event::Rcpt { .. } => Action::reply(reply),
        _ => Action::Default,
    }));
    let env = example(&server);
    env.set("sending", "concurrency", "1");
    let run = send(&env, &[]);
    run.expect_code(1);
    assert!(run.all().contains("refused the login"), "{}", run.all());
    assert!(
        env.events("failed").is_empty(),
        "{:?}",
        env.events("failed")
    );
    assert!(
        states(&env).values().all(|s| s == "pending"),
        "{:?}",
        states(&env)
    );
    assert!(server.received().is_empty());
}
