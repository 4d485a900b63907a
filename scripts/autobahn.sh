#!/usr/bin/env bash
# Runs Autobahn|Testsuite (every case, 1.* to 13.*; 12 and 13 are permessage-deflate) against roomwire and compares the results with the
# locked expected file. wstest itself exits 0 even when cases fail; the verdict comes from
# scripts/autobahn_compare.py reading <outdir>/index.json.
#
# Usage: scripts/autobahn.sh server|client
#   server  build and start the `echo` example of roomwire-tokio, test it with
#           `wstest -m fuzzingclient`; expected file tests/autobahn/expected-server.json
#   client  start `wstest -m fuzzingserver`, run the `autobahn-client` example of roomwire-tokio
#           against it; expected file tests/autobahn/expected-client.json
#
# Environment:
#   AUTOBAHN_UPDATE=1            rewrite the expected file from this run instead of comparing
#   AUTOBAHN_SERVER_PORT=9001    port of the echo server under test (server mode)
#   AUTOBAHN_CLIENT_PORT=9002    port of wstest's fuzzing server (client mode)
#   AUTOBAHN_SERVER_TIMEOUT=1800 seconds allowed for the wstest run in server mode (about 10 min on
#                                2 shared cores: wstest's own compression in cases 12.* is slow)
#   AUTOBAHN_CLIENT_TIMEOUT=1800 seconds allowed for the client run in client mode (wstest's
#                                fuzzing server gets 30 s more, as a safety net)
#   AUTOBAHN_PORT_WAIT=30        seconds to wait for a port to accept connections
#   AUTOBAHN_NO_BUILD=1          skip the cargo build (use binaries already built)
#   AUTOBAHN_ECHO_BIN, AUTOBAHN_CLIENT_BIN
#                                run these programs instead of the built examples
#                                (same arguments: `ECHO HOST:PORT`, `CLIENT URL AGENT`)
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"

MODE="${1:-}"
case "$MODE" in
    server | client) ;;
    *)
        echo "usage: $0 server|client" >&2
        exit 2
        ;;
esac

HOST=127.0.0.1
AGENT=roomwire
SERVER_PORT="${AUTOBAHN_SERVER_PORT:-9001}"
CLIENT_PORT="${AUTOBAHN_CLIENT_PORT:-9002}"
SERVER_TIMEOUT="${AUTOBAHN_SERVER_TIMEOUT:-1800}"
CLIENT_TIMEOUT="${AUTOBAHN_CLIENT_TIMEOUT:-1800}"
PORT_WAIT="${AUTOBAHN_PORT_WAIT:-30}"

W="$ROOT/.work/autobahn"
WSTEST="$W/venv27/bin/wstest"
OUTDIR="$W/reports/$MODE"
SPEC="$W/spec-$MODE.json"
EXPECTED="tests/autobahn/expected-$MODE.json"
LABEL="autobahn $MODE"

log() { echo "autobahn.sh[$MODE]: $*"; }
die() {
    echo "autobahn.sh[$MODE]: ERROR: $*" >&2
    exit 1
}

