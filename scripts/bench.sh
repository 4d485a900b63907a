#!/usr/bin/env bash
# roomwire beside its peers: echo, room fan-out and idle memory, in one run; then stateful
# rooms' tick loops (rooms x members x tick rate, roomwire only).
#
# Usage: scripts/bench.sh [--quick | --smoke] [--rounds N] [--only CELL_SUBSTRING] [--out DIR]
#   (default)  full run: 3 rounds, echo 1 s warm-up + 5 s, fan-out 2 s + 5 s, idle 10 000 connections
#   --quick    3 rounds, shorter windows (echo 0.5 + 2 s, fan-out 1 + 2 s)
#   --smoke    CI: a few seconds on a debug build (BENCH_PROFILE=release for a release one);
#              one round of small cells (roomwire and every
#              peer reachable here), then the generator against deliberately broken servers
#              (duplicate, lost, misrouted messages), each of which must make it fail.
#              Exits non-zero if anything in the harness breaks.
#   --rounds N rounds per cell (medians need 3 or more)
#   --only S   only the cells whose name contains S (e.g. echo, fanout, idle, echo-500x16k)
#   --out DIR  where results go (default target/bench/<UTC time>)
#
# Method: each run starts a fresh server pinned to CPU $SERVER_CPU (default 0) and the load
# generator (bench/loadgen, one tokio current-thread runtime) pinned to CPU $GEN_CPU (default 1);
# within a cell the servers alternate, the order rotating every round. Figures come from /proc:
# server and generator CPU time over the measurement window (every thread, schedstat), the
# server's VmRSS for idle memory. The summary prints medians per cell and the roomwire/peer ratios.
# Any run that errors, loses, duplicates or misroutes a message is reported as FAILED (no figure)
# and makes the script exit 1.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"

MODE=full
ROUNDS=""
ONLY=""
OUT=""
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) MODE=quick ;;
        --smoke) MODE=smoke ;;
        --rounds) ROUNDS="$2"; shift ;;
        --only) ONLY="$2"; shift ;;
        --out) OUT="$2"; shift ;;
        -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
        *) echo "bench.sh: unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done

log() { echo "bench.sh: $*" >&2; }
die() { echo "bench.sh: ERROR: $*" >&2; exit 1; }

case "$MODE" in
    full)  ROUNDS="${ROUNDS:-3}"; ECHO_T="--warmup 1 --duration 5"; FAN_T="--warmup 2 --duration 5"; IDLE_N=10000; PROFILE=release ;;
    quick) ROUNDS="${ROUNDS:-3}"; ECHO_T="--warmup 0.5 --duration 2"; FAN_T="--warmup 1 --duration 2"; IDLE_N=10000; PROFILE=release ;;
    smoke) ROUNDS="${ROUNDS:-1}"; ECHO_T="--warmup 0.2 --duration 0.4"; FAN_T="--warmup 0.2 --duration 0.4"; IDLE_N=200; PROFILE="${BENCH_PROFILE:-dev}" ;;
esac
OUT="${OUT:-$ROOT/target/bench/$(date -u +%Y%m%dT%H%M%SZ)-$MODE}"
mkdir -p "$OUT"
RESULTS="$OUT/results.txt"
: >"$RESULTS"

