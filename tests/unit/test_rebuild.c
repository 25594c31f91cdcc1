/* mod_jpip: unit tests for codestream reconstruction (libcore/rebuild.c).
 *
 * The bins come from a small indexer written here on top of codestream.h,
 * packets.h and t2.h (the server's index.h is tested on its own): every
 * precinct bin is the concatenation of its packets, headers put back in
 * front of their bodies when PPM/PPT pack them. The rebuilt codestream
 * and the original are decoded with opj_decompress and must give the same
 * samples, whole, at reduced resolution and with fewer layers.
 */
#include <check.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <apr_general.h>
#include <apr_hash.h>
#include <apr_pools.h>
#include <apr_strings.h>

#include "codestream.h"
#include "index.h"
#include "packets.h"
#include "rebuild.h"
#include "t2.h"
#include "testutil.h"

static apr_pool_t *pool;

static void setup(void)
{
    apr_pool_create(&pool, NULL);
}

static void teardown(void)
{
    apr_pool_destroy(pool);
}

/* ------------------------------------------------- a test bin store */

#define TB_MAX_BOUNDS 64

typedef struct tbin_t {
    unsigned char *d;
    apr_size_t n, cap;
    apr_size_t cut; /* bytes served (n unless truncated) */
    int complete;
    apr_size_t bound[TB_MAX_BOUNDS]; /* end of each packet (precinct bins) */
    unsigned nbound;
} tbin_t;

typedef struct tkey_t {
    apr_uint64_t cls;
    apr_uint64_t id;
} tkey_t;

typedef struct tstore_t {
    apr_pool_t *pool;
    apr_hash_t *bins;
    const unsigned char *file;
    unsigned nl_max; /* largest NL over tile-components */
    unsigned layers;
    int gets_absent;
} tstore_t;

static tbin_t *tbin(tstore_t *st, unsigned cls, apr_uint64_t id, int create)
{
    tkey_t k, *kp;
    tbin_t *b;

    memset(&k, 0, sizeof(k));
    k.cls = cls;
    k.id = id;
    b = apr_hash_get(st->bins, &k, sizeof(k));
    if (b == NULL && create) {
        kp = apr_pmemdup(st->pool, &k, sizeof(k));
        b = apr_pcalloc(st->pool, sizeof(*b));
        apr_hash_set(st->bins, kp, sizeof(*kp), b);
    }
    return b;
}

static void tbin_put(tbin_t *b, const unsigned char *d, apr_size_t n)
{
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->d = realloc(b->d, b->cap);
        ck_assert_ptr_nonnull(b->d);
    }
    memcpy(b->d + b->n, d, n);
    b->n += n;
    b->cut = b->n;
}

static apr_status_t tstore_cleanup(void *data)
{
    tstore_t *st = data;
    apr_hash_index_t *hi;

    for (hi = apr_hash_first(NULL, st->bins); hi != NULL; hi = apr_hash_next(hi)) {
        tbin_t *b = apr_hash_this_val(hi);
        free(b->d);
    }
    return APR_SUCCESS;
}

static jpip_code_t tstore_get(void *ctx, unsigned cls, apr_uint64_t csn, apr_uint64_t id,
                              const unsigned char **data, apr_size_t *len, int *complete,
                              jpip_err_t *err)
{
    tstore_t *st = ctx;
    tbin_t *b = tbin(st, cls, id, 0);

    ck_assert_uint_eq(csn, 0);
    if (b == NULL) {
        st->gets_absent++;
        return jpip_err_set(err, JPIP_E_NOTFOUND, "no bin %u/%" APR_UINT64_T_FMT, cls, id);
    }
    *data = b->d != NULL ? b->d : (const unsigned char *)"";
    *len = b->cut;
    *complete = b->complete && b->cut == b->n;
    return JPIP_OK;
}

typedef struct emit_ctx_t {
    tbin_t *bin;
    const unsigned char *file;
} emit_ctx_t;

static jpip_code_t emit_append(void *ctx, apr_uint64_t off, apr_uint64_t len, jpip_err_t *err)
{
    emit_ctx_t *e = ctx;

    (void)err;
    tbin_put(e->bin, e->file + off, (apr_size_t)len);
    return JPIP_OK;
}

/* Index a raw codestream held in memory into st. A codestream the
 * codestream parser refuses gives that error (nothing else is checked
 * here); everything after it must succeed. */
