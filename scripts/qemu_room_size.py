#!/usr/bin/env python3
"""Footprint of the QEMU room firmware (firmware/src/bin/qemu-room.rs), from its ELF.

Prints flash (.text + .rodata, plus the vector table) and static RAM (.data + .bss) of the
whole image; then the instructions of .text by the source file they came from (the DWARF line
tables, so code inlined into another crate's function still counts for the crate that wrote it),
with roomwire's share (roomwire-core + roomwire-embassy) and the LAN9118 driver's, and for
comparison the same shares by symbol name (as scripts/firmware-size.sh counts: legacy-mangled
names carry the crate of the item, inlined code counts for its caller); and the state sizes the
firmware records (size_of on the target).

Usage: scripts/qemu_room_size.py ELF      (called by scripts/qemu-e2e.sh)
"""
import struct
import sys


from elf_sections import parse  # noqa: E402  (scripts/ is on sys.path when run as a script)

def uleb(data, pos):
    result = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return result, pos


def sleb(data, pos):
    result = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            if byte & 0x40:
                result -= 1 << shift
            return result, pos


def cstring(data, pos):
    end = data.index(b"\0", pos)
    return data[pos:end].decode("utf-8", "replace"), end + 1


def comp_dirs(data, sections):
    """{.debug_line offset: DW_AT_comp_dir} of every DWARF 4 compile unit: relative paths in a line
    table are relative to its unit's compilation directory."""
    info = next((s for s in sections if s["name"] == ".debug_info"), None)
    abbrev = next((s for s in sections if s["name"] == ".debug_abbrev"), None)
    strs = next((s for s in sections if s["name"] == ".debug_str"), None)
    if not (info and abbrev and strs):
        return {}
    fixed = {0x01: 4, 0x0b: 1, 0x05: 2, 0x06: 4, 0x07: 8, 0x17: 4, 0x0c: 1, 0x19: 0, 0x0e: 4, 0x10: 4, 0x13: 4}
    out = {}
    pos, end = info["off"], info["off"] + info["size"]
    while pos < end:
        unit_length, version, abbrev_offset, addr_size = struct.unpack_from("<IHIB", data, pos)
        unit_end = pos + 4 + unit_length
        if version != 4:
            return out
        code, q = uleb(data, pos + 11)
        # Find that code's declaration.
        a = abbrev["off"] + abbrev_offset
        while True:
            acode, a = uleb(data, a)
            if acode == 0:
                break
            _, a = uleb(data, a)  # tag
            a += 1  # has_children
            specs = []
            while True:
                name, a = uleb(data, a)
                form, a = uleb(data, a)
                if name == 0 and form == 0:
                    break
                specs.append((name, form))
            if acode == code:
                break
        stmt_list = comp_dir = None
        for name, form in specs:
            if form == 0x0e:  # strp
                off, = struct.unpack_from("<I", data, q)
                value = cstring(data, strs["off"] + off)[0]
            elif form == 0x08:  # string
                value, q2 = cstring(data, q)
                q = q2 - 4  # the fixed advance below is 0 for it
            elif form in (0x0f, 0x0d):  # udata, sdata
                value, q2 = uleb(data, q)
                q = q2
            else:
                value = struct.unpack_from("<I", data, q)[0] if fixed.get(form) == 4 else None
            if name == 0x10:  # DW_AT_stmt_list
                stmt_list = value
            elif name == 0x1b:  # DW_AT_comp_dir
                comp_dir = value
            q += {0x0e: 4, 0x08: 4, 0x0f: 0, 0x0d: 0}.get(form, fixed.get(form, 0))
        if stmt_list is not None and comp_dir:
            out[stmt_list] = comp_dir
        pos = unit_end
    return out