SERVER_CPU="${SERVER_CPU:-0}"
GEN_CPU="${GEN_CPU:-1}"
if [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null; then
    PIN_SERVER=(taskset -c "$SERVER_CPU")
    PIN_GEN=(taskset -c "$GEN_CPU")
else
    log "fewer than 2 CPUs or no taskset: not pinning (figures are not comparable to pinned runs)"
    PIN_SERVER=()
    PIN_GEN=()
fi

# --- build ----------------------------------------------------------------------------------------
log "building the load generator and the servers ($PROFILE)"
cargo build --quiet --profile "$PROFILE" -p roomwire-loadgen -p roomwire-bench-servers
# Where cargo put them: CARGO_TARGET_DIR (relative to the repo, as cargo reads it here) or target/.
TARGET_DIR="$(realpath -m "${CARGO_TARGET_DIR:-target}")"
if [ "$PROFILE" = dev ]; then BIN="$TARGET_DIR/debug"; else BIN="$TARGET_DIR/$PROFILE"; fi
LOADGEN="$BIN/roomwire-loadgen"

HAVE_NODE=0
if command -v node >/dev/null && command -v npm >/dev/null; then
    if [ ! -d bench/node/node_modules/ws ] || [ bench/node/package-lock.json -nt bench/node/node_modules/.package-lock.json ]; then
        log "npm ci (bench/node)"
        (cd bench/node && npm ci --no-audit --no-fund --silent) || die "npm ci failed in bench/node"
    fi
    HAVE_NODE=1
else
    [ "$MODE" = smoke ] || die "node and npm are needed for the Node ws peers"
    log "node not found: smoke runs without the Node ws peers"
fi

# --- environment ----------------------------------------------------------------------------------
CPU_MODEL="$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
{
    echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "command: scripts/bench.sh ${MODE/full/}${ROUNDS:+ (rounds $ROUNDS)}"
    echo "cpu: $CPU_MODEL, $(nproc) vCPUs; server on CPU $SERVER_CPU, generator on CPU $GEN_CPU"
    echo "kernel: $(uname -r); $(rustc --version); node $(node --version 2>/dev/null || echo absent)"
    echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
} | tee "$OUT/env.txt" >&2

# --- servers --------------------------------------------------------------------------------------
# name -> command (ADDR is replaced), wire (ws|sio) and request path.
server_cmd() {
    case "$1" in
        roomwire-raw|roomwire-echo) echo "$BIN/rw-echo ADDR" ;;
        roomwire-rooms) echo "$BIN/rw-rooms ADDR" ;;
        roomwire-rooms-deflate) echo "env BENCH_DEFLATE=1 $BIN/rw-rooms ADDR" ;;
        roomwire-per-socket-deflate) echo "env BENCH_DEFLATE=socket $BIN/rw-rooms ADDR" ;;
        fastwebsockets) echo "$BIN/fws-echo ADDR" ;;
        tokio-tungstenite) echo "$BIN/tt-echo ADDR" ;;
        tokio-floor) echo "$BIN/tokio-floor ADDR" ;;
        tokio-rooms-floor) echo "$BIN/tokio-floor ADDR rooms" ;;
        tokio-slab-floor) echo "$BIN/tokio-floor ADDR slab" ;;
        node-ws) echo "node $ROOT/bench/node/echo.js ADDR" ;;
        node-ws-rooms) echo "node $ROOT/bench/node/rooms.js ADDR" ;;
        node-ws-rooms-deflate) echo "node $ROOT/bench/node/rooms.js ADDR deflate" ;;
        socketioxide) echo "$BIN/sio-rooms ADDR" ;;
        roomwire-2nodes) echo "$ROOT/bench/cluster.sh $BIN/rw-rooms ADDR" ;;
        socketioxide-2nodes) echo "$ROOT/bench/cluster.sh $BIN/sio-rooms ADDR" ;;
        faulty-*) echo "$BIN/rw-faulty ${1#faulty-} ADDR" ;;
        *) die "unknown server $1" ;;
    esac
}
server_wire() {
    case "$1" in
        socketioxide|socketioxide-2nodes) echo "--proto sio --path /socket.io/?EIO=4&transport=websocket" ;;
        roomwire-rooms|roomwire-2nodes|faulty-rooms-*) echo "--proto ws --path /ws/bench?roomId=r" ;;
        roomwire-rooms-deflate | roomwire-per-socket-deflate) echo "--proto ws --path /ws/bench?roomId=r --deflate 1" ;;
        node-ws-rooms) echo "--proto ws --path /?roomId=r" ;;
        node-ws-rooms-deflate) echo "--proto ws --path /?roomId=r --deflate 1" ;;
        *) echo "--proto ws --path /" ;;
    esac
}
# The name shown in the tables: in every cell the roomwire entry is "roomwire".
display_name() {
    case "$1" in
        roomwire-echo|roomwire-rooms|roomwire-rooms-deflate) echo roomwire ;;
        *) echo "$1" ;;
    esac
}

# Listen ports below the ephemeral range, where the generator's client sockets (and their
# TIME_WAIT) live; a port found busy anyway is skipped (start_server retries).
LOW_EPHEMERAL="$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)"
PORT=$((10000 + RANDOM % (LOW_EPHEMERAL - 12000)))
SERVER_PID=""
stop_server() {
    if [ -n "$SERVER_PID" ]; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
        SERVER_PID=""
    fi
}
trap stop_server EXIT

start_server() { # name
    local attempt
    for attempt in 1 2 3 4 5; do
        if start_server_once "$1"; then return 0; fi
        grep -qi "in use" "$OUT/server.log" || return 1
    done
    return 1
}

