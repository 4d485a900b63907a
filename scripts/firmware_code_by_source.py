#!/usr/bin/env python3
"""Bytes of machine code per source file, read from the DWARF line tables of
release ELFs (built with debuginfo): every byte of `.text` is given to the
source file its line-table row names, inlined code included, so that code
LTO inlined into a caller is counted where it was written (symbol sizes give
it to the caller).

Usage: firmware_code_by_source.py BASELINE.elf ELF [ELF ...]
Prints, for each ELF after the first, the code it has beyond the baseline,
by our source files (roomwire-core, roomwire-embassy) and by other crate,
largest first. Needs llvm-dwarfdump.
"""
import collections
import re
import subprocess
import sys

sys.path.insert(0, __import__("os").path.dirname(__file__))
from elf_sections import parse  # noqa: E402

ROW = re.compile(r"^0x([0-9a-f]+)\s+(\d+)\s+(\d+)\s+(\d+)\s.*?(end_sequence)?\s*$")
# DWARF 5 tables name strings as `.debug_line_str[0x…] = "…"`.
DIR = re.compile(r'^include_directories\[\s*(\d+)\] = (?:\.debug_line_str\[0x[0-9a-f]+\] = )?"(.*)"')
FILE = re.compile(r'^file_names\[\s*(\d+)\]:')
NAME = re.compile(r'^\s+name: (?:\.debug_line_str\[0x[0-9a-f]+\] = )?"(.*)"')
DIR_INDEX = re.compile(r"^\s+dir_index: (\d+)")


OTHER_DETAIL = False


def category(directory, name):
    """A short, machine-independent name for where code was written."""
    path = f"{directory}/{name}"
    if "/rustc/" in path or path.startswith("library/") or "/library/" in path:
        # The standard library: by its module (core::fmt, core::str, ...).
        tail = path.split("library/", 1)[-1]
        parts = tail.split("/")
        module = parts[2] if len(parts) > 3 and parts[1] == "src" else parts[-1]
        module = module[:-3] if module.endswith(".rs") else module
        return f"std: {parts[0]}::{module}"
    for ours, label in (("/core/src/", "roomwire-core"), ("/adapter-embassy/src/", "roomwire-embassy")):
        if ours in path:
            return f"{label}: {path.split(ours, 1)[1]}"
    if "/firmware/" in path:
        return "firmware (the example program)"
    match = re.search(r"/registry/src/[^/]+/([^/]+?)-\d+\.\d+[^/]*/", path)
    if match:
        return match.group(1)
    return f"other: {path}" if OTHER_DETAIL else "other"


def code_by_source(elf):
    sections = parse(elf)[1]
    text = [(s["addr"], s["addr"] + s["size"]) for s in sections if s["name"] == ".text"]
    out = subprocess.run(["llvm-dwarfdump", "--debug-line", elf], capture_output=True, text=True, check=True).stdout
    # A line table's directory 0 is its compile unit's directory.
    info = subprocess.run(["llvm-dwarfdump", "--debug-info", elf], capture_output=True, text=True, check=True).stdout
    comp_dirs, stmt_list = {}, None
    for line in info.splitlines():
        m = re.search(r"DW_AT_stmt_list\s+\((0x[0-9a-f]+)\)", line)
        if m:
            stmt_list = int(m.group(1), 16)
            continue
        m = re.search(r'DW_AT_comp_dir\s+\("(.*)"\)', line)
        if m and stmt_list is not None:
            comp_dirs[stmt_list] = m.group(1)
            stmt_list = None
    sizes = collections.Counter()
    dirs, files = {}, {}
    current_file = None
    prev = None  # (address, category) of the row before, in this sequence
    live = False
    for line in out.splitlines():
        if line.startswith("debug_line["):
            offset = int(line[len("debug_line[") : line.index("]")], 16)
            dirs, files, prev = {0: comp_dirs.get(offset, "")}, {}, None
            continue
        m = DIR.match(line)
        if m:
            # Relative directories are the compile unit's.
            directory = m.group(2)
            dirs[int(m.group(1))] = directory if directory.startswith("/") else f"{dirs[0]}/{directory}"
            continue
        m = FILE.match(line)
        if m:
            current_file = int(m.group(1))
            continue
        m = NAME.match(line)
        if m and current_file is not None:
            files[current_file] = [m.group(1), 0]
            continue
        m = DIR_INDEX.match(line)
        if m and current_file in files:
            files[current_file][1] = int(m.group(1))
            continue
        m = ROW.match(line)
        if not m:
            continue
        address, file_index = int(m.group(1), 16), int(m.group(4))
        if prev is None:
            # A sequence is kept whole or not at all, by where it starts:
            # the linker leaves the sequences of functions it dropped at 0.
            live = any(lo <= address < hi for lo, hi in text)
        elif live:
            sizes[prev[1]] += address - prev[0]
        if m.group(5):
            prev = None
        else:
            name, dir_index = files.get(file_index, ["?", 0])
            prev = (address, category(dirs.get(dir_index, ""), name))
    return sizes


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    base = code_by_source(sys.argv[1])
    for elf in sys.argv[2:]:
        sizes = code_by_source(elf)
        diff = {k: sizes[k] - base.get(k, 0) for k in set(sizes) | set(base)}
        total = sum(diff.values())
        name = elf.rsplit("/", 1)[-1]
        print(f"\n{name} - baseline: {total} B of code, by where it was written (inlined code included)")
        ours = sorted(((v, k) for k, v in diff.items() if k.startswith("roomwire") and v), reverse=True)
        rest = collections.Counter()
        for k, v in diff.items():
            if not k.startswith("roomwire"):
                rest[k.split(":")[0] if k.startswith("std:") else k] += v
        small = sum(v for v, _ in ours if abs(v) < 100)
        for v, k in ours:
            if abs(v) >= 100:
                print(f"  {v:7d}  {k}")
        print(f"  {small:7d}  roomwire, files under 100 B each")
        print(f"  {sum(v for v, _ in ours):7d}  = roomwire, all files")
        std = sorted(((v, k) for k, v in diff.items() if k.startswith("std:") and v), reverse=True)
        print(f"  {sum(v for v, _ in std):7d}  the standard library, inlined ("
              + ", ".join(f"{k[5:]} {v}" for v, k in std[:6]) + ", ...)")
        for k, v in sorted(rest.items(), key=lambda kv: -kv[1]):
            if v and k != "std":
                print(f"  {v:7d}  {k}")


if __name__ == "__main__":
    main()
