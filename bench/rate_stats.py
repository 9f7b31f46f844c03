#!/usr/bin/env python3
"""Rate figures from bench/smtp_sink.py's log.

    python3 bench/rate_stats.py LOG EXPECTED_PER_SECOND [JOURNAL]

Message start = MAIL FROM arrival at the sink. Prints the number of messages, the
achieved rate (messages - 1) / (last start - first start), its deviation from the
expected rate, the interval between consecutive starts (min, 1st percentile, median,
max), and how long a transaction took at the sink (MAIL FROM to end of DATA, median and
max). With JOURNAL, also the intervals between the `attempt` timestamps (taken when a
message is dispatched, before the attempt is made durable; millisecond resolution) and
the delay from each attempt's timestamp to its MAIL FROM at the sink, which tells the
rate limiter's own spacing from the jitter added between dispatch and MAIL FROM. Last line: `RESULT n rate deviation_percent min_interval_ms`.
"""

import datetime
import json
import statistics
import sys


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(p / 100 * len(values)))]


def journal_split(path, starts):
    """Dispatch spacing and dispatch-to-MAIL-FROM delay from the journal's attempts."""
    attempts = []
    with open(path) as f:
        for line in f:
            e = json.loads(line)
            if e["event"] == "attempt":
                t = datetime.datetime.fromisoformat(e["ts"].replace("Z", "+00:00"))
                attempts.append(t.timestamp())
    attempts.sort()
    if len(attempts) != len(starts):
        print(f"journal has {len(attempts)} attempts for {len(starts)} messages: no split")
        return
    agaps = [(b - a) * 1000 for a, b in zip(attempts, attempts[1:])]
    delays = [(s - a) * 1000 for a, s in zip(attempts, starts)]
    print(f"interval between attempt timestamps ms (dispatch, 1 ms resolution): min "
          f"{min(agaps):.0f}, median {statistics.median(agaps):.0f}, max {max(agaps):.0f}")
    print(f"attempt timestamp to MAIL FROM at the sink ms (durable attempt + scheduling): "
          f"min {min(delays):.1f}, median {statistics.median(delays):.1f}, max {max(delays):.1f}")


def main():
    log, expected = sys.argv[1], float(sys.argv[2])
    starts, spans, conns = [], [], set()
    with open(log) as f:
        for line in f:
            parts = line.split()
            starts.append(float(parts[0]))
            if len(parts) == 3:
                spans.append(float(parts[1]) - float(parts[0]))
            conns.add(parts[-1])
    starts.sort()
    n = len(starts)
    if n < 2:
        print(f"only {n} messages arrived")
        print(f"RESULT {n} 0 100 0")
        sys.exit(1)
    rate = (n - 1) / (starts[-1] - starts[0])
    dev = (rate - expected) / expected * 100
    gaps = [(b - a) * 1000 for a, b in zip(starts, starts[1:])]
    print(f"messages {n} over {len(conns)} connections, first to last start "
          f"{starts[-1] - starts[0]:.3f} s")
    print(f"achieved rate {rate:.4f}/s vs {expected:g}/s: {dev:+.2f} %")
    print(f"interval between starts ms: min {min(gaps):.1f}, p1 {pct(gaps, 1):.1f}, "
          f"median {statistics.median(gaps):.1f}, p99 {pct(gaps, 99):.1f}, max {max(gaps):.1f}")
    if spans:
        print(f"transaction at the sink (MAIL FROM to end of DATA) ms: median "
              f"{statistics.median(spans) * 1000:.1f}, max {max(spans) * 1000:.1f}")
    if len(sys.argv) > 3:
        journal_split(sys.argv[3], starts)
    print(f"RESULT {n} {rate:.4f} {dev:.3f} {min(gaps):.1f}")


if __name__ == "__main__":
    main()
