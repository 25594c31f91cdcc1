"""Independent JPEG 2000 geometry for the tests: the codestream's own
headers (SIZ, COD, COC, tile-part COD/COC; T.800 Annex A), the extents of
tiles, tile-components, resolutions, subbands and precincts (T.800 B.2-B.6),
and, for a view-window, which precinct data-bins its region needs and
which lie beyond the synthesis filters' reach.

Nothing here comes from mod_jpip: no index, no jpip-inspect. The oracle
(Oracle.bounds) gives two sets of precinct in-class ids per tile-component
(T.808 A.3.2.1: I = t + (c + s * Csiz) * Nt):

- need: the precincts holding a coefficient that the inverse wavelet
  transform reads to reconstruct a sample of the region. Found level by
  level from the lifting steps (T.800 F.3.8): output sample x of the 5/3
  synthesis reads the interleaved coefficients x-1..x+1 (x even) or
  x-2..x+2 (x odd); of the 9/7, x-3..x+3 or x-4..x+4. Even positions are
  low-pass (the next lower resolution), odd ones high-pass; the periodic
  symmetric extension at tile-component edges only reflects positions onto
  ones the window already reads, so the ranges are clipped to the extent.
  A client that misses one of these cannot decode the region exactly.
- reach: a loose outer bound, twice the true reach: at each level the
  region's projection on the coarser resolution, halved outwards and grown
  on each side by the half-length of the longer synthesis filter (2 for
  5/3, 4 for 9/7) counted in the coarser resolution's samples; the same
  span for every subband of the level. A precinct outside it has no sample
  the window can depend on, however the server rounds.

A correct server sends every precinct of need and none outside reach.
Python 3 standard library only.
"""