static jpip_code_t tstore_index(tstore_t *st, const unsigned char *data, apr_size_t len,
                                const char *name)
{
    jpip_src_t *src;
    jpip_cs_t *cs;
    jpip_err_t err;
    apr_uint32_t t, nt;
    tbin_t *mb;
    jpip_code_t rc;

    st->file = data;
    ck_assert_int_eq(jpip_src_open_mem(&src, pool, data, len, &err), JPIP_OK);
    rc = jpip_cs_parse(&cs, pool, src, NULL, &err);
    if (rc != JPIP_OK) {
        tu_skip(name, apr_psprintf(pool, "the codestream parser refuses it: %s", err.msg));
        return rc;
    }
    mb = tbin(st, JPIP_CLASS_MAIN, 0, 1);
    tbin_put(mb, data, (apr_size_t)cs->main_end);
    mb->complete = 1;
    nt = jpip_siz_ntiles(&cs->siz);
    for (t = 0; t < nt; t++) {
        jpip_tile_t *tile;
        jpip_tlayout_t *lay;
        jpip_pkt_t *pkts;
        apr_size_t npkts, i;
        jpip_t2_prec_t **precs;
        jpip_t2_stream_t body, hdr, *hs;
        tbin_t *tb;
        unsigned c;

        rc = jpip_cs_tile_read(cs, src, t, pool, &tile, &err);
        ck_assert_msg(rc == JPIP_OK, "tile_read %u: %s", t, err.msg);
        tb = tbin(st, JPIP_CLASS_TILEHDR, t, 1);
        for (i = 0; i < tile->nsegs; i++) {
            tbin_put(tb, data + tile->segs[i].off, (apr_size_t)tile->segs[i].len);
        }
        tb->complete = 1;
        st->layers = tile->tcp.layers > st->layers ? tile->tcp.layers : st->layers;
        for (c = 0; c < cs->siz.csiz; c++) {
            if (tile->tcp.tccp[c].nl > st->nl_max) {
                st->nl_max = tile->tcp.tccp[c].nl;
            }
        }
        rc = jpip_tlayout_build(&lay, pool, &cs->siz, cs->comps, t, &tile->tcp, 0, &err);
        ck_assert_msg(rc == JPIP_OK, "layout %u: %s", t, err.msg);
        rc = jpip_packets_list(lay, &tile->tcp, pool, 0, &pkts, &npkts, &err);
        ck_assert_msg(rc == JPIP_OK, "packets %u: %s", t, err.msg);
        precs = apr_pcalloc(pool, (apr_size_t)(lay->nprec_total + 1) * sizeof(*precs));
        jpip_t2_stream_init(&body, src, tile->bodies, tile->nbodies);
        hs = &body;
        if (tile->nppt > 0) {
            jpip_t2_stream_init(&hdr, src, tile->ppt, tile->nppt);
            hs = &hdr;
        } else if (tile->nppm > 0) {
            jpip_t2_stream_init(&hdr, src, tile->ppm, tile->nppm);
            hs = &hdr;
        }
        for (i = 0; i < npkts; i++) {
            const jpip_pkt_t *k = &pkts[i];
            apr_uint64_t flat = jpip_pkt_flat(lay, k);
            apr_uint64_t s = jpip_pkt_seq_s(lay, k);
            apr_uint64_t id = jpip_prec_bin_id(t, k->comp, s, cs->siz.csiz, nt);
            emit_ctx_t e;
            jpip_t2_packet_t pk;
            unsigned char two[2];
            apr_size_t got;

            e.bin = tbin(st, JPIP_CLASS_PRECINCT, id, 1);
            e.file = data;
            if (precs[flat] == NULL) {
                const jpip_tres_t *tr = &lay->res[k->comp][k->res];
                jpip_t2_geom_t g;
                rc = jpip_geom_prec_cblks(&lay->tc[k->comp], &tile->tcp.tccp[k->comp], k->res,
                                          k->prec % tr->grid.npw, k->prec / tr->grid.npw, &g, &err);
                ck_assert_msg(rc == JPIP_OK, "geom: %s", err.msg);
                rc = jpip_t2_prec_create(&precs[flat], pool, &g, tile->tcp.tccp[k->comp].cblksty,
                                         &err);
                ck_assert_msg(rc == JPIP_OK, "prec: %s", err.msg);
            }
            ck_assert_int_eq(jpip_t2_stream_peek(&body, two, 2, &got, &err), JPIP_OK);
            if (got == 2 && two[0] == 0xFF && two[1] == 0x91) {
                ck_assert_int_eq(jpip_t2_stream_skip(&body, 6, emit_append, &e, &err), JPIP_OK);
            }
            rc = jpip_t2_read_header(precs[flat], k->layer, hs,
                                     (tile->tcp.scod & JPIP_SCOD_EPH) != 0, &pk, &err);
            ck_assert_msg(rc == JPIP_OK, "tile %u packet %zu (l%u r%u c%u p%llu): %s", t, i,
                          k->layer, k->res, k->comp, (unsigned long long)k->prec, err.msg);
            ck_assert_int_eq(jpip_t2_stream_skip(hs, pk.header_len, emit_append, &e, &err),
                             JPIP_OK);
            rc = jpip_t2_stream_skip(&body, pk.body_len, emit_append, &e, &err);
            ck_assert_msg(rc == JPIP_OK, "body: %s", err.msg);
            if (e.bin->nbound < TB_MAX_BOUNDS) {
                e.bin->bound[e.bin->nbound++] = e.bin->n;
            }
            e.bin->complete = 1;
        }
    }
    return JPIP_OK;
}

