#!/usr/bin/env bash
# What DKIM signing costs: `utskick preview` writing every message of DKIM_ROWS generated
# rows, unsigned, signed with an RSA 2048 key and signed with an Ed25519 key (both made
# by openssl), wall time (median of DKIM_RUNS runs) and the time signing adds per message.
#
#   bench/dkim.sh
#
# Environment:
#   DKIM_ROWS=20000   rows (every one is built, signed and written)
#   DKIM_RUNS=3       runs per variant; the median is reported
# plus those of bench/lib.sh.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

DKIM_ROWS="${DKIM_ROWS:-20000}"
DKIM_RUNS="${DKIM_RUNS:-3}"

dir="$TMP/m"
csv="recipients.csv"
mkdir -p "$dir"
python3 "$BENCH/gen_csv.py" "$DKIM_ROWS" "$dir/$csv"
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$TMP/rsa.pem" 2>/dev/null
openssl genpkey -algorithm ed25519 -out "$TMP/ed25519.pem" 2>/dev/null
chmod 600 "$TMP/rsa.pem" "$TMP/ed25519.pem"

declare -A MEDIAN
echo "== $DKIM_ROWS rows, every message written (load $(load_now))"
for variant in none rsa ed25519; do
    vdir="$TMP/$variant"
    make_mailing "$vdir" "$csv"
    if [[ "$variant" != none ]]; then
        # config.toml has [dkim] only as a comment: the section goes at the end.
        printf '\n[dkim]\nselector = "bench"\nkey_file = "%s"\n' "$TMP/$variant.pem" >>"$vdir/config.toml"
    fi
    cp "$dir/$csv" "$vdir/$csv"
    times=()
    for run in $(seq 1 "$DKIM_RUNS"); do
        rm -rf "$vdir/preview"
        timed "$vdir/out" "$vdir/err" "$BIN" --config "$vdir/config.toml" preview --out "$vdir/preview"
        if [[ "$RC" != 0 ]]; then
            echo "preview ($variant) failed: $(cat "$vdir/err")" >&2
            exit 1
        fi
        times+=("$TIME_S")
    done
    if [[ "$variant" != none ]]; then
        head -c 15 "$(ls "$vdir"/preview/*.eml | head -1)" | grep -q '^DKIM-Signature' \
            || { echo "$variant: the messages are not signed" >&2; exit 1; }
    fi
    MEDIAN[$variant]="$(printf '%s\n' "${times[@]}" | sort -n | sed -n "$(( (DKIM_RUNS + 1) / 2 ))p")"
    echo "$variant: ${MEDIAN[$variant]} s (runs: ${times[*]})"
done
for variant in rsa ed25519; do
    per="$(calc "round((${MEDIAN[$variant]} - ${MEDIAN[none]}) / $DKIM_ROWS * 1e6)")"
    echo "$variant signing adds ${per} µs a message"
done
