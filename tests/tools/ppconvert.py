"""Move the packet headers of a codestream into PPT or PPM marker segments.

    ppconvert.py ppt|ppm IN PACKETS OUT [SEGMENT_BYTES]

IN is a raw codestream whose packet headers are in the tile-part bodies
(opj_compress cannot write packed headers); PACKETS is the output of
`jpip-inspect --packets` for IN: one line per packet with the file ranges of
its SOP segment, header (EPH included) and body.

  ppt: each tile-part gets PPT segments (Zppt counting on over the tile's
       tile-parts) holding the headers of the packets in its body, in
       codestream order; the body keeps each packet's SOP segment and body.
  ppm: the main header gets PPM segments (Zppm 0, 1, ...) holding, for every
       tile-part in codestream order, Nppm (4 bytes) and the headers of its
       packets; a segment ends when 65532 bytes are full, so a tile-part's
       headers may run on into the next segment (an Nppm field never does).

SEGMENT_BYTES (default and at most 65532) caps the data of each PPM/PPT
segment, to make many small segments. convert(..., reverse=True) writes
the segments of each header in decreasing Z order (legal: the Z index
says how they join).

TLM and PLM (main header) and PLT (tile-part headers) are dropped, since
their lengths would no longer hold; every Psot is recomputed. The other
marker segments are kept as they are.
"""

import struct
import sys

MAX_SEG = 65535 - 3  # marker segment data after Lxxx and the Z index byte

SOT, SOD, EOC = 0xFF90, 0xFF93, 0xFFD9
TLM, PLM, PLT = 0xFF55, 0xFF57, 0xFF58
PPM, PPT = 0xFF60, 0xFF61


def segments(cs, pos, stop_at):
    """Marker segments from pos up to (not including) a marker in stop_at:
    list of (code, bytes), and the position of that marker."""
    out = []
    while True:
        (code,) = struct.unpack(">H", cs[pos:pos + 2])
        if code in stop_at:
            return out, pos
        (ln,) = struct.unpack(">H", cs[pos + 2:pos + 4])
        out.append((code, cs[pos:pos + 2 + ln]))
        pos += 2 + ln


def tile_parts(cs, pos):
    """(Isot, TPsot, TNsot, header segments, body start, body end) of every
    tile-part from pos, and where the codestream ends."""
    tps = []
    while pos + 2 <= len(cs):
        (code,) = struct.unpack(">H", cs[pos:pos + 2])
        if code != SOT:
            break
        _, isot, psot, tpsot, tnsot = struct.unpack(">HHIBB", cs[pos + 2:pos + 12])
        segs, sod = segments(cs, pos + 12, (SOD,))
        end = pos + psot if psot else len(cs) - 2
        tps.append((isot, tpsot, tnsot, segs, sod + 2, end))
        pos = end
    return tps, pos


def parse_packets_line(line):
    """(sop, header, body) of one `jpip-inspect --packets` line, each a list
    of (offset, length) ranges."""
    fields = dict(kv.split("=", 1) for kv in line.split())

    def ranges(v):
        if v == "-":
            return []
        return [tuple(int(x) for x in r.split("+")) for r in v.split(",")]

    return ranges(fields["sop"]), ranges(fields["header"]), ranges(fields["body"])


def parse_packets(path):
    """[(sop, header, body)], each a list of (offset, length) ranges."""
    with open(path) as f:
        return [parse_packets_line(line) for line in f]


def take(data, ranges):
    return b"".join(data[o:o + n] for o, n in ranges)


def marker_segments(code, payload, index0, seg_max=MAX_SEG, reverse=False):
    """payload cut into segments of `code` (at most seg_max data bytes
    each), with Z index from index0; reverse writes them last first (the
    Z index, not the order in the file, says how they join)."""
    segs = []
    z = index0
    for i in range(0, len(payload), seg_max):
        chunk = payload[i:i + seg_max]
        if z > 255:
            raise ValueError("more than 256 %04X segments" % code)
        segs.append(struct.pack(">HHB", code, 3 + len(chunk), z) + chunk)
        z += 1
    return b"".join(reversed(segs) if reverse else segs), z


