/* mod_jpip: planning a JPP/JPT response. */
#include "plan.h"

#include <stdlib.h>
#include <string.h>

/* One data-bin (or, for metadata, one byte range of a bin) in the plan. */
typedef struct ent_t {
    const jpip_bin_t *bin;
    apr_uint64_t id;
    apr_uint64_t lo, hi; /* the bytes wanted */
    apr_uint64_t pos0;   /* bytes the client holds before the response */
    apr_uint64_t pos;    /* ... and after the messages produced so far */
    apr_uint32_t csn;
    unsigned char cls;   /* base class (0, 2, 4, 6, 8) */
    unsigned char lev;   /* precincts: levels below full resolution */
    unsigned char done0; /* the client holds the bin complete already */
    unsigned char done;
    apr_uint32_t maxl; /* precincts: layer limit (0: all) */
    apr_uint64_t seq;  /* order of addition (keeps the sort stable) */
} ent_t;

enum { PH_META_PRI, PH_MAIN, PH_TILEHDR, PH_IMAGE, PH_META, PH_END };

struct jpip_plan_t {
    apr_pool_t *pool;
    const jpip_index_t *ix;
    const jpip_model_t *model;
    jpip_plan_opts_t opts;
    apr_array_header_t *ph[PH_END]; /* of ent_t */
    int sorted;
    unsigned nlayers; /* rounds of the image phase */
    /* cursor */
    int phase;
    unsigned layer;
    int idx;
    jpip_jpp_writer_t w;
    apr_uint64_t used;
    int len_stop;
    apr_uint64_t nents;
};

static apr_uint64_t held(const jpip_plan_t *p, unsigned cls, apr_uint64_t csn, apr_uint64_t id)
{
    return p->model != NULL ? jpip_model_held(p->model, cls, csn, id) : 0;
}

jpip_code_t jpip_plan_create(jpip_plan_t **plan, apr_pool_t *pool, const jpip_index_t *ix,
                             const jpip_model_t *model, const jpip_plan_opts_t *opts,
                             jpip_err_t *err)
{
    jpip_plan_t *p = apr_pcalloc(pool, sizeof(*p));
    int i;

    p->pool = pool;
    p->ix = ix;
    p->model = model;
    p->opts = *opts;
    if (p->opts.max_entries == 0) {
        p->opts.max_entries = (apr_uint64_t)1 << 24;
    }
    for (i = 0; i < PH_END; i++) {
        p->ph[i] = apr_array_make(pool, i == PH_IMAGE ? 256 : 8, sizeof(ent_t));
    }
    jpip_plan_rewind(p);
    *plan = p;
    return JPIP_OK;
}

/* Append an entry for (cls, csn, id) wanting bytes [lo, hi). */
static jpip_code_t push(jpip_plan_t *p, int phase, unsigned cls, apr_uint64_t csn, apr_uint64_t id,
                        const jpip_bin_t *bin, apr_uint64_t lo, apr_uint64_t hi, ent_t **out,
                        jpip_err_t *err)
{
    ent_t *e;
    apr_uint64_t h;

    if (p->nents >= p->opts.max_entries) {
        return jpip_err_set(err, JPIP_E_LIMIT,
                            "the view involves more than %" APR_UINT64_T_FMT
                            " data-bins (ask for a smaller region or resolution)",
                            p->opts.max_entries);
    }
    p->nents++;
    h = held(p, cls, csn, id);
    e = apr_array_push(p->ph[phase]);
    memset(e, 0, sizeof(*e));
    e->bin = bin;
    e->id = id;
    e->lo = lo;
    e->hi = hi;
    e->csn = (apr_uint32_t)csn;
    e->cls = (unsigned char)cls;
    e->seq = p->nents;
    e->done0 = h == JPIP_MODEL_COMPLETE;
    e->pos0 = e->done0 ? bin->len : (h > bin->len ? bin->len : h);
    e->pos = e->pos0;
    e->done = e->done0;
    if (out != NULL) {
        *out = e;
    }
    return JPIP_OK;
}

