#!/usr/bin/env python3
"""Checks a journal after a benchmark send against its CSV.

    python3 bench/check_journal.py JOURNAL CSV EXPECTED_SENT

Prints the event counts, whether every CSV key has exactly one `attempt` and one `sent`
event with the attempt first (the attempt is made durable before DATA, so a `sent`
without an earlier attempt line would break the promise), and the delivery rate seen by
the journal: sent events / (last `sent` ts - first `attempt` ts). Exits 1 when a check
fails.
"""

import collections
import csv
import datetime
import json
import sys


def ts(text):
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def main():
    journal, csv_path, expected = sys.argv[1], sys.argv[2], int(sys.argv[3])
    with open(csv_path, encoding="utf-8-sig", newline="") as f:
        keys = [r["customer_id"] for r in csv.DictReader(f)]
    events = collections.Counter()
    attempts = collections.Counter()
    sents = collections.Counter()
    sent_before_attempt = 0
    first_attempt = last_sent = None
    with open(journal, encoding="utf-8") as f:
        for line in f:
            e = json.loads(line)
            kind = e["event"]
            events[kind] += 1
            if kind == "attempt":
                attempts[e["key"]] += 1
                if first_attempt is None:
                    first_attempt = ts(e["ts"])
            elif kind == "sent":
                if attempts[e["key"]] == 0:
                    sent_before_attempt += 1
                sents[e["key"]] += 1
                last_sent = ts(e["ts"])
    problems = []
    if events["sent"] != expected:
        problems.append(f"{events['sent']} sent events, expected {expected}")
    not_one_attempt = sum(1 for k in keys if attempts[k] != 1)
    not_one_sent = sum(1 for k in keys if sents[k] != 1)
    if not_one_attempt:
        problems.append(f"{not_one_attempt} keys without exactly one attempt")
    if not_one_sent:
        problems.append(f"{not_one_sent} keys without exactly one sent")
    if sent_before_attempt:
        problems.append(f"{sent_before_attempt} sent events before their attempt")
    extra = set(attempts) - set(keys)
    if extra:
        problems.append(f"{len(extra)} journal keys not in the CSV")
    counts = ", ".join(f"{k} {v}" for k, v in sorted(events.items()))
    print(f"journal events: {counts}")
    if first_attempt is not None and last_sent is not None and last_sent > first_attempt:
        span = last_sent - first_attempt
        print(f"journal span first attempt .. last sent: {span:.3f} s, "
              f"{events['sent'] / span:.0f} messages/s")
    if problems:
        print("journal check FAILED: " + "; ".join(problems))
        sys.exit(1)
    print(f"journal check ok: {expected} sent, every one of {len(keys)} keys has exactly one "
          "attempt and one sent, each attempt before its sent")


if __name__ == "__main__":
    main()
