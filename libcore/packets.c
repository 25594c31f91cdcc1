/* mod_jpip: the packet sequence of a tile (T.800 B.9 - B.12, A.6.6). */
#include "packets.h"

#include <stdlib.h>
#include <string.h>

jpip_code_t jpip_tlayout_build(jpip_tlayout_t **out, apr_pool_t *pool, const jpip_siz_t *siz,
                               const jpip_comp_t *comps, apr_uint32_t t, const jpip_tcp_t *tcp,
                               apr_uint64_t max_precincts, jpip_err_t *err)
{
    jpip_tlayout_t *lay = apr_pcalloc(pool, sizeof(*lay));
    unsigned c, r;

    if (max_precincts == 0) {
        max_precincts = ((apr_uint64_t)1) << 26;
    }
    lay->tile = t;
    lay->csiz = siz->csiz;
    lay->tccp = tcp->tccp;
    lay->comps = comps;
    jpip_geom_tile(siz, t, &lay->rect);
    lay->tc = apr_palloc(pool, siz->csiz * sizeof(jpip_rect_t));
    lay->res = apr_palloc(pool, siz->csiz * sizeof(jpip_tres_t *));
    lay->nprec = apr_palloc(pool, siz->csiz * sizeof(apr_uint64_t));
    lay->pbase = apr_palloc(pool, siz->csiz * sizeof(apr_uint64_t));
    for (c = 0; c < siz->csiz; c++) {
        const jpip_tccp_t *tc = &tcp->tccp[c];
        apr_uint64_t s = 0;

        jpip_geom_tilecomp(&lay->rect, comps[c].xr, comps[c].yr, &lay->tc[c]);
        lay->res[c] = apr_palloc(pool, (tc->nl + 1u) * sizeof(jpip_tres_t));
        for (r = 0; r <= tc->nl; r++) {
            jpip_tres_t *tr = &lay->res[c][r];

            jpip_geom_res(&lay->tc[c], tc->nl, r, &tr->rect);
            jpip_geom_pgrid(&tr->rect, tc->ppx[r], tc->ppy[r], &tr->grid);
            tr->s0 = s;
            /* Each factor is below 2^33, so the product cannot overflow. */
            s += tr->grid.npw * tr->grid.nph;
            if (s > max_precincts) {
                return jpip_err_set(err, JPIP_E_LIMIT,
                                    "tile %u has more than %" APR_UINT64_T_FMT " precincts",
                                    (unsigned)t, max_precincts);
            }
        }
        lay->nprec[c] = s;
        lay->pbase[c] = lay->nprec_total;
        lay->nprec_total += s;
        if (lay->nprec_total > max_precincts) {
            return jpip_err_set(err, JPIP_E_LIMIT,
                                "tile %u has more than %" APR_UINT64_T_FMT " precincts",
                                (unsigned)t, max_precincts);
        }
    }
    *out = lay;
    return JPIP_OK;
}

/* ---- walking ---- */

typedef struct walk_t {
    const jpip_tlayout_t *lay;
    unsigned layers;
    unsigned char *seen; /* one bit per (precinct, layer) */
    jpip_pkt_fn fn;
    void *ctx;
} walk_t;

/* Emit a packet unless an earlier progression volume already did. */
static jpip_code_t walk_emit(walk_t *w, unsigned l, unsigned r, unsigned c, apr_uint64_t p,
                             jpip_err_t *err)
{
    jpip_pkt_t k;
    apr_uint64_t bit;

    k.layer = l;
    k.res = r;
    k.comp = c;
    k.prec = p;
    bit = jpip_pkt_flat(w->lay, &k) * w->layers + l;
    if (w->seen[bit >> 3] & (1u << (bit & 7))) {
        return JPIP_OK;
    }
    w->seen[bit >> 3] |= (unsigned char)(1u << (bit & 7));
    return w->fn(w->ctx, &k, err);
}

/* A progression volume: layers [0, lye), resolutions [rs, re),
 * components [cs, ce), in order prog. */
typedef struct vol_t {
    unsigned rs, re, cs, ce, lye, prog;
} vol_t;

static apr_uint64_t res_nprec(const walk_t *w, unsigned c, unsigned r)
{
    const jpip_tres_t *tr = &w->lay->res[c][r];

    return tr->grid.npw * tr->grid.nph;
}

