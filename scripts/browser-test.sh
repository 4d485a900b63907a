#!/usr/bin/env bash
# Real-browser test of the demo chat page (issue 4, item 8).
#
# Installs what it needs when missing (Debian chromium; playwright-core from
# tests/browser/package-lock.json), builds and starts the chat example on a
# free loopback port, then runs tests/browser/chat.test.mjs with node's test
# runner: three pages in three browser contexts, two in room A and one in
# room B; a message typed in the first reaches the second and not the third;
# POST /rooms/A/announce reaches the first two. A screenshot of page 2 goes to
# .work/browser/page2.png. Then the same chat as two nodes behind one
# redis-server (started here, on a free port): tests/browser/cluster.test.mjs
# puts alice on node 1 and bob and carol on node 2, and checks that rooms,
# the except-sender reply and announcements span both nodes. Exits non-zero
# on any failure, printing the tail of every server log.
#
# Idempotent: a second run installs nothing. Env: CHROMIUM (default
# /usr/bin/chromium), BROWSER_TEST_SKIP_BUILD=1 to use an already built example.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
WORK="$ROOT/.work/browser"
TESTS="$ROOT/tests/browser"
CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
export CHROMIUM
mkdir -p "$WORK"

log() { printf '[browser-test] %s\n' "$*" >&2; }

# --- 1. Tools -----------------------------------------------------------------
missing=()
[[ -x "$CHROMIUM" ]] || missing+=(chromium)
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
command -v curl >/dev/null 2>&1 || missing+=(curl)
if ((${#missing[@]})); then
    log "installing ${missing[*]} (apt)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
[[ -x "$CHROMIUM" ]] || { log "no Chromium at $CHROMIUM"; exit 1; }
node_major="$(node -p 'process.versions.node.split(".")[0]')"
if ((node_major < 20)); then
    log "node $(node --version) is too old: playwright-core needs node >= 20"
    exit 1
fi

# npm ci only when node_modules is missing or older than the lock file.
if [[ ! -f "$TESTS/node_modules/.package-lock.json" || "$TESTS/package-lock.json" -nt "$TESTS/node_modules/.package-lock.json" ]]; then
    log "npm ci in tests/browser"
    (cd "$TESTS" && npm ci --no-audit --no-fund --loglevel=error)
fi

# --- 2. The chat example --------------------------------------------------------
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
CHAT_BIN="$TARGET_DIR/release/examples/chat"
if [[ "${BROWSER_TEST_SKIP_BUILD:-0}" != 1 ]]; then
    log "building the chat example (release)"
    cargo build --release --quiet -p roomwire-tokio --example chat
fi
[[ -x "$CHAT_BIN" ]] || { log "no chat example at $CHAT_BIN"; exit 1; }

# Every process started here, stopped on exit; logs shown on failure.
PIDS=()
LOGS=()
REDIS_PID=""
status=0
stop() { # PID: SIGINT (the example's graceful shutdown, Ctrl-C), SIGKILL after 5 s
    local pid="$1"
    kill -0 "$pid" 2>/dev/null || return 0
    kill -INT "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}
cleanup() {
    status=$?
    local pid log
    for pid in "${PIDS[@]}"; do stop "$pid"; done
    [[ -n "$REDIS_PID" ]] && { kill -KILL "$REDIS_PID" 2>/dev/null || true; wait "$REDIS_PID" 2>/dev/null || true; }
    if ((status != 0)); then
        for log in "${LOGS[@]}"; do
            log "FAILED (exit $status); server log tail ($log):"
            tail -n 40 "$log" 2>/dev/null | sed 's/^/  | /' >&2 || true
        done
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# start_chat LOG [ARGS...]: start the chat example on a free port and set
# CHAT_URL to its address. Port 0: the OS picks a free port and the example
# prints the address it got ("chat: http://127.0.0.1:PORT/ ..."), so no other
# process can take it meanwhile.
start_chat() {
    local log="$1" pid
    shift
    : >"$log"
    NO_COLOR=1 RUST_LOG="${RUST_LOG:-info}" "$CHAT_BIN" --listen 127.0.0.1:0 "$@" >"$log" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    LOGS+=("$log")
    CHAT_URL=""
    for _ in $(seq 300); do # up to 30 s
        kill -0 "$pid" 2>/dev/null || { log "the chat example exited early"; exit 1; }
        CHAT_URL="$(grep -o -m1 'http://127\.0\.0\.1:[0-9]*/' "$log" || true)"
        [[ -n "$CHAT_URL" ]] && curl -fsS -o /dev/null --max-time 2 "$CHAT_URL" && break
        sleep 0.1
    done
    if [[ -z "$CHAT_URL" ]] || ! curl -fsS -o /dev/null --max-time 2 "$CHAT_URL"; then
        log "the chat example did not answer HTTP within 30 s"
        exit 1
    fi
    log "chat example up at $CHAT_URL (pid $pid) $*"
}

start_chat "$WORK/server.log"

# --- 3. The test ------------------------------------------------------------------
export CHAT_URL SCREENSHOT_DIR="$WORK"
# --test-timeout: a hung browser cannot stall the run (every wait inside has its own 10 s guard).
node --test --test-reporter=spec --test-timeout=120000 "$TESTS/chat.test.mjs"

# --- 4. Two nodes behind one Redis -----------------------------------------------
command -v redis-server >/dev/null 2>&1 || {
    log "installing redis-server (apt)"
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends redis-server >/dev/null
}
REDIS_PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no >"$WORK/redis.log" 2>&1 &
REDIS_PID=$!
for _ in $(seq 100); do redis-cli -p "$REDIS_PORT" ping 2>/dev/null | grep -q PONG && break; sleep 0.1; done
start_chat "$WORK/node1.log" --redis "redis://127.0.0.1:$REDIS_PORT"
CHAT_URL_1="$CHAT_URL"
start_chat "$WORK/node2.log" --redis "redis://127.0.0.1:$REDIS_PORT"
CHAT_URL_2="$CHAT_URL"
export CHAT_URL_1 CHAT_URL_2 REDIS_PORT
node --test --test-reporter=spec --test-timeout=120000 "$TESTS/cluster.test.mjs"