static tstore_t *tstore_new(void)
{
    tstore_t *st = apr_pcalloc(pool, sizeof(*st));

    st->pool = pool;
    st->bins = apr_hash_make(pool);
    apr_pool_cleanup_register(pool, st, tstore_cleanup, apr_pool_cleanup_null);
    return st;
}

static jpip_binsrc_t tstore_src(tstore_t *st)
{
    jpip_binsrc_t b;

    b.ctx = st;
    b.get = tstore_get;
    return b;
}

/* ------------------------------------- bins from the server's index */

typedef struct ixsrc_t {
    const jpip_index_t *ix;
    const unsigned char *file;
} ixsrc_t;

static jpip_code_t ixsrc_get(void *ctx, unsigned cls, apr_uint64_t csn, apr_uint64_t id,
                             const unsigned char **data, apr_size_t *len, int *complete,
                             jpip_err_t *err)
{
    ixsrc_t *x = ctx;
    const jpip_bin_t *bin;
    unsigned char *buf;
    jpip_code_t rc = jpip_index_bin(x->ix, cls, csn, id, &bin, err);

    if (rc != JPIP_OK) {
        return rc;
    }
    buf = apr_palloc(pool, (apr_size_t)bin->len + 1);
    jpip_index_bin_copy(x->ix, bin, x->file, buf);
    *data = buf;
    *len = (apr_size_t)bin->len;
    *complete = (bin->flags & JPIP_BIN_COMPLETE) != 0;
    return JPIP_OK;
}

/* Rebuild from libcore's own index; must equal the rebuild from the test
 * store byte for byte. */
static void check_index_agrees(const unsigned char *data, apr_size_t len, const unsigned char *re,
                               apr_size_t rlen, const char *what)
{
    jpip_src_t *src;
    jpip_index_t *ix;
    ixsrc_t x;
    jpip_binsrc_t bs;
    jpip_rebuild_opts_t o;
    unsigned char *out;
    apr_size_t olen;
    jpip_err_t err;
    jpip_code_t rc;

    ck_assert_int_eq(jpip_src_open_mem(&src, pool, data, len, &err), JPIP_OK);
    rc = jpip_index_build(&ix, pool, src, NULL, NULL, &err);
    ck_assert_msg(rc == JPIP_OK, "%s: index: %s", what, err.msg);
    x.ix = ix;
    x.file = data;
    bs.ctx = &x;
    bs.get = ixsrc_get;
    jpip_rebuild_opts_init(&o);
    rc = jpip_rebuild_mem(&bs, &o, pool, &out, &olen, NULL, &err);
    ck_assert_msg(rc == JPIP_OK, "%s: rebuild from the index: %s", what, err.msg);
    ck_assert_msg(olen == rlen && memcmp(out, re, rlen) == 0,
                  "%s: rebuild from index.h bins differs from the test indexer's", what);
}

/* ------------------------------------------------------------ helpers */

static char *tpath(const char *name)
{
    return apr_psprintf(pool, "%s/%s", tu_tmpdir(), name);
}

static int opj_available(void)
{
    return tu_run("(command -v '%s' && command -v '%s')", tu_opj_compress(), tu_opj_decompress()) ==
           0;
}

/* Decode a codestream file with opj_decompress to PGX (one file per
 * component, any depth and sub-sampling) and return all components'
 * files concatenated (pool), or NULL if it cannot be decoded. */
static unsigned char *decode_raw(const char *j2k, const char *opts, apr_size_t *len)
{
    /* decode into this test's own directory: never beside the input,
     * which may be the shared corpus (and other runs may be using it) */
    static unsigned serial;
    const char *slash = strrchr(j2k, '/');
    char *base = tpath(apr_psprintf(pool, "%s.dec%u", slash != NULL ? slash + 1 : j2k, serial++));
    unsigned char *all = NULL;
    apr_size_t n = 0;
    unsigned c;

    if (tu_run("rm -f '%s'_*.pgx && '%s' -i '%s' -o '%s.pgx' %s", base, tu_opj_decompress(), j2k,
               base, opts) != 0) {
        return NULL;
    }
    for (c = 0;; c++) {
        char *f = apr_psprintf(pool, "%s_%u.pgx", base, c);
        apr_size_t fl;
        unsigned char *d = tu_read_file(pool, f, &fl);
        unsigned char *nall;

        if (d == NULL) {
            break;
        }
        unlink(f);
        nall = apr_palloc(pool, n + fl + 1);
        if (n > 0) {
            memcpy(nall, all, n);
        }
        memcpy(nall + n, d, fl);
        all = nall;
        n += fl;
    }
    *len = n;
    return c > 0 ? all : NULL;
}