def line_ranges(data, sections):
    """(start, end, path) for every address range of the DWARF 4 line tables: the source file each
    instruction came from, inlined code included. Empty when there is no DWARF 4 line table."""
    section = next((s for s in sections if s["name"] == ".debug_line"), None)
    if section is None:
        return []
    ranges = []
    dirs_of_units = comp_dirs(data, sections)
    pos, end_all = section["off"], section["off"] + section["size"]
    while pos < end_all:
        comp_dir = dirs_of_units.get(pos - section["off"], "")
        unit_length, = struct.unpack_from("<I", data, pos)
        unit_end = pos + 4 + unit_length
        version, = struct.unpack_from("<H", data, pos + 4)
        if version != 4:
            return []
        header_length, = struct.unpack_from("<I", data, pos + 6)
        program = pos + 10 + header_length
        min_inst, max_ops, default_is_stmt, line_base, line_range, opcode_base = struct.unpack_from(
            "<BBBbBB", data, pos + 10)
        q = pos + 16
        std_lengths = list(data[q:q + opcode_base - 1])
        q += opcode_base - 1
        dirs = [comp_dir]
        while data[q] != 0:
            d, q = cstring(data, q)
            dirs.append(d if d.startswith("/") else f"{comp_dir}/{d}")
        q += 1
        files = [""]
        while data[q] != 0:
            name, q = cstring(data, q)
            dir_index, q = uleb(data, q)
            _, q = uleb(data, q)
            _, q = uleb(data, q)
            files.append(name if name.startswith("/") else f"{dirs[dir_index]}/{name}")
        # The state machine.
        q = program
        address, file = 0, 1
        rows = []

        def emit():
            rows.append((address, file))

        while q < unit_end:
            op = data[q]
            q += 1
            if op >= opcode_base:
                adjusted = op - opcode_base
                address += (adjusted // line_range) * min_inst
                emit()
            elif op == 0:  # extended
                length, q = uleb(data, q)
                sub = data[q]
                if sub == 1:  # end_sequence
                    emit()
                    for (a, f), (b, _) in zip(rows, rows[1:]):
                        if b > a and 0 < f < len(files):
                            ranges.append((a, b, files[f]))
                    rows = []
                    address, file = 0, 1
                elif sub == 2:  # set_address
                    address, = struct.unpack_from("<I", data, q + 1)
                q += length
            elif op == 1:  # copy
                emit()
            elif op == 2:  # advance_pc
                n, q = uleb(data, q)
                address += n * min_inst
            elif op == 3:  # advance_line
                _, q = sleb(data, q)
            elif op == 4:  # set_file
                file, q = uleb(data, q)
            elif op == 8:  # const_add_pc
                address += ((255 - opcode_base) // line_range) * min_inst
            elif op == 9:  # fixed_advance_pc
                n, = struct.unpack_from("<H", data, q)
                q += 2
                address += n
            else:  # set_column, negate_stmt, basic_block, prologue_end, epilogue_begin, set_isa, …
                for _ in range(std_lengths[op - 1]):
                    _, q = uleb(data, q)
        pos = unit_end
    return ranges


# Source directories -> what the report calls them.
SOURCES = [("/rustc/", "Rust core library (core::fmt, slices, …)"), ("/registry/src/", None),
           ("/drivers/lan9118/", "embassy-net-lan9118 (driver)"), ("/adapter-embassy/src/", "roomwire-embassy"),
           ("/core/src/", "roomwire-core"),
           ("src/bin", "the firmware itself (qemu-room.rs)"), ("/examples/common/", "the firmware itself (qemu-room.rs)")]


def source_of(path):
    for marker, name in SOURCES:
        if marker in path:
            return name or path.split(marker, 1)[1].split("/")[1]  # a registry crate: name-version
    return "(other)"


def read_usize(data, sections, symbols, name):
    for sym in symbols:
        if sym["name"] == name:
            for s in sections:
                if s["addr"] <= sym["value"] < s["addr"] + s["size"] and s["type"] != 8:  # not NOBITS
                    return struct.unpack_from("<I", data, s["off"] + sym["value"] - s["addr"])[0]
    return None


# Longest names first where one contains another (embassy_net_lan9118 before embassy_net).
CRATES = ["roomwire_core", "roomwire_embassy", "embassy_net_lan9118", "embassy_net_driver", "embassy_net",
          "smoltcp", "embassy_executor", "embassy_time_queue_utils", "embassy_time", "embassy_sync",
          "embassy_futures", "serde_json_core", "postcard", "serde", "httparse", "hmac_sha1_compact", "sha1", "base64", "heapless",
          "cortex_m_semihosting", "cortex_m_rt", "cortex_m", "qemu_room", "compiler_builtins", "core"]


def crate_of(name):
    for crate in CRATES:
        # Legacy mangling: _ZN<len><crate>..., or a crate path inside a <impl ... as ...> name.
        if f"{len(crate)}{crate}" in name or f"{crate}.." in name:
            return crate
    return None


def main():
    path = sys.argv[1]
    data, sections, symbols = parse(path)
    size = lambda n: sum(s["size"] for s in sections if s["name"] == n)
    text, rodata, vectors, rwdata, bss = size(".text"), size(".rodata"), size(".vector_table"), size(".data"), size(".bss")
    flash, ram = text + rodata + vectors + rwdata, rwdata + bss

    totals = {}
    other = 0
    seen = set()
    for sym in symbols:
        if sym["type"] not in (1, 2) or sym["size"] == 0:  # objects and functions
            continue
        section = sections[sym["shndx"]]["name"] if sym["shndx"] < len(sections) else ""
        if section not in (".text", ".rodata"):
            continue
        key = (sym["value"] & ~1, sym["size"])
        if key in seen:
            continue
        seen.add(key)
        crate = crate_of(sym["name"])
        if crate is None:
            other += sym["size"]
        else:
            totals[crate] = totals.get(crate, 0) + sym["size"]

    kib = lambda n: f"{n:7d} B ({n / 1024:5.1f} KiB)"
    print("== qemu-room footprint (thumbv7em-none-eabihf, release, opt-level z, LTO) ==")
    print(f"flash      {kib(flash)}   (.text {text}, .rodata {rodata}, vector table {vectors}, .data image {rwdata})")
    print(f"static RAM {kib(ram)}   (.data {rwdata}, .bss {bss}; stack not included)")
    by_symbol_roomwire = totals.get("roomwire_core", 0) + totals.get("roomwire_embassy", 0)
    by_symbol_driver = totals.get("embassy_net_lan9118", 0)

    # Instructions by the source file they came from (inlining resolved).
    text_section = next(s for s in sections if s["name"] == ".text")
    lo, hi = text_section["addr"], text_section["addr"] + text_section["size"]
    by_source = {}
    for a, b, path in line_ranges(data, sections):
        a, b = max(a, lo), min(b, hi)
        if b > a:
            name = source_of(path)
            by_source[name] = by_source.get(name, 0) + b - a
    print()
    if by_source:
        print(".text by the source each instruction came from (DWARF line tables: inlined code counts for")
        print("the crate that wrote it):")
        for name, n in sorted(by_source.items(), key=lambda kv: -kv[1])[:16]:
            print(f"  {name:<44} {n:7d} B")
        roomwire = by_source.get("roomwire-core", 0) + by_source.get("roomwire-embassy", 0)
        driver = by_source.get("embassy-net-lan9118 (driver)", 0)
        print(f"  (by symbol name instead, .text and .rodata: roomwire-core {totals.get('roomwire_core', 0)} B, "
              f"roomwire-embassy {totals.get('roomwire_embassy', 0)} B, driver {by_symbol_driver} B)")
    else:
        roomwire, driver = by_symbol_roomwire, by_symbol_driver
    print()
    driver_state = read_usize(data, sections, symbols, "QEMU_ROOM_DRIVER_STATE_SIZE")
    client_state = read_usize(data, sections, symbols, "QEMU_ROOM_CLIENT_STATE_SIZE")
    client_buffers = read_usize(data, sections, symbols, "QEMU_ROOM_CLIENT_BUFFERS_SIZE")
    print(f"roomwire share (roomwire-core + roomwire-embassy code): flash {roomwire} B ({roomwire / 1024:.1f} KiB); "
          f"RAM: client state {client_state} B + buffers lent {client_buffers} B")
    print(f"LAN9118 driver share (embassy-net-lan9118 code): flash {driver} B ({driver / 1024:.1f} KiB); "
          f"RAM: driver state {driver_state} B (two 1520-byte frame buffers included)")


if __name__ == "__main__":
    main()
