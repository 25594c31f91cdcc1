"""mod_jpip with the JPIP clients that exist, on a live httpd (event MPM,
three children):

- Debian's OpenJPIP tools: opj_jpip_transcode turns JPT-streams from
  mod_jpip into codestreams that decode to exactly the original's pixels
  (full size, and a quarter-size view of an `opj_compress -TP R` file that
  is a small part of the full one and decodes exactly at that size);
  opj_dec_server is driven with the request sequence of OpenJPIP's viewer
  (opj_viewer: ImageManager, JPIPHttpClient, ImgdecClient), in a session
  and stateless, and its pictures must be the original's pixels.
- The request forms of OpenHTJ2K's client and demos: target-less requests
  at a location bound to one image (JPIPTarget), answered with
  Content-Length; `model` ranges (H0-11, P0-5) and the Ht/Hp spellings.
- Regions of interest named in XML boxes written by Debian's
  opj_jpip_addxml: roi=<name>, roi=dynamic, an unknown name.
- Error answers a JPP parser cannot mistake for data.

Every answer is parsed independently (jpp.py) and checked against what the
request declared: no byte twice, nothing the client declared held is sent,
nothing it lacks (that the same window without a model brings) is skipped.

Environment (tests/integration/Makefile.am): HTTPD, APXS, JPIP_MODULE,
JPIP_SAMPLES, JPIP_SRCDIR, JPIP_FETCH, OPJ_COMPRESS, OPJ_DECOMPRESS.
"""

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Httpd, Runner, Skip, expect, free_port  # noqa: E402
import jpp  # noqa: E402

OPJ_C = os.environ.get("OPJ_COMPRESS", "opj_compress")
OPJ_D = os.environ.get("OPJ_DECOMPRESS", "opj_decompress")
FETCH = os.environ.get("JPIP_FETCH", "jpip-fetch")
TRANSCODE = shutil.which("opj_jpip_transcode")
DEC_SERVER = shutil.which("opj_dec_server")
ADDXML = shutil.which("opj_jpip_addxml")
TMP = tempfile.mkdtemp(prefix="jpip-clients-")


ROIS = {"island": (610, 300, 200, 120), "ship": (40, 620, 90, 60)}


def env(name):
    v = os.environ.get(name)
    if not v:
        raise SystemExit("clients_cases.py: %s is not set (run through `make check`)" % name)
    return v


def confdir():
    return os.path.join(env("JPIP_SRCDIR"), "..", "..", "httpd-conf")


def need(tool, what):
    if tool is None:
        raise Skip("%s not installed (Debian package %s)" % (what.split()[0], what.split()[1]))


# ------------------------------------------------------------ images

def synth_ppm():
    p = os.path.join(os.path.dirname(env("JPIP_SAMPLES")), "synth-rgb.ppm")
    return p if os.path.exists(p) else None


def make_images():
    """The files the cases serve, generated here: tpr.jp2 (1024x768, a
    tile-part per resolution, lossless), roi.jp2 (the same picture with
    regions added by opj_jpip_addxml). Returns their paths."""
    src = synth_ppm()
    if src is None:
        return []
    tpr = os.path.join(TMP, "tpr.jp2")
    subprocess.run([OPJ_C, "-i", src, "-o", tpr, "-n", "6", "-TP", "R"], check=True,
                   capture_output=True)
    out = [tpr]
    if ADDXML is not None:
        roi = os.path.join(TMP, "roi.jp2")
        subprocess.run([OPJ_C, "-i", src, "-o", roi, "-n", "5", "-r", "20,4,1", "-c",
                        "[128,128]", "-p", "RPCL"], check=True, capture_output=True)
        xml = os.path.join(TMP, "roi.xml")
        with open(xml, "w") as f:
            f.write("<xmlbox>\n")
            for name, (x, y, w, h) in ROIS.items():
                f.write('  <roi name="%s" x="%d" y="%d" w="%d" h="%d"/>\n' % (name, x, y, w, h))
            f.write("</xmlbox>\n")
        subprocess.run([ADDXML, roi, xml], check=True, capture_output=True)
        out.append(roi)
    return out


def top_boxes(data):
    pos = 0
    while pos + 8 <= len(data):
        n = int.from_bytes(data[pos:pos + 4], "big")
        hl = 8
        if n == 1:
            n, hl = int.from_bytes(data[pos + 8:pos + 16], "big"), 16
        elif n == 0:
            n = len(data) - pos
        yield data[pos + 4:pos + 8], data[pos:pos + n], hl
        pos += n


