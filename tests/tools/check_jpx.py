"""JPX files with several codestreams, and files beyond 4 GiB.

jpxgen.py wraps three opj_compress codestreams (different sizes, component
counts, layers, SOP/EPH, tiles with tile-parts and PLT) into JPX files:

  - consecutive 'jp2c' boxes, each after its 'jpch'/'jplh' headers;
  - 'ftbl'/'flst' fragment tables pointing into one 'mdat' box, every
    codestream cut into 3 to 7 pieces stored out of order, the 'mdat' last
    or first;
  - beyond 4 GiB (sparse files, no disk cost): a 4 GiB + 1 MiB 'free' box
    before the 'jp2c' boxes, before the 'mdat' of a fragmented JPX (64-bit
    flst offsets), and before the 'jp2c' of a JP2 file.

For each file: the generator is checked first (walking its boxes gives back
the original codestreams), then jpip-inspect's summary must list every
codestream with the original's size and components, and `--rebuild` must
write a file whose codestreams, taken out by walking its boxes, decode
with opj_decompress to the pixels of the corresponding originals (and, with
--max-layers 1, to the originals decoded with one layer).
"""

import json
import os
import shutil
import sys
import tempfile

import jpxgen
from tooltest import INSPECT, OPJ_COMP, Counter, decode, finish, rebuild, run, sh, synth_pnm

GAP = (1 << 32) + (1 << 20)

CODESTREAMS = [
    ("rgb", (257, 191, 3), ["-n", "3", "-r", "20,5", "-p", "RPCL"]),
    ("gray", (200, 150, 1), ["-n", "2", "-r", "10,4,1", "-SOP", "-EPH", "-c", "[64,64],[32,32]",
                             "-p", "LRCP"]),
    ("tiled", (300, 160, 3), ["-n", "3", "-r", "15,3", "-t", "128,128", "-TP", "R", "-PLT",
                              "-p", "RLCP"]),
]


def make_codestreams(tmp):
    out = []
    for name, (w, h, nc), opts in CODESTREAMS:
        pic = os.path.join(tmp, name + (".ppm" if nc == 3 else ".pgm"))
        synth_pnm(pic, w, h, nc, seed=w)
        path = os.path.join(tmp, name + ".j2k")
        sh([OPJ_COMP, "-i", pic, "-o", path] + opts)
        with open(path, "rb") as f:
            out.append(f.read())
    return out


def is_sparse(path, limit=1 << 28):
    return os.stat(path).st_blocks * 512 < limit


def decode_bytes(tmp, data, name, extra):
    p = os.path.join(tmp, name + ".j2k")
    with open(p, "wb") as f:
        f.write(data)
    return decode(p, os.path.join(tmp, "dec-" + name), extra)


def check_layout(c, tmp, label, path, css, wants, wants_l1, large=False):
    # the generator itself
    try:
        back = jpxgen.extract_codestreams(path)
    except ValueError as e:
        c.fail(label + ": generator", e)
        return
    if back != css:
        c.fail(label + ": generator", "its boxes do not give back the codestreams")
        return
    # the summary
    r = run([INSPECT, path])
    try:
        s = json.loads(r.stdout)
        dims = [(cs["width"], cs["height"], cs["components"]) for cs in s["codestreams"]]
    except (ValueError, KeyError):
        c.fail(label + ": summary", r.stderr.decode(errors="replace").strip()[:200])
        return
    want_dims = [jpxgen.siz_of(cs)[:3] for cs in css]
    if dims != want_dims:
        c.fail(label + ": summary", "codestreams %s, expected %s" % (dims, want_dims))
    else:
        c.ok(label + ": summary lists the %d codestreams (size %d)" % (len(dims), s["size"]))
    # the rebuilds
    for opts, want in (([], wants), (["--max-layers", "1"], wants_l1)):
        if large and opts:
            continue
        out = os.path.join(tmp, "rebuilt" + os.path.splitext(path)[1])
        what = "%s: rebuild %s" % (label, " ".join(opts) or "all bins")
        ok, why = rebuild(path, out, opts)
        if not ok:
            c.fail(what, why)
            continue
        try:
            got_cs = jpxgen.extract_codestreams(out)
        except ValueError as e:
            c.fail(what, "the rebuilt file's boxes: %s" % e)
            continue
        if large and not is_sparse(out):
            c.fail(what, "the rebuilt file is not sparse (%d bytes on disk)"
                   % (os.stat(out).st_blocks * 512))
        if os.path.getsize(out) < GAP and large:
            c.fail(what, "the rebuilt file lost the 'free' box")
        os.remove(out)
        if len(got_cs) != len(css):
            c.fail(what, "%d codestreams, expected %d" % (len(got_cs), len(css)))
            continue
        bad = [i for i, data in enumerate(got_cs) if decode_bytes(tmp, data, "got", []) != want[i]]
        if bad:
            c.fail(what, "codestreams %s decode to other pixels" % bad)
        else:
            c.ok(what + ": %d codestreams decode to the originals' pixels" % len(css))


def main():
    c = Counter()
    tmp = tempfile.mkdtemp(prefix="jpip-jpx-")
    try:
        try:
            css = make_codestreams(tmp)
        except Exception as e:  # noqa: BLE001
            c.fail("codestreams", e)
            return finish(c)
        wants, wants_l1 = [], []
        for i, cs in enumerate(css):
            wants.append(decode_bytes(tmp, cs, "orig%d" % i, []))
            wants_l1.append(decode_bytes(tmp, cs, "orig%d" % i, ["-l", "1"]))
        if None in wants or None in wants_l1:
            c.fail("codestreams", "openjpeg cannot decode them")
            return finish(c)
        layouts = [
            ("two-jp2c.jpx", [0, 1], {}),
            ("three-jp2c.jpx", [0, 1, 2], {}),
            ("ftbl-mdat-last.jpx", [0, 1, 2], {"fragments": 3}),
            ("ftbl-mdat-first.jpx", [2, 0, 1], {"fragments": 5, "mdat_first": True}),
        ]
        for name, order, kw in layouts:
            path = os.path.join(tmp, name)
            sel = [css[i] for i in order]
            jpxgen.build(path, sel, **kw)
            check_layout(c, tmp, name, path, sel, [wants[i] for i in order],
                         [wants_l1[i] for i in order])
            os.remove(path)
        large = [
            ("beyond-4GiB-jp2c.jpx", [0, 1], {"gap": GAP}),
            ("beyond-4GiB-ftbl.jpx", [1, 2, 0], {"gap": GAP, "fragments": 4}),
            ("beyond-4GiB.jp2", [2], {"gap": GAP}),
        ]
        for name, order, kw in large:
            path = os.path.join(tmp, name)
            sel = [css[i] for i in order]
            if name.endswith(".jp2"):
                jpxgen.build_jp2(path, sel[0], kw["gap"])
            else:
                jpxgen.build(path, sel, **kw)
            if not is_sparse(path):
                os.remove(path)
                c.skip(name, "this file system does not keep holes: not writing 4 GiB")
                continue
            check_layout(c, tmp, name, path, sel, [wants[i] for i in order], None, large=True)
            os.remove(path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return finish(c)


if __name__ == "__main__":
    sys.exit(main())
