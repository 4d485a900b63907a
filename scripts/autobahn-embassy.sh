#!/usr/bin/env bash
# Autobahn|Testsuite through embassy-net, as root: the embassy-net client of
# adapter-embassy/examples/autobahn_embassy.rs (a TAP device, 192.0.2.2/24, the buffers a
# microcontroller gives one connection: 4 KiB message) is driven by `wstest -m fuzzingserver`
# (192.0.2.1:9001), both inside a network namespace this script creates. Cases 1.* to 10.*.
#
# The locked file tests/autobahn/expected-embassy-client.json holds:
#   "capacity"         cases whose messages are larger than the client's 4096-byte message buffer,
#                      with the reason; they are not run, except
#   "capacity_probes"  a few of them, which are run and must end with the client's 1009;
#   "cases"            the locked results of every other case (scripts/autobahn_compare.py rules:
#                      any difference, any FAILED or NON-STRICT fails).
#
# Usage: sudo scripts/autobahn-embassy.sh
#   AUTOBAHN_UPDATE=1              rewrite "cases" of the locked file from this run
#   AUTOBAHN_EMBASSY_TIMEOUT=300   seconds allowed for the client's run
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
NS="roomwire-ab-$$"
TAP=tap0
HOST=192.0.2.1
PORT=9001
AGENT=roomwire-embassy
TIMEOUT="${AUTOBAHN_EMBASSY_TIMEOUT:-300}"
W="$ROOT/.work/autobahn-embassy"
WSTEST="$ROOT/.work/autobahn/venv27/bin/wstest"
OUTDIR="$W/reports"
SPEC="$W/spec.json"
EXPECTED="$ROOT/tests/autobahn/expected-embassy-client.json"
PIDS=()

log() { echo "autobahn-embassy: $*"; }
fail() {
    echo "autobahn-embassy: ERROR: $*" >&2
    for f in client.log wstest.log; do
        if [ -s "$W/$f" ]; then
            echo "--- $f (last lines) ---" >&2
            tail -n 20 "$W/$f" >&2
        fi
    done
    echo "FAIL: autobahn-embassy"
    exit 1
}

# shellcheck source=scripts/lib/netns.sh
. "$ROOT/scripts/lib/netns.sh"
trap netns_cleanup EXIT

netns_preflight
[ -f "$EXPECTED" ] || fail "${EXPECTED#"$ROOT"/} is missing"
"$ROOT/scripts/install-autobahn.sh" || fail "installing Autobahn|Testsuite failed"

cd "$ROOT"
log "building the embassy-net Autobahn client"
cargo build -p roomwire-embassy --example autobahn_embassy || fail "build failed"
CLIENT="$TARGET_DIR/debug/examples/autobahn_embassy"

rm -rf "$OUTDIR"
mkdir -p "$OUTDIR"
# The spec: 1.* to 10.*, less the capacity cases that are not probes.
python3 - "$EXPECTED" "$SPEC" "ws://$HOST:$PORT" "$OUTDIR" <<'PY' || fail "cannot write the spec"
import json, sys
expected, spec, url, outdir = sys.argv[1:]
locked = json.load(open(expected))
probes = set(locked["capacity_probes"])
excluded = sorted(c for c in locked["capacity"] if c not in probes)
json.dump({"url": url, "outdir": outdir, "cases": [f"{n}.*" for n in range(1, 11)],
           "exclude-cases": excluded, "exclude-agent-cases": {}}, open(spec, "w"), indent=2)
print(f"autobahn-embassy: {len(locked['capacity'])} capacity cases listed, {len(probes)} of them run as probes")
PY

log "network namespace $NS with $TAP at $HOST/24 (the client is 192.0.2.2)"
netns_create_tap "$TAP" "$HOST/24"

ip netns exec "$NS" timeout "$((TIMEOUT + 60))" "$WSTEST" -m fuzzingserver -s "$SPEC" -u 0 >"$W/wstest.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do
    ip netns exec "$NS" bash -c "exec 3<>/dev/tcp/$HOST/$PORT" 2>/dev/null && break
    sleep 0.2
done
ip netns exec "$NS" bash -c "exec 3<>/dev/tcp/$HOST/$PORT" 2>/dev/null || fail "wstest did not listen on $HOST:$PORT"

log "running the client (timeout ${TIMEOUT}s)"
START=$SECONDS
status=0
ip netns exec "$NS" timeout "$TIMEOUT" "$CLIENT" --tap "$TAP" --server "$HOST:$PORT" --agent "$AGENT" \
    >"$W/client.log" 2>&1 || status=$?
cat "$W/client.log"
[ "$status" -eq 0 ] || fail "the client exited with $status"
log "client finished in $((SECONDS - START)) s"
[ -f "$OUTDIR/index.json" ] || fail "wstest wrote no ${OUTDIR#"$ROOT"/}/index.json"

python3 - "$EXPECTED" "$OUTDIR" "$AGENT" "${AUTOBAHN_UPDATE:-0}" "$ROOT/scripts" <<'PY' || fail "results differ from ${EXPECTED#"$ROOT"/}"
import json, os, sys
expected_path, outdir, agent, update, scripts = sys.argv[1:]
sys.path.insert(0, scripts)
import autobahn_compare as ac

label = "autobahn embassy client"
locked = json.load(open(expected_path))
actual, raw, _ = ac.load_results(outdir, agent)
probes = {c: actual.pop(c, None) for c in locked["capacity_probes"]}
ok = True
for case, result in probes.items():
    if result is None:
        print(f"{label}: capacity probe {case}: not run")
        ok = False
    elif result["remoteCloseCode"] != 1009:
        print(f"{label}: capacity probe {case}: the client closed with {result['remoteCloseCode']}, expected 1009")
        ok = False
    else:
        print(f"{label}: capacity probe {case}: refused with 1009 ({locked['capacity'][case]})")
bad = ac.bad_cases(actual, raw, outdir)
if update == "1":
    locked["cases"] = ac.sorted_cases(actual)
    tmp = expected_path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(locked, f, indent=2)
        f.write("\n")
    os.replace(tmp, expected_path)
    print(f"{label}: AUTOBAHN_UPDATE=1: rewrote the cases of {expected_path}")
    differences = []
else:
    differences = ac.diff({c: {f: r.get(f) for f in ac.FIELDS} for c, r in locked["cases"].items()}, actual)
for line in differences + bad:
    print(f"{label}: {line}")
print(ac.summary(label, actual) + f"; {len(locked['capacity'])} capacity cases excluded "
      f"({len(probes)} probed: 1009)")
sys.exit(0 if ok and not differences and not bad else 1)
PY
echo "PASS: autobahn-embassy"
