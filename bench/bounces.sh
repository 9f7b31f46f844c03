#!/usr/bin/env bash
# `utskick bounces`, old binary against new:
#   1. the fixture corpus (tests/bounces/*.eml and tests/bounces/layouts/*.eml) booked
#      against a journal in which every recipient they name was sent: the shares of
#      permanent failures booked, delays kept, negatives booked nothing (our own corpus of
#      server layouts, not real-world reports);
#   2. an mbox of BOUNCE_MBOX_MB MiB (default 1024) made by repeating the fixtures: wall
#      time and peak RSS (/usr/bin/time).
#
#   bench/bounces.sh
#
# Environment: OLD_BIN (default /work/main/target/release/utskick), BOUNCE_MBOX_MB, plus
# those of bench/lib.sh.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

OLD="${OLD_BIN:-/work/main/target/release/utskick}"
cp "$OLD" "$TMP/utskick-old"
OLD="$TMP/utskick-old"
MB="${BOUNCE_MBOX_MB:-1024}"
TABLES=("$REPO/tests/bounces/expected.tsv" "$REPO/tests/bounces/layouts/layouts.tsv")

fresh_mailing() {
    local dir="$1"
    rm -rf "$dir"
    mkdir -p "$dir"
    python3 "$BENCH/bounce_corpus.py" setup "$dir" "${TABLES[@]}" >/dev/null
    make_mailing "$dir" recipients.csv 'journal.path="delivery-log.jsonl"'
}

echo "== fixture corpus (ours: $(ls "$REPO"/tests/bounces/*.eml "$REPO"/tests/bounces/layouts/*.eml | wc -l) reports)"
for which in old new; do
    bin="$BIN"
    [[ "$which" == old ]] && bin="$OLD"
    dir="$TMP/corpus-$which"
    fresh_mailing "$dir"
    "$bin" --config "$dir/config.toml" bounces "$REPO/tests/bounces" "$REPO/tests/bounces/layouts" \
        >"$TMP/corpus-$which.out" 2>"$TMP/corpus-$which.err" || true
    echo "-- $which: $(head -n 1 "$TMP/corpus-$which.out")"
    python3 "$BENCH/bounce_corpus.py" score "$dir" "${TABLES[@]}"
done

echo "== mbox of $MB MiB"
MBOX="$TMP/bounces.mbox"
COUNT="$(python3 "$BENCH/bounce_corpus.py" mbox "$MBOX" "$MB" "$REPO/tests/bounces" "$REPO/tests/bounces/layouts")"
echo "messages: $COUNT, size: $(du -h "$MBOX" | cut -f1)"
for which in old new; do
    bin="$BIN"
    [[ "$which" == old ]] && bin="$OLD"
    dir="$TMP/mbox-$which"
    fresh_mailing "$dir"
    sync
    load="$(load_now)"
    # Wall time, CPU time (user + system: the machine is shared, wall time is not the
    # program's alone) and peak RSS.
    set +e
    /usr/bin/time -f '%e %U %S %M' -o "$TMP/mbox-$which.time" \
        "$bin" --config "$dir/config.toml" bounces "$MBOX" >"$TMP/mbox-$which.out" 2>"$TMP/mbox-$which.err"
    RC=$?
    set -e
    read -r TIME_S USER_S SYS_S RSS_KB < <(tail -n 1 "$TMP/mbox-$which.time")
    if [[ "$RC" != 0 ]]; then
        echo "$which: exit $RC" >&2
        tail -n 5 "$TMP/mbox-$which.err" >&2
    fi
    echo "$which: wall ${TIME_S} s, CPU ${USER_S} s user + ${SYS_S} s system, peak RSS $((RSS_KB / 1024)) MiB, exit $RC (load $load)"
    head -n 1 "$TMP/mbox-$which.out"
done
