#!/usr/bin/env bash
# Preview from a workbook next to the same rows from CSV: `utskick preview --limit 10` on
# ROWS generated rows (bench/gen_csv.py) read from the CSV and from an .xlsx that
# LibreOffice Calc made of that CSV, wall time and peak RSS (/usr/bin/time).
#
#   bench/workbook.sh
#
# Environment:
#   WORKBOOK_ROWS="100000"   row counts
#   WORKBOOK_RUNS=3          runs per file: the time reported is their median, the RSS
#                            their largest
# plus those of bench/lib.sh. Needs soffice (Debian: libreoffice-calc-nogui).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

WORKBOOK_ROWS="${WORKBOOK_ROWS:-100000}"
WORKBOOK_RUNS="${WORKBOOK_RUNS:-3}"
command -v soffice >/dev/null || { echo "soffice not found (apt-get install libreoffice-calc-nogui)" >&2; exit 2; }

for rows in $WORKBOOK_ROWS; do
    dir="$TMP/w$rows"
    mkdir -p "$dir"
    python3 "$BENCH/gen_csv.py" "$rows" "$dir/recipients.csv"
    # Every column imported as text, as a customer list is typed; UTF-8 (76).
    started=$(date +%s.%N)
    soffice "-env:UserInstallation=file://$TMP/lo-profile" --headless --norestore \
        --infilter='CSV:44,34,76,1,1/2/2/2/3/2/4/2/5/2/6/2/7/2' \
        --convert-to 'xlsx:Calc MS Excel 2007 XML' --outdir "$dir" "$dir/recipients.csv" >/dev/null 2>&1
    echo "== $rows rows: CSV $(du -h "$dir/recipients.csv" | cut -f1), xlsx $(du -h "$dir/recipients.xlsx" | cut -f1) (LibreOffice took $(calc "round($(date +%s.%N) - $started, 1)") s)"
    for file in recipients.csv recipients.xlsx; do
        make_mailing "$dir/$file.m" "../$file"
        times=()
        rss_max=0
        load="$(load_now)"
        for run in $(seq 1 "$WORKBOOK_RUNS"); do
            timed "$dir/out" "$dir/err" \
                "$BIN" --config "$dir/$file.m/config.toml" preview --limit 10 --out "$dir/$file.m/preview"
            if [[ "$RC" != 0 ]] || ! grep -q "rows $rows, valid $rows, invalid 0" "$dir/out"; then
                cat "$dir/out" "$dir/err" >&2
                echo "preview of $file exited $RC" >&2
                exit 1
            fi
            times+=("$TIME_S")
            if (( RSS_KB > rss_max )); then rss_max=$RSS_KB; fi
        done
        median="$(printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')"
        echo "$file $rows rows: median $median s of ${times[*]}, peak RSS $(calc "round($rss_max / 1024, 1)") MiB ($rss_max KB), load $load"
    done
    rm -rf "$dir"
done
