#!/usr/bin/env bash
# Same-window comparison of preview builds: `preview --limit 10` on one generated CSV,
# the variants interleaved run by run so that the VM's slow and fast phases hit them all
# alike; prints each variant's median wall and CPU (user+sys) seconds.
#
#   bench/preview_compare.sh LABEL=BINARY[,SRC=DIR][,ENV=VALUE...] LABEL=BINARY ...
#
# e.g. bench/preview_compare.sh old=/work/main/target/release/utskick,SRC=/work/main \
#          new=target/release/utskick
#
# SRC=DIR takes that variant's config.toml and templates/ from DIR (an older checkout, for
# an older binary that does not know today's config keys); the default is this repository.
#
# Environment:
#   ROWS=100000         rows in the generated CSV
#   RUNS=7              runs per variant
#   ENGLISH_EVERY=0     with N > 0, every N-th row gets language "en" (and the config
#                       names the language column); 2 gives half the rows English
# plus those of bench/lib.sh (the bench's own build is not used: BENCH_NO_BUILD applies).
set -euo pipefail
export BENCH_NO_BUILD=1
source "$(dirname "$0")/lib.sh"

ROWS="${ROWS:-100000}"
RUNS="${RUNS:-7}"
ENGLISH_EVERY="${ENGLISH_EVERY:-0}"
dir="$TMP/m"
mkdir -p "$dir"
python3 "$BENCH/gen_csv.py" "$ROWS" "$dir/recipients.csv"
extra=()
if (( ENGLISH_EVERY > 0 )); then
    python3 - "$dir/recipients.csv" "$ENGLISH_EVERY" <<'PY'
import csv, sys
path, every = sys.argv[1], int(sys.argv[2])
rows = list(csv.reader(open(path, newline="", encoding="utf-8")))
rows[0].append("language")
for i, row in enumerate(rows[1:], 1):
    row.append("en" if i % every == 0 else "sv")
csv.writer(open(path, "w", newline="", encoding="utf-8"), lineterminator="\n").writerows(rows)
PY
    extra+=('recipients.language_column="language"')
fi
labels=()
declare -A BINS ENVS WALL CPU DIRS
for spec in "$@"; do
    label="${spec%%=*}"
    rest="${spec#*=}"
    IFS=, read -r -a parts <<<"$rest"
    labels+=("$label")
    cp "${parts[0]}" "$TMP/bin-$label"
    BINS[$label]="$TMP/bin-$label"
    src="$REPO"
    envs=()
    for p in "${parts[@]:1}"; do
        if [[ "$p" == SRC=* ]]; then src="${p#SRC=}"; else envs+=("$p"); fi
    done
    ENVS[$label]="${envs[*]}"
    vdir="$TMP/v-$label"
    mkdir -p "$vdir"
    cp "$src/config.toml" "$vdir/config.toml"
    cp -r "$src/templates" "$vdir/templates"
    ln -s "$dir/recipients.csv" "$vdir/recipients.csv"
    if [[ "$src" == "$REPO" ]]; then
        python3 "$BENCH/set_config.py" "$vdir/config.toml" 'recipients.path="recipients.csv"' "${extra[@]}"
    else
        python3 "$BENCH/set_config.py" "$vdir/config.toml" 'recipients.path="recipients.csv"'
    fi
    DIRS[$label]="$vdir"
    WALL[$label]=""
    CPU[$label]=""
done

echo "== $ROWS rows, $RUNS runs per variant, interleaved, load $(load_now)"
for run in $(seq 1 "$RUNS"); do
    for label in "${labels[@]}"; do
        tf="$TMP/time"
        # shellcheck disable=SC2086
        env ${ENVS[$label]} /usr/bin/time -f '%e %U %S' -o "$tf" \
            "${BINS[$label]}" --config "${DIRS[$label]}/config.toml" preview --limit 10 --out "${DIRS[$label]}/preview" \
            >"$TMP/out" 2>"$TMP/err" || { cat "$TMP/err" >&2; exit 1; }
        grep -q "rows $ROWS, valid $ROWS, invalid 0" "$TMP/out" "$TMP/err" \
            || { echo "unexpected summary for $label:" >&2; cat "$TMP/out" "$TMP/err" >&2; exit 1; }
        read -r w u s < <(tail -n 1 "$tf")
        WALL[$label]+="$w "
        CPU[$label]+="$(calc "round($u + $s, 2)") "
        echo "run $run $label: wall $w s, cpu $(calc "round($u + $s, 2)") s"
    done
done
median() { printf '%s\n' $1 | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo
echo "=== summary: preview_compare ($(date -u +%Y-%m-%dT%H:%MZ), $ROWS rows, english every $ENGLISH_EVERY, load $(load_now))"
for label in "${labels[@]}"; do
    echo "$label: median wall $(median "${WALL[$label]}") s (${WALL[$label]% }), median cpu $(median "${CPU[$label]}") s"
done
