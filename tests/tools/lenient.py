"""Files openjpeg decodes although they bend the rules, and what openjpeg
makes of them: the test data of check_lenient.py (tools) and of
tests/integration/lenient_cases.py (live httpd).

Every file is made in the test run from opj_compress / ojph_compress
outputs by editing bytes: tiles without tile-parts, rewritten TNsot/TPsot,
codestreams and boxes cut short, box lengths past the end, more
decomposition levels than the picture has room for (deepen.py), packed
headers in every layout with EPH (ppconvert.py), and opj_compress -jpip
files. Each comes with what openjpeg 2.5 (opj_decompress) does with it:

    reference(path, reduce)  -> Ref: the decoded components (PGX bytes,
                                all components) or None when openjpeg
                                refuses it; decoded as it is when it can
                                be, else with -allow-partial (a file cut
                                short), twice, to catch decoders that do
                                not decode it the same way each time.
"""

import collections
import glob
import os
import shutil
import struct
import subprocess

import deepen
import ppconvert

OPJ_DEC = os.environ.get("OPJ_DECOMPRESS", "opj_decompress")
OPJ_COMP = os.environ.get("OPJ_COMPRESS", "opj_compress")
OJPH_COMP = os.environ.get("OJPH_COMPRESS", "ojph_compress")
INSPECT = os.environ.get("JPIP_INSPECT", "jpip-inspect")

SOT, SOD, EOC = 0xFF90, 0xFF93, 0xFFD9

Variant = collections.namedtuple("Variant", "name path kind expect")
# expect: a dict of jpip-inspect summary facts the file must show when it
# is served ({"tiles_absent": 1, "truncated": True}), or {} for none.

Ref = collections.namedtuple("Ref", "pixels partial nondet")
# pixels: list of component bytes, or None when openjpeg refuses the file;
# partial: -allow-partial was needed; nondet: two decodes differed.


# ------------------------------------------------------------- decoding

