#!/usr/bin/env bash
# Preview throughput: `utskick preview --limit 10` (validates and renders every row,
# writes 10 .eml files) on 100,000 and 1,000,000 generated rows, wall time and peak RSS,
# next to mailmerge 2.3.0's dry run of an equivalent Jinja2 template on the same rows.
#
#   bench/preview.sh
#
# Environment:
#   PREVIEW_ROWS="100000 1000000"   row counts for utskick
#   PREVIEW_RUNS=5                   runs of utskick per row count: the time reported and
#                                    judged is their median (this VM's speed wanders by
#                                    20 % and more from minute to minute), the RSS their
#                                    largest
#   MAILMERGE_ROWS="100000"         row counts for mailmerge ("" to skip it; it runs at
#                                   about 5 ms a message here, so 1,000,000 rows would take
#                                   well over an hour and is left out unless asked for)
#   MAILMERGE_VENV=DIR              the venv holding mailmerge (default
#                                   ~/.cache/utskick-bench/mailmerge-venv; created with
#                                   `pip install mailmerge==2.3.0` when missing)
# plus those of bench/lib.sh.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

PREVIEW_ROWS="${PREVIEW_ROWS:-100000 1000000}"
MAILMERGE_ROWS="${MAILMERGE_ROWS-100000}"
PREVIEW_RUNS="${PREVIEW_RUNS:-5}"
MAILMERGE_VENV="${MAILMERGE_VENV:-$HOME/.cache/utskick-bench/mailmerge-venv}"

if [[ -n "$MAILMERGE_ROWS" && ! -x "$MAILMERGE_VENV/bin/mailmerge" ]]; then
    echo "installing mailmerge 2.3.0 into $MAILMERGE_VENV" >&2
    python3 -m venv "$MAILMERGE_VENV"
    "$MAILMERGE_VENV/bin/pip" install --quiet mailmerge==2.3.0
fi
if [[ -n "$MAILMERGE_ROWS" ]]; then
    "$MAILMERGE_VENV/bin/mailmerge" --version | grep -q '2\.3\.0' \
        || { echo "$MAILMERGE_VENV holds no mailmerge 2.3.0" >&2; exit 2; }
fi

declare -A U_TIME U_RUNS U_RSS U_LOAD M_TIME M_RSS M_LOAD
ALL_ROWS="$(printf '%s\n' $PREVIEW_ROWS $MAILMERGE_ROWS | sort -n -u)"
EQUIV=""

