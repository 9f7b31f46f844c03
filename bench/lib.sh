# Shared by the bench/*.sh scripts: sourced, not run.
#
# Sets REPO, BENCH, TMP (a fresh folder under $REPO/target, i.e. on the repository's
# disk and ignored by git, removed on exit), BIN (a copy of the release binary in TMP,
# so that a concurrent `cargo build` cannot swap it mid-run), and an EXIT trap that
# kills every process started with `bg_start` (by PID) and removes TMP.
#
# Environment:
#   UTSKICK_BIN=PATH   use this binary instead of building target/release/utskick
#   BENCH_NO_BUILD=1   do not run `cargo build --release` (use what is there)
#   BENCH_KEEP=1       keep TMP for inspection (its path is printed)

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BENCH="$REPO/bench"
BG_PIDS=()

bench_cleanup() {
    local pid
    for pid in "${BG_PIDS[@]}"; do
        if kill -0 "$pid" 2>/dev/null; then
            kill "$pid" 2>/dev/null || true
            wait "$pid" 2>/dev/null || true
        fi
    done
    if [[ -n "${TMP:-}" && -d "$TMP" ]]; then
        if [[ "${BENCH_KEEP:-}" == 1 ]]; then
            echo "kept $TMP" >&2
        else
            rm -rf "$TMP"
        fi
    fi
}
trap bench_cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$REPO/target"
TMP="$(mktemp -d -p "$REPO/target" bench.XXXXXX)"

if [[ -n "${UTSKICK_BIN:-}" ]]; then
    cp "$UTSKICK_BIN" "$TMP/utskick"
else
    if [[ "${BENCH_NO_BUILD:-}" != 1 ]]; then
        (cd "$REPO" && cargo build --release --quiet) >&2
    fi
    cp "$REPO/target/release/utskick" "$TMP/utskick"
fi
BIN="$TMP/utskick"
chmod 755 "$BIN"

# Starts a command in the background, remembers its PID for the EXIT trap.
# Usage: bg_start LOGFILE CMD ARGS... ; the PID is in $BG_PID.
bg_start() {
    local log="$1"
    shift
    "$@" >"$log" 2>&1 &
    BG_PID=$!
    BG_PIDS+=("$BG_PID")
}

# Stops one background process started with bg_start (SIGTERM, then waits for it).
bg_stop() {
    local pid="$1"
    if kill -0 "$pid" 2>/dev/null; then
        kill "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

# A free TCP port on 127.0.0.1.
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# Waits (at most 10 s) until something listens on 127.0.0.1:PORT.
wait_port() {
    local port="$1" i
    for i in $(seq 1 100); do
        if python3 -c 'import socket,sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 0.2).close()' "$port" 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    echo "nothing listens on 127.0.0.1:$port" >&2
    return 1
}

# The load figure that goes next to every number.
load_now() {
    uptime | sed -E 's/.*load average: *//'
}

# A mailing folder: DIR gets config.toml and templates/ from the repository, with the
# recipients path set to CSV (copied or moved in by the caller) and extra config keys.
# Usage: make_mailing DIR CSV_NAME [section.key=VALUE ...]
make_mailing() {
    local dir="$1" csv="$2"
    shift 2
    mkdir -p "$dir"
    cp "$REPO/config.toml" "$dir/config.toml"
    cp -r "$REPO/templates" "$dir/templates"
    python3 "$BENCH/set_config.py" "$dir/config.toml" "recipients.path=\"$csv\"" "$@"
}

# Runs a command under /usr/bin/time; sets TIME_S (wall seconds), RSS_KB (peak RSS) and
# RC (exit code). Usage: timed OUT_FILE ERR_FILE CMD ARGS...
timed() {
    local out="$1" err="$2"
    shift 2
    local tf="$TMP/.time.$$"
    set +e
    /usr/bin/time -f '%e %M' -o "$tf" "$@" >"$out" 2>"$err"
    RC=$?
    set -e
    read -r TIME_S RSS_KB < <(tail -n 1 "$tf")
    rm -f "$tf"
}

# Floating-point helper: calc 'EXPR' prints the value with python.
calc() {
    python3 -c "print($1)"
}

# pass/fail of a Python boolean expression.
verdict() {
    if [[ "$(python3 -c "print(bool($1))")" == True ]]; then echo pass; else echo FAIL; fi
}
