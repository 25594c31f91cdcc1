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
    unsigned char done0; /* the client holds the bin complete already */
    unsigned char done;
    apr_uint32_t maxl; /* precincts: layer limit (0: all) */
} ent_t;

/* Image data is kept in one list per level below full resolution, sent
 * from the most levels down: the lowest resolutions first, each level in
 * the view's order, with no sort. The response walks the lists in order:
 * metadata first, main and tile headers, the image levels (once per layer
 * round), then metadata without priority. */
#define NLEV 34 /* levels: 0 .. 32 decomposition levels, and more clamped */
#define L_META_PRI 0
#define L_MAIN 1
#define L_TILEHDR 2
#define L_IMAGE0 3 /* L_IMAGE0 + k holds level NLEV - 1 - k */
#define L_META (L_IMAGE0 + NLEV)
#define L_END (L_META + 1)

/* Entries live in fixed blocks chained in a list: appending never moves or
 * clears what is there, so a view of many bins costs no copies. */
#define BLOCK 128
typedef struct blk_t {
    struct blk_t *next;
    apr_size_t n;
    ent_t e[BLOCK];
} blk_t;

typedef struct elist_t {
    blk_t *head, *tail;
} elist_t;

struct jpip_plan_t {
    apr_pool_t *pool;
    const jpip_index_t *ix;
    const jpip_model_t *model;
    jpip_plan_opts_t opts;
    elist_t list[L_END];
    unsigned nlayers; /* rounds of the image phase */
    /* cursor */
    int li;         /* list */
    blk_t *blk;     /* block in it (NULL: at its start) */
    apr_size_t bi;  /* entry in the block */
    unsigned layer; /* image round */
    jpip_jpp_writer_t w;
    apr_uint64_t used;
    int len_stop;
    apr_uint64_t nents;
    /* the rendition, looked up once */
    const apr_uint64_t *rtab; /* by bin number, or NULL */
    const jpip_bin_t *bins0;  /* bin number 0 */
    apr_uint64_t rsize;
};

static ent_t *list_push(apr_pool_t *pool, elist_t *l)
{
    if (l->tail == NULL || l->tail->n == BLOCK) {
        blk_t *b = apr_palloc(pool, sizeof(*b));
        b->next = NULL;
        b->n = 0;
        if (l->tail != NULL) {
            l->tail->next = b;
        } else {
            l->head = b;
        }
        l->tail = b;
    }
    return &l->tail->e[l->tail->n++];
}

/* The list of image data lev levels below full resolution. */
static int image_list(unsigned lev)
{
    return L_IMAGE0 + NLEV - 1 - (int)(lev < NLEV ? lev : NLEV - 1);
}

static apr_uint64_t held(const jpip_plan_t *p, unsigned cls, apr_uint64_t csn, apr_uint64_t id)
{
    return p->model != NULL ? jpip_model_held(p->model, cls, csn, id) : 0;
}

jpip_code_t jpip_plan_create(jpip_plan_t **plan, apr_pool_t *pool, const jpip_index_t *ix,
                             const jpip_model_t *model, const jpip_plan_opts_t *opts,
                             jpip_err_t *err)
{
    jpip_plan_t *p = apr_pcalloc(pool, sizeof(*p));

    p->pool = pool;
    p->ix = ix;
    p->model = model;
    p->opts = *opts;
    if (p->opts.max_entries == 0) {
        p->opts.max_entries = (apr_uint64_t)1 << 24;
    }
    if (opts->rend != NULL && jpip_index_nbins(ix) > 0) {
        p->rtab = jpip_rend_table(opts->rend);
        p->bins0 = jpip_index_bin_at(ix, 0);
        p->rsize = jpip_rend_size(opts->rend);
    }
    jpip_plan_rewind(p);
    *plan = p;
    return JPIP_OK;
}

