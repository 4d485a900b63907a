#!/usr/bin/env bash
# The reliability soak: the roomwire-tokio room server (bench/soak/src/bin/rw-soak.rs, a
# multi-threaded runtime, keepalive 2 s, default limits) against bench/loadgen's `soak` mode over
# real loopback sockets. Connections in rooms, members joining and leaving all the time, slow
# readers, readers that stop, peers that vanish without a close, floods of tiny frames and 1 MiB
# messages; every room message accounted for (see bench/loadgen/src/soak.rs for the roles and the
# rules). Results and figures: RELIABILITY.md.
#
# Usage: scripts/soak.sh [--smoke] [--out DIR]
#   (default)  10 000 connections in 100 rooms, 60 s of traffic, server RSS bound 128 MiB
#   --smoke    CI: 600 connections in 10 rooms, 10 s, bound 64 MiB, on a release build (a debug
#              server on a slower CPU cannot relay 1 MiB messages at 10 a second, and its own
#              backlog closes the readers that keep up with 1013; SOAK_PROFILE=dev to try one
#              anyway). The soak server is a package of its own, so this build mostly reuses
#              what the Autobahn stage built.
#
# Fails (exit 1) when the generator reports a violation (a keeping-up member that missed, doubled,
# reordered or was sent its own message, or was closed; a slow member closed with another code; a
# stopped or vanished peer still open; a churn cycle refused), when the server's RSS passed the
# bound, when no slow consumer was closed with 1013, or when the server still holds connections
# once every client is gone.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
MODE=full
OUT=""
while [ $# -gt 0 ]; do
    case "$1" in
        --smoke) MODE=smoke ;;
        --out) OUT="$2"; shift ;;
        -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
        *) echo "soak.sh: unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done
log() { echo "soak.sh: $*" >&2; }
die() { echo "soak.sh: ERROR: $*" >&2; exit 1; }

case "$MODE" in
    full)  CONNS=10000; ROOMS=100; SECS=60; BOUND_MIB=128; PROFILE=release ;;
    smoke) CONNS=600;   ROOMS=10;  SECS=10; BOUND_MIB=64;  PROFILE="${SOAK_PROFILE:-release}" ;;
esac
OUT="${OUT:-$ROOT/.work/soak/$(date -u +%Y%m%dT%H%M%SZ)-$MODE}"
mkdir -p "$OUT"

# Each side holds one descriptor per connection, plus a few.
NEED=$((CONNS + 512))
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt "$NEED" ]; then
    if ! ulimit -n "$NEED" 2>/dev/null; then
        # The smoke fits what the machine allows; the full run needs its 10 000.
        HARD="$(ulimit -Hn)"
        [ "$MODE" = smoke ] && [ "$HARD" -ge 600 ] || die "need $NEED open files per process (ulimit -Hn is $HARD)"
        ulimit -n "$HARD"
        CONNS=$((HARD - 512 > 100 ? HARD - 512 : 100))
        log "open files capped at $HARD: $CONNS connections"
    fi
fi

log "building the soak server and the generator ($PROFILE)"
cargo build --quiet --profile "$PROFILE" -p roomwire-loadgen -p roomwire-soak-server
TARGET_DIR="$(realpath -m "${CARGO_TARGET_DIR:-target}")"
if [ "$PROFILE" = dev ]; then BIN="$TARGET_DIR/debug"; else BIN="$TARGET_DIR/$PROFILE"; fi

PORT="${SOAK_PORT:-9400}"
ADDR="127.0.0.1:$PORT"
# glibc's malloc raises its mmap threshold after freeing a large block, and then keeps every later
# 1 MiB buffer in its heap after it is freed: the RSS would show the allocator's high-water mark
# rather than what the server holds. A fixed threshold keeps large buffers mapped only while used,
# so the figures below follow the server's live memory.
MALLOC_MMAP_THRESHOLD_=131072 MALLOC_TRIM_THRESHOLD_=131072 "$BIN/rw-soak" "$ADDR" >"$OUT/server.log" 2>&1 &
SERVER=$!
trap 'kill "$SERVER" 2>/dev/null || true' EXIT
for _ in $(seq 100); do
    grep -q "^listening on" "$OUT/server.log" 2>/dev/null && break
    kill -0 "$SERVER" 2>/dev/null || die "the soak server exited: $(cat "$OUT/server.log")"
    sleep 0.1
done
grep -q "^listening on" "$OUT/server.log" || die "the soak server did not start"

# Two rounds against the same server: memory the allocator keeps after the first round must be
# reused by the second, not added to (a leak would grow it round after round).
for round in 1 2; do
    log "round $round: $CONNS connections in $ROOMS rooms, $SECS s of traffic (logs in ${OUT#"$ROOT"/})"
    status=0
    "$BIN/roomwire-loadgen" soak --addr "$ADDR" --server-pid "$SERVER" --conns "$CONNS" --rooms "$ROOMS" \
        --duration "$SECS" --rate 2 --connect-parallel 64 --max-rss-mib "$BOUND_MIB" --tag "round=$round" \
        >>"$OUT/result.txt" 2>"$OUT/loadgen-$round.err" || status=$?
    tail -n 1 "$OUT/result.txt" >&2
    cat "$OUT/loadgen-$round.err" >&2
    [ "$status" -eq 0 ] || die "the soak failed in round $round (exit $status)"
done
END_1="$(sed -n 's/.*round=1 .* rss_end_kib=\([0-9]*\).*/\1/p' "$OUT/result.txt")"
END_2="$(sed -n 's/.*round=2 .* rss_end_kib=\([0-9]*\).*/\1/p' "$OUT/result.txt")"
log "server RSS with every client gone: $END_1 KiB after round 1, $END_2 KiB after round 2"
[ -n "$END_1" ] && [ -n "$END_2" ] || die "no rss_end_kib in the results"
[ "$END_2" -le $((END_1 + END_1 / 20 + 512)) ] ||
    die "the server's memory grew from round to round ($END_1 -> $END_2 KiB): a leak"

# Once every client is gone the server must hold nothing; and the stopped reader must have been
# closed as a slow consumer.
stats=""
for _ in $(seq 50); do
    stats="$(grep '^stats ' "$OUT/server.log" | tail -n 1)"
    [[ "$stats" == *" open=0 "* ]] && break
    sleep 0.2
done
log "server: $stats"
[[ "$stats" == *" open=0 "* ]] || die "the server still holds connections: $stats"
[[ "$stats" =~ code_1013=[1-9] ]] || die "no slow consumer was closed with 1013: $stats"
echo "$stats" >>"$OUT/result.txt"
log "PASS ($MODE)"