/* Layer-major orders: LRCP and RLCP. */
static jpip_code_t walk_lrcp(walk_t *w, const vol_t *v, jpip_err_t *err)
{
    unsigned l, r, c, outer, inner;
    unsigned nouter = v->prog == JPIP_PROG_LRCP ? v->lye : v->re;
    unsigned ninner = v->prog == JPIP_PROG_LRCP ? v->re : v->lye;
    unsigned istart = v->prog == JPIP_PROG_LRCP ? v->rs : 0;
    unsigned ostart = v->prog == JPIP_PROG_LRCP ? 0 : v->rs;

    for (outer = ostart; outer < nouter; outer++) {
        for (inner = istart; inner < ninner; inner++) {
            l = v->prog == JPIP_PROG_LRCP ? outer : inner;
            r = v->prog == JPIP_PROG_LRCP ? inner : outer;
            for (c = v->cs; c < v->ce; c++) {
                apr_uint64_t p, np;

                if (r > w->lay->tccp[c].nl) {
                    continue;
                }
                np = res_nprec(w, c, r);
                for (p = 0; p < np; p++) {
                    jpip_code_t rc = walk_emit(w, l, r, c, p, err);

                    if (rc != JPIP_OK) {
                        return rc;
                    }
                }
            }
        }
    }
    return JPIP_OK;
}

/* A precinct with its sort key for the position-driven orders. */
typedef struct pent_t {
    apr_uint64_t key[4];
    unsigned r, c;
    apr_uint64_t p;
} pent_t;

static int pent_cmp(const void *a, const void *b)
{
    const pent_t *x = a, *y = b;
    unsigned i;

    for (i = 0; i < 4; i++) {
        if (x->key[i] != y->key[i]) {
            return x->key[i] < y->key[i] ? -1 : 1;
        }
    }
    return 0;
}

/* Reference-grid position at which B.12 reaches precinct (px, py) of
 * (c, r): its upper-left corner, but no less than the tile origin. */
static void prec_pos(const walk_t *w, unsigned c, unsigned r, apr_uint64_t px, apr_uint64_t py,
                     apr_uint64_t *kx, apr_uint64_t *ky)
{
    const jpip_tccp_t *tc = &w->lay->tccp[c];
    const jpip_tres_t *tr = &w->lay->res[c][r];
    unsigned n = tc->nl - r;
    apr_uint64_t x = (((tr->grid.px0 + px) << tc->ppx[r]) * w->lay->comps[c].xr) << n;
    apr_uint64_t y = (((tr->grid.py0 + py) << tc->ppy[r]) * w->lay->comps[c].yr) << n;

    *kx = x > w->lay->rect.x0 ? x : w->lay->rect.x0;
    *ky = y > w->lay->rect.y0 ? y : w->lay->rect.y0;
}

static void pent_key(pent_t *e, unsigned prog, apr_uint64_t kx, apr_uint64_t ky)
{
    apr_uint64_t k[4];

    if (prog == JPIP_PROG_RPCL) {
        k[0] = e->r, k[1] = ky, k[2] = kx, k[3] = e->c;
    } else if (prog == JPIP_PROG_PCRL) {
        k[0] = ky, k[1] = kx, k[2] = e->c, k[3] = e->r;
    } else {
        k[0] = e->c, k[1] = ky, k[2] = kx, k[3] = e->r;
    }
    memcpy(e->key, k, sizeof(k));
}

/* Position-driven orders: RPCL, PCRL, CPRL. */
static jpip_code_t walk_pos(walk_t *w, const vol_t *v, apr_pool_t *pool, jpip_err_t *err)
{
    apr_uint64_t n = 0, i;
    pent_t *ents;
    unsigned c, r;

    for (c = v->cs; c < v->ce; c++) {
        for (r = v->rs; r < v->re && r <= w->lay->tccp[c].nl; r++) {
            n += res_nprec(w, c, r);
        }
    }
    if (n == 0 || v->lye == 0) {
        return JPIP_OK;
    }
    ents = apr_palloc(pool, (apr_size_t)n * sizeof(pent_t));
    if (ents == NULL) {
        return jpip_err_set(err, JPIP_E_NOMEM, "out of memory ordering packets");
    }
    i = 0;
    for (c = v->cs; c < v->ce; c++) {
        for (r = v->rs; r < v->re && r <= w->lay->tccp[c].nl; r++) {
            const jpip_pgrid_t *g = &w->lay->res[c][r].grid;
            apr_uint64_t px, py, kx, ky;

            for (py = 0; py < g->nph; py++) {
                for (px = 0; px < g->npw; px++, i++) {
                    ents[i].r = r;
                    ents[i].c = c;
                    ents[i].p = py * g->npw + px;
                    prec_pos(w, c, r, px, py, &kx, &ky);
                    pent_key(&ents[i], v->prog, kx, ky);
                }
            }
        }
    }
    qsort(ents, (size_t)n, sizeof(pent_t), pent_cmp);
    for (i = 0; i < n; i++) {
        unsigned l;

        for (l = 0; l < v->lye; l++) {
            jpip_code_t rc = walk_emit(w, l, ents[i].r, ents[i].c, ents[i].p, err);

            if (rc != JPIP_OK) {
                return rc;
            }
        }
    }
    return JPIP_OK;
}