# --- background processes, always cleaned up -----------------------------------------------------
BG_PIDS=()
cleanup() {
    local pid i
    for pid in "${BG_PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${BG_PIDS[@]}"; do
        for ((i = 0; i < 50; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    BG_PIDS=()
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

# wait_port HOST PORT PID LOGFILE: wait until HOST:PORT accepts, failing early if PID dies.
wait_port() {
    local host="$1" port="$2" pid="$3" logfile="$4" deadline=$((SECONDS + PORT_WAIT))
    until port_open "$host" "$port"; do
        if ! kill -0 "$pid" 2>/dev/null; then
            tail -n 30 "$logfile" >&2 || true
            die "process $pid exited before $host:$port accepted connections (log: ${logfile#"$ROOT"/})"
        fi
        if ((SECONDS >= deadline)); then
            tail -n 30 "$logfile" >&2 || true
            die "$host:$port did not accept connections within ${PORT_WAIT}s (log: ${logfile#"$ROOT"/})"
        fi
        sleep 0.2
    done
}

require_port_free() {
    if port_open "$1" "$2"; then
        die "something already listens on $1:$2; stop it or choose another port with $3"
    fi
}

# run_timed SECONDS LOGFILE WHAT CMD...: run CMD under `timeout`, output to LOGFILE, explain failures.
run_timed() {
    local secs="$1" logfile="$2" what="$3" rc=0
    shift 3
    timeout --foreground --kill-after=10 "$secs" "$@" >"$logfile" 2>&1 || rc=$?
    if ((rc == 124 || rc == 137)); then
        tail -n 30 "$logfile" >&2 || true
        die "$what timed out after ${secs}s (log: ${logfile#"$ROOT"/})"
    elif ((rc != 0)); then
        tail -n 30 "$logfile" >&2 || true
        die "$what exited with status $rc (log: ${logfile#"$ROOT"/})"
    fi
}

target_dir() {
    cargo metadata --format-version 1 --no-deps |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])'
}

# write_spec server|client URL: write the wstest spec to $SPEC.
write_spec() {
    python3 - "$1" "$2" "$OUTDIR" "$AGENT" "$SPEC" <<'PY'
import json, sys
mode, url, outdir, agent, path = sys.argv[1:]
if mode == "server":
    spec = {"outdir": outdir, "servers": [{"agent": agent, "url": url}]}
else:
    spec = {"url": url, "outdir": outdir}
spec.update({"cases": ["*"], "exclude-cases": [], "exclude-agent-cases": {}})
with open(path, "w") as f:
    json.dump(spec, f, indent=2)
    f.write("\n")
PY
}

build_example() {
    local example="$1"
    if [ "${AUTOBAHN_NO_BUILD:-0}" = 1 ]; then
        log "AUTOBAHN_NO_BUILD=1: not building example $example"
    else
        log "building example $example (release)"
        cargo build --release -p roomwire-tokio --example "$example"
    fi
}

# --- common setup ---------------------------------------------------------------------------------
"$ROOT/scripts/install-autobahn.sh"
mkdir -p "$W"
rm -rf "$OUTDIR"
mkdir -p "$OUTDIR"

run_server_mode() {
    build_example echo
    local echo_bin="${AUTOBAHN_ECHO_BIN:-}"
    if [ -z "$echo_bin" ]; then
        echo_bin="$(target_dir)/release/examples/echo"
    fi
    [ -x "$echo_bin" ] || die "echo server binary not found: $echo_bin"

    write_spec server "ws://$HOST:$SERVER_PORT"

    require_port_free "$HOST" "$SERVER_PORT" AUTOBAHN_SERVER_PORT
    local server_log="$W/echo-server.log"
    log "starting $echo_bin $HOST:$SERVER_PORT (log: ${server_log#"$ROOT"/})"
    "$echo_bin" "$HOST:$SERVER_PORT" >"$server_log" 2>&1 &
    local server_pid=$!
    BG_PIDS+=("$server_pid")
    wait_port "$HOST" "$SERVER_PORT" "$server_pid" "$server_log"

    local wstest_log="$W/wstest-server.log"
    log "running wstest -m fuzzingclient against ws://$HOST:$SERVER_PORT (timeout ${SERVER_TIMEOUT}s, log: ${wstest_log#"$ROOT"/})"
    local start=$SECONDS
    run_timed "$SERVER_TIMEOUT" "$wstest_log" "wstest -m fuzzingclient" \
        "$WSTEST" -m fuzzingclient -s "$SPEC"
    log "wstest finished in $((SECONDS - start))s"

    if ! kill -0 "$server_pid" 2>/dev/null; then
        tail -n 30 "$server_log" >&2 || true
        die "the echo server died during the test run (log: ${server_log#"$ROOT"/})"
    fi
    cleanup
}

run_client_mode() {
    build_example autobahn-client
    local client_bin="${AUTOBAHN_CLIENT_BIN:-}"
    if [ -z "$client_bin" ]; then
        client_bin="$(target_dir)/release/examples/autobahn-client"
    fi
    [ -x "$client_bin" ] || die "client binary not found: $client_bin"

    write_spec client "ws://$HOST:$CLIENT_PORT"

    require_port_free "$HOST" "$CLIENT_PORT" AUTOBAHN_CLIENT_PORT
    local wstest_log="$W/wstest-client.log"
    log "starting wstest -m fuzzingserver on ws://$HOST:$CLIENT_PORT (log: ${wstest_log#"$ROOT"/})"
    # The client run below has the real time limit; this one is a safety net that fires later.
    timeout --kill-after=10 "$((CLIENT_TIMEOUT + 30))" "$WSTEST" -m fuzzingserver -s "$SPEC" -u 0 >"$wstest_log" 2>&1 &
    local wstest_pid=$!
    BG_PIDS+=("$wstest_pid")
    wait_port "$HOST" "$CLIENT_PORT" "$wstest_pid" "$wstest_log"

    local client_log="$W/client.log"
    log "running $client_bin ws://$HOST:$CLIENT_PORT $AGENT (timeout ${CLIENT_TIMEOUT}s, log: ${client_log#"$ROOT"/})"
    local start=$SECONDS
    run_timed "$CLIENT_TIMEOUT" "$client_log" "the autobahn client" \
        "$client_bin" "ws://$HOST:$CLIENT_PORT" "$AGENT"
    log "client finished in $((SECONDS - start))s"

    if ! kill -0 "$wstest_pid" 2>/dev/null; then
        tail -n 30 "$wstest_log" >&2 || true
        die "wstest -m fuzzingserver exited during the run (log: ${wstest_log#"$ROOT"/})"
    fi
    cleanup
}

"run_${MODE}_mode"

[ -f "$OUTDIR/index.json" ] || die "wstest wrote no ${OUTDIR#"$ROOT"/}/index.json"
log "HTML report: ${OUTDIR#"$ROOT"/}/index.html"

if [ "${AUTOBAHN_UPDATE:-0}" = 1 ]; then
    log "AUTOBAHN_UPDATE=1: rewriting $EXPECTED"
    python3 "$ROOT/scripts/autobahn_compare.py" update "$OUTDIR" "$EXPECTED" --agent "$AGENT" --label "$LABEL"
else
    python3 "$ROOT/scripts/autobahn_compare.py" compare "$OUTDIR" "$EXPECTED" --agent "$AGENT" --label "$LABEL"
fi
