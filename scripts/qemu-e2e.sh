#!/usr/bin/env bash
# End to end on an emulated Cortex-M4, as root: the firmware firmware/src/bin/qemu-room.rs
# (thumbv7em-none-eabihf: the LAN9118 driver drivers/lan9118, embassy-net, the roomwire-embassy
# client) runs on QEMU mps2-an386 and joins room plant-1 of /ws/telemetry on a roomwire-tokio
# server (adapter-embassy/examples/telemetry_peer.rs), postcard wire. Networking: a TAP device in a
# network namespace this script creates; QEMU, the servers and the operator all run inside it
# (192.0.2.1 host side, 192.0.2.2 the firmware). Nothing leaves the namespace; no slirp.
#
#   1. bad input: first a hostile server answers the firmware's connections with garbage, a
#      reserved opcode, a frame cut short, silence (handshake timeout) and a stall (keepalive);
#      the firmware must reconnect after each;
#   2. the real server: a tokio operator in the same room receives the firmware's typed readings,
#      sends command 1 and receives its acknowledgement;
#   3. reconnect: the server is killed (-9) and restarted; the firmware reconnects with backoff and
#      rejoins; a second operator checks that the readings carry command 1's set point, sends the
#      last command, and receives its acknowledgement; the firmware closes and exits 0;
#   4. a link that drops frames: a fresh boot whose NIC reaches the TAP device through
#      scripts/lossy_link.py, which drops 20% of the frames each way (QEMU_E2E_LOSS); step 2 again
#      with 10 readings.
# Then (unless QEMU_E2E_IRQ=0) the interrupt-driven build (feature qemu-irq) runs step 2 alone, and
# the footprint of the firmware is printed (scripts/qemu_room_size.py: flash, static RAM, roomwire's
# share and the driver's).
#
# Installs what it needs when missing (rustup target, qemu-system-arm, iproute2). The namespace and
# every process started in it are removed afterwards, also on failure. Logs: .work/qemu-e2e/.
#
# Usage: sudo scripts/qemu-e2e.sh        (QEMU_E2E_TIMEOUT=120 bounds each QEMU run, in seconds)
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
TARGET=thumbv7em-none-eabihf
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
NS="roomwire-qemu-$$"
TAP=tap0
HOST=192.0.2.1
GUEST=192.0.2.2
PORT=8080
URL="ws://$HOST:$PORT"
TIMEOUT="${QEMU_E2E_TIMEOUT:-120}"
IRQ_RUN="${QEMU_E2E_IRQ:-1}"
LOGS="$ROOT/.work/qemu-e2e"
PIDS=()
SERVER_PID=
QEMU_PID=

log() { echo "qemu-e2e: $*"; }
fail() {
    echo "qemu-e2e: ERROR: $*" >&2
    for f in qemu.log qemu-irq.log server.log hostile.log; do
        if [ -s "$LOGS/$f" ]; then
            echo "--- $f (last lines) ---" >&2
            tail -n 30 "$LOGS/$f" >&2
        fi
    done
    echo "FAIL: qemu-e2e"
    exit 1
}

# shellcheck source=scripts/lib/netns.sh
. "$ROOT/scripts/lib/netns.sh"
trap netns_cleanup EXIT

netns_preflight qemu-system-arm:qemu-system-arm
if ! rustup target list --installed | grep -qx "$TARGET"; then
    log "rustup target add $TARGET"
    rustup target add "$TARGET"
fi

cd "$ROOT"
log "building the firmware (qemu-room, release) and the tokio peer"
(cd firmware && cargo build --release --target "$TARGET" --target-dir "$ROOT/firmware/target" --no-default-features --features qemu --bin qemu-room) ||
    fail "building the firmware failed"
cp "$ROOT/firmware/target/$TARGET/release/qemu-room" "$ROOT/firmware/target/$TARGET/release/qemu-room-polled"
cargo build -p roomwire-embassy --example telemetry_peer || fail "building the tokio peer failed"
PEER="$TARGET_DIR/debug/examples/telemetry_peer"
FIRMWARE="$ROOT/firmware/target/$TARGET/release/qemu-room-polled"

rm -rf "$LOGS"
mkdir -p "$LOGS"
log "network namespace $NS with $TAP at $HOST/24 (the firmware is 192.0.2.2)"
netns_create_tap "$TAP" "$HOST/24"