static void assert_same_decode(const char *a, const char *aopts, const char *b, const char *bopts,
                               const char *what)
{
    apr_size_t na = 0, nb = 0;
    unsigned char *da = decode_raw(a, aopts, &na);
    unsigned char *db = decode_raw(b, bopts, &nb);

    if (da == NULL) {
        tu_skip(what, apr_psprintf(pool, "opj_decompress %s cannot decode the original", aopts));
        return;
    }
    ck_assert_msg(db != NULL, "%s: opj_decompress %s failed on the rebuilt codestream", what,
                  bopts);
    ck_assert_msg(na == nb && memcmp(da, db, na) == 0,
                  "%s: decoded samples differ (%zu vs %zu bytes)", what, na, nb);
}

static unsigned char *rebuild(tstore_t *st, unsigned reduce, unsigned max_layers, apr_size_t *len,
                              jpip_rebuild_stats_t *stats)
{
    jpip_binsrc_t bs = tstore_src(st);
    jpip_rebuild_opts_t o;
    unsigned char *out = NULL;
    jpip_err_t err;
    jpip_code_t rc;

    jpip_rebuild_opts_init(&o);
    o.reduce = reduce;
    o.max_layers = max_layers;
    rc = jpip_rebuild_mem(&bs, &o, pool, &out, len, stats, &err);
    ck_assert_msg(rc == JPIP_OK, "rebuild: %s", err.msg);
    return out;
}

/* Index a codestream file, rebuild it whole, by resolution and by layers,
 * and compare decodes. */
static void check_file(const char *j2k, const char *what, int may_refuse)
{
    apr_size_t len, rlen;
    unsigned char *data = tu_read_file(pool, j2k, &len);
    unsigned char *re;
    char *rpath = tpath("rebuilt.j2k");
    tstore_t *st = tstore_new();
    jpip_rebuild_stats_t stats;
    unsigned r, l;

    ck_assert_ptr_nonnull(data);
    if (tstore_index(st, data, len, what) != JPIP_OK) {
        ck_assert_msg(may_refuse, "%s: the codestream parser refuses it", what);
        return;
    }

    re = rebuild(st, 0, JPIP_REBUILD_ALL, &rlen, &stats);
    ck_assert_uint_eq(stats.packets_empty, 0);
    check_index_agrees(data, len, re, rlen, what);
    ck_assert_int_eq(tu_write_file(rpath, re, rlen), 0);
    assert_same_decode(j2k, "", rpath, "", what);

    for (r = 0; r < st->nl_max; r += (st->nl_max > 2 ? 2 : 1)) {
        char *o = apr_psprintf(pool, "-r %u", st->nl_max - r);
        re = rebuild(st, st->nl_max - r, JPIP_REBUILD_ALL, &rlen, NULL);
        ck_assert_int_eq(tu_write_file(rpath, re, rlen), 0);
        assert_same_decode(j2k, o, rpath, o, apr_psprintf(pool, "%s, max resolution %u", what, r));
    }
    for (l = 1; l < st->layers; l++) {
        char *o = apr_psprintf(pool, "-l %u", l);
        re = rebuild(st, 0, l, &rlen, NULL);
        ck_assert_int_eq(tu_write_file(rpath, re, rlen), 0);
        assert_same_decode(j2k, o, rpath, "", apr_psprintf(pool, "%s, %u layers", what, l));
    }
    printf("test_rebuild: %s: %" APR_UINT64_T_FMT " tiles, %" APR_UINT64_T_FMT
           " packets, %u layers, NL %u: same samples\n",
           what, stats.tiles, stats.packets, st->layers, st->nl_max);
    unlink(rpath);
}

static void check_opj(const char *opts, int w, int h, int nc, unsigned seed)
{
    char *img = tpath(nc == 1 ? "in.pgm" : "in.ppm");
    char *j2k = tpath("orig.j2k");

    ck_assert_int_eq(tu_write_synth(img, w, h, nc, seed), 0);
    ck_assert_msg(tu_run("'%s' -i '%s' -o '%s' %s", tu_opj_compress(), img, j2k, opts) == 0,
                  "opj_compress %s failed", opts);
    check_file(j2k, opts, 0);
    unlink(img);
    unlink(j2k);
}

/* ------------------------------------------------------------- tests */

