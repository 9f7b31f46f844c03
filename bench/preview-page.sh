#!/usr/bin/env bash
# The preview page at scale: for a generated mailing (100,000 rows by default), the
# wall time of a full `utskick preview` (every message written) and of
# `preview --variants`, the size of index.html and of the folder, then the page in
# headless Chromium: how long it takes to be ready (the page's own clock, from
# navigation start to the end of its script, read from `data-ready-ms` in the dumped
# DOM, and the whole Chromium run's wall time) and how long a search takes
# (`data-search-ms`: one search over every row, by category and by a single key).
#
#   bench/preview-page.sh
#
# Environment:
#   PAGE_ROWS=100000     rows
#   PAGE_RUNS=3          Chromium runs per figure (the median is reported)
# plus those of bench/lib.sh. Needs `chromium` (Debian's package) on PATH.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

PAGE_ROWS="${PAGE_ROWS:-100000}"
PAGE_RUNS="${PAGE_RUNS:-3}"
CHROMIUM="$(command -v chromium || command -v chromium-browser || true)"
[[ -n "$CHROMIUM" ]] || { echo "chromium not installed" >&2; exit 2; }

dir="$TMP/page"
csv="recipients-$PAGE_ROWS.csv"
mkdir -p "$dir"
python3 "$BENCH/gen_csv.py" "$PAGE_ROWS" "$dir/$csv"
make_mailing "$dir" "$csv"
echo "== $PAGE_ROWS rows ($(du -h "$dir/$csv" | cut -f1) CSV), load $(load_now)"

median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# One headless Chromium run on URL with a fresh profile; prints the dumped DOM's
# data-NAME of <body> and writes the run's wall seconds to $TMP/chrome_s.
chrome_figure() {
    local url="$1" name="$2" profile
    profile="$(mktemp -d -p "$TMP" chrome.XXXXXX)"
    local t0 t1
    t0=$(date +%s.%N)
    timeout 120 "$CHROMIUM" --headless --no-sandbox --disable-gpu --disable-extensions \
        --disable-background-networking --disable-component-update --no-first-run \
        --user-data-dir="$profile" --dump-dom "$url" >"$TMP/dom.html" 2>/dev/null </dev/null
    t1=$(date +%s.%N)
    calc "round($t1 - $t0, 2)" >"$TMP/chrome_s"
    rm -rf "$profile"
    python3 - "$TMP/dom.html" "$name" <<'PY'
import re, sys
dom = open(sys.argv[1], encoding="utf-8").read()
m = re.search(r'<body[^>]*\bdata-%s="([0-9.]+)"' % re.escape(sys.argv[2]), dom)
print(m.group(1) if m else "missing")
PY
}

# Each run into a folder of its own: emptying a folder of 200,000 files first would be
# timed too (it takes minutes on a loaded disk).
for mode in all variants; do
    args=()
    [[ "$mode" == variants ]] && args=(--variants)
    out="$dir/preview-$mode"
    timed "$dir/preview.out" "$dir/preview.err" \
        "$BIN" --config "$dir/config.toml" preview "${args[@]}" --out "$out"
    if [[ "$RC" != 0 ]]; then cat "$dir/preview.err" >&2; exit 1; fi
    grep -q "rows $PAGE_ROWS, valid $PAGE_ROWS, invalid 0" "$dir/preview.out" \
        || { cat "$dir/preview.out" "$dir/preview.err" >&2; exit 1; }
    variants=$(grep -ho '[0-9]* variants of the notice' "$dir/preview.out" "$dir/preview.err" | head -1)
    emls=$(find "$out" -name '*.eml' | wc -l)
    pages=$(find "$out" -name 'v*.html' | wc -l)
    index_b=$(stat -c %s "$out/index.html")
    folder=$(du -sh "$out" | cut -f1)
    echo "preview ${args[*]:-(every message)}: ${TIME_S} s wall, peak RSS ${RSS_KB} KB; $emls .eml, $pages message pages, $variants; index.html $(calc "round($index_b / 1048576, 2)") MiB ($index_b bytes), folder $folder"
    eval "P_TIME_$mode=$TIME_S; P_INDEX_$mode=$index_b"
done

url="file://$dir/preview-all/index.html"
ready=(); walls=(); cat_ms=(); key_ms=()
for run in $(seq 1 "$PAGE_RUNS"); do
    ready+=("$(chrome_figure "$url" ready-ms)"); walls+=("$(cat "$TMP/chrome_s")")
    cat_ms+=("$(chrome_figure "$url#q=telefon" search-ms)")
    key_ms+=("$(chrome_figure "$url#q=$((100000 + PAGE_ROWS / 2))" search-ms)")
done
echo "page ready (its own clock): ${ready[*]} ms; Chromium run wall: ${walls[*]} s"
echo "search 'telefon' (category): ${cat_ms[*]} ms; search one key: ${key_ms[*]} ms"

echo
echo "=== summary: preview page ($(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, $PAGE_ROWS rows, load $(load_now))"
echo "preview wall (every message written): ${P_TIME_all} s; --variants: ${P_TIME_variants} s"
echo "index.html: $(calc "round($P_INDEX_all / 1048576, 2)") MiB"
echo "page ready in headless Chromium: median $(median "${ready[@]}") ms (Chromium run wall, start to exit, median $(median "${walls[@]}") s)"
echo "search: category median $(median "${cat_ms[@]}") ms, one key median $(median "${key_ms[@]}") ms"
echo "target index.html <= 8 MiB: $(verdict "$P_INDEX_all <= 8 * 1048576")"
echo "target page ready < 2 s: $(verdict "$(median "${ready[@]}") < 2000")"
echo "target search < 0.5 s: $(verdict "max($(median "${cat_ms[@]}"), $(median "${key_ms[@]}")) < 500")"
