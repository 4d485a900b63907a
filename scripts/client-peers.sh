#!/usr/bin/env bash
# The chat_client example, given nothing but a room and --url, against the
# roomwire chat demo and against an Alepha-style Node `ws` server
# (tests/alepha-node/server.js): two clients in one room, each line typed in
# one arrives in the other, both ways. Bounded: every wait has a deadline.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
log() { echo "client-peers: $*"; }
die() {
    echo "client-peers: ERROR: $*" >&2
    exit 1
}

command -v node >/dev/null || die "node is needed"
if [ ! -d tests/alepha-node/node_modules/ws ]; then
    log "npm ci in tests/alepha-node"
    (cd tests/alepha-node && npm ci --no-audit --no-fund --loglevel=error)
fi
cargo build -q -p roomwire-tokio --example chat --example chat_client
TARGET_DIR="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
BIN="$TARGET_DIR/debug/examples"

WORK="$(mktemp -d)"
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# wait_for FILE PATTERN TENTHS: until FILE holds PATTERN, at most TENTHS tenths of a second.
wait_for() {
    local tries=$3
    until grep -q -- "$2" "$1" 2>/dev/null; do
        ((tries-- > 0)) || return 1
        sleep 0.1
    done
}

# exchange NAME URL: alice and bob in "lobby" on URL; each says a line until
# the other prints it.
exchange() {
    local name=$1 url=$2 who
    for who in alice bob; do
        mkfifo "$WORK/$name-$who.in"
        "$BIN/chat_client" lobby --url "$url" <"$WORK/$name-$who.in" >"$WORK/$name-$who.out" 2>"$WORK/$name-$who.err" &
        PIDS+=($!)
        # Hold the fifo open for writing, so the client's input stays open.
        eval "exec {fd_$who}>\"$WORK/$name-$who.in\""
    done
    wait_for "$WORK/$name-alice.err" "connected" 200 || die "$name: alice did not connect: $(cat "$WORK/$name-alice.err")"
    wait_for "$WORK/$name-bob.err" "connected" 200 || die "$name: bob did not connect: $(cat "$WORK/$name-bob.err")"
    local from to fd i
    for from in alice bob; do
        to=$([ "$from" = alice ] && echo bob || echo alice)
        fd="fd_$from"
        for i in $(seq 1 40); do
            echo "hello from $from" >&"${!fd}"
            wait_for "$WORK/$name-$to.out" "hello from $from" 5 && break
        done
        grep -q "\[lobby\] .*: hello from $from" "$WORK/$name-$to.out" ||
            die "$name: $to never printed $from's line; $to printed: $(cat "$WORK/$name-$to.out" "$WORK/$name-$to.err")"
        if grep -q "hello from $from" "$WORK/$name-$from.out"; then
            die "$name: $from received its own line"
        fi
    done
    log "$name: both ways OK ($(grep -o 'connected ([A-Za-z]*)' "$WORK/$name-alice.err" | tail -1))"
    eval "exec {fd_alice}>&- {fd_bob}>&-"
}

# 1. The roomwire chat demo.
PORT="$(free_port)"
"$BIN/chat" --listen "127.0.0.1:$PORT" >"$WORK/chat.log" 2>&1 &
PIDS+=($!)
deadline=$((SECONDS + 20))
until (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; do
    ((SECONDS < deadline)) || die "the chat demo did not listen: $(cat "$WORK/chat.log")"
    sleep 0.1
done
exchange roomwire "ws://127.0.0.1:$PORT"
grep -q "connected (Json)" "$WORK/roomwire-alice.err" || die "roomwire: expected the roomwire JSON wire"

# 2. An Alepha-style Node ws server.
node tests/alepha-node/server.js 127.0.0.1:0 >"$WORK/node.log" 2>&1 &
PIDS+=($!)
wait_for "$WORK/node.log" "listening on" 200 || die "the Node server did not start: $(cat "$WORK/node.log")"
NODE_PORT="$(sed -n 's/^listening on //p' "$WORK/node.log")"
exchange alepha "ws://127.0.0.1:$NODE_PORT"
grep -q "connected (Alepha)" "$WORK/alepha-alice.err" || die "alepha: expected the Alepha wire"
log "OK"
