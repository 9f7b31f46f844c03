#!/usr/bin/env bash
# Runs every benchmark in turn and prints their summary blocks together at the end.
#
#   bench/run-all.sh [preview|send|rate|status ...]    (default: all four)
#
# Builds the release binary once, then passes it to each script (UTSKICK_BIN). The full
# output of each goes to target/bench-logs/NAME.log. Takes about 15 minutes on 2 cores,
# most of it mailmerge's dry run at 100,000 rows (MAILMERGE_ROWS="" skips it). A script
# that fails does not stop the others; the exit code is 1 if any failed.
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
NAMES=("$@")
[[ ${#NAMES[@]} -gt 0 ]] || NAMES=(preview send rate status)

if [[ -z "${UTSKICK_BIN:-}" ]]; then
    (cd "$REPO" && cargo build --release --quiet)
    BIN_COPY="$(mktemp -p "$REPO/target" utskick-bench-bin.XXXXXX)"
    trap 'rm -f "$BIN_COPY"' EXIT
    cp "$REPO/target/release/utskick" "$BIN_COPY"
    chmod 755 "$BIN_COPY"
    export UTSKICK_BIN="$BIN_COPY"
fi

LOGS="$REPO/target/bench-logs"
mkdir -p "$LOGS"
echo "utskick $(cd "$REPO" && git rev-parse --short HEAD 2>/dev/null || echo '?')$(cd "$REPO" && git diff --quiet HEAD -- src 2>/dev/null || echo ' (src modified)'), $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, $(uptime | sed -E 's/.*(load average)/\1/')"
failed=0
for name in "${NAMES[@]}"; do
    echo
    echo "##### bench/$name.sh"
    set +e
    "$REPO/bench/$name.sh" 2>&1 | tee "$LOGS/$name.log"
    rc=${PIPESTATUS[0]}
    set -e
    if [[ $rc != 0 ]]; then
        echo "bench/$name.sh exited $rc"
        failed=1
    fi
done

echo
echo "##### summaries"
for name in "${NAMES[@]}"; do
    sed -n '/^=== summary/,$p' "$LOGS/$name.log"
    echo
done
exit $failed
