"""Sections and symbols of a 32-bit little-endian ELF, for the firmware size reports
(scripts/firmware-size.sh, scripts/qemu_room_size.py)."""
import struct


def parse(path):
    data = open(path, "rb").read()
    assert data[:4] == b"\x7fELF" and data[4] == 1 and data[5] == 1, "expected a 32-bit little-endian ELF"
    shoff, = struct.unpack_from("<I", data, 0x20)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x2E)
    sections = []
    for i in range(shnum):
        name, typ, flags, addr, off, size, link, info, align, entsize = struct.unpack_from(
            "<IIIIIIIIII", data, shoff + i * shentsize)
        sections.append(dict(name=name, type=typ, addr=addr, off=off, size=size, link=link))

    def cstr(off):
        return data[off:data.index(b"\0", off)].decode("utf-8", "replace")

    strtab = sections[shstrndx]
    for s in sections:
        s["name"] = cstr(strtab["off"] + s["name"])
    symbols = []
    for s in sections:
        if s["type"] != 2:  # SHT_SYMTAB
            continue
        names = sections[s["link"]]
        for j in range(s["size"] // 16):
            st_name, value, size, info, other, shndx = struct.unpack_from("<IIIBBH", data, s["off"] + j * 16)
            symbols.append(dict(name=cstr(names["off"] + st_name), value=value, size=size, type=info & 0xF,
                                shndx=shndx))
    return data, sections, symbols