jpip_code_t jpip_plan_add_meta(jpip_plan_t *plan, apr_uint64_t id, apr_uint64_t off,
                               apr_uint64_t len, int priority, jpip_err_t *err)
{
    const jpip_bin_t *bin;
    apr_uint64_t hi;
    int ph, i;
    jpip_code_t rc = jpip_index_bin(plan->ix, JPIP_CLASS_META, 0, id, &bin, err);

    if (rc != JPIP_OK) {
        return rc;
    }
    if (off > bin->len) {
        off = bin->len;
    }
    hi = len > bin->len - off ? bin->len : off + len;
    /* trim against ranges of this bin already planned */
    for (ph = PH_META_PRI; ph <= PH_META; ph += PH_META - PH_META_PRI) {
        for (i = 0; i < plan->ph[ph]->nelts; i++) {
            const ent_t *e = &APR_ARRAY_IDX(plan->ph[ph], i, ent_t);
            if (e->id != id) {
                continue;
            }
            if (e->lo <= off && off < e->hi) {
                off = e->hi < hi ? e->hi : hi;
            }
            if (off < e->lo && e->lo < hi && hi <= e->hi) {
                hi = e->lo;
            }
            if (e->lo <= off && hi <= e->hi && (off < hi || e->hi == bin->len)) {
                return JPIP_OK; /* covered */
            }
        }
    }
    if (off >= hi && !(hi == bin->len && off == hi)) {
        return JPIP_OK;
    }
    return push(plan, priority ? PH_META_PRI : PH_META, JPIP_CLASS_META, 0, id, bin, off, hi, NULL,
                err);
}

static jpip_code_t add_bin(jpip_plan_t *p, int phase, unsigned cls, apr_uint64_t csn,
                           apr_uint64_t id, ent_t **out, jpip_err_t *err)
{
    const jpip_bin_t *bin;
    jpip_code_t rc = jpip_index_bin(p->ix, cls, csn, id, &bin, err);

    if (rc != JPIP_OK) {
        return rc;
    }
    return push(p, phase, cls, csn, id, bin, 0, bin->len, out, err);
}

typedef struct view_ctx_t {
    jpip_plan_t *p;
    const jpip_view_t *v;
} view_ctx_t;

static jpip_code_t add_precinct(void *vctx, const jpip_view_prec_t *pr, jpip_err_t *err)
{
    view_ctx_t *c = vctx;
    ent_t *e;
    jpip_code_t rc = push(c->p, PH_IMAGE, JPIP_CLASS_PRECINCT, c->v->csn, pr->id, pr->bin, 0,
                          pr->bin->len, &e, err);

    if (rc == JPIP_OK) {
        e->lev = (unsigned char)pr->lev;
        e->maxl = c->v->layers;
        if (pr->bin->nbounds > c->p->nlayers) {
            c->p->nlayers = pr->bin->nbounds;
        }
    }
    return rc;
}

/* The tile header (JPP) or tile (JPT) bin of tile t. */
static jpip_code_t add_tile(jpip_plan_t *plan, const jpip_view_t *view, apr_uint32_t t,
                            jpip_err_t *err)
{
    ent_t *e;
    jpip_code_t rc;

    if (plan->opts.jpt) {
        rc = add_bin(plan, PH_IMAGE, JPIP_CLASS_TILE, view->csn, t, &e, err);
        if (rc == JPIP_OK && e->bin->nbounds > plan->nlayers) {
            plan->nlayers = e->bin->nbounds;
        }
        return rc;
    }
    return add_bin(plan, PH_TILEHDR, JPIP_CLASS_TILEHDR, view->csn, t, NULL, err);
}

