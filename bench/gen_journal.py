#!/usr/bin/env python3
"""Write a delivery journal for the status benchmark.

    python3 bench/gen_journal.py CSV JOURNAL [RUNS]

For every recipient of CSV (written by gen_csv.py) an `attempt` and a `sent` event, as
`utskick send` writes them, spread over RUNS runs (default 5; each a `run` event, its
share of the recipients, and an `end` event), so 500,000 rows give 1,000,000
attempt/sent events plus 2 x RUNS run/end events. Timestamps are 100 ms apart, in
2023-10. Prints the number of events written.
"""

import csv
import datetime
import hashlib
import json
import sys

CAMPAIGN = "nektab-2023-10"


def main():
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__)
    csv_path, out = sys.argv[1], sys.argv[2]
    runs = int(sys.argv[3]) if len(sys.argv) == 4 else 5
    with open(csv_path, encoding="utf-8-sig", newline="") as f:
        rows = [(r["customer_id"], r["email"]) for r in csv.DictReader(f)]
    start = datetime.datetime(2023, 10, 20, 8, 0, 0, tzinfo=datetime.timezone.utc)
    per_run = -(-len(rows) // runs)
    templates = hashlib.sha256(b"templates").hexdigest()
    recipients = hashlib.sha256(open(csv_path, "rb").read()).hexdigest()
    events = 0
    step = datetime.timedelta(milliseconds=100)
    t = start

    def ts():
        return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"

    with open(out, "w", encoding="utf-8") as f:
        w = f.write
        for r in range(runs):
            part = rows[r * per_run:(r + 1) * per_run]
            if not part:
                break
            run = f"{int(t.timestamp() * 1000)}-{4242 + r}"
            w(json.dumps({"event": "run", "ts": ts(), "run": run, "campaign": CAMPAIGN,
                          "command": "send", "recipients_sha256": recipients,
                          "templates_sha256": templates, "relay": "smtp.example.se:587"},
                         separators=(",", ":")) + "\n")
            events += 1
            for n, (key, email) in enumerate(part):
                mid = f"<{CAMPAIGN}.{hashlib.sha256(f'{CAMPAIGN}/{key}'.encode()).hexdigest()[:24]}@example.se>"
                em = json.dumps(email)
                w(f'{{"event":"attempt","ts":"{ts()}","run":"{run}","key":"{key}","email":{em},'
                  f'"message_id":"{mid}","attempt":1}}\n')
                t += step
                w(f'{{"event":"sent","ts":"{ts()}","run":"{run}","key":"{key}","email":{em},'
                  f'"message_id":"{mid}","code":250,"reply":"2.0.0 Ok: queued as {n:X}QZ{r}"}}\n')
                events += 2
            w(json.dumps({"event": "end", "ts": ts(), "run": run, "outcome": "complete"},
                         separators=(",", ":")) + "\n")
            events += 1
            t += datetime.timedelta(hours=1)
    print(events)


if __name__ == "__main__":
    main()
