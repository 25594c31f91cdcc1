/* mod_jpip: mapping a view-window onto the data-bins of a codestream. */
#include "view.h"

#include <string.h>

#include <apr_strings.h>

/* W(d) or H(d): size of the image on the reference grid reduced d times. */
static apr_uint64_t reduced(apr_uint32_t siz, apr_uint32_t osiz, unsigned d)
{
    return jpip_ceilpow2(siz, d) - jpip_ceilpow2(osiz, d);
}

/* Largest number of levels any tile-component has: the deepest discard
 * level worth offering (a tile-component with fewer levels contributes its
 * lowest resolution). Also the largest layer count and whether any tile
 * uses a multi-component transform. From the index's summary: O(1), not
 * O(tiles x components) per request. */
static void scan_tiles(const jpip_index_t *ix, const jpip_ix_cs_t *cs, unsigned *maxnl,
                       unsigned *maxlayers, int *mct)
{
    const jpip_ix_summary_t *sum = jpip_index_summary(ix, cs);

    *maxnl = sum->max_nl;
    *maxlayers = sum->max_layers;
    *mct = sum->mct;
}

static unsigned choose_d(const jpip_siz_t *siz, const jpip_request_t *req, unsigned maxd)
{
    unsigned d, best = 0;
    double target = (double)req->fx * (double)req->fy, bestdiff = -1;

    switch (req->round) {
    case JPIP_ROUND_DOWN:
        for (d = 0; d <= maxd; d++) {
            if (reduced(siz->xsiz, siz->xosiz, d) <= req->fx &&
                reduced(siz->ysiz, siz->yosiz, d) <= req->fy) {
                return d;
            }
        }
        return maxd;
    case JPIP_ROUND_UP:
        for (d = maxd + 1; d-- > 0;) {
            if (reduced(siz->xsiz, siz->xosiz, d) >= req->fx &&
                reduced(siz->ysiz, siz->yosiz, d) >= req->fy) {
                return d;
            }
        }
        return 0;
    case JPIP_ROUND_CLOSEST:
        for (d = 0; d <= maxd; d++) {
            double area = (double)reduced(siz->xsiz, siz->xosiz, d) *
                          (double)reduced(siz->ysiz, siz->yosiz, d);
            double diff = area > target ? area - target : target - area;
            if (bestdiff < 0 || diff < bestdiff) {
                bestdiff = diff;
                best = d;
            }
        }
        return best;
    }
    return 0;
}

/* Scale one axis of the requested region into the served frame: offset
 * rounded down, end rounded up, clipped to the frame (notes B.2). */
static void scale_axis(apr_uint64_t o, apr_uint64_t s, apr_uint64_t f, apr_uint64_t w,
                       apr_uint64_t *so, apr_uint64_t *ss)
{
    apr_uint64_t end = o + s > f ? f : o + s;

    if (o >= f) {
        *so = w;
        *ss = 0;
        return;
    }
    if (w == f) {
        *so = o;
        *ss = end - o;
        return;
    }
    *so = o * w / f;
    end = jpip_ceildiv(end * w, f);
    if (end > w) {
        end = w;
    }
    *ss = end > *so ? end - *so : 0;
}

static const char *format_comps(apr_pool_t *pool, const unsigned char *on, apr_uint32_t n)
{
    const char *out = "";
    apr_uint32_t c = 0;

    while (c < n) {
        apr_uint32_t e;
        const char *one;

        if (!on[c]) {
            c++;
            continue;
        }
        for (e = c; e + 1 < n && on[e + 1]; e++) {
        }
        one = e == c ? apr_psprintf(pool, "%u", c) : apr_psprintf(pool, "%u-%u", c, e);
        out = *out == '\0' ? one : apr_pstrcat(pool, out, ",", one, NULL);
        c = e + 1;
    }
    return out;
}

static void resolve_comps(const jpip_ix_cs_t *cs, const jpip_request_t *req, int mct,
                          apr_pool_t *pool, jpip_view_t *v)
{
    apr_uint32_t c, n = cs->siz.csiz;
    int clipped = 0;

    v->ncomps = n;
    v->comps = apr_pcalloc(pool, n);
    for (c = 0; c < n; c++) {
        v->comps[c] = (unsigned char)jpip_ranges_contain(req->comps, c);
    }
    if (req->comps != NULL) {
        int i;
        for (i = 0; i < req->comps->nelts; i++) {
            const jpip_range_t *r = &APR_ARRAY_IDX(req->comps, i, jpip_range_t);
            if (r->lo >= n || (r->hi != JPIP_UINT_NONE && r->hi >= n)) {
                clipped = 1;
            }
        }
    }
    if (mct && n >= 3 && (v->comps[0] || v->comps[1] || v->comps[2]) &&
        !(v->comps[0] && v->comps[1] && v->comps[2])) {
        v->comps[0] = v->comps[1] = v->comps[2] = 1;
        clipped = 1;
    }
    v->comps_served = format_comps(pool, v->comps, n);
    if (req->comps != NULL && clipped) {
        v->modified |= JPIP_VIEW_MOD_COMPS;
    }
}

