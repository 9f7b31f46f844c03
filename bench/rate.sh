#!/usr/bin/env bash
# Rate accuracy: rate "600/min", burst 1 (the shipped concurrency, 4), 300 recipients
# (30 s worth) to bench/smtp_sink.py, which records when each MAIL FROM arrives. Prints
# the achieved rate between the first and the last message start against 10/s, and the
# shortest interval between consecutive starts.
#
#   bench/rate.sh
#
# Environment: RATE_ROWS (default 300), plus those of bench/lib.sh.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

ROWS="${RATE_ROWS:-300}"
PORT="$(free_port)"
dir="$TMP/mailing"
mkdir -p "$dir"
python3 "$BENCH/gen_csv.py" "$ROWS" "$dir/recipients.csv"
make_mailing "$dir" recipients.csv \
    'smtp.host="127.0.0.1"' "smtp.port=$PORT" 'smtp.security="none"' 'smtp.auth="none"' \
    'sending.rate="600/min"' 'sending.burst=1' 'sending.concurrency=4' \
    'journal.path="delivery-log.jsonl"'

bg_start "$TMP/sink.out" python3 "$BENCH/smtp_sink.py" "$PORT" "$TMP/starts.log" \
    --max-messages "$ROWS" --max-seconds "$(( ROWS / 10 + 120 ))"
SINK=$BG_PID
wait_port "$PORT"

echo "== utskick send --yes: $ROWS recipients at 600/min, burst 1, concurrency 4"
LOAD_BEFORE="$(load_now)"
timed "$TMP/send.out" "$TMP/send.err" "$BIN" --config "$dir/config.toml" send --yes
U_RC="$RC"
U_TIME="$TIME_S"
LOAD_AFTER="$(load_now)"
grep '^sent ' "$TMP/send.out" "$TMP/send.err" | cut -d: -f2- || true
bg_stop "$SINK"
cat "$TMP/sink.out"

STATS="$(python3 "$BENCH/rate_stats.py" "$TMP/starts.log" 10 "$dir/delivery-log.jsonl")"
echo "$STATS" | grep -v '^RESULT'
read -r _ n rate dev min_gap < <(echo "$STATS" | grep '^RESULT')

echo
echo "=== summary: rate ($(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores)"
echo "utskick send: exit $U_RC, $U_TIME s for $n messages; load before $LOAD_BEFORE, after $LOAD_AFTER"
echo "target achieved rate within 1 % of 10/s: $rate/s ($dev %) -> $(verdict "abs($dev) <= 1.0 and $n == $ROWS")"
echo "target min interval between message starts >= 95 ms: $min_gap ms -> $(verdict "$min_gap >= 95")"
[[ "$U_RC" == 0 ]]
