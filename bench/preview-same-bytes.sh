#!/usr/bin/env bash
# Issue 12's check: `preview` of the shipped example writes the same messages, byte for
# byte (Date and MIME boundaries aside), with an old binary and a new one. Files are
# matched by Message-ID (the file names changed on purpose: a hash of the key now keeps
# them unique).
#
#   bench/preview-same-bytes.sh OLD_BINARY [NEW_BINARY]
#
# NEW_BINARY defaults to target/release/utskick. Prints one line per message and exits 1
# on any difference.
set -euo pipefail
old="${1:?usage: $0 OLD_BINARY [NEW_BINARY]}"
repo="$(cd "$(dirname "$0")/.." && pwd)"
new="${2:-$repo/target/release/utskick}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
for side in old new; do
    mkdir -p "$tmp/$side"
    cp -r "$repo/config.toml" "$repo/templates" "$repo/recipients.example.csv" "$tmp/$side/"
done
"$old" --config "$tmp/old/config.toml" preview --out "$tmp/old/preview" >/dev/null 2>&1
"$new" --config "$tmp/new/config.toml" preview --out "$tmp/new/preview" >/dev/null 2>&1
python3 - "$tmp/old/preview" "$tmp/new/preview" <<'PY'
import pathlib, re, sys

def normalized(path):
    data = path.read_bytes()
    data = re.sub(rb"^Date: [^\r\n]*\r\n", b"Date: X\r\n", data, flags=re.M)
    bounds = sorted(set(re.findall(rb'boundary="([^"]+)"', data)), key=len, reverse=True)
    for i, b in enumerate(bounds):
        data = data.replace(b, b"BOUNDARY%d" % i)
    return data

def by_id(folder):
    out = {}
    for p in sorted(pathlib.Path(folder).glob("*.eml")):
        m = re.search(rb"^Message-ID: ([^\r\n]+)", p.read_bytes(), flags=re.M)
        out[m.group(1).decode()] = p
    return out

old, new = by_id(sys.argv[1]), by_id(sys.argv[2])
bad = 0
if sorted(old) != sorted(new):
    print(f"different Message-IDs: old {len(old)}, new {len(new)}")
    bad += 1
for mid in sorted(set(old) & set(new)):
    same = normalized(old[mid]) == normalized(new[mid])
    print(f"{'same' if same else 'DIFFERENT'}  {old[mid].name} -> {new[mid].name}  {mid}")
    bad += not same
print(f"{len(old)} old, {len(new)} new, {bad} differences")
sys.exit(1 if bad or not old else 0)
PY
