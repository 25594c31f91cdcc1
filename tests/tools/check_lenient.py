"""Every file openjpeg decodes is indexed and rebuilt pixel-exact; the
files openjpeg refuses are refused with a message.

The files (lenient.py) are opj_compress / ojph_compress outputs edited
byte by byte: tiles without tile-parts, TNsot/TPsot rewritten, codestreams
and boxes cut short, box lengths past the end, 32 decomposition levels,
PPM/PPT in every layout with EPH, opj_compress -jpip index boxes. For each:

  1. what openjpeg 2.5 makes of it (lenient.reference: as it is, else with
     -allow-partial; decoded twice where that is needed);
  2. openjpeg refuses it: jpip-inspect must refuse it too, naming why;
  3. openjpeg decodes it: jpip-inspect must index it (and report absent
     tiles or a truncated codestream where the file has them), and the
     codestream rebuilt from all its bins, and the one rebuilt at half
     resolution (--max-resolution L-1), must decode to exactly openjpeg's
     pixels for the original (all components, -r 1 for the half).

Where openjpeg refuses what lies inside a file jpip-inspect serves (an HT
cleanup segment cut too short to decode), openjpeg must refuse the rebuild
as well: the bytes are served as they are.

Then the truncation sweep: every cut length over the tail of the main
header and over the last 250 bytes of four files (tiled, RPCL with
precincts, HTJ2K, JP2), with the same checks at full resolution (and at
half resolution on every seventh cut). One line per file (per sweep),
then `N passed, N failed`.
"""

import collections
import json
import os
import shutil
import sys
import tempfile

import lenient
from tooltest import INSPECT, Counter, finish, run, which


def summary(path):
    r = run([INSPECT, path])
    if r.returncode != 0:
        return None, r.stderr.decode(errors="replace").strip()
    return json.loads(r.stdout), ""


def rebuilt_matches(path, ref, tmp, reduce, levels):
    """None when the rebuild decodes to ref's pixels, else why not."""
    out = os.path.join(tmp, "rebuilt" + (os.path.splitext(path)[1] or ".j2k"))
    opts = ["--max-resolution", str(levels - reduce)] if reduce else []
    r = run([INSPECT, "--rebuild", out] + opts + [path])
    if r.returncode != 0:
        return "rebuild failed: " + r.stderr.decode(errors="replace").strip()[-200:]
    got = lenient.decode_like(ref, out, tmp, reduce)
    if got is None:
        return "the rebuilt file does not decode"
    if got != ref.pixels:
        return "pixels differ from openjpeg's for the original"
    return None


def check_one(path, tmp, expect=None, half=True):
    """('ok'|'skip'|'fail', text) for one file."""
    ref = lenient.reference(path, tmp)
    s, why = summary(path)
    if ref.pixels is None:
        if s is not None:
            # openjpeg refuses what is inside (say, an HT cleanup segment
            # too short to decode): then the file must be served as it
            # is, so that openjpeg refuses the rebuild just the same
            out = os.path.join(tmp, "rebuilt" + (os.path.splitext(path)[1] or ".j2k"))
            r = run([INSPECT, "--rebuild", out, path])
            if r.returncode == 0 and lenient.reference(out, tmp).pixels is None:
                return "ok", "served as it is: openjpeg refuses the rebuild as the original"
            return "fail", "indexed, but openjpeg refuses it (and not the rebuild)"
        if not why:
            return "fail", "refused without a message"
        return "ok", "refused, as by openjpeg: " + why.split(": ", 2)[-1][:100]
    if ref.nondet:
        return "skip", "openjpeg decodes it differently on different runs"
    if s is None:
        return "fail", "refused, but openjpeg decodes it: " + why[-200:]
    cs = s["codestreams"][0]
    for k, v in (expect or {}).items():
        if cs.get(k) != v:
            return "fail", "summary says %s=%r, expected %r" % (k, cs.get(k), v)
    bad = rebuilt_matches(path, ref, tmp, 0, cs["levels"])
    if bad:
        return "fail", "full resolution: " + bad
    note = "pixel-exact"
    if half and cs["levels"] >= 1 and cs["levels_min"] >= 1:
        refh = lenient.reference(path, tmp, 1)
        if refh.pixels is None or refh.nondet:
            note += " (openjpeg cannot decode it at half resolution)"
        else:
            bad = rebuilt_matches(path, refh, tmp, 1, cs["levels"])
            if bad:
                return "fail", "half resolution: " + bad
            note += ", also at half resolution"
    return "ok", note


def main():
    c = Counter()
    for tool in (lenient.OPJ_COMP, lenient.OPJ_DEC, lenient.OJPH_COMP):
        if which(tool) is None:
            c.skip("leniency", "%s not found" % tool)
            return finish(c)
    tmp = tempfile.mkdtemp(prefix="jpip-lenient-")
    try:
        work = os.path.join(tmp, "work")
        os.makedirs(work)
        for v in lenient.all_variants(tmp):
            verdict, text = check_one(v.path, work, v.expect)
            label = "%s [%s]" % (v.name, v.kind)
            getattr(c, {"ok": "ok", "skip": "skip", "fail": "fail"}[verdict])(
                *((label + ": " + text,) if verdict == "ok" else (label, text)))
        for name, data, ranges in lenient.sweep_bases(tmp):
            tally = collections.Counter()
            failures = []
            n = 0
            path = os.path.join(tmp, "cut-" + name)
            for rg in ranges:
                for cut in rg:
                    with open(path, "wb") as f:
                        f.write(data[:cut])
                    verdict, text = check_one(path, work, half=n % 7 == 0)
                    n += 1
                    tally[verdict if verdict != "ok" else
                          ("refused" if text.startswith("refused") else "served")] += 1
                    if verdict == "fail":
                        failures.append("cut at %d: %s" % (cut, text))
            label = "sweep %s: %d cuts (%s)" % (name, n, ", ".join(
                "%d %s" % (v, k) for k, v in sorted(tally.items())))
            if failures:
                c.fail(label, "; ".join(failures[:5]) + (" ..." if len(failures) > 5 else ""))
            elif tally["served"] == 0:
                c.fail(label, "no cut was served: the sweep tests nothing")
            else:
                c.ok(label)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return finish(c)


if __name__ == "__main__":
    sys.exit(main())