start_server_once() { # name
    local cmd
    PORT=$((PORT + 1))
    if [ "$PORT" -ge $((LOW_EPHEMERAL - 1)) ]; then PORT=10000; fi
    ADDR="127.0.0.1:$PORT"
    cmd="$(server_cmd "$1")"
    cmd="${cmd//ADDR/$ADDR}"
    # The background job truncates the log only once it runs: remove the
    # previous server's log first, and wait for this server's own line.
    rm -f "$OUT/server.log"
    # shellcheck disable=SC2086
    "${PIN_SERVER[@]}" $cmd >"$OUT/server.log" 2>&1 &
    SERVER_PID=$!
    local i
    for i in $(seq 1 200); do
        if grep -qF "listening on $ADDR" "$OUT/server.log" 2>/dev/null; then return 0; fi
        if ! kill -0 "$SERVER_PID" 2>/dev/null; then break; fi
        sleep 0.05
    done
    stop_server
    grep -qi "in use" "$OUT/server.log" || cat "$OUT/server.log" >&2
    return 1
}

FAILED=0
# run_one CELL SERVER ROUND LOADGEN_ARGS... : one fresh server, one generator run.
run_one() {
    local cell="$1" server="$2" round="$3"
    shift 3
    local shown tag
    shown="$(display_name "$server")"
    tag="cell=$cell server=$shown round=$round"
    if ! start_server "$server"; then
        echo "FAIL $tag reason=server-did-not-start" >>"$RESULTS"
        log "FAILED: $tag: server did not start"
        FAILED=$((FAILED + 1))
        return 1
    fi
    local wire line target
    wire="$(server_wire "$server")"
    # A cluster (bench/cluster.sh): two nodes, both measured, and its Redis.
    target="--server-pid $SERVER_PID"
    if read -r _ addr2 pids redis_pid < <(grep -m1 '^cluster ' "$OUT/server.log"); then
        target="--addr2 $addr2 --server-pid $pids --redis-pid $redis_pid"
    fi
    # shellcheck disable=SC2086
    if line="$("${PIN_GEN[@]}" "$LOADGEN" "$@" $wire --addr "$ADDR" $target --tag "$tag" 2>"$OUT/loadgen.err")"; then
        echo "$line" >>"$RESULTS"
        echo "  $line" >&2
    else
        echo "FAIL $tag reason=$(tr ' \n' '_ ' <"$OUT/loadgen.err" | cut -c1-300)" >>"$RESULTS"
        log "FAILED: $tag: $(cat "$OUT/loadgen.err")"
        FAILED=$((FAILED + 1))
        kill -0 "$SERVER_PID" 2>/dev/null || log "(the server had exited)"
        stop_server
        cp "$OUT/server.log" "$OUT/failed-$cell-$shown-$round.server.log"
        return 1
    fi
    stop_server
}

# cell NAME "LOADGEN ARGS" SERVER... : every round, every server, order rotating per round.
cell() {
    local name="$1" args="$2"
    shift 2
    if [ -n "$ONLY" ] && [[ "$name" != *"$ONLY"* ]]; then return 0; fi
    local servers=("$@") n=$# round i
    log "cell $name: ${servers[*]}"
    for round in $(seq 1 "$ROUNDS"); do
        for i in $(seq 0 $((n - 1))); do
            local s="${servers[$(((i + round - 1) % n))]}"
            # shellcheck disable=SC2086
            run_one "$name" "$s" "$round" $args || { [ "$MODE" = smoke ] && die "smoke: $name on $s failed"; }
        done
    done
}

ECHO_PEERS=(roomwire-echo fastwebsockets tokio-tungstenite)
ROOM_PEERS=(roomwire-rooms socketioxide)
# tokio-floor, tokio-slab-floor: references, not peers (the least a tokio task per connection
# holds; the least a connection holds on tokio's reactor without a task of its own).
IDLE_SERVERS=(roomwire-rooms roomwire-raw fastwebsockets tokio-tungstenite socketioxide tokio-floor tokio-slab-floor)
if [ "$HAVE_NODE" = 1 ]; then
    ECHO_PEERS+=(node-ws)
    ROOM_PEERS+=(node-ws-rooms)
    IDLE_SERVERS+=(node-ws)
fi

