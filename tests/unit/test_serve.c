/* Unit tests: serving view-windows (serve.c, plan.c, view.c) end to end
 * without httpd. For each image and a grid of view-windows, the response
 * is parsed by the client code, the codestream rebuilt from the bins
 * received, and both it and the original decoded by openjpeg over the
 * window's region and resolution: the pixels must be identical. Also: len
 * limits, model and need, layers, EOR codes, modified-window headers. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <apr_general.h>
#include <apr_strings.h>

#include "client.h"
#include "fields.h"
#include "index.h"
#include "rebuild.h"
#include "request.h"
#include "serve.h"
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

typedef struct target_t {
    const char *path;
    unsigned char *data;
    size_t size;
    jpip_src_t *src;
    jpip_index_t *ix;
    jpip_serve_target_t tgt;
} target_t;

static int open_target(target_t *t, const char *path)
{
    jpip_err_t err;

    memset(t, 0, sizeof(*t));
    t->path = path;
    t->data = tu_read_file(pool, path, &t->size);
    if (t->data == NULL || jpip_src_open_mem(&t->src, pool, t->data, t->size, &err) != JPIP_OK ||
        jpip_index_build(&t->ix, pool, t->src, NULL, NULL, &err) != JPIP_OK) {
        return 0;
    }
    t->tgt.ix = t->ix;
    t->tgt.tid = "test-tid";
    return 1;
}

static jpip_code_t buf_write(void *ctx, const void *data, apr_size_t len, jpip_err_t *err)
{
    (void)err;
    tu_buf_put(ctx, data, len);
    return JPIP_OK;
}

static const char *header(const jpip_response_t *r, const char *name)
{
    int i;

    for (i = 0; i < r->headers->nelts; i++) {
        const jpip_header_t *h = &APR_ARRAY_IDX(r->headers, i, jpip_header_t);
        if (strcmp(h->name, name) == 0) {
            return h->value;
        }
    }
    return NULL;
}

/* Serve query q on t with options o; return the body and the response. */
static tu_buf_t serve_with(target_t *t, const char *q, const jpip_serve_opts_t *o,
                           jpip_response_t *resp, const jpip_model_t *m)
{
    apr_array_header_t *f = NULL;
    jpip_request_t req;
    jpip_err_t err;
    tu_buf_t b = tu_buf(pool);

    ck_assert_msg(jpip_fields_parse(pool, q, strlen(q), NULL, &f, &err) == JPIP_OK, "%s", err.msg);
    ck_assert_msg(jpip_request_parse(pool, f, &req, &err) == JPIP_OK, "%s: %s", q, err.msg);
    ck_assert_msg(jpip_serve_prepare(pool, &t->tgt, &req, m, o, resp, &err) == JPIP_OK, "%s: %s", q,
                  err.msg);
    if (resp->status == 200) {
        ck_assert_msg(jpip_serve_stream(pool, resp, t->ix, t->src, buf_write, &b, &err) == JPIP_OK,
                      "%s: %s", q, err.msg);
    }
    return b;
}

/* Serve query q on t with the default options. */
static tu_buf_t serve(target_t *t, const char *q, jpip_response_t *resp, const jpip_model_t *m)
{
    jpip_serve_opts_t o;

    memset(&o, 0, sizeof(o));
    return serve_with(t, q, &o, resp, m);
}

static jpip_cache_t *parse(const tu_buf_t *b, unsigned *eor)
{
    jpip_cache_t *c;
    jpip_reader_t *r;
    jpip_err_t err;

    ck_assert_int_eq(jpip_cache_create(&c, pool, NULL, &err), JPIP_OK);
    ck_assert_int_eq(jpip_reader_create(&r, c, pool, &err), JPIP_OK);
    ck_assert_msg(jpip_reader_feed(r, b->p, b->n, &err) == JPIP_OK, "stream: %s", err.msg);
    ck_assert_msg(jpip_reader_finish(r, &err) == JPIP_OK, "stream end: %s", err.msg);
    ck_assert_msg(jpip_reader_eor(r, eor), "no EOR at the end of the response");
    return c;
}

/* Decode path over region (reference grid) at reduction d into PGX files
 * under dir; return the concatenated bytes (NULL if openjpeg fails). */