def codestream(path):
    data = open(path, "rb").read()
    for t, box, hl in top_boxes(data):
        if t == b"jp2c":
            return box[hl:]
    return data


def tile_parts(cs):
    """(main header bytes, [(tile, tile-part bytes)]) by walking SOT."""
    pos = 2
    while not (cs[pos] == 0xFF and cs[pos + 1] == 0x90):
        pos += 2 + int.from_bytes(cs[pos + 2:pos + 4], "big")
    main = cs[:pos]
    parts = []
    while pos + 12 <= len(cs) and cs[pos:pos + 2] == b"\xff\x90":
        psot = int.from_bytes(cs[pos + 6:pos + 10], "big") or len(cs) - 2 - pos
        parts.append((int.from_bytes(cs[pos + 4:pos + 6], "big"), cs[pos:pos + psot]))
        pos += psot
    return main, parts


def decode(path, out, reduce=0, region=None):
    args = [OPJ_D, "-i", path, "-o", out, "-r", str(reduce)]
    if region:
        args += ["-d", "%d,%d,%d,%d" % region]
    r = subprocess.run(args, capture_output=True)
    expect(r.returncode == 0 and os.path.exists(out),
           "opj_decompress %s: %s" % (path, r.stderr.decode(errors="replace")[-300:]))
    return open(out, "rb").read()


def ppm_pixels(data):
    """The pixel bytes of a binary PPM/PGM (after its header)."""
    fields, pos = [], 2
    while len(fields) < 3:
        while data[pos:pos + 1].isspace():
            pos += 1
        if data[pos:pos + 1] == b"#":
            pos = data.index(b"\n", pos)
            continue
        start = pos
        while not data[pos:pos + 1].isspace():
            pos += 1
        fields.append(int(data[start:pos]))
    return (fields[0], fields[1]), data[pos + 1:]


# --------------------------------------------------- answers checked

def intervals(msgs):
    """Byte intervals per bin (class family, id); asserts no byte twice."""
    out = {}
    for m in msgs:
        key = (m.cls & ~1, m.id)
        for lo, hi in out.get(key, []):
            expect(m.len == 0 or m.off + m.len <= lo or hi <= m.off,
                   "%r repeats bytes already sent" % m)
        out.setdefault(key, []).append((m.off, m.off + m.len))
    return out


def covered(ivs, lo, hi):
    """Is [lo, hi) inside the union of ivs?"""
    at = lo
    for a, b in sorted(ivs):
        if a <= at < b:
            at = b
    return at >= hi


COMPLETE = None


def declared(model, base_keys):
    """What a model= value (the forms the cases use) says the client holds:
    {(class, id): bytes or COMPLETE}. '*' is every bin of that class the
    window involves; a range a-b its ends and what lies between."""
    held = {}
    for item in model.split(","):
        if item.startswith("["):
            expect(item == "[0]", "this checker knows codestream 0 only")
            continue
        sub = item.startswith("-")
        item = item.lstrip("-")
        item, _, qual = item.partition(":")
        if item == "Hm":
            cls, rng = 6, "0"
        elif item[:2] in ("Ht", "Hp"):
            cls, rng = (2 if item[1] == "t" else 0), item[2:]
        else:
            cls, rng = {"H": 2, "P": 0, "M": 8, "T": 4}[item[0]], item[1:]
        if rng == "*":
            ids = [i for c, i in base_keys if c == cls]
        else:
            a, _, b = rng.partition("-")
            ids = range(int(a), int(b or a) + 1)
        for i in ids:
            if sub:
                held.pop((cls, i), None)
            else:
                held[(cls, i)] = int(qual) if qual else COMPLETE
    return held


