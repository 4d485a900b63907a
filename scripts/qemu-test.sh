#!/usr/bin/env bash
# QEMU test: roomwire-core, compiled for thumbv7em-none-eabihf, decodes recorded server sessions
# (firmware/session/*.bin, checked by `cargo test -p roomwire-embassy --test recorded_session`) on an
# emulated Cortex-M4 (mps2-an386) and checks every typed message; the binary reports through
# semihosting and exits 0 on success, non-zero on failure.
#
# Installs what it needs when missing: the rustup target, and qemu-system-arm (apt).
# Usage: scripts/qemu-test.sh
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
TARGET=thumbv7em-none-eabihf
TIMEOUT="${QEMU_TIMEOUT:-60}"

log() { echo "qemu-test: $*"; }
fail() {
    echo "qemu-test: ERROR: $*" >&2
    echo "FAIL: qemu-test"
    exit 1
}

if ! rustup target list --installed | grep -qx "$TARGET"; then
    log "rustup target add $TARGET"
    rustup target add "$TARGET"
fi
if ! command -v qemu-system-arm >/dev/null 2>&1; then
    log "installing qemu-system-arm"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends qemu-system-arm >/dev/null
fi

cd "$ROOT/firmware"
cargo build --release --target "$TARGET" --target-dir "$ROOT/firmware/target" --bin qemu-decode || fail "build failed"
ELF="$ROOT/firmware/target/$TARGET/release/qemu-decode"

log "running $ELF on mps2-an386 (timeout ${TIMEOUT}s)"
set +e
timeout "$TIMEOUT" qemu-system-arm -cpu cortex-m4 -machine mps2-an386 -nographic \
    -semihosting-config enable=on,target=native -kernel "$ELF"
status=$?
set -e
if [ "$status" -eq 124 ]; then
    fail "QEMU timed out after ${TIMEOUT}s"
elif [ "$status" -ne 0 ]; then
    fail "the QEMU run exited with $status"
fi
echo "PASS: qemu-test"