START_TEST(no_main_header)
{
    tstore_t *st = tstore_new();
    jpip_binsrc_t bs;
    jpip_rebuild_opts_t o;
    unsigned char *out;
    apr_size_t len;
    jpip_err_t err;

    bs = tstore_src(st);
    jpip_rebuild_opts_init(&o);
    ck_assert_int_eq(jpip_rebuild_mem(&bs, &o, pool, &out, &len, NULL, &err), JPIP_E_NOTFOUND);
    ck_assert_ptr_nonnull(strstr(err.msg, "main header"));
    /* a partial main header is not enough either */
    {
        tbin_t *b = tbin(st, JPIP_CLASS_MAIN, 0, 1);
        static const unsigned char soc[] = {0xFF, 0x4F, 0xFF, 0x51};
        tbin_put(b, soc, sizeof(soc));
        ck_assert_int_eq(jpip_rebuild_mem(&bs, &o, pool, &out, &len, NULL, &err), JPIP_E_NOTFOUND);
        b->complete = 1;
        ck_assert_int_eq(jpip_rebuild_mem(&bs, &o, pool, &out, &len, NULL, &err), JPIP_E_FORMAT);
    }
}
END_TEST

/* Headers only: every packet synthesised empty, with SOP/EPH as signalled;
 * still a codestream opj_decompress accepts. */
START_TEST(headers_only)
{
    char *img = tpath("h.pgm"), *j2k = tpath("h.j2k"), *re = tpath("h_re.j2k");
    apr_size_t len, rlen, dlen;
    unsigned char *data, *out;
    tstore_t *st = tstore_new();
    jpip_rebuild_stats_t stats;
    apr_hash_index_t *hi;

    if (!opj_available()) {
        tu_skip("rebuild headers_only", "opj_compress/opj_decompress not found");
        return;
    }
    ck_assert_int_eq(tu_write_synth(img, 100, 80, 1, 3), 0);
    ck_assert_int_eq(
        tu_run("'%s' -i '%s' -o '%s' -t 64,64 -r 20,5 -SOP -EPH", tu_opj_compress(), img, j2k), 0);
    data = tu_read_file(pool, j2k, &len);
    ck_assert_int_eq(tstore_index(st, data, len, "headers_only"), JPIP_OK);
    for (hi = apr_hash_first(pool, st->bins); hi != NULL; hi = apr_hash_next(hi)) {
        const tkey_t *k = apr_hash_this_key(hi);
        tbin_t *b = apr_hash_this_val(hi);
        if (k->cls == JPIP_CLASS_PRECINCT) {
            b->cut = 0;
        }
    }
    out = rebuild(st, 0, JPIP_REBUILD_ALL, &rlen, &stats);
    ck_assert_uint_eq(stats.packets, stats.packets_empty);
    ck_assert_uint_eq(stats.tiles, 4);
    /* every empty packet is SOP (6) + 00 + EPH (2) */
    ck_assert_int_eq(tu_write_file(re, out, rlen), 0);
    ck_assert_ptr_nonnull(decode_raw(re, "", &dlen));
    unlink(img);
    unlink(j2k);
    unlink(re);
}
END_TEST

/* Precinct bins cut after L whole packets plus part of the next must
 * rebuild to exactly what max_layers = L gives from whole bins; cut at
 * random they must still decode. */
START_TEST(partial_bins)
{
    char *img = tpath("p.ppm"), *j2k = tpath("p.j2k"), *re = tpath("p_re.j2k");
    apr_size_t len, alen, blen, dlen;
    unsigned char *data, *a, *b;
    tstore_t *st = tstore_new();
    apr_hash_index_t *hi;
    unsigned L;

    if (!opj_available()) {
        tu_skip("rebuild partial_bins", "opj_compress/opj_decompress not found");
        return;
    }
    ck_assert_int_eq(tu_write_synth(img, 150, 120, 3, 5), 0);
    ck_assert_int_eq(tu_run("'%s' -i '%s' -o '%s' -t 80,64 -c [32,32],[32,32],[64,64] -n 4 "
                            "-r 60,20,8,2 -p RPCL -EPH",
                            tu_opj_compress(), img, j2k),
                     0);
    data = tu_read_file(pool, j2k, &len);
    ck_assert_int_eq(tstore_index(st, data, len, "partial_bins"), JPIP_OK);
    for (L = 0; L < 4; L++) {
        for (hi = apr_hash_first(pool, st->bins); hi != NULL; hi = apr_hash_next(hi)) {
            tbin_t *bin = apr_hash_this_val(hi);
            bin->cut = bin->n;
        }
        b = rebuild(st, 0, L, &blen, NULL);
        for (hi = apr_hash_first(pool, st->bins); hi != NULL; hi = apr_hash_next(hi)) {
            const tkey_t *k = apr_hash_this_key(hi);
            tbin_t *bin = apr_hash_this_val(hi);
            if (k->cls == JPIP_CLASS_PRECINCT) {
                apr_size_t lo = L == 0 ? 0 : bin->bound[L - 1];
                bin->cut = lo + (bin->bound[L] - lo) / 2;
            }
        }
        a = rebuild(st, 0, JPIP_REBUILD_ALL, &alen, NULL);
        ck_assert_msg(alen == blen && memcmp(a, b, alen) == 0,
                      "cut after %u layers differs from max_layers %u", L, L);
    }
    srand(7);
    for (hi = apr_hash_first(pool, st->bins); hi != NULL; hi = apr_hash_next(hi)) {
        const tkey_t *k = apr_hash_this_key(hi);
        tbin_t *bin = apr_hash_this_val(hi);
        if (k->cls == JPIP_CLASS_PRECINCT) {
            bin->cut = bin->n ? (apr_size_t)rand() % (bin->n + 1) : 0;
        }
    }
    a = rebuild(st, 0, JPIP_REBUILD_ALL, &alen, NULL);
    ck_assert_int_eq(tu_write_file(re, a, alen), 0);
    ck_assert_ptr_nonnull(decode_raw(re, "", &dlen));
    unlink(img);
    unlink(j2k);
    unlink(re);
}
END_TEST

