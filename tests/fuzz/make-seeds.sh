#!/bin/sh
# mod_jpip: (re)generate the fuzz seed corpora under tests/fuzz/corpus/.
#
#   tests/fuzz/make-seeds.sh [CORPUS_DIR]
#
# Needs opj_compress (Debian libopenjp2-tools) and python3. Every input is
# synthesised here: tiny images (17x13 gray, 32x32 RGB, 40x24 gray with an
# image offset) encoded with the coding options the indexer and the
# rebuild must handle (resolution levels, layers, precincts, SOP/EPH,
# tiles, tile-parts, the five progression orders, POC, PLT, TLM,
# code-block modes, irreversible transform, no MCT), wrapped as raw
# codestreams, JP2 (with and without opj's JPIP index boxes) and
# hand-built JPX files (fragment table, codestream and layer headers,
# association/XML/UUID boxes, an XLBox, a large XML box that goes behind
# a placeholder). Regression inputs (crash-*) in the corpora are kept: this
# script never deletes anything but the files it writes itself.
#
# Input formats per target (see each fuzz_<target>.c):
#   request  the request string (query string or POST body)
#   model    1 byte of option bits, then "<model value>\n<need value>"
#   box      1 byte n, n bytes of metareq value, then the file
#   index    the file
#   rebuild  the file
#   client   a JPP/JPT stream (written by python below)
#   dicom    a file (DICOM Part 10 files written by tests/tools/dcmgen.py
#            around the codestreams above; two of them also seed index and
#            box)
set -e

here=$(cd "$(dirname "$0")" && pwd)
corpus=${1:-$here/corpus}
OPJ_COMPRESS=${OPJ_COMPRESS:-opj_compress}
PYTHON=${PYTHON:-python3}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$corpus/request" "$corpus/model" "$corpus/box" "$corpus/index" "$corpus/rebuild" \
    "$corpus/client" "$corpus/dicom"

# ---- images: deterministic gradients with a little texture
$PYTHON - "$tmp" <<'PY'
import sys
d = sys.argv[1]
def pgm(name, w, h):
    px = bytes(((x * 13 + y * 7) ^ (x * y)) & 0xFF for y in range(h) for x in range(w))
    open(f"{d}/{name}", "wb").write(b"P5\n%d %d\n255\n" % (w, h) + px)
def ppm(name, w, h):
    px = bytearray()
    for y in range(h):
        for x in range(w):
            px += bytes([(x * 8) & 0xFF, (y * 8) & 0xFF, ((x ^ y) * 16) & 0xFF])
    open(f"{d}/{name}", "wb").write(b"P6\n%d %d\n255\n" % (w, h) + bytes(px))
pgm("g17.pgm", 17, 13)
pgm("g40.pgm", 40, 24)
ppm("c32.ppm", 32, 32)
PY

enc() { # enc NAME INPUT OPTIONS...: writes $tmp/NAME (.j2k or .jp2 by suffix)
    name=$1; in=$2; shift 2
    "$OPJ_COMPRESS" -i "$tmp/$in" -o "$tmp/$name" "$@" >"$tmp/opj.log" 2>&1 ||
        { echo "make-seeds: opj_compress $* failed for $name" >&2; cat "$tmp/opj.log" >&2; exit 1; }
}

enc g17-n2.j2k g17.pgm -n 2
enc g17-layers.j2k g17.pgm -n 3 -r 20,5,1
enc g17-irrev.j2k g17.pgm -n 2 -I -r 8
enc g40-offset-tiles.j2k g40.pgm -n 2 -d 3,5 -t 16,8 -T 1,2 -p RLCP
enc c32-prec-sop-eph.j2k c32.ppm -n 3 -c [8,8],[4,4] -SOP -EPH -r 20,4
enc c32-tiles-rpcl.j2k c32.ppm -n 2 -t 16,16 -p RPCL -r 6,1
enc c32-pcrl-plt.j2k c32.ppm -n 3 -p PCRL -PLT -c [8,8] -r 9,3,1
enc c32-cprl-cblk.j2k c32.ppm -n 3 -p CPRL -b 4,4 -c [16,16],[8,8]
enc c32-tp-tlm.j2k c32.ppm -n 2 -t 16,16 -TP R -TLM -p RLCP -r 5,1
enc c32-modes.j2k c32.ppm -n 2 -M 63 -r 4,1
enc c32-nomct.j2k c32.ppm -n 2 -mct 0 -SOP
enc c32-poc.j2k c32.ppm -n 3 -r 6,2,1 -POC T0=0,0,2,2,3,LRCP/T0=2,0,3,3,3,CPRL
enc g17.jp2 g17.pgm -n 2 -r 4,1
enc c32-prec.jp2 c32.ppm -n 3 -c [8,8],[4,4] -SOP -EPH
enc c32-jpip.jp2 c32.ppm -n 2 -t 16,16 -jpip
enc c32-comment.jp2 c32.ppm -n 2 -C mod_jpip-fuzz-seed -PLT -TLM