in_ns() { ip netns exec "$NS" "$@"; }

# Background processes are started with `ip netns exec` itself (not through a shell function), so
# that $! is the process (ip execs the command in place) and `kill` reaches it.
start_server() {
    ip netns exec "$NS" "$PEER" server --listen "$HOST:$PORT" >>"$LOGS/server.log" 2>&1 &
    SERVER_PID=$!
    PIDS+=("$SERVER_PID")
    for _ in $(seq 50); do
        grep -q "listening on" "$LOGS/server.log" 2>/dev/null && return 0
        sleep 0.1
    done
    fail "the server did not start"
}

start_qemu() { # ELF LOG [NETWORK OPTIONS...]: by default the NIC is on the TAP device itself
    local elf="$1" out="$2"
    shift 2
    local net=(-nic "tap,ifname=$TAP,script=no,downscript=no,model=lan9118")
    if (($#)); then net=("$@"); fi
    ip netns exec "$NS" timeout "$TIMEOUT" qemu-system-arm -cpu cortex-m4 -machine mps2-an386 -nographic \
        -semihosting-config enable=on,target=native "${net[@]}" -kernel "$elf" >"$out" 2>&1 &
    QEMU_PID=$!
    PIDS+=("$QEMU_PID")
}

# How many of the firmware's connections the server has seen end (its user is the peer's address).
firmware_ends() { grep -c "^server: disconnect .* user Some(\"$GUEST\")" "$LOGS/server.log" || true; }
# After $1 such ends, the server must see the firmware's last connection end with its close frame
# (1000), not a dropped link; waits for the server's log (up to 10 s).
expect_clean_close() {
    local line=""
    for _ in $(seq 100); do
        line="$(grep "^server: disconnect .* user Some(\"$GUEST\")" "$LOGS/server.log" | tail -n 1)"
        if [ "$(firmware_ends)" -gt "$1" ] && [[ "$line" == *"code Some(Normal)"* ]]; then
            return 0
        fi
        sleep 0.1
    done
    fail "the firmware's last connection did not end with a clean close (last seen: ${line:-none})"
}

wait_qemu() { # LOG: QEMU's exit status must be 0 (semihosting EXIT_SUCCESS)
    local status=0
    wait "$QEMU_PID" || status=$?
    echo "--- firmware ($1) ---"
    cat "$LOGS/$1"
    if [ "$status" -eq 124 ]; then
        fail "QEMU timed out after ${TIMEOUT}s"
    elif [ "$status" -ne 0 ]; then
        fail "the firmware exited with $status"
    fi
    grep -q "^qemu-room: PASS" "$LOGS/$1" || fail "the firmware did not report PASS"
}

operator() { # LOG ARGS...
    local out="$LOGS/$1"
    shift
    local status=0
    in_ns "$PEER" operator --url "$URL" --room plant-1 --timeout 30 "$@" >"$out" 2>&1 || status=$?
    sed 's/^/  /' "$out"
    [ "$status" -eq 0 ] || fail "operator $* failed (exit $status)"
}

START=$SECONDS
# --- 1. bad input ---------------------------------------------------------------------------------
MODES=garbage,bad-frame,cut-frame,silent,stall
log "step 1: a hostile server ($MODES), then the real one"
ip netns exec "$NS" "$PEER" hostile --listen "$HOST:$PORT" --modes "$MODES" >"$LOGS/hostile.log" 2>&1 &
HOSTILE_PID=$!
PIDS+=("$HOSTILE_PID")
sleep 0.3
start_qemu "$FIRMWARE" "$LOGS/qemu.log"
status=0
wait "$HOSTILE_PID" || status=$?
sed 's/^/  /' "$LOGS/hostile.log"
[ "$status" -eq 0 ] || fail "the hostile server did not see the firmware through every mode"
# The hostile server reports a mode done only once the firmware has closed or reset the
# connection (it fails the run if the firmware stays).
for mode in ${MODES//,/ }; do
    grep -q "^hostile: $mode to .*the client left after" "$LOGS/hostile.log" ||
        fail "hostile mode $mode: the firmware did not leave"
done

# --- 2. the real server ---------------------------------------------------------------------------
log "step 2: the real server; the operator exchanges readings, command 1 and its ack"
start_server
operator operator-1.log --id 1 --readings 3 --set-point 21500
CONNECTIONS="$(sed -n 's/.*readings, \([0-9]*\) connections).*/\1/p' "$LOGS/operator-1.log" | tail -n 1)"
[ -n "$CONNECTIONS" ] || fail "no connection count in the ack"

# --- 3. reconnect ---------------------------------------------------------------------------------
log "step 3: the server is killed and restarted; the firmware must reconnect and rejoin"
kill -9 "$SERVER_PID"
wait "$SERVER_PID" 2>/dev/null || true
sleep 1
start_server
ENDS_BEFORE="$(firmware_ends)"
operator operator-2.log --id 2 --readings 3 --expect-set-point 21500 --set-point 19000 \
    --min-connections $((CONNECTIONS + 1)) --last
wait_qemu qemu.log
grep -q "connected #.* (reconnected)" "$LOGS/qemu.log" || fail "the firmware did not report a reconnect"
for why in "server broke the WebSocket protocol (reserved opcode (1002))" "connection ended mid-frame" \
    "connection reset" "opening handshake timed out" "server stopped answering pings"; do
    # bad-frame, cut-frame, the killed server, silent, stall
    grep -qF "disconnected: $why" "$LOGS/qemu.log" || fail "the firmware did not report '$why'"
done
grep -qF "disconnected: server refused the upgrade with 200" "$LOGS/qemu.log" ||
    fail "the firmware did not report the garbage answer"
expect_clean_close "$ENDS_BEFORE"
log "polled run passed in $((SECONDS - START)) s"

# --- 4. a lossy link ------------------------------------------------------------------------------
LOSS="${QEMU_E2E_LOSS:-0.2}"
log "step 4: a link that drops frames ($LOSS each way, scripts/lossy_link.py between QEMU and $TAP)"
START=$SECONDS
ip netns exec "$NS" python3 "$ROOT/scripts/lossy_link.py" "$TAP" 9100 9101 "$LOSS" 7 >"$LOGS/lossy-link.log" 2>&1 &
LINK_PID=$!
PIDS+=("$LINK_PID")
sleep 0.3
start_qemu "$FIRMWARE" "$LOGS/qemu-lossy.log" \
    -netdev socket,id=n0,udp=127.0.0.1:9100,localaddr=127.0.0.1:9101 -net nic,model=lan9118,netdev=n0
ENDS_BEFORE="$(firmware_ends)"
operator operator-lossy.log --id 3 --readings 10 --expect-set-point 20000 --set-point 20500 --last
wait_qemu qemu-lossy.log
kill "$LINK_PID"
wait "$LINK_PID" 2>/dev/null || true
sed 's/^/  /' "$LOGS/lossy-link.log"
grep -q "to the guest [0-9]* passed, [1-9][0-9]* dropped; from the guest [0-9]* passed, [1-9][0-9]* dropped" \
    "$LOGS/lossy-link.log" || fail "the lossy link dropped nothing in one direction: the run proved nothing"
expect_clean_close "$ENDS_BEFORE"
log "lossy-link run passed in $((SECONDS - START)) s"

# --- the interrupt-driven build -------------------------------------------------------------------
if [ "$IRQ_RUN" != 0 ]; then
    log "interrupt-driven receive (feature qemu-irq): step 2 alone"
    (cd firmware && cargo build --release --target "$TARGET" --target-dir "$ROOT/firmware/target" --no-default-features --features qemu-irq --bin qemu-room) ||
        fail "building the qemu-irq firmware failed"
    cp "$ROOT/firmware/target/$TARGET/release/qemu-room" "$ROOT/firmware/target/$TARGET/release/qemu-room-irq"
    START=$SECONDS
    start_qemu "$ROOT/firmware/target/$TARGET/release/qemu-room-irq" "$LOGS/qemu-irq.log"
    operator operator-irq.log --id 7 --readings 3 --set-point 22000 --last
    wait_qemu qemu-irq.log
    IRQS="$(sed -n 's/.* \([0-9]*\) LAN9118 interrupts$/\1/p' "$LOGS/qemu-irq.log")"
    [ "${IRQS:-0}" -gt 0 ] || fail "the interrupt-driven firmware took no LAN9118 interrupt"
    log "interrupt-driven run passed in $((SECONDS - START)) s ($IRQS interrupts)"
fi
echo
python3 "$ROOT/scripts/qemu_room_size.py" "$FIRMWARE" || fail "the footprint report failed"
echo "PASS: qemu-e2e"