jpip_code_t jpip_plan_add_view(jpip_plan_t *plan, const jpip_view_t *view, jpip_err_t *err)
{
    const jpip_ix_cs_t *cs = jpip_index_cs(plan->ix, view->csn);
    apr_uint32_t nt, t, tx, ty;
    jpip_view_tiles_t tr;
    jpip_code_t rc;

    if (cs == NULL) {
        return jpip_err_set(err, JPIP_E_NOTFOUND, "no codestream %" APR_UINT64_T_FMT, view->csn);
    }
    rc = add_bin(plan, PH_MAIN, JPIP_CLASS_MAIN, view->csn, 0, NULL, err);
    if (rc != JPIP_OK || !view->has_image) {
        return rc;
    }
    nt = jpip_siz_ntiles(&cs->siz);
    /* the tiles in the region's rows and columns only, in increasing t */
    jpip_view_tiles(plan->ix, view, &tr);
    for (ty = tr.ty0; ty < tr.ty1; ty++) {
        for (tx = tr.tx0; tx < tr.tx1; tx++) {
            t = ty * tr.ntx + tx;
            if (t >= nt || !jpip_view_tile_relevant(plan->ix, view, t)) {
                continue;
            }
            rc = add_tile(plan, view, t, err);
            if (rc != JPIP_OK) {
                return rc;
            }
        }
    }
    if (!plan->opts.jpt) {
        view_ctx_t c;

        c.p = plan;
        c.v = view;
        rc = jpip_view_precincts(plan->ix, view, add_precinct, &c, err);
    }
    plan->sorted = 0;
    return rc;
}

void jpip_plan_rewind(jpip_plan_t *plan)
{
    int ph, i;

    for (ph = 0; ph < PH_END; ph++) {
        for (i = 0; plan->ph[ph] != NULL && i < plan->ph[ph]->nelts; i++) {
            ent_t *e = &APR_ARRAY_IDX(plan->ph[ph], i, ent_t);
            e->pos = e->pos0;
            e->done = e->done0;
        }
    }
    plan->phase = PH_META_PRI;
    plan->layer = 0;
    plan->idx = 0;
    plan->used = 0;
    plan->len_stop = 0;
    jpip_jpp_writer_init(&plan->w);
}

/* Lowest resolutions first; otherwise keep the view's order. */
static int cmp_lev(const void *a, const void *b)
{
    const ent_t *x = a, *y = b;

    if (x->lev != y->lev) {
        return x->lev > y->lev ? -1 : 1;
    }
    return x->seq < y->seq ? -1 : (x->seq > y->seq);
}

/* Number of whole layers (or tile-parts) of e's bin inside [0, end). */
static apr_uint64_t layers_within(const jpip_index_t *ix, const ent_t *e, apr_uint64_t end)
{
    const apr_uint64_t *b = jpip_index_bounds(ix, e->bin);
    apr_uint64_t n = 0;

    while (n < e->bin->nbounds && b[n] <= end) {
        n++;
    }
    return n;
}

/* Make the message for bytes [e->pos, end) of e's bin, cut to the byte
 * budget. Returns 1 if a message was made, 0 if there was nothing to send,
 * -1 if the budget stops the response here. */
static int make_msg(jpip_plan_t *p, ent_t *e, apr_uint64_t end, int cuttable, jpip_msg_t *m)
{
    apr_uint64_t off = e->pos < e->lo ? e->lo : e->pos, len;
    unsigned cls = e->cls;
    int complete;
    apr_size_t hs;
    apr_uint64_t aux = 0;

    if (e->done || (off >= end && end != e->bin->len)) {
        return 0;
    }
    if (off > end) {
        off = end;
    }
    len = end - off;
    complete = end == e->bin->len;
    if (p->opts.extended && (cls == JPIP_CLASS_PRECINCT || cls == JPIP_CLASS_TILE)) {
        cls++;
    }
    if (cls == JPIP_CLASS_PRECINCT_EXT) {
        aux = layers_within(p->ix, e, end);
    }
    hs = jpip_jpp_header_size(&p->w, cls, e->csn, e->id, off, len, aux);
    if (p->opts.has_len && p->used + hs + len > p->opts.len) {
        apr_uint64_t avail = p->opts.len - p->used;

        if (!cuttable || p->opts.align || avail <= hs) {
            return -1;
        }
        len = avail - hs; /* the header only shrinks as len does */
        while (len > 0 &&
               jpip_jpp_header_size(&p->w, cls, e->csn, e->id, off, len, aux) + len > avail) {
            len--;
        }
        if (len == 0) {
            return -1;
        }
        complete = 0;
        if (cls == JPIP_CLASS_PRECINCT_EXT) {
            aux = layers_within(p->ix, e, off + len);
        }
        p->len_stop = 1;
    }
    m->cls = cls;
    m->csn = e->csn;
    m->id = e->id;
    m->off = off;
    m->len = len;
    m->complete = complete;
    m->bin = e->bin;
    m->hdr_len =
        (unsigned)jpip_jpp_header(&p->w, cls, e->csn, e->id, off, len, complete, aux, m->hdr);
    p->used += m->hdr_len + len;
    if (e->pos < off + len) {
        e->pos = off + len;
    }
    if (complete) {
        e->done = 1;
    }
    return 1;
}

