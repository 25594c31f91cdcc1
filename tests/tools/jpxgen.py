"""Build JPX files (T.801) around existing codestreams, and take them apart.

    jpxgen.py [--fragments N] [--mdat-first] [--gap BYTES] OUT CS...

Layouts:
  - consecutive: jP, ftyp ('jpx ', compatible with 'jp2 '), rreq, jp2h (the
    first codestream's ihdr and colr), then per codestream a 'jpch' (ihdr),
    a 'jplh' (colr) and a 'jp2c' box;
  - fragmented (--fragments N): the same headers, but each codestream is
    cut into N pieces of uneven sizes that are stored in one 'mdat' box in
    a shuffled order, and its 'jp2c' is replaced by an 'ftbl' box whose
    'flst' lists the pieces (absolute file offsets, data reference 0). The
    'mdat' is the last box, or (--mdat-first) comes right after 'rreq';
  - --gap BYTES: a 'free' box (with XLBox) of that many bytes before the
    codestream data ('jp2c' boxes or the 'mdat'), written as a hole so a
    file beyond 4 GiB costs no disk space.

extract_codestreams() walks the top-level boxes of a JP2/JPX file and
returns every codestream ('jp2c' contents, or an 'ftbl' resolved through
its fragment list) without reading the boxes in between.
"""

import random
import struct
import sys

XL_LIMIT = 0xFFFFFFFF


def box(btype, payload=b"", xl=False):
    if xl or 8 + len(payload) > XL_LIMIT:
        return struct.pack(">I4sQ", 1, btype, 16 + len(payload)) + payload
    return struct.pack(">I4s", 8 + len(payload), btype) + payload


def siz_of(cs):
    """(width, height, components, bpc byte) from a codestream's SIZ."""
    if cs[:4] != b"\xff\x4f\xff\x51":
        raise ValueError("not a codestream (no SOC, SIZ)")
    (xsiz, ysiz, xo, yo) = struct.unpack(">IIII", cs[8:24])
    (csiz,) = struct.unpack(">H", cs[40:42])
    ssiz = [cs[42 + 3 * i] for i in range(csiz)]
    bpc = ssiz[0] if len(set(ssiz)) == 1 else 0xFF
    return xsiz - xo, ysiz - yo, csiz, bpc


def ihdr(cs):
    w, h, nc, bpc = siz_of(cs)
    return box(b"ihdr", struct.pack(">IIHBBBB", h, w, nc, bpc, 7, 0, 0))


def colr(cs):
    nc = siz_of(cs)[2]
    return box(b"colr", struct.pack(">BBBI", 1, 0, 0, 16 if nc >= 3 else 17))


def head_boxes(codestreams):
    ftyp = box(b"ftyp", b"jpx " + struct.pack(">I", 0) + b"jpx jp2 jpxb")
    # rreq: mask length 1; feature 5 (unrestricted Part 1 codestreams)
    # fully understood; no vendor features
    rreq = box(b"rreq", struct.pack(">BBBHHB", 1, 0x80, 0x80, 1, 5, 0x80) + struct.pack(">H", 0))
    jp2h = box(b"jp2h", ihdr(codestreams[0]) + colr(codestreams[0]))
    return box(b"jP  ", b"\r\n\x87\n") + ftyp + rreq, jp2h


def codestream_headers(cs):
    return box(b"jpch", ihdr(cs)) + box(b"jplh", colr(cs))


def cut(n, pieces, rng):
    """Split range(n) into `pieces` non-empty (offset, length) ranges."""
    pieces = max(1, min(pieces, n))
    points = sorted(rng.sample(range(1, n), pieces - 1)) if pieces > 1 else []
    edges = [0] + points + [n]
    return [(edges[i], edges[i + 1] - edges[i]) for i in range(pieces)]


def write_sparse(path, chunks):
    """chunks: bytes, or an int (a hole of that many zero bytes)."""
    with open(path, "wb") as f:
        for c in chunks:
            if isinstance(c, int):
                f.seek(c, 1)
            else:
                f.write(c)
        f.truncate()


def free_box_chunks(gap):
    return [struct.pack(">I4sQ", 1, b"free", 16 + gap), gap]