static unsigned char *decode(const char *path, unsigned d, const jpip_rect_t *rg, unsigned layers,
                             const char *dir, size_t *len)
{
    char cmd[2048], out[600];
    size_t total = 0;
    unsigned char *all = NULL;
    int c;

    tu_run("rm -rf '%s' && mkdir -p '%s'", dir, dir);
    snprintf(cmd, sizeof(cmd),
             "%s -i '%s' -o '%s/c.pgx' -r %u -d %" APR_UINT64_T_FMT ",%" APR_UINT64_T_FMT
             ",%" APR_UINT64_T_FMT ",%" APR_UINT64_T_FMT,
             tu_opj_decompress(), path, dir, d, rg->x0, rg->y0, rg->x1, rg->y1);
    if (layers > 0) {
        snprintf(cmd + strlen(cmd), sizeof(cmd) - strlen(cmd), " -l %u", layers);
    }
    if (tu_run("%s", cmd) != 0) {
        return NULL;
    }
    for (c = 0;; c++) {
        size_t n;
        unsigned char *p;

        snprintf(out, sizeof(out), "%s/c_%d.pgx", dir, c);
        p = tu_read_file(pool, out, &n);
        if (p == NULL && c == 0) {
            snprintf(out, sizeof(out), "%s/c.pgx", dir);
            p = tu_read_file(pool, out, &n);
            if (p != NULL) {
                *len = n;
                return p;
            }
        }
        if (p == NULL) {
            break;
        }
        all = all == NULL ? apr_palloc(pool, n) : all;
        if (total > 0) {
            unsigned char *q = apr_palloc(pool, total + n);
            memcpy(q, all, total);
            all = q;
        }
        memcpy(all + total, p, n);
        total += n;
    }
    *len = total;
    return total > 0 ? all : NULL;
}

static jpip_code_t file_write(void *ctx, const void *data, apr_size_t len, jpip_err_t *err)
{
    return fwrite(data, 1, len, ctx) == len ? JPIP_OK : jpip_err_set(err, JPIP_E_IO, "write");
}