def ceil_div(a, b):
    return -((-a) // b)


def ceil_shift(a, n):
    return -((-a) >> n)


class Tccp:
    """Coding parameters of one tile-component that shape its geometry."""
    __slots__ = ("nl", "transform", "ppx", "ppy")

    def __init__(self, nl, transform, ppx, ppy):
        self.nl, self.transform, self.ppx, self.ppy = nl, transform, ppx, ppy


def _spcod(body, pos, has_prec):
    """SPcod / SPcoc at pos: (Tccp, layers-free fields)."""
    nl = body[pos]
    transform = body[pos + 4]
    if has_prec:
        pp = body[pos + 5:pos + 6 + nl]
        if len(pp) != nl + 1:
            raise ValueError("precinct sizes cut short")
        ppx = [b & 0x0F for b in pp]
        ppy = [b >> 4 for b in pp]
    else:
        ppx = [15] * (nl + 1)
        ppy = [15] * (nl + 1)
    return Tccp(nl, transform, ppx, ppy)


class _Src:
    """Bytes [off, off+n) of a codestream held in memory, or of a file read
    where needed (the headers of a multi-gigabyte file, not its data);
    base is where the codestream starts, size its length."""

    def __init__(self, data=None, path=None):
        self.data, self.f = data, None
        if data is None:
            self.f = open(path, "rb")
            self.f.seek(0, 2)
            self.total = self.f.tell()
        else:
            self.total = len(data)
        self.base, self.size = 0, self.total

    def raw(self, off, n):
        if self.data is not None:
            return self.data[off:off + n]
        self.f.seek(off)
        return self.f.read(n)

    def get(self, off, n):
        n = max(0, min(n, self.size - off))
        return self.raw(self.base + off, n)

    def find_codestream(self):
        """Point at the first codestream: the file itself, or the contents
        of the first jp2c box (T.800 Annex I)."""
        if self.raw(0, 2) == b"\xff\x4f":
            return
        pos = 0
        while pos + 8 <= self.total:
            head = self.raw(pos, 16)
            lbox, hl = int.from_bytes(head[:4], "big"), 8
            if lbox == 1:
                lbox, hl = int.from_bytes(head[8:16], "big"), 16
            elif lbox == 0:
                lbox = self.total - pos
            if head[4:8] == b"jp2c":
                self.base, self.size = pos + hl, min(lbox, self.total - pos) - hl
                return
            if lbox < hl:
                break
            pos += lbox
        raise ValueError("no codestream found")

    def close(self):
        if self.f is not None:
            self.f.close()


def codestream_bytes(data):
    """The first codestream of a raw codestream or JP2/JPX file."""
    src = _Src(data=data)
    src.find_codestream()
    return src.get(0, src.size)


class Codestream:
    """Geometry of one codestream, from its main and tile-part headers:
    Codestream(bytes) or Codestream(path=FILE) (which reads only the
    headers)."""

    def __init__(self, data=None, path=None):
        src = _Src(data, path)
        try:
            src.find_codestream()
            self._parse(src)
        finally:
            src.close()

    def _parse(self, src):
        if src.get(0, 4) != b"\xff\x4f\xff\x51":
            raise ValueError("not a codestream (no SOC, SIZ)")
        self.cod = None
        self.coc = {}
        self.tile_cod = {}
        self.tile_coc = {}
        self.mct = 0
        self.tile_mct = {}
        size = src.size
        pos = 2
        # the main header: up to the first SOT
        while True:
            if pos + 4 > size:
                raise ValueError("the main header has no end")
            head = src.get(pos, 4)
            code = int.from_bytes(head[:2], "big")
            if code == 0xFF90:
                break
            if 0xFF30 <= code <= 0xFF3F:  # reserved, no length (T.800 A.1.4)
                pos += 2
                continue
            length = int.from_bytes(head[2:4], "big")
            if length < 2:
                raise ValueError("bad marker segment length at offset %d" % pos)
            body = src.get(pos + 4, length - 2)
            if code == 0xFF51:
                self._siz(body)
            elif code == 0xFF52:
                self.cod, self.mct = self._cod(body)
            elif code == 0xFF53:
                c, t = self._coc(body)
                self.coc[c] = t
            pos += 2 + length
        # the tile-parts: SOT, header to SOD, Psot bytes in all
        while pos + 12 <= size:
            sot = src.get(pos, 12)
            if int.from_bytes(sot[:2], "big") != 0xFF90:
                break
            isot = int.from_bytes(sot[4:6], "big")
            psot = int.from_bytes(sot[6:10], "big")
            end = size if psot == 0 else pos + psot
            p = pos + 12
            while p + 4 <= end:
                head = src.get(p, 4)
                code = int.from_bytes(head[:2], "big")
                if code == 0xFF93:
                    break
                if 0xFF30 <= code <= 0xFF3F:
                    p += 2
                    continue
                length = int.from_bytes(head[2:4], "big")
                if length < 2:
                    raise ValueError("bad marker segment length at offset %d" % p)
                if code in (0xFF52, 0xFF53):
                    body = src.get(p + 4, length - 2)
                    if code == 0xFF52:
                        self.tile_cod[isot], self.tile_mct[isot] = self._cod(body)
                    else:
                        c, t = self._coc(body)
                        self.tile_coc[(isot, c)] = t
                p += 2 + length
            if psot == 0 or psot < 14:
                break
            pos = end

    def _siz(self, b):
        f = [int.from_bytes(b[i:i + 4], "big") for i in range(2, 34, 4)]
        (self.xsiz, self.ysiz, self.xosiz, self.yosiz,
         self.xtsiz, self.ytsiz, self.xtosiz, self.ytosiz) = f
        self.csiz = int.from_bytes(b[34:36], "big")
        self.xr = [b[36 + 3 * i + 1] for i in range(self.csiz)]
        self.yr = [b[36 + 3 * i + 2] for i in range(self.csiz)]
        self.ntx = ceil_div(self.xsiz - self.xtosiz, self.xtsiz)
        self.nty = ceil_div(self.ysiz - self.ytosiz, self.ytsiz)
        self.nt = self.ntx * self.nty

    def _cod(self, b):
        scod = b[0]
        return _spcod(b, 5, scod & 1), b[4]

    def _coc(self, b):
        n = 1 if self.csiz < 257 else 2
        c = int.from_bytes(b[0:n], "big")
        return c, _spcod(b, n + 1, b[n] & 1)

    # ---------------------------------------------------------- geometry
    def tccp(self, t, c):
        """Precedence: tile COC > tile COD > main COC > main COD."""
        if (t, c) in self.tile_coc:
            return self.tile_coc[(t, c)]
        if t in self.tile_cod:
            return self.tile_cod[t]
        return self.coc.get(c, self.cod)

    def uses_mct(self, t):
        return self.tile_mct.get(t, self.mct)

    def tile_rect(self, t):
        p, q = t % self.ntx, t // self.ntx
        return (max(self.xtosiz + p * self.xtsiz, self.xosiz),
                max(self.ytosiz + q * self.ytsiz, self.yosiz),
                min(self.xtosiz + (p + 1) * self.xtsiz, self.xsiz),
                min(self.ytosiz + (q + 1) * self.ytsiz, self.ysiz))

    def tilecomp_rect(self, t, c):
        x0, y0, x1, y1 = self.tile_rect(t)
        xr, yr = self.xr[c], self.yr[c]
        return ceil_div(x0, xr), ceil_div(y0, yr), ceil_div(x1, xr), ceil_div(y1, yr)

    def res_rect(self, t, c, r):
        nl = self.tccp(t, c).nl
        x0, y0, x1, y1 = self.tilecomp_rect(t, c)
        s = nl - r
        return ceil_shift(x0, s), ceil_shift(y0, s), ceil_shift(x1, s), ceil_shift(y1, s)

    def prec_grid(self, t, c, r):
        """(kx0, ky0, npw, nph): the precinct partition of resolution r, in
        precinct units from the resolution's origin (T.800 B.6)."""
        tp = self.tccp(t, c)
        x0, y0, x1, y1 = self.res_rect(t, c, r)
        px, py = tp.ppx[r], tp.ppy[r]
        kx0, ky0 = x0 >> px, y0 >> py
        npw = (ceil_shift(x1, px) - kx0) if x1 > x0 else 0
        nph = (ceil_shift(y1, py) - ky0) if y1 > y0 else 0
        return kx0, ky0, npw, nph

    def prec_count(self, t, c):
        nl = self.tccp(t, c).nl
        return [self.prec_grid(t, c, r)[2] * self.prec_grid(t, c, r)[3] for r in range(nl + 1)]

    def prec_id(self, t, c, r, kx, ky):
        """The in-class id of precinct (kx, ky) (absolute precinct indices)
        of resolution r of tile-component (t, c)."""
        counts = self.prec_count(t, c)
        kx0, ky0, npw, _ = self.prec_grid(t, c, r)
        s = sum(counts[:r]) + (ky - ky0) * npw + (kx - kx0)
        return t + (c + s * self.csiz) * self.nt

    def prec_of_id(self, pid):
        """(t, c, r, kx, ky) of an in-class id, or None if there is none."""
        t = pid % self.nt
        rest = pid // self.nt
        c = rest % self.csiz
        s = rest // self.csiz
        if c >= self.csiz:
            return None
        for r, n in enumerate(self.prec_count(t, c)):
            if s < n:
                kx0, ky0, npw, _ = self.prec_grid(t, c, r)
                return t, c, r, kx0 + s % npw, ky0 + s // npw
            s -= n
        return None

    def frame(self, d):
        """The frame size at discard level d (reference grid reduced d
        times, T.808 C.4.2)."""
        return (ceil_shift(self.xsiz, d) - ceil_shift(self.xosiz, d),
                ceil_shift(self.ysiz, d) - ceil_shift(self.yosiz, d))

    def region(self, d, ox, oy, sx, sy):
        """The window's region on the reference grid: frame samples
        [o, o+s) at discard level d each cover 2^d reference samples."""
        bx, by = ceil_shift(self.xosiz, d), ceil_shift(self.yosiz, d)
        return ((bx + ox) << d, (by + oy) << d,
                min((bx + ox + sx) << d, self.xsiz), min((by + oy + sy) << d, self.ysiz))

    def levels(self):
        """(largest, smallest) number of decomposition levels over all
        tile-components."""
        nls = [self.tccp(t, c).nl for t in range(self.nt) for c in range(self.csiz)]
        return max(nls), min(nls)


# ------------------------------------------------------------- the oracle

# How far output sample x reaches into the interleaved coefficients of its
# level, by parity of x: (even, odd). T.800 F.3.8.1 (5/3), F.3.8.2 (9/7).
_TAPS = {1: (1, 2), 0: (3, 4)}
# Half-length of the longer synthesis filter (5 and 9 taps).
_HALF = {1: 2, 0: 4}


def _a(transform, x):
    return _TAPS[transform][x & 1]


def _exact_step(transform, lo, hi, i0, i1):
    """Output samples [lo, hi) of a level whose interleaved extent is
    [i0, i1): the low-pass and high-pass index ranges (half-open) read."""
    ymin = min(x - _a(transform, x) for x in (lo, lo + 1) if x < hi)
    ymax = max(x + _a(transform, x) for x in (hi - 1, hi - 2) if x >= lo)
    ymin, ymax = max(ymin, i0), min(ymax, i1 - 1)
    if ymax < ymin:
        return (0, 0), (0, 0)
    low = (ceil_div(ymin, 2), ymax // 2 + 1)
    high = (ceil_div(ymin - 1, 2), (ymax - 1) // 2 + 1)
    return low, high


def _spans_exact(cs, t, c, lo, hi, axis, rmax):
    """Per resolution r (1..rmax): (low, high) band ranges read along one
    axis; for r = 0 the LL range. None entries for empty ranges."""
    out = {}
    for r in range(rmax, 0, -1):
        rr = cs.res_rect(t, c, r)
        i0, i1 = (rr[0], rr[2]) if axis == 0 else (rr[1], rr[3])
        if hi <= lo:
            out[r] = ((0, 0), (0, 0))
            lo = hi = 0
            continue
        low, high = _exact_step(cs.tccp(t, c).transform, lo, hi, i0, i1)
        out[r] = (low, high)
        lo, hi = low
    out[0] = (lo, hi)
    return out


def _spans_reach(cs, t, c, lo, hi, rmax):
    """Per resolution r (1..rmax): the band range of the outer bound; for
    r = 0 the LL range. Not clipped (precincts outside do not exist)."""
    m = _HALF[cs.tccp(t, c).transform]
    out = {}
    for r in range(rmax, 0, -1):
        lo, hi = (lo >> 1) - m, ceil_shift(hi, 1) + m
        out[r] = (lo, hi)
    out[0] = (lo, hi)
    return out


def _overlap(a, b):
    return a[0] < b[1] and b[0] < a[1] and a[0] < a[1] and b[0] < b[1]


class Oracle:
    """Which precincts a view-window needs, for one codestream."""

    def __init__(self, cs):
        self.cs = cs

    def _tc_region(self, t, c, rg, rmax):
        """The region in samples of resolution rmax of (t, c): half-open
        x and y ranges clipped to the resolution, or None when empty."""
        cs = self.cs
        nl = cs.tccp(t, c).nl
        s = nl - rmax
        x0, y0, x1, y1 = rg
        xr, yr = cs.xr[c], cs.yr[c]
        rr = cs.res_rect(t, c, rmax)
        lx = max(ceil_shift(ceil_div(x0, xr), s), rr[0])
        hx = min(ceil_shift(ceil_div(x1, xr), s), rr[2])
        ly = max(ceil_shift(ceil_div(y0, yr), s), rr[1])
        hy = min(ceil_shift(ceil_div(y1, yr), s), rr[3])
        return (lx, hx), (ly, hy)

    def bounds(self, d, rg, comps):
        """(need, reach): sets of precinct in-class ids for the region rg
        (reference grid) at discard level d, components comps."""
        cs = self.cs
        need, reach = set(), set()
        for t in range(cs.nt):
            tx0, ty0, tx1, ty1 = cs.tile_rect(t)
            if not (tx0 < rg[2] and rg[0] < tx1 and ty0 < rg[3] and rg[1] < ty1):
                continue
            for c in comps:
                tp = cs.tccp(t, c)
                rmax = tp.nl - d if tp.nl > d else 0
                (lx, hx), (ly, hy) = self._tc_region(t, c, rg, rmax)
                if hx > lx and hy > ly:
                    ex = _spans_exact(cs, t, c, lx, hx, 0, rmax)
                    ey = _spans_exact(cs, t, c, ly, hy, 1, rmax)
                    self._mark_exact(t, c, rmax, ex, ey, need)
                # the outer bound grows from the region's edges even when
                # the region misses this tile-component at rmax
                rx = _spans_reach(cs, t, c, lx, max(hx, lx), rmax)
                ry = _spans_reach(cs, t, c, ly, max(hy, ly), rmax)
                self._mark_reach(t, c, rmax, rx, ry, reach)
        return need, reach

    def _precincts(self, t, c, r, xs, ys, out):
        """Add the precincts of resolution r meeting band rectangles given
        in band (r > 0) or resolution (r = 0) samples."""
        cs = self.cs
        tp = cs.tccp(t, c)
        kx0, ky0, npw, nph = cs.prec_grid(t, c, r)
        if npw == 0 or nph == 0:
            return
        sx = tp.ppx[r] - (1 if r > 0 else 0)
        sy = tp.ppy[r] - (1 if r > 0 else 0)
        for (ax, ay) in zip(xs, ys):
            if ax[1] <= ax[0] or ay[1] <= ay[0]:
                continue
            k0 = max(ax[0] >> sx, kx0)
            k1 = min(ceil_shift(ax[1], sx), kx0 + npw)
            j0 = max(ay[0] >> sy, ky0)
            j1 = min(ceil_shift(ay[1], sy), ky0 + nph)
            for ky in range(j0, j1):
                for kx in range(k0, k1):
                    out.add(cs.prec_id(t, c, r, kx, ky))

    def _mark_exact(self, t, c, rmax, ex, ey, out):
        self._precincts(t, c, 0, [ex[0]], [ey[0]], out)
        for r in range(1, rmax + 1):
            (lx, hx), (ly, hy) = ex[r], ey[r]
            # HL: high-pass across, low-pass down; LH; HH
            self._precincts(t, c, r, [hx, lx, hx], [ly, hy, hy], out)

    def _mark_reach(self, t, c, rmax, rx, ry, out):
        self._precincts(t, c, 0, [rx[0]], [ry[0]], out)
        for r in range(1, rmax + 1):
            self._precincts(t, c, r, [rx[r]], [ry[r]], out)

    def meeting(self, d, rg, comps):
        """The precincts whose own samples meet the region's projection,
        without any filter margin (the byte budget's denominator)."""
        cs = self.cs
        out = set()
        for t in range(cs.nt):
            tx0, ty0, tx1, ty1 = cs.tile_rect(t)
            if not (tx0 < rg[2] and rg[0] < tx1 and ty0 < rg[3] and rg[1] < ty1):
                continue
            for c in comps:
                tp = cs.tccp(t, c)
                rmax = tp.nl - d if tp.nl > d else 0
                (lx, hx), (ly, hy) = self._tc_region(t, c, rg, rmax)
                if hx <= lx or hy <= ly:
                    continue
                for r in range(rmax, -1, -1):
                    if r > 0:
                        bx, by = (lx >> 1, ceil_shift(hx, 1)), (ly >> 1, ceil_shift(hy, 1))
                        self._precincts(t, c, r, [bx], [by], out)
                        lx, hx, ly, hy = bx[0], bx[1], by[0], by[1]
                    else:
                        self._precincts(t, c, 0, [(lx, hx)], [(ly, hy)], out)
        return out
