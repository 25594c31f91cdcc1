/* mod_jpip: planning a JPP/JPT response. */
#include "plan.h"

#include "tilepart.h"

#include <stdlib.h>
#include <string.h>

/* One data-bin (or, for metadata, one byte range of a bin) in the plan. */
typedef struct ent_t {
    const jpip_bin_t *bin;
    apr_uint64_t id;
    apr_uint64_t lo, hi; /* the bytes wanted */
    apr_uint64_t pos0;   /* bytes the client holds before the response */
    apr_uint64_t pos;    /* ... and after the messages produced so far */
    apr_uint64_t blen;   /* the bin's length and number of bounds, copied */
    apr_uint32_t nb;     /* here so that producing messages reads the entries in order only */
    apr_uint32_t csn;
    unsigned char cls;   /* base class (0, 2, 4, 6, 8) */
    unsigned char done0; /* the client holds the bin complete already */
    unsigned char done;
    apr_uint32_t maxl; /* precincts: layer limit (0: all) */
    /* a run: n > 1 neighbouring precincts sent whole from the rendition
     * (bins bin .. bin+n-1, ids id, id+step, ...), k of them produced */
    apr_uint32_t n, k;
    apr_uint64_t step;
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
    int rows;                 /* rows wanted whole may become runs */
    unsigned rows_nb;         /* ... when their layer limit is none or at least this */
    int last_bound_len;       /* jpip_index_last_bound_is_len */
    /* where messages of a metadata-bin end: after each box (plan.h) */
    struct meta_ends_t {
        apr_uint64_t id;
        const apr_uint64_t *ends;
        apr_size_t n;
    } * mends;
    apr_size_t nmends, capmends;
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
    return p->model != NULL ? jpip_model_held(p->model, p->opts.res, cls, csn, id) : 0;
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
    p->last_bound_len = jpip_index_last_bound_is_len(ix);
    if (p->opts.max_entries == 0) {
        p->opts.max_entries = (apr_uint64_t)1 << 24;
    }
    if (opts->rend != NULL && jpip_index_nbins(ix) > 0) {
        p->rtab = jpip_rend_table(opts->rend);
        p->bins0 = jpip_index_bin_at(ix, 0);
        /* runs are whole bins of the base class with no Aux, all their
         * layers in one message */
        p->rows = jpip_rend_rows(opts->rend, &p->rows_nb) && opts->whole_bins && !opts->jpt &&
                  !opts->extended;
    }
    jpip_plan_rewind(p);
    *plan = p;
    return JPIP_OK;
}

static jpip_code_t too_many(const jpip_plan_t *p, jpip_err_t *err)
{
    return jpip_err_limit(err, JPIP_LIMIT_BINS,
                          "the view involves more than %" APR_UINT64_T_FMT
                          " data-bins (ask for a smaller region or resolution)",
                          p->opts.max_entries);
}

/* Layer rounds of a bin: its bounds, and one more when bytes follow the
 * last bound (a packet the end of a truncated file cuts short: it goes
 * with the layer it belongs to). */
static apr_uint32_t rounds_of(const jpip_plan_t *p, const jpip_bin_t *bin)
{
    if (bin->nbounds == 0) {
        return bin->len > 0; /* (only image bins' rounds are looked at) */
    }
    if (p->last_bound_len) {
        return bin->nbounds;
    }
    return bin->nbounds + (bin->len > jpip_index_bounds(p->ix, bin)[bin->nbounds - 1]);
}

/* Append an entry for (cls, csn, id) wanting bytes [lo, hi) to list li,
 * of which the client holds h bytes. */
