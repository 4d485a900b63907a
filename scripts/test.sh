#!/usr/bin/env bash
# The one command that runs every test of roomwire (CI runs it through .ci/run).
#
# Usage: scripts/test.sh [STAGE...]
#   no arguments: run every stage in order; otherwise only the named stages, in the order given.
# Stages:
#   setup     rustup targets/components, nightly toolchain, cargo-fuzz, Autobahn|Testsuite
#   lint      cargo fmt --check, clippy (workspace, all targets; and no_std core; and the example
#             firmware for thumbv7em) with -D warnings
#   unit      cargo test --workspace, and the core's tests without std (with the Node peers of tests/alepha-node and redis-server installed and
#             required), then the chat_client example against the chat demo and an
#             Alepha-style Node ws server (scripts/client-peers.sh)
#   embedded  no_std builds of roomwire-core for thumbv7em-none-eabihf and thumbv6m-none-eabi
#   firmware  the example firmware for thumbv7em (size report) and the QEMU Cortex-M4 session test
#   fuzz      every cargo-fuzz target for FUZZ_SECONDS seconds each
#   autobahn  Autobahn|Testsuite against the tokio server and client (scripts/autobahn.sh, both roles
#             at once, cases 1.* to 13.*), then
#             against the core's client on embassy-net (scripts/autobahn-embassy.sh)
#   bench     a few-second smoke of the benchmark harness (scripts/bench.sh --smoke): every server
#             and mode once, and deliberately broken servers that the harness must reject
#   e2e       embassy-net over a TAP device in a network namespace against the tokio chat server,
#             the firmware on QEMU mps2-an386 (LAN9118) joining a room, and the chat demo in
#             headless Chromium
#   soak      the reliability soak, short (scripts/soak.sh --smoke): 600 connections in 10 rooms
#             with churn, slow, stopped and vanishing peers, floods and 1 MiB messages, every
#             message accounted for; the full run is scripts/soak.sh (RELIABILITY.md)
# Environment:
#   FUZZ_SECONDS=20   seconds per fuzz target; 0 only replays the seed corpus once
#   FUZZ_JOBS=2       fuzz targets run at a time
#   (see scripts/autobahn.sh for the AUTOBAHN_* variables)
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"

# cargo-installed tools (cargo-fuzz) live here; make sure they are found.
if [ -d "$HOME/.cargo/bin" ]; then
    case ":$PATH:" in
        *":$HOME/.cargo/bin:"*) ;;
        *) PATH="$HOME/.cargo/bin:$PATH" ;;
    esac
fi
export PATH

# A fresh CI clone builds everything once: incremental compilation only costs there.
if [ "${CI:-}" = "true" ]; then
    export CARGO_INCREMENTAL=0
fi

ALL_STAGES=(setup lint unit embedded firmware fuzz autobahn e2e bench soak)
EMBEDDED_TARGETS=(thumbv7em-none-eabihf thumbv6m-none-eabi)
FUZZ_SECONDS="${FUZZ_SECONDS:-20}"

log() { echo "test.sh: $*"; }
die() {
    echo "test.sh: ERROR: $*" >&2
    exit 1
}

# --- prerequisites (each is a no-op when already present) -----------------------------------------
ensure_targets() {
    local installed t
    installed="$(rustup target list --installed)"
    for t in "${EMBEDDED_TARGETS[@]}"; do
        if ! grep -qx "$t" <<<"$installed"; then
            log "rustup target add $t"
            rustup target add "$t"
        fi
    done
}

ensure_components() {
    local installed c
    installed="$(rustup component list --installed)"
    for c in clippy rustfmt; do
        if ! grep -q "^$c" <<<"$installed"; then
            log "rustup component add $c"
            rustup component add "$c"
        fi
    done
}

ensure_nightly() {
    if ! rustup toolchain list | grep -q '^nightly'; then
        log "rustup toolchain install nightly"
        rustup toolchain install nightly --profile minimal
    fi
}

ensure_cargo_fuzz() {
    ensure_nightly
    if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
        log "cargo install cargo-fuzz --locked (about a minute)"
        cargo install cargo-fuzz --locked
    fi
    cargo +nightly fuzz --version >/dev/null 2>&1 || die "cargo +nightly fuzz does not work after installing cargo-fuzz"
}

# --- stages ---------------------------------------------------------------------------------------
stage_setup() {
    ensure_targets
    ensure_components
    ensure_nightly
    ensure_cargo_fuzz
    "$ROOT/scripts/install-autobahn.sh"
    log "toolchains: $(rustc --version); $(rustc +nightly --version); $(cargo +nightly fuzz --version)"
}

