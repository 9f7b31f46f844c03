#!/usr/bin/env bash
# Send throughput: 10,000 generated recipients through `utskick send --yes` to Postfix's
# smtp-sink on loopback (rate "1000000/s", burst 100, concurrency 4, security none, auth
# none, journal on the repository's disk), next to `smtp-source -d -s 4 -m 10000 -l SIZE`
# against the same sink, SIZE being the size of one of our messages. Then checks the
# journal: exactly 10,000 `sent` events and one attempt per key, attempt before sent.
#
#   bench/send.sh
#
# Then, as a diagnostic (not the figure), the same send again with TCP_NODELAY forced on
# utskick's sockets by an LD_PRELOAD shim (bench/nodelay_shim.c), which shows the share of
# Nagle's algorithm + delayed ACK in the time (see BENCHMARKS.md).
#
# Environment: SEND_ROWS (default 10000), SEND_NODELAY_DIAG=0 to skip the diagnostic run,
# plus those of bench/lib.sh.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

ROWS="${SEND_ROWS:-10000}"
command -v smtp-sink >/dev/null && command -v smtp-source >/dev/null \
    || { echo "smtp-sink and smtp-source are needed (apt-get install postfix)" >&2; exit 2; }

PORT="$(free_port)"
dir="$TMP/mailing"
mkdir -p "$dir"
python3 "$BENCH/gen_csv.py" "$ROWS" "$dir/recipients.csv"
make_mailing "$dir" recipients.csv \
    'smtp.host="127.0.0.1"' "smtp.port=$PORT" 'smtp.security="none"' 'smtp.auth="none"' \
    'sending.rate="1000000/s"' 'sending.burst=100' 'sending.concurrency=4' \
    'journal.path="delivery-log.jsonl"'

# The size of one of our messages, for smtp-source -l.
"$BIN" --quiet --config "$dir/config.toml" preview --limit 1 --out "$dir/one" >/dev/null 2>&1
SIZE=$(stat -c %s "$(find "$dir/one" -name '*.eml' | head -n 1)")
rm -rf "$dir/one"

# -c prints running counters (sess=, quit=, mesg=) that tell how many messages arrived.
bg_start "$TMP/sink.log" smtp-sink -u nobody -c "127.0.0.1:$PORT" 1000
SINK=$BG_PID
wait_port "$PORT"
sink_messages() {
    tr '\r' '\n' <"$TMP/sink.log" | grep -o 'mesg=[0-9]*' | tail -n 1 | cut -d= -f2 || true
}

echo "== smtp-source -d -s 4 -m $ROWS -l $SIZE 127.0.0.1:$PORT"
S_LOAD="$(load_now)"
timed "$TMP/source.out" "$TMP/source.err" \
    smtp-source -d -s 4 -m "$ROWS" -l "$SIZE" "127.0.0.1:$PORT"
[[ "$RC" == 0 ]] || { cat "$TMP/source.err" >&2; echo "smtp-source exited $RC" >&2; exit 1; }
S_TIME="$TIME_S"
sleep 0.5
after_source="$(sink_messages)"
echo "smtp-source: $S_TIME s, sink counted ${after_source:-?} messages (load $S_LOAD)"

# One `utskick send --yes` on a fresh journal; sets R_TIME R_RSS R_RC R_LOAD R_COUNT R_CHECK R_CHECK_RC.
# Usage: send_once LABEL [VAR=VALUE ...] (environment for utskick, e.g. LD_PRELOAD=...)
send_once() {
    local label="$1"
    shift
    rm -f "$dir/delivery-log.jsonl" "$dir/delivery-log.jsonl.lock"
    echo "== utskick send --yes ($ROWS recipients, message of $SIZE bytes)${label:+ [$label]}"
    local before after
    before="$(sink_messages)"
    sync
    R_LOAD="$(load_now)"
    timed "$TMP/send.out" "$TMP/send.err" env "$@" "$BIN" --config "$dir/config.toml" send --yes
    R_TIME="$TIME_S"
    R_RSS="$RSS_KB"
    R_RC="$RC"
    sleep 0.5
    after="$(sink_messages)"
    R_COUNT=$(( ${after:-0} - ${before:-0} ))
    grep -h '^sent ' "$TMP/send.out" "$TMP/send.err" || tail -n 5 "$TMP/send.err"
    echo "utskick send: exit $R_RC, $R_TIME s, peak RSS $R_RSS KB, sink counted $R_COUNT messages (load $R_LOAD)"
    R_CHECK_RC=0
    R_CHECK="$(python3 "$BENCH/check_journal.py" "$dir/delivery-log.jsonl" "$dir/recipients.csv" "$ROWS")" || R_CHECK_RC=$?
    echo "$R_CHECK"
}

send_once ""
U_TIME="$R_TIME"; U_RC="$R_RC"; U_LOAD="$R_LOAD"; CHECK="$R_CHECK"; CHECK_RC="$R_CHECK_RC"

# Diagnostic: the same run with TCP_NODELAY forced on utskick's sockets (LD_PRELOAD).
D_TIME=""
if [[ "${SEND_NODELAY_DIAG:-1}" == 1 ]] && command -v cc >/dev/null; then
    cc -shared -fPIC -O2 -o "$TMP/nodelay_shim.so" "$BENCH/nodelay_shim.c" -ldl
    send_once "diagnostic: TCP_NODELAY forced by LD_PRELOAD" "LD_PRELOAD=$TMP/nodelay_shim.so"
    D_TIME="$R_TIME"; D_RC="$R_RC"; D_LOAD="$R_LOAD"; D_CHECK_RC="$R_CHECK_RC"
    D_SPAN="$(echo "$R_CHECK" | grep 'journal span' || true)"
fi

bg_stop "$SINK"

U_RATE=$(calc "round($ROWS / $U_TIME)")
S_RATE=$(calc "round($ROWS / $S_TIME)")
RATIO=$(calc "round($ROWS / $U_TIME / ($ROWS / $S_TIME), 3)")
echo
echo "=== summary: send ($(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, message $SIZE bytes, journal on $(df --output=source "$dir" | tail -n 1))"
echo "utskick send:  $ROWS messages in $U_TIME s (whole command: preflight, connect, deliver, journal) = $U_RATE messages/s, exit $U_RC, load $U_LOAD"
echo "$CHECK" | grep 'journal span' | sed 's/^/utskick /' || true
echo "smtp-source:   $ROWS messages in $S_TIME s = $S_RATE messages/s, load $S_LOAD"
echo "target utskick >= 0.5 x smtp-source: ratio $RATIO -> $(verdict "$RATIO >= 0.5 and $U_RC == 0")"
echo "target journal exactly $ROWS sent, one attempt per key: $(if [[ $CHECK_RC == 0 ]]; then echo pass; else echo FAIL; fi)"
if [[ -n "$D_TIME" ]]; then
    echo "diagnostic, not the figure: with TCP_NODELAY forced (LD_PRELOAD), $ROWS messages in $D_TIME s = $(calc "round($ROWS / $D_TIME)") messages/s, ratio $(calc "round($ROWS / $D_TIME / ($ROWS / $S_TIME), 3)") to smtp-source, exit $D_RC, journal check $(if [[ $D_CHECK_RC == 0 ]]; then echo ok; else echo FAILED; fi), load $D_LOAD"
    if [[ -n "$D_SPAN" ]]; then echo "diagnostic $D_SPAN"; fi
fi
[[ "$U_RC" == 0 && "$CHECK_RC" == 0 ]]
