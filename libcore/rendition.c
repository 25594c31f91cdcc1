/* mod_jpip: renditions, precinct messages laid out ready to send. */
#include "rendition.h"

#include <string.h>

#include "jpp.h"

#define REND_MAGIC "JPIPRND1"
#define REND_VERSION 2u /* 2: the source identity and digest */
#define REND_ORDER 0x01020304u
#define REND_MAX_BINS (((apr_uint64_t)1) << 26)
#define REND_BUF (1024 * 1024)

typedef struct rhdr_t {
    char magic[8];
    apr_uint32_t version;
    apr_uint32_t order;
    apr_uint64_t src_size;
    apr_int64_t src_mtime;
    apr_uint64_t src_dev, src_ino;
    apr_int64_t src_mtime_ns, src_ctime_ns;
    unsigned char digest[24]; /* the index's (JPIP_INDEX_DIGEST_LEN used) */
    apr_uint64_t nbins;
    apr_uint64_t ix_size; /* bytes of the index blob it was made from */
    apr_uint64_t table_off;
    apr_uint64_t data_off;
    apr_uint64_t size; /* of the whole file */
} rhdr_t;

struct jpip_rend_t {
    const unsigned char *base;
    apr_uint64_t size;
    const apr_uint64_t *table;
    int rows;        /* jpip_rend_rows */
    unsigned max_nb; /* most bounds of a precinct bin */
};

/* Calls fn for every precinct bin of ix, in rendition order (see the
 * header): per codestream, from the most decomposition levels down, tile
 * by tile, component by component, precincts in raster order. */
typedef jpip_code_t (*visit_fn)(void *ctx, apr_uint64_t csn, apr_uint64_t id, const jpip_bin_t *bin,
                                jpip_err_t *err);

static jpip_code_t visit(const jpip_index_t *ix, visit_fn fn, void *ctx,
                         volatile apr_uint32_t *cancel, jpip_err_t *err)
{
    apr_uint64_t csn, ncs = jpip_index_ncs(ix);

    for (csn = 0; csn < ncs; csn++) {
        const jpip_ix_cs_t *cs = jpip_index_cs(ix, csn);
        apr_uint32_t nt = jpip_siz_ntiles(&cs->siz), t;
        unsigned lev = jpip_index_summary(ix, cs)->max_nl + 1;

        while (lev-- > 0) {
            for (t = 0; t < nt; t++) {
                unsigned c;

                if (cancel != NULL && *cancel != 0) {
                    return jpip_err_set(err, JPIP_E_LIMIT, "cancelled");
                }
                for (c = 0; c < cs->siz.csiz; c++) {
                    const jpip_ix_tc_t *tc = jpip_index_tc(ix, cs, t, c);
                    const jpip_tccp_t *tccp = jpip_index_tccp(ix, tc);
                    jpip_ix_res_t res;
                    apr_uint64_t s, n;
                    jpip_code_t rc;

                    if (lev > tccp->nl) {
                        continue;
                    }
                    rc = jpip_index_res(ix, cs, t, c, tccp->nl - lev, &res, err);
                    if (rc != JPIP_OK) {
                        return rc;
                    }
                    n = res.grid.npw * res.grid.nph;
                    for (s = res.s0; s < res.s0 + n; s++) {
                        const jpip_bin_t *bin = jpip_index_prec_bin(ix, tc, s);

                        rc = bin == NULL ? jpip_err_set(err, JPIP_E_FORMAT, "a precinct is missing")
                                         : fn(ctx, csn, t + (c + s * cs->siz.csiz) * nt, bin, err);
                        if (rc != JPIP_OK) {
                            return rc;
                        }
                    }
                }
            }
        }
    }
    return JPIP_OK;
}

/* The writer's state after another precinct message of csn: the state
 * in which the rendition's messages are what the plan would write. */
static void after_precinct(jpip_jpp_writer_t *w, apr_uint64_t csn)
{
    memset(w, 0, sizeof(*w));
    w->started = 1;
    w->cls = JPIP_CLASS_PRECINCT;
    w->csn = csn;
}

/* The header of the whole-bin message of (csn, id) in that state. Returns
 * its length. */
static apr_size_t msg_header(apr_uint64_t csn, apr_uint64_t id, const jpip_bin_t *bin,
                             unsigned char *out)
{
    jpip_jpp_writer_t w;

    after_precinct(&w, csn);
    return jpip_jpp_header(&w, JPIP_CLASS_PRECINCT, csn, id, 0, bin->len, 1, 0, out);
}

apr_uint64_t jpip_rend_msg_size(apr_uint64_t csn, apr_uint64_t id, const jpip_bin_t *bin)
{
    jpip_jpp_writer_t w;

    after_precinct(&w, csn);
    return jpip_jpp_header_size(&w, JPIP_CLASS_PRECINCT, csn, id, 0, bin->len, 0) + bin->len;
}