stage_lint() {
    ensure_components
    cargo fmt --all --check
    cargo clippy --workspace --all-targets -- -D warnings
    cargo clippy -p roomwire-core --no-default-features -- -D warnings
    # The library alone with each optional feature, as a dependent builds it (the tests' own
    # dependencies turn on features a dependent may not have).
    cargo clippy -p roomwire-tokio --features axum -- -D warnings
    cargo clippy -p roomwire-tokio --no-default-features -- -D warnings
    RUSTDOCFLAGS="-D warnings" cargo doc --quiet -p roomwire-core -p roomwire-tokio -p roomwire-redis --features roomwire-tokio/axum --no-deps
    # The example firmware (outside the workspace): what firmware authors copy.
    ensure_targets
    (
        cd "$ROOT/firmware"
        cargo fmt --check
        cargo clippy --release --target thumbv7em-none-eabihf --bins --lib -- -D warnings
        cargo clippy --release --target thumbv7em-none-eabihf --no-default-features --features qemu-irq \
            --bin qemu-room -- -D warnings
    )
}

ensure_node_peers() {
    if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
        log "apt-get install nodejs npm (the Alepha-style Node peer)"
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
    fi
    if [ ! -d tests/alepha-node/node_modules/ws ]; then
        log "npm ci in tests/alepha-node"
        (cd tests/alepha-node && npm ci --no-audit --no-fund --loglevel=error)
    fi
}

ensure_redis() {
    if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
        log "apt-get install redis-server (the backplane's real Redis; tests start their own on free ports)"
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends redis-server >/dev/null
    fi
    # Debian's package may start a service on 6379; the tests never use it.
}

stage_unit() {
    ensure_node_peers
    ensure_redis
    ROOMWIRE_REQUIRE_PEERS=1 cargo test --workspace
    # The workspace builds the core with `std` (serde_json); firmware decodes JSON with
    # serde-json-core instead: the core's own tests again on that path.
    cargo test -p roomwire-core --features alloc,deflate --lib
    "$ROOT/scripts/client-peers.sh"
}

stage_embedded() {
    ensure_targets
    local t
    for t in "${EMBEDDED_TARGETS[@]}"; do
        log "building roomwire-core (no_std) for $t"
        cargo build -p roomwire-core --no-default-features --target "$t" --release
    done
}

