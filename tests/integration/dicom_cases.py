"""mod_jpip live DICOM cases.

DICOM Part 10 files are generated here: synthetic pictures encoded by
opj_compress and ojph_compress and wrapped by tests/tools/dcmgen.py (our
own writer: 8/12/16 bit, signed, MONOCHROME2, RGB, YBR_RCT/ICT, one to
three frames split into fragments, Basic/Extended/no offset table, nested
and private elements), plus files made by GDCM (gdcmimg + gdcmconv --j2k).
For every file and every frame, a full-image, a half-resolution and a
region request go through a live httpd (event MPM, two children) to
tools/jpip-fetch, which rebuilds the frame's codestream; openjpeg must
decode it to exactly the pixels of that frame's codestream taken out
independently (the codestream the writer wrapped; gdcmraw for GDCM files).
The answers themselves are parsed (jpp.py): only the asked frame's
codestream is sent, and metadata-bin 0 carries the synthesised boxes,
whose XML box must list the attributes the file has.

Hostile files (lengths past the end, deep nesting, undefined lengths that
never end, offset tables pointing outside, zero and a billion frames, other
transfer syntaxes...) must get a clear 415 (or 503 for limits) naming the
problem, quickly, without the workers' memory growing.

tools/jpip-dicom-refer output must pass dcmdump (and dciodvfy, for the
transfer syntaxes it knows) with the right transfer syntax and Pixel Data
Provider URL; the URL read back from the file fetches the frames.

Environment: as the other integration cases, plus JPIP_DICOM_REFER.
"""

import glob
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import urllib.parse
import xml.etree.ElementTree as ET
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "tools"))
from harness import Httpd, Runner, Skip, expect  # noqa: E402
import dcmgen  # noqa: E402
import jpp  # noqa: E402

FETCH = os.environ.get("JPIP_FETCH", "jpip-fetch")
REFER = os.environ.get("JPIP_DICOM_REFER", "jpip-dicom-refer")
OPJ = os.environ.get("OPJ_DECOMPRESS", "opj_decompress")
OPJ_C = os.environ.get("OPJ_COMPRESS", "opj_compress")
OJPH_C = shutil.which("ojph_compress")
TMP = tempfile.mkdtemp(prefix="jpip-dicom-")
NS = "{http://dicom.nema.org/PS3.19/models/NativeDICOM}"
TIME_BOUND = 30

MONO, RCT, ICT = "MONOCHROME2", "YBR_RCT", "YBR_ICT"
SPECS = [
    # name, transfer syntax, photometric, components, bits, signed, frames,
    # fragments per frame, offset table, encoder, options, size, extras
    dict(name="mono8.dcm", ts=dcmgen.TS_J2K_LOSSLESS, pi=MONO, spp=1, bits=8, signed=False,
         frames=1, parts=1, table="none", enc="opj", opts=["-n", "3"], size=(80, 60),
         clutter=True, spacing=("0.5", "0.25")),
    dict(name="mono16s-bot.dcm", ts=dcmgen.TS_J2K_LOSSLESS, pi=MONO, spp=1, bits=16, signed=True,
         frames=3, parts=[2, 3, 1], table="bot", enc="opj", opts=["-n", "3"], size=(72, 56),
         clutter=True),
    dict(name="mono12-eot.dcm", ts=dcmgen.TS_J2K, pi=MONO, spp=1, bits=12, signed=False,
         frames=2, parts=3, table="eot", enc="opj",
         opts=["-n", "3", "-I", "-r", "8,2", "-t", "32,32"], size=(70, 52)),
    dict(name="rgb-rct-soc.dcm", ts=dcmgen.TS_J2K_LOSSLESS, pi=RCT, spp=3, bits=8, signed=False,
         frames=3, parts=2, table="none", enc="opj", opts=["-n", "3"], size=(64, 48)),
    dict(name="rgb-ict-eot.dcm", ts=dcmgen.TS_J2K, pi=ICT, spp=3, bits=8, signed=False,
         frames=2, parts=2, table="eot-nolengths", enc="opj", opts=["-n", "3", "-I", "-r", "10"],
         size=(66, 50)),
    dict(name="rgb-p2.dcm", ts=dcmgen.TS_J2K_P2_LOSSLESS, pi="RGB", spp=3, bits=8, signed=False,
         frames=1, parts=1, table="bot", enc="opj", opts=["-n", "3", "-mct", "0"],
         size=(48, 40)),
    dict(name="mono8-p2lossy.dcm", ts=dcmgen.TS_J2K_P2, pi=MONO, spp=1, bits=8, signed=False,
         frames=2, parts=1, table="bot", enc="opj", opts=["-n", "2", "-I", "-r", "5"],
         size=(50, 40)),
    dict(name="ht-mono16.dcm", ts=dcmgen.TS_HTJ2K_LOSSLESS, pi=MONO, spp=1, bits=16,
         signed=False, frames=1, parts=2, table="none", enc="ojph",
         opts=["-num_decomps", "3", "-reversible", "true"], size=(64, 48)),
    dict(name="ht-rpcl-rgb.dcm", ts=dcmgen.TS_HTJ2K_RPCL, pi=RCT, spp=3, bits=8, signed=False,
         frames=2, parts=1, table="bot", enc="ojph",
         opts=["-num_decomps", "3", "-reversible", "true", "-prog_order", "RPCL"],
         size=(60, 44)),
    dict(name="ht-lossy.dcm", ts=dcmgen.TS_HTJ2K, pi=MONO, spp=1, bits=8, signed=False,
         frames=3, parts=1, table="none", enc="ojph",
         opts=["-num_decomps", "2", "-reversible", "false", "-qstep", "0.02"], size=(56, 40)),
]