typedef struct layout_t {
    const jpip_index_t *ix;
    apr_uint64_t *table;
    apr_uint64_t at;
} layout_t;

static jpip_code_t place(void *vctx, apr_uint64_t csn, apr_uint64_t id, const jpip_bin_t *bin,
                         jpip_err_t *err)
{
    layout_t *l = vctx;

    (void)err;
    l->table[jpip_index_bin_no(l->ix, bin)] = l->at;
    l->at += jpip_rend_msg_size(csn, id, bin);
    return JPIP_OK;
}

/* The loader's walk: every message must be where the layout puts it. */
typedef struct check_t {
    const jpip_index_t *ix;
    jpip_rend_t *rd;
    apr_uint64_t at, n;
} check_t;

static jpip_code_t check_place(void *vctx, apr_uint64_t csn, apr_uint64_t id, const jpip_bin_t *bin,
                               jpip_err_t *err)
{
    check_t *k = vctx;

    if (k->rd->table[jpip_index_bin_no(k->ix, bin)] != k->at) {
        return jpip_err_set(err, JPIP_E_FORMAT, "rendition: a message is not where it belongs");
    }
    k->at += jpip_rend_msg_size(csn, id, bin);
    if (k->at > k->rd->size) {
        return jpip_err_set(err, JPIP_E_FORMAT, "rendition: a message lies outside the file");
    }
    k->n++;
    /* the plan's message for all of the bin's layers is this one */
    if (bin->nbounds == 0 || jpip_index_bounds(k->ix, bin)[bin->nbounds - 1] != bin->len) {
        k->rd->rows = 0;
    }
    if (bin->nbounds > k->rd->max_nb) {
        k->rd->max_nb = bin->nbounds;
    }
    return JPIP_OK;
}

typedef struct writer_t {
    const jpip_index_t *ix;
    jpip_src_t *src;
    apr_file_t *f;
} writer_t;

static jpip_code_t put(apr_file_t *f, const void *data, apr_size_t len, jpip_err_t *err)
{
    if (len > 0 && apr_file_write_full(f, data, len, NULL) != APR_SUCCESS) {
        return jpip_err_set(err, JPIP_E_IO, "cannot write the rendition");
    }
    return JPIP_OK;
}

static jpip_code_t emit(void *vctx, apr_uint64_t csn, apr_uint64_t id, const jpip_bin_t *bin,
                        jpip_err_t *err)
{
    writer_t *wr = vctx;
    const jpip_piece_t *pc = jpip_index_pieces(wr->ix, bin);
    unsigned char h[JPIP_JPP_HEADER_MAX];
    apr_uint32_t i;
    jpip_code_t rc = put(wr->f, h, msg_header(csn, id, bin, h), err);

    for (i = 0; i < bin->npieces && rc == JPIP_OK; i++) {
        apr_uint64_t off = pc[i].off, left = pc[i].len;

        if (jpip_piece_is_synth(&pc[i])) {
            rc = put(wr->f, jpip_index_synth(wr->ix, &pc[i]), (apr_size_t)left, err);
            continue;
        }
        /* read, never mapped: a target cut short meanwhile is an error */
        while (left > 0 && rc == JPIP_OK) {
            apr_size_t n = left > JPIP_SRC_PEEK_MAX ? JPIP_SRC_PEEK_MAX : (apr_size_t)left;
            const unsigned char *p;

            rc = jpip_src_peek(wr->src, off, n, &p, err);
            if (rc == JPIP_OK) {
                rc = put(wr->f, p, n, err);
            }
            off += n;
            left -= n;
        }
    }
    return rc;
}