# ---- JPX and odd JP2 box structures, built by hand
$PYTHON - "$tmp" <<'PY'
import struct, sys
d = sys.argv[1]
def box(t, payload, xl=False):
    if xl:
        return struct.pack(">I4sQ", 1, t, 16 + len(payload)) + payload
    return struct.pack(">I4s", 8 + len(payload), t) + payload
cs = open(f"{d}/g17-n2.j2k", "rb").read()
cs2 = open(f"{d}/c32-tiles-rpcl.j2k", "rb").read()
sig = box(b"jP  ", b"\r\n\x87\n")
def ftyp(brand, compat):
    return box(b"ftyp", brand + struct.pack(">I", 0) + b"".join(compat))
ihdr1 = box(b"ihdr", struct.pack(">IIHBBBB", 13, 17, 1, 7, 7, 0, 0))
colr1 = box(b"colr", bytes([1, 0, 0]) + struct.pack(">I", 17))
ihdr3 = box(b"ihdr", struct.pack(">IIHBBBB", 32, 32, 3, 7, 7, 0, 0))
colr3 = box(b"colr", bytes([1, 0, 0]) + struct.pack(">I", 16))
jp2h1 = box(b"jp2h", ihdr1 + colr1)
rreq = box(b"rreq", bytes([1, 0xFF, 0, 1, 0, 5, 0, 0x80, 0]))
xml = box(b"xml ", b"<?xml version='1.0'?><a>fuzz</a>")
uuid = box(b"uuid", bytes(range(16)) + b"payload")
asoc = box(b"asoc", box(b"lbl ", b"label") + xml)
bigxml = box(b"xml ", b"<x>" + b"y" * 5000 + b"</x>")

# JPX with two codestreams: one in a jp2c box, one through a fragment
# table pointing at two fragments (inside an 'mdat'-like free box).
head = sig + ftyp(b"jpx ", [b"jpx ", b"jp2 ", b"jpxb"]) + rreq + jp2h1
jpch = box(b"jpch", ihdr3 + colr3)
jplh0 = box(b"jplh", box(b"creg", struct.pack(">HH", 1, 1) + struct.pack(">HBBBB", 0, 1, 1, 0, 0)))
jplh1 = box(b"jplh", box(b"creg", struct.pack(">HH", 1, 1) + struct.pack(">HBBBB", 1, 1, 1, 0, 0)))
jp2c = box(b"jp2c", cs)
pre = head + jplh0 + jplh1 + jpch + asoc + uuid + jp2c
# fragments live in a 'free' box placed after the ftbl; compute offsets
split = len(cs2) // 2
def build(ftbl_off_base):
    f1 = ftbl_off_base
    f2 = ftbl_off_base + split
    flst = box(b"flst", struct.pack(">H", 2) +
               struct.pack(">QIH", f1, split, 0) + struct.pack(">QIH", f2, len(cs2) - split, 0))
    return box(b"ftbl", flst)
ftbl = build(0)
free_hdr = 8
base = len(pre) + len(ftbl) + free_hdr
ftbl = build(base)
jpx = pre + ftbl + box(b"free", cs2)
open(f"{d}/two-cs.jpx", "wb").write(jpx)

# JP2 with an XLBox codestream box, a big XML box and a nested asoc
jp2 = sig + ftyp(b"jp2 ", [b"jp2 "]) + jp2h1 + bigxml + box(b"asoc", asoc) + box(b"jp2c", cs, xl=True)
open(f"{d}/xl-bigxml.jp2", "wb").write(jp2)

# JP2 whose last box has LBox=0 (runs to the end of the file)
jp2 = sig + ftyp(b"jp2 ", [b"jp2 "]) + jp2h1 + uuid + struct.pack(">I4s", 0, b"jp2c") + cs
open(f"{d}/lbox0.jp2", "wb").write(jp2)

# JPX without codestream boxes (metadata only)
open(f"{d}/nocs.jpx", "wb").write(sig + ftyp(b"jpx ", [b"jpx "]) + rreq + xml + asoc)

