#!/usr/bin/env python3
"""The largest stack frames of Thumb-2 ELFs, from their prologues: the
registers pushed (`push`, `vpush`) and the space reserved (`sub sp, #n`) in
the first instructions of each function. A frame is what one call of the
function takes; an async task's poll function reserves the most any of its
states needs, on every poll. Not a worst-case depth (that needs the call
graph), but where the stack goes.

Usage: firmware_stack_frames.py ELF [ELF ...]   (needs llvm-objdump)
"""
import re
import subprocess
import sys

FUNCTION = re.compile(r"^[0-9a-f]+ <(.+)>:$")
PUSH = re.compile(r"\s(v?push)(?:\.w)?\s+\{([^}]*)\}")
SUB_SP = re.compile(r"\ssub(?:w|\.w)?\s+sp,\s*(?:sp,\s*)?#(\d+)")
PROLOGUE = 10


def registers(listing, vector):
    count = 0
    for part in listing.split(","):
        part = part.strip()
        m = re.fullmatch(r"([a-z]+)(\d+)-[a-z]+(\d+)", part)
        count += int(m.group(3)) - int(m.group(2)) + 1 if m else 1
    return count * (8 if vector and listing.strip().startswith("d") else 4)


def frames(elf):
    out = subprocess.run(["llvm-objdump", "-d", "-C", "--no-show-raw-insn", elf],
                         capture_output=True, text=True, check=True).stdout
    result, name, seen, size = {}, None, 0, 0
    for line in out.splitlines():
        m = FUNCTION.match(line)
        if m:
            if name is not None and size:
                result[name] = max(result.get(name, 0), size)
            name, seen, size = m.group(1), 0, 0
            continue
        if name is None or seen >= PROLOGUE or not line.strip():
            continue
        seen += 1
        m = PUSH.search(line)
        if m:
            size += registers(m.group(2), m.group(1) == "vpush")
        m = SUB_SP.search(line)
        if m:
            size += int(m.group(1))
    if name is not None and size:
        result[name] = max(result.get(name, 0), size)
    return result


def short(name):
    name = re.sub(r"::h[0-9a-f]{16}$", "", name)
    for mangled, plain in (("$LT$", "<"), ("$GT$", ">"), ("$C$", ","), ("$u7b$", "{"), ("$u7d$", "}"),
                           ("$u20$", " "), ("$RF$", "&"), ("..", "::")):
        name = name.replace(mangled, plain)
    # Generic arguments, innermost first, folded into a mark until none is left.
    mark = "\x00"
    while re.search(r"<[^<>]*>", name):
        name = re.sub(r"<[^<>]*>", lambda _: mark, name)
    name = name.replace(mark, "<…>")
    name = re.sub(r"<[^<>]*>", "<…>", name)
    return name if len(name) <= 90 else name[:87] + "..."


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    for elf in sys.argv[1:]:
        top = sorted(frames(elf).items(), key=lambda kv: -kv[1])[:5]
        print(f"\n{elf.rsplit('/', 1)[-1]}: largest stack frames")
        for name, size in top:
            print(f"  {size:6d} B  {short(name)}")


if __name__ == "__main__":
    main()