/* SOT markers (tile-parts) in a rebuilt codestream. */
static unsigned count_sot(const unsigned char *d, apr_size_t n)
{
    apr_size_t pos = 2;
    unsigned k = 0;

    while (pos + 4 <= n && !(d[pos] == 0xFF && d[pos + 1] == 0x90)) {
        pos += 2 + ((apr_size_t)d[pos + 2] << 8 | d[pos + 3]);
    }
    while (pos + 12 <= n && d[pos] == 0xFF && d[pos + 1] == 0x90) {
        k++;
        pos += ((apr_size_t)d[pos + 6] << 24) | ((apr_size_t)d[pos + 7] << 16) |
               ((apr_size_t)d[pos + 8] << 8) | d[pos + 9];
    }
    return k;
}

/* What a rebuild makes of what a truncated original or a missing tile
 * leaves: a tile of which nothing is held is left out (unless no tile is
 * held at all); a complete precinct bin ending at a packet boundary has
 * no more packets; one ending inside a packet is the cut end of the data,
 * written as it is, last in its tile. */
START_TEST(cut_and_absent_tiles)
{
    char *img = tpath("ca.ppm"), *j2k = tpath("ca.j2k");
    apr_size_t len, alen, blen;
    unsigned char *data, *a, *b;
    tstore_t *st = tstore_new();
    apr_hash_index_t *hi;
    jpip_rebuild_stats_t sa, sb;
    tbin_t *cutbin = NULL;

    if (!opj_available()) {
        tu_skip("rebuild cut_and_absent_tiles", "opj_compress/opj_decompress not found");
        return;
    }
    ck_assert_int_eq(tu_write_synth(img, 64, 32, 3, 9), 0);
    ck_assert_int_eq(
        tu_run("'%s' -i '%s' -o '%s' -t 32,32 -n 2 -r 10,2", tu_opj_compress(), img, j2k), 0);
    data = tu_read_file(pool, j2k, &len);
    ck_assert_int_eq(tstore_index(st, data, len, "cut_and_absent_tiles"), JPIP_OK);
    a = rebuild(st, 0, JPIP_REBUILD_ALL, &alen, NULL);
    ck_assert_uint_eq(count_sot(a, alen), 2);
    /* tile 1 not held at all: left out */
    {
        tkey_t k;
        memset(&k, 0, sizeof(k));
        k.cls = JPIP_CLASS_TILEHDR;
        k.id = 1;
        apr_hash_set(st->bins, &k, sizeof(k), NULL);
    }
    b = rebuild(st, 0, JPIP_REBUILD_ALL, &blen, NULL);
    ck_assert_uint_eq(count_sot(b, blen), 1);
    /* no tile header held at all: every tile written (from what there is) */
    {
        tkey_t k;
        memset(&k, 0, sizeof(k));
        k.cls = JPIP_CLASS_TILEHDR;
        k.id = 0;
        apr_hash_set(st->bins, &k, sizeof(k), NULL);
    }
    b = rebuild(st, 0, JPIP_REBUILD_ALL, &blen, &sb);
    ck_assert_uint_eq(count_sot(b, blen), 2);
    /* complete bins that end after their first packet: the same as one layer */
    st = tstore_new();
    ck_assert_int_eq(tstore_index(st, data, len, "cut_and_absent_tiles"), JPIP_OK);
    b = rebuild(st, 0, 1, &blen, NULL);
    for (hi = apr_hash_first(pool, st->bins); hi != NULL; hi = apr_hash_next(hi)) {
        const tkey_t *k = apr_hash_this_key(hi);
        tbin_t *bin = apr_hash_this_val(hi);
        if (k->cls == JPIP_CLASS_PRECINCT && bin->nbound > 1) {
            bin->n = bin->cut = bin->bound[0];
            if (cutbin == NULL && k->id == 0 && bin->bound[1] - bin->bound[0] > 2) {
                cutbin = bin;
            }
        }
    }
    a = rebuild(st, 0, JPIP_REBUILD_ALL, &alen, NULL);
    ck_assert_msg(alen == blen && memcmp(a, b, alen) == 0,
                  "complete bins of one packet rebuild differently from one layer");
    /* the first precinct of tile 0 ends two bytes into its second packet:
     * those bytes end tile 0, after every packet before them */
    ck_assert_ptr_nonnull(cutbin);
    cutbin->n = cutbin->cut = cutbin->bound[0] + 2;
    a = rebuild(st, 0, JPIP_REBUILD_ALL, &alen, &sa);
    b = rebuild(st, 0, 1, &blen, &sb);
    ck_assert_uint_lt(sa.packets, sb.packets);
    ck_assert_uint_eq(count_sot(a, alen), 2);
    {
        /* tile 0's data ends with the cut bytes */
        apr_size_t pos = 2, psot;
        while (!(a[pos] == 0xFF && a[pos + 1] == 0x90)) {
            pos += 2 + ((apr_size_t)a[pos + 2] << 8 | a[pos + 3]);
        }
        psot = ((apr_size_t)a[pos + 6] << 24) | ((apr_size_t)a[pos + 7] << 16) |
               ((apr_size_t)a[pos + 8] << 8) | a[pos + 9];
        ck_assert_int_eq(memcmp(a + pos + psot - 2, cutbin->d + cutbin->bound[0], 2), 0);
    }
    unlink(img);
    unlink(j2k);
}
END_TEST