# a truncated codestream and a truncated JP2
open(f"{d}/trunc.j2k", "wb").write(cs2[: len(cs2) * 2 // 3])
open(f"{d}/trunc.jp2", "wb").write(jp2[: len(jp2) - 40])

# what openjpeg decodes although it bends the rules (docs/protocol-notes.md)
def tparts(c):
    pos = 2
    while struct.unpack(">H", c[pos:pos + 2])[0] != 0xFF90:
        pos += 2 + struct.unpack(">H", c[pos + 2:pos + 4])[0]
    head, out = c[:pos], []
    while c[pos:pos + 2] == b"\xff\x90":
        psot = struct.unpack(">I", c[pos + 6:pos + 10])[0]
        out.append(bytearray(c[pos:pos + psot]))
        pos += psot
    return head, out
def joined(head, parts, eoc=True):
    return head + b"".join(parts) + (b"\xff\xd9" if eoc else b"")
head, tps = tparts(cs2)
open(f"{d}/missing-tile.j2k", "wb").write(joined(head, tps[:1] + tps[2:]))
for t in tps:
    t[11] = 0
open(f"{d}/tnsot0-noeoc.j2k", "wb").write(joined(head, tps, eoc=False))
head, tps = tparts(open(f"{d}/c32-tp-tlm.j2k", "rb").read())
n = tps[0][11]
for t in tps:
    t[11] = n - 1
open(f"{d}/tnsot-one-short.j2k", "wb").write(joined(head, tps))
sep = open(f"{d}/c32-prec-sop-eph.j2k", "rb").read()
open(f"{d}/cut-last-packet-eph.j2k", "wb").write(sep[:-6])
open(f"{d}/cut-in-tile-header.j2k", "wb").write(cs2[:len(head) + 13])
jp2 = sig + ftyp(b"jp2 ", [b"jp2 "]) + jp2h1 + struct.pack(">I4s", 8 + len(cs) + 999, b"jp2c") + cs
open(f"{d}/jp2c-past-eof.jp2", "wb").write(jp2 + xml[:7])
jp2 = sig + ftyp(b"jp2 ", [b"jp2 "]) + jp2h1 + box(b"jp2c", cs)
open(f"{d}/xml-past-eof.jp2", "wb").write(jp2 + struct.pack(">I4s", 500, b"xml ") + b"<a>")
PY

cp "$tmp"/*.j2k "$tmp"/*.jp2 "$tmp"/*.jpx "$corpus/index/"
cp "$tmp"/*.j2k "$tmp"/*.jp2 "$tmp"/*.jpx "$corpus/rebuild/"

# ---- box walker: 1 length byte, a metareq value, then a file
$PYTHON - "$tmp" "$corpus/box" <<'PY'
import sys
d, out = sys.argv[1], sys.argv[2]
cases = [
    ("two-cs.jpx", "[*]!!"),
    ("two-cs.jpx", "[jpch/g;jplh:0]R0D1,[asoc:r]"),
    ("two-cs.jpx", "[xml_:16!;uuid/w]"),
    ("xl-bigxml.jp2", "[xml_]"),
    ("xl-bigxml.jp2", "[asoc:r/sa]R2D0!!"),
    ("lbox0.jp2", "[jp2h/a;\\152p2c]"),
    ("nocs.jpx", "[*:4]"),
    ("g17.jp2", "[ihdr;colr:0]"),
    ("c32-jpip.jp2", "[cidx:r]R0D2"),
    ("c32-jpip.jp2", "[*]"),
    ("c32-comment.jp2", "[jp2h]!!"),
    ("c32-prec.jp2", ""),
    ("g17-n2.j2k", "[*]!!"),
    ("trunc.jp2", "[xml_]"),
    ("jp2c-past-eof.jp2", "[*]"),
    ("xml-past-eof.jp2", "[xml_]!!"),
]
for i, (f, mq) in enumerate(cases):
    m = mq.encode()
    data = bytes([len(m)]) + m + open(f"{d}/{f}", "rb").read()
    open(f"{out}/seed-{i:02d}-{f.replace('.', '-')}", "wb").write(data)
PY

# ---- requests: the protocol notes' examples and variations on each field
$PYTHON - "$corpus/request" <<'PY'
import sys
out = sys.argv[1]
reqs = [
    "type=jpp-stream&tid=0&cnew=http&len=2000",
    "type=jpp-stream&tid=0&cnew=http-tcp,http&stream=0&len=1000",
    "cid=JPH_7C41D0A9E2B35F10&fsiz=1000,1000&roff=0,0&rsiz=1000,1000&layers=3&len=200000",
    "cid=JPH_7C41D0A9E2B35F10&stream=0&metareq=%5B*%5D!!&len=2000000",
    "cid=JPH_7C41D0A9E2B35F10&cclose=JPH_7C41D0A9E2B35F10&len=0",
    "type=jpp-stream&tid=3f9a1c02-5e11&fsiz=1024,768&roff=256,128&rsiz=512,512"
    "&model=M0,Hm,H*,P0,P1,P2,P3,P4:800&len=150000",
    "handled&tid=0",
    "target=images%2Fsun.jp2&fsiz=512,512,closest&comps=0-2,5&quality=50",
    "target=a.jpx&subtarget=0-99&fsiz=64,64,round-up&context=jpxl%3C0-2:1%3E&type=jpt-stream",
    "cid=X&model=%5B0%5D,Hm,H0:17,%5B1-3%5D,Hm&need=P0-9&tpmodel=0.1&mset=0-3,7",
    "fsiz=100,100&roff=10,10&rsiz=50,50&align=yes&wait=no&cap=config=32&pref=fvc,mbw:100M/r",
    "fsiz=1,1&stream=0-:2&layers=0&srate=1.5&drate=2&roi=dynamic&len=0",
    "target=x&type=jpp-stream;ptype=ext,jpt-stream&qid=17&cclose=*",
    "metareq=%5Bxml_:16!;uuid/w%5DR0D1,%5Basoc:r%5D&fsiz=10,10",
    "model=t0c1r2:L3,-P37&need=Hm&tpneed=0.1",
    "upload=jpp-stream&tid=0",
    "target=%zz&fsiz=1",
    "fsiz=4294967295,4294967295&roff=4294967295,0&rsiz=1,4294967295&len=18446744073709551615",
]
for i, r in enumerate(reqs):
    open(f"{out}/seed-{i:02d}", "w").write(r)
PY

# ---- model / need values (protocol notes E.3, E.4)
$PYTHON - "$corpus/model" <<'PY'
import sys
out = sys.argv[1]
cases = [
    (0, "M0,Hm,H*,P0,P1,P2,P3,P4:800", None),
    (1, "Hm,H*,M0,P0,P1:1024,P5:L2", None),
    (2, "[0],Hm,H0:17,[1-3],Hm", None),
    (0, "-P37", None),
    (0, "t0c1r2:L3", None),
    (16, "Hm,-t*c0-1r1p0-:L1,T3,-T3:10", None),
    (4, "P0-P9", None),
    (8, "[*],P*,-P5:L2,M*", None),
    (0, "Hm", "P0,P3,H0,t1r0-2"),
    (1, "", "Hm,[2-],M1,T0:L1"),
    (0, "[1-3;5],P1,[2-],H2:0", "[0;2],c2"),
    (0, "r0-1p1t3c0:L65535,P18446744073709551615:18446744073709551615", None),
]
for i, (flags, model, need) in enumerate(cases):
    data = bytes([flags]) + model.encode()
    if need is not None:
        data += b"\n" + need.encode()
    open(f"{out}/seed-{i:02d}", "wb").write(data)
PY

# ---- client: JPP and JPT streams (VBAS message headers, EOR)
$PYTHON - "$tmp" "$corpus/client" <<'PY'
import sys
d, out = sys.argv[1], sys.argv[2]
def vbas(v, minlen=1):
    b = [v & 0x7F]
    v >>= 7
    while v or len(b) < minlen:
        b.append(0x80 | (v & 0x7F))
        v >>= 7
    return bytes(reversed(b))
def msg(binid, off, body, cls=None, csn=None, complete=False, aux=None, minlen=1):
    bb = 1 if cls is None and csn is None else 2 if csn is None else 3
    # first byte: 0 bb c iiii, then the rest of the bin id in VBAS bytes
    first_ext = binid >> 4
    c = 0x10 if complete else 0
    head_low = (bb << 5) | c | (binid & 0x0F)
    if first_ext:
        ext = vbas(first_ext)
        hdr = bytes([0x80 | head_low]) + ext
    else:
        hdr = bytes([head_low])
    if cls is not None:
        hdr += vbas(cls)
    if csn is not None:
        hdr += vbas(csn)
    hdr += vbas(off, minlen) + vbas(len(body))
    if aux is not None:
        hdr += vbas(aux)
    return hdr + body
mainhdr = open(f"{d}/g17-n2.j2k", "rb").read()[:60]
eor = bytes([0, 2, 0])
streams = {
    "main-and-eor": msg(0, 0, mainhdr, cls=6, csn=0, complete=True) + eor,
    "meta-precincts": msg(0, 0, b"", cls=8, csn=0, complete=True) + msg(0, 0, mainhdr, cls=6, csn=0, complete=True)
        + msg(0, 0, b"\x80\x10\x20", cls=0, csn=0) + msg(1, 0, b"\xc0\x00", complete=True) + msg(0, 3, b"\x11", complete=True) + eor,
    "tiles-jpt": msg(0, 0, mainhdr, cls=6, csn=0, complete=True) + msg(0, 0, b"\xff\x90" + bytes(10), cls=4, csn=0)
        + msg(0, 12, b"\x00" * 5, complete=True) + msg(1, 0, b"", cls=2, complete=True) + bytes([0, 1, 0]),
    "ext-class-aux": msg(5, 0, b"abc", cls=1, csn=2, aux=7) + msg(300, 10, b"xyz", cls=5, csn=0, aux=1) + eor,
    "overlap-order": msg(9, 4, b"4567", cls=0, csn=0) + msg(9, 0, b"01234", complete=False) + msg(9, 8, b"89", complete=True) + eor,
    "nonminimal-vbas": msg(2, 0, b"q", cls=8, csn=0, minlen=4) + msg(70000, 1, b"r", cls=8, csn=0, complete=True) + eor,
    "multi-cs": msg(0, 0, mainhdr, cls=6, csn=3, complete=True) + msg(0, 0, mainhdr, cls=6, csn=1, complete=True) + eor + msg(0, 0, b"x", cls=8, csn=0) + eor,
    "eor-body": bytes([0, 1, 4]) + b"why!",
    "split-message": msg(7, 0, b"z" * 300, cls=0, csn=0)[:150],
}
for name, data in streams.items():
    open(f"{out}/seed-{name}", "wb").write(data)
PY

# ---- DICOM: frames split into fragments, every offset table, nested and
# private elements, HTJ2K, and a few broken structures
$PYTHON - "$tmp" "$corpus" "$here/../tools" <<'PY'
import struct, sys
d, out = sys.argv[1], sys.argv[2]
sys.path.insert(0, sys.argv[3])
import dcmgen as g
a = open(f"{d}/g17-n2.j2k", "rb").read()
b = open(f"{d}/g17-layers.j2k", "rb").read()
c = open(f"{d}/c32-nomct.j2k", "rb").read()
def dcm(frames, parts, table, ts=g.TS_J2K_LOSSLESS, spp=1, pi="MONOCHROME2", rows=13, cols=17,
        extra=None, nframes=None):
    els, cls, inst = g.image(rows, cols, spp, pi, 8, 8, False, len(frames))
    if nframes is not None:
        els[0x00280008] = g.el(0x00280008, "IS", nframes)
    els.update(extra or {})
    els.update(g.pixel_data(frames, parts, table))
    return g.part10(ts, els, cls, inst)
seeds = {
    "one-frame": dcm([a], 1, "none"),
    "bot-split": dcm([a, b, a], [2, 3, 1], "bot"),
    "eot": dcm([b, a], 2, "eot"),
    "eot-nolengths": dcm([a, b], [1, 2], "eot-nolengths"),
    "soc-scan": dcm([a, b, b], 2, "none"),
    "rgb-clutter": dcm([c], 3, "bot", spp=3, pi="RGB", rows=32, cols=32, extra=g.clutter()),
    "p2-lossy": dcm([a, a], 1, "none", ts=g.TS_J2K_P2),
    "htj2k-ts": dcm([a], 2, "bot", ts=g.TS_HTJ2K),
    "implicit": dcm([a], 1, "bot", ts=g.TS_IMPLICIT),
    "zero-frames": dcm([a], 1, "bot", nframes="0"),
    "many-frames": dcm([a, a], 1, "none", nframes="1000000000"),
    "no-pixel": g.part10(g.TS_J2K_LOSSLESS, g.image(13, 17, 1, "MONOCHROME2", 8, 8, False, 1)[0],
                         "1.2", "1.2"),
}
for name, data in seeds.items():
    open(f"{out}/dicom/seed-{name}", "wb").write(data)
open(f"{out}/index/seed-dicom-bot-split", "wb").write(seeds["bot-split"])
open(f"{out}/box/seed-dicom-eot", "wb").write(bytes([6]) + b"[xml ]" + seeds["eot"])
PY

echo "make-seeds: corpora in $corpus:"
for t in request model box index rebuild client dicom; do
    echo "  $t: $(ls "$corpus/$t" | wc -l) files, $(du -sk "$corpus/$t" | cut -f1) KiB"
done
