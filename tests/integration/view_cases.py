"""mod_jpip live view-window cases: for every conformance file (and the
sample archive) and a grid of view-windows, jpip-fetch asks a live httpd
(event MPM, two or more children) for the window, rebuilds the codestream
from the bins it received, and openjpeg must decode it (-r d -d region) to
exactly the original's pixels inside the region. The responses themselves
are parsed independently (jpp.py) and checked against the target's index
(jpip-inspect --bins): no byte range twice, nothing outside its bin, no bin
of a tile or resolution the window does not need.

Environment (tests/integration/Makefile.am): HTTPD, APXS, JPIP_MODULE,
JPIP_SAMPLES, JPIP_SRCDIR, JPIP_TESTDATA, JPIP_INSPECT, JPIP_FETCH,
OPJ_DECOMPRESS.
"""

import glob
import http.client
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Httpd, Runner, Skip, expect  # noqa: E402
import jpp  # noqa: E402

INSPECT = os.environ.get("JPIP_INSPECT", "jpip-inspect")
FETCH = os.environ.get("JPIP_FETCH", "jpip-fetch")
OPJ = os.environ.get("OPJ_DECOMPRESS", "opj_decompress")
TMP = tempfile.mkdtemp(prefix="jpip-view-")


def ceil_shift(a, d):
    return -((-a) >> d)


class Geometry:
    """What the tests need of a target, from jpip-inspect's summary and
    bin listing."""

    def __init__(self, path):
        s = json.loads(subprocess.run([INSPECT, path], capture_output=True, check=True).stdout)
        cs = s["codestreams"][0]
        self.container = s["container"]
        self.x0, self.y0 = cs["image_offset"]
        self.xsiz, self.ysiz = self.x0 + cs["width"], self.y0 + cs["height"]
        self.xt, self.yt = cs["tile_size"]
        self.xto, self.yto = cs["tile_offset"]
        self.ntx, self.nty = cs["tiles_across"], cs["tiles_down"]
        self.ncomps = cs["components"]
        self.nl, self.nl_min = cs["levels"], cs["levels_min"]
        self.layers = cs["layers"]
        self.nmeta = s["data_bins"]["metadata"]["count"]
        self.ppm = s["markers_used"]["ppm"]
        self.bins = {}
        out = subprocess.run([INSPECT, "--bins", path], capture_output=True, check=True).stdout
        for line in out.decode().splitlines():
            f = line.split()
            kv = dict(x.split("=", 1) for x in f[1:])
            cls = {"precinct": 0, "tile-header": 2, "tile": 4, "main-header": 6,
                   "metadata": 8}[f[0]]
            self.bins[(cls, int(kv["id"]))] = kv

    def frame(self, d):
        return (ceil_shift(self.xsiz, d) - ceil_shift(self.x0, d),
                ceil_shift(self.ysiz, d) - ceil_shift(self.y0, d))

    def region(self, d, ox, oy, sx, sy):
        """The window's region on the reference grid (protocol notes B.2)."""
        bx, by = ceil_shift(self.x0, d), ceil_shift(self.y0, d)
        return ((bx + ox) << d, (by + oy) << d,
                min((bx + ox + sx) << d, self.xsiz), min((by + oy + sy) << d, self.ysiz))

    def tiles_meeting(self, rg):
        x0, y0, x1, y1 = rg
        out = set()
        for q in range(self.nty):
            for p in range(self.ntx):
                tx0 = max(self.xto + p * self.xt, self.x0)
                tx1 = min(self.xto + (p + 1) * self.xt, self.xsiz)
                ty0 = max(self.yto + q * self.yt, self.y0)
                ty1 = min(self.yto + (q + 1) * self.yt, self.ysiz)
                if tx0 < x1 and x0 < tx1 and ty0 < y1 and y0 < ty1:
                    out.add(q * self.ntx + p)
        return out

    def served_frame(self, fx, fy, rnd):
        """The frame the server must choose (protocol notes B.1)."""
        cands = [(d,) + self.frame(d) for d in range(self.nl + 1)]
        if rnd == "round-down":
            for d, w, h in cands:
                if w <= fx and h <= fy:
                    return w, h
            return cands[-1][1:]
        if rnd == "round-up":
            for d, w, h in reversed(cands):
                if w >= fx and h >= fy:
                    return w, h
            return cands[0][1:]
        best = min(cands, key=lambda c: (abs(c[1] * c[2] - fx * fy), c[0]))
        return best[1:]