START_TEST(generated_files)
{
    if (!opj_available()) {
        tu_skip("rebuild generated_files", "opj_compress/opj_decompress not found");
        return;
    }
    check_opj("-n 4 -r 40,10,2", 128, 96, 1, 1);
    check_opj("-t 64,48 -n 3 -r 30,10,3 -SOP -EPH -p RLCP", 150, 100, 1, 2);
    check_opj("-t 100,70 -c [64,64],[32,32],[16,16] -n 3 -r 50,20,5 -p RPCL -SOP", 201, 143, 3, 3);
    check_opj("-c [32,32] -b 16,16 -n 4 -r 40,12,4,1 -p PCRL -EPH -M 1", 130, 130, 3, 4);
    check_opj("-t 96,96 -c [32,32] -b 8,8 -n 3 -r 25,5 -p CPRL -M 4 -TP R", 180, 140, 3, 5);
    check_opj("-d 13,7 -T 5,3 -t 60,50 -c [16,16] -b 8,8 -n 3 -r 30,10 -p RPCL -M 5 -I", 170, 121,
              3, 6);
    check_opj("-n 3 -r 30,10,4 -POC T0=0,0,2,2,1,LRCP/T0=0,0,1,4,3,CPRL -b 16,16 -c [32,32]", 120,
              90, 3, 7);
}
END_TEST

START_TEST(conformance_files)
{
    const char *dir = tu_testdata("conformance");
    DIR *d;
    struct dirent *e;
    int n = 0;

    if (dir == NULL) {
        tu_skip("rebuild conformance_files", "no conformance directory (JPIP_TESTDATA)");
        return;
    }
    if (!opj_available()) {
        tu_skip("rebuild conformance_files", "opj_decompress not found");
        return;
    }
    d = opendir(dir);
    ck_assert_ptr_nonnull(d);
    while ((e = readdir(d)) != NULL) {
        size_t nl = strlen(e->d_name);
        if (nl > 4 && strcmp(e->d_name + nl - 4, ".j2k") == 0) {
            check_file(apr_psprintf(pool, "%s/%s", dir, e->d_name), e->d_name, 1);
            n++;
        }
    }
    closedir(d);
    printf("test_rebuild: %d conformance codestreams rebuilt\n", n);
}
END_TEST

/* Cropping: on edges at the alignment jpip_rebuild_crop_align gives, no
 * precinct is cut and every precinct the crop meets is used; the cropped
 * codestream decodes, away from its edges, to the original's samples (the
 * same reference-grid area given to both decodes); an edge off the
 * alignment cuts precincts and says so. */
