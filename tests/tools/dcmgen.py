"""Write DICOM Part 10 files around JPEG 2000 codestreams (Python 3 stdlib).

A small writer of its own, independent of libcore's walker, for the DICOM
tests: Explicit VR Little Endian data sets, nested sequences of defined
and undefined length, private elements, UN of undefined length (Implicit
VR inside), odd-length values, and encapsulated Pixel Data whose frames
are split into fragments, with a Basic Offset Table, an Extended Offset
Table (with or without its Lengths) or no table at all.

    python3 dcmgen.py [--ts UID] [--frames-per-fragment] ... (see main())

Also `python3 dcmgen.py --extract FILE OUTDIR`: write each frame's
codestream as OUTDIR/frame-N.j2c, found by this module's own reading of
the file (Basic/Extended Offset Table, else one fragment per frame, else
SOC markers), for files written by other programs (GDCM).
"""

import os
import struct
import sys

LONG_VRS = {"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"}
UNDEFINED = 0xFFFFFFFF

TS_J2K_LOSSLESS = "1.2.840.10008.1.2.4.90"
TS_J2K = "1.2.840.10008.1.2.4.91"
TS_J2K_P2_LOSSLESS = "1.2.840.10008.1.2.4.92"
TS_J2K_P2 = "1.2.840.10008.1.2.4.93"
TS_HTJ2K_LOSSLESS = "1.2.840.10008.1.2.4.201"
TS_HTJ2K_RPCL = "1.2.840.10008.1.2.4.202"
TS_HTJ2K = "1.2.840.10008.1.2.4.203"
TS_EXPLICIT = "1.2.840.10008.1.2.1"
TS_IMPLICIT = "1.2.840.10008.1.2"

SC_IMAGE = "1.2.840.10008.5.1.4.1.1.7"
MF_GRAY_BYTE = "1.2.840.10008.5.1.4.1.1.7.2"
MF_GRAY_WORD = "1.2.840.10008.5.1.4.1.1.7.3"
MF_TRUE_COLOR = "1.2.840.10008.5.1.4.1.1.7.4"

# 2.25 + a UUID: a UID root that needs no registration (PS3.5 B.2)
ROOT = "2.25.2380956744127703520694018165209867"


def uid(n):
    return "%s.%d" % (ROOT, n)


def pad(vr, value):
    if len(value) % 2 == 0:
        return value
    return value + (b"\0" if vr in ("UI", "OB", "UN") else b" ")


def el(tag, vr, value, even=True):
    """One Explicit VR Little Endian element (value padded to even length
    unless even=False)."""
    if isinstance(value, str):
        value = value.encode("ascii")
    if even:
        value = pad(vr, value)
    g, e = tag >> 16, tag & 0xFFFF
    if vr in LONG_VRS:
        return struct.pack("<HH2sHI", g, e, vr.encode(), 0, len(value)) + value
    return struct.pack("<HH2sH", g, e, vr.encode(), len(value)) + value


def el_implicit(tag, value):
    return struct.pack("<HHI", tag >> 16, tag & 0xFFFF, len(value)) + value


def us(tag, *vals):
    return el(tag, "US", b"".join(struct.pack("<H", v) for v in vals))


def item(data, undefined=False):
    if undefined:
        return (struct.pack("<HHI", 0xFFFE, 0xE000, UNDEFINED) + data +
                struct.pack("<HHI", 0xFFFE, 0xE00D, 0))
    return struct.pack("<HHI", 0xFFFE, 0xE000, len(data)) + data


def sq(tag, items, undefined=False, vr="SQ"):
    body = b"".join(items)
    g, e = tag >> 16, tag & 0xFFFF
    if undefined:
        return (struct.pack("<HH2sHI", g, e, vr.encode(), 0, UNDEFINED) + body +
                struct.pack("<HHI", 0xFFFE, 0xE0DD, 0))
    return struct.pack("<HH2sHI", g, e, vr.encode(), 0, len(body)) + body


def meta(ts, sop_class, sop_inst):
    body = (el(0x00020001, "OB", b"\x00\x01") + el(0x00020002, "UI", sop_class) +
            el(0x00020003, "UI", sop_inst) + el(0x00020010, "UI", ts) +
            el(0x00020012, "UI", uid(1)) + el(0x00020013, "SH", "DCMGEN 1"))
    return el(0x00020000, "UL", struct.pack("<I", len(body))) + body