def codestream_of(path, out):
    """A JP2's first codestream as a raw .j2k (so that a single component
    can be compared without the colour conversion a JP2 decode applies)."""
    data = open(path, "rb").read()
    if data[:4] == b"\xff\x4f\xff\x51":
        return path
    for t, box in top_boxes(data):
        if t == b"jp2c":
            hl = 16 if int.from_bytes(box[:4], "big") == 1 else 8
            with open(out, "wb") as f:
                f.write(box[hl:])
            return out
    raise AssertionError("no jp2c box in %s" % path)


def decode(path, d, rg, layers, out_dir, comps=None):
    """Decode to PGX files; comps limits the components decoded (which also
    keeps opj_decompress from guessing a colour space and mixing them)."""
    shutil.rmtree(out_dir, ignore_errors=True)
    os.makedirs(out_dir)
    args = [OPJ, "-i", path, "-o", os.path.join(out_dir, "c.pgx"), "-r", str(d),
            "-d", "%d,%d,%d,%d" % rg]
    if layers:
        args += ["-l", str(layers)]
    if comps is not None:
        args += ["-c", ",".join(str(c) for c in sorted(comps))]
    r = subprocess.run(args, capture_output=True)
    files = sorted(glob.glob(os.path.join(out_dir, "c*.pgx")))
    if r.returncode != 0 or not files:
        return None
    return {os.path.basename(f): open(f, "rb").read() for f in files}


def fetch(h, name, fields, out, extra=()):
    """jpip-fetch the window; returns (JPIP headers, raw body)."""
    raw = out + ".jpp"
    url = "http://127.0.0.1:%d/jpip/%s?%s" % (h.port, urllib.parse.quote(name), fields)
    r = subprocess.run([FETCH, "-v", "--jpp", raw, "-o", out] + list(extra) + [url],
                       capture_output=True, timeout=300)
    if r.returncode != 0:
        raise AssertionError("jpip-fetch %s: %s" % (fields, r.stderr.decode(errors="replace")))
    headers = {}
    for line in r.stderr.decode().splitlines():
        if line.startswith("  JPIP-"):
            k, v = line.strip().split(": ", 1)
            headers[k.lower()] = v
    return headers, open(raw, "rb").read()


def check_stream(g, body, d, tiles, comps=None):
    """Independent checks of a response against the index."""
    msgs, eor, trailing = jpp.parse(body)
    expect(eor is not None and trailing == 0, "the response does not end with one EOR")
    seen = {}
    for m in msgs:
        base = m.cls & ~1
        kv = g.bins.get((base, m.id if base != 8 else m.id))
        expect(kv is not None, "message for a bin the target does not have: %r" % m)
        blen = int(kv["length"])
        expect(m.off + m.len <= blen, "%r runs past the bin's %d bytes" % (m, blen))
        expect(bool(m.complete) == (m.off + m.len == blen), "%r: wrong completeness" % m)
        for lo, hi in seen.get((base, m.id), []):
            expect(m.off + m.len <= lo or hi <= m.off or m.len == 0,
                   "%r repeats bytes already sent" % m)
        seen.setdefault((base, m.id), []).append((m.off, m.off + m.len))
        if base == 0:
            t, c, r, nl = (int(kv[k]) for k in ("t", "c", "r", "nl"))
            expect(t in tiles, "precinct of tile %d, which the window does not meet" % t)
            expect(r <= max(nl - d, 0), "precinct of resolution %d beyond the window's" % r)
            expect(comps is None or c in comps, "precinct of component %d not asked for" % c)
        elif base in (2, 4):
            expect(m.id in tiles, "tile bin %d the window does not meet" % m.id)
    return msgs, eor