def ppm_segments(headers, seg_max, reverse=False):
    """PPM segments for the packet headers of each tile-part: Ippm data may
    run on into the next segment, an Nppm field never does (openjpeg,
    among others, wants the 4 bytes in one segment)."""
    segs, cur = [], bytearray()
    for hdrs in headers:
        if len(cur) + 4 > seg_max:
            segs.append(bytes(cur))
            cur = bytearray()
        cur += struct.pack(">I", len(hdrs))
        while hdrs:
            if len(cur) == seg_max:
                segs.append(bytes(cur))
                cur = bytearray()
            n = seg_max - len(cur)
            cur += hdrs[:n]
            hdrs = hdrs[n:]
    segs.append(bytes(cur))
    if len(segs) > 256:
        raise ValueError("more than 256 PPM segments")
    out = [struct.pack(">HHB", PPM, 3 + len(d), z) + d for z, d in enumerate(segs)]
    return b"".join(reversed(out) if reverse else out)


def convert(mode, cs, pkts, seg_max=MAX_SEG, reverse=False):
    if cs[:2] != b"\xff\x4f":
        raise ValueError("not a raw codestream")
    main, first_sot = segments(cs, 2, (SOT,))
    tps, end = tile_parts(cs, first_sot)
    # each packet goes with the tile-part whose body holds its header
    pkts = sorted(pkts, key=lambda p: p[1][0][0])
    per_tp = [[] for _ in tps]
    k = 0
    for i, tp in enumerate(tps):
        while k < len(pkts) and pkts[k][1][0][0] < tp[5]:
            if pkts[k][1][0][0] < tp[4]:
                raise ValueError("packet header at %d outside every body" % pkts[k][1][0][0])
            per_tp[i].append(pkts[k])
            k += 1
    if k != len(pkts):
        raise ValueError("%d packets after the last tile-part" % (len(pkts) - k))
    for i, tp in enumerate(tps):
        got = sum(sum(n for _, n in r) for p in per_tp[i] for r in p)
        if got != tp[5] - tp[4]:
            raise ValueError("tile-part %d: packets cover %d of %d body bytes"
                             % (i, got, tp[5] - tp[4]))
    out = bytearray(b"\xff\x4f")
    out += b"".join(s for c, s in main if c not in (TLM, PLM))
    if mode == "ppm":
        out += ppm_segments([b"".join(take(cs, p[1]) for p in plist) for plist in per_tp],
                            seg_max, reverse)
    zppt = {}
    for i, (isot, tpsot, tnsot, segs, b0, b1) in enumerate(tps):
        hdr = b"".join(s for c, s in segs if c != PLT)
        if mode == "ppt":
            hdrs = b"".join(take(cs, p[1]) for p in per_tp[i])
            if hdrs:
                ppt, zppt[isot] = marker_segments(PPT, hdrs, zppt.get(isot, 0), seg_max,
                                                  reverse)
                hdr += ppt
        body = b"".join(take(cs, p[0]) + take(cs, p[2]) for p in per_tp[i])
        psot = 12 + len(hdr) + 2 + len(body)
        out += struct.pack(">HHHIBB", SOT, 10, isot, psot, tpsot, tnsot)
        out += hdr + b"\xff\x93" + body
    out += b"\xff\xd9"
    return bytes(out)


def main(argv):
    if len(argv) not in (4, 5) or argv[0] not in ("ppt", "ppm"):
        print("usage: ppconvert.py ppt|ppm IN PACKETS OUT [SEGMENT_BYTES]", file=sys.stderr)
        return 2
    seg = min(MAX_SEG, int(argv[4])) if len(argv) == 5 else MAX_SEG
    with open(argv[1], "rb") as f:
        cs = f.read()
    data = convert(argv[0], cs, parse_packets(argv[2]), seg)
    with open(argv[3], "wb") as f:
        f.write(data)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