for rows in $ALL_ROWS; do
    dir="$TMP/m$rows"
    csv="recipients-$rows.csv"
    mkdir -p "$dir"
    python3 "$BENCH/gen_csv.py" "$rows" "$dir/$csv"
    make_mailing "$dir" "$csv"
    size=$(du -h "$dir/$csv" | cut -f1)
    echo "== $rows rows ($size CSV)"

    if [[ " $PREVIEW_ROWS " == *" $rows "* ]]; then
        sync
        U_LOAD[$rows]="$(load_now)"
        times=()
        rss_max=0
        for run in $(seq 1 "$PREVIEW_RUNS"); do
            timed "$dir/preview.out" "$dir/preview.err" \
                "$BIN" --config "$dir/config.toml" preview --limit 10 --out "$dir/preview"
            if [[ "$RC" != 0 ]]; then
                cat "$dir/preview.err" >&2
                echo "utskick preview exited $RC" >&2
                exit 1
            fi
            grep -q "rows $rows, valid $rows, invalid 0" "$dir/preview.out" "$dir/preview.err" \
                || { echo "unexpected preview summary:" >&2; cat "$dir/preview.out" "$dir/preview.err" >&2; exit 1; }
            written=$(find "$dir/preview" -name '*.eml' | wc -l)
            times+=("$TIME_S")
            if (( RSS_KB > rss_max )); then rss_max=$RSS_KB; fi
            echo "utskick preview --limit 10, run $run: ${TIME_S} s, peak RSS ${RSS_KB} KB, $written .eml written"
        done
        U_TIME[$rows]="$(printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')"
        U_RUNS[$rows]="${times[*]}"
        U_RSS[$rows]="$rss_max"
    fi

    if [[ -n "$MAILMERGE_ROWS" && " $MAILMERGE_ROWS " == *" $rows "* ]]; then
        python3 "$BENCH/mailmerge_template.py" write "$dir" "$dir/mailmerge_template.txt"
        printf '[smtp_server]\nhost = 127.0.0.1\nport = 25\nratelimit = 0\n' >"$dir/mailmerge_server.conf"
        if [[ -z "$EQUIV" && -d "$dir/preview" ]]; then
            EQUIV="$("$MAILMERGE_VENV/bin/python" "$BENCH/mailmerge_template.py" compare \
                "$dir/mailmerge_template.txt" "$dir/$csv" "$dir/preview" 10)"
            echo "$EQUIV"
        fi
        M_LOAD[$rows]="$(load_now)"
        # The dry run prints every message; --output-format raw prints it as it would go
        # out (the cheapest of its formats), into /dev/null.
        timed /dev/null "$dir/mailmerge.err" \
            "$MAILMERGE_VENV/bin/mailmerge" --dry-run --no-limit --output-format raw \
            --template "$dir/mailmerge_template.txt" --database "$dir/$csv" \
            --config "$dir/mailmerge_server.conf"
        if [[ "$RC" != 0 ]]; then
            cat "$dir/mailmerge.err" >&2
            echo "mailmerge exited $RC" >&2
            exit 1
        fi
        M_TIME[$rows]="$TIME_S"
        M_RSS[$rows]="$RSS_KB"
        echo "mailmerge 2.3.0 --dry-run --no-limit: ${TIME_S} s, peak RSS ${RSS_KB} KB (load ${M_LOAD[$rows]})"
    fi
    rm -rf "$dir"
done

echo
echo "=== summary: preview ($(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores)"
for rows in $ALL_ROWS; do
    if [[ -n "${U_TIME[$rows]:-}" ]]; then
        mib=$(calc "round(${U_RSS[$rows]} / 1024, 1)")
        line="utskick  $rows rows: median ${U_TIME[$rows]} s of ${U_RUNS[$rows]}, peak RSS $mib MiB (${U_RSS[$rows]} KB), $(calc "round($rows / max(${U_TIME[$rows]}, 0.01))") rows/s, load ${U_LOAD[$rows]}"
        echo "$line"
    fi
    if [[ -n "${M_TIME[$rows]:-}" ]]; then
        echo "mailmerge $rows rows: ${M_TIME[$rows]} s, peak RSS $(calc "round(${M_RSS[$rows]} / 1024, 1)") MiB, $(calc "round($rows / max(${M_TIME[$rows]}, 0.01))") rows/s, load ${M_LOAD[$rows]}"
    fi
done
if [[ -n "$EQUIV" ]]; then echo "$EQUIV"; fi
if [[ -n "${U_TIME[100000]:-}" ]]; then
    echo "target 100,000 rows <= 1 s: ${U_TIME[100000]} s -> $(verdict "${U_TIME[100000]} <= 1.0")"
    echo "target 100,000 rows peak RSS <= 64 MiB: $(calc "round(${U_RSS[100000]} / 1024, 1)") MiB -> $(verdict "${U_RSS[100000]} <= 64 * 1024")"
    if [[ -n "${M_TIME[100000]:-}" ]]; then
        ratio=$(calc "round(${M_TIME[100000]} / max(${U_TIME[100000]}, 0.01), 1)")
        echo "target >= 50x faster than mailmerge at 100,000 rows: ${ratio}x -> $(verdict "$ratio >= 50")"
    fi
fi
if [[ -n "${U_RSS[1000000]:-}" ]]; then
    echo "target 1,000,000 rows peak RSS <= 160 MiB: $(calc "round(${U_RSS[1000000]} / 1024, 1)") MiB -> $(verdict "${U_RSS[1000000]} <= 160 * 1024")"
    if [[ -z "${M_TIME[1000000]:-}" ]]; then
        echo "(mailmerge not run at 1,000,000 rows: MAILMERGE_ROWS=\"$MAILMERGE_ROWS\")"
    fi
fi