def check_model_answer(base_body, body, model):
    """body answers the window of base_body with `model`: no byte twice,
    nothing declared held sent, everything else of base_body present."""
    bmsgs, beor, _ = jpp.parse(base_body)
    msgs, eor, trailing = jpp.parse(body)
    expect(eor is not None and trailing == 0, "the answer does not end with one EOR")
    base = intervals(bmsgs)
    got = intervals(msgs)
    held = declared(model, base.keys())
    for key, ivs in got.items():
        expect(key in base, "bin %r is not part of the window" % (key,))
        if key in held:
            h = held[key]
            expect(h is not COMPLETE, "bin %r sent though the client holds it" % (key,))
            expect(all(lo >= h for lo, _ in ivs), "bin %r: its first %d bytes sent again"
                   % (key, h))
    skipped = 0
    for key, ivs in base.items():
        h = held.get(key, 0)
        if h is COMPLETE:
            continue
        for lo, hi in ivs:
            lo = max(lo, h)
            if lo < hi and not covered(got.get(key, []), lo, hi):
                skipped += 1
    expect(skipped == 0, "%d byte ranges the client lacks were not sent" % skipped)
    return msgs


def merged(body):
    """Each bin's bytes in an answer as merged intervals (no byte twice)."""
    msgs, eor, trailing = jpp.parse(body)
    expect(eor is not None and trailing == 0, "the answer does not end with one EOR")
    out = {}
    for key, ivs in intervals(msgs).items():
        m = []
        for lo, hi in sorted(ivs):
            if m and lo <= m[-1][1]:
                m[-1] = (m[-1][0], max(m[-1][1], hi))
            else:
                m.append((lo, hi))
        out[key] = m
    return out


def check_same(a, b, what):
    """Two answers carry the same bytes of the same bins."""
    ma, mb = merged(a), merged(b)
    expect(ma == mb, "%s: the bins differ (%d vs %d bins; only in one: %r)"
           % (what, len(ma), len(mb), sorted(set(ma) ^ set(mb))[:5]))


def eor_body(body):
    """The EOR message that ends body: (reason, its body bytes)."""
    msgs, eor, trailing = jpp.parse(body)
    expect(eor is not None and trailing == 0, "no EOR at the end")
    pos = len(body)
    for start in range(len(body) - 2, -1, -1):
        if body[start] == 0:
            try:
                n, p2 = jpp._vbas(body, start + 2)
            except jpp.StreamError:
                continue
            if p2 + n == len(body) and body[start + 1] == eor:
                pos = start
                return eor, body[p2:]
    raise AssertionError("EOR not found (%d)" % pos)


def jpip_headers(hd):
    return {k: v for k, v in hd.items() if k.startswith("jpip-")}


# ------------------------------------------------------- OpenJPIP

def case_transcode_jpt(h):
    """opj_jpip_transcode: a full-size JPT answer becomes a codestream that
    decodes to the original's pixels; a quarter-size view of the -TP R
    file sends only the leading tile-parts (a small part of the full view,
    the exact bytes the codestream's geometry says) and still transcodes
    and decodes exactly at that size."""
    need(TRANSCODE, "opj_jpip_transcode libopenjpip-dec-server")
    tpr = os.path.join(TMP, "tpr.jp2")
    if not os.path.exists(tpr):
        raise Skip("no synthetic picture in the build")
    main, parts = tile_parts(codestream(tpr))
    expect(len(parts) == 6, "tpr.jp2 should have 6 tile-parts, has %d" % len(parts))
    orig = decode(tpr, os.path.join(TMP, "orig.ppm"))
    sizes = {}
    for reduce, (fw, fh) in ((0, (1024, 768)), (2, (256, 192))):
        st, hd, body = h.get("/jpip/tpr.jp2?type=jpt-stream&fsiz=%d,%d" % (fw, fh))
        expect(st == 200 and hd.get("content-type") == "image/jpt-stream",
               "status %d %r" % (st, hd.get("content-type")))
        msgs, eor, trailing = jpp.parse(body)
        expect(eor == 2 and trailing == 0, "EOR %r" % eor)
        tile_bytes = sum(m.len for m in msgs if m.cls in (4, 5))
        want = sum(len(p) for _, p in parts[:len(parts) - reduce])
        expect(tile_bytes == want, "reduce %d: %d tile bytes, the first %d tile-parts are %d"
               % (reduce, tile_bytes, len(parts) - reduce, want))
        sizes[reduce] = len(body)
        jpt = os.path.join(TMP, "v%d.jpt" % reduce)
        j2k = os.path.join(TMP, "v%d.j2k" % reduce)
        with open(jpt, "wb") as f:
            f.write(body)
        r = subprocess.run([TRANSCODE, jpt, j2k], capture_output=True, timeout=120)
        expect(r.returncode == 0 and os.path.exists(j2k), "opj_jpip_transcode failed: %s"
               % r.stdout.decode(errors="replace")[-300:])
        got = decode(j2k, os.path.join(TMP, "t%d.ppm" % reduce), reduce)
        want_px = orig if reduce == 0 else decode(tpr, os.path.join(TMP, "o%d.ppm" % reduce),
                                                  reduce)
        expect(ppm_pixels(got) == ppm_pixels(want_px),
               "reduce %d: transcoded pixels differ from the original's" % reduce)
    expect(sizes[2] * 8 < sizes[0], "quarter-size view %d bytes vs full %d: not a small part"
           % (sizes[2], sizes[0]))