jpip_code_t jpip_plan_next(jpip_plan_t *plan, jpip_msg_t *out, apr_size_t max, apr_size_t *n,
                           jpip_err_t *err)
{
    apr_size_t got = 0;

    if (!plan->sorted) {
        apr_array_header_t *a = plan->ph[PH_IMAGE];
        qsort(a->elts, (size_t)a->nelts, sizeof(ent_t), cmp_lev);
        plan->sorted = 1;
    }
    while (got < max && plan->phase < PH_END && !plan->len_stop) {
        apr_array_header_t *a = plan->ph[plan->phase];
        ent_t *e;
        apr_uint64_t end;
        int r;

        if (plan->idx >= a->nelts) {
            plan->idx = 0;
            if (plan->phase == PH_IMAGE && ++plan->layer < plan->nlayers) {
                continue;
            }
            plan->phase++;
            continue;
        }
        e = &APR_ARRAY_IDX(a, plan->idx, ent_t);
        if (plan->phase == PH_IMAGE) {
            if (plan->layer >= e->bin->nbounds || (e->maxl != 0 && plan->layer >= e->maxl)) {
                plan->idx++;
                continue;
            }
            end = jpip_index_bounds(plan->ix, e->bin)[plan->layer];
            if (plan->opts.whole_bins) {
                /* every layer the view wants, in one message */
                apr_uint32_t last = e->bin->nbounds;

                if (e->maxl != 0 && e->maxl < last) {
                    last = e->maxl;
                }
                end = jpip_index_bounds(plan->ix, e->bin)[last - 1];
            }
        } else {
            end = e->hi;
        }
        r = make_msg(plan, e, end, 1, &out[got]);
        if (r < 0) {
            plan->len_stop = 1;
            break;
        }
        got += (apr_size_t)r;
        if (!plan->len_stop) {
            plan->idx++;
        }
    }
    *n = got;
    return JPIP_OK;
}

unsigned jpip_plan_eor(const jpip_plan_t *plan)
{
    return plan->len_stop ? JPIP_EOR_BYTE_LIMIT : JPIP_EOR_WINDOW_DONE;
}

apr_uint64_t jpip_plan_bytes(const jpip_plan_t *plan)
{
    return plan->used;
}

apr_uint64_t jpip_plan_nbins(const jpip_plan_t *plan)
{
    return plan->nents;
}

jpip_code_t jpip_plan_pieces(const jpip_index_t *ix, const jpip_msg_t *msg, jpip_plan_emit_fn emit,
                             void *ctx, jpip_err_t *err)
{
    const jpip_piece_t *pc = jpip_index_pieces(ix, msg->bin);
    apr_uint64_t at = 0, lo = msg->off, hi = msg->off + msg->len;
    apr_uint32_t i;

    for (i = 0; i < msg->bin->npieces && at < hi; i++) {
        apr_uint64_t s = at, e = at + pc[i].len;

        at = e;
        if (e <= lo) {
            continue;
        }
        if (s < lo) {
            s = lo;
        }
        if (e > hi) {
            e = hi;
        }
        if (e > s) {
            jpip_code_t rc;
            apr_uint64_t skip = s - (at - pc[i].len);

            if (jpip_piece_is_synth(&pc[i])) {
                rc = emit(ctx, 0, e - s, jpip_index_synth(ix, &pc[i]) + skip, err);
            } else {
                rc = emit(ctx, pc[i].off + skip, e - s, NULL, err);
            }
            if (rc != JPIP_OK) {
                return rc;
            }
        }
    }
    return JPIP_OK;
}