/* Serve the window, rebuild from what came back, compare the decodes. */
static void check_window(target_t *t, unsigned d, apr_uint64_t ox, apr_uint64_t oy, apr_uint64_t sx,
                         apr_uint64_t sy, unsigned layers, const char *what)
{
    const jpip_ix_cs_t *cs = jpip_index_cs(t->ix, 0);
    apr_uint64_t fw = jpip_ceilpow2(cs->siz.xsiz, d) - jpip_ceilpow2(cs->siz.xosiz, d);
    apr_uint64_t fh = jpip_ceilpow2(cs->siz.ysiz, d) - jpip_ceilpow2(cs->siz.yosiz, d);
    char *q = apr_psprintf(pool,
                           "type=jpp-stream&fsiz=%" APR_UINT64_T_FMT ",%" APR_UINT64_T_FMT
                           "&roff=%" APR_UINT64_T_FMT ",%" APR_UINT64_T_FMT
                           "&rsiz=%" APR_UINT64_T_FMT ",%" APR_UINT64_T_FMT,
                           fw, fh, ox, oy, sx, sy);
    jpip_response_t resp;
    tu_buf_t body;
    jpip_cache_t *cache;
    jpip_binsrc_t bs;
    jpip_rebuild_opts_t ro;
    jpip_err_t err;
    jpip_rect_t rg;
    unsigned eor;
    char rpath[600], da[600], db[600];
    unsigned char *a, *b;
    size_t alen = 0, blen = 0;
    FILE *f;

    if (layers > 0) {
        q = apr_psprintf(pool, "%s&layers=%u", q, layers);
    }
    body = serve(t, q, &resp, NULL);
    ck_assert_msg(resp.status == 200, "%s %s: status %d (%s)", what, q, resp.status, resp.error);
    ck_assert_msg(header(&resp, "JPIP-fsiz") == NULL, "%s: fsiz modified", what);
    cache = parse(&body, &eor);
    ck_assert_msg(eor == JPIP_EOR_WINDOW_DONE || eor == JPIP_EOR_IMAGE_DONE, "%s: EOR %u", what,
                  eor);
    bs.ctx = cache;
    bs.get = jpip_cache_binsrc_get;
    jpip_rebuild_opts_init(&ro);
    snprintf(rpath, sizeof(rpath), "%s/rebuilt.j2k", tu_tmpdir());
    f = fopen(rpath, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_msg(jpip_rebuild(&bs, &ro, pool, file_write, f, NULL, &err) == JPIP_OK,
                  "%s: rebuild: %s", what, err.msg);
    fclose(f);
    rg.x0 = (jpip_ceilpow2(cs->siz.xosiz, d) + ox) << d;
    rg.y0 = (jpip_ceilpow2(cs->siz.yosiz, d) + oy) << d;
    rg.x1 = (jpip_ceilpow2(cs->siz.xosiz, d) + ox + sx) << d;
    rg.y1 = (jpip_ceilpow2(cs->siz.yosiz, d) + oy + sy) << d;
    rg.x1 = rg.x1 > cs->siz.xsiz ? cs->siz.xsiz : rg.x1;
    rg.y1 = rg.y1 > cs->siz.ysiz ? cs->siz.ysiz : rg.y1;
    snprintf(da, sizeof(da), "%s/a", tu_tmpdir());
    snprintf(db, sizeof(db), "%s/b", tu_tmpdir());
    a = decode(t->path, d, &rg, layers, da, &alen);
    if (a == NULL) {
        tu_skip(what, "openjpeg cannot decode the original at this reduction/region");
        return;
    }
    b = decode(rpath, d, &rg, 0, db, &blen);
    ck_assert_msg(b != NULL, "%s %s: the rebuilt codestream does not decode", what, q);
    ck_assert_msg(alen == blen && memcmp(a, b, alen) == 0, "%s %s: pixels differ", what, q);
}

/* A grid of windows over one file. */
static void check_file(const char *path, const char *what)
{
    target_t t;
    const jpip_ix_cs_t *cs;
    unsigned nl = 32, d, c;
    apr_uint32_t tt;

    ck_assert_msg(open_target(&t, path), "%s: cannot index", what);
    cs = jpip_index_cs(t.ix, 0);
    for (tt = 0; tt < jpip_siz_ntiles(&cs->siz); tt++) {
        for (c = 0; c < cs->siz.csiz; c++) {
            unsigned n = jpip_index_tccp(t.ix, jpip_index_tc(t.ix, cs, tt, c))->nl;
            nl = n < nl ? n : nl;
        }
    }
    for (d = 0; d <= nl && d <= 2; d++) {
        apr_uint64_t fw = jpip_ceilpow2(cs->siz.xsiz, d) - jpip_ceilpow2(cs->siz.xosiz, d);
        apr_uint64_t fh = jpip_ceilpow2(cs->siz.ysiz, d) - jpip_ceilpow2(cs->siz.yosiz, d);

        /* the whole frame, a centred window, and a small one at a corner */
        check_window(&t, d, 0, 0, fw, fh, 0, apr_psprintf(pool, "%s d=%u whole", what, d));
        check_window(&t, d, fw / 4, fh / 3, fw / 2, fh / 3 + 1, 0,
                     apr_psprintf(pool, "%s d=%u centre", what, d));
        check_window(&t, d, fw - fw / 5 - 1, fh - fh / 6 - 1, fw / 5 + 1, fh / 6 + 1, 0,
                     apr_psprintf(pool, "%s d=%u corner", what, d));
    }
    if (jpip_index_tile(t.ix, cs, 0)->layers > 1) {
        apr_uint64_t fw = cs->siz.xsiz - cs->siz.xosiz, fh = cs->siz.ysiz - cs->siz.yosiz;
        check_window(&t, 0, fw / 3, fh / 3, fw / 3, fh / 3, 1,
                     apr_psprintf(pool, "%s 1 layer", what));
    }
}

static const char *generate(const char *name, int w, int h, int nc, const char *opts)
{
    char in[600];
    const char *out = apr_psprintf(pool, "%s/%s.j2k", tu_tmpdir(), name);

    snprintf(in, sizeof(in), "%s/%s.%s", tu_tmpdir(), name, nc == 1 ? "pgm" : "ppm");
    ck_assert_int_eq(tu_write_synth(in, w, h, nc, 7), 0);
    ck_assert_msg(tu_run("%s -i '%s' -o '%s' %s", tu_opj_compress(), in, out, opts) == 0,
                  "opj_compress %s failed", opts);
    return out;
}

START_TEST(generated_images)
{
    static const struct {
        const char *name;
        int w, h, nc;
        const char *opts;
    } gen[] = {
        {"rpcl", 300, 200, 3, "-n 4 -r 30,10,3 -c [64,64] -p RPCL"},
        {"lrcp_tiles", 333, 250, 3, "-n 3 -r 20,5 -t 128,96 -TP R -PLT -p LRCP"},
        {"offsets", 210, 170, 1, "-n 4 -r 10,4 -c [32,32] -d 7,5 -T 3,2 -t 100,90 -SOP -EPH"},
        {"cprl_97", 256, 256, 3, "-n 5 -I -r 40,8 -b 16,16 -c [64,64] -p CPRL"},
        {"pcrl", 160, 120, 3, "-n 3 -r 15,5 -c [32,32] -p PCRL -M 5"},
    };
    size_t i;

    for (i = 0; i < sizeof(gen) / sizeof(gen[0]); i++) {
        check_file(generate(gen[i].name, gen[i].w, gen[i].h, gen[i].nc, gen[i].opts), gen[i].name);
    }
}
END_TEST

START_TEST(conformance_images)
{
    static const char *files[] = {"p0_03.j2k", "p0_06.j2k", "p0_09.j2k", "p0_13.j2k",
                                  "p0_14.j2k", "p1_01.j2k", "p1_04.j2k", "p1_06.j2k"};
    const char *dir = tu_testdata("conformance");
    size_t i;

    if (dir == NULL) {
        tu_skip("conformance images", "test corpus not found");
        return;
    }
    for (i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        check_file(apr_psprintf(pool, "%s/%s", dir, files[i]), files[i]);
    }
}
END_TEST

START_TEST(len_model_need_eor)
{
    const char *path = generate("model", 200, 150, 3, "-n 3 -r 20,5 -c [32,32] -p LRCP");
    target_t t;
    jpip_response_t resp;
    tu_buf_t all, cut, rest;
    unsigned eor;
    jpip_cache_t *c;
    const char *m;

    ck_assert(open_target(&t, path));
    all = serve(&t, "fsiz=200,150", &resp, NULL);
    parse(&all, &eor);
    ck_assert_uint_eq(eor, JPIP_EOR_IMAGE_DONE); /* the whole image, all layers */

    /* len: at most len message bytes, then EOR 4 */
    cut = serve(&t, "fsiz=200,150&len=1000", &resp, NULL);
    ck_assert_uint_le(cut.n, 1000 + 3);
    c = parse(&cut, &eor);
    ck_assert_uint_eq(eor, JPIP_EOR_BYTE_LIMIT);

    /* the cache after the cut, declared as model: the rest and nothing else */
    ck_assert_int_eq(jpip_cache_model_string(c, pool, 1 << 20, &m, NULL), JPIP_OK);
    rest = serve(&t, apr_psprintf(pool, "fsiz=200,150&model=%s", m), &resp, NULL);
    {
        /* the data bytes of cut and rest are exactly those of the whole
         * answer, with nothing sent twice (message headers differ: a
         * len-cut answer interleaves layers, a whole one need not) */
        jpip_cache_stats_t sa, sc, sr;
        unsigned e2;

        jpip_cache_stats(parse(&all, &e2), &sa);
        jpip_cache_stats(c, &sc);
        jpip_cache_stats(parse(&rest, &e2), &sr);
        ck_assert_msg(sc.body_bytes + sr.body_bytes == sa.body_bytes,
                      "cut %" APR_UINT64_T_FMT " + rest %" APR_UINT64_T_FMT
                      " data bytes vs all %" APR_UINT64_T_FMT,
                      sc.body_bytes, sr.body_bytes, sa.body_bytes);
    }

    /* need: only what is named comes */
    rest = serve(&t, "fsiz=200,150&need=Hm", &resp, NULL);
    ck_assert_uint_lt(rest.n, 400);
    /* a stale tid: JPIP-tid answered and model ignored */
    rest = serve(&t, "fsiz=200,150&tid=other&model=Hm,P*", &resp, NULL);
    ck_assert_str_eq(header(&resp, "JPIP-tid"), "test-tid");
    ck_assert_uint_eq(rest.n, all.n);
    rest = serve(&t, "fsiz=200,150&tid=test-tid&model=Hm,P*,H*,M*", &resp, NULL);
    ck_assert_ptr_null(header(&resp, "JPIP-tid"));
    ck_assert_uint_lt(rest.n, 20);
    /* no tid asked: the id comes anyway (clients such as OpenJPIP's
     * viewer never ask and need it), and the model is honoured */
    rest = serve(&t, "fsiz=200,150&model=Hm,P*,H*,M*", &resp, NULL);
    ck_assert_str_eq(header(&resp, "JPIP-tid"), "test-tid");
    ck_assert_uint_lt(rest.n, 20);
    rest = serve(&t, "fsiz=200,150&type=jpp-stream&roff=5,5&rsiz=1,1&layers=99", &resp, NULL);
    ck_assert_str_eq(header(&resp, "JPIP-tid"), "test-tid");

    /* no fsiz: headers and metadata only, window done */
    rest = serve(&t, "type=jpp-stream", &resp, NULL);
    parse(&rest, &eor);
    ck_assert_uint_eq(eor, JPIP_EOR_WINDOW_DONE);
    ck_assert_uint_lt(rest.n, 300);
}
END_TEST

START_TEST(modified_window_headers)
{
    const char *path = generate("hdrs", 400, 300, 3, "-n 4 -r 20,5");
    target_t t;
    jpip_response_t resp;

    ck_assert(open_target(&t, path));
    serve(&t, "fsiz=400,300", &resp, NULL);
    ck_assert_ptr_null(header(&resp, "JPIP-fsiz"));
    serve(&t, "fsiz=1000,1000", &resp, NULL);
    ck_assert_str_eq(header(&resp, "JPIP-fsiz"), "400,300"); /* round-down: the whole image */
    serve(&t, "fsiz=240,240", &resp, NULL);
    ck_assert_str_eq(header(&resp, "JPIP-fsiz"), "200,150");
    serve(&t, "fsiz=240,240,round-up", &resp, NULL);
    ck_assert_str_eq(header(&resp, "JPIP-fsiz"), "400,300");
    serve(&t, "fsiz=120,80,closest", &resp, NULL);
    ck_assert_str_eq(header(&resp, "JPIP-fsiz"), "100,75");
    serve(&t, "fsiz=400,300&roff=300,200&rsiz=500,500", &resp, NULL);
    ck_assert_str_eq(header(&resp, "JPIP-rsiz"), "100,100");
    serve(&t, "fsiz=400,300&comps=1", &resp, NULL);
    ck_assert_str_eq(header(&resp, "JPIP-comps"), "0-2"); /* widened to the RCT triple */
    serve(&t, "fsiz=400,300&layers=9", &resp, NULL);
    ck_assert_str_eq(header(&resp, "JPIP-layers"), "2");
    serve(&t, "fsiz=400,300&stream=0-3", &resp, NULL);
    ck_assert_str_eq(header(&resp, "JPIP-stream"), "0");
    serve(&t, "handled&qid=5", &resp, NULL);
    ck_assert_ptr_nonnull(header(&resp, "JPIP-handled"));
    ck_assert_str_eq(header(&resp, "JPIP-qid"), "5");
    serve(&t, "type=image/gif", &resp, NULL);
    ck_assert_int_eq(resp.status, 415);
    serve(&t, "upload=jpp-stream", &resp, NULL);
    ck_assert_int_eq(resp.status, 501);
    serve(&t, "pref=fullwindow/r", &resp, NULL);
    ck_assert_int_eq(resp.status, 501);
    ck_assert_str_eq(header(&resp, "JPIP-pref"), "fullwindow/r");
    serve(&t, "fsiz=400,300&model=Q5", &resp, NULL);
    ck_assert_int_eq(resp.status, 400);
    serve(&t, "metareq=[xml_", &resp, NULL);
    ck_assert_int_eq(resp.status, 400);
}
END_TEST

/* A refusal for a limit says which limit it was; other refusals name none. */
START_TEST(refusals_say_which_limit)
{
    const char *path = generate("limits", 400, 300, 3, "-n 4 -r 20,5");
    target_t t;
    jpip_response_t resp;
    jpip_serve_opts_t o;

    ck_assert(open_target(&t, path));
    memset(&o, 0, sizeof(o));
    o.max_entries = 3;
    serve_with(&t, "fsiz=400,300", &o, &resp, NULL);
    ck_assert_int_eq(resp.status, 413);
    ck_assert_int_eq(resp.limit, JPIP_LIMIT_BINS);
    memset(&o, 0, sizeof(o));
    o.max_model_items = 2;
    serve_with(&t, "fsiz=400,300&model=P1,P2,P3", &o, &resp, NULL);
    ck_assert_int_eq(resp.status, 413);
    ck_assert_int_eq(resp.limit, JPIP_LIMIT_MODEL_ITEMS);
    /* a syntax error is no limit, even under a tight one */
    serve_with(&t, "fsiz=400,300&model=Q5", &o, &resp, NULL);
    ck_assert_int_eq(resp.status, 400);
    ck_assert_int_eq(resp.limit, JPIP_LIMIT_NONE);
    serve(&t, "type=image/gif", &resp, NULL);
    ck_assert_int_eq(resp.status, 415);
    ck_assert_int_eq(resp.limit, JPIP_LIMIT_NONE);
    serve(&t, "fsiz=400,300", &resp, NULL);
    ck_assert_int_eq(resp.status, 200);
    ck_assert_int_eq(resp.limit, JPIP_LIMIT_NONE);
}
END_TEST

static Suite *serve_suite(void)
{
    Suite *s = suite_create("serve");
    TCase *tc = tcase_create("windows");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, modified_window_headers);
    tcase_add_test(tc, refusals_say_which_limit);
    tcase_add_test(tc, len_model_need_eor);
    tcase_add_test(tc, generated_images);
    tcase_add_test(tc, conformance_images);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_main(serve_suite, CK_ENV);
}
