#!/usr/bin/env bash
# Builds the example firmwares in firmware/ for thumbv7em-none-eabihf (release, opt-level "z", LTO)
# and prints their flash (.text + .rodata) and static RAM (.data + .bss), the difference the
# roomwire client makes over the baseline (embassy executor + embassy-net TCP, same in every
# variant), the bytes of code attributed to each crate, the client's state size, (with
# llvm-dwarfdump) the client's code by the source file it was written in, inlined code included,
# and (with llvm-objdump) each image's largest stack frames and deepest chain of calls.
#
# Three room clients, the same program on three channels: `client` (every wire, chosen at run time),
# `client-postcard` (a channel spoken in postcard only) and `client-alepha` (the Alepha JSON wire
# only); the compile-time choice is what keeps the other wires out of the image. Beside them, two
# WebSocket clients without rooms doing the same work: `websocket` (roomwire-embassy's) and `ews`
# (embedded-websocket's), so that the WebSocket layer is compared on its own.
#
# Checked (exit 1 when missed): each whole client (client - baseline: everything the room client
# links, inlined code included) at most its gate, the figure of BENCHMARKS.md with 1 KiB of
# headroom, so that any growth of the image is seen; roomwire-core's own symbols at most 16 KiB; the
# client's state at most 2 KiB of RAM beyond the buffers the firmware lends it. The targets, 16 KiB
# for the postcard client and 24 KiB for the Alepha one, are reported beside the gates until met;
# then they become the gates.
#
# Usage: scripts/firmware-size.sh        (run from anywhere; installs the rustup target if missing)
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
TARGET=thumbv7em-none-eabihf
CORE_FLASH_LIMIT=$((16 * 1024))
CLIENT_FLASH_GATE=$((41368 + 1024))
POSTCARD_FLASH_GATE=$((26540 + 1024))
ALEPHA_FLASH_GATE=$((34340 + 1024))
CLIENT_FLASH_TARGET=$((16 * 1024))
ALEPHA_FLASH_TARGET=$((24 * 1024))
STATE_RAM_LIMIT=$((2 * 1024))

log() { echo "firmware-size: $*"; }
fail() {
    echo "firmware-size: ERROR: $*" >&2
    echo "FAIL: firmware-size"
    exit 1
}

if ! rustup target list --installed | grep -qx "$TARGET"; then
    log "rustup target add $TARGET"
    rustup target add "$TARGET"
fi

cd "$ROOT/firmware"
BINS=(baseline client client-postcard client-alepha websocket ews)
log "building ${BINS[*]} (release, $TARGET)"
args=()
for b in "${BINS[@]}"; do args+=(--bin "$b"); done
# The ELFs are looked for below, whatever CARGO_TARGET_DIR says.
if ! cargo build --release --target "$TARGET" --target-dir "$ROOT/firmware/target" "${args[@]}"; then
    fail "firmware build failed"
fi

ELF_DIR="$ROOT/firmware/target/$TARGET/release"
python3 - "$ELF_DIR" "$CORE_FLASH_LIMIT" "$STATE_RAM_LIMIT" "$ROOT/scripts" "$CLIENT_FLASH_GATE" "$CLIENT_FLASH_TARGET" \
    "$POSTCARD_FLASH_GATE" "$ALEPHA_FLASH_GATE" "$ALEPHA_FLASH_TARGET" "${BINS[@]}" <<'PY' || fail "size limits missed (see above)"
import re, struct, sys

elf_dir, core_limit, state_limit, scripts_dir = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
client_gate, client_target = int(sys.argv[5]), int(sys.argv[6])
postcard_gate, alepha_gate, alepha_target = int(sys.argv[7]), int(sys.argv[8]), int(sys.argv[9])
BINS = sys.argv[10:]

sys.path.insert(0, scripts_dir)
from elf_sections import parse

def section_sizes(sections):
    get = lambda n: sum(s["size"] for s in sections if s["name"] == n)
    flash = get(".text") + get(".rodata")
    ram = get(".data") + get(".bss")
    return flash, ram, get(".vector_table")

def read_usize(data, sections, symbols, name):
    for sym in symbols:
        if sym["name"] == name:
            for s in sections:
                if s["addr"] <= sym["value"] < s["addr"] + s["size"] and s["type"] != 8:
                    return struct.unpack_from("<I", data, s["off"] + sym["value"] - s["addr"])[0]
    return None

# Crates whose code is counted, by the (legacy-mangled) symbol names: the first crate named as a path
# (`_ZN8postcard..`, or inside an impl's segment, `$LT$postcard..`) takes the symbol, so that a
# generic instantiation counts for the crate of the item it instantiates, and a binary named
# `client_postcard` counts for none. Flash only (.text, .rodata): RAM objects are reported apart.
CRATES = ["roomwire_core", "roomwire_embassy", "embedded_websocket", "serde_json_core", "postcard",
          "serde", "httparse", "hmac_sha1_compact", "sha1", "base64", "heapless", "embassy_net", "smoltcp", "embassy_executor"]
CRATE_PATH = re.compile(r"(?:_ZN\d+|\$LT\$|\$u20\$|\$RF\$|\$BP\$)(" + "|".join(CRATES) + r")(?:\.\.|\d)")