def window_case(h, g, name, d, ox, oy, sx, sy, extra_fields="", layers=0, comps=None,
                jpt=False):
    fw, fh = g.frame(d)
    # round-down serves the smallest discard level with this frame size
    d = min(e for e in range(g.nl + 1) if g.frame(e) == (fw, fh))
    fields = "type=%s&fsiz=%d,%d&roff=%d,%d&rsiz=%d,%d%s" % (
        "jpt-stream" if jpt else "jpp-stream", fw, fh, ox, oy, sx, sy, extra_fields)
    if layers:
        fields += "&layers=%d" % layers
    ext = ".jp2" if g.container != "codestream" else ".j2k"
    out = os.path.join(TMP, "rebuilt" + ext)
    headers, body = fetch(h, name, fields, out)
    expect("jpip-fsiz" not in headers, "JPIP-fsiz for an exact frame: %r" % headers)
    rg = g.region(d, ox, oy, sx, sy)
    served = comps
    if "jpip-comps" in headers:
        served = set()
        for part in headers["jpip-comps"].split(","):
            a, _, b = part.partition("-")
            served |= set(range(int(a), int(b or a) + 1))
    msgs, _ = check_stream(g, body, 0 if jpt else d, g.tiles_meeting(rg), served)
    if not jpt and not layers:
        # whole precinct bins: from the second on, a rendition sends them
        WHOLE[(name, fields)] = sum(1 for m in msgs if m.cls == 0 and m.off == 0 and m.complete)
    orig = os.path.join(h.archive, name)
    if comps is not None:
        orig = codestream_of(orig, os.path.join(TMP, "orig.j2k"))
        out = codestream_of(out, os.path.join(TMP, "rebuilt-cs.j2k"))
    want = decode(orig, d, rg, layers, os.path.join(TMP, "a"), served)
    if want is None:
        raise Skip("openjpeg cannot decode the original with -r %d -d %s" % (d, rg))
    got = decode(out, d, rg, 0, os.path.join(TMP, "b"), served)
    expect(got is not None, "the rebuilt image does not decode")
    for k in sorted(want):
        expect(got.get(k) == want[k], "component file %s differs" % k)