jpip_code_t jpip_view_resolve(const jpip_index_t *ix, apr_uint64_t csn, const jpip_request_t *req,
                              apr_pool_t *pool, jpip_view_t *v, jpip_err_t *err)
{
    const jpip_ix_cs_t *cs = jpip_index_cs(ix, csn);
    const jpip_siz_t *siz;
    unsigned maxnl, maxlayers;
    int mct;
    apr_uint64_t rox, roy, rsx, rsy, x0, y0;

    memset(v, 0, sizeof(*v));
    if (cs == NULL) {
        return jpip_err_set(err, JPIP_E_NOTFOUND,
                            "codestream %" APR_UINT64_T_FMT " is not in the target", csn);
    }
    siz = &cs->siz;
    v->csn = csn;
    scan_tiles(ix, cs, &maxnl, &maxlayers, &mct);
    v->max_layers = maxlayers;
    resolve_comps(cs, req, mct, pool, v);
    if (req->has_layers && req->layers > 0) {
        v->layers = req->layers;
        if (req->layers > maxlayers) {
            v->layers = maxlayers;
            v->modified |= JPIP_VIEW_MOD_LAYERS;
        }
    }
    if (!req->has_fsiz) {
        return JPIP_OK;
    }
    v->d = choose_d(siz, req, maxnl);
    v->fw = reduced(siz->xsiz, siz->xosiz, v->d);
    v->fh = reduced(siz->ysiz, siz->yosiz, v->d);
    if (v->fw != req->fx || v->fh != req->fy) {
        v->modified |= JPIP_VIEW_MOD_FSIZ;
    }
    rox = req->has_roff ? req->ox : 0;
    roy = req->has_roff ? req->oy : 0;
    rsx = req->has_rsiz ? req->sx : (rox < req->fx ? req->fx - rox : 0);
    rsy = req->has_rsiz ? req->sy : (roy < req->fy ? req->fy - roy : 0);
    scale_axis(rox, rsx, req->fx, v->fw, &v->ox, &v->sx);
    scale_axis(roy, rsy, req->fy, v->fh, &v->oy, &v->sy);
    if (req->has_roff && (v->ox != rox || v->oy != roy)) {
        v->modified |= JPIP_VIEW_MOD_ROFF;
    }
    if (req->has_rsiz && (v->sx != rsx || v->sy != rsy)) {
        v->modified |= JPIP_VIEW_MOD_RSIZ;
    }
    if (v->sx == 0 || v->sy == 0) {
        return JPIP_OK;
    }
    x0 = jpip_ceilpow2(siz->xosiz, v->d);
    y0 = jpip_ceilpow2(siz->yosiz, v->d);
    v->region.x0 = (x0 + v->ox) << v->d;
    v->region.y0 = (y0 + v->oy) << v->d;
    v->region.x1 = (x0 + v->ox + v->sx) << v->d;
    v->region.y1 = (y0 + v->oy + v->sy) << v->d;
    if (v->region.x1 > siz->xsiz) {
        v->region.x1 = siz->xsiz;
    }
    if (v->region.y1 > siz->ysiz) {
        v->region.y1 = siz->ysiz;
    }
    v->has_image = v->region.x1 > v->region.x0 && v->region.y1 > v->region.y0;
    return JPIP_OK;
}

int jpip_view_tile_relevant(const jpip_index_t *ix, const jpip_view_t *v, apr_uint32_t t)
{
    const jpip_ix_cs_t *cs = jpip_index_cs(ix, v->csn);
    jpip_rect_t tr;

    if (!v->has_image || cs == NULL) {
        return 0;
    }
    /* a tile the codestream lacks has nothing to send */
    if (jpip_index_tile(ix, cs, t) == NULL || jpip_index_tile(ix, cs, t)->ntp == 0) {
        return 0;
    }
    jpip_geom_tile(&cs->siz, t, &tr);
    return tr.x0 < v->region.x1 && v->region.x0 < tr.x1 && tr.y0 < v->region.y1 &&
           v->region.y0 < tr.y1;
}

/* A half-open interval on one axis. */
typedef struct span_t {
    apr_uint64_t lo, hi;
} span_t;

static span_t clip(span_t s, apr_uint64_t lo, apr_uint64_t hi)
{
    if (s.lo < lo) {
        s.lo = lo;
    }
    if (s.hi > hi) {
        s.hi = hi;
    }
    if (s.hi < s.lo) {
        s.hi = s.lo;
    }
    return s;
}