static void vol_clamp(vol_t *v, const jpip_tlayout_t *lay, unsigned layers)
{
    if (v->lye > layers) {
        v->lye = layers;
    }
    if (v->ce > lay->csiz) {
        v->ce = lay->csiz;
    }
    if (v->re > JPIP_MAX_RES) {
        v->re = JPIP_MAX_RES;
    }
}

jpip_code_t jpip_packets_walk(const jpip_tlayout_t *lay, const jpip_tcp_t *tcp, apr_pool_t *pool,
                              apr_uint64_t max_packets, jpip_pkt_fn fn, void *ctx, jpip_err_t *err)
{
    apr_pool_t *scratch;
    walk_t w;
    apr_size_t i, nvol = tcp->npoc > 0 ? tcp->npoc : 1;
    jpip_code_t rc = JPIP_OK;

    if (max_packets == 0) {
        max_packets = ((apr_uint64_t)1) << 28;
    }
    if (lay->nprec_total > max_packets / tcp->layers) {
        return jpip_err_set(err, JPIP_E_LIMIT,
                            "tile %u has more than %" APR_UINT64_T_FMT " packets",
                            (unsigned)lay->tile, max_packets);
    }
    if (apr_pool_create(&scratch, pool) != APR_SUCCESS) {
        return jpip_err_set(err, JPIP_E_NOMEM, "out of memory ordering packets");
    }
    w.lay = lay;
    w.layers = tcp->layers;
    w.fn = fn;
    w.ctx = ctx;
    w.seen = apr_pcalloc(scratch, (apr_size_t)(lay->nprec_total * tcp->layers / 8 + 1));
    for (i = 0; i < nvol && rc == JPIP_OK; i++) {
        vol_t v;

        if (tcp->npoc > 0) {
            const jpip_poc_t *e = &tcp->poc[i];

            v.rs = e->rs, v.re = e->re, v.cs = e->cs, v.ce = e->ce, v.lye = e->lye;
            v.prog = e->prog;
        } else {
            v.rs = 0, v.re = JPIP_MAX_RES, v.cs = 0, v.ce = lay->csiz, v.lye = tcp->layers;
            v.prog = tcp->prog;
        }
        vol_clamp(&v, lay, tcp->layers);
        if (v.prog == JPIP_PROG_LRCP || v.prog == JPIP_PROG_RLCP) {
            rc = walk_lrcp(&w, &v, err);
        } else {
            rc = walk_pos(&w, &v, scratch, err);
        }
    }
    apr_pool_destroy(scratch);
    return rc;
}

typedef struct list_t {
    jpip_pkt_t *v;
    apr_size_t n, cap;
    apr_pool_t *pool;
} list_t;

static jpip_code_t list_add(void *ctx, const jpip_pkt_t *pkt, jpip_err_t *err)
{
    list_t *l = ctx;

    if (l->n == l->cap) {
        apr_size_t cap = l->cap ? l->cap * 2 : 64;
        jpip_pkt_t *nv = apr_palloc(l->pool, cap * sizeof(*nv));

        if (nv == NULL) {
            return jpip_err_set(err, JPIP_E_NOMEM, "out of memory listing packets");
        }
        if (l->n > 0) {
            memcpy(nv, l->v, l->n * sizeof(*nv));
        }
        l->v = nv;
        l->cap = cap;
    }
    l->v[l->n++] = *pkt;
    return JPIP_OK;
}

jpip_code_t jpip_packets_list(const jpip_tlayout_t *lay, const jpip_tcp_t *tcp, apr_pool_t *pool,
                              apr_uint64_t max_packets, jpip_pkt_t **pkts, apr_size_t *npkts,
                              jpip_err_t *err)
{
    list_t l = {NULL, 0, 0, pool};
    jpip_code_t rc = jpip_packets_walk(lay, tcp, pool, max_packets, list_add, &l, err);

    *pkts = l.v;
    *npkts = l.n;
    return rc;
}