def part10(ts, elements, sop_class, sop_inst):
    """elements: {tag: encoded bytes}; written in tag order."""
    data = b"".join(elements[t] for t in sorted(elements))
    return b"\0" * 128 + b"DICM" + meta(ts, sop_class, sop_inst) + data


def split_frame(cs, parts):
    """Cut codestream cs into `parts` fragments of even length (the last
    one padded by one zero byte when cs has odd length)."""
    data = pad("OB", cs)
    if parts <= 1 or len(data) < 4 * parts:
        return [data]
    step = (len(data) // parts) & ~1
    out = [data[i * step:(i + 1) * step] for i in range(parts - 1)]
    out.append(data[(parts - 1) * step:])
    return out


def pixel_data(frames, parts=1, table="bot"):
    """Encapsulated Pixel Data of the codestreams in `frames`; parts is the
    fragment count per frame (an int, or a list). table: "bot", "eot",
    "eot-nolengths" or "none". Returns {tag: bytes} (Pixel Data, and the
    Extended Offset Table elements)."""
    if isinstance(parts, int):
        parts = [parts] * len(frames)
    items, offsets, pos = [], [], 0
    for cs, n in zip(frames, parts):
        offsets.append(pos)
        for frag in split_frame(cs, n):
            items.append(item(frag))
            pos += 8 + len(frag)
    bot = b""
    out = {}
    if table == "bot":
        bot = b"".join(struct.pack("<I", o) for o in offsets)
    elif table.startswith("eot"):
        out[0x7FE00001] = el(0x7FE00001, "OV", b"".join(struct.pack("<Q", o) for o in offsets))
        if table == "eot":
            out[0x7FE00002] = el(0x7FE00002, "OV",
                                 b"".join(struct.pack("<Q", len(cs)) for cs in frames))
    out[0x7FE00010] = (struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OB", 0, UNDEFINED) +
                       item(bot) + b"".join(items) + struct.pack("<HHI", 0xFFFE, 0xE0DD, 0))
    return out


def image(rows, cols, spp, photometric, bits_alloc, bits_stored, signed, nframes, n=1,
          sop_class=None, spacing=None):
    """The attributes of an IOD-complete Secondary Capture image (single
    frame, or a multi-frame SC IOD). Returns (elements, sop_class, sop_inst)."""
    if sop_class is None:
        if nframes == 1:
            sop_class = SC_IMAGE
        elif spp == 3:
            sop_class = MF_TRUE_COLOR
        elif bits_alloc == 8:
            sop_class = MF_GRAY_BYTE
        else:
            sop_class = MF_GRAY_WORD
    inst = uid(1000 + n)
    e = {
        0x00080016: el(0x00080016, "UI", sop_class),
        0x00080018: el(0x00080018, "UI", inst),
        0x00080020: el(0x00080020, "DA", "20260101"),
        0x00080030: el(0x00080030, "TM", "120000"),
        0x00080050: el(0x00080050, "SH", ""),
        0x00080060: el(0x00080060, "CS", "OT"),
        0x00080064: el(0x00080064, "CS", "WSD"),
        0x00080090: el(0x00080090, "PN", ""),
        0x00100010: el(0x00100010, "PN", "Synthetic^Test"),
        0x00100020: el(0x00100020, "LO", "JPIP-%d" % n),
        0x00100030: el(0x00100030, "DA", ""),
        0x00100040: el(0x00100040, "CS", "O"),
        0x0020000D: el(0x0020000D, "UI", uid(2000 + n)),
        0x0020000E: el(0x0020000E, "UI", uid(3000 + n)),
        0x00200010: el(0x00200010, "SH", "1"),
        0x00200011: el(0x00200011, "IS", "1"),
        0x00200013: el(0x00200013, "IS", str(n)),
        0x00180015: el(0x00180015, "CS", "CHEST"),
        0x00200020: el(0x00200020, "CS", ""),
        0x00280002: us(0x00280002, spp),
        0x00280004: el(0x00280004, "CS", photometric),
        0x00280010: us(0x00280010, rows),
        0x00280011: us(0x00280011, cols),
        0x00280100: us(0x00280100, bits_alloc),
        0x00280101: us(0x00280101, bits_stored),
        0x00280102: us(0x00280102, bits_stored - 1),
        0x00280103: us(0x00280103, 1 if signed else 0),
        0x00282110: el(0x00282110, "CS", "00"),
    }
    if spp == 3:
        e[0x00280006] = us(0x00280006, 0)
    if nframes > 1:
        e[0x00280008] = el(0x00280008, "IS", str(nframes))
        e[0x00280009] = el(0x00280009, "AT", struct.pack("<HH", 0x0018, 0x2001))
        e[0x00182001] = el(0x00182001, "IS", "\\".join(str(i + 1) for i in range(nframes)))
        e[0x00280301] = el(0x00280301, "CS", "NO")
        if spp == 1:
            e[0x00281052] = el(0x00281052, "DS", "0")
            e[0x00281053] = el(0x00281053, "DS", "1")
            e[0x00281054] = el(0x00281054, "LO", "US")
            e[0x20500020] = el(0x20500020, "CS", "IDENTITY")
    if spacing:
        e[0x00280030] = el(0x00280030, "DS", "\\".join(spacing))
    return e, sop_class, inst


def clutter():
    """Elements a walker must step over: private elements (odd group, one of
    odd length), sequences of defined and undefined length nested three
    deep, items of undefined length, an empty sequence, and a UN element of
    undefined length holding an Implicit VR sequence."""
    inner = item(el(0x00080100, "SH", "T-1") + el(0x00080102, "SH", "99X"), undefined=True)
    mid = item(el(0x00081150, "UI", SC_IMAGE) + sq(0x00089215, [inner], undefined=True))
    deep = sq(0x00081140, [mid, item(b"", undefined=True)], undefined=False)
    impl = item(el_implicit(0x00080100, b"UN-1") +
                struct.pack("<HHI", 0x0008, 0x9215, UNDEFINED) +
                item(el_implicit(0x00080102, b"XY"), undefined=True) +
                struct.pack("<HHI", 0xFFFE, 0xE0DD, 0), undefined=True)
    return {
        0x00081140: deep,
        0x00091010: el(0x00091010, "LO", "MOD_JPIP TEST"),
        0x00091011: el(0x00091011, "OB", b"\x01\x02\x03", even=False),
        0x00091012: sq(0x00091012, [item(el(0x00091013, "LO", "x"), undefined=True)],
                       undefined=True),
        0x00091014: sq(0x00091014, [], undefined=True),
        0x00111000: sq(0x00111000, [impl], undefined=True, vr="UN"),
    }


# --------------------------------------------------------------- reading
# An independent reading of the files written above (and by GDCM): enough
# to take the frames out, for the tests' oracle.

def _walk_items(d, pos, end, undefined, implicit):
    while pos < end:
        g, e, ln = struct.unpack_from("<HHI", d, pos)
        if (g, e) == (0xFFFE, 0xE0DD):
            return pos + 8
        pos += 8
        if ln == UNDEFINED:
            pos = _walk_elems(d, pos, len(d), True, implicit)
        else:
            pos += ln
    if undefined:
        raise ValueError("sequence without delimiter")
    return pos


def _walk_elems(d, pos, end, undefined, implicit, stop=None):
    while pos < end:
        g, e = struct.unpack_from("<HH", d, pos)
        if (g, e) == (0xFFFE, 0xE00D):
            return pos + 8
        if stop is not None and (g << 16 | e) == stop:
            return pos
        if implicit:
            vr, (ln,), vo = "", struct.unpack_from("<I", d, pos + 4), pos + 8
        else:
            vr = d[pos + 4:pos + 6].decode("latin-1")
            if vr in LONG_VRS:
                (ln,), vo = struct.unpack_from("<I", d, pos + 8), pos + 12
            else:
                (ln,), vo = struct.unpack_from("<H", d, pos + 6), pos + 8
        if ln == UNDEFINED:
            pos = _walk_items(d, vo, len(d), True, implicit or vr == "UN")
        else:
            pos = vo + ln
    if undefined:
        raise ValueError("item without delimiter")
    return pos


def elements(path):
    """{tag: (vr, value bytes)} of the top-level elements with a defined
    length, and the offset of Pixel Data."""
    d = open(path, "rb").read()
    assert d[128:132] == b"DICM"
    out, pos = {}, 132
    pixel = None
    while pos < len(d):
        g, e = struct.unpack_from("<HH", d, pos)
        vr = d[pos + 4:pos + 6].decode("latin-1")
        if vr in LONG_VRS:
            (ln,), vo = struct.unpack_from("<I", d, pos + 8), pos + 12
        else:
            (ln,), vo = struct.unpack_from("<H", d, pos + 6), pos + 8
        tag = g << 16 | e
        if tag == 0x7FE00010:
            pixel = pos
            break
        if ln == UNDEFINED:
            pos = _walk_items(d, vo, len(d), True, vr == "UN")
            continue
        out[tag] = (vr, d[vo:vo + ln])
        pos = vo + ln
    return d, out, pixel


def frames_of(path):
    """The codestream of each frame, as bytes."""
    d, els, pixel = elements(path)
    if pixel is None:
        raise ValueError("no Pixel Data")
    nframes = int(els.get(0x00280008, ("IS", b"1"))[1].strip(b" \0") or b"1")
    pos = pixel + 12
    items = []
    first = None
    while True:
        g, e, ln = struct.unpack_from("<HHI", d, pos)
        if (g, e) == (0xFFFE, 0xE0DD):
            break
        if first is None:
            bot = d[pos + 8:pos + 8 + ln]
            first = pos + 8 + ln
        else:
            items.append((pos - first, d[pos + 8:pos + 8 + ln]))
        pos += 8 + ln
    lengths = None
    if 0x7FE00001 in els and els[0x7FE00001][1]:
        v = els[0x7FE00001][1]
        offs = list(struct.unpack("<%dQ" % (len(v) // 8), v))
        if 0x7FE00002 in els:
            v = els[0x7FE00002][1]
            lengths = list(struct.unpack("<%dQ" % (len(v) // 8), v))
    elif bot:
        offs = list(struct.unpack("<%dI" % (len(bot) // 4), bot))
    elif len(items) == nframes:
        offs = [o for o, _ in items]
    elif nframes == 1:
        offs = [0]
    else:
        offs = [o for o, f in items if f[:4] == b"\xff\x4f\xff\x51"]
    if len(offs) != nframes:
        raise ValueError("%d frame starts for %d frames" % (len(offs), nframes))
    frames = []
    for i, o in enumerate(offs):
        nxt = offs[i + 1] if i + 1 < len(offs) else float("inf")
        cs = b"".join(f for r, f in items if o <= r < nxt)
        if lengths:
            cs = cs[:lengths[i]]
        elif cs.endswith(b"\xff\xd9\x00"):
            cs = cs[:-1]
        frames.append(cs)
    return frames


def main(argv):
    if len(argv) == 3 and argv[0] == "--extract":
        os.makedirs(argv[2], exist_ok=True)
        for i, cs in enumerate(frames_of(argv[1])):
            with open(os.path.join(argv[2], "frame-%d.j2c" % (i + 1)), "wb") as f:
                f.write(cs)
        return 0
    import argparse
    ap = argparse.ArgumentParser(description="wrap codestreams into a DICOM file")
    ap.add_argument("-o", required=True)
    ap.add_argument("--ts", default=TS_J2K_LOSSLESS)
    ap.add_argument("--photometric", default="MONOCHROME2")
    ap.add_argument("--rows", type=int, required=True)
    ap.add_argument("--cols", type=int, required=True)
    ap.add_argument("--spp", type=int, default=1)
    ap.add_argument("--bits", type=int, default=8)
    ap.add_argument("--signed", action="store_true")
    ap.add_argument("--parts", type=int, default=1)
    ap.add_argument("--table", default="bot")
    ap.add_argument("codestreams", nargs="+")
    a = ap.parse_args(argv)
    frames = [open(p, "rb").read() for p in a.codestreams]
    alloc = 8 if a.bits <= 8 else 16
    els, cls, inst = image(a.rows, a.cols, a.spp, a.photometric, alloc, a.bits, a.signed,
                           len(frames))
    els.update(pixel_data(frames, a.parts, a.table))
    with open(a.o, "wb") as f:
        f.write(part10(a.ts, els, cls, inst))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