def build(path, codestreams, fragments=0, mdat_first=False, gap=0, seed=7):
    """Write a JPX file; return the chunk list's total size."""
    head, jp2h = head_boxes(codestreams)
    chunks = [head]
    if not fragments:
        chunks.append(jp2h)
        if gap:
            chunks += free_box_chunks(gap)
        for cs in codestreams:
            chunks.append(codestream_headers(cs) + box(b"jp2c", cs))
        write_sparse(path, chunks)
        return
    rng = random.Random(seed)
    # the pieces of every codestream, shuffled inside the mdat contents
    parts = []
    for i, cs in enumerate(codestreams):
        for off, ln in cut(len(cs), fragments + i, rng):
            parts.append((i, off, ln))
    rng.shuffle(parts)
    mdat_payload = b"".join(codestreams[i][off:off + ln] for i, off, ln in parts)
    mdat_hdr_len = 16  # always with XLBox: exercises 16-byte headers too

    def ftbl(cs_index, where):
        entries = []
        for k in sorted(range(len(parts)), key=lambda k: (parts[k][0], parts[k][1])):
            i, off, ln = parts[k]
            if i == cs_index:
                entries.append(struct.pack(">QIH", where[k], ln, 0))
        return box(b"ftbl", box(b"flst", struct.pack(">H", len(entries)) + b"".join(entries)))

    # sizes do not depend on the offsets: lay out once with zeros, then for real
    zero = [0] * len(parts)
    tables = b"".join(codestream_headers(cs) + ftbl(i, zero) for i, cs in enumerate(codestreams))
    if mdat_first:
        before = len(head) + (16 + gap if gap else 0)
    else:
        before = len(head) + len(jp2h) + len(tables) + (16 + gap if gap else 0)
    where, pos = [], before + mdat_hdr_len
    for i, off, ln in parts:
        where.append(pos)
        pos += ln
    tables = b"".join(codestream_headers(cs) + ftbl(i, where) for i, cs in enumerate(codestreams))
    mdat = [struct.pack(">I4sQ", 1, b"mdat", 16 + len(mdat_payload)), mdat_payload]
    gapc = free_box_chunks(gap) if gap else []
    if mdat_first:
        chunks += gapc + mdat + [jp2h, tables]
    else:
        chunks += [jp2h, tables] + gapc + mdat
    write_sparse(path, chunks)


def build_jp2(path, cs, gap=0):
    """A JP2 file: jP, ftyp 'jp2 ', jp2h, [a 'free' box of gap bytes], jp2c."""
    head = box(b"jP  ", b"\r\n\x87\n") + box(b"ftyp", b"jp2 " + struct.pack(">I", 0) + b"jp2 ")
    chunks = [head + box(b"jp2h", ihdr(cs) + colr(cs))]
    if gap:
        chunks += free_box_chunks(gap)
    chunks.append(box(b"jp2c", cs))
    write_sparse(path, chunks)


def boxes(f, start, end):
    """(type, contents offset, contents length) of the boxes in [start, end)."""
    pos = start
    while pos < end:
        f.seek(pos)
        hdr = f.read(8)
        if len(hdr) < 8:
            raise ValueError("truncated box header at %d" % pos)
        lbox, btype = struct.unpack(">I4s", hdr)
        hlen = 8
        if lbox == 1:
            (lbox,) = struct.unpack(">Q", f.read(8))
            hlen = 16
        elif lbox == 0:
            lbox = end - pos
        if lbox < hlen or pos + lbox > end:
            raise ValueError("bad length of box %r at %d" % (btype, pos))
        yield btype, pos + hlen, lbox - hlen
        pos += lbox


def extract_codestreams(path):
    out = []
    with open(path, "rb") as f:
        f.seek(0, 2)
        size = f.tell()
        for btype, off, ln in list(boxes(f, 0, size)):
            if btype == b"jp2c":
                f.seek(off)
                out.append(f.read(ln))
            elif btype == b"ftbl":
                data = bytearray()
                for t, o, n in list(boxes(f, off, off + ln)):
                    if t != b"flst":
                        continue
                    f.seek(o)
                    body = f.read(n)
                    (nf,) = struct.unpack(">H", body[:2])
                    for k in range(nf):
                        foff, flen, dr = struct.unpack(">QIH", body[2 + 14 * k:16 + 14 * k])
                        if dr != 0:
                            raise ValueError("fragment in another file")
                        f.seek(foff)
                        data += f.read(flen)
                out.append(bytes(data))
    return out


def main(argv):
    frags, mdat_first, gap, args = 0, False, 0, []
    it = iter(argv)
    for a in it:
        if a == "--fragments":
            frags = int(next(it))
        elif a == "--mdat-first":
            mdat_first = True
        elif a == "--gap":
            gap = int(next(it))
        else:
            args.append(a)
    if len(args) < 2:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    css = [open(p, "rb").read() for p in args[1:]]
    build(args[0], css, frags, mdat_first, gap)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
