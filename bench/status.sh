#!/usr/bin/env bash
# Status over a large journal: a generated CSV of 500,000 rows and a journal of 1,000,010
# events (5 runs: run + attempt/sent for 100,000 keys + end, all sent), then
#   1. `utskick status` and `utskick status --json` on both (the real case),
#   2. the journal's share: the same journal against a 10-row CSV (journal read, plus the
#      sorted list of the 499,990 keys no longer in the CSV),
#   3. the CSV's share: the 500,000-row CSV against a missing journal (CSV scan, plus a
#      table of 500,000 pending recipients).
# Every output goes to a file or /dev/null; wall time and peak RSS of each.
#
#   bench/status.sh
#
# Environment: STATUS_ROWS (default 500000), plus those of bench/lib.sh.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

ROWS="${STATUS_ROWS:-500000}"
dir="$TMP/mailing"
mkdir -p "$dir"
python3 "$BENCH/gen_csv.py" "$ROWS" "$dir/recipients.csv"
python3 "$BENCH/gen_csv.py" 10 "$dir/tiny.csv"
EVENTS="$(python3 "$BENCH/gen_journal.py" "$dir/recipients.csv" "$dir/delivery-log.jsonl")"
JSIZE=$(du -h "$dir/delivery-log.jsonl" | cut -f1)
echo "journal: $EVENTS events ($JSIZE), CSV: $ROWS rows ($(du -h "$dir/recipients.csv" | cut -f1))"

make_mailing "$dir" recipients.csv 'journal.path="delivery-log.jsonl"'
cp "$dir/config.toml" "$dir/journal-only.toml"
python3 "$BENCH/set_config.py" "$dir/journal-only.toml" 'recipients.path="tiny.csv"'
cp "$dir/config.toml" "$dir/csv-only.toml"
python3 "$BENCH/set_config.py" "$dir/csv-only.toml" 'journal.path="no-such-journal.jsonl"'

declare -A T R L
run() {
    local name="$1" out="$2"
    shift 2
    sync
    L[$name]="$(load_now)"
    timed "$out" "$TMP/$name.err" "$BIN" "$@"
    if [[ "$RC" != 0 ]]; then
        cat "$TMP/$name.err" >&2
        echo "$name: utskick exited $RC" >&2
        exit 1
    fi
    T[$name]="$TIME_S"
    R[$name]="$RSS_KB"
    echo "$name: $TIME_S s, peak RSS $RSS_KB KB (load ${L[$name]})"
}

# Warm the page cache so that every run reads from memory alike.
cat "$dir/recipients.csv" "$dir/delivery-log.jsonl" >/dev/null

run status "$TMP/status.out" --config "$dir/config.toml" status
grep -E "^ *(sent|pending|total) " "$TMP/status.out" || true
grep -qE "^ *sent +$ROWS\$" "$TMP/status.out" \
    || { echo "status does not show $ROWS sent:" >&2; head -n 20 "$TMP/status.out" >&2; exit 1; }
run status_json /dev/null --config "$dir/config.toml" status --json
run journal_only /dev/null --config "$dir/journal-only.toml" status
run csv_only /dev/null --config "$dir/csv-only.toml" status

# The journal read alone, as `status`, `send` and `retry` do it (Journal::read), timed
# inside the process: the issue's "reading a journal of 1,000,000 events".
JR_RUNS="${JR_RUNS:-7}"
if [[ -z "${BENCH_NO_BUILD:-}" ]]; then
    (cd "$REPO" && cargo build --release --quiet --example journal_read)
fi
JR_TIMES=()
for _ in $(seq "$JR_RUNS"); do
    line="$("$REPO/target/release/examples/journal_read" "$dir/delivery-log.jsonl")"
    echo "journal_read: $line"
    JR_TIMES+=("$(echo "$line" | sed -E 's/.* read in ([0-9.]+) s/\1/')")
done
read -r JR_MIN JR_MEDIAN JR_MAX < <(printf '%s\n' "${JR_TIMES[@]}" | sort -n | awk '{a[NR]=$1} END {print a[1], a[int((NR+1)/2)], a[NR]}')

echo
echo "=== summary: status ($(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, journal $EVENTS events / $JSIZE, CSV $ROWS rows)"
echo "status         (journal + CSV):   ${T[status]} s, peak RSS $(calc "round(${R[status]} / 1024, 1)") MiB, load ${L[status]}"
echo "status --json  (journal + CSV):   ${T[status_json]} s, peak RSS $(calc "round(${R[status_json]} / 1024, 1)") MiB, load ${L[status_json]}"
echo "journal part   (10-row CSV):      ${T[journal_only]} s, peak RSS $(calc "round(${R[journal_only]} / 1024, 1)") MiB, load ${L[journal_only]}"
echo "CSV part       (no journal):      ${T[csv_only]} s, peak RSS $(calc "round(${R[csv_only]} / 1024, 1)") MiB, load ${L[csv_only]}"
echo "journal read alone (examples/journal_read, $JR_RUNS runs): min ${JR_MIN} s, median ${JR_MEDIAN} s, max ${JR_MAX} s"
echo "target reading $EVENTS events < 1 s (journal read, median and every run): median ${JR_MEDIAN} s, max ${JR_MAX} s -> $(verdict "${JR_MAX} < 1.0")"
