#!/usr/bin/env bash
# End-to-end tests of roomwire-embassy on the host, as root: an embassy-net stack on a TAP device
# (adapter-embassy/examples/tap_node.rs, 192.0.2.2/24) inside a network namespace this script
# creates, the roomwire-tokio chat server (adapter-tokio/examples/chat.rs, 192.0.2.1:8080) in the
# same namespace, and the tokio peer (adapter-embassy/examples/e2e_peer.rs) that checks:
#   1. the embassy client joins room lobby on the tokio chat server and exchanges typed messages
#      both ways with a tokio client in that room;
#   2. tokio clients join room lobby on the embassy server and talk through it, and the server
#      survives garbage, a cut handshake and a cut frame from other clients;
#   3. on a second embassy server (port 8082, pinging every 2 s), members whose pongs wait unread
#      while a reader that stopped reading holds the room are not closed as dead;
#   4. the embassy server passes the conformance sessions (tests/src/conformance.rs) that the
#      tokio server and the core alone pass in `cargo test`.
# The namespace (and every process started in it) is removed afterwards, also on failure.
#
# Usage: sudo scripts/embassy-e2e.sh        (E2E_TIMEOUT=180 bounds the peer's run, in seconds)
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
NS="roomwire-e2e-$$"
TAP=tap0
TIMEOUT="${E2E_TIMEOUT:-180}"
LOGS="$ROOT/.work/embassy-e2e"
PIDS=()

log() { echo "embassy-e2e: $*"; }
fail() {
    echo "embassy-e2e: ERROR: $*" >&2
    echo "FAIL: embassy-e2e"
    exit 1
}

# shellcheck source=scripts/lib/netns.sh
. "$ROOT/scripts/lib/netns.sh"
trap netns_cleanup EXIT

netns_preflight

cd "$ROOT"
log "building the chat server, the TAP node and the peer"
cargo build -p roomwire-tokio --example chat || fail "building the chat server failed"
cargo build -p roomwire-embassy --example tap_node --example e2e_peer || fail "building the examples failed"
cargo build -p roomwire-tests --bin conformance --bin client_conformance || fail "building the conformance sessions failed"
EXAMPLES="$TARGET_DIR/debug/examples"

mkdir -p "$LOGS"
log "network namespace $NS with $TAP at 192.0.2.1/24"
netns_create_tap "$TAP" 192.0.2.1/24

ip netns exec "$NS" "$EXAMPLES/chat" --listen 192.0.2.1:8080 >"$LOGS/chat.log" 2>&1 &
PIDS+=($!)
ip netns exec "$NS" "$EXAMPLES/tap_node" --tap "$TAP" --server 192.0.2.1:8080 --listen 8081 --listen-short-keepalive 8082 \
    >"$LOGS/tap_node.log" 2>&1 &
TAP_NODE=$!
PIDS+=($TAP_NODE)

set +e
timeout "$TIMEOUT" ip netns exec "$NS" "$EXAMPLES/e2e_peer" 2>&1 | tee "$LOGS/peer.log"
status=${PIPESTATUS[0]}
set -e

if [ "$status" -eq 0 ]; then
    log "conformance sessions against the embassy server (192.0.2.2:8081)"
    set +e
    timeout "$TIMEOUT" ip netns exec "$NS" "$TARGET_DIR/debug/conformance" 192.0.2.2:8081 2>&1 | tee "$LOGS/conformance.log"
    status=${PIPESTATUS[0]}
    set -e
fi

if [ "$status" -eq 0 ]; then
    # The TAP device is the client's now: one node per session.
    kill "$TAP_NODE" 2>/dev/null || true
    wait "$TAP_NODE" 2>/dev/null || true
    log "client conformance sessions against the embassy client (scripted servers on 192.0.2.1)"
    set +e
    timeout "$TIMEOUT" ip netns exec "$NS" "$TARGET_DIR/debug/client_conformance" 192.0.2.1 \
        "$EXAMPLES/tap_node" --tap "$TAP" 2>&1 | tee "$LOGS/client_conformance.log"
    status=${PIPESTATUS[0]}
    set -e
fi

echo "--- tap_node (embassy) log ---"
cat "$LOGS/tap_node.log"

# The server's handler hears of a connection's end only if it heard of its start: garbage, a cut
# handshake, a refused or oversized request never reach `on_connect`, so never `on_disconnect`.
if [ "$status" -eq 0 ] && ! python3 - "$LOGS/tap_node.log" <<'PY'; then
import re, sys
open_members, bad = set(), []
for line in open(sys.argv[1], encoding="utf-8", errors="replace"):
    m = re.search(r"server (\d+): member (\d+) (connected|disconnected)", line)
    if not m:
        continue
    member, what = m.group(1) + "/" + m.group(2), m.group(3)
    if what == "connected":
        if member in open_members:
            bad.append("member %s connected twice: %s" % (member, line.strip()))
        open_members.add(member)
    elif member in open_members:
        open_members.remove(member)
    else:
        bad.append("on_disconnect without on_connect: " + line.strip())
for b in bad:
    print("embassy-e2e: " + b, file=sys.stderr)
sys.exit(1 if bad else 0)
PY
    status=1
    log "the server's handler heard of ends it had not heard begin (above)"
fi
echo "--- chat server log (last lines) ---"
tail -n 20 "$LOGS/chat.log"
[ "$status" -eq 0 ] || fail "the peer reported failures (exit $status)"
echo "PASS: embassy-e2e"