class DecServer:
    """opj_dec_server on a free port in its own directory (it writes its
    scratch files to the working directory)."""

    def __init__(self):
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="dec-", dir=TMP)
        self.proc = subprocess.Popen([DEC_SERVER, str(self.port)], cwd=self.dir,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT)
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise AssertionError("opj_dec_server did not listen")

    def alive(self, step):
        expect(self.proc.poll() is None, "opj_dec_server died (%s) after %s: %s"
               % (self.proc.returncode, step, self.output()[-500:]))

    def output(self):
        if self.proc.poll() is None:
            return ""
        return self.proc.stdout.read().decode(errors="replace")

    def talk(self, data, want=None):
        """Send one message; read want bytes (None: until it closes)."""
        s = socket.create_connection(("127.0.0.1", self.port), timeout=120)
        try:
            s.sendall(data)
            out = b""
            while want is None or len(out) < want:
                c = s.recv(1 << 20)
                if not c:
                    break
                out += c
            return out
        finally:
            s.close()

    def stream(self, body, target=None, tid=None, cid=None):
        if target is not None:
            head = b"JPIP-stream\nversion 1.2\n%s\n%s\n%s\n%d\n" % (
                target.encode(), (tid or "0").encode(), (cid or "0").encode(), len(body))
        else:
            head = b"JPIP-stream\nversion 1.2\n%d\n" % len(body)
        ack = self.talk(head + body, 1)
        self.alive("a JPIP-stream message")
        expect(ack == b"\x01", "opj_dec_server did not take the stream: %r" % ack)

    def pnm(self, id_, fw, fh):
        data = self.talk(b"PNM request\n%s\n%d\n%d\n" % (id_.encode(), fw, fh))
        self.alive("a PNM request")
        expect(len(data) > 7 and data[0:1] == b"P", "no picture: %r" % data[:16])
        w, hh = int.from_bytes(data[2:4], "big"), int.from_bytes(data[4:6], "big")
        return (w, hh), data[7:]

    def stop(self):
        if self.proc.poll() is None:
            try:
                self.talk(b"QUIT\n", 0)
            except OSError:
                pass
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def expected_picture(main, parts, ntp):
    """The picture of the codestream of the first ntp tile-parts (what a
    client holding them decodes at full size), via openjpeg."""
    p = os.path.join(TMP, "first%d.j2k" % ntp)
    with open(p, "wb") as f:
        f.write(main + b"".join(b for _, b in parts[:ntp]) + b"\xff\xd9")
    return ppm_pixels(decode(p, os.path.join(TMP, "first%d.ppm" % ntp)))


