//! The journal as a file: journals written by an earlier utskick read back to the same
//! states; one writer per journal whatever is deleted beside it; nothing written through a
//! symbolic link; `status` and its `--report` as the record of a mailing.

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
