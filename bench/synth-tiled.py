#!/usr/bin/env python3
"""Build a large tiled JPEG 2000 codestream from a single-tile one.

    synth-tiled.py IN.j2k TILES_ACROSS TILES_DOWN OUT.j2k

IN is a raw codestream with exactly one tile (XTsiz >= Xsiz, YTsiz >= Ysiz,
no image or tile offsets), as opj_compress writes it without -t. OUT has
the same main header with SIZ changed (Xsiz = across * tile width, Ysiz =
down * tile height, XTsiz/YTsiz = the tile size), then IN's tile-parts
repeated for every tile index t = 0 .. across*down-1 (Isot patched, Psot
kept), then EOC: a valid codestream whose tiles are all the same picture.
That makes 32k x 32k or 1 GB test files in seconds where an encoder would
take hours. TLM and PLM markers (which list tile-part and packet lengths
for the single tile) are refused; PLT inside the tile-part headers is kept.

Python 3 standard library only.
"""

import struct
import sys


def fail(msg):
    sys.stderr.write("synth-tiled: %s\n" % msg)
    sys.exit(1)


def split(data):
    """(main header bytes with SIZ offsets, [tile-part bytes]) of IN."""
    if data[:2] != b"\xff\x4f":
        fail("not a raw codestream (no SOC)")
    pos = 2
    siz_at = None
    while True:
        if pos + 4 > len(data):
            fail("no SOT marker")
        marker = struct.unpack(">H", data[pos:pos + 2])[0]
        if marker == 0xFF90:
            break
        length = struct.unpack(">H", data[pos + 2:pos + 4])[0]
        if marker == 0xFF51:
            siz_at = pos
        elif marker in (0xFF55, 0xFF57):
            fail("TLM/PLM markers are not supported (encode without them)")
        pos += 2 + length
    if siz_at is None:
        fail("no SIZ marker")
    main = data[:pos]
    parts = []
    while pos + 2 <= len(data):
        marker = struct.unpack(">H", data[pos:pos + 2])[0]
        if marker == 0xFFD9:
            break
        if marker != 0xFF90:
            fail("expected SOT at %d" % pos)
        isot, psot = struct.unpack(">HI", data[pos + 4:pos + 10])
        if isot != 0:
            fail("the input has more than one tile")
        if psot == 0:
            psot = len(data) - 2 - pos  # last tile-part runs to EOC
        parts.append(bytearray(data[pos:pos + psot]))
        pos += psot
    if not parts:
        fail("no tile-parts")
    return bytearray(main), siz_at, parts


def main(argv):
    if len(argv) != 5:
        fail("usage: synth-tiled.py IN.j2k TILES_ACROSS TILES_DOWN OUT.j2k")
    src, across, down, out = argv[1], int(argv[2]), int(argv[3]), argv[4]
    ntiles = across * down
    if ntiles < 1 or ntiles > 65535:
        fail("1 .. 65535 tiles")
    with open(src, "rb") as f:
        data = f.read()
    main_hdr, siz_at, parts = split(data)
    p = siz_at + 6  # marker, Lsiz, Rsiz
    xsiz, ysiz, xo, yo, xt, yt, xto, yto = struct.unpack(">8I", main_hdr[p:p + 32])
    if xo or yo or xto or yto:
        fail("image or tile offsets are not supported")
    if xt < xsiz or yt < ysiz:
        fail("the input is tiled already")
    tw, th = xsiz, ysiz  # the new tile size: the input picture
    struct.pack_into(">8I", main_hdr, p, tw * across, th * down, 0, 0, tw, th, 0, 0)
    with open(out, "wb") as f:
        f.write(main_hdr)
        for t in range(ntiles):
            for part in parts:
                struct.pack_into(">H", part, 4, t)
                f.write(part)
        f.write(b"\xff\xd9")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