# --- stateful rooms: rooms x members x tick rate on one core (roomwire only; no Rust peer has
# stateful rooms). rw-ticks runs server and clients in one process, on the two pinned CPUs.
TICKS="$OUT/ticks.txt"
tick_cells() {
: >"$TICKS"
case "$MODE" in
    smoke) TICK_CELLS=("--rooms 20 --members 2 --hz 20") ; TICK_T="--warmup 0.2 --duration 0.5" ;;
    quick) TICK_CELLS=("--rooms 100 --members 10 --hz 20" "--rooms 1000 --members 4 --hz 20" "--rooms 1000 --members 1 --hz 10 --quiet") ; TICK_T="--warmup 1 --duration 2" ;;
    full)  TICK_CELLS=("--rooms 10 --members 10 --hz 20" "--rooms 100 --members 10 --hz 20" "--rooms 100 --members 10 --hz 60" "--rooms 500 --members 10 --hz 10" "--rooms 1000 --members 4 --hz 20" "--rooms 1000 --members 1 --hz 10 --quiet" "--rooms 8000 --members 1 --hz 10 --quiet") ; TICK_T="--warmup 1 --duration 5" ;;
esac
if [ -z "$ONLY" ] || [[ ticks == *"$ONLY"* ]]; then
    # Each cell twice, side by side: beats on the metronome (the default), then on tokio's timers.
    for tick_cell in "${TICK_CELLS[@]}"; do
        for timer in "" "--tokio-timer"; do
            # shellcheck disable=SC2086
            if line="$(ulimit -n 20000 2>/dev/null; timeout 120 taskset -c "$SERVER_CPU,$GEN_CPU" "$BIN/rw-ticks" $tick_cell $timer $TICK_T)" \
                && [[ "$line" == *"ticks/s="* && "$line" != *"ticks/s=0 "* ]]; then
                echo "$line" | tee -a "$TICKS" >&2
            else
                log "FAILED: rw-ticks $tick_cell $timer"
                FAILED=$((FAILED + 1))
            fi
        done
    done
fi
}

if [ "$MODE" = smoke ]; then
    cell echo-10x20 "echo --conns 10 --size 20 $ECHO_T" "${ECHO_PEERS[@]}"
    cell echo-4x16k "echo --conns 4 --size 16384 $ECHO_T" roomwire-echo
    cell fanout-50 "fanout --members 50 --senders 3 --inflight 2 $FAN_T" "${ROOM_PEERS[@]}"
    cell fanout-50-rate "fanout --members 50 --senders 3 --rate 20000 $FAN_T" roomwire-rooms tokio-rooms-floor
    # Four rooms at once: every delivery checked to stay in its room (peers taking the room from the URL).
    FOUR_ROOM_PEERS=(roomwire-rooms)
    [ "$HAVE_NODE" = 1 ] && FOUR_ROOM_PEERS+=(node-ws-rooms)
    cell fanout-4rooms "fanout --members 48 --senders 8 --inflight 2 --fan-rooms 4 $FAN_T" "${FOUR_ROOM_PEERS[@]}"
    # permessage-deflate: roomwire compresses a room message once for all, ws once per socket.
    DEFLATE_PEERS=(roomwire-rooms-deflate)
    [ "$HAVE_NODE" = 1 ] && DEFLATE_PEERS+=(node-ws-rooms-deflate)
    cell fanout-50-deflate "fanout --members 50 --senders 3 --inflight 2 --size 512 $FAN_T" "${DEFLATE_PEERS[@]}"
    cell idle-200 "idle --conns $IDLE_N --warmup 0.3" roomwire-rooms socketioxide tokio-floor tokio-slab-floor
    cell idle-200-spoken "idle --conns $IDLE_N --warmup 2 --spoken 1" roomwire-rooms
    if command -v redis-server >/dev/null; then
        cell cluster-50 "fanout --members 50 --senders 3 --inflight 2 $FAN_T" roomwire-2nodes socketioxide-2nodes
    fi
    tick_cells
    [ "$FAILED" = 0 ] || die "smoke: $FAILED run(s) failed"
    "$LOADGEN" summarize "$RESULTS" >"$OUT/summary.txt" || die "smoke: summarize failed"
    # The harness must refuse to report figures for broken servers.
    RESULTS="$OUT/faults.txt"
    for fault in "echo-dup:echo --conns 4 --size 20 $ECHO_T:duplicate" \
        "rooms-drop:fanout --members 20 --senders 2 --inflight 2 $FAN_T:lost" \
        "rooms-dup:fanout --members 20 --senders 2 --inflight 2 $FAN_T:duplicate" \
        "rooms-self:fanout --members 20 --senders 2 --inflight 2 $FAN_T:misrouted" \
        "rooms-cut:fanout --members 20 --senders 2 --inflight 2 --size 64 $FAN_T:corrupt" \
        "rooms-leak:fanout --members 24 --senders 4 --inflight 2 --fan-rooms 4 $FAN_T:across rooms"; do
        IFS=: read -r server args expect <<<"$fault"
        rm -f "$OUT/loadgen.err"
        # A broken server must start and be caught by the generator: one
        # that does not start fails the smoke (it proves nothing).
        start_server "faulty-$server" || die "smoke: the broken server $server did not start"
        stop_server
        # shellcheck disable=SC2086
        if run_one "fault-$server" "faulty-$server" 1 $args 2>/dev/null; then
            die "smoke: the generator reported a figure for the broken server $server"
        fi
        [ -s "$OUT/loadgen.err" ] || die "smoke: broken server $server: the generator did not run"
        grep -q "$expect" "$OUT/loadgen.err" || die "smoke: broken server $server: expected a '$expect' error, got: $(cat "$OUT/loadgen.err")"
        log "broken server $server rejected: $(cut -c1-120 "$OUT/loadgen.err")"
    done
    log "smoke passed (figures of a $PROFILE build in windows too short to measure: $OUT/summary.txt)"
    exit 0
