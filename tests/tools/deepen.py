"""Give a codestream more decomposition levels than its picture has room for.

    deepen.py IN PACKETS OUT [LEVELS]

IN is a raw codestream from opj_compress with one tile, LRCP order, one
precinct per resolution, reversible (5-3, QCD without quantization), no
SOP/EPH, no COC/QCC, whose lowest resolution is a single sample of every
component (width and height at most 2^NL); PACKETS is `jpip-inspect
--packets` for IN. OUT is the same picture with LEVELS (default 32)
decomposition levels: the levels added between the old lowest resolution
and the rest are 1x1 resolutions whose three bands are empty, so each adds
one empty packet per layer and component, and QCD gets an entry for each
of their bands. A single sample goes through the 5-3 synthesis of an
empty level unchanged, so openjpeg must decode OUT to the pixels of IN:
that checks the conversion independently of mod_jpip.

Every marker segment but COD and QCD is kept as it is; Psot is recomputed,
TLM/PLM/PLT are dropped (their lengths would no longer hold).
"""

import struct
import sys

import ppconvert

SOT, SOD, EOC = 0xFF90, 0xFF93, 0xFFD9
COD, QCD, COC, QCC = 0xFF52, 0xFF5C, 0xFF53, 0xFF5D
TLM, PLM, PLT = 0xFF55, 0xFF57, 0xFF58


def packet_keys(path):
    """(layer, res, comp, prec) -> (sop, header, body) ranges, from --packets."""
    out = {}
    with open(path) as f:
        for line in f:
            kv = dict(x.split("=", 1) for x in line.split())
            key = tuple(int(kv[k]) for k in ("layer", "res", "comp", "prec"))
            out[key] = line
    return out


def deepen(cs, pkts_path, levels=32):
    if cs[:2] != b"\xff\x4f":
        raise ValueError("not a raw codestream")
    main, first_sot = ppconvert.segments(cs, 2, (SOT,))
    tps, _ = ppconvert.tile_parts(cs, first_sot)
    if len(tps) != 1:
        raise ValueError("one tile-part wanted, found %d" % len(tps))
    cod = [s for c, s in main if c == COD][0]
    scod, prog, layers, mct, nl = cod[4], cod[5], struct.unpack(">H", cod[6:8])[0], cod[8], cod[9]
    if scod & 0x07 or prog != 0 or any(c in (COC, QCC) for c, _ in main):
        raise ValueError("wants LRCP, no SOP/EPH/precincts, no COC/QCC")
    if not 0 <= nl < levels:
        raise ValueError("already %d levels" % nl)
    qcd = [s for c, s in main if c == QCD][0]
    if qcd[4] & 0x1F != 0:
        raise ValueError("wants a reversible codestream (QCD without quantization)")
    siz = [s for c, s in main if c == 0xFF51][0]
    xsiz, ysiz, xo, yo = struct.unpack(">IIII", siz[6:22])
    csiz = struct.unpack(">H", siz[38:40])[0]
    if xsiz - xo > 1 << nl or ysiz - yo > 1 << nl or xo or yo or any(siz[41 + 3 * c] != 1 or
                                                                     siz[42 + 3 * c] != 1
                                                                     for c in range(csiz)):
        raise ValueError("the lowest resolution must be one sample (no offset, no sub-sampling)")
    add = levels - nl
    # QCD: the LL entry, then three entries per level from the deepest down
    eps = qcd[5:]
    new_eps = eps[:1] + bytes(eps[1:4] if nl else eps[:1] * 3) * add + eps[1:]
    new_qcd = struct.pack(">HHB", QCD, 3 + len(new_eps), qcd[4]) + new_eps
    new_cod = cod[:9] + bytes([levels]) + cod[10:]
    keys = packet_keys(pkts_path)
    pk = {k: ppconvert.parse_packets_line(v) for k, v in keys.items()}
    if any(k[3] != 0 for k in pk):
        raise ValueError("one precinct per resolution wanted")
    body = bytearray()
    for layer in range(layers):
        for r in range(levels + 1):
            for c in range(csiz):
                if r == 0 or r > add:
                    sop, hdr, bod = pk[(layer, r - add if r else 0, c, 0)]
                    body += ppconvert.take(cs, sop) + ppconvert.take(cs, hdr) + \
                        ppconvert.take(cs, bod)
                else:
                    body += b"\x00"  # an empty resolution: an empty packet
    out = bytearray(b"\xff\x4f")
    for c, s in main:
        if c == COD:
            out += new_cod
        elif c == QCD:
            out += new_qcd
        elif c not in (TLM, PLM):
            out += s
    isot, tpsot, tnsot, segs, _, _ = tps[0]
    hdr = b"".join(s for c, s in segs if c != PLT)
    out += struct.pack(">HHHIBB", SOT, 10, isot, 12 + len(hdr) + 2 + len(body), tpsot, tnsot)
    out += hdr + b"\xff\x93" + body + b"\xff\xd9"
    return bytes(out)


def main(argv):
    if len(argv) not in (3, 4):
        print("usage: deepen.py IN PACKETS OUT [LEVELS]", file=sys.stderr)
        return 2
    with open(argv[0], "rb") as f:
        cs = f.read()
    data = deepen(cs, argv[1], int(argv[3]) if len(argv) == 4 else 32)
    with open(argv[2], "wb") as f:
        f.write(data)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
