"""HTJ2K (T.814) through the indexer: OpenJPH's ojph_compress encodes
synthetic pictures with varied options (reversible and irreversible,
0 to 6 decomposition levels, code-block sizes, precincts, all five
progression orders, tiles with offsets, 8- and 12-bit samples); for each
codestream jpip-inspect must index it and flag it HTJ2K, and the
codestream rebuilt from its data-bins must decode to exactly the pixels of
the original codestream (and, when reversible, of the source picture), at
full and reduced resolution.

Skips (one `skip` line) when ojph_compress is not installed.
"""

import json
import os
import shutil
import sys
import tempfile

from tooltest import (INSPECT, Counter, check_file, decode_pnm, finish, read_pnm, rebuild,
                      run, sh, synth_pnm, which)

OJPH = os.environ.get("OJPH_COMPRESS", "ojph_compress")

# name, picture, ojph_compress options, reversible
CASES = [
    ("rev-n5-rpcl", "rgb", ["-reversible", "true", "-num_decomps", "5"], True),
    ("irrev-n3-cb32-prec-lrcp", "gray",
     ["-qstep", "0.01", "-num_decomps", "3", "-block_size", "{32,32}",
      "-precincts", "{64,64},{128,128}", "-prog_order", "LRCP"], False),
    ("rev-n6-cb16x64-prec-pcrl-tiles", "rgb",
     ["-reversible", "true", "-num_decomps", "6", "-block_size", "{16,64}",
      "-precincts", "{32,32},{64,64},{128,128}", "-prog_order", "PCRL",
      "-tile_size", "{256,192}"], True),
    ("irrev-n2-cb64x32-cprl-tiles-offsets", "rgb",
     ["-qstep", "0.02", "-num_decomps", "2", "-block_size", "{64,32}", "-prog_order", "CPRL",
      "-image_offset", "{5,3}", "-tile_offset", "{1,2}", "-tile_size", "{200,150}"], False),
    ("rev-n4-rlcp-nocolour", "rgb",
     ["-reversible", "true", "-num_decomps", "4", "-prog_order", "RLCP",
      "-colour_trans", "false", "-precincts", "{128,128}"], True),
    ("rev-n0-12bit", "gray12", ["-reversible", "true", "-num_decomps", "0"], True),
    ("rev-n5-12bit-prec-rpcl-tiles", "gray12",
     ["-reversible", "true", "-num_decomps", "5", "-precincts", "{64,64}",
      "-tile_size", "{128,128}", "-block_size", "{32,32}"], True),
    ("irrev-n5-12bit-lrcp", "gray12",
     ["-qstep", "0.005", "-num_decomps", "5", "-prog_order", "LRCP"], False),
]


def pictures(tmp):
    p = {
        "rgb": (os.path.join(tmp, "rgb.ppm"), (517, 389, 3, 255)),
        "gray": (os.path.join(tmp, "gray.pgm"), (640, 480, 1, 255)),
        "gray12": (os.path.join(tmp, "gray12.pgm"), (301, 277, 1, 4095)),
    }
    for path, (w, h, nc, mx) in p.values():
        synth_pnm(path, w, h, nc, mx, seed=w)
    return {k: v[0] for k, v in p.items()}


def check_case(c, tmp, name, pic, opts, reversible, ext):
    src = os.path.join(tmp, name + ext)
    try:
        sh([OJPH, "-i", pic, "-o", src] + opts)
    except Exception as e:  # noqa: BLE001
        c.fail(name + ": ojph_compress", e)
        return
    label = os.path.basename(src)
    check_file(c, src, tmp)  # summary, --bins, rebuilds at reduced resolution
    # HT must be recognised, and a reversible rebuild must give back the
    # source picture itself, not only what openjpeg makes of the original.
    out = os.path.join(tmp, "rebuilt-" + name + ".j2c")
    ok, why = rebuild(src, out)
    if not ok:
        c.fail(label + ": rebuild", why)
        return
    want = decode_pnm(src, os.path.join(tmp, "d"), "orig")
    got = decode_pnm(out, os.path.join(tmp, "d"), "rebuilt")
    if want is None:
        c.skip(label + ": decode", "opj_decompress cannot decode HTJ2K here")
        return
    if got is None or got[4] != want[4]:
        c.fail(label + ": rebuilt pixels", "differ from the original codestream's")
        return
    if reversible:
        if want[4] != read_pnm(pic)[4]:
            c.fail(label + ": lossless", "decoded original differs from the source picture")
            return
        c.ok(label + ": rebuilt codestream decodes to the source picture exactly")
    else:
        c.ok(label + ": rebuilt codestream decodes to the original's pixels")


def check_flag(c, tmp, name, ext):
    src = os.path.join(tmp, name + ext)
    if not os.path.exists(src):
        return
    r = run([INSPECT, src])
    try:
        s = json.loads(r.stdout)
        ht = all(cs["htj2k"] for cs in s["codestreams"])
    except ValueError:
        ht = False
    if ht:
        c.ok(os.path.basename(src) + ": indexed as HTJ2K")
    else:
        c.fail(os.path.basename(src) + ": summary", "not flagged htj2k")


def main():
    c = Counter()
    if which(OJPH) is None:
        c.skip("HTJ2K", "ojph_compress not found (Debian package openjph-tools)")
        return finish(c)
    tmp = tempfile.mkdtemp(prefix="jpip-ht-")
    try:
        pics = pictures(tmp)
        for i, (name, pic, opts, rev) in enumerate(CASES):
            ext = ".jph" if i % 2 else ".j2c"
            check_case(c, tmp, name, pics[pic], opts, rev, ext)
            check_flag(c, tmp, name, ext)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return finish(c)


if __name__ == "__main__":
    sys.exit(main())