START_TEST(crop)
{
    char *img = tpath("c.ppm"), *j2k = tpath("c.j2k"), *re = tpath("c_re.j2k");
    apr_size_t len, rlen;
    unsigned char *data, *out;
    tstore_t *st = tstore_new();
    jpip_binsrc_t bs;
    jpip_rebuild_opts_t o;
    jpip_rebuild_stats_t stats;
    jpip_src_t *src;
    jpip_cs_t *cs;
    jpip_err_t err;
    const jpip_tccp_t *tccps[3];
    apr_uint64_t ax, ay, m;
    unsigned c;

    if (!opj_available()) {
        tu_skip("rebuild crop", "opj_compress/opj_decompress not found");
        return;
    }
    ck_assert_int_eq(tu_write_synth(img, 640, 512, 3, 11), 0);
    ck_assert_int_eq(tu_run("'%s' -i '%s' -o '%s' -n 4 -c [32,32] -b 8,8 -r 30,8 -p RPCL -I",
                            tu_opj_compress(), img, j2k),
                     0);
    data = tu_read_file(pool, j2k, &len);
    ck_assert_int_eq(tstore_index(st, data, len, "crop"), JPIP_OK);
    ck_assert_int_eq(jpip_src_open_mem(&src, pool, data, len, &err), JPIP_OK);
    ck_assert_int_eq(jpip_cs_parse(&cs, pool, src, NULL, &err), JPIP_OK);
    for (c = 0; c < 3; c++) {
        tccps[c] = &cs->main.tccp[c];
    }
    jpip_rebuild_crop_align(cs->comps, tccps, 3, &ax, &ay);
    /* precincts of 32 at the finest resolution, halved below it (how
     * opj_compress extends a precinct list): 32 samples at every level */
    ck_assert_uint_eq(ax, 32);
    ck_assert_uint_eq(ay, 32);

    bs = tstore_src(st);
    jpip_rebuild_opts_init(&o);
    o.crop = 1;
    o.crop_rect.x0 = 2 * ax;
    o.crop_rect.y0 = 3 * ay;
    o.crop_rect.x1 = 18 * ax;
    o.crop_rect.y1 = 13 * ay;
    ck_assert_int_eq(jpip_rebuild_mem(&bs, &o, pool, &out, &rlen, &stats, &err), JPIP_OK);
    ck_assert_uint_eq(stats.prec_cut, 0);
    ck_assert_uint_gt(stats.prec_bins, 0);
    ck_assert_int_eq(tu_write_file(re, out, rlen), 0);
    /* 16 * 2^NL from each edge, as render.c keeps */
    m = 16u << 3;
    assert_same_decode(j2k,
                       apr_psprintf(pool, "-d %u,%u,%u,%u", (unsigned)(o.crop_rect.x0 + m),
                                    (unsigned)(o.crop_rect.y0 + m), (unsigned)(o.crop_rect.x1 - m),
                                    (unsigned)(o.crop_rect.y1 - m)),
                       re,
                       apr_psprintf(pool, "-d %u,%u,%u,%u", (unsigned)(o.crop_rect.x0 + m),
                                    (unsigned)(o.crop_rect.y0 + m), (unsigned)(o.crop_rect.x1 - m),
                                    (unsigned)(o.crop_rect.y1 - m)),
                       "crop");
    /* fewer precincts than the whole image's */
    {
        jpip_rebuild_stats_t whole;
        unsigned char *w;
        apr_size_t wlen;

        jpip_rebuild_opts_init(&o);
        ck_assert_int_eq(jpip_rebuild_mem(&bs, &o, pool, &w, &wlen, &whole, &err), JPIP_OK);
        ck_assert_uint_lt(stats.prec_bins, whole.prec_bins);
        ck_assert_uint_lt(stats.packets, whole.packets);
    }
    /* off the alignment: precincts cut, left out and counted */
    jpip_rebuild_opts_init(&o);
    o.crop = 1;
    o.crop_rect.x0 = 2 * ax + 5;
    o.crop_rect.y0 = 3 * ay;
    o.crop_rect.x1 = 18 * ax;
    o.crop_rect.y1 = 13 * ay;
    ck_assert_int_eq(jpip_rebuild_mem(&bs, &o, pool, &out, &rlen, &stats, &err), JPIP_OK);
    ck_assert_uint_gt(stats.prec_cut, 0);
    /* outside the image: refused */
    o.crop_rect.x1 = 641;
    ck_assert_int_eq(jpip_rebuild_mem(&bs, &o, pool, &out, &rlen, &stats, &err), JPIP_E_REQUEST);
    unlink(img);
    unlink(j2k);
    unlink(re);
}
END_TEST

static Suite *rebuild_suite(void)
{
    Suite *s = suite_create("rebuild");
    TCase *tc = tcase_create("rebuild");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, no_main_header);
    tcase_add_test(tc, headers_only);
    tcase_add_test(tc, partial_bins);
    tcase_add_test(tc, cut_and_absent_tiles);
    tcase_add_test(tc, generated_files);
    tcase_add_test(tc, crop);
    tcase_add_test(tc, conformance_files);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_main(rebuild_suite, CK_NORMAL);
}