def sh(args, **kw):
    r = subprocess.run(args, capture_output=True, **kw)
    if r.returncode != 0:
        raise AssertionError("%s failed: %s" % (os.path.basename(args[0]),
                                                r.stderr.decode(errors="replace")[-400:]))
    return r


def sample(x, y, c, f, maxv):
    """A deterministic picture: gradients, texture, a frame-dependent shift."""
    v = (x * (7 + 3 * c) + y * (5 + c) + ((x * y) >> 2) + f * 97 + ((x ^ y) & 15) * 9)
    return (v * (maxv // 255 + 1)) % (maxv + 1)


def picture(path, w, h, spp, bits, signed, f, pnm16=False):
    """PGM/PPM for 8-bit (and 16-bit when pnm16, big-endian), else
    little-endian raw for opj_compress -F. Returns the path written."""
    maxv = (1 << bits) - 1
    vals = [sample(x, y, c, f, maxv) for y in range(h) for x in range(w) for c in range(spp)]
    if bits <= 8 or pnm16:
        hdr = b"P%d\n%d %d\n%d\n" % (5 if spp == 1 else 6, w, h, maxv)
        fmt = ">%dB" if bits <= 8 else ">%dH"
        path += ".pgm" if spp == 1 else ".ppm"
        with open(path, "wb") as fh:
            fh.write(hdr + struct.pack(fmt % len(vals), *vals))
        return path
    if signed:
        vals = [v - (1 << (bits - 1)) for v in vals]
    path += ".rawl"
    with open(path, "wb") as fh:
        fh.write(struct.pack("<%d%s" % (len(vals), "h" if signed else "H"), *vals))
    return path


def encode(spec, f):
    w, h = spec["size"]
    base = os.path.join(TMP, "%s-f%d" % (spec["name"], f))
    if spec["enc"] == "ojph":
        if OJPH_C is None:
            raise Skip("ojph_compress not found (openjph-tools)")
        src = picture(base, w, h, spec["spp"], spec["bits"], False, f, pnm16=True)
        out = base + ".j2c"
        sh([OJPH_C, "-i", src, "-o", out] + spec["opts"])
    else:
        src = picture(base, w, h, spec["spp"], spec["bits"], spec["signed"], f)
        out = base + ".j2k"
        args = [OPJ_C, "-i", src, "-o", out] + spec["opts"]
        if src.endswith(".rawl"):
            args += ["-F", "%d,%d,%d,%d,%s" % (w, h, spec["spp"], spec["bits"],
                                               "s" if spec["signed"] else "u")]
        sh(args)
    return open(out, "rb").read()


def make_generated(spec, n):
    frames = [encode(spec, f) for f in range(spec["frames"])]
    w, h = spec["size"]
    els, cls, inst = dcmgen.image(h, w, spec["spp"], spec["pi"], 8 if spec["bits"] <= 8 else 16,
                                  spec["bits"], spec["signed"], len(frames), n=n,
                                  spacing=spec.get("spacing"))
    if spec.get("clutter"):
        els.update(dcmgen.clutter())
    els.update(dcmgen.pixel_data(frames, spec["parts"], spec["table"]))
    path = os.path.join(TMP, spec["name"])
    with open(path, "wb") as fh:
        fh.write(dcmgen.part10(spec["ts"], els, cls, inst))
    return dict(spec, path=path, codestreams=frames)


def make_gdcm():
    """Files written by GDCM, frames taken out with gdcmraw."""
    tools = [shutil.which(t) for t in ("gdcmimg", "gdcmconv", "gdcmraw")]
    if None in tools:
        return []
    gimg, gconv, graw = tools
    out = []
    # three 16-bit signed frames from raw samples
    w, h, n = 48, 36, 3
    raw = os.path.join(TMP, "g16.raw")
    with open(raw, "wb") as fh:
        for f in range(n):
            fh.write(b"".join(struct.pack("<h", sample(x, y, 0, f, 4095) - 2048)
                              for y in range(h) for x in range(w)))
    made = [("gdcm-mono16s.dcm", [gimg, "-C", dcmgen.MF_GRAY_WORD, "--size", "%d,%d,%d" % (w, h, n),
                                  "-d", "16", "--sign", "1", "-i", raw], [], MONO, 1, 16, True,
             (w, h), n)]
    ppm = picture(os.path.join(TMP, "gdcm-rgb"), 52, 38, 3, 8, False, 0)
    made.append(("gdcm-rgb-lossy.dcm", [gimg, "-i", ppm], ["--lossy", "-q", "40"], "RGB", 3, 8,
                 False, (52, 38), 1))
    for name, mk, conv, pi, spp, bits, signed, size, nfr in made:
        plain = os.path.join(TMP, name + ".plain.dcm")
        path = os.path.join(TMP, name)
        sh(mk + ["-o", plain])
        sh([gconv, "--j2k"] + conv + [plain, path])
        stem = os.path.join(TMP, name + ".frag")
        sh([graw, "-i", path, "-t", "7fe0,0010", "-S", "-o", stem])
        frags = sorted(glob.glob(stem + "*"), key=lambda p: int(p[len(stem):]))
        expect(len(frags) == nfr, "%s: gdcmraw wrote %d fragments for %d frames" %
               (name, len(frags), nfr))
        cs = [open(p, "rb").read() for p in frags]
        cs = [c[:-1] if c.endswith(b"\xff\xd9\x00") else c for c in cs]
        out.append(dict(name=name, path=path, codestreams=cs, pi=pi, spp=spp, bits=bits,
                        signed=signed, size=size, frames=nfr, ts=None))
    return out


# ------------------------------------------------------------ geometry

def siz_cod(cs):
    """(X0, Y0, Xsiz, Ysiz, levels) from a codestream's SIZ and COD."""
    expect(cs[:4] == b"\xff\x4f\xff\x51", "not a codestream")
    xsiz, ysiz, x0, y0 = struct.unpack(">IIII", cs[8:24])
    pos = 2
    while pos + 4 <= len(cs):
        marker, length = struct.unpack(">HH", cs[pos:pos + 4])
        if marker == 0xFF52:
            return x0, y0, xsiz, ysiz, cs[pos + 4 + 5]
        pos += 2 + length
    raise AssertionError("no COD marker")


def ceil_shift(a, d):
    return -((-a) >> d)


class Geo:
    def __init__(self, cs):
        self.x0, self.y0, self.xsiz, self.ysiz, self.nl = siz_cod(cs)

    def frame(self, d):
        return (ceil_shift(self.xsiz, d) - ceil_shift(self.x0, d),
                ceil_shift(self.ysiz, d) - ceil_shift(self.y0, d))

    def region(self, d, ox, oy, sx, sy):
        bx, by = ceil_shift(self.x0, d), ceil_shift(self.y0, d)
        return ((bx + ox) << d, (by + oy) << d,
                min((bx + ox + sx) << d, self.xsiz), min((by + oy + sy) << d, self.ysiz))


def decode(path, d, rg, out_dir):
    shutil.rmtree(out_dir, ignore_errors=True)
    os.makedirs(out_dir)
    r = subprocess.run([OPJ, "-i", path, "-o", os.path.join(out_dir, "c.pgx"), "-r", str(d),
                        "-d", "%d,%d,%d,%d" % rg], capture_output=True)
    files = sorted(glob.glob(os.path.join(out_dir, "c*.pgx")))
    if r.returncode != 0 or not files:
        return None
    return {os.path.basename(f): open(f, "rb").read() for f in files}


# --------------------------------------------------------------- fetch

def fetch(url, out, csn=None, extra=()):
    """jpip-fetch url; returns (JPIP headers, raw body)."""
    raw = out + ".jpp"
    args = [FETCH, "-v", "--jpp", raw, "-o", out] + list(extra)
    if csn is not None:
        args += ["--codestream", str(csn)]
    r = subprocess.run(args + [url], capture_output=True, timeout=120)
    if r.returncode != 0:
        raise AssertionError("jpip-fetch %s: %s" % (url, r.stderr.decode(errors="replace")))
    headers = {}
    for line in r.stderr.decode().splitlines():
        if line.startswith("  JPIP-"):
            k, v = line.strip().split(": ", 1)
            headers[k.lower()] = v
    return headers, open(raw, "rb").read()


def url_of(h, name):
    return "http://127.0.0.1:%d/jpip/%s" % (h.port, urllib.parse.quote(name))


def frame_case(h, rec, k, what):
    """One window of frame k (0-based) through httpd: the rebuilt codestream
    decodes to the pixels of the frame's own codestream."""
    cs = rec["codestreams"][k]
    orig = os.path.join(TMP, "orig.j2c")
    with open(orig, "wb") as fh:
        fh.write(cs)
    g = Geo(cs)
    fw, fh_ = g.frame(0)
    if what == "full":
        d, ox, oy, sx, sy = 0, 0, 0, fw, fh_
    elif what == "half":
        d = 1
        ox, oy = 0, 0
        sx, sy = g.frame(1)
    else:
        d, ox, oy, sx, sy = 0, fw // 3 + 1, fh_ // 5 + 3, max(fw // 4, 1), max(fh_ // 3, 1)
    vw, vh = g.frame(d)
    fields = "type=jpp-stream&fsiz=%d,%d&roff=%d,%d&rsiz=%d,%d&stream=%d" % (
        vw, vh, ox, oy, sx, sy, k)
    out = os.path.join(TMP, "rebuilt.j2c")
    _, body = fetch(url_of(h, rec["name"]) + "?" + fields, out, csn=k)
    msgs, eor, trailing = jpp.parse(body)
    expect(eor is not None and trailing == 0, "the answer does not end with one EOR")
    other = [m for m in msgs if m.cls != 8 and m.csn != k]
    expect(not other, "data of another frame's codestream sent: %r" % other[:3])
    expect(any(m.cls == 6 and m.csn == k for m in msgs), "no main header of codestream %d" % k)
    rg = g.region(d, ox, oy, sx, sy)
    want = decode(orig, d, rg, os.path.join(TMP, "a"))
    if want is None:
        raise Skip("openjpeg cannot decode the frame itself at -r %d -d %s" % (d, rg))
    got = decode(out, d, rg, os.path.join(TMP, "b"))
    expect(got is not None, "the rebuilt codestream does not decode")
    expect(sorted(got) == sorted(want), "components %r, want %r" % (sorted(got), sorted(want)))
    for c in sorted(want):
        expect(got[c] == want[c], "component %s differs from the frame's own pixels" % c)


def boxes(data):
    out, pos = [], 0
    while pos + 8 <= len(data):
        lbox, tbox = struct.unpack(">I4s", data[pos:pos + 8])
        hl = 8
        if lbox == 1:
            lbox, hl = struct.unpack(">Q", data[pos + 8:pos + 16])[0], 16
        elif lbox == 0:
            lbox = len(data) - pos
        expect(lbox >= hl and pos + lbox <= len(data), "box %r overruns" % tbox)
        out.append((tbox, data[pos + hl:pos + lbox]))
        pos += lbox
    return out


def xml_attrs(xml):
    root = ET.fromstring(xml)
    expect(root.tag == NS + "NativeDicomModel", "XML root is %r" % root.tag)
    out = {}
    for a in root.iter(NS + "DicomAttribute"):
        vals = [v.text for v in sorted(a.findall(NS + "Value"), key=lambda v: int(v.get("number")))]
        out.setdefault(a.get("keyword"), vals)
    return out


def metadata_case(h, rec):
    """Metadata-bin 0: signature, ftyp, jp2h matching frame 1, the XML box
    with the viewer's attributes, one codestream placeholder per frame."""
    n = rec["frames"]
    raw = os.path.join(TMP, "m.jpp")
    r = subprocess.run([FETCH, "--jpp", raw, url_of(h, rec["name"]) +
                        "?type=jpp-stream&metareq=[xml_]!!"], capture_output=True, timeout=60)
    expect(r.returncode == 0, "jpip-fetch: %s" % r.stderr.decode(errors="replace"))
    b0 = meta_bin(open(raw, "rb").read(), 0)
    top = boxes(b0)
    kinds = [t for t, _ in top]
    expect(kinds[:4] == [b"jP  ", b"ftyp", b"jp2h", b"xml "], "bin 0 starts %r" % kinds[:5])
    phlds = [c for t, c in top if t == b"phld"]
    expect(len(phlds) == n and len(top) == 4 + n, "%d placeholders for %d frames" %
           (len(phlds), n))
    for i, c in enumerate(phlds):
        flags = struct.unpack(">I", c[:4])[0]
        csid = struct.unpack(">Q", c[-8:])[0]
        expect(flags == 4 and csid == i and c[16:20] == b"jp2c",
               "placeholder %d: flags %d, CSID %d, %r" % (i, flags, csid, c[16:20]))
    jp2h = dict(boxes(top[2][1]))
    hgt, wid, nc, bpc = struct.unpack(">IIHB", jp2h[b"ihdr"][:11])
    g = Geo(rec["codestreams"][0])
    expect((wid, hgt) == g.frame(0) and nc == rec["spp"], "ihdr %dx%d, %d components" %
           (wid, hgt, nc))
    want_bpc = (rec["bits"] - 1) | (0x80 if rec["signed"] else 0)
    expect(bpc == want_bpc, "ihdr BPC %#x, want %#x" % (bpc, want_bpc))
    cs = struct.unpack(">I", jp2h[b"colr"][3:7])[0]
    expect(cs == (17 if rec["spp"] == 1 else 16), "colr enumerated colour space %d" % cs)
    a = xml_attrs(top[3][1])
    w, hh = rec["size"]
    checks = {"Rows": [str(hh)], "Columns": [str(w)], "SamplesPerPixel": [str(rec["spp"])],
              "PhotometricInterpretation": [rec["pi"]], "BitsStored": [str(rec["bits"])],
              "PixelRepresentation": ["1" if rec["signed"] else "0"],
              "NumberOfFrames": [str(n)]}
    if rec.get("ts"):
        checks["TransferSyntaxUID"] = [rec["ts"]]
    if rec.get("spacing"):
        checks["PixelSpacing"] = list(rec["spacing"])
    for k, v in checks.items():
        expect(a.get(k) == v, "XML %s = %r, want %r" % (k, a.get(k), v))
    expect("PatientName" not in a and "PatientID" not in a, "patient attributes in the XML")


def _vbas(buf, pos):
    v = 0
    while True:
        b = buf[pos]
        pos += 1
        v = (v << 7) | (b & 0x7F)
        if not b & 0x80:
            return v, pos


def meta_bin(body, bid):
    """Metadata-bin bid reassembled from a JPP-stream (headers as jpp.py
    reads them; this also keeps the bodies). It must be complete."""
    msgs, _, _ = jpp.parse(body)  # validates the stream as a whole
    out, pos, cls, complete = bytearray(), 0, 0, False
    while body[pos] != 0:
        first = body[pos]
        bb, c, idv = (first >> 5) & 3, (first >> 4) & 1, first & 0x0F
        pos += 1
        if first & 0x80:
            while True:
                b = body[pos]
                pos += 1
                idv = (idv << 7) | (b & 0x7F)
                if not b & 0x80:
                    break
        if bb >= 2:
            cls, pos = _vbas(body, pos)
        if bb == 3:
            _, pos = _vbas(body, pos)
        off, pos = _vbas(body, pos)
        length, pos = _vbas(body, pos)
        if cls & 1:
            _, pos = _vbas(body, pos)
        if cls == 8 and idv == bid:
            expect(off <= len(out), "metadata-bin %d has a hole" % bid)
            out[off:off + length] = body[pos:pos + length]
            complete |= bool(c)
        pos += length
    expect(complete and msgs, "metadata-bin %d incomplete" % bid)
    return bytes(out)


def whole_file_case(h, rec):
    """Without --codestream: the rebuilt JP2/JPX has one jp2c per frame (all
    streams asked for at half resolution), each decoding like the frame;
    openjpeg reads a single-frame one as a JP2 file."""
    n = rec["frames"]
    g = Geo(rec["codestreams"][0])
    vw, vh = g.frame(1)
    out = os.path.join(TMP, "whole" + (".jp2" if n == 1 else ".jpx"))
    fetch(url_of(h, rec["name"]) + "?type=jpp-stream&fsiz=%d,%d&stream=0-%d" % (vw, vh, n - 1),
          out)
    top = boxes(open(out, "rb").read())
    jp2c = [c for t, c in top if t == b"jp2c"]
    expect(len(jp2c) == n, "%d jp2c boxes for %d frames" % (len(jp2c), n))
    for k, c in enumerate(jp2c):
        a, b = os.path.join(TMP, "o.j2c"), os.path.join(TMP, "r.j2c")
        open(a, "wb").write(rec["codestreams"][k])
        open(b, "wb").write(c)
        gk = Geo(rec["codestreams"][k])
        rg = gk.region(1, 0, 0, *gk.frame(1))
        want = decode(a, 1, rg, os.path.join(TMP, "a"))
        got = decode(b, 1, rg, os.path.join(TMP, "b"))
        expect(want is not None and got == want, "frame %d of the rebuilt file differs" % (k + 1))
    if n == 1 and rec["spp"] == 1:
        # the synthesised JP2 header is one openjpeg accepts
        want = decode(os.path.join(TMP, "o.j2c"), 1, rg, os.path.join(TMP, "a"))
        got = decode(out, 1, rg, os.path.join(TMP, "b"))
        expect(got == want, "openjpeg decodes the rebuilt JP2 file differently")


def context_case(h, rec):
    """context=jpxl<k> names frame k+1 as its compositing layer: the answer
    says so and carries that codestream only, decoding like the frame."""
    k = rec["frames"] - 1
    g = Geo(rec["codestreams"][k])
    fw, fh_ = g.frame(0)
    out = os.path.join(TMP, "ctx.j2c")
    hd, body = fetch(url_of(h, rec["name"]) + "?type=jpp-stream&fsiz=%d,%d&context=jpxl%%3C%d%%3E"
                     % (fw, fh_, k), out, csn=k)
    expect(hd.get("jpip-context") == "jpxl<%d>=%d" % (k, k), "JPIP-context %r" %
           hd.get("jpip-context"))
    msgs, _, _ = jpp.parse(body)
    expect({m.csn for m in msgs if m.cls != 8} == {k}, "codestreams %r sent" %
           sorted({m.csn for m in msgs if m.cls != 8}))
    orig = os.path.join(TMP, "orig.j2c")
    open(orig, "wb").write(rec["codestreams"][k])
    rg = g.region(0, 0, 0, fw, fh_)
    want = decode(orig, 0, rg, os.path.join(TMP, "a"))
    expect(want is not None and decode(out, 0, rg, os.path.join(TMP, "b")) == want,
           "the frame differs")


# ------------------------------------------------------------- hostile

def base_parts():
    """A small valid codestream and the image attributes around it."""
    spec = SPECS[0]
    cs = encode(dict(spec, name="hostile-base", size=(32, 24)), 0)
    els, cls, inst = dcmgen.image(24, 32, 1, MONO, 8, 8, False, 1)
    return cs, els, cls, inst


def write(name, data):
    path = os.path.join(TMP, "hostile", name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(data)
    return path


def hostile_files():
    cs, els, cls, inst = base_parts()
    el, item, sq = dcmgen.el, dcmgen.item, dcmgen.sq
    ts = dcmgen.TS_J2K_LOSSLESS

    def f(extra=None, ts_=ts, pixel=None, drop=(), nframes=None):
        e = dict(els)
        e.update(pixel if pixel is not None else dcmgen.pixel_data([cs], 1, "bot"))
        if nframes is not None:
            e[0x00280008] = el(0x00280008, "IS", nframes)
        for t in drop:
            e.pop(t, None)
        e.update(extra or {})
        return dcmgen.part10(ts_, e, cls, inst)

    out = []
    good = f()
    pix = dcmgen.pixel_data([cs], 1, "bot")[0x7FE00010]
    frag_pos = len(good) - len(pix)
    # an element whose length runs past the end of the file
    bad = bytearray(f({0x00091010: el(0x00091010, "LO", "x" * 10)}))
    at = bad.index(b"\x09\x00\x10\x10LO")
    bad[at + 6:at + 8] = struct.pack("<H", 60000)
    out.append(("len-past-end.dcm", bytes(bad[:at + 8 + 40]), 415, "runs past the end"))
    # sequences nested 40 deep
    inner = b""
    for _ in range(40):
        inner = sq(0x00081140, [item(inner, undefined=True)], undefined=True)
    out.append(("deep.dcm", f({0x00081140: inner}), 415, "nested more than 32"))
    # a sequence of undefined length that never ends
    never = struct.pack("<HH2sHI", 0x0008, 0x1140, b"SQ", 0, 0xFFFFFFFF) + item(
        el(0x00080100, "SH", "T"), undefined=True)[:-8]
    data = dcmgen.part10(ts, dict(list(els.items())[:3]), cls, inst) + never + never[:6]
    out.append(("never-ends.dcm", data, 415, "never ends"))
    # fragments without a sequence delimiter: the file ends
    out.append(("pixel-no-end.dcm", good[:-8], 415, "no sequence delimiter"))
    # offset tables pointing outside the Pixel Data
    two = dcmgen.pixel_data([cs, cs], 1, "bot")[0x7FE00010]
    bot_at = two.index(b"\xfe\xff\x00\xe0") + 12
    two = two[:bot_at] + struct.pack("<I", 0x7FFFFF00) + two[bot_at + 4:]
    out.append(("bot-outside.dcm", f(pixel={0x7FE00010: two}, nframes="2"), 415,
                "does not point at a fragment"))
    eot = dcmgen.pixel_data([cs, cs], 1, "eot")
    eot[0x7FE00001] = el(0x7FE00001, "OV", struct.pack("<QQ", 0, 1 << 40))
    out.append(("eot-outside.dcm", f(pixel=eot, nframes="2"), 415, "does not point at a fragment"))
    eot = dcmgen.pixel_data([cs, cs], 1, "eot")
    eot[0x7FE00002] = el(0x7FE00002, "OV", struct.pack("<QQ", len(cs), 1 << 50))
    out.append(("eot-lengths.dcm", f(pixel=eot, nframes="2"), 415, "fragments hold"))
    out.append(("zero-frames.dcm", f(nframes="0"), 415, "Number of Frames (0028,0008) is 0"))
    out.append(("billion-frames.dcm", f(nframes="1000000000"), 415, "only 1 fragments"))
    out.append(("billion-frames-bot.dcm",
                f(pixel={0x7FE00010: struct.pack("<HH2sHI", 0x7FE0, 0x10, b"OB", 0, 0xFFFFFFFF) +
                         struct.pack("<HHI", 0xFFFE, 0xE000, 4000000000) + b"\0" * 64},
                  nframes="1000000000"), 415, "runs past the end"))
    und = bytearray(good)
    und[frag_pos + 12 + 12 + 4:frag_pos + 12 + 12 + 8] = b"\xff\xff\xff\xff"
    out.append(("fragment-undefined.dcm", bytes(und), 415, "undefined length"))
    native = {0x7FE00010: el(0x7FE00010, "OB", b"\0" * (24 * 32))}
    out.append(("not-encapsulated.dcm", f(pixel=native), 415, "not encapsulated"))
    out.append(("no-pixel.dcm", f(pixel={}), 415, "has no Pixel Data"))
    out.append(("implicit.dcm", f(ts_=dcmgen.TS_IMPLICIT), 415,
                "1.2.840.10008.1.2 (Implicit VR Little Endian)"))
    out.append(("native.dcm", f(ts_=dcmgen.TS_EXPLICIT, pixel=native), 415,
                "(Explicit VR Little Endian): its pixel data is not JPEG 2000"))
    out.append(("jpeg.dcm", f(ts_="1.2.840.10008.1.2.4.50"), 415, "JPEG Baseline"))
    ref = {0x00287FE0: el(0x00287FE0, "UR", "http://elsewhere/jpip/x.dcm")}
    out.append(("jpip-ref.dcm", f(ref, ts_="1.2.840.10008.1.2.4.94", pixel={}), 415,
                "JPIP Referenced"))
    # an Implicit VR data set under an explicit transfer syntax
    impl = dcmgen.el_implicit(0x00080016, dcmgen.pad("UI", cls.encode()))
    data = dcmgen.part10(ts, {}, cls, inst) + impl + pix
    out.append(("implicit-under-explicit.dcm", data, 415, "no known VR"))
    garbage = bytes((i * 37 + 11) & 255 for i in range(300))
    out.append(("garbage-frame.dcm", f(pixel=dcmgen.pixel_data([garbage], 1, "bot")), 415,
                "not a JPEG 2000 codestream"))
    out.append(("second-frame-garbage.dcm", f(pixel=dcmgen.pixel_data([cs, garbage], 1, "bot"),
                                              nframes="2"), 415, "codestream 1"))
    out.append(("truncated-meta.dcm", good[:150], 415, "no Transfer Syntax UID"))
    out.append(("truncated-element.dcm", good[:frag_pos - 3], 415, "cut off"))
    return [(n, write(n, d), st, msg) for n, d, st, msg in out]


def hwm(h):
    """The largest peak resident size (kB) of the httpd children."""
    best = 0
    for pid in h.children():
        try:
            with open("/proc/%d/status" % pid) as fh:
                m = re.search(r"^VmHWM:\s+(\d+)", fh.read(), re.M)
        except OSError:
            continue
        if m:
            best = max(best, int(m.group(1)))
    return best


def hostile_case(h, name, status, msg):
    t0 = time.time()
    st, hd, body = h.get("/jpip/%s?type=jpp-stream&fsiz=64,64" % name, timeout=TIME_BOUND + 5)
    took = time.time() - t0
    text = body.decode(errors="replace")
    expect(took < TIME_BOUND, "the answer took %.1f s" % took)
    expect(st == status, "status %d, want %d: %s" % (st, status, text.strip()))
    expect(hd.get("content-type", "").startswith("text/plain"), "not a text answer")
    expect(msg in text, "the answer does not say %r: %s" % (msg, text.strip()))


# --------------------------------------------------------------- refer

def dcmdump(path, *args):
    r = subprocess.run(["dcmdump"] + list(args) + [path], capture_output=True)
    out = (r.stdout + r.stderr).decode(errors="replace")
    return r.returncode, out


def refer_case(h, rec, deflate=False):
    if shutil.which("dcmdump") is None:
        raise Skip("dcmdump not found (dcmtk)")
    out = os.path.join(TMP, "ref-" + rec["name"])
    url = url_of(h, rec["name"])
    args = [REFER] + (["--deflate"] if deflate else []) + [rec["path"], url, out]
    sh(args)
    ht = (rec.get("ts") or "").startswith("1.2.840.10008.1.2.4.20")
    want_ts = {(False, False): "1.2.840.10008.1.2.4.94", (False, True): "1.2.840.10008.1.2.4.95",
               (True, False): "1.2.840.10008.1.2.4.204",
               (True, True): "1.2.840.10008.1.2.4.205"}[(ht, deflate)]
    data = open(out, "rb").read()
    if ht and deflate:
        # dcmtk 3.6.7 does not know the HTJ2K Deflate syntax: the data set,
        # inflated, must be the one written without --deflate
        plain = os.path.join(TMP, "ref-plain-" + rec["name"])
        sh([REFER, rec["path"], url, plain])
        pdata = open(plain, "rb").read()
        mlen = 132 + 12 + struct.unpack("<I", data[140:144])[0]
        plen = 132 + 12 + struct.unpack("<I", pdata[140:144])[0]
        inflated = zlib.decompressobj(-15).decompress(data[mlen:])
        expect(inflated == pdata[plen:], "the inflated data set differs from the plain one")
        expect(data[:mlen].replace(b"1.2.840.10008.1.2.4.205", b"1.2.840.10008.1.2.4.204") ==
               pdata[:plen], "the meta groups differ beyond the transfer syntax")
        out = plain
    rc, dump = dcmdump(out)
    expect(rc == 0, "dcmdump failed: %s" % dump[-300:])
    complaints = set(ln for ln in dcmdump(rec["path"])[1].splitlines() if re.match(r"^[EW]: ", ln))
    bad = [ln for ln in dump.splitlines() if re.match(r"^[EW]: ", ln) and ln not in complaints]
    expect(not bad, "dcmdump complains: %s" % bad[:3])
    _, tsl = dcmdump(out, "+P", "0002,0010")
    if ht and deflate:
        want_ts = "1.2.840.10008.1.2.4.204"
    _, px = dcmdump(out, "+P", "7fe0,0010")
    px = [ln for ln in px.splitlines() if ln.startswith("(")]
    expect(not px, "Pixel Data still present: %r" % px[:2])
    _, ul = dcmdump(out, "+P", "0028,7fe0")
    m = re.search(r"UR \[([^\]]*)\]", ul)
    expect(m is not None, "no Pixel Data Provider URL: %r" % ul)
    got_url = m.group(1)
    expect(got_url == url + "?", "Pixel Data Provider URL %r, want %r" % (got_url, url + "?"))
    # the data set is the same otherwise
    a = [ln for ln in dcmdump(rec["path"])[1].splitlines()
         if re.match(r"^\((?!0002|7fe0|fffe)", ln)]
    b = [ln for ln in dump.splitlines() if re.match(r"^\((?!0002|7fe0|fffe|0028,7fe0)", ln)]
    expect(a == b, "the data set differs: %r" % sorted(set(a) ^ set(b))[:4])
    if not ht and not deflate and shutil.which("dciodvfy"):
        def errors(path):
            r = subprocess.run(["dciodvfy", path], capture_output=True)
            return [ln for ln in (r.stdout + r.stderr).decode(errors="replace").splitlines()
                    if ln.startswith("Error")]
        new = set(errors(out)) - set(errors(rec["path"]))
        expect(not new, "dciodvfy: %s" % sorted(new)[:3])
    # fetch the last frame with the URL read back from the file
    k = rec["frames"] - 1
    cs = rec["codestreams"][k]
    g = Geo(cs)
    fw, fh_ = g.frame(0)
    o = os.path.join(TMP, "ref.j2c")
    fetch(got_url + "&type=jpp-stream&fsiz=%d,%d&stream=%d" % (fw, fh_, k), o, csn=k)
    orig = os.path.join(TMP, "orig.j2c")
    open(orig, "wb").write(cs)
    rg = g.region(0, 0, 0, fw, fh_)
    want = decode(orig, 0, rg, os.path.join(TMP, "a"))
    expect(want is not None and decode(o, 0, rg, os.path.join(TMP, "b")) == want,
           "the frame fetched with the URL from the file differs")


def refer_refuses(rec):
    r = subprocess.run([REFER, rec, "http://x/jpip/a.dcm", os.path.join(TMP, "no.dcm")],
                       capture_output=True)
    expect(r.returncode == 1 and b"not JPEG 2000" in r.stderr,
           "exit %d: %r" % (r.returncode, r.stderr[:200]))
    expect(not os.path.exists(os.path.join(TMP, "no.dcm")), "an output was left behind")


# ------------------------------------------------------------ IIIF frames

IIIF_CONF = """
AllowEncodedSlashes NoDecode
<Location "/iiif">
    SetHandler jpip-iiif
    JPIPRoot "{archive}"
    Require all granted
</Location>
"""


def frame_file(rec, k):
    """Frame k (0-based) of rec as a codestream file of its own, cut out by
    the test's DICOM writer (dcmgen), not by the server."""
    path = os.path.join(TMP, "frames", "%s-frame%d.j2k" % (rec["name"].replace(".", "-"), k + 1))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(rec["codestreams"][k])
    return path


def iiif_frame_case(h, rec, k):
    """IIIF identifiers `file.dcm;frame=N`: info.json gives frame N's size,
    and its renders (full size, and a region at half size) are the same
    PNG as those of frame N's codestream served as a file of its own."""
    name = urllib.parse.quote(rec["name"], safe="")
    own = urllib.parse.quote(os.path.basename(frame_file(rec, k)), safe="")
    g = Geo(rec["codestreams"][k])
    w, hh = g.frame(0)
    st, _, body = h.get("/iiif/%s;frame=%d/info.json" % (name, k + 1))
    expect(st == 200, "info.json of frame %d: status %d %r" % (k + 1, st, body[:200]))
    info = __import__("json").loads(body)
    expect((info["width"], info["height"]) == (w, hh),
           "info.json says %dx%d, frame %d is %dx%d" % (info["width"], info["height"], k + 1, w, hh))
    expect(info["id"].endswith("/iiif/%s%%3Bframe%%3D%d" % (name, k + 1)) or
           info["id"].endswith("/iiif/%s;frame=%d" % (name, k + 1)), "id %r" % info["id"])
    rx, ry, rw, rh = w // 4, hh // 3, max(w // 2, 1), max(hh // 3, 1)
    for spec in ("full/max/0/default.png",
                 "%d,%d,%d,%d/%d,/0/default.png" % (rx, ry, rw, rh, max(rw // 2, 1))):
        st, _, got = h.get("/iiif/%s;frame=%d/%s" % (name, k + 1, spec))
        expect(st == 200, "frame %d %s: status %d %r" % (k + 1, spec, st, got[:200]))
        st, _, want = h.get("/iiif/%s/%s" % (own, spec))
        expect(st == 200, "frame %d's own codestream %s: status %d" % (k + 1, spec, st))
        expect(got == want, "frame %d %s differs from its own codestream's render" % (k + 1, spec))


def iiif_frame_refusals(h, rec):
    """Frame numbers outside the file, 0, and junk are refused."""
    name = urllib.parse.quote(rec["name"], safe="")
    for frame, want in (("0", 400), ("01", 400), ("x", 400), ("", 400),
                        (str(rec["frames"] + 1), 404), ("99999999999", 400)):
        st, _, body = h.get("/iiif/%s;frame=%s/info.json" % (name, frame))
        expect(st == want, ";frame=%s: status %d, want %d (%r)" % (frame, st, want, body[:120]))


def main():
    run = Runner()
    recs = []
    for n, spec in enumerate(SPECS):
        try:
            recs.append(make_generated(spec, n + 1))
        except Skip as e:
            run.case("make %s" % spec["name"], lambda e=e: (_ for _ in ()).throw(e))
        except Exception as e:  # noqa: BLE001
            run.case("make %s" % spec["name"], lambda e=e: expect(False, str(e)))
    try:
        recs += make_gdcm()
    except Exception as e:  # noqa: BLE001
        run.case("make GDCM files", lambda e=e: expect(False, str(e)))
    for rec in recs:
        # the writer's own reading agrees with what it wrote
        if rec.get("ts"):
            run.case("%s: dcmgen reads back its frames" % rec["name"],
                     lambda rec=rec: expect(dcmgen.frames_of(rec["path"]) == rec["codestreams"],
                                            "frames differ"))
    hostile = hostile_files()
    h = Httpd(os.environ["HTTPD"], os.environ["APXS"], os.environ["JPIP_MODULE"],
              os.path.join(os.environ["JPIP_SRCDIR"], "..", "..", "httpd-conf"),
              extra_files=[r["path"] for r in recs] + [p for _, p, _, _ in hostile] +
              [frame_file(r, k) for r in recs if r["frames"] > 1 for k in range(r["frames"])],
              extra_conf=IIIF_CONF, servers=2)
    try:
        h.start()
    except Exception as e:  # noqa: BLE001
        print("FAIL - start httpd: %s" % e)
        print("0 passed, 1 failed")
        return 1
    try:
        for rec in recs:
            for k in range(rec["frames"]):
                for what in ("full", "half", "region"):
                    run.case("%s frame %d: %s" % (rec["name"], k + 1, what), frame_case, h, rec, k,
                             what)
            run.case("%s: metadata-bin 0" % rec["name"], metadata_case, h, rec)
            run.case("%s: whole file rebuilt" % rec["name"], whole_file_case, h, rec)
            if rec["frames"] > 1:
                run.case("%s: context=jpxl<%d>" % (rec["name"], rec["frames"] - 1),
                         context_case, h, rec)
                for k in range(rec["frames"]):
                    run.case("%s;frame=%d: IIIF info.json and renders" % (rec["name"], k + 1),
                             iiif_frame_case, h, rec, k)
                run.case("%s: IIIF frame numbers refused" % rec["name"], iiif_frame_refusals,
                         h, rec)
        before = hwm(h)
        for name, _, status, msg in hostile:
            run.case("hostile %s: %d" % (name, status), hostile_case, h, name, status, msg)
        after = hwm(h)
        run.case("hostile files: workers' peak memory grew by %d kB" % (after - before),
                 lambda: expect(after - before < 65536, "peak resident size grew by %d kB" %
                                (after - before)))
        byname = {r["name"]: r for r in recs}
        for name, deflate in (("mono8.dcm", False), ("mono16s-bot.dcm", False),
                              ("rgb-rct-soc.dcm", False), ("mono12-eot.dcm", True),
                              ("ht-rpcl-rgb.dcm", False), ("ht-lossy.dcm", True),
                              ("gdcm-mono16s.dcm", False)):
            if name in byname:
                run.case("jpip-dicom-refer %s%s" % (name, " --deflate" if deflate else ""),
                         refer_case, h, byname[name], deflate)
        run.case("jpip-dicom-refer refuses a native-pixel file", refer_refuses,
                 os.path.join(TMP, "hostile", "native.dcm"))
        run.case("the good file is served after the hostile ones", frame_case, h, recs[0], 0,
                 "full")
    finally:
        h.stop()
    run.case("error log has no [error]/[crit]/exit signal lines",
             lambda: expect(not h.bad_log_lines(), "\n  ".join(h.bad_log_lines()[:10])))
    h.cleanup()
    shutil.rmtree(TMP, ignore_errors=True)
    return run.summary()


if __name__ == "__main__":
    sys.exit(main())