fi

cell echo-100x20 "echo --conns 100 --size 20 $ECHO_T" "${ECHO_PEERS[@]}"
cell echo-10x1k "echo --conns 10 --size 1024 $ECHO_T" "${ECHO_PEERS[@]}"
cell echo-500x16k "echo --conns 500 --size 16384 $ECHO_T" "${ECHO_PEERS[@]}"
cell fanout-1000x10x4 "fanout --members 1000 --senders 10 --inflight 4 $FAN_T" "${ROOM_PEERS[@]}"
# tokio-rooms-floor: a reference, not a peer (one write per delivery from the sender's task).
cell fanout-1000-rate50k "fanout --members 1000 --senders 10 --rate 50000 $FAN_T" "${ROOM_PEERS[@]}" tokio-rooms-floor
# 1 KiB chat-like JSON at a fixed rate, plain and with permessage-deflate: what compressing costs
# the server per delivery and saves on the wire, compressed once per room (roomwire's default) or
# once per socket, keeping each socket's context (roomwire configured so, and ws).
cell fanout-1000-rate10k-1k "fanout --members 1000 --senders 10 --rate 10000 --size 1024 $FAN_T" roomwire-rooms node-ws-rooms
cell fanout-1000-rate10k-1k-deflate "fanout --members 1000 --senders 10 --rate 10000 --size 1024 $FAN_T" \
    roomwire-rooms-deflate roomwire-per-socket-deflate node-ws-rooms-deflate
# Two nodes behind one Redis, one room of 1000 split across them, 10 senders; beside one node.
# Nodes and Redis share the server CPU.
if command -v redis-server >/dev/null; then
    CLUSTER_PEERS=(roomwire-rooms roomwire-2nodes socketioxide socketioxide-2nodes)
    cell cluster-1000x10x4 "fanout --members 1000 --senders 10 --inflight 4 $FAN_T" "${CLUSTER_PEERS[@]}"
    cell cluster-1000-rate20k "fanout --members 1000 --senders 10 --rate 20000 $FAN_T" "${CLUSTER_PEERS[@]}"
else
    log "no redis-server: no cluster cells"
fi
cell idle-10k "idle --conns $IDLE_N --warmup 2" "${IDLE_SERVERS[@]}"
# The same after traffic: each connection sends one message (to a room of its own) and goes quiet.
SPOKEN_PEERS=(roomwire-rooms)
[ "$HAVE_NODE" = 1 ] && SPOKEN_PEERS+=(node-ws-rooms)
cell idle-10k-spoken "idle --conns $IDLE_N --warmup 3 --spoken 1" "${SPOKEN_PEERS[@]}"

tick_cells

echo
cat "$OUT/env.txt"
[ -s "$TICKS" ] && { echo "stateful rooms (rw-ticks):"; cat "$TICKS"; }
"$LOADGEN" summarize "$RESULTS" | tee "$OUT/summary.txt"
"$LOADGEN" summarize "$RESULTS" --markdown >"$OUT/summary.md"
log "results in $OUT (results.txt, summary.txt, summary.md)"
if [ "$FAILED" -gt 0 ]; then
    die "$FAILED run(s) failed: their cells have no figure from those runs"
fi