jpip_code_t jpip_rend_write(const jpip_index_t *ix, jpip_src_t *src, apr_file_t *f,
                            volatile apr_uint32_t *cancel, jpip_err_t *err)
{
    apr_uint64_t nbins = jpip_index_nbins(ix), i;
    apr_pool_t *pool;
    rhdr_t h;
    layout_t l;
    writer_t wr;
    jpip_index_key_t key;
    jpip_code_t rc;

    if (nbins > REND_MAX_BINS) {
        return jpip_err_set(err, JPIP_E_LIMIT,
                            "%" APR_UINT64_T_FMT " data-bins are too many for a rendition", nbins);
    }
    if (apr_pool_create(&pool, NULL) != APR_SUCCESS) {
        return jpip_err_set(err, JPIP_E_NOMEM, "out of memory");
    }
    memset(&h, 0, sizeof(h));
    memcpy(h.magic, REND_MAGIC, sizeof(h.magic));
    h.version = REND_VERSION;
    h.order = REND_ORDER;
    jpip_index_key(ix, &key);
    h.src_size = key.size;
    h.src_mtime = key.mtime;
    h.src_dev = key.dev;
    h.src_ino = key.ino;
    h.src_mtime_ns = key.mtime_ns;
    h.src_ctime_ns = key.ctime_ns;
    memcpy(h.digest, key.digest, JPIP_INDEX_DIGEST_LEN);
    h.nbins = nbins;
    jpip_index_blob(ix, &h.ix_size);
    h.table_off = sizeof(h);
    h.data_off = h.table_off + nbins * sizeof(apr_uint64_t);
    l.ix = ix;
    l.table = apr_palloc(pool, (apr_size_t)(nbins * sizeof(apr_uint64_t)) + 1);
    for (i = 0; i < nbins; i++) {
        l.table[i] = JPIP_REND_NONE;
    }
    l.at = h.data_off;
    rc = visit(ix, place, &l, cancel, err);
    h.size = l.at;
    if (rc == JPIP_OK) {
        rc = put(f, &h, sizeof(h), err);
    }
    if (rc == JPIP_OK) {
        rc = put(f, l.table, (apr_size_t)(nbins * sizeof(apr_uint64_t)), err);
    }
    if (rc == JPIP_OK) {
        wr.ix = ix;
        wr.src = src;
        wr.f = f;
        apr_file_buffer_set(f, apr_palloc(pool, REND_BUF), REND_BUF);
        rc = visit(ix, emit, &wr, cancel, err);
        if (apr_file_flush(f) != APR_SUCCESS && rc == JPIP_OK) {
            rc = jpip_err_set(err, JPIP_E_IO, "cannot write the rendition");
        }
        apr_file_buffer_set(f, NULL, 0);
    }
    apr_pool_destroy(pool);
    return rc;
}

static jpip_code_t bad(jpip_err_t *err, const char *what)
{
    return jpip_err_set(err, JPIP_E_FORMAT, "rendition: %s", what);
}

jpip_code_t jpip_rend_load(jpip_rend_t **rd, apr_pool_t *pool, const jpip_index_t *ix,
                           const void *data, apr_size_t size, jpip_err_t *err)
{
    const rhdr_t *h = data;
    jpip_index_key_t key;
    jpip_rend_t *r;
    apr_size_t ixsize;
    apr_uint64_t nbins = jpip_index_nbins(ix), i;
    check_t k;
    jpip_code_t rc;

    if (size < sizeof(*h) || ((apr_uintptr_t)data & 7) != 0) {
        return bad(err, "too short");
    }
    if (memcmp(h->magic, REND_MAGIC, sizeof(h->magic)) != 0 || h->version != REND_VERSION ||
        h->order != REND_ORDER) {
        return bad(err, "not a rendition of this version and byte order");
    }
    jpip_index_key(ix, &key);
    jpip_index_blob(ix, &ixsize);
    if (h->src_size != key.size || h->src_mtime != key.mtime || h->src_dev != key.dev ||
        h->src_ino != key.ino || h->src_mtime_ns != key.mtime_ns ||
        h->src_ctime_ns != key.ctime_ns ||
        memcmp(h->digest, key.digest, JPIP_INDEX_DIGEST_LEN) != 0 || h->nbins != nbins ||
        h->ix_size != ixsize) {
        return bad(err, "made from another version of the target");
    }
    if (h->size != size || h->table_off != sizeof(*h) || nbins > REND_MAX_BINS ||
        h->data_off != h->table_off + nbins * sizeof(apr_uint64_t) || h->data_off > size) {
        return bad(err, "sizes do not add up");
    }
    r = apr_pcalloc(pool, sizeof(*r));
    r->base = data;
    r->size = size;
    r->table = (const apr_uint64_t *)((const unsigned char *)data + h->table_off);
    r->rows = 1;
    /* walk the layout the writer made: every precinct message where it
     * belongs, back to back up to the end of the file, no other entry */
    k.ix = ix;
    k.rd = r;
    k.at = h->data_off;
    k.n = 0;
    rc = visit(ix, check_place, &k, NULL, err);
    if (rc != JPIP_OK) {
        return rc;
    }
    if (k.at != size) {
        return bad(err, "the messages do not fill the file");
    }
    for (i = 0; i < nbins; i++) {
        k.n -= r->table[i] != JPIP_REND_NONE;
    }
    if (k.n != 0) {
        return bad(err, "the table has entries for bins that are not precincts");
    }
    *rd = r;
    return JPIP_OK;
}

const apr_uint64_t *jpip_rend_table(const jpip_rend_t *rd)
{
    return rd->table;
}

const unsigned char *jpip_rend_data(const jpip_rend_t *rd)
{
    return rd->base;
}

apr_uint64_t jpip_rend_size(const jpip_rend_t *rd)
{
    return rd->size;
}

int jpip_rend_rows(const jpip_rend_t *rd, unsigned *max_nb)
{
    *max_nb = rd->max_nb;
    return rd->rows;
}