def by_crate(sections, symbols):
    flash = {i for i, s in enumerate(sections) if s["name"] in (".text", ".rodata")}
    totals = dict.fromkeys(CRATES, 0)
    seen = set()
    for sym in symbols:
        if sym["type"] not in (1, 2) or sym["size"] == 0 or sym["shndx"] not in flash:
            continue
        key = (sym["value"] & ~1, sym["size"])
        if key in seen:
            continue
        seen.add(key)
        m = CRATE_PATH.search(sym["name"])
        if m:
            totals[m.group(1)] += sym["size"]
    return totals

results = {}
for b in BINS:
    data, sections, symbols = parse(f"{elf_dir}/{b}")
    flash, ram, vectors = section_sizes(sections)
    results[b] = dict(flash=flash, ram=ram, crates=by_crate(sections, symbols), data=data, sections=sections, symbols=symbols)

kib = lambda n: f"{n:7d} B ({n / 1024:5.1f} KiB)"
print()
print("== firmware sizes (thumbv7em-none-eabihf, release, opt-level z, LTO) ==")
print(f"{'firmware':<16} {'flash (.text+.rodata)':>26} {'static RAM (.data+.bss)':>26}")
for b, r in results.items():
    print(f"{b:<16} {kib(r['flash']):>26} {kib(r['ram']):>26}")
base = results["baseline"]
for b, label in [("client", "roomwire client, every wire (core + roomwire-embassy + serde/postcard/JSON)"),
                 ("client-postcard", "roomwire client, postcard only"),
                 ("client-alepha", "roomwire client, Alepha JSON wire only"),
                 ("websocket", "roomwire-embassy WebSocket client (WebSocket + postcard, no rooms)"),
                 ("ews", "embedded-websocket client (WebSocket + postcard, no rooms)")]:
    r = results[b]
    print(f"{b} - baseline: flash {r['flash'] - base['flash']:+d} B, RAM {r['ram'] - base['ram']:+d} B   <- {label}")

print()
print("== code attributed to each crate (symbol sizes; inlined code counts for its caller) ==")
print(f"{'crate':<20} {'baseline':>9} {'client':>9} {'postcard':>9} {'alepha':>9} {'websocket':>9} {'ews':>9}")
for crate in CRATES:
    row = [results[b]["crates"][crate] for b in BINS]
    if any(row):
        print(f"{crate:<20} " + " ".join(f"{n:>9}" for n in row))

c = results["client"]
states = {b: read_usize(results[b]["data"], results[b]["sections"], results[b]["symbols"], "ROOMWIRE_CLIENT_STATE_SIZE")
          for b in ["client", "client-postcard", "client-alepha"]}
state = max((s for s in states.values() if s is not None), default=None)
room = read_usize(c["data"], c["sections"], c["symbols"], "ROOMWIRE_ROOM_CLIENT_SIZE")
conn = read_usize(c["data"], c["sections"], c["symbols"], "ROOMWIRE_CONNECTION_SIZE")
print()
print("== client state (size_of on the target) ==")
print(f"roomwire_embassy::Client<Telemetry, 2 rooms>: {state} B (the core's RoomClient {room} B, Connection {conn} B);")
print("buffers lent by the firmware: TCP 1024 + 1024, read 512, write 512, message 512, scratch 256")

core_flash = max(results[b]["crates"]["roomwire_core"] for b in ["client", "client-postcard", "client-alepha"])
delta = c["flash"] - base["flash"]
ok = True
print()
print(f"check: roomwire-core code (the largest of the three clients) {core_flash} B <= {core_limit} B: {'ok' if core_flash <= core_limit else 'MISSED'}")
print(f"check: whole client (client - baseline) {delta} B <= {client_gate} B: {'ok' if delta <= client_gate else 'MISSED'}")
ok = core_flash <= core_limit and delta <= client_gate
for b, gate, target in [("client-postcard", postcard_gate, client_target), ("client-alepha", alepha_gate, alepha_target)]:
    d = results[b]["flash"] - base["flash"]
    print(f"check: {b} (- baseline) {d} B <= {gate} B: {'ok' if d <= gate else 'MISSED'}")
    print(f"target: {b} {d} B <= {target} B: {'met' if d <= target else 'not met yet'}")
    ok = ok and d <= gate
print(f"check: client state (the largest of the three) {state} B <= {state_limit} B: {'ok' if state is not None and state <= state_limit else 'MISSED'}")
ok = ok and state is not None and state <= state_limit
sys.exit(0 if ok else 1)
PY
# Informational: where the client's code was written, inlined code included (symbol sizes above
# give inlined code to its caller). From the DWARF line tables; needs llvm-dwarfdump.
if command -v llvm-dwarfdump >/dev/null; then
    python3 "$ROOT/scripts/firmware_code_by_source.py" "$ELF_DIR/baseline" "$ELF_DIR/client-postcard" "$ELF_DIR/client-alepha" \
        "$ELF_DIR/websocket" ||
        log "(the breakdown by source file failed; the checks above stand)"
else
    log "(no llvm-dwarfdump: no breakdown by source file)"
fi
# Informational: the largest stack frames (what one call takes; a task's poll reserves what its
# largest state needs, on every poll) and the deepest chains of direct calls. Needs llvm-objdump.
if command -v llvm-objdump >/dev/null; then
    python3 "$ROOT/scripts/firmware_stack_frames.py" "$ELF_DIR/baseline" "$ELF_DIR/client-postcard" \
        "$ELF_DIR/client-alepha" "$ELF_DIR/websocket" "$ELF_DIR/ews" ||
        log "(the stack frames could not be read; the checks above stand)"
else
    log "(no llvm-objdump: no stack frames)"
fi
echo "PASS: firmware-size"
