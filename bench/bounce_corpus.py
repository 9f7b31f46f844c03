#!/usr/bin/env python3
"""The bounce fixtures as a mailing, for bench/bounces.sh.

    python3 bench/bounce_corpus.py setup DIR TSV...   recipients.csv + delivery-log.jsonl in DIR
    python3 bench/bounce_corpus.py score DIR TSV...   shares booked, from DIR's journal
    python3 bench/bounce_corpus.py mbox OUT MB EML_DIR...   an mbox of at least MB MiB

`setup` writes one CSV row per address the tables (tests/bounces/*.tsv) name, plus one per
negative fixture's own recipient, and a journal in which each was `sent` with the Message-ID
its fixture names (as `utskick send` writes them). `score` reads what `utskick bounces`
booked and prints the shares: permanent failures booked `bounced`, delays that left the
state alone, negatives (auto-replies, feedback reports, confirmations) booked nothing.
`mbox` repeats the fixtures (mboxrd quoting) until the file is MB MiB.
"""

import csv
import hashlib
import json
import os
import sys

CAMPAIGN = "nektab-2023-10"


def table(paths):
    rows = []
    for path in paths:
        layouts = os.path.basename(path) == "layouts.tsv"
        for line in open(path, encoding="utf-8"):
            if not line.strip() or line.startswith("#"):
                continue
            cols = line.rstrip("\n").split("\t")
            file = cols.pop(0)
            if layouts:
                cols.pop(0)
            kind, original = cols[0], cols[-1]
            rcpts = [tuple(c.split(" ")) for c in cols[1:-1]]
            rows.append((file, kind, rcpts, original))
    return rows


def setup(out, paths):
    people = {}  # email -> message id
    for i, (file, kind, rcpts, original) in enumerate(table(paths)):
        for j, (email, _, _) in enumerate(rcpts):
            mid = original if j == 0 and "nektab-2023-10." in original else None
            if mid is None:
                h = hashlib.md5(email.encode()).hexdigest()
                mid = f"<{CAMPAIGN}.{h}@example.se>"
            people.setdefault(email, mid)
        if not rcpts and original != "-":
            people.setdefault(f"negative{i}@example.com", original)
    csv_path = os.path.join(out, "recipients.csv")
    with open(csv_path, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["customer_id", "name", "email", "affected", "confirmed"])
        for k, email in enumerate(sorted(people)):
            w.writerow([str(1000 + k), "Kund", email, "namn", "ja"])
    rows = list(csv.DictReader(open(csv_path, encoding="utf-8")))
    recipients = hashlib.sha256(open(csv_path, "rb").read()).hexdigest()
    ts = "2023-10-12T08:15:00.000Z"
    with open(os.path.join(out, "delivery-log.jsonl"), "w", encoding="utf-8") as f:
        def w(obj):
            f.write(json.dumps(obj, separators=(",", ":")) + "\n")
        w({"event": "run", "ts": ts, "run": "R1", "campaign": CAMPAIGN, "command": "send",
           "recipients_sha256": recipients,
           "templates_sha256": hashlib.sha256(b"templates").hexdigest(),
           "relay": "smtp.example.se:587"})
        for r in rows:
            mid = people[r["email"]]
            w({"event": "attempt", "ts": ts, "run": "R1", "key": r["customer_id"],
               "email": r["email"], "message_id": mid, "attempt": 1})
            w({"event": "sent", "ts": ts, "run": "R1", "key": r["customer_id"],
               "email": r["email"], "message_id": mid, "code": 250,
               "reply": "2.0.0 Ok: queued"})
    print(len(rows))


def score(out, paths):
    booked = {}
    for line in open(os.path.join(out, "delivery-log.jsonl"), encoding="utf-8"):
        e = json.loads(line)
        if e["event"] == "bounced":
            booked.setdefault(e["email"], set()).add(e["class"])
    perm = perm_ok = delay = delay_ok = neg = neg_ok = 0
    for file, kind, rcpts, original in table(paths):
        if not rcpts:
            neg += 1
            negative_booked = any(
                "permanent" in v for k, v in booked.items() if k.startswith("negative"))
            neg_ok += 0 if negative_booked else 1
            continue
        for j, (email, status, cls) in enumerate(rcpts):
            if j > 0:
                continue  # another address of a report about someone else's notice
            if cls == "permanent":
                perm += 1
                perm_ok += "permanent" in booked.get(email, set())
            else:
                delay += 1
                delay_ok += "permanent" not in booked.get(email, set())
    pct = lambda a, b: f"{a}/{b} ({100.0 * a / b:.1f} %)" if b else "0/0"
    print(f"permanent failures booked bounced: {pct(perm_ok, perm)}")
    print(f"delays kept as delays:             {pct(delay_ok, delay)}")
    print(f"negatives booked nothing:          {pct(neg_ok, neg)}")


def mbox(out, mb, dirs):
    messages = []
    for d in dirs:
        for name in sorted(os.listdir(d)):
            if name.endswith(".eml"):
                raw = open(os.path.join(d, name), "rb").read().replace(b"\r\n", b"\n")
                lines = []
                for line in raw.split(b"\n"):
                    if line.lstrip(b">").startswith(b"From "):
                        line = b">" + line
                    lines.append(line)
                body = b"\n".join(lines).rstrip(b"\n") + b"\n"
                messages.append(b"From MAILER-DAEMON Thu Oct 12 10:15:00 2023\n" + body + b"\n")
    target = mb * 1024 * 1024
    written = 0
    count = 0
    with open(out, "wb") as f:
        while written < target:
            for m in messages:
                f.write(m)
                written += len(m)
                count += 1
    print(count)


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    cmd = sys.argv[1]
    if cmd == "setup":
        setup(sys.argv[2], sys.argv[3:])
    elif cmd == "score":
        score(sys.argv[2], sys.argv[3:])
    elif cmd == "mbox":
        mbox(sys.argv[2], int(sys.argv[3]), sys.argv[4:])
    else:
        sys.exit(__doc__)
