"""mod_jpip live leniency cases: the files openjpeg decodes although they
bend the rules are served pixel-exact through httpd; the ones it refuses
get a 415 naming the defect.

The files are those of tests/tools/lenient.py (tiles without tile-parts,
TNsot/TPsot rewritten, codestreams and boxes cut short, box lengths past
the end, 32 decomposition levels, PPM/PPT with EPH, -jpip index boxes),
and a sample of the tools test's truncation sweep (every ninth cut). For
each, against a live httpd (event MPM, two children): a full-image and a
half-resolution JPP request through tools/jpip-fetch, whose rebuilt
codestreams must decode (openjpeg, all components) to exactly what openjpeg
gives for the original at that resolution; JPT as well for some. Where
openjpeg refuses the original: 415 with a text body naming the defect, or,
where openjpeg refuses what lies inside a file served as it is, a rebuild
openjpeg refuses just the same. One line per case, then `N passed, N
failed`.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "tools"))
from harness import Httpd, Runner, Skip, expect  # noqa: E402
import jpp  # noqa: E402
import lenient  # noqa: E402

FETCH = os.environ.get("JPIP_FETCH", "jpip-fetch")
TMP = tempfile.mkdtemp(prefix="jpip-lenient-live-")


def ceil_shift(a, d):
    return -((-a) >> d)


def fetch(h, name, fields, out):
    """jpip-fetch the request: the JPIP stream it got (the rebuilt file is
    out)."""
    raw = out + ".jpp"
    url = "http://127.0.0.1:%d/jpip/%s?%s" % (h.port, urllib.parse.quote(name), fields)
    r = subprocess.run([FETCH, "--jpp", raw, "-o", out, url], capture_output=True, timeout=300)
    expect(r.returncode == 0, "jpip-fetch %s: %s" % (fields, r.stderr.decode(errors="replace")
                                                      [-300:]))
    return open(raw, "rb").read()


def summary(path):
    r = subprocess.run([lenient.INSPECT, path], capture_output=True)
    return json.loads(r.stdout)["codestreams"][0] if r.returncode == 0 else None


def frame(cs, d):
    x0, y0 = cs["image_offset"]
    return (ceil_shift(x0 + cs["width"], d) - ceil_shift(x0, d),
            ceil_shift(y0 + cs["height"], d) - ceil_shift(y0, d))


def served_case(h, name, path, jpt=False):
    """Full and half resolution through httpd, pixel-exact against openjpeg."""
    work = os.path.join(TMP, "w")
    ref = lenient.reference(path, work)
    if ref.pixels is None:
        raise AssertionError("openjpeg refuses it (listed as served)")
    if ref.nondet:
        raise Skip("openjpeg decodes it differently on different runs")
    cs = summary(path)
    expect(cs is not None, "jpip-inspect refuses it")
    ext = os.path.splitext(name)[1] if name.endswith(".jp2") else ".j2k"
    out = os.path.join(TMP, "rebuilt" + ext)
    done = []
    for d in (0, 1):
        if d and (cs["levels"] < 1 or cs["levels_min"] < 1):
            continue
        r = ref if d == 0 else lenient.reference(path, work, 1)
        if r.pixels is None or r.nondet:
            continue
        fw, fh = frame(cs, d)
        body = fetch(h, name, "type=%s&fsiz=%d,%d" % ("jpt-stream" if jpt else "jpp-stream", fw,
                                                      fh), out)
        msgs, eor, trailing = jpp.parse(body)
        expect(eor is not None and trailing == 0, "d=%d: the response has no clean EOR" % d)
        got = lenient.decode_like(r, out, work, d)
        expect(got is not None, "d=%d: the rebuilt file does not decode" % d)
        expect(got == r.pixels, "d=%d: pixels differ from openjpeg's for the original" % d)
        done.append(d)
    expect(done, "nothing compared")


def refused_case(h, name, path):
    """openjpeg refuses it: a 415 naming the defect, or served as it is."""
    st, hd, body = h.get("/jpip/%s?type=jpp-stream&fsiz=64,64" % urllib.parse.quote(name))
    if st == 415:
        text = body.decode(errors="replace")
        expect(hd.get("content-type", "").startswith("text/plain") and
               "not a servable JPEG 2000 file: " in text and
               len(text.split("not a servable JPEG 2000 file: ", 1)[1].strip()) > 10,
               "415 without a reason: %r" % text[:200])
        return
    expect(st == 200, "status %d (%r)" % (st, body[:100]))
    ext = os.path.splitext(name)[1] if name.endswith(".jp2") else ".j2k"
    out = os.path.join(TMP, "rebuilt" + ext)
    cs = summary(path)
    expect(cs is not None, "served by httpd, refused by jpip-inspect")
    fetch(h, name, "type=jpp-stream&fsiz=%d,%d" % frame(cs, 0), out)
    expect(lenient.reference(out, os.path.join(TMP, "w")).pixels is None,
           "served, and the rebuild decodes although openjpeg refuses the original")


def main():
    for tool in (lenient.OPJ_COMP, lenient.OPJ_DEC, lenient.OJPH_COMP):
        if shutil.which(tool) is None and not os.path.isabs(tool):
            print("skip - leniency: %s not found" % tool)
            print("0 passed, 0 failed, 1 skipped")
            return 0
    gen = os.path.join(TMP, "gen")
    os.makedirs(gen)
    files = [(v.name, v.path) for v in lenient.all_variants(gen)]
    for base, data, ranges in lenient.sweep_bases(gen):
        k = 0
        for rg in ranges:
            for cut in rg:
                if k % 9 == 0:
                    p = os.path.join(gen, "sweep-%d-%s" % (cut, base))
                    with open(p, "wb") as f:
                        f.write(data[:cut])
                    files.append((os.path.basename(p), p))
                k += 1
    h = Httpd(os.environ["HTTPD"], os.environ["APXS"], os.environ["JPIP_MODULE"],
              os.path.join(os.environ["JPIP_SRCDIR"], "..", "..", "httpd-conf"),
              extra_files=[p for _, p in files], servers=2)
    run = Runner()
    try:
        h.start()
    except Exception as e:  # noqa: BLE001
        print("FAIL - start httpd: %s" % e)
        print("0 passed, 1 failed")
        return 1
    try:
        work = os.path.join(TMP, "w")
        for name, _ in files:
            path = os.path.join(h.archive, name)
            if lenient.reference(path, work).pixels is None:
                run.case("%s: refused as openjpeg refuses it" % name, refused_case, h, name,
                         path)
                continue
            run.case("%s: full and half resolution, pixel-exact" % name, served_case, h, name,
                     path)
            if name.startswith(("missing-", "cut-body", "tn-one-short", "box-jp2c-cut.")):
                run.case("%s: JPT-stream, pixel-exact" % name, served_case, h, name, path, True)
    finally:
        h.stop()
    run.case("error log has no [error]/[crit]/exit signal lines",
             lambda: expect(not h.bad_log_lines(), "\n  ".join(h.bad_log_lines()[:10])))
    h.cleanup()
    shutil.rmtree(TMP, ignore_errors=True)
    return run.summary()


if __name__ == "__main__":
    sys.exit(main())
