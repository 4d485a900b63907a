#!/usr/bin/env bash
# Real-browser test of the demo chat page (issue 4, item 8).
#
# Installs what it needs when missing (Debian chromium; playwright-core from
# tests/browser/package-lock.json), builds and starts the chat example on a
# free loopback port, then runs tests/browser/chat.test.mjs with node's test
# runner: three pages in three browser contexts, two in room A and one in
# room B; a message typed in the first reaches the second and not the third;
# POST /rooms/A/announce reaches the first two. A screenshot of page 2 goes to
# .work/browser/page2.png. Exits non-zero on any failure, printing the tail of
# the server log.
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

SERVER_LOG="$WORK/server.log"
SERVER_PID=""
status=0
cleanup() {
    status=$?
    if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
        # SIGINT is the example's graceful shutdown (Ctrl-C); SIGKILL after 5 s.
        kill -INT "$SERVER_PID" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    if ((status != 0)); then
        log "FAILED (exit $status); server log tail ($SERVER_LOG):"
        tail -n 40 "$SERVER_LOG" 2>/dev/null | sed 's/^/  | /' >&2 || true
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Port 0: the OS picks a free port and the example prints the address it got
# ("chat: http://127.0.0.1:PORT/ ..."), so no other process can take it meanwhile.
: >"$SERVER_LOG"
NO_COLOR=1 RUST_LOG="${RUST_LOG:-info}" "$CHAT_BIN" --listen 127.0.0.1:0 >"$SERVER_LOG" 2>&1 &
SERVER_PID=$!

CHAT_URL=""
for _ in $(seq 300); do # up to 30 s
    kill -0 "$SERVER_PID" 2>/dev/null || { log "the chat example exited early"; exit 1; }
    CHAT_URL="$(grep -o -m1 'http://127\.0\.0\.1:[0-9]*/' "$SERVER_LOG" || true)"
    [[ -n "$CHAT_URL" ]] && curl -fsS -o /dev/null --max-time 2 "$CHAT_URL" && break
    sleep 0.1
done
if [[ -z "$CHAT_URL" ]] || ! curl -fsS -o /dev/null --max-time 2 "$CHAT_URL"; then
    log "the chat example did not answer HTTP within 30 s"
    exit 1
fi
log "chat example up at $CHAT_URL (pid $SERVER_PID)"

# --- 3. The test ------------------------------------------------------------------
export CHAT_URL SCREENSHOT_DIR="$WORK"
# --test-timeout: a hung browser cannot stall the run (every wait inside has its own 10 s guard).
node --test --test-reporter=spec --test-timeout=120000 "$TESTS/chat.test.mjs"
