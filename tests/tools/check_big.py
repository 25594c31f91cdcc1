"""A raw JPEG 2000 codestream larger than 4 GiB.

opj_compress makes a small codestream X (256x256 RGB, 4 tiles of 128x128,
tile-parts per resolution, 3 layers, 64x64 code-blocks). X' is X with its
last tile-part grown by 4.3 GiB of zero bytes before the EOC, written as a
sparse file (no disk cost), and that tile-part's Psot set to 0 (T.800: the
tile-part runs to the EOC, so no 32-bit Psot limit). The zeros after the
tile's last packet are padding the indexer must ignore.

Checks: jpip-inspect's summary of X' (size > 4 GiB); --bins lists as many
bins for X' as for X, with the same precinct bin lengths; --rebuild of X'
decodes with opj_decompress to the pixels of X, in full, with
--max-resolution 1 against X decoded with -r (levels - 1) (the rebuilt
codestream decoded with the same -r), and with
--max-layers 1 against X decoded with -l 1. Skips when the file system
does not keep holes.
"""

import json
import os
import shutil
import struct
import sys
import tempfile

from tooltest import INSPECT, OPJ_COMP, Counter, decode, finish, run, sh, synth_pnm

PAD = (43 << 30) // 10  # 4.3 GiB of zero bytes


def last_sot(data):
    """Offset of the last tile-part's SOT, walking the tile-parts from the
    main header by their Psot; raises ValueError on a layout it does not
    expect (Psot 0 in X, no EOC after the last tile-part)."""
    if data[:2] != b"\xff\x4f":
        raise ValueError("no SOC")
    pos = 2
    # main header: marker segments up to the first SOT
    while True:
        if pos + 4 > len(data):
            raise ValueError("main header runs off the end")
        marker, length = struct.unpack(">HH", data[pos:pos + 4])
        if marker == 0xFF90:
            break
        if marker == 0xFF55:
            raise ValueError("TLM in the main header")
        pos += 2 + length
    last = None
    while True:
        marker = struct.unpack(">H", data[pos:pos + 2])[0]
        if marker == 0xFFD9:
            if pos + 2 != len(data):
                raise ValueError("bytes after the EOC")
            break
        if marker != 0xFF90:
            raise ValueError("marker %04x at %d, expected SOT" % (marker, pos))
        lsot, isot, psot, tpsot, tnsot = struct.unpack(">HHIBB", data[pos + 2:pos + 12])
        if lsot != 10 or psot < 14:
            raise ValueError("SOT at %d: Lsot %d, Psot %d" % (pos, lsot, psot))
        last = pos
        pos += psot
    if last is None:
        raise ValueError("no tile-part")
    return last


def write_big(path, data, sot):
    """X with PAD zero bytes before the EOC and the last Psot set to 0,
    written sparse: the head, a hole, the EOC."""
    head = bytearray(data[:-2])
    struct.pack_into(">I", head, sot + 6, 0)
    with open(path, "wb") as f:
        f.write(head)
        f.truncate(len(head) + PAD)
        f.seek(len(head) + PAD)
        f.write(data[-2:])
    return len(head) + PAD + 2


def bins(path):
    """The --bins lines as (class, csn, id, length) tuples, or the error."""
    r = run([INSPECT, "--bins", path])
    if r.returncode != 0:
        raise RuntimeError("exit %d: %s" % (r.returncode, r.stderr.decode(errors="replace")
                                            .strip()[:300]))
    out = []
    for line in r.stdout.decode().splitlines():
        f = line.split()
        kv = dict(x.split("=", 1) for x in f[1:])
        out.append((f[0], int(kv["csn"]), int(kv["id"]), int(kv["length"])))
    return out