stage_fuzz() {
    ensure_cargo_fuzz
    [[ "$FUZZ_SECONDS" =~ ^[0-9]+$ ]] || die "FUZZ_SECONDS must be a whole number of seconds, got '$FUZZ_SECONDS'"
    [ -f fuzz/Cargo.toml ] || die "fuzz/Cargo.toml not found: no cargo-fuzz project"

    local targets
    targets="$(cd fuzz && cargo +nightly fuzz list)"
    [ -n "$targets" ] || die "cargo fuzz list found no fuzz targets"
    log "fuzz targets: ${targets//$'\n'/ }"

    local t corpus seeds limit
    if ((FUZZ_SECONDS > 0)); then
        limit="-max_total_time=$FUZZ_SECONDS"
    else
        limit="-runs=0" # replay the corpus only (-max_total_time=0 would mean no limit)
    fi
    # libFuzzer runs on one core: two targets at a time keep both of the machine's busy. Each
    # target logs to its own file, shown when it ends.
    local logs="$ROOT/.work/fuzz-logs" jobs="${FUZZ_JOBS:-2}" failed=()
    [[ "$jobs" =~ ^[1-9][0-9]*$ ]] || die "FUZZ_JOBS must be a positive whole number, got '$jobs'"
    mkdir -p "$logs"
    local -a running=() names=()
    # One build of every target (cargo compiles them in parallel); each run below finds it built.
    (cd fuzz && cargo +nightly fuzz build) || die "the fuzz targets did not build"
    finish_oldest() {
        local pid="${running[0]}" name="${names[0]}"
        running=("${running[@]:1}")
        names=("${names[@]:1}")
        local ok=1
        wait "$pid" || ok=0
        cat "$logs/$name.log"
        ((ok)) || failed+=("$name")
    }
    for t in $targets; do
        # Fuzz into a scratch corpus under .work/ (gitignored), seeded from the committed one,
        # so a run never writes into the repo's fuzz/corpus/.
        corpus="$ROOT/.work/fuzz-corpus/$t"
        seeds="$ROOT/fuzz/corpus/$t"
        mkdir -p "$corpus"
        if [ -d "$seeds" ]; then
            cp -R "$seeds/." "$corpus/"
        fi
        log "fuzzing $t ($limit, corpus ${corpus#"$ROOT"/})"
        (cd fuzz && cargo +nightly fuzz run "$t" "$corpus" -- "$limit") >"$logs/$t.log" 2>&1 &
        running+=("$!")
        names+=("$t")
        if ((${#running[@]} >= jobs)); then
            finish_oldest
        fi
    done
    while ((${#running[@]} > 0)); do
        finish_oldest
    done
    if ((${#failed[@]} > 0)); then
        die "fuzz targets failed: ${failed[*]}; the crashing inputs are under fuzz/artifacts/<target>/ (reproduce: cd fuzz && cargo +nightly fuzz run <target> artifacts/<target>/<file>)"
    fi
}

stage_firmware() {
    # Run with a CARGO_TARGET_DIR elsewhere, as a shared build cache sets it:
    # the firmware scripts must find their ELFs whatever it says.
    CARGO_TARGET_DIR="$ROOT/target/elsewhere" "$ROOT/scripts/firmware-size.sh"
    CARGO_TARGET_DIR="$ROOT/target/elsewhere" "$ROOT/scripts/qemu-test.sh"
}

stage_e2e() {
    "$ROOT/scripts/embassy-e2e.sh"
    "$ROOT/scripts/qemu-e2e.sh"
    "$ROOT/scripts/browser-test.sh"
}

stage_soak() {
    "$ROOT/scripts/soak.sh" --smoke
}

stage_bench() {
    "$ROOT/scripts/bench.sh" --smoke
}

stage_autobahn() {
    # Cases 12.* and 13.* (permessage-deflate) keep wstest's Python busy for minutes in each role,
    # on one core: the two roles run side by side, each into its own log, shown when it ends.
    "$ROOT/scripts/install-autobahn.sh"
    cargo build --release -p roomwire-tokio --example echo --example autobahn-client
    local logs="$ROOT/.work/autobahn" rc=0 server client
    mkdir -p "$logs"
    AUTOBAHN_NO_BUILD=1 "$ROOT/scripts/autobahn.sh" server >"$logs/stage-server.log" 2>&1 &
    server=$!
    AUTOBAHN_NO_BUILD=1 "$ROOT/scripts/autobahn.sh" client >"$logs/stage-client.log" 2>&1 &
    client=$!
    wait "$server" || rc=1
    cat "$logs/stage-server.log"
    wait "$client" || rc=1
    cat "$logs/stage-client.log"
    ((rc == 0)) || return 1
    "$ROOT/scripts/autobahn-embassy.sh"
}

# --- driver ---------------------------------------------------------------------------------------
usage() {
    echo "usage: $0 [STAGE...]   stages: ${ALL_STAGES[*]} (default: all, in that order)"
}

STAGES=()
for arg in "$@"; do
    case "$arg" in
        -h | --help)
            usage
            exit 0
            ;;
    esac
    found=0
    for s in "${ALL_STAGES[@]}"; do
        [ "$arg" = "$s" ] && found=1
    done
    if ((found == 0)); then
        echo "test.sh: unknown stage '$arg'" >&2
        usage >&2
        exit 2
    fi
    STAGES+=("$arg")
done
if ((${#STAGES[@]} == 0)); then
    STAGES=("${ALL_STAGES[@]}")
fi

fmt_secs() { printf '%dm%02ds' $(($1 / 60)) $(($1 % 60)); }

TOTAL_START=$SECONDS
PASSED=0
TIMINGS=()
n=${#STAGES[@]}
i=0
for stage in "${STAGES[@]}"; do
    i=$((i + 1))
    echo
    echo "==================== test.sh: stage $i/$n: $stage ===================="
    start=$SECONDS
    # A subshell with errexit, not in a condition (where bash would ignore `set -e`).
    set +e
    (
        set -euo pipefail
        "stage_$stage"
    )
    rc=$?
    set -e
    took=$((SECONDS - start))
    if ((rc != 0)); then
        echo
        echo "test.sh: stage '$stage' FAILED (exit status $rc) after $(fmt_secs "$took"); total elapsed $(fmt_secs $((SECONDS - TOTAL_START)))" >&2
        echo "test.sh: $PASSED passed, 1 failed"
        exit 1
    fi
    PASSED=$((PASSED + 1))
    TIMINGS+=("$stage $(fmt_secs "$took")")
    echo "==================== test.sh: stage $stage passed in $(fmt_secs "$took") ===================="
done

echo
times="${TIMINGS[*]/%/,}"
echo "test.sh: stage times: ${times%,}"
echo "test.sh: total elapsed $(fmt_secs $((SECONDS - TOTAL_START)))"
echo "test.sh: $PASSED passed, 0 failed"