def windows_for(g):
    """(label, d, ox, oy, sx, sy, kwargs) of the grid for one target."""
    out = []
    for d in range(g.nl_min + 1):
        fw, fh = g.frame(d)
        out.append(("whole image at d=%d" % d, d, 0, 0, fw, fh, {}))
    fw, fh = g.frame(0)
    if g.ntx * g.nty > 1:
        # exactly the second tile (on tile boundaries), and one straddling them
        p = 1 if g.ntx > 1 else 0
        q = 0 if g.ntx > 1 else 1
        tx0 = max(g.xto + p * g.xt, g.x0) - g.x0
        ty0 = max(g.yto + q * g.yt, g.y0) - g.y0
        tx1 = min(g.xto + (p + 1) * g.xt, g.xsiz) - g.x0
        ty1 = min(g.yto + (q + 1) * g.yt, g.ysiz) - g.y0
        out.append(("one tile, on its boundaries", 0, tx0, ty0, tx1 - tx0, ty1 - ty0, {}))
        out.append(("across tile boundaries", 0, max(tx0 - 5, 0), max(ty0 - 3, 0),
                    min(g.xt + 9, fw), min(g.yt + 7, fh), {}))
    # on 64-sample (usual precinct/code-block) boundaries, and off them
    if fw > 128 and fh > 128:
        out.append(("on 64-sample boundaries", 0, 64, 64, 64, 64, {}))
    out.append(("off boundaries", 0, fw // 3 + 1, fh // 5 + 3, max(fw // 4, 1), max(fh // 3, 1),
                {}))
    d1 = min(1, g.nl_min)
    fw1, fh1 = g.frame(d1)
    out.append(("region at d=%d" % d1, d1, fw1 // 4, fh1 // 4, max(fw1 // 2, 1),
                max(fh1 // 2, 1), {}))
    if g.ncomps > 1:
        out.append(("component 0 only", d1, 0, 0, fw1, fh1,
                    {"extra_fields": "&comps=0", "comps": {0}}))
        out.append(("last component only", d1, 0, 0, fw1, fh1,
                    {"extra_fields": "&comps=%d" % (g.ncomps - 1), "comps": {g.ncomps - 1}}))
    if g.layers > 1:
        out.append(("first layer only", 0, fw // 4, fh // 4, max(fw // 2, 1), max(fh // 2, 1),
                    {"layers": 1}))
    return out


def round_case(h, g, name):
    """Each round direction: the server picks the frame the rule gives,
    says so in JPIP-fsiz, and the window decodes."""
    if g.nl < 2:
        raise Skip("fewer than two resolution levels")
    fw1, fh1 = g.frame(1)
    fw2, fh2 = g.frame(2)
    for rnd, (fx, fy) in (("round-down", (fw1 + 1, fh1 + 1)), ("round-up", (fw1, max(fh1 - 1, 1))),
                          ("closest", (fw2 + 1, fh2 + 1))):
        want = g.served_frame(fx, fy, rnd)
        fields = "type=jpp-stream&fsiz=%d,%d,%s" % (fx, fy, rnd)
        url = "/jpip/%s?%s" % (urllib.parse.quote(name), fields)
        st, hd, body = h.get(url)
        expect(st == 200, "%s: status %d" % (rnd, st))
        got = hd.get("jpip-fsiz")
        if want == (fx, fy):
            expect(got is None, "%s: JPIP-fsiz %r for an exact frame" % (rnd, got))
        else:
            expect(got == "%d,%d" % want, "%s %d,%d: JPIP-fsiz %r, want %d,%d" %
                   ((rnd, fx, fy, got) + tuple(want)))


def jpt_case(h, g, name):
    fw, fh = g.frame(0)
    if g.ppm:
        st, _, body = h.get("/jpip/%s?type=jpt-stream&fsiz=%d,%d" % (name, fw, fh))
        expect(st == 415 and b"PPM" in body, "JPT of a PPM file: %d %r" % (st, body[:80]))
        st, hd, _ = h.get("/jpip/%s?type=jpt-stream,jpp-stream&fsiz=%d,%d" % (name, fw, fh))
        expect(st == 200 and hd.get("content-type") == "image/jpp-stream",
               "JPT or JPP of a PPM file: %d %r" % (st, hd.get("content-type")))
        return
    window_case(h, g, name, 0, 0, 0, fw, fh, jpt=True)
    window_case(h, g, name, 0, fw // 3, fh // 3, max(fw // 3, 1), max(fh // 3, 1), jpt=True)


def len_case(h, g, name, step):
    """len-limited stateless requests, each declaring with model= what the
    client holds, converge to the full window; every step decodes."""
    fw, fh = g.frame(0)
    ext = ".jp2" if g.container != "codestream" else ".j2k"
    out = os.path.join(TMP, "final" + ext)
    prefix = os.path.join(TMP, "step")
    for f in glob.glob(prefix + "-*"):
        os.remove(f)
    fetch(h, name, "type=jpp-stream&fsiz=%d,%d&len=%d" % (fw, fh, step), out,
          ["--repeat", "--each", prefix])
    steps = sorted(glob.glob(prefix + "-*" + ext), key=lambda p: int(p.rsplit("-", 1)[1][:-4]))
    expect(len(steps) >= 3, "only %d responses for len=%d" % (len(steps), step))
    for s in steps[:-1]:
        r = subprocess.run([OPJ, "-i", s, "-o", os.path.join(TMP, "step.pgx")],
                           capture_output=True)
        expect(r.returncode == 0, "intermediate %s does not decode" % os.path.basename(s))
    rg = g.region(0, 0, 0, fw, fh)
    want = decode(os.path.join(h.archive, name), 0, rg, 0, os.path.join(TMP, "a"))
    got = decode(out, 0, rg, 0, os.path.join(TMP, "b"))
    expect(want is not None and got == want, "the converged image differs from the original")


def top_boxes(data):
    out, pos = [], 0
    while pos + 8 <= len(data):
        lbox = int.from_bytes(data[pos:pos + 4], "big")
        tbox = data[pos + 4:pos + 8]
        hl = 8
        if lbox == 1:
            lbox, hl = int.from_bytes(data[pos + 8:pos + 16], "big"), 16
        elif lbox == 0:
            lbox = len(data) - pos
        out.append((tbox, data[pos:pos + lbox]))
        pos += lbox
    return out


def jp2_case(h, g, name):
    """The rebuilt JP2 keeps the original's header boxes, and decodes;
    metareq=[*] returns every metadata-bin, complete."""
    fw, fh = g.frame(0)
    out = os.path.join(TMP, "whole.jp2")
    fetch(h, name, "type=jpp-stream&fsiz=%d,%d" % (fw, fh), out)
    orig = dict(top_boxes(open(os.path.join(h.archive, name), "rb").read()))
    rebuilt = dict(top_boxes(open(out, "rb").read()))
    for t in (b"jP  ", b"ftyp", b"jp2h"):
        if t in orig:
            expect(rebuilt.get(t) == orig[t], "box %r differs or is missing" % t)
    _, body = fetch(h, name, "type=jpp-stream&metareq=%5B*%5D!!", os.path.join(TMP, "m.jp2"))
    msgs, _ = check_stream(g, body, 0, set())
    held = {}
    for m in msgs:
        if m.cls == 8:
            held[m.id] = max(held.get(m.id, 0), m.off + m.len) if m.off <= held.get(m.id, 0) \
                else held.get(m.id, 0)
    for i in range(g.nmeta):
        n = int(g.bins[(8, i)]["length"])
        if n > 0:  # an empty bin stands in for a codestream box's contents
            expect(held.get(i) == n, "metadata-bin %d not sent in full (%r)" % (i, held.get(i)))
    expect(not any(m.cls in (0, 1) for m in msgs), "[*]!! sent image data")


REND_LOG = """
LogFormat "%P %{{jpip-rendition-messages}}n %{{jpip-messages}}n %>s %r" jpiprend
CustomLog "{root}/logs/rend.log" jpiprend
"""
WHOLE = {}  # (name, fields) -> whole precinct messages in the answer


def warm_path(name, g):
    return "/jpip/%s?type=jpp-stream&fsiz=%d,%d" % ((urllib.parse.quote(name),) + g.frame(0))


def rend_lines(h):
    """(pid, rendition messages, messages, status, request path) of every
    answer so far."""
    out = []
    try:
        with open(os.path.join(h.logs, "rend.log")) as f:
            for line in f:
                pid, nr, nm, st, rest = line.rstrip("\n").split(" ", 4)
                path = rest.split(" ")[1] if " " in rest else ""
                out.append((int(pid), int(nr) if nr.isdigit() else 0, st, path))
    except OSError:
        pass
    return out


def warm_renditions(h, geos, timeout=120):
    """Ask every target for its whole image until each process has served
    it from its rendition: a process builds a rendition in the background
    and looks for one at most once a second, so without this the windows
    of a small file would all be answered before either process had mapped
    it. The requests go out several at a time, so that every process
    accepts some of them (one client asking in turn may be served by one
    process only, and a slow build, as under the sanitizers, leaves the
    other cold). Returns the (target, pid) pairs that never were."""
    want = {}
    for n, g in geos.items():
        if sum(1 for k in g.bins if k[0] == 0) >= 2:  # one precinct: nothing to run
            want[warm_path(n, g)] = n
    kids = set(h.children())
    deadline = time.time() + timeout

    def ask(path):
        try:
            h.get(path)
        except (OSError, http.client.HTTPException):
            pass  # a broken answer fails the window cases, not this

    served = set()
    pool = ThreadPoolExecutor(max_workers=4)
    while True:
        todo = [p for p in want for pid in kids if (want[p], pid) not in served]
        list(pool.map(ask, todo + todo))
        for pid, nr, st, path in rend_lines(h):
            if path in want and nr > 0:
                served.add((want[path], pid))
        missing = {(n, pid) for n in want.values() for pid in kids} - served
        if not missing or time.time() > deadline:
            pool.shutdown()
            return missing
        time.sleep(0.3)


def case_renditions_used(h, geos, missing):
    """JPIPRenditionAfter 1, and every process warmed: every window answer
    with two or more whole precinct bins sent all but the first of them
    from the rendition (the rendition's messages assume a precinct message
    before them), as the counters in the request notes say
    (jpip-rendition-messages of jpip-messages)."""
    expect(not missing, "never answered from a rendition: %s" % sorted(missing)[:5])
    paths = {"/jpip/%s?%s" % (urllib.parse.quote(n), f): (n, f, k) for (n, f), k in WHOLE.items()}
    checked = used = 0
    short = []
    for pid, nr, st, path in rend_lines(h):
        if path not in paths or st != "200":
            continue
        n, f, k = paths[path]
        if k < 2:
            continue
        checked += 1
        used += nr > 0
        if nr < k - 1:
            short.append("%s?%s: %d of %d whole bins" % (n, f, nr, k))
    expect(checked > 0, "no window answer with two or more whole precinct bins")
    expect(not short, "%d of %d answers not from the rendition: %s"
           % (len(short), checked, "; ".join(short[:4])))
    print("# %d window answers, each from its rendition" % checked, flush=True)


def main():
    data = os.environ.get("JPIP_TESTDATA", "")
    conf = sorted(glob.glob(os.path.join(data, "conformance", "*.j*")))
    only = [n for n in os.environ.get("JPIP_VIEW_FILES", "").split(",") if n]
    if only:
        # a subset (the output-path variants of tests/integration/Makefile.am)
        conf = [f for f in conf if os.path.basename(f) in only]
    h = Httpd(os.environ["HTTPD"], os.environ["APXS"], os.environ["JPIP_MODULE"],
              os.path.join(os.environ["JPIP_SRCDIR"], "..", "..", "httpd-conf"),
              samples=os.environ.get("JPIP_SAMPLES"), extra_files=conf, servers=2,
              # renditions from the first request on: most windows below
              # are then answered from them, and checked as any other
              extra_conf="\nJPIPRenditionAfter 1\n" + REND_LOG)
    run = Runner()
    try:
        h.start()
    except Exception as e:  # noqa: BLE001
        print("FAIL - start httpd: %s" % e)
        print("0 passed, 1 failed")
        return 1
    if not conf:
        run.case("conformance corpus", lambda: (_ for _ in ()).throw(
            Skip("not found (JPIP_TESTDATA=%r)" % data)))
    try:
        names = sorted(n for n in os.listdir(h.archive) if n.endswith((".j2k", ".jp2"))
                       and (not only or n in only))
        geos = {}
        for n in names:
            try:
                geos[n] = Geometry(os.path.join(h.archive, n))
            except subprocess.CalledProcessError as e:
                run.case("%s: index" % n, lambda: expect(False, e.stderr.decode()))
        missing = warm_renditions(h, geos)
        for n, g in geos.items():
            for label, d, ox, oy, sx, sy, kw in windows_for(g):
                run.case("%s: %s" % (n, label), window_case, h, g, n, d, ox, oy, sx, sy,
                         kw.get("extra_fields", ""), kw.get("layers", 0), kw.get("comps"))
            run.case("%s: round directions" % n, round_case, h, g, n)
            if g.ntx * g.nty > 1:
                run.case("%s: JPT-stream" % n, jpt_case, h, g, n)
            if g.container != "codestream":
                run.case("%s: JP2 boxes and metareq=[*]" % n, jp2_case, h, g, n)
        for n in ("precincts.jp2", "tiled.j2k", "p0_04.j2k"):
            if n in geos:
                run.case("%s: len-limited requests converge" % n, len_case, h, geos[n], n,
                         20000 if n != "p0_04.j2k" else 40000)
    finally:
        h.stop()
    run.case("window answers come from renditions (rendition counters)",
             case_renditions_used, h, geos, missing)
    run.case("error log has no [error]/[crit]/exit signal lines",
             lambda: expect(not h.bad_log_lines(), "\n  ".join(h.bad_log_lines()[:10])))
    h.cleanup()
    shutil.rmtree(TMP, ignore_errors=True)
    return run.summary()


if __name__ == "__main__":
    sys.exit(main())