def case_viewer_session(h):
    """OpenJPIP's viewer in a session, replayed: it asks opj_dec_server
    for a known cid and tid, opens a channel with target=, cnew=http and
    type=jpt-stream at its window size, hands the stream to opj_dec_server
    with the target, the JPIP-tid and the cid, asks it for the picture;
    zooms with cid= alone; closes the channel. opj_dec_server must survive
    every step and its pictures be those of exactly the tile-parts the
    views need (the whole original at full size)."""
    need(DEC_SERVER, "opj_dec_server libopenjpip-dec-server")
    tpr = os.path.join(TMP, "tpr.jp2")
    if not os.path.exists(tpr):
        raise Skip("no synthetic picture in the build")
    main, parts = tile_parts(codestream(tpr))
    dec = DecServer()
    try:
        expect(dec.talk(b"CID request\ntpr.jp2\n", 4) == b"CID\x00", "cached cid")
        expect(dec.talk(b"TID request\ntpr.jp2\n", 4) == b"TID\x00", "cached tid")
        st, hd, body = h.get("/jpip?target=tpr.jp2&fsiz=170,170&cnew=http&type=jpt-stream")
        expect(st == 200, "cnew: status %d" % st)
        hj = jpip_headers(hd)
        expect("jpip-tid" in hj, "no JPIP-tid for a viewer that never asks: %r" % hj)
        expect("jpip-cnew" in hj and hj.get("jpip-fsiz") == "128,96", "headers %r" % hj)
        cid = hj["jpip-cnew"].split("=", 1)[1].split(",")[0]
        tid = hj["jpip-tid"]
        dec.stream(body, "tpr.jp2", tid, cid)
        (w, hh), px = dec.pnm(cid, 128, 96)
        expect((w, hh) == (1024, 768), "picture %dx%d" % (w, hh))
        # 170x170 rounds down to 128x96, 3 levels below full size: the
        # tile-parts of resolutions 0 .. NL-3, the first three
        first = len(parts) - 3
        expect(px == expected_picture(main, parts, first)[1],
               "the picture is not that of the first %d tile-parts" % first)
        # the viewer's size query: opj_dec_server takes an id that starts
        # with '0' for "none" (its placeholder for an absent id), so it finds
        # the cache only through an id that does not
        size = dec.talk(b"SIZ request\n%s\n%s\n" % (tid.encode(), cid.encode()), 9)
        dec.alive("a SIZ request")
        found = tid[0] != "0" or cid[0] != "0"
        want = (1024, 768) if found else (0, 0)
        expect(size == b"SIZ" + want[0].to_bytes(3, "big") + want[1].to_bytes(3, "big"),
               "SIZ %r (tid %s, cid %s)" % (size, tid, cid))
        # zoom to the whole picture on the channel
        st, hd, body = h.get("/jpip?fsiz=1024,768&roff=0,0&rsiz=1024,768&cid=%s"
                             "&type=jpt-stream" % cid)
        expect(st == 200, "cid request: status %d" % st)
        msgs, eor, _ = jpp.parse(body)
        expect(all(m.off >= sum(len(p) for _, p in parts[:first]) for m in msgs if m.cls == 4),
               "the session sent tile-parts again")
        dec.stream(body)
        (w, hh), px = dec.pnm(cid, 1024, 768)
        orig = ppm_pixels(decode(tpr, os.path.join(TMP, "orig-v.ppm")))
        expect(((w, hh), px) == orig, "the full picture is not the original's pixels")
        expect(dec.talk(b"CID destroy\n%s\n" % cid.encode(), 1) == b"\x01", "CID destroy")
        dec.alive("CID destroy")
        VIEWER["cid"] = cid
    finally:
        dec.stop()


VIEWER = {}


def case_viewer_close(h):
    """The viewer's close of that session: `cclose=<cid>` alone, no cid
    field, no target; afterwards the channel is gone."""
    cid = VIEWER.get("cid")
    if cid is None:
        raise Skip("no viewer session was opened")
    st, hd, body = h.get("/jpip?cclose=%s" % cid)
    expect(st == 200, "cclose alone: status %d" % st)
    st, _, _ = h.get("/jpip?cid=%s&fsiz=64,48" % cid)
    expect(st == 503, "the channel is still open after cclose (status %d)" % st)


def case_viewer_stateless(h):
    """OpenJPIP's viewer without a session: its first request names the
    target, its next ones only the tid it was given (no target, no path),
    served at a location bound to the image with JPIPTarget; the answer
    transcodes (opj_jpip_transcode) to the original's pixels. (The viewer
    cannot hand such streams to opj_dec_server: with no cid it crashes on
    its own, strdup(NULL) in gene_cache, whatever the server.)"""
    need(TRANSCODE, "opj_jpip_transcode libopenjpip-dec-server")
    tpr = os.path.join(TMP, "tpr.jp2")
    if not os.path.exists(tpr):
        raise Skip("no synthetic picture in the build")
    st, hd, body = h.get("/viewer?target=tpr.jp2&fsiz=170,170&type=jpt-stream")
    expect(st == 200 and "jpip-tid" in hd, "status %d %r" % (st, jpip_headers(hd)))
    tid = hd["jpip-tid"]
    st, hd, body = h.get("/viewer?tid=%s&fsiz=1024,768&roff=0,0&rsiz=1024,768"
                         "&type=jpt-stream" % tid)
    expect(st == 200, "tid-only request at the bound location: status %d" % st)
    expect("jpip-tid" not in hd, "JPIP-tid though the request named the current one")
    jpt, j2k = os.path.join(TMP, "stateless.jpt"), os.path.join(TMP, "stateless.j2k")
    with open(jpt, "wb") as f:
        f.write(body)
    r = subprocess.run([TRANSCODE, jpt, j2k], capture_output=True, timeout=120)
    expect(r.returncode == 0, "opj_jpip_transcode failed")
    expect(ppm_pixels(decode(j2k, os.path.join(TMP, "st.ppm"))) ==
           ppm_pixels(decode(tpr, os.path.join(TMP, "orig-s.ppm"))),
           "the picture is not the original's pixels")
    # at the unbound location a tid alone names nothing
    st, _, _ = h.get("/jpip?tid=%s&fsiz=64,48&type=jpt-stream" % tid)
    expect(st in (400, 404), "tid alone at /jpip: status %d" % st)


