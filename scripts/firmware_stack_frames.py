#!/usr/bin/env python3
"""The largest stack frames of Thumb-2 ELFs, from their prologues: the
registers pushed (`push`, `vpush`) and the space reserved (`sub sp, #n`) in
the first instructions of each function. A frame is what one call of the
function takes; an async task's poll function reserves the most any of its
states needs, on every poll.

Then the depth: the deepest chain of direct calls (`bl`, and `b` to another
function: a tail call, which reuses its caller's frame) below each embassy
task's poll function and below `main`, whose executor calls those polls
through a function pointer. A thread-mode stack needs at most `main`'s depth
plus the deepest poll's, as long as the calls through pointers on the way
(wakers, mostly; counted and named) and interrupt handlers, which run on the
same stack, add less than the headroom left. Recursion is reported, not
followed.

Usage: firmware_stack_frames.py ELF [ELF ...]   (needs llvm-objdump)
"""
import re
import subprocess
import sys

FUNCTION = re.compile(r"^[0-9a-f]+ <(.+)>:$")
# A direct branch to the start of a function (no `+0x…` offset): a call (`bl`) or a tail call.
BRANCH = re.compile(r"\s(bl|b|b\.w)\s+0x[0-9a-f]+ <(.+?)>(?:\s|$)")
INDIRECT = re.compile(r"\sblx\s+r\d+")
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


class Function:
    def __init__(self):
        self.frame = 0
        self.calls = set()  # (callee, whether the caller's frame stays below it)
        self.indirect = 0


def functions(elf):
    out = subprocess.run(["llvm-objdump", "-d", "-C", "--no-show-raw-insn", elf],
                         capture_output=True, text=True, check=True).stdout
    result, name, seen, size = {}, None, 0, 0
    for line in out.splitlines():
        m = FUNCTION.match(line)
        # `$t` and `$d` mark code and data inside the function above.
        if m and not m.group(1).startswith("$"):
            name, seen, size = m.group(1), 0, 0
            result.setdefault(name, Function())
            continue
        if name is None or m or not line.strip():
            continue
        f = result[name]
        m = BRANCH.search(line)
        if m and "+0x" not in m.group(2) and m.group(2) != name:
            f.calls.add((m.group(2), m.group(1) == "bl"))
        elif INDIRECT.search(line):
            f.indirect += 1
        if seen >= PROLOGUE:
            continue
        seen += 1
        m = PUSH.search(line)
        if m:
            size += registers(m.group(2), m.group(1) == "vpush")
        m = SUB_SP.search(line)
        if m:
            size += int(m.group(1))
        f.frame = max(f.frame, size)
    return result


def frames(elf):
    return {name: f.frame for name, f in functions(elf).items() if f.frame}


def deepest(funcs, root):
    """(bytes, chain of names, calls through pointers on the way, recursion met) of the
    deepest chain of direct calls from `root`."""
    memo, active, recursive = {}, set(), []

    def walk(name):
        if name in memo:
            return memo[name]
        f = funcs.get(name)
        if f is None:
            return 0, [], 0
        if name in active:
            recursive.append(name)
            return 0, [], 0
        active.add(name)
        best = (0, [], 0)
        for callee, stays in sorted(f.calls):
            depth, chain, indirect = walk(callee)
            depth += f.frame if stays else 0
            if depth > best[0]:
                best = (depth, chain, indirect)
        active.discard(name)
        result = (max(best[0], f.frame), [name] + best[1], best[2] + f.indirect)
        memo[name] = result
        return result

    depth, chain, indirect = walk(root)
    return depth, chain, indirect, sorted(set(recursive))


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
        funcs = functions(elf)
        top = sorted(((f.frame, name) for name, f in funcs.items() if f.frame), reverse=True)[:5]
        print(f"\n{elf.rsplit('/', 1)[-1]}: largest stack frames")
        for size, name in top:
            print(f"  {size:6d} B  {short(name)}")
        polls = [name for name in funcs if re.search(r"TaskStorage.*::poll", name)]
        below_main, _, _, _ = deepest(funcs, "main")
        print(f"  deepest chains: main {below_main} B, and under it, through the executor's pointer:")
        worst = 0
        for name in sorted(polls, key=lambda n: -deepest(funcs, n)[0]):
            depth, chain, indirect, recursive = deepest(funcs, name)
            worst = max(worst, depth)
            via = " > ".join(f"{short(n).rsplit('::', 2)[-2] if '::' in short(n) else short(n)} {funcs[n].frame}"
                             for n in chain[1:5] if funcs[n].frame)
            note = f"; {indirect} calls through pointers not followed" if indirect else ""
            note += f"; recursion at {', '.join(short(r) for r in recursive)}" if recursive else ""
            print(f"    task poll {depth:6d} B ({funcs[name].frame} own; then {via or 'nothing'}{note})")
        print(f"  thread-mode stack, direct calls: at most {below_main + worst} B")


if __name__ == "__main__":
    main()