def decode(path, opts, out_dir, timeout=120):
    """opj_decompress to one PGX file per component: their bytes, or None."""
    shutil.rmtree(out_dir, ignore_errors=True)
    os.makedirs(out_dir)
    try:
        r = subprocess.run([OPJ_DEC, "-i", path, "-o", os.path.join(out_dir, "c.pgx")] + opts,
                           capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None
    files = sorted(glob.glob(os.path.join(out_dir, "c*.pgx")))
    if r.returncode != 0 or not files:
        return None
    return [open(f, "rb").read() for f in files]


def reference(path, tmp, reduce=0):
    """What openjpeg makes of the file at `reduce` discarded levels."""
    opts = ["-r", str(reduce)] if reduce else []
    got = decode(path, opts, os.path.join(tmp, "ref-a"))
    if got is not None:
        return Ref(got, False, False)
    got = decode(path, opts + ["-allow-partial"], os.path.join(tmp, "ref-a"))
    if got is None:
        return Ref(None, True, False)
    again = decode(path, opts + ["-allow-partial"], os.path.join(tmp, "ref-b"))
    return Ref(got, True, again != got)


def decode_like(ref, path, tmp, reduce=0):
    """Decode a rebuilt file the way its original had to be decoded."""
    opts = ["-r", str(reduce)] if reduce else []
    return decode(path, opts + (["-allow-partial"] if ref.partial else []),
                  os.path.join(tmp, "got"))


# ------------------------------------------------------------ structure

def main_end(cs):
    """Offset of the first SOT of a raw codestream."""
    pos = 2
    while struct.unpack(">H", cs[pos:pos + 2])[0] != SOT:
        pos += 2 + struct.unpack(">H", cs[pos + 2:pos + 4])[0]
    return pos


TPart = collections.namedtuple("TPart", "off tile psot tpsot tnsot end")


def tile_parts(cs):
    """The tile-parts of a whole raw codestream, and the offset after them."""
    pos, out = main_end(cs), []
    while pos + 12 <= len(cs) and struct.unpack(">H", cs[pos:pos + 2])[0] == SOT:
        _, tile, psot, tpsot, tnsot = struct.unpack(">HHIBB", cs[pos + 2:pos + 12])
        end = pos + psot if psot else len(cs) - 2
        out.append(TPart(pos, tile, psot, tpsot, tnsot, end))
        pos = end
    return out, pos


def with_tile_parts(cs, keep=lambda tp: True, edit=None, eoc=True):
    """The codestream with only the tile-parts keep() accepts, their
    (TPsot, TNsot) rewritten by edit(tp) when given."""
    tps, _ = tile_parts(cs)
    out = bytearray(cs[:main_end(cs)])
    for tp in tps:
        if not keep(tp):
            continue
        seg = bytearray(cs[tp.off:tp.end])
        if edit is not None:
            seg[10], seg[11] = (v & 0xFF for v in edit(tp))
        out += seg
    if eoc:
        out += b"\xff\xd9"
    return bytes(out)


def boxes(data):
    """Top-level boxes of a JP2 file: (type, offset, header length, length)."""
    out, off = [], 0
    while off + 8 <= len(data):
        lbox, t = struct.unpack(">I4s", data[off:off + 8])
        hl = 8
        if lbox == 1:
            lbox, hl = struct.unpack(">Q", data[off + 8:off + 16])[0], 16
        elif lbox == 0:
            lbox = len(data) - off
        out.append((t, off, hl, lbox))
        off += lbox
    return out


def jp2c_of(data):
    """(offset of the jp2c box, its header length, the codestream bytes)."""
    for t, off, hl, ln in boxes(data):
        if t == b"jp2c":
            return off, hl, data[off + hl:off + ln]
    raise ValueError("no jp2c box")


def box(t, payload, lbox=None):
    return struct.pack(">I4s", 8 + len(payload) if lbox is None else lbox, t) + payload


# ----------------------------------------------------------- generation

def synth_pnm(path, width, height, comps, seed=1):
    """A small picture with structure at every scale (gradients, a grid,
    deterministic noise): binary PGM (1 component) or PPM (3)."""
    state, out = seed, bytearray()
    for y in range(height):
        for x in range(width):
            for c in range(comps):
                state = (state * 1103515245 + 12345) & 0x7FFFFFFF
                v = (x * (c + 1) * 255) // max(1, width) // 2 + (y * 255) // max(1, height) // 3
                v += 64 if (x // 7 + y // 5 + c) % 4 == 0 else 0
                out.append(min(255, v + (state >> 16) % 24))
    with open(path, "wb") as f:
        f.write(b"P%d\n%d %d\n255\n" % (5 if comps == 1 else 6, width, height) + out)


def run(args, timeout=300):
    r = subprocess.run(args, capture_output=True, timeout=timeout)
    if r.returncode != 0:
        raise RuntimeError("%s: exit %d: %s" % (os.path.basename(args[0]), r.returncode,
                                                (r.stderr or r.stdout).decode(errors="replace")
                                                [-300:]))
    return r


class Maker:
    """Writes variants into a directory and lists them."""

    def __init__(self, tmp):
        self.tmp = tmp
        self.out = []
        self.pics = {}

    def pic(self, w, h, comps):
        key = (w, h, comps)
        if key not in self.pics:
            p = os.path.join(self.tmp, "pic-%dx%dx%d.%s" % (w, h, comps, "pgm" if comps == 1
                                                              else "ppm"))
            synth_pnm(p, w, h, comps, seed=w * 7 + h)
            self.pics[key] = p
        return self.pics[key]

    def opj(self, name, w, h, comps, opts, ext=".j2k"):
        path = os.path.join(self.tmp, "base-" + name + ext)
        run([OPJ_COMP, "-i", self.pic(w, h, comps), "-o", path] + opts)
        return path

    def ojph(self, name, w, h, comps, opts):
        path = os.path.join(self.tmp, "base-" + name + ".j2c")
        run([OJPH_COMP, "-i", self.pic(w, h, comps), "-o", path] + opts)
        return path

    def add(self, name, data, kind, **expect):
        path = os.path.join(self.tmp, name)
        with open(path, "wb") as f:
            f.write(data)
        self.out.append(Variant(name, path, kind, expect))


def read(path):
    with open(path, "rb") as f:
        return f.read()


def missing_tiles(m):
    """Tiles with no tile-part at all."""
    cs = read(m.opj("tiled", 96, 72, 3, ["-t", "48,36", "-n", "3", "-r", "20,5,1"]))
    for drop in ((1,), (0,), (3,), (0, 3), (1, 2, 3)):
        m.add("missing-%s.j2k" % "".join(map(str, drop)),
              with_tile_parts(cs, lambda tp, d=drop: tp.tile not in d), "missing tiles",
              tiles_absent=len(drop))
    m.add("missing-3-noeoc.j2k", with_tile_parts(cs, lambda tp: tp.tile != 3, eoc=False),
          "missing tiles", tiles_absent=1)
    tpr = read(m.opj("tiled-tpR", 96, 72, 3, ["-t", "48,36", "-n", "3", "-r", "20,5,1", "-TP",
                                               "R", "-p", "RLCP"]))
    m.add("missing-tpR-0.j2k", with_tile_parts(tpr, lambda tp: tp.tile != 0), "missing tiles",
          tiles_absent=1)
    jp2 = read(m.opj("tiled", 96, 72, 3, ["-t", "48,36", "-n", "3", "-r", "20,5,1"], ".jp2"))
    off, hl, c = jp2c_of(jp2)
    m.add("missing-2.jp2", jp2[:off] + box(b"jp2c", with_tile_parts(c, lambda tp: tp.tile != 2)),
          "missing tiles", tiles_absent=1)
    ht = read(m.ojph("tiled", 96, 72, 3, ["-tile_size", "{48,36}", "-num_decomps", "3"]))
    m.add("missing-ht-1.j2c", with_tile_parts(ht, lambda tp: tp.tile != 1), "missing tiles",
          tiles_absent=1)


def tile_part_counts(m):
    """TNsot and TPsot as encoders get them wrong; openjpeg refuses some."""
    cs = read(m.opj("tpR", 96, 72, 3, ["-t", "48,36", "-n", "3", "-r", "20,5,1", "-TP", "R"]))
    tps, _ = tile_parts(cs)
    n = tps[0].tnsot
    edits = {
        "tn0": lambda tp: (tp.tpsot, 0),
        "tn-big": lambda tp: (tp.tpsot, n + 3),
        "tn-255": lambda tp: (tp.tpsot, 255),
        "tn-first0": lambda tp: (tp.tpsot, 0 if tp.tpsot == 0 else n),
        "tn-last0": lambda tp: (tp.tpsot, 0 if tp.tpsot == n - 1 else n),
        "tn-mixed": lambda tp: (tp.tpsot, n if tp.tpsot % 2 else n + 2),
        "tn-one-short": lambda tp: (tp.tpsot, n - 1),
        "tn-small": lambda tp: (tp.tpsot, n - 2),  # openjpeg refuses
        "tn1": lambda tp: (tp.tpsot, 1),  # refused
        "tp-gap": lambda tp: (tp.tpsot + (tp.tpsot > 0), n + 1),  # refused
        "tp-repeat": lambda tp: (0, n),  # refused
        "tp-from1": lambda tp: (tp.tpsot + 1, n + 1),  # refused
    }
    for name, fn in edits.items():
        m.add(name + ".j2k", with_tile_parts(cs, edit=fn), "TNsot/TPsot")
    # TNsot 0 without EOC: refused, but not when a lone tile-part of TNsot
    # 0 lets openjpeg read the end as EOC
    m.add("tn0-noeoc.j2k", with_tile_parts(cs, edit=edits["tn0"], eoc=False), "TNsot/TPsot")
    # two tile-parts with TNsot 1: openjpeg takes it for the one-short bug
    m.add("tn1-two-parts.j2k", with_tile_parts(cs, keep=lambda tp: tp.tpsot < 2,
                                               edit=lambda tp: (tp.tpsot, 1)), "TNsot/TPsot")
    one = read(m.opj("tiled", 96, 72, 3, ["-t", "48,36", "-n", "3", "-r", "20,5,1"]))
    m.add("tn0-single-noeoc.j2k", with_tile_parts(one, edit=lambda tp: (0, 0), eoc=False),
          "TNsot/TPsot")


def truncations(m):
    """Codestreams and boxes cut short, at chosen places."""
    one = read(m.opj("single", 80, 60, 3, ["-n", "4", "-r", "30,8,2"]))
    tps, end = tile_parts(one)
    body = tps[0].end
    m.add("cut-noeoc.j2k", one[:-2], "truncated")
    m.add("cut-stray-byte.j2k", one[:-2] + b"\xff", "truncated")
    m.add("cut-body.j2k", one[:body - 700], "truncated", truncated=True)
    m.add("cut-near-end.j2k", one[:body - 3], "truncated", truncated=True)
    m.add("cut-after-sod.j2k", one[:tps[0].off + 14], "truncated", truncated=True)
    m.add("cut-in-sot.j2k", one[:tps[0].off + 7], "truncated")  # refused
    m.add("cut-in-main-header.j2k", one[:tps[0].off - 5], "truncated")  # refused
    p0 = bytearray(one[:-2])
    p0[tps[0].off + 6:tps[0].off + 10] = b"\0\0\0\0"
    m.add("cut-psot0-noeoc.j2k", bytes(p0), "truncated")
    se = read(m.opj("sop-eph", 80, 60, 3, ["-n", "3", "-r", "30,10,2", "-SOP", "-EPH", "-c",
                                            "[32,32],[16,16]", "-p", "RPCL"]))
    m.add("cut-eph-last-packet.j2k", se[:-2 - 5], "truncated", truncated=True)
    m.add("cut-eph-earlier.j2k", se[:len(se) * 3 // 4], "truncated")  # refused
    jp2 = read(m.opj("single", 80, 60, 3, ["-n", "4", "-r", "30,8,2"], ".jp2"))
    off, hl, c = jp2c_of(jp2)
    xml = box(b"xml ", b"<note>after the codestream</note>")
    m.add("box-jp2c-past-eof.jp2", jp2[:off] + box(b"jp2c", c, len(c) + 8 + 1000), "boxes")
    m.add("box-jp2c-xl-past-eof.jp2",
          jp2[:off] + struct.pack(">I4sQ", 1, b"jp2c", len(c) + 16 + 5000) + c, "boxes")
    m.add("box-jp2c-lbox0-cut.jp2", jp2[:off] + box(b"jp2c", c[:-400], 0), "boxes",
          truncated=True)
    m.add("box-jp2c-cut.jp2", (jp2[:off] + box(b"jp2c", c))[:-400], "boxes", truncated=True)
    m.add("box-jp2c-cut-noeoc.jp2", jp2[:-2], "boxes")
    m.add("box-header-cut-after.jp2", jp2 + b"\0\0\0\x30x", "boxes")
    m.add("box-2-bytes-after.jp2", jp2 + b"\0\0", "boxes")
    m.add("box-xml-past-eof-after.jp2", jp2 + box(b"xml ", b"<cut>", 1000), "boxes")
    m.add("box-xml-lbox0-after.jp2", jp2 + box(b"xml ", b"<a>to the end</a>", 0), "boxes")
    m.add("box-xml-before.jp2", jp2[:off] + xml + jp2[off:], "boxes")
    m.add("box-xml-past-eof-before.jp2", jp2[:off] + box(b"xml ", b"<a/>", 99999) + jp2[off:],
          "boxes")  # refused: the codestream box is lost in it
    m.add("box-lbox4-after.jp2", jp2 + box(b"xml ", b"", 4), "boxes")  # refused
    m.add("box-cut-before-jp2c.jp2", jp2[:off + 3], "boxes")  # refused: no codestream


def deep_levels(m):
    """32 decomposition levels; more levels than a tiny picture has room
    for; empty resolutions and bands."""
    for name, (w, h, comps, n, extra) in {
            "deep32-gray64": (64, 64, 1, 7, ["-r", "20,5,1"]),
            "deep32-rgb32": (32, 32, 3, 6, ["-r", "10,2"]),
            "deep32-gray8": (8, 8, 1, 4, []),
            "deep32-1x1": (1, 1, 1, 1, []),
    }.items():
        base = m.opj(name, w, h, comps, ["-n", str(n)] + extra)
        pk = base + ".packets"
        run([INSPECT, "--packets", pk, base])
        m.add(name + ".j2k", deepen.deepen(read(base), pk, 32), "deep levels")
    for name, (w, h, opts) in {
            "ht-deep32-13x9": (13, 9, ["-num_decomps", "32", "-reversible", "true"]),
            "ht-deep32-tiles-offsets": (70, 50, ["-num_decomps", "32", "-image_offset", "{5,3}",
                                                 "-tile_size", "{16,16}", "-tile_offset",
                                                 "{1,2}", "-block_size", "{4,4}"]),
            "ht-deep32-precincts": (70, 50, ["-num_decomps", "32", "-image_offset", "{5,3}",
                                             "-tile_size", "{16,16}", "-tile_offset", "{1,2}",
                                             "-precincts", "{1,1},{2,2},{4,4}",
                                             "-block_size", "{4,4}"]),
            "ht-empty-res": (9, 7, ["-num_decomps", "6", "-image_offset", "{37,21}",
                                    "-tile_size", "{5,3}", "-tile_offset", "{35,20}"]),
    }.items():
        m.add(name + ".j2c", read(m.ojph(name, w, h, 3 if "tiles" in name else 1, opts)),
              "deep levels")


def packed_headers(m):
    """PPM and PPT with EPH (many packets whose header is the zero bit and
    EPH), split into small segments, and written in reverse Z order."""
    base = m.opj("eph", 80, 60, 3, ["-n", "4", "-r", "80,30,8,2,1", "-EPH", "-SOP", "-t",
                                     "40,30", "-TP", "L"])
    pk = base + ".packets"
    run([INSPECT, "--packets", pk, base])
    pkts, cs = ppconvert.parse_packets(pk), read(base)
    for mode in ("ppm", "ppt"):
        for seg in (97, 7):
            for rev in (False, True):
                m.add("packed-%s-seg%d%s.j2k" % (mode, seg, "-reversed" if rev else ""),
                      ppconvert.convert(mode, cs, pkts, seg, rev), "packed headers")


def jpip_index_boxes(m):
    """opj_compress -jpip: index boxes whose first sub-box has LBox 0."""
    m.add("jpip-index.jp2", read(m.opj("jpip", 80, 60, 3, ["-jpip", "-p", "RPCL", "-n", "3",
                                                           "-r", "20,5"], ".jp2")),
          "-jpip index boxes")
    m.add("jpip-index-tiled.jp2", read(m.opj("jpip-tiled", 96, 72, 3, [
        "-jpip", "-p", "RPCL", "-t", "48,36", "-n", "3", "-r", "30,10,2", "-c", "[16,16]"],
        ".jp2")), "-jpip index boxes")


def all_variants(tmp, kinds=None):
    """Make every variant in tmp; [Variant]. kinds limits the families
    (names of the functions above)."""
    m = Maker(tmp)
    for fn in (missing_tiles, tile_part_counts, truncations, deep_levels, packed_headers,
               jpip_index_boxes):
        if kinds is None or fn.__name__ in kinds:
            fn(m)
    return m.out


# ---------------------------------------------------------------- sweeps

def sweep_bases(tmp):
    """The files whose cut points the truncation sweep walks, with the
    ranges to walk: (name, bytes, [ranges of cut lengths])."""
    m = Maker(tmp)
    out = []
    tiled = read(m.opj("sweep-tiled", 64, 48, 3, ["-t", "32,24", "-n", "3", "-r", "20,5,1"]))
    single = read(m.opj("sweep-rpcl", 64, 48, 3, ["-n", "3", "-r", "30,8,2", "-p", "RPCL",
                                                   "-c", "[16,16]"]))
    ht = read(m.ojph("sweep-ht", 64, 48, 3, ["-num_decomps", "3"]))
    jp2 = read(m.opj("sweep-jp2", 48, 40, 3, ["-n", "3", "-r", "20,5"], ".jp2"))
    for name, data in (("tiled.j2k", tiled), ("rpcl.j2k", single), ("ht.j2c", ht),
                       ("box.jp2", jp2)):
        if name.endswith(".jp2"):
            off, hl, c = jp2c_of(data)
            cs_start = off + hl
            me = cs_start + main_end(c)
        else:
            me = main_end(data)
        # the tail of the main header and the first SOT, and the last
        # packets (the last 250 bytes) with the EOC
        out.append((name, data, [range(me - 30, me + 16), range(len(data) - 250, len(data))]))
    return out