/* The samples of resolution r-1 (and of the subbands of resolution r, in
 * resolution-r units) that synthesis of s at resolution r reads: halve,
 * then widen by the filter's reach m on each side. */
static span_t reach_down(span_t s, unsigned m)
{
    span_t o;

    o.lo = s.lo / 2 > m ? s.lo / 2 - m : 0;
    o.hi = jpip_ceildiv(s.hi, 2) + m;
    return o;
}

/* Visit the precincts of one resolution whose extent (in resolution
 * units) meets need. */
static jpip_code_t visit_res(const jpip_index_t *ix, const jpip_view_t *v, const jpip_ix_cs_t *cs,
                             apr_uint32_t t, unsigned c, unsigned r, unsigned nl,
                             const jpip_tccp_t *tccp, span_t nx, span_t ny, jpip_view_row_fn fn,
                             void *ctx, jpip_err_t *err)
{
    jpip_ix_res_t res;
    const jpip_ix_tc_t *itc;
    apr_uint64_t i0, i1, j0, j1, j, nt = jpip_siz_ntiles(&cs->siz);
    unsigned ppx = tccp->ppx[r], ppy = tccp->ppy[r];
    jpip_code_t rc = jpip_index_res(ix, cs, t, c, r, &res, err);

    if (rc != JPIP_OK) {
        return rc;
    }
    if (res.grid.npw == 0 || res.grid.nph == 0 || nx.hi <= nx.lo || ny.hi <= ny.lo) {
        return JPIP_OK;
    }
    i0 = jpip_floorpow2(nx.lo, ppx);
    i1 = jpip_ceilpow2(nx.hi, ppx);
    j0 = jpip_floorpow2(ny.lo, ppy);
    j1 = jpip_ceilpow2(ny.hi, ppy);
    i0 = i0 > res.grid.px0 ? i0 - res.grid.px0 : 0;
    j0 = j0 > res.grid.py0 ? j0 - res.grid.py0 : 0;
    i1 = i1 > res.grid.px0 ? i1 - res.grid.px0 : 0;
    j1 = j1 > res.grid.py0 ? j1 - res.grid.py0 : 0;
    if (i1 > res.grid.npw) {
        i1 = res.grid.npw;
    }
    if (j1 > res.grid.nph) {
        j1 = res.grid.nph;
    }
    itc = jpip_index_tc(ix, cs, t, c); /* found by jpip_index_res */
    if (i1 <= i0) {
        return JPIP_OK;
    }
    for (j = j0; j < j1; j++) {
        jpip_view_row_t row;
        apr_uint64_t s = res.s0 + j * res.grid.npw + i0;

        row.t = t;
        row.c = c;
        row.r = r;
        row.lev = nl - r;
        row.id = t + (c + s * cs->siz.csiz) * nt;
        row.step = (apr_uint64_t)cs->siz.csiz * nt;
        row.n = (apr_uint32_t)(i1 - i0);
        row.bin = jpip_index_prec_bin(ix, itc, s);
        /* the whole row lies in the tile-component's precincts */
        if (row.bin == NULL || jpip_index_prec_bin(ix, itc, s + row.n - 1) == NULL) {
            return jpip_err_set(err, JPIP_E_NOTFOUND, "no precinct %" APR_UINT64_T_FMT, row.id);
        }
        rc = fn(ctx, &row, err);
        if (rc != JPIP_OK) {
            return rc;
        }
    }
    return JPIP_OK;
}