static jpip_code_t push_held(jpip_plan_t *p, int li, unsigned cls, apr_uint64_t csn,
                             apr_uint64_t id, const jpip_bin_t *bin, apr_uint64_t lo,
                             apr_uint64_t hi, apr_uint64_t h, ent_t **out, jpip_err_t *err)
{
    ent_t *e;

    if (p->nents >= p->opts.max_entries) {
        return too_many(p, err);
    }
    p->nents++;
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
    e->n = 1;
    e->k = 0;
    e->bin = bin;
    e->blen = bin->len;
    e->nb = rounds_of(p, bin);
    e->id = id;
    e->lo = lo;
    e->hi = hi;
    e->csn = (apr_uint32_t)csn;
    e->cls = (unsigned char)cls;
    e->done0 = h == JPIP_MODEL_COMPLETE;
    e->pos0 = e->done0 ? e->blen : (h > e->blen ? e->blen : h);
    e->pos = e->pos0;
    e->done = e->done0;
    if (out != NULL) {
        *out = e;
    }
    return JPIP_OK;
}

static jpip_code_t push(jpip_plan_t *p, int li, unsigned cls, apr_uint64_t csn, apr_uint64_t id,
                        const jpip_bin_t *bin, apr_uint64_t lo, apr_uint64_t hi, ent_t **out,
                        jpip_err_t *err)
{
    return push_held(p, li, cls, csn, id, bin, lo, hi, held(p, cls, csn, id), out, err);
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

jpip_code_t jpip_plan_meta_ends(jpip_plan_t *plan, apr_uint64_t id, const apr_uint64_t *ends,
                                apr_size_t n, jpip_err_t *err)
{
    (void)err;
    if (plan->nmends == plan->capmends) {
        apr_size_t cap = plan->capmends ? 2 * plan->capmends : 4;
        struct meta_ends_t *m = apr_palloc(plan->pool, cap * sizeof(*m));

        if (plan->nmends > 0) {
            memcpy(m, plan->mends, plan->nmends * sizeof(*m));
        }
        plan->mends = m;
        plan->capmends = cap;
    }
    plan->mends[plan->nmends].id = id;
    plan->mends[plan->nmends].ends = ends;
    plan->mends[plan->nmends].n = n;
    plan->nmends++;
    return JPIP_OK;
}

/* Where the next message of metadata entry e must end: at the end of the
 * box its first byte lies in, or at the end of the range. */
static apr_uint64_t meta_end(const jpip_plan_t *p, const ent_t *e)
{
    apr_uint64_t start = e->pos < e->lo ? e->lo : e->pos;
    apr_size_t i;

    for (i = 0; i < p->nmends; i++) {
        const struct meta_ends_t *m = &p->mends[i];
        apr_size_t lo = 0, hi = m->n;

        if (m->id != e->id) {
            continue;
        }
        while (lo < hi) { /* the first end beyond start */
            apr_size_t mid = lo + (hi - lo) / 2;

            if (m->ends[mid] <= start) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        return lo < m->n && m->ends[lo] < e->hi ? m->ends[lo] : e->hi;
    }
    return e->hi;
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

/* Precincts k .. k+n-1 of a row that the client lacks entirely, as one
 * run entry. */
static jpip_code_t add_run(view_ctx_t *c, const jpip_view_row_t *row, apr_uint32_t k,
                           apr_uint32_t n, jpip_err_t *err)
{
    jpip_plan_t *p = c->p;
    ent_t *e;
    jpip_code_t rc;

    if (n > p->opts.max_entries - p->nents) {
        return too_many(p, err);
    }
    p->nents += n - 1; /* push_held counts the first */
    rc = push_held(p, image_list(row->lev), JPIP_CLASS_PRECINCT, c->v->csn, row->id + k * row->step,
                   row->bin + k, 0, row->bin[k].len, 0, &e, err);
    if (rc == JPIP_OK) { /* runs come only with whole bins: no layer rounds to count */
        e->n = n;
        e->step = row->step;
    }
    return rc;
}

#define ROW_CHUNK 64 /* precincts of a row looked up in the model at a time */

/* A row of precincts: what the client lacks entirely goes in runs of
 * neighbours when the rendition can send them whole, the rest in an entry
 * per precinct. What the client holds is found with one walk over its
 * model per row. */
static jpip_code_t add_row(void *vctx, const jpip_view_row_t *row, jpip_err_t *err)
{
    view_ctx_t *c = vctx;
    jpip_plan_t *p = c->p;
    unsigned maxl = c->v->layers;
    int runs = p->rows && (maxl == 0 || maxl >= p->rows_nb);
    apr_uint64_t h[ROW_CHUNK];
    apr_uint32_t k0, k, n;
    jpip_code_t rc = JPIP_OK;

    for (k0 = 0; k0 < row->n && rc == JPIP_OK; k0 += n) {
        n = row->n - k0 < ROW_CHUNK ? row->n - k0 : ROW_CHUNK;
        if (p->model != NULL) {
            jpip_model_held_row(p->model, p->opts.res, JPIP_CLASS_PRECINCT, c->v->csn,
                                row->id + k0 * row->step, row->step, n, h);
        } else {
            memset(h, 0, n * sizeof(h[0]));
        }
        for (k = 0; k < n && rc == JPIP_OK;) {
            apr_uint32_t e = k + 1;
            ent_t *ent;

            while (runs && h[k] == 0 && e < n && h[e] == 0) {
                e++;
            }
            if (e - k > 1) {
                rc = add_run(c, row, k0 + k, e - k, err);
                k = e;
                continue;
            }
            rc = push_held(p, image_list(row->lev), JPIP_CLASS_PRECINCT, c->v->csn,
                           row->id + (k0 + k) * row->step, row->bin + k0 + k, 0,
                           row->bin[k0 + k].len, h[k], &ent, err);
            if (rc == JPIP_OK && ent != NULL) {
                ent->maxl = maxl;
                if (ent->nb > p->nlayers) {
                    p->nlayers = ent->nb;
                }
            }
            k++;
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
        apr_uint32_t need;

        rc = add_bin(plan, image_list(0), JPIP_CLASS_TILE, view->csn, t, &e, err);
        if (rc == JPIP_OK && e != NULL) {
            /* only the leading tile-parts the view needs (tilepart.h);
             * tile-parts take the place of layers in the rounds */
            rc = jpip_tileparts_needed(plan->ix, view, t, &need, err);
            if (rc == JPIP_OK && need < e->nb) {
                e->maxl = need;
            }
            if (e->nb > plan->nlayers) {
                plan->nlayers = e->nb;
            }
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
        rc = jpip_view_rows(plan->ix, view, add_row, &c, err);
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
                b->e[i].k = 0;
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

/* Whether the writer follows a precinct message of e's codestream: the
 * state in which the rendition's messages are what it would write. */
static int in_precinct_state(const jpip_plan_t *p, const ent_t *e)
{
    return p->w.started && p->w.cls == JPIP_CLASS_PRECINCT && p->w.csn == e->csn;
}

/* The messages of bins k .. k+cnt-1 (cnt > 1) of run e, as one range of the
 * rendition (the writer is in precinct state for e's codestream, so each
 * is the rendition's message, and they lie back to back). */
static void make_run(jpip_plan_t *p, ent_t *e, apr_uint32_t cnt, jpip_msg_t *m)
{
    const jpip_bin_t *first = e->bin + e->k, *last = first + cnt - 1;
    apr_uint64_t lo = p->rtab[first - p->bins0];
    apr_uint64_t hi = p->rtab[last - p->bins0] +
                      jpip_rend_msg_size(e->csn, e->id + (e->k + cnt - 1) * e->step, last);

    m->cls = JPIP_CLASS_PRECINCT;
    m->csn = e->csn;
    m->id = e->id + e->k * e->step;
    m->off = 0;
    m->len = hi - lo;
    m->complete = 1;
    m->layers = 0;
    m->bin = first;
    m->rend_off = lo;
    m->count = cnt;
    m->step = e->step;
    m->hdr_len = 0;
    p->used += hi - lo;
    e->k += cnt;
}

/* Make the message for bytes [e->pos, end) of e's bin, cut to the byte
 * budget; end is the end of the bin's first lay layers (0: of none
 * known). Returns 1 if a message was made, 0 if there was nothing to send,
 * -1 if the budget stops the response here. */
static int make_msg(jpip_plan_t *p, ent_t *e, apr_uint64_t end, unsigned lay, int cuttable,
                    jpip_msg_t *m)
{
    apr_uint64_t off = e->pos < e->lo ? e->lo : e->pos, len;
    unsigned cls = e->cls;
    int complete;
    apr_size_t hs;
    apr_uint64_t aux = 0;

    if (e->done || (off >= end && end != e->blen)) {
        return 0;
    }
    if (off > end) {
        off = end;
    }
    len = end - off;
    complete = end == e->blen;
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
        lay = 0; /* inside a layer (or, rarely, at the end of one: bytes then) */
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
    m->layers = e->cls == JPIP_CLASS_PRECINCT && !complete ? lay : 0;
    m->bin = e->bin;
    m->count = 1;
    m->step = 0;
    m->rend_off = JPIP_REND_NONE;
    if (p->rtab != NULL && cls == JPIP_CLASS_PRECINCT && off == 0 && complete &&
        in_precinct_state(p, e)) {
        /* the rendition holds this very message, header included (its
         * place in the file was checked when it was loaded) */
        apr_uint64_t ro = p->rtab[e->bin - p->bins0];

        if (ro != JPIP_REND_NONE) {
            if (!p->opts.has_len) { /* else it was sized above, uncut */
                hs = jpip_jpp_header_size(&p->w, cls, e->csn, e->id, 0, len, 0);
            }
            m->rend_off = ro;
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

/* The next message of run e: a bin alone when the writer is not yet in
 * precinct state (made like any other whole bin, which puts it in that
 * state) or when only one fits, else as many of the rest as room allows. */
static void run_next(jpip_plan_t *p, ent_t *e, apr_size_t room, jpip_msg_t *m)
{
    if (!in_precinct_state(p, e) || room == 1 || e->n - e->k == 1) {
        ent_t one = *e;

        one.bin = e->bin + e->k;
        one.id = e->id + e->k * e->step;
        one.blen = one.hi = one.bin->len;
        one.nb = one.bin->nbounds;
        one.n = 1;
        make_msg(p, &one, one.blen, 0, 0, m); /* never cut: no len with runs */
        e->k++;
        return;
    }
    make_run(p, e, e->n - e->k < room ? e->n - e->k : (apr_uint32_t)room, m);
}

jpip_code_t jpip_plan_next(jpip_plan_t *plan, jpip_msg_t *out, apr_size_t max, apr_size_t *n,
                           jpip_err_t *err)
{
    apr_size_t got = 0, nrec = 0;
    ent_t *e;

    (void)err;
    while (got < max && !plan->len_stop && (e = cursor(plan)) != NULL) {
        apr_uint64_t end;
        unsigned lay = 0;
        int r;

        if (e->n > 1) {
            run_next(plan, e, max - got, &out[nrec]);
            got += out[nrec++].count;
            if (e->k == e->n) {
                plan->bi++;
            }
            continue;
        }
        if (plan->li >= L_IMAGE0 && plan->li < L_IMAGE0 + NLEV) {
            apr_uint32_t last = plan->layer + 1;

            if (plan->layer >= e->nb || (e->maxl != 0 && plan->layer >= e->maxl)) {
                plan->bi++;
                continue;
            }
            if (plan->opts.whole_bins) {
                /* every layer the view wants, in one message */
                last = e->maxl != 0 && e->maxl < e->nb ? e->maxl : e->nb;
            }
            /* all of the bin: its length, no need to read its bounds (nor
             * when the last round is the bytes after them) */
            if ((last == e->nb && plan->last_bound_len) || last > e->bin->nbounds) {
                end = e->blen;
            } else {
                end = jpip_index_bounds(plan->ix, e->bin)[last - 1];
                lay = last;
            }
        } else if (e->cls == JPIP_CLASS_META) {
            end = meta_end(plan, e);
        } else {
            end = e->hi;
        }
        r = make_msg(plan, e, end, lay, 1, &out[nrec]);
        if (r < 0) {
            plan->len_stop = 1;
            break;
        }
        got += (apr_size_t)r;
        nrec += (apr_size_t)r;
        /* a metadata range goes out a box at a time */
        if (!plan->len_stop && !(r > 0 && e->cls == JPIP_CLASS_META && e->pos < e->hi)) {
            plan->bi++;
        }
    }
    *n = nrec;
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
