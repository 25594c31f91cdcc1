"""Packed packet headers (PPM, PPT) through the indexer.

opj_compress cannot write packed headers, so each opj_compress codestream
(with and without SOP/EPH, tiles, several tile-parts per tile, precincts,
several layers) is converted by ppconvert.py, using `jpip-inspect --packets`
to find every packet's header and body, into a PPT and a PPM variant, each
with full-size marker segments and with segments of at most 97 bytes (so
that packet headers straddle segments). Then:

  1. openjpeg must decode the converted file to the original's pixels (this
     validates the converter, independently of mod_jpip);
  2. jpip-inspect must report the packed headers it used (ppm/ppt);
  3. `jpip-inspect --packets` on the converted file must list the same
     packets with the same header and body lengths, the headers now inside
     the marker segments;
  4. the codestream rebuilt from the converted file's data-bins must decode
     to the original's pixels (full, reduced resolution, fewer layers).
"""

import json
import os
import shutil
import sys
import tempfile

import ppconvert
from tooltest import (INSPECT, OPJ_COMP, Counter, check_file, decode, finish, run, sh,
                      synth_pnm)

CASES = [
    ("plain", "rgb", ["-n", "4", "-r", "40,10,1", "-p", "RPCL"]),
    ("sop-eph-prec", "rgb", ["-n", "5", "-r", "60,20,5,1", "-p", "LRCP", "-SOP", "-EPH",
                             "-c", "[128,128],[64,64]"]),
    ("tiles-tpR-sop", "rgb", ["-n", "3", "-r", "30,5", "-t", "128,96", "-TP", "R", "-SOP",
                              "-p", "RLCP"]),
    ("tiles-tpL-eph", "gray", ["-n", "4", "-r", "20,8,2", "-t", "160,120", "-TP", "L", "-EPH",
                               "-p", "CPRL", "-PLT"]),
    ("tiles-tpC-pcrl-offset", "rgb", ["-n", "2", "-r", "10", "-t", "100,100", "-TP", "C",
                                      "-p", "PCRL", "-d", "7,3"]),
]


def packets(path, out):
    r = run([INSPECT, "--packets", out, path])
    if r.returncode != 0:
        raise RuntimeError(r.stderr.decode(errors="replace").strip())
    pk = ppconvert.parse_packets(out)
    keys = []
    with open(out) as f:
        for line in f:
            keys.append(" ".join(line.split()[:6]))
    return keys, pk


def lengths(pk):
    return [tuple(sum(n for _, n in r) for r in p) for p in pk]


def check_variant(c, tmp, name, orig, keys, pk, mode, want, seg_max):
    conv = os.path.join(tmp, "%s-%s%s.j2k" % (name, mode, "-seg%d" % seg_max if seg_max else ""))
    label = os.path.basename(conv)
    try:
        data = ppconvert.convert(mode, open(orig, "rb").read(), pk,
                                 seg_max or ppconvert.MAX_SEG)
    except Exception as e:  # noqa: BLE001
        c.fail(label + ": convert", e)
        return
    with open(conv, "wb") as f:
        f.write(data)
    # 1. the converter is right if openjpeg agrees
    got = decode(conv, os.path.join(tmp, "conv"), [])
    if got is None or got != want:
        c.fail(label + ": openjpeg", "the converted file does not decode to the same pixels")
        return
    c.ok(label + ": openjpeg decodes it to the original's pixels")
    # 2. the index used the packed headers
    r = run([INSPECT, conv])
    try:
        used = json.loads(r.stdout)["markers_used"]
        flag = used[mode] and used["packet_headers_decoded"]
    except (ValueError, KeyError):
        flag = False
    if flag:
        c.ok(label + ": indexed from the %s headers" % mode.upper())
    else:
        c.fail(label + ": summary", "markers_used.%s not set: %s" % (mode, r.stdout[-300:]))
    # 3. same packets, same lengths, headers moved
    try:
        keys2, pk2 = packets(conv, os.path.join(tmp, "packets2.txt"))
    except RuntimeError as e:
        c.fail(label + ": --packets", e)
        return
    if keys2 != keys or lengths(pk2) != lengths(pk):
        c.fail(label + ": --packets", "packets or their lengths differ from the original's")
    else:
        c.ok(label + ": --packets lists the same %d packets" % len(pk2))
    # 4. rebuild oracle (full, reduced resolutions, one layer)
    check_file(c, conv, tmp)


def main():
    c = Counter()
    tmp = tempfile.mkdtemp(prefix="jpip-packed-")
    try:
        pics = {"rgb": os.path.join(tmp, "rgb.ppm"), "gray": os.path.join(tmp, "gray.pgm")}
        synth_pnm(pics["rgb"], 403, 299, 3)
        synth_pnm(pics["gray"], 333, 250, 1)
        for name, pic, opts in CASES:
            orig = os.path.join(tmp, name + ".j2k")
            try:
                sh([OPJ_COMP, "-i", pics[pic], "-o", orig] + opts)
                keys, pk = packets(orig, os.path.join(tmp, "packets.txt"))
            except Exception as e:  # noqa: BLE001
                c.fail(name + ": original", e)
                continue
            want = decode(orig, os.path.join(tmp, "orig"), [])
            if want is None:
                c.fail(name + ": original", "openjpeg cannot decode it")
                continue
            # whole segments, then segments of 97 bytes at most (packet
            # headers straddle segment boundaries)
            for mode in ("ppt", "ppm"):
                for seg_max in (0, 97):
                    check_variant(c, tmp, name, orig, keys, pk, mode, want, seg_max)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return finish(c)


if __name__ == "__main__":
    sys.exit(main())