/* Append an entry for (cls, csn, id) wanting bytes [lo, hi) to list li. */
static jpip_code_t push(jpip_plan_t *p, int li, unsigned cls, apr_uint64_t csn, apr_uint64_t id,
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
    if (out != NULL) {
        *out = NULL;
    }
    if (h == JPIP_MODEL_COMPLETE && li != L_META_PRI && li != L_META) {
        /* the client holds the whole bin: nothing of it will be sent, so
         * it takes no room (a session's plan stays the size of what is
         * new). Metadata ranges are kept: later ranges are trimmed
         * against them. */
        return JPIP_OK;
    }
    e = list_push(p->pool, &p->list[li]);
    e->maxl = 0;
    e->bin = bin;
    e->id = id;
    e->lo = lo;
    e->hi = hi;
    e->csn = (apr_uint32_t)csn;
    e->cls = (unsigned char)cls;
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
    int li;
    jpip_code_t rc = jpip_index_bin(plan->ix, JPIP_CLASS_META, 0, id, &bin, err);

    if (rc != JPIP_OK) {
        return rc;
    }
    if (off > bin->len) {
        off = bin->len;
    }
    hi = len > bin->len - off ? bin->len : off + len;
    /* trim against ranges of this bin already planned */
    for (li = L_META_PRI; li < L_END; li += L_META - L_META_PRI) {
        const blk_t *b;
        apr_size_t i;

        for (b = plan->list[li].head; b != NULL; b = b->next) {
            for (i = 0; i < b->n; i++) {
                const ent_t *e = &b->e[i];
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
    }
    if (off >= hi && !(hi == bin->len && off == hi)) {
        return JPIP_OK;
    }
    return push(plan, priority ? L_META_PRI : L_META, JPIP_CLASS_META, 0, id, bin, off, hi, NULL,
                err);
}

static jpip_code_t add_bin(jpip_plan_t *p, int li, unsigned cls, apr_uint64_t csn, apr_uint64_t id,
                           ent_t **out, jpip_err_t *err)
{
    const jpip_bin_t *bin;
    jpip_code_t rc = jpip_index_bin(p->ix, cls, csn, id, &bin, err);

    if (rc != JPIP_OK) {
        return rc;
    }
    return push(p, li, cls, csn, id, bin, 0, bin->len, out, err);
}

typedef struct view_ctx_t {
    jpip_plan_t *p;
    const jpip_view_t *v;
} view_ctx_t;

static jpip_code_t add_precinct(void *vctx, const jpip_view_prec_t *pr, jpip_err_t *err)
{
    view_ctx_t *c = vctx;
    ent_t *e;
    jpip_code_t rc = push(c->p, image_list(pr->lev), JPIP_CLASS_PRECINCT, c->v->csn, pr->id,
                          pr->bin, 0, pr->bin->len, &e, err);

    if (rc == JPIP_OK && e != NULL) {
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
        rc = add_bin(plan, image_list(0), JPIP_CLASS_TILE, view->csn, t, &e, err);
        if (rc == JPIP_OK && e != NULL && e->bin->nbounds > plan->nlayers) {
            plan->nlayers = e->bin->nbounds;
        }
        return rc;
    }
    return add_bin(plan, L_TILEHDR, JPIP_CLASS_TILEHDR, view->csn, t, NULL, err);
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
    rc = add_bin(plan, L_MAIN, JPIP_CLASS_MAIN, view->csn, 0, NULL, err);
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
    return rc;
}

void jpip_plan_rewind(jpip_plan_t *plan)
{
    int li;

    for (li = 0; li < L_END; li++) {
        blk_t *b;
        apr_size_t i;

        for (b = plan->list[li].head; b != NULL; b = b->next) {
            for (i = 0; i < b->n; i++) {
                b->e[i].pos = b->e[i].pos0;
                b->e[i].done = b->e[i].done0;
            }
        }
    }
    plan->li = L_META_PRI;
    plan->blk = NULL;
    plan->bi = 0;
    plan->layer = 0;
    plan->used = 0;
    plan->len_stop = 0;
    jpip_jpp_writer_init(&plan->w);
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
    /* the header's size matters only against a byte limit */
    hs = p->opts.has_len ? jpip_jpp_header_size(&p->w, cls, e->csn, e->id, off, len, aux) : 0;
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
    m->rend_off = JPIP_REND_NONE;
    if (p->rtab != NULL && cls == JPIP_CLASS_PRECINCT && off == 0 && complete && p->w.started &&
        p->w.cls == cls && p->w.csn == e->csn) {
        /* the rendition holds this very message, header included */
        apr_uint64_t ro = p->rtab[e->bin - p->bins0];

        if (ro != JPIP_REND_NONE) {
            if (!p->opts.has_len) { /* else it was sized above, uncut */
                hs = jpip_jpp_header_size(&p->w, cls, e->csn, e->id, 0, len, 0);
            }
            if (hs + len <= p->rsize - ro) {
                m->rend_off = ro;
            }
        }
    }
    if (m->rend_off != JPIP_REND_NONE) {
        m->hdr_len = (unsigned)hs; /* the writer's state is unchanged */
    } else {
        m->hdr_len =
            (unsigned)jpip_jpp_header(&p->w, cls, e->csn, e->id, off, len, complete, aux, m->hdr);
    }
    p->used += m->hdr_len + len;
    if (e->pos < off + len) {
        e->pos = off + len;
    }
    if (complete) {
        e->done = 1;
    }
    return 1;
}

/* The entry under the cursor, moving to the next list (and, after the
 * last image level, to the next layer round) as lists end; NULL at the
 * end of the plan. */
static ent_t *cursor(jpip_plan_t *p)
{
    for (;;) {
        if (p->li >= L_END) {
            return NULL;
        }
        if (p->blk == NULL) {
            p->blk = p->list[p->li].head;
            p->bi = 0;
        }
        while (p->blk != NULL && p->bi >= p->blk->n) {
            p->blk = p->blk->next;
            p->bi = 0;
        }
        if (p->blk != NULL) {
            return &p->blk->e[p->bi];
        }
        p->li++;
        /* a layer per round; whole bins went out in the first */
        if (p->li == L_IMAGE0 + NLEV && !p->opts.whole_bins && ++p->layer < p->nlayers) {
            p->li = L_IMAGE0;
        }
    }
}

jpip_code_t jpip_plan_next(jpip_plan_t *plan, jpip_msg_t *out, apr_size_t max, apr_size_t *n,
                           jpip_err_t *err)
{
    apr_size_t got = 0;
    ent_t *e;

    (void)err;
    while (got < max && !plan->len_stop && (e = cursor(plan)) != NULL) {
        apr_uint64_t end;
        int r;

        if (plan->li >= L_IMAGE0 && plan->li < L_IMAGE0 + NLEV) {
            const apr_uint64_t *bounds = jpip_index_bounds(plan->ix, e->bin);

            if (plan->layer >= e->bin->nbounds || (e->maxl != 0 && plan->layer >= e->maxl)) {
                plan->bi++;
                continue;
            }
            end = bounds[plan->layer];
            if (plan->opts.whole_bins) {
                /* every layer the view wants, in one message */
                apr_uint32_t last = e->bin->nbounds;

                if (e->maxl != 0 && e->maxl < last) {
                    last = e->maxl;
                }
                end = bounds[last - 1];
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
            plan->bi++;
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

    if (msg->bin->npieces == 1 && hi <= pc[0].len) {
        /* most bins are one range of the file */
        if (msg->len == 0) {
            return JPIP_OK;
        }
        if (jpip_piece_is_synth(&pc[0])) {
            return emit(ctx, 0, msg->len, jpip_index_synth(ix, &pc[0]) + lo, err);
        }
        return emit(ctx, pc[0].off + lo, msg->len, NULL, err);
    }

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
