#!/usr/bin/env bash
# Two nodes of a room server behind one fresh redis-server, for the cluster
# cells of scripts/bench.sh:
#
#   bench/cluster.sh BIN ADDR      (BIN: rw-rooms or sio-rooms, by path)
#
# Starts redis-server on a free loopback port, then BIN at ADDR and at a
# second free port, both with BENCH_REDIS pointing at it. Prints
# "cluster ADDR2 PIDS REDIS_PID" and then "listening on ADDR" once both
# nodes listen; on TERM or INT stops them all. Every process inherits this
# script's CPU affinity.
set -euo pipefail
BIN="$1"
ADDR="$2"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
REDIS_PORT="$(free_port)"
ADDR2="127.0.0.1:$(free_port)"
PIDS=()
stop() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap 'stop; exit 0' TERM INT
trap stop EXIT
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no --loglevel warning &
REDIS_PID=$!
PIDS+=("$REDIS_PID")
for _ in $(seq 100); do redis-cli -p "$REDIS_PORT" ping 2>/dev/null | grep -q PONG && break; sleep 0.05; done
export BENCH_REDIS="redis://127.0.0.1:$REDIS_PORT"
LOG1="$(mktemp)"
LOG2="$(mktemp)"
"$BIN" "$ADDR" >"$LOG1" 2>&1 &
PIDS+=($!)
"$BIN" "$ADDR2" >"$LOG2" 2>&1 &
PIDS+=($!)
for _ in $(seq 200); do
    grep -qF "listening on $ADDR" "$LOG1" && grep -qF "listening on $ADDR2" "$LOG2" && break
    sleep 0.05
done
grep -qF "listening on $ADDR2" "$LOG2" || { cat "$LOG1" "$LOG2" >&2; exit 1; }
rm -f "$LOG1" "$LOG2"
echo "cluster $ADDR2 ${PIDS[1]},${PIDS[2]} $REDIS_PID"
echo "listening on $ADDR"
wait