# ------------------------------------------------------- OpenHTJ2K

def case_targetless_bound(h):
    """OpenHTJ2K's client asks `GET <server>/jpip?fsiz=1,1&type=jpp-stream`
    naming no target and reads the answer by its Content-Length: at a
    location bound with JPIPTarget (and JPIPContentLength Always) it gets
    the image's main header; a path below the location still names its
    own target."""
    st, hd, body = h.get("/one/jpip?fsiz=1,1&type=jpp-stream")
    expect(st == 200 and hd.get("content-type") == "image/jpp-stream", "status %d" % st)
    expect(hd.get("content-length") == str(len(body)), "Content-Length %r for %d bytes"
           % (hd.get("content-length"), len(body)))
    msgs, eor, trailing = jpp.parse(body)
    expect(any(m.cls == 6 and m.complete for m in msgs), "no complete main header")
    expect(eor == 2 and trailing == 0, "EOR %r" % eor)
    direct = h.get("/jpip/tiled.j2k?fsiz=1,1&type=jpp-stream")[2]
    expect(body == direct, "the bound location answers otherwise than the image's own URL")
    st, _, body = h.get("/one/jpip/precincts.jp2?fsiz=1,1&type=jpp-stream")
    expect(st == 200 and body != direct, "a path below the bound location: status %d" % st)
    st, _, body = h.get("/one/jpip?target=gray.jp2&fsiz=1,1")
    expect(st == 200 and body != direct, "target= at the bound location: status %d" % st)


def httpd_env():
    """The environment httpd runs in: with a sanitized module, the
    sanitizer runtimes preloaded (as the harness starts it)."""
    e = dict(os.environ)
    if os.environ.get("JPIP_SANITIZERS"):
        libs = []
        for lib in ("libasan.so", "libubsan.so"):
            p = subprocess.run(["gcc", "-print-file-name=" + lib], capture_output=True,
                               text=True).stdout.strip()
            if os.path.isabs(p) and os.path.exists(p):
                libs.append(os.path.realpath(p))
        e["LD_PRELOAD"] = ":".join(libs)
        e["ASAN_OPTIONS"] = "detect_leaks=0"
    return e


def case_target_directive(h):
    """JPIPTarget is parsed strictly (httpd -t refuses a path that is not
    relative to JPIPRoot, naming the directive); `none` undoes an
    inherited binding."""
    for bad in ("../x.jp2", "/abs.jp2", "a/../b.jp2", "..", '""', "a\\b.jp2"):
        conf = ('<Location "/bad">\n    SetHandler jpip\n    JPIPRoot "{archive}"\n'
                '    JPIPTarget %s\n</Location>\n' % bad)
        t = Httpd(env("HTTPD"), env("APXS"), env("JPIP_MODULE"), confdir(), extra_conf=conf)
        try:
            t.write_config()
            r = subprocess.run([env("HTTPD"), "-t", "-f", t.conf, "-d", t.root],
                               capture_output=True, text=True, env=httpd_env())
            expect(r.returncode != 0 and "JPIPTarget" in r.stdout + r.stderr,
                   "JPIPTarget %s accepted: %s" % (bad, r.stdout + r.stderr))
        finally:
            t.cleanup()
    # /three is bound, then unbound by a later section for the same path
    st, _, body = h.get("/three?fsiz=1,1&type=jpp-stream")
    expect(st == 400 and b"no target" in body, "JPIPTarget none: %d %r" % (st, body[:80]))