def main():
    c = Counter()
    tmp = tempfile.mkdtemp(prefix="jpip-big-")
    try:
        pic = os.path.join(tmp, "x.ppm")
        small = os.path.join(tmp, "x.j2k")
        big = os.path.join(tmp, "big.j2k")
        out = os.path.join(tmp, "out.j2k")
        try:
            synth_pnm(pic, 256, 256, 3, seed=7)
            sh([OPJ_COMP, "-i", pic, "-o", small, "-n", "3", "-c", "[64,64]", "-r", "20,8,2",
                "-t", "128,128", "-TP", "R"])
            with open(small, "rb") as f:
                data = f.read()
            sot = last_sot(data)
        except Exception as e:  # noqa: BLE001
            c.fail("codestream", e)
            return finish(c)
        size = write_big(big, data, sot)
        if os.stat(big).st_blocks * 512 >= 1 << 28:
            os.remove(big)
            c.skip("beyond 4 GiB", "this file system does not keep holes: not writing 4 GiB")
            return finish(c)
        label = "codestream of %d bytes (last SOT at %d, Psot 0)" % (size, sot)

        # the summary
        r = run([INSPECT, big])
        s = None
        try:
            if r.returncode != 0:
                raise ValueError("exit %d" % r.returncode)
            s = json.loads(r.stdout)
            cs = s["codestreams"][0]
        except (ValueError, KeyError, IndexError) as e:
            c.fail(label + ": summary", "%s: %s" % (e, r.stderr.decode(errors="replace")
                                                     .strip()[:300]))
        if s is not None:
            if s.get("size") != size or cs["width"] != 256 or cs["tiles"] != 4:
                c.fail(label + ": summary", "size %s, %dx%d, %d tiles"
                       % (s.get("size"), cs["width"], cs["height"], cs["tiles"]))
            else:
                c.ok(label + ": summary reports size %d" % s["size"])

        # the bins
        try:
            want, got = bins(small), bins(big)
            wp = [b for b in want if b[0] == "precinct"]
            gp = [b for b in got if b[0] == "precinct"]
            if len(got) != len(want):
                c.fail(label + ": --bins", "%d bins, %d for the small codestream"
                       % (len(got), len(want)))
            elif gp != wp:
                diff = [(a, b) for a, b in zip(wp, gp) if a != b][:3]
                c.fail(label + ": --bins", "precinct bins differ: %s" % diff)
            else:
                c.ok(label + ": --bins lists the same %d bins, %d precinct bins of equal length"
                     % (len(got), len(gp)))
        except Exception as e:  # noqa: BLE001
            c.fail(label + ": --bins", e)

        # the rebuilds
        levels = s["codestreams"][0]["levels"] if s is not None else 2
        red = ["-r", str(levels - 1)]
        cases = [([], [], []),
                 (["--max-resolution", "1"], red, red),
                 (["--max-layers", "1"], ["-l", "1"], [])]
        for opts, dec_x, dec_out in cases:
            what = "%s: rebuild %s" % (label, " ".join(opts) or "all bins")
            r = run([INSPECT, "--rebuild", out] + opts + [big])
            if r.returncode != 0:
                c.fail(what, "exit %d: %s" % (r.returncode, r.stderr.decode(errors="replace")
                                              .strip()[:300]))
                continue
            rsize = os.path.getsize(out)
            wpix = decode(small, os.path.join(tmp, "a"), dec_x)
            gpix = decode(out, os.path.join(tmp, "b"), dec_out)
            os.remove(out)
            if wpix is None:
                c.fail(what, "openjpeg cannot decode the small codestream with %s" % dec_x)
            elif gpix is None:
                c.fail(what, "the rebuilt codestream (%d bytes) does not decode" % rsize)
            elif gpix != wpix:
                c.fail(what, "pixels differ from the small codestream's decoded with %s"
                       % (" ".join(dec_x) or "no option"))
            else:
                c.ok(what + ": %d bytes, same pixels as the small codestream%s"
                     % (rsize, " decoded with " + " ".join(dec_x) if dec_x else ""))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return finish(c)


if __name__ == "__main__":
    sys.exit(main())