static jpip_code_t visit_tilecomp(const jpip_index_t *ix, const jpip_view_t *v,
                                  const jpip_ix_cs_t *cs, apr_uint32_t t, unsigned c,
                                  const jpip_rect_t *tile, jpip_view_row_fn fn, void *ctx,
                                  jpip_err_t *err)
{
    const jpip_comp_t *comp = &jpip_index_comps(ix, cs)[c];
    const jpip_tccp_t *tccp = jpip_index_tccp(ix, jpip_index_tc(ix, cs, t, c));
    unsigned nl = tccp->nl, rmax = nl > v->d ? nl - v->d : 0, r;
    unsigned m = tccp->transform == 1 ? 2 : 3;
    span_t nx[JPIP_MAX_RES], ny[JPIP_MAX_RES];
    jpip_rect_t tc, rr;

    jpip_geom_tilecomp(tile, comp->xr, comp->yr, &tc);
    /* the region in component samples, then at resolution rmax */
    nx[rmax].lo = jpip_ceilpow2(jpip_ceildiv(v->region.x0, comp->xr), nl - rmax);
    nx[rmax].hi = jpip_ceilpow2(jpip_ceildiv(v->region.x1, comp->xr), nl - rmax);
    ny[rmax].lo = jpip_ceilpow2(jpip_ceildiv(v->region.y0, comp->yr), nl - rmax);
    ny[rmax].hi = jpip_ceilpow2(jpip_ceildiv(v->region.y1, comp->yr), nl - rmax);
    jpip_geom_res(&tc, nl, rmax, &rr);
    nx[rmax] = clip(nx[rmax], rr.x0, rr.x1);
    ny[rmax] = clip(ny[rmax], rr.y0, rr.y1);
    for (r = rmax; r > 0; r--) {
        jpip_geom_res(&tc, nl, r - 1, &rr);
        nx[r - 1] = clip(reach_down(nx[r], m), rr.x0, rr.x1);
        ny[r - 1] = clip(reach_down(ny[r], m), rr.y0, rr.y1);
    }
    for (r = 0; r <= rmax; r++) {
        span_t px = nx[r], py = ny[r];
        jpip_code_t rc;

        if (r > 0) {
            /* subband samples of this resolution, back in its own units */
            span_t bx = reach_down(nx[r], m), by = reach_down(ny[r], m);
            px.lo = bx.lo * 2;
            px.hi = bx.hi * 2;
            py.lo = by.lo * 2;
            py.hi = by.hi * 2;
        }
        rc = visit_res(ix, v, cs, t, c, r, nl, tccp, px, py, fn, ctx, err);
        if (rc != JPIP_OK) {
            return rc;
        }
    }
    return JPIP_OK;
}

void jpip_view_tiles(const jpip_index_t *ix, const jpip_view_t *v, jpip_view_tiles_t *tr)
{
    const jpip_ix_cs_t *cs = jpip_index_cs(ix, v->csn);

    memset(tr, 0, sizeof(*tr));
    if (cs == NULL || !v->has_image) {
        return;
    }
    /* columns and rows by division */
    tr->tx0 = (apr_uint32_t)(v->region.x0 > cs->siz.xtosiz
                                 ? (v->region.x0 - cs->siz.xtosiz) / cs->siz.xtsiz
                                 : 0);
    tr->tx1 = (apr_uint32_t)jpip_ceildiv(v->region.x1 - cs->siz.xtosiz, cs->siz.xtsiz);
    tr->ty0 = (apr_uint32_t)(v->region.y0 > cs->siz.ytosiz
                                 ? (v->region.y0 - cs->siz.ytosiz) / cs->siz.ytsiz
                                 : 0);
    tr->ty1 = (apr_uint32_t)jpip_ceildiv(v->region.y1 - cs->siz.ytosiz, cs->siz.ytsiz);
    if (tr->tx1 > cs->siz.ntx) {
        tr->tx1 = cs->siz.ntx;
    }
    if (tr->ty1 > cs->siz.nty) {
        tr->ty1 = cs->siz.nty;
    }
    if (tr->tx0 > tr->tx1) {
        tr->tx0 = tr->tx1;
    }
    if (tr->ty0 > tr->ty1) {
        tr->ty0 = tr->ty1;
    }
    tr->ntx = cs->siz.ntx;
}

jpip_code_t jpip_view_rows(const jpip_index_t *ix, const jpip_view_t *v, jpip_view_row_fn fn,
                           void *ctx, jpip_err_t *err)
{
    const jpip_ix_cs_t *cs = jpip_index_cs(ix, v->csn);
    apr_uint32_t nt, t, tx0, tx1, ty0, ty1, tx, ty;
    jpip_view_tiles_t tr;

    if (cs == NULL || !v->has_image) {
        return JPIP_OK;
    }
    nt = jpip_siz_ntiles(&cs->siz);
    /* only the tiles the region meets */
    jpip_view_tiles(ix, v, &tr);
    tx0 = tr.tx0;
    tx1 = tr.tx1;
    ty0 = tr.ty0;
    ty1 = tr.ty1;
    for (ty = ty0; ty < ty1; ty++) {
        for (tx = tx0; tx < tx1; tx++) {
            jpip_rect_t tile;
            unsigned c;

            t = ty * cs->siz.ntx + tx;
            if (t >= nt || !jpip_view_tile_relevant(ix, v, t)) {
                continue;
            }
            jpip_geom_tile(&cs->siz, t, &tile);
            for (c = 0; c < cs->siz.csiz; c++) {
                jpip_code_t rc;

                if (!v->comps[c]) {
                    continue;
                }
                rc = visit_tilecomp(ix, v, cs, t, c, &tile, fn, ctx, err);
                if (rc != JPIP_OK) {
                    return rc;
                }
            }
        }
    }
    return JPIP_OK;
}