def case_model_forms(h):
    """The model forms real clients write, at the bound location (tiled.j2k:
    12 tiles): ranges of tile headers and precincts, OpenHTJ2K's Ht/Hp,
    subtraction and byte counts; each answer checked against the same
    window asked without a model."""
    window = "/one/jpip?type=jpp-stream&fsiz=512,384"
    st, _, base = h.get(window)
    expect(st == 200, "status %d" % st)
    for model in ("H0-11,M0,Hm", "Hm,M0,P0-5", "Ht*", "Ht0,Ht3-4", "Hp12-23:10,Hp40",
                  "[0],Hm,H2-4,P10-20,-P12,-H3", "P0-5,P7-9:5,M0"):
        st, _, body = h.get(window + "&model=" + urllib.parse.quote(model, safe=",:*-[]"))
        expect(st == 200, "model=%s: status %d" % (model, st))
        check_model_answer(base, body, model)
        if model == "H0-11,M0,Hm":
            msgs, _, _ = jpp.parse(body)
            expect({m.cls for m in msgs} == {0}, "model=%s: classes %r" % (model, {m.cls
                                                                                for m in msgs}))
    # a range that is not one gets 400 naming the field
    st, _, body = h.get(window + "&model=P5-3")
    expect(st == 400 and b"model" in body, "model=P5-3: %d %r" % (st, body))


# ------------------------------------------------------------- ROI

def case_roi(h):
    """Regions named by opj_jpip_addxml's XML box: roi=<name> serves the
    region (JPIP-roi, JPIP-fsiz/roff/rsiz) and the same bytes as asking for
    its window; with fsiz the region is scaled into the frame; roi=dynamic
    picks the region the window meets most; an unknown name gets
    roi=no-roi, the window as asked and the names in the EOR body."""
    need(ADDXML, "opj_jpip_addxml libopenjpip-dec-server")
    if not os.path.exists(os.path.join(TMP, "roi.jp2")):
        raise Skip("no synthetic picture in the build")
    for name, (x, y, w, hh) in ROIS.items():
        st, hd, body = h.get("/jpip/roi.jp2?type=jpp-stream&roi=" + name)
        expect(st == 200, "roi=%s: status %d" % (name, st))
        hj = jpip_headers(hd)
        expect(hj.get("jpip-roi") == "roi=%s;fsiz=1024,768;rsiz=%d,%d;roff=%d,%d"
               % (name, w, hh, x, y), "roi=%s: %r" % (name, hj))
        expect(hj.get("jpip-fsiz") == "1024,768" and hj.get("jpip-roff") == "%d,%d" % (x, y)
               and hj.get("jpip-rsiz") == "%d,%d" % (w, hh), "roi=%s: %r" % (name, hj))
        st, _, plain = h.get("/jpip/roi.jp2?type=jpp-stream&fsiz=1024,768&roff=%d,%d&rsiz=%d,%d"
                             % (x, y, w, hh))
        check_same(plain, body, "roi=%s and its window" % name)
    # the region decodes exactly (jpip-fetch rebuilds, openjpeg decodes)
    out = os.path.join(TMP, "roi-fetched.jp2")
    r = subprocess.run([FETCH, "-o", out, "http://127.0.0.1:%d/jpip/roi.jp2?roi=island" % h.port],
                       capture_output=True, timeout=120)
    expect(r.returncode == 0, "jpip-fetch: %s" % r.stderr.decode(errors="replace"))
    x, y, w, hh = ROIS["island"]
    rg = (x, y, x + w, y + hh)
    expect(ppm_pixels(decode(out, os.path.join(TMP, "rf.ppm"), 0, rg)) ==
           ppm_pixels(decode(os.path.join(TMP, "roi.jp2"), os.path.join(TMP, "ro.ppm"), 0, rg)),
           "the region rebuilt from roi=island is not the original's pixels")
    # scaled into a frame
    st, hd, _ = h.get("/jpip/roi.jp2?type=jpp-stream&roi=island&fsiz=512,384")
    expect(hd.get("jpip-roi") == "roi=island;fsiz=512,384;rsiz=100,60;roff=305,150",
           "roi=island at 512x384: %r" % jpip_headers(hd))
    # dynamic: the window near the ship
    st, hd, _ = h.get("/jpip/roi.jp2?type=jpp-stream&roi=dynamic&fsiz=1024,768&roff=0,600"
                      "&rsiz=200,168")
    expect((hd.get("jpip-roi") or "").startswith("roi=ship;"), "dynamic: %r" % jpip_headers(hd))
    # unknown
    st, hd, body = h.get("/jpip/roi.jp2?type=jpp-stream&roi=volcano&fsiz=64,48")
    expect(st == 200 and hd.get("jpip-roi") == "roi=no-roi", "unknown: %d %r"
           % (st, jpip_headers(hd)))
    eor, text = eor_body(body)
    expect(eor == 2 and b"volcano" in text and b"island, ship" in text,
           "unknown name: EOR %r %r" % (eor, text))
    plain = h.get("/jpip/roi.jp2?type=jpp-stream&fsiz=64,48")[2]
    check_same(plain, body, "an unknown roi and the window as asked")


# ---------------------------------------------------------- errors

def case_error_bodies(h):
    """An error answer keeps its status and its sentence (text/plain), but
    read as a JPP-stream it is an EOR (reason 0xFF) and no data: the
    sentence is the EOR's body."""
    for path, status, word in (("/jpip?fsiz=1,1&type=jpp-stream", 400, b"no target"),
                               ("/jpip/nope.jp2?fsiz=1,1", 404, b"no such target"),
                               ("/jpip/tiled.j2k?fsiz=1,1&model=Z9", 400, b"model"),
                               ("/jpip/tiled.j2k?frobnicate=1", 400, b"frobnicate")):
        st, hd, body = h.get(path)
        expect(st == status, "%s: status %d" % (path, st))
        expect(hd.get("content-type", "").startswith("text/plain"), "%s: %r"
               % (path, hd.get("content-type")))
        msgs, eor, trailing = jpp.parse(body)
        expect(msgs == [] and eor == 0xFF and trailing == 0,
               "%s: read as JPP: %d messages, EOR %r, %d trailing" % (path, len(msgs), eor,
                                                                       trailing))
        expect(word in body and body.endswith(b"\n"), "%s: %r" % (path, body))


def case_error_log_clean(h):
    bad = h.bad_log_lines()
    expect(not bad, "error log:\n" + "\n".join(bad[:10]))


def main():
    images = make_images()
    extra = """
<Location "/one/jpip">
    SetHandler jpip
    JPIPRoot "{archive}"
    JPIPTarget "tiled.j2k"
    JPIPContentLength Always
    Require all granted
</Location>
<Location "/three">
    SetHandler jpip
    JPIPRoot "{archive}"
    JPIPTarget "tiled.j2k"
    Require all granted
</Location>
<Location "/three">
    JPIPTarget none
</Location>
<Location "/viewer">
    SetHandler jpip
    JPIPRoot "{archive}"
    JPIPTarget "tpr.jp2"
    Require all granted
</Location>
"""
    h = Httpd(env("HTTPD"), env("APXS"), env("JPIP_MODULE"), confdir(),
              samples=env("JPIP_SAMPLES"), servers=3, extra_conf=extra, extra_files=images)
    run = Runner()
    try:
        h.start()
    except Exception as e:  # noqa: BLE001
        print("FAIL - start httpd: %s" % e)
        h.cleanup()
        print("0 passed, 1 failed")
        return 1
    try:
        for name, fn in [
            ("opj_jpip_transcode: JPT full and quarter size decode exactly", case_transcode_jpt),
            ("opj_dec_server: OpenJPIP's viewer in a session", case_viewer_session),
            ("OpenJPIP's viewer closes its session with cclose alone", case_viewer_close),
            ("OpenJPIP's viewer stateless: tid-only requests", case_viewer_stateless),
            ("target-less requests at a JPIPTarget location", case_targetless_bound),
            ("JPIPTarget is parsed strictly; none unbinds", case_target_directive),
            ("model ranges and Ht/Hp forms", case_model_forms),
            ("roi names from opj_jpip_addxml XML boxes", case_roi),
            ("error answers read as JPP carry no data", case_error_bodies),
        ]:
            run.case(name, fn, h)
    finally:
        h.stop()
    run.case("error log has no [error]/[crit]/exit signal lines", case_error_log_clean, h)
    h.cleanup()
    shutil.rmtree(TMP, ignore_errors=True)
    return run.summary()


if __name__ == "__main__":
    sys.exit(main())
